"""Side information of contents as ID features (design brief, section 2, "Encoder").

Every side-info field becomes a bag of value ids per content: one id for single-valued fields
(style, space, designer), several for multi-valued ones (mounted products, their categories,
genres), possibly none. Bags are stored as CSR so that a batch of contents gathers its ids for
``nn.EmbeddingBag`` without Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from graphrecall.data.schema import FeedDataset
from graphrecall.graphs.sampling import gather_rows
from graphrecall.metrics import labels_to_csr


@dataclass
class FieldBags:
    """One field: ``values[indptr[c]:indptr[c+1]]`` are the value ids of content ``c``."""

    indptr: Tensor
    values: Tensor
    num_values: int

    def gather(self, contents: Tensor) -> tuple[Tensor, Tensor]:
        """(flat value ids, offsets [n]) of a batch of contents, the ``nn.EmbeddingBag`` input."""
        pos, owner = gather_rows(self.indptr, contents)
        counts = self.indptr[contents + 1] - self.indptr[contents]
        offsets = torch.cumsum(counts, 0) - counts
        return self.values[pos], offsets

    def to(self, device: torch.device | str) -> "FieldBags":
        return FieldBags(self.indptr.to(device), self.values.to(device), self.num_values)


def content_features(dataset: FeedDataset, fields: list[str] | None = None) -> dict[str, FieldBags]:
    """Bags of every side-info field (default: all of ``dataset.side_info``), in catalogue order."""
    fields = list(dataset.side_info) if fields is None else list(fields)
    unknown = [f for f in fields if f not in dataset.contents.columns]
    if unknown:
        raise ValueError(f"feature fields {unknown} are not columns of the contents table {list(dataset.side_info)}")
    out = {}
    for f in fields:
        m, vocab = labels_to_csr(dataset.contents[f])
        m.sort_indices()
        out[f] = FieldBags(torch.from_numpy(m.indptr.astype(np.int64)),
                           torch.from_numpy(m.indices.astype(np.int64)), len(vocab))
    return out
