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
    # user slices, and the content slices over all users (default bins)
    assert slices == {"warm", "low_activity", "active", "cold", "clicks_0", "clicks_1-2", "clicks_3-9", "clicks_10+"}
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
    assert out.columns.tolist() == ["user_id", "content_id", "rank", "score", "source"]
    assert out["user_id"].tolist() == ["w1", "w1", "w3"]
    assert out["content_id"].tolist() == ["k3", "k0", "k2"]
    assert out["rank"].tolist() == [1, 2, 1]
    assert out["score"].isna().all() and (out["source"] == "unknown").all()  # no model scores: NaN, never -rank
    scored = export_recommendations(Recommendations(recs.users, recs.items,
                                                    scores=np.array([[0.9, 0.5, 0.0], [0.7, 0.0, 0.0]]),
                                                    sources=np.array([[0, 1, -1], [0, -1, -1]], dtype=np.int8)), ds)
    assert scored["score"].tolist() == [0.9, 0.5, 0.7] and scored["source"].tolist() == ["model", "backfill", "model"]


# ------------------------------------------------------------------------------- content slices
@pytest.fixture(scope="module")
def fresh_setup() -> tuple[FeedDataset, Fold]:
    """Contents c0..c5, c5 published a day after the cut; window = days 10..15, cut = day 15.

    training-window clicks: c0 3 (a, b, c), c1 1 (a), c4 2 (b, c), c2 0 (d clicked it on day 1,
    before the window), c3 0, c5 0 -> with edges [0, 1, 3]: clicks_0 {c2, c3}, clicks_1-2 {c1, c4},
    clicks_3+ {c0}; after_cut {c5} (published after the cut: out of the bins).
    targets: a {c3, c4}, b {c1, c2, c5}, c {c3}, d {c1}, e {c3} (e has no history: cold).
    """
    day = lambda d: T0 + int(d * DAY)  # noqa: E731
    log = [
        ("a", "c0", day(10)), ("b", "c0", day(11)), ("c", "c0", day(12)), ("a", "c1", day(12)),
        ("b", "c4", day(13)), ("c", "c4", day(14)), ("d", "c2", day(1)),
        ("a", "c3", day(15.5)), ("a", "c4", day(16)), ("b", "c1", day(16)), ("b", "c2", day(16)),
        ("b", "c5", day(17)), ("c", "c3", day(16)), ("d", "c1", day(16)), ("e", "c3", day(17)),
    ]  # fmt: skip
    clicks = pd.DataFrame(log, columns=["user_id", "content_id", "timestamp"])
    contents = pd.DataFrame({"content_id": [f"c{j}" for j in range(6)], "style": list("xxyyzz"),
                             "published_at": [T0] * 5 + [day(16)]})
    ds = build_dataset("fresh_hand", clicks, contents, None, {"style": "single"}, {"style": "style"})
    enc = encode_clicks(ds)
    cut = day(15)
    history = enc[enc["timestamp"] < cut].reset_index(drop=True)
    train = history[history["timestamp"] >= day(10)].reset_index(drop=True)
    targets = enc[enc["timestamp"] >= cut].reset_index(drop=True)
    return ds, Fold("test", train, history, targets, cut=cut)


def content_rows(ds: FeedDataset, names: list[str]) -> list[int]:
    return pd.Index(ds.contents["content_id"]).get_indexer(names).tolist()


FRESH_RECS = {"a": ["c4", "c2", "c3"], "b": ["c1", "c3", "c2"], "c": ["c1", "c2"], "d": ["c0", "c1", "c3"],
              "e": ["c0", "c3", "c1"]}


def fresh_recommendations(ds: FeedDataset) -> Recommendations:
    users = pd.Index(ds.users["user_id"]).get_indexer(list(FRESH_RECS)).astype(np.int64)
    items = np.full((len(users), 3), -1, dtype=np.int64)
    for r, names in enumerate(FRESH_RECS.values()):
        items[r, : len(names)] = content_rows(ds, names)
    return Recommendations(users, items)


