"""Session co-click graphs (design brief, section 2).

Clicks are grouped per user into fixed sessions of ``session_days`` (buckets counted from the
window start). With ``S(u,s)`` the set of items user ``u`` clicked in session ``s``:

.. math::
    N(i,j) = |\\{(u,s) : i \\in S(u,s), j \\in S(u,s)\\}|, \\quad i \\neq j

    w_{ij} = N(i,j) / \\sum_k N(i,k) \\quad \\text{(row-normalised, directed)}

and an edge is kept when ``w_ij > tau`` (and optionally ``N(i,j) >= min_count``). Alternatives:
``confidence`` = N(i,j)/N(i) with N(i) the sessions containing i, ``cosine`` =
N(i,j)/sqrt(N(i) N(j)) (undirected), and ``ordered`` = row-normalised counts of j clicked after i.

Everything is vectorised: the counts are one sparse product ``B^T B`` of the binary
session-by-item incidence matrix ``B``. The same functions build every homogeneous view: a view
replaces each content by its side-info value(s) through ``B @ M`` before counting.

The graph is returned as a row-major CSR matrix ``W`` [I, I]: row ``i`` lists the neighbours ``j``
of ``i`` with weight ``w_ij``. In PyG form, ``edge_index[0] = i`` and ``edge_index[1] = j``.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch_geometric.data import Data

log = logging.getLogger(__name__)
Weighting = Literal["row", "confidence", "cosine", "ordered"]
DAY_SECONDS = 86_400
_MIN_NNZ_FOR_THREADS = 200_000  # smaller incidence matrices: one plain scipy product


def session_codes(
    user_codes: np.ndarray, timestamps: np.ndarray, session_days: float, origin: int
) -> tuple[np.ndarray, int]:
    """Dense session id per click: one session per (user, ``session_days`` bucket since ``origin``).

    Args:
        user_codes: [N] int user index of each click.
        timestamps: [N] int64 Unix seconds.
        session_days: bucket length in days.
        origin: bucket origin (the window start), Unix seconds.

    Returns:
        ([N] int64 session code in 0..S-1, S).
    """
    bucket = (np.asarray(timestamps, dtype=np.int64) - origin) // int(session_days * DAY_SECONDS)
    bucket -= bucket.min(initial=0)  # clicks before ``origin``: keep buckets >= 0 so users never collide
    keys = np.asarray(user_codes, dtype=np.int64) * (int(bucket.max(initial=0)) + 1) + bucket
    if len(keys) and keys.min() >= 0 and keys.max() <= 4 * len(keys) + 1_000_000:
        # the usual case (few buckets per user): rank the keys with a dense table, O(N) instead of
        # a sort; same codes as np.unique (sessions numbered by user, then bucket)
        present = np.zeros(int(keys.max()) + 1, dtype=bool)
        present[keys] = True
        rank = np.cumsum(present, dtype=np.int64) - 1
        return rank[keys], int(rank[-1]) + 1
    uniq, codes = np.unique(keys, return_inverse=True)
    return codes.astype(np.int64), len(uniq)


def incidence_matrix(
    session: np.ndarray, item: np.ndarray, num_sessions: int, num_items: int
) -> sp.csr_matrix:
    """Binary session-by-item matrix B [S, I]; repeat clicks in a session count once."""
    data = np.ones(len(session), dtype=np.float32)
    b = sp.csr_matrix((data, (session, item)), shape=(num_sessions, num_items))
    b.sum_duplicates()
    b.data[:] = 1.0
    return b


def map_to_view(incidence: sp.csr_matrix, content_to_values: sp.csr_matrix) -> sp.csr_matrix:
    """Replace each content of every session by its side-info value(s): binary ``(B @ M) > 0``.

    Args:
        incidence: [S, C] binary session-by-content matrix.
        content_to_values: [C, V] binary content-to-value matrix (multi-valued rows allowed).

    Returns:
        [S, V] binary session-by-value matrix.
    """
    out = (incidence @ content_to_values).tocsr()
    out.data[:] = 1.0
    out.eliminate_zeros()
    return out


def _default_threads() -> int:
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    except AttributeError:  # not available on every platform
        return max(1, min(os.cpu_count() or 1, 8))


def cooccurrence_counts(incidence: sp.csr_matrix, num_threads: int | None = None) -> sp.csr_matrix:
    """N(i,j) = number of sessions containing both i and j, zero diagonal. Shape [I, I], int64.

    The column indices of a row are *not* sorted (sorting ~50M entries would cost more than the
    product; call ``sort_indices()`` if needed). ``B^T B`` is computed in blocks of item rows of
    similar work on ``num_threads`` threads (default: the usable cores, at most 8), written straight
    into the result (scipy's kernels release the GIL); the result does not depend on the split.
    """
    b = incidence.tocsr().astype(np.int64)
    bt = b.T.tocsr()
    num_threads = _default_threads() if num_threads is None else max(1, int(num_threads))
    if num_threads > 1 and b.nnz >= _MIN_NNZ_FOR_THREADS:
        try:
            counts = _blocked_product(bt, b, num_threads)
        except (ImportError, AttributeError, TypeError, RuntimeError) as e:  # private scipy API moved
            log.debug("blocked B^T B unavailable (%s); using one scipy product", e)
            counts = None
    else:
        counts = None
    if counts is None:
        counts = (bt @ b).tocsr()
        counts.setdiag(0)
    counts.eliminate_zeros()  # the diagonal (every other count is >= 1)
    return counts


def _blocked_product(bt: sp.csr_matrix, b: sp.csr_matrix, num_threads: int) -> sp.csr_matrix:
    """``bt @ b`` with a zeroed (still stored) diagonal, blocks of rows computed in threads and
    written into one preallocated result (no per-block matrices to concatenate)."""
    from scipy.sparse._sparsetools import csr_matmat, csr_matmat_maxnnz, csr_sample_offsets

    num_rows, num_cols = bt.shape[0], b.shape[1]
    # work of an item row: the summed sizes of its sessions; 2 blocks per thread balance the load
    work = np.cumsum(bt @ np.diff(b.indptr).astype(np.float64))
    inner = np.searchsorted(work, np.linspace(0.0, work[-1], 2 * num_threads + 1)[1:-1])
    bounds = np.unique(np.r_[0, inner, num_rows])
    idx = np.int32
    blocks = []
    for r0, r1 in zip(bounds[:-1], bounds[1:]):
        a0, a1 = bt.indptr[r0], bt.indptr[r1]
        blocks.append((int(r0), int(r1), (bt.indptr[r0 : r1 + 1] - a0), bt.indices[a0:a1], bt.data[a0:a1]))

    def as_idx(arrays, dtype):
        return [np.asarray(a, dtype=dtype) for a in arrays]

    bp, bj = as_idx((b.indptr, b.indices), idx)
    with ThreadPoolExecutor(num_threads) as pool:
        sizes = list(pool.map(lambda k: csr_matmat_maxnnz(
            k[1] - k[0], num_cols, *as_idx((k[2], k[3]), idx), bp, bj), blocks))
    total = int(sum(sizes))
    if total >= np.iinfo(np.int32).max:
        idx = np.int64
        bp, bj = as_idx((b.indptr, b.indices), idx)
    offsets = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    indices = np.empty(total, dtype=idx)
    data = np.empty(total, dtype=np.int64)
    indptr = np.empty(num_rows + 1, dtype=idx)
    indptr[-1] = total

    def run(k: int) -> None:
        r0, r1, ap, aj, ax = blocks[k]
        o0, o1 = offsets[k], offsets[k + 1]
        ap, aj = as_idx((ap, aj), idx)
        local = np.empty(r1 - r0 + 1, dtype=idx)
        block_indices, block_data = indices[o0:o1], data[o0:o1]
        csr_matmat(r1 - r0, num_cols, ap, aj, ax, bp, bj, b.data, local, block_indices, block_data)
        if local[-1] != o1 - o0:
            raise RuntimeError("unexpected number of entries in a product block")
        indptr[r0:r1] = local[:-1] + o0
        # zero the diagonal N(i,i): offsets of the entries (i, i) of the block, -1 where absent
        diag = np.empty(r1 - r0, dtype=idx)
        csr_sample_offsets(r1 - r0, num_cols, local, block_indices, r1 - r0,
                           np.arange(r1 - r0, dtype=idx), np.arange(r0, r1, dtype=idx), diag)
        block_data[diag[diag >= 0]] = 0

    with ThreadPoolExecutor(num_threads) as pool:
        list(pool.map(run, range(len(blocks))))
    return sp.csr_matrix((data, indices, indptr), shape=(num_rows, num_cols))


def ordered_counts(
    session: np.ndarray, item: np.ndarray, timestamps: np.ndarray, num_items: int
) -> sp.csr_matrix:
    """N_ord(i,j) = number of sessions in which j was first clicked after i was first clicked.

    Enumerates within-session pairs (memory ~ sum of squared session sizes): slower than
    :func:`cooccurrence_counts`, offered as the directed alternative.
    """
    order = np.lexsort((timestamps, item, session))
    s, i, t = session[order], item[order], timestamps[order]
    first = np.ones(len(s), dtype=bool)
    first[1:] = (s[1:] != s[:-1]) | (i[1:] != i[:-1])  # first click of each (session, item)
    s, i, t = s[first], i[first], t[first]
    order = np.lexsort((i, t, s))  # by session, then time
    s, i = s[order], i[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    sizes = np.diff(np.r_[starts, len(s)])
    pos = np.arange(len(s)) - np.repeat(starts, sizes)  # position inside its session
    later = np.repeat(sizes, sizes) - pos - 1  # number of items after each element
    src = np.repeat(np.arange(len(s)), later)
    # offset of each later partner: 1..later[k]
    offs = np.arange(len(src)) - np.repeat(np.cumsum(later) - later, later) + 1
    dst = src + offs
    counts = sp.csr_matrix(
        (np.ones(len(src), dtype=np.int64), (i[src], i[dst])), shape=(num_items, num_items)
    )
    counts.sum_duplicates()
    counts.setdiag(0)
    counts.eliminate_zeros()
    counts.sort_indices()
    return counts


def _row_scale(m: sp.csr_matrix, scale: np.ndarray, block: int = 1 << 22) -> sp.csr_matrix:
    """float64 ``diag(scale) @ m``; the result shares ``m``'s index arrays (same sparsity pattern).

    Rows are scaled in blocks of about ``block`` entries, so no [nnz] temporary is allocated.
    """
    m = m.tocsr()
    data = m.data.astype(np.float64, copy=True)
    indptr = m.indptr
    cuts = np.searchsorted(indptr, np.arange(block, m.nnz, block))
    bounds = np.unique(np.r_[0, cuts, m.shape[0]])
    for r0, r1 in zip(bounds[:-1], bounds[1:]):
        p0, p1 = indptr[r0], indptr[r1]
        data[p0:p1] *= np.repeat(scale[r0:r1], np.diff(indptr[r0 : r1 + 1]))
    return sp.csr_matrix((data, m.indices, indptr), shape=m.shape)


def edge_weights(
    counts: sp.csr_matrix, weighting: Weighting = "row", item_sessions: np.ndarray | None = None
) -> sp.csr_matrix:
    """Turn co-occurrence counts into edge weights.

    Args:
        counts: [I, I] N(i,j) (for ``ordered``: the ordered counts).
        weighting: ``row`` / ``ordered``: N(i,j)/sum_k N(i,k); ``confidence``: N(i,j)/N(i);
            ``cosine``: N(i,j)/sqrt(N(i) N(j)).
        item_sessions: [I] N(i), sessions containing i (needed by confidence and cosine).

    Returns:
        [I, I] float64 CSR of weights, same sparsity as ``counts`` (``row``, ``confidence`` and
        ``ordered`` share the index arrays of ``counts``: copy before changing the structure in place).
    """
    if weighting in ("row", "ordered"):
        rowsum = np.asarray(counts.sum(axis=1)).ravel().astype(np.float64)
        return _row_scale(counts, np.divide(1.0, rowsum, out=np.zeros_like(rowsum), where=rowsum > 0))
    if item_sessions is None:
        raise ValueError(f"weighting='{weighting}' needs item_sessions (N(i) per item)")
    n = np.asarray(item_sessions, dtype=np.float64)
    if weighting == "confidence":
        return _row_scale(counts, np.divide(1.0, n, out=np.zeros_like(n), where=n > 0))
    if weighting == "cosine":
        inv = np.divide(1.0, np.sqrt(n), out=np.zeros_like(n), where=n > 0)
        w = _row_scale(counts, inv)
        w.data *= inv[w.indices]  # column scale, keeping the pattern (and order) of ``counts``
        return w
    raise ValueError(f"unknown weighting '{weighting}'; expected one of row, confidence, cosine, ordered")


@dataclass
class GraphStats:
    """What one graph build kept and dropped."""

    name: str
    nodes: int
    nodes_with_coclicks: int
    edges_before_threshold: int
    edges_dropped_by_threshold: int
    edges_dropped_by_min_count: int
    edges_dropped_by_top_k: int
    edges: int
    nodes_isolated_by_threshold: int  # had co-clicks, all of them thresholded away
    nodes_without_coclicks: int

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)


def top_k_entries(m: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` largest entries of every CSR row, by weight (ties: lower column first).

    Returns:
        (entries [E'] positions into ``m.data`` / ``m.indices``, ordered by row then rank;
        their rows [E']; their 0-based rank within the row [E']).
    """
    deg = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0]), deg)
    order = np.lexsort((m.indices, -m.data, rows))  # row, then weight desc, then column
    rank = np.arange(len(order)) - np.repeat(m.indptr[:-1], deg)
    keep = rank < k
    entries = order[keep]
    return entries, rows[entries], rank[keep]


