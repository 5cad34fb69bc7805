"""Beyond-accuracy metrics of top-k lists: coverage, popularity, long tail, label diversity.

Same ``recs`` convention as :mod:`graphrecall.metrics.ranking` (``[U, K_max]`` int item indices,
``-1`` = padding, only ``recs[:, :k]`` read). These metrics need no test items, so they are
defined for every user with a non-empty list; padding is *excluded* from every average here
(a list of 3 items has an average popularity over those 3).

Relation to PyTorch Geometric: ``LinkPredCoverage`` and ``LinkPredAveragePopularity`` agree with
:func:`coverage_at_k` and the mean of :func:`average_popularity_at_k` on unpadded lists (PyG
would read a ``-1`` as the last item). ``LinkPredDiversity`` is a different quantity (share of
item pairs of different category, single-valued categories); the article's online diversity
measure is the number of distinct styles / spaces exposed, hence :func:`distinct_values_at_k`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphrecall.metrics.ranking import _as_recs, _check_k

__all__ = [
    "average_popularity_at_k",
    "coverage_at_k",
    "distinct_values_at_k",
    "labels_to_csr",
    "long_tail_share_at_k",
    "tail_items",
]


def _top(recs: np.ndarray, k: int, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """``(top [U, k'], valid [U, k'])`` with padding replaced by item 0 and masked out."""
    top = _as_recs(recs, num_items)[:, : _check_k(k)]
    valid = top >= 0
    return np.where(valid, top, 0), valid


def _masked_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Row means over ``valid`` entries, ``NaN`` for rows without any; shape ``[U]``."""
    count = valid.sum(axis=1)
    total = np.where(valid, values, 0.0).sum(axis=1)
    out = np.full(count.shape, np.nan, dtype=np.float64)
    np.divide(total, count, out=out, where=count > 0)
    return out


def coverage_at_k(recs: np.ndarray, num_items: int, k: int) -> float:
    """Catalogue coverage: distinct items recommended in any top-k list / ``num_items``.

    A global value (one number for all users), not a per-user one.

    Args:
        recs (np.ndarray): Item indices in rank order, shape ``[U, K_max]``, ``-1`` = padding.
        num_items (int): The number of items ``C`` in the catalogue.
        k (int): Cut-off.

    Returns:
        float: In ``[0, 1]``.
    """
    top, valid = _top(recs, k, num_items)
    seen = np.zeros(num_items, dtype=bool)
    seen[top[valid]] = True
    return float(seen.mean()) if num_items > 0 else float("nan")


def average_popularity_at_k(
    recs: np.ndarray, item_popularity: np.ndarray, k: int
) -> np.ndarray:
    """Average popularity of each user's (non-padded) top-k items (ARP in the literature).

    Args:
        recs (np.ndarray): Item indices in rank order, shape ``[U, K_max]``, ``-1`` = padding.
        item_popularity (np.ndarray): Popularity per item (e.g. training clicks), shape ``[C]``.
        k (int): Cut-off.

    Returns:
        np.ndarray: float64 of shape ``[U]``; ``NaN`` for an empty list.
    """
    pop = np.asarray(item_popularity, dtype=np.float64)
    top, valid = _top(recs, k, pop.shape[0])
    return _masked_mean(pop[top], valid)


def tail_items(item_popularity: np.ndarray, head_fraction: float = 0.2) -> np.ndarray:
    """Marks the long-tail items: every item outside the head.

    The head is the ``floor(head_fraction * C)`` most popular items, counted in items (not in
    share of interactions, the other common definition). Among items of equal popularity the
    lower index enters the head first, so the split is deterministic and the head has exactly
    that many items even with ties (at the boundary, equally popular items may fall on both
    sides).

    Args:
        item_popularity (np.ndarray): Popularity per item, shape ``[C]``.
        head_fraction (float): Share of items in the head, in ``[0, 1]``.

    Returns:
        np.ndarray: bool of shape ``[C]``, True for tail items.
    """
    if not 0.0 <= head_fraction <= 1.0:
        raise ValueError(f"head_fraction must lie in [0, 1], got {head_fraction}")
    pop = np.asarray(item_popularity, dtype=np.float64)
    num_head = int(np.floor(head_fraction * pop.shape[0] + 1e-9))  # 1e-9: 0.29 * 100 = 28.99..
    order = np.argsort(-pop, kind="stable")  # stable: ties keep index order
    is_tail = np.ones(pop.shape[0], dtype=bool)
    is_tail[order[:num_head]] = False
    return is_tail


