"""The serving half every i2i model shares: an offline candidate pool, trigger selection, and a
recent-popularity back-fill (design brief, section 2). Models differ only in how they fill the pool."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphrecall.data.schema import CONTENT_ID, FeedDataset
from graphrecall.data.splits import Fold
from graphrecall.models.base import (
    BACKFILL,
    BASE_SOURCES,
    MODEL,
    NO_SOURCE,
    Recommendations,
    block_sources,
    channel_source,
)
from graphrecall.models.popular import popularity_ranking, recency_window
from graphrecall.recall.channels import (
    Channel,
    auto_slots,
    channel_contents,
    merge_channels,
    parse_channels,
    slot_candidates,
    slots_tag,
)
from graphrecall.recall.pool import CandidatePool
from graphrecall.recall.triggers import (
    TriggerRecallResult,
    aggregate_recall,
    recall_with_triggers,
    recent_prior,
    seen_matrix,
    trigger_lists,
)

SERVING_MODES = ("quota", "aggregate")


def popularity_beta_grid(beta: float | list[float]) -> list[float]:
    """``recall.popularity_beta`` as a list: one value (fixed) or a grid (chosen on validation)."""
    grid = [float(b) for b in (beta if isinstance(beta, (list, tuple)) else [beta])]
    if not grid:
        raise ValueError("recall.popularity_beta must be a number or a non-empty list of numbers")
    return grid


def choose_popularity_beta(grid: list[float], evaluate, fold_name: str) -> tuple[float, dict[str, float]]:
    """The grid's value with the best validation recall@50 (``evaluate() -> {beta: recall}``; ties:
    the first in grid order) and what to log; a single value is returned as is. Refuses any fold
    but ``val``: the test fold is never read for a choice."""
    if len(grid) == 1:
        return grid[0], {}
    if fold_name != "val":
        raise ValueError(f"recall.popularity_beta is a grid: it is chosen on the val fold, not on '{fold_name}'")
    by_beta = evaluate()
    best = max(grid, key=lambda b: (by_beta[b], -grid.index(b)))
    return best, {"serving/popularity_beta": best, **{f"serving/val_recall@50_beta={b:g}": r for b, r in by_beta.items()}}


def min_score_grid(value: float | None | list[float | None]) -> list[float]:
    """``recall.min_score`` as a list of cut-offs: one value (fixed) or a grid (chosen on validation);
    ``null`` (off: no entry is cut) becomes ``-inf``."""
    raw = list(value) if isinstance(value, (list, tuple)) else [value]
    if not raw:
        raise ValueError("recall.min_score must be null, a number or a non-empty list of numbers / nulls")
    grid = [-np.inf if m is None else float(m) for m in raw]
    if any(np.isnan(m) for m in grid):
        raise ValueError(f"recall.min_score={raw}: NaN is not a cut-off (use null for off)")
    return grid


def prior_weight_grid(value: float | None | list[float | None]) -> list[float | None]:
    """``recall.prior_weight`` as a list of weights: one value (fixed) or a grid (chosen on
    validation); ``null`` (off: trigger candidates first, then the back-fill) stays None."""
    raw = list(value) if isinstance(value, (list, tuple)) else [value]
    if not raw:
        raise ValueError("recall.prior_weight must be null, a number in [0, 1] or a non-empty list of them")
    grid = [None if w is None else float(w) for w in raw]
    if any(w is not None and not 0.0 <= w <= 1.0 for w in grid):  # NaN fails too
        raise ValueError(f"recall.prior_weight={raw}: expected null (off) or weights in [0, 1]")
    return grid


class _Chosen:
    """The default of :meth:`PoolRecall.serve`'s ``prior_weight``: the chosen value (None means off there)."""

    def __repr__(self) -> str:
        return "CHOSEN"


CHOSEN = _Chosen()


def setting_tag(setting: tuple[float, float, float | None], min_score_grid: bool, prior_grid: bool) -> str:
    """The name of a serving setting ``(beta, min_score, prior_weight)`` in the per-setting logs
    (``serving/val_recall@50_<tag>``): beta, then each grid's value (off for null / -inf)."""
    beta, min_score, weight = setting
    tag = f"beta={beta:g}"
    if min_score_grid:
        tag += f"_min_score={min_score:g}".replace("-inf", "off")
    if prior_grid:
        tag += "_prior_weight=" + ("off" if weight is None else f"{weight:g}")
    return tag


