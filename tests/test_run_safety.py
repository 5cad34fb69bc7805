"""Issue 12: nothing silently wrong. Crafted files cannot run code, configs and folds are checked
before any work, runs never share or overwrite a folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from graphrecall.checkpoints import load_checkpoint_file
from tests.conftest import CONF, ROOT

sys.path.insert(0, str(ROOT))
import evaluate as evaluate_app  # noqa: E402
import train as train_app  # noqa: E402


def _plant_marker(path: str) -> dict:
    """What a crafted checkpoint would run if it were loaded with weights_only=False."""
    Path(path).write_text("code ran")
    return {}


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_plant_marker, (self.marker,))


def _crafted_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "marker"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"run_config": _Payload(str(marker))}}, path)
    return path, marker


def _evaluate_cfg(**values):
    ecfg = OmegaConf.load(CONF / "evaluate.yaml")
    ecfg.pop("hydra")
    for k, v in values.items():
        OmegaConf.update(ecfg, k, v)
    return ecfg


def test_crafted_checkpoint_is_refused_without_running_code(tmp_path):
    path, marker = _crafted_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="refused"):
        load_checkpoint_file(path)
    with pytest.raises(ValueError, match="crafted.ckpt.*refused"):
        evaluate_app.evaluate(_evaluate_cfg(ckpt_path=str(path), run_dir=str(tmp_path)))
    assert not marker.exists()


def test_text_file_as_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match="notes.txt is not a readable torch checkpoint"):
        load_checkpoint_file(path)
    with pytest.raises(FileNotFoundError, match="missing.ckpt not found"):
        load_checkpoint_file(tmp_path / "missing.ckpt")


def test_resume_from_a_crafted_checkpoint_is_refused(tiny_cfg, tmp_path):
    path, marker = _crafted_checkpoint(tmp_path)
    cfg = tiny_cfg(["model=sage", "trainer.enable_progress_bar=false", "trainer.max_epochs=1",
                    f"model.resume_from={path}"])
    with pytest.raises(ValueError, match="refused"):
        train_app.train(cfg)
    assert not marker.exists()
