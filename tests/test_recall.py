"""Trigger selection and the offline candidate pool (recall/triggers.py, recall/pool.py).

Expected lists are worked out by hand in the comments next to each case.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from graphrecall.recall.pool import CandidatePool
from graphrecall.recall.triggers import recall_with_triggers, recency_quota, seen_matrix, trigger_lists

# --------------------------------------------------------------------------------- quotas


@pytest.mark.parametrize(
    ("m", "total", "decay", "expected"),
    [
        # weights 1, .5, .25 -> exact 5.71, 2.86, 1.43 -> floors 5, 2, 1 (8), two left by
        # largest remainder: .86 (trigger 1), .71 (trigger 0)
        (3, 10, 0.5, [6, 3, 1]),
        (3, 10, 1.0, [4, 3, 3]),  # equal split, the remainder to the newest trigger
        (4, 10, 1.0, [3, 3, 2, 2]),
        (2, 6, 0.5, [4, 2]),
        (2, 4, 0.8, [2, 2]),  # exact 2.22, 1.78 -> floors 2, 1, the remainder to trigger 1
        (3, 2, 0.8, [1, 1, 0]),  # exact .82, .66, .52: more triggers than slots
        (1, 7, 0.3, [7]),
        (3, 0, 0.5, [0, 0, 0]),
    ],
)
def test_recency_quota_hand_cases(m: int, total: int, decay: float, expected: list[int]) -> None:
    q = recency_quota(m, total, decay)
    assert q.tolist() == expected
    assert q.dtype == np.int64


def test_recency_quota_sums_and_is_monotone() -> None:
    assert recency_quota(0, 10, 0.5).tolist() == []
    for m in range(1, 12):
        for total in (1, 5, 17, 50, 100):
            for decay in (0.3, 0.8, 1.0):
                q = recency_quota(m, total, decay)
                assert q.sum() == total and len(q) == m and (q >= 0).all()
                assert (np.diff(q) <= 0).all()  # newer triggers never get less


# -------------------------------------------------------------------------------- triggers


def test_trigger_lists_newest_first_distinct_capped() -> None:
    history = pd.DataFrame(
        {
            "u": [0, 0, 0, 0, 0, 2, 2, 3],
            "i": [5, 3, 5, 7, 1, 4, 4, 9],
            "timestamp": [10, 20, 30, 40, 50, 10, 5, 1],
        }
    )
    # user 0 newest first: 1 (50), 7 (40), 5 (30; its click at 10 is a duplicate), 3 (20)
    out = trigger_lists(history, np.array([2, 0, 1]), max_triggers=3)
    assert [t.tolist() for t in out] == [[4], [1, 7, 5], []]
    out = trigger_lists(history, np.array([0]), max_triggers=10)
    assert out[0].tolist() == [1, 7, 5, 3]
    seen = seen_matrix(history, np.array([0, 2, 1]), 10)
    assert seen.shape == (3, 10)
    assert [sorted(seen[r].indices.tolist()) for r in range(3)] == [[1, 3, 5, 7], [4], []]
    assert set(seen.data.tolist()) == {1}


# ------------------------------------------------------------------------ recall with triggers

C = 10


def hand_pool() -> CandidatePool:
    nb = np.full((C, 4), -1, dtype=np.int64)
    nb[0] = [1, 2, 3, 4]
    nb[5] = [6, 2, 7, 8]
    nb[9] = [1, 6, -1, -1]
    return CandidatePool(nb, np.where(nb >= 0, 1.0, np.nan).astype(np.float32))


def seen_of(*rows: list[int]) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c), dtype=np.int8), (r, c)), shape=(len(rows), C))


FALLBACK = np.array([9, 0, 1, 2, 5, 3, 8, 7, 6, 4])


def test_quota_respected_and_order_by_neighbour_then_trigger_rank() -> None:
    # quota(2, 3, .5) = [2, 1]: trigger 0 takes 1, 2; trigger 5 takes 6 (without the quota,
    # trigger 0 alone would fill the list). Sorted by (neighbour rank, trigger rank):
    # (0,0,1), (0,1,6), (1,0,2)
    res = recall_with_triggers(hand_pool(), [np.array([0, 5])], seen_of([0, 5]), k=3, decay=0.5, fallback=FALLBACK)
    assert res.recs.tolist() == [[1, 6, 2]]
    assert res.from_triggers.tolist() == [3] and res.backfilled.tolist() == [0]
    # decay 1, k 4: quota [2, 2]; trigger 0 takes 1 (rank 0), 2 (rank 1); trigger 5 takes 6
    # (rank 0), skips 2 (already taken), takes 7 (rank 2) -> 1, 6, 2, 7
    res = recall_with_triggers(hand_pool(), [np.array([0, 5])], seen_of([]), k=4, decay=1.0, fallback=FALLBACK)
    assert res.recs.tolist() == [[1, 6, 2, 7]]


def test_seen_skipped_and_unused_quota_flows_then_backfill() -> None:
    # quota(2, 6, .5) = [4, 2]. Trigger 0 row [1 2 3 4], 1 and 3 seen: takes 2 (rank 1) and
    # 4 (rank 3), 2 short of its quota. Trigger 5 row [6 2 7 8]: 6 (rank 0), 2 taken, 7 (rank 2):
    # quota met. Pass 1 hands the unused quota on: 8 (rank 3). Sorted: 6, 2, 7, 4, 8.
    # One slot left: fallback 9 (not seen, not taken).
    res = recall_with_triggers(
        hand_pool(), [np.array([0, 5])], seen_of([0, 5, 1, 3]), k=6, decay=0.5, fallback=FALLBACK
    )
    assert res.recs.tolist() == [[6, 2, 7, 4, 8, 9]]
    assert res.from_triggers.tolist() == [5] and res.backfilled.tolist() == [1]


def test_backfill_padding_and_users_without_triggers() -> None:
    triggers = [np.array([9]), np.zeros(0, dtype=np.int64), np.array([9])]
    seen = seen_of([9], [0], [9, 1, 6, 0, 2, 5, 3, 8, 7, 4])
    # user 0: trigger 9 row [1 6 -1 -1] gives 1, 6; the -1 ends the row; back-fill skips 9
    #   (seen), takes 0, skips 1 (taken), takes 2, 5.
    # user 1: no trigger: pure back-fill 9, 1, 2 ... (0 seen).
    # user 2: has seen everything: nothing at all, -1 padded.
    res = recall_with_triggers(hand_pool(), triggers, seen, k=5, decay=0.8, fallback=FALLBACK)
    assert res.recs.tolist() == [[1, 6, 0, 2, 5], [9, 1, 2, 5, 3], [-1] * 5]
    assert res.from_triggers.tolist() == [2, 0, 0]
    assert res.backfilled.tolist() == [3, 5, 0]
    assert res.recs.dtype == np.int64

    # a short fallback runs out: -1 padding; no fallback at all: triggers only
    short = recall_with_triggers(hand_pool(), triggers[:2], seen[:2], k=4, fallback=np.array([1, 6, 3]))
    assert short.recs.tolist() == [[1, 6, 3, -1], [1, 6, 3, -1]]
    assert short.backfilled.tolist() == [1, 3]
    none = recall_with_triggers(hand_pool(), triggers[:2], seen[:2], k=4, fallback=None)
    assert none.recs.tolist() == [[1, 6, -1, -1], [-1, -1, -1, -1]]
    assert none.from_triggers.tolist() == [2, 0] and none.backfilled.tolist() == [0, 0]


# ------------------------------------------------------------------------------------- pool


def hand_weights() -> sp.csr_matrix:
    # entries deliberately in unsorted order
    rows = [0, 0, 0, 1, 3, 3, 3]
    cols = [3, 2, 1, 0, 1, 2, 0]
    data = [0.5, 0.3, 0.5, 0.2, 0.4, 0.9, 0.1]
    return sp.csr_matrix((data, (rows, cols)), shape=(4, 4))


def test_pool_from_csr_top_p_ties_to_lower_index() -> None:
    pool = CandidatePool.from_csr(hand_weights(), size=2)
    # row 0: 1 and 3 tie at .5 -> 1 first; .3 (2) cut. row 1: one neighbour. row 2: none.
    # row 3: .9 (2), .4 (1); .1 (0) cut.
    assert pool.neighbors.tolist() == [[1, 3], [0, -1], [-1, -1], [2, 1]]
    np.testing.assert_allclose(pool.scores, [[0.5, 0.5], [0.2, np.nan], [np.nan, np.nan], [0.9, 0.4]])
    assert pool.scores.dtype == np.float32
    assert pool.num_contents == 4 and pool.size == 2 and pool.empty_rows() == 1
    wide = CandidatePool.from_csr(hand_weights(), size=5)
    assert wide.neighbors[0].tolist() == [1, 3, 2, -1, -1]
    assert wide.neighbors[3].tolist() == [2, 1, 0, -1, -1]


def test_pool_save_load_round_trip_string_ids(tmp_path: Path) -> None:
    ids = np.array(["sofa-1", "lamp-2", "rug-3", "bed-4"], dtype=object)
    pool = CandidatePool.from_csr(hand_weights(), size=2)
    path = tmp_path / "pool.parquet"
    pool.save(path, ids)
    assert not (tmp_path / "pool.parquet.tmp").exists()
    df = pd.read_parquet(path)
    assert df.columns.tolist() == ["content_id", "neighbour_id", "rank", "score"]
    rows = [(r.content_id, r.neighbour_id, int(r.rank), round(float(r.score), 6)) for r in df.itertuples()]
    assert rows == [
        ("sofa-1", "lamp-2", 1, 0.5),
        ("sofa-1", "bed-4", 2, 0.5),
        ("lamp-2", "sofa-1", 1, 0.2),
        ("bed-4", "rug-3", 1, 0.9),
        ("bed-4", "lamp-2", 2, 0.4),
    ]
    back = CandidatePool.load(path, ids)
    np.testing.assert_array_equal(back.neighbors, pool.neighbors)
    np.testing.assert_array_equal(back.scores, pool.scores)  # NaN == NaN for array_equal here
    # a catalogue in another order: rows and neighbours are re-mapped by id
    perm = ids[[3, 2, 1, 0]]
    moved = CandidatePool.load(path, perm)
    assert moved.neighbors.tolist() == [[1, 2], [-1, -1], [3, -1], [2, 0]]
    with pytest.raises(ValueError, match="absent from the catalogue"):
        CandidatePool.load(path, ids[:3])


def test_seen_matrix_stays_binary_with_many_repeat_clicks() -> None:
    # 256 clicks on content 2 once summed to 0 in int8, and a 0 is "not seen" for the popularity
    # ranking (top_k_excluding reads values): the clicked content came back as a recommendation.
    from graphrecall.models.popular import top_k_excluding

    history = pd.DataFrame({"u": [0] * 257, "i": [2] * 256 + [1], "timestamp": np.arange(257)})
    seen = seen_matrix(history, np.array([0]), 4)
    assert seen.data.tolist() == [1, 1] and seen.indices.tolist() == [1, 2]
    assert top_k_excluding(np.array([2, 1, 0, 3]), seen, 2).tolist() == [[0, 3]]


def test_trigger_slots_cap_the_pool_share_and_backfill_the_rest():
    from graphrecall.recall.pool import CandidatePool
    from graphrecall.recall.triggers import recall_with_triggers

    pool = CandidatePool(np.array([[1, 2, 3, 4], [0, 2, 3, 4], [0, 1, 3, 4], [0, 1, 2, 4], [0, 1, 2, 3]]),
                         np.ones((5, 4), dtype=np.float32))
    seen = sp.csr_matrix(([1], ([0], [0])), shape=(1, 5))
    full = recall_with_triggers(pool, [np.array([0])], seen, 4, fallback=np.array([4, 3, 2, 1, 0]))
    capped = recall_with_triggers(pool, [np.array([0])], seen, 4, fallback=np.array([4, 3, 2, 1, 0]),
                                  trigger_slots=1)
    assert full.recs.tolist() == [[1, 2, 3, 4]] and full.backfilled.tolist() == [0]
    # one slot from trigger 0's pool (content 1), then popularity order 4, 3, 2
    assert capped.recs.tolist() == [[1, 4, 3, 2]]
    assert capped.from_triggers.tolist() == [1] and capped.backfilled.tolist() == [3]
