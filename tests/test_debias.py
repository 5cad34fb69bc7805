"""DICE building blocks against hand computations: sampler masks, each loss term and sign, curriculum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graphrecall.debias import (
    curriculum,
    dice_losses,
    count_false_negatives,
    discrepancy,
    distance_correlation,
    ips_weights,
    popularity_relation,
    sample_hard_negatives,
    sample_popularity_negatives,
    signed_discrepancy,
)
from graphrecall.metrics import mean_rowwise_spearman, rowwise_spearman

POP = np.arange(100, dtype=float)  # content c has popularity c


def _no_positives(num_users=3):
    return sp.csr_matrix((num_users, len(POP)))


def test_sampler_tags_by_popularity_relation_and_respects_both_sets():
    rng = np.random.default_rng(0)
    # positive 50 with margin 10: more popular = 61..99 (39 items), less popular = 0..24 (25 items);
    # both under pool=40 -> every negative from the larger set ("more popular")
    neg = sample_popularity_negatives(np.array([0]), np.array([50]), POP, _no_positives(), 8, margin=10, pool=40, rng=rng)
    assert neg.more_popular.all() and (neg.items >= 61).all()
    # pool=20: both sets large enough -> a 50/50 mix, masks consistent with popularity
    neg = sample_popularity_negatives(np.zeros(500, int), np.full(500, 50), POP, _no_positives(1), 4, margin=10,
                                      pool=20, rng=rng)
    more = neg.items >= 61
    less = neg.items <= 24
    assert (more | less).all() and (neg.more_popular == more).all()
    assert 0.45 < neg.more_popular.mean() < 0.55


def test_sampler_pool_fallback_and_empty_sets():
    rng = np.random.default_rng(1)
    # positive 95, margin 10: no more popular item -> all from "less popular" (0..47)
    neg = sample_popularity_negatives(np.array([0]), np.array([95]), POP, _no_positives(), 6, margin=10, rng=rng)
    assert (~neg.more_popular).all() and (neg.items < 47.5).all()
    # positive 1, margin 5: more popular = 7..99, less popular = {0} (< pool) -> all more popular
    neg = sample_popularity_negatives(np.array([0]), np.array([1]), POP, _no_positives(), 6, margin=5, rng=rng)
    assert neg.more_popular.all() and (neg.items >= 7).all()
    # a flat popularity: both sets empty -> uniform draws, tagged "less popular" (none exceeds the margin)
    flat = np.ones(30)
    neg = sample_popularity_negatives(np.array([0]), np.array([3]), flat, sp.csr_matrix((1, 30)), 5, margin=1, rng=rng)
    assert (~neg.more_popular).all() and neg.items.min() >= 0 and neg.items.max() < 30


def test_sampler_excludes_the_users_positives():
    rng = np.random.default_rng(2)
    # the user clicked every "more popular" item except 99 (pool=40: "more popular" keeps 1 < 40
    # candidates, so every draw falls back to "less popular" minus its positives)
    clicked = np.arange(61, 99)
    user_items = sp.csr_matrix((np.ones(len(clicked)), (np.zeros(len(clicked), int), clicked)), shape=(1, 100))
    neg = sample_popularity_negatives(np.zeros(200, int), np.full(200, 50), POP, user_items, 4, margin=10, pool=40,
                                      rng=rng)
    assert (neg.items <= 24).all() and neg.fallback.all() and not neg.no_candidate.any()
    # pool=1: the 50/50 rule applies, and the only valid "more popular" negative is 99
    neg = sample_popularity_negatives(np.zeros(400, int), np.full(400, 50), POP, user_items, 4, margin=10, pool=1,
                                      rng=rng)
    assert set(neg.items[neg.more_popular].tolist()) == {99} and not neg.fallback.any()
    assert 0.45 < neg.more_popular.mean() < 0.55


def test_sampler_removes_positives_from_both_sets_before_drawing():
    """A hand-made popularity vector with the query's positives in both candidate sets: every valid
    candidate is drawn, uniformly, and no positive ever is."""
    pop = np.array([0, 1, 2, 3, 10, 20, 21, 22, 23, 24], dtype=float)  # content c: pop[c]
    # query 0 clicked 1 and 3 (less popular than 10 / 2 = 5) and 20, 22 (pop > 10 + 5: contents 5, 7);
    # query 1 clicked nothing but content 4
    rows, cols = [0, 0, 0, 0, 0, 1], [1, 3, 4, 5, 7, 4]
    items = sp.csr_matrix((np.ones(6), (rows, cols)), shape=(2, 10))
    rng = np.random.default_rng(0)
    n = 20_000
    neg = sample_popularity_negatives(np.zeros(n, int), np.full(n, 4), pop, items, 2, margin=5, pool=1, rng=rng)
    # less popular (pop < 5): {0, 1, 2, 3} minus {1, 3} = {0, 2}; more popular (pop > 15): {5..9} minus {5, 7}
    drawn, counts = np.unique(neg.items, return_counts=True)
    assert drawn.tolist() == [0, 2, 6, 8, 9]
    share = counts / counts.sum()
    np.testing.assert_allclose(share, [0.25, 0.25, 1 / 6, 1 / 6, 1 / 6], atol=0.015)
    assert (neg.more_popular == np.isin(neg.items, [6, 8, 9])).all()
    assert count_false_negatives(np.zeros(n, int), neg.items, items) == 0
    # query 1 (only content 4 clicked) gets the full sets
    neg = sample_popularity_negatives(np.ones(n, int), np.full(n, 4), pop, items, 2, margin=5, pool=1, rng=rng)
    assert np.unique(neg.items).tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    # the independent check counts a planted positive
    planted = np.array([[1, 0], [2, 5]])  # 1 and 5 are query 0's positives
    assert count_false_negatives(np.array([0, 0]), planted, items) == 2
    assert count_false_negatives(np.array([0, 0]), planted, items, skip=np.array([[True, False], [False, False]])) == 1


def test_sampler_no_valid_candidate_is_counted_and_inert():
    pop = np.array([1.0, 2.0, 3.0])
    items = sp.csr_matrix(np.array([[1, 1, 1], [1, 0, 0]]))
    neg = sample_popularity_negatives(np.array([0, 1]), np.array([2, 0]), pop, items, 3, margin=0, pool=5,
                                      rng=np.random.default_rng(0))
    # query 0 clicked everything: the positive is repeated (zero-gradient triple), counted
    assert neg.no_candidate[0].all() and (neg.items[0] == 2).all() and not neg.no_candidate[1].any()
    # query 1, positive 0 (pop 1): less popular is empty, more popular = {1, 2}, both under pool=5 -> more
    assert set(neg.items[1].tolist()) <= {1, 2} and neg.fallback[1].all() and neg.more_popular[1].all()
    # both sets empty (flat popularity): uniform over the unclicked contents only
    flat = sample_popularity_negatives(np.full(300, 1), np.zeros(300, int), np.ones(3), items, 2, margin=1,
                                       rng=np.random.default_rng(1))
    assert flat.uniform.all() and set(np.unique(flat.items).tolist()) == {1, 2}


def sp_(x: float) -> float:
    return math.log1p(math.exp(x))


def test_dice_losses_by_hand():
    s_int_pos, s_int_neg = torch.tensor([2.0, 0.5]), torch.tensor([1.0, 1.5])
    s_con_pos, s_con_neg = torch.tensor([0.3, 1.0]), torch.tensor([0.8, -0.2])
    mask = torch.tensor([True, False])  # triple 0: negative more popular; triple 1: less popular
    out = dice_losses(s_int_pos, s_int_neg, s_con_pos, s_con_neg, mask)
    click = (sp_((1.0 + 0.8) - (2.0 + 0.3)) + sp_((1.5 - 0.2) - (0.5 + 1.0))) / 2
    interest = sp_(1.0 - 2.0) / 2  # only triple 0, divided by the full batch (2)
    # triple 0: reversed conformity BPR s_con(neg) > s_con(pos): softplus(s_con_pos - s_con_neg)
    # triple 1: conformity BPR s_con(pos) > s_con(neg): softplus(s_con_neg - s_con_pos)
    conformity = (sp_(0.3 - 0.8) + sp_(-0.2 - 1.0)) / 2
    assert out["click"].item() == pytest.approx(click, rel=1e-6)
    assert out["interest"].item() == pytest.approx(interest, rel=1e-6)
    assert out["conformity"].item() == pytest.approx(conformity, rel=1e-6)
    big = dice_losses(torch.tensor([1e4]), torch.tensor([-1e4]), torch.tensor([1e4]), torch.tensor([-1e4]),
                      torch.tensor([True]))
    assert all(torch.isfinite(v) for v in big.values())


def test_dice_losses_with_a_neither_triple():
    # mined hard negatives can be neither more popular (by the margin) nor less popular (below half):
    # such a triple enters the click term only
    s_int_pos, s_int_neg = torch.tensor([2.0, 0.5, 1.0]), torch.tensor([1.0, 1.5, 0.0])
    s_con_pos, s_con_neg = torch.tensor([0.3, 1.0, 0.4]), torch.tensor([0.8, -0.2, 0.9])
    more, less = torch.tensor([True, False, False]), torch.tensor([False, True, False])
    out = dice_losses(s_int_pos, s_int_neg, s_con_pos, s_con_neg, more, less)
    click = (sp_(1.8 - 2.3) + sp_(1.3 - 1.5) + sp_(0.9 - 1.4)) / 3
    assert out["click"].item() == pytest.approx(click, rel=1e-6)
    assert out["interest"].item() == pytest.approx(sp_(1.0 - 2.0) / 3, rel=1e-6)
    assert out["conformity"].item() == pytest.approx((sp_(0.3 - 0.8) + sp_(-0.2 - 1.0)) / 3, rel=1e-6)
    # without the less-popular mask every non-"more" triple is a conformity triple (the sampler's case)
    old = dice_losses(s_int_pos, s_int_neg, s_con_pos, s_con_neg, more)
    assert old["conformity"].item() == pytest.approx((sp_(0.3 - 0.8) + sp_(-0.2 - 1.0) + sp_(0.9 - 0.4)) / 3,
                                                     rel=1e-6)


def test_popularity_relation_by_hand():
    more, less = popularity_relation(np.array([[10.0], [4.0]]), np.array([[25.0, 4.0, 12.0], [1.0, 2.0, 15.0]]), 10)
    assert more.tolist() == [[True, False, False], [False, False, True]]
    assert less.tolist() == [[False, True, False], [True, False, False]]


def test_ips_weights_capped_and_normalised():
    w = ips_weights(np.array([1, 2, 4, 10]), cap=4.0, normalize="mean")  # 10/pop = 10, 5, 2.5, 1 -> capped 4, 4, 2.5, 1
    raw = np.array([4.0, 4.0, 2.5, 1.0])
    np.testing.assert_allclose(w, raw / raw.mean(), rtol=1e-6)
    assert w.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(ips_weights(np.array([2, 4]), cap=None, normalize="mean"), [4 / 3, 2 / 3], rtol=1e-6)
    # the authors' IPS-CN: clipped at the median weight, divided by the max. 10/pop = 10, 5, 2.5, 1, 1:
    # median 2.5 -> 2.5, 2.5, 2.5, 1, 1 -> / 2.5
    np.testing.assert_allclose(ips_weights(np.array([1, 2, 4, 10, 10])), [1, 1, 1, 0.4, 0.4], rtol=1e-6)
    np.testing.assert_allclose(ips_weights(np.array([1, 2, 4, 10]), cap=4.0, normalize="max"), raw / 4, rtol=1e-6)
    with pytest.raises(ValueError, match="popularity >= 1"):
        ips_weights(np.array([0, 3]))
    with pytest.raises(ValueError, match="ips_cap"):
        ips_weights(np.array([1, 3]), cap=0.5)
    with pytest.raises(ValueError, match="ips_cap"):
        ips_weights(np.array([1, 3]), cap="mean")
    with pytest.raises(ValueError, match="ips_normalize"):
        ips_weights(np.array([1, 3]), normalize="sum")


def test_layer_dropout_propagation_matches_pyg_without_dropout_and_drops_per_layer():
    from graphrecall.models.lightgcn import LightGCNNet, bipartite_edge_index, propagate

    torch.manual_seed(0)
    net = LightGCNNet(3, 4, 8, num_layers=2, dropout=0.5)
    net.set_graph(bipartite_edge_index(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 3]), 3))
    net.eval()  # eval: PyG's LightGCN, no dropout
    users, contents = net()
    x0 = net.lightgcn.embedding.weight
    by_hand = (x0 + net.adj @ x0 + net.adj @ (net.adj @ x0)) / 3
    torch.testing.assert_close(torch.cat([users, contents]), by_hand)
    torch.testing.assert_close(propagate(net.adj, x0, 2), by_hand)
    # training: layer 0 untouched; with p -> 1 every propagated layer is zeroed, so the mean is x0 / 3
    net.train()
    net.dropout = 1.0
    users, contents = net()
    torch.testing.assert_close(torch.cat([users, contents]), x0 / 3)


def test_dice_discrepancy_scopes():
    """separate (the authors): dCor over contents + dCor over groups; joint: one over both together."""
    from graphrecall.models.dice import DICEModule

    torch.manual_seed(0)
    a_c, b_c, a_q, b_q = (torch.randn(6, 4) for _ in range(4))
    separate = DICEModule(3, 6, embedding_dim=4, dis_scope="separate", dis_sample=None)
    joint = DICEModule(3, 6, embedding_dim=4, dis_scope="joint", dis_sample=None)
    expected = distance_correlation(a_c, b_c) + distance_correlation(a_q, b_q)
    torch.testing.assert_close(separate.discrepancy([a_c, a_q], [b_c, b_q]), expected)
    torch.testing.assert_close(joint.discrepancy([torch.cat([a_q, a_c])], [torch.cat([b_q, b_c])]),
                               distance_correlation(torch.cat([a_q, a_c]), torch.cat([b_q, b_c])))
    with pytest.raises(ValueError, match="model.dice.dis_scope"):
        DICEModule(3, 6, dis_scope="both")
    with pytest.raises(ValueError, match="model.dice.dropout_at"):
        DICEModule(3, 6, dropout_at="input")


def test_hard_negatives_come_from_the_row_band():
    band = np.array([[5, 6, 7, -1], [-1, -1, -1, -1], [9, -1, -1, -1]])
    rows = np.repeat([0, 1, 2], 400)
    out = sample_hard_negatives(rows, band, 2, np.random.default_rng(0))
    assert out.shape == (1200, 2)
    assert set(out[rows == 0].ravel()) == {5, 6, 7}  # the -1 padding is never drawn
    assert (out[rows == 1] == -1).all()  # empty band: the caller keeps its sampled negative
    assert (out[rows == 2] == 9).all()
    counts = np.bincount(out[rows == 0].ravel(), minlength=8)[5:]
    assert counts.min() > 200  # uniform over the valid band entries (800 draws, 3 values)


def test_rowwise_spearman_against_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(4, 30))
    scores[1, :10] = 0.5  # ties
    ref = rng.normal(size=(4, 30))
    got = rowwise_spearman(scores, ref)
    for r in range(4):
        assert got[r] == pytest.approx(spearmanr(scores[r], ref[r]).statistic, abs=1e-12)
    shared = rowwise_spearman(scores, ref[0])  # one reference row for every user
    assert shared[2] == pytest.approx(spearmanr(scores[2], ref[0]).statistic, abs=1e-12)
    assert rowwise_spearman(np.array([[1.0, 2.0, 3.0]]), np.array([[3.0, 2.0, 1.0]]))[0] == pytest.approx(-1.0)
    assert np.isnan(rowwise_spearman(np.ones((1, 5)), ref[0, :5])[0])
    # chunked mean: the same as the mean over all rows at once, whatever the chunk size
    whole = float(np.mean(rowwise_spearman(scores, ref)))
    assert mean_rowwise_spearman(lambda r: scores[r], lambda r: ref[r], 4, chunk_size=3) == pytest.approx(whole)
    assert mean_rowwise_spearman(lambda r: scores[r], lambda r: ref[0], 4, chunk_size=1) == pytest.approx(
        float(np.mean(shared)))
    assert np.isnan(mean_rowwise_spearman(lambda r: np.ones((2, 5))[r], lambda r: ref[0, :5], 2))


def test_mined_band_is_the_models_ranking_without_positives():
    from graphrecall.models.dice import DICEModule

    torch.manual_seed(0)
    module = DICEModule(3, 40, embedding_dim=8, hard_negatives={"enabled": True, "ranks": [2, 6], "share": 0.5})
    g = torch.tensor([0, 0, 1, 2, 2])
    c = torch.tensor([1, 3, 5, 7, 9])
    positives = sp.csr_matrix((np.ones(5), (g.numpy(), c.numpy())), shape=(3, 40))
    module.attach((g, c), np.arange(40, dtype=float), positives, None)
    band = module.mine_hard_negatives()
    with torch.no_grad():
        q, v = module.interest()
    scores = (q @ v.T).numpy()
    for row in range(3):
        ranked = [int(j) for j in np.argsort(-scores[row]) if positives[row, j] == 0]
        assert band[row].tolist() == ranked[2:6]
    with pytest.raises(ValueError, match="hard_negatives"):
        DICEModule(3, 40, hard_negatives={"enabled": True, "ranks": [5, 5]})
    with pytest.raises(ValueError, match="enabled=false"):
        DICEModule(3, 40, ips=True)
    ips = DICEModule(3, 40, enabled=False, ips=True, ips_cap=None, ips_normalize="mean")
    assert ips.interest.lightgcn.embedding.weight.shape[1] == 2 * 64  # the baseline gets the 64 + 64 budget
    pop = np.zeros(40)
    pop[[1, 3, 5, 7, 9]] = [1, 2, 4, 1, 8]
    ips.attach((g, c), pop, positives, None)
    raw = np.array([8, 4, 2, 8, 1.0])
    np.testing.assert_allclose(ips.ips_weight[[1, 3, 5, 7, 9]], raw / raw.mean(), rtol=1e-6)
    assert ips.ips_weight.sum() == pytest.approx(5.0)  # unclicked contents weigh nothing
    authors = DICEModule(3, 40, enabled=False, ips=True)  # defaults: clipped at the median, divided by the max
    authors.attach((g, c), pop, positives, None)
    np.testing.assert_allclose(authors.ips_weight[[1, 3, 5, 7, 9]], np.minimum(raw, 4) / 4, rtol=1e-6)


def test_discrepancy_terms_and_signs():
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    y = torch.tensor([[1.0, 1.0], [0.0, 5.0]])
    assert discrepancy(x, y, "l1").item() == pytest.approx((1 + 0 + 2 + 2) / 4)
    assert discrepancy(x, y, "l2").item() == pytest.approx((1 + 0 + 4 + 4) / 4)
    assert signed_discrepancy(x, y, "l1").item() == pytest.approx(-5 / 4)  # subtracted: distance maximised
    torch.manual_seed(0)
    a = torch.randn(200, 4)
    assert signed_discrepancy(a, a, "dcor").item() == pytest.approx(1.0, abs=1e-5)  # added: dCor minimised
    with pytest.raises(ValueError, match="dis_loss"):
        discrepancy(x, y, "cos")


def test_distance_correlation_against_numpy():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
    y[:, 0] += x[:, 0] ** 2  # a dependence dCor sees
    def centred(m):
        d = np.linalg.norm(m[:, None, :] - m[None, :, :], axis=-1)
        return d - d.mean(0) - d.mean(1)[:, None] + d.mean()
    A, B = centred(x), centred(y)
    expected = np.sqrt((A * B).mean()) / np.sqrt(np.sqrt((A * A).mean()) * np.sqrt((B * B).mean()))
    got = distance_correlation(torch.tensor(x), torch.tensor(y)).item()
    assert got == pytest.approx(expected, rel=1e-6)
    independent = distance_correlation(torch.randn(400, 3), torch.randn(400, 3)).item()
    assert independent < got


def test_curriculum_decays_each_epoch():
    assert curriculum(40, 0) == 40
    assert curriculum(40, 2) == pytest.approx(40 * 0.81)
    assert curriculum(0.1, 3, decay=0.5) == pytest.approx(0.0125)


def test_dice_model_end_to_end_on_groups(tmp_path):
    import csv
    import sys

    from tests.conftest import ROOT, TINY, compose_train

    sys.path.insert(0, str(ROOT))
    import train as train_app

    common = [*TINY, "model=dice", "trainer.max_epochs=2", "trainer.early_stopping_patience=0",
              "trainer.enable_progress_bar=false", "model.dice.margin=2", "model.figure.method=pca"]
    metrics, objects = train_app.train(compose_train(tmp_path / "dice", common))
    model = objects["model"]
    # every user of a group with training clicks is served by the model, zero-click users included
    zero_click = ~np.isin(np.arange(len(objects["dataset"].users)), objects["folds"]["val"].train["u"].to_numpy())
    assert (model.trained_users & zero_click).any()
    rows = list(csv.DictReader(open(tmp_path / "dice" / "run" / "csv" / "metrics.csv")))
    shares = [float(r["train/more_popular_share"]) for r in rows if r.get("train/more_popular_share")]
    margins = [float(r["train/margin"]) for r in rows if r.get("train/margin")]
    assert len(shares) == 2 and all(0.0 < s < 1.0 for s in shares)
    # the sampler never draws a group's own positive; its fallbacks are logged every epoch
    false_negatives = [float(r["train/false_negative_share"]) for r in rows if r.get("train/false_negative_share")]
    fallbacks = [float(r["train/fallback_share"]) for r in rows if r.get("train/fallback_share")]
    assert false_negatives == [0.0, 0.0] and len(fallbacks) == 2 and all(0.0 <= f <= 1.0 for f in fallbacks)
    assert metrics["val/fit/epochs"] == 2 and metrics["val/fit/stopped_on_patience"] == 0.0
    assert margins == pytest.approx([2.0, 1.8])  # the curriculum: x0.9 after each epoch
    assert 0.0 <= metrics["test/recall@50"] <= 1.0
    # diagnostics: agreement with the synthetic truth per branch, and the article's figure
    for key in ("test/diag/true_interest_spearman", "test/diag/interest/true_interest_spearman",
                "test/diag/conformity/true_interest_spearman", "test/diag/conformity/popularity_spearman"):
        assert -1.0 <= metrics[key] <= 1.0, key
    assert metrics["test/diag/true_interest_spearman"] == metrics["test/diag/interest/true_interest_spearman"]
    assert (tmp_path / "dice" / "run" / "interest_conformity.png").stat().st_size > 1000
    concat, objects_c = train_app.train(compose_train(tmp_path / "concat", [*common, "model.dice.serve=concat"]))
    assert objects_c["model"].user_vectors.shape[1] == 2 * 64
    base, objects_b = train_app.train(compose_train(tmp_path / "base", [*common, "model.dice.enabled=false",
                                                                       "eval.select_on=interest_only"]))
    assert objects_b["model"].module.conformity is None and np.isfinite(base["test_interest_only/recall@50"])
    assert objects_b["model"].user_vectors.shape[1] == 2 * 64  # same budget as 64 + 64


def test_dice_hard_negatives_and_ips_end_to_end(tmp_path):
    import csv
    import sys

    from tests.conftest import ROOT, TINY, compose_train

    sys.path.insert(0, str(ROOT))
    import train as train_app

    common = [*TINY, "trainer.max_epochs=2", "trainer.early_stopping_patience=0", "trainer.enable_progress_bar=false",
              "model.dice.margin=2", "model.figure.enabled=false"]
    hard = [*common, "model=dice", "model.dice.hard_negatives.enabled=true", "model.dice.hard_negatives.share=0.5",
            "model.dice.hard_negatives.ranks=[5,50]"]
    metrics, _ = train_app.train(compose_train(tmp_path / "hard", hard))
    rows = list(csv.DictReader(open(tmp_path / "hard" / "run" / "csv" / "metrics.csv")))
    shares = [float(r["train/hard_share"]) for r in rows if r.get("train/hard_share")]
    assert len(shares) == 2 and all(s == pytest.approx(0.5, abs=0.02) for s in shares)  # 2 of 4 negatives mined
    assert np.isfinite(metrics["test/recall@50"])
    ips, objects = train_app.train(compose_train(tmp_path / "ips", [*common, "model=ips_bpr"]))
    module = objects["model"].module
    assert module.hparams.ips and module.conformity is None and np.isfinite(ips["test/recall@50"])


def test_dice_propagates_over_the_weighted_thresholded_group_graph():
    """groups.weighted / groups.tau: LightGCN's adjacency is D^-1/2 W D^-1/2 of the brief's
    w_tj = C(t,j) / sum_k C(t,k) kept above tau, checked against a hand computation."""
    import pandas as pd

    from graphrecall.data.splits import Fold, encode_clicks
    from graphrecall.models.dice import DICEModule, DICERecall
    from tests.test_graphs import HOUR, T0, make_dataset

    users = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u4"], "g": ["x", "x", "y", "z"]})
    ds = make_dataset([("u1", "c1", T0), ("u1", "c1", T0 + HOUR), ("u1", "c2", T0 + 2 * HOUR),
                       ("u2", "c1", T0 + 3 * HOUR), ("u3", "c3", T0 + 4 * HOUR)], users=users)
    clicks = encode_clicks(ds)
    fold = Fold("val", clicks, clicks, clicks.iloc[:0], None, {})
    trainer = {"max_epochs": 1}
    weighted = DICERecall(dice={}, groups={"fields": ["g"], "weighted": True, "tau": 0.3}, optim={}, trainer=trainer)
    data = weighted._fold_data(fold, ds)
    # C(x, c1) = 3, C(x, c2) = 1 -> w = 0.75, 0.25 (dropped by tau 0.3); C(y, c3) = 1 -> w = 1
    assert data.num_groups == 3 and sorted(zip(data.edges[0].tolist(), data.edges[1].tolist())) == [(0, 0), (1, 2)]
    np.testing.assert_allclose(sorted(data.edge_weight.tolist()), [0.75, 1.0])
    assert data.group_items.nnz == 3  # x-c2 stays a positive (excluded from x's negatives) though not an edge
    module = DICEModule(data.num_groups, ds.num_contents, embedding_dim=4)
    module.attach(data.edges, np.ones(ds.num_contents), data.group_items, None, data.edge_weight)
    adj = module.interest.adj.to_dense().numpy()
    # nodes: groups 0..2, then contents 3..5; edge x-c1 (0-3) weight .75 with degrees .75 and .75 -> 1.0
    expected = np.zeros((6, 6))
    expected[0, 3] = expected[3, 0] = 0.75 / np.sqrt(0.75 * 0.75)
    expected[1, 5] = expected[5, 1] = 1.0
    np.testing.assert_allclose(adj, expected, rtol=1e-6)
    plain = DICERecall(dice={}, groups={"fields": ["g"]}, optim={}, trainer=trainer)._fold_data(fold, ds)
    assert plain.edge_weight is None and len(plain.edges[0]) == 3  # every clicked pair, unweighted
    full = DICERecall(dice={}, groups={"fields": ["g"], "weighted": True}, optim={}, trainer=trainer)._fold_data(fold, ds)
    module.attach(full.edges, np.ones(ds.num_contents), full.group_items, None, full.edge_weight)
    adj = module.interest.adj.to_dense().numpy()
    # group x: weighted degree .75 + .25 = 1; c1: .75; c2: .25 -> w / sqrt(d_x d_c)
    assert adj[0, 3] == pytest.approx(0.75 / np.sqrt(1.0 * 0.75)) and adj[4, 0] == pytest.approx(0.25 / np.sqrt(0.25))


def test_feature_backbone_propagates_side_info_vectors():
    from graphrecall.models.dice import DICEModule
    from graphrecall.models.features import FieldBags
    from graphrecall.models.lightgcn import FeatureLightGCNNet, bipartite_edge_index

    torch.manual_seed(0)
    # 3 contents with a 2-value "style" field: content 0 -> {0}, 1 -> {1}, 2 -> {0, 1}
    style = FieldBags(torch.tensor([0, 1, 2, 4]), torch.tensor([0, 1, 0, 1]), 2)
    net = FeatureLightGCNNet(2, 3, embedding_dim=4, num_layers=2, field_sizes={"style": 2}, field_dim=3)
    net.set_graph(bipartite_edge_index(torch.tensor([0, 0, 1]), torch.tensor([0, 2, 1]), 2))
    with pytest.raises(RuntimeError, match="set_features"):
        net()
    net.set_features({"style": style})
    users, contents = net()
    x0 = torch.cat([net.user_embedding.weight, net.content_encoder(torch.arange(3), {"style": style})])
    a = net.adj.to_dense()
    expected = (x0 + a @ x0 + a @ a @ x0) / 3
    torch.testing.assert_close(torch.cat([users, contents]), expected)
    # content 2's layer-0 vector pools the two style embeddings (EmbeddingBag mean) plus its id row
    enc = net.content_encoder
    h = torch.cat([(enc.bags["style"].weight[0] + enc.bags["style"].weight[1]) / 2, enc.node_embedding.weight[2]])
    torch.testing.assert_close(x0[2 + 2], torch.relu(enc.lin(h)))
    with pytest.raises(ValueError, match="backbone"):
        DICEModule(2, 3, backbone="mlp")
    with pytest.raises(ValueError, match="side-info"):
        DICEModule(2, 3, backbone="lightgcn_features", field_sizes={})
    module = DICEModule(2, 3, embedding_dim=4, backbone="lightgcn_features", field_sizes={"style": 2})
    assert module.interest is not module.conformity and isinstance(module.conformity, FeatureLightGCNNet)


def test_dice_feature_backbone_end_to_end(tmp_path):
    import sys

    from tests.conftest import ROOT, TINY, compose_train

    sys.path.insert(0, str(ROOT))
    import train as train_app

    overrides = [*TINY, "model=dice", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                 "model.dice.margin=2", "model.figure.enabled=false", "model.dice.backbone=lightgcn_features"]
    metrics, objects = train_app.train(compose_train(tmp_path, overrides))
    assert set(objects["model"].module.hparams.field_sizes) == set(objects["dataset"].side_info)
    assert np.isfinite(metrics["test/recall@50"]) and np.isfinite(metrics["test/diag/true_interest_spearman"])