def best_over_settings(settings: list, recommend, targets) -> dict[str, float]:
    """Validation ``recall@50``, ``ndcg@50`` and ``coverage@50`` (share of the ``C`` contents in
    any of the lists) of the current model at the best of its serving ``settings`` by recall
    (``recommend(setting) -> [U, 50]`` content rows; ``targets`` [U, C]); ties: the first in order.
    With a serving grid (``popularity_beta``, ``min_score``, ``prior_weight``) each epoch is judged
    at its best setting, chosen for good after training."""
    from graphrecall.metrics import coverage_at_k, ndcg_at_k, recall_at_k

    best: dict[str, float] = {}
    for setting in settings:
        recs = recommend(setting)
        out = {"recall@50": float(np.nanmean(recall_at_k(recs, targets, 50))),
               "ndcg@50": float(np.nanmean(ndcg_at_k(recs, targets, 50))),
               "coverage@50": coverage_at_k(recs, targets.shape[1], 50)}
        if not best or out["recall@50"] > best["recall@50"]:
            best = out
    return best


class PoolRecall:
    """Serve users from ``self.pool`` through their triggers; subclasses implement ``fit``.

    Args:
        pool_size: P, neighbours kept per content in the offline pool.
        triggers: the ``recall`` config: ``max_triggers, decay, share``, ``mode`` (``quota``: the
            article's per-trigger quotas; ``aggregate``: every candidate scored once by the decayed
            sum of its similarity to the triggers, see
            :func:`graphrecall.recall.triggers.aggregate_recall`) and ``popularity_beta``
            (aggregate: ``beta * log(1 + recent clicks)`` added to every candidate's score; a list
            is a grid, chosen on the validation fold by :meth:`choose_serving`); ``min_score``
            (both modes: a trigger's pool entries scoring below it are not served, so a trigger
            contributes only its confident neighbours and the back-fill takes the freed slots;
            ``null``: off; a list is a grid chosen on the validation fold jointly with
            ``popularity_beta``); ``prior_weight`` (aggregate: the trigger candidates and the
            back-fill ranked in one list by ``(1 - lambda) m_u(c) + lambda p(c)``, the triggers'
            decayed mixture of their pool rows against the recent-popularity distribution, see
            :func:`graphrecall.recall.triggers.aggregate_recall`; ``null``: off, the back-fill is
            appended; a list, ``null`` allowed, is a grid chosen jointly with the two above);
            ``channels``
            (``{name: {slots, min_clicks, max_clicks, score, pool_size}}``): channels of slots
            reserved for contents with few training-window clicks (:mod:`graphrecall.recall.channels`),
            their slot grids chosen on the validation fold after ``popularity_beta``.
        backfill_recent_days: popularity window of the back-fill ranking.
    """

    name = "i2i"

    def __init__(self, pool_size: int = 100, triggers: dict[str, Any] | None = None,
                 backfill_recent_days: float | None = 7) -> None:
        self.pool_size = pool_size
        self.trigger_cfg = {"max_triggers": 10, "decay": 0.8, "mode": "quota", "popularity_beta": 0.0,
                            "min_score": None, "prior_weight": None, **dict(triggers or {})}
        if self.trigger_cfg["mode"] not in SERVING_MODES:
            raise ValueError(f"recall.mode must be one of {SERVING_MODES}, got '{self.trigger_cfg['mode']}'")
        self.beta_grid = popularity_beta_grid(self.trigger_cfg["popularity_beta"])
        if self.trigger_cfg["mode"] == "quota" and any(b != 0.0 for b in self.beta_grid):
            raise ValueError("recall.popularity_beta needs recall.mode=aggregate (quota serving ranks by "
                             "neighbour rank, not by score)")
        # one value: fixed; a grid: chosen on the validation fold (choose_serving)
        self.popularity_beta: float | None = self.beta_grid[0] if len(self.beta_grid) == 1 else None
        self.min_score_grid = min_score_grid(self.trigger_cfg["min_score"])
        # -inf: off; None: a grid not chosen yet
        self.min_score: float | None = self.min_score_grid[0] if len(self.min_score_grid) == 1 else None
        self.prior_weight_grid = prior_weight_grid(self.trigger_cfg["prior_weight"])
        if self.trigger_cfg["mode"] == "quota" and any(w is not None for w in self.prior_weight_grid):
            raise ValueError("recall.prior_weight needs recall.mode=aggregate (quota serving ranks by neighbour "
                             "rank, not by score)")
        # None: off; chosen when fixed, else by the validation fold (choose_serving)
        self.prior_weight: float | None = self.prior_weight_grid[0]
        self.prior_weight_chosen = len(self.prior_weight_grid) == 1
        # (the pool they were cut from, {min_score: cut pool})
        self._confident_pools: tuple[CandidatePool | None, dict[float, CandidatePool]] = (None, {})
        self.channels: dict[str, Channel] = parse_channels(self.trigger_cfg.get("channels"))
        self.backfill_recent_days = backfill_recent_days
        self.pool: CandidatePool | None = None
        self.recent_log_popularity: np.ndarray | None = None
        self.recent_popularity: np.ndarray | None = None  # [C] the back-fill window's counts (its prior)
        # [C] bool, set by models that restrict their pool to the candidates at the cut
        # (graphrecall.recall.candidates); None (co-click): the back-fill ranks every content
        self.candidate_rows: np.ndarray | None = None

    def set_fallback(self, fold: Fold, dataset: FeedDataset) -> None:
        self.fallback, recent = popularity_ranking(fold.train, dataset.num_contents,
                                                   recency_window(fold, self.backfill_recent_days))
        if self.candidate_rows is not None:  # its zero-click tail would otherwise reach non-candidates
            self.fallback = self.fallback[self.candidate_rows[self.fallback]]
        self.recent_log_popularity = np.log1p(recent)
        self.recent_popularity = recent

    @property
    def serving_chosen(self) -> bool:
        """Whether every serving grid (``popularity_beta``, ``min_score``, ``prior_weight``) holds its
        chosen value."""
        return self.popularity_beta is not None and self.min_score is not None and self.prior_weight_chosen

    def serving_settings(self) -> list[tuple[float, float, float | None]]:
        """The (beta, min_score, prior_weight) triples still to choose from: each grid, or its chosen
        value. Order: prior_weight outermost, then min_score, beta innermost (each in grid order),
        which breaks ties towards the first values (the presets put null, off, first)."""
        betas = self.beta_grid if self.popularity_beta is None else [self.popularity_beta]
        mins = self.min_score_grid if self.min_score is None else [self.min_score]
        weights = [self.prior_weight] if self.prior_weight_chosen else self.prior_weight_grid
        return [(b, m, w) for w in weights for m in mins for b in betas]

    def best_serving_metrics(self, users: np.ndarray, targets, context) -> dict[str, float]:
        """:func:`best_over_settings` of the current pool over :meth:`serving_settings`, channels off
        (epochs and pool weights are judged on the main channel alone): ``users`` [U], ``targets``
        [U, C], ``context`` of :meth:`user_context`."""
        off = self.channels_off()
        return best_over_settings(self.serving_settings(),
                                  lambda s: self.serve(users, context, 50, beta=s[0], min_score=s[1],
                                                       prior_weight=s[2], slots=off).items,
                                  targets)

    def serving_grid(self) -> list[tuple[float, float, float | None]]:
        """Every (beta, min_score, prior_weight) triple of the configured grids, chosen or not, in
        :meth:`serving_settings` order."""
        return [(b, m, w) for w in self.prior_weight_grid for m in self.min_score_grid for b in self.beta_grid]

    def serving_grid_per_user(self, fold: Fold, dataset: FeedDataset) -> pd.DataFrame | None:
        """Per-user recall@50 and ndcg@50 of the fold's target users at every triple of the serving
        grid (channels off, as :meth:`choose_serving` compares them), with the current pool: one row
        per user (``u``, ``warm``), columns ``<metric>|<tag>`` (tags of :func:`setting_tag`). None
        without a grid. A backtest takes its serving choice on these values pooled over the windows'
        validation folds (:mod:`graphrecall.backtest`); the test fold's table is what that choice
        then scores, never a choice of its own."""
        from graphrecall.metrics import ndcg_at_k, recall_at_k

        grid = self.serving_grid()
        if len(grid) < 2:
            return None
        users, targets, context = self.fold_context(fold, dataset)
        columns: dict[str, np.ndarray] = {"u": users, "warm": np.isin(users, fold.history["u"].to_numpy())}
        for setting in grid:
            tag = setting_tag(setting, len(self.min_score_grid) > 1, len(self.prior_weight_grid) > 1)
            items = self.serve(users, context, 50, beta=setting[0], min_score=setting[1], prior_weight=setting[2],
                               slots=self.channels_off()).items
            columns[f"recall@50|{tag}"] = recall_at_k(items, targets, 50)
            columns[f"ndcg@50|{tag}"] = ndcg_at_k(items, targets, 50)
        return pd.DataFrame(columns)

    def channel_grid_per_user(self, fold: Fold, dataset: FeedDataset, auto_max: int,
                              content_slices: dict[str, np.ndarray] | None = None) -> pd.DataFrame | None:
        """Per-user recall@50 and ndcg@50 of the fold's target users at every combination of the
        active channels' slot counts (:func:`slot_candidates`: ``0..auto_max`` for ``auto``), at the
        chosen main serving setting and channel scores, with the current pools: one row per user
        (``u``, ``warm``), columns ``<metric>|<slots>`` (:func:`slots_tag`; with ``content_slices``,
        ``{name: bool [C]}``, also ``<name>/recall@50|<slots>``, the recall of the targets in each
        content slice, NaN for a user without one), and the counts ``auto`` reads: ``pairs`` (the
        user's distinct target pairs) and ``pairs|<channel>`` (those on the channel's contents).
        None without an active channel. A backtest takes its channel choice on the validation folds'
        tables pooled (:func:`graphrecall.backtest.pooled_channels`); the test fold's table is what
        that choice then scores."""
        from graphrecall.metrics import ndcg_at_k, recall_at_k, slice_recall_at_k

        active = [ch for ch in self.channels.values() if ch.active]
        if not active:
            return None
        users, targets, context = self.fold_context(fold, dataset)
        pairs = fold.targets.drop_duplicates(["u", "i"])
        rows = np.searchsorted(users, pairs["u"].to_numpy())
        columns: dict[str, np.ndarray] = {"u": users, "warm": np.isin(users, fold.history["u"].to_numpy()),
                                          "pairs": np.bincount(rows, minlength=len(users))}
        for ch in active:
            on = self.channel_mask(ch, fold, dataset)[pairs["i"].to_numpy()]
            columns[f"pairs|{ch.name}"] = np.bincount(rows, weights=on, minlength=len(users)).astype(np.int64)
        grids = [slot_candidates(ch, auto_max) for ch in active]
        for combo in itertools.product(*grids):
            slots = dict(zip((ch.name for ch in active), combo))
            items = self.serve(users, context, 50, slots={**self.channels_off(), **slots}).items
            columns[f"recall@50|{slots_tag(slots)}"] = recall_at_k(items, targets, 50)
            columns[f"ndcg@50|{slots_tag(slots)}"] = ndcg_at_k(items, targets, 50)
            for name, mask in (content_slices or {}).items():
                columns[f"{name}/recall@50|{slots_tag(slots)}"] = slice_recall_at_k(items, targets, mask, 50)
        return pd.DataFrame(columns)

    def popularity_prior(self) -> np.ndarray:
        """[C] the recent-popularity distribution ``p(c)`` of the merged score (the back-fill window)."""
        if self.recent_popularity is None:
            raise ValueError(f"recall.prior_weight: model '{self.name}' has no recent popularity counts (fit it, or "
                             "load a run folder saved with recent_popularity.npy)")
        return recent_prior(self.recent_popularity)

    def confident_pool(self, min_score: float) -> CandidatePool:
        """:attr:`pool` without the entries scoring below ``min_score`` (``-inf``: the pool itself);
        each row keeps its confident prefix, so a trigger serves only those and leaves the rest of
        its quota to the other triggers and the back-fill. Cached per pool object."""
        if min_score == -np.inf:
            return self.pool
        if self._confident_pools[0] is not self.pool:
            self._confident_pools = (self.pool, {})
        cut = self._confident_pools[1]
        if min_score not in cut:
            with np.errstate(invalid="ignore"):  # NaN padding is never kept
                cut[min_score] = self.pool.keep_entries(self.pool.scores >= min_score)
        return cut[min_score]

    @property
    def uses_channels(self) -> bool:
        return any(c.active for c in self.channels.values())

    def channel_mask(self, channel: Channel, fold: Fold, dataset: FeedDataset) -> np.ndarray:
        """bool [C]: the channel's contents at the fold's cut (candidates in its click range). Models
        without a candidate set of their own (co-click) use the default rule (``auto``), so that a
        content published after the cut is in no channel."""
        from graphrecall.recall.candidates import candidate_mask

        candidates = self.candidate_rows if self.candidate_rows is not None else candidate_mask(fold, dataset)
        return channel_contents(fold.train["i"].to_numpy(), dataset.num_contents, channel.min_clicks,
                                channel.max_clicks, candidates)

    def channel_pools_from_vectors(self, vectors, fold: Fold, dataset: FeedDataset, pool_scoring: dict[str, Any],
                                   side_vectors=None) -> dict[str, float]:
        """Set every active channel's pools (its chosen score, or each score of its grid) from content
        vectors ([C, d] tensors): each content's top contents of the channel by the model's pool score
        (``pool_scoring``: :func:`exact_topk`'s scale / bias / softmax), by the plain inner product
        (``similarity``) or by that of ``side_vectors`` (``side_info``: every content's vector from its
        side info alone)."""
        from graphrecall.recall.ann import exact_topk

        info = {}
        for ch in self.channels.values():
            if not ch.active:
                continue
            mask = self.channel_mask(ch, fold, dataset)
            ch.pools = {}
            for score in ch.scores_to_build():
                if score == "side_info" and side_vectors is None:
                    raise ValueError(f"recall.channels.{ch.name}.score=side_info: model '{self.name}' has no "
                                     "side-info vectors (GNN models: sage, m2grl)")
                source = side_vectors if score == "side_info" else vectors
                scoring = pool_scoring if score == "pool" else {}
                ch.pools[score] = exact_topk(source.float(), ch.pool_size, columns=np.flatnonzero(mask), **scoring)
                info[f"channel/{ch.name}/{score}/empty_rows"] = ch.pools[score].empty_rows()
            info[f"channel/{ch.name}/contents"] = int(mask.sum())
        return info

    def channel_pools_from_graph(self, weights: sp.csr_matrix, fold: Fold, dataset: FeedDataset) -> dict[str, float]:
        """Set every active channel's pool from a weighted content graph: each content's strongest
        neighbours among the channel's contents (``pool`` and ``similarity`` are both the graph's
        weight; a graph has no ``side_info``)."""
        info = {}
        for ch in self.channels.values():
            if not ch.active:
                continue
            if "side_info" in ch.scores:
                raise ValueError(f"recall.channels.{ch.name}.score=side_info: model '{self.name}' has no side-info "
                                 "encoder (GNN models only: sage, m2grl); use pool or similarity")
            mask = self.channel_mask(ch, fold, dataset)
            w = (weights.tocsr() @ sp.diags(mask.astype(np.float64))).tocsr()
            w.eliminate_zeros()
            pool = CandidatePool.from_csr(w, ch.pool_size)
            ch.pools = {score: pool for score in ch.scores_to_build()}
            info |= {f"channel/{ch.name}/contents": int(mask.sum()), f"channel/{ch.name}/empty_rows": pool.empty_rows()}
        return info

    def user_context(self, users: np.ndarray, fold: Fold, num_contents: int) -> tuple[list[np.ndarray], sp.csr_matrix]:
        """What serving needs of the users, independent of the pool: (triggers, seen contents)."""
        triggers = trigger_lists(fold.history, users, int(self.trigger_cfg["max_triggers"]))
        return triggers, seen_matrix(fold.history, users, num_contents)

    def serve(self, users: np.ndarray, context: tuple[list[np.ndarray], sp.csr_matrix], k: int,
              beta: float | None = None, slots: dict[str, int] | None = None,
              min_score: float | None = None, with_scores: bool = False,
              prior_weight: float | None | _Chosen = CHOSEN) -> Recommendations:
        """Trigger selection over the current pool (``context`` from :meth:`user_context`), with
        the channels' reserved slots; ``beta`` overrides the chosen ``popularity_beta`` (aggregate
        mode), ``min_score`` the chosen cut-off (``-inf``: off), ``prior_weight`` the chosen weight
        of the merged score (None: off) and ``slots`` the channels' chosen slot counts
        (``{name: n}``; missing: chosen). ``with_scores``: also fill the lists' scores and sources
        (:meth:`serve_main`; a channel's entries keep their channel's aggregate score, source
        ``channel:<name>``); off for the many serves of validation choices."""
        triggers, seen = context
        decay = float(self.trigger_cfg["decay"])
        extras, extra_scores, names = [], [], []
        for ch in self.channels.values():
            n = (slots or {}).get(ch.name, ch.slots)
            if n is None:
                raise ValueError(f"recall.channels.{ch.name}.slots is a grid (or auto) and has not been chosen: "
                                 "the validation fold (eval.folds must start with val) chooses it")
            if not n:
                continue
            if ch.pool is None:
                raise ValueError(f"recall.channels.{ch.name}.slots={n} but model '{self.name}' built no pool for it")
            channel = aggregate_recall(ch.pool, triggers, seen, min(int(n), k), decay, None, tie_order=self.fallback,
                                       with_scores=with_scores)
            got = channel.recs
            rows, cols = np.nonzero(got >= 0)  # later channels and the main channel serve without them
            seen = (seen + sp.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, got[rows, cols])),
                                         shape=seen.shape)).tocsr()
            extras.append(got)
            extra_scores.append(channel.scores)
            names.append(ch.name)
        main = self.serve_main(users, triggers, seen, k, beta, min_score, with_scores, prior_weight)
        if not extras:
            return main
        res, used = merge_channels(_as_result(main), extras, k, extra_scores if with_scores else None)
        counters = {"from_triggers": res.from_triggers, "backfilled": res.backfilled}
        sources = source_names = None
        if main.sources is not None:  # the main channel's kept entries are its first ones, in its order
            kept = (res.recs >= 0).sum(1) - np.sum(used, axis=0)
            channel_blocks = [(len(BASE_SOURCES) + c, u) for c, u in enumerate(used)]
            sources = block_sources([(MODEL, kept), *channel_blocks], k)
            sources = np.where(sources == MODEL, main.sources, sources).astype(np.int8)
            # the merged score interleaves model and back-fill entries: count them from the sources
            from_model = (sources == MODEL).sum(1)
            counters = {"from_triggers": from_model, "backfilled": kept - from_model}
        if with_scores:
            source_names = BASE_SOURCES + tuple(channel_source(n) for n in names)
        else:
            sources = None
        return Recommendations(users, res.recs, counters | {f"channel_{n}": u for n, u in zip(names, used)},
                               res.scores, sources, source_names or BASE_SOURCES)

    def serve_main(self, users: np.ndarray, triggers: list[np.ndarray], seen: sp.csr_matrix, k: int,
                   beta: float | None = None, min_score: float | None = None,
                   with_scores: bool = False, prior_weight: float | None | _Chosen = CHOSEN) -> Recommendations:
        """The main channel: trigger selection over :attr:`pool` (its entries at or above the
        ``min_score`` cut-off), then the back-fill. ``with_scores``: each trigger entry's score
        (``quota``: the pool score from the trigger that brought it; ``aggregate``: the decayed sum
        over the triggers plus the popularity bonus, see :func:`aggregate_recall`), source ``model``;
        back-fill entries score NaN, source ``backfill``. With a ``prior_weight`` (aggregate) the
        trigger candidates and the back-fill are ranked together by the merged score, which every
        entry reports; source ``model`` where the triggers' mixture is positive, else ``backfill``
        (the sources are then always set, ``with_scores`` or not: they say which entry is which)."""
        share = float(self.trigger_cfg.get("share", 1.0))
        decay = float(self.trigger_cfg["decay"])
        min_score = self.min_score if min_score is None else min_score
        if min_score is None:
            raise ValueError("recall.min_score is a grid and has not been chosen: the validation fold "
                             "(eval.folds must start with val) chooses it")
        pool = self.confident_pool(min_score)
        weight = self.chosen_prior_weight() if isinstance(prior_weight, _Chosen) else prior_weight
        if self.trigger_cfg["mode"] == "quota":
            if weight is not None:
                raise ValueError(f"recall.prior_weight={weight} needs recall.mode=aggregate")
            res = recall_with_triggers(pool, triggers, seen, k, decay, self.fallback, trigger_slots=round(share * k),
                                       with_scores=with_scores)
        else:
            beta = self.popularity_beta if beta is None else beta
            if beta is None:
                raise ValueError("recall.popularity_beta is a grid and has not been chosen: the validation "
                                 "fold (eval.folds must start with val) chooses it")
            bonus = beta * self.recent_log_popularity if beta else None
            prior = self.popularity_prior() if weight is not None else None
            res = aggregate_recall(pool, triggers, seen, k, decay, self.fallback, bonus, round(share * k),
                                   with_scores=with_scores, prior=prior, prior_weight=weight)
        if res.model_entries is not None:
            sources = np.where(res.recs < 0, NO_SOURCE, np.where(res.model_entries, MODEL, BACKFILL)).astype(np.int8)
        else:
            sources = block_sources([(MODEL, res.from_triggers), (BACKFILL, res.backfilled)], k) if with_scores else None
        return Recommendations(users, res.recs, {"from_triggers": res.from_triggers, "backfilled": res.backfilled},
                               res.scores, sources)

    def chosen_prior_weight(self) -> float | None:
        """The chosen ``prior_weight`` (None: off); refuses a grid not chosen yet."""
        if not self.prior_weight_chosen:
            raise ValueError("recall.prior_weight is a grid and has not been chosen: the validation fold "
                             "(eval.folds must start with val) chooses it")
        return self.prior_weight

    def fold_context(self, fold: Fold, dataset: FeedDataset) -> tuple[np.ndarray, sp.csr_matrix, tuple]:
        """(the fold's target users [U], their targets [U, C], their serving context): what every
        choice on the validation fold serves and scores."""
        from graphrecall.evaluation import targets_matrix

        users = np.unique(fold.targets["u"].to_numpy())
        targets = targets_matrix(fold.targets, users, dataset.num_contents)
        return users, targets, self.user_context(users, fold, dataset.num_contents)

    def choose_serving(self, fold: Fold, dataset: FeedDataset) -> dict[str, float]:
        """Choose ``popularity_beta``, ``min_score`` and ``prior_weight`` jointly (main channel
        alone; the triples of :meth:`serving_settings`), then the channels' slots at that setting
        (:meth:`choose_channel_slots`) on this fold; the fold must be the validation fold (the test
        fold is never read for a choice). Ties: the first triple in :meth:`serving_settings` order."""
        from graphrecall.metrics import recall_at_k

        settings = self.serving_settings()
        info: dict[str, float] = {}
        if len(settings) > 1:
            if fold.name != "val":
                raise ValueError("recall.popularity_beta / recall.min_score / recall.prior_weight is a grid: it is "
                                 f"chosen on the val fold, not on '{fold.name}'")
            users, targets, context = self.fold_context(fold, dataset)
            by = {s: float(np.nanmean(recall_at_k(self.serve(users, context, 50, beta=s[0], min_score=s[1],
                                                              prior_weight=s[2], slots=self.channels_off()).items,
                                                   targets, 50)))
                  for s in settings}
            self.popularity_beta, self.min_score, self.prior_weight = max(
                settings, key=lambda s: (by[s], -settings.index(s)))
            self.prior_weight_chosen = True
            info["serving/popularity_beta"] = self.popularity_beta
            if len(self.min_score_grid) > 1:
                info["serving/min_score_index"] = self.min_score_grid.index(self.min_score)
            if np.isfinite(self.min_score):
                info["serving/min_score"] = self.min_score
            prior_grid = len(self.prior_weight_grid) > 1
            if prior_grid:
                info["serving/prior_weight_index"] = self.prior_weight_grid.index(self.prior_weight)
            if self.prior_weight is not None:
                info["serving/prior_weight"] = self.prior_weight
            for s, r in by.items():
                info[f"serving/val_recall@50_{setting_tag(s, len(self.min_score_grid) > 1, prior_grid)}"] = r
        if any(ch.slots is None or (ch.active and ch.score is None) for ch in self.channels.values()):
            if fold.name != "val":
                raise ValueError(f"recall.channels: a slot or score grid (or auto) is chosen on the val fold, "
                                 f"not on '{fold.name}'")
            info = {**info, **self.choose_channel_slots(fold, dataset)}
        return info

    def channels_off(self) -> dict[str, int]:
        return {name: 0 for name in self.channels}

    def choose_channel_slots(self, fold: Fold, dataset: FeedDataset) -> dict[str, float]:
        """Each channel's slots and score, in channel order: ``auto`` slots from the share of this
        fold's targets on its contents; a grid (of slots, of scores, or both) by this fold's
        recall@50, with the channels before it at their chosen settings and the ones after it off
        (ties: the first score, then the first slot count, in grid order)."""
        from graphrecall.metrics import recall_at_k

        users, targets, context = self.fold_context(fold, dataset)
        pairs = fold.targets.drop_duplicates(["u", "i"])["i"].to_numpy()
        info: dict[str, float] = {}
        chosen = self.channels_off()
        for ch in self.channels.values():
            key = f"serving/channel/{ch.name}"
            if not ch.active:
                ch.slots = info[f"{key}/slots"] = 0
                continue
            if ch.grid == "auto":
                ch.slots, share = auto_slots(pairs, self.channel_mask(ch, fold, dataset), 50)
                info[f"{key}/val_target_share"] = share
            slot_grid = ch.grid if ch.slots is None else [ch.slots]
            score_grid = ch.scores_to_build()[: 1 if slot_grid == [0] else None]  # no slot: no score to choose
            if len(slot_grid) > 1 or len(score_grid) > 1:
                by = {}
                for score in score_grid:
                    ch.score = score
                    for n in slot_grid:
                        recs = self.serve(users, context, 50, slots={**chosen, ch.name: n}).items
                        by[score, n] = float(np.nanmean(recall_at_k(recs, targets, 50)))
                        tag = f"slots={n}" if len(score_grid) == 1 else f"score={score}_slots={n}"
                        info[f"{key}/val_recall@50_{tag}"] = by[score, n]
                order = [(sc, n) for sc in score_grid for n in slot_grid]
                ch.score, ch.slots = max(order, key=lambda sn: (by[sn], -order.index(sn)))
            else:
                ch.score, ch.slots = score_grid[0], slot_grid[0]
            ch.pools = {ch.score: ch.pools[ch.score]} if ch.score in ch.pools else {}  # the others are dropped
            chosen[ch.name] = ch.slots
            info[f"{key}/slots"] = ch.slots
            info[f"{key}/score_index"] = ch.scores.index(ch.score)
        return info

    def recommend(self, users: np.ndarray, fold: Fold, k: int) -> Recommendations:
        """Top-``k`` lists of ``users`` at the chosen serving settings, with scores and sources."""
        return self.serve(users, self.user_context(users, fold, self.pool.num_contents), k, with_scores=True)

    def save(self, directory: Path, dataset: FeedDataset) -> None:
        self.pool.save(Path(directory) / "pool.parquet", dataset.contents[CONTENT_ID].to_numpy())
        np.save(Path(directory) / "fallback.npy", self.fallback)
        np.save(Path(directory) / "recent_log_popularity.npy", self.recent_log_popularity)
        if self.recent_popularity is not None:
            np.save(Path(directory) / "recent_popularity.npy", self.recent_popularity)
        slots = {ch.name: ch.slots for ch in self.channels.values()}
        scores = {ch.name: ch.score for ch in self.channels.values()}
        min_score = None if self.min_score is None or self.min_score == -np.inf else self.min_score
        prior = {"prior_weight": self.prior_weight} if self.prior_weight_chosen else {}  # null: off
        (Path(directory) / "serving.json").write_text(json.dumps({
            "popularity_beta": self.popularity_beta, "min_score": min_score,  # min_score null: off
            **prior, "channel_slots": slots, "channel_scores": scores}))
        for ch in self.channels.values():
            if ch.pool is not None:
                ch.pool.save(Path(directory) / f"channel_{ch.name}_pool.parquet", dataset.contents[CONTENT_ID].to_numpy())

    def restore_serving_choices(self, serving: dict[str, Any]) -> None:
        """What validation chose for a run (its ``serving.json``), where the config left a grid to
        choose from: ``popularity_beta``, ``min_score`` (``null``: off), ``prior_weight`` (``null``:
        off), the channels' slots and scores (a fixed value is the config's own)."""
        if self.popularity_beta is None and serving.get("popularity_beta") is not None:
            self.popularity_beta = float(serving["popularity_beta"])
        if self.min_score is None and "min_score" in serving:
            self.min_score = -np.inf if serving["min_score"] is None else float(serving["min_score"])
        if not self.prior_weight_chosen and "prior_weight" in serving:
            self.prior_weight = prior_weight_grid(serving["prior_weight"])[0]
            self.prior_weight_chosen = True
        for name, n in serving.get("channel_slots", {}).items():
            if name in self.channels and self.channels[name].slots is None:
                self.channels[name].slots = n
        for name, score in serving.get("channel_scores", {}).items():
            if name in self.channels and self.channels[name].score is None and score is not None:
                self.channels[name].score = score

    def load(self, directory: Path, fold: Fold, dataset: FeedDataset) -> None:
        directory = Path(directory)
        self.pool = CandidatePool.load(directory / "pool.parquet", dataset.contents[CONTENT_ID].to_numpy())
        self.fallback = np.load(directory / "fallback.npy")
        if (directory / "serving.json").exists():  # runs saved before aggregate serving have neither file
            self.recent_log_popularity = np.load(directory / "recent_log_popularity.npy")
            self.restore_serving_choices(json.loads((directory / "serving.json").read_text()))
        if (directory / "recent_popularity.npy").exists():  # the merged score's prior (runs before it: none)
            self.recent_popularity = np.load(directory / "recent_popularity.npy")
        for ch in self.channels.values():
            path = directory / f"channel_{ch.name}_pool.parquet"
            if path.exists():
                ch.pool = CandidatePool.load(path, dataset.contents[CONTENT_ID].to_numpy())


def _as_result(recs: Recommendations) -> TriggerRecallResult:
    """A :class:`Recommendations` of :meth:`PoolRecall.serve_main` as the trigger-recall result it came from."""
    return TriggerRecallResult(recs.items, recs.counters["from_triggers"], recs.counters["backfilled"], recs.scores)
