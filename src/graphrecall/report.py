"""Sum up sweeps: mean ± std over seeds, paired differences user by user, a bar plot, and W&B.

``python -m graphrecall.report <folder> [<folder> ...] [--fold test] [--metrics recall@50 ...]
[--out results.md] [--compare [LABEL]] [--wandb] [--wandb-report]``

**Runs.** Every folder below the given folders (at any depth; symbolic links such as
``multirun/train/latest`` are not followed, so no run counts twice) that holds a ``metrics.json``
is a finished run. Its ``config_resolved.json`` (the resolved config plus ``choices``, the chosen
config groups) names what ran.

**Labels.** A run's label is built from its resolved config (``model=sage aggregator=gat loss=bce
dataset=synthetic``): the model and the dataset always; the aggregator, the loss and the debias
variant where the model reads them (:func:`graphrecall.tracking.name_choices`, as in the W&B run
names); any other config group whose choice differs between the runs; then every other resolved
key that differs between runs of the same choices (or, outside the config groups' own keys, between
any runs; of a key and its copies, such as ``recall.decay`` and ``model.triggers.decay``, the
shortest; a key that is null in some runs and absent from others does not differ: a key added
with a null default, off, is absent from the runs made before it). Left out: seeds (every
key named ``seed``; a seed that is not a copy of the run's ``seed``, such as
``dataset.loader.seed``, is a repetition too), folders (``*dir``), the logger, display settings
(progress bar, model summary, log interval), export and bootstrap settings (they change no mean),
``threads``, ``task_name`` and ``git_revision``. Runs
with the same label form a group: one row, ``mean ± std`` over its runs (ddof 1), or a single run's
mean with the bootstrap 95% interval over users from its ``metrics.json``.

**Paired differences.** Every group is compared with a reference group (``--compare LABEL``; by
default the first group) on one per-user metric of ``per_user_<fold>.parquet``: per user, the mean
over the repetitions (seeds) both groups ran of the group's value and of the reference's, then a
paired bootstrap over users of the mean difference
(:func:`graphrecall.metrics.bootstrap.paired_bootstrap_diff`, users in ascending order of ``u``,
1,000 resamples, seed 0): mean difference, 95% interval and two-sided p-value. The users: the warm
ones where the per-user files mark them (a boolean ``warm`` column), else all (``--compare-slice``).

**Headline.** The warm users (``warm/recall@50``, users with a click before the cut) where the
runs have them, beside all users; the bar plot shows the headline metric with its whiskers (std
over seeds, or a single run's bootstrap interval).

**W&B.** ``--wandb`` logs one report run (``job_type="report"``) into the W&B group of the sweep's
runs (their ``wandb_run.json``, else :func:`graphrecall.tracking.run_identity`: ``<task_name>/<sweep
folder>``) with the table, the paired differences and the plot; offline (inside the first folder,
``<folder>/wandb/offline-run-*``) unless an API key is configured. ``--wandb-report`` builds a W&B Report of the group with the
optional ``wandb-workspaces`` package and an API key, or else writes its spec to
``<folder>/wandb_report.json`` and prints how to publish it.

A wrong folder (missing, or holding no finished run) or an unreadable run file ends the command with
one line naming it and exit status 2.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

METRICS_FILE = "metrics.json"
CONFIG_FILE = "config_resolved.json"
SPEC_FILE = "wandb_report.json"
HEADLINE_SLICE = "warm"
DEFAULT_METRICS = (
    "recall@50", "warm/recall@50", "recall@20", "ndcg@50", "active/recall@50", "low_activity/recall@50",
    "cold/recall@50",
    "distinct_style@50", "distinct_space@50", "coverage@50", "avg_pop@50", "tail_share@50",
)
# config groups whose keys live under a top-level key of the same name (debias writes into model.dice)
CONFIG_GROUPS = ("model", "aggregator", "loss", "dataset", "graph", "trainer", "logger", "debias", "experiment")
MODEL_OPTIONS = ("aggregator", "loss")  # groups whose keys count only for models that read them
NOT_IN_LABELS = frozenset({"threads", "enable_progress_bar", "enable_model_summary", "log_every_n_steps",
                           "git_revision", "task_name",
                           # eval.serving_grid_test / eval.channel_grid* write tables, change no metric
                           "serving_grid_test", "channel_grid", "channel_grid_auto_max"})
_MISSING = "<missing>"
# a label part -> the W&B config key of the training runs that holds it (graphrecall.tracking.wandb_config:
# the resolved config flattened, with the group choices under choices.*); other parts are config keys
WANDB_CONFIG_KEYS = {"model": "choices.model", "aggregator": "aggregator.name", "loss": "loss.name",
                     "debias": "choices.debias", "dataset": "dataset.name", "graph": "choices.graph",
                     "trainer": "choices.trainer", "experiment": "choices.experiment"}


class ReportError(ValueError):
    """A folder, file or option the report cannot use; :func:`main` prints it as one line, exit 2."""


# ---------------------------------------------------------------- runs
def _natural_key(path: Path) -> tuple:
    """``sweep/2`` before ``sweep/10``: job folders in launch order."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", path.as_posix()) if part)


