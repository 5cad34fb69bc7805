"""Markdown table of experiments/stage2/fixes.sh (issue 14): one row per run directory.

Columns: validation recall@50 (the only number that chose anything), test recall@50 (all users and
the warm slice), distinct styles / spaces @50 (in the list and among the clicked), tail share and
average popularity @50, and pool health of the test-fold pool and content vectors:
distinct contents across all top-10 pool rows, share of those slots held by the 1% most frequent
contents, the most rows one content sits in, mean pairwise cosine of the content vectors.

Usage: python experiments/stage2/fixes_table.py <sweep dir> [<sweep dir> ...]
       python experiments/stage2/fixes_table.py --mean <seed dir> <seed dir> ...   (mean ± std per variant)
       python experiments/stage2/fixes_table.py --paired <base> <seed dir> <seed dir> ...
           (per variant: its value minus the base variant's on the same seed, mean [min, max] over the
           seeds both hold; test recall@50, styles / spaces clicked @50, average popularity @50)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from graphrecall.metrics import mean_pairwise_cosine, pool_health
from graphrecall.recall.pool import CandidatePool


def run_pool_health(run: Path) -> dict[str, float]:
    """Distinct contents in the top-10 rows, top-1% slot share, max rows of one content, mean cosine."""
    out = {"distinct top-10": np.nan, "top-1% share": np.nan, "max rows": np.nan, "mean cos": np.nan}
    path = run / "pool.parquet"
    if path.exists():  # graphrecall.metrics.pool_health (train.py logs it per fold since issue 27)
        frame = pd.read_parquet(path)
        ids = np.union1d(frame["content_id"].unique(), frame["neighbour_id"].unique())
        health = pool_health(CandidatePool.from_frame(frame, ids, str(path)).neighbors)
        out["distinct top-10"] = health["distinct_top10"]
        out["top-1% share"] = health["head_share_top10"]
        out["max rows"] = health["max_rows_top10"]
    vec = run / "content_vectors.npy"
    if vec.exists():
        out["mean cos"] = mean_pairwise_cosine(np.load(vec))
    return out


COLUMNS = [
    ("val R@50", "val/recall@50"),
    ("test R@50", "test/recall@50"),
    ("test warm R@50", "test/warm/recall@50"),
    ("styles@50", "test/distinct_style@50"),
    ("spaces@50", "test/distinct_space@50"),
    ("styles clicked", "test/distinct_style_clicked@50"),
    ("spaces clicked", "test/distinct_space_clicked@50"),
    ("tail share@50", "test/tail_share@50"),
    ("avg pop@50", "test/avg_pop@50"),
    ("epochs", "val/fit/selected_epochs"),
]


def row(run: Path) -> dict[str, object]:
    m = json.loads((run / "metrics.json").read_text())["metrics"]
    out: dict[str, object] = {"run": run.name}
    out.update({label: m.get(key, np.nan) for label, key in COLUMNS})
    out.update(run_pool_health(run))
    weights = {k.split("task_weight/")[1]: v for k, v in m.items() if k.startswith("val/fit/task_weight/")}
    out["task weights (end of training)"] = " ".join(f"{t}={w:.2f}" for t, w in weights.items()) or "—"
    return out


def fmt(x: object) -> str:
    if isinstance(x, float):
        return "—" if np.isnan(x) else f"{x:.4g}"
    return str(x)


PAIRED = ["val R@50", "test R@50", "styles clicked", "spaces clicked", "avg pop@50", "distinct top-10"]


def paired(base: str, dirs: list[str]) -> None:
    """Per variant: (variant - base) on each seed directory holding both, mean [min, max]."""
    frames = []
    for d in dirs:
        runs = sorted(r for r in Path(d).iterdir() if (r / "metrics.json").exists())
        rows = pd.DataFrame([row(r) for r in runs]).set_index("run")
        if base not in rows.index:
            continue
        diff = rows[PAIRED].astype(float) - rows.loc[base, PAIRED].astype(float)
        frames.append(diff.assign(seed=Path(d).name).drop(index=base))
    diffs = pd.concat(frames).reset_index()
    print(f"| run | seeds | " + " | ".join(f"{c} minus {base}" for c in PAIRED) + " |")
    print("|" + "---|" * (len(PAIRED) + 2))
    for name, g in diffs.groupby("run"):
        cells = [f"{g[c].mean():+.4g} [{g[c].min():+.3g}, {g[c].max():+.3g}]" for c in PAIRED]
        print(f"| {name} | {len(g)} | " + " | ".join(cells) + " |")


def main(dirs: list[str]) -> None:
    if dirs[:1] == ["--paired"]:
        paired(dirs[1], dirs[2:])
        return
    mean = dirs[:1] == ["--mean"]
    dirs = dirs[1:] if mean else dirs
    runs = sorted(r for d in dirs for r in Path(d).iterdir() if (r / "metrics.json").exists())
    frame = pd.DataFrame([row(r) for r in runs])
    if mean:  # one row per variant: mean ± std over the seed directories that hold it
        numeric = frame.drop(columns=["task weights (end of training)"])
        groups = numeric.groupby("run")
        agg = groups.mean()
        std = groups.std(ddof=1)
        frame = pd.DataFrame({c: [f"{m:.4g} ± {sd:.2g}" if np.isfinite(sd) else f"{m:.4g}"
                                  for m, sd in zip(agg[c], std[c])] for c in agg.columns}, index=agg.index)
        frame.insert(0, "seeds", groups.size().astype(str))
        frame = frame.reset_index()
    print("| " + " | ".join(frame.columns) + " |")
    print("|" + "---|" * len(frame.columns))
    for _, r in frame.iterrows():
        print("| " + " | ".join(fmt(x) for x in r.to_numpy()) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
