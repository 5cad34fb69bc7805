"""Offline i2i pool from content vectors: the top-P contents by inner product (brief, section 2).

``exact`` is a chunked torch matmul + topk (the fastest exact search measured on 2 CPU cores and on
one H200, see the README); ``faiss`` is ``IndexFlatIP`` (same results); ``hnsw`` is an approximate
faiss HNSW index for large catalogues, whose recall against exact search is measured and reported.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from graphrecall.recall.pool import CandidatePool


@torch.inference_mode()
def exact_topk(vectors: Tensor, k: int, chunk_size: int = 4096, exclude_self: bool = True) -> CandidatePool:
    """Exact top-``k`` neighbours of every row by inner product.

    Args:
        vectors: [C, d] content vectors (any device; results come back on the CPU).
        k: neighbours per content.
        chunk_size: query rows per matmul (memory ~ chunk_size x C scores).
        exclude_self: drop each content from its own list.

    Returns:
        A :class:`CandidatePool` with ``neighbors [C, k]`` and ``scores [C, k]``.
    """
    n = vectors.shape[0]
    k_eff = min(k, n - 1 if exclude_self else n)
    neighbors = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), np.nan, dtype=np.float32)
    if k_eff <= 0:
        return CandidatePool(neighbors, scores)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        s = vectors[start:stop] @ vectors.T  # [b, C]
        if exclude_self:
            s[torch.arange(stop - start), torch.arange(start, stop)] = float("-inf")
        top = torch.topk(s, k_eff, dim=1)
        neighbors[start:stop, :k_eff] = top.indices.cpu().numpy()
        scores[start:stop, :k_eff] = top.values.float().cpu().numpy()
    return CandidatePool(neighbors, scores)
