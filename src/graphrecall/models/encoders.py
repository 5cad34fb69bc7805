"""Node encoders: side-info ID features -> initial vector, then neighbourhood aggregation layers.

References: GraphSAGE (Hamilton et al., NeurIPS 2017), PinSage (Ying et al., KDD 2018),
GAT (Velickovic et al., ICLR 2018). The aggregator is a config choice: ``mean`` (importance-
weighted mean with ``alpha``), ``sum`` (plain sum of the sampled neighbours) or ``gat``
(multi-head attention, PyG's ``GATConv``). Given the per-hop counts of a hop-ordered k-hop
subgraph (:func:`graphrecall.graphs.sampling.k_hop_subgraph`), every layer computes only the rows
the next one reads (layer trimming, as PyG's hierarchical neighbour sampling): the same seed
outputs without the last layer's messages into non-seed rows (at most half the message passing;
how much depends on how many of a batch's nodes are seeds: benchmarks/layer_trimming.py). The
``mean`` and ``sum`` layers aggregate by a sparse adjacency product instead of one message per
edge (``sparse_aggregation``, default on: the same sums, without the ``[E, d]`` message tensor).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, MessagePassing
from torch_geometric.typing import Adj, OptTensor, PairTensor, Size
from torch_geometric.utils import is_torch_sparse_tensor, spmm

from graphrecall.graphs.sampling import LayerSize, sort_by_target, target_adjacency, trimmed_layer_sizes
from graphrecall.models.features import FieldBags


class SideInfoEncoder(nn.Module):
    r"""Initial node vector from ID features: one embedding table per field, concatenated, one FC.

    .. math::
        h^{(0)}_i = \mathrm{ReLU}\big(W [e_{f_1}(i) \,\|\, \dots \,\|\, e_{f_m}(i) \,\|\, e_{id}(i)] + b\big)

    Multi-valued fields are mean-pooled with ``nn.EmbeddingBag`` (an empty bag gives zeros).
    ``id_mask`` zeroes the node-id part of the given rows: a content treated as new (no click, or
    masked by the cold-start simulation) is placed from its side info alone.

    Args:
        field_sizes (dict[str, int]): vocabulary size of every field.
        field_dim (int): embedding size of every field.
        out_dim (int): output size.
        num_nodes (int, optional): adds a learned node-id embedding when given.
        dropout (float): dropout on the concatenation.

    Shapes:
        - input: node ids ``[n]``, the fields' :class:`FieldBags`, optional ``id_mask [n]`` bool
        - output: ``[n, out_dim]``
    """

    def __init__(self, field_sizes: dict[str, int], field_dim: int = 32, out_dim: int = 64,
                 num_nodes: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.fields = list(field_sizes)
        self.bags = nn.ModuleDict({f: nn.EmbeddingBag(n, field_dim, mode="mean") for f, n in field_sizes.items()})
        self.node_embedding = nn.Embedding(num_nodes, field_dim) if num_nodes else None
        width = field_dim * (len(self.fields) + (1 if num_nodes else 0))
        if width == 0:
            raise ValueError("SideInfoEncoder needs at least one feature field or the node-id embedding")
        self.lin = nn.Linear(width, out_dim)
        self.dropout = dropout
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for bag in self.bags.values():
            nn.init.normal_(bag.weight, std=0.1)
        if self.node_embedding is not None:
            nn.init.normal_(self.node_embedding.weight, std=0.1)
        self.lin.reset_parameters()

    def forward(self, nodes: Tensor, features: dict[str, FieldBags], id_mask: Tensor | None = None) -> Tensor:
        parts = []
        for f in self.fields:
            values, offsets = features[f].gather(nodes)
            parts.append(self.bags[f](values, offsets))
        if self.node_embedding is not None:
            ids = self.node_embedding(nodes)
            parts.append(ids if id_mask is None else ids * (~id_mask).unsqueeze(-1).to(ids.dtype))
        h = torch.cat(parts, dim=-1)
        h = F.dropout(h, self.dropout, self.training)
        return F.relu(self.lin(h))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(fields={self.fields}, node_ids={self.node_embedding is not None}, out={self.lin.out_features})"


class WeightedSAGEConv(MessagePassing):
    r"""GraphSAGE layer over importance-weighted top-k neighbourhoods.

    .. math::
        h_i' = W_1 h_i + W_2 \sum_{j \in N_k(i)} a_{ij} h_j

    with ``a_ij = alpha_ij`` (``w_ij`` normalised over the kept neighbours: a weighted mean) for
    ``aggr="mean"`` and ``a_ij = 1`` for ``aggr="sum"``. The self term is always included, so a
    node without neighbours keeps ``W_1 h_i`` (no NaN). Bipartite input ``(x_src, x_dst)`` (a
    trimmed layer: the targets are the first rows of the sources) computes the target rows only.

    The neighbourhood comes either as ``edge_index`` with ``edge_weight`` (one message per edge,
    summed), or as the matrix ``A = [a_ij]`` itself, a ``torch.sparse_csr`` adjacency
    ``[N_dst, N_src]`` (:func:`graphrecall.graphs.sampling.target_adjacency`, its values the
    ``a_ij`` of the mode), aggregated by one sparse-dense product (PyG's ``message_and_aggregate``):
    the same sums without an ``[E, F]`` message tensor, several times faster on large graphs.

    Args:
        in_channels (int): input size.
        out_channels (int): output size.
        aggr (str): ``mean`` or ``sum``.

    Shapes:
        - input: ``x [N, F_in]`` or ``(x_src [N_src, F_in], x_dst [N_dst, F_in])``, and
          ``edge_index [2, E]`` (source neighbour, target node) with ``edge_weight [E]`` (alpha;
          required for mean) and optional ``size (N_src, N_dst)``, or ``edge_index`` a sparse CSR
          ``[N_dst, N_src]`` adjacency (no ``edge_weight``)
        - output: ``[N, F_out]`` or ``[N_dst, F_out]``
    """

    def __init__(self, in_channels: int, out_channels: int, aggr: str = "mean") -> None:
        if aggr not in ("mean", "sum"):
            raise ValueError(f"WeightedSAGEConv aggr must be 'mean' or 'sum', got '{aggr}'")
        super().__init__(aggr="add")
        self.in_channels, self.out_channels, self.mode = in_channels, out_channels, aggr
        self.lin_self = nn.Linear(in_channels, out_channels)
        self.lin_neigh = nn.Linear(in_channels, out_channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lin_self.reset_parameters()
        self.lin_neigh.reset_parameters()

    def forward(self, x: Tensor | PairTensor, edge_index: Adj, edge_weight: OptTensor = None,
                size: Size = None) -> Tensor:
        pair = (x, x) if isinstance(x, Tensor) else x
        if is_torch_sparse_tensor(edge_index):
            if edge_weight is not None:
                raise ValueError("WeightedSAGEConv: with a sparse adjacency the weights are its values; "
                                 "edge_weight must be None")
            if tuple(edge_index.shape) != (pair[1].shape[0], pair[0].shape[0]):
                raise ValueError(f"WeightedSAGEConv: the adjacency is {list(edge_index.shape)}, the input has "
                                 f"{pair[1].shape[0]} target and {pair[0].shape[0]} source rows")
            weight = None  # propagate runs message_and_aggregate on the adjacency
        elif self.mode == "mean" and edge_weight is None:
            raise ValueError("aggr='mean' needs the alpha edge weights")
        else:
            weight = edge_weight if self.mode == "mean" else None
        # one propagate call: PyG builds its signature from the call in this source
        agg = self.propagate(edge_index, x=pair, edge_weight=weight, size=size)
        return self.lin_self(pair[1]) + self.lin_neigh(agg)

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Tensor, x: PairTensor) -> Tensor:
        """``A @ x_src`` for a sparse CSR ``adj_t [N_dst, N_src]``, in the wider of the two dtypes
        (at least float32: sparse products of half floats are missing on the CPU)."""
        dtype = torch.promote_types(torch.promote_types(x[0].dtype, adj_t.dtype), torch.float32)
        return spmm(adj_t.to(dtype), x[0].to(dtype), reduce="sum")

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, aggr={self.mode})"


class GNNEncoder(nn.Module):
    r"""Side-info encoder followed by ``num_layers`` aggregation layers (ReLU + dropout between).

    Args:
        field_sizes (dict[str, int]): vocabulary size of every side-info field.
        field_dim (int): embedding size per field.
        hidden_dim (int): size of the initial vector and of every layer's output.
        num_layers (int): aggregation layers (the article: 2).
        aggregator (str): ``mean`` | ``sum`` | ``gat``.
        heads (int): attention heads for ``gat`` (averaged: output stays ``hidden_dim``).
        num_nodes (int, optional): learned node-id embedding when given.
        dropout (float): dropout between layers and on the feature concatenation.
        normalize (bool): L2-normalise the output (dot products become cosines).

    Shapes:
        - input: node ids ``[n]``, ``edge_index [2, E]`` local to those nodes, ``alpha [E]``,
          optional ``id_mask [n]`` bool (rows whose node-id embedding is zeroed), optional
          ``num_nodes_per_hop`` (``num_layers + 1`` ints) and ``num_edges_per_hop`` (``num_layers``
          ints) of a hop-ordered subgraph (seeds first, edges grouped by their target's hop)
        - output: ``[n, hidden_dim]``; with the per-hop counts (layer trimming) the seeds' rows
          only, ``[num_nodes_per_hop[0], hidden_dim]``, equal to the first rows of the untrimmed
          output (dropout included: :func:`row_prefix_dropout`)

    ``sparse_aggregation`` (forward, default on): ``mean`` and ``sum`` layers aggregate by one
    sparse CSR product per layer (the edges sorted by target once, each layer's adjacency
    ``[rows written, rows read]``: :meth:`WeightedSAGEConv.message_and_aggregate`) instead of one
    message per edge; the same sums up to float rounding. ``gat`` always runs its messages.
    """

    def __init__(self, field_sizes: dict[str, int], field_dim: int = 32, hidden_dim: int = 64,
                 num_layers: int = 2, aggregator: str = "mean", heads: int = 4,
                 num_nodes: int | None = None, dropout: float = 0.1, normalize: bool = False) -> None:
        super().__init__()
        if aggregator not in ("mean", "sum", "gat"):
            raise ValueError(f"aggregator must be mean, sum or gat, got '{aggregator}'")
        self.aggregator = aggregator
        self.dropout = dropout
        self.normalize = normalize
        self.features = SideInfoEncoder(field_sizes, field_dim, hidden_dim, num_nodes, dropout)
        if aggregator == "gat":
            convs = [GATConv(hidden_dim, hidden_dim, heads=heads, concat=False, add_self_loops=True)
                     for _ in range(num_layers)]
        else:
            convs = [WeightedSAGEConv(hidden_dim, hidden_dim, aggregator) for _ in range(num_layers)]
        self.convs = nn.ModuleList(convs)

    def reset_parameters(self) -> None:
        self.features.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()

    def forward(self, nodes: Tensor, edge_index: Tensor, alpha: Tensor | None, features: dict[str, FieldBags],
                id_mask: Tensor | None = None, num_nodes_per_hop: list[int] | None = None,
                num_edges_per_hop: list[int] | None = None, sparse_aggregation: bool = True) -> Tensor:
        if (num_nodes_per_hop is None) != (num_edges_per_hop is None):
            raise ValueError("layer trimming needs both num_nodes_per_hop and num_edges_per_hop (or neither)")
        h = self.features(nodes, features, id_mask)
        rows = h.shape[0]  # every untrimmed layer's output rows: the dropout masks are drawn for these
        sizes = (None if num_nodes_per_hop is None
                 else trimmed_layer_sizes(num_nodes_per_hop, num_edges_per_hop, len(self.convs)))
        if sizes is not None and sizes[0].num_sources != rows:
            raise ValueError(f"the per-hop node counts sum to {sizes[0].num_sources}, the subgraph has {rows} nodes")
        sparse = sparse_aggregation and self.aggregator != "gat"
        if sparse:  # sorted once for all layers: by target, so a trimmed layer's edges are still a prefix
            edge_index, alpha = sort_by_target(edge_index, self.aggregation_weights(edge_index, alpha), rows)
        for layer, conv in enumerate(self.convs):
            h = self.run_layer(conv, h, edge_index, alpha, None if sizes is None else sizes[layer], sparse)
            if layer < len(self.convs) - 1:
                h = row_prefix_dropout(F.relu(h), self.dropout, self.training, rows)
        return F.normalize(h, dim=-1) if self.normalize else h

    def aggregation_weights(self, edge_index: Tensor, alpha: Tensor | None) -> Tensor:
        """[E] the weight ``a_ij`` of every edge in the aggregation: ``alpha`` (mean) or ones (sum)."""
        if self.aggregator == "mean":
            if alpha is None:
                raise ValueError("aggr='mean' needs the alpha edge weights")
            return alpha
        return torch.ones(edge_index.shape[1], device=edge_index.device)

    def run_layer(self, conv: nn.Module, h: Tensor, edge_index: Tensor, alpha: Tensor | None,
                  size: LayerSize | None, sparse: bool = False) -> Tensor:
        """One aggregation layer: over every row and edge (``size`` None), or trimmed to ``size``
        (``h`` holds its ``num_sources`` rows; returns its ``num_targets`` rows). ``sparse``: by a
        sparse adjacency (``edge_index`` sorted by target, ``alpha`` the aggregation weights,
        :meth:`aggregation_weights`), else one message per edge."""
        x = h if size is None else (h, h[: size.num_targets])
        if sparse:
            sources, targets, edges = ((h.shape[0], h.shape[0], edge_index.shape[1]) if size is None
                                       else (size.num_sources, size.num_targets, size.num_edges))
            return conv(x, target_adjacency(edge_index[:, :edges], alpha[:edges], sources, targets))
        if size is None:
            return conv(h, edge_index) if self.aggregator == "gat" else conv(h, edge_index, alpha)
        edges = edge_index[:, : size.num_edges]
        shape = (size.num_sources, size.num_targets)
        if self.aggregator == "gat":
            return conv(x, edges, size=shape)
        return conv(x, edges, alpha[: size.num_edges], size=shape)


def row_prefix_dropout(h: Tensor, p: float, training: bool, rows: int) -> Tensor:
    """Dropout of ``h [m, d]`` with the mask of a ``[rows, d]`` tensor (``m <= rows``), first ``m`` rows.

    A trimmed layer's output is the first rows of the untrimmed one; drawing the mask for every
    untrimmed row keeps the global random stream and each row's mask the same with trimming on or
    off, so training is identical. The draw is ``F.dropout``'s on the CPU (a Bernoulli(1 - p)
    tensor divided by 1 - p), so untrimmed passes keep their masks.
    """
    if not training or p == 0.0 or rows == 0 or h.shape[1] == 0:  # F.dropout draws nothing either
        return h
    if p >= 1.0:
        return h * torch.zeros((), dtype=h.dtype, device=h.device)
    noise = torch.empty((rows, h.shape[1]), dtype=h.dtype, device=h.device).bernoulli_(1.0 - p).div_(1.0 - p)
    return h * noise[: h.shape[0]]
