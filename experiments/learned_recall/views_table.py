"""M2GRL against single view with the learned recipe (issue 10): recall@50 and diversity.

For two variants of one multirun folder (default ``sage_next_click`` / ``m2grl_next_click``; runs
matched by name, ``world*`` or ``seed*``): mean ± sample std over runs of test recall@50 (all, warm), the
distinct side-info values of the whole list (``distinct_<view>@50``) and of the clicked contents in
it (``distinct_<view>_clicked@50``, the article's diversity measure), and validation recall@50.
Then the paired difference multi − single of each per-user metric, users paired within a run and
pooled over runs, percentile bootstrap (1,000 resamples, seed 0): mean, 95% interval, p. With
``--warm-movielens`` the paired users are MovieLens-100K's warm test users (a rating before the cut).

Usage:
  PYTHONPATH=src python experiments/learned_recall/views_table.py multirun/learned_recall_synthetic
  PYTHONPATH=src python experiments/learned_recall/views_table.py multirun/learned_recall \
      --single sage_next_click_popularity --warm-movielens
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from graphrecall.metrics.bootstrap import paired_bootstrap_diff


def runs(root: Path, variant: str) -> dict[str, Path]:
    return {r.name: r for r in sorted((root / variant).iterdir()) if (r / "metrics.json").exists()}


def metrics(run: Path) -> dict[str, float]:
    return json.loads((run / "metrics.json").read_text())["metrics"]


def diversity_columns(run: Path) -> list[str]:
    cols = pd.read_parquet(run / "per_user_test.parquet").columns
    return sorted(c for c in cols if c.startswith("distinct_") and c.endswith("@50"))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--single", default="sage_next_click")
    p.add_argument("--multi", default="m2grl_next_click")
    p.add_argument("--warm-movielens", action="store_true")
    args = p.parse_args()
    root = Path(args.root)
    single, multi = runs(root, args.single), runs(root, args.multi)
    common = [name for name in single if name in multi]
    if not common:
        raise SystemExit(f"no run of {args.single} and {args.multi} with the same name under {root}")
    per_user_cols = ["recall@50", *diversity_columns(single[common[0]])]
    keys = ["test/recall@50", "test/warm/recall@50", *(f"test/{c}" for c in per_user_cols[1:]), "val/recall@50"]
    print(f"Runs: {' '.join(common)}\n")
    print("| variant | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, found in ((args.single, single), (args.multi, multi)):
        ms = [metrics(found[r]) for r in common]
        cells = []
        for key in keys:
            vals = np.array([m.get(key, np.nan) for m in ms], dtype=float)
            cells.append(f"{np.nanmean(vals):.4f} ± {np.nanstd(vals, ddof=1):.4f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    warm = None
    if args.warm_movielens:
        from table import warm_users  # experiments/learned_recall/table.py

        warm = set(warm_users().tolist())
    print(f"\nPaired differences, {args.multi} − {args.single} "
          f"({'warm test users' if warm is not None else 'all test users'}, pooled over runs):\n")
    print("| metric | users | mean difference | 95% interval | p |")
    print("|---|---|---|---|---|")
    for col in per_user_cols:
        a, b = [], []
        for r in common:
            ua = pd.read_parquet(multi[r] / "per_user_test.parquet", columns=["u", col]).set_index("u")[col]
            ub = pd.read_parquet(single[r] / "per_user_test.parquet", columns=["u", col]).set_index("u")[col]
            if warm is not None:
                ua = ua[ua.index.isin(warm)]
            a.append(ua.to_numpy())
            b.append(ub.reindex(ua.index).to_numpy())
        va, vb = np.concatenate(a), np.concatenate(b)
        diff, low, high, pval = paired_bootstrap_diff(va, vb, num_resamples=1000, seed=0)
        users = int((~np.isnan(va) & ~np.isnan(vb)).sum())
        print(f"| {col} | {users} | {diff:+.4f} | [{low:+.4f}, {high:+.4f}] | {pval:.3f} |")


if __name__ == "__main__":
    main()