def test_content_slices_masks(fresh_setup: tuple[FeedDataset, Fold]) -> None:
    from graphrecall.evaluation import content_slices

    ds, fold = fresh_setup
    s = content_slices(fold, ds, (0, 1, 3))
    assert list(s) == ["clicks_0", "clicks_1-2", "clicks_3+", "after_cut"]
    members = {name: sorted(ds.contents["content_id"].to_numpy()[mask].tolist()) for name, mask in s.items()}
    assert members == {"clicks_0": ["c2", "c3"], "clicks_1-2": ["c1", "c4"], "clicks_3+": ["c0"],
                       "after_cut": ["c5"]}
    # without published_at (MovieLens, custom data) there is no after_cut slice; the default bins
    plain = dataclass_replace_contents(ds)
    assert list(content_slices(fold, plain)) == ["clicks_0", "clicks_1-2", "clicks_3-9", "clicks_10+"]


def dataclass_replace_contents(ds: FeedDataset) -> FeedDataset:
    import dataclasses

    return dataclasses.replace(ds, contents=ds.contents.drop(columns=["published_at"]))


def brute_slice_recall(recs: dict[str, list[str]], targets: dict[str, set[str]], members: set[str],
                       k: int) -> dict[str, float]:
    """The content-slice recall of the docstring, written as plain set arithmetic."""
    out = {}
    for user, tgt in targets.items():
        inside = tgt & members
        if inside:
            out[user] = len(set(recs[user][:k]) & inside) / len(inside)
    return out


def test_content_slice_metrics_hand_case(fresh_setup: tuple[FeedDataset, Fold]) -> None:
    ds, fold = fresh_setup
    ev = evaluate_recommendations("test", fresh_recommendations(ds), fold.targets, fold, ds, ks=(1, 3),
                                  content_bins=(0, 1, 3), ci_metrics=(), num_resamples=50)
    s = ev.summary
    # by hand (recall@3): clicks_0 a 1/1 (c3), b 1/1 (c2; c5 is after_cut), c 0/1, e 1/1, d none -> 3 / 4
    assert s.loc[("all", "clicks_0/recall@3"), "mean"] == pytest.approx(0.75)
    assert s.loc[("all", "clicks_0/recall@3"), "n_users"] == 4
    assert s.loc[("all", "clicks_1-2/recall@3"), "mean"] == pytest.approx(1.0)  # a c4, b c1, d c1
    assert s.loc[("all", "clicks_1-2/recall@1"), "mean"] == pytest.approx(2 / 3)  # d's top-1 is c0
    assert s.loc[("all", "clicks_0/recall@1"), "mean"] == pytest.approx(0.0)
    assert s.loc[("all", "clicks_3+/recall@3"), "n_users"] == 0  # nobody's target is c0
    assert np.isnan(s.loc[("all", "clicks_3+/recall@3"), "mean"])
    assert s.loc[("all", "after_cut/recall@3"), "mean"] == pytest.approx(0.0)
    assert s.loc[("all", "after_cut/recall@3"), "n_users"] == 1
    # crossed with the user slices: warm a, b, c (d has no clicks_0 target); cold e
    assert s.loc[("warm", "clicks_0/recall@3"), "mean"] == pytest.approx(2 / 3)
    assert s.loc[("cold", "clicks_0/recall@3"), "mean"] == pytest.approx(1.0)
    # independent: plain set arithmetic over the same lists
    targets = {"a": {"c3", "c4"}, "b": {"c1", "c2", "c5"}, "c": {"c3"}, "d": {"c1"}, "e": {"c3"}}
    slices = {"clicks_0": {"c2", "c3"}, "clicks_1-2": {"c1", "c4"}, "after_cut": {"c5"}}
    for name, members in slices.items():
        for k in (1, 3):
            brute = brute_slice_recall(FRESH_RECS, targets, members, k)
            col = ev.per_user[f"{name}/recall@{k}"]
            assert s.loc[("all", f"{name}/recall@{k}"), "mean"] == pytest.approx(np.mean(list(brute.values())))
            assert int(col.notna().sum()) == len(brute)
    # counts: target pairs, users holding one, catalogue contents
    g = ev.global_metrics
    assert [g[f"content_slice/clicks_0/{x}"] for x in ("targets", "users", "contents")] == [4, 4, 2]
    assert [g[f"content_slice/clicks_1-2/{x}"] for x in ("targets", "users", "contents")] == [3, 3, 2]
    assert [g[f"content_slice/clicks_3+/{x}"] for x in ("targets", "users", "contents")] == [0, 0, 1]
    assert [g[f"content_slice/after_cut/{x}"] for x in ("targets", "users", "contents")] == [1, 1, 1]
    # new_share@3 (new = 0 training clicks, published or not: c2, c3, c5):
    # a 2/3, b 2/3, c 1/2 (c's list has 2 items), d 1/3, e 1/3
    np.testing.assert_allclose(ev.per_user["new_share@3"].to_numpy(), [2 / 3, 2 / 3, 1 / 2, 1 / 3, 1 / 3])
    assert s.loc[("all", "new_share@3"), "mean"] == pytest.approx(0.5)
    assert s.loc[("all", "new_share@1"), "mean"] == pytest.approx(0.0)  # top-1: c4 c1 c1 c0 c0
    # flat keys: the all-users slice without prefix, crossed slices with it; counts as globals
    flat = ev.flat()
    assert flat["test/clicks_0/recall@3"] == pytest.approx(0.75)
    assert flat["test/warm/clicks_0/recall@3"] == pytest.approx(2 / 3)
    assert flat["test/content_slice/clicks_0/targets"] == 4.0
    assert flat["test/new_share@3"] == pytest.approx(0.5)


