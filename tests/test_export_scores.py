"""Exported lists carry each entry's real model score and its source (issue 24, item 5).

Every expected score is written out by hand in the comments (hand-made pools, vectors and clicks);
the end-to-end runs recompute the aggregate score from the saved pool, independently of the code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import train as train_app
from graphrecall.data.splits import DAY, Fold, encode_clicks
from graphrecall.evaluation import export_recommendations
from graphrecall.models.base import (
    BACKFILL,
    MODEL,
    NO_SOURCE,
    Recommendations,
    block_sources,
    source_labels,
)
from graphrecall.models.i2i import PoolRecall
from graphrecall.models.popular import PopularRecall
from graphrecall.models.u2i import top_k_by_score
from graphrecall.recall.channels import merge_channels
from graphrecall.recall.pool import CandidatePool
from graphrecall.recall.triggers import TriggerRecallResult, aggregate_recall, recall_with_triggers
from tests.conftest import TINY, compose_train
from tests.test_models_baselines import POP_LOG, USERS, dataset, names, rows
from tests.test_u2i import bare_mf, click_frame

NAN = np.nan


def pool_of(rows_: dict[int, list[tuple[int, float]]], num_contents: int, size: int) -> CandidatePool:
    """A pool from ``{content: [(neighbour, score), ...]}`` in rank order; other rows empty."""
    nb = np.full((num_contents, size), -1, dtype=np.int64)
    sc = np.full((num_contents, size), np.nan, dtype=np.float32)
    for c, entries in rows_.items():
        for j, (n, s) in enumerate(entries):
            nb[c, j], sc[c, j] = n, s
    return CandidatePool(nb, sc)


def seen_of(per_user: list[list[int]], num_contents: int) -> sp.csr_matrix:
    r = [u for u, cs in enumerate(per_user) for _ in cs]
    c = [x for cs in per_user for x in cs]
    return sp.csr_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(len(per_user), num_contents))


# contents 0..6; row 0: 1 (.9), 2 (.6), 3 (.3); row 4: 2 (.8), 5 (.7), 1 (.1)
HAND = pool_of({0: [(1, 0.9), (2, 0.6), (3, 0.3)], 4: [(2, 0.8), (5, 0.7), (1, 0.1)]}, 7, 3)
FALLBACK = np.array([6, 5, 3, 1, 0, 2, 4])


# ------------------------------------------------------------------------------- the codes
def test_block_sources_and_their_names() -> None:
    codes = block_sources([(MODEL, np.array([2, 0, 1])), (BACKFILL, np.array([1, 2, 0])), (2, np.array([1, 0, 0]))], 4)
    assert codes.dtype == np.int8
    assert codes.tolist() == [[0, 0, 1, 2], [1, 1, -1, -1], [0, -1, -1, -1]]
    names_ = ("model", "backfill", "channel:new")
    assert source_labels(codes, names_).tolist() == [["model", "model", "backfill", "channel:new"],
                                                    ["backfill", "backfill", "", ""], ["model", "", "", ""]]
    with pytest.raises(ValueError, match="source codes"):
        source_labels(np.array([3]), names_)


# ------------------------------------------------------------------------------- i2i serving
def test_quota_scores_are_the_pool_score_of_the_trigger_that_brought_the_entry() -> None:
    # user 0: triggers 0 (newest), 4; seen 0, 4; k = 4, decay .5: quotas 4 * (2/3, 1/3) = 2.67, 1.33
    # -> 3, 1. Trigger 0 takes 1 (.9), 2 (.6), 3 (.3); trigger 4 finds 2 taken and takes 5 (.7).
    # Order by (neighbour rank, trigger rank): 1, 2, 5, 3. Content 2 came from trigger 0: .6, not .8.
    # user 1: trigger 4 takes 2 (.8), 5 (.7), 1 (.1); its row ends; back-fill: 6 -> NaN
    res = recall_with_triggers(HAND, [np.array([0, 4]), np.array([4])], seen_of([[0, 4], [4]], 7), 4,
                               decay=0.5, fallback=FALLBACK, with_scores=True)
    assert res.recs.tolist() == [[1, 2, 5, 3], [2, 5, 1, 6]]
    np.testing.assert_allclose(res.scores, [[0.9, 0.6, 0.7, 0.3], [0.8, 0.7, 0.1, NAN]], rtol=1e-6)
    assert res.from_triggers.tolist() == [4, 3] and res.backfilled.tolist() == [0, 1]
    off = recall_with_triggers(HAND, [np.array([0, 4]), np.array([4])], seen_of([[0, 4], [4]], 7), 4,
                               decay=0.5, fallback=FALLBACK)
    assert off.scores is None and np.array_equal(off.recs, res.recs)


def test_aggregate_scores_are_the_decayed_sum_plus_the_bonus() -> None:
    # triggers 0 (weight 1), 4 (weight .5); bonus: 1 -> .1, 3 -> .2
    # s(1) = .9 + .5 * .1 + .1 = 1.05; s(2) = .6 + .5 * .8 = 1.0; s(3) = .3 + .2 = .5; s(5) = .5 * .7 = .35
    # then the back-fill (k = 5): 6 -> NaN
    bonus = np.array([0, 0.1, 0, 0.2, 0, 0, 0])
    res = aggregate_recall(HAND, [np.array([0, 4])], seen_of([[0, 4]], 7), 5, decay=0.5, fallback=FALLBACK,
                           bonus=bonus, with_scores=True)
    assert res.recs.tolist() == [[1, 2, 3, 5, 6]]
    np.testing.assert_allclose(res.scores, [[1.05, 1.0, 0.5, 0.35, NAN]], rtol=1e-6)
    assert (res.from_triggers[0], res.backfilled[0]) == (4, 1)


def test_aggregate_scores_of_signed_rows_are_reported_on_their_true_scale() -> None:
    # row 0: 1 (.5), 2 (-.4) -> floor -.4; row 4: 2 (.2), 3 (-.6) -> floor -.6. Triggers 0 (1), 4 (.5);
    # a row without the candidate adds its floor:
    # s(1) = .5 + .5 * (-.6) = .2; s(2) = -.4 + .5 * .2 = -.3; s(3) = -.4 + .5 * (-.6) = -.7
    pool = pool_of({0: [(1, 0.5), (2, -0.4)], 4: [(2, 0.2), (3, -0.6)]}, 5, 2)
    res = aggregate_recall(pool, [np.array([0, 4])], seen_of([[0, 4]], 5), 3, decay=0.5, with_scores=True)
    assert res.recs.tolist() == [[1, 2, 3]]
    np.testing.assert_allclose(res.scores, [[0.2, -0.3, -0.7]], rtol=1e-6)


def test_merged_channel_entries_keep_their_channel_score() -> None:
    # user 0: main 7 (.9), 8 (.8) from triggers, 9, 6 back-fill; channel "new": 1 (.3). K = 4:
    # main keeps 3 entries (7, 8, 9), then the channel's 1
    main = TriggerRecallResult(np.array([[7, 8, 9, 6]]), np.array([2]), np.array([2]),
                               np.array([[0.9, 0.8, NAN, NAN]]))
    res, used = merge_channels(main, [np.array([[1, -1]])], 4, [np.array([[0.3, NAN]])])
    assert res.recs.tolist() == [[7, 8, 9, 1]] and used[0].tolist() == [1]
    np.testing.assert_allclose(res.scores, [[0.9, 0.8, NAN, 0.3]])
    assert merge_channels(main, [np.array([[1, -1]])], 4)[0].scores is None  # channel scores not given


def channel_model() -> PoolRecall:
    # contents 0..5; main pool: 0 -> 2 (.5), 3 (.2); 1 -> 3 (.4), 4 (.3). Channel "new": 0 -> 5 (.3), 4 (.1);
    # 1 -> 4 (.2), 5 (.05); one slot
    model = PoolRecall(2, {"mode": "aggregate", "decay": 0.5, "channels": {"new": {"slots": 1}}})
    model.pool = pool_of({0: [(2, 0.5), (3, 0.2)], 1: [(3, 0.4), (4, 0.3)]}, 6, 2)
    model.channels["new"].pool = pool_of({0: [(5, 0.3), (4, 0.1)], 1: [(4, 0.2), (5, 0.05)]}, 6, 2)
    model.fallback = np.array([5, 4, 3, 2, 1, 0])
    model.recent_log_popularity = np.zeros(6)
    return model


def test_pool_recall_serves_scores_and_sources_with_a_channel() -> None:
    # user 0: triggers 1 (weight 1), 0 (.5); seen 0, 1.
    # channel "new": 4 = .2 + .5 * .1 = .25, 5 = .05 + .5 * .3 = .2 -> 4 (.25) takes the slot;
    # main without 4: 3 = .4 + .5 * .2 = .5, 2 = .5 * .5 = .25; back-fill 5 -> [3, 2, 5, 4]
    model = channel_model()
    ctx = ([np.array([1, 0])], seen_of([[0, 1]], 6))
    recs = model.serve(np.arange(1), ctx, 4, with_scores=True)
    assert recs.items.tolist() == [[3, 2, 5, 4]]
    np.testing.assert_allclose(recs.scores, [[0.5, 0.25, NAN, 0.25]], rtol=1e-6)
    assert recs.source_labels().tolist() == [["model", "model", "backfill", "channel:new"]]
    plain = model.serve(np.arange(1), ctx, 4)  # validation serves: no scores computed
    assert plain.scores is None and plain.sources is None and np.array_equal(plain.items, recs.items)


# ------------------------------------------------------------------------------- u2i, popular
def test_u2i_scores_are_the_inner_product_plus_bonus_and_cold_users_are_backfilled() -> None:
    # <u, c> = 3, 2, 1; recent clicks 0, 1, 20 -> beta .5 * log1p: 0, .347, 1.522
    # scores 3, 2.347, 2.522 -> order 0, 2, 1
    users = torch.tensor([[1.0]])
    contents = torch.tensor([[3.0], [2.0], [1.0]])
    bonus = torch.from_numpy(0.5 * np.log1p([0.0, 1.0, 20.0]))
    items, scores = top_k_by_score(users, contents, sp.csr_matrix((1, 3)), 4, bonus=bonus, return_scores=True)
    assert items.tolist() == [[0, 2, 1, -1]]
    np.testing.assert_allclose(scores, [[3.0, 1 + 0.5 * np.log(21), 2 + 0.5 * np.log(2), NAN]], rtol=1e-6)

    model = bare_mf(np.array([[1.0], [1.0]]), np.array([[3.0], [2.0], [1.0]]), np.array([0, 1, 20]), 0.5)
    model.trained_users[1] = False  # user 1 is cold: back-fill by recent clicks (2, 1, 0), no score
    fold = Fold("test", click_frame([]), click_frame([]), click_frame([(0, 0)]))
    recs = model.recommend(np.array([0, 1]), fold, 3)
    assert recs.items.tolist() == [[0, 2, 1], [2, 1, 0]]
    np.testing.assert_allclose(recs.scores, [[3.0, 1 + 0.5 * np.log(21), 2 + 0.5 * np.log(2)], [NAN] * 3],
                               rtol=1e-6)
    assert recs.source_labels().tolist() == [["model"] * 3, ["backfill"] * 3]


def test_popular_scores_are_the_counts_it_ranked_by(tmp_path: Path) -> None:
    ds = dataset(POP_LOG, USERS)
    clicks = encode_clicks(ds)
    fold = Fold("test", train=clicks, history=clicks, targets=clicks.iloc[:0], cut=int(clicks["timestamp"].max()) + 1)
    # recent distinct users: A 3, B 1, C 1, D 3, E 1; f0 saw A, B -> D (3), C (1), E (1)
    overall = PopularRecall(recent_days=7)
    overall.fit(fold, ds)
    recs = overall.recommend(rows(ds, "f0", "m3"), fold, 3)
    assert names(recs.items) == [["D", "C", "E"], ["A", "B", "-"]]  # m3 saw C, D, E
    np.testing.assert_array_equal(recs.scores, [[3, 1, 1], [3, 1, NAN]])
    assert recs.sources.tolist() == [[MODEL] * 3, [MODEL, MODEL, NO_SOURCE]]
    # per group, F: A 3, B 1, C 1, D 0, E 0 -> f0: C, D, E = 1, 0, 0; M: D 3, E 1, others 0 -> m4: E, A, B
    grouped = PopularRecall(recent_days=7, per_group=True, groups={"fields": ["gender"]})
    grouped.fit(fold, ds)
    users = rows(ds, "f0", "m4")
    recs = grouped.recommend(users, fold, 3)
    assert names(recs.items) == [["C", "D", "E"], ["E", "A", "B"]]
    np.testing.assert_array_equal(recs.scores, [[1, 0, 0], [1, 0, 0]])
    grouped.save(tmp_path, ds)
    loaded = PopularRecall(per_group=True)
    loaded.load(tmp_path, fold, ds)
    np.testing.assert_array_equal(loaded.recommend(users, fold, 3).scores, recs.scores)


# ------------------------------------------------------------------------------- the export
def test_export_writes_scores_and_sources_and_never_minus_rank() -> None:
    from types import SimpleNamespace

    ds = SimpleNamespace(users=pd.DataFrame({"user_id": ["w0", "w1"]}),
                         contents=pd.DataFrame({"content_id": [f"k{i}" for i in range(5)]}))
    recs = Recommendations(np.array([1, 0]), np.array([[3, 0, 4], [2, -1, -1]]),
                           scores=np.array([[0.9, 0.5, NAN, 7.0], [-1.0, NAN, NAN, 7.0]]),  # wider: cut lists
                           sources=np.array([[0, 1, 2, 1], [0, -1, -1, -1]], dtype=np.int8),
                           source_names=("model", "backfill", "channel:new"))
    out = export_recommendations(recs, ds)
    assert out.columns.tolist() == ["user_id", "content_id", "rank", "score", "source"]
    assert out["user_id"].tolist() == ["w1", "w1", "w1", "w0"]
    assert out["content_id"].tolist() == ["k3", "k0", "k4", "k2"]
    assert out["rank"].tolist() == [1, 2, 3, 1]
    np.testing.assert_array_equal(out["score"].to_numpy(), [0.9, 0.5, NAN, -1.0])  # -1.0 is a real score here
    assert out["source"].tolist() == ["model", "backfill", "channel:new", "model"]
    bare = export_recommendations(Recommendations(recs.users, recs.items), ds)  # a model without scores
    assert bare["score"].isna().all() and (bare["source"] == "unknown").all()
    bad = Recommendations(recs.users, recs.items, sources=np.zeros((2, 3), dtype=np.int8) - 1)
    with pytest.raises(ValueError, match="no source"):
        export_recommendations(bad, ds)


# ------------------------------------------------------------------------------- end to end
def exported(tmp_path: Path, overrides: list[str]) -> tuple[pd.DataFrame, dict]:
    cfg = compose_train(tmp_path, [*TINY, "eval.export.enabled=true", *overrides])
    _, objects = train_app.train(cfg)
    return pd.read_parquet(Path(cfg.run_dir) / "recommendations.parquet"), {**objects, "run_dir": Path(cfg.run_dir)}


def named_history(fold, ds) -> pd.DataFrame:
    """The fold's history with ``user_id`` and ``content_id`` columns."""
    return fold.history.assign(user_id=ds.users["user_id"].to_numpy()[fold.history["u"]],
                               content_id=ds.contents["content_id"].to_numpy()[fold.history["i"]])


