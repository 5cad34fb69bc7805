"""The serving half every i2i model shares: an offline candidate pool, trigger selection, and a
recent-popularity back-fill (design brief, section 2). Models differ only in how they fill the pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from graphrecall.data.schema import CONTENT_ID, FeedDataset
from graphrecall.data.splits import Fold
from graphrecall.models.base import Recommendations
from graphrecall.models.popular import popularity_counts, ranking_from_scores, recent_clicks
from graphrecall.recall.pool import CandidatePool
from graphrecall.recall.triggers import recall_with_triggers, seen_matrix, trigger_lists


class PoolRecall:
    """Serve users from ``self.pool`` through their triggers; subclasses implement ``fit``.

    Args:
        pool_size: P, neighbours kept per content in the offline pool.
        triggers: trigger config (``max_triggers, decay``).
        backfill_recent_days: popularity window of the back-fill ranking.
    """

    name = "i2i"

    def __init__(self, pool_size: int = 100, triggers: dict[str, Any] | None = None,
                 backfill_recent_days: float | None = 7) -> None:
        self.pool_size = pool_size
        self.trigger_cfg = {"max_triggers": 10, "decay": 0.8, **dict(triggers or {})}
        self.backfill_recent_days = backfill_recent_days
        self.pool: CandidatePool | None = None

    def set_fallback(self, fold: Fold, dataset: FeedDataset) -> None:
        pop = popularity_counts(recent_clicks(fold.train, self.backfill_recent_days), dataset.num_contents)
        self.fallback = ranking_from_scores(pop)

    def user_context(self, users: np.ndarray, fold: Fold, num_contents: int) -> tuple[list[np.ndarray], sp.csr_matrix]:
        """What serving needs of the users, independent of the pool: (triggers, seen contents)."""
        triggers = trigger_lists(fold.history, users, int(self.trigger_cfg["max_triggers"]))
        return triggers, seen_matrix(fold.history, users, num_contents)

    def serve(self, users: np.ndarray, context: tuple[list[np.ndarray], sp.csr_matrix], k: int) -> Recommendations:
        """Trigger selection over the current pool (``context`` from :meth:`user_context`)."""
        triggers, seen = context
        share = float(self.trigger_cfg.get("share", 1.0))
        res = recall_with_triggers(self.pool, triggers, seen, k, float(self.trigger_cfg["decay"]), self.fallback,
                                   trigger_slots=round(share * k))
        return Recommendations(users, res.recs, {"from_triggers": res.from_triggers, "backfilled": res.backfilled})

    def recommend(self, users: np.ndarray, fold: Fold, k: int) -> Recommendations:
        return self.serve(users, self.user_context(users, fold, self.pool.num_contents), k)

    def save(self, directory: Path, dataset: FeedDataset) -> None:
        self.pool.save(Path(directory) / "pool.parquet", dataset.contents[CONTENT_ID].to_numpy())
        np.save(Path(directory) / "fallback.npy", self.fallback)

    def load(self, directory: Path, fold: Fold, dataset: FeedDataset) -> None:
        self.pool = CandidatePool.load(Path(directory) / "pool.parquet", dataset.contents[CONTENT_ID].to_numpy())
        self.fallback = np.load(Path(directory) / "fallback.npy")
