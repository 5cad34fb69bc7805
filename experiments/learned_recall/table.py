"""Markdown table of experiments/learned_recall/run.sh: one row per variant, mean ± std over seeds.

Headline: test recall@50 on warm users (at least one click before the cut); cold users apart.
Pool health (i2i variants, from each run's pool.parquet): distinct contents across all top-10
pool rows, share of those top-10 slots held by the 1% most frequent contents.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def pool_health(run: Path) -> tuple[float, float]:
    path = run / "pool.parquet"
    if not path.exists():
        return float("nan"), float("nan")
    pool = pd.read_parquet(path)
    top10 = pool[pool["rank"] <= 10]["neighbour_id"]
    counts = top10.value_counts()
    n_top = max(1, int(np.ceil(0.01 * pool["content_id"].nunique())))
    return float(counts.size), float(counts.iloc[:n_top].sum() / max(len(top10), 1))


COLUMNS = [
    ("test warm recall@50", "test/warm/recall@50"),
    ("test cold recall@50", "test/cold/recall@50"),
    ("test all recall@50", "test/recall@50"),
    ("no-refit warm recall@50", "test_no_refit/warm/recall@50"),
    ("val recall@50", "val/recall@50"),
    ("coverage@50", "test/coverage@50"),
    ("beta", "val/fit/serving/popularity_beta"),
    ("epochs", "val/fit/selected_epochs"),
]


def main(root: str) -> None:
    rows = []
    for variant in sorted(p for p in Path(root).iterdir() if p.is_dir()):
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
        row = {"variant": variant.name, "seeds": len(runs)}
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
    header = "| " + " | ".join(frame.columns) + " |"
    print(header)
    print("|" + "---|" * len(frame.columns))
    for _, r in frame.iterrows():
        print("| " + " | ".join(str(x) for x in r.to_numpy()) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
