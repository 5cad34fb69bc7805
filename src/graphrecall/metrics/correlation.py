"""Rank agreement between a model's scores and a reference score (the synthetic world's true
interest, or content popularity), one value per user."""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import rankdata


def rowwise_spearman(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of every row of ``scores`` with the same row of ``reference``.

    Ties get average ranks (as :func:`scipy.stats.spearmanr`). A row that is constant in either
    input has no defined correlation and gives NaN.

    Args:
        scores: [n, m] model scores (e.g. ``<user_int, content_int>`` over m contents).
        reference: [n, m] or [m] reference scores (a [m] row is shared by every user).

    Returns:
        [n] float64 correlations in [-1, 1] (NaN for constant rows).
    """
    scores = np.asarray(scores, dtype=np.float64)
    reference = np.broadcast_to(np.asarray(reference, dtype=np.float64), scores.shape)
    if scores.ndim != 2:
        raise ValueError(f"rowwise_spearman expects [n, m] scores, got shape {scores.shape}")
    a = rankdata(scores, axis=1)
    b = rankdata(reference, axis=1)
    a -= a.mean(1, keepdims=True)
    b -= b.mean(1, keepdims=True)
    denom = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(1) / np.where(denom > 0, denom, 1.0), np.nan)


def mean_rowwise_spearman(scores_of: Callable[[slice], np.ndarray], reference_of: Callable[[slice], np.ndarray],
                          num_rows: int, chunk_size: int = 256) -> float:
    """Mean over ``num_rows`` rows of :func:`rowwise_spearman`, computed ``chunk_size`` rows at a time
    so that ``[n, m]`` score matrices never exist whole (NaN rows skipped; NaN when none is finite).

    Args:
        scores_of: ``rows -> [b, m]`` scores of a slice of rows (e.g. ``user_vectors[rows] @ C.T``).
        reference_of: ``rows -> [b, m]`` (or a shared ``[m]``) reference of the same rows.
        num_rows: n.
    """
    parts = [rowwise_spearman(scores_of(rows), reference_of(rows))
             for rows in (slice(s, s + chunk_size) for s in range(0, num_rows, chunk_size))]
    values = np.concatenate(parts) if parts else np.array([np.nan])
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
