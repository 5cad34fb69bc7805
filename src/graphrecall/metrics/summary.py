"""All metrics of a run as tables: per-user values, global values, and slice x metric summaries.

Typical use::

    per_user = per_user_metrics(recs, targets, ks=(20, 50), item_popularity=pop,
                                is_tail=tail_items(pop),
                                item_weight=inverse_popularity_weights(pop),
                                label_sets={"style": style_csr, "space": space_csr})
    table = summarise(per_user, slices={"low_activity": n_train_clicks <= 5},
                      ci_metrics=["recall@50", "ndcg@50"])
    coverage = global_metrics(recs, num_items, ks=(20, 50))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphrecall.metrics.beyond_accuracy import (
    average_popularity_at_k,
    coverage_at_k,
    distinct_values_at_k,
    long_tail_share_at_k,
)
from graphrecall.metrics.bootstrap import bootstrap_ci
from graphrecall.metrics.content_slices import slice_recall_at_k
from graphrecall.metrics.ranking import (
    _check_k,
    _hit_rate_from_hits,
    _hits,
    _ips_recall_from_hits,
    _ndcg_from_hits,
    _precision_from_hits,
    _recall_from_hits,
    validate_recs,
)

__all__ = ["global_metrics", "per_user_metrics", "summarise"]


def per_user_metrics(
    recs: np.ndarray,
    targets: sp.spmatrix | sp.sparray,
    ks: Sequence[int] = (20, 50),
    item_popularity: np.ndarray | None = None,
    is_tail: np.ndarray | None = None,
    item_weight: np.ndarray | None = None,
    label_sets: Mapping[str, sp.spmatrix | sp.sparray] | None = None,
    item_slices: Mapping[str, np.ndarray] | None = None,
    is_new: np.ndarray | None = None,
) -> pd.DataFrame:
    """Every per-user metric of a run at every cut-off, one row per user.

    Columns, metric-major (all ``k`` of one metric side by side): ``recall@k``, ``ndcg@k``,
    ``hit_rate@k``, ``precision@k``, then, when their input is given, ``ips_recall@k``
    (``item_weight``), ``avg_pop@k`` (``item_popularity``), ``tail_share@k`` (``is_tail``) and
    ``distinct_<name>@k`` per entry of ``label_sets`` and ``distinct_<name>_clicked@k`` (distinct
    values among the hits only: the article's "clicks on distinct styles"), ``<slice>/recall@k`` per
    entry of ``item_slices`` (recall on the user's targets inside that content slice, ``NaN`` without
    one: see :mod:`graphrecall.metrics.content_slices`) and ``new_share@k`` (``is_new``: share of the
    non-padded top-k slots on new contents). Accuracy columns are ``NaN`` for users without test
    items; the beyond-accuracy ones are defined for every non-empty list. The hits are computed once
    at the largest ``k`` and sliced.

    Args:
        recs (np.ndarray): Item indices in rank order, shape ``[U, K_max]``, ``-1`` = padding,
            training items already filtered (checked in full by ``validate_recs``).
        targets (scipy.sparse matrix): Test items, shape ``[U, C]``.
        ks (Sequence[int]): Cut-offs.
        item_popularity (np.ndarray, optional): Popularity per item, shape ``[C]``.
        is_tail (np.ndarray, optional): bool tail mask, shape ``[C]`` (see ``tail_items``).
        item_weight (np.ndarray, optional): IPS weight per item, shape ``[C]``
            (see ``inverse_popularity_weights``).
        label_sets (Mapping[str, scipy.sparse matrix], optional): Name -> ``[C, L]`` item-label
            matrix (see ``labels_to_csr``), e.g. ``{"style": ..., "space": ...}``.
        item_slices (Mapping[str, np.ndarray], optional): Name -> bool mask ``[C]`` of a content
            slice (see ``click_bins``), e.g. ``{"clicks_0": ..., "clicks_1-2": ...}``.
        is_new (np.ndarray, optional): bool ``[C]``, True for new contents (no training click).

    Returns:
        pandas.DataFrame: ``[U, num_columns]``, index ``0..U-1`` aligned with the rows of
        ``recs``.
    """
    ks = [_check_k(k) for k in ks]
    if not ks:
        raise ValueError("ks must hold at least one cut-off")
    if not sp.issparse(targets):
        raise TypeError(f"targets must be a scipy.sparse matrix [U, C], got {type(targets)}")
    recs = validate_recs(recs, targets.shape[1])
    top, hits, targets = _hits(recs, targets, max(ks))
    num_test = np.diff(targets.indptr)

    columns: dict[str, np.ndarray] = {}
    for k in ks:
        columns[f"recall@{k}"] = _recall_from_hits(hits[:, :k], num_test)
    for k in ks:
        columns[f"ndcg@{k}"] = _ndcg_from_hits(hits[:, :k], num_test, k)
    for k in ks:
        columns[f"hit_rate@{k}"] = _hit_rate_from_hits(hits[:, :k], num_test)
    for k in ks:
        columns[f"precision@{k}"] = _precision_from_hits(hits[:, :k], num_test, k)
    if item_weight is not None:
        for k in ks:
            columns[f"ips_recall@{k}"] = _ips_recall_from_hits(
                top, hits[:, :k], targets, item_weight
            )
    if item_popularity is not None:
        for k in ks:
            columns[f"avg_pop@{k}"] = average_popularity_at_k(recs, item_popularity, k)
    if is_tail is not None:
        for k in ks:
            columns[f"tail_share@{k}"] = long_tail_share_at_k(recs, is_tail, k)
    for name, labels in (label_sets or {}).items():
        for k in ks:
            columns[f"distinct_{name}@{k}"] = distinct_values_at_k(recs, labels, k)
        # the article's online measure: distinct values among the *clicked* (hit) recommendations
        clicked = np.where(hits, top, -1)
        for k in ks:
            columns[f"distinct_{name}_clicked@{k}"] = distinct_values_at_k(clicked, labels, k)
    if is_new is not None:  # the same computation as the tail share, on another item mask
        for k in ks:
            columns[f"new_share@{k}"] = long_tail_share_at_k(recs, is_new, k)
    for name, mask in (item_slices or {}).items():
        for k in ks:
            columns[f"{name}/recall@{k}"] = slice_recall_at_k(recs, targets, mask, k)
    return pd.DataFrame(columns)


def global_metrics(
    recs: np.ndarray, num_items: int, ks: Sequence[int] = (20, 50)
) -> dict[str, float]:
    """Metrics of the whole run that have no per-user value.

    Args:
        recs (np.ndarray): Item indices in rank order, shape ``[U, K_max]``, ``-1`` = padding.
        num_items (int): The number of items ``C``.
        ks (Sequence[int]): Cut-offs.

    Returns:
        dict[str, float]: ``{"coverage@k": ...}`` for each ``k``.
    """
    return {f"coverage@{k}": coverage_at_k(recs, num_items, k) for k in ks}


def summarise(
    per_user: pd.DataFrame,
    slices: Mapping[str, np.ndarray] | None = None,
    ci_metrics: Sequence[str] = (),
    include_all: bool = True,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean of every metric in every user slice, with bootstrap CIs for the chosen metrics.

    Args:
        per_user (pandas.DataFrame): One column per metric, one row per user (the output of
            :func:`per_user_metrics`).
        slices (Mapping[str, np.ndarray], optional): Slice name -> bool mask of shape ``[U]``
            (e.g. ``{"low_activity": ..., "tail_lovers": ...}``); slices may overlap.
        ci_metrics (Sequence[str]): Metrics that get a bootstrap interval (the others get
            ``NaN`` bounds; CIs cost ``num_resamples`` means each).
        include_all (bool): Prepend the slice ``"all"`` (every user) unless ``slices`` has it.
        num_resamples (int): Bootstrap resamples per (slice, metric).
        confidence (float): Interval coverage.
        seed (int): Seed of every bootstrap (the same per cell, so results are reproducible).

    Returns:
        pandas.DataFrame: Index ``(slice, metric)``, columns ``mean``, ``ci_low``, ``ci_high``,
        ``n_users`` (users in the slice with a non-``NaN`` value of that metric).
    """
    missing = [m for m in ci_metrics if m not in per_user.columns]
    if missing:
        raise KeyError(f"ci_metrics not among the per-user columns: {missing}")
    all_slices: dict[str, np.ndarray] = {}
    if include_all and "all" not in (slices or {}):
        all_slices["all"] = np.ones(len(per_user), dtype=bool)
    for name, mask in (slices or {}).items():
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != (len(per_user),):
            raise ValueError(
                f"slice {name!r} must be a bool mask of shape [{len(per_user)}], "
                f"got dtype {mask.dtype} and shape {mask.shape}"
            )
        all_slices[name] = mask

    ci = set(ci_metrics)
    rows = []
    for name, mask in all_slices.items():
        for metric in per_user.columns:
            values = per_user[metric].to_numpy(dtype=np.float64)[mask]
            n_users = int((~np.isnan(values)).sum())
            if metric in ci:
                mean, low, high = bootstrap_ci(values, num_resamples, confidence, seed)
            else:
                mean = float(np.nanmean(values)) if n_users else float("nan")
                low = high = float("nan")
            rows.append((name, metric, mean, low, high, n_users))
    table = pd.DataFrame(rows, columns=["slice", "metric", "mean", "ci_low", "ci_high", "n_users"])
    return table.set_index(["slice", "metric"])
