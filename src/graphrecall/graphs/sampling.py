"""Top-k weighted neighbourhoods and mini-batch subgraphs over CSR, in pure torch.

PinSage-style importance neighbourhoods (design brief, section 2): every node keeps its ``k``
neighbours of largest weight (not a uniform sample), with aggregation weights
``alpha_ij = w_ij / sum_{j' in topk(i)} w_ij'``. PyG's neighbour loaders need pyg-lib or
torch-sparse (not installable here) and sample uniformly, so the sampler is written here.

Message direction: node ``i`` aggregates its neighbours ``j``; in PyG's source -> target
convention the edge is ``(j, i)``: ``edge_index[0] = j`` (source), ``edge_index[1] = i``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrecall.graphs.coclick import top_k_entries


@dataclass
class TopKGraph:
    """Every node's top-k neighbours as CSR (rows = aggregating nodes).

    Attributes:
        rowptr: [N + 1] int64.
        col: [E] int64 neighbour of each entry, rows in order, weight-descending within a row.
        weight: [E] float32 raw edge weight ``w_ij``.
        alpha: [E] float32 ``w_ij`` normalised over the row's kept neighbours (rows sum to 1).
        num_nodes: N.
    """

    rowptr: Tensor
    col: Tensor
    weight: Tensor
    alpha: Tensor
    num_nodes: int
    _sorted_keys: Tensor | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def num_edges(self) -> int:
        return int(self.col.numel())

    def degree(self) -> Tensor:
        return self.rowptr[1:] - self.rowptr[:-1]

    def isolated(self) -> int:
        """Nodes without any neighbour: their aggregation is zero, their vector the self term."""
        return int((self.degree() == 0).sum())

    def row(self) -> Tensor:
        return torch.repeat_interleave(torch.arange(self.num_nodes, device=self.rowptr.device), self.degree())

    def edge_index(self) -> Tensor:
        """[2, E] in PyG's source -> target order: ``(neighbour j, node i)``."""
        return torch.stack([self.col, self.row()])

    def contains(self, src: Tensor, dst: Tensor) -> Tensor:
        """[B] bool: is ``dst[b]`` among the kept neighbours of ``src[b]``."""
        if self._sorted_keys is None:  # sorted once per graph, not once per call (every training step)
            self._sorted_keys = torch.sort(self.row() * self.num_nodes + self.col).values
        key = self._sorted_keys
        q = src * self.num_nodes + dst
        pos = torch.searchsorted(key, q).clamp(max=max(key.numel() - 1, 0))
        return key[pos] == q if key.numel() else torch.zeros_like(q, dtype=torch.bool)

    def to(self, device: torch.device | str) -> "TopKGraph":
        return TopKGraph(self.rowptr.to(device), self.col.to(device), self.weight.to(device),
                         self.alpha.to(device), self.num_nodes)


def top_k_graph(weights: sp.csr_matrix, k: int) -> TopKGraph:
    """Keep each row's ``k`` largest weights (ties: lower column first) and normalise them.

    Args:
        weights: [N, N] CSR, row i = neighbours of i with ``w_ij`` (e.g. the co-click graph).
        k: neighbours per node.
    """
    w = weights.tocsr(copy=True)
    w.eliminate_zeros()  # thresholded-to-zero entries stored explicitly are not neighbours
    n = w.shape[0]
    keep, rows_k, _ = top_k_entries(w, k)  # by row, weight desc, column asc
    cols_k, vals_k = w.indices[keep], w.data[keep].astype(np.float64)
    deg_k = np.bincount(rows_k, minlength=n)
    rowptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(deg_k, out=rowptr[1:])
    rowsum = np.bincount(rows_k, weights=vals_k, minlength=n)
    alpha = np.divide(vals_k, rowsum[rows_k], out=np.zeros_like(vals_k), where=rowsum[rows_k] > 0)
    return TopKGraph(
        torch.from_numpy(rowptr),
        torch.from_numpy(cols_k.astype(np.int64)),
        torch.from_numpy(vals_k.astype(np.float32)),
        torch.from_numpy(alpha.astype(np.float32)),
        n,
    )


