"""One seed, one result (issue 25): every run pins its thread count (``threads``, default 1), so the
documented command gives the same metrics whatever the machine's default thread count."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from graphrecall.config_checks import ConfigError, check_train_config
from graphrecall.determinism import check_threads, pin_threads
from tests.conftest import ROOT, TINY, compose_train

RECIPE = [*TINY, "model=sage_next_click_confident", "trainer.max_epochs=3", "trainer.enable_progress_bar=false"]


def run_train(out, env_threads: str, extra: tuple[str, ...] = ()) -> dict:
    """train.py in a fresh process, with the machine's default thread count set by ``OMP_NUM_THREADS``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": env_threads, "MKL_NUM_THREADS": env_threads}
    cmd = [sys.executable, str(ROOT / "train.py"), *RECIPE, *extra, f"hydra.run.dir={out}",
           f"data_dir={out.parent / 'data'}", f"cache_dir={out.parent / 'cache'}"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def results(record: dict) -> dict[str, float]:
    """Every metric except wall times."""
    return {k: v for k, v in record["metrics"].items() if "seconds" not in k and "_time" not in k}


@pytest.mark.slow
def test_same_seed_same_metrics_whatever_the_machine_threads(tmp_path):
    one = run_train(tmp_path / "one", "1")
    two = run_train(tmp_path / "two", "2")
    assert one["details"]["runtime"] == {"threads": 1, "torch_threads": 1}
    assert two["details"]["runtime"] == {"threads": 1, "torch_threads": 1}  # pinned despite OMP_NUM_THREADS=2
    a, b = results(one), results(two)
    assert a.keys() == b.keys() and "test/recall@50" in a
    assert a == b  # bit for bit: the same epochs, serving choices and metrics
    # the setting is part of the resolved config saved with the run
    assert json.loads((tmp_path / "two" / "config_resolved.json").read_text())["threads"] == 1


def test_threads_setting_is_checked_and_applied(tmp_path):
    before = torch.get_num_threads()
    try:
        assert pin_threads(2) == {"threads": 2, "torch_threads": 2}
        assert pin_threads(1)["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)
    assert check_threads(None) is None and check_threads(3) == 3
    for bad in (0, -1, 1.5, "abc", True):
        with pytest.raises(ValueError, match="threads="):
            check_threads(bad)
    with pytest.raises(ConfigError, match="threads=0: expected a whole number of threads >= 1"):
        check_train_config(compose_train(tmp_path, [*TINY, "threads=0"]))
