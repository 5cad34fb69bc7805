"""Issue 10 building blocks on hand-made cases: next-click examples, the example-edge drop, the
logQ-corrected sampled softmax, aggregate serving with a popularity bonus, explicit tie-breaking,
and the refit on the test fold (end to end on the tiny synthetic world).

Expected values are written out by hand or computed independently (plain Python / numpy).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from graphrecall.data.next_click import next_click_pairs
from graphrecall.data.splits import DAY, Fold
from graphrecall.graphs.sampling import drop_pair_edges, top_k_graph
from graphrecall.losses import SampledSoftmaxLoss, candidate_log_q, sampled_softmax_logits
from graphrecall.models.i2i import PoolRecall
from graphrecall.models.popular import ranking_from_scores, tie_order
from graphrecall.recall.pool import CandidatePool
from graphrecall.recall.triggers import aggregate_recall
from tests.conftest import ROOT, TINY, compose_train

sys.path.insert(0, str(ROOT))
import train as train_app  # noqa: E402

# --------------------------------------------------------------------------- next-click examples


def clicks(rows: list[tuple[int, int, float]]) -> pd.DataFrame:
    """(user, content, day) triples -> encoded click frame."""
    u, i, d = zip(*rows)
    return pd.DataFrame({"u": u, "i": i, "timestamp": (np.array(d) * DAY).astype(np.int64)})


def test_next_click_pairs_by_hand() -> None:
    # user 0: 5 @0, 6 @0.5, 5 @0.6, 7 @3 (beyond a 1-day horizon of everything before it)
    # user 1: 8 @0.1, 9 @0.2; users are never mixed
    log = clicks([(1, 9, 0.2), (0, 6, 0.5), (0, 5, 0.0), (0, 7, 3.0), (0, 5, 0.6), (1, 8, 0.1)])
    src, dst = next_click_pairs(log, horizon_days=1.0, context=2)
    got = sorted(zip(src.tolist(), dst.tolist()))
    # lag 1: 5->6, 6->5, (5->7 too late), 8->9; lag 2: 5->5 skipped (same content), (6->7 too late)
    assert got == sorted([(5, 6), (6, 5), (8, 9)])
    src, dst = next_click_pairs(log, horizon_days=5.0, context=3)
    # + 5->7, 6->7 (lag 2), 5->7 again (lag 3, the first click of 5)
    assert sorted(zip(src.tolist(), dst.tolist())) == sorted([(5, 6), (6, 5), (5, 7), (8, 9), (6, 7), (5, 7)])
    with pytest.raises(ValueError, match="context"):
        next_click_pairs(log, 1.0, 0)


def test_drop_pair_edges_removes_both_directions_and_renormalises() -> None:
    # node 0 aggregates 1 (w .5), 2 (w .3), 3 (w .2); node 1 aggregates 0 (1.0); node 2 aggregates 3 (1.0)
    w = sp.csr_matrix(([0.5, 0.3, 0.2, 1.0, 1.0], ([0, 0, 0, 1, 2], [1, 2, 3, 0, 3])), shape=(4, 4))
    g = top_k_graph(w, 10)
    ei = g.edge_index()
    keep, alpha = drop_pair_edges(ei, g.alpha, torch.tensor([1]), torch.tensor([0]), 4)
    kept = {(int(j), int(i)): float(a) for j, i, k, a in zip(ei[0], ei[1], keep, alpha) if k}
    # the example (1, 0) removes "0 aggregates 1" and "1 aggregates 0"; node 0 renormalises .3/.5, .2/.5
    assert set(kept) == {(2, 0), (3, 0), (3, 2)}
    assert kept[(2, 0)] == pytest.approx(0.6) and kept[(3, 0)] == pytest.approx(0.4)
    assert kept[(3, 2)] == pytest.approx(1.0)
    assert float(alpha[~keep].abs().sum()) == 0.0  # node 1 is left with nothing: weight 0, no NaN


def test_next_click_task_never_aggregates_its_own_edge(tiny_cfg, monkeypatch) -> None:
    """Every encoder pass of a next-click step runs on a graph without the batch's example edges."""
    from graphrecall.models import sage as sage_module

    cfg = tiny_cfg(["model=sage", "model.objective=next_click", "trainer.max_epochs=1",
                    "trainer.enable_progress_bar=false", "model.optim.batch_size=64",
                    "model.next_click.num_uniform=16", "model.sampling.batching=full"])
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    original = sage_module.SageI2IModule.next_click_task

    def spy(self, batch, gen):
        forward = self.net.forward

        def record(nodes, edge_index, alpha, features, **kwargs):
            seen.append((batch[0].clone(), batch[1].clone(), edge_index.clone()))
            return forward(nodes, edge_index, alpha, features, **kwargs)

        self.net.forward = record
        try:
            return original(self, batch, gen)
        finally:
            self.net.forward = forward

    monkeypatch.setattr(sage_module.SageI2IModule, "next_click_task", spy)
    _, objects = train_app.train(cfg)
    assert seen, "no next-click step ran"
    val_graph = objects["model"]._graph_and_features(objects["folds"]["val"], objects["dataset"], None)[1]
    full_edges = set(zip(val_graph.edge_index()[0].tolist(), val_graph.edge_index()[1].tolist()))
    examples_on_edges = 0
    for src, dst, edge_index in seen:
        edges = set(zip(edge_index[0].tolist(), edge_index[1].tolist()))  # (neighbour, node)
        for s, d in zip(src.tolist(), dst.tolist()):
            assert (d, s) not in edges and (s, d) not in edges
            examples_on_edges += (d, s) in full_edges
    assert examples_on_edges > 0  # the check is not vacuous: many examples are co-click edges


