r"""BPR matrix factorisation: the classic u2i reference baseline.

Reference: Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009.
Score :math:`s_{ui} = e_u^\top e_i`; trained with BPR on uniform negatives, L2 on the batch's rows
and Adam (:class:`~graphrecall.models.u2i.U2IModule`); served by exact top-K over all contents, with
the recent-popularity back-fill for cold users (:class:`~graphrecall.models.u2i.U2IRecall`).

Trained on the validation fold's window only: on the test fold the embeddings are reused as they are,
so a user who first clicked after the validation window still has their untrained initial vector and
is treated as cold (back-filled and counted in ``backfilled``), like a user with no click at all.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from graphrecall.models.u2i import U2IRecall


class MatrixFactorization(nn.Module):
    r"""User and content embedding tables; a pair's score is their inner product.

    Args:
        num_users: U.
        num_contents: C.
        embedding_dim: d (default 64).
        init_std: standard deviation of the normal initialisation.

    Shapes:
        - forward: ``() -> ([U, d], [C, d])``
        - ego: ``users [n], contents [m] -> [n + m, d]``
    """

    def __init__(self, num_users: int, num_contents: int, embedding_dim: int = 64, init_std: float = 0.1) -> None:
        super().__init__()
        self.num_users, self.num_contents, self.embedding_dim = num_users, num_contents, embedding_dim
        self.init_std = init_std
        self.user = nn.Embedding(num_users, embedding_dim)
        self.content = nn.Embedding(num_contents, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.user.weight, std=self.init_std)
        nn.init.normal_(self.content.weight, std=self.init_std)

    def forward(self) -> tuple[Tensor, Tensor]:
        return self.user.weight, self.content.weight

    def ego(self, users: Tensor, contents: Tensor) -> Tensor:
        return torch.cat([self.user(users), self.content(contents)])

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.num_users}, {self.num_contents}, dim={self.embedding_dim})"


class MFRecall(U2IRecall):
    """BPR-MF behind the recommender contract (see the module docstring).

    Args:
        embedding_dim: d.
        init_std: initialisation scale of both tables.
        **kwargs: training and serving arguments of :class:`~graphrecall.models.u2i.U2IRecall`.
    """

    name = "mf"

    def __init__(self, embedding_dim: int = 64, init_std: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.embedding_dim, self.init_std = int(embedding_dim), float(init_std)

    def net_config(self, num_users: int, num_contents: int) -> dict[str, Any]:
        return {"_target_": f"{__name__}.MatrixFactorization", "num_users": num_users, "num_contents": num_contents,
                "embedding_dim": self.embedding_dim, "init_std": self.init_std}
