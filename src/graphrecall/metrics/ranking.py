"""Per-user accuracy metrics for top-k recall lists.

Conventions shared by every function of :mod:`graphrecall.metrics`:

- ``recs``: ``np.ndarray`` of integers, shape ``[U, K_max]``: content indices ``0..C-1`` in rank
  order, ``-1`` where a list is shorter (padding). Training items must already be filtered out
  by the caller *before* the list was cut to ``K_max`` (design brief, pitfall 7). A row must not
  repeat an item (checked by :func:`validate_recs`).
- ``targets``: ``scipy.sparse`` CSR matrix ``[U, C]``; a stored nonzero marks a test item of the
  user of that row (binary relevance: values are ignored, explicit zeros are not test items).
- ``k``: every metric reads only ``recs[:, :k]``. A rank is the column position (1-based), so a
  ``-1`` counts as an occupied, irrelevant slot; when ``K_max < k`` the missing slots count the
  same way (precision still divides by ``k``, IDCG still runs over ``min(|test|, k)``).
- Users without any test item get ``NaN`` from every accuracy metric: average with
  ``np.nanmean`` (the protocol evaluates users with at least one test item).

The functions are vectorised over users (no Python loop per user): one ``searchsorted`` over
flat ``user * C + item`` keys finds the hits of the whole ``[U, k]`` matrix at once.

Relation to PyTorch Geometric (``torch_geometric.metrics.link_pred``): ``LinkPredRecall``,
``LinkPredNDCG``, ``LinkPredPrecision``, ``LinkPredHitRatio`` and weighted ``LinkPredRecall``
(with ``edge_label_weight = item_weight[item]``) compute the *means* of our
:func:`recall_at_k`, :func:`ndcg_at_k`, :func:`precision_at_k`, :func:`hit_rate_at_k` and
:func:`ips_recall_at_k` over users with at least one test item (the tests check this). We keep
numpy versions because slices and bootstrap CIs need per-user values, and because PyG has no
padding: a ``-1`` there is offset into the previous user's key range (or the last item) and can
be counted as a hit.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = [
    "hit_matrix",
    "hit_rate_at_k",
    "inverse_popularity_weights",
    "ips_recall_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
    "validate_recs",
]


# --------------------------------------------------------------------------------------------
# Input checks and the shared hit matrix
# --------------------------------------------------------------------------------------------
def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _as_recs(recs: np.ndarray, num_items: int | None = None) -> np.ndarray:
    """Returns ``recs`` as a 2-D int64 array after cheap (O(U*K)) range checks."""
    recs = np.asarray(recs)
    if recs.ndim != 2:
        raise ValueError(f"recs must have shape [U, K_max], got shape {recs.shape}")
    if recs.size and not np.issubdtype(recs.dtype, np.integer):
        raise TypeError(f"recs must hold integer item indices, got dtype {recs.dtype}")
    recs = recs.astype(np.int64, copy=False)
    if recs.size:
        if recs.min() < -1:
            raise ValueError("recs may hold item indices >= 0 and the padding value -1 only")
        if num_items is not None and recs.max() >= num_items:
            raise ValueError(f"recs holds item index {recs.max()} >= num_items={num_items}")
    return recs


def _as_targets(targets: sp.spmatrix | sp.sparray, num_users: int) -> sp.csr_matrix:
    """Canonical binary CSR copy: sorted indices, no duplicates, no explicit zeros."""
    if not sp.issparse(targets):
        raise TypeError(f"targets must be a scipy.sparse matrix [U, C], got {type(targets)}")
    targets = sp.csr_matrix(targets, copy=True)
    if targets.shape[0] != num_users:
        raise ValueError(
            f"targets has {targets.shape[0]} rows but recs has {num_users}: rows must align"
        )
    targets.eliminate_zeros()
    targets.sum_duplicates()  # also sorts the indices of each row
    targets.data = np.ones_like(targets.data, dtype=np.float64)
    return targets


def validate_recs(recs: np.ndarray, num_items: int) -> np.ndarray:
    """Checks the ``recs`` convention in full and returns ``recs`` as int64.

    Beyond the checks every metric does (2-D, integer, values in ``[-1, num_items)``), this one
    rejects a row that repeats an item: a repeated hit would be counted twice.

    Args:
        recs (np.ndarray): Recommended item indices, shape ``[U, K_max]``, ``-1`` = padding.
        num_items (int): The number of items ``C``.

    Returns:
        np.ndarray: ``recs`` as int64, shape ``[U, K_max]``.

    Raises:
        ValueError: If a check fails; the message names the first offending row.
    """
    recs = _as_recs(recs, num_items)
    if recs.shape[1] > 1:
        s = np.sort(recs, axis=1)
        dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
        bad = np.flatnonzero(dup.any(axis=1))
        if bad.size:
            raise ValueError(f"recs row {bad[0]} repeats an item ({bad.size} rows do)")
    return recs


def _hits(
    recs: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int
) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
    """Shared work of every accuracy metric: ``(top [U, k'], hits [U, k'], canonical targets)``."""
    k = _check_k(k)
    recs = _as_recs(recs)
    targets = _as_targets(targets, recs.shape[0])
    num_users, num_items = targets.shape
    if recs.size and recs.max() >= num_items:
        raise ValueError(f"recs holds item index {recs.max()} >= targets.shape[1]={num_items}")
    top = recs[:, :k]
    if targets.nnz == 0 or top.size == 0:
        return top, np.zeros(top.shape, dtype=bool), targets

    # Flat keys user * C + item are sorted in a canonical CSR matrix: one searchsorted for all.
    target_rows = np.repeat(np.arange(num_users, dtype=np.int64), np.diff(targets.indptr))
    target_keys = target_rows * num_items + targets.indices.astype(np.int64)
    rec_keys = np.arange(num_users, dtype=np.int64)[:, None] * num_items + top
    pos = np.searchsorted(target_keys, rec_keys).clip(max=target_keys.size - 1)
    hits = (target_keys[pos] == rec_keys) & (top >= 0)
    return top, hits, targets


def hit_matrix(
    recs: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Marks which of the top-k recommendations are test items.

    Args:
        recs (np.ndarray): Item indices in rank order, shape ``[U, K_max]``, ``-1`` = padding.
        targets (scipy.sparse matrix): Test items, shape ``[U, C]``.
        k (int): Cut-off; only ``recs[:, :k]`` is read.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``hits``, bool of shape ``[U, min(k, K_max)]``
        (padding is never a hit), and ``num_test``, int64 of shape ``[U]``
        (the number of test items per user).
    """
    _, hits, targets = _hits(recs, targets, k)
    return hits, np.diff(targets.indptr).astype(np.int64)


