"""Sparse aggregation (issue 27, item 1's speed): the mean / sum layers aggregate by one CSR
adjacency product instead of one message per edge. Checked against a 4-node example worked out by
hand, and on / off equal (outputs and gradients, trimmed or not, with fan-outs or not, full graph,
module passes with dropped pairs and cold nodes, the M2GRL view encoders, a whole training run).
"""

from __future__ import annotations

import pytest
import torch

from graphrecall.graphs.sampling import k_hop_subgraph, sort_by_target, target_adjacency
from graphrecall.models.encoders import GNNEncoder, WeightedSAGEConv
from tests.conftest import TINY, compose_train
from tests.test_layer_trimming import encoder, features, hand_graph, random_graph

FANOUTS = [None, [2, 1]]

# 4 nodes, edges (source j -> target i, alpha_ij) given out of order: node 0 aggregates 1 (0.2) and
# 2 (0.8), node 1 aggregates 0 and 3 (0.5 each), node 2 aggregates 3 (1.0), node 3 has no neighbour
EDGES = torch.tensor([[3, 2, 3, 0, 1], [1, 0, 2, 1, 0]])
ALPHA = torch.tensor([0.5, 0.8, 1.0, 0.5, 0.2])
X = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
# by hand: row 0 = 0.2 [3, 4] + 0.8 [5, 6]; row 1 = 0.5 [1, 2] + 0.5 [7, 8]; row 2 = [7, 8]; row 3 = 0
HAND = {"mean": [[4.6, 5.6], [4.0, 5.0], [7.0, 8.0], [0.0, 0.0]],
        "sum": [[8.0, 10.0], [8.0, 10.0], [7.0, 8.0], [0.0, 0.0]]}
