"""Online recall with trigger selection (design brief, section 2).

A user's triggers are their clicks before the cut, newest first (de-duplicated), at most
``max_triggers``. Trigger ``r`` (0 = newest) receives a share of the recall quota proportional to
``decay ** r``. Each trigger contributes its top pool neighbours up to its quota; unused quota flows
to the triggers' further neighbours (newest trigger first); contents the user already clicked and
duplicates are skipped; what is still missing is back-filled from a fallback ranking (popularity)
and counted. Results are ordered by neighbour rank, then by trigger recency, so that every
trigger's best neighbour precedes any trigger's second best.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphrecall.data.schema import TIMESTAMP
from graphrecall.recall.pool import CandidatePool


def recency_quota(num_triggers: int, total: int, decay: float) -> np.ndarray:
    """Split ``total`` slots over triggers with weights ``decay ** rank`` (largest remainder).

    Args:
        num_triggers: m >= 1.
        total: K, the number of slots.
        decay: in (0, 1]; 1 gives equal quotas.

    Returns:
        [m] int quotas summing to ``total``; ties in the remainder go to newer triggers.
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"recall.decay must be in (0, 1] (newer triggers get more quota), got {decay}")
    if num_triggers <= 0:
        return np.zeros(0, dtype=np.int64)
    w = decay ** np.arange(num_triggers, dtype=np.float64)
    exact = total * w / w.sum()
    quota = np.floor(exact).astype(np.int64)
    rest = total - int(quota.sum())
    if rest:
        order = np.lexsort((np.arange(num_triggers), -(exact - quota)))
        quota[order[:rest]] += 1
    return quota


def trigger_lists(history: pd.DataFrame, users: np.ndarray, max_triggers: int) -> list[np.ndarray]:
    """Newest-first distinct clicked contents of each user (at most ``max_triggers``).

    Args:
        history: clicks with ``u``, ``i``, ``timestamp``.
        users: [U] user rows to serve.

    Returns:
        U arrays of content rows (empty for users without history).
    """
    h = history[history["u"].isin(users)].sort_values(["u", TIMESTAMP], ascending=[True, False], kind="stable")
    h = h.drop_duplicates(["u", "i"])
    h = h[h.groupby("u").cumcount() < max_triggers]
    u_arr, i_arr = h["u"].to_numpy(), h["i"].to_numpy()
    uniq, starts = np.unique(u_arr, return_index=True)
    by_user = dict(zip(uniq.tolist(), np.split(i_arr, starts[1:])))
    empty = np.zeros(0, dtype=np.int64)
    return [by_user.get(int(u), empty) for u in users]


def seen_matrix(history: pd.DataFrame, users: np.ndarray, num_contents: int) -> sp.csr_matrix:
    """[U, C] binary matrix of the contents each served user clicked in ``history``."""
    pos = pd.Index(users).get_indexer(history["u"])
    m = pos >= 0
    out = sp.csr_matrix(
        (np.ones(int(m.sum()), dtype=np.int8), (pos[m], history["i"].to_numpy()[m])),
        shape=(len(users), num_contents),
    )
    out.sum_duplicates()
    out.data[:] = 1  # binary: repeat clicks would sum (and wrap around in int8 at 256)
    return out


def backfill(items: list[int], excluded: set[int], fallback: np.ndarray, k: int) -> None:
    """Append to ``items`` (in place) the first contents of ``fallback`` that are neither excluded
    nor already in it, until ``items`` holds ``k``."""
    have = excluded | set(items)
    for c in fallback:
        c = int(c)
        if c not in have:
            items.append(c)
            have.add(c)
            if len(items) == k:
                break


@dataclass
class TriggerRecallResult:
    """Recommendations and how they were filled.

    Every list holds its ``from_triggers`` entries first, then its ``backfilled`` ones.

    Attributes:
        recs: [U, K] int64 content rows, -1 where even the back-fill ran out.
        from_triggers: [U] slots filled from trigger neighbours.
        backfilled: [U] slots filled from the fallback ranking.
        scores: [U, K] float64 score of each trigger entry (see the serving function), NaN on
            back-fill and padding; None when not asked for (``with_scores=False``).
    """

    recs: np.ndarray
    from_triggers: np.ndarray
    backfilled: np.ndarray
    scores: np.ndarray | None = None


