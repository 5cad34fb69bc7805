"""The merged score (recall.prior_weight, issue 26 item 5): trigger candidates and the recent-popularity
back-fill ranked in one list by ``(1 - lambda) m_u(c) + lambda p(c)``; hand-made lists, the mixture's
normalisation, the joint val-only choice of (beta, min_score, prior_weight), the saved choice, the
refusals, and an end-to-end co-click run re-evaluated from its folder."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import train as train_app
from graphrecall.config_checks import ConfigError, check_train_config
from graphrecall.data.schema import CONTENT_ID
from graphrecall.data.splits import Fold
from graphrecall.models.base import BACKFILL, MODEL
from graphrecall.models.i2i import PoolRecall, prior_weight_grid
from graphrecall.recall.pool import CandidatePool
from graphrecall.recall.triggers import aggregate_recall, recent_prior
from tests.conftest import TINY, compose_train

NAN = np.nan
M, B = MODEL, BACKFILL


def pool_of(rows: dict[int, list[tuple[int, float]]], num_contents: int, size: int) -> CandidatePool:
    """A pool from ``{content: [(neighbour, score), ...]}`` in rank order; other rows empty."""
    nb = np.full((num_contents, size), -1, dtype=np.int64)
    sc = np.full((num_contents, size), np.nan, dtype=np.float32)
    for c, entries in rows.items():
        for j, (n, s) in enumerate(entries):
            nb[c, j], sc[c, j] = n, s
    return CandidatePool(nb, sc)


# Contents 0..11. Next-click rows: 1 -> 2 (.9), 3 (.05); 0 -> 1 (.5), 3 (.4), 4 (.2), 6 (.1).
# Recent clicks: 7: 6, 8: 2, 2: 1, 5: 1 (10 in all: p = .6, .2, .1, .1); the back-fill order follows them.
# User 0 clicked 0 then 1 (triggers 1, 0 with weights 1, .5: mass 1.5); user 1 never clicked;
# user 2 clicked 1 only (mass 1).
RECENT = np.array([0, 0, 1, 0, 0, 1, 0, 6, 2, 0, 0, 0], dtype=np.float64)
FALLBACK = np.array([7, 8, 2, 5, 3, 6, 9, 4, 10, 11, 0, 1])
HISTORY = pd.DataFrame({"u": [0, 0, 2], "i": [0, 1, 1], "timestamp": [1, 2, 1]})


def hand_model(prior_weight=None, beta=0.0, share: float = 1.0, min_score=None) -> PoolRecall:
    model = PoolRecall(4, {"mode": "aggregate", "decay": 0.5, "max_triggers": 10, "share": share,
                           "popularity_beta": beta, "min_score": min_score, "prior_weight": prior_weight})
    model.pool = pool_of({1: [(2, 0.9), (3, 0.05)], 0: [(1, 0.5), (3, 0.4), (4, 0.2), (6, 0.1)]}, 12, 4)
    model.fallback, model.recent_popularity, model.recent_log_popularity = FALLBACK, RECENT, np.log1p(RECENT)
    return model


def serve(model: PoolRecall, k: int = 5, **kw):
    users = np.arange(3)
    context = model.user_context(users, Fold("test", HISTORY, HISTORY, HISTORY), 12)
    return model.serve(users, context, k, with_scores=True, **kw)


def test_recent_prior_is_the_recent_click_distribution() -> None:
    np.testing.assert_allclose(recent_prior(RECENT)[[7, 8, 2, 5]], [0.6, 0.2, 0.1, 0.1])
    assert recent_prior(RECENT).sum() == pytest.approx(1.0)
    assert recent_prior(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]  # an empty window: no prior


def test_off_serves_todays_lists_and_lambda_zero_their_order() -> None:
    off = serve(hand_model())
    # user 0: decayed sums 2: .9, 3: .05 + .5 * .4 = .25, 4: .1, 6: .05 (1 is seen); then the back-fill 7
    assert off.items.tolist() == [[2, 3, 4, 6, 7], [7, 8, 2, 5, 3], [2, 3, 7, 8, 5]]
    assert off.counters["from_triggers"].tolist() == [4, 0, 2] and off.counters["backfilled"].tolist() == [1, 5, 3]
    np.testing.assert_allclose(off.scores, [[0.9, 0.25, 0.1, 0.05, NAN], [NAN] * 5, [0.9, 0.05, NAN, NAN, NAN]],
                               rtol=1e-6)
    assert off.sources.tolist() == [[M, M, M, M, B], [B] * 5, [M, M, B, B, B]]
    # lambda 0: the same lists and counters; the scores are the mixtures m_u (decayed sums / mass)
    zero = serve(hand_model(0.0))
    assert zero.items.tolist() == off.items.tolist()
    for name in ("from_triggers", "backfilled"):
        assert zero.counters[name].tolist() == off.counters[name].tolist()
    assert zero.sources.tolist() == off.sources.tolist()
    np.testing.assert_allclose(zero.scores, [[0.9 / 1.5, 0.25 / 1.5, 0.1 / 1.5, 0.05 / 1.5, 0.0], [0.0] * 5,
                                             [0.9, 0.05, 0.0, 0.0, 0.0]], rtol=1e-6)


def test_half_weight_lifts_the_popular_content_to_rank_two() -> None:
    recs = serve(hand_model(0.5))
    # user 0: .5 m + .5 p: 2: .5 * .6 + .5 * .1 = .35, 7: .3, 8: .1, 3: .5 * .25 / 1.5 = 1/12, 5: .05,
    # 4: 1/30, 6: 1/60 -- content 7, appended at rank 5 today, is second
    assert recs.items[0].tolist() == [2, 7, 8, 3, 5]
    np.testing.assert_allclose(recs.scores[0], [0.35, 0.3, 0.1, 1 / 12, 0.05], rtol=1e-6)
    assert recs.sources[0].tolist() == [M, B, B, M, B]
    # user 1 (no trigger): the back-fill order, scored .5 p
    assert recs.items[1].tolist() == FALLBACK[:5].tolist()
    np.testing.assert_allclose(recs.scores[1], [0.3, 0.1, 0.05, 0.05, 0.0], rtol=1e-6)
    # user 2 (mass 1): 2: .5 * .9 + .05 = .5, 7: .3, 8: .1, 5: .05, 3: .5 * .05 = .025
    assert recs.items[2].tolist() == [2, 7, 8, 5, 3]
    np.testing.assert_allclose(recs.scores[2], [0.5, 0.3, 0.1, 0.05, 0.025], rtol=1e-6)
    assert recs.counters["from_triggers"].tolist() == [2, 0, 2] and recs.counters["backfilled"].tolist() == [3, 5, 3]
    assert recs.sources[2].tolist() == [M, B, B, B, M]


def test_the_mixture_is_normalised_by_the_triggers_decayed_mass() -> None:
    # the same next-click row reached from a lone trigger (mass 1) or as the newest of two (mass 1.5)
    pool = pool_of({0: [(5, 0.6)], 1: [(5, 0.3), (6, 0.3)]}, 8, 2)
    seen = np.zeros((3, 8), dtype=np.int8)
    prior = np.zeros(8)
    res = aggregate_recall(pool, [np.array([0]), np.array([0, 1]), np.array([1, 0])], sp.csr_matrix(seen), 2,
                           decay=0.5, fallback=np.arange(8), prior=prior, prior_weight=0.0, with_scores=True)
    # user 0: 5: .6; user 1: 5: (.6 + .5 * .3) / 1.5 = .5, 6: .15 / 1.5 = .1; user 2: 5: (.3 + .3) / 1.5 = .4, 6: .2
    np.testing.assert_allclose(res.scores, [[0.6, 0.0], [0.5, 0.1], [0.4, 0.2]], rtol=1e-6)
    assert res.recs.tolist() == [[5, 0], [5, 6], [5, 6]]
    assert res.model_entries.tolist() == [[True, False], [True, True], [True, True]]


def test_the_bonus_stays_additive_and_trigger_slots_cap_the_model_entries() -> None:
    recs = serve(hand_model(0.5, beta=0.1))
    bonus = 0.1 * np.log1p(RECENT)
    # user 0: 7: .3 + b7, 2: .35 + b2, 8: .1 + b8, 5: .05 + b5, 3: 1/12
    assert recs.items[0].tolist() == [7, 2, 8, 5, 3]
    np.testing.assert_allclose(recs.scores[0], [0.3 + bonus[7], 0.35 + bonus[2], 0.1 + bonus[8], 0.05 + bonus[5],
                                                1 / 12], rtol=1e-6)
    # share .2 of 6 slots: one model entry (2); 3, 4 and 6 are dropped, never back-filled; the
    # back-fill's head (its first k + |seen| = 8) gives 7, 8, 5, 9, then 10 is appended
    capped = serve(hand_model(0.5, share=0.2), k=6)
    assert capped.items[0].tolist() == [2, 7, 8, 5, 9, 10]
    assert capped.counters["from_triggers"][0] == 1 and capped.counters["backfilled"][0] == 5
    np.testing.assert_allclose(capped.scores[0], [0.35, 0.3, 0.1, 0.05, 0.0, 0.0], rtol=1e-6)
    assert capped.sources[0].tolist() == [M, B, B, B, B, B]


def test_a_channel_cut_counts_the_merged_entries_it_keeps() -> None:
    # channel "new" (one slot) serves 9 from row 1 (score 1 * .5); the main list, served without 9,
    # is 2, 7, 8, 3 at lambda .5 and keeps its first 3 entries: one model entry, not two
    model = PoolRecall(4, {"mode": "aggregate", "decay": 0.5, "prior_weight": 0.5, "channels": {"new": {"slots": 1}}})
    base = hand_model()
    model.pool, model.fallback = base.pool, base.fallback
    model.recent_popularity, model.recent_log_popularity = base.recent_popularity, base.recent_log_popularity
    model.channels["new"].pool = pool_of({1: [(9, 0.5)]}, 12, 1)
    users = np.arange(1)
    context = model.user_context(users, Fold("test", HISTORY, HISTORY, HISTORY), 12)
    recs = model.serve(users, context, 4, with_scores=True)
    assert recs.items.tolist() == [[2, 7, 8, 9]]
    assert recs.source_labels().tolist() == [["model", "backfill", "backfill", "channel:new"]]
    assert (recs.counters["from_triggers"][0], recs.counters["backfilled"][0], recs.counters["channel_new"][0]) == \
        (1, 2, 1)
    np.testing.assert_allclose(recs.scores, [[0.35, 0.3, 0.1, 0.5]], rtol=1e-6)
    plain = model.serve(users, context, 4)  # validation serves: the same counters without scores
    assert plain.scores is None and plain.sources is None
    assert plain.counters["from_triggers"].tolist() == [1] and plain.counters["backfilled"].tolist() == [2]


def choice_model(prior_weight, min_score=None) -> PoolRecall:
    """120 contents; content 0's row holds 1..50 at next-click probability .01 (a full list); the
    back-fill starts with 100, the only recently clicked content (p = 1), then 101..119, then 1..50."""
    model = PoolRecall(50, {"mode": "aggregate", "decay": 0.8, "max_triggers": 10, "popularity_beta": 0,
                            "min_score": min_score, "prior_weight": prior_weight})
    model.pool = pool_of({0: [(c, 0.01) for c in range(1, 51)]}, 120, 50)
    model.fallback = np.r_[100:120, 1:100]
    recent = np.zeros(120)
    recent[100] = 10
    model.recent_popularity, model.recent_log_popularity = recent, np.log1p(recent)
    return model


CHOICE_HISTORY = pd.DataFrame({"u": [0], "i": [0], "timestamp": [1]})


def val_fold(target: int) -> Fold:
    return Fold("val", CHOICE_HISTORY, CHOICE_HISTORY, pd.DataFrame({"u": [0], "i": [target], "timestamp": [2]}))


def test_the_prior_weight_is_chosen_with_min_score_on_val_prior_weight_outermost() -> None:
    data = SimpleNamespace(num_contents=120)
    # target 100: off serves the 50 neighbours (recall 0); every merged list starts with 100 (.5 * 1
    # against .5 * .01), and so does the cut-off .02 (above every neighbour: back-fill alone)
    model = choice_model([None, 0.5, 0.9], min_score=[None, 0.02])
    assert model.serving_settings()[:3] == [(0.0, -np.inf, None), (0.0, 0.02, None), (0.0, -np.inf, 0.5)]
    assert not model.serving_chosen
    info = model.choose_serving(val_fold(100), data)
    expected = {"off_off": 0.0, "0.02_off": 1.0, "off_0.5": 1.0, "0.02_0.5": 1.0, "off_0.9": 1.0, "0.02_0.9": 1.0}
    for tag, r in expected.items():
        m, w = tag.split("_")
        assert info[f"serving/val_recall@50_beta=0_min_score={m}_prior_weight={w}"] == r
    # ties go to the first triple: prior_weight is outermost, so off with the cut-off wins
    assert (model.prior_weight, model.min_score) == (None, 0.02) and model.serving_chosen
    assert info["serving/prior_weight_index"] == 0 and "serving/prior_weight" not in info
    assert info["serving/min_score_index"] == 1
    # without the cut-off grid: .5 and .9 tie at 1, the first (.5) is chosen
    model = choice_model([None, 0.5, 0.9])
    info = model.choose_serving(val_fold(100), data)
    assert model.prior_weight == 0.5 and info["serving/prior_weight"] == 0.5 and info["serving/prior_weight_index"] == 1
    assert info["serving/val_recall@50_beta=0_prior_weight=off"] == 0.0
    assert info["serving/val_recall@50_beta=0_prior_weight=0.9"] == 1.0
    # a target among the neighbours (1 comes first of them in the back-fill order): every setting
    # ties at 1 and off, the first, is kept
    model = choice_model([None, 0.5])
    model.choose_serving(val_fold(1), data)
    assert model.prior_weight is None and model.serving_chosen
    with pytest.raises(ValueError, match="val fold"):
        choice_model([None, 0.5]).choose_serving(Fold("test", CHOICE_HISTORY, CHOICE_HISTORY, CHOICE_HISTORY), data)
    unchosen = choice_model([None, 0.5])
    with pytest.raises(ValueError, match="prior_weight is a grid"):
        unchosen.serve(np.arange(1), unchosen.user_context(np.arange(1), val_fold(1), 120), 3)


def test_the_chosen_prior_weight_is_saved_and_restored(tmp_path: Path) -> None:
    dataset = SimpleNamespace(contents=pd.DataFrame({CONTENT_ID: [f"c{i}" for i in range(120)]}))
    users = np.arange(1)
    for chosen in (0.5, None):
        model = choice_model([None, 0.5])
        model.prior_weight, model.prior_weight_chosen = chosen, True
        model.save(tmp_path, dataset)
        assert json.loads((tmp_path / "serving.json").read_text())["prior_weight"] == chosen
        again = choice_model([None, 0.5])
        again.load(tmp_path, None, dataset)
        assert again.serving_chosen and again.prior_weight == chosen
        np.testing.assert_array_equal(again.recent_popularity, model.recent_popularity)
        context = model.user_context(users, val_fold(1), 120)
        first, second = model.serve(users, context, 50, with_scores=True), again.serve(users, context, 50,
                                                                                         with_scores=True)
        np.testing.assert_array_equal(first.items, second.items)
        np.testing.assert_array_equal(first.scores, second.scores)
        fixed = choice_model(0.9)  # a fixed weight is the config's own
        fixed.load(tmp_path, None, dataset)
        assert fixed.prior_weight == 0.9
    unchosen = choice_model([None, 0.5])  # a grid never chosen is not written
    unchosen.save(tmp_path, dataset)
    assert "prior_weight" not in json.loads((tmp_path / "serving.json").read_text())


def test_refusals() -> None:
    assert prior_weight_grid(None) == [None] and prior_weight_grid([None, 0, 1]) == [None, 0.0, 1.0]
    for bad in ([], 1.5, [None, -0.1], float("nan")):
        with pytest.raises(ValueError, match="prior_weight"):
            prior_weight_grid(bad)
    with pytest.raises(ValueError, match="recall.prior_weight needs recall.mode=aggregate"):
        PoolRecall(4, {"mode": "quota", "prior_weight": [None, 0.3]})
    PoolRecall(4, {"mode": "quota", "prior_weight": None})  # off: nothing to refuse
    quota = hand_model()
    quota.trigger_cfg["mode"] = "quota"
    with pytest.raises(ValueError, match="prior_weight=0.3 needs recall.mode=aggregate"):
        serve(quota, prior_weight=0.3)
    # signed pool scores (inner products) are on no scale to mix with a probability
    signed = hand_model(0.5)
    signed.pool = pool_of({0: [(2, 0.4), (3, -0.2)]}, 12, 2)
    with pytest.raises(ValueError, match="non-negative pool scores"):
        serve(signed)


def test_config_checks_the_prior_weight(tiny_cfg) -> None:
    check_train_config(tiny_cfg(["model=coclick", "recall.mode=aggregate", "recall.prior_weight=[null,0.3]"]))
    check_train_config(tiny_cfg(["model=sage_next_click", "recall.prior_weight=0.2"]))
    check_train_config(tiny_cfg(["model=sage_next_click_merged"]))
    check_train_config(tiny_cfg(["model=m2grl_next_click_merged"]))
    check_train_config(tiny_cfg(["model=mf"]))  # null: nothing to refuse
    with pytest.raises(ConfigError, match="recall.prior_weight.*no pool"):
        check_train_config(tiny_cfg(["model=mf", "recall.prior_weight=0.3"]))
    with pytest.raises(ConfigError, match="needs recall.mode=aggregate"):
        check_train_config(tiny_cfg(["model=coclick", "recall.prior_weight=0.3"]))
    with pytest.raises(ConfigError, match="pool_score=probability"):
        check_train_config(tiny_cfg(["model=sage", "recall.mode=aggregate", "recall.prior_weight=0.3"]))
    with pytest.raises(ConfigError, match="recall.prior_weight"):
        check_train_config(tiny_cfg(["model=coclick", "recall.mode=aggregate", "recall.prior_weight=1.5"]))
    with pytest.raises(ConfigError, match="recall.prior_weight"):
        check_train_config(tiny_cfg(["model=coclick", "recall.mode=aggregate", "recall.prior_weight=high"]))
    # the merged recipes set their own grid: recall.prior_weight would be ignored, so it is refused
    with pytest.raises(ConfigError, match="override model.triggers.prior_weight"):
        check_train_config(tiny_cfg(["model=sage_next_click_merged", "recall.prior_weight=0.3"]))
    with pytest.raises(ConfigError, match="model.triggers.prior_weight"):
        check_train_config(tiny_cfg(["model=sage_next_click_merged", "model.triggers.prior_weight=[null,2]"]))
    cfg = tiny_cfg(["model=m2grl_next_click_merged"])
    assert list(cfg.model.triggers.prior_weight) == [None, 0.05, 0.1, 0.2, 0.3, 0.5]
    assert list(cfg.model.triggers.popularity_beta) == [0] and len(cfg.model.triggers.min_score) == 9


def test_coclick_with_a_prior_weight_grid_end_to_end_and_re_evaluated(tmp_path: Path) -> None:
    import evaluate as evaluate_app
    from omegaconf import OmegaConf

    from tests.conftest import ROOT

    cfg = compose_train(tmp_path, [*TINY, "model=coclick", "recall.mode=aggregate", "recall.prior_weight=[null,0.3]"])
    metrics, objects = train_app.train(cfg)
    model = objects["model"]
    grid = [None, 0.3]
    index = int(metrics["val/fit/serving/prior_weight_index"])
    assert model.prior_weight == grid[index]
    assert ("val/fit/serving/prior_weight" in metrics) == (grid[index] is not None)
    by = [metrics[f"val/fit/serving/val_recall@50_beta=0_prior_weight={w}"] for w in ("off", "0.3")]
    assert by[index] == max(by) and (index == 0 or by[1] > by[0])  # ties: off
    saved = json.loads((Path(cfg.run_dir) / "serving.json").read_text())
    assert saved["prior_weight"] == grid[index]
    ecfg = OmegaConf.load(ROOT / "conf" / "evaluate.yaml")
    ecfg.pop("hydra")
    ecfg.run_dir, ecfg.eval.bootstrap.num_resamples = str(cfg.run_dir), 20
    ecfg.out_dir = str(Path(cfg.run_dir).parent / "evaluate")
    again = evaluate_app.evaluate(ecfg)
    assert again["test/recall@50"] == pytest.approx(metrics["test/recall@50"], abs=1e-12)
    assert again["test/ndcg@50"] == pytest.approx(metrics["test/ndcg@50"], abs=1e-12)
