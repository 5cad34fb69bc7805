"""Aggregate the runs of a sweep into one markdown table.

``python -m graphrecall.report <sweep_dir> [--fold test] [--metrics recall@50 ndcg@50 ...] [--out results.md]
[--plot recall50.png --plot-metric recall@50]``

Every run directory below ``sweep_dir`` that holds a ``metrics.json`` is one row source. Runs are
grouped by the command-line overrides that differ between runs, without ``seed=...`` and
``<group>.seed=...`` (so the seeds of one configuration form one row). A group of several seeds shows ``mean ± std`` over seeds; a single run shows its mean
with the bootstrap 95% interval over users. ``--compare LABEL`` adds the paired bootstrap difference
of every single-seed row against that row, user by user (``per_user_<fold>.parquet``). ``--plot``
draws one metric as bars (mean ± std over seeds, :func:`graphrecall.plots.ablation_bars`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

DEFAULT_METRICS = (
    "recall@20", "recall@50", "warm/recall@50", "ndcg@50", "active/recall@50", "low_activity/recall@50",
    "cold/recall@50",
    "distinct_style@50", "distinct_space@50", "coverage@50", "avg_pop@50", "tail_share@50",
)


def run_overrides(run_dir: Path) -> tuple[list[str], int | None]:
    """(overrides without the seed, seed) from Hydra's ``.hydra/overrides.yaml``."""
    path = run_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(path.read_text()) if path.exists() else []
    seed = None
    kept = []
    for o in overrides or []:
        key, _, value = o.partition("=")
        if key == "seed" or key.endswith(".seed"):  # run seed or data seed: a repetition, not a config
            seed = int(value)
        elif not o.startswith(("hydra.", "experiment=")):
            kept.append(o)
    return kept, seed


def collect_runs(sweep_dir: str | Path) -> list[dict]:
    """One record per run: label, seed, flat metrics and bootstrap summaries."""
    runs = []
    for path in sorted(Path(sweep_dir).rglob("metrics.json")):
        data = json.loads(path.read_text())
        if "metrics" not in data:
            continue
        overrides, seed = run_overrides(path.parent)
        runs.append({"dir": str(path.parent), "overrides": overrides, "seed": seed, **data})
    if not runs:
        raise FileNotFoundError(f"no run with a metrics.json below {sweep_dir}")
    common = set.intersection(*(set(r["overrides"]) for r in runs))
    for r in runs:
        r["label"] = " ".join(o for o in r["overrides"] if o not in common) or "(all runs)"
    return runs


def _ci_of(run: dict, fold: str, metric: str) -> tuple[float, float] | None:
    # a flat metric name is the summary's metric, prefixed by its user slice unless that is "all"
    # (``warm/recall@50``, ``clicks_0/recall@50``, ``warm/clicks_0/recall@50``)
    for row in run.get("summary", {}).get(fold, []):
        name = row["metric"] if row["slice"] == "all" else f"{row['slice']}/{row['metric']}"
        if name == metric:
            return row["ci_low"], row["ci_high"]
    return None


