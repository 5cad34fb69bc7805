"""Stage 1: single-view GraphSAGE-style i2i recall (design brief, section 2).

Reference: Hamilton et al., "Inductive Representation Learning on Large Graphs", NeurIPS 2017;
Ying et al., "Graph Convolutional Neural Networks for Web-Scale Recommender Systems" (PinSage),
KDD 2018. The article's stage 1: content co-click graph, side info as ID features, top-k weighted
neighbourhoods, Mean/Sum/GAT aggregation, dot-product pair reconstruction with BCE and sampled
negatives, then an offline top-k i2i pool served through trigger selection.

Training protocol: the encoder is trained on the validation fold's window, and every model choice
(checkpoint, early stopping) reads validation recall@50. The encoder is inductive (side-info
features + neighbourhoods), so the test fold reuses the selected weights on the test window's graph,
as a production model trained on yesterday's graph serves today's; the test is never read.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from graphrecall.data.schema import PUBLISHED_AT, FeedDataset
from graphrecall.data.next_click import next_click_pairs
from graphrecall.data.popularity_features import (
    feature_names,
    moment_index,
    popularity_feature_table,
    publication_features,
    published_days,
)
from graphrecall.data.splits import DAY, Fold
from graphrecall.graphs.sampling import (
    TopKGraph,
    drop_pair_edges,
    isolate_nodes,
    k_hop_subgraph,
    kept_per_hop,
    sample_negatives,
    top_k_graph,
)
from graphrecall.losses import SampledSoftmaxLoss, candidate_log_q, make_loss, sampled_softmax_logits
from graphrecall.models.coclick import content_graph
from graphrecall.models.cold_start import (
    check_cold_start,
    cold_mask,
    draw_cold_targets,
    mask_popularity,
    unclicked_contents,
)
from graphrecall.models.encoders import GNNEncoder
from graphrecall.models.features import FieldBags, content_features
from graphrecall.models.i2i import PoolRecall
from graphrecall.models.popularity_bias import PopularityBias
from graphrecall.recall.ann import build_pool, exact_topk
from graphrecall.recall.candidates import (
    candidate_mask,
    check_candidate_rule,
    non_candidate_entries,
    restrict_pool,
    search_width,
)
from graphrecall.recall.pool_weight import choose_pool_weight, pool_weight_grid
from graphrecall.training import (
    EpochSeededSampler,
    PairDataset,
    RankingValidationModule,
    check_refit_epochs,
    fit_fixed_epochs,
    fit_with_selection,
    keep_batch,
)

log = logging.getLogger(__name__)
OBJECTIVES = ("reconstruction", "next_click")
POOL_SCORES = ("logit", "probability")


class SageI2IModule(RankingValidationModule):
    """Thin Lightning wrapper over :class:`GNNEncoder`: pair-reconstruction training, validation
    recall through a callable evaluator.

    The graph, features and evaluator are attached with :meth:`attach` (rebuilt from data, not
    stored in checkpoints); the checkpoint holds the weights, these hyperparameters, and the run's
    resolved config (``run_config``).
    """

    def __init__(self, encoder: dict[str, Any], loss: str = "bce", num_negatives: int = 5, lr: float = 5e-3,
                 weight_decay: float = 0.0, batching: str = "auto", full_graph_max_nodes: int = 50_000,
                 seed: int = 0, temperature: float = 1.0, run_config: dict[str, Any] | None = None,
                 hard_negatives: dict[str, Any] | None = None, objective: str = "reconstruction",
                 next_click: dict[str, Any] | None = None, popularity: dict[str, Any] | None = None,
                 cold_start: dict[str, Any] | None = None, fanouts: list[int] | None = None,
                 trim_layers: bool = True, sparse_aggregation: bool = True) -> None:
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"model.objective must be one of {OBJECTIVES}, got '{objective}'")
        self.save_hyperparameters()
        self.net = GNNEncoder(**encoder)
        popularity = popularity or {}
        if popularity.get("enabled") and objective != "next_click":
            raise ValueError("model.popularity.enabled needs model.objective=next_click")
        # learned popularity/recency term of the next-click score (issue 10); its feature table is
        # attached per fold (attach_popularity), not stored in checkpoints
        self.popularity_bias = (PopularityBias(len(feature_names(bool(popularity.get("publication", False)))),
                                               int(popularity.get("hidden_dim", 16)))
                                if popularity.get("enabled") else None)
        self.popularity_table: Tensor | None = None  # [K, C, F] features as of cut - k days
        # [C] publication times in days from the cut (popularity.publication): ages at each query's time
        self.published_days: Tensor | None = None
        # cold-start simulation (graphrecall.models.cold_start): share of targets treated as new per step;
        # the fold's unclicked contents [C] bool are attached per fold (attach_cold_start)
        cold_cfg = check_cold_start(cold_start)
        self.cold_share, self.cold_popularity = cold_cfg["share"], cold_cfg["popularity"]
        self.unclicked: Tensor | None = None
        self._hard: Tensor | None = None  # [N, high - low] near misses of the current model
        self.loss_fn = make_loss(loss)
        self.softmax_loss = SampledSoftmaxLoss()
        # [C] log of each content's expected count among a step's candidates (next_click, logQ);
        # rebuilt from the training examples, not stored in checkpoints
        self.log_q: Tensor | None = None
        self.graph: TopKGraph | None = None
        self.features: dict[str, FieldBags] | None = None
        self.evaluator: Callable[[Tensor], dict[str, float]] | None = None
        self._epoch_start = self._last_step_end = 0.0
        self._on_device: tuple[torch.device, TopKGraph, dict[str, FieldBags]] | None = None

    def attach(self, graph: TopKGraph, features: dict[str, FieldBags],
               evaluator: Callable[[Tensor], dict[str, float]] | None = None) -> None:
        self.graph, self.features, self.evaluator = graph, features, evaluator
        self._on_device = None

    def attach_popularity(self, table: Tensor | None, published: Tensor | None = None) -> None:
        """The fold's popularity features [K, C, F] (row 0: as of the cut), for the learned term, and
        with ``popularity.publication`` the contents' publication times [C] in days from the cut."""
        self.popularity_table, self.published_days = table, published
        if self.uses_publication and published is None:
            raise ValueError("model.popularity.publication needs the contents' publication times (attach_popularity)")

    @property
    def uses_publication(self) -> bool:
        return self.popularity_bias is not None and bool((self.hparams.popularity or {}).get("publication", False))

    def attach_cold_start(self, unclicked: Tensor | None) -> None:
        """The fold's contents without a training click [C] bool (their node-id embedding is zeroed
        in every pass while the cold-start simulation is on)."""
        self.unclicked = unclicked

    def cold_for_pass(self, drawn: Tensor | None = None) -> Tensor | None:
        """[N] bool, the contents treated as new in a pass (the unclicked ones plus ``drawn``), or
        None when the cold-start simulation is off (today's passes, unchanged)."""
        if self.cold_share <= 0.0:
            return None
        return cold_mask(self.graph.num_nodes, self.unclicked, drawn)

    @torch.no_grad()
    def serving_bias(self) -> Tensor | None:
        """[C] the learned popularity term as of the cut (None without one)."""
        if self.popularity_bias is None:
            return None
        if self.popularity_table is None:
            raise ValueError("the popularity term needs the fold's feature table (attach_popularity)")
        feats = self.popularity_table[0].to(self.device)
        if self.uses_publication:  # ages at the cut itself
            feats = torch.cat([feats, publication_features(-self.published_days.to(self.device))], dim=-1)
        return self.popularity_bias(feats).float().cpu()

    def _graph_on(self, device: torch.device) -> tuple[TopKGraph, dict[str, FieldBags]]:
        """The attached graph and features on ``device`` (copied once per device; negatives are still
        drawn on the CPU graph)."""
        if self._on_device is None or self._on_device[0] != device:
            self._on_device = (device, self.graph.to(device), {f: b.to(device) for f, b in self.features.items()})
        return self._on_device[1], self._on_device[2]

    def _full_graph(self) -> bool:
        mode = self.hparams.batching
        return mode == "full" or (mode == "auto" and self.graph.num_nodes <= self.hparams.full_graph_max_nodes)

    def embed(self, nodes: Tensor, drop_pairs: tuple[Tensor, Tensor] | None = None,
              cold: Tensor | None = None) -> Tensor:
        """[n, d] vectors of the given nodes from their top-k neighbourhoods.

        ``drop_pairs = (src [B], dst [B])`` removes the edges between each pair (both directions,
        weights renormalised) for this pass: the next-click examples' own edges.
        ``cold`` [N] bool: contents treated as new for this pass, cut off from the graph (no edge in
        either direction, weights renormalised) and with a zeroed node-id embedding.
        Subgraph passes with ``trim_layers`` (hyperparameter, default on) compute at every layer only
        the rows the next layer reads (the same vectors, less message passing); ``sparse_aggregation``
        (default on) aggregates their mean / sum layers by a sparse adjacency product (the same vectors
        up to float rounding, 3x faster at 20k contents). Full-graph passes always use messages.
        """
        g, features = self._graph_on(nodes.device)
        if cold is not None:
            cold = cold.to(nodes.device)
        # sparse aggregation is the encoder's default: the switch is passed only to turn it off. Full-graph
        # passes (catalogues below the subgraph threshold) keep per-edge messages: their float sums, and so
        # every result measured on them, stay as they were; the speed matters on subgraph batches
        switch = {} if self.hparams.get("sparse_aggregation", True) else {"sparse_aggregation": False}
        if self._full_graph():
            switch = {"sparse_aggregation": False}
            all_nodes = torch.arange(g.num_nodes, device=nodes.device)
            edge_index, alpha = g.edge_index(), g.alpha
            if drop_pairs is not None:
                keep, alpha = drop_pair_edges(edge_index, alpha, *drop_pairs, g.num_nodes)
                edge_index, alpha = edge_index[:, keep], alpha[keep]
            if cold is not None:
                keep, alpha = isolate_nodes(edge_index, alpha, cold)
                edge_index, alpha = edge_index[:, keep], alpha[keep]
            return self.net(all_nodes, edge_index, alpha, features, id_mask=cold, **switch)[nodes]
        fanouts = self.hparams.get("fanouts")
        sub = k_hop_subgraph(g, nodes, len(self.net.convs), list(fanouts) if fanouts is not None else None)
        edge_index, alpha = sub.edge_index, sub.alpha
        trim = bool(self.hparams.get("trim_layers", True))
        hop_edges = sub.num_edges_per_hop  # removing edges keeps the hop order: recounted per hop
        if drop_pairs is not None:
            keep, alpha = drop_pair_edges(sub.nodes[edge_index], alpha, *drop_pairs, g.num_nodes)
            edge_index, alpha = edge_index[:, keep], alpha[keep]
            hop_edges = kept_per_hop(keep, hop_edges) if trim else hop_edges
        local_cold = None if cold is None else cold[sub.nodes]
        if local_cold is not None:
            keep, alpha = isolate_nodes(edge_index, alpha, local_cold)
            edge_index, alpha = edge_index[:, keep], alpha[keep]
            hop_edges = kept_per_hop(keep, hop_edges) if trim else hop_edges
        hops = {"num_nodes_per_hop": sub.num_nodes_per_hop, "num_edges_per_hop": hop_edges} if trim else {}
        # trimmed: the seed rows only
        h = self.net(sub.nodes, edge_index, alpha, features, id_mask=local_cold, **hops, **switch)
        pos = torch.full((g.num_nodes,), -1, dtype=torch.long, device=nodes.device)
        pos[sub.nodes[: sub.num_seeds]] = torch.arange(sub.num_seeds, device=nodes.device)
        return h[pos[nodes]]

    @torch.no_grad()
    def side_info_vectors(self, chunk_size: int = 65_536) -> Tensor:
        """[N, d] every content's vector from its side info alone: node-id embedding zeroed and no
        edge (each layer's self path), the way a content without clicks is embedded."""
        was_training = self.training
        self.eval()
        nodes = torch.arange(self.graph.num_nodes, device=self.device)
        cold = torch.ones(self.graph.num_nodes, dtype=torch.bool, device=self.device)
        out = torch.cat([self.embed(nodes[i : i + chunk_size], cold=cold) for i in range(0, len(nodes), chunk_size)])
        self.train(was_training)
        return out

    @torch.no_grad()
    def embed_all(self, chunk_size: int = 65_536) -> Tensor:
        """[N, d] vectors of every node (full graph, or seed chunks of k-hop subgraphs)."""
        was_training = self.training
        self.eval()
        nodes = torch.arange(self.graph.num_nodes, device=self.device)
        cold = self.cold_for_pass()  # serving: the unclicked contents are new (simulation on), else None
        if self._full_graph():
            out = self.embed(nodes, cold=cold)
        else:
            out = torch.cat([self.embed(nodes[i : i + chunk_size], cold=cold)
                             for i in range(0, len(nodes), chunk_size)])
        self.train(was_training)
        return out

    def on_train_epoch_start(self) -> None:
        self._epoch_start = self._last_step_end = time.perf_counter()
        hard = self.hparams.get("hard_negatives") or {}
        if hard.get("enabled") and self.current_epoch >= int(hard.get("start_epoch", 1)):
            # near misses: the contents ranked low..high by the current vectors (brief: ~50-500)
            low, high = (int(r) for r in hard.get("ranks", (50, 200)))
            vectors = self.embed_all()
            self._hard = torch.from_numpy(exact_topk(vectors.float().cpu(), high).neighbors[:, low:high])
        self._epoch_sums: list = [0.0, 0, 0]  # sum of loss x pairs, pairs, negative collisions

    def on_train_epoch_end(self) -> None:
        # the epoch's metrics are logged once here: two self.log calls per step cost ~1.5 ms each,
        # ~15% of a 20 ms small-graph step (benchmarks/lightning_overhead.py)
        loss_sum, pairs, collisions = getattr(self, "_epoch_sums", (0.0, 0, 0))
        if pairs:
            self.log("train/loss", loss_sum / pairs, on_epoch=True, prog_bar=True, sync_dist=True)
            self.log("train/negative_collisions", float(collisions), on_epoch=True, reduce_fx="sum", sync_dist=True)
        # epoch_seconds includes the end-of-epoch validation (run before this hook); steps_seconds is the
        # training steps alone (epoch start to the end of its last step)
        self.log("train/epoch_seconds", time.perf_counter() - self._epoch_start, on_epoch=True, sync_dist=True)
        self.log("train/steps_seconds", self._last_step_end - self._epoch_start, on_epoch=True, sync_dist=True)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._last_step_end = time.perf_counter()

    def step_generator(self, batch_idx: int) -> torch.Generator:
        """Negatives and dropout draw from (seed, epoch, step, rank) alone, so a run resumed from a
        checkpoint continues exactly as the uninterrupted run (whatever else used the global RNG)."""
        step_seed = self.hparams.seed * 1_000_003 + self.current_epoch * 10_007 + batch_idx * 101 + self.global_rank
        torch.manual_seed(step_seed)
        return torch.Generator().manual_seed(step_seed)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        """``batch`` = (source nodes [B], positive neighbours [B], optional pair weights [B])."""
        loss, _, _ = self.pair_task(batch, self.step_generator(batch_idx))
        return loss

    def pair_task(self, batch: tuple[Tensor, ...], gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """The content task's loss (``objective``: pair reconstruction or next click); also returns
        the sources and their vectors ``(loss, src [B], h_src [B, d])`` for tasks that reuse them
        (M2GRL's alignment). next_click batches are ``(src, dst, moment, weight)``."""
        if self.hparams.objective == "next_click":
            return self.next_click_task(batch, gen)
        src, dst = batch[0], batch[1]
        pair_weight = batch[2] if len(batch) > 2 else None
        neg, collisions = sample_negatives(self.graph, src.cpu(), self.hparams.num_negatives, gen)
        if self._hard is not None:
            neg = self.mix_hard_negatives(src.cpu(), neg, gen)
        neg = neg.to(src.device)
        cold = self.cold_for_pass(draw_cold_targets(dst.cpu(), self.cold_share, gen))
        nodes, inverse = torch.unique(torch.cat([src, dst, neg.reshape(-1)]), return_inverse=True)
        h = self.embed(nodes, cold=cold)
        b = src.numel()
        hs, hd, hn = h[inverse[:b]], h[inverse[b : 2 * b]], h[inverse[2 * b :]].view(b, -1, h.shape[-1])
        pos_score = (hs * hd).sum(-1) / self.hparams.temperature
        neg_score = torch.einsum("bd,bmd->bm", hs, hn) / self.hparams.temperature
        loss = self.loss_fn(pos_score, neg_score, pair_weight)
        if hasattr(self, "_epoch_sums"):  # logged per epoch in on_train_epoch_end (pair-weighted mean)
            self._epoch_sums[0] = self._epoch_sums[0] + loss.detach() * b
            self._epoch_sums[1] += b
            self._epoch_sums[2] += collisions
        return loss, src, hs

    def next_click_task(self, batch: tuple[Tensor, ...], gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Softmax over in-batch targets plus ``num_uniform`` uniform contents, logQ-corrected
        (:func:`graphrecall.losses.sampled_softmax_logits`); the batch's example edges are removed
        from the graph for this pass. ``batch`` = (triggers [B], later clicks [B], the triggers'
        moment index [B] for the popularity term, optional weights [B], and with
        ``popularity.publication`` the targets' click times [B] in days from the cut: every
        candidate's age is taken when the example's next click happened, so the clicked target is
        always published and only a sampled candidate can be "not yet published")."""
        src, dst = batch[0], batch[1]
        moment = batch[2] if len(batch) > 2 else None
        weight = batch[3] if len(batch) > 3 else None
        when = batch[4] if len(batch) > 4 else None
        cfg = self.hparams.next_click or {}
        num_uniform = int(cfg.get("num_uniform", 1024))
        uniform = torch.randint(self.graph.num_nodes, (num_uniform,), generator=gen).to(src.device)
        nodes, inverse = torch.unique(torch.cat([src, dst, uniform]), return_inverse=True)
        drop = (src, dst) if cfg.get("drop_example_edges", True) else None
        drawn = draw_cold_targets(dst.cpu(), self.cold_share, gen)
        h = self.embed(nodes, drop_pairs=drop, cold=self.cold_for_pass(drawn))
        b = src.numel()
        hs, hd, hu = h[inverse[:b]], h[inverse[b : 2 * b]], h[inverse[2 * b :]]
        log_q = None if self.log_q is None else self.log_q.to(src.device)
        bias = None
        if self.popularity_bias is not None:
            if self.popularity_table is None or moment is None:
                raise ValueError("the popularity term needs the feature table and each example's moment")
            table = self.popularity_table.to(src.device)
            if self.cold_popularity:  # the drawn targets' popularity history is that of a new content
                table = mask_popularity(table, drawn)
            candidates = torch.cat([dst, uniform])
            extra = None
            if self.uses_publication:  # each candidate's age when the example's target was clicked [B, N, 2]
                if when is None:
                    raise ValueError("model.popularity.publication needs each example's time in the batch")
                age = when.unsqueeze(1) - self.published_days.to(src.device)[candidates].unsqueeze(0)  # [B, N]
                if self.cold_popularity and drawn.numel():  # a drawn target was published just now
                    age = age.masked_fill(torch.isin(candidates, drawn.to(src.device)).unsqueeze(0), 0.0)
                extra = publication_features(age)
            bias = self.popularity_bias.candidate_bias(table, moment, candidates, extra)
        logits = sampled_softmax_logits(hs, hd, hu, src, dst, uniform, log_q, self.hparams.temperature, bias)
        loss = self.softmax_loss(logits, weight)
        if hasattr(self, "_epoch_sums"):
            self._epoch_sums[0] = self._epoch_sums[0] + loss.detach() * b
            self._epoch_sums[1] += b
        return loss, src, hs

    def mix_hard_negatives(self, src: Tensor, neg: Tensor, gen: torch.Generator) -> Tensor:
        """Replace the first ``share x num_negatives`` columns of ``neg`` [B, M] by random near misses
        of each source (``self._hard``); a near miss that is padding or a true neighbour keeps the
        random negative."""
        share = float(self.hparams.hard_negatives.get("share", 0.2))
        m = min(neg.shape[1], round(share * neg.shape[1]))
        if m == 0 or self._hard.shape[1] == 0:
            return neg
        cand = self._hard[src]  # [B, band]
        pick = torch.randint(cand.shape[1], (src.numel(), m), generator=gen)
        hard = torch.gather(cand, 1, pick)
        ok = (hard >= 0) & ~self.graph.contains(src.repeat_interleave(m), hard.reshape(-1).clamp(min=0)).view(-1, m)
        ok &= hard != src.view(-1, 1)
        out = neg.clone()
        out[:, :m] = torch.where(ok, hard, neg[:, :m])
        return out

    def validation_metrics(self) -> dict[str, float] | None:
        return None if self.evaluator is None else self.evaluator(self.embed_all())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)



class SageRecall(PoolRecall):
    """GraphSAGE-style i2i: train the encoder (Lightning), embed every content, exact top-P pool,
    trigger selection. See the module docstring for the training protocol.

    Args:
        graph: co-click graph config.
        triggers: trigger selection config.
        encoder: ``field_dim, hidden_dim, num_layers, node_ids, dropout, fields`` (fields: null = all).
        aggregator: ``name`` (mean | sum | gat) and ``heads``.
        loss: ``name`` (bce | bpr).
        sampling: ``neighbors`` (top-k), ``num_negatives``, ``batching`` (auto | full | subgraph),
            ``fanouts``, ``trim_layers`` (subgraph batches: each layer computes only the rows the next reads) and
            ``sparse_aggregation`` (mean / sum layers aggregate by a sparse adjacency product; same vectors).
        optim: ``lr, weight_decay, batch_size``.
        trainer: Lightning ``Trainer`` arguments plus ``early_stopping_patience``.
        logger: ``name`` (csv | wandb) and W&B settings.
        pool_size, backfill_recent_days: serving, as for co-click.
        seed: run seed (sampling, negatives, initialisation).
        ann: pool search, ``method`` (exact | faiss | hnsw) and its arguments; hnsw reports its
            recall against exact search (``pool/recall``).
        resume_from: a checkpoint to resume training from.
        objective: ``reconstruction`` (the article: the top-k co-click edges, BCE/BPR against
            random negatives) | ``next_click`` (a user's later click within ``horizon_days`` of a
            trigger, softmax over in-batch + ``num_uniform`` uniform candidates with logQ
            correction; the example's own edges are dropped from the graph for its pass).
        next_click: ``horizon_days, context, num_uniform, logq, drop_example_edges`` and
            ``half_life_days`` (null, or examples weighted by ``0.5 ** (age at the cut / half life)``).
        popularity: ``enabled``, ``hidden_dim``: a learned popularity/recency term of the
            next-click score, evaluated at each example's moment and, for serving, at the cut
            (:mod:`graphrecall.models.popularity_bias`).
        pool_score: what the pool stores and aggregate serving sums: ``logit`` (``<h_t, h_c> / T``
            plus the popularity term) or ``probability`` (its softmax over the catalogue: the
            trigger's next-click distribution, so a decayed sum over triggers is a mixture).
        refit: for the test fold, retrain from scratch on its window (everything before the cut)
            for the validation-selected number of epochs, same seed; the validation-trained
            model's test metrics are reported beside (``test_no_refit/...``).
        refit_epochs: null (the refit trains the validation-selected epoch count), or a fixed epoch
            count for the refit, e.g. one chosen on several backtest windows' validation folds pooled
            (``python -m graphrecall.backtest --pooled-epochs``); needs ``refit``.
        candidates: which contents the pool may hold at the fold's cut, ``auto`` | ``published`` |
            ``history`` | ``catalogue`` (:mod:`graphrecall.recall.candidates`); every content is
            embedded, contents without clicks from their side info.
        cold_start: ``share`` (0: off): the cold-start simulation (:mod:`graphrecall.models.cold_start`),
            a share of each step's targets / positives is cut off from the graph with a zeroed
            node-id embedding; while on, the fold's unclicked contents get a zeroed node-id
            embedding in every pass (training, validation, serving). ``popularity``: the drawn
            targets also get a never-clicked content's popularity features (next click with the
            learned popularity term).
    """

    name = "sage"
    # Lightning callbacks added to the trainer's (e.g. graphrecall.search's Optuna pruning callback);
    # objects, so not config: train.train(cfg, extra_callbacks=...) sets them
    extra_callbacks: list | None = None

    def __init__(self, graph: dict, triggers: dict, encoder: dict, aggregator: dict, loss: dict,
                 sampling: dict, optim: dict, trainer: dict, logger: dict | None = None, pool_size: int = 100,
                 backfill_recent_days: float | None = 7, seed: int = 0, resume_from: str | None = None,
                 ann: dict | None = None, objective: str = "reconstruction", next_click: dict | None = None,
                 refit: bool = False, popularity: dict | None = None, pool_score: str = "logit",
                 candidates: str = "auto", cold_start: dict | None = None, refit_epochs: int | None = None) -> None:
        super().__init__(pool_size, triggers, backfill_recent_days)
        self.cold_start = check_cold_start(cold_start)
        self.unclicked_rows: Tensor | None = None  # [C] bool, the current fold's contents without a training click
        self.candidates = check_candidate_rule(candidates)
        if objective not in OBJECTIVES:
            raise ValueError(f"model.objective must be one of {OBJECTIVES}, got '{objective}'")
        self.objective = objective
        self.next_click = {"horizon_days": 1.0, "context": 5, "num_uniform": 1024, "logq": True,
                           "drop_example_edges": True, "half_life_days": None, **dict(next_click or {})}
        self.popularity = {"enabled": False, "hidden_dim": 16, "publication": False, "pool_weight": 1.0,
                           "pool_weight_min_coverage": None, **dict(popularity or {})}
        self.fold_published: Tensor | None = None  # [C] days from the fold's cut (popularity.publication)
        if self.popularity["enabled"] and objective != "next_click":
            raise ValueError("model.popularity.enabled needs model.objective=next_click")
        self.pool_weight_grid = pool_weight_grid(self.popularity["pool_weight"])
        if not self.popularity["enabled"] and self.pool_weight_grid != [1.0]:
            raise ValueError(f"model.popularity.pool_weight={self.popularity['pool_weight']} weighs the learned "
                             "popularity term, which is off (model.popularity.enabled=false): nothing to weigh")
        self.pool_weight_min_coverage = self.popularity["pool_weight_min_coverage"]
        if self.pool_weight_min_coverage is not None and len(self.pool_weight_grid) == 1:
            raise ValueError(f"model.popularity.pool_weight_min_coverage={self.pool_weight_min_coverage} is the floor "
                             "of a choice among pool weights: give model.popularity.pool_weight a list (a grid)")
        # the pools' weight: fixed, or a grid's first value (validation epochs are judged at it) until the
        # val fold chooses (choose_pool_weight)
        self.pool_weight = self.pool_weight_grid[0]
        self.pool_weight_chosen = len(self.pool_weight_grid) == 1
        if pool_score not in POOL_SCORES:
            raise ValueError(f"model.pool_score must be one of {POOL_SCORES}, got '{pool_score}'")
        self.pool_score = pool_score
        self.refit = bool(refit)
        self.refit_epochs = check_refit_epochs(refit_epochs, self.refit)
        self.selected_epochs: int | None = None  # epochs of the validation-selected model (refit reuses it)
        self.reference: PoolRecall | None = None  # test fold with refit: the validation-trained model
        self.ann_cfg = dict(ann or {"method": "exact"})
        self.graph_cfg, self.encoder_cfg, self.aggregator_cfg = dict(graph), dict(encoder), dict(aggregator)
        self.loss_name = dict(loss).get("name", "bce")
        self.sampling, self.optim, self.trainer_cfg = dict(sampling), dict(optim), dict(trainer)
        self.logger_cfg = dict(logger or {"name": "csv"})
        self.seed, self.resume_from = seed, resume_from
        self.module: SageI2IModule | None = None
        self.run_config: dict[str, Any] | None = None
        self.best_checkpoint: str | None = None

    # ---- data -> tensors
    def _graph_and_features(self, fold: Fold, dataset: FeedDataset, cache_dir: str | None):
        wg = content_graph(fold, dataset, self.graph_cfg, cache_dir)
        topk = top_k_graph(wg.weights, int(self.sampling.get("neighbors", 10)))
        features = content_features(dataset, self.encoder_cfg.get("fields"))
        return wg, topk, features

    def build_module(self, dataset: FeedDataset, features: dict[str, FieldBags]) -> SageI2IModule:
        return SageI2IModule(**self.module_kwargs(dataset, features))

    def module_kwargs(self, dataset: FeedDataset, features: dict[str, FieldBags]) -> dict[str, Any]:
        """The module's constructor arguments (plain values: checkpoints rebuild the module from them)."""
        enc = self.encoder_cfg
        encoder = {
            "field_sizes": {f: b.num_values for f, b in features.items()},
            "field_dim": int(enc.get("field_dim", 32)),
            "hidden_dim": int(enc.get("hidden_dim", 64)),
            "num_layers": int(enc.get("num_layers", 2)),
            "aggregator": self.aggregator_cfg.get("name", "mean"),
            "heads": int(self.aggregator_cfg.get("heads", 4)),
            "num_nodes": dataset.num_contents if enc.get("node_ids", True) else None,
            "dropout": float(enc.get("dropout", 0.1)),
            "normalize": bool(enc.get("normalize", False)),
        }
        kwargs = {"encoder": encoder, "loss": self.loss_name, "num_negatives": int(self.sampling.get("num_negatives", 5)),
                "lr": float(self.optim.get("lr", 5e-3)), "weight_decay": float(self.optim.get("weight_decay", 0.0)),
                "batching": self.sampling.get("batching", "auto"), "seed": self.seed,
                "temperature": float(self.optim.get("temperature", 1.0)), "run_config": self.run_config,
                "hard_negatives": dict(self.sampling.get("hard_negatives") or {}),
                "objective": self.objective, "next_click": dict(self.next_click)}
        if self.popularity["enabled"]:  # passed only when used (modules built before it lack the argument)
            kwargs["popularity"] = {k: v for k, v in self.popularity.items()  # the pool_weight keys: pool only
                                    if k not in ("pool_weight", "pool_weight_min_coverage")}
        if self.cold_start["share"] > 0:  # likewise
            kwargs["cold_start"] = dict(self.cold_start)
        if self.sampling.get("fanouts") is not None:  # likewise
            kwargs["fanouts"] = [int(f) for f in self.sampling["fanouts"]]
        trim = self.sampling.get("trim_layers", True)
        if not isinstance(trim, bool):
            raise ValueError(f"model.sampling.trim_layers must be true or false, got {trim!r}")
        if not trim:  # likewise (on is the module's default)
            kwargs["trim_layers"] = False
        sparse = self.sampling.get("sparse_aggregation", True)
        if not isinstance(sparse, bool):
            raise ValueError(f"model.sampling.sparse_aggregation must be true or false, got {sparse!r}")
        if not sparse:  # likewise
            kwargs["sparse_aggregation"] = False
        return kwargs

    def publication_days(self, fold: Fold, dataset: FeedDataset) -> Tensor | None:
        """[C] publication times in days from the fold's cut (None unless ``popularity.publication``)."""
        if not (self.popularity["enabled"] and self.popularity["publication"]):
            return None
        if PUBLISHED_AT not in dataset.contents.columns:
            raise ValueError(f"model.popularity.publication=true needs a '{PUBLISHED_AT}' column in the contents "
                             f"table of {dataset.name}")
        return published_days(dataset.contents[PUBLISHED_AT].to_numpy(), int(fold.cut))

    def popularity_table(self, fold: Fold, dataset: FeedDataset) -> Tensor | None:
        """The fold's popularity features as of every day before its cut (None when unused)."""
        if not self.popularity["enabled"]:
            return None
        if fold.cut is None:
            why = fold.info.get("not_ordered")
            raise ValueError("model.popularity needs a split with a cut in time (dataset.split.kind=temporal, or "
                             "predefined files ordered in time)" + (f": the predefined files are not ordered: {why}" if why
                             else "") + "; or turn the learned popularity term off (model.popularity.enabled=false)")
        return popularity_feature_table(fold.train, dataset.num_contents, int(fold.cut))

    def pool_scoring(self, candidates: np.ndarray | None = None) -> dict[str, Any]:
        """Arguments of :func:`exact_topk` that turn inner products into this model's pool scores:
        none without the popularity term and with ``pool_score=logit`` (plain inner products, any
        ``ann.method``); else the training logits ``<h_t, h_c> / T + w b_c`` (``w``:
        :attr:`pool_weight`, 1 by default, the model's own score), or their softmax over
        ``candidates`` (bool [C], the contents that may be recommended at the fold's cut; default
        ``self.candidate_rows``), so that a content published after the cut takes no probability."""
        bias = self.module.serving_bias()
        if bias is not None:  # the pool's share of the term (x 1.0 by default: exact)
            bias = self.pool_weight * bias
        if bias is None and self.pool_score == "logit":
            return {}
        temperature = float(self.optim.get("temperature", 1.0))
        if self.ann_cfg.get("method", "exact") != "exact":
            raise ValueError("model.popularity and model.pool_score=probability score the pool with "
                             "model.ann.method=exact only")
        scoring = {"scale": 1.0 / temperature, "item_bias": bias, "softmax": self.pool_score == "probability"}
        if scoring["softmax"]:
            scoring["normalise_over"] = self.candidate_rows if candidates is None else candidates
        return scoring

    def validation_evaluator(self, fold: Fold, dataset: FeedDataset) -> Callable[[Tensor], dict[str, float]]:
        """Validation recall of a set of content vectors, served exactly as at test time."""
        from graphrecall.evaluation import targets_matrix

        users = np.unique(fold.targets["u"].to_numpy())
        targets = targets_matrix(fold.targets, users, dataset.num_contents)
        context = self.user_context(users, fold, dataset.num_contents)  # the same every epoch: built once
        cand = candidate_mask(fold, dataset, self.candidates)

        def evaluate(vectors: Tensor) -> dict[str, float]:
            wide = exact_topk(vectors.float(), search_width(self.pool_size, cand), **self.pool_scoring(cand))
            self.pool = restrict_pool(wide, cand, self.pool_size)
            return self.best_serving_metrics(users, targets, context)  # epochs: the main channel alone

        return evaluate

    # ---- training
    def training_examples(self, fold: Fold, topk: TopKGraph) -> tuple[PairDataset, Tensor | None]:
        """The content task's examples and, for next_click with logQ, ``log Q`` [C].

        reconstruction: the top-k graph's edges (optionally weighted by their share of the row);
        next_click: (trigger, later click) pairs of the fold's training window.
        """
        if self.objective == "next_click":
            if (self.sampling.get("hard_negatives") or {}).get("enabled"):
                raise ValueError("sampling.hard_negatives is for model.objective=reconstruction")
            src, dst, when, clicked = next_click_pairs(fold.train, float(self.next_click["horizon_days"]),
                                                       int(self.next_click["context"]), return_times=True)
            tensors = [torch.from_numpy(src), torch.from_numpy(dst)]
            cut = int(fold.cut) if fold.cut is not None else int(when.max(initial=0)) + 1
            # the moment a_k = cut - k days at or before each trigger: its popularity features
            tensors.append(torch.from_numpy(moment_index(when, cut)))
            half_life = self.next_click.get("half_life_days")
            if half_life is not None:
                if float(half_life) <= 0:
                    raise ValueError(f"model.next_click.half_life_days must be > 0 or null, got {half_life}")
                weight = 0.5 ** ((cut - when) / (float(half_life) * DAY))
                tensors.append(torch.from_numpy(weight / weight.mean()).float())
            if self.popularity["publication"]:  # (weights of 1 keep the batch's positions) + the targets' click times
                if half_life is None:
                    tensors.append(torch.ones(len(src)))
                tensors.append(torch.from_numpy(((clicked - cut) / DAY).astype(np.float32)))
            src, dst = tensors[0], tensors[1]
            log_q = None
            if self.next_click.get("logq", True):
                counts = torch.bincount(dst, minlength=topk.num_nodes)
                log_q = candidate_log_q(counts, int(self.optim.get("batch_size", 1024)),
                                        int(self.next_click["num_uniform"]))
            return PairDataset(*tensors), log_q
        row = topk.row()
        if self.sampling.get("positive_weighting", "uniform") == "weight":
            # importance of a pair = its share of the row's kept weight, scaled to mean 1 over pairs,
            # so that strong co-click neighbours count more than the k-th one
            pair_weight = topk.alpha * topk.degree()[row].float()
        elif self.sampling.get("positive_weighting", "uniform") == "uniform":
            pair_weight = torch.ones(topk.num_edges)
        else:
            raise ValueError(f"sampling.positive_weighting must be uniform or weight, got "
                             f"'{self.sampling['positive_weighting']}'")
        return PairDataset(row, topk.col, pair_weight), None

    def _loader(self, examples: PairDataset) -> DataLoader:
        if len(examples) == 0:
            raise ValueError(f"no {self.objective} training example: for reconstruction lower graph.tau or widen "
                             "the window; for next_click raise model.next_click.horizon_days or .context")
        batch_size = int(self.optim.get("batch_size", 1024))
        return DataLoader(examples, batch_size=batch_size, collate_fn=keep_batch,
                          sampler=EpochSeededSampler(len(examples), self.seed), drop_last=False)

    def _train(self, fold: Fold, dataset: FeedDataset, topk: TopKGraph, features, run_dir: Path) -> dict[str, Any]:
        pl.seed_everything(self.seed, workers=True, verbose=False)
        self.set_fallback(fold, dataset)
        self.module = self.build_module(dataset, features)
        self.module.attach(topk, features, self.validation_evaluator(fold, dataset))
        self.module.attach_popularity(self.popularity_table(fold, dataset), self.fold_published)
        self.module.attach_cold_start(self.unclicked_rows)
        examples, self.module.log_q = self.training_examples(fold, topk)
        result = fit_with_selection(self.module, self._loader(examples), self.trainer_cfg, self.logger_cfg, run_dir,
                                    self.run_config, self.resume_from, self.extra_callbacks)
        self.best_checkpoint = result.pop("best_checkpoint")
        self.selected_epochs = int(result["best_epoch"]) + 1
        return {**result, "positives": len(examples), "selected_epochs": self.selected_epochs}

    def _refit(self, fold: Fold, dataset: FeedDataset, topk: TopKGraph, features, table: Tensor | None,
               run_dir: Path) -> dict[str, Any]:
        """Retrain from scratch on this fold's window for the selected number of epochs (same seed), or
        ``refit_epochs`` when set."""
        pl.seed_everything(self.seed, workers=True, verbose=False)
        self.module = self.build_module(dataset, features)
        self.module.attach(topk, features, None)
        self.module.attach_popularity(table, self.fold_published)
        self.module.attach_cold_start(self.unclicked_rows)
        examples, self.module.log_q = self.training_examples(fold, topk)
        result = fit_fixed_epochs(self.module, self._loader(examples), self.trainer_cfg, self.logger_cfg,
                                  Path(run_dir) / "refit", self.served_epochs, self.run_config)
        return ({f"refit/{k}": v for k, v in result.items()}
                | {"refit/positives": len(examples), "refit/fixed_epochs": float(self.refit_epochs is not None)})

    @property
    def served_epochs(self) -> int | None:
        """Epochs of the model that serves the current fold: ``refit_epochs`` on a refit fold when
        set, else the validation-selected count (None before training)."""
        if self.refit_epochs is not None and self.reference is not None:
            return self.refit_epochs
        return self.selected_epochs

    def _pool_from_module(self, topk: TopKGraph, features, table: Tensor | None) -> tuple[np.ndarray, Any, dict[str, Any]]:
        self.module.attach(topk, features, None)
        self.module.attach_popularity(table, self.fold_published)
        self.module.attach_cold_start(self.unclicked_rows)
        self.module.to("cpu")
        vectors = self.module.embed_all()
        return (vectors.numpy(), *self._pool_from_vectors(vectors))

    def _pool_from_vectors(self, vectors: Tensor) -> tuple[Any, dict[str, Any]]:
        """The fold's pool of ``vectors`` [C, d] at the current :attr:`pool_weight`, and its build info."""
        pool, pool_info = build_pool(vectors, search_width(self.pool_size, self.candidate_rows), **self.ann_cfg,
                                     **self.pool_scoring())
        pool_info["non_candidates_in_top_p"] = non_candidate_entries(pool, self.candidate_rows, self.pool_size)
        pool, pool_info["k"] = restrict_pool(pool, self.candidate_rows, self.pool_size), self.pool_size
        pool_info["candidates"] = int(self.candidate_rows.sum())
        return pool, pool_info

    def choose_pool_weight(self, fold: Fold, dataset: FeedDataset,
                           pool_info: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Choose :attr:`pool_weight` from ``model.popularity.pool_weight``'s grid on the val fold
        (:func:`graphrecall.recall.pool_weight.choose_pool_weight`: the best validation recall@50
        among the weights whose coverage@50 reaches ``pool_weight_min_coverage``), each weight's
        pool built from the current :attr:`vectors` and judged at its best serving setting, channels
        off (as :meth:`choose_serving` judges); sets :attr:`pool` to the chosen weight's pool.
        ``pool_info``: the current pool's build info (at the grid's first weight). Returns what to log
        (the chosen weight, whether it met the floor, each weight's recall and coverage, the
        choice's seconds) and the chosen pool's build info."""
        if fold.name != "val":
            raise ValueError("model.popularity.pool_weight is a grid: it is chosen on the val fold, not on "
                             f"'{fold.name}'")
        start = time.perf_counter()
        users, targets, context = self.fold_context(fold, dataset)
        vectors = torch.from_numpy(self.vectors)
        pools = {self.pool_weight: (self.pool, pool_info)}
        scores: dict[float, dict[str, float]] = {}
        for w in self.pool_weight_grid:
            self.pool_weight = w
            if w not in pools:
                pools[w] = self._pool_from_vectors(vectors)
            self.pool = pools[w][0]
            scores[w] = self.best_serving_metrics(users, targets, context)
        recall = {w: v["recall@50"] for w, v in scores.items()}
        coverage = {w: v["coverage@50"] for w, v in scores.items()}
        self.pool_weight, met = choose_pool_weight(self.pool_weight_grid, recall, coverage,
                                                   self.pool_weight_min_coverage)
        self.pool_weight_chosen = True
        self.pool = pools[self.pool_weight][0]
        if not met:
            log.warning("model.popularity.pool_weight: no weight of %s reaches the coverage floor %s on the val fold "
                        "(validation coverage@50: %s); serving %g, the widest", self.pool_weight_grid,
                        self.pool_weight_min_coverage, {w: round(c, 5) for w, c in coverage.items()}, self.pool_weight)
        info: dict[str, Any] = {"pool_weight": self.pool_weight,
                                "pool_weight_index": self.pool_weight_grid.index(self.pool_weight)}
        if self.pool_weight_min_coverage is not None:
            info["pool_weight_floor_met"] = float(met)
        for w in self.pool_weight_grid:
            info[f"pool_weight/val_recall@50_w={w:g}"] = recall[w]
            info[f"pool_weight/val_coverage@50_w={w:g}"] = coverage[w]
        info["pool_weight/seconds"] = time.perf_counter() - start  # the other weights' pools and every serving
        return info, pools[self.pool_weight][1]

    def side_vectors_for_channels(self) -> Tensor | None:
        """[C, d] the attached module's side-info-only vectors when a channel scores by them, else None."""
        needed = any(ch.active and "side_info" in ch.scores_to_build() for ch in self.channels.values())
        return self.module.side_info_vectors().float().cpu() if needed else None

    def fit(self, fold: Fold, dataset: FeedDataset, cache_dir: str | None = None,
            run_dir: Path | None = None) -> dict[str, Any]:
        start = time.perf_counter()
        self.candidate_rows = candidate_mask(fold, dataset, self.candidates)
        self.unclicked_rows = unclicked_contents(fold.train["i"].to_numpy(), dataset.num_contents)
        wg, topk, features = self._graph_and_features(fold, dataset, cache_dir)
        info: dict[str, Any] = {f"graph/{k}": v for k, v in wg.stats.as_dict().items() if k != "name"}
        info["graph/topk_edges"] = topk.num_edges
        info["graph/topk_isolated_nodes"] = topk.isolated()
        run_dir = Path(run_dir or "outputs/adhoc")
        table = self.popularity_table(fold, dataset)
        self.fold_published = self.publication_days(fold, dataset)
        self.reference = None
        if self.module is None:  # first fold (validation): train and select
            info.update(self._train(fold, dataset, topk, features, run_dir))
        elif self.refit:  # later fold: the selected model is kept as a reference, then refit
            if self.selected_epochs is None:
                raise ValueError("model.refit needs the epoch count selected on the val fold (eval.folds: [val, test])")
            reference = copy.copy(self)
            ref_vectors, reference.pool, _ = self._pool_from_module(topk, features, table)
            reference.set_fallback(fold, dataset)
            if self.uses_channels:  # its own channel pools (the channels' settings are shared, copied)
                reference.channels = {n: copy.copy(ch) for n, ch in self.channels.items()}
                reference.channel_pools_from_vectors(torch.from_numpy(ref_vectors), fold, dataset, self.pool_scoring(),
                                                     self.side_vectors_for_channels())
            reference.module, reference.reference = None, None
            self.reference = reference
            info.update(self._refit(fold, dataset, topk, features, table, run_dir))
        self.vectors, self.pool, pool_info = self._pool_from_module(topk, features, table)
        self.set_fallback(fold, dataset)
        if not self.pool_weight_chosen:  # a grid: one pool per weight, the chosen one kept
            choice, pool_info = self.choose_pool_weight(fold, dataset, pool_info)
            info.update(choice)
        info.update({f"pool/{k}": v for k, v in pool_info.items() if isinstance(v, (int, float))})
        if self.uses_channels:
            info.update(self.channel_pools_from_vectors(torch.from_numpy(self.vectors), fold, dataset,
                                                        self.pool_scoring(), self.side_vectors_for_channels()))
        if fold.name == "val" or not self.serving_chosen:
            info.update(self.choose_serving(fold, dataset))
        info["fit_seconds"] = time.perf_counter() - start
        return info

    def save(self, directory: Path, dataset: FeedDataset) -> None:
        super().save(directory, dataset)
        np.save(Path(directory) / "content_vectors.npy", self.vectors)

    def load_checkpoint(self, path: str, dataset: FeedDataset) -> None:
        """Rebuild the module from a checkpoint (weights + hyperparameters)."""
        self.module = SageI2IModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
