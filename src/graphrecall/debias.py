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
        fallback: [B, n] bool, drawn from one set because the other had fewer than ``pool``
            candidates (the authors' rule), or uniformly from all unclicked contents because both
            sets were empty.
        uniform: [B, n] bool, the latter case (both sets empty).
        no_candidate: [B, n] bool, the query clicked every content: the "negative" repeats the
            positive, so the triple's BPR terms are constant (no gradient); counted, never hidden.
    """

    items: np.ndarray
    more_popular: np.ndarray
    fallback: np.ndarray
    uniform: np.ndarray
    no_candidate: np.ndarray


@dataclass
class PopularityIndex:
    """Contents sorted by popularity and each query's positives as positions in that order, so that
    a draw from a popularity range *minus the query's positives* is one uniform index and a
    ``searchsorted`` (no rejection, no redraw).

    Attributes:
        order: [C] content rows by ascending popularity (stable); sorted_pop: [C] their popularity.
        keys: [P] ``q * (C + 1) + position`` of every (query, positive) pair, sorted.
        shifted: [P] ``q * (C + 1) + position - m``, m the pair's rank among its query's positives:
            the number of valid (non-positive) positions before it, non-decreasing per query.
        starts: [Q + 1] offset of every query's pairs in ``keys``.
    """

    order: np.ndarray
    sorted_pop: np.ndarray
    keys: np.ndarray
    shifted: np.ndarray
    starts: np.ndarray

    @property
    def num_contents(self) -> int:
        return len(self.order)

    def positives_below(self, queries: np.ndarray, position: np.ndarray) -> np.ndarray:
        """[B] number of the query's positives at sorted positions ``< position`` ([B])."""
        base = queries * (self.num_contents + 1)
        return np.searchsorted(self.keys, base + position, side="left") - self.starts[queries]

    def valid_to_content(self, queries: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The ``valid``-th (0-based, [B, n]) content of the popularity order that is not one of the
        query's positives: position ``t = valid + #{positives m with position_m - m <= valid}``."""
        q = np.asarray(queries)[:, None]
        base = q * (self.num_contents + 1)
        skipped = np.searchsorted(self.shifted, base + valid, side="right") - self.starts[q]
        return self.order[np.minimum(valid + skipped, self.num_contents - 1)]


def popularity_index(popularity: np.ndarray, query_items: sp.csr_matrix) -> PopularityIndex:
    """Build the :class:`PopularityIndex` of a popularity vector [C] and the queries' positives [Q, C]."""
    pop = np.asarray(popularity, dtype=np.float64)
    c = len(pop)
    if query_items.shape[1] != c:
        raise ValueError(f"popularity has {c} contents but the positives matrix has {query_items.shape[1]}")
    order = np.argsort(pop, kind="stable")
    position = np.empty(c, dtype=np.int64)
    position[order] = np.arange(c)
    coo = sp.csr_matrix(query_items).tocoo()
    nonzero = coo.data != 0
    q, pos = coo.row[nonzero].astype(np.int64), position[coo.col[nonzero]]
    keys = np.unique(q * (c + 1) + pos)  # sorted by (query, position); duplicates merged
    q_sorted = keys // (c + 1)
    starts = np.searchsorted(q_sorted, np.arange(query_items.shape[0] + 1), side="left")
    rank_in_query = np.arange(len(keys)) - starts[q_sorted]
    return PopularityIndex(order, pop[order], keys, keys - rank_in_query, starts)


def sample_popularity_negatives(
    users: np.ndarray,
    positives: np.ndarray,
    popularity: np.ndarray,
    user_items: sp.csr_matrix,
    num_negatives: int = 4,
    margin: float = 40.0,
    pool: int = 40,
    rng: np.random.Generator | None = None,
    index: PopularityIndex | None = None,
) -> PopularityNegatives:
    """The DICE authors' sampler, vectorised: each query's positives are removed from both
    candidate sets *before* drawing (so a negative is never one of them).

    For each positive ``i`` the candidate sets are "more popular" (``pop > pop_i + margin``) and
    "less popular" (``pop < pop_i / 2``), both without the query's positives. If one set has fewer
    than ``pool`` candidates every negative comes from the other; otherwise each negative picks a
    set with probability 1/2. If both have fewer than ``pool``, the larger non-empty one is used; if
    both are empty, the negative is uniform over the query's unclicked contents and tagged by
    comparing its popularity with ``pop_i + margin``. Draws are with replacement.

    Args:
        users: [B] user (or group) rows; positives: [B] content rows.
        popularity: [C] popularity (distinct users per content).
        user_items: [U, C] the users' positives (excluded from negatives).
        num_negatives: n per positive (authors: 4); margin: in popularity units (authors: 40 on
            MovieLens-10M: rescale for other data); pool: authors' 40.
        index: :func:`popularity_index` of ``(popularity, user_items)``, built once per fold by the
            caller (built here when None).
    """
    rng = rng or np.random.default_rng(0)
    index = index or popularity_index(popularity, user_items)
    q = np.asarray(users, dtype=np.int64)
    c = index.num_contents
    p = np.asarray(popularity, dtype=np.float64)[np.asarray(positives)]
    more_start = np.searchsorted(index.sorted_pop, p + margin, side="right")  # more popular: positions >= more_start
    less_end = np.searchsorted(index.sorted_pop, p / 2.0, side="left")  # less popular: positions < less_end
    clicked = index.starts[q + 1] - index.starts[q]
    less_clicked = index.positives_below(q, less_end)
    # in the valid-index space (positions without the query's positives): less = [0, n_less),
    # more = [more_first, more_first + n_more), everything = [0, valid_total)
    n_less = less_end - less_clicked
    more_first = more_start - index.positives_below(q, more_start)
    valid_total = c - clicked
    n_more = valid_total - more_first

    b = len(p)
    use_more = rng.random((b, num_negatives)) < 0.5
    only_less = (n_more < pool) & (n_less >= pool)
    only_more = (n_less < pool) & (n_more >= pool)
    both_small = (n_more < pool) & (n_less < pool)
    use_more[only_less] = False
    use_more[only_more] = True
    use_more[both_small] = (n_more >= n_less)[both_small][:, None]
    none = (n_more == 0) & (n_less == 0)

    u = rng.random((b, num_negatives))
    valid = np.where(use_more, more_first[:, None] + (u * n_more[:, None]).astype(np.int64),
                     (u * n_less[:, None]).astype(np.int64))
    valid[none] = (u[none] * valid_total[none][:, None]).astype(np.int64)
    items = index.valid_to_content(q, valid)
    no_candidate = np.broadcast_to((valid_total == 0)[:, None], (b, num_negatives)).copy()
    items[no_candidate] = np.broadcast_to(np.asarray(positives)[:, None], (b, num_negatives))[no_candidate]
    more_popular = np.asarray(popularity, dtype=np.float64)[items] > p[:, None] + margin
    fallback = np.broadcast_to((only_less | only_more | both_small)[:, None], (b, num_negatives)).copy()
    uniform = np.broadcast_to(none[:, None], (b, num_negatives)) & ~no_candidate
    return PopularityNegatives(items, more_popular, fallback & ~no_candidate, uniform, no_candidate)


def count_false_negatives(queries: np.ndarray, negatives: np.ndarray, query_items: sp.csr_matrix,
                          skip: np.ndarray | None = None) -> int:
    """How many negatives [B, n] are one of their query's ([B]) positives ([Q, C] CSR); entries where
    ``skip`` [B, n] is True are not checked (the sampler's no-candidate triples repeat the positive)."""
    rows = np.repeat(np.asarray(queries), negatives.shape[1])
    hit = np.asarray(query_items[rows, negatives.ravel()]).ravel() != 0 if negatives.size else np.zeros(0, bool)
    if skip is not None:
        hit &= ~np.asarray(skip).ravel()
    return int(hit.sum())


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


def ips_weights(popularity: np.ndarray, cap: float | str | None = "median", normalize: str = "max") -> np.ndarray:
    """Capped and normalised inverse-propensity weights of clicked contents (IPS-CN, the DICE
    article's strongest IPS baseline).

    Propensity ``p_i = pop_i / max(pop)``; weight ``1 / p_i`` (>= 1), clipped at ``cap``: a number
    (>= 1), ``"median"`` (the median weight of the given contents: the authors' code, which takes
    it over all contents, unclicked ones at popularity 1) or None (no clipping); then divided by its
    ``max`` (the authors': weights in (0, 1]) or its ``mean`` (mean 1: the loss scale of plain BPR).

    Args:
        popularity: [n] popularity of the clicked contents of the training pairs (counts >= 1).
        cap: largest weight before normalisation.
        normalize: ``max`` | ``mean``.

    Returns:
        [n] float32 weights.
    """
    pop = np.asarray(popularity, dtype=np.float64)
    if normalize not in ("max", "mean"):
        raise ValueError(f"dice.ips_normalize must be max or mean, got '{normalize}'")
    if len(pop) == 0:
        return pop.astype(np.float32)
    if (pop <= 0).any():
        raise ValueError("ips_weights: every clicked content needs popularity >= 1")
    if isinstance(cap, str) and cap != "median":
        raise ValueError(f"dice.ips_cap must be a number >= 1, 'median' or null, got '{cap}'")
    if not isinstance(cap, str) and cap is not None and cap < 1:
        raise ValueError(f"dice.ips_cap must be >= 1, got {cap}")
    w = pop.max() / pop
    if cap is not None:
        w = np.minimum(w, np.median(w) if cap == "median" else float(cap))
    return (w / (w.max() if normalize == "max" else w.mean())).astype(np.float32)


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
