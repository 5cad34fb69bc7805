"""Per-content popularity and recency features as of a moment, computed from the window only.

A learned score that knows neither popularity nor recency loses to recent popularity on real
temporal data (issue 10). These features let a model learn how much of both to add, and they are
*time-aware*: a training example made at time ``t`` sees the features as of the day boundary
before ``t`` (never a click at or after it), and serving at the cut sees them as of the cut. So the
model learns how yesterday's counts predict today's clicks, not how the counts at the cut explain
clicks that happened before them.

Moments are whole days before the cut: ``a_k = cut - k days`` for ``k = 0 .. K-1`` (``k = 0``:
the cut itself), with ``K`` large enough that ``a_{K-1}`` precedes every click of the window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from graphrecall.data.schema import TIMESTAMP
from graphrecall.data.splits import DAY

FEATURE_NAMES = ("log1p_clicks_1d", "log1p_clicks_7d", "log1p_clicks_window", "log1p_days_since_first_click")
# optional (``model.popularity.publication=true``, contents with ``published_at``): the content's age
PUBLICATION_FEATURE_NAMES = ("log1p_days_since_published", "not_yet_published")


def feature_names(publication: bool = False) -> tuple[str, ...]:
    """The features of the learned popularity term, in table order."""
    return FEATURE_NAMES + (PUBLICATION_FEATURE_NAMES if publication else ())


def moment_index(timestamps: np.ndarray, cut: int) -> np.ndarray:
    """Index ``k`` of the latest moment ``a_k = cut - k days`` at or before each timestamp.

    Args:
        timestamps: [E] Unix seconds, all before ``cut``.
        cut: the fold's cut (Unix seconds).

    Returns:
        [E] int64, ``ceil((cut - t) / day)``; 0 only for ``t = cut``.
    """
    t = np.asarray(timestamps, dtype=np.int64)
    if (t > cut).any():
        raise ValueError(f"moment_index: {int((t > cut).sum())} timestamp(s) after the cut {cut}")
    return -((t - cut) // DAY)  # ceil((cut - t) / DAY) with integer arithmetic


def popularity_feature_table(clicks: pd.DataFrame, num_contents: int, cut: int) -> Tensor:
    r"""Features of every content at every moment ``a_k`` (see the module docstring).

    For content ``c`` at moment ``a_k``, with ``n`` its clicks in ``[a_k - d, a_k)``:

    - ``log1p_clicks_1d`` = log(1 + n over the last day),
    - ``log1p_clicks_7d`` = log(1 + n over the last 7 days),
    - ``log1p_clicks_window`` = log(1 + n over the whole window before ``a_k``),
    - ``log1p_days_since_first_click`` = log(1 + whole days from the day of its first click in the
      window to ``a_k``), 0 if it has no click before ``a_k``.

    Clicks are bucketed by day before the cut, bucket ``j`` = ``[cut - (j+1) days, cut - j days)``.

    Args:
        clicks: the fold's training window (``i``, ``timestamp``), all before ``cut``.
        num_contents: C.
        cut: the fold's cut (Unix seconds).

    Returns:
        [K, C, 4] float32, row ``k`` = the features as of ``a_k``.
    """
    t = clicks[TIMESTAMP].to_numpy().astype(np.int64)
    i = clicks["i"].to_numpy().astype(np.int64)
    if (t >= cut).any():
        raise ValueError(f"popularity features: {int((t >= cut).sum())} training click(s) at or after the cut")
    bucket = (cut - 1 - t) // DAY  # j >= 0
    num_moments = int(bucket.max()) + 2 if len(bucket) else 1  # the last moment precedes every click
    counts = np.zeros((num_moments + 7, num_contents), dtype=np.float64)  # padded for the 7-day difference
    np.add.at(counts, (bucket, i), 1.0)
    # clicks before a_k = buckets j >= k: reverse cumulative sum
    before = np.cumsum(counts[::-1], axis=0)[::-1]
    last_1d = counts[:num_moments]
    last_7d = before[:num_moments] - before[7 : num_moments + 7]
    window = before[:num_moments]
    oldest = np.full(num_contents, -1, dtype=np.int64)  # bucket of each content's first click
    np.maximum.at(oldest, i, bucket)
    k = np.arange(num_moments)[:, None]
    age_days = np.where(window > 0, oldest[None, :] - k + 1, 0)
    table = np.stack([np.log1p(last_1d), np.log1p(last_7d), np.log1p(window), np.log1p(age_days)], axis=-1)
    return torch.from_numpy(table.astype(np.float32))


def published_days(published_at: np.ndarray, cut: int) -> Tensor:
    """[C] float32 publication times in days relative to the cut (``(published_at - cut) / day``,
    negative for contents published before it): small numbers that float32 holds to the second."""
    published = np.asarray(published_at, dtype=np.float64)
    if published.ndim != 1 or not np.isfinite(published).all():
        raise ValueError("publication features: published_at must be a finite [C] vector of Unix seconds")
    return torch.from_numpy(((published - cut) / DAY).astype(np.float32))


def publication_features(age_days: Tensor) -> Tensor:
    """The content's age at the moment of a query, *to the second* (not the day boundary: a content
    published a few hours before the cut is ``0.1`` days old at serving, and first-day clicks of new
    contents in training see the same small ages).

    - ``log1p_days_since_published`` = log(1 + age), 0 before publication;
    - ``not_yet_published`` = 1 if the content did not exist yet (``age < 0``). Training takes
      the ages when each example's target was clicked, so a positive never carries it (a click
      follows its content's publication); only a sampled candidate published later does. Serving
      never sees one (candidates are published by the cut).

    Args:
        age_days: [...] (query time - published_at) in days.

    Returns:
        [..., 2] float32.
    """
    return torch.stack([torch.log1p(age_days.clamp(min=0.0)), (age_days < 0).float()], dim=-1)