def test_content_slice_ci_and_table(fresh_setup: tuple[FeedDataset, Fold]) -> None:
    from graphrecall.evaluation import format_content_slices

    ds, fold = fresh_setup
    ev = evaluate_recommendations("test", fresh_recommendations(ds), fold.targets, fold, ds, ks=(1, 3),
                                  content_bins=(0, 1, 3), ci_metrics=(), num_resamples=50)
    lo, hi = ev.summary.loc[("all", "clicks_0/recall@3"), ["ci_low", "ci_high"]]  # largest k gets a CI
    assert 0.0 <= lo <= 0.75 <= hi <= 1.0
    assert np.isnan(ev.summary.loc[("all", "clicks_0/recall@1"), "ci_low"])
    lines = format_content_slices([ev], k=3).splitlines()
    assert lines[0].split() == ["eval", "content", "targets", "users", "recall@3"]
    assert lines[1].split()[:5] == ["test", "clicks_0", "4", "4", "0.7500"]
    assert lines[3].split() == ["test", "clicks_3+", "0", "0", "-"]


@pytest.mark.parametrize("bins", [[], [1, 3], [0, 3, 3], [0, 2.5], "0,1", 5])
def test_content_bins_refused_naming_the_key(bins) -> None:
    from graphrecall.config_checks import ConfigError, check_train_config

    cfg = {"eval": {"folds": ["val", "test"], "content_bins": bins}, "model": {}}
    with pytest.raises(ConfigError, match="eval.content_bins"):
        check_train_config(cfg)
    check_train_config({"eval": {"folds": ["val", "test"], "content_bins": [0, 1, 3, 10]}, "model": {}})


def test_candidate_rule_refused_naming_the_key() -> None:
    from graphrecall.config_checks import ConfigError, check_train_config

    with pytest.raises(ConfigError, match="model.candidates='future'"):
        check_train_config({"eval": {"folds": ["val", "test"]}, "model": {"candidates": "future"}})
