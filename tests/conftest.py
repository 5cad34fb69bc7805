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


def assert_pool_weight_choice(metrics: dict[str, float], grid: list[float], floor: float) -> float:
    """A pool-weight grid run's logged choice (``val/fit/pool_weight*``) follows the rule, recomputed
    here from the weights' logged validation recall and coverage: the best recall among the weights at
    or above ``floor`` (ties: grid order), the floor met; the run's own validation evaluation is the
    chosen weight's. Returns the chosen weight."""
    recall = {w: metrics[f"val/fit/pool_weight/val_recall@50_w={w:g}"] for w in grid}
    coverage = {w: metrics[f"val/fit/pool_weight/val_coverage@50_w={w:g}"] for w in grid}
    eligible = [w for w in grid if coverage[w] >= floor]
    assert eligible and metrics["val/fit/pool_weight_floor_met"] == 1.0
    chosen = max(eligible, key=lambda w: (recall[w], -grid.index(w)))
    assert metrics["val/fit/pool_weight"] == chosen
    assert metrics["val/recall@50"] == recall[chosen] and metrics["val/coverage@50"] == coverage[chosen]
    return chosen
