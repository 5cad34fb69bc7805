"""Health of an offline i2i pool's heads: do its first entries spread over the catalogue, or
collapse onto a few hubs (issue 27)?

A next-click model that learns popularity too well fills every content's first neighbours with
the same few popular contents: the lists it serves then cover a sliver of the catalogue whatever
the trigger. The pool shows it before any list is served. Three numbers over the rows' first
``top`` entries (the ``top`` slots that matter most for every trigger):

- ``distinct``: how many different contents fill them (co-click on the ``large`` preset: tens of
  thousands; a hub-bound pool: a few hundred);
- ``head_share``: the share of those slots held by the most frequent ``ceil(head x R)`` of them
  (``R`` the rows with at least one entry; ``head=0.01``: the top 1%);
- ``max_rows``: the most rows one content sits in (a hub's reach).

:func:`mean_pairwise_cosine` says whether the vectors themselves crowd together (the other cause).

Same ``-1`` padding convention as :class:`graphrecall.recall.pool.CandidatePool`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["mean_pairwise_cosine", "pool_health"]


def pool_health(neighbors: np.ndarray, top: int = 10, head: float = 0.01) -> dict[str, float]:
    """Spread of a pool's first ``top`` entries over its rows.

    Args:
        neighbors: [C, P] int content rows of each content's neighbours in rank order, -1 padded.
        top: the entries per row counted (the first ``top``; fewer where a row has fewer).
        head: the share of the rows, rounded up, whose most frequent neighbours form the head.

    Returns:
        ``{"distinct_top<top>": distinct contents in those slots, "head_share_top<top>": share of
        the filled slots held by the ``ceil(head x R)`` most frequent contents (``R``: rows with an
        entry; NaN for an empty pool), "max_rows_top<top>": the most rows one content fills a slot
        of}``. A content appears at most once per row (a pool row holds distinct neighbours).
    Raises:
        ValueError: ``neighbors`` is not 2-D, ``top < 1`` or ``head`` not in (0, 1].
    """
    neighbors = np.asarray(neighbors)
    if neighbors.ndim != 2:
        raise ValueError(f"pool_health: neighbors must be [C, P], got shape {neighbors.shape}")
    if top < 1:
        raise ValueError(f"pool_health: top must be >= 1, got {top}")
    if not 0 < head <= 1:
        raise ValueError(f"pool_health: head must be in (0, 1], got {head}")
    slots = neighbors[:, :top]
    filled = slots[slots >= 0].astype(np.int64)
    rows = int((neighbors[:, :1] >= 0).sum()) if neighbors.shape[1] else 0
    counts = np.bincount(filled) if filled.size else np.zeros(0, dtype=np.int64)
    counts = counts[counts > 0]
    n_head = max(1, math.ceil(head * rows))
    head_slots = np.sort(counts)[::-1][:n_head].sum()
    return {f"distinct_top{top}": float(counts.size),
            f"head_share_top{top}": float(head_slots / filled.size) if filled.size else float("nan"),
            f"max_rows_top{top}": float(counts.max()) if counts.size else 0.0}


def mean_pairwise_cosine(vectors: np.ndarray) -> float:
    """Mean cosine similarity over the ordered pairs ``i != j`` of ``vectors`` [C, d] (C >= 2), in
    O(C d): with unit vectors ``u_i``, ``sum_{i != j} <u_i, u_j> = |sum_i u_i|^2 - C``. A zero vector
    counts as cosine 0 with every other."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or len(v) < 2:
        raise ValueError(f"mean_pairwise_cosine: vectors must be [C, d] with C >= 2, got shape {v.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    unit = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    total = unit.sum(0)
    n, nonzero = len(unit), int((norms > 0).sum())
    return float((total @ total - nonzero) / (n * (n - 1)))
