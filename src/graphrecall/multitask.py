"""Multi-task building blocks of M2GRL (design brief, section 3).

References: Wang et al., "M2GRL: A Multi-task Multi-view Graph Representation Learning Framework
for Web-scale Recommender Systems", KDD 2020; Kendall, Gal, Cipolla, "Multi-Task Learning Using
Uncertainty to Weigh Losses", CVPR 2018; Levy, Goldberg, "Neural Word Embedding as Implicit Matrix
Factorization", NeurIPS 2014 (skip-gram ~ shifted PMI: the target of views too small for skip-gram).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ALIGNMENT_SCORES = ("sigmoid", "centered", "cosine")
# above this many values, negatives are drawn by rejection (collisions are rare there) instead of
# from a dense [B, V] mask of the allowed values
DENSE_NEGATIVES_MAX_VALUES = 8192


class UncertaintyWeighting(nn.Module):
    r"""Homoscedastic-uncertainty task weighting with learned log-variances ``s_t`` (init 0).

    .. math::
        L = \sum_t \lambda_t \left(\tfrac12 e^{-s_t} L_t + \tfrac12 s_t\right)

    The ``+ s_t / 2`` regulariser keeps the variances finite (without it every ``s_t`` grows without
    bound, pitfall 6). At the optimum ``e^{s_t} = L_t``, so a task whose loss is scaled by ``k`` ends
    with about ``1/k`` of the weight. A task absent from a batch (``None``) contributes 0, not NaN.
    ``scales`` (``lambda_t``, default 1) multiply a task's whole term, so a schedule (M2GRL's ramped
    alignment weight) is not undone by the learned ``s_t``, whose optimum does not depend on it.

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

    def effective_weights(self, scales: dict[str, float] | None = None) -> dict[str, float]:
        """The multiplier of every task's loss: ``lambda_t`` x (``0.5 exp(-s_t)`` / 1 / the fixed weight)."""
        scales = scales or {}
        if self.mode == "uncertainty":
            base = {t: float(0.5 * torch.exp(-s)) for t, s in zip(self.tasks, self.log_vars.detach())}
        elif self.mode == "equal":
            base = {t: 1.0 for t in self.tasks}
        else:
            base = {t: float(self.fixed[t]) for t in self.tasks}
        return {t: w * float(scales.get(t, 1.0)) for t, w in base.items()}

    def forward(self, losses: dict[str, Tensor | None], scales: dict[str, float] | None = None) -> Tensor:
        unknown = set(losses) - set(self.tasks)
        if unknown:
            raise KeyError(f"losses for unknown tasks {sorted(unknown)}; tasks are {self.tasks}")
        scales = scales or {}
        total = self.log_vars.new_zeros(())
        for idx, task in enumerate(self.tasks):
            loss = losses.get(task)
            if loss is None:
                continue
            if self.mode == "uncertainty":
                s = self.log_vars[idx]
                term = 0.5 * torch.exp(-s) * loss + 0.5 * s
            elif self.mode == "equal":
                term = loss
            else:
                term = self.fixed[task] * loss
            total = total + float(scales.get(task, 1.0)) * term
        return total

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(tasks={self.tasks}, mode={self.mode})"


def ramped_weight(epoch: int, cap: float, ramp_epochs: int) -> float:
    """A task weight rising linearly from 0 at epoch 0 to ``cap`` at epoch ``ramp_epochs``, then held.

    ``ramp_epochs = 0``: ``cap`` from the start.
    """
    if ramp_epochs <= 0:
        return float(cap)
    return float(cap) * min(1.0, epoch / ramp_epochs)


def masked_pair_logistic(pos: Tensor, neg: Tensor, neg_mask: Tensor | None = None) -> Tensor:
    r"""Logistic (SGNS) loss of positive pairs against negatives, invalid negatives masked out.

    .. math::
        L = -\Big[\frac1B \sum_b \log\sigma(s^+_b) + \frac{1}{|\mathcal V|}\sum_{(b,m) \in \mathcal V}
        \log\sigma(-s^-_{bm})\Big]

    With every negative valid this is :class:`graphrecall.losses.PairBCELoss` (unweighted).

    Shapes:
        - pos ``[B]``; neg, neg_mask ``[B, M]`` (bool; None: all valid) -> scalar
    """
    neg_term = F.logsigmoid(-neg)
    if neg_mask is None:
        neg_mean = neg_term.mean()
    else:
        neg_mean = (neg_term * neg_mask).sum() / neg_mask.sum().clamp(min=1)
    return -(F.logsigmoid(pos).mean() + neg_mean)