def find_run_dirs(folder: str | Path) -> list[Path]:
    """Folders at any depth below ``folder`` (itself included) that hold a ``metrics.json``.

    Raises:
        ReportError: ``folder`` is missing, not a folder, or holds no finished run.
    """
    root = Path(folder)
    if not root.exists():
        raise ReportError(f"{folder}: no such folder (expected a sweep folder or a folder of run folders)")
    if not root.is_dir():
        raise ReportError(f"{folder}: not a folder (expected a sweep folder or a folder of run folders)")
    found = [Path(d) for d, _, files in os.walk(root) if METRICS_FILE in files]  # does not follow links
    if not found:
        raise ReportError(f"{folder}: holds no finished run (no {METRICS_FILE} in it or below it)")
    return sorted(found, key=lambda p: _natural_key(p.relative_to(root)))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"{path}: missing (every finished run of train.py writes it)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportError(f"{path}: not readable JSON ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def load_run(run_dir: Path, folder: Path) -> dict[str, Any]:
    """One finished run: ``dir``, ``folder`` (the folder given on the command line), ``metrics``,
    ``summary`` (per fold: slice x metric rows with ``mean, ci_low, ci_high, n_users``), ``details``
    (the run's per-fold facts: cuts, windows, counts), ``config``
    (the resolved config with ``choices``) and ``seed``."""
    data = _read_json(run_dir / METRICS_FILE)
    if not isinstance(data.get("metrics"), dict):
        raise ReportError(f"{run_dir / METRICS_FILE}: no 'metrics' object (expected train.py's metrics.json)")
    config = _read_json(run_dir / CONFIG_FILE)
    return {"dir": str(run_dir), "folder": str(folder), "metrics": data["metrics"],
            "summary": data.get("summary") or {}, "details": data.get("details") or {}, "config": config,
            "seed": config.get("seed")}


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _text(value: Any) -> str:
    """A config value as it reads on a command line: ``0.01``, ``gat``, ``[20,50]``, ``null``."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def _chosen(run: dict[str, Any]) -> dict[str, str]:
    """The run's config-group choices (Hydra's ``choices``; a config composed outside a Hydra app has
    none) plus its named choices (:func:`graphrecall.tracking.name_choices`: model, dataset, and
    aggregator / loss / debias where the model reads them)."""
    from graphrecall.tracking import name_choices

    config = run["config"]
    choices = {k: str(v) for k, v in (config.get("choices") or {}).items()
               if v is not None and not k.startswith("hydra")}
    return {**choices, **name_choices(config)}


def _ignored_key(key: str) -> bool:
    """Keys that never name a group: W&B's bookkeeping (:func:`graphrecall.tracking.is_bookkeeping`:
    folders, logger, export, bootstrap precision, resume paths), choices (named as groups), seeds,
    display settings, threads, the git revision."""
    from graphrecall.tracking import is_bookkeeping

    parts = key.split(".")
    return (is_bookkeeping(key) or parts[0] == "choices" or "logger" in parts or parts[-1] in NOT_IN_LABELS
            or parts[-1].endswith("dir") or parts[-1] == "seed")


def repetition_keys(runs: list[dict[str, Any]]) -> list[str]:
    """``seed`` plus every other key named ``seed`` that differs between runs and is not a copy of
    the run's seed (``dataset.loader.seed``: another synthetic world); their values tell the
    repetitions of one configuration apart."""
    flats = [flatten(r["config"]) for r in runs]
    keys = ["seed"]
    for key in sorted(set().union(*flats)):
        if key == "seed" or key.split(".")[-1] != "seed":
            continue
        values = [f.get(key, _MISSING) for f in flats]
        copy = all(v in (_MISSING, f.get("seed")) for v, f in zip(values, flats))
        if len({_text(v) for v in values}) > 1 and not copy:
            keys.append(key)
    return keys


def _varying_keys(flats: list[dict[str, Any]], choice_tuples: list[tuple], groups: set[str]) -> list[str]:
    """Resolved keys that tell runs apart beyond their config-group choices (see the module docstring);
    of keys with the same last name and identical values in every run (``recall.decay`` and its copy
    ``model.triggers.decay``) the shortest is kept."""
    vectors: dict[str, tuple[str, ...]] = {}
    for key in sorted(set().union(*flats)):
        if _ignored_key(key):
            continue
        # null and absent are one value: a key added later with a null default (off) is absent from older runs
        values = tuple(_MISSING if f.get(key) is None else _text(f[key]) for f in flats)
        if len(set(values)) < 2:
            continue
        if key.split(".")[0] in groups:  # a group's own key: explained by its choice unless it varies within one
            within: dict[tuple, set[str]] = defaultdict(set)
            for t, v in zip(choice_tuples, values):
                within[t].add(v)
            if all(len(s) < 2 for s in within.values()):
                continue
        vectors[key] = values
    kept: dict[tuple, str] = {}
    for key in sorted(vectors, key=lambda k: (k.count("."), k)):
        kept.setdefault((key.rsplit(".", 1)[-1], vectors[key]), key)
    return sorted(kept.values())


def assign_labels(runs: list[dict[str, Any]]) -> None:
    """Set ``label`` (``key=value`` parts joined by spaces), ``parts`` (label key -> value) and
    ``rep`` (the repetition: ``((key, value), ...)`` of :func:`repetition_keys`) on every run."""
    from graphrecall.tracking import name_choices, used_groups

    chosen = [_chosen(r) for r in runs]
    flats = [flatten(r["config"]) for r in runs]
    groups = set(CONFIG_GROUPS).union(*chosen)
    tuples = [tuple(sorted(c.items())) for c in chosen]
    other_groups = sorted(g for g in set().union(*chosen)
                          if g not in (*CONFIG_GROUPS[:4], "logger", "debias")
                          and len({c.get(g) for c in chosen}) > 1)
    keys = _varying_keys(flats, tuples, groups)
    in_every_run = {k for k in keys if all(k in f for f in flats)}
    reps = repetition_keys(runs)
    for run, choice, flat in zip(runs, chosen, flats):
        named = name_choices(run["config"])  # model, aggregator / loss / debias where read, dataset
        unused = set(MODEL_OPTIONS) - used_groups(run["config"].get("model") or {})
        parts = {k: v for k, v in named.items() if k != "dataset"}
        parts.update({g: choice[g] for g in other_groups if g in choice})
        parts["dataset"] = named.get("dataset", "?")
        # a null value is named where every run has the key, else it reads as absent (see _varying_keys)
        parts.update({k: _text(flat[k]) for k in keys
                      if k in flat and (flat[k] is not None or k in in_every_run) and k.split(".", 1)[0] not in unused})
        run["parts"] = parts
        run["label"] = " ".join(f"{k}={v}" for k, v in parts.items())
        run["rep"] = tuple((k, flat.get(k)) for k in reps)


def collect_runs(folders: str | Path | Sequence[str | Path]) -> list[dict[str, Any]]:
    """The finished runs below one or several folders, labelled (:func:`assign_labels`), each once.

    Raises:
        ReportError: a folder is missing or holds no finished run; a run's files are unreadable.
    """
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    if not folders:
        raise ReportError("no folder given (expected one or more sweep folders)")
    runs, seen = [], set()
    for folder in folders:
        for run_dir in find_run_dirs(folder):
            real = run_dir.resolve()
            if real not in seen:
                seen.add(real)
                runs.append(load_run(run_dir, Path(folder)))
    assign_labels(runs)
    return runs


def labels(runs: list[dict[str, Any]]) -> list[str]:
    """The groups' labels in order of first appearance."""
    return list(dict.fromkeys(r["label"] for r in runs))