def _divide_or_nan(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


# The *_from_hits helpers let per_user_metrics find the hits once at the largest k and slice.
def _recall_from_hits(hits: np.ndarray, num_test: np.ndarray) -> np.ndarray:
    return _divide_or_nan(hits.sum(axis=1).astype(np.float64), num_test)


def _precision_from_hits(hits: np.ndarray, num_test: np.ndarray, k: int) -> np.ndarray:
    out = hits.sum(axis=1) / float(k)
    out[num_test == 0] = np.nan
    return out


def _hit_rate_from_hits(hits: np.ndarray, num_test: np.ndarray) -> np.ndarray:
    out = hits.any(axis=1).astype(np.float64)
    out[num_test == 0] = np.nan
    return out


def _discounts(k: int) -> np.ndarray:
    """``1 / log2(rank + 1)`` for ranks ``1..k``, shape ``[k]``."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _ndcg_from_hits(hits: np.ndarray, num_test: np.ndarray, k: int) -> np.ndarray:
    disc = _discounts(k)
    dcg = hits @ disc[: hits.shape[1]]
    idcg_table = np.concatenate([[0.0], np.cumsum(disc)])  # idcg_table[n]: n relevant at top
    return _divide_or_nan(dcg, idcg_table[np.minimum(num_test, k)])


def _ips_recall_from_hits(
    top: np.ndarray, hits: np.ndarray, targets: sp.csr_matrix, item_weight: np.ndarray
) -> np.ndarray:
    w = np.asarray(item_weight, dtype=np.float64)
    if w.shape != (targets.shape[1],):
        raise ValueError(f"item_weight must have shape [{targets.shape[1]}], got {w.shape}")
    if (w < 0).any():
        raise ValueError("item_weight must be non-negative")
    num = np.where(hits, w[np.maximum(top[:, : hits.shape[1]], 0)], 0.0).sum(axis=1)
    rows = np.repeat(np.arange(targets.shape[0]), np.diff(targets.indptr))
    den = np.bincount(rows, weights=w[targets.indices], minlength=targets.shape[0])
    return _divide_or_nan(num, den)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
def recall_at_k(recs: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Recall@k per user: ``|top-k ∩ test| / |test|``.

    The denominator is the number of test items, not ``min(|test|, k)`` (the DICE protocol;
    PyG's ``LinkPredRecall`` agrees), so a user with more than ``k`` test items cannot reach 1.

    Args:
        recs (np.ndarray): Item indices in rank order, shape ``[U, K_max]``, ``-1`` = padding.
        targets (scipy.sparse matrix): Test items, shape ``[U, C]``.
        k (int): Cut-off.

    Returns:
        np.ndarray: float64 of shape ``[U]``; ``NaN`` for users without test items.
    """
    hits, num_test = hit_matrix(recs, targets, k)
    return _recall_from_hits(hits, num_test)


def precision_at_k(recs: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Precision@k per user: ``|top-k ∩ test| / k``.

    Padded or missing slots count as misses: the denominator is always ``k``.

    Args:
        recs (np.ndarray): Item indices in rank order, shape ``[U, K_max]``, ``-1`` = padding.
        targets (scipy.sparse matrix): Test items, shape ``[U, C]``.
        k (int): Cut-off.

    Returns:
        np.ndarray: float64 of shape ``[U]``; ``NaN`` for users without test items.
    """
    hits, num_test = hit_matrix(recs, targets, k)
    return _precision_from_hits(hits, num_test, k)


def hit_rate_at_k(recs: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Hit rate@k per user: 1.0 if any top-k item is a test item, else 0.0.

    Args:
        recs (np.ndarray): Item indices in rank order, shape ``[U, K_max]``, ``-1`` = padding.
        targets (scipy.sparse matrix): Test items, shape ``[U, C]``.
        k (int): Cut-off.

    Returns:
        np.ndarray: float64 of shape ``[U]``; ``NaN`` for users without test items.
    """
    hits, num_test = hit_matrix(recs, targets, k)
    return _hit_rate_from_hits(hits, num_test)


def ndcg_at_k(recs: np.ndarray, targets: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    r"""NDCG@k per user with binary relevance.

    .. math::
        \mathrm{DCG@k} = \sum_{r=1}^{k} \frac{[\text{item at rank } r \in \text{test}]}
        {\log_2(r+1)}, \qquad
        \mathrm{IDCG@k} = \sum_{r=1}^{\min(|\text{test}|, k)} \frac{1}{\log_2(r+1)},

    and NDCG@k = DCG@k / IDCG@k. Same definition as PyG's ``LinkPredNDCG`` (unweighted).

    Args:
        recs (np.ndarray): Item indices in rank order, shape ``[U, K_max]``, ``-1`` = padding.
        targets (scipy.sparse matrix): Test items, shape ``[U, C]``.
        k (int): Cut-off.

    Returns:
        np.ndarray: float64 of shape ``[U]``; ``NaN`` for users without test items.
    """
    hits, num_test = hit_matrix(recs, targets, k)
    return _ndcg_from_hits(hits, num_test, k)


def inverse_popularity_weights(
    popularity: np.ndarray, power: float = 1.0, floor: float = 1
) -> np.ndarray:
    """Inverse-propensity item weights ``1 / max(popularity, floor) ** power``.

    Args:
        popularity (np.ndarray): Item popularity (e.g. training clicks or distinct users),
            shape ``[C]``.
        power (float): Exponent; 1.0 is plain inverse popularity, 0.5 a softer correction.
        floor (float): Lower clip of the popularity (must be > 0), so that items unseen in
            training get a finite weight ``1 / floor ** power``.

    Returns:
        np.ndarray: float64 weights of shape ``[C]``.
    """
    if floor <= 0:
        raise ValueError(f"floor must be > 0, got {floor}")
    pop = np.asarray(popularity, dtype=np.float64)
    return np.maximum(pop, float(floor)) ** (-float(power))


def ips_recall_at_k(
    recs: np.ndarray,
    targets: sp.spmatrix | sp.sparray,
    item_weight: np.ndarray,
    k: int,
) -> np.ndarray:
    r"""Inverse-propensity-weighted recall@k per user.

    .. math::
        \mathrm{IPS\text{-}Recall@k}(u) =
        \frac{\sum_{i \in \text{top-k} \cap \text{test}} w_i}{\sum_{i \in \text{test}} w_i}

    With ``item_weight = inverse_popularity_weights(pop)`` a hit on a rare test item counts more
    than a hit on a popular one. Equals PyG's ``LinkPredRecall(k, weighted=True)`` fed with
    ``edge_label_weight = item_weight[test item]``.

    Args:
        recs (np.ndarray): Item indices in rank order, shape ``[U, K_max]``, ``-1`` = padding.
        targets (scipy.sparse matrix): Test items, shape ``[U, C]``.
        item_weight (np.ndarray): Non-negative weight per item, shape ``[C]``.
        k (int): Cut-off.

    Returns:
        np.ndarray: float64 of shape ``[U]``; ``NaN`` for users without test items (or whose
        test items all weigh 0).
    """
    top, hits, targets = _hits(recs, targets, k)
    return _ips_recall_from_hits(top, hits, targets, item_weight)
