"""Popularity and co-click baselines (models/popular.py, models/coclick.py) on hand-made data.

Every expected list is derived by hand in the comments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from graphrecall.data.schema import FeedDataset, build_dataset
from graphrecall.data.splits import DAY, Fold, encode_clicks
from graphrecall.models.coclick import CoClickRecall
from graphrecall.models.popular import PopularRecall, popularity_counts, recent_clicks, top_k_excluding

T0 = int(pd.Timestamp("2024-03-01", tz="UTC").timestamp())
NAMES = ["A", "B", "C", "D", "E"]  # content rows 0..4


def at(days: float, seconds: int = 0) -> int:
    return T0 + int(days * DAY) + seconds


def dataset(log: list[tuple[str, str, int]], users: pd.DataFrame) -> FeedDataset:
    clicks = pd.DataFrame(log, columns=["user_id", "content_id", "timestamp"])
    contents = pd.DataFrame({"content_id": NAMES, "style": ["x", "y", "x", "y", "x"]})
    return build_dataset("hand", clicks, contents, users, {"style": "single"}, {"style": "style"})


def rows(ds: FeedDataset, *user_ids: str) -> np.ndarray:
    return pd.Index(ds.users["user_id"]).get_indexer(list(user_ids)).astype(np.int64)


def names(items: np.ndarray) -> list[list[str]]:
    return [[NAMES[i] if i >= 0 else "-" for i in row] for row in items]


# ------------------------------------------------------------------------------- helpers


def test_popularity_counts_users_vs_clicks() -> None:
    clicks = pd.DataFrame({"u": [0, 0, 1, 1, 2, 2, 2], "i": [0, 0, 0, 1, 2, 2, 2]})
    assert popularity_counts(clicks, 4, "users").tolist() == [2, 1, 1, 0]
    assert popularity_counts(clicks, 4, "clicks").tolist() == [3, 1, 3, 0]
    assert popularity_counts(clicks, 4).dtype == np.float64
    with pytest.raises(ValueError, match="'users' or 'clicks'"):
        popularity_counts(clicks, 4, "sessions")


def test_recent_clicks_window() -> None:
    clicks = pd.DataFrame({"u": [0, 1, 2, 3], "i": [0, 1, 2, 3], "timestamp": [at(0), at(8), at(8, 1), at(10)]})
    # last click day 10, 2 days back: strictly after day 8
    assert recent_clicks(clicks, 2)["i"].tolist() == [2, 3]
    assert recent_clicks(clicks, 0.5)["i"].tolist() == [3]
    assert recent_clicks(clicks, None)["i"].tolist() == [0, 1, 2, 3]
    assert len(recent_clicks(clicks.iloc[:0], 2)) == 0


def test_top_k_excluding_skips_seen_and_pads() -> None:
    ranking = np.array([3, 1, 0, 2, 4])
    seen = sp.csr_matrix(
        (np.ones(6, dtype=np.int8), ([0, 0, 2, 2, 2, 2], [1, 2, 3, 1, 0, 2])), shape=(3, 5)
    )
    assert top_k_excluding(ranking, seen, 3).tolist() == [[3, 0, 4], [3, 1, 0], [4, -1, -1]]
    assert top_k_excluding(ranking, seen, 7).tolist() == [
        [3, 0, 4, -1, -1, -1, -1],
        [3, 1, 0, 2, 4, -1, -1],
        [4, -1, -1, -1, -1, -1, -1],
    ]
    # a ranking shorter than the catalogue (e.g. only clicked contents)
    assert top_k_excluding(np.array([1, 3]), seen, 3).tolist() == [[3, -1, -1], [1, 3, -1], [-1, -1, -1]]


# --------------------------------------------------------------------------- PopularRecall

USERS = pd.DataFrame({"user_id": ["f0", "f1", "f2", "m3", "m4", "m5"], "gender": ["F", "F", "F", "M", "M", "M"]})
# Recent window (days 20-21): women click A (3 users), B, C; men click D (3 users), E.
# Old clicks (day 1) of C by every man: outside a 7-day popularity window, but in the history.
POP_LOG = [
    ("f0", "A", at(20)), ("f0", "B", at(20, 60)),
    ("f1", "A", at(20)), ("f1", "C", at(20, 60)),
    ("f2", "A", at(21)),
    ("m3", "D", at(20)), ("m3", "E", at(20, 60)),
    ("m4", "D", at(21)),
    ("m5", "D", at(21)),
    ("m3", "C", at(1)), ("m4", "C", at(1)), ("m5", "C", at(1)),
]  # fmt: skip


@pytest.fixture(scope="module")
def pop_setup() -> tuple[FeedDataset, Fold]:
    ds = dataset(POP_LOG, USERS)
    clicks = encode_clicks(ds)
    # a temporal fold (a cut): the recent window means something there
    fold = Fold("test", train=clicks, history=clicks, targets=clicks.iloc[:0], cut=int(clicks["timestamp"].max()) + 1)
    return ds, fold


def test_popular_overall_recent_window(pop_setup: tuple[FeedDataset, Fold]) -> None:
    ds, fold = pop_setup
    model = PopularRecall(recent_days=7)
    stats = model.fit(fold, ds)
    # distinct users, days 14+: A 3, D 3, B 1, C 1, E 1. Ties: all-window users (A 3, B 1, C 4,
    # D 3, E 1), then the fixed pseudo-random tie order, computed here independently
    tie = np.empty(5, dtype=np.int64)
    tie[np.random.default_rng(0).permutation(5)] = np.arange(5)
    assert tie.tolist() == [3, 4, 0, 2, 1]  # A B C D E: C first, then E, D, A, B
    # A = D (3, 3) -> D (tie 2) before A (tie 3); C (4) > B = E (1) -> E (tie 1) before B (tie 4)
    assert model.rankings.tolist() == [[3, 0, 2, 4, 1]]
    assert stats == {"popular_groups": 1, "popular_nonzero": 5, "popularity_all_pairs": 0.0}
    recs = model.recommend(rows(ds, "f0", "m4", "m3"), fold, 3)
    # f0 saw A, B; m4 saw C, D; m3 saw C, D, E
    assert names(recs.items) == [["D", "C", "E"], ["A", "E", "B"], ["A", "B", "-"]]
    assert recs.counters["backfilled"].tolist() == [0, 0, 0]

    everything = PopularRecall(recent_days=None)
    everything.fit(fold, ds)
    # all time: C 4 users, A 3, D 3, B 1, E 1 (ties: D before A, E before B, as above)
    assert everything.rankings.tolist() == [[2, 3, 0, 4, 1]]
    assert names(everything.recommend(rows(ds, "f0"), fold, 3).items) == [["C", "D", "E"]]


def test_popular_per_group(pop_setup: tuple[FeedDataset, Fold], tmp_path: Path) -> None:
    ds, fold = pop_setup
    model = PopularRecall(recent_days=7, per_group=True, groups={"fields": ["gender"]})
    assert model.name == "popular_group"
    assert model.fit(fold, ds)["popular_groups"] == 2
    # F: A 3, B 1, C 1 (+ overall/4 breaks ties: B .25 = C .25 -> all-window users C 4 > B 1) -> A C B D E
    # M: D 3, E 1; A .75, B .25, C .25 from the overall popularity, C before B -> D E A C B
    assert model.rankings.tolist() == [[0, 2, 1, 3, 4], [3, 4, 0, 2, 1]]
    users = rows(ds, "f0", "f1", "m3", "m4", "m5")
    recs = model.recommend(users, fold, 3)
    expected = [["C", "D", "E"], ["B", "D", "E"], ["A", "B", "-"], ["E", "A", "B"], ["E", "A", "B"]]
    assert names(recs.items) == expected
    np.testing.assert_array_equal(recs.users, users)

    model.save(tmp_path, ds)
    loaded = PopularRecall(per_group=True)
    loaded.load(tmp_path, fold, ds)
    assert names(loaded.recommend(users, fold, 3).items) == expected
    np.testing.assert_array_equal(loaded.group_of_user, model.group_of_user)


# --------------------------------------------------------------------------- CoClickRecall

# One 3-day session per user in the window (days 10-11):
#   p0 {A,B,C}, p1 {A,B}, p2 {B,C}, p3 {C,D}
# N(A,B)=2, N(A,C)=1, N(B,C)=2, N(C,D)=1; row-normalised:
#   A: B 2/3, C 1/3    B: A 1/2, C 1/2    C: B 1/2, A 1/4, D 1/4    D: C 1    E: -
# Pool (ties to the lower row): A [B C]  B [A C]  C [B A D]  D [C]  E []
# Back-fill: distinct users in the window: B 3, C 3, A 2, D 1, E 0 -> C B A D E (B = C, also over
# the whole window: the fixed pseudo-random tie order puts C first)
# Target user q clicked A (day 2) then D (day 3), before the window: triggers [D, A], seen {A, D}.
COCLICK_LOG = [
    ("p0", "A", at(10)), ("p0", "B", at(10, 60)), ("p0", "C", at(10, 120)),
    ("p1", "A", at(10)), ("p1", "B", at(11)),
    ("p2", "B", at(11)), ("p2", "C", at(11, 60)),
    ("p3", "C", at(11)), ("p3", "D", at(11, 60)),
    ("q", "A", at(2)), ("q", "D", at(3)),
]  # fmt: skip


@pytest.fixture(scope="module")
def coclick_setup() -> tuple[FeedDataset, Fold]:
    users = pd.DataFrame({"user_id": ["p0", "p1", "p2", "p3", "q"]})
    ds = dataset(COCLICK_LOG, users)
    clicks = encode_clicks(ds)
    train = clicks[clicks["timestamp"] >= at(10)].reset_index(drop=True)
    return ds, Fold("test", train=train, history=clicks, targets=clicks.iloc[:0])


def test_coclick_end_to_end(coclick_setup: tuple[FeedDataset, Fold], tmp_path: Path) -> None:
    ds, fold = coclick_setup
    model = CoClickRecall(pool_size=3, graph={"session_days": 3, "tau": 0.0}, triggers={"max_triggers": 10})
    stats = model.fit(fold, ds)
    assert stats["pool/empty_rows"] == 1  # E
    assert names(model.pool.neighbors) == [["B", "C", "-"], ["A", "C", "-"], ["B", "A", "D"], ["C", "-", "-"], ["-"] * 3]
    np.testing.assert_allclose(model.pool.scores[0, :2], [2 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(model.pool.scores[2], [1 / 2, 1 / 4, 1 / 4], rtol=1e-6)
    assert names([model.fallback]) == [["C", "B", "A", "D", "E"]]

    # q, k=4, decay .8: quota(2, 4, .8) = [2, 2] (exact 2.22, 1.78).
    # trigger D (newest): C (rank 0); the row ends. trigger A: B (rank 0), C taken.
    # Sorted (rank, trigger): C, B. Back-fill B C A D E: B, C taken, A, D seen -> E. Then -1.
    users = rows(ds, "q", "p0")
    recs = model.recommend(users, fold, 4)
    # p0 (history A 10d, B +60s, C +120s): triggers [C, B, A], all seen. quota(3, 4, .8) =
    # [2, 1, 1]: C gives D (rank 2); B and A give nothing unseen. Back-fill: E.
    assert names(recs.items) == [["C", "B", "E", "-"], ["D", "E", "-", "-"]]
    assert recs.counters["from_triggers"].tolist() == [2, 1]
    assert recs.counters["backfilled"].tolist() == [1, 1]

    # a single trigger: only the newest click D counts -> C, then back-fill B (C taken, A, D seen), E
    one = CoClickRecall(pool_size=3, graph={"session_days": 3}, triggers={"max_triggers": 1})
    one.fit(fold, ds)
    single = one.recommend(rows(ds, "q"), fold, 4)
    assert names(single.items) == [["C", "B", "E", "-"]]
    assert single.counters["from_triggers"].tolist() == [1]  # B now comes from the back-fill
    assert single.counters["backfilled"].tolist() == [2]

    model.save(tmp_path, ds)
    loaded = CoClickRecall(pool_size=3)
    loaded.load(tmp_path, fold, ds)
    np.testing.assert_array_equal(loaded.recommend(users, fold, 4).items, recs.items)
