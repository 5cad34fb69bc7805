"""What every u2i embedding model shares: BPR training in Lightning, top-K serving by inner product,
and the recent-popularity back-fill for users the model never trained on.

A u2i network (:class:`~graphrecall.models.mf.MatrixFactorization`,
:class:`~graphrecall.models.lightgcn.LightGCNNet`) is a plain ``nn.Module`` with two methods:
``forward() -> (user_vectors [U, d], content_vectors [C, d])`` (the vectors that are scored) and
``ego(users, contents) -> [n, d]`` (the layer-0 parameter rows of a batch, for L2 regularisation).
It is built inside the Lightning module from primitives (a ``_target_`` dict), so checkpoints rebuild it.

Training protocol (as for stage 1): the model trains on the validation fold's window and every model
choice (checkpoint, early stopping, the plateau learning-rate schedule, the popularity bonus grid)
reads validation recall@50, computed by serving the val fold's target users exactly as at test time.
Later folds reuse the selected weights, or, with ``refit=true``, retrain from scratch on their own
window for the selected number of epochs (same seed, the same learning rate per epoch). A vector
is served only for a user (or group) with a click in the window its weights trained on; every other
user is cold and gets the back-fill (counted), even if they clicked in a later fold's window.

Serving score: ``s(u, c) = <e_u, e_c> + beta * log(1 + recent clicks of c)`` (``popularity_beta``,
``recall.popularity_beta``: a number, or a grid chosen on validation recall@50 as for stage 1); the
served lists report it per entry (``Recommendations.scores``, NaN on a cold user's back-fill).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import Tensor
from torch.utils.data import DataLoader
from torch_geometric.nn.models.lightgcn import BPRLoss

from graphrecall.data.schema import FeedDataset
from graphrecall.data.splits import Fold
from graphrecall.models.base import BACKFILL, MODEL, NO_SOURCE, Recommendations
from graphrecall.models.i2i import best_over_settings, choose_popularity_beta, popularity_beta_grid
from graphrecall.models.popular import (
    popularity_counts,
    popularity_ranking,
    recency_window,
    top_k_excluding,
)
from graphrecall.training import (
    VAL_METRIC,
    EpochSeededSampler,
    PairDataset,
    RankingValidationModule,
    check_refit_epochs,
    fit_fixed_epochs,
    fit_with_selection,
    keep_batch,
)
from graphrecall.recall.candidates import candidate_mask, check_candidate_rule
from graphrecall.recall.triggers import seen_matrix

log = logging.getLogger(__name__)


def interaction_pairs(train, num_contents: int) -> tuple[Tensor, Tensor]:
    """De-duplicated (user, content) pairs of a fold's training clicks, sorted by ``u * C + i``.

    Returns:
        ``users [P]`` and ``contents [P]`` int64.
    """
    keys = np.unique(train["u"].to_numpy(np.int64) * num_contents + train["i"].to_numpy(np.int64))
    return torch.from_numpy(keys // num_contents), torch.from_numpy(keys % num_contents)


def sample_negatives_uniform(users: Tensor, num_contents: int, num_negatives: int, positive_keys: Tensor,
                             generator: torch.Generator, rounds: int = 3) -> tuple[Tensor, int]:
    """``num_negatives`` uniform contents per user, redrawn (up to ``rounds`` times) where the user
    clicked the draw.

    Args:
        users: [B] user rows.
        positive_keys: [P] sorted ``u * C + i`` of the training pairs.

    Returns:
        ``[B, M]`` content rows and the number of draws still colliding with a positive.
    """
    neg = torch.randint(num_contents, (users.numel(), num_negatives), generator=generator)

    def collides(cand: Tensor) -> Tensor:
        keys = users.unsqueeze(1) * num_contents + cand
        pos = torch.searchsorted(positive_keys, keys).clamp_max(max(len(positive_keys) - 1, 0))
        return positive_keys[pos] == keys if len(positive_keys) else torch.zeros_like(keys, dtype=torch.bool)

    hit = collides(neg)
    for _ in range(rounds):
        if not hit.any():
            break
        neg = torch.where(hit, torch.randint(num_contents, neg.shape, generator=generator), neg)
        hit = collides(neg)
    return neg, int(hit.sum())


PLATEAU_DEFAULTS = {"enabled": True, "factor": 0.5, "patience": 1, "min_lr": 1e-5}


class ScheduledModule(RankingValidationModule):
    """A ranking-validated module whose learning rate follows a plateau schedule on validation, and
    that can replay a recorded schedule exactly (the refit, which has no validation).

    Set by the recommender before fitting (not hyperparameters: a refit replays a schedule):
    ``plateau`` (``enabled, factor, patience, min_lr``: :class:`torch.optim.lr_scheduler.ReduceLROnPlateau`
    on ``val/recall@50``, stepped at every validation check, ``check_every`` epochs; ``patience``
    counts checks) and ``lr_schedule`` (a learning rate per epoch to replay, None: plateau).
    ``lr_trace`` records the learning rate of every epoch trained (kept in checkpoints).
    """

    def __init__(self) -> None:
        super().__init__()
        self.plateau: dict[str, Any] = dict(PLATEAU_DEFAULTS)
        self.check_every = 1
        self.lr_schedule: list[float] | None = None
        self.lr_trace: list[float] = []

    def make_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError

    def configure_optimizers(self):
        optimizer = self.make_optimizer()
        if self.lr_schedule is not None or not self.plateau.get("enabled", True):
            return optimizer
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=float(self.plateau["factor"]), patience=int(self.plateau["patience"]),
            min_lr=float(self.plateau["min_lr"]))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": VAL_METRIC,
                                                         "interval": "epoch", "frequency": int(self.check_every)}}

    def on_train_epoch_start(self) -> None:
        optimizer = self.optimizers(use_pl_optimizer=False)
        if self.lr_schedule is not None:
            if self.current_epoch >= len(self.lr_schedule):
                raise ValueError(f"the replayed learning-rate schedule has {len(self.lr_schedule)} epochs; "
                                 f"epoch {self.current_epoch + 1} has none")
            for group in optimizer.param_groups:
                group["lr"] = float(self.lr_schedule[self.current_epoch])
        self.lr_trace = self.lr_trace[: self.current_epoch] + [float(optimizer.param_groups[0]["lr"])]
        self.log("train/lr", self.lr_trace[-1], on_epoch=True, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["lr_trace"] = list(self.lr_trace)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.lr_trace = list(checkpoint.get("lr_trace", []))


class U2IModule(ScheduledModule):
    r"""Thin Lightning wrapper over a u2i network: BPR with sampled negatives and L2 on the batch's
    layer-0 rows (PyG's :class:`~torch_geometric.nn.models.lightgcn.BPRLoss`),

    .. math::
        L = -\frac{1}{BM}\sum_{b,m} \ln\sigma(s_{u_b i_b} - s_{u_b j_{bm}})
            + \frac{\lambda}{B}\big\lVert [e^{(0)}_{u}, e^{(0)}_{i}, e^{(0)}_{j}] \big\rVert^2,

    validation recall through a callable evaluator attached with :meth:`attach`.

    Args:
        net: ``_target_`` + keyword arguments of the network (primitives only).
        num_contents: C, the range of the negatives.
        num_negatives: M, uniform negatives per positive pair.
        lr: Adam learning rate.
        lambda_reg: L2 strength :math:`\lambda`.
        seed: run seed (negatives).
        run_config: the run's resolved config, kept in the checkpoint.
    """

    def __init__(self, net: dict[str, Any], num_contents: int, num_negatives: int = 1, lr: float = 1e-3,
                 lambda_reg: float = 1e-4, seed: int = 0, run_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = instantiate(net)
        self.loss_fn = BPRLoss(lambda_reg)
        self.positive_keys = torch.zeros(0, dtype=torch.long)
        self.evaluator: Callable[[Tensor, Tensor], dict[str, float]] | None = None
        self._epoch_start = 0.0

    def attach(self, positive_keys: Tensor, evaluator: Callable[[Tensor, Tensor], dict[str, float]] | None) -> None:
        self.positive_keys, self.evaluator = positive_keys, evaluator

    @torch.no_grad()
    def vectors(self) -> tuple[Tensor, Tensor]:
        """``(users [U, d], contents [C, d])`` in eval mode."""
        was_training = self.training
        self.eval()
        out = self.net()
        self.train(was_training)
        return out

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        self.log("train/epoch_seconds", time.perf_counter() - self._epoch_start, on_epoch=True, sync_dist=True)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        users, pos = batch
        gen = torch.Generator().manual_seed(
            self.hparams.seed * 1_000_003 + self.current_epoch * 10_007 + batch_idx * 101 + self.global_rank)
        neg, collisions = sample_negatives_uniform(users.cpu(), self.hparams.num_contents,
                                                   self.hparams.num_negatives, self.positive_keys, gen)
        neg = neg.to(users.device)
        user_vecs, content_vecs = self.net()
        hu = user_vecs[users]
        pos_score = (hu * content_vecs[pos]).sum(-1)  # [B]
        neg_score = torch.einsum("bd,bmd->bm", hu, content_vecs[neg])  # [B, M]
        ego = self.net.ego(torch.cat([users, users]), torch.cat([pos, neg.reshape(-1)]))
        # PyG's BPRLoss divides the L2 term by positives.size(0) = B: per positive pair, as in the papers
        loss = self.loss_fn(pos_score.unsqueeze(1).expand_as(neg_score), neg_score, ego)
        b = users.numel()
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=b, sync_dist=True)
        self.log("train/negative_collisions", float(collisions), on_step=False, on_epoch=True, reduce_fx="sum",
                 batch_size=b, sync_dist=True)
        return loss

    def validation_metrics(self) -> dict[str, float] | None:
        return None if self.evaluator is None else self.evaluator(*self.vectors())

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)



@torch.inference_mode()
def top_k_by_score(user_vectors: Tensor, content_vectors: Tensor, seen, k: int,
                   chunk_size: int = 4096, bonus: Tensor | None = None,
                   candidates: np.ndarray | None = None,
                   return_scores: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Top-``k`` contents per user by inner product (plus a per-content ``bonus``), seen contents
    excluded.

    Args:
        user_vectors: [U, d] vectors of the served users.
        content_vectors: [C, d].
        seen: [U, C] CSR of contents to exclude.
        k: list length.
        chunk_size: users per matmul (memory ~ chunk_size x C scores).
        bonus: [C] added to every user's scores (the popularity bonus), or None.
        candidates: bool ``[C]``: only these may be returned (default: all).
        return_scores: also return the score that ranked each entry.

    Returns:
        [U, k] int64 content rows, -1 where fewer than ``k`` unseen candidates exist; with
        ``return_scores``, also [U, k] float64 scores (inner product plus bonus, in the vectors'
        precision), NaN where padded.
    """
    num_users, num_contents = user_vectors.shape[0], content_vectors.shape[0]
    out = np.full((num_users, k), -1, dtype=np.int64)
    out_scores = np.full((num_users, k), np.nan) if return_scores else None
    k_eff = min(k, num_contents)
    if k_eff == 0:
        return (out, out_scores) if return_scores else out
    excluded = None if candidates is None else torch.from_numpy(~np.asarray(candidates, dtype=bool))
    for start in range(0, num_users, chunk_size):
        stop = min(start + chunk_size, num_users)
        scores = user_vectors[start:stop] @ content_vectors.T  # [b, C]
        if bonus is not None:
            scores = scores + bonus.to(scores.dtype)
        block = seen[start:stop]
        rows = np.repeat(np.arange(stop - start), np.diff(block.indptr))
        scores[torch.from_numpy(rows), torch.from_numpy(block.indices.astype(np.int64))] = float("-inf")
        if excluded is not None:
            scores[:, excluded] = float("-inf")
        top = torch.topk(scores, k_eff, dim=1)
        idx = top.indices.cpu().numpy()
        values = top.values.cpu().double().numpy()
        padded = ~np.isfinite(values)
        idx[padded] = -1
        out[start:stop, :k_eff] = idx
        if return_scores:
            values[padded] = np.nan
            out_scores[start:stop, :k_eff] = values
    return (out, out_scores) if return_scores else out


def true_interest_agreement(user_vectors: np.ndarray, content_vectors: np.ndarray, truth: dict[str, Any],
                            user_rows: np.ndarray, chunk_size: int = 256) -> float:
    """Mean per-user Spearman correlation between ``<u, c>`` over all contents and the synthetic
    world's true interest of those users (NaN rows, constant scores, skipped).

    Args:
        user_vectors: [n, d]; content_vectors: [C, d]; truth: ``FeedDataset.truth``;
        user_rows: [n] rows of the users in the user table.
    """
    from graphrecall.data.synthetic import true_interest_scores
    from graphrecall.metrics import mean_rowwise_spearman

    return mean_rowwise_spearman(lambda rows: user_vectors[rows] @ content_vectors.T,
                                 lambda rows: true_interest_scores(truth, user_rows[rows]), len(user_rows), chunk_size)


def refit_lr_schedule(trained_lrs: list[float] | None, epochs: int, lr: float) -> list[float]:
    """The refit's learning rate per epoch: the validation run's rates for its first ``epochs``
    epochs, the last one repeated past the epochs it trained (``[lr] * epochs`` without a trace)."""
    trace = list(trained_lrs or [])
    if not trace:
        return [float(lr)] * epochs
    return (trace + [trace[-1]] * max(epochs - len(trace), 0))[:epochs]


class U2IRecall:
    """A u2i embedding model behind the :class:`~graphrecall.models.base.Recommender` contract;
    subclasses say which network to build (:meth:`net_config`) and what it needs from a fold
    (:meth:`bind`), or override :meth:`build` (DICE). See the module docstring for the protocol.

    Args:
        optim: ``lr, lambda_reg, batch_size`` and ``plateau`` (``enabled, factor, patience, min_lr``:
            the learning rate times ``factor`` after ``patience`` + 1 validation checks without a better
            val recall@50, down to ``min_lr``).
        trainer: Lightning ``Trainer`` arguments plus ``early_stopping_patience`` (validation checks,
            one every ``check_val_every_n_epoch`` epochs).
        logger: ``name`` (csv | wandb) and W&B settings.
        num_negatives: M, uniform negatives per (user, clicked content) pair.
        backfill_recent_days: popularity window of the cold users' back-fill and of the popularity
            bonus (all training pairs on folds without a cut).
        seed: run seed (initialisation, batch order, negatives).
        resume_from: a checkpoint to resume training from.
        serve_chunk_size: users per scoring matmul.
        refit: on the test fold, retrain from scratch on its window for the validation-selected
            number of epochs (same seed and per-epoch learning rates); the validation-trained model
            is kept as :attr:`reference` (evaluated as ``test_no_refit/...``).
        refit_epochs: null (the refit replays the validation-selected epochs), or a fixed epoch count
            for the refit (e.g. chosen on pooled backtest validation folds); its learning rates are
            the validation run's per-epoch rates, the last one repeated past the epochs it trained.
        popularity_beta: ``beta`` of the serving bonus ``beta * log(1 + recent clicks)``; a list is a
            grid chosen on validation recall@50 (``recall.popularity_beta``).
        candidates: which contents may be served at the fold's cut, ``auto`` | ``published`` |
            ``history`` | ``catalogue`` (:mod:`graphrecall.recall.candidates`).
    """

    name = "u2i"
    # Lightning callbacks added to the trainer's (set by train.train(cfg, extra_callbacks=...))
    extra_callbacks: list | None = None

    def __init__(self, optim: dict, trainer: dict, logger: dict | None = None, num_negatives: int = 1,
                 backfill_recent_days: float | None = 7, seed: int = 0, resume_from: str | None = None,
                 serve_chunk_size: int = 4096, refit: bool = False,
                 popularity_beta: float | list[float] = 0.0, candidates: str = "auto",
                 refit_epochs: int | None = None) -> None:
        self.optim, self.trainer_cfg = dict(optim), dict(trainer)
        self.plateau = {**PLATEAU_DEFAULTS, **dict(self.optim.get("plateau") or {})}
        unknown = set(self.plateau) - set(PLATEAU_DEFAULTS)
        if unknown:
            raise ValueError(f"model.optim.plateau: unknown key(s) {sorted(unknown)}; expected {sorted(PLATEAU_DEFAULTS)}")
        if not 0 < float(self.plateau["factor"]) < 1:
            raise ValueError(f"model.optim.plateau.factor must be in (0, 1), got {self.plateau['factor']}")
        self.logger_cfg = dict(logger or {"name": "csv"})
        self.num_negatives, self.backfill_recent_days = int(num_negatives), backfill_recent_days
        self.seed, self.resume_from, self.serve_chunk_size = seed, resume_from, int(serve_chunk_size)
        self.refit = bool(refit)
        self.refit_epochs = check_refit_epochs(refit_epochs, self.refit)
        self.beta_grid = popularity_beta_grid(popularity_beta)
        # one value: fixed; a grid: chosen on the validation fold (choose_serving)
        self.popularity_beta: float | None = self.beta_grid[0] if len(self.beta_grid) == 1 else None
        self.module: ScheduledModule | None = None
        self.run_config: dict[str, Any] | None = None
        self.best_checkpoint: str | None = None
        self.selected_epochs: int | None = None  # epochs of the validation-selected model (refit replays them)
        self.selected_lrs: list[float] | None = None  # their learning rates
        self.trained_lrs: list[float] | None = None  # the validation run's learning rate at every epoch it trained
        self.reference: U2IRecall | None = None  # test fold with refit: the validation-trained model
        self.user_vectors: np.ndarray | None = None  # [U, d]
        self.content_vectors: np.ndarray | None = None  # [C, d]
        self.trained_users: np.ndarray | None = None  # [U] bool: the served vector was trained on a click
        self.fallback: np.ndarray | None = None  # [C] back-fill ranking
        self.recent_log_popularity: np.ndarray | None = None  # [C] log(1 + recent clicks), the bonus
        self.candidates = check_candidate_rule(candidates)
        self.candidate_rows: np.ndarray | None = None  # [C] bool: servable at the current fold's cut

    # ---- what subclasses provide
    def net_config(self, num_users: int, num_contents: int) -> dict[str, Any]:
        """``_target_`` + primitive arguments of the network."""
        raise NotImplementedError

    def bind(self, fold: Fold, dataset: FeedDataset) -> dict[str, Any]:
        """Give the network what depends on the fold's window (LightGCN: its graph); returns stats."""
        return {}

    def build(self, fold: Fold, dataset: FeedDataset, evaluator: Callable | None) -> tuple[ScheduledModule, DataLoader]:
        """A fresh module bound to ``fold`` (``evaluator``: its validation, None for a refit), the
        loader of the fold's training pairs; sets :attr:`trained_users`."""
        num_users, num_contents = len(dataset.users), dataset.num_contents
        users, contents = interaction_pairs(fold.train, num_contents)
        if len(users) == 0:
            raise ValueError(f"the {fold.name} fold has no training click to train on")
        self.trained_users = np.zeros(num_users, dtype=bool)
        self.trained_users[users.numpy()] = True
        self.module = U2IModule(self.net_config(num_users, num_contents), num_contents, self.num_negatives,
                                float(self.optim.get("lr", 1e-3)), float(self.optim.get("lambda_reg", 1e-4)),
                                seed=self.seed, run_config=self.run_config)
        self.bind(fold, dataset)
        self.module.attach(users * num_contents + contents, evaluator)
        positives = PairDataset(users, contents)
        loader = DataLoader(positives, batch_size=int(self.optim.get("batch_size", 2048)), collate_fn=keep_batch,
                            sampler=EpochSeededSampler(len(positives), self.seed))
        return self.module, loader

    # ---- serving
    def set_fallback(self, fold: Fold, dataset: FeedDataset) -> None:
        """The fold's serving state: the back-fill ranking, the popularity bonus, the candidate contents."""
        self.fallback, recent = popularity_ranking(fold.train, dataset.num_contents,
                                                   recency_window(fold, self.backfill_recent_days))
        self.recent_log_popularity = np.log1p(recent)
        self.candidate_rows = candidate_mask(fold, dataset, self.candidates)
        self.fallback = self.fallback[self.candidate_rows[self.fallback]]

    def _set_vectors(self, user_vectors: Tensor, content_vectors: Tensor) -> None:
        self.user_vectors = user_vectors.detach().float().cpu().numpy()
        self.content_vectors = content_vectors.detach().float().cpu().numpy()

    def recommend(self, users: np.ndarray, fold: Fold, k: int, beta: float | None = None) -> Recommendations:
        """Top-``k`` unseen contents by score (plus the popularity bonus, ``beta`` overriding the chosen
        one); cold users (no vector trained on a click) get the recent-popularity back-fill.
        Counters: ``from_model`` and ``backfilled`` slots per user. Scores: the serving score that
        ranked each entry (``<e_u, e_c> + beta * log(1 + recent clicks)``), source ``model``; the
        back-fill scores NaN, source ``backfill``."""
        beta = self.popularity_beta if beta is None else beta
        if beta is None:
            raise ValueError("recall.popularity_beta is a grid and has not been chosen: the validation fold "
                             "(eval.folds must start with val) chooses it")
        users = np.asarray(users, dtype=np.int64)
        seen = seen_matrix(fold.history, users, len(self.content_vectors))
        cold = ~self.trained_users[users]
        items = np.full((len(users), k), -1, dtype=np.int64)
        scores = np.full((len(users), k), np.nan)
        warm_rows, cold_rows = np.flatnonzero(~cold), np.flatnonzero(cold)
        if len(warm_rows):
            bonus = torch.from_numpy(beta * self.recent_log_popularity) if beta else None
            items[warm_rows], scores[warm_rows] = top_k_by_score(
                torch.from_numpy(self.user_vectors[users[warm_rows]]), torch.from_numpy(self.content_vectors),
                seen[warm_rows], k, self.serve_chunk_size, bonus, self.candidate_rows, return_scores=True)
        if len(cold_rows):
            items[cold_rows] = top_k_excluding(self.fallback, seen[cold_rows], k)
        filled = (items >= 0).sum(1)
        sources = np.where(items < 0, NO_SOURCE, np.where(cold[:, None], BACKFILL, MODEL)).astype(np.int8)
        return Recommendations(users, items, {"from_model": np.where(cold, 0, filled),
                                              "backfilled": np.where(cold, filled, 0)}, scores, sources)

    def validation_evaluator(self, fold: Fold, dataset: FeedDataset) -> Callable[[Tensor, Tensor], dict[str, float]]:
        """Validation recall of a set of vectors, served exactly as at test time; with a
        ``popularity_beta`` grid an epoch is judged at its best beta (chosen for good after training)."""
        from graphrecall.evaluation import targets_matrix

        users = np.unique(fold.targets["u"].to_numpy())
        targets = targets_matrix(fold.targets, users, dataset.num_contents)

        def evaluate(user_vectors: Tensor, content_vectors: Tensor) -> dict[str, float]:
            self._set_vectors(user_vectors, content_vectors)
            betas = self.beta_grid if self.popularity_beta is None else [self.popularity_beta]
            return best_over_settings(betas, lambda beta: self.recommend(users, fold, 50, beta=beta).items, targets)

        return evaluate

    def choose_serving(self, fold: Fold, dataset: FeedDataset) -> dict[str, float]:
        """Choose ``popularity_beta`` from its grid on the val fold's recall@50 (any other fold is
        refused; ties: the first in grid order), with :func:`graphrecall.models.i2i.choose_popularity_beta`."""
        from graphrecall.evaluation import targets_matrix
        from graphrecall.metrics import recall_at_k

        def by_beta() -> dict[float, float]:
            users = np.unique(fold.targets["u"].to_numpy())
            targets = targets_matrix(fold.targets, users, dataset.num_contents)
            return {b: float(np.nanmean(recall_at_k(self.recommend(users, fold, 50, beta=b).items, targets, 50)))
                    for b in self.beta_grid}

        beta, info = choose_popularity_beta(self.beta_grid, by_beta, fold.name)
        if info:
            self.popularity_beta = beta
        return info

    def cold_report(self, fold: Fold) -> dict[str, float]:
        """The fold's target users served by the back-fill because no click trained their vector
        (``untrained_target_users``), and among them those with clicks in the fold's history
        (``untrained_with_history``: a later window's users, never served an untrained vector)."""
        users = np.unique(fold.targets["u"].to_numpy())
        cold = users[~self.trained_users[users]]
        with_history = np.isin(cold, fold.history["u"].to_numpy())
        return {"untrained_target_users": int(len(cold)), "untrained_with_history": int(with_history.sum())}

    # ---- diagnostics (after the test fold's evaluation)
    def diagnostic_users(self, fold: Fold, max_users: int = 2000, seed: int = 0) -> np.ndarray:
        """[n] sorted target users of the fold that the model serves (not back-filled), at most
        ``max_users`` (a seeded sample)."""
        users = np.unique(fold.targets["u"].to_numpy())
        users = users[self.trained_users[users]]
        if len(users) > max_users:
            users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
        return users

    def diagnostics(self, fold: Fold, dataset: FeedDataset, run_dir: Path | None = None) -> dict[str, float]:
        """Synthetic data only: mean over served target users of the Spearman correlation between
        the served scores and the world's true interest, over all contents (``true_interest_spearman``),
        and, for reference, of the true interest with the training window's popularity."""
        if dataset.truth is None or self.user_vectors is None:
            return {}
        from graphrecall.data.synthetic import true_interest_scores
        from graphrecall.metrics import mean_rowwise_spearman

        users = self.diagnostic_users(fold, seed=self.seed)
        pop = popularity_counts(fold.train, dataset.num_contents, "users").astype(np.float64)
        # reference: how far the world's true interest itself follows (training-window) popularity
        truth_pop = mean_rowwise_spearman(lambda rows: true_interest_scores(dataset.truth, users[rows]),
                                          lambda rows: pop, len(users))
        return {"true_interest_spearman": true_interest_agreement(self.user_vectors[users], self.content_vectors,
                                                                  dataset.truth, users),
                "truth/popularity_spearman": truth_pop, "diagnostic_users": float(len(users))}

    # ---- training
    def _train(self, fold: Fold, dataset: FeedDataset, run_dir: Path) -> dict[str, Any]:
        """Train on ``fold`` with selection on its validation (checkpoint, early stopping, plateau)."""
        pl.seed_everything(self.seed, workers=True, verbose=False)
        module, loader = self.build(fold, dataset, self.validation_evaluator(fold, dataset))
        module.plateau, module.check_every = dict(self.plateau), int(self.trainer_cfg.get("check_val_every_n_epoch", 1))
        result = fit_with_selection(module, loader, self.trainer_cfg, self.logger_cfg, run_dir, self.run_config,
                                    self.resume_from, self.extra_callbacks)
        self.best_checkpoint = result.pop("best_checkpoint")
        self.selected_epochs = int(result["best_epoch"]) + 1
        self.selected_lrs = list(module.lr_trace[: self.selected_epochs])
        self.trained_lrs = list(module.lr_trace)
        max_epochs = int(self.trainer_cfg.get("max_epochs", 0) or 0)
        return {**result, "positives": len(loader.dataset), "trained_users": int(self.trained_users.sum()),
                "selected_epochs": self.selected_epochs, "final_lr": module.lr_trace[-1] if module.lr_trace else 0.0,
                "stopped_on_patience": float(max_epochs <= 0 or result["epochs"] < max_epochs)}

    def _refit(self, fold: Fold, dataset: FeedDataset, run_dir: Path) -> dict[str, Any]:
        """Retrain from scratch on ``fold``'s window for the selected epochs (same seed, same per-epoch
        learning rates), with :func:`graphrecall.training.fit_fixed_epochs`."""
        if self.selected_epochs is None:
            raise ValueError("model.refit needs the epoch count selected on the val fold (eval.folds: [val, test])")
        pl.seed_everything(self.seed, workers=True, verbose=False)
        module, loader = self.build(fold, dataset, None)
        epochs = self.refit_epochs or self.selected_epochs
        module.lr_schedule = refit_lr_schedule(self.trained_lrs, epochs,
                                               float(self.optim.get("lr", 1e-3)))
        result = fit_fixed_epochs(module, loader, self.trainer_cfg, self.logger_cfg, Path(run_dir) / "refit",
                                  epochs, self.run_config)
        return {f"refit/{k}": v for k, v in result.items()} | {"refit/positives": len(loader.dataset),
                                                                "refit/trained_users": int(self.trained_users.sum()),
                                                                "refit/fixed_epochs": float(self.refit_epochs is not None)}

    def _as_reference(self) -> U2IRecall:
        """A copy serving the current vectors (the validation-trained model on this fold)."""
        reference = copy.copy(self)
        reference.module, reference.reference = None, None
        return reference

    def fit(self, fold: Fold, dataset: FeedDataset, cache_dir: str | None = None,
            run_dir: Path | None = None) -> dict[str, Any]:
        """Train and select on the first fold (val); on later folds refresh the fold-dependent parts
        (the network's graph, the back-fill) and reuse the weights, or refit (``refit=true``)."""
        start = time.perf_counter()
        run_dir = Path(run_dir or "outputs/adhoc")
        self.set_fallback(fold, dataset)
        self.reference = None
        if self.module is None:
            info = self._train(fold, dataset, run_dir)
        else:
            info = self.bind(fold, dataset)
            if self.refit:
                self.module.to("cpu")
                self._set_vectors(*self.module.vectors())
                self.reference = self._as_reference()
                info.update(self._refit(fold, dataset, run_dir))
        self.module.to("cpu")
        self._set_vectors(*self.module.vectors())
        if fold.name == "val" or self.popularity_beta is None:
            info.update(self.choose_serving(fold, dataset))
        info.update(self.cold_report(fold))
        info["popularity_all_pairs"] = float(recency_window(fold, self.backfill_recent_days) is None)
        info["fit_seconds"] = time.perf_counter() - start
        return info

    def save(self, directory: Path, dataset: FeedDataset) -> None:
        d = Path(directory)
        np.save(d / "user_vectors.npy", self.user_vectors)
        np.save(d / "content_vectors.npy", self.content_vectors)
        np.save(d / "trained_users.npy", self.trained_users)
        np.save(d / "fallback.npy", self.fallback)
        np.save(d / "recent_log_popularity.npy", self.recent_log_popularity)
        (d / "serving.json").write_text(json.dumps({"popularity_beta": self.popularity_beta}))

    def load(self, directory: Path, fold: Fold, dataset: FeedDataset) -> None:
        """Restore the served vectors, the trained-user mask, the back-fill and the chosen popularity
        bonus saved by :meth:`save`."""
        d = Path(directory)
        self.user_vectors = np.load(d / "user_vectors.npy")
        self.content_vectors = np.load(d / "content_vectors.npy")
        self.trained_users = np.load(d / "trained_users.npy")
        self.fallback = np.load(d / "fallback.npy")
        if (d / "serving.json").exists():  # runs saved before the popularity bonus have neither file
            self.recent_log_popularity = np.load(d / "recent_log_popularity.npy")
            self.popularity_beta = json.loads((d / "serving.json").read_text())["popularity_beta"]
        elif self.popularity_beta is None:
            raise ValueError(f"{d}: no serving.json, so no chosen recall.popularity_beta for the grid {self.beta_grid}")
        self.candidate_rows = candidate_mask(fold, dataset, self.candidates)
