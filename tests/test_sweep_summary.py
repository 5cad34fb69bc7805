"""Sweeps that sum themselves up: the Hydra callback at the end of a real ``train.py -m`` sweep (table,
path, results.md, plot, ``latest`` link), the report over it (paired differences checked against the
per-user files, two sweep folders at once), a failing summary that leaves the sweep alone, and the
one-line-per-epoch log of fits without a progress bar."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from graphrecall import report
from graphrecall.metrics.bootstrap import paired_bootstrap_diff
from graphrecall.sweep_summary import SweepSummary, point_latest_at

ROOT = Path(__file__).resolve().parents[1]
TINY = ["dataset=synthetic", "dataset.loader.preset=tiny", "eval.bootstrap.num_resamples=50"]


def sweep_cmd(sweep: Path, data: Path, *axes: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "train.py", "-m", *axes, *TINY, f"data_dir={data}", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """Two real sweeps side by side: co-click and popular x seeds 0, 1; then popular seed 2."""
    root = tmp_path_factory.mktemp("multirun")
    first, second = root / "train" / "s1", root / "train" / "s2"
    p1 = sweep_cmd(first, root / "data", "model=coclick,popular", "seed=0,1")
    latest_after_first = os.readlink(root / "train" / "latest")
    p2 = sweep_cmd(second, root / "data", "model=popular", "seed=2")
    assert latest_after_first == "s1"
    return first, second, p1, p2


def test_a_sweep_prints_its_table_and_path_and_writes_results(sweeps):
    first, second, proc, _ = sweeps
    results = (first / "results.md").read_text()
    out = proc.stdout
    assert results in out and f"sweep: {first}" in out and f"results: {first / 'results.md'}" in out
    assert "results.png" in results and (first / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = results.split("Paired differences")[0]
    rows = {line.split(" | ")[0][2:]: line for line in table.splitlines() if line.startswith("| model=")}
    # labels name the model and the dataset, never the logger; one row per model, 2 seeds each
    assert set(rows) == {"model=coclick dataset=synthetic", "model=popular dataset=synthetic"}
    assert "logger" not in results
    for model, jobs in (("coclick", (0, 1)), ("popular", (2, 3))):
        runs = [json.loads((first / str(j) / "metrics.json").read_text())["metrics"] for j in jobs]
        row = rows[f"model={model} dataset=synthetic"].split(" | ")
        assert row[1] == "2"  # seeds
        cells = {"recall@50": row[2], "warm/recall@50": row[3]}  # the headline slice beside all users
        for metric, cell in cells.items():
            values = np.array([r[f"test/{metric}"] for r in runs])
            assert cell == f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"
    assert "Paired differences of test recall@50" in results
    # the newest sweep is `latest`
    assert os.readlink(first.parent / "latest") == second.name and (first.parent / "latest").resolve() == second


def test_report_compare_on_the_sweep_matches_the_per_user_files(sweeps, capsys):
    first = sweeps[0]
    text = report.main([str(first), "--compare", "model=popular", "--metrics", "recall@50", "--resamples", "300"])
    row = [line for line in text.splitlines() if line.startswith("| model=coclick dataset=synthetic | ")
           and "±" not in line][0].split(" | ")
    # independently: per warm user (the headline slice), the mean over seeds 0 and 1 of each model, then
    # the paired bootstrap (seed 0)
    tables = {j: pd.read_parquet(first / str(j) / "per_user_test.parquet") for j in range(4)}
    per_user = {j: t[t["warm"]].set_index("u")["recall@50"] for j, t in tables.items()}
    coclick = (per_user[0] + per_user[1]) / 2
    popular = ((per_user[2] + per_user[3]) / 2).reindex(coclick.index)
    diff, low, high, p = paired_bootstrap_diff(coclick.to_numpy(), popular.to_numpy(), num_resamples=300, seed=0)
    assert row[1:] == [str(len(coclick)), "0,1", f"{diff:+.4f}", f"[{low:+.4f}, {high:+.4f}]", f"{p:.3f} |"]
    assert diff == pytest.approx((coclick - popular).mean())


def test_report_of_two_sweep_folders_at_once(sweeps):
    first, second, _, _ = sweeps
    runs = report.collect_runs([first, second])
    assert len(runs) == 5
    long = report.aggregate(runs, "test", ("recall@50",)).set_index("run")
    popular = long.loc["model=popular dataset=synthetic"]
    values = [json.loads((d / "metrics.json").read_text())["metrics"]["test/recall@50"]
              for d in (first / "2", first / "3", second / "0")]
    assert popular["n"] == 3 and popular["mean"] == pytest.approx(np.mean(values))
    assert popular["std"] == pytest.approx(np.std(values, ddof=1))
    # the second sweep summed itself up too: one group, no paired differences
    assert "Paired differences" not in (second / "results.md").read_text()


def test_a_failing_summary_is_logged_and_leaves_the_sweep_alone(tmp_path, caplog):
    sweep = tmp_path / "multirun" / "2026-01-01_00-00-00_1-ab"
    (sweep / "0").mkdir(parents=True)  # a job folder without a finished run: the report refuses it
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    with caplog.at_level(logging.ERROR, logger="graphrecall.sweep_summary"):
        SweepSummary().on_multirun_end(config)  # no exception: the sweep's own outcome stands
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"sweep summary of {sweep} failed" in message and "holds no finished run" in message
    assert "python -m graphrecall.report" in message and not (sweep / "results.md").exists()
    assert (tmp_path / "multirun" / "latest").resolve() == sweep.resolve()  # the link is still made


def test_latest_link_is_replaced_but_a_real_folder_is_left_alone(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    assert point_latest_at(a) == tmp_path / "latest" and os.readlink(tmp_path / "latest") == "a"
    point_latest_at(b)
    assert os.readlink(tmp_path / "latest") == "b" and not list(tmp_path.glob(".latest*"))
    (tmp_path / "latest").unlink()
    (tmp_path / "latest").mkdir()
    assert point_latest_at(a) is None and (tmp_path / "latest").is_dir()


# ---------------------------------------------------------------- one line per epoch
VAL = [0.1, 0.3, 0.2]  # val/recall@50 of epochs 1, 2, 3: the best is epoch 2


class Scripted(pl.LightningModule):
    """Trains a single weight and logs the epoch's loss in its own ``on_train_epoch_end`` (as the
    models do: after the callbacks' hook); validation reports the scripted ``VAL`` values."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.losses: list[float] = []

    def on_train_epoch_start(self) -> None:
        self.losses = []

    def training_step(self, batch, batch_idx):
        loss = ((self.w * batch[0]) ** 2).mean()
        self.losses.append(float(loss))
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/loss", sum(self.losses) / len(self.losses), on_epoch=True)

    def validation_step(self, batch, batch_idx) -> None:
        pass

    def on_validation_epoch_end(self) -> None:
        self.log("val/recall@50", VAL[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("progress_bar", [False, True])
def test_one_log_line_per_epoch_without_progress_bar(tmp_path, caplog, progress_bar):
    from torch.utils.data import DataLoader, TensorDataset

    from graphrecall.training import fit_with_selection

    trainer = {"max_epochs": 3, "accelerator": "cpu", "devices": 1, "enable_progress_bar": progress_bar,
               "enable_model_summary": False, "num_sanity_val_steps": 0, "log_every_n_steps": 1,
               "early_stopping_patience": 0}
    loader = DataLoader(TensorDataset(torch.linspace(0.5, 1.5, 8)), batch_size=4)
    with caplog.at_level(logging.INFO, logger="graphrecall.train"):
        fit_with_selection(Scripted(), loader, trainer, {"name": "csv"}, tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.name == "graphrecall.train"]
    if progress_bar:
        assert lines == []
        return
    csv = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    losses = csv.dropna(subset=["train/loss"]).groupby("epoch")["train/loss"].last().tolist()
    best = [(0.1, 1), (0.3, 2), (0.3, 2)]
    assert len(lines) == 3
    for epoch, line in enumerate(lines, start=1):
        match = re.fullmatch(r"epoch (\d)/3: train/loss (\S+), val/recall@50 (\S+) \(best (\S+) @ epoch (\d)\), "
                             r"(\d+\.\d) s", line)
        assert match, line
        assert int(match[1]) == epoch and match[2] == f"{losses[epoch - 1]:.4g}"
        assert float(match[3]) == VAL[epoch - 1] and (float(match[4]), int(match[5])) == best[epoch - 1]
