"""Tests of graphrecall.metrics on hand-computed tiny cases, plus a cross-check against PyG."""

from math import log2

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from graphrecall.metrics import (
    average_popularity_at_k,
    bootstrap_ci,
    coverage_at_k,
    distinct_values_at_k,
    global_metrics,
    hit_rate_at_k,
    inverse_popularity_weights,
    ips_recall_at_k,
    labels_to_csr,
    long_tail_share_at_k,
    ndcg_at_k,
    paired_bootstrap_diff,
    per_user_metrics,
    precision_at_k,
    recall_at_k,
    summarise,
    tail_items,
    validate_recs,
)

NAN = np.nan

# 4 users, 6 items. User 1's list is padded; user 3 has no test item.
RECS = np.array(
    [
        [0, 1, 2, 3],
        [4, 5, -1, -1],
        [2, 0, 5, 1],
        [3, -1, -1, -1],
    ],
    dtype=np.int64,
)
TEST_ITEMS = {0: [1, 3, 5], 1: [5], 2: [4], 3: []}
POP = np.array([10.0, 5.0, 0.0, 2.0, 1.0, 4.0])
C = 6


def make_targets(test_items: dict[int, list[int]], num_users: int, num_items: int) -> sp.csr_matrix:
    rows = [u for u, items in test_items.items() for _ in items]
    cols = [i for items in test_items.values() for i in items]
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_users, num_items))


TARGETS = make_targets(TEST_ITEMS, 4, C)


def assert_close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, dtype=float), expected, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# Accuracy metrics
# ---------------------------------------------------------------------------------------------
def test_recall_hand_case():
    # u0 hits items 1 (rank 2) and 3 (rank 4) of {1, 3, 5}; u1 hits 5; u2 misses 4.
    assert_close(recall_at_k(RECS, TARGETS, 4), [2 / 3, 1 / 1, 0 / 1, NAN])
    assert_close(recall_at_k(RECS, TARGETS, 2), [1 / 3, 1 / 1, 0 / 1, NAN])
    assert_close(recall_at_k(RECS, TARGETS, 1), [0 / 3, 0 / 1, 0 / 1, NAN])


def test_precision_hit_rate_hand_case():
    assert_close(precision_at_k(RECS, TARGETS, 4), [2 / 4, 1 / 4, 0 / 4, NAN])
    assert_close(precision_at_k(RECS, TARGETS, 2), [1 / 2, 1 / 2, 0 / 2, NAN])
    assert_close(hit_rate_at_k(RECS, TARGETS, 4), [1, 1, 0, NAN])
    assert_close(hit_rate_at_k(RECS, TARGETS, 1), [0, 0, 0, NAN])


def test_ndcg_hand_case():
    expected_k4 = [
        (1 / log2(3) + 1 / log2(5)) / (1 / log2(2) + 1 / log2(3) + 1 / log2(4)),
        (1 / log2(3)) / (1 / log2(2)),
        0.0,
        NAN,
    ]
    assert_close(ndcg_at_k(RECS, TARGETS, 4), expected_k4)
    # k = 2: only u0's rank-2 hit counts; IDCG over min(3, 2) = 2 ranks.
    expected_k2 = [
        (1 / log2(3)) / (1 / log2(2) + 1 / log2(3)),
        (1 / log2(3)) / (1 / log2(2)),
        0.0,
        NAN,
    ]
    assert_close(ndcg_at_k(RECS, TARGETS, 2), expected_k2)


def test_k_beyond_list_length_counts_missing_slots_as_misses():
    # K_max = 4 < k = 10: same hits as k = 4, precision still / 10, IDCG over min(3, 10) = 3.
    assert_close(recall_at_k(RECS, TARGETS, 10), recall_at_k(RECS, TARGETS, 4))
    assert_close(ndcg_at_k(RECS, TARGETS, 10), ndcg_at_k(RECS, TARGETS, 4))
    assert_close(precision_at_k(RECS, TARGETS, 10), [2 / 10, 1 / 10, 0 / 10, NAN])


