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

    Shape:
        - pos: ``[B]``; neg: ``[B, M]``; output: scalar.
    """

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        pos_term = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
        neg_term = F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))
        return pos_term + neg_term


class BPRLoss(nn.Module):
    r"""Bayesian personalised ranking: ``softplus(s^- - s^+)`` averaged over all (positive, negative)
    pairs (``softplus(-x) = -log sigmoid(x)``, numerically stable; brief pitfall 4).

    Shape:
        - pos: ``[B]``; neg: ``[B, M]``; output: scalar.
    """

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        return F.softplus(neg - pos.unsqueeze(-1)).mean()


def make_loss(name: str) -> nn.Module:
    """``bce`` | ``bpr``."""
    losses = {"bce": PairBCELoss, "bpr": BPRLoss}
    if name not in losses:
        raise ValueError(f"unknown loss '{name}'; expected one of {sorted(losses)}")
    return losses[name]()
