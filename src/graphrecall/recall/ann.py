"""Offline i2i pool from content vectors: the top-P contents by inner product (brief, section 2).

``exact`` is a chunked torch matmul + topk (the fastest exact search measured on 2 CPU cores and on
one H200, see the README); ``faiss`` is ``IndexFlatIP`` (same results); ``hnsw`` is an approximate
faiss HNSW index for large catalogues, whose recall against exact search is measured and reported.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from graphrecall.recall.pool import CandidatePool


@torch.inference_mode()
def exact_topk(vectors: Tensor, k: int, chunk_size: int = 4096, exclude_self: bool = True,
               queries: Tensor | None = None, scale: float = 1.0, item_bias: Tensor | None = None,
               softmax: bool = False, columns: Tensor | np.ndarray | None = None,
               normalise_over: Tensor | np.ndarray | None = None) -> CandidatePool:
    r"""Exact top-``k`` neighbours of every row by inner product.

    With ``scale``, ``item_bias`` and ``softmax`` the score of content ``c`` for row ``t`` is a
    trained next-click model's probability (or logit without ``softmax``):

    .. math::
        p(c \mid t) = \frac{\exp s_{tc}}{\sum_{c' \in N,\, c' \ne t} \exp s_{tc'}}, \qquad
        s_{tc} = \mathrm{scale}\,\langle v_t, v_c\rangle + \mathrm{bias}_c

    normalised over ``N``, the contents that may be recommended (``normalise_over``, default the
    whole catalogue; the row itself excluded), so that the scores of different rows are
    comparable, a decayed sum over triggers is a mixture of their next-click distributions, and
    contents that are no candidates at the cut (published later) take no probability mass.

    Args:
        vectors: [C, d] content vectors (any device; results come back on the CPU).
        k: neighbours per content.
        chunk_size: query rows per matmul (memory ~ chunk_size x C scores).
        exclude_self: drop each content from its own list.
        queries: [Q] rows to search for (default: all ``C``), e.g. a sample to measure ANN recall.
        scale: multiplies the inner products (e.g. 1 / temperature).
        item_bias: [C] added to every row's scores (a learned popularity term).
        softmax: scores become probabilities over the catalogue (the row itself excluded when
            ``exclude_self``).
        columns: [C'] content rows the neighbours are chosen from (default: every content); the
            softmax still normalises over ``normalise_over``, so the scores equal the unrestricted
            search's (e.g. a pool of new contents only, :mod:`graphrecall.recall.channels`).
        normalise_over: bool [C], the contents the softmax sums over (the candidates at the cut,
            :func:`graphrecall.recall.candidates.candidate_mask`); default every content. A
            content outside it still gets a score on the same scale (``exp(s) / the sum over
            N``) and is dropped later by :func:`~graphrecall.recall.candidates.restrict_pool`.

    Returns:
        A :class:`CandidatePool` with ``neighbors [Q, k]`` and ``scores [Q, k]``.
    """
    n = vectors.shape[0]
    queries = torch.arange(n) if queries is None else torch.as_tensor(queries, dtype=torch.long).cpu()
    q = queries.numel()
    cols = None if columns is None else torch.as_tensor(np.asarray(columns), dtype=torch.long).to(vectors.device)
    width = n if cols is None else int(cols.numel())
    norm = None
    if normalise_over is not None:
        norm = torch.as_tensor(np.asarray(normalise_over), dtype=torch.bool).to(vectors.device)
        if norm.shape != (n,):
            raise ValueError(f"normalise_over must be a bool mask of shape [{n}], got {tuple(norm.shape)}")
    # a row may be among the columns: it is excluded from its own list, so one fewer remains
    k_eff = min(k, width - 1 if exclude_self and cols is None else width)
    neighbors = np.full((q, k), -1, dtype=np.int64)
    scores = np.full((q, k), np.nan, dtype=np.float32)
    if k_eff <= 0:
        return CandidatePool(neighbors, scores)
    for start in range(0, q, chunk_size):
        stop = min(start + chunk_size, q)
        rows = queries[start:stop].to(vectors.device)
        s = vectors[rows] @ vectors.T  # [b, C]
        if scale != 1.0:
            s = s * scale
        if item_bias is not None:
            s = s + item_bias.to(s.device, s.dtype).unsqueeze(0)
        if exclude_self:
            s[torch.arange(stop - start, device=s.device), rows] = float("-inf")
        if softmax:
            if norm is None:
                s = torch.softmax(s, dim=1)
            else:  # exp(s) / sum over the candidates; a row without any candidate gets 0 everywhere
                log_z = torch.logsumexp(s.masked_fill(~norm.unsqueeze(0), float("-inf")), dim=1, keepdim=True)
                s = torch.exp(s - log_z.nan_to_num(nan=float("inf"), neginf=float("inf")))
        if cols is not None:
            s = s[:, cols]
        top = torch.topk(s, k_eff, dim=1)
        idx = top.indices if cols is None else cols[top.indices]
        neighbors[start:stop, :k_eff] = idx.cpu().numpy()
        scores[start:stop, :k_eff] = top.values.float().cpu().numpy()
    pool = CandidatePool(neighbors, scores)
    if cols is not None and exclude_self:  # a row among the columns met itself at -inf: drop that entry
        own = neighbors == queries.numpy()[:, None]
        if own.any():
            pool = pool.keep_entries(~own)
    return pool


def _as_float32(vectors: Tensor | np.ndarray) -> np.ndarray:
    """C-contiguous float32 numpy copy on the CPU (what faiss takes)."""
    if isinstance(vectors, Tensor):
        vectors = vectors.detach().float().cpu().numpy()
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _search_pool(index, x: np.ndarray, k: int, exclude_self: bool) -> CandidatePool:
    """Search every row of ``x`` in ``index`` and drop each row's own id (``k + 1`` searched)."""
    n = x.shape[0]
    k_search = min(k + int(exclude_self), n)
    neighbors = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), np.nan, dtype=np.float32)
    if k_search - int(exclude_self) <= 0:
        return CandidatePool(neighbors, scores)
    dist, ids = index.search(x, k_search)
    if exclude_self:
        # Drop the row itself wherever it was returned (not always first: duplicate vectors tie),
        # otherwise the extra last result, so that every row drops exactly one.
        drop = ids == np.arange(n)[:, None]
        drop[~drop.any(axis=1), -1] = True
        ids = ids[~drop].reshape(n, -1)
        dist = dist[~drop].reshape(n, -1)
    found = ids >= 0  # faiss pads with -1 when it finds fewer (HNSW with a small ef)
    neighbors[:, : ids.shape[1]] = ids
    scores[:, : ids.shape[1]] = np.where(found, dist, np.nan)
    return CandidatePool(neighbors, scores)


def faiss_flat_topk(vectors: Tensor | np.ndarray, k: int, exclude_self: bool = True) -> CandidatePool:
    """Exact top-``k`` by inner product with faiss ``IndexFlatIP``; same contract as :func:`exact_topk`."""
    import faiss

    x = _as_float32(vectors)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    return _search_pool(index, x, k, exclude_self)


def hnsw_topk(vectors: Tensor | np.ndarray, k: int, M: int = 32, ef_search: int = 128,
              exclude_self: bool = True, ef_construction: int = 40) -> CandidatePool:
    """Approximate top-``k`` by inner product with a faiss HNSW graph (``IndexHNSWFlat``).

    Args:
        vectors: [C, d] content vectors.
        k: neighbours per content.
        M: graph degree (memory and build time grow with it).
        ef_search: search beam; raised to ``k + 1`` when smaller (HNSW returns at most ``ef``).
        exclude_self: drop each content from its own list.
        ef_construction: build beam (faiss default 40).

    Returns:
        A :class:`CandidatePool` ``[C, k]``; measure its quality with :func:`pool_recall`.
    """
    import faiss

    x = _as_float32(vectors)
    index = faiss.IndexHNSWFlat(x.shape[1], M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(x)
    index.hnsw.efSearch = max(ef_search, k + 1)
    return _search_pool(index, x, k, exclude_self)


def pool_recall(approx: CandidatePool, exact: CandidatePool) -> float:
    """Mean over rows of the share of ``exact``'s neighbours that ``approx`` also found.

    Rows are matched by position (both pools must have the same rows); rows where ``exact`` has no
    neighbour are skipped (NaN when all are). Order within a row does not matter.
    """
    if approx.num_contents != exact.num_contents:
        raise ValueError(f"pools have {approx.num_contents} and {exact.num_contents} rows")
    n = exact.num_contents
    width = int(max(approx.neighbors.max(initial=-1), exact.neighbors.max(initial=-1))) + 1
    rows_e = np.repeat(np.arange(n), exact.size).reshape(n, exact.size)
    rows_a = np.repeat(np.arange(n), approx.size).reshape(n, approx.size)
    valid_e, valid_a = exact.neighbors >= 0, approx.neighbors >= 0
    key_e = rows_e[valid_e] * width + exact.neighbors[valid_e]
    key_a = rows_a[valid_a] * width + approx.neighbors[valid_a]
    hits = np.bincount(rows_e[valid_e][np.isin(key_e, key_a)], minlength=n)
    total = valid_e.sum(axis=1)
    has = total > 0
    return float(np.mean(hits[has] / total[has])) if has.any() else float("nan")


def build_pool(vectors: Tensor, k: int, method: str = "exact", recall_sample: int = 2000,
               seed: int = 0, **kwargs) -> tuple[CandidatePool, dict]:
    """The candidate pool by ``exact`` | ``faiss`` | ``hnsw`` search, with what it cost.

    Args:
        vectors: [C, d] content vectors.
        k: neighbours per content.
        method: ``exact`` (torch, :func:`exact_topk`), ``faiss`` (:func:`faiss_flat_topk`) or
            ``hnsw`` (:func:`hnsw_topk`).
        recall_sample: for ``hnsw``, query rows (at most) on which recall against exact search is
            measured, so that checking stays cheap on large catalogues.
        seed: seed of that sample.
        **kwargs: passed to the search function (``chunk_size``, ``M``, ``ef_search``, ``exclude_self``).

    Returns:
        (pool, info) with ``info = {method, k, num_contents, seconds}`` and, for ``hnsw``,
        ``recall`` (against exact top-``k``), ``recall_queries`` and ``recall_seconds``.
    """
    search = {"exact": exact_topk, "faiss": faiss_flat_topk, "hnsw": hnsw_topk}
    if method not in search:
        raise ValueError(f"unknown pool method '{method}'; expected one of {sorted(search)}")
    n = vectors.shape[0]
    start = time.perf_counter()
    pool = search[method](vectors, k, **kwargs)
    info = {"method": method, "k": k, "num_contents": n, "seconds": time.perf_counter() - start}
    if method == "hnsw":
        start = time.perf_counter()
        rows = np.sort(np.random.default_rng(seed).choice(n, size=min(recall_sample, n), replace=False))
        x = torch.as_tensor(_as_float32(vectors))
        exact = exact_topk(x, k, exclude_self=kwargs.get("exclude_self", True), queries=torch.from_numpy(rows))
        approx = CandidatePool(pool.neighbors[rows], pool.scores[rows])
        info.update(recall=pool_recall(approx, exact), recall_queries=int(rows.size),
                    recall_seconds=time.perf_counter() - start)
    return pool, info