# ---------------------------------------------------------------- the table
def _ci_of(run: dict, fold: str, metric: str) -> tuple[float, float] | None:
    # a flat metric name is the summary's metric, prefixed by its user slice unless that is "all"
    # (``warm/recall@50``, ``clicks_0/recall@50``, ``warm/clicks_0/recall@50``)
    for row in run.get("summary", {}).get(fold, []):
        name = row["metric"] if row["slice"] == "all" else f"{row['slice']}/{row['metric']}"
        if name == metric:
            return row.get("ci_low"), row.get("ci_high")
    return None


def aggregate(runs: list[dict], fold: str = "test", metrics: Sequence[str] = DEFAULT_METRICS,
              extra: Sequence[str] = ()) -> pd.DataFrame:
    """The numbers behind :func:`results_table` and the bar plot, one row per (group, metric).

    Args:
        runs: :func:`collect_runs` records.
        fold: ``metrics`` are read as ``<fold>/<metric>``; ``extra``: full metric keys (``val/recall@50``).

    Returns:
        Columns ``run`` (label, in order of first appearance), ``seeds`` (runs with that label),
        ``metric`` (as named in ``metrics`` / ``extra``), ``key`` (the metric key read), ``n``
        (runs with a non-NaN value), ``mean``, ``std`` (ddof 1; NaN when n < 2), ``ci_low``,
        ``ci_high`` (the bootstrap interval over users of a single run, when it has one; else NaN).
    """
    rows = []
    for label in labels(runs):
        group = [r for r in runs if r["label"] == label]
        for m, key in [*((m, f"{fold}/{m}") for m in metrics), *((k, k) for k in extra)]:
            values = np.array([r["metrics"][key] for r in group if r["metrics"].get(key) is not None], dtype=float)
            values = values[~np.isnan(values)]
            ci = _ci_of(group[0], fold, m) if len(values) == 1 and key == f"{fold}/{m}" and len(group) == 1 else None
            if ci is None or any(v is None or not math.isfinite(v) for v in ci):
                ci = (np.nan, np.nan)
            rows.append({
                "run": label, "seeds": len(group), "metric": m, "key": key, "n": len(values),
                "mean": values.mean() if len(values) else np.nan,
                "std": values.std(ddof=1) if len(values) > 1 else np.nan,
                "ci_low": float(ci[0]), "ci_high": float(ci[1]),
            })
    return pd.DataFrame(rows, columns=["run", "seeds", "metric", "key", "n", "mean", "std", "ci_low", "ci_high"])


def _cell(row) -> str:
    if row.n == 0:
        return "-"
    if row.n == 1:
        has_ci = np.isfinite(row.ci_low) and np.isfinite(row.ci_high)
        return f"{row.mean:.4f}" + (f" [{row.ci_low:.4f}, {row.ci_high:.4f}]" if has_ci else "")
    return f"{row.mean:.4f} ± {row.std:.4f}"


def results_table(runs: list[dict], fold: str = "test", metrics: Sequence[str] = DEFAULT_METRICS,
                  extra: Sequence[str] = ()) -> pd.DataFrame:
    """Rows = groups (labels), columns = ``run, seeds`` and the metrics, cells formatted as strings.

    A cell is ``mean ± std`` over several runs, a single run's value with its bootstrap interval
    ``[low, high]``, or ``-`` (see :func:`aggregate`).
    """
    long = aggregate(runs, fold, metrics, extra)
    rows = []
    for label, group in long.groupby("run", sort=False):
        row = {"run": label, "seeds": int(group["seeds"].iloc[0])}
        row.update({r.metric: _cell(r) for r in group.itertuples(index=False)})
        rows.append(row)
    return pd.DataFrame(rows)


