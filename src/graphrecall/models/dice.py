"""Stage 3: DICE interest / conformity disentanglement on the user-group x content graph
(design brief, section 4; losses and sampler in :mod:`graphrecall.debias`).

Reference: Zheng et al., "Disentangling User Interest and Conformity for Recommendation with Causal
Embedding", WWW 2021; the authors' GNN variant: LightGCN branches.

Each group (or user, ``groups.mode=user``) and content has an interest and a conformity vector,
each from its own LightGCN branch over the group x content click graph (separate parameters);
``s_int = <q_int, i_int>``, ``s_con = <q_con, i_con>``, ``s_click = s_int + s_con``. Training
triples (group of a user, clicked content, negative) take their negatives from the popularity-split
sampler; ``L = L_click + a_int L_int + a_con L_con +/- b D`` with the margin and the auxiliary
weights decayed by ``decay`` after every epoch. ``enabled=false`` is the same backbone with one
vector and click BPR only (the non-disentangled baseline).

Serving: u2i recall by the group's **interest** vector (``serve=interest``) or the concatenation
(``serve=concat``), so a user with no click of its own is served through its group. Training
protocol as the other trainable models (validation fold, selection on val recall@50).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import scipy.sparse as sp
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from graphrecall.data.schema import FeedDataset
from graphrecall.data.splits import Fold
from graphrecall.debias import bpr, curriculum, dice_losses, sample_popularity_negatives, signed_discrepancy
from graphrecall.graphs.views import user_groups
from graphrecall.models.lightgcn import LightGCNNet, bipartite_edge_index
from graphrecall.models.popular import popularity_counts
from graphrecall.models.u2i import U2IRecall
from graphrecall.training import EpochSeededSampler, PairDataset, RankingValidationModule, fit_with_selection, keep_batch


class DICEModule(RankingValidationModule):
    """Two LightGCN branches (interest, conformity) trained with the DICE losses.

    Args:
        num_groups, num_contents: node counts.
        embedding_dim, num_layers: per branch (authors: 64 + 64, 2 layers).
        enabled: False -> one branch, click BPR only.
        num_negatives, margin, pool: sampler (margin in popularity units; decays with the curriculum).
        a_int, a_con, b: loss weights; dis_loss: l1 | l2 | dcor.
        decay: curriculum factor per epoch.
        lr, weight_decay: Adam (authors: betas 0.5/0.99, amsgrad, weight decay 5e-8).
    """

    def __init__(self, num_groups: int, num_contents: int, embedding_dim: int = 64, num_layers: int = 2,
                 enabled: bool = True, num_negatives: int = 4, margin: float = 10.0, pool: int = 40,
                 a_int: float = 0.1, a_con: float = 0.1, b: float = 0.01, dis_loss: str = "dcor",
                 decay: float = 0.9, lr: float = 1e-3, weight_decay: float = 5e-8, serve: str = "interest",
                 seed: int = 0, run_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.interest = LightGCNNet(num_groups, num_contents, embedding_dim, num_layers)
        self.conformity = LightGCNNet(num_groups, num_contents, embedding_dim, num_layers) if enabled else None
        self.popularity: np.ndarray | None = None
        self.group_items: sp.csr_matrix | None = None
        self.evaluator: Callable[[Tensor, Tensor], dict[str, float]] | None = None

    def attach(self, edges: tuple[Tensor, Tensor], popularity: np.ndarray, group_items: sp.csr_matrix,
               evaluator: Callable[[Tensor, Tensor], dict[str, float]] | None) -> None:
        """The fold's (group, content) edges, content popularity and group positives."""
        edge_index = bipartite_edge_index(edges[0], edges[1], self.hparams.num_groups)
        for net in (self.interest, self.conformity):
            if net is not None:
                net.set_graph(edge_index)
        self.popularity, self.group_items, self.evaluator = popularity, group_items, evaluator

    def vectors(self, serve: str | None = None) -> tuple[Tensor, Tensor]:
        """([Q, d], [C, d]) served vectors: interest, or interest || conformity."""
        q_int, c_int = self.interest()
        if (serve or self.hparams.serve) == "concat" and self.conformity is not None:
            q_con, c_con = self.conformity()
            return torch.cat([q_int, q_con], 1), torch.cat([c_int, c_con], 1)
        return q_int, c_int

    def on_train_epoch_start(self) -> None:
        self._sums = {"more_popular": 0.0, "negatives": 0, "loss": 0.0, "steps": 0}

    def on_train_epoch_end(self) -> None:
        s = getattr(self, "_sums", None)
        if s and s["steps"]:
            self.log("train/loss", s["loss"] / s["steps"], on_epoch=True, prog_bar=True, sync_dist=True)
            self.log("train/more_popular_share", s["more_popular"] / max(s["negatives"], 1), on_epoch=True,
                     sync_dist=True)
            self.log("train/margin", curriculum(self.hparams.margin, self.current_epoch, self.hparams.decay),
                     on_epoch=True, sync_dist=True)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        q, pos = batch
        hp = self.hparams
        step_seed = hp.seed * 1_000_003 + self.current_epoch * 10_007 + batch_idx * 101 + self.global_rank
        torch.manual_seed(step_seed)
        rng = np.random.default_rng(step_seed)
        margin = curriculum(hp.margin, self.current_epoch, hp.decay)
        negs = sample_popularity_negatives(q.cpu().numpy(), pos.cpu().numpy(), self.popularity, self.group_items,
                                           hp.num_negatives, margin, hp.pool, rng)
        n = hp.num_negatives
        qq, ii = q.repeat_interleave(n), pos.repeat_interleave(n)
        jj = torch.from_numpy(negs.items.reshape(-1)).to(q.device)
        mask = torch.from_numpy(negs.more_popular.reshape(-1)).to(q.device)
        q_int, c_int = self.interest()
        s_int_pos, s_int_neg = (q_int[qq] * c_int[ii]).sum(-1), (q_int[qq] * c_int[jj]).sum(-1)
        if self.conformity is None:
            loss = bpr(s_int_pos, s_int_neg).mean()
        else:
            q_con, c_con = self.conformity()
            s_con_pos, s_con_neg = (q_con[qq] * c_con[ii]).sum(-1), (q_con[qq] * c_con[jj]).sum(-1)
            parts = dice_losses(s_int_pos, s_int_neg, s_con_pos, s_con_neg, mask)
            uq, ui = torch.unique(q), torch.unique(torch.cat([pos, jj]))
            disc = signed_discrepancy(torch.cat([q_int[uq], c_int[ui]]), torch.cat([q_con[uq], c_con[ui]]),
                                      hp.dis_loss)
            a_int = curriculum(hp.a_int, self.current_epoch, hp.decay)
            a_con = curriculum(hp.a_con, self.current_epoch, hp.decay)
            loss = parts["click"] + a_int * parts["interest"] + a_con * parts["conformity"] + hp.b * disc
        s = getattr(self, "_sums", None)
        if s is not None:
            s["more_popular"] += float(negs.more_popular.sum())
            s["negatives"] += negs.more_popular.size
            s["loss"] += float(loss.detach())
            s["steps"] += 1
        return loss

    def validation_metrics(self) -> dict[str, float] | None:
        return None if self.evaluator is None else self.evaluator(*self.vectors())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, betas=(0.5, 0.99), amsgrad=True,
                                weight_decay=self.hparams.weight_decay)


