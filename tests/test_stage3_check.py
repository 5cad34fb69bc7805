"""experiments/stage3/check_runs.py on hand-made run folders: the largest logged false-negative share,
the stop reason and the exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT

SCRIPT = ROOT / "experiments" / "stage3" / "check_runs.py"


def make_run(folder: Path, overrides: list[str], false_negative: list[float], stopped: float, epochs: int) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / "metrics.json").write_text(json.dumps(
        {"metrics": {"val/fit/epochs": epochs, "val/fit/stopped_on_patience": stopped}}))
    log = folder / "csv" / "metrics.csv"
    log.parent.mkdir()
    rows = ["epoch,step,train/false_negative_share,train/fallback_share,val/recall@50"]
    for epoch, share in enumerate(false_negative):
        rows.append(f"{epoch},{10 * epoch + 9},{share},0.25,")
        rows.append(f"{epoch},{10 * epoch + 9},,,0.1")  # the validation row of the same epoch
    log.write_text("\n".join(rows) + "\n")


def run_check(*folders: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, folders)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""}, cwd=ROOT)


def test_clean_runs_pass(tmp_path):
    make_run(tmp_path / "sweep" / "0", ["debias=dice", "seed=0"], [0.0, 0.0, 0.0], stopped=1, epochs=3)
    make_run(tmp_path / "sweep" / "1", ["debias=bpr", "seed=1"], [0.0, 0.0], stopped=1, epochs=2)
    proc = run_check(tmp_path / "sweep")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| debias=dice seed=0 | 3 | 0 | 0.25 | - | 3 | 1 |" in proc.stdout
    assert "| debias=bpr seed=1 | 2 | 0 | 0.25 | - | 2 | 1 |" in proc.stdout
    assert "2 runs; 0 with" in proc.stdout


def test_a_false_negative_or_a_run_stopped_on_the_cap_fails(tmp_path):
    make_run(tmp_path / "a", ["debias=dice", "seed=0"], [0.0, 0.004, 0.0], stopped=1, epochs=3)
    make_run(tmp_path / "b", ["debias=bpr", "seed=0"], [0.0], stopped=0, epochs=400)
    make_run(tmp_path / "c", ["debias=ips_bpr", "seed=0"], [0.0], stopped=1, epochs=1)
    proc = run_check(tmp_path)
    assert proc.returncode == 1
    assert "| debias=dice seed=0 **(fails)** | 3 | 0.004 |" in proc.stdout
    assert "| debias=bpr seed=0 **(fails)** | 1 | 0 |" in proc.stdout
    assert "| debias=ips_bpr seed=0 | 1 | 0 |" in proc.stdout
    assert "3 runs; 2 with" in proc.stdout