# --------------------------------------------------------------------------- logQ sampled softmax


def test_candidate_log_q_by_hand() -> None:
    # positives: content 0 three times, content 2 once (p = .75, 0, .25, 0); B = 2, M = 4, C = 4
    counts = torch.tensor([3, 0, 1, 0])
    log_q = candidate_log_q(counts, batch_size=2, num_uniform=4)
    expected = [math.log(2 * 0.75 + 1.0), math.log(1.0), math.log(2 * 0.25 + 1.0), math.log(1.0)]
    np.testing.assert_allclose(log_q.numpy(), expected, rtol=1e-6)


def test_sampled_softmax_logits_and_loss_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])           # queries: contents 10, 11
    pos = torch.tensor([[2.0, 1.0], [1.0, 1.0]])         # positives: contents 20, 20 (a duplicate)
    uni = torch.tensor([[0.0, 1.0], [3.0, 0.0]])         # uniform draws: contents 11, 30
    log_q = torch.zeros(40)
    log_q[20], log_q[11], log_q[30] = math.log(2.0), math.log(0.5), math.log(1.0)
    logits = sampled_softmax_logits(q, pos, uni, torch.tensor([10, 11]), torch.tensor([20, 20]),
                                    torch.tensor([11, 30]), log_q, temperature=0.5)
    # row 0: <q0, c> / .5 = [4, 2, 0, 6], minus log Q = [ln2, ln2, ln.5, 0]; column 1 (content 20
    # = its own positive, not the diagonal) is masked
    # row 1: [4, 4, 8, 0] minus the same; column 0 (20 = its positive) and column 2 (11 = the query) masked
    inf = float("-inf")
    expected = torch.tensor([[4 - math.log(2), inf, 0 - math.log(0.5), 6.0],
                             [inf, 4 - math.log(2), inf, 0.0]])
    assert torch.equal(torch.isinf(logits), torch.isinf(expected))
    finite = torch.isfinite(expected)
    torch.testing.assert_close(logits[finite], expected[finite])
    loss = SampledSoftmaxLoss()(logits)
    row0 = -(expected[0, 0] - torch.logsumexp(expected[0][finite[0]], 0))
    row1 = -(expected[1, 1] - torch.logsumexp(expected[1][finite[1]], 0))
    torch.testing.assert_close(loss, (row0 + row1) / 2)


# --------------------------------------------------------------------------- aggregate serving


def hand_pool() -> CandidatePool:
    # content rows 0..5; pool rows (neighbour, score)
    nb = np.array([[2, 3, -1], [3, 4, -1], [-1, -1, -1], [-1, -1, -1], [-1, -1, -1], [-1, -1, -1]])
    sc = np.array([[0.5, 0.2, np.nan], [0.4, 0.3, np.nan]] + [[np.nan] * 3] * 4, dtype=np.float32)
    return CandidatePool(nb, sc)


