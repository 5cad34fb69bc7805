"""evaluation.py on a tiny hand-computed case: summary means, slices, targets, export, flat keys."""

from __future__ import annotations

from math import log2

import numpy as np
import pandas as pd
import pytest

from graphrecall.data.schema import FeedDataset, build_dataset
from graphrecall.data.splits import DAY, Fold, encode_clicks
from graphrecall.evaluation import (
    FoldEvaluation,
    evaluate_recommendations,
    export_recommendations,
    targets_matrix,
    user_slices,
)
from graphrecall.models.base import Recommendations

T0 = int(pd.Timestamp("2024-05-01", tz="UTC").timestamp())


@pytest.fixture(scope="module")
def setup() -> tuple[FeedDataset, Fold]:
    """Users w0..w3, contents k0..k5; window = days >= 10.

    w0: 3 window clicks (k0, k3, k5)            -> active (low_activity_max = 2)
    w1: 1 window click (k2)                      -> low activity
    w2: 1 click on day 1, before the window      -> neither (0 window clicks), not cold
    w3: no click at all                          -> cold
    """
    log = [
        ("w0", "k0", T0 + 10 * DAY), ("w0", "k3", T0 + 10 * DAY + 60), ("w0", "k5", T0 + 11 * DAY),
        ("w1", "k2", T0 + 12 * DAY),
        ("w2", "k0", T0 + 1 * DAY),
        ("w0", "k1", T0 + 20 * DAY), ("w0", "k4", T0 + 20 * DAY), ("w1", "k0", T0 + 21 * DAY),
        ("w2", "k5", T0 + 21 * DAY), ("w3", "k2", T0 + 22 * DAY),
    ]  # fmt: skip
    clicks = pd.DataFrame(log, columns=["user_id", "content_id", "timestamp"])
    contents = pd.DataFrame({"content_id": [f"k{j}" for j in range(6)], "style": list("xxyyzz")})
    users = pd.DataFrame({"user_id": ["w0", "w1", "w2", "w3"]})
    ds = build_dataset("hand", clicks, contents, users, {"style": "single"}, {"style": "style"})
    enc = encode_clicks(ds)
    cut = T0 + 15 * DAY
    history = enc[enc["timestamp"] < cut].reset_index(drop=True)
    train = history[history["timestamp"] >= T0 + 10 * DAY].reset_index(drop=True)
    targets = enc[enc["timestamp"] >= cut].reset_index(drop=True)
    return ds, Fold("test", train, history, targets, cut=cut)


def user_rows(ds: FeedDataset) -> np.ndarray:
    return pd.Index(ds.users["user_id"]).get_indexer(["w0", "w1", "w2", "w3"]).astype(np.int64)


# targets: w0 {1, 4}, w1 {0}, w2 {5}, w3 {2}
ITEMS = np.array([[1, 2, 4], [3, 0, -1], [2, 3, 1], [2, 0, 1]])


def hand_values() -> dict[str, list[float]]:
    d2, d3 = 1 / log2(3), 1 / log2(4)
    return {
        # w0: hit at ranks 1 and 3 of 2 targets; w1: hit at rank 2; w2: none; w3: hit at rank 1
        "recall@2": [0.5, 1.0, 0.0, 1.0],
        "recall@3": [1.0, 1.0, 0.0, 1.0],
        "ndcg@2": [1 / (1 + d2), d2, 0.0, 1.0],
        "ndcg@3": [(1 + d3) / (1 + d2), d2, 0.0, 1.0],
        "precision@3": [2 / 3, 1 / 3, 0.0, 1 / 3],
    }


def test_targets_matrix() -> None:
    targets = pd.DataFrame({"u": [5, 2, 5, 7, 2], "i": [1, 0, 1, 3, 4]})
    m = targets_matrix(targets, np.array([2, 5]), 6)  # user 7 is not evaluated: dropped
    assert m.shape == (2, 6)
    assert m.toarray().tolist() == [[1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, 0]]  # duplicate (5, 1) -> 1


def test_user_slices(setup: tuple[FeedDataset, Fold]) -> None:
    ds, fold = setup
    s = user_slices(fold, user_rows(ds), low_activity_max=2)
    assert s["low_activity"].tolist() == [False, True, False, False]
    assert s["active"].tolist() == [True, False, False, False]
    assert s["cold"].tolist() == [False, False, False, True]
    assert user_slices(fold, user_rows(ds), low_activity_max=3)["low_activity"].tolist() == [True, True, False, False]