class RelationAlignment(nn.Module):
    r"""Inter-view task: align content vectors with their side-info value vectors in a relation space.

    One matrix ``W_ab`` per (content view, side-info view) pair, applied to the content, to its value
    and to the sampled negative values alike (pitfall 5). Relation scores (``score``):

    * ``sigmoid`` (the paper): :math:`s = \langle \sigma(e_c W), \sigma(e_v W) \rangle`. Never
      negative; for unrelated vectors it is about ``r / 4`` (each product of two independent
      sigmoids averages 1/4), so the logistic loss starts near ``r / 4`` nats and pushes every
      content the same way.
    * ``centered``: the same minus ``r / 4``: mean about 0 for unrelated vectors.
    * ``cosine``: :math:`\cos(e_c W, e_v W) / \tau`, no sigmoid; in ``[-1/tau, 1/tau]``.

    Loss: logistic (SGNS) on the true pair against the negatives; ``neg_mask`` drops invalid
    negatives (the mean runs over the valid ones).

    Args:
        views (list[str]): side-info views aligned with the content view.
        dim (int): input vector size.
        relation_dim (int): size of the relation space ``r``.
        score (str): ``sigmoid`` | ``centered`` | ``cosine``.
        temperature (float): ``tau`` of ``cosine`` (unused by the other scores).

    Shapes:
        - content ``[B, d]``, value ``[B, d]``, negatives ``[B, M, d]``, neg_mask ``[B, M]`` -> scalar loss
    """

    def __init__(self, views: list[str], dim: int, relation_dim: int = 32, score: str = "sigmoid",
                 temperature: float = 1.0) -> None:
        super().__init__()
        if score not in ALIGNMENT_SCORES:
            raise ValueError(f"model.alignment.score must be one of {ALIGNMENT_SCORES}, got '{score}'")
        if not temperature > 0:
            raise ValueError(f"model.alignment.temperature must be > 0, got {temperature}")
        self.views, self.score_name, self.temperature = list(views), score, float(temperature)
        self.relation_dim = int(relation_dim)
        self.proj = nn.ParameterDict({v: nn.Parameter(torch.empty(dim, relation_dim)) for v in self.views})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in self.proj.values():
            nn.init.xavier_uniform_(w)

    def project(self, view: str, e: Tensor) -> Tensor:
        """``[..., d] -> [..., r]``: ``sigmoid(e W)`` (sigmoid, centered) or ``e W`` unit-normalised (cosine)."""
        z = e @ self.proj[view]
        return F.normalize(z, dim=-1) if self.score_name == "cosine" else torch.sigmoid(z)

    def score(self, view: str, content: Tensor, values: Tensor) -> Tensor:
        """Relation scores of ``content [B, d]`` with ``values [B, M, d]`` -> ``[B, M]``."""
        s = torch.einsum("br,bmr->bm", self.project(view, content), self.project(view, values))
        if self.score_name == "centered":
            return s - self.relation_dim / 4.0
        if self.score_name == "cosine":
            return s / self.temperature
        return s

    def forward(self, view: str, content: Tensor, value: Tensor, negatives: Tensor,
                neg_mask: Tensor | None = None) -> Tensor:
        pos = self.score(view, content, value.unsqueeze(1)).squeeze(1)  # [B]
        return masked_pair_logistic(pos, self.score(view, content, negatives), neg_mask)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(views={self.views}, score={self.score_name})"