def headline_metric(runs: list[dict], fold: str, metric: str = "recall@50") -> str:
    """``warm/<metric>`` where a run has it in ``fold`` (the headline slice), else ``metric``."""
    warm = f"{HEADLINE_SLICE}/{metric}"
    return warm if any(f"{fold}/{warm}" in r["metrics"] for r in runs) else metric


# ---------------------------------------------------------------- paired differences
def _reps_text(reps: list[tuple]) -> str:
    """``0,1`` (run seeds), ``seed=0 dataset.loader.seed=1; seed=0 dataset.loader.seed=2``, or ``none shared``."""
    if not reps:
        return "none shared"
    if all(len(rep) == 1 for rep in reps):
        return ",".join(_text(rep[0][1]) for rep in reps)
    return "; ".join(" ".join(f"{k}={_text(v)}" for k, v in rep) for rep in reps)


def _per_user(run: dict, fold: str, metric: str, slice_: str) -> pd.DataFrame:
    """``u, value`` of the run's users in ``slice_`` (``all``, or a boolean column of the file)."""
    path = Path(run["dir"]) / f"per_user_{fold}.parquet"
    if not path.exists():
        raise ReportError(f"{path}: missing (the paired comparison reads per-user values of fold '{fold}')")
    frame = pd.read_parquet(path)
    for column in ("u", metric, *([slice_] if slice_ != "all" else [])):
        if column not in frame.columns:
            raise ReportError(f"{path}: no column '{column}'; per-user columns: {list(frame.columns)[:40]}")
    if slice_ != "all":
        frame = frame[frame[slice_].astype(bool)]
    return frame[["u", metric]].rename(columns={metric: "value"})


def _rep_values(group: list[dict], fold: str, metric: str, slice_: str) -> dict[tuple, pd.DataFrame]:
    """Per repetition: ``u, value`` (runs of the same repetition, e.g. from two folders, averaged)."""
    by_rep: dict[tuple, list[pd.DataFrame]] = defaultdict(list)
    for run in group:
        by_rep[run["rep"]].append(_per_user(run, fold, metric, slice_))
    return {rep: (frames[0] if len(frames) == 1 else pd.concat(frames).groupby("u", as_index=False)["value"].mean())
            for rep, frames in by_rep.items()}


def paired_user_means(a: dict[tuple, pd.DataFrame], b: dict[tuple, pd.DataFrame]) -> tuple[pd.DataFrame, list[tuple]]:
    """Per user, the means over the repetitions both groups ran of A's and B's values.

    Args:
        a, b: repetition -> ``u, value`` (:func:`_rep_values`).

    Returns:
        (``unit`` columns then ``a, b``, one row per user in ascending order, and the shared
        repetitions). A repetition component other than the run seed (a data seed: another world)
        is part of the user's identity, so the unit is ``(u, <data seed>...)``; users with a NaN in
        either group in a repetition are left out of that repetition.
    """
    shared = sorted(set(a) & set(b), key=lambda rep: [(0, v, "") if isinstance(v, (int, float)) else (1, 0, _text(v))
                                                      for _, v in rep])
    frames = []
    for rep in shared:
        joined = a[rep].merge(b[rep], on="u", suffixes=("_a", "_b")).dropna()
        for key, value in rep:
            if key != "seed":
                joined[key] = _text(value)
        frames.append(joined.rename(columns={"value_a": "a", "value_b": "b"}))
    unit = ["u", *(k for k, _ in (shared[0] if shared else ()) if k != "seed")]
    if not frames:
        return pd.DataFrame(columns=[*unit, "a", "b"]), shared
    means = pd.concat(frames).groupby(unit, as_index=False, sort=True)[["a", "b"]].mean()
    return means, shared


def resolve_reference(runs: list[dict], reference: str | None) -> str:
    """The label ``reference`` names: the label itself, or the one label holding all its ``key=value``
    words (``model=popular``); None: the first group."""
    names = labels(runs)
    if reference is None:
        return names[0]
    if reference in names:
        return reference
    words = set(reference.split())
    matches = [n for n in names if words <= set(n.split())]
    if len(matches) == 1:
        return matches[0]
    what = "matches no label" if not matches else f"matches {len(matches)} labels"
    raise ReportError(f"--compare '{reference}' {what}; labels: {names}")