def recall_with_triggers(
    pool: CandidatePool,
    triggers: list[np.ndarray],
    seen: sp.csr_matrix,
    k: int,
    decay: float = 0.8,
    fallback: np.ndarray | None = None,
    trigger_slots: int | None = None,
    with_scores: bool = False,
) -> TriggerRecallResult:
    """Merge the pool neighbours of each user's triggers into a top-``k`` list.

    Args:
        pool: the offline candidate pool.
        triggers: U arrays of trigger content rows, newest first.
        seen: [U, C] contents to exclude per user (already clicked).
        k: list length.
        decay: per-rank quota decay (see :func:`recency_quota`).
        fallback: [C'] content rows in back-fill order (e.g. by popularity); None: no back-fill.
        trigger_slots: at most this many slots come from the triggers (default ``k``); the rest
            is back-filled. Splits the list between the i2i pool and popularity.
        with_scores: also return each trigger entry's pool score, ``sim(t, c)`` of the trigger ``t``
            that brought it (its own row of the pool; the list is ranked by neighbour rank, not by
            it, so scores need not decrease along a list).

    Returns:
        A :class:`TriggerRecallResult`.
    """
    num_users = len(triggers)
    k_trig = k if trigger_slots is None else max(0, min(int(trigger_slots), k))
    recs = np.full((num_users, k), -1, dtype=np.int64)
    from_triggers = np.zeros(num_users, dtype=np.int64)
    backfilled = np.zeros(num_users, dtype=np.int64)
    scores = np.full((num_users, k), np.nan) if with_scores else None
    for u, trig in enumerate(triggers):
        excluded = set(seen.indices[seen.indptr[u] : seen.indptr[u + 1]].tolist())
        chosen: list[tuple[int, int, int]] = []  # (neighbour rank, trigger rank, content)
        if len(trig):
            cand = pool.neighbors[trig]  # [m, P]
            quota = recency_quota(len(trig), k_trig, decay)
            taken: set[int] = set()
            cursor = np.zeros(len(trig), dtype=np.int64)
            filled = np.zeros(len(trig), dtype=np.int64)
            # pass 0 fills each trigger's quota; pass 1 hands unused quota to further neighbours
            for pass_ in (0, 1):
                for r in range(len(trig)):
                    row = cand[r]
                    while cursor[r] < len(row) and len(chosen) < k_trig:
                        if pass_ == 0 and filled[r] >= quota[r]:
                            break
                        c = int(row[cursor[r]])
                        pos = int(cursor[r])
                        cursor[r] += 1
                        if c < 0:
                            cursor[r] = len(row)
                            break
                        if c in excluded or c in taken:
                            continue
                        taken.add(c)
                        filled[r] += 1
                        chosen.append((pos, r, c))
        chosen.sort()
        items = [c for _, _, c in chosen]
        if with_scores and chosen:
            neighbour_rank, trigger_rank = np.array([(p, r) for p, r, _ in chosen]).T
            scores[u, : len(chosen)] = pool.scores[trig[trigger_rank], neighbour_rank]
        from_triggers[u] = len(items)
        if len(items) < k and fallback is not None:
            backfill(items, excluded, fallback, k)
        backfilled[u] = len(items) - from_triggers[u]
        recs[u, : len(items)] = items
    return TriggerRecallResult(recs, from_triggers, backfilled, scores)


def trigger_weights(triggers: list[np.ndarray], num_contents: int, decay: float) -> sp.csr_matrix:
    """[U, C] matrix with ``decay ** r`` at the r-th (0 = newest) trigger of every user."""
    lengths = np.array([len(t) for t in triggers], dtype=np.int64)
    rows = np.repeat(np.arange(len(triggers)), lengths)
    cols = np.concatenate(triggers).astype(np.int64) if lengths.sum() else np.zeros(0, dtype=np.int64)
    ranks = np.concatenate([np.arange(n) for n in lengths]) if lengths.sum() else np.zeros(0)
    return sp.csr_matrix((decay ** ranks.astype(np.float64), (rows, cols)), shape=(len(triggers), num_contents))


