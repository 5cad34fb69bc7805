"""The article's production i2i baseline: top-P neighbours by co-click weight ``w_ij``, served
through trigger selection (design brief, section 2)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from graphrecall.data.schema import CONTENT_ID, FeedDataset
from graphrecall.data.splits import Fold
from graphrecall.graphs.cache import cached, frame_fingerprint
from graphrecall.graphs.views import build_view_graph
from graphrecall.models.base import Recommendations
from graphrecall.models.popular import popularity_counts, ranking_from_scores, recent_clicks
from graphrecall.recall.pool import CandidatePool
from graphrecall.recall.triggers import recall_with_triggers, seen_matrix, trigger_lists


class CoClickRecall:
    """Co-click i2i pool + trigger-selection recall, back-filled with recent popularity.

    Args:
        pool_size: P, neighbours kept per content in the offline pool.
        graph: graph config (``view, session_days, tau, weighting, min_count, top_k``).
        triggers: trigger config (``max_triggers, decay``).
        backfill_recent_days: popularity window of the back-fill ranking.
    """

    def __init__(
        self,
        pool_size: int = 100,
        graph: dict[str, Any] | None = None,
        triggers: dict[str, Any] | None = None,
        backfill_recent_days: float | None = 7,
    ) -> None:
        self.pool_size = pool_size
        self.graph_cfg = dict(graph or {})
        if self.graph_cfg.get("view", "content") != "content":
            raise ValueError(
                f"model=coclick serves contents and needs graph.view=content, got '{self.graph_cfg['view']}'"
            )
        self.trigger_cfg = {"max_triggers": 10, "decay": 0.8, **dict(triggers or {})}
        self.backfill_recent_days = backfill_recent_days
        self.name = "coclick"

    def fit(self, fold: Fold, dataset: FeedDataset, cache_dir: str | None = None) -> dict[str, Any]:
        start = time.perf_counter()
        params = {k: v for k, v in self.graph_cfg.items() if k != "name"}
        parts = {"clicks": frame_fingerprint(fold.train, ["u", "i", "timestamp"]),
                 "contents": dataset.num_contents, **params}
        graph = cached(cache_dir, "coclick", parts, lambda: build_view_graph(fold.train, dataset, **params))
        self.pool = CandidatePool.from_csr(graph.weights, self.pool_size)
        pop = popularity_counts(recent_clicks(fold.train, self.backfill_recent_days), dataset.num_contents)
        self.fallback = ranking_from_scores(pop)
        return {
            **{f"graph/{k}": v for k, v in graph.stats.as_dict().items() if k != "name"},
            "pool/empty_rows": self.pool.empty_rows(),
            "fit_seconds": time.perf_counter() - start,
        }

    def recommend(self, users: np.ndarray, fold: Fold, k: int) -> Recommendations:
        triggers = trigger_lists(fold.history, users, int(self.trigger_cfg["max_triggers"]))
        seen = seen_matrix(fold.history, users, self.pool.num_contents)
        res = recall_with_triggers(self.pool, triggers, seen, k, float(self.trigger_cfg["decay"]), self.fallback)
        return Recommendations(users, res.recs, {"from_triggers": res.from_triggers, "backfilled": res.backfilled})

    def save(self, directory: Path, dataset: FeedDataset) -> None:
        ids = dataset.contents[CONTENT_ID].to_numpy()
        self.pool.save(Path(directory) / "pool.parquet", ids)
        np.save(Path(directory) / "fallback.npy", self.fallback)

    def load(self, directory: Path, fold: Fold, dataset: FeedDataset) -> None:
        ids = dataset.contents[CONTENT_ID].to_numpy()
        self.pool = CandidatePool.load(Path(directory) / "pool.parquet", ids)
        self.fallback = np.load(Path(directory) / "fallback.npy")
