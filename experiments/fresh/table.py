"""Markdown tables of experiments/fresh/run.sh (synthetic `fresh`, one run per world).

1. Preset statistics: test targets per content slice (the target content's training-window clicks)
   per world.
2. Per variant, mean ± std over the worlds: val recall@50 (what selection reads), test recall@50
   overall, warm users, per content slice, new_share@50.
3. Paired differences against co-click (then of each cold-start and channel variant against its
   base): the mean over worlds of each world's difference, with its
   min and max; then a percentile bootstrap (1,000 resamples, seed 0) of the per-user differences
   pooled over the worlds (users are paired within a world): mean, 95% interval, two-sided p.
4. Where the overall gain comes from: recall@50 of a user is the sum over slices of
   ``recall_S(u) * |T_u ∩ S| / |T_u|``; the table splits each variant's overall difference to
   co-click into those slice terms (mean over worlds), so their sum is the overall difference.

Usage: PYTHONPATH=src python experiments/fresh/table.py multirun/fresh
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from graphrecall.metrics.bootstrap import paired_bootstrap_diff

SLICES = ["clicks_0", "clicks_1-2", "clicks_3-9", "clicks_10+", "after_cut"]
BASELINE = "coclick"
COLD_PAIRS = [("sage_cold05", "sage"), ("sage_next_click_cold05", "sage_next_click"), ("m2grl_cold05", "m2grl"),
              ("sage_next_click_cold05_pop", "sage_next_click")]
COLUMNS = [("val all", "val/recall@50"), ("test all", "test/recall@50"), ("test warm", "test/warm/recall@50"),
           *((f"test {s.removeprefix('clicks_')}", f"test/{s}/recall@50") for s in SLICES),
           ("new_share@50", "test/new_share@50"), ("new slots", "val/fit/serving/channel/new/slots"),
           ("new slots used", "test/mean_channel_new"), ("rare slots", "val/fit/serving/channel/rare/slots"),
           ("rare slots used", "test/mean_channel_rare"), ("new: worlds on side_info", "val/fit/serving/channel/new/score_index")]
CHANNEL_PAIRS = [("sage_next_click_channels", "sage_next_click"), ("sage_next_click_channels1", "sage_next_click"),
                 ("sage_next_click_channels1_side", "sage_next_click"),
                 ("sage_next_click_channels_side", "sage_next_click"),
                 ("sage_next_click_channels_side", "sage_next_click_channels"),
                 ("sage_next_click_cold05_channels", "sage_next_click_cold05"),
                 ("sage_next_click_cold05_grid", "sage_next_click_cold05"), ("coclick_channels", "coclick")]
PAIRED = [("all", "recall@50"), *((s.removeprefix("clicks_"), f"{s}/recall@50") for s in SLICES)]


def metrics(run: Path) -> dict[str, float]:
    return json.loads((run / "metrics.json").read_text())["metrics"]


def runs(root: Path, variant: str) -> dict[str, Path]:
    return {r.name: r for r in sorted((root / variant).glob("world*")) if (r / "metrics.json").exists()}


@lru_cache(maxsize=None)
def slice_shares(world: str) -> pd.DataFrame:
    """Per test user (index ``u``): the share of the user's targets in each content slice."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from graphrecall.data.splits import make_folds
    from graphrecall.evaluation import content_slices

    w = int(world.removeprefix("world"))
    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=["dataset=synthetic", "dataset.loader.preset=fresh",
                                          f"dataset.loader.seed={w}", f"seed={w}"])
    dataset = instantiate(cfg.dataset.loader)
    fold = make_folds(dataset, OmegaConf.to_container(cfg.dataset.split, resolve=True), seed=w)["test"]
    masks = content_slices(fold, dataset)
    targets = fold.targets.drop_duplicates(["u", "i"])
    items = targets["i"].to_numpy()
    frame = pd.DataFrame({s: masks[s][items].astype(float) for s in SLICES}, index=targets["u"].to_numpy())
    return frame.groupby(level=0).mean()


def preset_table(root: Path) -> None:
    print("| world | test targets | " + " | ".join(s.removeprefix("clicks_") for s in SLICES) + " |")
    print("|---|---|" + "---|" * len(SLICES))
    for world, run in runs(root, BASELINE).items():
        m = metrics(run)
        counts = [m[f"test/content_slice/{s}/targets"] for s in SLICES]
        total = sum(counts)
        cells = " | ".join(f"{c:.0f} ({c / total:.1%})" for c in counts)
        print(f"| {world.removeprefix('world')} | {total:.0f} | {cells} |")


