"""A recall channel for new and rare contents: slots of every list reserved for them (issue 15).

The article's recall is multi-channel: each channel fills its own share of the list. A single
ranked list over the catalogue rewards leaving out contents with few clicks: a next-click model
correctly learns that one of them is rarely the next click, so they never reach the top ``K``,
although together they hold a real share of the targets (on the ``fresh`` preset, 4 to 6% of the
test targets are on contents with at most 2 training-window clicks). The rare channel ranks only
those contents and gives them ``slots`` of the ``K`` slots; the main channel fills the rest.

- **Rare contents** (:func:`rare_contents`): the candidates at the cut with at most ``max_clicks``
  clicks in the fold's training window (0 clicks: new contents, or contents nobody clicked).
- **Rare pool**: every content's top-``pool_size`` rare contents by the model's own pool score
  (:func:`graphrecall.recall.ann.exact_topk` with ``columns``: for a next-click model the same
  probabilities as the main pool, normalised over the whole catalogue).
- **Serving** (:func:`merge_channels`): the rare channel ranks the rare pool's entries by their
  decayed sum over the user's triggers (as :func:`graphrecall.recall.triggers.aggregate_recall`),
  without the contents the user has seen; its top ``slots`` take the list's last slots and the main
  channel's first ``K - n`` entries come first, ``n`` being the rare entries found (a user without
  triggers gets none, and the main channel fills the whole list).

``slots`` is a number or a grid chosen on validation recall@50 (``recall.rare.slots``).
"""

from __future__ import annotations

import numpy as np

from graphrecall.recall.triggers import TriggerRecallResult


def rare_contents(train_contents: np.ndarray, num_contents: int, max_clicks: int,
                  candidates: np.ndarray | None = None) -> np.ndarray:
    """bool ``[C]``: candidates with at most ``max_clicks`` clicks in the training window.

    Args:
        train_contents: [N] content row of every training-window click.
        num_contents: C.
        max_clicks: the most clicks a rare content has (>= 0).
        candidates: bool [C], the contents that may be recommended at the cut (None: all).

    Returns:
        np.ndarray: bool of shape ``[C]``.
    """
    if int(max_clicks) < 0:
        raise ValueError(f"recall.rare.max_clicks must be >= 0, got {max_clicks}")
    clicks = np.bincount(np.asarray(train_contents, dtype=np.int64), minlength=num_contents)
    rare = clicks <= int(max_clicks)
    if candidates is not None:
        rare &= np.asarray(candidates, dtype=bool)
    return rare


def slot_grid(slots: int | list[int]) -> list[int]:
    """``recall.rare.slots`` as a list: one value (fixed) or a grid (chosen on validation)."""
    grid = [slots] if isinstance(slots, (int, float)) else list(slots)
    if not grid:
        raise ValueError("recall.rare.slots must be an integer or a non-empty list of integers")
    out = []
    for s in grid:
        if isinstance(s, bool) or int(s) != s or s < 0:
            raise ValueError(f"recall.rare.slots: expected integers >= 0, got {slots!r}")
        out.append(int(s))
    return out


def merge_channels(main: TriggerRecallResult, rare: np.ndarray, k: int) -> tuple[TriggerRecallResult, np.ndarray]:
    """The main channel's first ``K - n_u`` entries, then the user's ``n_u`` rare entries.

    Args:
        main: the main channel's lists ``recs [U, K]`` (-1 padded), served without the rare
            entries (so that no content appears twice) and its fill counters.
        rare: [U, S] the rare channel's entries in rank order, -1 padded (``n_u`` valid ones).
        k: K.

    Returns:
        (merged result, ``[U]`` rare slots used). Counters: ``from_triggers`` and ``backfilled``
        count the main channel's kept entries (triggers first, so the cut drops back-fill first).
    """
    num_users = main.recs.shape[0]
    recs = np.full((num_users, k), -1, dtype=np.int64)
    from_triggers = np.zeros(num_users, dtype=np.int64)
    backfilled = np.zeros(num_users, dtype=np.int64)
    used = np.zeros(num_users, dtype=np.int64)
    for u in range(num_users):
        extra = rare[u][rare[u] >= 0][:k]
        own = main.recs[u][main.recs[u] >= 0][: k - len(extra)]
        items = np.concatenate([own, extra])
        recs[u, : len(items)] = items
        from_triggers[u] = min(int(main.from_triggers[u]), len(own))
        backfilled[u] = len(own) - from_triggers[u]
        used[u] = len(extra)
    return TriggerRecallResult(recs, from_triggers, backfilled), used
