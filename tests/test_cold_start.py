"""Cold-start simulation (issue 15): masked targets reach the encoder as a new content does."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graphrecall.graphs.sampling import isolate_nodes, top_k_graph
from graphrecall.models.cold_start import (
    check_cold_start,
    cold_mask,
    draw_cold_targets,
    mask_popularity,
    unclicked_contents,
)
from graphrecall.models.encoders import SideInfoEncoder
from graphrecall.models.features import FieldBags
from graphrecall.models.sage import SageI2IModule
from tests.conftest import ROOT, TINY, compose_train

sys.path.insert(0, str(ROOT))
import train as train_app  # noqa: E402


def test_isolate_nodes_removes_both_directions_and_renormalises() -> None:
    # node 0 aggregates 1 (w .5), 2 (w .3), 3 (w .2); node 1 aggregates 0 (1.0); node 2 aggregates 3 (1.0)
    w = sp.csr_matrix(([0.5, 0.3, 0.2, 1.0, 1.0], ([0, 0, 0, 1, 2], [1, 2, 3, 0, 3])), shape=(4, 4))
    g = top_k_graph(w, 10)
    ei = g.edge_index()
    keep, alpha = isolate_nodes(ei, g.alpha, torch.tensor([False, True, False, False]))
    kept = {(int(j), int(i)): float(a) for j, i, k, a in zip(ei[0], ei[1], keep, alpha) if k}
    # node 1 cut off: "0 aggregates 1" and "1 aggregates 0" go; node 0 renormalises .3/.5, .2/.5
    assert set(kept) == {(2, 0), (3, 0), (3, 2)}
    assert kept[(2, 0)] == pytest.approx(0.6) and kept[(3, 0)] == pytest.approx(0.4)
    assert kept[(3, 2)] == pytest.approx(1.0)
    keep, alpha = isolate_nodes(ei, g.alpha, torch.tensor([False, False, False, True]))
    kept = {(int(j), int(i)): float(a) for j, i, k, a in zip(ei[0], ei[1], keep, alpha) if k}
    assert kept == {(1, 0): pytest.approx(0.625), (2, 0): pytest.approx(0.375), (0, 1): pytest.approx(1.0)}
    assert float(alpha[~keep].abs().sum()) == 0.0  # node 2 is left with nothing: weight 0, no NaN


def test_draw_cold_targets_by_hand() -> None:
    targets = torch.tensor([4, 2, 4, 7])
    gen = torch.Generator().manual_seed(0)
    before = gen.get_state()
    assert draw_cold_targets(targets, 0.0, gen).numel() == 0
    assert torch.equal(gen.get_state(), before)  # share 0 draws nothing: later draws are today's
    assert draw_cold_targets(targets, 1.0, gen).tolist() == [2, 4, 7]  # each distinct target once
    drawn = [draw_cold_targets(targets, 0.5, gen) for _ in range(400)]
    assert all(set(d.tolist()) <= {2, 4, 7} and len(set(d.tolist())) == d.numel() for d in drawn)
    assert np.mean([d.numel() for d in drawn]) == pytest.approx(1.5, abs=0.15)


def test_cold_mask_unclicked_and_config() -> None:
    always = unclicked_contents(np.array([0, 0, 2]), 4)
    assert always.tolist() == [False, True, False, True]
    assert cold_mask(4, always, torch.tensor([2])).tolist() == [False, True, True, True]
    assert always.tolist() == [False, True, False, True]  # not modified in place
    assert cold_mask(3, None, None).tolist() == [False, False, False]
    assert check_cold_start(None) == {"share": 0.0, "popularity": False}
    with pytest.raises(ValueError, match="share"):
        check_cold_start({"share": 1.5})
    with pytest.raises(ValueError, match="unknown"):
        check_cold_start({"shares": 0.5})


def test_mask_popularity_gives_the_drawn_contents_a_never_clicked_history() -> None:
    table = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2) + 1.0  # [K=2, C=3, F=2]
    out = mask_popularity(table, torch.tensor([1]))
    assert out[:, 1].abs().sum() == 0.0
    assert torch.equal(out[:, [0, 2]], table[:, [0, 2]]) and table[:, 1].abs().sum() > 0  # a copy
    assert mask_popularity(table, torch.tensor([], dtype=torch.long)) is table


def test_share_one_with_popularity_scores_targets_as_never_clicked(monkeypatch) -> None:
    module = tiny_module({"share": 1.0, "popularity": True})
    from graphrecall.models.popularity_bias import PopularityBias

    module.popularity_bias = PopularityBias(2, 4)
    module.attach_popularity(torch.rand(1, 6, 2) + 0.5)  # every content clicked before
    seen: list[torch.Tensor] = []
    original = PopularityBias.candidate_bias

    def spy(self, table, moments, candidates, extra=None):
        assert extra is None  # no publication ages without model.popularity.publication
        seen.append(table[0, candidates].clone())
        return original(self, table, moments, candidates, extra)

    monkeypatch.setattr(PopularityBias, "candidate_bias", spy)
    batch = (torch.tensor([0, 4]), torch.tensor([1, 3]), torch.tensor([0, 0]))
    module.pair_task(batch, torch.Generator().manual_seed(1))
    feats = seen[0]  # [2 targets + 3 uniform, F]
    assert feats[:2].abs().sum() == 0.0  # both targets scored with a never-clicked content's features


def test_id_mask_zeroes_the_node_id_part_only() -> None:
    torch.manual_seed(0)
    enc = SideInfoEncoder({"style": 2}, field_dim=4, out_dim=8, num_nodes=3)
    feats = {"style": FieldBags(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 0]), 2)}
    nodes = torch.tensor([0, 1, 2])
    masked = enc(nodes, feats, torch.tensor([False, False, True]))
    assert torch.equal(masked[:2], enc(nodes, feats)[:2])
    with torch.no_grad():
        enc.node_embedding.weight[2] = 0.0
    assert torch.allclose(masked[2], enc(nodes, feats)[2])


# --------------------------------------------------------------------------- a module on a tiny graph

# 6 contents, style 0 for contents 0, 2, 4 and style 1 for 1, 3, 5; content 5 has no training click.
# Co-click: 0-1, 0-2, 1-2, 1-3, 2-3, 3-4 (both directions, unit weights).
EDGES = [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (3, 4)]


def tiny_module(cold_start: dict | None, objective: str = "next_click") -> SageI2IModule:
    rows = [a for a, b in EDGES] + [b for a, b in EDGES]
    cols = [b for a, b in EDGES] + [a for a, b in EDGES]
    graph = top_k_graph(sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(6, 6)), 10)
    feats = {"style": FieldBags(torch.arange(7), torch.tensor([0, 1, 0, 1, 0, 1]), 2)}
    torch.manual_seed(0)
    module = SageI2IModule({"field_sizes": {"style": 2}, "field_dim": 4, "hidden_dim": 8, "num_layers": 2,
                            "num_nodes": 6, "dropout": 0.0}, objective=objective,
                           next_click={"num_uniform": 3}, num_negatives=2, batching="full", cold_start=cold_start)
    module.attach(graph, feats)
    module.attach_cold_start(unclicked_contents(np.array([0, 1, 2, 3, 4]), 6))
    return module


def spy_inputs(module: SageI2IModule) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Record the (edge_index, id_mask) of every encoder pass."""
    seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    forward = module.net.forward

    def record(nodes, edge_index, alpha, features, id_mask=None, **switches):
        seen.append((edge_index.clone(), None if id_mask is None else id_mask.clone()))
        return forward(nodes, edge_index, alpha, features, id_mask=id_mask, **switches)

    module.net.forward = record
    return seen