def sample_excluding(indptr: Tensor, members: Tensor, rows: Tensor, num_values: int, num_negatives: int,
                     generator: torch.Generator, exclude_rows: bool = False) -> tuple[Tensor, Tensor]:
    """Uniform negatives among the values a row does not hold (and, with ``exclude_rows``, not the row itself).

    A row's forbidden values are ``members[indptr[r]:indptr[r + 1]]`` (CSR): a content's own values
    (alignment) or a value's neighbours in its view graph (intra-view task, with ``exclude_rows``:
    the source value too). Up to ``DENSE_NEGATIVES_MAX_VALUES`` values, draws are exact (uniform
    over the allowed values); above, forbidden draws are redrawn twice. A row with no allowed value
    (or a draw still forbidden) is marked invalid: masked out of the loss and counted by the caller.

    Args:
        indptr: [R + 1] CSR row pointers; members: [nnz] value ids.
        rows: [B] row of each query (a content, or a value of a homogeneous view).
        num_values: V, values ids are ``0..V-1``.
        num_negatives: M draws per query.
        generator: the step's generator.
        exclude_rows: also forbid value ``rows[b]`` itself (homogeneous views).

    Returns:
        (negatives [B, M] int64, valid [B, M] bool).
    """
    from graphrecall.graphs.sampling import gather_rows

    b = rows.numel()
    pos, owner = gather_rows(indptr, rows)
    if num_values <= DENSE_NEGATIVES_MAX_VALUES:
        forbidden = torch.zeros(b, num_values, dtype=torch.bool)
        forbidden[owner, members[pos]] = True
        if exclude_rows:
            forbidden[torch.arange(b), rows] = True
        allowed = (~forbidden).float()
        has = allowed.sum(1) > 0
        allowed[~has] = 1.0  # any draw; the row is marked invalid below
        neg = torch.multinomial(allowed, num_negatives, replacement=True, generator=generator)
        return neg, has.view(-1, 1).expand(-1, num_negatives).clone()
    keys = torch.sort(rows[owner] * num_values + members[pos]).values

    def bad(cand: Tensor) -> Tensor:
        q = rows.view(-1, 1) * num_values + cand
        at = torch.searchsorted(keys, q.reshape(-1)).clamp(max=max(keys.numel() - 1, 0))
        hit = (keys[at] == q.reshape(-1)).view(b, -1) if keys.numel() else torch.zeros_like(q, dtype=torch.bool)
        return hit | (cand == rows.view(-1, 1)) if exclude_rows else hit

    neg = torch.randint(num_values, (b, num_negatives), generator=generator)
    for _ in range(2):
        redo = bad(neg)
        if not bool(redo.any()):
            break
        neg[redo] = torch.randint(num_values, (int(redo.sum()),), generator=generator)
    return neg, ~bad(neg)


def pmi_target(counts: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    r"""Pointwise mutual information of a view's co-occurrence counts, the target of small views.

    .. math::
        \mathrm{PMI}(a, b) = \log \frac{n_{ab} \, N}{n_a \, n_b}, \quad n_a = \sum_b n_{ab},\ N = \sum_{ab} n_{ab}

    Skip-gram with negative sampling factorises PMI shifted by ``log M`` (Levy and Goldberg), but
    needs negatives that are not neighbours: a view of a dozen values with top-10 neighbours has
    almost none. Its PMI matrix is small, so it is fitted directly (:func:`pmi_loss`).

    Args:
        counts: [V, V] co-occurrence counts (diagonal ignored).

    Returns:
        (target [V, V] float32, 0 where unobserved; observed [V, V] bool, off-diagonal pairs with
        ``n_ab > 0``).
    """
    n = np.asarray(sp.csr_matrix(counts).todense(), dtype=np.float64)
    np.fill_diagonal(n, 0.0)
    total, row, col = n.sum(), n.sum(1, keepdims=True), n.sum(0, keepdims=True)
    observed = n > 0
    target = np.zeros_like(n)
    denom = row * col
    np.log(n * total / np.where(denom > 0, denom, 1.0), out=target, where=observed)
    return target.astype(np.float32), observed


def pmi_loss(inputs: Tensor, outputs: Tensor, target: Tensor, observed: Tensor) -> Tensor:
    """Squared error of ``<in_a, out_b>`` against ``PMI(a, b)`` over the observed pairs.

    Shapes:
        - inputs, outputs ``[V, d]``; target, observed ``[V, V]`` -> scalar
    """
    pred = inputs @ outputs.T
    err = (pred - target) ** 2 * observed
    return err.sum() / observed.sum().clamp(min=1)
