"""Bootstrap confidence intervals over users, and paired comparisons of two runs.

Users are the resampling unit: a metric's per-user values are resampled with replacement and
the mean recomputed, ``num_resamples`` times (Efron's percentile interval). Resamples are drawn
in chunks of about ``_CHUNK_ELEMENTS`` indices, so 1000 resamples of 100k users stay within tens
of MB of memory; within a chunk everything is vectorised.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_ci", "paired_bootstrap_diff"]

_CHUNK_ELEMENTS = 2_000_000


def _check(num_resamples: int, confidence: float) -> None:
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


def _bootstrap_means(values: np.ndarray, num_resamples: int, seed: int) -> np.ndarray:
    """Means of ``num_resamples`` resamples (with replacement) of ``values``; shape ``[B]``."""
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    chunk = max(1, _CHUNK_ELEMENTS // n)
    means = np.empty(num_resamples, dtype=np.float64)
    for start in range(0, num_resamples, chunk):
        stop = min(start + chunk, num_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def bootstrap_ci(
    values: np.ndarray,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of per-user values with a percentile bootstrap confidence interval.

    Args:
        values (np.ndarray): Per-user metric values, shape ``[U]``; ``NaN`` entries (users for
            whom the metric is undefined) are dropped first.
        num_resamples (int): Number of bootstrap resamples of the users.
        confidence (float): Coverage of the interval, e.g. 0.95.
        seed (int): Seed of the resampling; the same seed gives the same interval.

    Returns:
        tuple[float, float, float]: ``(mean, low, high)``; the mean is that of the observed
        values, ``low``/``high`` the ``(1 -/+ confidence) / 2`` quantiles of the resampled means.
        All ``NaN`` when no value is left.
    """
    _check(num_resamples, confidence)
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    means = _bootstrap_means(x, num_resamples, seed)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(low), float(high)


def paired_bootstrap_diff(
    a: np.ndarray,
    b: np.ndarray,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float, float]:
    """Paired bootstrap of the mean difference ``a - b`` of two runs on the same users.

    Resampling the per-user differences keeps the pairing, so the between-user variance that
    both runs share cancels (much tighter than two separate intervals). The two-sided p-value
    tests "mean difference = 0" by the shifted bootstrap: with ``d`` the differences and
    ``m`` their mean, ``p = (1 + #{|mean(d* - m)| >= |m|}) / (1 + B)`` over the ``B`` resamples
    ``d*`` (the +1 keeps a Monte-Carlo p-value above 0; its floor is ``1 / (1 + B)``).
    Identical runs give ``(0, 0, 0, 1)``.

    Args:
        a (np.ndarray): Per-user values of run A, shape ``[U]``.
        b (np.ndarray): Per-user values of run B on the same users in the same order, ``[U]``.
            Users with ``NaN`` in either run are dropped.
        num_resamples (int): Number of bootstrap resamples of the users.
        confidence (float): Coverage of the interval, e.g. 0.95.
        seed (int): Seed of the resampling.

    Returns:
        tuple[float, float, float, float]: ``(mean_diff, low, high, p_value_two_sided)``.
        All ``NaN`` when no pair is left.
    """
    _check(num_resamples, confidence)
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b must align user by user, got shapes {a.shape} and {b.shape}")
    d = a - b
    d = d[~np.isnan(d)]
    if d.size == 0:
        return float("nan"), float("nan"), float("nan"), float("nan")
    mean = d.mean()
    means = _bootstrap_means(d, num_resamples, seed)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    # Shift to the null (mean 0): the same resamples, centred. Compare with a small tolerance
    # so that float round-off in a constant difference does not count as "as extreme".
    null = means - mean
    extreme = np.abs(null) >= np.abs(mean) - 1e-12 * max(1.0, abs(mean))
    p_value = (1 + int(extreme.sum())) / (1 + num_resamples)
    return float(mean), float(low), float(high), float(p_value)