def aggregate(runs: list[dict], fold: str = "test", metrics: tuple[str, ...] = DEFAULT_METRICS,
              extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """The numbers behind :func:`results_table` and the bar plot, one row per (configuration, metric).

    Args:
        runs: :func:`collect_runs` records.
        fold: ``metrics`` are read as ``<fold>/<metric>``.
        metrics: metric names within the fold; ``extra``: full metric keys (``val/recall@50``).

    Returns:
        Columns ``run`` (label, in order of first appearance), ``seeds`` (runs with that label),
        ``metric`` (as named in ``metrics`` / ``extra``), ``key`` (the metric key read), ``n``
        (runs with a non-NaN value), ``mean``, ``std`` (ddof 1; NaN when n < 2), ``ci_low``,
        ``ci_high`` (the bootstrap interval over users of a single run, when it has one; else NaN).
    """
    rows = []
    for label in dict.fromkeys(r["label"] for r in runs):
        group = [r for r in runs if r["label"] == label]
        for m, key in [*((m, f"{fold}/{m}") for m in metrics), *((k, k) for k in extra)]:
            values = np.array([r["metrics"][key] for r in group if key in r["metrics"]], dtype=float)
            values = values[~np.isnan(values)]
            ci = _ci_of(group[0], fold, m) if len(values) == 1 and key == f"{fold}/{m}" else None
            if ci is None or any(v is None or np.isnan(v) for v in ci):
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


def results_table(runs: list[dict], fold: str = "test", metrics: tuple[str, ...] = DEFAULT_METRICS,
                  extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows = configurations (labels), columns = metrics, cells formatted as strings.

    ``metrics`` are read as ``<fold>/<metric>``; ``extra`` are full metric keys (``val/recall@50``,
    ``val/fit/epoch_seconds``) shown as they are. A cell is ``mean ± std`` over several runs, a
    single run's value with its bootstrap interval, or ``-`` (see :func:`aggregate`).
    """
    long = aggregate(runs, fold, metrics, extra)
    rows = []
    for label, group in long.groupby("run", sort=False):
        row = {"run": label, "seeds": int(group["seeds"].iloc[0])}
        row.update({r.metric: _cell(r) for r in group.itertuples(index=False)})
        rows.append(row)
    return pd.DataFrame(rows)


def paired_comparison(
    runs: list[dict], reference: str, fold: str = "test", metric: str = "recall@50", seed: int = 0
) -> dict[str, str]:
    """``label -> "diff [low, high] p=..."`` of ``metric`` against the run labelled ``reference``.

    Only single-run labels are compared (a multi-seed group has no single user-level pairing).
    """
    from graphrecall.metrics import paired_bootstrap_diff

    by_label = {r["label"]: r for r in runs if sum(x["label"] == r["label"] for x in runs) == 1}
    if reference not in by_label:
        raise KeyError(f"--compare '{reference}' is not a single-run label; labels: {sorted(by_label)}")
    load = lambda r: pd.read_parquet(Path(r["dir"]) / f"per_user_{fold}.parquet")[["u", metric]]  # noqa: E731
    ref = load(by_label[reference])
    out = {}
    for label, run in by_label.items():
        joined = load(run).merge(ref, on="u", suffixes=("", "_ref"))
        d, lo, hi, p = paired_bootstrap_diff(joined[metric].to_numpy(), joined[f"{metric}_ref"].to_numpy(), seed=seed)
        out[label] = f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}] p={p:.3f}"
    return out


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub markdown table (no extra dependency)."""
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir")
    parser.add_argument("--fold", default="test", help="test | val | test_interest_only ...")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS))
    parser.add_argument("--out", default=None, help="also write the markdown table to this file")
    parser.add_argument("--extra", nargs="*", default=[], help="full metric keys, e.g. val/recall@50")
    parser.add_argument("--compare", default=None, help="label of a reference run for paired differences")
    parser.add_argument("--compare-metric", default="recall@50")
    parser.add_argument("--plot", default=None, help="also write a bar plot of --plot-metric to this image (.png/.pdf/.svg)")
    parser.add_argument("--plot-metric", default="recall@50",
                        help="a name of --metrics (read in --fold) or of --extra (default recall@50)")
    args = parser.parse_args(argv)
    if args.plot and args.plot_metric not in (*args.metrics, *args.extra):
        parser.error(f"--plot-metric '{args.plot_metric}' is neither in --metrics {args.metrics} nor in --extra {args.extra}")
    runs = collect_runs(args.sweep_dir)
    table = results_table(runs, args.fold, tuple(args.metrics), tuple(args.extra))
    if args.compare:
        diffs = paired_comparison(runs, args.compare, args.fold, args.compare_metric)
        table[f"Δ{args.compare_metric} vs {args.compare} (paired)"] = table["run"].map(diffs).fillna("-")
    md = to_markdown(table)
    header = f"{args.fold} metrics of {len(runs)} run(s) in {args.sweep_dir}"
    text = f"{header}\n\n{md}\n"
    if args.out:
        Path(args.out).write_text(text)
    if args.plot:
        from graphrecall.plots import ablation_bars, save_figure

        long = aggregate(runs, args.fold, tuple(args.metrics), tuple(args.extra))
        name = args.plot_metric if args.plot_metric in args.extra else f"{args.fold}/{args.plot_metric}"
        fig = ablation_bars(long, args.plot_metric, title=f"{name} in {Path(args.sweep_dir).name}", ylabel=name)
        save_figure(fig, args.plot)
    print(text)
    return text


if __name__ == "__main__":
    main()
