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


def sampled_softmax_logits(
    query: Tensor,
    positive: Tensor,
    uniform: Tensor,
    query_ids: Tensor,
    positive_ids: Tensor,
    uniform_ids: Tensor,
    log_q: Tensor | None,
    temperature: float = 1.0,
    bias: Tensor | None = None,
) -> Tensor:
    r"""Logits of a softmax over in-batch positives plus uniformly drawn contents, logQ-corrected.

    Each query ``b`` scores every positive of the batch (its own on the diagonal) and ``M`` shared
    uniform draws. With the sampling-bias correction of Yi et al. (RecSys 2019, "Sampling-bias-
    corrected neural modeling for large corpus item recommendations") a candidate's logit is

    .. math::
        s^c_{bj} = \langle q_b, c_j\rangle / T - \log Q_j

    where ``Q_j`` is the expected number of times content ``j`` enters the candidate set (``log_q``,
    see :func:`candidate_log_q`); the correction applies to the positive too. Candidates that are
    the query's own positive (a duplicate positive in the batch, or a uniform draw hitting it) or
    the query content itself are masked to ``-inf`` (accidental hits), except the diagonal.
    ``bias`` is added to the scores before the correction (e.g. a learned popularity term per
    query moment and candidate, :class:`graphrecall.models.popularity_bias.PopularityBias`).

    Shapes:
        - query, positive: ``[B, d]``; uniform: ``[M, d]``
        - query_ids, positive_ids: ``[B]``; uniform_ids: ``[M]``
        - log_q: ``[C]`` (indexed by content id) or None (no correction)
        - bias: ``[B, B + M]`` or None
        - output: ``[B, B + M]``, the target of row ``b`` is column ``b``.
    """
    cand = torch.cat([positive, uniform])
    cand_ids = torch.cat([positive_ids, uniform_ids])
    logits = query @ cand.T / temperature
    if bias is not None:
        logits = logits + bias
    if log_q is not None:
        logits = logits - log_q[cand_ids].unsqueeze(0)
    b = query.shape[0]
    hit = (cand_ids.unsqueeze(0) == positive_ids.unsqueeze(1)) | (cand_ids.unsqueeze(0) == query_ids.unsqueeze(1))
    hit[torch.arange(b, device=hit.device), torch.arange(b, device=hit.device)] = False
    return logits.masked_fill(hit, float("-inf"))


def candidate_log_q(positive_counts: Tensor, batch_size: int, num_uniform: int) -> Tensor:
    r"""``log Q_j`` for :func:`sampled_softmax_logits`: the expected count of content ``j`` among
    ``batch_size`` in-batch positives (drawn with the training examples' frequency
    ``p_j = n_j / sum n``) plus ``num_uniform`` uniform draws over the ``C`` contents.

    .. math::
        Q_j = B\,p_j + M / C

    Shape:
        - positive_counts: ``[C]`` number of training examples whose positive is ``j``; output ``[C]``.
    """
    counts = positive_counts.double()
    c = counts.numel()
    q = batch_size * counts / counts.sum().clamp(min=1.0) + num_uniform / c
    return torch.log(q.clamp(min=1e-12)).float()


class SampledSoftmaxLoss(nn.Module):
    """Cross-entropy of :func:`sampled_softmax_logits` with the diagonal as target, optionally
    weighted per example (weights of mean 1)."""

    def forward(self, logits: Tensor, weight: Tensor | None = None) -> Tensor:
        target = torch.arange(logits.shape[0], device=logits.device)
        per_example = F.cross_entropy(logits, target, reduction="none")
        return per_example.mean() if weight is None else (weight * per_example).mean()
