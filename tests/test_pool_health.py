"""Pool health (issue 27): the spread of a pool's first entries, on pools small enough to count by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from graphrecall.metrics import pool_health


def test_a_hub_bound_pool_and_a_spread_pool_by_hand():
    # 4 contents, 3 neighbours each; the first 2 slots of every row counted
    hubs = np.array([[1, 2, 3], [0, 2, 3], [1, 0, 3], [1, 2, 0]])
    # slots: row0 {1,2}, row1 {0,2}, row2 {1,0}, row3 {1,2}: content 1 x3, 2 x3, 0 x2 -> 3 distinct, 8 slots;
    # head = ceil(0.25 x 4 rows) = 1 content: the most frequent holds 3 of 8 slots
    got = pool_health(hubs, top=2, head=0.25)
    assert got == {"distinct_top2": 3.0, "head_share_top2": pytest.approx(3 / 8), "max_rows_top2": 3.0}
    # a pool whose rows' first slots all differ: every content once, head 1 of 4 slots
    spread = np.array([[1, -1], [2, -1], [3, -1], [0, -1]])
    assert pool_health(spread, top=2, head=0.25) == {"distinct_top2": 4.0, "head_share_top2": 0.25,
                                                     "max_rows_top2": 1.0}


def test_padding_empty_rows_and_the_head_count():
    # row 2 is empty: 2 rows with an entry, head = ceil(0.6 x 2) = 2 contents
    pool = np.array([[5, 6, -1], [5, -1, -1], [-1, -1, -1]])
    got = pool_health(pool, top=10, head=0.6)
    assert math.ceil(0.6 * 2) == 2
    assert got == {"distinct_top10": 2.0, "head_share_top10": 1.0, "max_rows_top10": 2.0}
    empty = pool_health(np.full((3, 2), -1), top=10)
    assert empty["distinct_top10"] == 0.0 and np.isnan(empty["head_share_top10"]) and empty["max_rows_top10"] == 0.0
    with pytest.raises(ValueError, match="top must be >= 1"):
        pool_health(pool, top=0)
    with pytest.raises(ValueError, match=r"head must be in \(0, 1\]"):
        pool_health(pool, head=0)
    with pytest.raises(ValueError, match=r"neighbors must be \[C, P\]"):
        pool_health(np.arange(3))


def test_train_logs_each_folds_pool_health(tiny_cfg, tmp_path):
    """A co-click run logs its pools' health per fold, equal to the health of the pool it saved."""
    import json

    import pandas as pd

    import train as train_app

    metrics, state = train_app.train(tiny_cfg(["model=coclick"]))
    saved = pd.read_parquet(tmp_path / "run" / "pool.parquet")
    ids = state["dataset"].contents["content_id"].to_numpy()
    from graphrecall.recall.pool import CandidatePool

    pool = CandidatePool.load(tmp_path / "run" / "pool.parquet", ids)
    assert len(saved) == (pool.neighbors >= 0).sum()
    expected = pool_health(pool.neighbors)
    for key, value in expected.items():
        assert metrics[f"test/fit/pool/{key}"] == pytest.approx(value, nan_ok=True)
    assert "val/fit/pool/distinct_top10" in metrics
    logged = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    assert logged["test/fit/pool/distinct_top10"] == expected["distinct_top10"] > 0


def test_mean_pairwise_cosine_by_hand():
    from graphrecall.metrics import mean_pairwise_cosine

    # (1, 0), (0, 2), (3, 3): cosines 0, 1/sqrt2, 1/sqrt2 -> mean over the 3 pairs
    v = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    assert mean_pairwise_cosine(v) == pytest.approx((0 + 2 / math.sqrt(2)) / 3)
    brute = [v[i] @ v[j] / np.linalg.norm(v[i]) / np.linalg.norm(v[j]) for i in range(3) for j in range(3) if i != j]
    assert mean_pairwise_cosine(v) == pytest.approx(np.mean(brute))
    # a zero vector: cosine 0 with the others (pairs (0,1) cos 1, the other 4 ordered pairs 0)
    assert mean_pairwise_cosine(np.array([[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]])) == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="C >= 2"):
        mean_pairwise_cosine(np.ones((1, 3)))
