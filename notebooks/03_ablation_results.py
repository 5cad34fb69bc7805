# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Ablation results from the run directories of a sweep
#
# Every job of `python train.py -m experiment=<name> ...` leaves a run directory with its
# `metrics.json` and `config_resolved.json`. `graphrecall.report` groups the runs by the resolved
# choices that differ (model, dataset, aggregator / loss where the model reads them, any other key
# that differs; seeds pooled), and this notebook shows the table, the per-seed values and the bar
# plot (the same numbers as `python -m graphrecall.report <sweep> --out <table>.md`).
#
# Parameters (environment variables): `GRAPHRECALL_NB_SWEEP` (a sweep folder; default: the newest
# folder under `multirun/*/` with finished runs), `GRAPHRECALL_NB_FOLD` (`test`), `GRAPHRECALL_NB_METRIC`
# (`recall@50`), `GRAPHRECALL_NB_OUT` (where the figure goes; default `outputs/notebooks`).

# %%
import os
from pathlib import Path

import pandas as pd
from IPython.display import Image, Markdown, display

from graphrecall import plots, report

ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "conf" / "train.yaml").exists())
OUT = Path(os.environ.get("GRAPHRECALL_NB_OUT") or ROOT / "outputs" / "notebooks")
FOLD = os.environ.get("GRAPHRECALL_NB_FOLD", "test")
METRIC = os.environ.get("GRAPHRECALL_NB_METRIC", "recall@50")

SWEEP = os.environ.get("GRAPHRECALL_NB_SWEEP")
if not SWEEP:
    finished = sorted((p for p in (ROOT / "multirun").glob("*/*") if any(p.rglob("metrics.json"))),
                      key=lambda p: p.stat().st_mtime)
    if not finished:
        raise FileNotFoundError("no sweep with finished runs under multirun/: run `python train.py -m "
                                "experiment=<name>` first or set GRAPHRECALL_NB_SWEEP=<sweep folder>")
    SWEEP = finished[-1]
SWEEP = Path(SWEEP)
runs = report.collect_runs(SWEEP)
print(f"{len(runs)} finished runs in {SWEEP}")

# %% [markdown]
# ## The table
#
# `mean ± std` over seeds; a single run shows its mean over users with the bootstrap 95% interval.

# %%
metrics = tuple(dict.fromkeys([METRIC, *report.DEFAULT_METRICS]))
table = report.results_table(runs, FOLD, metrics)
display(Markdown(report.to_markdown(table)))

# %% [markdown]
# ## Per seed
#
# The values behind each mean, to see whether a difference is larger than the spread between seeds.

# %%
long = report.aggregate(runs, FOLD, metrics)
key = f"{FOLD}/{METRIC}"
per_seed = (pd.DataFrame([{"run": r["label"], "seed": r["seed"], METRIC: r["metrics"].get(key)} for r in runs])
            .pivot_table(index="run", columns="seed", values=METRIC, sort=False))
per_seed

# %% [markdown]
# ## The bar plot

# %%
fig = plots.ablation_bars(long, METRIC, title=f"{key} in {SWEEP.name}", ylabel=key)
path = plots.save_figure(fig, OUT / f"ablation_{METRIC.replace('@', '_at_').replace('/', '_')}.png")
display(Image(filename=path))