def check_common(recs: pd.DataFrame) -> None:
    assert recs.columns.tolist() == ["user_id", "content_id", "rank", "score", "source"]
    model, back = recs["source"] == "model", recs["source"] == "backfill"
    assert set(recs["source"]) <= {"model", "backfill"} and model.any()
    assert recs.loc[model, "score"].notna().all() and recs.loc[back, "score"].isna().all()
    assert not (recs["score"] == -recs["rank"]).any()


def test_coclick_aggregate_export_matches_the_decayed_sum_recomputed_from_the_pool(tmp_path: Path) -> None:
    recs, obj = exported(tmp_path, ["model=coclick", "recall.mode=aggregate", "recall.popularity_beta=0.5"])
    check_common(recs)
    assert (recs["source"] == "backfill").any()  # the tiny world leaves some lists short
    # within a user: model entries first, scores non-increasing along them
    for _, user in recs.sort_values(["user_id", "rank"]).groupby("user_id"):
        model = (user["source"] == "model").to_numpy()
        assert not (np.diff(model.astype(int)) > 0).any()  # no model entry after a back-fill entry
        assert (np.diff(user["score"].to_numpy()[model]) <= 1e-9).all()
    # independently: s(c) = sum_r .8^r w(t_r, c) + .5 log(1 + recent clicks of c) over the newest 10 distinct
    # clicks (co-click weights are >= 0: a trigger whose row lacks c adds 0)
    ds, fold = obj["dataset"], obj["folds"]["test"]
    ids = ds.contents["content_id"].to_numpy()
    pool = pd.read_parquet(obj["run_dir"] / "pool.parquet")
    assert (pool["score"] >= 0).all()
    weight = {(a, b): s for a, b, s in zip(pool["content_id"], pool["neighbour_id"], pool["score"])}
    bonus = dict(zip(ids, 0.5 * np.load(obj["run_dir"] / "recent_log_popularity.npy")))
    hist = named_history(fold, ds)
    hist = hist.sort_values(["user_id", "timestamp"], ascending=[True, False], kind="stable")
    model_rows = recs[recs["source"] == "model"]
    checked = 0
    for user_id, user in model_rows.groupby("user_id"):
        trig = hist[hist["user_id"] == user_id].drop_duplicates("content_id")["content_id"].head(10).tolist()
        for c, score in zip(user["content_id"], user["score"]):
            want = sum(0.8 ** r * weight.get((t, c), 0.0) for r, t in enumerate(trig)) + bonus[c]
            assert score == pytest.approx(want, rel=1e-5)
            checked += 1
    assert checked == len(model_rows) > 0


