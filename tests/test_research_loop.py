"""Issue 24's done-when, end to end: the research loop a team shares.

``train.py -m model=sage,coclick seed=0,1 logger=wandb`` on the tiny synthetic world (offline) gives
one W&B run per job, co-click too, each holding the slice table with interval columns, the sample
users, interval summary keys, a readable group / name / tags and the results artefact; the sweep
prints its table and path and writes ``results.md``; ``graphrecall.report <sweep> --wandb`` makes an
offline report run with the table and the plot, and ``--wandb-report`` writes the report spec."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY
from tests.test_tracking import FAST, check_results, read_finished_run, read_table


@pytest.mark.slow
def test_a_wandb_sweep_gives_report_ready_runs_and_sums_itself_up(tmp_path):
    sweep = tmp_path / "sweep"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}  # no key: offline
    env.update(PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1", WANDB_DIR=str(tmp_path))
    cmd = [sys.executable, "train.py", "-m", "model=sage,coclick", "seed=0,1", "logger=wandb", *TINY, *FAST,
           "trainer.max_epochs=1", f"data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    # the sweep summed itself up: its table and path printed, results.md written
    assert f"sweep: {sweep}" in done.stdout and (sweep / "results.md").exists()
    results = (sweep / "results.md").read_text()
    assert "| model=sage aggregator=mean loss=bce dataset=synthetic | 2 |" in results
    assert "| model=coclick dataset=synthetic | 2 |" in results
    # one W&B run per job, the heuristic too, each with what a report is built from
    runs = {}
    for job in range(4):
        run = read_finished_run(sweep / str(job))
        check_results(run, sweep / str(job))  # slice tables with intervals, sample users, summaries, artefact
        slices = read_table(run, "results/slices")
        assert {"ci_low", "ci_high", "n_users"} <= set(slices.columns)
        runs[run["name"]] = run
    assert sorted(runs) == ["coclick-synthetic-s0", "coclick-synthetic-s1", "sage-mean-bce-synthetic-s0",
                            "sage-mean-bce-synthetic-s1"]
    assert {r["group"] for r in runs.values()} == {"train/sweep"} and {r["job_type"] for r in runs.values()} == {"train"}
    assert runs["coclick-synthetic-s0"]["tags"] == ["synthetic", "coclick", "baseline"]
    assert runs["sage-mean-bce-synthetic-s0"]["tags"] == ["synthetic", "sage", "stage1"]
    # the shared report: an offline report run in the sweep's group, then the report spec
    report = subprocess.run([sys.executable, "-m", "graphrecall.report", str(sweep), "--wandb", "--wandb-mode",
                             "offline", "--resamples", "100"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    identity = json.loads((sweep / "wandb_run.json").read_text())
    assert identity["job_type"] == "report" and identity["group"] == "train/sweep"
    (report_run,) = sweep.glob("wandb/offline-run-*")
    assert list(report_run.glob("files/media/table/report/results_*.table.json"))
    assert list(report_run.glob("files/media/images/report/plot_*.png"))
    spec = subprocess.run([sys.executable, "-m", "graphrecall.report", str(sweep), "--wandb-report", "--resamples",
                           "50"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert spec.returncode == 0, spec.stderr[-2000:]
    built = json.loads((sweep / "wandb_report.json").read_text())
    assert built["groups"] == ["train/sweep"] and any(b["type"] == "panel_grid" for b in built["blocks"])
