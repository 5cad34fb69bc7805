"""The small contract every recall model follows, so that train.py and evaluate.py serve them alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from graphrecall.data.schema import FeedDataset
from graphrecall.data.splits import Fold


@dataclass
class Recommendations:
    """Top-K lists for a set of users.

    Attributes:
        users: [U] user rows served.
        items: [U, K] int64 content rows in rank order, -1 padded; training items already removed.
        counters: per-user int arrays that explain how lists were filled (e.g. ``backfilled``).
    """

    users: np.ndarray
    items: np.ndarray
    counters: dict[str, np.ndarray] = field(default_factory=dict)


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
