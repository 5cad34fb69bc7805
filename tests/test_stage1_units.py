"""Stage-1 building blocks on hand-made cases: top-k sampling, subgraphs, negatives, encoders,
losses and the offline pool search (design brief, section 2).

Expected values are written out by hand or computed independently (plain Python / numpy).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graphrecall.graphs.sampling import k_hop_subgraph, sample_negatives, top_k_graph
from graphrecall.losses import BPRLoss, PairBCELoss
from graphrecall.models.encoders import GNNEncoder, SideInfoEncoder, WeightedSAGEConv
from graphrecall.models.features import FieldBags
from graphrecall.recall.ann import build_pool, exact_topk, faiss_flat_topk, hnsw_topk, pool_recall
from graphrecall.recall.pool import CandidatePool

# --------------------------------------------------------------------------- helpers


def csr(n: int, entries: list[tuple[int, int, float]]) -> sp.csr_matrix:
    """CSR from (row, col, weight) triples, explicit zeros stored as given."""
    r, c, w = zip(*entries)
    m = sp.csr_matrix((np.array(w, dtype=np.float64), (np.array(r), np.array(c))), shape=(n, n))
    return m


def random_graph(n: int, density: float, seed: int) -> sp.csr_matrix:
    """Random directed weighted graph without self-loops; some rows end up empty."""
    rng = np.random.default_rng(seed)
    m = sp.random(n, n, density=density, format="csr", random_state=rng, data_rvs=lambda s: rng.uniform(0.1, 1, s))
    keep_row = np.arange(n) >= n // 10  # the first rows: all neighbours thresholded away
    m = sp.diags(keep_row.astype(np.float64)) @ m @ sp.diags(np.ones(n))
    m = sp.csr_matrix(m - sp.diags(m.diagonal()))  # no self-loops
    m.eliminate_zeros()
    return m


def bags(rows: list[list[int]], num_values: int) -> FieldBags:
    indptr = np.cumsum([0] + [len(r) for r in rows])
    values = [v for r in rows for v in r]
    return FieldBags(torch.tensor(indptr, dtype=torch.long), torch.tensor(values, dtype=torch.long), num_values)


def random_features(n: int, seed: int) -> tuple[dict[str, int], dict[str, FieldBags]]:
    """A single-valued field and a multi-valued one (0-3 values, some bags empty)."""
    rng = np.random.default_rng(seed)
    style = [[int(rng.integers(5))] for _ in range(n)]
    products = [sorted(rng.choice(7, size=int(rng.integers(0, 4)), replace=False).tolist()) for _ in range(n)]
    return {"style": 5, "products": 7}, {"style": bags(style, 5), "products": bags(products, 7)}


# --------------------------------------------------------------------------- top_k_graph


@pytest.fixture
def four_nodes():
    # row 0: weights 0.5 (col 3), 0.5 (col 1), 0.9 (col 2): k=2 keeps 2, then the tie 1 vs 3 -> 1
    # row 1: one neighbour; row 2: only explicit zeros (thresholded away); row 3: nothing stored
    w = csr(4, [(0, 3, 0.5), (0, 1, 0.5), (0, 2, 0.9), (1, 0, 0.3), (2, 0, 0.0), (2, 3, 0.0)])
    return w, top_k_graph(w, k=2)


def test_top_k_graph_kept_neighbours_and_alpha(four_nodes):
    w, g = four_nodes
    assert w.nnz == 6  # the zeros are stored, and the caller's matrix is left alone
    assert g.rowptr.tolist() == [0, 2, 3, 3, 3]
    assert g.col.tolist() == [2, 1, 0]
    assert g.weight.tolist() == pytest.approx([0.9, 0.5, 0.3])
    assert g.alpha.tolist() == pytest.approx([0.9 / 1.4, 0.5 / 1.4, 1.0])
    sums = torch.zeros(4).index_add_(0, g.row(), g.alpha)
    assert sums.tolist() == pytest.approx([1.0, 1.0, 0.0, 0.0])
    assert g.degree().tolist() == [2, 1, 0, 0]
    assert g.isolated() == 2
    assert not torch.isnan(g.alpha).any()


def test_top_k_graph_contains_and_edge_direction(four_nodes):
    _, g = four_nodes
    src = torch.tensor([0, 0, 0, 1, 1, 2, 3, 2])
    dst = torch.tensor([2, 1, 3, 0, 2, 0, 0, 3])
    assert g.contains(src, dst).tolist() == [True, True, False, True, False, False, False, False]
    # source = neighbour j, target = aggregating node i
    assert g.edge_index().tolist() == [[2, 1, 0], [0, 0, 1]]


def test_top_k_graph_k_larger_than_row():
    g = top_k_graph(csr(3, [(0, 1, 2.0), (0, 2, 6.0), (1, 0, 1.0)]), k=10)
    assert g.col.tolist() == [2, 1, 0]
    assert g.alpha.tolist() == pytest.approx([0.75, 0.25, 1.0])


def test_isolated_nodes_give_finite_encoder_output(four_nodes):
    _, g = four_nodes
    sizes, feats = random_features(4, seed=0)
    for aggregator in ("mean", "sum", "gat"):
        enc = GNNEncoder(sizes, field_dim=4, hidden_dim=8, aggregator=aggregator, heads=2).eval()
        h = enc(torch.arange(4), g.edge_index(), g.alpha, feats)
        assert torch.isfinite(h).all()


# --------------------------------------------------------------------------- k_hop_subgraph


def test_k_hop_subgraph_seeds_first_in_order_given():
    g = top_k_graph(random_graph(50, 0.1, seed=1), k=3)
    seeds = torch.tensor([31, 7, 44, 7])
    sub = k_hop_subgraph(g, seeds, hops=2)
    assert sub.num_seeds == 3
    assert sub.nodes[:3].tolist() == [31, 7, 44]
    assert sub.nodes.unique().numel() == sub.nodes.numel()
    # every subgraph edge is an edge of the top-k graph, with its alpha
    src, dst = sub.nodes[sub.edge_index[0]], sub.nodes[sub.edge_index[1]]
    assert g.contains(dst, src).all()


@pytest.mark.parametrize("aggregator", ["mean", "sum", "gat"])
def test_k_hop_subgraph_matches_full_graph(aggregator):
    torch.manual_seed(0)
    n = 50
    g = top_k_graph(random_graph(n, 0.12, seed=2), k=3)
    sizes, feats = random_features(n, seed=3)
    enc = GNNEncoder(sizes, field_dim=4, hidden_dim=8, num_layers=2, aggregator=aggregator, heads=2,
                     num_nodes=n, dropout=0.5).eval()
    full = enc(torch.arange(n), g.edge_index(), g.alpha, feats)
    seeds = torch.tensor([12, 3, 40])
    sub = k_hop_subgraph(g, seeds, hops=2)
    assert sub.nodes.numel() < n  # a real subgraph, not the whole graph
    h = enc(sub.nodes, sub.edge_index, sub.alpha, feats)
    torch.testing.assert_close(h[: sub.num_seeds], full[seeds], rtol=1e-5, atol=1e-6)


def test_k_hop_subgraph_fanouts_keep_each_levels_strongest_neighbours():
    # node 0: neighbours 1 (0.6), 2 (0.3), 3 (0.1); node 1: 4 (0.5), 5 (0.4), 0 (0.1);
    # node 2: 6 (0.7), 7 (0.2); other nodes have no neighbour
    w = csr(8, [(0, 1, 0.6), (0, 2, 0.3), (0, 3, 0.1), (1, 4, 0.5), (1, 5, 0.4), (1, 0, 0.1),
                (2, 6, 0.7), (2, 7, 0.2)])
    g = top_k_graph(w, k=3)
    # fan-out 2 at the seed, 1 at the next level: 0 keeps 1 and 2; 1 keeps 4; 2 keeps 6
    sub = k_hop_subgraph(g, torch.tensor([0]), hops=2, fanouts=[2, 1])
    edges = {(int(sub.nodes[j]), int(sub.nodes[i])): a for (j, i), a in zip(sub.edge_index.T.tolist(), sub.alpha.tolist())}
    assert set(edges) == {(1, 0), (2, 0), (4, 1), (6, 2)}  # (neighbour, aggregating node)
    assert edges[(1, 0)] == pytest.approx(0.6 / 0.9) and edges[(2, 0)] == pytest.approx(0.3 / 0.9)
    assert edges[(4, 1)] == pytest.approx(1.0) and edges[(6, 2)] == pytest.approx(1.0)  # renormalised
    assert sorted(sub.nodes.tolist()) == [0, 1, 2, 4, 6]
    # fan-outs at least k give the exact subgraph
    exact, wide = k_hop_subgraph(g, torch.tensor([0]), hops=2), k_hop_subgraph(g, torch.tensor([0]), 2, [3, 3])
    assert exact.nodes.tolist() == wide.nodes.tolist() and torch.equal(exact.edge_index, wide.edge_index)
    torch.testing.assert_close(exact.alpha, wide.alpha)
    with pytest.raises(ValueError, match="one value per layer"):
        k_hop_subgraph(g, torch.tensor([0]), hops=2, fanouts=[2])


# --------------------------------------------------------------------------- sample_negatives


def bad_draws(g, src: torch.Tensor, neg: torch.Tensor) -> int:
    """Neighbours or self among the negatives, counted independently of ``contains``."""
    nbrs = {i: set(g.col[g.rowptr[i] : g.rowptr[i + 1]].tolist()) | {i} for i in range(g.num_nodes)}
    return sum(int(j) in nbrs[int(s)] for s, row in zip(src, neg) for j in row)


def test_sample_negatives_avoids_neighbours_and_is_deterministic():
    g = top_k_graph(random_graph(400, 0.02, seed=4), k=3)
    src = torch.arange(0, 400, 3)
    neg, collisions = sample_negatives(g, src, 6, generator=torch.Generator().manual_seed(0))
    assert neg.shape == (src.numel(), 6)
    assert collisions == 0 and bad_draws(g, src, neg) == 0
    again, _ = sample_negatives(g, src, 6, generator=torch.Generator().manual_seed(0))
    other, _ = sample_negatives(g, src, 6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(neg, again)
    assert not torch.equal(neg, other)


def test_sample_negatives_reports_collisions_left():
    # node 0 has 8 of the 9 other nodes as neighbours: most draws collide, even after the redraw
    g = top_k_graph(csr(10, [(0, j, 1.0) for j in range(1, 9)] + [(1, 0, 1.0)]), k=8)
    src = torch.tensor([0] * 20 + [1] * 5)
    neg, collisions = sample_negatives(g, src, 4, generator=torch.Generator().manual_seed(0))
    assert collisions == bad_draws(g, src, neg)
    assert collisions > 0


def test_sample_negatives_candidates():
    g = top_k_graph(csr(6, [(0, 1, 1.0), (2, 3, 1.0)]), k=2)
    cand = torch.tensor([1, 4, 5])
    neg, collisions = sample_negatives(g, torch.tensor([0, 2]), 5, torch.Generator().manual_seed(0), cand)
    assert set(neg.flatten().tolist()) <= {1, 4, 5}
    assert collisions == bad_draws(g, torch.tensor([0, 2]), neg)


# --------------------------------------------------------------------------- WeightedSAGEConv


@pytest.fixture
def fixed_conv():
    def make(aggr: str) -> WeightedSAGEConv:
        conv = WeightedSAGEConv(2, 2, aggr=aggr)
        with torch.no_grad():
            conv.lin_self.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
            conv.lin_self.bias.copy_(torch.tensor([0.5, -0.5]))
            conv.lin_neigh.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # swaps the two entries
        return conv

    return make


# node 0 aggregates 1 (alpha 0.25) and 2 (alpha 0.75); node 1 aggregates 0; node 2 is isolated
X = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
EDGES = torch.tensor([[1, 2, 0], [0, 0, 1]])
ALPHA = torch.tensor([0.25, 0.75, 1.0])


@pytest.mark.parametrize(
    ("aggr", "expected"),
    [
        # mean: 0.25*[3,4] + 0.75*[5,6] = [4.5, 5.5] -> swapped [5.5, 4.5]; self [1.5, 3.5]
        ("mean", [[7.0, 8.0], [5.5, 8.5], [5.5, 11.5]]),
        # sum: [3,4] + [5,6] = [8, 10] -> swapped [10, 8]; self [1.5, 3.5]
        ("sum", [[11.5, 11.5], [5.5, 8.5], [5.5, 11.5]]),
    ],
)
def test_weighted_sage_conv_by_hand(fixed_conv, aggr, expected):
    out = fixed_conv(aggr)(X, EDGES, ALPHA)
    torch.testing.assert_close(out, torch.tensor(expected))
    # the isolated node keeps its self term W_1 x + b
    torch.testing.assert_close(out[2], torch.tensor([5.0 + 0.5, 12.0 - 0.5]))


def test_weighted_sage_conv_sum_ignores_alpha(fixed_conv):
    conv = fixed_conv("sum")
    torch.testing.assert_close(conv(X, EDGES, ALPHA), conv(X, EDGES, None))


def test_weighted_sage_conv_repr_and_errors():
    assert str(WeightedSAGEConv(16, 8)) == "WeightedSAGEConv(16, 8, aggr=mean)"
    assert str(WeightedSAGEConv(4, 4, aggr="sum")) == "WeightedSAGEConv(4, 4, aggr=sum)"
    with pytest.raises(ValueError, match="mean' or 'sum"):
        WeightedSAGEConv(4, 4, aggr="max")
    with pytest.raises(ValueError, match="alpha"):
        WeightedSAGEConv(2, 2)(X, EDGES)


@pytest.mark.parametrize(("aggregator", "conv_repr"),
                         [("mean", "aggr=mean"), ("sum", "aggr=sum"), ("gat", "GATConv(16, 16, heads=2)")])
def test_gnn_encoder_shapes_and_repr(aggregator, conv_repr):
    n = 12
    g = top_k_graph(random_graph(n, 0.3, seed=5), k=3)
    sizes, feats = random_features(n, seed=6)
    enc = GNNEncoder(sizes, field_dim=4, hidden_dim=16, aggregator=aggregator, heads=2)
    assert enc(torch.arange(n), g.edge_index(), g.alpha, feats).shape == (n, 16)
    assert enc.aggregator == aggregator
    assert conv_repr in repr(enc)
    assert len(enc.convs) == 2


def test_gnn_encoder_normalize_gives_unit_rows():
    n = 12
    g = top_k_graph(random_graph(n, 0.3, seed=7), k=3)
    sizes, feats = random_features(n, seed=8)
    enc = GNNEncoder(sizes, field_dim=4, hidden_dim=16, normalize=True, num_nodes=n).eval()
    h = enc(torch.arange(n), g.edge_index(), g.alpha, feats)
    torch.testing.assert_close(h.norm(dim=1), torch.ones(n))


def test_gnn_encoder_unknown_aggregator():
    with pytest.raises(ValueError, match="aggregator"):
        GNNEncoder({"style": 3}, aggregator="max")


# --------------------------------------------------------------------------- SideInfoEncoder, FieldBags


def test_field_bags_gather_offsets():
    products = bags([[1, 3], [], [2], [0, 1, 2]], num_values=4)
    values, offsets = products.gather(torch.tensor([2, 1, 0, 3]))
    assert values.tolist() == [2, 1, 3, 0, 1, 2]
    assert offsets.tolist() == [0, 1, 1, 3]
    values, offsets = products.gather(torch.tensor([1]))
    assert values.tolist() == [] and offsets.tolist() == [0]


def test_side_info_encoder_pooling_by_hand():
    # style: single-valued; products: content 0 has two values, content 1 none
    feats = {"style": bags([[0], [2], [1]], 3), "products": bags([[1, 3], [], [2]], 4)}
    enc = SideInfoEncoder({"style": 3, "products": 4}, field_dim=2, out_dim=4)
    with torch.no_grad():  # positive embeddings and an identity FC: the output is the concatenation
        for bag in enc.bags.values():
            bag.weight.abs_()
        enc.lin.weight.copy_(torch.eye(4))
        enc.lin.bias.zero_()
    h = enc(torch.tensor([0, 1, 2]), feats)
    s, p = enc.bags["style"].weight, enc.bags["products"].weight
    assert h.shape == (3, 4)
    torch.testing.assert_close(h[0], torch.cat([s[0], (p[1] + p[3]) / 2]))
    torch.testing.assert_close(h[1], torch.cat([s[2], torch.zeros(2)]))  # empty bag -> zeros
    torch.testing.assert_close(h[2], torch.cat([s[1], p[2]]))


def test_side_info_encoder_needs_a_field():
    with pytest.raises(ValueError, match="at least one"):
        SideInfoEncoder({}, field_dim=2)


# --------------------------------------------------------------------------- losses


def nll_sigmoid(x: float) -> float:
    """-log(sigmoid(x)) by the plain formula (fine for the small values used here)."""
    return -math.log(1.0 / (1.0 + math.exp(-x)))


POS = [0.5, -1.0]
NEG = [[0.2, -0.3, 2.0], [1.5, 0.0, -2.5]]


def test_pair_bce_by_hand():
    pos_term = sum(nll_sigmoid(p) for p in POS) / len(POS)
    neg_term = sum(nll_sigmoid(-n) for row in NEG for n in row) / 6  # -log(1 - sigmoid(n))
    loss = PairBCELoss()(torch.tensor(POS), torch.tensor(NEG))
    assert loss.item() == pytest.approx(pos_term + neg_term, rel=1e-6)


def test_bpr_by_hand():
    expected = sum(math.log1p(math.exp(n - p)) for p, row in zip(POS, NEG) for n in row) / 6
    loss = BPRLoss()(torch.tensor(POS), torch.tensor(NEG))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # the same through the -log(sigmoid) form
    assert loss.item() == pytest.approx(sum(nll_sigmoid(p - n) for p, row in zip(POS, NEG) for n in row) / 6, rel=1e-6)


def test_losses_stay_finite_on_large_logits():
    pos, neg = torch.tensor([1000.0, -1000.0]), torch.tensor([[1000.0], [-1000.0]])
    bce = PairBCELoss()(pos, neg)
    # pos: (0 + 1000) / 2; neg: (1000 + 0) / 2
    assert torch.isfinite(bce) and bce.item() == pytest.approx(1000.0)
    bpr = BPRLoss()(pos, neg)  # differences 0 and 0 -> log 2
    assert torch.isfinite(bpr) and bpr.item() == pytest.approx(math.log(2))
    bpr = BPRLoss()(torch.tensor([-1000.0]), torch.tensor([[1000.0]]))
    assert torch.isfinite(bpr) and bpr.item() == pytest.approx(2000.0)


# --------------------------------------------------------------------------- pool search


def brute_force(v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = v.astype(np.float64) @ v.T.astype(np.float64)
    np.fill_diagonal(s, -np.inf)
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(s, ids, axis=1)


def test_exact_topk_matches_brute_force_across_chunks():
    v = np.random.default_rng(9).standard_normal((37, 8)).astype(np.float32)
    pool = exact_topk(torch.from_numpy(v), k=5, chunk_size=10)
    ids, scores = brute_force(v, 5)
    np.testing.assert_array_equal(pool.neighbors, ids)
    np.testing.assert_allclose(pool.scores, scores, rtol=1e-5, atol=1e-5)
    assert (pool.neighbors != np.arange(37)[:, None]).all()


def test_exact_topk_queries_subset():
    v = np.random.default_rng(10).standard_normal((30, 4)).astype(np.float32)
    rows = torch.tensor([29, 0, 13])
    sub = exact_topk(torch.from_numpy(v), k=4, chunk_size=2, queries=rows)
    np.testing.assert_array_equal(sub.neighbors, brute_force(v, 4)[0][rows.numpy()])


@pytest.mark.parametrize("search", [exact_topk, faiss_flat_topk])
def test_topk_with_k_at_least_n(search):
    v = np.random.default_rng(11).standard_normal((6, 3)).astype(np.float32)
    pool = search(torch.from_numpy(v), 8)
    ids, scores = brute_force(v, 5)
    assert pool.neighbors.shape == (6, 8)
    np.testing.assert_array_equal(pool.neighbors[:, :5], ids)
    assert (pool.neighbors[:, 5:] == -1).all() and np.isnan(pool.scores[:, 5:]).all()
    np.testing.assert_allclose(pool.scores[:, :5], scores, rtol=1e-5, atol=1e-5)
    with_self = search(torch.from_numpy(v), 8, exclude_self=False)
    assert (np.sort(with_self.neighbors[:, :6], axis=1) == np.arange(6)).all()
    assert (with_self.neighbors[:, 6:] == -1).all()


def test_faiss_flat_equals_exact_up_to_ties():
    # duplicated rows make exact ties (including with the row itself)
    v = np.random.default_rng(12).standard_normal((300, 16)).astype(np.float32)
    v[1] = v[0]
    exact = exact_topk(torch.from_numpy(v), 10, chunk_size=64)
    flat = faiss_flat_topk(v, 10)
    assert (flat.neighbors != np.arange(300)[:, None]).all()
    np.testing.assert_allclose(flat.scores, exact.scores, rtol=1e-4, atol=1e-4)
    same = flat.neighbors == exact.neighbors
    # where ids differ, the scores tie
    np.testing.assert_allclose(flat.scores[~same], exact.scores[~same], atol=1e-4)
    assert same.mean() > 0.99
    assert pool_recall(flat, exact) > 0.99


def test_pool_recall_by_hand():
    exact = CandidatePool(np.array([[1, 2, 3], [0, 2, -1], [-1, -1, -1]]), np.zeros((3, 3), np.float32))
    approx = CandidatePool(np.array([[3, 4, 1], [2, 3, 4], [0, 1, 2]]), np.zeros((3, 3), np.float32))
    # row 0: 2 of 3; row 1: 1 of 2; row 2: no exact neighbour, skipped
    assert pool_recall(approx, exact) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert pool_recall(exact, exact) == 1.0
    with pytest.raises(ValueError, match="rows"):
        pool_recall(CandidatePool(exact.neighbors[:2], exact.scores[:2]), exact)


def test_hnsw_recall_is_high_and_reported():
    v = torch.from_numpy(np.random.default_rng(13).standard_normal((2000, 32)).astype(np.float32))
    pool, info = build_pool(v, 10, method="hnsw")
    assert pool.neighbors.shape == (2000, 10)
    assert (pool.neighbors != np.arange(2000)[:, None]).all()
    assert info["method"] == "hnsw" and info["recall_queries"] == 2000 and info["seconds"] > 0
    assert info["recall"] == pytest.approx(pool_recall(pool, exact_topk(v, 10)))
    assert info["recall"] > 0.9
    # a narrower search on a sample: still reported, on that many queries
    _, info = build_pool(v, 10, method="hnsw", recall_sample=500, M=8, ef_search=16)
    assert info["recall_queries"] == 500 and 0 < info["recall"] <= 1


def test_build_pool_methods_agree():
    v = torch.from_numpy(np.random.default_rng(14).standard_normal((200, 8)).astype(np.float32))
    exact, info = build_pool(v, 5, chunk_size=50)
    assert info["method"] == "exact" and "recall" not in info
    flat, _ = build_pool(v, 5, method="faiss")
    np.testing.assert_array_equal(flat.neighbors, exact.neighbors)
    with pytest.raises(ValueError, match="unknown pool method"):
        build_pool(v, 5, method="ivf")


def test_hnsw_direct_call_excludes_self_and_pads():
    v = np.random.default_rng(15).standard_normal((5, 4)).astype(np.float32)
    pool = hnsw_topk(v, 7, M=4)
    assert (pool.neighbors[:, :4] != np.arange(5)[:, None]).all()
    assert (np.sort(pool.neighbors[:, :4], axis=1) == np.array([[j for j in range(5) if j != i] for i in range(5)])).all()
    assert (pool.neighbors[:, 4:] == -1).all()


def test_pair_losses_with_weights_scale_each_pair():
    import math

    from graphrecall.losses import BPRLoss, PairBCELoss

    pos = torch.tensor([2.0, -1.0])
    neg = torch.tensor([[0.5, -0.5], [1.0, 0.0]])
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731  softplus = -log sigmoid(-x)
    bce_pair0 = sp(-2.0) + (sp(0.5) + sp(-0.5)) / 2
    bce_pair1 = sp(1.0) + (sp(1.0) + sp(0.0)) / 2
    w = torch.tensor([1.5, 0.5])
    assert PairBCELoss()(pos, neg, w).item() == pytest.approx((1.5 * bce_pair0 + 0.5 * bce_pair1) / 2, rel=1e-6)
    assert PairBCELoss()(pos, neg).item() == pytest.approx((bce_pair0 + bce_pair1) / 2, rel=1e-6)
    bpr_pair0 = (sp(0.5 - 2.0) + sp(-0.5 - 2.0)) / 2
    bpr_pair1 = (sp(1.0 + 1.0) + sp(0.0 + 1.0)) / 2
    assert BPRLoss()(pos, neg, w).item() == pytest.approx((1.5 * bpr_pair0 + 0.5 * bpr_pair1) / 2, rel=1e-6)


def test_hard_negatives_come_from_the_near_miss_band_and_skip_neighbours():
    from graphrecall.models.sage import SageI2IModule

    module = SageI2IModule({"field_sizes": {}, "num_nodes": 6, "hidden_dim": 4, "field_dim": 4},
                           num_negatives=4, hard_negatives={"enabled": True, "share": 0.5})
    # node 0's kept neighbour is 1; its near-miss band is [1, 2, 3]: 1 is a neighbour (never used)
    module.graph = top_k_graph(sp.csr_matrix(([1.0], ([0], [1])), shape=(6, 6)), 2)
    module._hard = torch.tensor([[1, 2, 3], [0, 2, -1], [0, 1, 3], [0, 1, 2], [0, 1, 2], [0, 1, 2]])
    src = torch.zeros(200, dtype=torch.long)
    random_neg = torch.full((200, 4), 5)
    out = module.mix_hard_negatives(src, random_neg, torch.Generator().manual_seed(0))
    hard_cols, random_cols = out[:, :2], out[:, 2:]
    assert (random_cols == 5).all()  # the other half stays random
    assert set(hard_cols.unique().tolist()) == {2, 3, 5}  # band members 2, 3; neighbour 1 -> kept random 5
    assert (hard_cols == 2).any() and (hard_cols == 3).any()