def summary_table(root: Path, variants: list[str]) -> None:
    print("| variant | worlds | " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for v in variants:
        found = runs(root, v)
        ms = [metrics(r) for r in found.values()]
        cells = []
        for _, key in COLUMNS:
            vals = np.array([m.get(key, np.nan) for m in ms], dtype=float)
            cells.append(f"{np.nanmean(vals):.4f} ± {np.nanstd(vals):.4f}" if len(vals) > 1 else f"{vals[0]:.4f}")
        print(f"| {v} | {' '.join(w.removeprefix('world') for w in found)} | {' | '.join(cells)} |")


def per_user(run: Path, column: str) -> pd.Series:
    return pd.read_parquet(run / "per_user_test.parquet", columns=["u", column]).set_index("u")[column]


def paired_table(root: Path, pairs: list[tuple[str, str]]) -> None:
    print("| variant | − baseline | slice | worlds | per-world mean difference [min, max] | pooled users | "
          "bootstrap mean [95% interval] | p |")
    print("|---|---|---|---|---|---|---|---|")
    for v, baseline in pairs:
        base = runs(root, baseline)
        found = {w: r for w, r in runs(root, v).items() if w in base}
        if not found:
            continue
        for name, column in [("warm (all)", "warm/recall@50")] + PAIRED:
            key = f"test/{column}"
            per_world = [metrics(r)[key] - metrics(base[w])[key] for w, r in found.items()]
            line = (f"| {v} | {baseline} | {name} | {' '.join(w.removeprefix('world') for w in found)} | "
                    f"{np.mean(per_world):+.4f} [{min(per_world):+.4f}, {max(per_world):+.4f}] |")
            if column.startswith("warm/"):  # per-user files hold every user; warm is read from metrics.json
                print(line + " - | - | - |")
                continue
            a, b = [], []
            for w, r in found.items():
                ra = per_user(r, column)
                a.append(ra.to_numpy())
                b.append(per_user(base[w], column).reindex(ra.index).to_numpy())
            va, vb = np.concatenate(a), np.concatenate(b)
            diff, low, high, p = paired_bootstrap_diff(va, vb, num_resamples=1000, seed=0)
            users = int((~np.isnan(va) & ~np.isnan(vb)).sum())
            print(line + f" {users} | {diff:+.4f} [{low:+.4f}, {high:+.4f}] | {p:.3f} |")


def decomposition_table(root: Path, variants: list[str]) -> None:
    print("| variant − co-click | worlds | overall | " + " | ".join(s.removeprefix("clicks_") for s in SLICES) + " |")
    print("|---|---|---|" + "---|" * len(SLICES))
    base = runs(root, BASELINE)
    for v in variants:
        if v == BASELINE:
            continue
        found = {w: r for w, r in runs(root, v).items() if w in base}
        if not found:
            continue
        terms = {s: [] for s in ["all", *SLICES]}
        for w, r in found.items():
            shares = slice_shares(w)
            overall = []
            for s in SLICES:
                d = (per_user(r, f"{s}/recall@50") - per_user(base[w], f"{s}/recall@50")).fillna(0.0)
                term = float((d * shares[s].reindex(d.index).fillna(0.0)).mean())
                terms[s].append(term)
                overall.append(term)
            terms["all"].append(sum(overall))
        cells = " | ".join(f"{np.mean(terms[s]):+.4f}" for s in ["all", *SLICES])
        print(f"| {v} | {' '.join(w.removeprefix('world') for w in found)} | {cells} |")


if __name__ == "__main__":
    root = Path(sys.argv[1])
    variants = [p.name for p in sorted(root.iterdir()) if p.is_dir() and runs(root, p.name)]
    variants = [BASELINE, *[v for v in variants if v != BASELINE]] if BASELINE in variants else variants
    print("Test targets per content slice (training-window clicks of the target content):\n")
    preset_table(root)
    print("\nRecall@50, mean ± std over worlds:\n")
    summary_table(root, variants)
    print("\nPaired differences to co-click (test recall@50):\n")
    paired_table(root, [(v, BASELINE) for v in variants if v != BASELINE])
    print("\nPaired differences of the cold-start simulation (test recall@50):\n")
    paired_table(root, [(v, base) for v, base in COLD_PAIRS if v in variants and base in variants])
    print("\nPaired differences of the recall channels (test recall@50):\n")
    paired_table(root, [(v, base) for v, base in CHANNEL_PAIRS if v in variants and base in variants])
    print("\nThe overall difference to co-click split by the slice of the targets (sums to the overall):\n")
    decomposition_table(root, variants)