def paired_comparison(runs: list[dict], reference: str | None = None, fold: str = "test", metric: str = "recall@50",
                      slice_: str = "auto", num_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every other group against ``reference`` on the per-user ``metric`` (see the module docstring).

    Args:
        reference: a label or words of one (:func:`resolve_reference`); None: the first group.
        slice_: ``all``, a boolean column of the per-user files (``warm``), or ``auto``: ``warm``
            where every file has it, else ``all``.
        num_resamples, seed: of the paired bootstrap.

    Returns:
        One row per group: ``run, reference, fold, metric, slice, users, seeds`` (the shared
        repetitions), ``diff`` (group - reference), ``ci_low, ci_high, p``; NaN where no
        repetition is shared.
    """
    from graphrecall.metrics.bootstrap import paired_bootstrap_diff

    ref = resolve_reference(runs, reference)
    if slice_ == "auto":
        has_warm = all(HEADLINE_SLICE in _parquet_columns(Path(r["dir"]) / f"per_user_{fold}.parquet") for r in runs)
        slice_ = HEADLINE_SLICE if has_warm else "all"
    ref_values = _rep_values([r for r in runs if r["label"] == ref], fold, metric, slice_)
    rows = []
    for label in labels(runs):
        if label == ref:
            continue
        values = _rep_values([r for r in runs if r["label"] == label], fold, metric, slice_)
        means, shared = paired_user_means(values, ref_values)
        diff = paired_bootstrap_diff(means["a"].to_numpy(float), means["b"].to_numpy(float), num_resamples,
                                     seed=seed) if len(means) else (np.nan,) * 4
        rows.append({"run": label, "reference": ref, "fold": fold, "metric": metric, "slice": slice_,
                     "users": len(means), "seeds": _reps_text(shared),
                     "diff": diff[0], "ci_low": diff[1], "ci_high": diff[2], "p": diff[3]})
    return pd.DataFrame(rows, columns=["run", "reference", "fold", "metric", "slice", "users", "seeds", "diff",
                                       "ci_low", "ci_high", "p"])


def _parquet_columns(path: Path) -> list[str]:
    if not path.exists():
        raise ReportError(f"{path}: missing (the paired comparison reads per-user values)")
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def comparison_markdown(comparisons: pd.DataFrame) -> str:
    """The paired differences as a markdown table (``Δ`` = group - reference)."""
    table = pd.DataFrame({
        "run": comparisons["run"],
        "users": comparisons["users"],
        "seeds": comparisons["seeds"],
        "Δ mean": [f"{d:+.4f}" if np.isfinite(d) else "-" for d in comparisons["diff"]],
        "95% interval": [f"[{lo:+.4f}, {hi:+.4f}]" if np.isfinite(lo) else "-"
                         for lo, hi in zip(comparisons["ci_low"], comparisons["ci_high"])],
        "p": [f"{p:.3f}" if np.isfinite(p) else "-" for p in comparisons["p"]],
    })
    return to_markdown(table)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub markdown table (no extra dependency)."""
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


# ---------------------------------------------------------------- the whole report
@dataclass
class SweepReport:
    """Everything one report shows: the runs, the table, the paired differences, the plot's metric.

    Attributes:
        folders: the folders given.
        runs: :func:`collect_runs` records.
        fold: the fold of the table (``test``).
        table: :func:`results_table` (formatted cells); ``long``: :func:`aggregate` (numbers).
        headline: the plotted metric (``warm/recall@50``) and its key (``test/warm/recall@50``).
        comparisons: :func:`paired_comparison` or None (one group, or turned off).
        notes: lines printed under the table (columns left out, comparisons skipped and why).
    """

    folders: list[Path]
    runs: list[dict[str, Any]]
    fold: str
    table: pd.DataFrame
    long: pd.DataFrame
    headline: str
    headline_key: str
    comparisons: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    resamples: int = 1000


def build_report(folders: Sequence[str | Path], fold: str = "test", metrics: Sequence[str] | None = None,
                 extra: Sequence[str] = (), compare: str | None = None, compare_required: bool = False,
                 compare_metric: str = "recall@50", compare_slice: str = "auto", plot_metric: str | None = None,
                 resamples: int = 1000, seed: int = 0, with_comparisons: bool = True) -> SweepReport:
    """Collect the runs of ``folders`` and compute the table, the paired differences and the headline.

    Args:
        metrics: names read as ``<fold>/<metric>``; None: :data:`DEFAULT_METRICS` less those no run has
            (named in a note).
        extra: full metric keys shown as they are (``val/recall@50``).
        compare: the reference group (:func:`resolve_reference`); None: the first group.
        compare_required: a comparison that cannot be made (missing per-user file) is an error rather
            than a note.
        plot_metric: the plotted metric; None: :func:`headline_metric`.
        with_comparisons: False: no paired differences.
    """
    folders = [Path(f) for f in folders]
    runs = collect_runs(folders)
    notes: list[str] = []
    if metrics is None:
        present = [m for m in DEFAULT_METRICS if any(f"{fold}/{m}" in r["metrics"] for r in runs)]
        absent = [m for m in DEFAULT_METRICS if m not in present]
        if not present:
            known = sorted({k.split("/", 1)[0] for r in runs for k in r["metrics"] if "/" in k})
            raise ReportError(f"no run below {', '.join(map(str, folders))} has metrics of fold '{fold}'; "
                              f"folds with metrics: {known}")
        if absent:
            notes.append(f"Not in any run's {fold} metrics: {', '.join(absent)}.")
        metrics = present
    metrics = list(metrics)
    headline = plot_metric or headline_metric(runs, fold)
    headline_key = headline if headline in extra else f"{fold}/{headline}"
    wanted = list(dict.fromkeys([*metrics, *([headline] if headline not in extra else [])]))
    long = aggregate(runs, fold, wanted, extra)
    table = results_table(runs, fold, metrics, extra)
    comparisons = None
    if with_comparisons and len(labels(runs)) > 1:
        reference = resolve_reference(runs, compare)  # a wrong label is an error in any case
        try:
            comparisons = paired_comparison(runs, reference, fold, compare_metric, compare_slice, resamples, seed)
        except ReportError as e:
            if compare_required:
                raise
            notes.append(f"No paired differences: {e}.")
    return SweepReport(folders, runs, fold, table, long, headline, headline_key, comparisons, notes, resamples)


def markdown(report: SweepReport, plot_name: str | None = None) -> str:
    """The report as markdown: header, table, notes, paired differences, the plot (``plot_name``)."""
    where = ", ".join(str(f) for f in report.folders)
    groups = len(labels(report.runs))
    warm = report.headline.startswith(f"{HEADLINE_SLICE}/")
    lines = [f"{report.fold} metrics of {len(report.runs)} run(s) in {where} ({groups} group(s))", "",
             to_markdown(report.table), "",
             "Cells: mean ± std over a group's runs (seeds); a single run: its mean over users with the "
             "bootstrap 95% interval." + (" Headline: warm users (a click before the cut) beside all users."
                                          if warm else "")]
    lines += report.notes
    c = report.comparisons
    if c is not None and len(c):
        first = c.iloc[0]
        users = "all users" if first["slice"] == "all" else f"{first['slice']} users"
        lines += ["", f"Paired differences of {first['fold']} {first['metric']} ({users}) against "
                      f"`{first['reference']}` (Δ = run - reference):", "", comparison_markdown(c), "",
                  f"Per user: the mean over the seeds both groups ran, then a paired bootstrap over users "
                  f"({report.resamples} resamples) of the mean difference; p: two-sided."]
    if plot_name:
        lines += ["", f"![{report.headline_key}]({plot_name})"]
    return "\n".join(lines) + "\n"


def figure(report: SweepReport):
    """Bar plot of the headline metric per group with whiskers (:func:`graphrecall.plots.ablation_bars`).

    Raises:
        ReportError: no run has the plotted metric.
    """
    from graphrecall.plots import ablation_bars

    datasets = sorted({r["parts"]["dataset"] for r in report.runs})
    try:
        return ablation_bars(report.long, report.headline, ylabel=report.headline_key,
                             title=f"{report.headline_key} on {', '.join(datasets)}: mean ± std over seeds "
                                   "(one run: 95% bootstrap interval)")
    except KeyError as e:
        raise ReportError(f"cannot plot '{report.headline}': {e.args[0]}") from None


def write_outputs(report: SweepReport, out: str | Path | None, plot: str | Path | None,
                  plot_required: bool = True) -> str:
    """Write the markdown to ``out`` and the plot to ``plot`` (either may be None); returns the markdown.

    A plot that cannot be drawn (no run has the metric) is an error when ``plot_required``, else a note.
    """
    from graphrecall.plots import save_figure

    plot_name = None
    if plot is not None:
        plot = Path(plot)
        try:
            save_figure(figure(report), plot)
            plot_name = os.path.relpath(plot, Path(out).parent) if out else str(plot)
        except ReportError as e:
            if plot_required:
                raise
            report.notes.append(f"No plot: {e}.")
    text = markdown(report, plot_name)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    return text


# ---------------------------------------------------------------- W&B
def wandb_group(run: dict[str, Any]) -> str:
    """The W&B group of a run: from its ``wandb_run.json`` (a run that logged to W&B), else the one
    :func:`graphrecall.tracking.run_identity` gives its folder (``<task_name>/<sweep folder>``)."""
    from graphrecall.tracking import IDENTITY_FILE, JobContext, run_identity

    path = Path(run["dir"]) / IDENTITY_FILE
    if path.exists():
        group = _read_json(path).get("group")
        if group:
            return str(group)
    logger = run["config"].get("logger")
    logger = logger if isinstance(logger, dict) else None
    return run_identity(run["config"], Path(run["dir"]), JobContext(), logger).group


def wandb_groups(runs: list[dict]) -> list[str]:
    """The W&B groups of the runs (:func:`wandb_group`), in order of first appearance."""
    return list(dict.fromkeys(wandb_group(r) for r in runs))


def wandb_project(runs: list[dict]) -> tuple[str, str | None]:
    """(project, entity) of the runs that logged to W&B, else (``graphrecall``, None)."""
    for run in runs:
        logger = run["config"].get("logger") or {}
        if isinstance(logger, dict) and logger.get("name") == "wandb":
            return str(logger.get("project") or "graphrecall"), logger.get("entity")
    return "graphrecall", None


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150)
    return buffer.getvalue()


