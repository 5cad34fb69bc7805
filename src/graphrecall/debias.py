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
                more_popular: Tensor, less_popular: Tensor | None = None) -> dict[str, Tensor]:
    """The three BPR terms of DICE on a batch of triples (all tensors ``[B]``, masks bool ``[B]``).

    Args:
        more_popular: negatives more popular than the positive by the margin (interest-driven click).
        less_popular: negatives less popular (``pop_j < pop_i / 2``); ``None`` means every other
            triple (the sampler draws only from the two sets). Triples in neither set (mined hard
            negatives can fall between the two) enter the click term only.

    Returns:
        ``click`` (mean over all triples), ``interest`` (interest BPR on more-popular negatives,
        summed and divided by the full batch size), ``conformity`` (reversed BPR on more-popular
        negatives + BPR on less-popular ones, divided by the full batch size).
    """
    b = s_int_pos.numel()
    m = more_popular.to(s_int_pos.dtype)
    less = (1 - m) if less_popular is None else (less_popular & ~more_popular).to(s_int_pos.dtype)
    click = bpr(s_int_pos + s_con_pos, s_int_neg + s_con_neg).mean()
    interest = (m * bpr(s_int_pos, s_int_neg)).sum() / b
    conformity = (m * bpr(s_con_neg, s_con_pos) + less * bpr(s_con_pos, s_con_neg)).sum() / b
    return {"click": click, "interest": interest, "conformity": conformity}


def popularity_relation(pop_positive: np.ndarray, pop_negative: np.ndarray,
                        margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(more popular, less popular) masks of negatives against their positives, the sampler's rules:
    ``pop_j > pop_i + margin`` and ``pop_j < pop_i / 2`` (shapes broadcast: ``[B, 1]`` vs ``[B, n]``)."""
    pop_positive, pop_negative = np.asarray(pop_positive, float), np.asarray(pop_negative, float)
    return pop_negative > pop_positive + margin, pop_negative < pop_positive / 2.0


def ips_weights(popularity: np.ndarray, cap: float | None = None) -> np.ndarray:
    """Capped and normalised inverse-propensity weights of clicked contents (IPS-CN, the DICE
    article's strongest IPS baseline).

    Propensity ``p_i = pop_i / max(pop)``; weight ``1 / p_i`` clipped at ``cap`` (no clipping when
    None), then divided by its mean over the given contents so the loss scale matches plain BPR.

    Args:
        popularity: [n] popularity of the clicked contents of the training pairs (counts >= 1).
        cap: largest weight before normalisation (>= 1).

    Returns:
        [n] float32 weights with mean 1.
    """
    pop = np.asarray(popularity, dtype=np.float64)
    if len(pop) == 0:
        return pop.astype(np.float32)
    if (pop <= 0).any():
        raise ValueError("ips_weights: every clicked content needs popularity >= 1")
    if cap is not None and cap < 1:
        raise ValueError(f"dice.ips_cap must be >= 1, got {cap}")
    w = pop.max() / pop
    if cap is not None:
        w = np.minimum(w, cap)
    return (w / w.mean()).astype(np.float32)


def sample_hard_negatives(rows: np.ndarray, band: np.ndarray, count: int,
                          rng: np.random.Generator) -> np.ndarray:
    """``count`` negatives per row drawn uniformly from that row's mined band (near misses).

    Args:
        rows: [B] query rows (groups or users).
        band: [Q, w] mined contents per query (ranks lo..hi of the current model, positives
            excluded), ``-1`` where the ranking ran out.
        count: negatives per row.

    Returns:
        [B, count] contents, ``-1`` where a row's band is empty (the caller keeps its random negative).
    """
    sub = band[np.asarray(rows)]  # [B, w]
    valid = (sub >= 0).sum(1)
    pick = (rng.random((len(sub), count)) * np.maximum(valid, 1)[:, None]).astype(np.int64)
    # valid entries come first in every band row (a ranking), so index < valid picks one of them
    out = np.take_along_axis(sub, pick, axis=1) if sub.shape[1] else np.full((len(sub), count), -1)
    out[valid == 0] = -1
    return out


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
