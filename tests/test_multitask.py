"""M2GRL building blocks: uncertainty weighting, the inter-view relation alignment, negative
sampling that excludes a query's own values / neighbours, the PMI target of small views."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graphrecall import multitask
from graphrecall.multitask import (
    RelationAlignment,
    UncertaintyWeighting,
    masked_pair_logistic,
    pmi_loss,
    pmi_target,
    ramped_weight,
    sample_excluding,
)


@pytest.mark.parametrize("k", [4.0, 0.25])
def test_uncertainty_weight_of_a_task_scaled_by_k_is_about_one_over_k(k):
    weighting = UncertaintyWeighting(["a", "b"])
    opt = torch.optim.Adam(weighting.parameters(), lr=0.05)
    base = torch.tensor(0.8)
    for _ in range(3000):
        opt.zero_grad()
        weighting({"a": base, "b": k * base}).backward()
        opt.step()
    s = weighting.log_vars.detach()
    # at the optimum exp(s_t) = L_t
    assert torch.exp(s).tolist() == pytest.approx([0.8, 0.8 * k], rel=1e-2)
    w = weighting.effective_weights()
    assert w["b"] / w["a"] == pytest.approx(1.0 / k, rel=2e-2)


def test_uncertainty_formula_and_absent_task():
    weighting = UncertaintyWeighting(["a", "b"])
    with torch.no_grad():
        weighting.log_vars.copy_(torch.tensor([0.5, -1.0]))
    total = weighting({"a": torch.tensor(2.0), "b": torch.tensor(3.0)})
    expected = 0.5 * math.exp(-0.5) * 2.0 + 0.25 + 0.5 * math.exp(1.0) * 3.0 - 0.5
    assert total.item() == pytest.approx(expected, rel=1e-6)
    only_a = weighting({"a": torch.tensor(2.0), "b": None})
    assert torch.isfinite(only_a) and only_a.item() == pytest.approx(0.5 * math.exp(-0.5) * 2.0 + 0.25, rel=1e-6)
    only_a.backward()
    assert weighting.log_vars.grad[1].item() == 0.0  # the absent task is untouched
    assert weighting({}).item() == 0.0
    with pytest.raises(KeyError, match="unknown tasks"):
        weighting({"c": torch.tensor(1.0)})


def test_equal_and_fixed_weighting():
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(3.0)}
    assert UncertaintyWeighting(["a", "b"], "equal")(losses).item() == pytest.approx(5.0)
    fixed = UncertaintyWeighting(["a", "b"], "fixed", {"a": 0.5, "b": 2.0})
    assert fixed(losses).item() == pytest.approx(7.0)
    assert fixed.effective_weights() == {"a": 0.5, "b": 2.0}
    with pytest.raises(ValueError, match="missing"):
        UncertaintyWeighting(["a", "b"], "fixed", {"a": 1.0})
    assert not UncertaintyWeighting(["a"], "equal").log_vars.requires_grad


def test_relation_alignment_projects_content_value_and_negatives():
    torch.manual_seed(0)
    align = RelationAlignment(["style", "space"], dim=3, relation_dim=2)
    content, value, negs = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 5, 3)
    w = align.proj["style"].detach()
    f = lambda e: torch.sigmoid(e @ w)  # noqa: E731
    pos = (f(content) * f(value)).sum(-1)
    neg = (f(content).unsqueeze(1) * f(negs)).sum(-1)
    expected = -(torch.log(torch.sigmoid(pos)).mean() + torch.log(1 - torch.sigmoid(neg)).mean())
    assert align("style", content, value, negs).item() == pytest.approx(expected.item(), rel=1e-5)
    # one matrix per view pair: the style task trains W_style only
    align("style", content, value, negs).backward()
    assert align.proj["style"].grad.abs().sum() > 0
    assert align.proj["space"].grad is None


@pytest.mark.parametrize("score, mean", [("sigmoid", 8.0), ("centered", 0.0), ("cosine", 0.0)])
def test_alignment_score_of_random_vectors_is_centred_except_the_papers_form(score, mean):
    # r = 32: the paper's <sig(eW), sig(vW)> of unrelated vectors averages r/4 = 8 (never negative);
    # centred and cosine scores average about 0
    torch.manual_seed(0)
    align = RelationAlignment(["style"], dim=16, relation_dim=32, score=score, temperature=0.1)
    with torch.no_grad():
        s = align.score("style", torch.randn(2000, 16), torch.randn(2000, 5, 16))
    assert s.mean().item() == pytest.approx(mean, abs=0.15)
    if score == "sigmoid":
        assert (s > 0).all()
    else:
        assert (s < 0).float().mean().item() == pytest.approx(0.5, abs=0.05)


def test_cosine_alignment_score_is_cosine_over_temperature():
    align = RelationAlignment(["style"], dim=2, relation_dim=2, score="cosine", temperature=0.5)
    with torch.no_grad():
        align.proj["style"].copy_(torch.eye(2))
    s = align.score("style", torch.tensor([[3.0, 0.0]]), torch.tensor([[[1.0, 1.0], [0.0, -2.0]]]))
    assert s[0].tolist() == pytest.approx([2 ** -0.5 / 0.5, 0.0], abs=1e-6)
    with pytest.raises(ValueError, match="model.alignment.score"):
        RelationAlignment(["style"], 2, 2, score="dot")


def test_masked_negatives_leave_the_mean_of_the_valid_ones():
    pos, neg = torch.tensor([1.0, -0.5]), torch.tensor([[0.2, 9.0], [-1.0, 9.0]])
    mask = torch.tensor([[True, False], [True, False]])
    expected = -(torch.nn.functional.logsigmoid(pos).mean() + torch.nn.functional.logsigmoid(-neg[:, 0]).mean())
    assert masked_pair_logistic(pos, neg, mask).item() == pytest.approx(expected.item(), rel=1e-6)
    assert masked_pair_logistic(pos, neg).item() == pytest.approx(
        -(torch.nn.functional.logsigmoid(pos).mean() + torch.nn.functional.logsigmoid(-neg).mean()).item())


@pytest.mark.parametrize("dense", [True, False])
def test_negatives_are_never_the_query_its_values_or_neighbours(dense, monkeypatch):
    if not dense:  # the rejection path of large views
        monkeypatch.setattr(multitask, "DENSE_NEGATIVES_MAX_VALUES", 0)
    # 6 values; row 0 holds {1, 2}, row 1 holds {0, 1, 2, 3, 5}, row 2 holds nothing
    indptr = torch.tensor([0, 2, 7, 7])
    members = torch.tensor([1, 2, 0, 1, 2, 3, 5])
    rows = torch.tensor([0, 1, 2, 0, 1, 2])
    gen = torch.Generator().manual_seed(0)
    neg, valid = sample_excluding(indptr, members, rows, 6, 200, gen, exclude_rows=True)
    assert neg.shape == (6, 200)
    own = {0: {0, 1, 2}, 1: {0, 1, 2, 3, 5, 1}, 2: {2}}  # exclude_rows: the query row (a value) too
    for b, r in enumerate(rows.tolist()):  # a negative kept in the loss is never forbidden
        assert not set(neg[b][valid[b]].tolist()) & own[r]
    if dense:  # exact: uniform over the allowed values, every one of them drawn, all valid
        assert valid.all() and set(neg[0].tolist()) == {3, 4, 5} and set(neg[1].tolist()) == {4}
    else:  # rejection (two redraws): row 1 allows 1 value of 6, so some draws stay forbidden and are masked
        assert valid[[0, 2]].float().mean() > 0.9 and 0 < valid[1].float().mean() < 1
    # a query with no allowed value gets invalid negatives (masked, counted), never a forbidden one
    full = sample_excluding(torch.tensor([0, 3]), torch.tensor([0, 1, 2]), torch.tensor([0]), 3, 4, gen)
    assert not full[1].any()


def test_alignment_negatives_exclude_the_contents_own_values():
    from graphrecall.models.features import FieldBags
    from tests.test_m2grl import _module

    module = _module("sgns", alignment={"exclude_own": True})
    # 5 contents; style (4 values): content c < 4 holds {c}, content 4 holds {0, 1, 2}
    module.features = {"style": FieldBags(torch.tensor([0, 1, 2, 3, 4, 7]), torch.tensor([0, 1, 2, 3, 0, 1, 2]), 4)}
    captured = {}

    def capture(view, content, value, negatives, mask=None):
        captured["neg"], captured["mask"] = negatives[..., 0].long(), mask
        return content.sum() * 0

    module.alignment.forward = capture
    src = torch.tensor([0, 1, 2, 3, 4] * 40)
    table = torch.arange(4, dtype=torch.float32).view(4, 1).expand(4, 6)  # row v holds v: the ids come back
    module._alignment_task("style", table, src, torch.zeros(200, 6), torch.Generator().manual_seed(0))
    own = {0: {0}, 1: {1}, 2: {2}, 3: {3}, 4: {0, 1, 2}}
    for c, negs in zip(src.tolist(), captured["neg"].tolist()):
        assert not set(negs) & own[c]
    assert set(captured["neg"][src == 4].reshape(-1).tolist()) == {3} and captured["mask"].all()


def test_alignment_detach_stops_the_gradient_into_the_content_vectors():
    from tests.test_m2grl import _module
    from graphrecall.models.features import FieldBags

    for detach in (False, True):
        torch.manual_seed(0)
        module = _module("sgns", alignment={"detach": detach, "score": "centered"})
        module.features = {"style": FieldBags(torch.tensor([0, 1, 2]), torch.tensor([0, 3]), 4)}
        h = torch.randn(2, 6, requires_grad=True)
        loss = module._alignment_task("style", module.view_matrix("style"), torch.tensor([0, 1]), h,
                                      torch.Generator().manual_seed(0))
        loss.backward()
        assert (h.grad is None or h.grad.abs().sum() == 0) == detach
        assert module.alignment.proj["style"].grad.abs().sum() > 0  # W and the value table still learn


def test_ramped_weight_and_scales_multiply_the_whole_task_term():
    assert [ramped_weight(e, 0.5, 4) for e in range(6)] == [0.0, 0.125, 0.25, 0.375, 0.5, 0.5]
    assert ramped_weight(0, 0.3, 0) == 0.3
    weighting = UncertaintyWeighting(["a", "b"])
    with torch.no_grad():
        weighting.log_vars.copy_(torch.tensor([0.0, 1.0]))
    total = weighting({"a": torch.tensor(2.0), "b": torch.tensor(3.0)}, {"b": 0.25})
    assert total.item() == pytest.approx(0.5 * 2.0 + 0.25 * (0.5 * math.exp(-1) * 3.0 + 0.5), rel=1e-6)
    assert weighting.effective_weights({"b": 0.25}) == pytest.approx({"a": 0.5, "b": 0.25 * 0.5 * math.exp(-1)})


def test_log_variances_move_within_a_few_steps_with_their_own_learning_rate():
    from tests.test_m2grl import _module

    moved = {}
    for weighting_lr in (None, 0.1):
        module = _module("sgns", weighting_lr=weighting_lr)  # optim lr 5e-3
        opt = module.configure_optimizers()
        losses = {t: torch.tensor(3.0) for t in module.weighting.tasks}  # the toy problem: constant losses
        for _ in range(5):
            opt.zero_grad()
            module.weighting(losses).backward()
            opt.step()
        moved[weighting_lr] = module.weighting.log_vars.detach().abs().min().item()
    # Adam moves a parameter by about its learning rate per step: 5 x 5e-3 vs 5 x 0.1 (towards ln 3)
    assert moved[None] < 0.03 and moved[0.1] > 0.4


def test_pmi_target_of_a_hand_made_count_matrix():
    counts = sp.csr_matrix(np.array([[5.0, 2.0, 0.0], [2.0, 0.0, 2.0], [0.0, 2.0, 0.0]]))
    target, observed = pmi_target(counts)  # diagonal ignored: n = [[0,2,0],[2,0,2],[0,2,0]], N = 8
    assert observed.tolist() == [[False, True, False], [True, False, True], [False, True, False]]
    # n_0 = 2, n_1 = 4, n_2 = 2: PMI(0, 1) = log(2 * 8 / (2 * 4)) = log 2
    assert target[0, 1] == pytest.approx(math.log(2.0)) and target[1, 2] == pytest.approx(math.log(2.0))
    assert target[0, 2] == 0.0
    inputs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    loss = pmi_loss(inputs, inputs, torch.from_numpy(target), torch.from_numpy(observed))
    # predictions on observed pairs: <0,1> = 0, <1,0> = 0, <1,2> = 1, <2,1> = 1 vs log 2 each
    expected = (2 * math.log(2.0) ** 2 + 2 * (1 - math.log(2.0)) ** 2) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_m2grl_trains_every_task_and_logs_their_weights(tmp_path):
    import sys

    from tests.conftest import ROOT, TINY, compose_train

    sys.path.insert(0, str(ROOT))
    import train as train_app

    cfg = compose_train(tmp_path, [*TINY, "model=m2grl", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
                                   "trainer.early_stopping_patience=0"])
    metrics, objects = train_app.train(cfg)
    module = objects["model"].module
    # defaults: an intra task per view (style, space: under 32 values, PMI target), alignment of style and space
    assert set(module.weighting.tasks) == {"intra/content", "inter/style", "inter/space",
                                           *(f"intra/{v}" for v in ("style", "space", "designer", "products",
                                                                    "categories"))}
    assert module.intra_kinds["style"] == "pmi" and module.intra_kinds["products"] == "sgns"
    # uncertainty weights moved away from their initial 0.5 and are all finite (alignment: ramped from 0)
    weights = {t: metrics[f"val/fit/task_weight/{t}"] for t in module.weighting.tasks}
    assert all(math.isfinite(w) and w >= 0 for w in weights.values())
    assert all(w > 0 for t, w in weights.items() if t.startswith("intra/"))
    assert any(abs(w - 0.5) > 1e-4 for w in weights.values())
    csv = (tmp_path / "run" / "csv" / "metrics.csv").read_text()
    assert "train/task_weight/inter/style" in csv and "train/task_loss/intra/products" in csv
    assert (tmp_path / "run" / "view_vectors_style.npy").exists()
    assert 0.0 <= metrics["test/recall@50"] <= 1.0