def log_wandb_report_run(report: SweepReport, project: str, entity: str | None, mode: str) -> Path:
    """Log one W&B run (``job_type="report"``) in the sweep's group with the tables ``report/results``
    (formatted cells), ``report/results_long`` (numbers), ``report/paired`` and the image ``report/plot``,
    plus the headline mean per group in the summary (``<headline key>/<label>``). It writes under
    ``<first folder>/wandb`` (:func:`graphrecall.tracking.open_run`, which also leaves
    ``<first folder>/wandb_run.json``). Returns the run's folder (``.../offline-run-*`` offline)."""
    import wandb
    from PIL import Image

    from graphrecall.tracking import RunIdentity, finish_wandb, open_run

    groups = wandb_groups(report.runs)
    datasets = sorted({r["parts"]["dataset"] for r in report.runs})
    identity = RunIdentity(name=f"report {report.folders[0].resolve().name}", group=groups[0], job_type="report",
                           tags=("report", *datasets))
    config = {"report.folders": [str(f) for f in report.folders], "report.fold": report.fold,
              "report.groups": groups, "report.labels": labels(report.runs), "report.headline": report.headline_key}
    run = open_run({"project": project, "entity": entity, "mode": mode}, report.folders[0], identity, config)
    ok = False
    try:
        data: dict[str, Any] = {"report/results": wandb.Table(dataframe=report.table.astype(str)),
                                "report/results_long": wandb.Table(dataframe=report.long)}
        if report.comparisons is not None and len(report.comparisons):
            data["report/paired"] = wandb.Table(dataframe=report.comparisons)
        try:
            data["report/plot"] = wandb.Image(Image.open(io.BytesIO(_png(figure(report)))),
                                              caption=report.headline_key)
        except ReportError as e:
            print(f"no plot in the W&B report run: {e}", file=sys.stderr)
        run.log(data)
        for row in report.long[report.long["key"] == report.headline_key].itertuples(index=False):
            if np.isfinite(row.mean):
                run.summary[f"{report.headline_key}/{row.run}"] = float(row.mean)
        folder = Path(run.dir).parent
        ok = True
    finally:
        finish_wandb(exit_code=0 if ok else 1)
    return folder