def top_k_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of every row (ties: lower column index first)."""
    m = m.tocsr()
    entries, rows, _ = top_k_entries(m, k)
    out = sp.csr_matrix((m.data[entries], (rows, m.indices[entries])), shape=m.shape)
    out.sort_indices()
    return out


def prune_edges(
    weights: sp.csr_matrix,
    counts: sp.csr_matrix,
    tau: float,
    min_count: int = 1,
    top_k: int | None = None,
    name: str = "graph",
) -> tuple[sp.csr_matrix, GraphStats]:
    """Keep ``w_ij > tau`` and ``N(i,j) >= min_count``, then optionally the top-k per row.

    ``weights`` and ``counts`` must share one sparsity pattern (both from :func:`edge_weights`).
    """
    w, c = weights.tocsr(), counts.tocsr()  # same pattern, in the same (possibly unsorted) order
    same = w.indices is c.indices or (w.nnz == c.nnz and np.array_equal(w.indices, c.indices))
    if not same or not np.array_equal(w.indptr, c.indptr):
        raise ValueError("weights and counts must have the same sparsity pattern")
    keep = w.data > tau
    passing_count = w.nnz
    if c.nnz and (min_count > 1 or c.data.min() < min_count):  # (counts are usually all >= 1)
        by_count = c.data >= min_count
        passing_count = int(np.count_nonzero(by_count))
        keep &= by_count
        del by_count
    pos = np.flatnonzero(keep)  # kept entries, row by row
    indptr = np.searchsorted(pos, w.indptr)  # kept entries before each row start
    kept = sp.csr_matrix((w.data[pos], w.indices[pos], indptr), shape=w.shape)
    kept.sort_indices()
    before_top_k = kept.nnz
    if top_k is not None and top_k > 0:
        kept = top_k_per_row(kept, top_k)
    deg_before = np.diff(w.indptr)
    deg_after = np.diff(kept.indptr)
    stats = GraphStats(
        name=name,
        nodes=w.shape[0],
        nodes_with_coclicks=int((deg_before > 0).sum()),
        edges_before_threshold=int(w.nnz),
        edges_dropped_by_min_count=int(w.nnz - passing_count),
        edges_dropped_by_threshold=int(passing_count - len(pos)),
        edges_dropped_by_top_k=int(before_top_k - kept.nnz),
        edges=int(kept.nnz),
        nodes_isolated_by_threshold=int(((deg_before > 0) & (deg_after == 0)).sum()),
        nodes_without_coclicks=int((deg_before == 0).sum()),
    )
    return kept, stats


def coclick_graph(
    session: np.ndarray,
    item: np.ndarray,
    num_sessions: int,
    num_items: int,
    tau: float = 0.0,
    weighting: Weighting = "row",
    min_count: int = 1,
    top_k: int | None = None,
    timestamps: np.ndarray | None = None,
    content_to_values: sp.csr_matrix | None = None,
    name: str = "content",
) -> tuple[sp.csr_matrix, sp.csr_matrix, GraphStats]:
    """Build one weighted directed co-click graph from clicks already assigned to sessions.

    Args:
        session: [N] session code per click (see :func:`session_codes`).
        item: [N] content index per click.
        num_sessions: S.
        num_items: C, the catalogue size (contents never clicked become isolated nodes).
        tau: relevance threshold on the weight (strict ``>``).
        weighting: see :func:`edge_weights`.
        min_count: minimum N(i,j).
        top_k: keep at most this many neighbours per node (None: all).
        timestamps: [N] needed for ``ordered`` weighting.
        content_to_values: [C, V] to build a side-info view instead of the content graph.
        name: used in the statistics.

    Returns:
        (weights [V, V] CSR after pruning (sorted indices), counts [V, V] CSR before pruning
        (indices not sorted), stats).
    """
    b = incidence_matrix(session, item, num_sessions, num_items)
    if content_to_values is not None:
        b = map_to_view(b, content_to_values)
    if weighting == "ordered":
        if content_to_values is not None:
            raise ValueError("weighting='ordered' is only available for the content view")
        if timestamps is None:
            raise ValueError("weighting='ordered' needs timestamps")
        counts = ordered_counts(session, item, np.asarray(timestamps), num_items)
    else:
        counts = cooccurrence_counts(b)
    item_sessions = np.asarray(b.sum(axis=0)).ravel()
    weights = edge_weights(counts, weighting, item_sessions)
    kept, stats = prune_edges(weights, counts, tau, min_count, top_k, name=name)
    return kept, counts, stats


def csr_to_pyg(weights: sp.csr_matrix, counts: sp.csr_matrix | None = None) -> Data:
    """PyG ``Data`` with ``edge_index`` [2, E] (row i -> neighbour j), ``edge_weight`` [E] float32,
    and ``edge_count`` [E] (N(i,j)) when ``counts`` is given."""
    coo = weights.tocoo()
    data = Data(
        edge_index=torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64)),
        edge_weight=torch.from_numpy(coo.data.astype(np.float32)),
        num_nodes=weights.shape[0],
    )
    if counts is not None:
        # (scipy returns a sparse matrix, not an array, for an empty index: guard the empty graph)
        found = np.asarray(counts.tocsr()[coo.row, coo.col]).ravel() if coo.nnz else np.zeros(0)
        data.edge_count = torch.from_numpy(found.astype(np.int64))
    return data