def long_tail_share_at_k(recs: np.ndarray, is_tail: np.ndarray, k: int) -> np.ndarray:
    """Share of each user's (non-padded) top-k items that are tail items.

    Args:
        recs (np.ndarray): Item indices in rank order, shape ``[U, K_max]``, ``-1`` = padding.
        is_tail (np.ndarray): bool of shape ``[C]``, e.g. from :func:`tail_items`.
        k (int): Cut-off.

    Returns:
        np.ndarray: float64 of shape ``[U]`` in ``[0, 1]``; ``NaN`` for an empty list.
    """
    is_tail = np.asarray(is_tail, dtype=bool)
    top, valid = _top(recs, k, is_tail.shape[0])
    return _masked_mean(is_tail[top].astype(np.float64), valid)


def distinct_values_at_k(
    recs: np.ndarray, item_labels: sp.spmatrix | sp.sparray, k: int
) -> np.ndarray:
    """Number of distinct label values (styles, spaces, genres, ...) in each user's top-k list.

    The offline counterpart of the article's "distinct styles / spaces exposed per request".
    Multi-valued fields work: an item with genres {Action, Comedy} contributes both values.
    Computed as one sparse product: the ``[U, C]`` indicator of the lists times the binarised
    ``[C, L]`` label matrix, then the nonzeros per row.

    Args:
        recs (np.ndarray): Item indices in rank order, shape ``[U, K_max]``, ``-1`` = padding.
        item_labels (scipy.sparse matrix): ``[C, L]``, row = item, nonzero columns = its label
            values (see :func:`labels_to_csr`).
        k (int): Cut-off.

    Returns:
        np.ndarray: int64 of shape ``[U]``; 0 for an empty list or unlabelled items.
    """
    if not sp.issparse(item_labels):
        raise TypeError(f"item_labels must be scipy.sparse [C, L], got {type(item_labels)}")
    labels = sp.csr_matrix(item_labels, copy=True)
    labels.eliminate_zeros()
    labels.data = np.ones_like(labels.data, dtype=np.float64)  # binary: no cancellation
    top, valid = _top(recs, k, labels.shape[0])
    rows = np.broadcast_to(np.arange(top.shape[0])[:, None], top.shape)[valid]
    lists = sp.csr_matrix(
        (np.ones(rows.size), (rows, top[valid])), shape=(top.shape[0], labels.shape[0])
    )
    per_user = (lists @ labels).tocsr()
    per_user.eliminate_zeros()
    return np.diff(per_user.indptr).astype(np.int64)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def labels_to_csr(
    values: Sequence[Any] | pd.Series,
    vocabulary: Sequence[Hashable] | None = None,
) -> tuple[sp.csr_matrix, list[Hashable]]:
    """Builds the ``[C, L]`` item-label matrix of :func:`distinct_values_at_k` from a column.

    Args:
        values: One entry per item, in item-index order (e.g. ``contents["style"]`` or
            ``movies["genres"]``): a scalar label, a list-like of labels (list, tuple, set,
            array) for multi-valued fields, or a missing value (``None``/``NaN``/empty list:
            no label). Strings are scalars.
        vocabulary: The label values, in column order. Default: the sorted distinct values
            (order of first appearance if they cannot be sorted). With a given vocabulary a
            value outside it raises.

    Returns:
        tuple[scipy.sparse.csr_matrix, list]: The binary ``[C, L]`` matrix (float64 ones, a
        repeated value within one item counted once) and the vocabulary (column ``j`` holds
        ``vocabulary[j]``).
    """
    series = pd.Series(list(values), dtype=object)
    num_items = len(series)
    exploded = series.explode()  # list-likes -> one row per value; index = item
    exploded = exploded[~exploded.map(_is_missing).astype(bool)]
    if vocabulary is None:
        # numpy scalars (from arrays in cells) as plain Python values: a readable vocabulary.
        distinct = list(dict.fromkeys(v.item() if isinstance(v, np.generic) else v
                                      for v in exploded.tolist()))
        try:
            vocabulary = sorted(distinct)
        except TypeError:
            vocabulary = distinct
    vocabulary = list(vocabulary)
    column = {v: j for j, v in enumerate(vocabulary)}
    if len(column) != len(vocabulary):
        raise ValueError("vocabulary repeats a value")
    cols = exploded.map(column)
    unknown = cols.isna()
    if unknown.any():
        outside = sorted(map(str, set(exploded[unknown])))
        raise ValueError(f"values outside the vocabulary, e.g. {outside[:5]}")
    rows = exploded.index.to_numpy(dtype=np.int64)
    matrix = sp.csr_matrix(
        (np.ones(rows.size), (rows, cols.to_numpy(dtype=np.int64))),
        shape=(num_items, len(vocabulary)),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix, vocabulary