def gather_rows(rowptr: Tensor, rows: Tensor, limit: int | None = None) -> tuple[Tensor, Tensor]:
    """Entry positions of the given CSR rows, concatenated; with ``limit``, each row's first
    ``limit`` entries only (a top-k row's strongest neighbours).

    Returns:
        (positions [M] into the CSR arrays, owner [M]: index into ``rows`` of each position).
    """
    start, end = rowptr[rows], rowptr[rows + 1]
    counts = end - start
    if limit is not None:
        counts = counts.clamp(max=int(limit))
    owner = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), counts)
    offsets = torch.cumsum(counts, 0) - counts
    positions = start[owner] + torch.arange(owner.numel(), device=rows.device) - offsets[owner]
    return positions, owner


@dataclass
class Subgraph:
    """The ``hops``-hop top-k neighbourhood of a batch of seed nodes, relabelled 0..n-1, ordered by hop.

    Order (what layer trimming relies on): ``nodes`` holds the seeds (hop 0), then the nodes first
    reached at hop 1, then at hop 2, ...; ``edge_index`` holds the edges into the seeds, then the
    edges into the hop-1 nodes, ... (grouped by the hop of their target row). An edge into a hop-h
    node comes from a node of hop h + 1 at most, and the last hop's nodes have no edge of their own.

    Attributes:
        nodes: [n] global ids; the seeds come first, in the order given.
        edge_index: [2, e] local (source neighbour, target node) pairs.
        alpha: [e] aggregation weights of those edges.
        weight: [e] raw edge weights.
        num_seeds: how many leading entries of ``nodes`` are the seeds.
        num_nodes_per_hop: ``hops + 1`` counts, seeds first (they sum to n).
        num_edges_per_hop: ``hops`` counts: the edges into the seeds, into the hop-1 nodes, ...
            (they sum to e).
    """

    nodes: Tensor
    edge_index: Tensor
    alpha: Tensor
    weight: Tensor
    num_seeds: int
    num_nodes_per_hop: list[int] = field(default_factory=list)
    num_edges_per_hop: list[int] = field(default_factory=list)


def k_hop_subgraph(graph: TopKGraph, seeds: Tensor, hops: int, fanouts: Sequence[int] | None = None) -> Subgraph:
    """Seeds, their top-k neighbours, the neighbours' neighbours... (``hops`` levels), ordered by hop.

    Without ``fanouts`` every node of the first ``hops - 1`` levels keeps all its edges, so the
    seeds' ``hops``-layer outputs equal those of a full-graph pass (the test checks this). With
    ``fanouts`` ``[f_1, ..., f_hops]`` the nodes reached at level ``h`` (the seeds: level 1) keep
    only their ``f_h`` strongest neighbours, with ``alpha`` renormalised over the kept ones
    (GraphSAGE's per-hop fan-out, deterministic: by weight). The outer levels dominate the size
    (level 2 holds up to ``|seeds| x f_1`` nodes), so a small ``f_2`` bounds a batch's memory.
    The per-hop node and edge counts (:class:`Subgraph`) let an encoder trim every layer to the
    rows the next one reads (:func:`trimmed_layer_sizes`).
    """
    if fanouts is not None and len(fanouts) != hops:
        raise ValueError(f"model.sampling.fanouts needs one value per layer ({hops}), got {list(fanouts)}")
    if seeds.numel():  # de-duplicate, keeping first occurrences in the order given
        uniq, inverse = torch.unique(seeds, return_inverse=True)
        first = torch.full_like(uniq, seeds.numel()).scatter_reduce_(
            0, inverse, torch.arange(seeds.numel(), device=seeds.device), "amin")
        seeds = seeds[torch.sort(first).values]
    nodes = seeds
    frontier = seeds
    src, dst, alpha, weight = [], [], [], []
    node_counts, edge_counts = [int(seeds.numel())], []
    mapping = torch.full((graph.num_nodes,), -1, dtype=torch.long, device=seeds.device)
    mapping[seeds] = torch.arange(seeds.numel(), device=seeds.device)
    for hop in range(hops):
        limit = None if fanouts is None else int(fanouts[hop])
        pos, owner = gather_rows(graph.rowptr, frontier, limit)
        nbrs = graph.col[pos]
        new = torch.unique(nbrs[mapping[nbrs] < 0])
        mapping[new] = torch.arange(nodes.numel(), nodes.numel() + new.numel(), device=seeds.device)
        nodes = torch.cat([nodes, new])
        src.append(mapping[nbrs])
        dst.append(mapping[frontier[owner]])
        alpha.append(graph.alpha[pos])
        weight.append(graph.weight[pos])
        node_counts.append(int(new.numel()))
        edge_counts.append(int(pos.numel()))
        frontier = new
    edge_index = torch.stack([torch.cat(src), torch.cat(dst)])
    alpha = torch.cat(alpha)
    if fanouts is not None:  # truncated rows: their kept weights sum to 1 again
        alpha = renormalise_kept(edge_index, alpha, torch.ones_like(alpha, dtype=torch.bool), int(nodes.numel()))
    return Subgraph(nodes=nodes, edge_index=edge_index, alpha=alpha, weight=torch.cat(weight),
                    num_seeds=int(seeds.numel()), num_nodes_per_hop=node_counts, num_edges_per_hop=edge_counts)


