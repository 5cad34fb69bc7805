r"""A learned popularity/recency term of the i2i score (issue 10, item 2).

The next-click score of candidate ``c`` for trigger ``t`` at moment ``a`` becomes

.. math::
    s(t, c, a) = \langle h_t, h_c \rangle / T + b(f_c(a))

where ``f_c(a)`` are the content's popularity and recency features as of ``a``
(:func:`graphrecall.data.popularity_features.popularity_feature_table`) and ``b`` a small MLP.
The vectors then model what the features cannot (which contents go with which), instead of
spending their norm on popularity; serving at the cut uses ``b(f_c(cut))``.

Why a score term and not an encoder input: the features change every day, and training examples
span the whole window. As encoder inputs they would be frozen at the cut (so every training
example would see popularity from its own future), or the whole graph would have to be encoded
once per day of the batch. As an additive term they are evaluated at each example's own moment.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PopularityBias(nn.Module):
    """``b(f) = W_2 ReLU(W_1 f + b_1) + b_2``: features of a content at a moment -> a logit offset.

    Args:
        num_features (int): F, features per (moment, content).
        hidden_dim (int): hidden width.

    Shapes:
        - input: ``[..., F]``
        - output: ``[...]``
    """

    def __init__(self, num_features: int = 4, hidden_dim: int = 16) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(num_features, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.mlp[0].reset_parameters()
        nn.init.zeros_(self.mlp[2].weight)  # starts at 0: the score is the vectors' alone
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.mlp(features).squeeze(-1)

    def candidate_bias(self, table: Tensor, moments: Tensor, candidates: Tensor,
                       extra: Tensor | None = None) -> Tensor:
        """Bias of every candidate for every query's moment.

        Args:
            table: [K, C, F0] features per moment and content.
            moments: [B] moment index of each query.
            candidates: [N] candidate content ids.
            extra: [B, N, F - F0] per-query features appended to the table's (the contents' ages
                at each query's own time), or None.

        Returns:
            [B, N], row ``b`` = ``b(f_c(a_{moments[b]}))`` over the candidates.
        """
        unique, inverse = torch.unique(moments, return_inverse=True)
        feats = table[unique.unsqueeze(1), candidates.unsqueeze(0)]  # [U, N, F0]
        if extra is None:
            return self(feats)[inverse]
        return self(torch.cat([feats[inverse], extra.to(feats.dtype)], dim=-1))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(features={self.mlp[0].in_features}, hidden={self.mlp[0].out_features})"
