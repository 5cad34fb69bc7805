"""Markdown tables of experiments/learned_recall/run_synthetic.sh (synthetic `small`, one run per world).

First table: per variant, mean ± std over the worlds of test recall@50 (all users, warm users),
interest-only recall@50 (the truth-bearing test), coverage@50 and pool health (distinct contents in
the top-10 pool rows, share of those slots held by the 1% most frequent contents).

Second table: paired differences of recall@50 between two variants on the same users. Users are
paired within a world (same data, same targets); the per-user differences of all worlds are pooled
and resampled (percentile bootstrap, 1,000 resamples, seed 0): mean, 95% interval, two-sided p.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from graphrecall.metrics.bootstrap import paired_bootstrap_diff

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import summary  # noqa: E402

COLUMNS = [
    ("test all", "test/recall@50"),
    ("test warm", "test/warm/recall@50"),
    ("interest-only", "test_interest_only/recall@50"),
    ("no-refit test all", "test_no_refit/recall@50"),
    ("val", "val/recall@50"),
    ("coverage@50", "test/coverage@50"),
    ("beta", "val/fit/serving/popularity_beta"),
    ("min_score", "val/fit/serving/min_score"),
    ("epochs", "val/fit/selected_epochs"),
]
PAIRS = [("sage_next_click", "coclick_quota"), ("sage_next_click", "lightgcn"), ("sage_next_click", "popular"),
         ("sage_next_click", "sage_reconstruction_quota"), ("lightgcn", "coclick_quota"),
         ("sage_next_click_confident", "coclick_quota"), ("sage_next_click_confident", "lightgcn"),
         ("sage_next_click_confident", "popular"), ("sage_next_click_confident", "sage_next_click"),
         ("m2grl_next_click_confident", "coclick_quota"), ("m2grl_next_click_confident", "lightgcn")]
TESTS = [("test", "per_user_test.parquet"), ("interest-only", "per_user_test_interest_only.parquet")]


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
    summary(Path(sys.argv[1]), COLUMNS, "worlds", lambda runs: " ".join(r.name.removeprefix("world") for r in runs))
    paired(Path(sys.argv[1]))
