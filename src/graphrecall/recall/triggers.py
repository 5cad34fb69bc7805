"""Online recall with trigger selection (design brief, section 2).

A user's triggers are their clicks before the cut, newest first (de-duplicated), at most
``max_triggers``. Trigger ``r`` (0 = newest) receives a share of the recall quota proportional to
``decay ** r``. Each trigger contributes its top pool neighbours up to its quota; unused quota flows
to the triggers' further neighbours (newest trigger first); contents the user already clicked and
duplicates are skipped; what is still missing is back-filled from a fallback ranking (popularity)
and counted. Results are ordered by neighbour rank, then by trigger recency, so that every
trigger's best neighbour precedes any trigger's second best.

Aggregate serving (:func:`aggregate_recall`) scores every candidate once instead; with a prior
weight it ranks the trigger candidates and the back-fill in one list by one score (see there).
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

    Every list holds its ``from_triggers`` entries first, then its ``backfilled`` ones, except for
    the merged score (:func:`aggregate_recall` with ``prior_weight``), where they interleave and
    ``model_entries`` says which is which.

    Attributes:
        recs: [U, K] int64 content rows, -1 where even the back-fill ran out.
        from_triggers: [U] slots filled from trigger neighbours.
        backfilled: [U] slots filled from the fallback ranking.
        scores: [U, K] float64 score of each trigger entry (see the serving function), NaN on
            back-fill and padding (merged score: every entry's score, NaN on padding); None when not
            asked for (``with_scores=False``).
        model_entries: [U, K] bool, True at the entries the triggers brought (merged score: the
            mixture ``m_u(c) > 0``), False at back-fill and padding; None where each list holds its
            ``from_triggers`` entries first (the counters say where).
    """

    recs: np.ndarray
    from_triggers: np.ndarray
    backfilled: np.ndarray
    scores: np.ndarray | None = None
    model_entries: np.ndarray | None = None


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


def recent_prior(recent: np.ndarray) -> np.ndarray:
    """The recent-popularity distribution ``p(c)``: each content's recent clicks over all of them.

    Args:
        recent: [C] non-negative recent click counts (the back-fill window's).

    Returns:
        [C] float64 summing to 1 (all zeros when the window holds no click).
    """
    recent = np.asarray(recent, dtype=np.float64)
    total = recent.sum()
    return recent / total if total > 0 else np.zeros_like(recent)


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
    prior: np.ndarray | None = None,
    prior_weight: float | None = None,
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

    With ``prior_weight`` (:math:`\lambda`) the trigger candidates and the back-fill compete in one
    list by one score on the probability scale:

    .. math::
        s_u(c) = (1 - \lambda)\, m_u(c) + \lambda\, p(c) + \mathrm{bonus}(c), \qquad
        m_u(c) = \frac{\sum_r \mathrm{decay}^r \, \mathrm{sim}(t_r, c)}{\sum_r \mathrm{decay}^r}

    (``m_u``: the triggers' decayed mixture of their rows, e.g. next-click distributions; ``p``: the
    recent-popularity distribution ``prior``) over the trigger candidates and the first ``k + |seen|``
    contents of ``fallback`` (every back-fill content that could enter the list), seen contents
    excluded, ties by ``fallback`` order. Entries with :math:`m_u(c) > 0` count as ``from_triggers``
    (at most ``trigger_slots`` of them), the rest as ``backfilled``; a user without triggers gets the
    back-fill order. Only the first ``k + |seen|`` of ``fallback`` compete: if fewer than ``k``
    remain, the rest of ``fallback`` is appended, as without the prior.

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
            With ``prior_weight``: every entry's merged score, back-fill entries included.
        prior: [C] the recent-popularity distribution :math:`p` (:func:`recent_prior`); needed with
            ``prior_weight``.
        prior_weight: :math:`\lambda` in [0, 1], or None (off: the candidates first, then the
            back-fill, as above). Needs non-negative pool scores (next-click probabilities, co-click
            shares), whose mixture is on the scale of :math:`p`.

    Returns:
        A :class:`TriggerRecallResult` (with ``model_entries`` when ``prior_weight`` is set).
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"recall.decay must be in (0, 1], got {decay}")
    order = fallback if tie_order is None else tie_order
    c = pool.num_contents
    k_trig = k if trigger_slots is None else max(0, min(int(trigger_slots), k))
    valid = (pool.neighbors >= 0) & np.isfinite(pool.scores)
    if prior_weight is not None:
        check_prior_inputs(pool.scores[valid], prior, prior_weight, c)
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
    if prior_weight is not None:
        mass = np.asarray(tw.sum(axis=1), dtype=np.float64).ravel()  # [U] sum_r decay^r
        return _merged_lists(scores, found, mass, seen, k, k_trig, fallback, bonus, tie_rank,
                             np.asarray(prior, dtype=np.float64), float(prior_weight), with_scores)
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


