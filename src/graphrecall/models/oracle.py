"""Reference ceiling on synthetic data: rank contents by the *true* interest of each user.

Not a recall model one could deploy: it reads the generator's ground truth. It tells how much of
the interest-only test any model could recover, which puts the other rows' numbers in scale. Like
the learned models it ranks only the candidates at the cut (contents published by then, see
:mod:`graphrecall.recall.candidates`): a ceiling that recommended unpublished contents would not be
one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from graphrecall.data.schema import FeedDataset
from graphrecall.data.splits import Fold
from graphrecall.models.base import MODEL, NO_SOURCE, Recommendations
from graphrecall.recall.candidates import candidate_mask
from graphrecall.recall.triggers import seen_matrix


class TrueInterestOracle:
    """Top-k unseen contents by ``<user_interest, content_vector>`` from ``dataset.truth``; that true
    interest is each entry's reported score."""

    def __init__(self) -> None:
        self.name = "oracle"

    def fit(self, fold: Fold, dataset: FeedDataset, cache_dir: str | None = None, **_: Any) -> dict[str, Any]:
        if dataset.truth is None or "user_interest" not in dataset.truth:
            raise ValueError(f"model=oracle needs a dataset with ground truth (synthetic), got '{dataset.name}'")
        self.truth = dataset.truth
        self.candidate_rows = candidate_mask(fold, dataset, "auto")
        return {"candidates": int(self.candidate_rows.sum())}

    def recommend(self, users: np.ndarray, fold: Fold, k: int) -> Recommendations:
        from graphrecall.data.synthetic import true_interest_scores

        scores = true_interest_scores(self.truth, users).astype(np.float64)
        seen = seen_matrix(fold.history, users, scores.shape[1]).tocoo()
        scores[seen.row, seen.col] = -np.inf
        scores[:, ~self.candidate_rows] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        items = np.take_along_axis(top, order, axis=1).astype(np.int64)
        entry_scores = np.take_along_axis(top_scores, order, axis=1)
        padded = ~np.isfinite(entry_scores)  # seen or not a candidate
        items[padded], entry_scores[padded] = -1, np.nan
        sources = np.where(padded, NO_SOURCE, MODEL).astype(np.int8)
        return Recommendations(users, items, scores=entry_scores, sources=sources)

    def save(self, directory: Path, dataset: FeedDataset) -> None:
        """Nothing to save: the truth is regenerated with the dataset."""

    def load(self, directory: Path, fold: Fold, dataset: FeedDataset) -> None:
        self.fit(fold, dataset)
