"""Pair-reconstruction losses on dot-product scores (design brief, sections 2 and 4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PairBCELoss(nn.Module):
    r"""Binary cross-entropy on logits: positive pairs high, sampled negative pairs low.

    .. math::
        L = -\frac{1}{B}\Big[\sum_b \log\sigma(s^+_b) + \frac{1}{M}\sum_{b,m} \log(1-\sigma(s^-_{bm}))\Big]

    Positives and negatives get equal total weight whatever the number M of negatives per positive.

    With per-pair weights ``w`` (mean 1) both terms of pair ``b`` are scaled by ``w_b``.

    Shape:
        - pos: ``[B]``; neg: ``[B, M]``; weight: ``[B]`` or None; output: scalar.
    """

    def forward(self, pos: Tensor, neg: Tensor, weight: Tensor | None = None) -> Tensor:
        pos_term = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos), reduction="none")
        neg_term = F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg), reduction="none").mean(-1)
        per_pair = pos_term + neg_term
        return per_pair.mean() if weight is None else (weight * per_pair).mean()


class BPRLoss(nn.Module):
    r"""Bayesian personalised ranking: ``softplus(s^- - s^+)`` averaged over all (positive, negative)
    pairs (``softplus(-x) = -log sigmoid(x)``, numerically stable; brief pitfall 4).

    Shape:
        - pos: ``[B]``; neg: ``[B, M]``; weight: ``[B]`` or None (per-pair scale, mean 1); output: scalar.
    """

    def forward(self, pos: Tensor, neg: Tensor, weight: Tensor | None = None) -> Tensor:
        per_pair = F.softplus(neg - pos.unsqueeze(-1)).mean(-1)
        return per_pair.mean() if weight is None else (weight * per_pair).mean()


def make_loss(name: str) -> nn.Module:
    """``bce`` | ``bpr``."""
    losses = {"bce": PairBCELoss, "bpr": BPRLoss}
    if name not in losses:
        raise ValueError(f"unknown loss '{name}'; expected one of {sorted(losses)}")
    return losses[name]()