def test_ips_recall_and_weights():
    w = inverse_popularity_weights(POP)  # popularity 0 clipped to floor 1
    assert_close(w, [1 / 10, 1 / 5, 1 / 1, 1 / 2, 1 / 1, 1 / 4])
    assert_close(
        inverse_popularity_weights(POP, power=0.5, floor=2),
        [10**-0.5, 5**-0.5, 2**-0.5, 2**-0.5, 2**-0.5, 4**-0.5],  # 0, 1 and 2 clipped to 2
    )
    expected = [(1 / 5 + 1 / 2) / (1 / 5 + 1 / 2 + 1 / 4), (1 / 4) / (1 / 4), 0 / 1, NAN]
    assert_close(ips_recall_at_k(RECS, TARGETS, w, 4), expected)
    # Uniform weights reduce to plain recall.
    assert_close(ips_recall_at_k(RECS, TARGETS, np.ones(C), 4), recall_at_k(RECS, TARGETS, 4))
    with pytest.raises(ValueError):
        inverse_popularity_weights(POP, floor=0)


def test_padding_is_never_a_hit():
    # Key user * C + item of a -1 in row 1 equals that of item C-1 in row 0: must not match.
    recs = np.array([[0, 1], [-1, -1], [-1, 5]])
    targets = make_targets({0: [5], 1: [5], 2: [5]}, 3, C)
    assert_close(recall_at_k(recs, targets, 2), [0, 0, 1])
    assert_close(ndcg_at_k(recs, targets, 2), [0, 0, (1 / log2(3)) / (1 / log2(2))])


def test_targets_values_and_duplicates_ignored():
    # Weights other than 1, a duplicate entry and an explicit zero: binary relevance.
    targets = sp.csr_matrix(
        (np.array([3.0, 2.0, 0.0]), (np.array([0, 0, 0]), np.array([1, 1, 2]))), shape=(1, C)
    )
    assert_close(recall_at_k(np.array([[1, 2]]), targets, 2), [1.0])


def test_input_checks():
    with pytest.raises(ValueError):
        recall_at_k(RECS, TARGETS, 0)
    with pytest.raises(ValueError):
        recall_at_k(RECS[:3], TARGETS, 4)  # rows must align
    with pytest.raises(ValueError):
        recall_at_k(np.array([[6, 0]]), make_targets({0: [1]}, 1, C), 2)  # item >= C
    with pytest.raises(TypeError):
        recall_at_k(RECS.astype(float), TARGETS, 2)
    with pytest.raises(ValueError, match="row 1 repeats"):
        validate_recs(np.array([[0, 1, -1, -1], [2, 3, 2, -1]]), C)
    assert validate_recs(RECS, C).dtype == np.int64  # repeated -1 is fine


# ---------------------------------------------------------------------------------------------
# Beyond-accuracy metrics
# ---------------------------------------------------------------------------------------------
def test_coverage():
    assert coverage_at_k(RECS, C, 4) == pytest.approx(6 / 6)
    assert coverage_at_k(RECS, C, 1) == pytest.approx(len({0, 4, 2, 3}) / 6)  # padding not an item
    assert coverage_at_k(np.array([[-1, -1]]), C, 2) == 0.0


def test_average_popularity_excludes_padding():
    expected = [(10 + 5 + 0 + 2) / 4, (1 + 4) / 2, (0 + 10 + 4 + 5) / 4, 2 / 1]
    assert_close(average_popularity_at_k(RECS, POP, 4), expected)
    assert_close(average_popularity_at_k(np.array([[-1]]), POP, 1), [NAN])


def test_tail_items_and_share():
    # Head = floor(0.2 * 6) = 1 item: item 0 (popularity 10).
    assert tail_items(POP, 0.2).tolist() == [False, True, True, True, True, True]
    # Head = 3 items: 0 (10), 1 (5), 5 (4).
    is_tail = tail_items(POP, 0.5)
    assert is_tail.tolist() == [False, False, True, True, True, False]
    # Ties: items 0, 1, 3 share popularity 3; head of floor(0.4 * 5) = 2 takes the lower indices.
    assert tail_items(np.array([3, 3, 1, 3, 0]), 0.4).tolist() == [False, False, True, True, True]
    assert tail_items(POP, 0.0).all() and not tail_items(POP, 1.0).any()
    # u0 [0,1,2,3]: tail 2,3; u1 [4,5]: tail 4; u2 [2,0,5,1]: tail 2; u3 [3]: tail 3.
    assert_close(long_tail_share_at_k(RECS, is_tail, 4), [2 / 4, 1 / 2, 1 / 4, 1 / 1])
    assert_close(long_tail_share_at_k(RECS, is_tail, 1), [0 / 1, 1 / 1, 1 / 1, 1 / 1])