def kept_per_hop(keep: Tensor, num_edges_per_hop: Sequence[int]) -> list[int]:
    """Per-hop edge counts after ``edge_index[:, keep]`` (a mask keeps the order, so still grouped by hop).

    Args:
        keep: [e] bool over the edges of a hop-ordered subgraph.
        num_edges_per_hop: the counts before (they sum to e).
    """
    if keep.numel() != sum(num_edges_per_hop):
        raise ValueError(f"keep has {keep.numel()} entries, the per-hop edge counts sum to {sum(num_edges_per_hop)}")
    ends = torch.tensor(np.cumsum(num_edges_per_hop, dtype=np.int64), device=keep.device)
    kept_before = torch.cat([torch.zeros(1, dtype=torch.long, device=keep.device), torch.cumsum(keep.long(), 0)])
    at_ends = kept_before[ends].tolist()  # one device sync for all hops
    return [b - a for a, b in zip([0, *at_ends[:-1]], at_ends)]


@dataclass(frozen=True)
class LayerSize:
    """What one trimmed message-passing layer reads and writes (leading rows / edges of a hop-ordered subgraph).

    Attributes:
        num_sources: rows of the layer's input (the nodes its edges come from).
        num_targets: rows of its output (a prefix of the sources).
        num_edges: its edges (a prefix of the subgraph's, all into the targets).
    """

    num_sources: int
    num_targets: int
    num_edges: int


def trimmed_layer_sizes(num_nodes_per_hop: Sequence[int], num_edges_per_hop: Sequence[int],
                        num_layers: int) -> list[LayerSize]:
    """Rows and edges each of ``num_layers`` layers needs so that the seeds' last-layer outputs are exact.

    The last layer writes the seeds only; layer ``l`` (0-based) of ``L`` writes the rows that
    layer ``l + 1`` reads: the nodes within ``L - 1 - l`` hops of the seeds, from the nodes within
    ``L - l`` hops, over the edges into its rows. (PyG's hierarchical neighbour sampling,
    ``torch_geometric.utils.trim_to_layer``, trims the same way; here the target rows are also cut
    from each layer's input, so no layer computes rows nobody reads.)

    Args:
        num_nodes_per_hop: ``L + 1`` counts of a subgraph ordered by hop (seeds first).
        num_edges_per_hop: ``L`` counts of its edges, grouped by the hop of their target.
        num_layers: L.
    """
    if len(num_nodes_per_hop) != num_layers + 1 or len(num_edges_per_hop) != num_layers:
        raise ValueError(f"trimming {num_layers} layers needs {num_layers + 1} per-hop node counts and {num_layers} "
                         f"edge counts (a {num_layers}-hop subgraph), got {list(num_nodes_per_hop)} and "
                         f"{list(num_edges_per_hop)}")
    nodes_within = np.cumsum(num_nodes_per_hop).tolist()  # nodes_within[h]: nodes of hop <= h
    edges_into = np.cumsum(num_edges_per_hop).tolist()  # edges_into[h]: edges into the nodes of hop <= h
    return [LayerSize(num_sources=int(nodes_within[num_layers - layer]),
                      num_targets=int(nodes_within[num_layers - 1 - layer]),
                      num_edges=int(edges_into[num_layers - 1 - layer])) for layer in range(num_layers)]


