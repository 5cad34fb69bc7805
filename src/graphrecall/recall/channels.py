"""Recall channels for contents with few clicks: slots of every list reserved for them (issue 15).

The article's recall is multi-channel: each channel fills its own share of the list. A single
ranked list over the catalogue rewards leaving out contents with few clicks: a next-click model
correctly learns that one of them is rarely the next click, so they never reach the top ``K``,
although together they hold a real share of the targets (on the ``fresh`` preset, 3.0 to 4.4% of
the test targets are on contents with at most 2 training-window clicks).

A channel (``recall.channels.<name>``) owns the candidates whose clicks in the fold's training
window lie in ``[min_clicks, max_clicks]`` (:func:`channel_contents`; the defaults: ``new`` = 0
clicks, ``rare`` = 1-2 clicks):

- **its pool**: every content's top-``pool_size`` contents of the channel, by ``score``: ``pool``
  (the main pool's score: for a next-click model the catalogue-wide probabilities, popularity term
  included; for co-click the co-click weight), ``similarity`` (the plain inner product of the
  vectors, which a content without clicks can win: with a learned popularity term its pool score
  ranks it last) or ``side_info`` (GNN models: the inner product of the vectors the encoder gives
  both contents from their side info alone, without node id or edge: a content without clicks is
  compared with the trigger on the only ground they share). A list of scores is a grid chosen on
  validation recall@50 with the channel's slots;
- **its list** (:func:`graphrecall.recall.triggers.aggregate_recall`): the pool entries ranked by
  their decayed sum over the user's triggers, without the contents the user has seen or an earlier
  channel took, ties by the back-fill order, ``slots`` at most;
- **the merge** (:func:`merge_channels`): the main channel's first ``K - n`` entries (served without
  the channels' entries), then each channel's ``n_c`` entries in channel order (``n = sum n_c``; a
  user without triggers gets none and the main channel fills the list).

``slots`` is a number, a grid chosen on validation recall@50, or ``auto``: ``round(50 x s)``, ``s``
the share of the validation fold's targets on the channel's contents (slots in proportion to the
demand the channel serves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphrecall.recall.pool import CandidatePool
from graphrecall.recall.triggers import TriggerRecallResult

SCORES = ("pool", "similarity", "side_info")
DEFAULTS = {"slots": 0, "min_clicks": 0, "max_clicks": 0, "score": "pool", "pool_size": 50}


@dataclass
class Channel:
    """One channel's settings, its chosen slot count and its pool.

    Attributes:
        name: the key under ``recall.channels``.
        grid: the slot counts to choose from on validation (one value: fixed), or ``"auto"``.
        min_clicks, max_clicks: the channel's contents have this many training-window clicks.
        scores: the scores to choose from on validation (one value: fixed), each ``pool`` |
            ``similarity`` | ``side_info``.
        pool_size: neighbours kept per content.
        slots: the chosen count (None until validation chooses it).
        score: the chosen score (None until validation chooses it).
        pool: [C, pool_size] the channel's neighbours of every content by the chosen score.
        pools: the pool of every score of the grid while validation chooses (set by the model).
    """

    name: str
    grid: list[int] | str
    min_clicks: int
    max_clicks: int
    scores: list[str]
    pool_size: int
    slots: int | None = None
    score: str | None = None
    pools: dict[str, CandidatePool] = field(default_factory=dict, repr=False)

    @property
    def pool(self) -> CandidatePool | None:
        """The pool of the chosen score (None before it is chosen or built)."""
        return self.pools.get(self.score) if self.score is not None else None

    @pool.setter
    def pool(self, value: CandidatePool) -> None:
        if self.score is None:
            raise ValueError(f"recall.channels.{self.name}.score is a grid and has not been chosen")
        self.pools[self.score] = value

    def scores_to_build(self) -> list[str]:
        """The chosen score, or every score of the grid while it is not chosen."""
        return [self.score] if self.score is not None else list(self.scores)

    @property
    def active(self) -> bool:
        """Whether the channel may take a slot (``auto`` or a non-zero count in its grid)."""
        return self.grid == "auto" or any(s > 0 for s in self.grid)


def slot_grid(slots: Any, key: str = "recall.channels.<name>.slots") -> list[int] | str:
    """``slots`` as a list of integers >= 0 (one value: fixed), or ``"auto"``."""
    if slots == "auto":
        return "auto"
    grid = [slots] if isinstance(slots, (int, float)) else list(slots)
    if not grid:
        raise ValueError(f"{key}: expected an integer >= 0, a non-empty list of them, or auto")
    for s in grid:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or int(s) != s or s < 0:
            raise ValueError(f"{key}={slots!r}: expected an integer >= 0, a non-empty list of them, or auto")
    return [int(s) for s in grid]


def parse_channels(cfg: dict[str, Any] | None) -> dict[str, Channel]:
    """``recall.channels`` (``{name: {slots, min_clicks, max_clicks, score, pool_size}}``) as channels,
    in config order; each setting checked, the error naming its key."""
    out = {}
    for name, raw in dict(cfg or {}).items():
        c = {**DEFAULTS, **dict(raw or {})}
        key = f"recall.channels.{name}"
        unknown = set(c) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"{key}: unknown settings {sorted(unknown)}; expected {sorted(DEFAULTS)}")
        scores = [c["score"]] if isinstance(c["score"], str) else list(c["score"] or [])
        if not scores or any(sc not in SCORES for sc in scores) or len(set(scores)) < len(scores):
            raise ValueError(f"{key}.score={c['score']!r}: expected one of {list(SCORES)} or a list of distinct ones")
        lo, hi, size = c["min_clicks"], c["max_clicks"], c["pool_size"]
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (lo, hi, size)) or not 0 <= lo <= hi:
            raise ValueError(f"{key}: expected integers 0 <= min_clicks <= max_clicks, got {lo}, {hi}")
        if size < 1:
            raise ValueError(f"{key}.pool_size must be >= 1, got {size}")
        grid = slot_grid(c["slots"], f"{key}.slots")
        fixed = grid[0] if grid != "auto" and len(grid) == 1 else None
        out[name] = Channel(name, grid, lo, hi, scores, size, fixed, scores[0] if len(scores) == 1 else None)
    return out


def channel_contents(train_contents: np.ndarray, num_contents: int, min_clicks: int, max_clicks: int,
                     candidates: np.ndarray | None = None) -> np.ndarray:
    """bool ``[C]``: candidates with ``min_clicks`` to ``max_clicks`` clicks in the training window.

    Args:
        train_contents: [N] content row of every training-window click.
        num_contents: C.
        min_clicks, max_clicks: the click range (inclusive).
        candidates: bool [C], the contents that may be recommended at the cut (None: all).

    Returns:
        np.ndarray: bool of shape ``[C]``.
    """
    if not 0 <= int(min_clicks) <= int(max_clicks):
        raise ValueError(f"expected 0 <= min_clicks <= max_clicks, got {min_clicks}, {max_clicks}")
    clicks = np.bincount(np.asarray(train_contents, dtype=np.int64), minlength=num_contents)
    mask = (clicks >= int(min_clicks)) & (clicks <= int(max_clicks))
    if candidates is not None:
        mask &= np.asarray(candidates, dtype=bool)
    return mask


def auto_slots(target_contents: np.ndarray, mask: np.ndarray, k: int = 50) -> tuple[int, float]:
    """``(round(k x s), s)``: ``s`` the share of the target pairs whose content is in ``mask``.

    Args:
        target_contents: [T] content row of every (user, content) target pair of the validation fold.
        mask: bool [C], the channel's contents at that fold's cut.
        k: the list length the slots are a share of.
    """
    share = float(np.asarray(mask, dtype=bool)[np.asarray(target_contents, dtype=np.int64)].mean()) \
        if len(target_contents) else 0.0
    return slots_for_share(share, k), share


def slots_for_share(share: float, k: int = 50) -> int:
    """``auto`` slots for a share ``s`` of the target pairs: ``round(k x s)`` (half to even)."""
    return int(round(k * share))


def slot_candidates(channel: Channel, auto_max: int) -> list[int]:
    """The slot counts a channel's per-user grid covers (``channel_grid_<fold>.parquet``, for a
    choice over a backtest's validation windows pooled): ``0..auto_max`` for ``auto``, else its grid
    with 0 added (a channel's choice is taken with the channels after it off)."""
    if channel.grid == "auto":
        return list(range(auto_max + 1))
    return sorted(set(channel.grid) | {0})


def slots_tag(slots: dict[str, int]) -> str:
    """The name of a combination of slot counts in the per-user grid's columns: ``new=1,rare=2``."""
    return ",".join(f"{name}={n}" for name, n in slots.items())


def merge_channels(main: TriggerRecallResult, extras: list[np.ndarray], k: int,
                   extra_scores: list[np.ndarray] | None = None) -> tuple[TriggerRecallResult, list[np.ndarray]]:
    """The main channel's first ``K - n_u`` entries, then each channel's entries in order.

    Args:
        main: the main channel's lists ``recs [U, K]`` (-1 padded), served without the channels'
            entries (so that no content appears twice), and its fill counters (and ``scores``).
        extras: per channel, ``[U, S_c]`` entries in rank order, -1 padded.
        k: K.
        extra_scores: per channel, ``[U, S_c]`` scores of its entries (its own aggregate score),
            or None. The merged result has scores when ``main`` has them and these are given.

    Returns:
        (merged result, per channel ``[U]`` slots used). ``from_triggers`` and ``backfilled`` count
        the main channel's kept entries (appended back-fill comes last, so the cut drops it first; with
        ``recall.prior_weight`` the two interleave and ``PoolRecall.serve`` recounts from the sources); each
        entry keeps the score its own channel gave it (NaN on the main channel's back-fill).
    """
    with_scores = main.scores is not None and extra_scores is not None
    if with_scores and len(extra_scores) != len(extras):
        raise ValueError(f"merge_channels: {len(extras)} channels but {len(extra_scores)} score arrays")
    num_users = main.recs.shape[0]
    scores = np.full((num_users, k), np.nan) if with_scores else None
    recs = np.full((num_users, k), -1, dtype=np.int64)
    from_triggers = np.zeros(num_users, dtype=np.int64)
    backfilled = np.zeros(num_users, dtype=np.int64)
    used = [np.zeros(num_users, dtype=np.int64) for _ in extras]
    for u in range(num_users):
        parts, part_scores, room = [], [], k
        for c, rows in enumerate(extras):
            kept = np.flatnonzero(rows[u] >= 0)[:room]
            used[c][u], room = len(kept), room - len(kept)
            parts.append(rows[u][kept])
            if with_scores:
                part_scores.append(extra_scores[c][u][kept])
        own = np.flatnonzero(main.recs[u] >= 0)[:room]
        items = np.concatenate([main.recs[u][own], *parts])
        recs[u, : len(items)] = items
        if with_scores:
            scores[u, : len(items)] = np.concatenate([main.scores[u][own], *part_scores])
        from_triggers[u] = min(int(main.from_triggers[u]), len(own))
        backfilled[u] = len(own) - from_triggers[u]
    return TriggerRecallResult(recs, from_triggers, backfilled, scores), used