def report_spec(report: SweepReport, project: str, entity: str | None) -> dict[str, Any]:
    """A W&B Report of the sweep's group as plain JSON: title, project, entity, the group filter and
    the panels with their metric keys (see :func:`publish_report`).

    Panels: a bar chart of the headline metric over the training runs grouped by the label's config
    keys (mean with a standard-deviation range), the same for all users, a run comparer, and from the
    report run (:func:`log_wandb_report_run`) the results and paired tables and the plot.
    """
    groups = wandb_groups(report.runs)
    group_filter = (f"Metric('Group') == '{groups[0]}'" if len(groups) == 1
                    else "Metric('Group') in [" + ", ".join(f"'{g}'" for g in groups) + "]")
    label_keys = list(dict.fromkeys(k for r in report.runs for k in r["parts"]))
    groupby = [f"config.{WANDB_CONFIG_KEYS.get(k, k)}" for k in label_keys]
    all_users = report.headline_key.replace(f"/{HEADLINE_SLICE}/", "/")
    where = ", ".join(f.resolve().name for f in report.folders)
    text = markdown(report)
    return {
        "title": f"graphrecall: {where} ({report.headline_key})",
        "project": project,
        "entity": entity,
        "groups": groups,
        "filters": group_filter,
        "description": f"{len(report.runs)} runs in {len(labels(report.runs))} groups; labels: "
                       f"{', '.join(label_keys)}",
        "blocks": [
            {"type": "markdown", "text": text},
            {"type": "panel_grid",
             "runset": {"name": "training runs", "filters": f"{group_filter} and Metric('JobType') != 'report'",
                        "groupby": groupby},
             "panels": [
                 {"type": "bar", "title": f"{report.headline_key} by label", "metrics": [report.headline_key],
                  "groupby_aggfunc": "mean", "groupby_rangefunc": "stddev"},
                 *([{"type": "bar", "title": f"{all_users} by label", "metrics": [all_users],
                     "groupby_aggfunc": "mean", "groupby_rangefunc": "stddev"}]
                   if all_users != report.headline_key else []),
                 {"type": "run_comparer", "diff_only": "split"},
             ]},
            {"type": "panel_grid",
             "runset": {"name": "report run", "filters": f"{group_filter} and Metric('JobType') == 'report'",
                        "groupby": []},
             "panels": [
                 {"type": "summary_table", "table_name": "report/results"},
                 {"type": "summary_table", "table_name": "report/paired"},
                 {"type": "media", "media_keys": ["report/plot"]},
             ]},
        ],
    }


def publish_report(spec: dict[str, Any]) -> str:
    """Save the W&B Report of ``spec`` (:func:`report_spec`) and return its URL.

    Needs an API key and the optional ``wandb-workspaces`` package (``pip install wandb-workspaces``).
    """
    import wandb_workspaces.reports.v2 as wr

    def panel(p: dict[str, Any]):
        if p["type"] == "bar":
            return wr.BarPlot(title=p["title"], metrics=p["metrics"], groupby_aggfunc=p["groupby_aggfunc"],
                              groupby_rangefunc=p["groupby_rangefunc"])
        if p["type"] == "run_comparer":
            return wr.RunComparer(diff_only=p["diff_only"])
        if p["type"] == "summary_table":
            return wr.WeavePanelSummaryTable(table_name=p["table_name"])
        if p["type"] == "media":
            return wr.MediaBrowser(media_keys=p["media_keys"])
        raise ValueError(f"unknown panel type '{p['type']}' in the report spec")

    blocks = []
    for block in spec["blocks"]:
        if block["type"] == "markdown":
            blocks.append(wr.MarkdownBlock(text=block["text"]))
        else:
            rs = block["runset"]
            runset = wr.Runset(entity=spec["entity"] or "", project=spec["project"], name=rs["name"],
                               filters=rs["filters"], groupby=rs["groupby"])
            blocks.append(wr.PanelGrid(runsets=[runset], panels=[panel(p) for p in block["panels"]]))
    kwargs = {"entity": spec["entity"]} if spec["entity"] else {}
    report = wr.Report(project=spec["project"], title=spec["title"], description=spec["description"],
                       blocks=blocks, **kwargs)
    report.save()
    return str(report.url)