def sort_by_target(edge_index: Tensor, weight: Tensor, num_sources: int) -> tuple[Tensor, Tensor]:
    """Edges ordered by (target, source), the order of a CSR adjacency (:func:`target_adjacency`).

    Sorting by target keeps every prefix "the edges into the first t targets" the same set of
    edges, so the per-hop edge counts of a hop-ordered subgraph (:func:`trimmed_layer_sizes`)
    still cut the sorted edges into the same layers. Equal pairs stay next to each other.

    Args:
        edge_index: [2, E] (source, target) pairs, sources ``< num_sources``.
        weight: [E] their weights (gradients flow through the reordering).
        num_sources: rows a source index may point to (the sort key is ``target * num_sources + source``).

    Returns:
        (edge_index [2, E], weight [E]) sorted; the inputs themselves when they already are.
    """
    key = edge_index[1] * num_sources + edge_index[0]
    if key.numel() < 2 or not bool((key[1:] < key[:-1]).any()):
        return edge_index, weight
    order = torch.sort(key, stable=True).indices
    return edge_index[:, order], weight[order]


def target_adjacency(edge_index: Tensor, weight: Tensor, num_sources: int, num_targets: int) -> Tensor:
    """The weighted adjacency of edges sorted by (target, source), as a sparse CSR matrix.

    ``A[i, j]`` is the summed weight of the edges ``j -> i`` (repeated pairs are merged: the CSR
    format wants distinct columns per row), so ``A @ x_src`` is the weighted sum of each target's
    neighbours, ``0`` for a target without any: what summing one message per edge gives.

    Args:
        edge_index: [2, E] (source, target) pairs sorted by (target, source) (:func:`sort_by_target`).
        weight: [E] the edge weights (gradients flow into them through the CSR values).
        num_sources: columns (rows of the input ``x_src``).
        num_targets: rows (rows written).

    Returns:
        [num_targets, num_sources] ``torch.sparse_csr`` tensor with ``weight``'s dtype.
    """
    if weight.shape != edge_index.shape[1:]:
        raise ValueError(f"target_adjacency needs one weight per edge: {edge_index.shape[1]} edges, "
                         f"weights of shape {list(weight.shape)}")
    src, dst = edge_index[0], edge_index[1].contiguous()
    key = dst * num_sources + src
    if src.numel():  # one device sync for all checks: out-of-range indices would read outside x
        step = key[1:] - key[:-1]
        lo_src, hi_src, lo_dst, hi_dst, unsorted, repeated = torch.stack([
            src.min(), src.max(), dst.min(), dst.max(), (step < 0).sum(), (step == 0).sum()]).tolist()
        if lo_src < 0 or hi_src >= num_sources or lo_dst < 0 or hi_dst >= num_targets:
            raise ValueError(f"edge sources must lie in [0, {num_sources}) and targets in [0, {num_targets}), got "
                             f"sources in [{lo_src}, {hi_src}] and targets in [{lo_dst}, {hi_dst}]")
        if unsorted:
            raise ValueError("target_adjacency needs the edges sorted by (target, source): sort_by_target")
        if repeated:
            key, inverse = torch.unique_consecutive(key, return_inverse=True)
            weight = torch.zeros(key.numel(), dtype=weight.dtype, device=weight.device).index_add(0, inverse, weight)
            src, dst = key % num_sources, key // num_sources
    crow = torch.searchsorted(dst, torch.arange(num_targets + 1, device=dst.device))
    with warnings.catch_warnings():  # torch warns once per process that CSR support is "beta"
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, src, weight, (num_targets, num_sources), check_invariants=False)


