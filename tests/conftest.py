"""Shared fixtures: Hydra configs composed from conf/ on the tiny synthetic world."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

TINY = ["dataset=synthetic", "dataset.loader.preset=tiny", "eval.bootstrap.num_resamples=50"]


def compose_train(tmp_path: Path, overrides: list[str]) -> DictConfig:
    """The train config with ``overrides``, writing into ``tmp_path`` (no Hydra run dir)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.run_dir = str(tmp_path / "run")
        cfg.data_dir = str(tmp_path / "data")
        cfg.cache_dir = str(tmp_path / "cache")
    return cfg


@pytest.fixture
def tiny_cfg(tmp_path: Path):
    """Factory: ``tiny_cfg(["model=coclick"])`` -> composed config on the tiny synthetic data."""
    return lambda extra=(): compose_train(tmp_path, [*TINY, *extra])
