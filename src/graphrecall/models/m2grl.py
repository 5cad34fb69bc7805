"""Stage 2: M2GRL multi-view multi-task graph representation learning (design brief, section 3).

Reference: Wang et al., "M2GRL: A Multi-task Multi-view Graph Representation Learning Framework for
Web-scale Recommender Systems", KDD 2020 (arXiv 2005.10110).

Tasks, weighted by homoscedastic uncertainty (:class:`graphrecall.multitask.UncertaintyWeighting`):

* ``intra/content``: the stage-1 task on the content co-click graph (GNN encoder with side info);
* ``intra/<view>``: skip-gram with negative sampling on each side-info view's own co-click graph
  (each content replaced by its value(s)), one embedding table per view;
* ``inter/<view>``: align each content vector with the vector of one of its values of that view in a
  relation space ``sigmoid(e W_view)``, against random values (projection applied to negatives).

i2i recall uses the content vectors (same pool and trigger selection as stage 1); the view vectors
are saved (``view_vectors_<view>.npy``) for diversity recall. Training protocol as stage 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from graphrecall.data.schema import FeedDataset
from graphrecall.data.splits import Fold
from graphrecall.graphs.cache import cached, frame_fingerprint
from graphrecall.graphs.sampling import TopKGraph, top_k_graph
from graphrecall.graphs.views import build_view_graph
from graphrecall.losses import PairBCELoss
from graphrecall.models.features import FieldBags
from graphrecall.models.sage import SageI2IModule, SageRecall
from graphrecall.multitask import RelationAlignment, UncertaintyWeighting


class M2GRLModule(SageI2IModule):
    """Stage-1 content task + per-view SGNS tasks + content-to-value alignment tasks.

    Args (beyond :class:`SageI2IModule`'s):
        views (dict[str, int]): side-info view -> number of values.
        relation_dim (int): size of the relation space of the alignment tasks.
        weighting (str): ``uncertainty`` | ``equal`` | ``fixed``; ``task_weights`` for ``fixed``.
        view_batch (int): pairs per view task and step.
    """

    def __init__(self, encoder: dict[str, Any], views: dict[str, int], relation_dim: int = 32,
                 weighting: str = "uncertainty", task_weights: dict[str, float] | None = None,
                 view_batch: int = 1024, loss: str = "bce", num_negatives: int = 5, lr: float = 5e-3,
                 weight_decay: float = 0.0, batching: str = "auto", full_graph_max_nodes: int = 50_000,
                 seed: int = 0, temperature: float = 1.0, run_config: dict[str, Any] | None = None,
                 hard_negatives: dict[str, Any] | None = None) -> None:
        super().__init__(encoder, loss, num_negatives, lr, weight_decay, batching, full_graph_max_nodes, seed,
                         temperature, run_config, hard_negatives)
        self.save_hyperparameters()
        dim = int(encoder["hidden_dim"])
        self.view_tables = nn.ModuleDict({v: nn.Embedding(n, dim) for v, n in views.items()})
        for table in self.view_tables.values():
            nn.init.normal_(table.weight, std=0.1)
        self.alignment = RelationAlignment(list(views), dim, relation_dim)
        tasks = ["intra/content", *(f"intra/{v}" for v in views), *(f"inter/{v}" for v in views)]
        self.weighting = UncertaintyWeighting(tasks, weighting, task_weights)
        self.sgns = PairBCELoss()
        self.view_graphs: dict[str, TopKGraph] = {}

    def attach_views(self, view_graphs: dict[str, TopKGraph]) -> None:
        """The side-info views' top-k co-click graphs (value ids as in the content features)."""
        self.view_graphs = view_graphs

    def _view_task(self, view: str, gen: torch.Generator) -> Tensor | None:
        graph = self.view_graphs.get(view)
        if graph is None or graph.num_edges == 0:
            return None  # absent from this batch: contributes 0 (not NaN)
        n = min(int(self.hparams.view_batch), graph.num_edges)
        pick = torch.randint(graph.num_edges, (n,), generator=gen)
        src, dst = graph.row()[pick], graph.col[pick]
        neg = torch.randint(graph.num_nodes, (n, self.hparams.num_negatives), generator=gen)
        table = self.view_tables[view].weight
        hs = table[src.to(table.device)]
        pos = (hs * table[dst.to(table.device)]).sum(-1)
        negs = torch.einsum("bd,bmd->bm", hs, table[neg.to(table.device)])
        return self.sgns(pos, negs)

    def _alignment_task(self, view: str, src: Tensor, h_src: Tensor, gen: torch.Generator) -> Tensor | None:
        bags: FieldBags = self.features[view]
        counts = (bags.indptr[src.cpu() + 1] - bags.indptr[src.cpu()])
        has = counts > 0
        if not bool(has.any()):
            return None
        rows = torch.nonzero(has).squeeze(1)
        # one random value of each content (multi-valued fields: any of its values)
        offset = (torch.rand(rows.numel(), generator=gen) * counts[rows]).long()
        values = bags.values[bags.indptr[src.cpu()[rows]] + offset]
        neg = torch.randint(bags.num_values, (rows.numel(), self.hparams.num_negatives), generator=gen)
        table = self.view_tables[view].weight
        dev = table.device
        return self.alignment(view, h_src[rows.to(dev)], table[values.to(dev)], table[neg.to(dev)])

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        gen = self.step_generator(batch_idx)
        content_loss, src, h_src = self.pair_task(batch, gen)
        losses: dict[str, Tensor | None] = {"intra/content": content_loss}
        for view in self.view_tables:
            losses[f"intra/{view}"] = self._view_task(view, gen)
            losses[f"inter/{view}"] = self._alignment_task(view, src, h_src, gen)
        total = self.weighting(losses)
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
        for task, w in self.weighting.effective_weights().items():
            self.log(f"train/task_weight/{task}", w, on_epoch=True, sync_dist=True)

    def view_vectors(self) -> dict[str, np.ndarray]:
        return {v: t.weight.detach().cpu().numpy() for v, t in self.view_tables.items()}


class M2GRLRecall(SageRecall):
    """M2GRL content vectors served as an i2i pool (stage-1 serving), trained multi-task.

    Args (beyond :class:`SageRecall`'s):
        views: side-info views (null: every side-info field of the dataset).
        view_neighbors: top-k neighbours per value in each view graph.
        relation_dim: size of the alignment relation space.
        weighting: ``uncertainty`` | ``equal`` | ``fixed`` (with ``task_weights``).
        view_batch: pairs per view task and step.
    """

    name = "m2grl"

    def __init__(self, *args: Any, views: list[str] | None = None, view_neighbors: int = 10,
                 relation_dim: int = 32, weighting: str = "uncertainty",
                 task_weights: dict[str, float] | None = None, view_batch: int = 1024, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.views, self.view_neighbors, self.relation_dim = views, int(view_neighbors), int(relation_dim)
        self.weighting, self.task_weights, self.view_batch = weighting, task_weights, int(view_batch)

    def _view_names(self, dataset: FeedDataset) -> list[str]:
        views = list(dataset.side_info) if self.views is None else list(self.views)
        unknown = [v for v in views if v not in dataset.side_info]
        if unknown:
            raise ValueError(f"model.views {unknown} are not side-info fields of {dataset.name}: {list(dataset.side_info)}")
        return views

    def view_graphs(self, fold: Fold, dataset: FeedDataset, cache_dir: str | None) -> dict[str, TopKGraph]:
        params = {k: v for k, v in self.graph_cfg.items() if k not in ("name", "view")}
        out = {}
        for view in self._view_names(dataset):
            parts = {"clicks": frame_fingerprint(fold.train, ["u", "i", "timestamp"]), "view": view,
                     "contents": dataset.num_contents, **params}
            wg = cached(cache_dir, f"view-{view}", parts,
                        lambda v=view: build_view_graph(fold.train, dataset, view=v, **params))
            out[view] = top_k_graph(wg.weights, self.view_neighbors)
        return out

    def _graph_and_features(self, fold: Fold, dataset: FeedDataset, cache_dir: str | None):
        wg, topk, features = super()._graph_and_features(fold, dataset, cache_dir)
        missing = [v for v in self._view_names(dataset) if v not in features]
        if missing:
            raise ValueError(f"M2GRL views {missing} must also be encoder fields (model.encoder.fields)")
        self._views = self.view_graphs(fold, dataset, cache_dir)
        return wg, topk, features

    def build_module(self, dataset: FeedDataset, features: dict[str, FieldBags]) -> M2GRLModule:
        module = M2GRLModule(views={v: features[v].num_values for v in self._view_names(dataset)},
                             relation_dim=self.relation_dim, weighting=self.weighting, task_weights=self.task_weights,
                             view_batch=self.view_batch, **self.module_kwargs(dataset, features))
        module.attach_views(self._views)
        return module

    def fit(self, fold: Fold, dataset: FeedDataset, cache_dir: str | None = None,
            run_dir: Path | None = None) -> dict[str, Any]:
        info = super().fit(fold, dataset, cache_dir, run_dir)
        info.update({f"task_weight/{t}": w for t, w in self.module.weighting.effective_weights().items()})
        info.update({f"graph/view_{v}_edges": g.num_edges for v, g in self._views.items()})
        return info

    def save(self, directory: Path, dataset: FeedDataset) -> None:
        super().save(directory, dataset)
        for view, vectors in self.module.view_vectors().items():
            np.save(Path(directory) / f"view_vectors_{view}.npy", vectors)

    def load_checkpoint(self, path: str, dataset: FeedDataset) -> None:
        self.module = M2GRLModule.load_from_checkpoint(path, map_location="cpu")