HAND_MATRIX = {"mean": [[0.0, 0.2, 0.8, 0.0], [0.5, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]],
               "sum": [[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]}


def aggregation_only(aggr: str) -> WeightedSAGEConv:
    """A layer whose output is its aggregation: W_1 = 0, no bias, W_2 = I."""
    conv = WeightedSAGEConv(2, 2, aggr=aggr)
    with torch.no_grad():
        conv.lin_self.weight.zero_()
        conv.lin_self.bias.zero_()
        conv.lin_neigh.weight.copy_(torch.eye(2))
    return conv


def hand_adjacency(aggr: str, num_targets: int = 4) -> torch.Tensor:
    """The example's sparse adjacency (the encoder's way: weights by mode, sorted by target)."""
    weight = ALPHA if aggr == "mean" else torch.ones(EDGES.shape[1])
    edges, weight = sort_by_target(EDGES, weight, 4)
    into = edges[1] < num_targets
    return target_adjacency(edges[:, into], weight[into], 4, num_targets)


# --------------------------------------------------------------------------- by hand


def test_sort_by_target_orders_edges_by_target_then_source():
    edges, alpha = sort_by_target(EDGES, ALPHA, 4)
    assert edges.tolist() == [[1, 2, 0, 3, 3], [0, 0, 1, 1, 2]]
    assert alpha.tolist() == pytest.approx([0.2, 0.8, 0.5, 0.5, 1.0])
    again, same = sort_by_target(edges, alpha, 4)
    assert again is edges and same is alpha  # already sorted: returned as they are


@pytest.mark.parametrize("aggr", ["mean", "sum"])
def test_adjacency_and_aggregation_by_hand(aggr):
    adj = hand_adjacency(aggr)
    assert adj.layout == torch.sparse_csr and adj.shape == (4, 4)
    assert adj.crow_indices().tolist() == [0, 2, 4, 5, 5]  # node 3: an empty row
    torch.testing.assert_close(adj.to_dense(), torch.tensor(HAND_MATRIX[aggr]))
    conv = aggregation_only(aggr)
    torch.testing.assert_close(conv(X, adj), torch.tensor(HAND[aggr]))
    torch.testing.assert_close(conv(X, EDGES, ALPHA), torch.tensor(HAND[aggr]))  # the message path agrees


@pytest.mark.parametrize("aggr", ["mean", "sum"])
def test_rectangular_adjacency_writes_the_leading_rows(aggr):
    """A trimmed layer: rows 0-1 written, all 4 rows read."""
    adj = hand_adjacency(aggr, num_targets=2)
    assert adj.shape == (2, 4)
    out = aggregation_only(aggr)((X, X[:2]), adj)
    torch.testing.assert_close(out, torch.tensor(HAND[aggr][:2]))


def test_the_self_term_is_kept_for_a_row_without_neighbours():
    conv = WeightedSAGEConv(2, 2, aggr="mean")
    with torch.no_grad():
        conv.lin_self.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        conv.lin_self.bias.copy_(torch.tensor([0.5, -0.5]))
        conv.lin_neigh.weight.copy_(torch.eye(2))
    out = conv(X, hand_adjacency("mean"))
    torch.testing.assert_close(out[3], torch.tensor([7.0 + 0.5, 16.0 - 0.5]))  # W_1 x_3 + b, nothing aggregated
    torch.testing.assert_close(out[0], torch.tensor([1.0 + 0.5 + 4.6, 4.0 - 0.5 + 5.6]))  # W_1 x_0 + b + aggregation


def test_repeated_edges_are_merged_by_summing_their_weights():
    edges = torch.tensor([[1, 1, 2, 0], [0, 0, 0, 2]])  # 1 -> 0 twice
    adj = target_adjacency(edges, torch.tensor([0.25, 0.5, 1.0, 2.0]), 3, 3)
    assert adj.col_indices().tolist() == [1, 2, 0] and adj.crow_indices().tolist() == [0, 2, 2, 3]
    torch.testing.assert_close(adj.to_dense(), torch.tensor([[0.0, 0.75, 1.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]))


def test_no_edges_aggregate_zero():
    adj = target_adjacency(torch.zeros((2, 0), dtype=torch.long), torch.zeros(0), 4, 3)
    assert adj.shape == (3, 4) and adj.crow_indices().tolist() == [0, 0, 0, 0]
    torch.testing.assert_close(aggregation_only("mean")((X, X[:3]), adj), torch.zeros(3, 2))


def test_adjacency_errors():
    edges, alpha = sort_by_target(EDGES, ALPHA, 4)
    with pytest.raises(ValueError, match="sorted by \\(target, source\\)"):
        target_adjacency(EDGES, ALPHA, 4, 4)
    with pytest.raises(ValueError, match=r"sources must lie in \[0, 3\) and targets in \[0, 4\), got sources in \[0, 3\]"):
        target_adjacency(edges, alpha, 3, 4)
    with pytest.raises(ValueError, match=r"targets in \[0, 2\), got .* targets in \[0, 2\]"):
        target_adjacency(edges, alpha, 4, 2)
    with pytest.raises(ValueError, match="one weight per edge: 5 edges"):
        target_adjacency(edges, alpha[:4], 4, 4)
    conv = aggregation_only("mean")
    with pytest.raises(ValueError, match="the adjacency is \\[4, 4\\], the input has 2 target and 4 source rows"):
        conv((X, X[:2]), target_adjacency(edges, alpha, 4, 4))
    with pytest.raises(ValueError, match="edge_weight must be None"):
        conv(X, target_adjacency(edges, alpha, 4, 4), alpha)


@pytest.mark.parametrize("aggr", ["mean", "sum"])
def test_gradients_for_x_and_the_edge_weights_equal_the_message_path(aggr):
    conv = aggregation_only(aggr)
    grads = {}
    for sparse in (False, True):
        x = X.clone().requires_grad_(True)
        alpha = ALPHA.clone().requires_grad_(True)
        if sparse:
            weight = alpha if aggr == "mean" else torch.ones(5)
            edges, weight = sort_by_target(EDGES, weight, 4)
            out = conv(x, target_adjacency(edges, weight, 4, 4))
        else:
            out = conv(x, EDGES, alpha)
        (out * torch.arange(8.0).view(4, 2)).sum().backward()
        grads[sparse] = (x.grad, alpha.grad)
    torch.testing.assert_close(grads[True][0], grads[False][0])
    # d out / d x_j = sum over j's edges of a_ij times the output weight of row i, by hand for x_3:
    # x_3 feeds row 1 (a = 0.5 | 1) and row 2 (a = 1): row weights [2, 3] and [4, 5]
    a13 = 0.5 if aggr == "mean" else 1.0
    torch.testing.assert_close(grads[True][0][3], torch.tensor([a13 * 2 + 4, a13 * 3 + 5]))
    if aggr == "mean":  # d out / d alpha_ij = <x_j, the output weight of row i>; edge 0 is 3 -> 1: <[7, 8], [2, 3]>
        torch.testing.assert_close(grads[True][1], grads[False][1])
        assert float(grads[True][1][0]) == pytest.approx(7 * 2 + 8 * 3)
    else:  # sum ignores alpha on both paths
        assert grads[True][1] is None and grads[False][1] is None


# --------------------------------------------------------------------------- the encoder, on / off


def run_encoder(enc: GNNEncoder, nodes, edge_index, alpha, feats, hops: dict, sparse: bool, seeds: int):
    torch.manual_seed(7)  # the same dropout draws on and off
    return enc(nodes, edge_index, alpha, feats, sparse_aggregation=sparse, **hops)[:seeds]


@pytest.mark.parametrize("fanouts", FANOUTS)
@pytest.mark.parametrize("trim", [False, True])
@pytest.mark.parametrize("aggregator", ["mean", "sum"])
@pytest.mark.parametrize("graph", ["hand", "random"])
def test_encoder_outputs_and_gradients_equal_with_sparse_aggregation_on_and_off(graph, aggregator, trim, fanouts):
    if graph == "hand":
        g, seeds = hand_graph(), torch.tensor([5, 1])
    else:
        g, seeds = random_graph(60, 1), torch.tensor([9, 33, 2, 47])
    _, feats = features(g.num_nodes, 1)
    enc = encoder(aggregator, g.num_nodes)
    sub = k_hop_subgraph(g, seeds, hops=2, fanouts=fanouts)
    hops = {"num_nodes_per_hop": sub.num_nodes_per_hop, "num_edges_per_hop": sub.num_edges_per_hop} if trim else {}
    for train in (False, True):  # eval, and train mode with dropout
        enc.train(train)
        outs, grads = {}, {}
        for sparse in (False, True):
            enc.zero_grad()
            h = run_encoder(enc, sub.nodes, sub.edge_index, sub.alpha, feats, hops, sparse, sub.num_seeds)
            ((h * torch.linspace(-1, 1, h.numel()).view_as(h)).sum() + (h ** 2).sum()).backward()
            outs[sparse] = h.detach()
            grads[sparse] = {k: p.grad.clone() for k, p in enc.named_parameters() if p.grad is not None}
        assert outs[True].shape == (sub.num_seeds, 8)
        torch.testing.assert_close(outs[True], outs[False], atol=1e-5, rtol=1e-5)
        assert grads[True].keys() == grads[False].keys() and any(k.startswith("convs.0") for k in grads[True])
        for k in grads[False]:
            torch.testing.assert_close(grads[True][k], grads[False][k], atol=1e-5, rtol=1e-5, msg=k)


@pytest.mark.parametrize("aggregator", ["mean", "sum"])
def test_full_graph_pass_equal_on_and_off(aggregator):
    g = random_graph(50, 2)
    _, feats = features(50, 3)
    enc = encoder(aggregator, 50).eval()
    nodes = torch.arange(50)
    on = enc(nodes, g.edge_index(), g.alpha, feats, sparse_aggregation=True)
    off = enc(nodes, g.edge_index(), g.alpha, feats, sparse_aggregation=False)
    assert on.shape == (50, 8)
    torch.testing.assert_close(on, off, atol=1e-5, rtol=1e-5)
    # the aggregation matters: without the edges the outputs change (the check above can fail)
    no_edges = enc(nodes, g.edge_index()[:, :0], g.alpha[:0], feats, sparse_aggregation=True)
    assert not torch.allclose(on, no_edges, atol=1e-3)


def test_encoder_mean_without_alpha_fails_on_both_paths():
    g = hand_graph()
    _, feats = features(g.num_nodes, 1)
    enc = encoder("mean", g.num_nodes).eval()
    for sparse in (False, True):
        with pytest.raises(ValueError, match="needs the alpha edge weights"):
            enc(torch.arange(g.num_nodes), g.edge_index(), None, feats, sparse_aggregation=sparse)


def test_gat_keeps_its_messages():
    g = hand_graph()
    _, feats = features(g.num_nodes, 1)
    enc = encoder("gat", g.num_nodes).eval()
    seen = []
    handles = [c.register_forward_hook(lambda m, args, out: seen.append(args[1].layout)) for c in enc.convs]
    on = enc(torch.arange(g.num_nodes), g.edge_index(), g.alpha, feats, sparse_aggregation=True)
    off = enc(torch.arange(g.num_nodes), g.edge_index(), g.alpha, feats, sparse_aggregation=False)
    for handle in handles:
        handle.remove()
    assert seen == [torch.strided] * 4 and torch.equal(on, off)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("aggregator", ["mean", "sum"])
def test_sparse_aggregation_on_cuda_equals_the_message_path(aggregator):
    g = random_graph(60, 1)
    _, feats = features(60, 1)
    enc = encoder(aggregator, 60).cuda().train()
    sub = k_hop_subgraph(g.to("cuda"), torch.tensor([9, 33, 2, 47], device="cuda"), hops=2)
    feats = {f: b.to("cuda") for f, b in feats.items()}
    hops = {"num_nodes_per_hop": sub.num_nodes_per_hop, "num_edges_per_hop": sub.num_edges_per_hop}
    outs, grads = {}, {}
    for sparse in (False, True):
        enc.zero_grad()
        h = run_encoder(enc, sub.nodes, sub.edge_index, sub.alpha, feats, hops, sparse, sub.num_seeds)
        (h ** 2).sum().backward()
        outs[sparse] = h.detach()
        grads[sparse] = {k: p.grad.clone() for k, p in enc.named_parameters() if p.grad is not None}
    torch.testing.assert_close(outs[True], outs[False], atol=1e-5, rtol=1e-5)
    for k in grads[False]:
        torch.testing.assert_close(grads[True][k], grads[False][k], atol=1e-5, rtol=1e-5, msg=k)


# --------------------------------------------------------------------------- the modules


def sage_module(aggregator: str, batching: str, sparse: bool, fanouts: list[int] | None = None):
    from graphrecall.models.sage import SageI2IModule

    sizes, feats = features(60, 2)
    enc = {"field_sizes": sizes, "field_dim": 4, "hidden_dim": 8, "num_layers": 2, "aggregator": aggregator,
           "heads": 2, "num_nodes": 60, "dropout": 0.3}
    torch.manual_seed(0)
    return SageI2IModule(enc, batching=batching, fanouts=fanouts, sparse_aggregation=sparse), feats


@pytest.mark.parametrize("batching, fanouts", [("subgraph", None), ("subgraph", [2, 1]), ("full", None)])
@pytest.mark.parametrize("aggregator", ["mean", "sum"])
def test_module_embed_equal_with_dropped_pairs_and_cold_nodes(aggregator, batching, fanouts):
    g = random_graph(60, 3)
    nodes = torch.tensor([4, 18, 30, 51, 7])
    drop = (torch.tensor([4, 18]), torch.tensor([int(g.col[g.rowptr[4]]), int(g.col[g.rowptr[18]])]))
    cold = torch.zeros(60, dtype=torch.bool)
    cold[[30, int(g.col[g.rowptr[51]])]] = True
    out, grads = {}, {}
    for sparse in (False, True):
        m, feats = sage_module(aggregator, batching, sparse, fanouts)
        assert m.hparams.sparse_aggregation is sparse
        m.attach(g, feats)
        m.train()
        torch.manual_seed(5)
        h = m.embed(nodes, drop_pairs=drop, cold=cold)
        (h.sum() + (h ** 2).sum()).backward()
        out[sparse] = h.detach()
        grads[sparse] = {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}
    assert out[True].shape == (5, 8)
    torch.testing.assert_close(out[True], out[False], atol=1e-5, rtol=1e-5)
    assert grads[True].keys() == grads[False].keys() and grads[True]
    for k in grads[False]:
        torch.testing.assert_close(grads[True][k], grads[False][k], atol=1e-5, rtol=1e-5, msg=k)


def test_m2grl_gnn_view_encoders_and_full_graph_passes_keep_messages():
    """Whole small graphs (M2GRL's view graphs, stage 1's full-graph passes) keep per-edge messages
    whatever the switch, so every result measured on them stays bit for bit as it was; the sparse
    product is for subgraph batches."""
    from graphrecall.models.m2grl import M2GRLModule

    sizes, _ = features(60, 2)
    enc = {"field_sizes": sizes, "field_dim": 4, "hidden_dim": 8, "num_layers": 2, "aggregator": "mean",
           "num_nodes": 60, "dropout": 0.0}
    views = {}
    for sparse in (False, True):
        torch.manual_seed(0)
        m = M2GRLModule(enc, views={"style": 60}, alignment={"views": ["style"]}, view_encoder="gnn",
                        sparse_aggregation=sparse)
        m.attach_views({"style": random_graph(60, 4)})
        seen = []
        hook = m.view_encoders["style"].convs[0].register_forward_hook(lambda mod, args, o: seen.append(args[1].layout))
        views[sparse] = m.view_matrix("style")
        hook.remove()
        assert seen == [torch.strided]
    assert views[True].shape == (60, 8)
    torch.testing.assert_close(views[True], views[False], atol=0, rtol=0)


@pytest.mark.parametrize("model", ["sage", "m2grl"])
def test_sparse_aggregation_config_reaches_the_module(tmp_path, model):
    from types import SimpleNamespace

    from hydra.utils import instantiate

    from graphrecall.models.m2grl import M2GRLModule
    from graphrecall.models.sage import SageI2IModule

    dataset = SimpleNamespace(num_contents=5)
    cfg = compose_train(tmp_path, [*TINY, f"model={model}"])
    assert cfg.model.sampling.sparse_aggregation is True  # the shipped default
    for value, expected in (("true", True), ("false", False)):
        cfg = compose_train(tmp_path, [*TINY, f"model={model}", f"model.sampling.sparse_aggregation={value}"])
        kwargs = instantiate(cfg.model, _convert_="all").module_kwargs(dataset, {})
        assert ("sparse_aggregation" in kwargs) is not expected  # passed only when off (older checkpoints lack it)
        if model == "sage":
            built = SageI2IModule(**kwargs)
        else:
            built = M2GRLModule(views={"style": 3, "space": 2}, alignment={"views": ["style", "space"]}, **kwargs)
        assert built.hparams.get("sparse_aggregation", True) is expected
    cfg = compose_train(tmp_path, [*TINY, f"model={model}", "model.sampling.sparse_aggregation=1"])
    with pytest.raises(ValueError, match="model.sampling.sparse_aggregation must be true or false, got 1"):
        instantiate(cfg.model, _convert_="all").module_kwargs(dataset, {})


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("batching", ["subgraph", "full"])
def test_tiny_training_run_is_identical_with_and_without_sparse_aggregation(tmp_path, batching):
    import sys

    from tests.conftest import ROOT

    sys.path.insert(0, str(ROOT))
    import train as train_app

    common = [*TINY, "model=sage", "trainer.max_epochs=2", "trainer.early_stopping_patience=0",
              "trainer.enable_progress_bar=false", "model.optim.batch_size=256",
              f"model.sampling.batching={batching}", "eval.folds=[val]"]
    runs = {}
    for sparse in (True, False):
        cfg = compose_train(tmp_path / str(sparse), [*common, f"model.sampling.sparse_aggregation={sparse}"])
        metrics, objects = train_app.train(cfg)
        assert objects["model"].module.hparams.get("sparse_aggregation", True) is sparse
        assert objects["model"].module._full_graph() is (batching == "full")
        runs[sparse] = {k: v for k, v in metrics.items() if "seconds" not in k}
    assert runs[True].keys() == runs[False].keys() and "val/recall@50" in runs[True]
    for key, value in runs[False].items():
        assert runs[True][key] == pytest.approx(value, abs=1e-6, nan_ok=True), key
