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
    discrepancy,
    distance_correlation,
    sample_popularity_negatives,
    signed_discrepancy,
)

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
    # the user clicked every "more popular" item except 99: the redraws must land on 99
    clicked = np.arange(61, 99)
    user_items = sp.csr_matrix((np.ones(len(clicked)), (np.zeros(len(clicked), int), clicked)), shape=(1, 100))
    neg = sample_popularity_negatives(np.array([0]), np.array([50]), POP, user_items, 4, margin=10, pool=40,
                                      rng=rng, redraws=200)
    assert neg.collisions == 0 and (neg.items == 99).all()


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
              "trainer.enable_progress_bar=false", "model.dice.margin=2"]
    metrics, objects = train_app.train(compose_train(tmp_path / "dice", common))
    model = objects["model"]
    # every user of a group with training clicks is served by the model, zero-click users included
    zero_click = ~np.isin(np.arange(len(objects["dataset"].users)), objects["folds"]["val"].train["u"].to_numpy())
    assert (model.trained_users & zero_click).any()
    rows = list(csv.DictReader(open(tmp_path / "dice" / "run" / "csv" / "metrics.csv")))
    shares = [float(r["train/more_popular_share"]) for r in rows if r.get("train/more_popular_share")]
    margins = [float(r["train/margin"]) for r in rows if r.get("train/margin")]
    assert len(shares) == 2 and all(0.0 < s < 1.0 for s in shares)
    assert margins == pytest.approx([2.0, 1.8])  # the curriculum: x0.9 after each epoch
    assert 0.0 <= metrics["test/recall@50"] <= 1.0
    concat, objects_c = train_app.train(compose_train(tmp_path / "concat", [*common, "model.dice.serve=concat"]))
    assert objects_c["model"].user_vectors.shape[1] == 2 * 64
    base, objects_b = train_app.train(compose_train(tmp_path / "base", [*common, "model.dice.enabled=false",
                                                                       "eval.select_on=interest_only"]))
    assert objects_b["model"].module.conformity is None and np.isfinite(base["test_interest_only/recall@50"])
