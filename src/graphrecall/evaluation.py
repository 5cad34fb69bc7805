"""Evaluate any recall model on a fold: the same metrics, slices and intervals for every model.

Metrics are computed for the users with at least one target in the fold, on top-K lists from which
each user's history was removed before the cut-off. Popularity (for average popularity, long-tail
share and IPS weights) is the number of distinct users per content in the fold's training clicks.
Slices: ``all``; ``warm`` (at least one click before the cut: the headline slice, since every
i2i model serves cold users the same back-fill); ``low_activity`` (1..``low_activity_max``
training clicks); ``active`` (more); ``cold`` (no click in the history at all).

Content slices, beside the user slices, by the *target content's* clicks in the fold's training
window (``eval.content_bins``, lower edges, default ``[0, 1, 3, 10]``: ``clicks_0``, ``clicks_1-2``,
``clicks_3-9``, ``clicks_10+``). When the contents table has ``published_at``, the contents
published after the cut leave the bins for their own slice ``after_cut`` (no model may recommend
them: its recall is a leak check), so that ``clicks_0`` holds the new contents a model could reach.
``<content slice>/recall@k`` of a user = hits among the user's targets in the slice / the user's
targets in the slice; the slice's mean is over the users with at least one such target, crossed
with every user slice (``test/clicks_0/recall@50``, ``test/warm/clicks_0/recall@50``).
``content_slice/<name>/{targets,users,contents}`` count the target pairs, the users holding one and
the catalogue contents of each content slice. ``new_share@k``: share of a user's non-padded top-k
slots spent on new contents (0 training-window clicks).
"""

from __future__ import annotations

import dataclasses
import warnings

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from graphrecall.data.schema import CONTENT_ID, PUBLISHED_AT, USER_ID, DataValidationError, FeedDataset
from graphrecall.data.splits import Fold
from graphrecall.metrics import (
    DEFAULT_CLICK_BINS,
    check_click_bins,
    click_bins,
    global_metrics,
    inverse_popularity_weights,
    labels_to_csr,
    per_user_metrics,
    summarise,
    tail_items,
)
from graphrecall.models.base import Recommendations, Recommender
from graphrecall.models.popular import popularity_counts

MAIN_METRICS = ("recall@20", "recall@50", "ndcg@20", "ndcg@50")


@dataclass
class FoldEvaluation:
    """The outcome of one evaluation.

    Attributes:
        name: ``val``, ``test``, ``test_interest_only``...
        summary: index (slice, metric), columns mean / ci_low / ci_high / n_users.
        global_metrics: coverage@k and fill counters over all evaluated users.
        per_user: one row per evaluated user (user row ``u`` + every metric).
        recs: the evaluated recommendations.
    """

    name: str
    summary: pd.DataFrame
    global_metrics: dict[str, float]
    per_user: pd.DataFrame
    recs: Recommendations
    info: dict[str, Any] = field(default_factory=dict)

    def flat(self) -> dict[str, float]:
        """``{"<name>/<metric>": mean}`` for the ``all`` slice plus ``<name>/<slice>/<metric>``
        for the other slices, and the global metrics; the keys loggers and Optuna read."""
        out: dict[str, float] = {}
        for (slice_, metric), row in self.summary.iterrows():
            key = f"{self.name}/{metric}" if slice_ == "all" else f"{self.name}/{slice_}/{metric}"
            out[key] = float(row["mean"])
        out.update({f"{self.name}/{k}": float(v) for k, v in self.global_metrics.items()})
        return out