def aggregate_recall(
    pool: CandidatePool,
    triggers: list[np.ndarray],
    seen: sp.csr_matrix,
    k: int,
    decay: float = 0.8,
    fallback: np.ndarray | None = None,
    bonus: np.ndarray | None = None,
    trigger_slots: int | None = None,
    tie_order: np.ndarray | None = None,
    with_scores: bool = False,
) -> TriggerRecallResult:
    r"""Score every candidate once: the decayed sum of its pool similarity to the user's triggers.

    .. math::
        s_u(c) = \sum_r \mathrm{decay}^r \, \mathrm{sim}(t_r, c) + \mathrm{bonus}(c)

    over the candidates ``c`` found in at least one trigger's pool row (``sim`` = the pool score),
    without the contents the user has seen. A trigger whose row lacks ``c`` (cut off by the pool's
    top-k) adds ``min(0, m_r)``, ``m_r`` the lowest score kept in its row, so that a cut-off content
    never outscores a kept one of the same row: 0 for non-negative scores (probabilities, co-click
    weights), the row's minimum for signed ones (inner products, cosines), where 0 would rank the
    most dissimilar contents, cut off, above every kept one with a negative score. Candidates are
    taken by descending score; ties go to the earlier content of ``fallback`` (the back-fill order:
    recent popularity, then popularity, then a fixed pseudo-random order). Missing slots are
    back-filled from ``fallback`` and counted, as in :func:`recall_with_triggers`.

    Args:
        pool: the offline candidate pool.
        triggers: U arrays of trigger content rows, newest first.
        seen: [U, C] contents to exclude per user.
        k: list length.
        decay: trigger weight ``decay ** r`` (in (0, 1]).
        fallback: [C'] back-fill order; None: no back-fill (ties then by content row).
        bonus: [C] added to every candidate's score (e.g. ``beta * log(1 + recent clicks)``).
        trigger_slots: at most this many slots come from the candidates (default ``k``).
        tie_order: [C'] the order that breaks score ties (default ``fallback``), for a list
            served without back-fill (``fallback=None``) but with the same tie-break.
        with_scores: also return each candidate entry's :math:`s_u(c)` on its true scale: the
            decayed sum above, where a trigger whose row lacks ``c`` adds ``decay^r min(0, m_r)``,
            plus the bonus (ranking shifts signed rows by their floor; the shift is undone, up to
            float32 rounding of the pool scores). Non-increasing along each user's candidate entries.

    Returns:
        A :class:`TriggerRecallResult`.
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"recall.decay must be in (0, 1], got {decay}")
    order = fallback if tie_order is None else tie_order
    c = pool.num_contents
    k_trig = k if trigger_slots is None else max(0, min(int(trigger_slots), k))
    valid = (pool.neighbors >= 0) & np.isfinite(pool.scores)
    rows = np.repeat(np.arange(c), valid.sum(1))
    # signed rows are shifted by their minimum (a cut-off entry scores it); the shift adds the same
    # constant, sum_r decay^r min_r, to every candidate of a user, so the ranking is unchanged
    floor = np.minimum(np.where(valid, pool.scores, np.inf).min(1, initial=np.inf), 0.0)  # empty rows: 0
    sim = sp.csr_matrix(((pool.scores[valid] - floor[rows]).astype(np.float64), (rows, pool.neighbors[valid])),
                        shape=(c, c))
    member = sp.csr_matrix((np.ones(len(rows)), (rows, pool.neighbors[valid])), shape=(c, c))
    tw = trigger_weights(triggers, c, decay)
    offset = tw @ floor.astype(np.float64) if with_scores else None  # [U] the shift each user's scores carry
    scores = (tw @ sim).tocsr()
    found = (tw @ member).tocsr()  # nonzero where c is in some trigger's row (even at similarity 0)
    scores.sort_indices()
    found.sort_indices()
    tie_rank = np.full(c, c, dtype=np.int64)
    if order is not None:
        tie_rank[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    tie_rank = tie_rank * (c + 1) + np.arange(c)  # contents absent from the fallback: by row
    num_users = len(triggers)
    recs = np.full((num_users, k), -1, dtype=np.int64)
    from_triggers = np.zeros(num_users, dtype=np.int64)
    backfilled = np.zeros(num_users, dtype=np.int64)
    entry_scores = np.full((num_users, k), np.nan) if with_scores else None
    for u in range(num_users):
        excluded = seen.indices[seen.indptr[u] : seen.indptr[u + 1]]
        cand = found.indices[found.indptr[u] : found.indptr[u + 1]]
        s = np.zeros(len(cand))
        su_idx = scores.indices[scores.indptr[u] : scores.indptr[u + 1]]
        s[np.searchsorted(cand, su_idx)] = scores.data[scores.indptr[u] : scores.indptr[u + 1]]
        if bonus is not None:
            s = s + bonus[cand]
        keep = ~np.isin(cand, excluded)
        cand, s = cand[keep], s[keep]
        best = np.lexsort((tie_rank[cand], -s))[:k_trig]
        top = cand[best]
        if with_scores:
            entry_scores[u, : len(best)] = s[best] + offset[u]
        items = top.tolist()
        from_triggers[u] = len(items)
        if len(items) < k and fallback is not None:
            backfill(items, set(excluded.tolist()), fallback, k)
        backfilled[u] = len(items) - from_triggers[u]
        recs[u, : len(items)] = items
    return TriggerRecallResult(recs, from_triggers, backfilled, entry_scores)
