"""Stage 3: DICE interest / conformity disentanglement on the user-group x content graph
(design brief, section 4; losses and sampler in :mod:`graphrecall.debias`).

Reference: Zheng et al., "Disentangling User Interest and Conformity for Recommendation with Causal
Embedding", WWW 2021; the authors' GNN variant: LightGCN branches.

Each group (or user, ``groups.mode=user``) and content has an interest and a conformity vector,
each from its own LightGCN branch over the group x content click graph (separate parameters);
``s_int = <q_int, i_int>``, ``s_con = <q_con, i_con>``, ``s_click = s_int + s_con``. Training
triples (group of a user, clicked content, negative) take their negatives from the popularity-split
sampler (the query's positives removed from both candidate sets before drawing; the share of
false negatives, 0, and of fallback draws logged every epoch); ``L = L_click + a_int L_int + a_con
L_con +/- b D`` (``D`` over contents plus over groups, as the authors' code, or jointly:
``dis_scope``) with the margin and the auxiliary weights decayed by ``decay`` after every epoch;
dropout on every propagation layer (``dropout_at=layer``, the authors') or on the final vectors.
``enabled=false`` is the same backbone with one vector and click BPR only (the non-disentangled
baseline).

Baselines behind the same entry point (``enabled=false``): one LightGCN branch of twice the
dimension (the authors match the budget: 128 vs 64 + 64) trained with click BPR, or with
inverse-propensity-weighted BPR (``ips=true``: weights ``max(pop) / pop_i`` of the clicked content,
clipped at the median weight and divided by the max by default, the authors' IPS-CN).

Hard negatives (``hard_negatives.enabled``): at the start of every epoch each query's contents
ranked ``ranks[0]..ranks[1]`` by the current interest (baseline: click) score, its positives
excluded, form a band of near misses; a ``share`` of every positive's negatives is drawn from it and
tagged by its popularity relation to the positive (more popular / less popular / neither: a
"neither" triple enters the click loss only).

Serving: u2i recall by the group's **interest** vector (``serve=interest``, this repo's choice) or
the concatenation (``serve=concat``, what the authors' code serves), so a user with no click of its
own is served through its group; a group (or user) without a training click is back-filled. An
entry's reported score is the inner product of the served vectors (``s_int``, or ``s_int + s_con``
with ``concat``) plus the popularity bonus; back-filled entries score NaN.
Training protocol as the other trainable models (:mod:`graphrecall.models.u2i`: validation fold,
selection on val recall@50, plateau learning rate, optional refit and popularity bonus).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from graphrecall.data.schema import FeedDataset
from graphrecall.data.splits import Fold
from graphrecall.debias import (
    bpr,
    curriculum,
    dice_losses,
    count_false_negatives,
    ips_weights,
    popularity_index,
    popularity_relation,
    sample_hard_negatives,
    sample_popularity_negatives,
    signed_discrepancy,
)
from graphrecall.graphs.views import build_group_graph, user_groups
from graphrecall.models.features import content_features
from graphrecall.models.lightgcn import FeatureLightGCNNet, LightGCNNet, bipartite_edge_index
from graphrecall.models.popular import popularity_counts
from graphrecall.metrics import mean_rowwise_spearman
from graphrecall.models.u2i import ScheduledModule, U2IRecall, top_k_by_score, true_interest_agreement
from graphrecall.training import EpochSeededSampler, PairDataset, keep_batch


DIS_SCOPES = ("separate", "joint")
DROPOUT_AT = ("layer", "output")
IPS_NORMALIZE = ("max", "mean")
DIS_LOSSES = ("dcor", "l1", "l2")


@dataclass
class FoldGraph:
    """What DICE needs from a fold.

    Attributes:
        q_of_user: [U] query row (group, or the user itself) of every user.
        num_groups: Q.
        queries, contents: [P] training positives (one per distinct user-content click, as query rows).
        edges: ([E], [E]) query-content edges of the propagation graph; edge_weight: [E] or None.
        group_items: [Q, C] CSR, nonzero where the query clicked the content (excluded from negatives).
    """

    q_of_user: np.ndarray
    num_groups: int
    queries: Tensor
    contents: Tensor
    edges: tuple[Tensor, Tensor]
    edge_weight: Tensor | None
    group_items: sp.csr_matrix


class DICEModule(ScheduledModule):
    """Two LightGCN branches (interest, conformity) trained with the DICE losses.

    Args:
        num_groups, num_contents: node counts.
        embedding_dim, num_layers: per branch (authors: 64 + 64, 2 layers).
        enabled: False -> one branch of ``2 * embedding_dim``, click BPR only (or IPS-BPR).
        num_negatives, margin, pool: sampler (margin in popularity units; decays with the curriculum).
        a_int, a_con, b: loss weights; dis_loss: l1 | l2 | dcor.
        decay: curriculum factor per epoch.
        dis_scope: ``separate`` (the authors' code: D over the batch's unique contents plus D over
            its unique groups / users) | ``joint`` (one D over groups and contents together).
        dis_sample: each discrepancy is computed on at most this many nodes (a seeded sample; dCor
            costs O(n^2)); None: all of them.
        dropout, dropout_at: dropout rate, training only (authors: 0.2), on every propagation layer's
            output (``layer``, the authors' code) or on the final propagated vectors (``output``).
        ips, ips_cap, ips_normalize: inverse-propensity-weighted click BPR (baseline only), weights
            :func:`graphrecall.debias.ips_weights` (authors: ``median``, ``max``).
        hard_negatives: ``enabled, share, ranks`` (see the module docstring).
        backbone: ``lightgcn`` (free layer-0 rows, the authors' GNN variant) or ``lightgcn_features``
            (content layer-0 vectors from side-info ID features, :class:`FeatureLightGCNNet`);
            field_sizes, field_dim: the side-info fields of the latter.
        lr, weight_decay: Adam (authors: betas 0.5/0.99, amsgrad, weight decay 5e-8).
    """

    def __init__(self, num_groups: int, num_contents: int, embedding_dim: int = 64, num_layers: int = 2,
                 enabled: bool = True, num_negatives: int = 4, margin: float = 10.0, pool: int = 40,
                 a_int: float = 0.1, a_con: float = 0.1, b: float = 0.01, dis_loss: str = "dcor",
                 decay: float = 0.9, dis_sample: int | None = 1024, dis_scope: str = "separate",
                 dropout: float = 0.0, dropout_at: str = "layer", ips: bool = False,
                 ips_cap: float | str | None = "median", ips_normalize: str = "max",
                 hard_negatives: dict[str, Any] | None = None, backbone: str = "lightgcn",
                 field_sizes: dict[str, int] | None = None, field_dim: int = 32, lr: float = 1e-3,
                 weight_decay: float = 5e-8, serve: str = "interest", seed: int = 0,
                 run_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        if ips and enabled:
            raise ValueError("model.dice.ips=true is the IPS-BPR baseline: it needs model.dice.enabled=false")
        for key, value, allowed in (("dis_scope", dis_scope, DIS_SCOPES), ("dropout_at", dropout_at, DROPOUT_AT),
                                    ("ips_normalize", ips_normalize, IPS_NORMALIZE), ("dis_loss", dis_loss, DIS_LOSSES)):
            if value not in allowed:
                raise ValueError(f"model.dice.{key} must be one of {allowed}, got '{value}'")
        hard = dict(hard_negatives or {})
        if hard.get("enabled"):
            lo, hi = (int(r) for r in hard.get("ranks", (50, 500)))
            share = float(hard.get("share", 0.25))
            if not 0 <= lo < hi or not 0 < share <= 1:
                raise ValueError(f"model.dice.hard_negatives needs 0 <= ranks[0] < ranks[1] and 0 < share <= 1, "
                                 f"got ranks={hard.get('ranks')} share={share}")
        self.save_hyperparameters()
        if backbone not in ("lightgcn", "lightgcn_features"):
            raise ValueError(f"model.dice.backbone must be lightgcn or lightgcn_features, got '{backbone}'")
        if backbone == "lightgcn_features" and not field_sizes:
            raise ValueError("model.dice.backbone=lightgcn_features needs side-info fields (the dataset has none)")

        layer_dropout = float(dropout) if dropout_at == "layer" else 0.0

        def branch(dim: int) -> torch.nn.Module:  # separate parameters per branch
            if backbone == "lightgcn":
                return LightGCNNet(num_groups, num_contents, dim, num_layers, layer_dropout)
            return FeatureLightGCNNet(num_groups, num_contents, dim, num_layers, dict(field_sizes), field_dim,
                                      layer_dropout)

        dim = embedding_dim if enabled else 2 * embedding_dim  # same budget as 64 + 64
        self.interest = branch(dim)
        self.conformity = branch(embedding_dim) if enabled else None
        self.popularity: np.ndarray | None = None
        self.group_items: sp.csr_matrix | None = None
        self.evaluator: Callable[[Tensor, Tensor], dict[str, float]] | None = None
        self.hard_band: np.ndarray | None = None  # [Q, w] mined near misses of the current epoch
        self.ips_weight: np.ndarray | None = None  # [C] weight of a click on each content

    def attach(self, edges: tuple[Tensor, Tensor], popularity: np.ndarray, group_items: sp.csr_matrix,
               evaluator: Callable[[Tensor, Tensor], dict[str, float]] | None,
               edge_weight: Tensor | None = None, features: dict | None = None) -> None:
        """The fold's (group, content) edges ([E] each, optional weights [E]), content popularity [C],
        group positives [Q, C] and, for ``backbone=lightgcn_features``, the contents' side-info bags."""
        if self.hparams.backbone == "lightgcn_features":
            if features is None:
                raise ValueError("backbone=lightgcn_features: attach() needs the contents' features")
            for net in (self.interest, self.conformity):
                if net is not None:
                    net.set_features(features)
        edge_index = bipartite_edge_index(edges[0], edges[1], self.hparams.num_groups)
        weight = None if edge_weight is None else torch.cat([edge_weight, edge_weight]).float()
        for net in (self.interest, self.conformity):
            if net is not None:
                net.set_graph(edge_index, weight)
        self.popularity, self.group_items, self.evaluator = popularity, group_items, evaluator
        self.pop_index = popularity_index(popularity, group_items)  # the sampler's per-fold lookup
        if self.hparams.ips:
            clicked = np.unique(group_items.indices)
            weight = np.zeros(len(popularity), dtype=np.float32)
            weight[clicked] = ips_weights(np.maximum(popularity[clicked], 1), self.hparams.ips_cap,
                                          self.hparams.ips_normalize)
            self.ips_weight = weight

    def _dropout(self, *xs: Tensor) -> list[Tensor]:
        """``dropout_at=output``: dropout on the final vectors (``layer``: inside the branches)."""
        p = float(self.hparams.dropout) if self.hparams.dropout_at == "output" else 0.0
        return [torch.nn.functional.dropout(x, p, self.training) if p > 0 else x for x in xs]

    def discrepancy(self, interest: list[Tensor], conformity: list[Tensor]) -> Tensor:
        """The signed discrepancy summed over node sets (``[n_k, d]`` each, interest vs conformity),
        each estimated on at most ``dis_sample`` of its nodes."""
        hp, terms = self.hparams, []
        for a, b in zip(interest, conformity):
            if hp.dis_sample and len(a) > hp.dis_sample:  # dCor is O(n^2): estimate it on a sample
                keep = torch.randperm(len(a), device=a.device)[: int(hp.dis_sample)]
                a, b = a[keep], b[keep]
            terms.append(signed_discrepancy(a, b, hp.dis_loss))
        return torch.stack(terms).sum()

    @torch.no_grad()
    def mine_hard_negatives(self) -> np.ndarray:
        """[Q, w] contents ranked ``ranks[0]..ranks[1]`` per query by the current interest score,
        positives excluded (-1 where a query's ranking runs out)."""
        lo, hi = (int(r) for r in self.hparams.hard_negatives.get("ranks", (50, 500)))
        q_int, c_int = self.vectors("interest")  # eval mode: no dropout
        top = top_k_by_score(q_int.float().cpu(), c_int.float().cpu(), self.group_items, hi)
        return top[:, lo:hi]

    @torch.no_grad()
    def vectors(self, serve: str | None = None) -> tuple[Tensor, Tensor]:
        """([Q, d], [C, d]) served vectors in eval mode: interest, or interest || conformity."""
        was_training = self.training
        self.eval()
        q_int, c_int = self.interest()
        if (serve or self.hparams.serve) == "concat" and self.conformity is not None:
            q_con, c_con = self.conformity()
            q_int, c_int = torch.cat([q_int, q_con], 1), torch.cat([c_int, c_con], 1)
        self.train(was_training)
        return q_int, c_int

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._sums = {"more_popular": 0.0, "negatives": 0, "loss": 0.0, "steps": 0, "hard": 0, "hard_neither": 0,
                      "false_negatives": 0.0, "fallback": 0, "uniform": 0, "no_candidate": 0}
        if (self.hparams.hard_negatives or {}).get("enabled"):
            self.hard_band = self.mine_hard_negatives()

    def on_train_epoch_end(self) -> None:
        s = getattr(self, "_sums", None)
        if s and s["steps"]:
            self.log("train/loss", s["loss"] / s["steps"], on_epoch=True, prog_bar=True, sync_dist=True)
            self.log("train/more_popular_share", s["more_popular"] / max(s["negatives"], 1), on_epoch=True,
                     sync_dist=True)
            self.log("train/margin", curriculum(self.hparams.margin, self.current_epoch, self.hparams.decay),
                     on_epoch=True, sync_dist=True)
            # sampler health: negatives that are the query's own positives (0 by construction, checked
            # independently), draws that fell back to one set / to uniform, draws with no candidate
            n = max(s["negatives"], 1)
            for key in ("false_negative", "fallback", "uniform", "no_candidate"):
                total = s["false_negatives"] if key == "false_negative" else s[key]
                self.log(f"train/{key}_share", total / n, on_epoch=True, sync_dist=True)
            if s["hard"]:
                self.log("train/hard_share", s["hard"] / max(s["negatives"], 1), on_epoch=True, sync_dist=True)
                self.log("train/hard_neither_share", s["hard_neither"] / s["hard"], on_epoch=True, sync_dist=True)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        q, pos = batch
        hp = self.hparams
        step_seed = hp.seed * 1_000_003 + self.current_epoch * 10_007 + batch_idx * 101 + self.global_rank
        torch.manual_seed(step_seed)
        rng = np.random.default_rng(step_seed)
        margin = curriculum(hp.margin, self.current_epoch, hp.decay)
        q_np, pos_np = q.cpu().numpy(), pos.cpu().numpy()
        negs = sample_popularity_negatives(q_np, pos_np, self.popularity, self.group_items,
                                           hp.num_negatives, margin, hp.pool, rng, index=self.pop_index)
        n = hp.num_negatives
        items, more, less = negs.items, negs.more_popular, ~negs.more_popular
        hard = np.zeros_like(more)
        if self.hard_band is not None:
            count = max(1, int(round(hp.hard_negatives.get("share", 0.25) * n)))
            mined = sample_hard_negatives(q_np, self.hard_band, min(count, n), rng)
            hard[:, : mined.shape[1]] = mined >= 0
            items = items.copy()
            items[:, : mined.shape[1]] = np.where(mined >= 0, mined, items[:, : mined.shape[1]])
            more_h, less_h = popularity_relation(self.popularity[pos_np][:, None], self.popularity[items], margin)
            more, less = np.where(hard, more_h, more), np.where(hard, less_h, less)
        inert = negs.no_candidate & ~hard  # the positive repeated: no gradient, counted apart
        false_negatives = count_false_negatives(q_np, items, self.group_items, skip=inert)
        qq, ii = q.repeat_interleave(n), pos.repeat_interleave(n)
        jj = torch.from_numpy(items.reshape(-1)).to(q.device)
        mask_more = torch.from_numpy(more.reshape(-1)).to(q.device)
        mask_less = torch.from_numpy(less.reshape(-1)).to(q.device)
        q_int, c_int = self._dropout(*self.interest())
        s_int_pos, s_int_neg = (q_int[qq] * c_int[ii]).sum(-1), (q_int[qq] * c_int[jj]).sum(-1)
        if self.conformity is None:
            pair_loss = bpr(s_int_pos, s_int_neg)
            if self.ips_weight is not None:
                pair_loss = pair_loss * torch.from_numpy(self.ips_weight).to(q.device)[ii]
            loss = pair_loss.mean()
        else:
            q_con, c_con = self._dropout(*self.conformity())
            s_con_pos, s_con_neg = (q_con[qq] * c_con[ii]).sum(-1), (q_con[qq] * c_con[jj]).sum(-1)
            parts = dice_losses(s_int_pos, s_int_neg, s_con_pos, s_con_neg, mask_more, mask_less)
            uq, ui = torch.unique(q), torch.unique(torch.cat([pos, jj]))
            if hp.dis_scope == "separate":  # the authors' code: contents, then groups / users
                disc = self.discrepancy([c_int[ui], q_int[uq]], [c_con[ui], q_con[uq]])
            else:
                disc = self.discrepancy([torch.cat([q_int[uq], c_int[ui]])], [torch.cat([q_con[uq], c_con[ui]])])
            a_int = curriculum(hp.a_int, self.current_epoch, hp.decay)
            a_con = curriculum(hp.a_con, self.current_epoch, hp.decay)
            loss = parts["click"] + a_int * parts["interest"] + a_con * parts["conformity"] + hp.b * disc
        s = getattr(self, "_sums", None)
        if s is not None:
            s["more_popular"] += float(more.sum())
            s["negatives"] += more.size
            s["hard"] += int(hard.sum())
            s["hard_neither"] += int((hard & ~more & ~less).sum())
            s["false_negatives"] += false_negatives
            s["fallback"] += int((negs.fallback & ~hard).sum())
            s["uniform"] += int((negs.uniform & ~hard).sum())
            s["no_candidate"] += int(inert.sum())
            s["loss"] += float(loss.detach())
            s["steps"] += 1
        return loss

    def validation_metrics(self) -> dict[str, float] | None:
        return None if self.evaluator is None else self.evaluator(*self.vectors())

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, betas=(0.5, 0.99), amsgrad=True,
                                weight_decay=self.hparams.weight_decay)


class DICERecall(U2IRecall):
    """DICE behind the recommender contract; serving and back-fill as :class:`U2IRecall`, with each
    user served by its group's vector (``groups.mode=group``) or its own (``user``).

    Args:
        dice: :class:`DICEModule` settings (``enabled, embedding_dim, num_layers, num_negatives,
            margin, pool, a_int, a_con, b, dis_loss, decay, serve``).
        groups: ``mode`` (group | user), ``fields``, ``bins`` (from the dataset config).
        figure: ``enabled, num_points, method`` (tsne | pca) of the interest/conformity figure.
        **kwargs: training arguments of :class:`U2IRecall` (optim, trainer, logger, seed, ...).
    """

    name = "dice"

    def __init__(self, dice: dict[str, Any], groups: dict[str, Any], figure: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dice_cfg, self.groups_cfg, self.figure_cfg = dict(dice), dict(groups), dict(figure or {})

    def _groups(self, dataset: FeedDataset) -> tuple[np.ndarray, int]:
        if self.groups_cfg.get("mode", "group") == "user":
            return np.arange(len(dataset.users)), len(dataset.users)
        codes, vocab = user_groups(dataset.users, list(self.groups_cfg.get("fields") or []),
                                   dict(self.groups_cfg.get("bins") or {}))
        return codes, len(vocab)

    def _fold_data(self, fold: Fold, dataset: FeedDataset) -> FoldGraph:
        q_of_user, num_groups = self._groups(dataset)
        c = dataset.num_contents
        pairs = fold.train.drop_duplicates(["u", "i"])
        q = np.array(q_of_user[pairs["u"].to_numpy()])
        i = np.array(pairs["i"].to_numpy())
        keys = np.unique(q * c + i)
        group_items = sp.csr_matrix((np.ones(len(keys), np.int8), (keys // c, keys % c)), shape=(num_groups, c))
        # the propagation graph (brief, section 4): w_tj = C(t,j) / sum_k C(t,k) over the window's
        # clicks, edges kept above groups.tau; unweighted (all clicked pairs) with groups.weighted=false
        tau, weighted = float(self.groups_cfg.get("tau", 0.0)), bool(self.groups_cfg.get("weighted", False))
        if weighted or tau > 0:
            graph = build_group_graph(fold.train, dataset, q_of_user, np.arange(num_groups), tau=tau,
                                      backend=str(self.groups_cfg.get("backend", "scipy")),
                                      spark=dict(self.groups_cfg.get("spark") or {}))
            kept = graph.weights.tocoo()
            edges = (torch.from_numpy(kept.row.astype(np.int64)), torch.from_numpy(kept.col.astype(np.int64)))
            weight = torch.from_numpy(kept.data.astype(np.float32)) if weighted else None
        else:
            edges = (torch.from_numpy(keys // c), torch.from_numpy(keys % c))
            weight = None
        return FoldGraph(q_of_user, num_groups, torch.from_numpy(q), torch.from_numpy(i), edges, weight, group_items)

    def build(self, fold: Fold, dataset: FeedDataset, evaluator: Callable | None) -> tuple[DICEModule, DataLoader]:
        """A fresh DICE module bound to ``fold``; :attr:`trained_users` = users whose query (group, or
        the user itself) has a training click in this window: only those vectors are ever served."""
        data = self._fold_data(fold, dataset)
        if len(data.queries) == 0:
            raise ValueError(f"the {fold.name} fold has no training click to train on")
        self.q_of_user = data.q_of_user
        if self.dice_cfg.get("backbone", "lightgcn") == "lightgcn_features":
            self.dice_cfg["field_sizes"] = {f: b.num_values for f, b in content_features(dataset).items()}
        self.module = DICEModule(data.num_groups, dataset.num_contents, **self.dice_cfg, seed=self.seed,
                                 lr=float(self.optim.get("lr", 1e-3)),
                                 weight_decay=float(self.optim.get("weight_decay", 5e-8)), run_config=self.run_config)
        self.module.evaluator = evaluator
        self.bind(fold, dataset, data)
        trained_queries = np.asarray(data.group_items.getnnz(axis=1) > 0)
        # a user is served by the model when its query has training clicks (in group mode, zero-click
        # users of such a group too); fixed here, at training time, not by a later fold's window
        self.trained_users = trained_queries[data.q_of_user]
        positives = PairDataset(data.queries, data.contents)
        loader = DataLoader(positives, batch_size=int(self.optim.get("batch_size", 512)), collate_fn=keep_batch,
                            sampler=EpochSeededSampler(len(positives), self.seed))
        return self.module, loader

    def bind(self, fold: Fold, dataset: FeedDataset, data: FoldGraph | None = None) -> dict[str, Any]:
        """Propagate over ``fold``'s group graph and sample against its popularity and positives."""
        data = data or self._fold_data(fold, dataset)
        pop = popularity_counts(fold.train, dataset.num_contents, "users")
        features = content_features(dataset) if self.module.hparams.backbone == "lightgcn_features" else None
        self.module.attach(data.edges, pop, data.group_items, self.module.evaluator, data.edge_weight, features)
        return {"graph/edges": int(len(data.edges[0])), "graph/clicked_pairs": int(data.group_items.nnz),
                "groups_with_clicks": int((data.group_items.getnnz(axis=1) > 0).sum()), "groups": data.num_groups}

    def diagnostics(self, fold: Fold, dataset: FeedDataset, run_dir: Path | None = None) -> dict[str, float]:
        """Per branch: Spearman agreement of its scores with the true interest (synthetic) and of its
        content-side scores with popularity; the interest/conformity projection figure
        (``figure.enabled``) saved as ``interest_conformity.png`` in ``run_dir``."""
        out = super().diagnostics(fold, dataset, run_dir)
        users = self.diagnostic_users(fold, seed=self.seed)
        pop = popularity_counts(fold.train, dataset.num_contents, "users").astype(np.float64)
        self.module.eval()  # no dropout in the diagnosed vectors
        with torch.no_grad():
            branches = {"interest": self.module.interest()}
            if self.module.conformity is not None:
                branches["conformity"] = self.module.conformity()
        for name, (q_vec, c_vec) in branches.items():
            u_vec, c_vec = q_vec[torch.from_numpy(self.q_of_user[users])].numpy(), c_vec.numpy()
            if dataset.truth is not None:
                out[f"{name}/true_interest_spearman"] = true_interest_agreement(u_vec, c_vec, dataset.truth, users)
            out[f"{name}/popularity_spearman"] = mean_rowwise_spearman(lambda rows: u_vec[rows] @ c_vec.T,
                                                                       lambda rows: pop, len(users))
        figure = dict(self.figure_cfg)
        if figure.get("enabled") and "conformity" in branches and run_dir is not None:
            out["figure_seconds"] = self.save_figure(branches["interest"][1].numpy(),
                                                     branches["conformity"][1].numpy(), pop, Path(run_dir), figure)
        return out

    def save_figure(self, interest: np.ndarray, conformity: np.ndarray, popularity: np.ndarray,
                    run_dir: Path, figure: dict[str, Any]) -> float:
        """The article's figure (contents' interest and conformity vectors projected together, by
        popularity level) as ``run_dir/interest_conformity.png``."""
        import time

        from graphrecall.plots import interest_conformity_projection, save_figure

        start = time.perf_counter()
        fig = interest_conformity_projection(interest, conformity, popularity,
                                             num_points=int(figure.get("num_points", 3000)),
                                             method=str(figure.get("method", "tsne")), seed=self.seed)
        path = run_dir / "interest_conformity.png"
        save_figure(fig, path)  # logged to W&B with the run's other figures (graphrecall.tracking.log_run_results)
        return time.perf_counter() - start

    def _set_vectors(self, group_vectors: Tensor, content_vectors: Tensor) -> None:
        super()._set_vectors(group_vectors[torch.from_numpy(self.q_of_user)], content_vectors)
