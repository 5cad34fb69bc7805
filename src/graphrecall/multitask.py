"""Multi-task building blocks of M2GRL (design brief, section 3).

References: Wang et al., "M2GRL: A Multi-task Multi-view Graph Representation Learning Framework
for Web-scale Recommender Systems", KDD 2020; Kendall, Gal, Cipolla, "Multi-Task Learning Using
Uncertainty to Weigh Losses", CVPR 2018.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class UncertaintyWeighting(nn.Module):
    r"""Homoscedastic-uncertainty task weighting with learned log-variances ``s_t`` (init 0).

    .. math::
        L = \sum_t \tfrac12 e^{-s_t} L_t + \tfrac12 s_t

    The ``+ s_t / 2`` regulariser keeps the variances finite (without it every ``s_t`` grows without
    bound, pitfall 6). At the optimum ``e^{s_t} = L_t``, so a task whose loss is scaled by ``k`` ends
    with about ``1/k`` of the weight. A task absent from a batch (``None``) contributes 0, not NaN.

    Args:
        tasks (list[str]): task names, in a fixed order.
        mode (str): ``uncertainty`` (learned), ``equal`` (all weights 1) or ``fixed`` (``weights``).
        weights (dict[str, float], optional): per-task weights for ``fixed``.

    Shapes:
        - input: ``{task: scalar loss or None}``
        - output: scalar total loss
    """

    def __init__(self, tasks: list[str], mode: str = "uncertainty", weights: dict[str, float] | None = None) -> None:
        super().__init__()
        if mode not in ("uncertainty", "equal", "fixed"):
            raise ValueError(f"weighting must be uncertainty, equal or fixed, got '{mode}'")
        if mode == "fixed":
            missing = [t for t in tasks if t not in (weights or {})]
            if missing:
                raise ValueError(f"weighting=fixed needs a weight for every task; missing {missing}")
        self.tasks, self.mode = list(tasks), mode
        self.fixed = dict(weights or {})
        self.log_vars = nn.Parameter(torch.zeros(len(tasks)), requires_grad=mode == "uncertainty")

    def effective_weights(self) -> dict[str, float]:
        """The multiplier of every task's loss: ``0.5 exp(-s_t)`` / 1 / the fixed weight."""
        if self.mode == "uncertainty":
            return {t: float(0.5 * torch.exp(-s)) for t, s in zip(self.tasks, self.log_vars.detach())}
        if self.mode == "equal":
            return {t: 1.0 for t in self.tasks}
        return {t: float(self.fixed[t]) for t in self.tasks}

    def forward(self, losses: dict[str, Tensor | None]) -> Tensor:
        unknown = set(losses) - set(self.tasks)
        if unknown:
            raise KeyError(f"losses for unknown tasks {sorted(unknown)}; tasks are {self.tasks}")
        total = self.log_vars.new_zeros(())
        for idx, task in enumerate(self.tasks):
            loss = losses.get(task)
            if loss is None:
                continue
            if self.mode == "uncertainty":
                s = self.log_vars[idx]
                total = total + 0.5 * torch.exp(-s) * loss + 0.5 * s
            elif self.mode == "equal":
                total = total + loss
            else:
                total = total + self.fixed[task] * loss
        return total

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(tasks={self.tasks}, mode={self.mode})"


class RelationAlignment(nn.Module):
    r"""Inter-view task: align content vectors with their side-info value vectors in a relation space.

    .. math::
        f(e) = \sigma(e W_{ab}), \qquad s(c, v) = \langle f(e_c), f(e_v) \rangle

    ``W_ab`` is one matrix per (content view, side-info view) pair, applied to the content, to its
    value and to the sampled negative values alike (pitfall 5). Loss: logistic (SGNS) on the true
    pair against random values.

    Args:
        views (list[str]): side-info views aligned with the content view.
        dim (int): input vector size.
        relation_dim (int): size of the relation space.

    Shapes:
        - content ``[B, d]``, value ``[B, d]``, negatives ``[B, M, d]`` -> scalar loss
    """

    def __init__(self, views: list[str], dim: int, relation_dim: int = 32) -> None:
        super().__init__()
        self.views = list(views)
        self.proj = nn.ParameterDict({v: nn.Parameter(torch.empty(dim, relation_dim)) for v in self.views})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in self.proj.values():
            nn.init.xavier_uniform_(w)

    def project(self, view: str, e: Tensor) -> Tensor:
        return torch.sigmoid(e @ self.proj[view])

    def forward(self, view: str, content: Tensor, value: Tensor, negatives: Tensor) -> Tensor:
        fc = self.project(view, content)  # [B, r]
        pos = (fc * self.project(view, value)).sum(-1)  # [B]
        neg = torch.einsum("br,bmr->bm", fc, self.project(view, negatives))  # [B, M]
        return -(F.logsigmoid(pos).mean() + F.logsigmoid(-neg).mean())

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(views={self.views})"