def targets_matrix(targets: pd.DataFrame, users: np.ndarray, num_contents: int) -> sp.csr_matrix:
    """[U, C] binary matrix of each evaluated user's target contents."""
    pos = pd.Index(users).get_indexer(targets["u"])
    keep = pos >= 0
    m = sp.csr_matrix(
        (np.ones(int(keep.sum())), (pos[keep], targets["i"].to_numpy()[keep])), shape=(len(users), num_contents)
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def user_slices(fold: Fold, users: np.ndarray, low_activity_max: int) -> dict[str, np.ndarray]:
    """Boolean masks over ``users`` for the activity slices (see module docstring)."""
    train_clicks = fold.train["u"].value_counts().reindex(users, fill_value=0).to_numpy()
    hist_clicks = fold.history["u"].value_counts().reindex(users, fill_value=0).to_numpy()
    return {
        "warm": hist_clicks > 0,
        "low_activity": (train_clicks >= 1) & (train_clicks <= low_activity_max),
        "active": train_clicks > low_activity_max,
        "cold": hist_clicks == 0,
    }


def content_slices(fold: Fold, dataset: FeedDataset,
                   edges: tuple[int, ...] = DEFAULT_CLICK_BINS) -> dict[str, np.ndarray]:
    """Boolean masks ``[C]`` of the content slices (see module docstring): the click bins of the
    contents' training-window clicks, then, when ``published_at`` is known and the fold has a cut,
    ``after_cut`` (``published_at > cut``, taken out of the bins)."""
    counts = np.bincount(fold.train["i"].to_numpy(), minlength=dataset.num_contents)
    slices = click_bins(counts, check_click_bins(edges))
    if PUBLISHED_AT in dataset.contents.columns and fold.cut is not None:
        after = dataset.contents[PUBLISHED_AT].to_numpy() > fold.cut
        slices = {name: mask & ~after for name, mask in slices.items()}
        slices["after_cut"] = after
    return slices


def content_slice_counts(slices: dict[str, np.ndarray], targets: pd.DataFrame, users: np.ndarray) -> dict[str, float]:
    """``content_slice/<name>/{targets,users,contents}``: target pairs of the evaluated ``users`` on
    the slice's contents, users holding at least one, and catalogue contents in the slice."""
    evaluated = targets[np.isin(targets["u"].to_numpy(), users)].drop_duplicates(["u", "i"])
    out: dict[str, float] = {}
    for name, mask in slices.items():
        inside = evaluated[mask[evaluated["i"].to_numpy()]]
        out[f"content_slice/{name}/targets"] = float(len(inside))
        out[f"content_slice/{name}/users"] = float(inside["u"].nunique())
        out[f"content_slice/{name}/contents"] = float(mask.sum())
    return out


def content_labels(dataset: FeedDataset) -> dict[str, sp.csr_matrix]:
    """[C, L] label matrices of the diversity fields (``style``, ``space``)."""
    return {name: labels_to_csr(dataset.contents[col])[0] for name, col in dataset.diversity_fields.items()}


def evaluate_recommendations(
    name: str,
    recs: Recommendations,
    targets: pd.DataFrame,
    fold: Fold,
    dataset: FeedDataset,
    ks: tuple[int, ...] = (20, 50),
    low_activity_max: int = 5,
    content_bins: tuple[int, ...] = DEFAULT_CLICK_BINS,
    ci_metrics: tuple[str, ...] = MAIN_METRICS,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> FoldEvaluation:
    """Metrics of ``recs`` against ``targets`` (rows with ``u``, ``i``), per user and per slice.

    ``ci_metrics`` get bootstrap intervals, and so does the content-slice recall at the largest k."""
    c = dataset.num_contents
    pop = popularity_counts(fold.train, c, "users")
    tgt = targets_matrix(targets, recs.users, c)
    by_content = content_slices(fold, dataset, content_bins)
    new = np.bincount(fold.train["i"].to_numpy(), minlength=c) == 0
    per_user = per_user_metrics(
        recs.items,
        tgt,
        ks=ks,
        item_popularity=pop,
        is_tail=tail_items(pop),
        item_weight=inverse_popularity_weights(pop),
        label_sets=content_labels(dataset),
        item_slices=by_content,
        is_new=new,
    )
    slices = user_slices(fold, recs.users, low_activity_max)
    ci = tuple(m for m in ci_metrics if m in per_user.columns)
    ci += tuple(f"{name}/recall@{max(ks)}" for name in by_content)
    summary = summarise(per_user, slices, ci, num_resamples=num_resamples, confidence=confidence, seed=seed)
    glob = global_metrics(recs.items, c, ks)
    for key, values in recs.counters.items():
        glob[f"mean_{key}"] = float(np.mean(values)) if len(values) else 0.0
    if "backfilled" in recs.counters and len(recs.users):  # the share of the list slots the back-fill filled
        filled = np.asarray(recs.counters["backfilled"], dtype=np.float64) / recs.items.shape[1]
        glob["backfill_share"] = float(filled.mean())
        glob["warm/backfill_share"] = float(filled[slices["warm"]].mean()) if slices["warm"].any() else float("nan")
    glob.update(content_slice_counts(by_content, targets, recs.users))
    per_user.insert(0, "u", recs.users)
    per_user.insert(1, "warm", slices["warm"])  # the headline slice: users with a click before the cut
    return FoldEvaluation(name, summary, glob, per_user, recs, {"users": len(recs.users)})


def evaluate_model(
    model: Recommender,
    fold: Fold,
    dataset: FeedDataset,
    eval_cfg: dict[str, Any],
    seed: int = 0,
    extra_targets: dict[str, pd.DataFrame] | None = None,
) -> list[FoldEvaluation]:
    """Serve the fold's target users with ``model`` and evaluate them.

    Args:
        eval_cfg: ``ks``, ``low_activity_max``, ``content_bins``, ``bootstrap.{num_resamples, confidence}``.
        extra_targets: other target sets for the same fold (e.g. the synthetic interest-only
            test), each evaluated on the same users' lists, named ``<fold>_<key>``.
    """
    ks = tuple(int(k) for k in eval_cfg.get("ks", (20, 50)))
    users = np.unique(fold.targets["u"].to_numpy())
    recs = model.recommend(users, fold, max(ks))
    boot = dict(eval_cfg.get("bootstrap", {}))
    common = dict(
        ks=ks,
        low_activity_max=int(eval_cfg.get("low_activity_max", 5)),
        content_bins=check_click_bins(eval_cfg.get("content_bins", DEFAULT_CLICK_BINS)),
        num_resamples=int(boot.get("num_resamples", 1000)),
        confidence=float(boot.get("confidence", 0.95)),
        seed=seed,
    )
    results = [evaluate_recommendations(fold.name, recs, fold.targets, fold, dataset, **common)]
    for key, targets in (extra_targets or {}).items():
        results.append(evaluate_recommendations(f"{fold.name}_{key}", recs, targets, fold, dataset, **common))
    return results


def read_users_file(path: str, users: pd.DataFrame) -> np.ndarray:
    """User rows for the ids listed in a CSV/parquet file with a ``user_id`` column (ids as text or
    integers; a file that cannot be parsed, lists no user, or holds floating-point ids is refused)."""
    try:
        if str(path).endswith(".parquet"):
            frame = pd.read_parquet(path)
        else:  # a row with more fields than the header is an error, not a silent shift into the index
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                frame = pd.read_csv(path, dtype={USER_ID: str}, index_col=False)
    except (pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError, UnicodeDecodeError, OSError,
            ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataValidationError(f"{path}: not a readable CSV/parquet users file with a '{USER_ID}' column "
                                  f"({first})") from e
    if USER_ID not in frame.columns:
        raise DataValidationError(f"{path}: expected a '{USER_ID}' column, found {list(frame.columns)}")
    ids = frame[USER_ID]
    if len(ids) == 0 or ids.isna().all():
        raise DataValidationError(f"{path}: the '{USER_ID}' column lists no user (expected at least one id)")
    if ids.isna().any():
        bad = np.flatnonzero(ids.isna().to_numpy())
        raise DataValidationError(f"{path}: {bad.size} empty '{USER_ID}' value(s), first at data row {bad[0] + 1}")
    if pd.api.types.is_float_dtype(ids):
        raise DataValidationError(f"{path}: '{USER_ID}' holds floating-point values (e.g. {ids.iloc[0]!r}); "
                                  "write ids as integers or text")
    index = pd.Index(users[USER_ID])
    if index.dtype != ids.dtype:  # CSV ids come back as numbers or text: compare as text
        index, ids = index.astype(str), ids.astype(str)
    rows = index.get_indexer(ids)
    if (rows < 0).any():
        raise DataValidationError(
            f"{path}: {int((rows < 0).sum())} user_id(s) not in the dataset, e.g. {ids[rows < 0].head(3).tolist()}"
        )
    return np.unique(rows)


def export_recommendations(recs: Recommendations, dataset: FeedDataset) -> pd.DataFrame:
    """Long table ``user_id, content_id, rank (1-based), score, source``, one row per list entry.

    ``score`` is the model's own score of the entry, what the list was ranked by (float64):

    - i2i models (co-click, GraphSAGE, M2GRL), ``recall.mode=aggregate``: the decayed sum over the
      user's triggers of the entry's pool score, plus the popularity bonus
      (:func:`graphrecall.recall.triggers.aggregate_recall`); ``quota``: the pool score of the entry
      under the trigger that brought it (the list is ordered by neighbour rank, so it may rise);
    - a channel's entries (source ``channel:<name>``): that channel's own aggregate score;
    - u2i models (MF, LightGCN, DICE): ``<e_u, e_c>`` plus the popularity bonus;
    - popular / popular_group: the recent popularity count of the content (in the user's group);
    - oracle: the user's true interest in the content;
    - back-filled entries (source ``backfill``), and every entry of a model that reports no
      scores: NaN (never a stand-in such as ``-rank``).

    ``source`` names where the entry came from (``model``, ``backfill``, ``channel:<name>``;
    ``unknown`` when the model reports no sources). ``recs.scores`` / ``recs.sources`` may be wider
    than ``recs.items`` (lists cut to ``K`` after serving): their first ``K`` columns are used.
    """
    r, c = np.nonzero(recs.items >= 0)
    k = recs.items.shape[1]
    for name, values in (("scores", recs.scores), ("sources", recs.sources)):
        if values is not None and (values.shape[0] != recs.items.shape[0] or values.shape[1] < k):
            raise ValueError(f"Recommendations.{name} has shape {values.shape}; expected at least "
                             f"{recs.items.shape} like items")
    scores = recs.scores[:, :k][r, c].astype(np.float64) if recs.scores is not None else np.full(len(r), np.nan)
    labels = recs.source_labels()
    sources = labels[:, :k][r, c] if labels is not None else np.full(len(r), "unknown", dtype=object)
    if (sources == "").any():
        raise ValueError(f"Recommendations.sources: {int((sources == '').sum())} list entries have no source "
                         "code (NO_SOURCE), expected one on every entry that is not padding")
    return pd.DataFrame(
        {
            USER_ID: dataset.users[USER_ID].to_numpy()[recs.users[r]],
            CONTENT_ID: dataset.contents[CONTENT_ID].to_numpy()[recs.items[r, c]],
            "rank": (c + 1).astype(np.int32),
            "score": scores,
            "source": sources.astype(str),
        }
    )


def format_summary(evaluations: list[FoldEvaluation], metrics: tuple[str, ...], slices: tuple[str, ...] = ("all",)) -> str:
    """A plain-text table: one row per (evaluation, slice), ``mean [low, high]`` cells."""
    rows = []
    for ev in evaluations:
        for s in slices:
            if s not in ev.summary.index.get_level_values(0):
                continue
            row = {"eval": ev.name, "slice": s}
            for m in metrics:
                if (s, m) in ev.summary.index:
                    r = ev.summary.loc[(s, m)]
                    cell = f"{r['mean']:.4f}"
                    if not np.isnan(r["ci_low"]):
                        cell += f" [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
                    row[m] = cell
                elif m in ev.global_metrics:
                    row[m] = f"{ev.global_metrics[m]:.4f}"
            row["users"] = int(ev.summary.loc[(s, metrics[0]), "n_users"]) if (s, metrics[0]) in ev.summary.index else 0
            rows.append(row)
    return pd.DataFrame(rows).to_string(index=False)


def format_content_slices(evaluations: list[FoldEvaluation], k: int = 50, user_slice: str = "all") -> str:
    """A plain-text table of the content slices: one row per (evaluation, content slice) with its
    target pairs, users and ``recall@k`` (``mean [low, high]``) over ``user_slice``'s users."""
    rows = []
    for ev in evaluations:
        names = [key.split("/")[1] for key in ev.global_metrics
                 if key.startswith("content_slice/") and key.endswith("/targets")]
        for name in names:
            row = {"eval": ev.name, "content": name,
                   "targets": int(ev.global_metrics[f"content_slice/{name}/targets"])}
            key = (user_slice, f"{name}/recall@{k}")
            if key in ev.summary.index:
                r = ev.summary.loc[key]
                row["users"] = int(r["n_users"])
                cell = f"{r['mean']:.4f}" if not np.isnan(r["mean"]) else "-"
                if not np.isnan(r["ci_low"]):
                    cell += f" [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
                row[f"recall@{k}"] = cell
            rows.append(row)
    return pd.DataFrame(rows).to_string(index=False) if rows else ""


def lists_to_export(model: Recommender, evaluation: FoldEvaluation, fold: Fold, k: int,
                    users: np.ndarray | None = None) -> Recommendations:
    """The top-``k`` lists to export: the evaluated lists cut to ``k`` when they are at least ``k``
    long and no users file is given; else the model serves the users again at length ``k`` (the
    evaluated lists are ``max(eval.ks)`` long, so ``k = 500`` is served, not cut to 50)."""
    recs = evaluation.recs
    width = recs.items.shape[1]
    if users is None and width >= k:
        cut = {name: value[:, :k] for name, value in vars(recs).items()
               if isinstance(value, np.ndarray) and value.ndim == 2 and value.shape[1] == width}
        return dataclasses.replace(recs, **cut)
    return model.recommend(recs.users if users is None else users, fold, k)


BACKFILL_WARNING_SHARE = 0.9  # lists at least this share back-fill are reported as (almost) the back-fill


def backfill_notes(evaluations: list[FoldEvaluation], model_name: str) -> list[str]:
    """One line per evaluation whose lists are (almost) all popularity back-fill: the mean share of
    the list slots the back-fill filled for the warm users (``warm/backfill_share``; all users when
    none is warm), whom the model could have served from their history. Such a row measures the
    back-fill, not ``model_name`` (e.g. ``recall.max_triggers=0``, or a ``recall.min_score`` above
    every pool score). Models without a back-fill counter give no line."""
    notes = []
    for ev in evaluations:
        share = ev.global_metrics.get("warm/backfill_share", float("nan"))
        if not np.isfinite(share):
            share = ev.global_metrics.get("backfill_share", float("nan"))
        if np.isfinite(share) and share >= BACKFILL_WARNING_SHARE:
            notes.append(f"NOTE {ev.name}: {share:.0%} of the warm users' list slots are popularity back-fill: "
                         f"this row measures the back-fill, not {model_name}")
    return notes