def sample_negatives(
    graph: TopKGraph, src: Tensor, num_negatives: int, generator: torch.Generator | None = None,
    candidates: Tensor | None = None,
) -> tuple[Tensor, int]:
    """``num_negatives`` random non-neighbours per source node (uniform over ``candidates``).

    Draws collide with a true neighbour (or the node itself) rarely; those are redrawn once, and
    the collisions still left are returned as a count (reported, not hidden).

    Returns:
        (negatives [B, num_negatives] global ids, collisions left).
    """
    b = src.numel()
    pool = torch.arange(graph.num_nodes) if candidates is None else candidates

    def draw(n: int) -> Tensor:
        return pool[torch.randint(pool.numel(), (n,), generator=generator)]

    neg = draw(b * num_negatives).view(b, num_negatives)
    rep = src.view(-1, 1).expand(-1, num_negatives)
    bad = graph.contains(rep.reshape(-1), neg.reshape(-1)).view(b, -1) | (neg == rep)
    if bad.any():
        neg[bad] = draw(int(bad.sum()))
        bad = graph.contains(rep.reshape(-1), neg.reshape(-1)).view(b, -1) | (neg == rep)
    return neg, int(bad.sum())


def drop_pair_edges(edge_index: Tensor, alpha: Tensor, src: Tensor, dst: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """Remove the edges between each ``(src[b], dst[b])`` pair, both directions, and renormalise.

    Used by the next-click objective: an example's target must not be aggregated into its trigger
    (or the trigger into the target), or the model only learns to copy the graph.

    Args:
        edge_index: [2, E] global ``(neighbour j, node i)`` pairs (node i aggregates j).
        alpha: [E] aggregation weights (rows of a node sum to 1 or 0).
        src, dst: [B] the example pairs.
        num_nodes: N (ids < N).

    Returns:
        (keep [E] bool, alpha [E] renormalised over each node's kept edges; 0 where nothing is left).
    """
    key = edge_index[1] * num_nodes + edge_index[0]
    banned = torch.cat([src * num_nodes + dst, dst * num_nodes + src])
    keep = ~torch.isin(key, banned)
    return keep, renormalise_kept(edge_index, alpha, keep, num_nodes)


def isolate_nodes(edge_index: Tensor, alpha: Tensor, isolated: Tensor) -> tuple[Tensor, Tensor]:
    """Remove every edge with an isolated endpoint (both directions) and renormalise the rest.

    Used by the cold-start simulation: a content treated as new has no neighbour (it aggregates
    nothing) and is nobody's neighbour, as a content without clicks at serving time.

    Args:
        edge_index: [2, E] global ``(neighbour j, node i)`` pairs (node i aggregates j).
        alpha: [E] aggregation weights (rows of a node sum to 1 or 0).
        isolated: [N] bool, the nodes to cut off.

    Returns:
        (keep [E] bool, alpha [E] renormalised over each node's kept edges; 0 where nothing is left).
    """
    keep = ~(isolated[edge_index[0]] | isolated[edge_index[1]])
    return keep, renormalise_kept(edge_index, alpha, keep, isolated.numel())


def renormalise_kept(edge_index: Tensor, alpha: Tensor, keep: Tensor, num_nodes: int) -> Tensor:
    """[E] ``alpha`` of the kept edges rescaled so that each node's kept edges sum to 1 (0 elsewhere)."""
    kept_alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    row_sum = torch.zeros(num_nodes, dtype=alpha.dtype, device=alpha.device).index_add_(0, edge_index[1], kept_alpha)
    denom = row_sum[edge_index[1]]
    return torch.where(denom > 0, kept_alpha / denom.clamp(min=1e-12), torch.zeros_like(alpha))
