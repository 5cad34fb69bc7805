"""graphrecall.tracking with the real W&B logger, offline: run names, groups per study, flat config,
best-value summaries, one finished run per multirun job. The runs are read back from W&B's own
offline files (``run-<id>.wandb``)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from graphrecall import tracking
from tests.conftest import ROOT, TINY, compose_train

sys.path.insert(0, str(ROOT))
import train as train_app  # noqa: E402

FAST_MF = ["model=mf", "trainer.enable_progress_bar=false", "trainer.early_stopping_patience=0"]


def read_wandb_run(run_dir: Path) -> dict:
    """``{"name", "group", "id", "config", "summary", "history", "exit_code"}`` of the one offline run
    under ``run_dir/wandb``, parsed from its record log (LevelDB-style 32 KiB blocks of protobuf
    ``Record``s after a 7-byte ``:W&B`` header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    data = files[0].read_bytes()
    assert data[:4] == b":W&B"
    out: dict = {"summary": {}, "history": [], "exit_code": None}
    pos, chunk = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind not in (1, 4):  # FULL or LAST completes a record
            continue
        record = pb.Record()
        record.ParseFromString(chunk)
        chunk = b""
        what = record.WhichOneof("record_type")
        if what == "run":
            out.update(name=record.run.display_name, group=record.run.run_group, id=record.run.run_id,
                       config={u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif what == "summary":
            for u in record.summary.update:
                out["summary"][u.key or "/".join(u.nested_key)] = json.loads(u.value_json)
        elif what == "history":
            out["history"].append({u.key or "/".join(u.nested_key): json.loads(u.value_json)
                                   for u in record.history.item})
        elif what == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def read_finished_run(run_dir: Path, timeout: float = 30.0) -> dict:
    """:func:`read_wandb_run` once the run's exit record is on disk: W&B's service process writes the
    file asynchronously, and may still be writing when ``wandb.finish()`` or the launcher returns."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            run = read_wandb_run(run_dir)
            if run["exit_code"] is not None and "id" in run:
                return run
        except AssertionError:  # the file does not exist yet
            pass
        if time.monotonic() > deadline:
            return read_wandb_run(run_dir)
        time.sleep(0.2)


def test_run_name_from_choices_seed_and_overrides():
    config = {"seed": 2, "choices": {"model": "sage", "aggregator": "gat", "loss": "bce", "dataset": "synthetic"}}
    overrides = ["experiment=aggregators", "aggregator=gat", "seed=2", "model.optim.lr=0.01", "+x.y=1",
                 "data_dir=/tmp/d", "hydra.sweep.dir=/tmp/s", "dataset.loader.seed=1"]
    assert tracking.run_name(config, overrides) == "sage-gat-bce-synthetic-s2 model.optim.lr=0.01 x.y=1 dataset.loader.seed=1"
    # a composed config (no Hydra choices): the model class, and group overrides stay in the name
    composed = {"seed": 0, "model": {"_target_": "graphrecall.models.mf.MFRecall"}}
    assert tracking.run_name(composed, ["model=mf", "seed=0"]) == "MFRecall-s0 model=mf"
    assert tracking.run_name(None) == "run"


def test_group_and_overrides_outside_hydra(tmp_path):
    run_dir = tmp_path / "sage_study" / "trial_3"
    assert tracking.run_group({"task_name": "train"}, run_dir) == "train/sage_study"
    assert tracking.job_overrides(run_dir) == []
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["model=sage", "model.optim.lr=0.001"]))
    assert tracking.job_overrides(run_dir) == ["model=sage", "model.optim.lr=0.001"]


def test_finish_without_a_run_is_a_no_op():
    tracking.finish_wandb()  # whatever an earlier test left open
    assert tracking.finish_wandb({"test/recall@50": 0.5}) is False


def test_offline_run_has_flat_config_best_summary_and_final_metrics(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = compose_train(tmp_path, [*TINY, *FAST_MF, "trainer.max_epochs=4", "logger=wandb", "logger.mode=offline",
                                   "seed=3"])
    run_dir = Path(cfg.run_dir)
    (run_dir / ".hydra").mkdir(parents=True)  # as Hydra (or an Optuna trial) leaves it before the job runs
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["model=mf", "seed=3", "model.optim.lr=0.005"]))
    metrics, _ = train_app.train(cfg)  # train() writes the final metrics to the summary and closes the run
    assert tracking.finish_wandb(metrics) is False  # nothing left open
    run = read_finished_run(run_dir)
    assert run["name"] == "MFRecall-s3 model=mf model.optim.lr=0.005"
    assert run["group"] == f"train/{tmp_path.name}"
    assert run["config"]["seed"] == 3 and run["config"]["model.optim.lr"] == 0.005
    assert "git_revision" in run["config"] and "model.embedding_dim" in run["config"]
    # best/ summaries = the validation metrics of the epoch with the best val/recall@50 (CSV log, read independently)
    csv = pd.read_csv(run_dir / "csv" / "metrics.csv")
    val = csv.dropna(subset=["val/recall@50"]).reset_index(drop=True)
    assert len(val) == 4
    best = int(np.argmax(val["val/recall@50"].to_numpy()))  # first maximum, as ModelCheckpoint keeps
    summary = run["summary"]
    assert summary["best/val/recall@50"] == pytest.approx(val["val/recall@50"][best])
    assert summary["best/val/ndcg@50"] == pytest.approx(val["val/ndcg@50"][best])
    assert summary["best/epoch"] == val["epoch"][best]
    assert summary["best/val/recall@50"] == pytest.approx(metrics["val/fit/best_val_recall@50"])
    assert "best/val/recall@50_best" not in summary
    # final metrics of the job, the run closed cleanly
    assert summary["test/recall@50"] == pytest.approx(metrics["test/recall@50"])
    assert run["exit_code"] == 0


def test_multirun_jobs_get_their_own_runs_in_one_group(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "train.py", "-m", *TINY, *FAST_MF, "trainer.max_epochs=1", "logger=wandb",
           "logger.mode=offline", "eval.folds=[val]", "seed=0,1", f"data_dir={tmp_path / 'data'}",
           f"hydra.sweep.dir={sweep}"]
    # no API key, and not this process's W&B service (WANDB_SERVICE, set by an earlier in-process run):
    # a child attached to it loses the run it finishes at exit
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True, env={**env, "WANDB_DIR": str(tmp_path)})
    runs = [read_finished_run(sweep / str(job)) for job in (0, 1)]
    assert runs[0]["id"] != runs[1]["id"]
    assert {r["group"] for r in runs} == {"train/sweep"}
    name = runs[0]["name"]  # choices + seed, then the job's other overrides (no seed=, no folders)
    assert name.startswith("mf-mean-bce-synthetic-s0 dataset.loader.preset=tiny ")
    assert "trainer.max_epochs=1" in name and "eval.folds=[val]" in name
    assert "seed=" not in name and "dir=" not in name and "model=" not in name
    assert runs[1]["name"] == runs[0]["name"].replace("-s0 ", "-s1 ")
    for job, run in enumerate(runs):
        assert run["config"]["seed"] == job and run["config"]["choices.model"] == "mf"
        assert run["exit_code"] == 0 and "best/val/recall@50" in run["summary"]
        val = json.loads((sweep / str(job) / "metrics.json").read_text())["metrics"]["val/fit/best_val_recall@50"]
        assert run["summary"]["best/val/recall@50"] == pytest.approx(val)


def test_importing_tracking_does_not_import_lightning():
    """train.py imports finish_wandb after every job, also for models that never train with Lightning."""
    code = "import sys, graphrecall.tracking; assert 'pytorch_lightning' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    from pytorch_lightning.loggers import WandbLogger

    assert issubclass(tracking.StudyWandbLogger, WandbLogger)  # built on first access
