"""Layer trimming for subgraph batches (issue 27, item 1): the hop order and counts of
``k_hop_subgraph`` checked by hand, and the seed outputs, gradients and a whole training run equal
with trimming on and off (mean, sum, GAT; with and without fan-outs).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from graphrecall.graphs.sampling import LayerSize, k_hop_subgraph, kept_per_hop, top_k_graph, trimmed_layer_sizes
from graphrecall.models.encoders import GNNEncoder, row_prefix_dropout
from graphrecall.models.features import FieldBags
from tests.conftest import TINY, compose_train

AGGREGATORS = ["mean", "sum", "gat"]
FANOUTS = [None, [2, 1]]

# 12 nodes; row i lists (neighbour j, weight w_ij); nodes 7-11 are out of reach of the seeds below
NEIGHBOURS = {
    0: [(1, 0.5), (2, 0.3), (5, 0.2)],
    1: [(0, 0.4), (3, 0.6)],
    2: [(4, 1.0)],
    3: [(6, 0.7), (1, 0.3)],
    4: [(7, 0.5), (8, 0.5)],
    5: [(0, 1.0)],
    6: [(9, 1.0)],
    7: [(10, 1.0)],
    9: [(11, 1.0)],
    10: [(2, 1.0)],
    11: [(3, 1.0)],
}
N = 12


def hand_graph():
    rows, cols, weights = zip(*[(i, j, w) for i, nbrs in NEIGHBOURS.items() for j, w in nbrs])
    return top_k_graph(sp.csr_matrix((np.array(weights), (np.array(rows), np.array(cols))), shape=(N, N)), k=3)


def random_graph(n: int, seed: int):
    rng = np.random.default_rng(seed)
    m = sp.random(n, n, density=0.1, format="csr", random_state=rng, data_rvs=lambda s: rng.uniform(0.1, 1, s))
    m = sp.csr_matrix(m - sp.diags(m.diagonal()))
    m.eliminate_zeros()
    return top_k_graph(m, k=4)


def features(n: int, seed: int) -> tuple[dict[str, int], dict[str, FieldBags]]:
    """One single-valued side-info field of 3 values."""
    rng = np.random.default_rng(seed)
    values = torch.from_numpy(rng.integers(3, size=n)).long()
    return {"style": 3}, {"style": FieldBags(torch.arange(n + 1), values, 3)}


def encoder(aggregator: str, n: int, dropout: float = 0.3) -> GNNEncoder:
    sizes, _ = features(n, 0)
    torch.manual_seed(0)
    return GNNEncoder(sizes, field_dim=4, hidden_dim=8, num_layers=2, aggregator=aggregator, heads=2,
                      num_nodes=n, dropout=dropout)


# --------------------------------------------------------------------------- hop order, by hand


def test_k_hop_subgraph_is_ordered_by_hop_with_counts():
    g = hand_graph()
    sub = k_hop_subgraph(g, torch.tensor([5, 1]), hops=2)
    # hop 0: the seeds as given; hop 1: 5 -> {0}, 1 -> {3, 0}: new {0, 3}; hop 2: 0 -> {1, 2, 5},
    # 3 -> {6, 1}: new {2, 6} (new nodes of a hop in id order)
    assert sub.nodes.tolist() == [5, 1, 0, 3, 2, 6]
    assert sub.num_nodes_per_hop == [2, 2, 2] and sub.num_seeds == 2
    # edges (neighbour j, node i) in global ids: into the seeds (rows weight-descending), then into hop 1
    pairs = list(zip(sub.nodes[sub.edge_index[0]].tolist(), sub.nodes[sub.edge_index[1]].tolist()))
    assert pairs == [(0, 5), (3, 1), (0, 1), (1, 0), (2, 0), (5, 0), (6, 3), (1, 3)]
    assert sub.num_edges_per_hop == [3, 5]
    assert sub.alpha.tolist() == pytest.approx([1.0, 0.6, 0.4, 0.5, 0.3, 0.2, 0.7, 0.3])
    # layer 0 reads all 6 rows, writes hops 0-1 (4 rows) over all 8 edges; layer 1 writes the seeds
    assert trimmed_layer_sizes(sub.num_nodes_per_hop, sub.num_edges_per_hop, 2) == [
        LayerSize(num_sources=6, num_targets=4, num_edges=8), LayerSize(num_sources=4, num_targets=2, num_edges=3)]


def test_k_hop_subgraph_hop_order_with_fanouts():
    g = hand_graph()
    sub = k_hop_subgraph(g, torch.tensor([5, 1]), hops=2, fanouts=[1, 1])
    # 5 keeps 0, 1 keeps 3 (0.6 > 0.4); then 0 keeps 1 (already in), 3 keeps 6
    assert sub.nodes.tolist() == [5, 1, 0, 3, 6]
    assert sub.num_nodes_per_hop == [2, 2, 1] and sub.num_edges_per_hop == [2, 2]
    pairs = list(zip(sub.nodes[sub.edge_index[0]].tolist(), sub.nodes[sub.edge_index[1]].tolist()))
    assert pairs == [(0, 5), (3, 1), (1, 0), (6, 3)]
    assert sub.alpha.tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0])  # one kept neighbour each: renormalised


def test_hop_order_invariants_on_a_random_graph():
    g = random_graph(80, seed=4)
    sub = k_hop_subgraph(g, torch.tensor([3, 50, 17, 3, 64]), hops=3)
    assert sum(sub.num_nodes_per_hop) == sub.nodes.numel() and sum(sub.num_edges_per_hop) == sub.edge_index.shape[1]
    hop_of_node = torch.repeat_interleave(torch.arange(4), torch.tensor(sub.num_nodes_per_hop))
    hop_of_edge = torch.repeat_interleave(torch.arange(3), torch.tensor(sub.num_edges_per_hop))
    assert torch.equal(hop_of_node[sub.edge_index[1]], hop_of_edge)  # edges grouped by their target's hop
    assert (hop_of_node[sub.edge_index[0]] <= hop_of_edge + 1).all()  # sources at most one hop further
    # every node of hops 0-2 keeps all its top-k edges
    for local, node in enumerate(sub.nodes[: sum(sub.num_nodes_per_hop[:3])].tolist()):
        assert int((sub.edge_index[1] == local).sum()) == int(g.degree()[node])


def test_trimmed_layer_sizes_and_kept_per_hop_errors():
    with pytest.raises(ValueError, match="needs 3 per-hop node counts and 2 edge counts"):
        trimmed_layer_sizes([2, 2], [3, 5], 2)
    keep = torch.tensor([True, False, True, False, False, True, True, True])
    assert kept_per_hop(keep, [3, 5]) == [2, 3]
    assert kept_per_hop(torch.zeros(0, dtype=torch.bool), [0, 0]) == [0, 0]
    with pytest.raises(ValueError, match="keep has 8 entries"):
        kept_per_hop(keep, [3, 4])


# --------------------------------------------------------------------------- on / off equality


def seed_outputs(enc: GNNEncoder, sub, feats, trim: bool, rng_seed: int = 7) -> torch.Tensor:
    hops = {"num_nodes_per_hop": sub.num_nodes_per_hop, "num_edges_per_hop": sub.num_edges_per_hop} if trim else {}
    torch.manual_seed(rng_seed)  # the same dropout draws on and off
    return enc(sub.nodes, sub.edge_index, sub.alpha, feats, **hops)[: sub.num_seeds]


@pytest.mark.parametrize("fanouts", FANOUTS)
@pytest.mark.parametrize("aggregator", AGGREGATORS)
@pytest.mark.parametrize("graph", ["hand", "random"])
def test_trimmed_seed_outputs_and_gradients_equal_untrimmed(graph, aggregator, fanouts):
    if graph == "hand":
        g, seeds = hand_graph(), torch.tensor([5, 1])
    else:
        g, seeds = random_graph(60, 1), torch.tensor([9, 33, 2, 47])
    n = g.num_nodes
    _, feats = features(n, 1)
    enc = encoder(aggregator, n)
    sub = k_hop_subgraph(g, seeds, hops=2, fanouts=fanouts)
    assert sub.num_nodes_per_hop[2] > 0  # the outer hop exists: there is something to trim
    for train in (False, True):  # eval, and train mode with dropout (same random draws)
        enc.train(train)
        grads = {}
        outs = {}
        for trim in (False, True):
            enc.zero_grad()
            h = seed_outputs(enc, sub, feats, trim)
            outs[trim] = h
            weights = torch.linspace(-1, 1, h.numel()).view_as(h)
            ((h * weights).sum() + (h ** 2).sum()).backward()
            grads[trim] = {k: p.grad.clone() for k, p in enc.named_parameters() if p.grad is not None}
        assert outs[True].shape == (seeds.unique().numel(), 8)
        torch.testing.assert_close(outs[True], outs[False], atol=1e-5, rtol=1e-5)
        assert grads[True].keys() == grads[False].keys() and grads[True]
        for k in grads[False]:
            torch.testing.assert_close(grads[True][k], grads[False][k], atol=1e-5, rtol=1e-5, msg=k)
    enc.train(True)  # dropout on: a different draw changes the outputs (so equal draws are what made them equal)
    assert not torch.allclose(seed_outputs(enc, sub, feats, True, 1), seed_outputs(enc, sub, feats, True, 2))


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_trimmed_layers_compute_only_the_rows_the_next_layer_reads(aggregator):
    g = hand_graph()
    _, feats = features(N, 1)
    enc = encoder(aggregator, N).eval()
    sub = k_hop_subgraph(g, torch.tensor([5, 1]), hops=2)
    seen = []

    def record(module, args, kwargs, output):
        x, edge_index = args[0], args[1]
        sources = x[0].shape[0] if isinstance(x, tuple) else x.shape[0]
        edges = edge_index._nnz() if edge_index.layout == torch.sparse_csr else edge_index.shape[1]
        seen.append((sources, output.shape[0], edges))

    handles = [conv.register_forward_hook(record, with_kwargs=True) for conv in enc.convs]
    seed_outputs(enc, sub, feats, trim=True)
    seed_outputs(enc, sub, feats, trim=False)
    for handle in handles:
        handle.remove()
    # (rows read, rows written, edges): trimmed layer 1 writes the 2 seeds over their 3 edges
    assert seen == [(6, 4, 8), (4, 2, 3), (6, 6, 8), (6, 6, 8)]


def test_row_prefix_dropout_is_f_dropout_on_untrimmed_rows():
    x = torch.randn(30, 5)
    torch.manual_seed(11)
    expected = F.dropout(x, 0.4, True)
    torch.manual_seed(11)
    assert torch.equal(row_prefix_dropout(x, 0.4, True, 30), expected)  # untrimmed passes keep their masks
    torch.manual_seed(11)
    assert torch.equal(row_prefix_dropout(x[:12], 0.4, True, 30), expected[:12])
    assert torch.equal(row_prefix_dropout(x, 0.4, False, 30), x)


def test_encoder_rejects_counts_that_do_not_match_the_subgraph():
    g = hand_graph()
    _, feats = features(N, 1)
    enc = encoder("mean", N).eval()
    sub = k_hop_subgraph(g, torch.tensor([5, 1]), hops=2)
    with pytest.raises(ValueError, match="per-hop node counts sum to 5, the subgraph has 6 nodes"):
        enc(sub.nodes, sub.edge_index, sub.alpha, feats, num_nodes_per_hop=[2, 2, 1], num_edges_per_hop=[3, 5])
    with pytest.raises(ValueError, match="both num_nodes_per_hop and num_edges_per_hop"):
        enc(sub.nodes, sub.edge_index, sub.alpha, feats, num_nodes_per_hop=[2, 2, 2])


# --------------------------------------------------------------------------- the stage-1 module


def module(aggregator: str, fanouts: list[int] | None, n: int, trim: bool):
    from graphrecall.models.sage import SageI2IModule

    sizes, feats = features(n, 2)
    enc = {"field_sizes": sizes, "field_dim": 4, "hidden_dim": 8, "num_layers": 2, "aggregator": aggregator,
           "heads": 2, "num_nodes": n, "dropout": 0.3}
    torch.manual_seed(0)
    m = SageI2IModule(enc, batching="subgraph", fanouts=fanouts, trim_layers=trim)
    return m, feats


@pytest.mark.parametrize("fanouts", FANOUTS)
@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_module_embed_equal_with_dropped_pairs_and_cold_nodes(aggregator, fanouts):
    """The next-click pass (example edges dropped) and the cold-start pass (nodes cut off) remove
    edges after sampling: the per-hop edge counts are recounted and the vectors stay equal."""
    g = random_graph(60, 3)
    nodes = torch.tensor([4, 18, 30, 51, 7])
    drop = (torch.tensor([4, 18]), torch.tensor([int(g.col[g.rowptr[4]]), int(g.col[g.rowptr[18]])]))
    cold = torch.zeros(60, dtype=torch.bool)
    cold[[30, int(g.col[g.rowptr[51]])]] = True
    out, grads = {}, {}
    for trim in (False, True):
        m, feats = module(aggregator, fanouts, 60, trim)
        m.attach(g, feats)
        m.train()
        torch.manual_seed(5)
        h = m.embed(nodes, drop_pairs=drop, cold=cold)
        (h.sum() + (h ** 2).sum()).backward()
        out[trim] = h.detach()
        grads[trim] = {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}
    assert out[True].shape == (5, 8)
    torch.testing.assert_close(out[True], out[False], atol=1e-5, rtol=1e-5)
    for k in grads[False]:
        torch.testing.assert_close(grads[True][k], grads[False][k], atol=1e-5, rtol=1e-5, msg=k)


@pytest.mark.parametrize("model", ["sage", "m2grl"])
def test_trim_layers_config_reaches_the_module(tmp_path, model):
    from types import SimpleNamespace

    from hydra.utils import instantiate

    from graphrecall.models.m2grl import M2GRLModule
    from graphrecall.models.sage import SageI2IModule

    dataset = SimpleNamespace(num_contents=5)
    for value, expected in (("true", True), ("false", False)):
        cfg = compose_train(tmp_path, [*TINY, f"model={model}", f"model.sampling.trim_layers={value}"])
        kwargs = instantiate(cfg.model, _convert_="all").module_kwargs(dataset, {})
        if model == "sage":
            built = SageI2IModule(**kwargs)
        else:
            built = M2GRLModule(views={"style": 3, "space": 2}, alignment={"views": ["style", "space"]}, **kwargs)
        assert built.hparams.get("trim_layers", True) is expected
    cfg = compose_train(tmp_path, [*TINY, f"model={model}", "model.sampling.trim_layers=maybe"])
    with pytest.raises(ValueError, match="model.sampling.trim_layers must be true or false, got 'maybe'"):
        instantiate(cfg.model, _convert_="all").module_kwargs(dataset, {})


# --------------------------------------------------------------------------- end to end


def test_tiny_training_run_is_identical_with_and_without_trimming(tmp_path):
    import sys

    from tests.conftest import ROOT

    sys.path.insert(0, str(ROOT))
    import train as train_app

    common = [*TINY, "model=sage", "trainer.max_epochs=2", "trainer.early_stopping_patience=0",
              "trainer.enable_progress_bar=false", "model.optim.batch_size=256", "model.sampling.batching=subgraph",
              "eval.folds=[val]"]
    runs = {}
    for trim in (True, False):
        cfg = compose_train(tmp_path / str(trim), [*common, f"model.sampling.trim_layers={trim}"])
        metrics, objects = train_app.train(cfg)
        assert objects["model"].module.hparams.get("trim_layers", True) is trim
        assert not objects["model"].module._full_graph()  # subgraph batches, or nothing is trimmed
        runs[trim] = {k: v for k, v in metrics.items() if "seconds" not in k}
    assert runs[True].keys() == runs[False].keys() and "val/recall@50" in runs[True]
    for key, value in runs[False].items():
        assert runs[True][key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def test_benchmark_script_runs_on_tiny_data(tmp_path):
    import json
    import sys

    from tests.conftest import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import layer_trimming

    out = tmp_path / "trim.json"
    assert layer_trimming.main(["--preset", "tiny", "--steps", "2", "--repeats", "1", "--data-dir", str(tmp_path),
                                "--json", str(out), "model.optim.batch_size=64"]) == 0
    record = json.loads(out.read_text())
    names = ["trim=off sparse=off", "trim=on sparse=off", "trim=off sparse=on", "trim=on sparse=on"]
    assert record["steps"] == 2 and list(record["settings"]) == names
    assert record["baseline"] == names[0] and record["compared"] == names[3]
    for name, setting in record["settings"].items():
        assert len(setting["runs"]) == 1 and setting["steps_per_s"] > 0, name
        # the same training with either switch: trimming to 1e-6; the sparse product sums in another order
        # (gradients equal to ~1e-9, test_sparse_aggregation.py), which Adam's first, sign-like steps lift to ~1e-5
        assert setting["max_weight_diff"] < (1e-4 if setting["sparse_aggregation"] else 1e-6), name
    assert record["settings"][names[0]]["speedup"] == 1.0 and record["settings"][names[0]]["max_weight_diff"] == 0
    assert record["speedup"] == pytest.approx(record["settings"][names[3]]["speedup"])
    assert len(record["mean_nodes_per_hop"]) == 3
