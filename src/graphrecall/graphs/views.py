"""Graph views built from one click window: content co-click, side-info views, content<->side-info
bipartite edges and the user-group x content bipartite graph (design brief, sections 2-4).

Inputs are the canonical tables plus integer codes (``u``: row of the user table, ``i``: row of
the content table) added by :func:`graphrecall.data.splits.encode_clicks`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphrecall.data.schema import CONTENT_ID, TIMESTAMP, FeedDataset
from graphrecall.graphs.coclick import GraphStats, Weighting, coclick_graph, prune_edges, session_codes
from graphrecall.metrics import labels_to_csr

log = logging.getLogger(__name__)
BACKENDS = ("scipy", "spark")


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"graph.backend='{backend}': expected one of {' | '.join(BACKENDS)}")


@dataclass
class WeightedGraph:
    """One homogeneous (or bipartite) weighted graph.

    Attributes:
        name: view name (``content``, ``style``, ``group_content``...).
        weights: [R, C] CSR, row r lists its neighbours with their weights.
        counts: [R, C] CSR of the raw counts before pruning.
        stats: what the build kept and dropped.
        row_vocab: [R] ids of the row nodes (content ids, side-info values, group keys).
        col_vocab: [C] ids of the column nodes (same as ``row_vocab`` for a homogeneous view).
    """

    name: str
    weights: sp.csr_matrix
    counts: sp.csr_matrix
    stats: GraphStats
    row_vocab: np.ndarray
    col_vocab: np.ndarray


def build_view_graph(
    window: pd.DataFrame,
    dataset: FeedDataset,
    view: str = "content",
    session_days: float = 3.0,
    tau: float = 0.0,
    weighting: Weighting = "row",
    min_count: int = 1,
    top_k: int | None = None,
    origin: int | None = None,
    backend: str = "scipy",
    spark: dict[str, Any] | None = None,
) -> WeightedGraph:
    """Co-click graph of one view over the clicks of one window.

    Args:
        window: clicks of the window with integer columns ``u`` and ``i``.
        dataset: gives the catalogue (content rows) and side-info columns.
        view: ``content`` or a side-info column of the contents table.
        session_days: session bucket length.
        tau, weighting, min_count, top_k: see :func:`graphrecall.graphs.coclick.coclick_graph`.
        origin: session bucket origin; defaults to the window's first click.
        backend: ``scipy`` (in memory) or ``spark`` (a PySpark job, :mod:`graphrecall.graphs.spark`;
            same edges and weights).
        spark: the spark backend's settings (``master``, ``shuffle_partitions``, ``work_dir``).
    """
    check_backend(backend)
    if len(window) == 0:
        raise ValueError(f"view '{view}': the click window is empty")
    ts = window[TIMESTAMP].to_numpy(np.int64)
    origin = int(ts.min()) if origin is None else origin
    if view == "content":
        mapping, vocab = None, dataset.contents[CONTENT_ID].to_numpy()
    elif view in dataset.contents.columns and view != CONTENT_ID:
        mapping, labels = labels_to_csr(dataset.contents[view])  # binary [C, V], sorted values
        vocab = np.asarray(labels, dtype=object)
    else:
        raise ValueError(
            f"unknown graph view '{view}': expected 'content' or a contents column {list(dataset.side_info)}"
        )
    if backend == "spark":
        from graphrecall.graphs import spark as sg

        values = None if mapping is None else mapping.tocoo()
        size = len(vocab)

        def job(session, clicks, root):
            cv = None if values is None else sg.pairs_frame(session, values.row, values.col, ("i", "v"),
                                                            root / "content_values.parquet")
            return sg.coclick_job(clicks, session_days, origin, tau, weighting, min_count, top_k, cv)

        weights, counts, stats = sg.build_with_spark(window, (size, size), view, job, spark, tau, min_count)
        log.info("graph %s (spark): %s", view, stats.as_dict())
        return WeightedGraph(view, weights, counts, stats, vocab, vocab)
    sess, num_sessions = session_codes(window["u"].to_numpy(), ts, session_days, origin)
    weights, counts, stats = coclick_graph(
        sess,
        window["i"].to_numpy(np.int64),
        num_sessions,
        dataset.num_contents,
        tau=tau,
        weighting=weighting,
        min_count=min_count,
        top_k=top_k,
        timestamps=ts,
        content_to_values=mapping,
        name=view,
    )
    log.info("graph %s: %s", view, stats.as_dict())
    return WeightedGraph(view, weights, counts, stats, vocab, vocab)


def content_sideinfo_edges(dataset: FeedDataset, field: str) -> WeightedGraph:
    """Bipartite content -> side-info value edges of one field (weight 1 / number of values)."""
    m, labels = labels_to_csr(dataset.contents[field])  # binary [C, V], sorted values
    vocab = np.asarray(labels, dtype=object)
    deg = np.asarray(m.sum(axis=1)).ravel()
    w = sp.diags(np.divide(1.0, deg, out=np.zeros_like(deg, dtype=np.float64), where=deg > 0)) @ m
    w = w.tocsr()
    stats = GraphStats(
        name=f"content_{field}", nodes=m.shape[0] + m.shape[1], nodes_with_coclicks=int((deg > 0).sum()),
        edges_before_threshold=int(m.nnz), edges_dropped_by_threshold=0, edges_dropped_by_min_count=0,
        edges_dropped_by_top_k=0, edges=int(m.nnz), nodes_isolated_by_threshold=0,
        nodes_without_coclicks=int((deg == 0).sum()),
    )
    return WeightedGraph(f"content_{field}", w, m.astype(np.int64), stats,
                         dataset.contents[CONTENT_ID].to_numpy(), vocab)


def user_groups(
    users: pd.DataFrame, fields: list[str], bins: dict[str, list[float]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Group code per user from attribute fields (numeric fields cut into ``bins``).

    Args:
        users: canonical user table.
        fields: attribute columns forming the group key, e.g. ``[age_band, gender, traffic_source]``.
        bins: optional ``{column: edges}`` to bucket numeric columns.

    Returns:
        ([U] int group code, [G] group keys as ``"a|b|c"`` strings). Missing values form their
        own ``<na>`` level, so zero-attribute users still get a group.
    """
    missing = [f for f in fields if f not in users.columns]
    if missing:
        raise ValueError(f"user group fields {missing} are not columns of the user table {list(users.columns)}")
    if not fields:
        return np.zeros(len(users), dtype=np.int64), np.array(["all"], dtype=object)
    parts = []
    for f in fields:
        col = users[f]
        if bins and f in bins:
            col = pd.cut(col, bins=bins[f], right=False)
        parts.append(col.astype(object).where(col.notna(), "<na>").astype(str))
    key = parts[0].str.cat(parts[1:], sep="|") if len(parts) > 1 else parts[0]
    codes, vocab = pd.factorize(key)
    return codes.astype(np.int64), np.asarray(vocab, dtype=object)