GENRES = pd.Series(
    [["Action", "Comedy"], "Action", [], ["Drama", "Comedy", "Drama"], None, ("Drama",)]
)


def test_labels_to_csr_multi_valued():
    labels, vocab = labels_to_csr(GENRES)
    assert vocab == ["Action", "Comedy", "Drama"]
    assert labels.shape == (6, 3)
    expected = [[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 1, 1], [0, 0, 0], [0, 0, 1]]
    np.testing.assert_array_equal(labels.toarray(), expected)  # "Drama" twice counted once
    labels2, vocab2 = labels_to_csr(["x", np.nan, "y"], vocabulary=["y", "x", "z"])
    assert vocab2 == ["y", "x", "z"]
    np.testing.assert_array_equal(labels2.toarray(), [[0, 1, 0], [0, 0, 0], [1, 0, 0]])
    with pytest.raises(ValueError):
        labels_to_csr(["x", "w"], vocabulary=["x"])


def test_distinct_values_multi_valued():
    labels, _ = labels_to_csr(GENRES)
    # u0 items 0,1,2,3 -> {Action, Comedy, Drama}; u1 items 4,5 -> {Drama};
    # u2 items 2,0,5,1 -> {Action, Comedy, Drama}; u3 item 3 -> {Comedy, Drama}.
    assert distinct_values_at_k(RECS, labels, 4).tolist() == [3, 1, 3, 2]
    # k = 1: items 0 -> 2 values, 4 -> none, 2 -> none, 3 -> 2 values.
    assert distinct_values_at_k(RECS, labels, 1).tolist() == [2, 0, 0, 2]
    # Single-valued field: the plain number of distinct styles.
    styles, _ = labels_to_csr(["nordic", "nordic", "japanese", "nordic", "wabi", "wabi"])
    assert distinct_values_at_k(RECS, styles, 4).tolist() == [2, 1, 3, 1]


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------
def test_per_user_metrics_matches_the_functions():
    labels, _ = labels_to_csr(GENRES)
    w = inverse_popularity_weights(POP)
    is_tail = tail_items(POP, 0.5)
    table = per_user_metrics(
        RECS, TARGETS, ks=(2, 4), item_popularity=POP, is_tail=is_tail, item_weight=w,
        label_sets={"genre": labels},
    )
    assert table.shape == (4, 2 * 9)  # 8 metrics + distinct_genre_clicked, at two cut-offs
    assert list(table.columns[:4]) == ["recall@2", "recall@4", "ndcg@2", "ndcg@4"]
    for k in (2, 4):
        assert_close(table[f"recall@{k}"], recall_at_k(RECS, TARGETS, k))
        assert_close(table[f"ndcg@{k}"], ndcg_at_k(RECS, TARGETS, k))
        assert_close(table[f"hit_rate@{k}"], hit_rate_at_k(RECS, TARGETS, k))
        assert_close(table[f"precision@{k}"], precision_at_k(RECS, TARGETS, k))
        assert_close(table[f"ips_recall@{k}"], ips_recall_at_k(RECS, TARGETS, w, k))
        assert_close(table[f"avg_pop@{k}"], average_popularity_at_k(RECS, POP, k))
        assert_close(table[f"tail_share@{k}"], long_tail_share_at_k(RECS, is_tail, k))
        assert_close(table[f"distinct_genre@{k}"], distinct_values_at_k(RECS, labels, k))
    assert global_metrics(RECS, C, ks=(1, 4)) == {"coverage@1": 4 / 6, "coverage@4": 1.0}


def test_summarise_slices_and_cis():
    per_user = per_user_metrics(RECS, TARGETS, ks=(4,), item_popularity=POP)
    slices = {"padded": np.array([False, True, False, True])}
    table = summarise(per_user, slices, ci_metrics=["recall@4"], num_resamples=200)
    assert list(table.columns) == ["mean", "ci_low", "ci_high", "n_users"]
    assert table.index.names == ["slice", "metric"]
    row = table.loc[("all", "recall@4")]
    assert row["mean"] == pytest.approx((2 / 3 + 1 + 0) / 3) and row["n_users"] == 3
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    padded = table.loc[("padded", "recall@4")]
    assert padded["mean"] == pytest.approx(1.0) and padded["n_users"] == 1  # u3 has no test item
    avg_pop = table.loc[("padded", "avg_pop@4")]
    assert avg_pop["mean"] == pytest.approx(((1 + 4) / 2 + 2) / 2) and np.isnan(avg_pop["ci_low"])
    with pytest.raises(ValueError):
        summarise(per_user, {"bad": np.array([1, 0, 1, 0])})
    with pytest.raises(KeyError):
        summarise(per_user, ci_metrics=["recall@50"])


