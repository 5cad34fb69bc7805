"""Which contents may be recommended at a fold's cut: the candidate set of the learned models.

A model trained at the cut can only recommend contents that exist then. With a ``published_at``
column that is known exactly; without one, the contents table may list contents created later (a
catalogue exported after the log: on MovieLens-100K 19 films are released after the temporal cut),
so the safe default is the contents someone clicked before the cut. Rules (``model.candidates``):

- ``published``: ``published_at <= cut`` (the fold's cut; folds without one, intervened or
  predefined, use the last click of their history). Needs the ``published_at`` column.
- ``history``: contents with at least one click in the fold's history (anywhere before the cut,
  not only in the training window).
- ``catalogue``: every content of the table (only when the table is known to be the catalogue at
  the cut).
- ``auto`` (default): ``published`` when the table has ``published_at``, else ``history``.

Models that embed contents from side information (stage 1, M2GRL, the u2i references) search
their pool / serve their scores over the candidates only; co-click and popularity need clicks and
are unaffected. A pool is restricted after an exact or approximate search widened by the number of
non-candidates (:func:`restrict_pool`), so the top-``P`` among the candidates is exact whatever the
search method and score.
"""

from __future__ import annotations

import numpy as np

from graphrecall.data.schema import PUBLISHED_AT, TIMESTAMP, FeedDataset
from graphrecall.data.splits import Fold
from graphrecall.recall.pool import CandidatePool

CANDIDATE_RULES = ("auto", "published", "history", "catalogue")


def check_candidate_rule(rule: str, key: str = "model.candidates") -> str:
    """The rule if known; otherwise a ``ValueError`` naming ``key``."""
    if rule not in CANDIDATE_RULES:
        raise ValueError(f"{key}={rule!r}: expected one of {list(CANDIDATE_RULES)}")
    return rule


def fold_cut(fold: Fold) -> int:
    """The fold's cut, or one second after the last history click for folds without one."""
    if fold.cut is not None:
        return int(fold.cut)
    return int(fold.history[TIMESTAMP].max()) + 1 if len(fold.history) else -(2**62)


def candidate_mask(fold: Fold, dataset: FeedDataset, rule: str = "auto") -> np.ndarray:
    """bool ``[C]``: True for the contents that may be recommended at the fold's cut (module docstring).

    Args:
        fold: the fold served (its ``cut`` and ``history``).
        dataset: the dataset (its contents table).
        rule: ``auto`` | ``published`` | ``history`` | ``catalogue``.

    Returns:
        np.ndarray: bool of shape ``[C]``.
    """
    rule = check_candidate_rule(rule)
    has_published = PUBLISHED_AT in dataset.contents.columns
    if rule == "auto":
        rule = "published" if has_published else "history"
    if rule == "published":
        if not has_published:
            raise ValueError(f"model.candidates=published needs a '{PUBLISHED_AT}' column in the contents table of "
                             f"{dataset.name}; use history or catalogue")
        return dataset.contents[PUBLISHED_AT].to_numpy() <= fold_cut(fold)
    if rule == "history":
        mask = np.zeros(dataset.num_contents, dtype=bool)
        mask[fold.history["i"].to_numpy()] = True
        return mask
    return np.ones(dataset.num_contents, dtype=bool)


def search_width(size: int, candidates: np.ndarray | None) -> int:
    """How many neighbours to search so that ``size`` candidates survive :func:`restrict_pool`:
    ``size`` plus the number of non-candidates (each can take at most one slot of a row)."""
    return size if candidates is None else size + int(np.count_nonzero(~np.asarray(candidates, dtype=bool)))


def non_candidate_entries(pool: CandidatePool, candidates: np.ndarray | None, size: int | None = None) -> int:
    """Entries of the first ``size`` columns of ``pool`` (default: all) that are not candidates:
    what an unrestricted pool would have spent on contents that may not be recommended."""
    if candidates is None:
        return 0
    n = pool.neighbors[:, :size]
    return int(((n >= 0) & ~np.asarray(candidates, dtype=bool)[np.maximum(n, 0)]).sum())


def restrict_pool(pool: CandidatePool, candidates: np.ndarray | None, size: int) -> CandidatePool:
    """Drop the non-candidates from every row of ``pool``, keep the order, cut to ``size`` columns.

    Args:
        pool: ``neighbors [C, W]`` / ``scores [C, W]``, searched ``W = search_width(size, candidates)`` wide.
        candidates: bool ``[C]`` (None: keep every content, only cut to ``size``).
        size: P, the columns kept.

    Returns:
        A :class:`CandidatePool` ``[C, size]``, -1 / NaN padded where a row has fewer candidates.
    """
    neighbors, scores = pool.neighbors, pool.scores
    if candidates is not None:
        mask = np.asarray(candidates, dtype=bool)
        if mask.shape != (pool.num_contents,):
            raise ValueError(f"candidates must be a bool mask of shape [{pool.num_contents}], got {mask.shape}")
        kept = pool.keep_entries(mask[np.maximum(neighbors, 0)])  # kept entries first, in their rank order
        neighbors, scores = kept.neighbors, kept.scores
    out_n = np.full((pool.num_contents, size), -1, dtype=np.int64)
    out_s = np.full((pool.num_contents, size), np.nan, dtype=np.float32)
    w = min(size, neighbors.shape[1])
    out_n[:, :w], out_s[:, :w] = neighbors[:, :w], scores[:, :w]
    return CandidatePool(out_n, out_s)
