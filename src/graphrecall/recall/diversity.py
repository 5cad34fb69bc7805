"""Diversity recall from side-info view vectors (design brief, section 3: "the other views' vectors
serve diversity").

M2GRL's article uses its style / space view vectors for a diversity-oriented recall next to the i2i
pool. Here every content's candidate list is a merge of several *sources*:

* its own content pool row (the i2i neighbours);
* per diversity view, contents reached through that view: the values nearest to the content's own
  value(s) by the view vectors (cosine, own values excluded: the content pool already covers them),
  then the contents carrying those values, ranked within each value by a score (popularity in the
  training window, or the content-vs-value score in the relation space), taken round-robin over the
  values (nearest value first in every round).

The sources share the pool's slots by quota (largest remainder), duplicates are kept once (first
source wins), a source with too few candidates gives its slots back to the others, and the merged row
interleaves the sources in proportion to what they filled, so that any prefix of it (what trigger
selection takes from a trigger) carries the same mix. The result is an ordinary
:class:`~graphrecall.recall.pool.CandidatePool`, served through the existing trigger selection.
Everything here is arrays in, arrays out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from graphrecall.recall.pool import CandidatePool


def source_slots(size: int, shares: Sequence[float]) -> np.ndarray:
    """Split ``size`` slots over sources by ``shares`` (largest remainder; ties to earlier sources).

    Args:
        size: number of slots.
        shares: [S] non-negative weights (normalised here).

    Returns:
        [S] int slots summing to ``size``.
    """
    w = np.asarray(shares, dtype=np.float64)
    if w.ndim != 1 or len(w) == 0 or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"source shares must be non-negative with a positive sum, got {list(shares)}")
    exact = size * w / w.sum()
    slots = np.floor(exact + 1e-9).astype(np.int64)
    rest = size - int(slots.sum())
    if rest > 0:
        order = np.lexsort((np.arange(len(w)), -(exact - slots)))
        slots[order[:rest]] += 1
    return slots


def diversity_shares(num_views: int, quota: float) -> list[float]:
    """``[1 - quota, quota / m, ..., quota / m]``: the content pool first, then ``m`` views sharing ``quota``."""
    if not 0.0 <= quota <= 1.0:
        raise ValueError(f"model.diversity.quota must be in [0, 1], got {quota}")
    if num_views < 1:
        raise ValueError("model.diversity.views is empty: name at least one side-info view")
    return [1.0 - quota, *([quota / num_views] * num_views)]


@dataclass
class MergedRow:
    """One merged candidate list.

    Attributes:
        items: [n <= size] content rows, interleaved.
        source: [n] index of the source of each item.
        taken: [S] items taken from each source.
        given_back: [S] slots of its quota each source could not fill (handed to the others).
        duplicates: candidates skipped because an earlier source (or earlier rank) already had them.
    """

    items: np.ndarray
    source: np.ndarray
    taken: np.ndarray
    given_back: np.ndarray
    duplicates: int


def merge_row(sources: Sequence[np.ndarray], slots: np.ndarray, exclude: int = -1) -> MergedRow:
    """Merge ranked candidate lists with per-source slots.

    Pass 0: every source, in order, takes its next candidates up to its slots, skipping padding
    (``-1``, which ends the source), ``exclude`` (the trigger itself) and contents already taken.
    Pass 1: slots a source could not fill go to the sources in order (the content pool first), which
    continue down their lists. The taken items are then interleaved: the ``j``-th item of a source
    that gave ``n_s`` items gets the key ``(j + 0.5) / n_s``; items are sorted by key, ties by source.

    Args:
        sources: S arrays of content rows, best first (``-1`` = no more candidates).
        slots: [S] slots per source (from :func:`source_slots`); the row length is their sum.
        exclude: a content never to take (the trigger); -1 for none.

    Returns:
        A :class:`MergedRow`.
    """
    size = int(np.sum(slots))
    picks: list[list[int]] = [[] for _ in sources]
    cursor = [0] * len(sources)
    taken: set[int] = set()
    duplicates = 0

    def advance(s: int, limit: int) -> None:
        nonlocal duplicates
        row = sources[s]
        while len(picks[s]) < limit and sum(map(len, picks)) < size and cursor[s] < len(row):
            c = int(row[cursor[s]])
            cursor[s] += 1
            if c < 0:
                cursor[s] = len(row)
                break
            if c == exclude:
                continue
            if c in taken:
                duplicates += 1
                continue
            taken.add(c)
            picks[s].append(c)

    for s in range(len(sources)):
        advance(s, int(slots[s]))
    given_back = np.array([int(slots[s]) - len(p) for s, p in enumerate(picks)], dtype=np.int64)
    for s in range(len(sources)):  # the slots given back, content pool first
        advance(s, size)
    keys = [((j + 0.5) / len(p), s, c) for s, p in enumerate(picks) for j, c in enumerate(p)]
    keys.sort()
    return MergedRow(
        items=np.array([c for _, _, c in keys], dtype=np.int64),
        source=np.array([s for _, s, _ in keys], dtype=np.int64),
        taken=np.array([len(p) for p in picks], dtype=np.int64),
        given_back=given_back,
        duplicates=duplicates,
    )


@dataclass
class DiversePool:
    """A merged pool and how it was filled.

    Attributes:
        pool: the merged :class:`CandidatePool` ([C, size]; scores are each source's own scores).
        source: [C, size] int8 source index of every entry (-1 where padded).
        names: [S] source names (``content`` first).
        slots: [S] quota slots per row.
        stats: totals over rows: ``taken/<name>``, ``given_back/<name>``, ``duplicates``,
            ``short_rows`` (rows with fewer than ``size`` candidates).
    """

    pool: CandidatePool
    source: np.ndarray
    names: list[str]
    slots: np.ndarray
    stats: dict[str, int] = field(default_factory=dict)


def merge_pools(sources: dict[str, CandidatePool], quota: float) -> DiversePool:
    """Merge a content pool with view candidate pools, row by row (:func:`merge_row`).

    Args:
        sources: ``{"content": content pool, view: view candidates, ...}``; the first entry is the
            content pool, whose width sets the merged size; every pool has the same rows.
        quota: share of the slots given to the views together (split equally between them).

    Returns:
        A :class:`DiversePool`.
    """
    names = list(sources)
    pools = [sources[n] for n in names]
    size, num = pools[0].size, pools[0].num_contents
    if any(p.num_contents != num for p in pools):
        raise ValueError(f"diversity sources differ in rows: {[p.num_contents for p in pools]}")
    slots = source_slots(size, diversity_shares(len(names) - 1, quota))
    neighbors = np.full((num, size), -1, dtype=np.int64)
    scores = np.full((num, size), np.nan, dtype=np.float32)
    source = np.full((num, size), -1, dtype=np.int8)
    taken = np.zeros(len(names), dtype=np.int64)
    given_back = np.zeros(len(names), dtype=np.int64)
    duplicates = short = 0
    for c in range(num):
        rows = [p.neighbors[c] for p in pools]
        m = merge_row(rows, slots, exclude=c)
        n = len(m.items)
        neighbors[c, :n], source[c, :n] = m.items, m.source
        for s in range(len(names)):  # carry each item's score from its source
            at = m.source == s
            if at.any():
                pos = {int(x): j for j, x in enumerate(rows[s])}
                scores[c, np.flatnonzero(at)] = pools[s].scores[c, [pos[int(x)] for x in m.items[at]]]
        taken += m.taken
        given_back += m.given_back
        duplicates += m.duplicates
        short += int(n < size)
    stats = {**{f"taken/{n}": int(t) for n, t in zip(names, taken)},
             **{f"given_back/{n}": int(g) for n, g in zip(names, given_back)},
             "duplicates": int(duplicates), "short_rows": int(short)}
    return DiversePool(CandidatePool(neighbors, scores), source, names, slots, stats)


def nearest_values(value_vectors: np.ndarray, bags: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` values nearest to each content's own value(s), own values excluded.

    The query of a content is the mean of its values' unit vectors; values are ranked by cosine to
    it (ties: lower value id). Contents without a value get no neighbour.

    Args:
        value_vectors: [V, d] the view's value vectors.
        bags: [C, V] CSR, non-zero where content c carries value v.
        k: values per content.

    Returns:
        (values [C, k] int64, -1 padded; cosines [C, k] float32, NaN padded).
    """
    v = np.asarray(value_vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    unit = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    own = (bags.tocsr() != 0).astype(np.float64)
    deg = np.asarray(own.sum(axis=1)).ravel()
    query = sp.diags(np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)) @ own @ unit  # [C, d]
    qn = np.linalg.norm(query, axis=1, keepdims=True)
    query = np.divide(query, qn, out=np.zeros_like(query), where=qn > 0)
    cos = query @ unit.T  # [C, V]
    cos[own.toarray() > 0] = -np.inf
    cos[deg == 0] = -np.inf
    k = min(k, v.shape[0])
    order = np.argsort(-cos, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(cos, order, axis=1)
    values = np.where(np.isfinite(best), order, -1).astype(np.int64)
    return values, np.where(np.isfinite(best), best, np.nan).astype(np.float32)


def value_rankings(bags: sp.csr_matrix, entry_scores: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The contents of every value, best first by ``entry_scores`` (ties: lower content row).

    Args:
        bags: [C, V] CSR with sorted indices; entry ``e`` says content ``row(e)`` carries value ``col(e)``.
        entry_scores: [nnz] score of each (content, value) entry, e.g. the content's popularity or its
            relation-space score with the value.
        depth: contents kept per value.

    Returns:
        (contents [V, depth] int64, -1 padded; their scores [V, depth] float32, NaN padded).
    """
    m = bags.tocsr()
    if len(entry_scores) != m.nnz:
        raise ValueError(f"entry_scores has {len(entry_scores)} entries, the value bags {m.nnz}")
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    cols = m.indices
    order = np.lexsort((rows, -np.asarray(entry_scores, dtype=np.float64), cols))  # by value, score desc, row asc
    cols_o, rows_o, scores_o = cols[order], rows[order], np.asarray(entry_scores)[order]
    start = np.searchsorted(cols_o, np.arange(m.shape[1]))
    rank = np.arange(len(cols_o)) - start[cols_o]
    keep = rank < depth
    contents = np.full((m.shape[1], depth), -1, dtype=np.int64)
    scores = np.full((m.shape[1], depth), np.nan, dtype=np.float32)
    contents[cols_o[keep], rank[keep]] = rows_o[keep]
    scores[cols_o[keep], rank[keep]] = scores_o[keep]
    return contents, scores


def view_candidates(nearest: np.ndarray, rankings: np.ndarray, ranking_scores: np.ndarray, size: int) -> CandidatePool:
    """Round-robin over each content's nearest values: every value's best content, then every value's
    second best, ... (nearest value first within a round), de-duplicated, at most ``size``.

    Args:
        nearest: [C, k] value ids per content (-1 padded), from :func:`nearest_values`.
        rankings: [V, T] contents per value, best first (-1 padded), from :func:`value_rankings`.
        ranking_scores: [V, T] their scores (carried into the pool's scores).
        size: candidates per content.

    Returns:
        A [C, size] :class:`CandidatePool` (-1 / NaN padded).
    """
    num = nearest.shape[0]
    neighbors = np.full((num, size), -1, dtype=np.int64)
    scores = np.full((num, size), np.nan, dtype=np.float32)
    for c in range(num):
        vals = nearest[c][nearest[c] >= 0]
        if len(vals) == 0:
            continue
        _round_robin_into(rankings[vals], ranking_scores[vals], neighbors[c], scores[c])
    return CandidatePool(neighbors, scores)


def _round_robin_into(ranked: np.ndarray, ranked_scores: np.ndarray, out_ids: np.ndarray,
                      out_scores: np.ndarray) -> None:
    """Fill one pool row from per-value rankings, round-robin (every value's best, then every
    value's second best, ...), de-duplicated (first occurrence kept), -1 entries skipped.

    Args:
        ranked: [k, T] content ids per value, best first (-1 padded).
        ranked_scores: [k, T] their scores.
        out_ids / out_scores: [size] the row to fill in place (left as padded beyond the candidates).
    """
    cand, cand_scores = ranked.T.reshape(-1), ranked_scores.T.reshape(-1)  # rounds in order
    ok = cand >= 0
    cand, cand_scores = cand[ok], cand_scores[ok]
    _, first = np.unique(cand, return_index=True)
    first = np.sort(first)[: len(out_ids)]
    out_ids[: len(first)] = cand[first]
    out_scores[: len(first)] = cand_scores[first]


def similar_view_candidates(nearest: np.ndarray, bags: sp.csr_matrix, content_vectors: np.ndarray,
                            size: int) -> CandidatePool:
    """Like :func:`view_candidates`, but each nearest value's contents are ranked by their cosine to
    the querying content (its own i2i vector), not by one order shared by every query (popularity):
    the diversity candidates are the contents of neighbouring styles most similar to the trigger.

    Round-robin over the content's nearest values (nearest first within a round), de-duplicated,
    the content itself excluded; ties by lower content row.

    Args:
        nearest: [C, k] value ids per content (-1 padded), from :func:`nearest_values`.
        bags: [C, V] CSR, non-zero where content c carries value v.
        content_vectors: [C, d] the content (i2i) vectors.
        size: candidates per content.

    Returns:
        A [C, size] :class:`CandidatePool` (-1 / NaN padded), scores = cosines.
    """
    v = np.asarray(content_vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    unit = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    by_value = bags.tocsc()
    by_value.sort_indices()
    num = nearest.shape[0]
    neighbors = np.full((num, size), -1, dtype=np.int64)
    scores = np.full((num, size), np.nan, dtype=np.float32)
    for c in range(num):
        vals = nearest[c][nearest[c] >= 0]
        if len(vals) == 0:
            continue
        ranked = np.full((len(vals), size), -1, dtype=np.int64)
        ranked_scores = np.full((len(vals), size), np.nan)
        for j, val in enumerate(vals):
            members = by_value.indices[by_value.indptr[val]: by_value.indptr[val + 1]]
            members = members[members != c]
            cos = unit[members] @ unit[c]
            order = np.lexsort((members, -cos))[:size]
            ranked[j, : len(order)], ranked_scores[j, : len(order)] = members[order], cos[order]
        _round_robin_into(ranked, ranked_scores, neighbors[c], scores[c])
    return CandidatePool(neighbors, scores)