# ---------------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------------
def test_bootstrap_ci_basics():
    rng = np.random.default_rng(1)
    small = rng.normal(0.3, 0.1, size=100)
    large = rng.normal(0.3, 0.1, size=10_000)
    mean, low, high = bootstrap_ci(small, num_resamples=500)
    assert mean == pytest.approx(small.mean()) and low < mean < high
    _, low_l, high_l = bootstrap_ci(large, num_resamples=500)
    assert high_l - low_l < (high - low) / 5  # width ~ 1/sqrt(n): 10x narrower expected
    seeded = bootstrap_ci(small, num_resamples=500, seed=3)
    assert seeded == bootstrap_ci(small, num_resamples=500, seed=3)
    assert seeded != bootstrap_ci(small, num_resamples=500, seed=4)
    assert bootstrap_ci(np.array([1.0, NAN, 3.0]))[0] == pytest.approx(2.0)
    assert all(np.isnan(bootstrap_ci(np.array([NAN]))))
    # Standard error of the mean is 0.1 / sqrt(100) = 0.01: a 95% interval is about +-0.02.
    assert 0.025 < high - low < 0.055


def test_paired_bootstrap_diff():
    rng = np.random.default_rng(2)
    b = rng.uniform(size=500)
    assert paired_bootstrap_diff(b, b.copy(), num_resamples=300) == (0.0, 0.0, 0.0, 1.0)
    a = b + 0.05 + rng.normal(0, 0.05, size=500)  # clear improvement
    mean, low, high, p = paired_bootstrap_diff(a, b, num_resamples=300)
    assert 0 < low < mean < high and p == pytest.approx(1 / 301)
    # Pure noise: the interval covers 0 and the p-value is not small.
    noise = b + rng.normal(0, 0.05, size=500)
    noise -= noise.mean() - b.mean()  # exact mean difference 0
    _, low, high, p = paired_bootstrap_diff(noise, b, num_resamples=300)
    assert low < 0 < high and p > 0.5
    # NaN in either run drops that user.
    a2, b2 = np.array([1.0, NAN, 2.0]), np.array([0.0, 5.0, NAN])
    assert paired_bootstrap_diff(a2, b2, num_resamples=10)[0] == 1.0
    with pytest.raises(ValueError):
        paired_bootstrap_diff(a2, b2[:2])


# ---------------------------------------------------------------------------------------------
# Cross-check against PyTorch Geometric (same definitions on unpadded lists)
# ---------------------------------------------------------------------------------------------
def test_means_match_torch_geometric():
    torch = pytest.importorskip("torch")
    link_pred = pytest.importorskip("torch_geometric.metrics.link_pred")

    rng = np.random.default_rng(0)
    num_users, num_items, k_max = 300, 60, 20
    recs = np.argsort(rng.random((num_users, num_items)), axis=1)[:, :k_max]  # unique per row
    dense = rng.random((num_users, num_items)) < rng.uniform(0, 0.15, size=(num_users, 1))
    dense[:10] = False  # some users without test items
    targets = sp.csr_matrix(dense)
    pop = rng.integers(0, 50, size=num_items).astype(np.float64)
    w = inverse_popularity_weights(pop)

    rows, cols = targets.nonzero()
    pred = torch.from_numpy(recs)
    edge_label_index = torch.from_numpy(np.stack([rows, cols]).astype(np.int64))
    edge_label_weight = torch.from_numpy(w[cols])

    def pyg(metric, weight=None):
        metric.update(pred, edge_label_index, weight)
        return float(metric.compute())

    pairs = [
        (recall_at_k, link_pred.LinkPredRecall),
        (ndcg_at_k, link_pred.LinkPredNDCG),
        (precision_at_k, link_pred.LinkPredPrecision),
        (hit_rate_at_k, link_pred.LinkPredHitRatio),
    ]
    for k in (1, 5, 20):
        # PyG averages over users with >= 1 test item: our nanmean (NaN for the others).
        for ours, theirs in pairs:
            assert np.nanmean(ours(recs, targets, k)) == pytest.approx(pyg(theirs(k)), rel=1e-5)
        ips_pyg = pyg(link_pred.LinkPredRecall(k, weighted=True), edge_label_weight)
        assert np.nanmean(ips_recall_at_k(recs, targets, w, k)) == pytest.approx(ips_pyg, rel=1e-5)
        cov_pyg = pyg(link_pred.LinkPredCoverage(k, num_items))
        assert coverage_at_k(recs, num_items, k) == pytest.approx(cov_pyg, rel=1e-6)
        # ARP: PyG averages over all users, ours is per user (defined without test items too).
        arp_pyg = pyg(link_pred.LinkPredAveragePopularity(k, torch.from_numpy(pop)))
        assert np.mean(average_popularity_at_k(recs, pop, k)) == pytest.approx(arp_pyg, rel=1e-5)


