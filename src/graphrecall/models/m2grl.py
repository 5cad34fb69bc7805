"""Stage 2: M2GRL multi-view multi-task graph representation learning (design brief, section 3).

Reference: Wang et al., "M2GRL: A Multi-task Multi-view Graph Representation Learning Framework for
Web-scale Recommender Systems", KDD 2020 (arXiv 2005.10110).

Tasks, weighted by homoscedastic uncertainty (:class:`graphrecall.multitask.UncertaintyWeighting`):

* ``intra/content``: the stage-1 task on the content co-click graph (GNN encoder with side info);
* ``intra/<view>``: the pair task on each side-info view's own co-click graph (each content replaced
  by its value(s)), with one encoder per view (``view_encoder``): ``sgns``, skip-gram with negative
  sampling over an embedding table (the paper), or ``gnn``, the stage-1 :class:`GNNEncoder` over a
  value-id embedding and the view graph's top-k weighted neighbours (same aggregator as the content
  task); separate parameters per view; optionally separate output vectors, negatives that are never
  the source or its neighbours, and, for views with few values (where almost every value is a
  neighbour), a PMI target or no task (``intra``);
* ``inter/<view>``: align each content vector with the vector of one of its values of that view in a
  relation space ``e W_view`` (paper's ``sigmoid`` score, ``centered`` or ``cosine``), against
  values the content does not hold (projection applied to negatives); which views align, a stop-
  gradient into the content vectors and a ramped, capped weight are options (``alignment``).

i2i recall uses the content vectors (same pool and trigger selection as stage 1); the view vectors
are saved (``view_vectors_<view>.npy``) and, with ``diversity.enabled``, feed the diversity recall of
:mod:`graphrecall.recall.diversity` (the content pool merged with candidates reached through the
nearest style / space values). Training protocol as stage 1; validation during training (checkpoint
selection, early stopping) reads the plain content pool, so diversity off and on share the trained
weights and differ only in serving.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from graphrecall.data.schema import FeedDataset
from graphrecall.data.splits import Fold
from graphrecall.graphs.cache import cached, graph_inputs
from graphrecall.graphs.sampling import TopKGraph, top_k_graph
from graphrecall.graphs.views import build_view_graph
from graphrecall.metrics import labels_to_csr
from graphrecall.models.encoders import GNNEncoder
from graphrecall.models.features import FieldBags
from graphrecall.models.popular import popularity_counts
from graphrecall.models.sage import SageI2IModule, SageRecall
from graphrecall.multitask import (
    RelationAlignment,
    UncertaintyWeighting,
    masked_pair_logistic,
    pmi_loss,
    pmi_target,
    ramped_weight,
    sample_excluding,
)
from graphrecall.recall.candidates import non_candidate_entries, restrict_pool
from graphrecall.recall.diversity import (
    merge_pools,
    nearest_values,
    similar_view_candidates,
    value_rankings,
    view_candidates,
)

log = logging.getLogger(__name__)
VIEW_ENCODERS = ("sgns", "gnn")
RANK_BY = ("popularity", "relation", "similarity")


class M2GRLModule(SageI2IModule):
    """Stage-1 content task + per-view intra tasks + content-to-value alignment tasks.

    Args (beyond :class:`SageI2IModule`'s):
        views (dict[str, int]): side-info view -> number of values.
        relation_dim (int): size of the relation space of the alignment tasks.
        weighting (str): ``uncertainty`` | ``equal`` | ``fixed``; ``task_weights`` for ``fixed``.
        view_batch (int): pairs per view task and step.
        view_encoder (str): ``sgns`` (an embedding table per view) or ``gnn`` (a :class:`GNNEncoder`
            per view over a value-id embedding and the view's top-k graph, built like ``encoder``).
        alignment (dict): ``views`` (aligned views, null: all), ``score`` (sigmoid | centered |
            cosine, :class:`RelationAlignment`), ``temperature`` (cosine), ``detach`` (no gradient
            from the alignment into the content vectors), ``weight`` and ``ramp_epochs`` (the
            alignment terms' multiplier, ramped linearly from 0), ``exclude_own`` (negatives are
            never one of the content's own values). Defaults: the first version's behaviour.
        intra (dict): ``output_table`` (separate output vectors for the intra task),
            ``exclude_neighbors`` (negatives are never the source value or its neighbours),
            ``min_values`` and ``small_views`` (views with fewer values get ``pmi``, ``none`` or
            ``sgns`` as their intra task).
        weighting_lr (float | None): Adam learning rate of the log-variances (None: ``lr``).

    Shapes:
        - :meth:`view_matrix`: ``[V_view, hidden_dim]`` vectors of every value of a view
    """

    def __init__(self, encoder: dict[str, Any], views: dict[str, int], relation_dim: int = 32,
                 weighting: str = "uncertainty", task_weights: dict[str, float] | None = None,
                 view_batch: int = 1024, loss: str = "bce", num_negatives: int = 5, lr: float = 5e-3,
                 weight_decay: float = 0.0, batching: str = "auto", full_graph_max_nodes: int = 50_000,
                 seed: int = 0, temperature: float = 1.0, run_config: dict[str, Any] | None = None,
                 hard_negatives: dict[str, Any] | None = None, view_encoder: str = "sgns",
                 objective: str = "reconstruction", next_click: dict[str, Any] | None = None,
                 alignment: dict[str, Any] | None = None, intra: dict[str, Any] | None = None,
                 weighting_lr: float | None = None, popularity: dict[str, Any] | None = None,
                 cold_start: dict[str, Any] | None = None, fanouts: list[int] | None = None,
                 trim_layers: bool = True, sparse_aggregation: bool = True) -> None:
        super().__init__(encoder, loss, num_negatives, lr, weight_decay, batching, full_graph_max_nodes, seed,
                         temperature, run_config, hard_negatives, objective, next_click, popularity, cold_start,
                         fanouts, trim_layers, sparse_aggregation)
        self.save_hyperparameters()
        if view_encoder not in VIEW_ENCODERS:
            raise ValueError(f"model.view_encoder must be one of {VIEW_ENCODERS}, got '{view_encoder}'")
        self.align_cfg = alignment_config(alignment, list(views))
        self.intra_cfg = intra_config(intra)
        dim = int(encoder["hidden_dim"])
        self.view_names = list(views)
        self.intra_kinds = {v: intra_kind(n, self.intra_cfg) for v, n in views.items()}
        if view_encoder == "sgns":
            self.view_tables = nn.ModuleDict({v: nn.Embedding(n, dim) for v, n in views.items()})
            for table in self.view_tables.values():
                nn.init.normal_(table.weight, std=0.1)
        else:  # values have no side info of their own: a value-id embedding is the encoder's input
            self.view_encoders = nn.ModuleDict(
                {v: GNNEncoder(**{**encoder, "field_sizes": {}, "num_nodes": n}) for v, n in views.items()})
        if self.intra_cfg["output_table"]:  # skip-gram's separate output ("context") vectors
            self.view_outputs = nn.ModuleDict({v: nn.Embedding(n, dim) for v, n in views.items()
                                               if self.intra_kinds[v] != "none"})
            for table in self.view_outputs.values():
                nn.init.normal_(table.weight, std=0.1)
        self.aligned = list(self.align_cfg["views"])
        self.alignment = RelationAlignment(self.aligned, dim, relation_dim, self.align_cfg["score"],
                                           self.align_cfg["temperature"])
        tasks = ["intra/content", *(f"intra/{v}" for v in views if self.intra_kinds[v] != "none"),
                 *(f"inter/{v}" for v in self.aligned)]
        self.weighting = UncertaintyWeighting(tasks, weighting, task_weights)
        self.view_graphs: dict[str, TopKGraph] = {}
        self.view_pmi: dict[str, tuple[Tensor, Tensor]] = {}
        self._view_graphs_on: tuple[torch.device, dict[str, TopKGraph]] | None = None

    def attach_views(self, view_graphs: dict[str, TopKGraph],
                     pmi: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        """The side-info views' top-k co-click graphs (value ids as in the content features) and,
        for views whose intra task is ``pmi``, their ``(target [V, V], observed [V, V])``
        (:func:`graphrecall.multitask.pmi_target`)."""
        self.view_graphs = view_graphs
        self.view_pmi = {v: (torch.as_tensor(t), torch.as_tensor(o)) for v, (t, o) in (pmi or {}).items()}
        self._view_graphs_on = None

    def view_matrix(self, view: str) -> Tensor:
        """``[V, d]`` vectors of every value of ``view``: the SGNS table, or a full-graph pass of the
        view's GNN encoder (values are few: hundreds to a few thousand)."""
        if self.hparams.view_encoder == "sgns":
            return self.view_tables[view].weight
        if view not in self.view_graphs:
            raise RuntimeError(f"view_encoder=gnn needs the graph of view '{view}': call attach_views first")
        dev = self.view_encoders[view].features.lin.weight.device
        if self._view_graphs_on is None or self._view_graphs_on[0] != dev:
            self._view_graphs_on = (dev, {v: g.to(dev) for v, g in self.view_graphs.items()})
        g = self._view_graphs_on[1][view]
        nodes = torch.arange(g.num_nodes, device=dev)
        # a view graph is small and passed whole: per-edge messages, as stage 1's full-graph passes
        return self.view_encoders[view](nodes, g.edge_index(), g.alpha, {}, sparse_aggregation=False)

    def alignment_scale(self, epoch: int | None = None) -> float:
        """The multiplier of the alignment terms (ramped, capped) at ``epoch`` (default: the current one)."""
        epoch = self.current_epoch if epoch is None else epoch
        return ramped_weight(epoch, float(self.align_cfg["weight"]), int(self.align_cfg["ramp_epochs"]))

    def task_scales(self, epoch: int | None = None) -> dict[str, float]:
        scale = self.alignment_scale(epoch)
        return {f"inter/{v}": scale for v in self.aligned}

    def _view_task(self, view: str, table: Tensor, gen: torch.Generator) -> Tensor | None:
        """The intra-view task of ``view`` (``table``: ``[V, d]`` its value vectors, :meth:`view_matrix`).

        ``sgns``: (value, top-k neighbour) against random values, logistic loss (with
        ``intra.exclude_neighbors``, negatives are never the source or its neighbours; a source
        without any other value has no valid negative and only its positive term counts);
        ``pmi``: the view's PMI matrix fitted by squared error; ``none``: no task (None)."""
        kind = self.intra_kinds[view]
        out = self.view_outputs[view].weight if self.intra_cfg["output_table"] and kind != "none" else table
        if kind == "pmi":
            if view not in self.view_pmi:
                raise RuntimeError(f"intra task pmi of view '{view}' needs its PMI target: call attach_views")
            target, observed = (t.to(table.device) for t in self.view_pmi[view])
            return pmi_loss(table, out, target, observed)
        graph = self.view_graphs.get(view)
        if kind == "none" or graph is None or graph.num_edges == 0:
            return None  # absent from this batch: contributes 0 (not NaN)
        n = min(int(self.hparams.view_batch), graph.num_edges)
        pick = torch.randint(graph.num_edges, (n,), generator=gen)
        src, dst = graph.row()[pick], graph.col[pick]
        m = self.hparams.num_negatives
        if self.intra_cfg["exclude_neighbors"]:
            neg, valid = sample_excluding(graph.rowptr, graph.col, src, graph.num_nodes, m, gen, exclude_rows=True)
        else:
            neg, valid = torch.randint(graph.num_nodes, (n, m), generator=gen), None
        self._count_negatives(f"intra/{view}", valid, n * m)
        hs = table[src.to(table.device)]
        pos = (hs * out[dst.to(table.device)]).sum(-1)
        negs = torch.einsum("bd,bmd->bm", hs, out[neg.to(table.device)])
        return masked_pair_logistic(pos, negs, None if valid is None else valid.to(table.device))

    def _alignment_task(self, view: str, table: Tensor, src: Tensor, h_src: Tensor,
                        gen: torch.Generator) -> Tensor | None:
        """Inter-view task of ``view``: content vectors ``h_src [B, d]`` of ``src [B]`` against one of
        their values and random values (with ``alignment.exclude_own``: never one of the content's
        own values), rows of ``table [V, d]``; ``alignment.detach`` stops the gradient into ``h_src``."""
        bags: FieldBags = self.features[view]
        src = src.cpu()
        counts = (bags.indptr[src + 1] - bags.indptr[src])
        has = counts > 0
        if not bool(has.any()):
            return None
        rows = torch.nonzero(has).squeeze(1)
        # one random value of each content (multi-valued fields: any of its values)
        offset = (torch.rand(rows.numel(), generator=gen) * counts[rows]).long()
        values = bags.values[bags.indptr[src[rows]] + offset]
        m = self.hparams.num_negatives
        if self.align_cfg["exclude_own"]:
            neg, valid = sample_excluding(bags.indptr, bags.values, src[rows], bags.num_values, m, gen)
        else:
            neg, valid = torch.randint(bags.num_values, (rows.numel(), m), generator=gen), None
        self._count_negatives(f"inter/{view}", valid, rows.numel() * m)
        dev = table.device
        h = h_src[rows.to(dev)]
        if self.align_cfg["detach"]:
            h = h.detach()
        return self.alignment(view, h, table[values.to(dev)], table[neg.to(dev)],
                              None if valid is None else valid.to(dev))

    def _count_negatives(self, task: str, valid: Tensor | None, drawn: int) -> None:
        """Negatives drawn and masked (no allowed value left) per task, logged per epoch."""
        sums = getattr(self, "_task_sums", None)
        if sums is not None:
            sums[f"{task}#drawn"] = sums.get(f"{task}#drawn", 0) + drawn
            sums[f"{task}#masked"] = sums.get(f"{task}#masked", 0) + (0 if valid is None else int((~valid).sum()))

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        gen = self.step_generator(batch_idx)
        content_loss, src, h_src = self.pair_task(batch, gen)
        losses: dict[str, Tensor | None] = {"intra/content": content_loss}
        for view in self.view_names:
            if self.intra_kinds[view] == "none" and view not in self.aligned:
                continue
            table = self.view_matrix(view)  # one encoder pass per view and step, shared by both tasks
            if self.intra_kinds[view] != "none":
                losses[f"intra/{view}"] = self._view_task(view, table, gen)
            if view in self.aligned:
                losses[f"inter/{view}"] = self._alignment_task(view, table, src, h_src, gen)
        total = self.weighting(losses, self.task_scales())
        sums = getattr(self, "_task_sums", None)
        if sums is not None:
            for task, loss in losses.items():
                if loss is not None:
                    sums[task] = sums.get(task, 0.0) + float(loss.detach())
                    sums[f"{task}#n"] = sums.get(f"{task}#n", 0) + 1
        return total

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._task_sums: dict[str, float] = {}

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        sums = getattr(self, "_task_sums", {})
        for task in self.weighting.tasks:
            if sums.get(f"{task}#n"):
                self.log(f"train/task_loss/{task}", sums[task] / sums[f"{task}#n"], on_epoch=True, sync_dist=True)
            if sums.get(f"{task}#drawn"):
                self.log(f"train/negatives_masked/{task}", sums[f"{task}#masked"] / sums[f"{task}#drawn"],
                         on_epoch=True, sync_dist=True)
        for task, w in self.weighting.effective_weights(self.task_scales()).items():
            self.log(f"train/task_weight/{task}", w, on_epoch=True, sync_dist=True)
        self.log("train/alignment_scale", self.alignment_scale(), on_epoch=True, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam; the log-variances in their own group (``weighting_lr``, no weight decay), so that
        the task weights move within a short run."""
        log_vars = self.weighting.log_vars
        rest = [p for p in self.parameters() if p is not log_vars]
        groups = [{"params": rest}]
        if log_vars.requires_grad:
            lr = self.hparams.lr if self.hparams.weighting_lr is None else float(self.hparams.weighting_lr)
            groups.append({"params": [log_vars], "lr": lr, "weight_decay": 0.0})
        return torch.optim.Adam(groups, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    @torch.no_grad()
    def view_vectors(self) -> dict[str, np.ndarray]:
        """``{view: [V, d]}`` value vectors (GNN views: eval mode, on the attached view graphs)."""
        was_training = self.training
        self.eval()
        out = {v: self.view_matrix(v).detach().cpu().numpy() for v in self.view_names}
        self.train(was_training)
        return out


ALIGNMENT_KEYS = {"views": None, "score": "sigmoid", "temperature": 0.1, "detach": False, "weight": 1.0,
                  "ramp_epochs": 0, "exclude_own": False}
INTRA_KEYS = {"output_table": False, "exclude_neighbors": False, "min_values": 0, "small_views": "pmi"}
SMALL_VIEW_TASKS = ("pmi", "none", "sgns")


def alignment_config(alignment: dict[str, Any] | None, views: list[str]) -> dict[str, Any]:
    """``model.alignment`` with its defaults (the first version's behaviour), checked; ``views``
    resolved to a list of model views."""
    cfg = {**ALIGNMENT_KEYS, **dict(alignment or {})}
    unknown = set(cfg) - set(ALIGNMENT_KEYS)
    if unknown:
        raise ValueError(f"model.alignment: unknown keys {sorted(unknown)}; expected {sorted(ALIGNMENT_KEYS)}")
    aligned = list(views) if cfg["views"] is None else list(cfg["views"])
    bad = [v for v in aligned if v not in views]
    if bad:
        raise ValueError(f"model.alignment.views {bad} are not views of the model {views}")
    if float(cfg["weight"]) < 0 or int(cfg["ramp_epochs"]) < 0:
        raise ValueError(f"model.alignment.weight and .ramp_epochs must be >= 0, got {cfg['weight']}, "
                         f"{cfg['ramp_epochs']}")
    return {**cfg, "views": aligned}


def intra_config(intra: dict[str, Any] | None) -> dict[str, Any]:
    """``model.intra`` with its defaults (the first version's behaviour), checked."""
    cfg = {**INTRA_KEYS, **dict(intra or {})}
    unknown = set(cfg) - set(INTRA_KEYS)
    if unknown:
        raise ValueError(f"model.intra: unknown keys {sorted(unknown)}; expected {sorted(INTRA_KEYS)}")
    if cfg["small_views"] not in SMALL_VIEW_TASKS:
        raise ValueError(f"model.intra.small_views must be one of {SMALL_VIEW_TASKS}, got '{cfg['small_views']}'")
    return cfg


def intra_kind(num_values: int, intra: dict[str, Any]) -> str:
    """The intra task of a view of ``num_values`` values: ``sgns`` from ``intra.min_values`` values on,
    ``intra.small_views`` below."""
    return "sgns" if num_values >= int(intra["min_values"]) else str(intra["small_views"])


class M2GRLRecall(SageRecall):
    """M2GRL content vectors served as an i2i pool (stage-1 serving), trained multi-task.

    Args (beyond :class:`SageRecall`'s):
        views: side-info views (null: every side-info field of the dataset).
        view_neighbors: top-k neighbours per value in each view graph.
        relation_dim: size of the alignment relation space.
        weighting: ``uncertainty`` | ``equal`` | ``fixed`` (with ``task_weights``).
        view_batch: pairs per view task and step.
        view_encoder: ``sgns`` | ``gnn`` (see :class:`M2GRLModule`).
        alignment, intra, weighting_lr: see :class:`M2GRLModule`.
        diversity: ``enabled, views, quota, neighbor_values, rank_by`` of the diversity recall
            (:mod:`graphrecall.recall.diversity`); ``views`` are side-info fields or diversity roles
            of the dataset (``style``/``space``: genres/decade on MovieLens).
    """

    name = "m2grl"

    def __init__(self, *args: Any, views: list[str] | None = None, view_neighbors: int = 10,
                 relation_dim: int = 32, weighting: str = "uncertainty",
                 task_weights: dict[str, float] | None = None, view_batch: int = 1024,
                 view_encoder: str = "sgns", diversity: dict[str, Any] | None = None,
                 alignment: dict[str, Any] | None = None, intra: dict[str, Any] | None = None,
                 weighting_lr: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.alignment = dict(alignment or {})
        self.intra = intra_config(intra)
        self.weighting_lr = None if weighting_lr is None else float(weighting_lr)
        self.views, self.view_neighbors, self.relation_dim = views, int(view_neighbors), int(relation_dim)
        self.weighting, self.task_weights, self.view_batch = weighting, task_weights, int(view_batch)
        if view_encoder not in VIEW_ENCODERS:
            raise ValueError(f"model.view_encoder must be one of {VIEW_ENCODERS}, got '{view_encoder}'")
        self.view_encoder = view_encoder
        self.diversity = {"enabled": False, "views": ["style", "space"], "quota": 0.2, "neighbor_values": 3,
                          "rank_by": "popularity", **dict(diversity or {})}
        if self.diversity["rank_by"] not in RANK_BY:
            raise ValueError(f"model.diversity.rank_by must be one of {RANK_BY}, got '{self.diversity['rank_by']}'")
        if not 0.0 <= float(self.diversity["quota"]) <= 1.0:
            raise ValueError(f"model.diversity.quota must be in [0, 1], got {self.diversity['quota']}")

    def _view_names(self, dataset: FeedDataset) -> list[str]:
        views = list(dataset.side_info) if self.views is None else list(self.views)
        unknown = [v for v in views if v not in dataset.side_info]
        if unknown:
            raise ValueError(f"model.views {unknown} are not side-info fields of {dataset.name}: {list(dataset.side_info)}")
        return views

    def view_graphs(self, fold: Fold, dataset: FeedDataset, cache_dir: str | None,
                    features: dict[str, FieldBags] | None = None) -> dict[str, TopKGraph]:
        """Every view's top-k co-click graph; also sets ``self._pmi``, the PMI targets of the views
        whose intra task is ``pmi`` (fewer than ``intra.min_values`` values), from the raw counts."""
        params = {k: v for k, v in self.graph_cfg.items() if k not in ("name", "view", "views")}
        out, self._pmi = {}, {}
        for view in self._view_names(dataset):
            parts = {**graph_inputs(fold.train, dataset, view), "view": view, **params}
            wg = cached(cache_dir, f"view-{view}", parts,
                        lambda v=view: build_view_graph(fold.train, dataset, view=v, **params))
            out[view] = top_k_graph(wg.weights, self.view_neighbors)
            if features is not None and intra_kind(features[view].num_values, self.intra) == "pmi":
                self._pmi[view] = pmi_target(wg.counts)
        return out

    def _graph_and_features(self, fold: Fold, dataset: FeedDataset, cache_dir: str | None):
        wg, topk, features = super()._graph_and_features(fold, dataset, cache_dir)
        missing = [v for v in self._view_names(dataset) if v not in features]
        if missing:
            raise ValueError(f"M2GRL views {missing} must also be encoder fields (model.encoder.fields)")
        self._views = self.view_graphs(fold, dataset, cache_dir, features)
        return wg, topk, features

    def build_module(self, dataset: FeedDataset, features: dict[str, FieldBags]) -> M2GRLModule:
        module = M2GRLModule(views={v: features[v].num_values for v in self._view_names(dataset)},
                             relation_dim=self.relation_dim, weighting=self.weighting, task_weights=self.task_weights,
                             view_batch=self.view_batch, view_encoder=self.view_encoder,
                             alignment={**self.alignment, "views": self.alignment_views(dataset)},
                             intra=self.intra, weighting_lr=self.weighting_lr,
                             **self.module_kwargs(dataset, features))
        module.attach_views(self._views, self._pmi)
        for view, kind in module.intra_kinds.items():
            log.info("M2GRL view %s: %d values, intra task %s, aligned %s", view, features[view].num_values, kind,
                     view in module.aligned)
        return module

    def fit(self, fold: Fold, dataset: FeedDataset, cache_dir: str | None = None,
            run_dir: Path | None = None) -> dict[str, Any]:
        info = super().fit(fold, dataset, cache_dir, run_dir)
        self.module.attach_views(self._views, self._pmi)  # this fold's graphs (GNN view encoders are inductive)
        scales = self.module.task_scales(max((self.served_epochs or 1) - 1, 0))  # the served model's last epoch's ramp
        info.update({f"task_weight/{t}": w for t, w in self.module.weighting.effective_weights(scales).items()})
        info.update({f"intra_task/{v}/{kind}": 1 for v, kind in self.module.intra_kinds.items()})
        info["alignment/views"] = len(self.module.aligned)
        info.update({f"graph/view_{v}_edges": g.num_edges for v, g in self._views.items()})
        info.update({f"graph/view_{v}_isolated_values": g.isolated() for v, g in self._views.items()})
        if self.diversity["enabled"]:
            info.update({f"diversity/{k}": v for k, v in self.diversify(fold, dataset).items()})
            # the view candidates may reach contents that may not be recommended at the cut: counted, dropped
            info["diversity/non_candidates_dropped"] = non_candidate_entries(self.pool, self.candidate_rows)
            self.pool = restrict_pool(self.pool, self.candidate_rows, self.pool.size)
        return info

    def alignment_views(self, dataset: FeedDataset) -> list[str] | None:
        """``alignment.views`` as side-info fields: model views, or diversity roles (``style`` /
        ``space``: genres / decade on MovieLens) resolved through the dataset; None: every view."""
        names = self.alignment.get("views")
        if names is None:
            return None
        model_views = self._view_names(dataset)
        out = []
        for name in names:
            field = name if name in model_views else dataset.diversity_fields.get(name, name)
            if field not in model_views:
                raise ValueError(f"model.alignment.views: '{name}' is neither a view of the model {model_views} "
                                 f"nor a diversity role {dataset.diversity_fields} mapping to one")
            out.append(field)
        return out

    def diversity_views(self, dataset: FeedDataset) -> dict[str, str]:
        """``{configured name: side-info field}`` of ``diversity.views`` (roles such as ``style``
        resolve through the dataset's diversity fields)."""
        names = list(self.diversity["views"] or [])
        if not names:
            raise ValueError("model.diversity.views is empty: name at least one side-info view")
        model_views = self._view_names(dataset)
        out = {}
        for name in names:
            field = name if name in model_views else dataset.diversity_fields.get(name, name)
            if field not in model_views:
                raise ValueError(f"model.diversity.views: '{name}' is neither a view of the model {model_views} "
                                 f"nor a diversity role {dataset.diversity_fields} mapping to one")
            out[name] = field
        return out

    def diversify(self, fold: Fold, dataset: FeedDataset) -> dict[str, float]:
        """Replace ``self.pool`` by the content pool merged with candidates reached through the
        diversity views' nearest values; returns the merge's counts (slots taken / given back per
        source, duplicates, short rows) and each source's share of the merged entries."""
        cfg = self.diversity
        views = self.diversity_views(dataset)
        vectors = self.module.view_vectors()
        popularity = popularity_counts(fold.train, dataset.num_contents)
        sources = {"content": self.pool}
        for name, field in views.items():
            bags, _ = labels_to_csr(dataset.contents[field])  # [C, V], value ids as in the content features
            bags = bags.tocsr()
            bags.sort_indices()
            rows = np.repeat(np.arange(bags.shape[0]), np.diff(bags.indptr))
            nearest, _ = nearest_values(vectors[field], bags, int(cfg["neighbor_values"]))
            if cfg["rank_by"] == "similarity":  # per query: the nearest values' contents most similar to it
                sources[name] = similar_view_candidates(nearest, bags, self.vectors, self.pool.size)
                continue
            if cfg["rank_by"] == "popularity":
                entry_scores = popularity[rows]
            else:  # the alignment task's relation-space score of (content, value)
                if field not in self.module.aligned:
                    raise ValueError(f"model.diversity.rank_by=relation needs view '{field}' in "
                                     f"model.alignment.views {self.module.aligned}")
                entry_scores = self.relation_scores(field, rows, bags.indices, vectors[field])
            ranked, ranked_scores = value_rankings(bags, entry_scores, self.pool.size)
            sources[name] = view_candidates(nearest, ranked, ranked_scores, self.pool.size)
        merged = merge_pools(sources, float(cfg["quota"]))
        self.pool = merged.pool
        filled = max(int((merged.source >= 0).sum()), 1)
        shares = {f"share/{n}": float((merged.source == s).sum()) / filled for s, n in enumerate(merged.names)}
        return {**merged.stats, **shares}

    @torch.no_grad()
    def relation_scores(self, view: str, contents: np.ndarray, values: np.ndarray,
                        value_vectors: np.ndarray) -> np.ndarray:
        """``[n]`` alignment scores of (content, value) entries (the trained relation space of ``view``)."""
        align = self.module.alignment.cpu()
        content = torch.from_numpy(np.asarray(self.vectors[contents], dtype=np.float32))  # [n, d]
        value = torch.from_numpy(np.asarray(value_vectors[values], dtype=np.float32)).unsqueeze(1)  # [n, 1, d]
        return align.score(view, content, value).squeeze(1).double().numpy()

    def save(self, directory: Path, dataset: FeedDataset) -> None:
        super().save(directory, dataset)
        for view, vectors in self.module.view_vectors().items():
            np.save(Path(directory) / f"view_vectors_{view}.npy", vectors)

    def load_checkpoint(self, path: str, dataset: FeedDataset) -> None:
        self.module = M2GRLModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
