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
# # 02 · Embedding visualisation: interest vs conformity by popularity level
#
# DICE (stage 3, `model=dice`) learns two vectors per content: an **interest** vector and a
# **conformity** vector. The article's figure projects both kinds of vectors *together* into 2-D
# (one t-SNE fit) and colours them by popularity: if the disentanglement works, the two kinds form
# separate clouds and the conformity vectors order by popularity.
#
# Parameters (environment variables):
# - `GRAPHRECALL_NB_DICE_RUN`: a DICE run directory trained with `model.dice.serve=concat` (its
#   `content_vectors.npy` holds interest || conformity). Unset: train a small DICE here first
#   (`GRAPHRECALL_NB_PRESET`, default `tiny`; `GRAPHRECALL_NB_EPOCHS`, default 5).
# - `GRAPHRECALL_NB_OUT`: where the trained run and the figure go (default `outputs/notebooks`).
# - `GRAPHRECALL_NB_POINTS`: contents in the figure (default 3000), `GRAPHRECALL_NB_METHOD`: `tsne` | `pca`.

# %%
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from IPython.display import Image, display
from omegaconf import open_dict
from scipy.stats import spearmanr

from graphrecall import plots
from graphrecall.data.splits import make_folds
from graphrecall.models.popular import popularity_counts

ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "conf" / "train.yaml").exists())
OUT = Path(os.environ.get("GRAPHRECALL_NB_OUT") or ROOT / "outputs" / "notebooks")
RUN_DIR = os.environ.get("GRAPHRECALL_NB_DICE_RUN")
PRESET = os.environ.get("GRAPHRECALL_NB_PRESET", "tiny")
EPOCHS = int(os.environ.get("GRAPHRECALL_NB_EPOCHS", "5"))
NUM_POINTS = int(os.environ.get("GRAPHRECALL_NB_POINTS", "3000"))
METHOD = os.environ.get("GRAPHRECALL_NB_METHOD", "tsne")

# %% [markdown]
# ## A DICE run
#
# Without a run directory, train one with the repository's own entry point (`train.train` on the
# composed Hydra config, exactly what `python train.py model=dice dataset=synthetic ...` runs).

# %%
if not RUN_DIR:
    from graphrecall.search import compose_train, import_train

    overrides = ["model=dice", "dataset=synthetic", f"dataset.loader.preset={PRESET}", "model.dice.serve=concat",
                 f"trainer.max_epochs={EPOCHS}", "trainer.enable_progress_bar=false",
                 "eval.bootstrap.num_resamples=50", f"data_dir={OUT / 'data'}", f"cache_dir={OUT / 'cache'}"]
    cfg = compose_train(overrides)
    with open_dict(cfg):
        cfg.run_dir = str(OUT / f"dice_{PRESET}")
    metrics, _ = import_train().train(cfg)
    RUN_DIR = cfg.run_dir
    print({k: round(v, 4) for k, v in metrics.items() if k in ("test/recall@50", "test_interest_only/recall@50")})
RUN_DIR = Path(RUN_DIR)

# %% [markdown]
# ## Vectors and popularity
#
# The served content vectors of a `serve=concat` run are `[interest | conformity]`. Popularity is
# counted as DICE counts it (distinct users per content in the test fold's training window), from
# the data and split recorded in the run's `config_resolved.json`.

# %%
record = json.loads((RUN_DIR / "config_resolved.json").read_text())
model_cfg = record["model"]
if not model_cfg["_target_"].endswith("DICERecall") or model_cfg["dice"].get("serve") != "concat":
    raise ValueError(f"{RUN_DIR} is not a DICE run with model.dice.serve=concat: its content vectors do not "
                     "hold both the interest and the conformity part")
vectors = np.load(RUN_DIR / "content_vectors.npy")
dim = int(model_cfg["dice"]["embedding_dim"])
assert vectors.shape[1] == 2 * dim, vectors.shape
interest, conformity = vectors[:, :dim], vectors[:, dim:]

dataset = instantiate(record["dataset"]["loader"])
folds = make_folds(dataset, record["dataset"]["split"], seed=int(record["seed"]))
popularity = popularity_counts(folds["test"].train, dataset.num_contents, "users")
assert len(popularity) == len(vectors)
print(f"{len(vectors)} contents, {dim} + {dim} dimensions; popularity max {popularity.max():.0f}, "
      f"{(popularity == 0).mean():.0%} unclicked in the window")

# %% [markdown]
# ## The figure

# %%
fig = plots.interest_conformity_projection(interest, conformity, popularity, num_points=NUM_POINTS,
                                           method=METHOD, seed=0)
display(Image(filename=plots.save_figure(fig, OUT / "interest_conformity.png")))

# %% [markdown]
# ## In numbers
#
# What the picture should show, measured: how much each kind of vector knows about popularity
# (Spearman correlation of the vector norm with popularity), and how separate the two clouds are
# (share of points whose nearest 2-D neighbour is of the same kind; 0.5 = fully mixed).

# %%
proj = plots.project_together(interest, conformity, popularity, num_points=NUM_POINTS, method=METHOD, seed=0)
dist = np.linalg.norm(proj.coords[:, None] - proj.coords[None], axis=-1)
np.fill_diagonal(dist, np.inf)
same_kind = float((proj.kinds[dist.argmin(1)] == proj.kinds).mean())
summary = pd.DataFrame({
    "norm ~ popularity (Spearman)": [spearmanr(np.linalg.norm(v, axis=1), popularity).statistic
                                     for v in (interest, conformity)],
    "mean norm": [np.linalg.norm(v, axis=1).mean() for v in (interest, conformity)],
}, index=["interest", "conformity"])
print(f"nearest 2-D neighbour of the same kind: {same_kind:.1%} of {len(proj.coords)} points")
summary