class DICERecall(U2IRecall):
    """DICE behind the recommender contract; serving and back-fill as :class:`U2IRecall`, with each
    user served by its group's vector (``groups.mode=group``) or its own (``user``).

    Args:
        dice: :class:`DICEModule` settings (``enabled, embedding_dim, num_layers, num_negatives,
            margin, pool, a_int, a_con, b, dis_loss, decay, serve``).
        groups: ``mode`` (group | user), ``fields``, ``bins`` (from the dataset config).
        **kwargs: training arguments of :class:`U2IRecall` (optim, trainer, logger, seed, ...).
    """

    name = "dice"

    def __init__(self, dice: dict[str, Any], groups: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dice_cfg, self.groups_cfg = dict(dice), dict(groups)

    def _groups(self, dataset: FeedDataset) -> tuple[np.ndarray, int]:
        if self.groups_cfg.get("mode", "group") == "user":
            return np.arange(len(dataset.users)), len(dataset.users)
        codes, vocab = user_groups(dataset.users, list(self.groups_cfg.get("fields") or []),
                                   dict(self.groups_cfg.get("bins") or {}))
        return codes, len(vocab)

    def _fold_data(self, fold: Fold, dataset: FeedDataset):
        q_of_user, num_groups = self._groups(dataset)
        c = dataset.num_contents
        pairs = fold.train.drop_duplicates(["u", "i"])
        q = q_of_user[pairs["u"].to_numpy()]
        i = pairs["i"].to_numpy()
        keys = np.unique(q * c + i)
        edges = (torch.from_numpy(keys // c), torch.from_numpy(keys % c))
        group_items = sp.csr_matrix((np.ones(len(keys), np.int8), (keys // c, keys % c)), shape=(num_groups, c))
        return q_of_user, num_groups, torch.from_numpy(q), torch.from_numpy(i), edges, group_items

    def _train(self, fold: Fold, dataset: FeedDataset, run_dir: Path) -> dict[str, Any]:
        pl.seed_everything(self.seed, workers=True, verbose=False)
        self.set_fallback(fold, dataset)
        q_of_user, num_groups, q, i, edges, group_items = self._fold_data(fold, dataset)
        if len(q) == 0:
            raise ValueError(f"the {fold.name} fold has no training click to train on")
        self.q_of_user = q_of_user
        self.module = DICEModule(num_groups, dataset.num_contents, **self.dice_cfg, seed=self.seed,
                                 lr=float(self.optim.get("lr", 1e-3)),
                                 weight_decay=float(self.optim.get("weight_decay", 5e-8)), run_config=self.run_config)
        self.bind(fold, dataset)
        self.module.evaluator = self.validation_evaluator(fold, dataset)
        positives = PairDataset(q, i)
        loader = DataLoader(positives, batch_size=int(self.optim.get("batch_size", 512)), collate_fn=keep_batch,
                            sampler=EpochSeededSampler(len(positives), self.seed))
        result = fit_with_selection(self.module, loader, self.trainer_cfg, self.logger_cfg, run_dir,
                                    self.run_config, self.resume_from, self.extra_callbacks)
        self.best_checkpoint = result.pop("best_checkpoint")
        return {**result, "positives": len(positives), "groups": num_groups}

    def bind(self, fold: Fold, dataset: FeedDataset) -> dict[str, Any]:
        q_of_user, num_groups, _, _, edges, group_items = self._fold_data(fold, dataset)
        pop = popularity_counts(fold.train, dataset.num_contents, "users")
        evaluator = self.module.evaluator
        self.module.attach(edges, pop, group_items, evaluator)
        trained_groups = np.zeros(num_groups, dtype=bool)
        trained_groups[edges[0].numpy()] = True
        # a user is served by the model when its group has training clicks (zero-click users too)
        self.trained_users = trained_groups[q_of_user]
        return {"graph/edges": int(len(edges[0])), "groups_with_clicks": int(trained_groups.sum())}

    def _set_vectors(self, group_vectors: Tensor, content_vectors: Tensor) -> None:
        super()._set_vectors(group_vectors[torch.from_numpy(self.q_of_user)], content_vectors)

    def fit(self, fold: Fold, dataset: FeedDataset, cache_dir: str | None = None,
            run_dir: Path | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {}
        self.set_fallback(fold, dataset)
        if self.module is None:
            info.update(self._train(fold, dataset, Path(run_dir or "outputs/adhoc")))
        info.update(self.bind(fold, dataset))
        self.module.to("cpu")
        with torch.no_grad():
            self._set_vectors(*self.module.vectors())
        return info
