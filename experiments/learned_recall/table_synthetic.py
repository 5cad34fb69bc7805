"""Markdown tables of experiments/learned_recall/run_synthetic.sh (synthetic `small`, one run per world).

First table: per variant, mean ± std over the worlds of test recall@50 (all users, warm users),
interest-only recall@50 (the truth-bearing test), coverage@50 and pool health (distinct contents in
the top-10 pool rows, share of those slots held by the 1% most frequent contents).

Second table: paired differences of recall@50 between two variants on the same users. Users are
paired within a world (same data, same targets); the per-user differences of all worlds are pooled
and resampled (percentile bootstrap, 1,000 resamples, seed 0): mean, 95% interval, two-sided p.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from graphrecall.metrics.bootstrap import paired_bootstrap_diff

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import pool_health  # noqa: E402

COLUMNS = [
    ("test all", "test/recall@50"),
    ("test warm", "test/warm/recall@50"),
    ("interest-only", "test_interest_only/recall@50"),
    ("no-refit test all", "test_no_refit/recall@50"),
    ("val", "val/recall@50"),
    ("coverage@50", "test/coverage@50"),
    ("beta", "val/fit/serving/popularity_beta"),
    ("epochs", "val/fit/selected_epochs"),
]
PAIRS = [("sage_next_click", "coclick_quota"), ("sage_next_click", "lightgcn"), ("sage_next_click", "popular"),
         ("sage_next_click", "sage_reconstruction_quota"), ("lightgcn", "coclick_quota")]
TESTS = [("test", "per_user_test.parquet"), ("interest-only", "per_user_test_interest_only.parquet")]


def summary(root: Path) -> None:
    rows = []
    for variant in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = sorted(r for r in variant.iterdir() if (r / "metrics.json").exists())
        if not runs:
            continue
        vals: dict[str, list[float]] = {}
        for r in runs:
            m = json.loads((r / "metrics.json").read_text())["metrics"]
            for label, key in COLUMNS:
                vals.setdefault(label, []).append(m.get(key, float("nan")))
            distinct, top1 = pool_health(r)
            vals.setdefault("pool distinct top-10", []).append(distinct)
            vals.setdefault("top-1% slot share", []).append(top1)
        row = {"variant": variant.name, "worlds": " ".join(r.name.removeprefix("world") for r in runs)}
        for label, v in vals.items():
            a = np.asarray(v, dtype=float)
            if np.isnan(a).all():
                row[label] = "—"
            elif len(a) > 1:
                row[label] = f"{np.nanmean(a):.4f} ± {np.nanstd(a, ddof=1):.4f}"
            else:
                row[label] = f"{a[0]:.4g}"
        rows.append(row)
    frame = pd.DataFrame(rows)
    print("| " + " | ".join(frame.columns) + " |")
    print("|" + "---|" * len(frame.columns))
    for _, r in frame.iterrows():
        print("| " + " | ".join(str(x) for x in r.to_numpy()) + " |")


def paired(root: Path) -> None:
    print()
    print("| variant | vs | test | worlds | users | mean difference of recall@50 | 95% interval | p |")
    print("|---|---|---|---|---|---|---|---|")
    for a, b in PAIRS:
        for test, filename in TESTS:
            diffs_a, diffs_b, worlds = [], [], []
            for run_a in sorted((root / a).glob("world*")):
                run_b = root / b / run_a.name
                if not ((run_a / filename).exists() and (run_b / filename).exists()):
                    continue
                ra = pd.read_parquet(run_a / filename, columns=["u", "recall@50"]).set_index("u")["recall@50"]
                rb = pd.read_parquet(run_b / filename, columns=["u", "recall@50"]).set_index("u")["recall@50"]
                rb = rb.reindex(ra.index)
                diffs_a.append(ra.to_numpy())
                diffs_b.append(rb.to_numpy())
                worlds.append(run_a.name.removeprefix("world"))
            if not worlds:
                continue
            va, vb = np.concatenate(diffs_a), np.concatenate(diffs_b)
            diff, low, high, p = paired_bootstrap_diff(va, vb, num_resamples=1000, seed=0)
            users = int((~np.isnan(va) & ~np.isnan(vb)).sum())
            print(f"| {a} | {b} | {test} | {' '.join(worlds)} | {users} | {diff:+.4f} | [{low:+.4f}, {high:+.4f}] | {p:.3f} |")


if __name__ == "__main__":
    summary(Path(sys.argv[1]))
    paired(Path(sys.argv[1]))