def check_prior_inputs(pool_scores: np.ndarray, prior: np.ndarray | None, prior_weight: float,
                       num_contents: int) -> None:
    """The merged score's inputs: ``prior_weight`` in [0, 1], a ``prior`` of one value per content,
    and non-negative pool scores (a signed row, e.g. inner products, is on no probability scale)."""
    if not 0.0 <= prior_weight <= 1.0:
        raise ValueError(f"recall.prior_weight={prior_weight}: expected a value in [0, 1] (or null: off)")
    if prior is None or len(prior) != num_contents:
        raise ValueError(f"recall.prior_weight={prior_weight} needs the recent-popularity distribution of the "
                         f"{num_contents} contents, got {None if prior is None else len(prior)} values")
    if pool_scores.size and pool_scores.min() < 0:
        raise ValueError(f"recall.prior_weight={prior_weight} mixes the pool's scores with the recent-popularity "
                         f"distribution and needs non-negative pool scores (next-click probabilities: "
                         f"model.pool_score=probability; co-click shares); this pool has scores down to "
                         f"{float(pool_scores.min()):g}")


def _merged_lists(scores: sp.csr_matrix, found: sp.csr_matrix, mass: np.ndarray, seen: sp.csr_matrix, k: int,
                  k_trig: int, fallback: np.ndarray | None, bonus: np.ndarray | None, tie_rank: np.ndarray,
                  prior: np.ndarray, weight: float, with_scores: bool) -> TriggerRecallResult:
    """The lists of :func:`aggregate_recall` with ``prior_weight``: trigger candidates and the head
    of the back-fill ranked together by ``(1 - weight) m_u(c) + weight p(c) + bonus(c)``.

    Args:
        scores: [U, C] decayed sums of the triggers' pool scores (non-negative pools: no shift).
        found: [U, C] nonzero where ``c`` is in some trigger's row.
        mass: [U] ``sum_r decay^r`` over each user's triggers (0 without triggers).
        seen, k, fallback, bonus, with_scores: as :func:`aggregate_recall`.
        k_trig: at most this many entries with ``m_u(c) > 0``.
        tie_rank: [C] score ties go to the smaller value.
        prior: [C] ``p(c)``.
        weight: lambda.
    """
    num_users = seen.shape[0]
    recs = np.full((num_users, k), -1, dtype=np.int64)
    model_entries = np.zeros((num_users, k), dtype=bool)
    from_triggers = np.zeros(num_users, dtype=np.int64)
    backfilled = np.zeros(num_users, dtype=np.int64)
    entry_scores = np.full((num_users, k), np.nan) if with_scores else None
    head = np.zeros(0, dtype=np.int64) if fallback is None else np.asarray(fallback, dtype=np.int64)
    for u in range(num_users):
        excluded = seen.indices[seen.indptr[u] : seen.indptr[u + 1]]
        cand = found.indices[found.indptr[u] : found.indptr[u + 1]]
        pool_c = np.union1d(cand, head[: k + len(excluded)])  # sorted: trigger candidates + back-fill head
        mix = np.zeros(len(pool_c))  # m_u(c); 0 off every trigger row
        su_idx = scores.indices[scores.indptr[u] : scores.indptr[u + 1]]
        if mass[u] > 0:
            mix[np.searchsorted(pool_c, su_idx)] = scores.data[scores.indptr[u] : scores.indptr[u + 1]] / mass[u]
        s = (1.0 - weight) * mix + weight * prior[pool_c]
        if bonus is not None:
            s = s + bonus[pool_c]
        keep = ~np.isin(pool_c, excluded)
        pool_c, s, mix = pool_c[keep], s[keep], mix[keep]
        ranked = np.lexsort((tie_rank[pool_c], -s))
        is_model = mix[ranked] > 0
        over = is_model & (np.cumsum(is_model) > k_trig)  # model entries beyond trigger_slots
        best = ranked[~over][:k]
        items = pool_c[best].tolist()
        model_entries[u, : len(best)] = mix[best] > 0
        from_triggers[u] = int(model_entries[u].sum())
        if with_scores:
            entry_scores[u, : len(best)] = s[best]
        if len(items) < k and fallback is not None:  # the back-fill's head ran out: append as unmerged
            before = len(items)
            backfill(items, set(excluded.tolist()) | set(pool_c[ranked[over]].tolist()), fallback, k)
            if with_scores and len(items) > before:
                extra = np.asarray(items[before:], dtype=np.int64)
                entry_scores[u, before : len(items)] = weight * prior[extra] + (0.0 if bonus is None else bonus[extra])
        backfilled[u] = len(items) - from_triggers[u]
        recs[u, : len(items)] = items
    return TriggerRecallResult(recs, from_triggers, backfilled, entry_scores, model_entries)
