"""M2GRL building blocks: uncertainty weighting and the inter-view relation alignment."""

from __future__ import annotations

import math

import pytest
import torch

from graphrecall.multitask import RelationAlignment, UncertaintyWeighting


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


def test_m2grl_trains_every_task_and_logs_their_weights(tmp_path):
    import sys

    from tests.conftest import ROOT, TINY, compose_train

    sys.path.insert(0, str(ROOT))
    import train as train_app

    cfg = compose_train(tmp_path, [*TINY, "model=m2grl", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
                                   "trainer.early_stopping_patience=0"])
    metrics, objects = train_app.train(cfg)
    module = objects["model"].module
    assert set(module.weighting.tasks) == {"intra/content", *(f"{k}/{v}" for k in ("intra", "inter")
                                                               for v in ("style", "space", "designer", "products",
                                                                         "categories"))}
    # uncertainty weights moved away from their initial 0.5 and are all finite
    weights = [metrics[f"val/fit/task_weight/{t}"] for t in module.weighting.tasks]
    assert all(math.isfinite(w) and w > 0 for w in weights) and any(abs(w - 0.5) > 1e-4 for w in weights)
    csv = (tmp_path / "run" / "csv" / "metrics.csv").read_text()
    assert "train/task_weight/inter/style" in csv and "train/task_loss/intra/products" in csv
    assert (tmp_path / "run" / "view_vectors_style.npy").exists()
    assert 0.0 <= metrics["test/recall@50"] <= 1.0
