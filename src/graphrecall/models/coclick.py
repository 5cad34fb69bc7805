"""The article's production i2i baseline: top-P neighbours by co-click weight ``w_ij``, served
through trigger selection (design brief, section 2)."""

from __future__ import annotations

import time
from typing import Any

from graphrecall.data.schema import FeedDataset
from graphrecall.data.splits import Fold
from graphrecall.graphs.cache import cached, graph_inputs
from graphrecall.graphs.views import WeightedGraph, build_view_graph
from graphrecall.models.i2i import PoolRecall
from graphrecall.recall.pool import CandidatePool


def content_graph(fold: Fold, dataset: FeedDataset, graph_cfg: dict[str, Any], cache_dir: str | None) -> WeightedGraph:
    """The fold's content co-click graph, built once per (clicks, parameters) and cached."""
    params = {k: v for k, v in graph_cfg.items() if k not in ("name", "views")}  # views: graph=multi, for M2GRL
    if params.get("view", "content") != "content":
        raise ValueError(f"i2i models serve contents and need graph.view=content, got '{params['view']}'")
    parts = {**graph_inputs(fold.train, dataset, "content"), **params}
    return cached(cache_dir, "coclick", parts, lambda: build_view_graph(fold.train, dataset, **params))


class CoClickRecall(PoolRecall):
    """Co-click i2i pool + trigger-selection recall, back-filled with recent popularity.

    Args:
        pool_size: P, neighbours kept per content in the offline pool.
        graph: graph config (``view, session_days, tau, weighting, min_count, top_k``).
        triggers: trigger config (``max_triggers, decay``).
        backfill_recent_days: popularity window of the back-fill ranking.
    """

    name = "coclick"

    def __init__(self, pool_size: int = 100, graph: dict[str, Any] | None = None,
                 triggers: dict[str, Any] | None = None, backfill_recent_days: float | None = 7) -> None:
        super().__init__(pool_size, triggers, backfill_recent_days)
        self.graph_cfg = dict(graph or {})
        if self.graph_cfg.get("view", "content") != "content":
            raise ValueError(f"model=coclick serves contents and needs graph.view=content, got '{self.graph_cfg['view']}'")

    def fit(self, fold: Fold, dataset: FeedDataset, cache_dir: str | None = None, **_: Any) -> dict[str, Any]:
        start = time.perf_counter()
        graph = content_graph(fold, dataset, self.graph_cfg, cache_dir)
        self.pool = CandidatePool.from_csr(graph.weights, self.pool_size)
        self.set_fallback(fold, dataset)
        channels = self.channel_pools_from_graph(graph.weights, fold, dataset) if self.uses_channels else {}
        serving = self.choose_serving(fold, dataset) if not self.serving_chosen or fold.name == "val" else {}
        return {
            **channels,
            **{f"graph/{k}": v for k, v in graph.stats.as_dict().items() if k != "name"},
            **serving,
            "pool/empty_rows": self.pool.empty_rows(),
            "fit_seconds": time.perf_counter() - start,
        }