def build_group_graph(
    window: pd.DataFrame,
    dataset: FeedDataset,
    group_of_user: np.ndarray,
    group_vocab: np.ndarray,
    tau: float = 0.0,
    min_count: int = 1,
    backend: str = "scipy",
    spark: dict[str, Any] | None = None,
) -> WeightedGraph:
    """User-group x content bipartite graph: ``w_tj = C(t,j) / sum_k C(t,k)``, kept when ``> tau``.

    Args:
        window: clicks with integer ``u`` and ``i`` columns.
        group_of_user: [U] group code of each user row.
        group_vocab: [G] group keys.
        backend, spark: see :func:`build_view_graph`.
    """
    check_backend(backend)
    if backend == "spark":
        from graphrecall.graphs import spark as sg

        def job(session, clicks, root):
            users = sg.pairs_frame(session, np.arange(len(group_of_user)), group_of_user, ("u", "g"),
                                   root / "user_groups.parquet")
            return sg.group_job(clicks, users, tau, min_count)

        shape = (len(group_vocab), dataset.num_contents)
        kept, counts, stats = sg.build_with_spark(window, shape, "group_content", job, spark, tau, min_count)
        return WeightedGraph("group_content", kept, counts, stats, group_vocab,
                             dataset.contents[CONTENT_ID].to_numpy())
    g = group_of_user[window["u"].to_numpy()]
    counts = sp.csr_matrix(
        (np.ones(len(g), dtype=np.int64), (g, window["i"].to_numpy())),
        shape=(len(group_vocab), dataset.num_contents),
    )
    counts.sum_duplicates()
    counts.sort_indices()
    rowsum = np.asarray(counts.sum(axis=1)).ravel().astype(np.float64)
    weights = counts.astype(np.float64)
    weights.data /= np.repeat(rowsum, np.diff(counts.indptr))
    kept, stats = prune_edges(weights, counts, tau, min_count, None, name="group_content")
    return WeightedGraph("group_content", kept, counts, stats, group_vocab,
                         dataset.contents[CONTENT_ID].to_numpy())