def sync_command(report: SweepReport) -> str:
    """``wandb sync`` of the offline runs of the report's runs and of the report run."""
    parents = dict.fromkeys(str(Path(r["dir"]).parent) for r in report.runs)
    patterns = [f"{p}/*/wandb/offline-run-*" for p in parents] + [f"{report.folders[0]}/wandb/offline-run-*"]
    return "wandb sync " + " ".join(patterns)


def wandb_report(report: SweepReport, project: str, entity: str | None) -> str:
    """Publish the W&B Report with an API key and ``wandb-workspaces``; otherwise write the spec to
    ``<first folder>/wandb_report.json``. Returns the lines to print."""
    from graphrecall.tracking import has_wandb_key

    spec = report_spec(report, project, entity)
    try:
        import wandb_workspaces.reports.v2  # noqa: F401

        have_package = True
    except ImportError:
        have_package = False
    have_key = has_wandb_key()
    if have_package and have_key:
        return f"W&B report: {publish_report(spec)}"
    path = report.folders[0] / SPEC_FILE
    path.write_text(json.dumps(spec, indent=2, default=str) + "\n")
    missing = [w for w, ok in (("the wandb-workspaces package (pip install wandb-workspaces)", have_package),
                               ("a W&B API key (WANDB_API_KEY or `wandb login`)", have_key)) if not ok]
    fold = f" --fold {report.fold}" if report.fold != "test" else ""
    command = f"python -m graphrecall.report {' '.join(map(str, report.folders))}{fold} --wandb-report"
    return (f"W&B report spec written to {path} (no report built: needs {' and '.join(missing)}).\n"
            f"To publish it: upload the offline runs ({sync_command(report)}), then with the key and the "
            f"package run `{command}` again, or in Python: "
            f"`graphrecall.report.publish_report(json.load(open('{path}')))`.")


# ---------------------------------------------------------------- command line
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m graphrecall.report", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="sweep folders, or folders of run folders at any depth")
    parser.add_argument("--fold", default="test", help="test | val | test_interest_only ...")
    parser.add_argument("--metrics", nargs="+", default=None,
                        help="metric names read in --fold (default: the usual ones that the runs have)")
    parser.add_argument("--extra", nargs="*", default=[], help="full metric keys, e.g. val/recall@50")
    parser.add_argument("--out", default=None, help="write the markdown here; the plot goes beside it (.png)")
    parser.add_argument("--plot", default=None, help="write the bar plot here (.png/.pdf/.svg)")
    parser.add_argument("--plot-metric", default=None,
                        help="plotted metric: a name read in --fold or a key of --extra (default: warm/recall@50 "
                             "where the runs have it, else recall@50)")
    parser.add_argument("--compare", nargs="?", const="", default=None, metavar="LABEL",
                        help="reference group of the paired differences: its label or words of it "
                             "(model=popular); without a value the first group, which is also the default")
    parser.add_argument("--no-compare", action="store_true", help="no paired differences")
    parser.add_argument("--compare-metric", default="recall@50", help="a per-user column (default recall@50)")
    parser.add_argument("--compare-slice", default="auto",
                        help="all | a boolean per-user column (warm) | auto: warm where the files have it")
    parser.add_argument("--resamples", type=int, default=1000, help="paired bootstrap resamples (seed 0)")
    parser.add_argument("--wandb", action="store_true", help="log a W&B report run into the sweep's group")
    parser.add_argument("--wandb-report", action="store_true",
                        help="build a W&B Report of the group (API key + wandb-workspaces), else write its spec")
    parser.add_argument("--wandb-mode", default="auto", choices=("auto", "offline", "online"),
                        help="auto: online only with an API key")
    parser.add_argument("--wandb-project", default=None, help="default: the runs' logger.project, else graphrecall")
    parser.add_argument("--wandb-entity", default=None)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> str:
    """What :func:`main` does, raising :class:`ReportError` on bad input."""
    if args.compare is not None and args.no_compare:
        raise ReportError("--compare and --no-compare exclude each other")
    report = build_report(args.folders, args.fold, args.metrics, args.extra, compare=args.compare or None,
                          compare_required=args.compare is not None, compare_metric=args.compare_metric,
                          compare_slice=args.compare_slice, plot_metric=args.plot_metric,
                          resamples=args.resamples, with_comparisons=not args.no_compare)
    plot = args.plot or (Path(args.out).with_suffix(".png") if args.out else None)
    text = write_outputs(report, args.out, plot, plot_required=bool(args.plot or args.plot_metric))
    print(text)
    if args.wandb or args.wandb_report:
        from graphrecall.tracking import wandb_mode

        project, entity = wandb_project(report.runs)
        project, entity = args.wandb_project or project, args.wandb_entity or entity
        if args.wandb:
            mode = wandb_mode(args.wandb_mode)
            folder = log_wandb_report_run(report, project, entity, mode)
            upload = f"; upload with `wandb sync {folder}`" if mode == "offline" else ""
            print(f"W&B report run ({mode}, group {wandb_groups(report.runs)[0]}): {folder}{upload}")
        if args.wandb_report:
            print(wandb_report(report, project, entity))
    return text


def main(argv: Sequence[str] | None = None) -> str:
    """Command line; a :class:`ReportError` becomes one line on stderr and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        return run(args)
    except ReportError as e:
        print(f"graphrecall.report: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
