"""Node encoders: side-info ID features -> initial vector, then neighbourhood aggregation layers.

References: GraphSAGE (Hamilton et al., NeurIPS 2017), PinSage (Ying et al., KDD 2018),
GAT (Velickovic et al., ICLR 2018). The aggregator is a config choice: ``mean`` (importance-
weighted mean with ``alpha``), ``sum`` (plain sum of the sampled neighbours) or ``gat``
(multi-head attention, PyG's ``GATConv``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, MessagePassing
from torch_geometric.typing import Adj, OptTensor

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
    node without neighbours keeps ``W_1 h_i`` (no NaN).

    Args:
        in_channels (int): input size.
        out_channels (int): output size.
        aggr (str): ``mean`` or ``sum``.

    Shapes:
        - input: ``x [N, F_in]``, ``edge_index [2, E]`` (source neighbour, target node),
          ``edge_weight [E]`` (alpha; required for mean)
        - output: ``[N, F_out]``
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

    def forward(self, x: Tensor, edge_index: Adj, edge_weight: OptTensor = None) -> Tensor:
        if self.mode == "mean" and edge_weight is None:
            raise ValueError("aggr='mean' needs the alpha edge weights")
        weight = edge_weight if self.mode == "mean" else None
        agg = self.propagate(edge_index, x=x, edge_weight=weight)
        return self.lin_self(x) + self.lin_neigh(agg)

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

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
          optional ``id_mask [n]`` bool (rows whose node-id embedding is zeroed)
        - output: ``[n, hidden_dim]``
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

    def forward(self, nodes: Tensor, edge_index: Tensor, alpha: Tensor, features: dict[str, FieldBags],
                id_mask: Tensor | None = None) -> Tensor:
        h = self.features(nodes, features, id_mask)
        for layer, conv in enumerate(self.convs):
            h = conv(h, edge_index) if self.aggregator == "gat" else conv(h, edge_index, alpha)
            if layer < len(self.convs) - 1:
                h = F.dropout(F.relu(h), self.dropout, self.training)
        return F.normalize(h, dim=-1) if self.normalize else h