def test_distinct_values_of_clicked_recommendations():
    from graphrecall.metrics import labels_to_csr, per_user_metrics

    recs = np.array([[0, 1, 2], [2, 3, -1]])
    targets = sp.csr_matrix(([1, 1, 1], ([0, 0, 1], [1, 2, 0])), shape=(2, 4))
    labels, _ = labels_to_csr(["A", "A", "B", "C"])
    table = per_user_metrics(recs, targets, ks=(2, 3), label_sets={"style": labels})
    # user 0 clicks items 1 (A) and 2 (B); user 1 clicks nothing it was shown
    assert table["distinct_style_clicked@3"].tolist() == [2, 0]
    assert table["distinct_style_clicked@2"].tolist() == [1, 0]  # only item 1 is a hit in the top 2
    assert table["distinct_style@3"].tolist() == [2, 2]


# ------------------------------------------------------------------------------- content slices
def test_click_bins_edges_and_names() -> None:
    from graphrecall.metrics import click_bin_names, click_bins

    counts = np.array([0, 1, 2, 3, 9, 10, 250])
    bins = click_bins(counts)  # default [0, 1, 3, 10]
    assert list(bins) == ["clicks_0", "clicks_1-2", "clicks_3-9", "clicks_10+"]
    assert {k: np.flatnonzero(v).tolist() for k, v in bins.items()} == {
        "clicks_0": [0], "clicks_1-2": [1, 2], "clicks_3-9": [3, 4], "clicks_10+": [5, 6]}
    assert click_bin_names([0, 5]) == ["clicks_0-4", "clicks_5+"]
    assert click_bin_names([0]) == ["clicks_0+"]
    with pytest.raises(ValueError, match="eval.content_bins"):
        click_bins(counts, [0, 3, 2])
    with pytest.raises(ValueError, match="non-negative"):
        click_bins(np.array([0, -1]))


def test_slice_recall_at_k_hand_case() -> None:
    from graphrecall.metrics import restrict_targets, slice_recall_at_k

    # 3 users, 5 items; slice = items {1, 3}
    recs = np.array([[1, 0, 3], [2, 4, -1], [3, 1, 0]])
    targets = sp.csr_matrix(np.array([[1, 1, 0, 1, 0],   # slice targets {1, 3}: both hit by rank 3
                                      [0, 0, 1, 0, 0],   # no slice target: NaN (its hit on 2 is outside)
                                      [0, 0, 0, 1, 1]]))  # slice target {3}: hit at rank 1
    mask = np.array([False, True, False, True, False])
    np.testing.assert_allclose(slice_recall_at_k(recs, targets, mask, 3), [1.0, NAN, 1.0])
    np.testing.assert_allclose(slice_recall_at_k(recs, targets, mask, 1), [0.5, NAN, 1.0])
    assert restrict_targets(targets, mask).toarray().tolist() == [[0, 1, 0, 1, 0], [0] * 5, [0, 0, 0, 1, 0]]
    # the slices of a partition add up to the plain hit count
    hits_total = recall_at_k(recs, targets, 3) * np.asarray(targets.sum(axis=1)).ravel()
    parts = [np.nan_to_num(slice_recall_at_k(recs, targets, m, 3)) * np.asarray(targets.multiply(m).sum(axis=1)).ravel()
             for m in (mask, ~mask)]
    np.testing.assert_allclose(parts[0] + parts[1], hits_total)
