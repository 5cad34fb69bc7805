"""Markdown tables of experiments/learned_recall/run.sh: one row per variant, mean ± std over seeds,
then paired bootstrap differences against the baselines.

Headline: test recall@50 on warm users (at least one click before the cut); cold users apart.
Pool health (i2i variants, from each run's pool.parquet): distinct contents across all top-10
pool rows, share of those top-10 slots held by the 1% most frequent contents.

Paired comparison: for every warm test user, the variant's recall@50 minus the baseline's, averaged
over the seeds both have (the baselines are deterministic), then a percentile bootstrap over the
users (1,000 resamples, seed 0) of the mean difference: mean, 95% interval, two-sided p-value.
Warm users: those with a rating before the cut of MovieLens-100K's temporal split (recomputed here
from the data, as run.sh splits it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from graphrecall.metrics.bootstrap import paired_bootstrap_diff

BASELINES = ("coclick_quota", "popular")


def pool_health(run: Path) -> tuple[float, float]:
    """(distinct contents across the served top-10 pool rows, share of those slots held by the 1%
    most frequent); with a confidence cut-off (``recall.min_score``) the rows as served: their
    entries at or above the chosen cut-off."""
    path = run / "pool.parquet"
    if not path.exists():
        return float("nan"), float("nan")
    pool = pd.read_parquet(path)
    serving = run / "serving.json"
    min_score = json.loads(serving.read_text()).get("min_score") if serving.exists() else None
    if min_score is not None:
        pool = pool[pool["score"] >= min_score]
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
    ("val warm recall@50", "val/warm/recall@50"),
    ("coverage@50", "test/coverage@50"),
    ("beta", "val/fit/serving/popularity_beta"),
    ("min_score", "val/fit/serving/min_score"),
    ("epochs", "val/fit/selected_epochs"),
]


def warm_users() -> np.ndarray:
    """Rows of MovieLens-100K users with a rating before the test cut (temporal split, as run.sh)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from graphrecall.data.splits import make_folds

    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=["dataset=movielens100k"])
    dataset = instantiate(cfg.dataset.loader)
    fold = make_folds(dataset, OmegaConf.to_container(cfg.dataset.split, resolve=True), seed=0)["test"]
    return np.unique(fold.history["u"].to_numpy())


def per_user_recall(variant: Path, warm: np.ndarray) -> pd.Series | None:
    """Warm users' test recall@50 averaged over the variant's seeds (index: user row)."""
    frames = [pd.read_parquet(r / "per_user_test.parquet", columns=["u", "recall@50"]).set_index("u")["recall@50"]
              for r in sorted(variant.iterdir()) if (r / "per_user_test.parquet").exists()]
    if not frames:
        return None
    mean = pd.concat(frames, axis=1).mean(axis=1)
    return mean[mean.index.isin(warm)]


def paired_table(root: Path, baselines: tuple[str, ...] = BASELINES) -> None:
    warm = warm_users()
    series = {v.name: per_user_recall(v, warm) for v in sorted(p for p in root.iterdir() if p.is_dir())}
    series = {k: v for k, v in series.items() if v is not None}
    print()
    print("| variant | vs | warm users | mean difference of test recall@50 | 95% interval | p |")
    print("|---|---|---|---|---|---|")
    for name, s in series.items():
        for base in baselines:
            if name == base or base not in series:
                continue
            b = series[base].reindex(s.index)
            diff, low, high, p = paired_bootstrap_diff(s.to_numpy(), b.to_numpy(), num_resamples=1000, seed=0)
            print(f"| {name} | {base} | {len(s)} | {diff:+.4f} | [{low:+.4f}, {high:+.4f}] | {p:.3f} |")


def summary(root: Path, columns: list[tuple[str, str]], runs_label: str, runs_value) -> None:
    """Print one markdown row per variant folder of ``root``: ``runs_label`` = ``runs_value(runs)``,
    then each ``(label, metrics key)`` of ``columns`` and the pool health, mean ± std over the
    variant's finished runs (one run: its value; no value: a dash)."""
    rows = []
    for variant in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = sorted(r for r in variant.iterdir() if (r / "metrics.json").exists())
        if not runs:
            continue
        vals: dict[str, list[float]] = {}
        for r in runs:
            m = json.loads((r / "metrics.json").read_text())["metrics"]
            for label, key in columns:
                vals.setdefault(label, []).append(m.get(key, float("nan")))
            distinct, top1 = pool_health(r)
            vals.setdefault("pool distinct top-10", []).append(distinct)
            vals.setdefault("top-1% slot share", []).append(top1)
        row = {"variant": variant.name, runs_label: runs_value(runs)}
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


if __name__ == "__main__":  # table.py <root> [baseline variant ...]
    summary(Path(sys.argv[1]), COLUMNS, "seeds", len)
    paired_table(Path(sys.argv[1]), tuple(sys.argv[2:]) or BASELINES)