def test_coclick_quota_and_popular_exports(tmp_path: Path) -> None:
    recs, obj = exported(tmp_path / "quota", ["model=coclick"])
    check_common(recs)
    # quota: a model entry's score is the pool score of one of the user's triggers for it
    ds, fold = obj["dataset"], obj["folds"]["test"]
    pool = pd.read_parquet(obj["run_dir"] / "pool.parquet")
    hist = named_history(fold, ds)
    clicked = hist.groupby("user_id")["content_id"].apply(set)
    model_rows = recs.loc[recs["source"] == "model", ["user_id", "content_id", "score"]]
    for user_id, c, score in model_rows.itertuples(index=False):
        from_triggers = pool[(pool["neighbour_id"] == c) & pool["content_id"].isin(clicked[user_id])]["score"]
        assert np.isclose(from_triggers.to_numpy(), score, rtol=1e-6).any()

    recs, obj = exported(tmp_path / "popular", ["model=popular"])
    check_common(recs)
    assert (recs["source"] == "model").all()
    for _, user in recs.sort_values(["user_id", "rank"]).groupby("user_id"):
        assert (np.diff(user["score"].to_numpy()) <= 0).all()
    # the score is the recent count of distinct users (7-day window before the end of the training clicks)
    fold = obj["folds"]["test"]
    assert fold.cut is not None  # a temporal fold: the window applies
    train = fold.train[fold.train["timestamp"] > fold.train["timestamp"].max() - 7 * DAY]
    counts = train.drop_duplicates(["u", "i"]).groupby("i").size()
    ids = obj["dataset"].contents["content_id"].to_numpy()
    want = pd.Series(counts.to_numpy(), index=ids[counts.index]).reindex(recs["content_id"], fill_value=0)
    np.testing.assert_array_equal(recs["score"].to_numpy(), want.to_numpy().astype(float))