def test_aggregate_recall_by_hand() -> None:
    pool = hand_pool()
    seen = sp.csr_matrix(([1, 1, 1], ([0, 0, 1], [0, 1, 0])), shape=(2, 6))
    fallback = np.array([5, 4, 3, 2, 1, 0])
    # user 0: triggers [1 (newest), 0], decay .5: 3: .4 + .5*.2 = .5; 4: .3; 2: .5*.5 = .25
    res = aggregate_recall(pool, [np.array([1, 0]), np.array([0])], seen, 5, decay=0.5, fallback=fallback)
    # ties: 3 and ... none; order 3 (.5), 4 (.3), 2 (.25), then back-fill 5 (0, 1 seen; 4 3 2 taken)
    assert res.recs[0].tolist() == [3, 4, 2, 5, -1]
    assert res.from_triggers[0] == 3 and res.backfilled[0] == 1
    # user 1: trigger 0 (seen): 2 (.5), 3 (.2), then back-fill 5, 4, 1
    assert res.recs[1].tolist() == [2, 3, 5, 4, 1]
    # a popularity bonus: beta * log(1 + pop), pop 2 -> 0, 3 -> 0, 4 -> e^1 - 1 (bonus .3)
    bonus = 0.3 * np.log1p(np.array([0, 0, 0, 0, math.e - 1, 0]))
    res = aggregate_recall(pool, [np.array([1, 0])], seen[:1], 3, decay=0.5, fallback=fallback, bonus=bonus)
    # 3: .5, 4: .3 + .3 = .6, 2: .25 -> 4, 3, 2
    assert res.recs[0].tolist() == [4, 3, 2]


def test_aggregate_recall_breaks_ties_by_the_fallback_order() -> None:
    nb = np.array([[1, 2, 3], [-1, -1, -1], [-1, -1, -1], [-1, -1, -1]])
    sc = np.array([[0.5, 0.5, 0.5]] + [[np.nan] * 3] * 3, dtype=np.float32)
    seen = sp.csr_matrix(([1], ([0], [0])), shape=(1, 4))
    res = aggregate_recall(CandidatePool(nb, sc), [np.array([0])], seen, 3, fallback=np.array([3, 1, 2, 0]))
    assert res.recs[0].tolist() == [3, 1, 2]
    res = aggregate_recall(CandidatePool(nb, sc), [np.array([0])], seen, 3, fallback=np.array([2, 3, 1, 0]))
    assert res.recs[0].tolist() == [2, 3, 1]

def test_aggregate_recall_scores_a_cut_off_content_at_its_rows_minimum_when_scores_are_signed() -> None:
    # cosine pools cut to their top entries: trigger 0 keeps 2 (.9), 3 (-.1), 5 (-.6) and cut off 4;
    # trigger 1 keeps 4 (.2) only
    nb = np.array([[2, 3, 5], [4, -1, -1], *[[-1] * 3] * 4])
    sc = np.array([[0.9, -0.1, -0.6], [0.2, np.nan, np.nan], *[[np.nan] * 3] * 4], dtype=np.float32)
    seen = sp.csr_matrix(([1, 1], ([0, 0], [0, 1])), shape=(1, 6))
    # decay 1; a cut-off entry scores its row's minimum when that is negative, else 0:
    # 2: .9 + 0 = .9; 3: -.1 + 0 = -.1; 4: -.6 + .2 = -.4; 5: -.6 + 0 = -.6
    res = aggregate_recall(CandidatePool(nb, sc), [np.array([0, 1])], seen, 4, decay=1.0)
    assert res.recs[0].tolist() == [2, 3, 4, 5]
    # (scored 0 instead, the cut-off 4 would get 0 + .2 and pass 3, which trigger 0 keeps above it)
    # non-negative rows are unchanged: a cut-off entry adds 0 (probabilities, co-click weights)
    sc = np.array([[0.9, 0.3, 0.05], [0.2, np.nan, np.nan], *[[np.nan] * 3] * 4], dtype=np.float32)
    res = aggregate_recall(CandidatePool(nb, sc), [np.array([0, 1])], seen, 4, decay=1.0)
    assert res.recs[0].tolist() == [2, 3, 4, 5]  # .9, .3, 0 + .2, .05
    sc[0, 1] = 0.1
    res = aggregate_recall(CandidatePool(nb, sc), [np.array([0, 1])], seen, 4, decay=1.0)
    assert res.recs[0].tolist() == [2, 4, 3, 5]  # .9, .2, .1, .05


