"""DICE building blocks: popularity-split negatives and the cause-specific losses (brief, section 4).

Reference: Zheng et al., "Disentangling User Interest and Conformity for Recommendation with Causal
Embedding", WWW 2021 (arXiv 2006.11011); the authors' code is tsinghua-fib-lab/DICE.

For a triple (user, positive i, negative j):

* the negative is **more popular** (``pop_j > pop_i + margin``): the click was interest-driven, so
  interest BPR ``s_int(i) > s_int(j)`` and the **reversed** conformity BPR ``s_con(j) > s_con(i)``;
* the negative is **less popular** (``pop_j < pop_i / 2``): conformity BPR ``s_con(i) > s_con(j)``;
* click BPR ``s_click(i) > s_click(j)`` (``s_click = s_int + s_con``) on every triple.

Masked terms are divided by the full batch size (pitfall 3); ``BPR(a, b) = softplus(b - a)``
(pitfall 4). The discrepancy between interest and conformity vectors is subtracted for ``l1``/``l2``
(distance maximised) and added for ``dcor`` (distance correlation minimised) (pitfall 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class PopularityNegatives:
    """Negatives of a batch of positives and their popularity relation.

    Attributes:
        items: [B, n] negative contents.
        more_popular: [B, n] bool, True where the negative is more popular than the positive by the
            margin (the interest-driven case, the article's O2), False where less popular (O1).
        collisions: draws that still hit one of the user's positives after the redraws.
    """

    items: np.ndarray
    more_popular: np.ndarray
    collisions: int


def sample_popularity_negatives(
    users: np.ndarray,
    positives: np.ndarray,
    popularity: np.ndarray,
    user_items: sp.csr_matrix,
    num_negatives: int = 4,
    margin: float = 40.0,
    pool: int = 40,
    rng: np.random.Generator | None = None,
    redraws: int = 3,
) -> PopularityNegatives:
    """The DICE authors' sampler, vectorised.

    For each positive ``i`` the candidate sets are "more popular" (``pop > pop_i + margin``) and
    "less popular" (``pop < pop_i / 2``). If one set has fewer than ``pool`` candidates every
    negative comes from the other; otherwise each negative picks a set with probability 1/2. If both
    have fewer than ``pool``, the larger non-empty one is used; if both are empty, the negative is
    uniform over all contents and tagged by comparing its popularity with ``pop_i + margin``.
    The user's own positives are redrawn up to ``redraws`` times (remaining hits are counted).

    Args:
        users: [B] user (or group) rows; positives: [B] content rows.
        popularity: [C] popularity (distinct users per content).
        user_items: [U, C] the users' positives (excluded from negatives).
        num_negatives: n per positive (authors: 4); margin: in popularity units (authors: 40 on
            MovieLens-10M: rescale for other data); pool: authors' 40.
    """
    rng = rng or np.random.default_rng(0)
    pop = np.asarray(popularity, dtype=np.float64)
    order = np.argsort(pop, kind="stable")
    sorted_pop = pop[order]
    c = len(pop)
    p = pop[np.asarray(positives)]
    more_start = np.searchsorted(sorted_pop, p + margin, side="right")  # more popular: order[more_start:]
    less_end = np.searchsorted(sorted_pop, p / 2.0, side="left")  # less popular: order[:less_end]
    n_more, n_less = c - more_start, less_end

    b = len(p)
    use_more = rng.random((b, num_negatives)) < 0.5
    only_less = (n_more < pool)[:, None] & (n_less >= pool)[:, None]
    only_more = (n_less < pool)[:, None] & (n_more >= pool)[:, None]
    both_small = (n_more < pool) & (n_less < pool)
    use_more = np.where(only_less, False, np.where(only_more, True, use_more))
    use_more[both_small] = (n_more >= n_less)[both_small][:, None]
    none = (n_more == 0) & (n_less == 0)

    def draw(shape_mask: np.ndarray) -> np.ndarray:
        u = rng.random((b, num_negatives))
        from_more = order[np.minimum(more_start[:, None] + (u * n_more[:, None]).astype(np.int64), c - 1)]
        from_less = order[np.minimum((u * n_less[:, None]).astype(np.int64), c - 1)]
        uniform = rng.integers(0, c, size=(b, num_negatives))
        out = np.where(use_more, from_more, from_less)
        out[none] = uniform[none]
        return np.where(shape_mask, out, 0)

    items = draw(np.ones((b, num_negatives), dtype=bool))
    rows = np.repeat(np.asarray(users), num_negatives).reshape(b, num_negatives)
    for _ in range(redraws):
        hit = np.asarray(user_items[rows.ravel(), items.ravel()]).reshape(b, num_negatives) != 0
        if not hit.any():
            break
        items = np.where(hit, draw(hit), items)
    hit = np.asarray(user_items[rows.ravel(), items.ravel()]).reshape(b, num_negatives) != 0
    more_popular = pop[items] > p[:, None] + margin
    return PopularityNegatives(items, more_popular, int(hit.sum()))


def bpr(pos: Tensor, neg: Tensor) -> Tensor:
    """Elementwise ``softplus(neg - pos) = -log sigmoid(pos - neg)``."""
    return F.softplus(neg - pos)


def dice_losses(s_int_pos: Tensor, s_int_neg: Tensor, s_con_pos: Tensor, s_con_neg: Tensor,
                more_popular: Tensor) -> dict[str, Tensor]:
    """The three BPR terms of DICE on a batch of triples (all tensors ``[B]``, mask bool ``[B]``).

    Returns:
        ``click`` (mean over all triples), ``interest`` (interest BPR on more-popular negatives,
        summed and divided by the full batch size), ``conformity`` (reversed BPR on more-popular
        negatives + BPR on less-popular ones, divided by the full batch size).
    """
    b = s_int_pos.numel()
    m = more_popular.to(s_int_pos.dtype)
    click = bpr(s_int_pos + s_con_pos, s_int_neg + s_con_neg).mean()
    interest = (m * bpr(s_int_pos, s_int_neg)).sum() / b
    conformity = (m * bpr(s_con_neg, s_con_pos) + (1 - m) * bpr(s_con_pos, s_con_neg)).sum() / b
    return {"click": click, "interest": interest, "conformity": conformity}


def distance_correlation(x: Tensor, y: Tensor, eps: float = 1e-9) -> Tensor:
    """Sample distance correlation of two sets of vectors (Szekely et al., 2007), ``[n, d]`` each."""
    a = torch.cdist(x, x)
    b_ = torch.cdist(y, y)
    A = a - a.mean(0, keepdim=True) - a.mean(1, keepdim=True) + a.mean()
    B = b_ - b_.mean(0, keepdim=True) - b_.mean(1, keepdim=True) + b_.mean()
    dcov_xy = (A * B).mean().clamp(min=0).sqrt()
    dcov_xx = (A * A).mean().sqrt()
    dcov_yy = (B * B).mean().sqrt()
    return dcov_xy / (dcov_xx * dcov_yy).sqrt().clamp(min=eps)


def discrepancy(interest: Tensor, conformity: Tensor, kind: str = "dcor") -> Tensor:
    """Discrepancy term between interest and conformity vectors ``[n, d]`` of a batch's unique nodes.

    ``l1`` / ``l2``: mean absolute / squared difference (to be *subtracted*: maximised);
    ``dcor``: distance correlation (to be *added*: minimised). Use :func:`signed_discrepancy`.
    """
    if kind == "l1":
        return (interest - conformity).abs().mean()
    if kind == "l2":
        return (interest - conformity).pow(2).mean()
    if kind == "dcor":
        return distance_correlation(interest, conformity)
    raise ValueError(f"dis_loss must be l1, l2 or dcor, got '{kind}'")


def signed_discrepancy(interest: Tensor, conformity: Tensor, kind: str = "dcor") -> Tensor:
    """The discrepancy as it enters the loss: ``-D`` for l1/l2 (maximise distance), ``+dCor``."""
    d = discrepancy(interest, conformity, kind)
    return d if kind == "dcor" else -d


def curriculum(value: float, epoch: int, decay: float = 0.9) -> float:
    """Margin and the auxiliary weights after ``epoch`` epochs: multiplied by ``decay`` each epoch."""
    return float(value) * decay ** int(epoch)
