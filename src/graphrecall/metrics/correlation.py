"""Rank agreement between a model's scores and a reference score (the synthetic world's true
interest, or content popularity), one value per user."""

from __future__ import annotations

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