def test_ranking_ties_never_fall_to_catalogue_order() -> None:
    scores = np.zeros(50)
    ranking = ranking_from_scores(scores)
    assert ranking.tolist() != list(range(50))  # not catalogue order
    np.testing.assert_array_equal(ranking, np.argsort(tie_order(50)))
    # tie scores come before the pseudo-random order
    tie_scores = np.arange(50, dtype=np.float64)
    np.testing.assert_array_equal(ranking_from_scores(scores, tie_scores), np.arange(50)[::-1])


def test_popularity_beta_grid_is_chosen_on_val_only() -> None:
    model = PoolRecall(3, {"mode": "aggregate", "popularity_beta": [0.0, 1.0]})
    assert model.popularity_beta is None
    empty = pd.DataFrame({"u": [], "i": [], "timestamp": []})
    with pytest.raises(ValueError, match="val fold"):
        model.choose_serving(Fold("test", empty, empty, empty), None)
    with pytest.raises(ValueError, match="aggregate"):
        PoolRecall(3, {"mode": "quota", "popularity_beta": 0.5})


# --------------------------------------------------------------------------- refit, end to end


def test_refit_trains_the_selected_epoch_count(tmp_path) -> None:
    cfg = compose_train(tmp_path, [*TINY, "model=sage", "model.refit=true", "model.objective=next_click",
                                   "trainer.max_epochs=4", "trainer.early_stopping_patience=0",
                                   "trainer.enable_progress_bar=false", "model.optim.batch_size=128",
                                   "model.next_click.num_uniform=32", "recall.mode=aggregate",
                                   "recall.popularity_beta=[0,0.1,1]"])
    metrics, objects = train_app.train(cfg)
    model = objects["model"]
    selected = int(metrics["val/fit/best_epoch"]) + 1
    assert metrics["val/fit/selected_epochs"] == selected
    assert metrics["test/fit/refit/epochs"] == selected  # exactly the validation-chosen count
    assert model.popularity_beta in (0.0, 0.1, 1.0)
    assert metrics["val/fit/serving/popularity_beta"] == model.popularity_beta
    # the validation-trained model is evaluated on test beside the refit one
    assert "test_no_refit/recall@50" in metrics and "test/recall@50" in metrics
    assert "test/warm/recall@50" in metrics and "test/cold/recall@50" in metrics
    assert (tmp_path / "run" / "refit" / "checkpoints" / "last.ckpt").exists()


def test_m2grl_content_task_takes_the_next_click_objective(tmp_path) -> None:
    cfg = compose_train(tmp_path, [*TINY, "model=m2grl", "model.objective=next_click", "model.refit=true",
                                   "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
                                   "model.optim.batch_size=128", "model.next_click.num_uniform=32",
                                   "model.popularity.enabled=true", "model.pool_score=probability"])
    metrics, objects = train_app.train(cfg)
    module = objects["model"].module
    assert module.hparams.objective == "next_click" and module.log_q is not None
    assert module.popularity_bias is not None  # the learned popularity term reaches M2GRL's content task
    assert metrics["test/fit/refit/epochs"] == metrics["val/fit/selected_epochs"]
    assert 0.0 <= metrics["test/warm/recall@50"] <= 1.0


def test_refit_epochs_replaces_the_selected_count(tmp_path) -> None:
    """model.refit_epochs=3 with 1 validation epoch: the refit trains 3 epochs and says so; the
    served model's epoch count (M2GRL reads its task weights there) is the refit's."""
    cfg = compose_train(tmp_path, [*TINY, "model=m2grl", "model.objective=next_click", "model.refit=true",
                                   "model.refit_epochs=3", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                                   "model.optim.batch_size=128", "model.next_click.num_uniform=32"])
    metrics, objects = train_app.train(cfg)
    assert metrics["val/fit/selected_epochs"] == 1
    assert metrics["test/fit/refit/epochs"] == 3 and metrics["test/fit/refit/fixed_epochs"] == 1.0
    assert objects["model"].served_epochs == 3
    assert "test_no_refit/recall@50" in metrics