def test_evaluate_recommendations_hand_case(setup: tuple[FeedDataset, Fold]) -> None:
    ds, fold = setup
    users = user_rows(ds)
    recs = Recommendations(users, ITEMS, {"backfilled": np.array([0, 1, 2, 0])})
    ev = evaluate_recommendations(
        "test", recs, fold.targets, fold, ds, ks=(2, 3), low_activity_max=2,
        ci_metrics=("recall@3",), num_resamples=200,
    )  # fmt: skip
    hand = hand_values()
    for metric, values in hand.items():
        np.testing.assert_allclose(ev.per_user[metric].to_numpy(), values, err_msg=metric)
        assert ev.summary.loc[("all", metric), "mean"] == pytest.approx(np.mean(values), abs=1e-12)
        assert ev.summary.loc[("all", metric), "n_users"] == 4
    assert ev.per_user["u"].tolist() == users.tolist()
    assert ev.summary.loc[("all", "recall@2"), "mean"] == pytest.approx(0.625)
    assert ev.summary.loc[("all", "recall@3"), "mean"] == pytest.approx(0.75)
    # slices: active = w0, low_activity = w1, cold = w3
    assert ev.summary.loc[("active", "recall@2"), "mean"] == pytest.approx(0.5)
    assert ev.summary.loc[("active", "ndcg@3"), "mean"] == pytest.approx(hand["ndcg@3"][0])
    assert ev.summary.loc[("low_activity", "ndcg@2"), "mean"] == pytest.approx(1 / log2(3))
    assert ev.summary.loc[("cold", "recall@3"), "mean"] == pytest.approx(1.0)
    assert ev.summary.loc[("cold", "recall@3"), "n_users"] == 1
    # a CI only where asked, around the mean
    lo, hi = ev.summary.loc[("all", "recall@3"), ["ci_low", "ci_high"]]
    assert 0.0 <= lo <= 0.75 <= hi <= 1.0
    assert np.isnan(ev.summary.loc[("all", "recall@2"), "ci_low"])
    # popularity = distinct users per content in the window: k0 1, k2 1, k3 1, k5 1
    # avg_pop@3: w0 [k1 0, k2 1, k4 0] -> 1/3; w1 [k3 1, k0 1] -> 1
    np.testing.assert_allclose(ev.per_user["avg_pop@3"].to_numpy()[:2], [1 / 3, 1.0])
    # distinct styles (x x y y z z) in the top 3: w0 {x, y, z}, w1 {y, x}
    assert ev.per_user["distinct_style@3"].tolist()[:2] == [3, 2]
    # coverage: top-2 items {0, 1, 2, 3} -> 4/6; top-3 adds 4 -> 5/6
    assert ev.global_metrics["coverage@2"] == pytest.approx(4 / 6)
    assert ev.global_metrics["coverage@3"] == pytest.approx(5 / 6)
    assert ev.global_metrics["mean_backfilled"] == pytest.approx(0.75)
    assert ev.info == {"users": 4}


def test_flat_keys(setup: tuple[FeedDataset, Fold]) -> None:
    ds, fold = setup
    recs = Recommendations(user_rows(ds), ITEMS)
    ev = evaluate_recommendations("test", recs, fold.targets, fold, ds, low_activity_max=2, num_resamples=50)
    assert isinstance(ev, FoldEvaluation)
    flat = ev.flat()
    # lists of 3 are shorter than 20 and 50: recall@50 = recall@3
    assert flat["test/recall@50"] == pytest.approx(0.75)
    assert flat["test/recall@20"] == pytest.approx(0.75)
    assert flat["test/cold/recall@50"] == pytest.approx(1.0)
    assert flat["test/active/recall@50"] == pytest.approx(1.0)
    assert flat["test/low_activity/ndcg@50"] == pytest.approx(1 / log2(3))
    assert flat["test/coverage@50"] == pytest.approx(5 / 6)
    assert "test/all/recall@50" not in flat
    assert all(isinstance(v, float) for v in flat.values())
    slices = {k.split("/")[1] for k in flat if k.count("/") == 2}
    assert slices == {"warm", "low_activity", "active", "cold"}
    # warm = every user with a click before the cut (the headline slice), computed independently
    warm_users = set(fold.history["u"].tolist())
    is_warm = ev.per_user["u"].isin(warm_users) & ev.per_user["recall@50"].notna()
    assert flat["test/warm/recall@50"] == pytest.approx(ev.per_user.loc[is_warm, "recall@50"].mean())
    # default low_activity_max = 5: w0's 3 window clicks make it low-activity, "active" is empty
    default = evaluate_recommendations("test", recs, fold.targets, fold, ds, num_resamples=50).flat()
    assert default["test/low_activity/recall@50"] == pytest.approx(1.0)
    assert np.isnan(default["test/active/recall@50"])


def test_export_recommendations(setup: tuple[FeedDataset, Fold]) -> None:
    ds, _ = setup
    recs = Recommendations(np.array([1, 3]), np.array([[3, 0, -1], [2, -1, -1]]))
    out = export_recommendations(recs, ds)
    assert out.columns.tolist() == ["user_id", "content_id", "rank", "score"]
    assert out["user_id"].tolist() == ["w1", "w1", "w3"]
    assert out["content_id"].tolist() == ["k3", "k0", "k2"]
    assert out["rank"].tolist() == [1, 2, 1]
    assert out["score"].tolist() == [-1.0, -2.0, -1.0]
    scored = export_recommendations(recs, ds, scores=np.array([[0.9, 0.5, 0.0], [0.7, 0.0, 0.0]]))
    assert scored["score"].tolist() == [0.9, 0.5, 0.7]
