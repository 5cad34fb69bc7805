"""The per-trigger confidence cut-off (recall.min_score, issue 10): a trigger serves only its pool
entries scoring at or above the cut-off and the back-fill takes the freed slots; hand-made pools,
the joint val-only choice with popularity_beta, the saved choice, the config check and an
end-to-end co-click run re-evaluated from its folder."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import train as train_app
from graphrecall.config_checks import ConfigError, check_train_config
from graphrecall.data.schema import CONTENT_ID
from graphrecall.data.splits import Fold
from graphrecall.models.i2i import PoolRecall, min_score_grid
from graphrecall.recall.pool import CandidatePool
from tests.conftest import TINY, compose_train

NAN = np.nan


def test_min_score_grid_reads_null_as_off() -> None:
    assert min_score_grid(None) == [-np.inf]
    assert min_score_grid(0.01) == [0.01]
    assert min_score_grid([None, 0.1, 1]) == [-np.inf, 0.1, 1.0]
    for bad in ([], [float("nan")]):
        with pytest.raises(ValueError, match="min_score"):
            min_score_grid(bad)


def test_confident_pool_keeps_each_rows_prefix_at_or_above_the_cut_off() -> None:
    model = PoolRecall(3)
    model.pool = CandidatePool(np.array([[1, 2, 3], [0, -1, -1], [1, 0, 3]]),
                               np.array([[0.5, 0.2, 0.05], [0.3, NAN, NAN], [0.1, 0.1, 0.09]], dtype=np.float32))
    assert model.confident_pool(-np.inf) is model.pool  # off: the pool itself
    cut = model.confident_pool(0.1)
    assert cut.neighbors.tolist() == [[1, 2, -1], [0, -1, -1], [1, 0, -1]]  # 0.1 itself is kept
    assert np.isnan(cut.scores[0, 2]) and cut.scores[2].tolist()[:2] == pytest.approx([0.1, 0.1])
    assert model.confident_pool(0.1) is cut  # cached for this pool object
    assert (model.confident_pool(0.6).neighbors == -1).all()
    model.pool = CandidatePool(np.array([[1, 2, 3]] * 3), np.full((3, 3), 0.2, dtype=np.float32))
    assert model.confident_pool(0.1).neighbors.tolist() == [[1, 2, 3]] * 3  # a new pool: cut again


@pytest.mark.parametrize("mode", ["quota", "aggregate"])
def test_weak_neighbours_give_their_slots_to_the_backfill(mode: str) -> None:
    # the user clicked content 0; its row offers 1 (0.5) and 2 (0.05); the back-fill order is 3, 4, 2, 1
    model = PoolRecall(2, {"mode": mode, "decay": 0.8, "max_triggers": 10})
    model.pool = CandidatePool(np.array([[1, 2]] + [[-1, -1]] * 4),
                               np.array([[0.5, 0.05]] + [[NAN, NAN]] * 4, dtype=np.float32))
    model.fallback, model.recent_log_popularity = np.array([3, 4, 2, 1]), np.zeros(5)
    history = pd.DataFrame({"u": [0], "i": [0], "timestamp": [1]})
    context = model.user_context(np.arange(1), Fold("test", history, history, history), 5)
    off = model.serve(np.arange(1), context, 3)
    assert off.items[0].tolist() == [1, 2, 3] and off.counters["backfilled"].tolist() == [1]
    cut = model.serve(np.arange(1), context, 3, min_score=0.1)
    assert cut.items[0].tolist() == [1, 3, 4] and cut.counters["backfilled"].tolist() == [2]


def cut_off_model(min_score, beta=0.0) -> PoolRecall:
    """60 contents; content 0's row holds 1 (score 0.5) and 2..50 (0.05): 50 entries, a full list.
    The back-fill starts with 55."""
    model = PoolRecall(50, {"mode": "aggregate", "decay": 0.8, "max_triggers": 10, "popularity_beta": beta,
                            "min_score": min_score})
    nb = np.full((60, 50), -1)
    sc = np.full((60, 50), NAN, dtype=np.float32)
    nb[0], sc[0] = np.arange(1, 51), np.r_[0.5, np.full(49, 0.05)]
    model.pool = CandidatePool(nb, sc)
    model.fallback = np.r_[55, 51:55, 56:60, 1:51]
    model.recent_log_popularity = np.zeros(60)
    return model


def test_the_cut_off_is_chosen_with_beta_on_val_only() -> None:
    history = pd.DataFrame({"u": [0], "i": [0], "timestamp": [1]})
    val = Fold("val", history, history, pd.DataFrame({"u": [0], "i": [55], "timestamp": [2]}))
    data = SimpleNamespace(num_contents=60)
    # without a cut the 50 neighbours fill the list (recall 0); at 0.1 only content 1 stays and the
    # back-fill reaches 55 (recall 1): validation chooses 0.1
    model = cut_off_model([None, 0.1, 0.6], beta=[0, 1])
    assert not model.serving_chosen
    info = model.choose_serving(val, data)
    assert (model.min_score, model.popularity_beta) == (0.1, 0.0) and model.serving_chosen
    assert info["serving/min_score"] == 0.1 and info["serving/min_score_index"] == 1
    assert info["serving/val_recall@50_beta=0_min_score=off"] == 0.0
    assert info["serving/val_recall@50_beta=1_min_score=0.1"] == 1.0
    assert info["serving/val_recall@50_beta=0_min_score=0.6"] == 1.0  # a tie: the earlier cut-off wins
    # a target among the neighbours: every setting ties, the first (off, beta 0) is kept
    model = cut_off_model([None, 0.1], beta=[0, 1])
    val_tie = Fold("val", history, history, pd.DataFrame({"u": [0], "i": [1], "timestamp": [2]}))
    info = model.choose_serving(val_tie, data)
    assert model.min_score == -np.inf and model.popularity_beta == 0.0 and "serving/min_score" not in info
    with pytest.raises(ValueError, match="val fold"):
        cut_off_model([None, 0.1]).choose_serving(Fold("test", history, history, history), data)
    unchosen = cut_off_model([None, 0.1])
    with pytest.raises(ValueError, match="min_score is a grid"):  # never served before the choice
        unchosen.serve(np.arange(1), unchosen.user_context(np.arange(1), val, 60), 3)


def test_the_chosen_cut_off_is_saved_and_restored(tmp_path) -> None:
    dataset = SimpleNamespace(contents=pd.DataFrame({CONTENT_ID: [f"c{i}" for i in range(60)]}))
    for chosen, saved in ((0.1, 0.1), (-np.inf, None)):
        model = cut_off_model([None, 0.1])
        model.min_score = chosen
        model.save(tmp_path, dataset)
        import json

        assert json.loads((tmp_path / "serving.json").read_text())["min_score"] == saved
        again = cut_off_model([None, 0.1])
        again.load(tmp_path, None, dataset)
        assert again.min_score == chosen
        fixed = cut_off_model(0.6)  # a fixed cut-off is the config's own
        fixed.load(tmp_path, None, dataset)
        assert fixed.min_score == 0.6


def test_config_checks_the_cut_off(tiny_cfg) -> None:
    check_train_config(tiny_cfg(["model=coclick", "recall.min_score=[null,0.01]"]))
    check_train_config(tiny_cfg(["model=sage_next_click", "recall.min_score=0.01"]))
    check_train_config(tiny_cfg(["model=mf"]))  # null: nothing to refuse
    with pytest.raises(ConfigError, match="recall.min_score.*no pool"):
        check_train_config(tiny_cfg(["model=mf", "recall.min_score=0.01"]))
    with pytest.raises(ConfigError, match="recall.min_score"):
        check_train_config(tiny_cfg(["model=coclick", "recall.min_score=high"]))
    # the confident recipe sets its own grid: recall.<key> would be ignored, so it is refused
    check_train_config(tiny_cfg(["model=sage_next_click_confident", "model.triggers.min_score=null"]))
    with pytest.raises(ConfigError, match="model.triggers.min_score"):
        check_train_config(tiny_cfg(["model=sage_next_click_confident", "model.triggers.min_score=[null,high]"]))
    with pytest.raises(ConfigError, match="override model.triggers.min_score"):
        check_train_config(tiny_cfg(["model=sage_next_click_confident", "recall.min_score=0.01"]))
    with pytest.raises(ConfigError, match="override model.triggers.popularity_beta"):
        check_train_config(tiny_cfg(["model=sage_next_click", "recall.popularity_beta=1.0"]))
    check_train_config(tiny_cfg(["model=coclick", "recall.mode=aggregate", "recall.popularity_beta=[0,1]"]))


def test_coclick_with_a_cut_off_grid_end_to_end_and_re_evaluated(tmp_path) -> None:
    import evaluate as evaluate_app
    from omegaconf import OmegaConf

    from tests.conftest import ROOT

    cfg = compose_train(tmp_path, [*TINY, "model=coclick", "recall.min_score=[null,0.05,1000]"])
    metrics, objects = train_app.train(cfg)
    model = objects["model"]
    grid = [-np.inf, 0.05, 1000.0]
    assert model.min_score == grid[int(metrics["val/fit/serving/min_score_index"])]
    by = {m: metrics[f"val/fit/serving/val_recall@50_beta=0_min_score={m}"] for m in ("off", "0.05", "1000")}
    assert max(by.values()) == by[["off", "0.05", "1000"][int(metrics["val/fit/serving/min_score_index"])]]
    # a cut-off above every co-click weight serves the back-fill alone: recent popularity
    popular = compose_train(tmp_path / "p", [*TINY, "model=popular"])
    pop_metrics, _ = train_app.train(popular)
    assert by["1000"] == pytest.approx(pop_metrics["val/recall@50"], abs=1e-12)
    ecfg = OmegaConf.load(ROOT / "conf" / "evaluate.yaml")
    ecfg.pop("hydra")
    ecfg.run_dir, ecfg.eval.bootstrap.num_resamples = str(cfg.run_dir), 20
    ecfg.out_dir = str(Path(cfg.run_dir).parent / "evaluate")
    again = evaluate_app.evaluate(ecfg)
    assert again["test/recall@50"] == pytest.approx(metrics["test/recall@50"], abs=1e-12)
