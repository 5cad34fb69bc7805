r"""LightGCN on the user-content bipartite click graph: the graph u2i reference baseline.

Reference: He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation", SIGIR 2020; PyG's :class:`torch_geometric.nn.models.LightGCN`. Nodes are the U users
then the C contents; every distinct (user, clicked content) pair of the window is an undirected edge.
Layer-0 embeddings are propagated by symmetric-normalised sums and averaged over layers,

.. math::
    e^{(l+1)}_v = \sum_{w \in N(v)} \frac{e^{(l)}_w}{\sqrt{|N(v)|\,|N(w)|}}, \qquad
    e_v = \frac{1}{L+1}\sum_{l=0}^{L} e^{(l)}_v, \qquad s_{ui} = e_u^\top e_i,

trained with BPR on uniform negatives and L2 on the layer-0 rows (full-graph propagation per step).

Trained on the validation fold's window; on the test fold the layer-0 embeddings are reused and
propagated over the *test* window's graph (what depends on the window is refreshed). Users with no
click in the validation window keep their untrained layer-0 vector and are treated as cold
(back-filled and counted in ``backfilled``), even if the test window's graph reaches them.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.nn.models import LightGCN

from graphrecall.data.schema import FeedDataset
from graphrecall.data.splits import Fold
from graphrecall.models.u2i import U2IRecall, interaction_pairs


def bipartite_edge_index(users: Tensor, contents: Tensor, num_users: int) -> Tensor:
    """[2, 2P] undirected edges of user-content pairs; content ``i`` is node ``num_users + i``."""
    src, dst = users, contents + num_users
    return torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])


def propagate(adj: Tensor, x: Tensor, num_layers: int, dropout: float = 0.0, training: bool = False) -> Tensor:
    r"""Layer mean of LightGCN propagation, :math:`\frac{1}{L+1}\sum_l x^{(l)}` with
    :math:`x^{(l+1)} = \mathrm{dropout}(A x^{(l)})`: dropout on every layer's output (training only,
    layer 0 untouched; the dropped vectors feed the next layer), as in the DICE authors' LightGCN.

    Shapes:
        ``adj [N, N]`` sparse, ``x [N, d] -> [N, d]``
    """
    out = x
    for _ in range(num_layers):
        x = adj @ x
        if dropout > 0:
            x = torch.nn.functional.dropout(x, dropout, training)
        out = out + x
    return out / (num_layers + 1)


def normalized_adjacency(edge_index: Tensor, num_nodes: int, edge_weight: Tensor | None = None) -> Tensor:
    """[N, N] sparse CSR :math:`D^{-1/2} A D^{-1/2}` of an undirected graph (no self-loops); with
    ``edge_weight`` [E], ``A`` holds the weights and ``D`` the weighted degrees."""
    edge_index, weight = gcn_norm(edge_index, edge_weight, num_nodes, add_self_loops=False)
    adj = torch.sparse_coo_tensor(edge_index, weight, (num_nodes, num_nodes), check_invariants=False)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": sparse @ dense is all we use
        warnings.simplefilter("ignore", UserWarning)
        return adj.coalesce().to_sparse_csr()


class LightGCNNet(nn.Module):
    """PyG's :class:`~torch_geometric.nn.models.LightGCN` over users + contents. The graph is given once
    per fold (:meth:`set_graph`) and kept as a normalised sparse CSR adjacency (a non-persistent
    buffer): its ``LGConv`` layers then run one sparse matmul each instead of re-normalising and
    scattering every step (about 5x faster on CPU without torch-scatter).

    Args:
        num_users: U.
        num_contents: C.
        embedding_dim: d (default 64).
        num_layers: L propagation layers (default 2).
        dropout: on every propagation layer's output, training only (:func:`propagate`; default 0).

    Shapes:
        - set_graph: ``edge_index [2, E]`` over ``U + C`` nodes
        - forward: ``() -> ([U, d], [C, d])``
        - ego: ``users [n], contents [m] -> [n + m, d]`` (layer-0 rows)
    """

    def __init__(self, num_users: int, num_contents: int, embedding_dim: int = 64, num_layers: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.num_users, self.num_contents, self.num_layers, self.dropout = num_users, num_contents, num_layers, dropout
        num_nodes = num_users + num_contents
        self.lightgcn = LightGCN(num_nodes, embedding_dim, num_layers, normalize=False)  # normalised once
        empty = torch.zeros(2, 0, dtype=torch.long)
        self.register_buffer("adj", normalized_adjacency(empty, num_nodes), persistent=False)

    def set_graph(self, edge_index: Tensor, edge_weight: Tensor | None = None) -> None:
        """Propagate over ``edge_index`` ([2, E], undirected; optional ``edge_weight`` [E]) from now on."""
        adj = normalized_adjacency(edge_index, self.num_users + self.num_contents, edge_weight)
        self.adj = adj.to(self.lightgcn.embedding.weight.device)

    def forward(self) -> tuple[Tensor, Tensor]:
        if self.dropout > 0 and self.training:
            out = propagate(self.adj, self.lightgcn.embedding.weight, self.num_layers, self.dropout, True)
        else:
            out = self.lightgcn.get_embedding(self.adj)
        return out[: self.num_users], out[self.num_users :]

    def ego(self, users: Tensor, contents: Tensor) -> Tensor:
        return self.lightgcn.embedding(torch.cat([users, contents + self.num_users]))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.num_users} users, {self.num_contents} contents, {self.lightgcn})"


class FeatureLightGCNNet(nn.Module):
    """LightGCN propagation whose content layer-0 vectors come from side-info ID features
    (:class:`~graphrecall.models.encoders.SideInfoEncoder`: one embedding table per field plus a
    content-id embedding, concatenated, one FC) instead of a free embedding row; users (or groups)
    keep a free embedding. Same propagation and layer mean as :class:`LightGCNNet`.

    Args:
        num_users: U; num_contents: C; embedding_dim: d; num_layers: L.
        field_sizes: vocabulary size of every side-info field; field_dim: their embedding size.
        dropout: on every propagation layer's output, training only (:func:`propagate`).

    Shapes:
        - set_graph: ``edge_index [2, E]`` over ``U + C`` nodes, optional ``edge_weight [E]``
        - set_features: ``{field: FieldBags}`` of the C contents (a fold-independent input)
        - forward: ``() -> ([U, d], [C, d])``
    """

    def __init__(self, num_users: int, num_contents: int, embedding_dim: int, num_layers: int,
                 field_sizes: dict[str, int], field_dim: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        from graphrecall.models.encoders import SideInfoEncoder

        self.num_users, self.num_contents, self.num_layers = num_users, num_contents, num_layers
        self.dropout = dropout
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        nn.init.xavier_uniform_(self.user_embedding.weight)  # as PyG's LightGCN
        self.content_encoder = SideInfoEncoder(field_sizes, field_dim, embedding_dim, num_nodes=num_contents)
        self.features: dict | None = None
        empty = torch.zeros(2, 0, dtype=torch.long)
        self.register_buffer("adj", normalized_adjacency(empty, num_users + num_contents), persistent=False)

    def set_graph(self, edge_index: Tensor, edge_weight: Tensor | None = None) -> None:
        self.adj = normalized_adjacency(edge_index, self.num_users + self.num_contents, edge_weight).to(
            self.user_embedding.weight.device)

    def set_features(self, features: dict) -> None:
        missing = set(self.content_encoder.fields) - set(features)
        if missing:
            raise ValueError(f"FeatureLightGCNNet: no features for fields {sorted(missing)}")
        self.features = {f: b.to(self.user_embedding.weight.device) for f, b in features.items()}

    def forward(self) -> tuple[Tensor, Tensor]:
        if self.features is None:
            raise RuntimeError("FeatureLightGCNNet: call set_features() before forward()")
        contents = torch.arange(self.num_contents, device=self.user_embedding.weight.device)
        x = torch.cat([self.user_embedding.weight, self.content_encoder(contents, self.features)])
        out = propagate(self.adj, x, self.num_layers, self.dropout, self.training)
        return out[: self.num_users], out[self.num_users :]

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.num_users} users, {self.num_contents} contents, "
                f"{self.content_encoder}, layers={self.num_layers})")


class LightGCNRecall(U2IRecall):
    """LightGCN behind the recommender contract (see the module docstring).

    Args:
        embedding_dim: d.
        num_layers: L.
        **kwargs: training and serving arguments of :class:`~graphrecall.models.u2i.U2IRecall`.
    """

    name = "lightgcn"

    def __init__(self, embedding_dim: int = 64, num_layers: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.embedding_dim, self.num_layers = int(embedding_dim), int(num_layers)

    def net_config(self, num_users: int, num_contents: int) -> dict[str, Any]:
        return {"_target_": f"{__name__}.LightGCNNet", "num_users": num_users, "num_contents": num_contents,
                "embedding_dim": self.embedding_dim, "num_layers": self.num_layers}

    def bind(self, fold: Fold, dataset: FeedDataset) -> dict[str, Any]:
        users, contents = interaction_pairs(fold.train, dataset.num_contents)
        self.module.net.set_graph(bipartite_edge_index(users, contents, len(dataset.users)))
        degree = np.bincount(np.concatenate([users.numpy(), contents.numpy() + len(dataset.users)]),
                             minlength=len(dataset.users) + dataset.num_contents)
        return {"graph/edges": 2 * len(users), "graph/isolated_nodes": int((degree == 0).sum())}
