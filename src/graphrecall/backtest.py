"""Rolling-origin backtests pooled over their windows (issue 26).

One temporal cut gives ~100 warm test users on MovieLens-100K: intervals of about +-0.045 on
recall@50, too wide to decide most comparisons. A backtest (``dataset.split.kind=rolling``, one run
per window, :func:`graphrecall.data.splits.rolling_folds`) scores the same models at K cuts; this
module pools them:

* the unit is a **user-window** (a user with targets in one window's test period); a run's seeds
  are averaged per user-window first; runs of several synthetic **worlds** (``dataset.loader.seed``:
  another log) keep their users apart (user 7 of world 0 is not user 7 of world 1) and number their
  windows each on its own time line (window k of every world pools as window k);
* the **pooled value** is the mean over the user-windows;
* its interval is a **cluster bootstrap** over users: a user present in several windows is drawn
  (or left out) with all of them, since one person's windows are not independent;
* a **paired comparison** of two models pairs their user-windows (both must have served the user
  in that window) and bootstraps the mean difference the same way;
* **windows won**: in how many windows the per-window mean of one model is above the other's;
* the **detectable difference**: the smallest true mean difference the design finds with 80%
  power at the 5% level (two-sided), ``(z_0.975 + z_0.8) x SE``, with ``SE`` the cluster-robust
  standard error of the mean paired difference (:func:`detectable_difference`).

* **selection over windows** (``--pooled-serving``): the serving grid's setting chosen on the
  validation windows pooled instead of each window's own (:func:`pooled_serving`), on validation
  recall@50 or another validation metric (``--choose-on ndcg@50``; ``--window-serving``: each
  window's own choice on that metric); the stage
  choice over windows is the ``--fold val`` table of the same runs; ``--pooled-channels``: the
  channels' slot counts chosen on the pooled validation windows (:func:`pooled_channels`, from
  the runs' per-user channel grids); ``--pooled-epochs``: the epoch
  count with the best validation curve pooled over the windows (:func:`pooled_epochs`), to give a
  second backtest as ``model.refit_epochs`` (each window's refit then trains that many epochs).

``python -m graphrecall.backtest <folder> [<folder> ...] --baseline <label words> --out table.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import norm

# the keys that place a run's window on the time line: runs that differ only in them are one model,
# and a window is identified by its test period (cut, end), so backtests of different designs
# (e.g. 8 windows from q0.60 and 4 more from q0.40) pool into one
PLACEMENT_KEYS = frozenset(f"dataset.split.rolling.{k}" for k in ("index", "windows", "first_cut_quantile",
                                                                    "spacing_quantile", "spacing_days"))


class BacktestError(ValueError):
    """A folder that holds no backtest run, or runs that cannot be pooled."""


@dataclass
class Interval:
    """A pooled value with its cluster-bootstrap interval."""

    mean: float
    low: float
    high: float
    p: float | None = None  # two-sided, for a difference (share of resamples on the other side of 0, doubled)


def cluster_bootstrap(values: np.ndarray, clusters: np.ndarray, num_resamples: int = 2000, confidence: float = 0.95,
                      seed: int = 0) -> Interval:
    """Mean of ``values`` [N] with a percentile interval from resampling ``clusters`` [N] (users)
    with replacement: each draw takes a user's rows together, and the statistic of a draw is the
    mean over the rows it holds (sum / count). ``p`` is the two-sided bootstrap p-value of the mean
    being 0 (useful for differences)."""
    values = np.asarray(values, dtype=np.float64)
    ids, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=len(ids))
    counts = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids)), size=num_resamples)  # [R, G] times drawn
    stats = (draws @ sums) / np.maximum(draws @ counts, 1.0)
    alpha = (1.0 - confidence) / 2.0
    p = float(min(1.0, 2.0 * min((stats <= 0).mean(), (stats >= 0).mean())))
    return Interval(float(values.mean()), float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha)), p)


def cluster_standard_error(values: np.ndarray, clusters: np.ndarray) -> float:
    """Cluster-robust standard error of the mean of ``values`` [N], clusters ``clusters`` [N]:

    .. math::
        \\mathrm{SE} = \\frac{1}{N}\\sqrt{\\frac{G}{G - 1}\\sum_g \\Big(\\sum_{i \\in g} (v_i - \\bar v)\\Big)^2}

    (``G`` clusters; a cluster of one row each gives the usual ``s / sqrt(N)`` up to ``N / (N - 1)``)."""
    values = np.asarray(values, dtype=np.float64)
    ids, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    g = len(ids)
    if g < 2:
        return float("nan")
    residual = np.bincount(inverse, weights=values - values.mean(), minlength=g)
    return float(math.sqrt(g / (g - 1) * np.sum(residual**2)) / len(values))


def detectable_difference(differences: np.ndarray, clusters: np.ndarray, alpha: float = 0.05,
                          power: float = 0.8) -> float:
    """The smallest true mean paired difference a two-sided test at level ``alpha`` detects with
    probability ``power``: ``(z_{1 - alpha/2} + z_power) x`` :func:`cluster_standard_error`."""
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * cluster_standard_error(differences, clusters))


def windows_won(a: pd.Series, b: pd.Series) -> tuple[int, int, int]:
    """(windows where ``a``'s mean is above ``b``'s, below, equal); both indexed by window."""
    common = a.index.intersection(b.index)
    diff = a[common] - b[common]
    return int((diff > 0).sum()), int((diff < 0).sum()), int((diff == 0).sum())


# ------------------------------------------------------------------------------------------ runs


def backtest_runs(folders: Sequence[str | Path]) -> list[dict]:
    """The finished runs below ``folders`` (:func:`graphrecall.report.collect_runs`), read once
    per command and shared by the tables below.

    Raises:
        BacktestError: a folder is missing or holds no finished run; a run's files are unreadable.
    """
    from graphrecall.report import ReportError, collect_runs

    try:
        return collect_runs(folders)
    except ReportError as e:
        raise BacktestError(str(e)) from None


def is_rolling(run: dict) -> bool:
    """Whether the run is one window of a backtest (``dataset.split.kind=rolling``)."""
    return ((run["config"].get("dataset") or {}).get("split") or {}).get("kind") == "rolling"


def run_label(run: dict) -> str:
    """A run's model label: its label parts without the keys that only place its window."""
    return " ".join(f"{k}={v}" for k, v in run["parts"].items() if k not in PLACEMENT_KEYS)


