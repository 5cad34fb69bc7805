"""The small contract every recall model follows, so that train.py and evaluate.py serve them alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from graphrecall.data.schema import FeedDataset
from graphrecall.data.splits import Fold


# where an entry of a list came from: int8 codes, named by ``Recommendations.source_names``
NO_SOURCE = -1  # padding (no entry)
MODEL, BACKFILL = 0, 1
BASE_SOURCES = ("model", "backfill")


def channel_source(name: str) -> str:
    """The source name of the entries a recall channel (``recall.channels.<name>``) reserved."""
    return f"channel:{name}"


def block_sources(blocks: list[tuple[int, np.ndarray]], k: int) -> np.ndarray:
    """Source codes of lists made of consecutive blocks (the model's entries, then the back-fill...).

    Args:
        blocks: ``(code, [U] entries of that block)`` in list order.
        k: K, the list length.

    Returns:
        [U, K] int8: ``code`` in each block's columns, :data:`NO_SOURCE` after the last block.
    """
    num_users = len(blocks[0][1]) if blocks else 0
    out = np.full((num_users, k), NO_SOURCE, dtype=np.int8)
    col = np.arange(k)[None, :]
    start = np.zeros((num_users, 1), dtype=np.int64)
    for code, count in blocks:
        end = start + np.asarray(count, dtype=np.int64)[:, None]
        out[(col >= start) & (col < end)] = code
        start = end
    return out


def source_labels(codes: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """The names of source ``codes`` (any shape, int): ``names[code]``, ``""`` for :data:`NO_SOURCE`.

    Raises:
        ValueError: a code outside ``-1 .. len(names) - 1``.
    """
    codes = np.asarray(codes)
    if codes.size and (codes.min() < NO_SOURCE or codes.max() >= len(names)):
        raise ValueError(f"source codes must lie in -1..{len(names) - 1} (names {list(names)}), "
                         f"got {int(codes.min())}..{int(codes.max())}")
    return np.asarray(("",) + tuple(names), dtype=object)[codes.astype(np.int64) + 1]


@dataclass
class Recommendations:
    """Top-K lists for a set of users.

    Attributes:
        users: [U] user rows served.
        items: [U, K] int64 content rows in rank order, -1 padded; training items already removed.
        counters: per-user int arrays that explain how lists were filled (e.g. ``backfilled``).
        scores: [U, K] float64 model score of each entry (what the model ranked it by), NaN where an
            entry has none (back-fill, padding; with ``recall.prior_weight`` every entry, back-fill
            included, carries its merged score); None: the model reported no scores.
        sources: [U, K] int8 source code of each entry (:data:`MODEL`, :data:`BACKFILL`, a channel...;
            :data:`NO_SOURCE` where padded), named by ``source_names``; None: not reported.
        source_names: the name of every code, ``source_names[code]`` (:meth:`source_labels`).
    """

    users: np.ndarray
    items: np.ndarray
    counters: dict[str, np.ndarray] = field(default_factory=dict)
    scores: np.ndarray | None = None
    sources: np.ndarray | None = None
    source_names: tuple[str, ...] = BASE_SOURCES

    def source_labels(self) -> np.ndarray | None:
        """[U, K] object array of source names (``""`` where padded); None when no sources were reported."""
        return None if self.sources is None else source_labels(self.sources, self.source_names)

    def head(self, k: int) -> "Recommendations":
        """The first ``k`` entries of every list, with their scores and sources (counters unchanged)."""
        cut = (lambda a: None if a is None else a[:, :k])
        return Recommendations(self.users, self.items[:, :k], self.counters, cut(self.scores), cut(self.sources),
                               self.source_names)


class Recommender(Protocol):
    """fit on one fold's training clicks, then serve users; save/load the fitted artefact."""

    name: str

    def fit(self, fold: Fold, dataset: FeedDataset, cache_dir: str | None = None,
            run_dir: Path | None = None) -> dict[str, Any]:
        """Fit on ``fold.train`` (trainable models train on the first fold they get and select on its
        targets; later folds reuse the weights); returns statistics to log (graph stats, fit time...)."""
        ...

    def recommend(self, users: np.ndarray, fold: Fold, k: int) -> Recommendations:
        """Top-``k`` contents for each user row, excluding what the user clicked in ``fold.history``."""
        ...

    def save(self, directory: Path, dataset: FeedDataset) -> None: ...

    def load(self, directory: Path, fold: Fold, dataset: FeedDataset) -> None: ...
