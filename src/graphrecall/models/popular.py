"""Popularity baselines: most clicked contents over the recent part of the training window,
overall or per user group (recency matters: on MovieLens-100K recent popularity is a strong baseline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphrecall.data.schema import TIMESTAMP, FeedDataset
from graphrecall.data.splits import DAY, Fold
from graphrecall.graphs.views import user_groups
from graphrecall.models.base import MODEL, NO_SOURCE, Recommendations
from graphrecall.recall.triggers import seen_matrix


def recent_clicks(clicks: pd.DataFrame, recent_days: float | None) -> pd.DataFrame:
    """Clicks within ``recent_days`` of the last click (all of them for None)."""
    if recent_days is None or len(clicks) == 0:
        return clicks
    end = int(clicks[TIMESTAMP].max())
    return clicks[clicks[TIMESTAMP] > end - int(recent_days * DAY)]


def recency_window(fold: Fold, recent_days: float | None) -> float | None:
    """The popularity window to use on ``fold``: ``recent_days``, or None (all training pairs) when
    the fold's split has no time meaning (``fold.cut`` is None: intervened, predefined files). There
    the "last days" of the training pairs are an accident of the log (MovieLens intervened: the last
    7 days hold 2.2% of the pairs, from 46 users)."""
    return None if fold.cut is None else recent_days


def popularity_counts(clicks: pd.DataFrame, num_contents: int, count: str = "users") -> np.ndarray:
    """Popularity of every content: ``users`` (distinct users per content) or ``clicks``.

    Args:
        clicks: clicks with ``u`` and ``i``.
        num_contents: C.

    Returns:
        [C] float64 counts.
    """
    if count == "users":
        clicks = clicks.drop_duplicates(["u", "i"])
    elif count != "clicks":
        raise ValueError(f"popularity count must be 'users' or 'clicks', got '{count}'")
    return np.bincount(clicks["i"].to_numpy(), minlength=num_contents).astype(np.float64)


TIE_ORDER_SEED = 0


def tie_order(num_contents: int) -> np.ndarray:
    """[C] a fixed pseudo-random rank of every content row (seed ``TIE_ORDER_SEED``), the last key
    of every ranking: ties never fall to catalogue order, which can correlate with popularity
    (MovieLens-100K: -0.80 between film id and rating count)."""
    rank = np.empty(num_contents, dtype=np.int64)
    rank[np.random.default_rng(TIE_ORDER_SEED).permutation(num_contents)] = np.arange(num_contents)
    return rank


def ranking_from_scores(scores: np.ndarray, tie_scores: np.ndarray | None = None) -> np.ndarray:
    """Content rows by descending ``scores``; ties by descending ``tie_scores`` (when given), then
    by the fixed pseudo-random :func:`tie_order` (deterministic, independent of catalogue order)."""
    keys = [tie_order(len(scores))]
    if tie_scores is not None:
        keys.append(-np.asarray(tie_scores, dtype=np.float64))
    keys.append(-np.asarray(scores, dtype=np.float64))
    return np.lexsort(tuple(keys))


def popularity_ranking(train: pd.DataFrame, num_contents: int, recent_days: float | None,
                       count: str = "users") -> tuple[np.ndarray, np.ndarray]:
    """Recent popularity as a ranking: clicks of the last ``recent_days`` of ``train``, ties broken by
    popularity over all of ``train``, then by :func:`tie_order`.

    Returns:
        (ranking [C] content rows best first, recent counts [C]).
    """
    recent = popularity_counts(recent_clicks(train, recent_days), num_contents, count)
    overall = popularity_counts(train, num_contents, count)
    return ranking_from_scores(recent, overall), recent


def top_k_excluding(ranking: np.ndarray, seen: sp.csr_matrix, k: int) -> np.ndarray:
    """First ``k`` contents of one shared ranking that each user has not seen.

    Args:
        ranking: [C] content rows, best first.
        seen: [U, C] contents to exclude per user.
        k: list length.

    Returns:
        [U, k] int64, -1 padded when the ranking runs out.
    """
    num_users = seen.shape[0]
    depth = min(len(ranking), k + int(np.diff(seen.indptr).max(initial=0)))
    cand = np.broadcast_to(ranking[:depth], (num_users, depth))
    hidden = np.asarray(seen[np.arange(num_users)[:, None], cand].todense() if depth else np.zeros((num_users, 0)))
    order = np.argsort(hidden != 0, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(cand, order, axis=1).astype(np.int64)
    valid = np.take_along_axis(hidden == 0, order, axis=1)
    out[~valid] = -1
    if out.shape[1] < k:
        out = np.pad(out, ((0, 0), (0, k - out.shape[1])), constant_values=-1)
    return out


class PopularRecall:
    """Most popular unseen contents, overall or per user group.

    Args:
        recent_days: popularity window, counted back from the end of the training window (all of
            it on folds without a cut: :func:`recency_window`).
        count: ``users`` or ``clicks``.
        per_group: rank per user group (groups from ``groups.fields``); ties and contents unseen
            by the group are ordered by overall popularity.
        groups: ``{fields: [...], bins: {...}}`` from the dataset config.

    Scores of the served entries: the popularity count each list was ranked by, the content's
    distinct users (``count=users``) or clicks in the recent window, over everyone or, with
    ``per_group``, over the user's group (equal counts are ordered as described above).
    """

    def __init__(
        self,
        recent_days: float | None = 7,
        count: str = "users",
        per_group: bool = False,
        groups: dict[str, Any] | None = None,
    ) -> None:
        self.recent_days = recent_days
        self.count = count
        self.per_group = per_group
        self.groups = groups or {"fields": [], "bins": {}}
        self.name = "popular_group" if per_group else "popular"

    def fit(self, fold: Fold, dataset: FeedDataset, cache_dir: str | None = None, **_: Any) -> dict[str, Any]:
        c = dataset.num_contents
        train = recent_clicks(fold.train, recency_window(fold, self.recent_days))
        overall = popularity_counts(train, c, self.count)
        self.group_of_user = np.zeros(len(dataset.users), dtype=np.int64)
        scores = overall[None, :]
        self.counts = scores  # [G, C] the count each group's ranking reports as the score
        if self.per_group:
            self.group_of_user, vocab = user_groups(
                dataset.users, list(self.groups.get("fields", [])), dict(self.groups.get("bins") or {})
            )
            per_group = np.zeros((len(vocab), c))
            for g, part in train.groupby(self.group_of_user[train["u"].to_numpy()]):
                per_group[g] = popularity_counts(part, c, self.count)
            self.counts = per_group
            # overall popularity breaks ties (scaled below one group click)
            scores = per_group + overall[None, :] / (overall.max() + 1.0)
        # ties: popularity over the whole training window, then the fixed pseudo-random tie order
        everything = popularity_counts(fold.train, c, self.count)
        self.rankings = np.stack([ranking_from_scores(s, everything) for s in scores])
        return {"popular_groups": int(self.rankings.shape[0]), "popular_nonzero": int((overall > 0).sum()),
                "popularity_all_pairs": float(recency_window(fold, self.recent_days) is None)}

    def recommend(self, users: np.ndarray, fold: Fold, k: int) -> Recommendations:
        seen = seen_matrix(fold.history, users, self.rankings.shape[1])
        groups = self.group_of_user[users]
        items = np.full((len(users), k), -1, dtype=np.int64)
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            items[rows] = top_k_excluding(self.rankings[g], seen[rows], k)
        scores = None
        if self.counts is not None:
            scores = np.where(items >= 0, self.counts[groups[:, None], np.maximum(items, 0)], np.nan)
        sources = np.where(items >= 0, MODEL, NO_SOURCE).astype(np.int8)
        return Recommendations(users, items, {"backfilled": np.zeros(len(users), dtype=np.int64)}, scores, sources)

    def save(self, directory: Path, dataset: FeedDataset) -> None:
        np.savez(Path(directory) / "popular.npz", rankings=self.rankings, group_of_user=self.group_of_user,
                 counts=self.counts)

    def load(self, directory: Path, fold: Fold, dataset: FeedDataset) -> None:
        """Restore the rankings; runs saved before scores were exported have no counts (scores None)."""
        z = np.load(Path(directory) / "popular.npz")
        self.rankings, self.group_of_user = z["rankings"], z["group_of_user"]
        self.counts = z["counts"] if "counts" in z.files else None