def run_world(run: dict) -> str:
    """The run's world: its dataset's seed keys (``dataset.loader.seed``: which synthetic log), as
    ``key=value`` text, read from the config whether or not the run seed moves with it (the fresh
    write-up sets ``seed = dataset.loader.seed``); ``""`` for a dataset without one (MovieLens). The
    run seed repeats a model on the same users and is averaged; a world's users are other people."""
    from graphrecall.report import flatten

    flat = flatten(run["config"].get("dataset") or {}, "dataset.")
    return " ".join(f"{k}={flat[k]}" for k in sorted(flat) if k.rsplit(".", 1)[-1] == "seed" and flat[k] is not None)


def run_period(run: dict) -> tuple[int, int]:
    """A rolling run's test period ``(cut, end)`` in Unix seconds, from its ``metrics.json``.

    Raises:
        BacktestError: the run's metrics.json does not record its window (a run from before issue 26).
    """
    test = (run.get("details") or {}).get("folds", {}).get("test", {})
    if "window_cut" not in test or "window_end" not in test:
        raise BacktestError(f"{Path(run['dir']) / 'metrics.json'}: no details.folds.test.window_cut / window_end "
                            "(rerun it on the current code)")
    return int(test["window_cut"]), int(test["window_end"])


def number_windows(periods: Sequence[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Test periods -> window numbers in time order.

    Raises:
        BacktestError: two distinct periods overlap (mixed designs whose test days intersect: their
            user-windows would not be distinct).
    """
    ordered = sorted(set(periods))
    for (a_cut, a_end), (b_cut, b_end) in zip(ordered, ordered[1:]):
        if b_cut < a_end:
            raise BacktestError(f"the test periods [{a_cut}, {a_end}) and [{b_cut}, {b_end}) overlap: pool backtests "
                                "whose windows are the same or disjoint")
    return {period: k for k, period in enumerate(ordered)}


def window_dates(periods: dict[tuple[int, int], int]) -> str:
    """``window k: [cut, end)`` as dates, one per window, for the table's legend."""
    def day(t: int) -> str:
        return pd.Timestamp(t, unit="s").strftime("%Y-%m-%d")

    return "; ".join(f"{k}: [{day(c)}, {day(e)})" for (c, e), k in sorted(periods.items(), key=lambda kv: kv[1]))


def user_clusters(frame: pd.DataFrame) -> np.ndarray:
    """The bootstrap's clusters [N] of a frame of user-windows: the user, or ``world|user`` where
    the rows come from several worlds (a user belongs to one world's log)."""
    if "world" not in frame.columns or frame["world"].nunique() <= 1:
        return frame["u"].to_numpy()
    return (frame["world"].astype(str) + "|" + frame["u"].astype(str)).to_numpy()


def user_windows(folders: Sequence[str | Path], fold: str = "test", metric: str = "recall@50",
                 slice_: str = "warm", number: bool = True, runs: list[dict] | None = None) -> pd.DataFrame:
    """One row per (label, window, user) of the backtest runs below ``folders``: the user's
    ``metric`` on ``fold`` averaged over the run's seeds, for the users of ``slice_`` (``warm``:
    a click before the window's cut; ``all``). Columns ``label, world, window, u, value, seeds``
    (``world``: :func:`run_world`, ``""`` for one dataset); a window is a test period, numbered in
    time order over these runs, each world's on its own (``number=False``: left as its ``(cut,
    end)``, to number it with other rows by :func:`numbered`). ``runs``: the runs of
    :func:`backtest_runs` when already read (``folders`` is then not read again).

    Raises:
        BacktestError: no run of a rolling split, or a run without its per-user table.
    """
    runs = backtest_runs(folders) if runs is None else runs
    rows = []
    for run in runs:
        if not is_rolling(run):
            continue
        window = run_period(run)
        label = run_label(run)
        world = run_world(run)
        path = Path(run["dir"]) / f"per_user_{fold}.parquet"
        if not path.exists():
            raise BacktestError(f"{run['dir']}: no {path.name} (a run of the rolling split writes one per fold)")
        table = pd.read_parquet(path)
        if metric not in table.columns:
            raise BacktestError(f"{path}: no column {metric!r}; known: {sorted(table.columns)[:12]}...")
        if slice_ == "warm":
            if "warm" not in table.columns:
                raise BacktestError(f"{path}: no 'warm' column (a run from before issue 26); rerun it")
            table = table[table["warm"].astype(bool)]
        table = table[["u", metric]].dropna()
        rows.append(pd.DataFrame({"label": label, "world": world, "window": [window] * len(table),
                                  "u": table["u"].to_numpy(), "value": table[metric].to_numpy(), "rep": repr(run["rep"])}))
    if not rows:
        raise BacktestError(f"no run of a rolling split (dataset.split.kind=rolling) under {list(map(str, folders))}")
    frame = pd.concat(rows, ignore_index=True)
    pooled = frame.groupby(["label", "world", "window", "u"], as_index=False).agg(value=("value", "mean"),
                                                                                 seeds=("rep", "nunique"))
    return numbered(pooled) if number else pooled


def numbered(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its ``window`` test periods ``(cut, end)`` replaced by window numbers in time
    order (:func:`number_windows`), each world's periods numbered on their own (worlds' logs end
    seconds apart, so their periods differ by seconds; window k of each is pooled as window k);
    ``frame.attrs["windows"]`` the legend (:func:`window_dates`, per world where they differ).

    Raises:
        BacktestError: two distinct periods of one world overlap (:func:`number_windows`); worlds with
            different numbers of windows (their k-th windows would not be the same days).
    """
    if "world" not in frame.columns:
        frame = frame.assign(world="")
    legends, parts, counts = {}, [], {}
    for world, rows in frame.groupby("world", sort=True):
        try:
            numbers = number_windows(rows["window"].tolist())
        except BacktestError as e:
            raise BacktestError(f"{world}: {e}" if world else str(e)) from None
        parts.append(rows.assign(window=rows["window"].map(numbers)))
        legends[world], counts[world] = window_dates(numbers), len(numbers)
    if len(set(counts.values())) > 1:
        raise BacktestError(f"the worlds hold different numbers of windows ({counts}): run the same windows in every "
                            "world, or pool each world on its own")
    out = pd.concat(parts).sort_index() if parts else frame
    distinct = set(legends.values())
    out.attrs["windows"] = (next(iter(distinct)) if len(distinct) == 1
                            else "; ".join(f"{w}: {text}" for w, text in legends.items()))
    return out


class SavedGrid(NamedTuple):
    """One rolling run's saved per-user grids (:func:`serving_grids`)."""

    window: tuple[str, tuple[int, int]]  # (world, test period)
    rep: str  # the run's seed / repetition key, averaged over
    val: pd.DataFrame
    test: pd.DataFrame
    val_path: Path
    run: dict


def serving_grids(runs: list[dict], stem: str = "serving_grid") -> dict[str, list[SavedGrid]]:
    """Per label, each rolling run's saved per-user grids, read once per command, for the runs that
    wrote ``<stem>_val.parquet`` and ``<stem>_test.parquet``: ``serving_grid`` (i2i models with a
    serving grid under ``experiment=backtest``) or ``channel_grid`` (i2i models with channels,
    ``eval.channel_grid``)."""
    by_label: dict[str, list[SavedGrid]] = {}
    for run in runs:
        val, test = Path(run["dir"]) / f"{stem}_val.parquet", Path(run["dir"]) / f"{stem}_test.parquet"
        if not is_rolling(run) or not (val.exists() and test.exists()):
            continue
        by_label.setdefault(run_label(run), []).append(SavedGrid((run_world(run), run_period(run)), repr(run["rep"]),
                                                                 pd.read_parquet(val), pd.read_parquet(test), val, run))
    return by_label


def pooled_serving(folders: Sequence[str | Path], metric: str = "recall@50", slice_: str = "warm",
                   number: bool = True, runs: list[dict] | None = None, choose_on: str = "recall@50",
                   scope: str = "pooled", grids: dict[str, list[SavedGrid]] | None = None) -> pd.DataFrame:
    """The serving choice re-taken on validation from the runs' serving grids: on the validation
    windows pooled instead of each window's own, or on another validation metric.

    For every label whose runs wrote ``serving_grid_val.parquet`` and ``serving_grid_test.parquet``
    (i2i models with a serving grid under ``experiment=backtest``): the (beta, min_score,
    prior_weight) setting with the best validation ``choose_on`` over all users (as each window's
    own choice; ties: the first setting in grid order), taken over all the windows' validation users
    together (``scope="pooled"``; the runs of every world and seed of the label too) or in each run on its own (``scope="window"``: what the run
    served when ``choose_on`` is recall@50, the monitor its own choice read, up to ties), then each
    window's test ``metric`` at that setting. Rows as :func:`user_windows`, labelled ``<label>
    serving=pooled-val(<setting>)`` (pooled, on recall@50), ``<label>
    serving=pooled-val-<choose_on>(<setting>)`` (pooled, another metric) or ``<label>
    serving=val-<choose_on>`` (each window's). Epochs stay each window's own choice (for a pooled
    epoch count see :func:`pooled_epochs`: it needs a second backtest). Empty when no run wrote the
    tables. ``number`` and ``runs`` as :func:`user_windows`; ``grids``: :func:`serving_grids` of the
    runs when already read (``folders`` and ``runs`` are then not read).

    Raises:
        BacktestError: a run's grid has no ``choose_on`` or ``metric`` columns; an unknown ``scope``.
    """
    if scope not in ("pooled", "window"):
        raise BacktestError(f"scope {scope!r}: expected 'pooled' or 'window'")
    if grids is None:
        grids = serving_grids(backtest_runs(folders) if runs is None else runs)
    rows = []
    for label, label_runs in grids.items():
        for g in label_runs:
            if not any(c.startswith(f"{choose_on}|") for c in g.val.columns):
                raise BacktestError(f"{g.val_path}: no {choose_on}|<setting> columns to choose on; known metrics: "
                                    f"{sorted({c.split('|')[0] for c in g.val.columns if '|' in c})}")
        columns = [c for c in label_runs[0].val.columns if c.startswith(f"{choose_on}|")]
        if scope == "pooled":
            pooled_val = pd.concat([g.val[columns] for g in label_runs]).mean()
            best = columns[int(np.argmax(pooled_val.to_numpy()))]  # argmax: the first of equal values
            tag = best.split("|", 1)[1]
            name = f"pooled-val({tag})" if choose_on == "recall@50" else f"pooled-val-{choose_on}({tag})"
        else:
            name = f"val-{choose_on}"
        for g in label_runs:
            if scope == "window":  # this run's own grid (its columns, in its grid order)
                own = [c for c in g.val.columns if c.startswith(f"{choose_on}|")]
                tag = own[int(np.argmax(g.val[own].mean().to_numpy()))].split("|", 1)[1]
            rows.append(grid_rows(f"{label} serving={name}", g, f"{metric}|{tag}", slice_))
    return seed_means(rows, number)


def grid_rows(label: str, grid: SavedGrid, column: str, slice_: str) -> pd.DataFrame:
    """One run's user rows (:func:`user_windows`' columns, before the seed mean) of its test grid's
    ``column`` (one setting's metric), for the users of ``slice_``, labelled ``label``.

    Raises:
        BacktestError: the grid has no such column.
    """
    test = grid.test
    if column not in test.columns:
        raise BacktestError(f"{label}: its test grid has no column {column}")
    table = test[test["warm"].astype(bool)] if slice_ == "warm" else test
    values = table[["u", column]].dropna()
    world, window = grid.window
    return pd.DataFrame({"label": label, "world": world, "window": [window] * len(values),
                         "u": values["u"].to_numpy(), "value": values[column].to_numpy(), "rep": grid.rep})


def seed_means(rows: list[pd.DataFrame], number: bool = True) -> pd.DataFrame:
    """:func:`grid_rows` of several runs as :func:`user_windows` rows: each user-window's value
    averaged over the label's seeds (windows numbered unless ``number=False``)."""
    if not rows:
        return pd.DataFrame(columns=["label", "world", "window", "u", "value", "seeds"])
    frame = pd.concat(rows, ignore_index=True)
    frame = frame.groupby(["label", "world", "window", "u"], as_index=False).agg(value=("value", "mean"),
                                                                                  seeds=("rep", "nunique"))
    return numbered(frame) if number else frame


def channel_rules(run: dict) -> dict[str, list[int] | str]:
    """A run's active channels, in config order, with their slot rule: ``auto`` or the grid (one
    value: fixed), from its resolved ``model.triggers.channels``."""
    from graphrecall.recall.channels import parse_channels

    triggers = (run["config"].get("model") or {}).get("triggers") or {}
    return {name: ch.grid for name, ch in parse_channels(triggers.get("channels")).items() if ch.active}


def choose_slots(val: pd.DataFrame, rules: dict[str, list[int] | str], choose_on: str = "recall@50",
                 k: int = 50) -> dict[str, int]:
    """Each channel's slots chosen on a validation channel grid (``channel_grid_val.parquet``, the
    windows' tables concatenated for a pooled choice) as a run chooses them on its one validation
    fold (:meth:`graphrecall.models.i2i.PoolRecall.choose_channel_slots`): in channel order, ``auto``
    takes ``round(k x s)`` with ``s`` the share of all the table's target pairs on the channel's
    contents (``pairs|<channel>`` over ``pairs``, summed over users); a grid takes the count with the
    best mean ``choose_on`` over the table's users, the channels before it at their chosen counts
    and the ones after it off (ties: the first in grid order).

    Raises:
        BacktestError: the table lacks a column the choice reads (a count outside the slot counts it
            covers: ``eval.channel_grid_auto_max``).
    """
    from graphrecall.recall.channels import slots_for_share, slots_tag

    chosen = {name: 0 for name in rules}
    for name, rule in rules.items():
        if rule == "auto":
            if f"pairs|{name}" not in val.columns:
                raise BacktestError(f"the validation channel grid has no pairs|{name} column (channel '{name}')")
            total = float(val["pairs"].sum())
            chosen[name] = slots_for_share(float(val[f"pairs|{name}"].sum()) / total if total else 0.0, k)
            column = f"{choose_on}|{slots_tag(chosen)}"
            if column not in val.columns:
                raise BacktestError(f"channel '{name}': auto takes {chosen[name]} slots on the pooled validation "
                                    f"windows, beyond the slot counts the runs' grids cover (eval.channel_grid_auto_max)")
            continue
        means = []
        for n in rule:
            column = f"{choose_on}|{slots_tag({**chosen, name: n})}"
            if column not in val.columns:
                raise BacktestError(f"the validation channel grid has no column {column}")
            means.append(float(val[column].mean()))
        chosen[name] = rule[int(np.argmax(means))]  # argmax: the first of equal values, in grid order
    return chosen


def pooled_channels(folders: Sequence[str | Path], metric: str = "recall@50", slice_: str = "warm",
                    number: bool = True, runs: list[dict] | None = None, choose_on: str = "recall@50",
                    grids: dict[str, list[SavedGrid]] | None = None,
                    slot_grid: Sequence[int] | None = None) -> pd.DataFrame:
    """The channels' slot counts chosen on the validation windows pooled instead of each window's own.

    For every label whose runs wrote ``channel_grid_val.parquet`` and ``channel_grid_test.parquet``
    (i2i models with channels, ``eval.channel_grid=true``; ``experiment=backtest`` sets it): the
    counts :func:`choose_slots` takes on all its windows' validation tables together (every world
    and seed of the label too), then each window's test ``metric`` at those counts. The main
    channel's serving setting and each channel's score stay each window's own choice (the grids are
    served at them). Rows as :func:`user_windows`, labelled ``<label> channels=pooled-val(<counts>)``
    (``pooled-val-<choose_on>`` on another metric; only for labels with a grid of counts to choose:
    ``auto`` reads target shares, no metric). ``slot_grid``: every channel's count chosen from these
    on the pooled validation ``choose_on`` instead of by the runs' own rule (e.g. ``auto``);
    labelled ``channels=pooled-val-grid(<counts>)``. ``grids``: :func:`serving_grids` with
    ``stem="channel_grid"`` when already read.

    Raises:
        BacktestError: the runs of a label disagree on their channels' rules; see :func:`choose_slots`.
    """
    from graphrecall.recall.channels import slots_tag

    if grids is None:
        grids = serving_grids(backtest_runs(folders) if runs is None else runs, stem="channel_grid")
    rows = []
    for label, label_runs in grids.items():
        rules = [channel_rules(g.run) for g in label_runs]
        if any(r != rules[0] for r in rules):
            raise BacktestError(f"{label}: its runs' channels differ ({rules[0]} vs another run's): pool runs of one "
                                "channel design")
        rule = rules[0] if slot_grid is None else {name: list(slot_grid) for name in rules[0]}
        if choose_on != "recall@50" and all(r == "auto" for r in rule.values()):
            continue  # auto reads the validation target shares, whatever the metric
        chosen = choose_slots(pd.concat([g.val for g in label_runs], ignore_index=True), rule, choose_on)
        tag = slots_tag(chosen)
        kind = "pooled-val" if slot_grid is None else "pooled-val-grid"
        name = f"{kind}({tag})" if choose_on == "recall@50" else f"{kind}-{choose_on}({tag})"
        for g in label_runs:
            rows.append(grid_rows(f"{label} channels={name}", g, f"{metric}|{tag}", slice_))
    return seed_means(rows, number)


def pooled_curve(curves: Sequence[pd.Series], weights: Sequence[float]) -> tuple[np.ndarray, int]:
    """Validation curves (each indexed by 0-based epoch) pooled with ``weights`` (validation users).

    Returns:
        the weighted mean ``[E]`` over the epochs every curve reached (``E`` = the shortest curve's
        length), and the best epoch count (1-based; ties: the fewest epochs).
    Raises:
        ValueError: no curve, a weight <= 0, or a curve that skips an epoch below ``E``.
    """
    if not curves:
        raise ValueError("no validation curve to pool")
    w = np.asarray(weights, dtype=float)
    if (w <= 0).any():
        raise ValueError(f"every run needs validation users to weight its curve, got {w.tolist()}")
    epochs = np.arange(min(int(c.index.max()) for c in curves) + 1)
    values = np.stack([c.reindex(epochs).to_numpy(dtype=float) for c in curves])  # [runs, E]
    if np.isnan(values).any():
        raise ValueError(f"a run's validation log skips an epoch below {len(epochs)} (validation every epoch is "
                         "needed: trainer.check_val_every_n_epoch=1)")
    pooled = w @ values / w.sum()
    return pooled, int(np.argmax(pooled)) + 1  # argmax: the first maximum, the fewest epochs among equals


def pooled_epochs(folders: Sequence[str | Path], runs: list[dict] | None = None) -> tuple[pd.DataFrame, dict[str, dict]]:
    """The refit's epoch count chosen on the validation windows pooled (trainable models).

    Each run's per-epoch validation recall@50 (``csv/metrics.csv``: the monitor that selects its
    own epochs, at that epoch's best serving setting) is weighted by its number of validation users
    (``per_user_val.parquet``); a label's pooled curve at epoch ``e`` is the weighted mean over its
    runs (windows and seeds) of ``e``, for the epochs every run reached (early stopping ends runs at
    different epochs). The choice is the curve's maximum (ties: the fewest epochs). ``runs`` as
    :func:`user_windows`.

    Returns:
        the curves (``label, epochs, pooled_val, runs``) and per label ``{"epochs": chosen,
        "pooled_val": its value, "own": [each run's own choice, in window order]}``; labels of runs
        without a training log (popular, co-click) are left out.
    Raises:
        BacktestError: a run's training log or per-user validation table is unreadable.
    """
    by_label: dict[str, list] = {}
    for run in backtest_runs(folders) if runs is None else runs:
        log_path = Path(run["dir"]) / "csv" / "metrics.csv"
        if not is_rolling(run) or not log_path.exists():
            continue
        label = run_label(run)
        log = pd.read_csv(log_path)
        if "val/recall@50" not in log.columns:
            raise BacktestError(f"{log_path}: no column 'val/recall@50' (the validation monitor)")
        curve = log.dropna(subset=["val/recall@50"]).drop_duplicates("epoch", keep="last").set_index("epoch")
        users_path = Path(run["dir"]) / "per_user_val.parquet"
        if not users_path.exists():
            raise BacktestError(f"{run['dir']}: no per_user_val.parquet (the validation users that weight its curve)")
        users = int(pd.read_parquet(users_path, columns=["recall@50"])["recall@50"].notna().sum())
        by_label.setdefault(label, []).append((run_period(run), curve["val/recall@50"], users))
    curves, choices = [], {}
    for label, label_runs in by_label.items():
        label_runs.sort(key=lambda r: r[0])
        try:
            pooled, best = pooled_curve([c for _, c, _ in label_runs], [n for _, _, n in label_runs])
        except ValueError as e:
            raise BacktestError(f"{label}: {e}") from None
        curves.append(pd.DataFrame({"label": label, "epochs": np.arange(1, len(pooled) + 1), "pooled_val": pooled,
                                    "runs": len(label_runs)}))
        choices[label] = {"epochs": best, "pooled_val": float(pooled[best - 1]),
                          "own": [int(c.to_numpy().argmax()) + 1 for _, c, _ in label_runs]}
    frame = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=["label", "epochs", "pooled_val",
                                                                                      "runs"])
    return frame, choices


def epochs_markdown(curves: pd.DataFrame, choices: dict[str, dict]) -> str:
    """The pooled validation curves and the chosen epoch counts as markdown."""
    lines = ["Epochs chosen on the validation windows pooled (validation recall@50 weighted by each window's "
             "validation users):", "", "| label | pooled val recall@50 by epoch count | chosen | each run's own |",
             "|---|---|---|---|"]
    for label, choice in choices.items():
        curve = curves[curves["label"] == label]
        text = ", ".join(f"{e}: {v:.4f}" for e, v in zip(curve["epochs"], curve["pooled_val"]))
        lines.append(f"| {label} | {text} | **{choice['epochs']}** (`model.refit_epochs={choice['epochs']}`) | "
                     f"{' / '.join(map(str, choice['own']))} |")
    return "\n".join(lines) + "\n"


def per_window_means(frame: pd.DataFrame) -> pd.DataFrame:
    """[label x window] mean over each window's users (seed-averaged)."""
    return frame.pivot_table(index="label", columns="window", values="value", aggfunc="mean")


def pooled_table(frame: pd.DataFrame, num_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per label: per-window means, the pooled mean with its cluster-bootstrap interval,
    user-windows, distinct users (of all worlds), windows."""
    windows = per_window_means(frame)
    out = []
    for label, group in frame.groupby("label", sort=False):
        users = user_clusters(group)
        ci = cluster_bootstrap(group["value"].to_numpy(), users, num_resamples, seed=seed)
        out.append({"label": label, **{f"w{w}": windows.loc[label, w] for w in windows.columns},
                    "pooled": ci.mean, "low": ci.low, "high": ci.high, "user_windows": len(group),
                    "users": len(pd.unique(users)), "windows": group["window"].nunique(),
                    "seeds": int(group["seeds"].max())})
    return pd.DataFrame(out)


def paired(frame: pd.DataFrame, label: str, baseline: str, num_resamples: int = 2000, seed: int = 0) -> dict:
    """``label`` minus ``baseline`` over the user-windows both served: mean, cluster-bootstrap
    interval and p, windows won / lost / tied, the detectable difference (80% power, 5% level)."""
    if "world" not in frame.columns:
        frame = frame.assign(world="")
    a = frame[frame["label"] == label].set_index(["window", "world", "u"])["value"]
    b = frame[frame["label"] == baseline].set_index(["window", "world", "u"])["value"]
    common = a.index.intersection(b.index)
    if len(common) == 0:
        raise BacktestError(f"{label!r} and {baseline!r} share no user-window")
    d = (a[common] - b[common]).to_numpy()
    users = user_clusters(pd.DataFrame({"world": common.get_level_values("world"), "u": common.get_level_values("u")}))
    ci = cluster_bootstrap(d, users, num_resamples, seed=seed)
    shared = pd.DataFrame({"window": common.get_level_values("window"), "a": a[common].to_numpy(),
                           "b": b[common].to_numpy()}).groupby("window").mean()  # per-window means, same users
    won, lost, tied = windows_won(shared["a"], shared["b"])
    return {"label": label, "vs": baseline, "user_windows": len(d), "users": len(np.unique(users)), "mean": ci.mean,
            "low": ci.low, "high": ci.high, "p": ci.p, "won": won, "lost": lost, "tied": tied,
            "detectable": detectable_difference(d, users)}


def find_label(labels: Sequence[str], words: str) -> str:
    """The label equal to ``words``, else the one label that contains every word of ``words``
    (``model=popular``)."""
    if words in labels:
        return words
    hits = [lab for lab in labels if all(w in lab.split() for w in words.split())]
    if len(hits) != 1:
        raise BacktestError(f"--baseline {words!r} matches {len(hits)} label(s) of {list(labels)}: give words that "
                            "pick one")
    return hits[0]


def markdown(table: pd.DataFrame, comparisons: list[dict], metric: str, fold: str, slice_: str) -> str:
    """The two tables as markdown."""
    wcols = [c for c in table.columns if c.startswith("w") and c[1:].isdigit()]
    head = ["label", *[f"window {c[1:]}" for c in wcols], f"pooled {fold} {slice_} {metric} [95% CI]",
            "user-windows", "users", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        cells = [r["label"], *[f"{r[c]:.4f}" if pd.notna(r[c]) else "-" for c in wcols],
                 f"{r['pooled']:.4f} [{r['low']:.4f}, {r['high']:.4f}]", str(r["user_windows"]), str(r["users"]),
                 str(r["seeds"])]
        lines.append("| " + " | ".join(cells) + " |")
    if comparisons:
        lines += ["", f"Paired differences of {metric} over shared user-windows (cluster bootstrap over users):", "",
                  "| label | vs | user-windows | mean difference | 95% interval | p | windows won / lost / tied | "
                  "detectable (80% power) |", "|---|---|---|---|---|---|---|---|"]
        for c in comparisons:
            lines.append(f"| {c['label']} | {c['vs']} | {c['user_windows']} | {c['mean']:+.4f} | "
                         f"[{c['low']:+.4f}, {c['high']:+.4f}] | {c['p']:.3f} | {c['won']} / {c['lost']} / {c['tied']} | "
                         f"{c['detectable']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> str:
    p = argparse.ArgumentParser(prog="python -m graphrecall.backtest", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="sweep folders holding the backtest's runs (any depth)")
    p.add_argument("--baseline", action="append", default=[], help="label words of a baseline (repeatable)")
    p.add_argument("--metric", action="append",
                   help="a per-user metric (repeatable: one table each; default recall@50); serving choices "
                        "(--pooled-serving, --window-serving) are read on validation --choose-on whatever is reported")
    p.add_argument("--fold", default="test", choices=("test", "val"))
    p.add_argument("--slice", dest="slice_", default="warm", choices=("warm", "all"))
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--pooled-serving", action="store_true",
                   help="add rows whose serving grid choice is taken on the windows' validation pooled")
    p.add_argument("--window-serving", action="store_true",
                   help="add rows whose serving grid choice is taken on each window's validation on a --choose-on "
                        "metric other than recall@50 (on recall@50 they are the rows as served: none is added)")
    p.add_argument("--pooled-channels", action="store_true",
                   help="add rows whose channels' slot counts are chosen on the windows' validation pooled "
                        "(runs with eval.channel_grid=true)")
    p.add_argument("--channel-grid", type=lambda text: [int(n) for n in text.split(",")],
                   help="with --pooled-channels: also rows whose every channel's slot count is chosen from these "
                        "(e.g. 0,1,2,3,4) on the pooled validation metric instead of by the runs' own rule")
    p.add_argument("--choose-on", action="append",
                   help="the validation metric the serving rows choose on (repeatable: rows for each; default "
                        "recall@50, the monitor of the runs' own choices)")
    p.add_argument("--pooled-epochs", action="store_true",
                   help="print the refit epoch count chosen on the windows' validation pooled (model.refit_epochs)")
    p.add_argument("--out", type=Path, help="write the markdown here too")
    args = p.parse_args(argv)
    epochs_text = ""
    try:
        runs = backtest_runs(args.folders)  # read once, shared by every table
        if args.pooled_epochs:
            curves, choices = pooled_epochs(args.folders, runs)
            if not choices:
                raise BacktestError(f"--pooled-epochs: no trained model's run (with csv/metrics.csv) under {args.folders}")
            epochs_text = epochs_markdown(curves, choices) + "\n"
        scopes = [name for name, on in (("pooled", args.pooled_serving), ("window", args.window_serving)) if on]
        if (scopes or args.pooled_channels) and args.fold != "test":
            raise BacktestError("--pooled-serving / --window-serving / --pooled-channels score the test folds at a "
                                "validation choice: use --fold test")
        grids = serving_grids(runs) if scopes else {}  # read once, re-chosen per metric below
        channel_grids = serving_grids(runs, stem="channel_grid") if args.pooled_channels else {}
        if args.channel_grid and not args.pooled_channels:
            raise BacktestError("--channel-grid chooses channels' slot counts: give --pooled-channels too")
        if args.pooled_channels and not channel_grids:
            raise BacktestError(f"--pooled-channels: no run under {args.folders} wrote channel_grid_val.parquet and "
                                "channel_grid_test.parquet (i2i models with channels, eval.channel_grid=true)")
        sections = []
        for metric in args.metric or ["recall@50"]:
            frame = user_windows(args.folders, args.fold, metric, args.slice_, number=False, runs=runs)
            for scope in scopes:
                for choose_on in args.choose_on or ["recall@50"]:
                    if scope == "window" and choose_on == "recall@50":
                        continue  # each window's own choice on recall@50: the rows as served
                    frame = pd.concat([frame, pooled_serving(args.folders, metric, args.slice_, number=False,
                                                             choose_on=choose_on, scope=scope, grids=grids)],
                                      ignore_index=True)
            if args.pooled_channels:
                for choose_on in args.choose_on or ["recall@50"]:
                    for slot_grid in [None] + ([args.channel_grid] if args.channel_grid else []):
                        frame = pd.concat([frame, pooled_channels(args.folders, metric, args.slice_, number=False,
                                                                  choose_on=choose_on, grids=channel_grids,
                                                                  slot_grid=slot_grid)], ignore_index=True)
            frame = numbered(frame)
            table = pooled_table(frame, args.resamples)
            labels = table["label"].tolist()
            comparisons = []
            for words in args.baseline:
                base = find_label(labels, words)
                comparisons += [paired(frame, lab, base, args.resamples) for lab in labels if lab != base]
            sections.append(markdown(table, comparisons, metric, args.fold, args.slice_))
    except BacktestError as e:
        print(f"graphrecall.backtest: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    legend = f"Windows (test periods, UTC dates): {frame.attrs['windows']}.\n\n" if frame.attrs.get("windows") else ""
    text = epochs_text + legend + "\n".join(sections)
    if args.out:
        args.out.write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
