"""Offline i2i candidate pool: the top-P related contents of every content (design brief, sec. 2)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass
class CandidatePool:
    """Top-P neighbours of every content.

    Attributes:
        neighbors: [C, P] int64 content rows in rank order, -1 where a content has fewer than P.
        scores: [C, P] float32 similarity of each neighbour (NaN where padded).
    """

    neighbors: np.ndarray
    scores: np.ndarray

    @property
    def num_contents(self) -> int:
        return self.neighbors.shape[0]

    @property
    def size(self) -> int:
        return self.neighbors.shape[1]

    def empty_rows(self) -> int:
        """Contents with no candidate at all (they can only be served by the back-fill)."""
        return int((self.neighbors[:, 0] < 0).sum()) if self.size else self.num_contents

    @classmethod
    def from_csr(cls, weights: sp.csr_matrix, size: int) -> "CandidatePool":
        """Top-``size`` entries of every row of a weighted graph, by weight (ties: lower index)."""
        from graphrecall.graphs.coclick import top_k_entries

        w = weights.tocsr()
        n = w.shape[0]
        entries, rows, rank = top_k_entries(w, size)
        neighbors = np.full((n, size), -1, dtype=np.int64)
        scores = np.full((n, size), np.nan, dtype=np.float32)
        neighbors[rows, rank] = w.indices[entries]
        scores[rows, rank] = w.data[entries]
        return cls(neighbors, scores)

    def keep_entries(self, keep: np.ndarray) -> "CandidatePool":
        """The pool with only the entries where ``keep`` ([C, P] bool) is True, moved to the front
        of their row in rank order; the freed tail is -1 / NaN padded."""
        keep = keep & (self.neighbors >= 0)
        order = np.argsort(~keep, axis=1, kind="stable")
        neighbors = np.where(np.take_along_axis(keep, order, 1), np.take_along_axis(self.neighbors, order, 1), -1)
        scores = np.where(neighbors >= 0, np.take_along_axis(self.scores, order, 1), np.nan).astype(np.float32)
        return CandidatePool(neighbors, scores)

    def to_frame(self, content_ids: np.ndarray) -> pd.DataFrame:
        """Long format: ``content_id, neighbour_id, rank (1-based), score``."""
        r, c = np.nonzero(self.neighbors >= 0)
        return pd.DataFrame(
            {
                "content_id": content_ids[r],
                "neighbour_id": content_ids[self.neighbors[r, c]],
                "rank": (c + 1).astype(np.int32),
                "score": self.scores[r, c],
            }
        )

    def save(self, path: str | Path, content_ids: np.ndarray) -> None:
        """Write the pool as parquet, atomically (temp file, then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        self.to_frame(content_ids).to_parquet(tmp, index=False)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path, content_ids: np.ndarray) -> "CandidatePool":
        """Read a pool written by :meth:`save`; ``content_ids`` is the catalogue order."""
        return cls.from_frame(pd.read_parquet(path), content_ids, str(path))

    @classmethod
    def from_frame(cls, df: pd.DataFrame, content_ids: np.ndarray, source: str = "pool") -> "CandidatePool":
        """The pool of a long-format frame (:meth:`to_frame`; ``source`` names it in errors)."""
        index = pd.Index(content_ids)
        src, dst = index.get_indexer(df["content_id"]), index.get_indexer(df["neighbour_id"])
        if (src < 0).any() or (dst < 0).any():
            raise ValueError(f"{source}: pool names contents absent from the catalogue")
        size = int(df["rank"].max()) if len(df) else 0
        neighbors = np.full((len(content_ids), size), -1, dtype=np.int64)
        scores = np.full((len(content_ids), size), np.nan, dtype=np.float32)
        col = df["rank"].to_numpy() - 1
        neighbors[src, col] = dst
        scores[src, col] = df["score"].to_numpy()
        return cls(neighbors, scores)