@pytest.mark.parametrize("objective", ["next_click", "reconstruction"])
def test_share_one_cuts_every_target_off_the_graph(objective: str) -> None:
    module = tiny_module({"share": 1.0}, objective)
    seen = spy_inputs(module)
    src, dst = torch.tensor([0, 4]), torch.tensor([1, 3])
    batch = (src, dst)
    module.pair_task(batch, torch.Generator().manual_seed(1))
    assert len(seen) == 1
    edge_index, id_mask = seen[0]
    edges = set(zip(edge_index[0].tolist(), edge_index[1].tolist()))
    # targets 1 and 3 aggregate nothing and are nobody's neighbour; 0-2 is the only edge left
    assert edges == {(0, 2), (2, 0)}
    # node ids zeroed for the masked targets and for content 5 (no training click)
    assert id_mask.tolist() == [False, True, False, True, False, True]
    # by hand: a masked target is placed from its side info alone, like content 5 of the same style
    vectors = module.embed(torch.arange(6), cold=cold_mask(6, module.unclicked, dst))
    assert torch.allclose(vectors[1], vectors[3]) and torch.allclose(vectors[1], vectors[5])
    assert not torch.allclose(vectors[1], vectors[0])


@pytest.mark.parametrize("objective", ["next_click", "reconstruction"])
def test_share_zero_reproduces_todays_batches(objective: str) -> None:
    batch = (torch.tensor([0, 4, 2]), torch.tensor([1, 3, 3]))
    runs = []
    for cfg in (None, {"share": 0.0}):
        module = tiny_module(cfg, objective)
        seen = spy_inputs(module)
        gen = torch.Generator().manual_seed(3)
        loss, _, h = module.pair_task(batch, gen)
        runs.append((float(loss.detach()), h.detach(), seen, gen.get_state(), module.embed_all()))
    (loss_a, h_a, seen_a, state_a, all_a), (loss_b, h_b, seen_b, state_b, all_b) = runs
    assert loss_a == loss_b and torch.equal(h_a, h_b) and torch.equal(state_a, state_b)
    assert torch.equal(all_a, all_b)
    assert all(torch.equal(a[0], b[0]) and a[1] is None and b[1] is None for a, b in zip(seen_a, seen_b))


def test_serving_zeroes_unclicked_ids_only_when_on() -> None:
    off, on = tiny_module(None), tiny_module({"share": 0.5})
    assert off.cold_for_pass() is None
    assert on.cold_for_pass().tolist() == [False] * 5 + [True]


def test_cold_start_trains_end_to_end(tmp_path) -> None:
    cfg = compose_train(tmp_path, [*TINY, "model=sage", "model.objective=next_click", "trainer.max_epochs=1",
                                   "trainer.enable_progress_bar=false", "model.optim.batch_size=128",
                                   "model.next_click.num_uniform=32", "model.cold_start.share=0.5"])
    metrics, objects = train_app.train(cfg)
    module = objects["model"].module
    assert module.cold_share == 0.5 and module.hparams.cold_start == {"share": 0.5, "popularity": False}
    assert np.isfinite(objects["model"].vectors).all()
    assert 0.0 <= metrics["test/recall@50"] <= 1.0
