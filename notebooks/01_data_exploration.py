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
# # 01 · Data exploration: popularity long tail, user activity, user groups
#
# The synthetic home feed (`graphrecall.data.synthetic.generate_home_feed`) is built to look like the
# article's click logs: a steep popularity long tail, many users with few or no clicks, and user groups
# (age band x gender x traffic source) that DICE (stage 3) trains on. This notebook measures those
# three properties on one generated world.
#
# Parameters (environment variables, so that the test suite can run it on tiny data):
# `GRAPHRECALL_NB_PRESET` (`tiny` | `small` | `medium`; default `small`), `GRAPHRECALL_NB_SEED` (data seed, 0).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from omegaconf import OmegaConf

from graphrecall.data.synthetic import generate_home_feed
from graphrecall.graphs.views import user_groups

PRESET = os.environ.get("GRAPHRECALL_NB_PRESET", "small")
SEED = int(os.environ.get("GRAPHRECALL_NB_SEED", "0"))
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "conf" / "train.yaml").exists())

dataset = generate_home_feed(PRESET, seed=SEED)
pd.Series(dataset.summary())

# %% [markdown]
# ## Popularity long tail
#
# Popularity of a content = the number of distinct users who clicked it (what the popularity baseline
# and DICE's negative sampler use). The "head" is the 20% most popular contents, the definition behind
# the `tail_share@K` metric.

# %%
clicks = dataset.clicks
users_per_content = (clicks.drop_duplicates(["user_id", "content_id"]).groupby("content_id").size()
                     .reindex(dataset.contents["content_id"], fill_value=0))
popularity = np.sort(users_per_content.to_numpy())[::-1]
clicks_per_content = np.sort(clicks.groupby("content_id").size()
                             .reindex(dataset.contents["content_id"], fill_value=0).to_numpy())[::-1]
head = int(np.ceil(0.2 * len(clicks_per_content)))
head_share = clicks_per_content[:head].sum() / clicks_per_content.sum()
never_clicked = int((popularity == 0).sum())
assert np.isclose(clicks_per_content.sum(), len(clicks))
print(f"{len(popularity)} contents; the top 20% ({head}) receive {head_share:.1%} of the clicks; "
      f"{never_clicked} contents were never clicked")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
ranks = np.arange(1, len(popularity) + 1)
ax1.loglog(ranks[popularity > 0], popularity[popularity > 0], ".", ms=3)
ax1.set(xlabel="content rank", ylabel="distinct users", title="popularity by rank (log-log)")
lorenz = np.concatenate([[0], np.cumsum(clicks_per_content) / clicks_per_content.sum()])
ax2.plot(np.linspace(0, 1, len(lorenz)), lorenz)
ax2.axvline(0.2, color="0.6", ls="--")
ax2.set(xlabel="share of contents (most popular first)", ylabel="share of clicks",
        title=f"top 20% of contents: {head_share:.0%} of clicks")
plt.show()

# %% [markdown]
# ## User activity
#
# Clicks per user, users without any click included (the generator gives ~30% of users no click and
# ~40% one to five): the low-activity and cold users are where popularity and groups have to help.

# %%
per_user = clicks.groupby("user_id").size().reindex(dataset.users["user_id"], fill_value=0)
buckets = pd.cut(per_user, bins=[-1, 0, 5, 20, np.inf], labels=["0", "1-5", "6-20", ">20"])
activity = buckets.value_counts(sort=False).rename("users").to_frame()
activity["share"] = activity["users"] / activity["users"].sum()
assert activity["users"].sum() == len(dataset.users)
display(activity)

fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
ax.hist(per_user[per_user > 0], bins=np.logspace(0, np.log10(per_user.max() + 1), 30))
ax.set(xscale="log", xlabel="clicks per user (users with clicks)", ylabel="users", title="user activity")
plt.show()

# %% [markdown]
# ## User groups
#
# The group key of DICE and the popular-by-group baseline (`dataset.groups.fields` in
# `conf/dataset/synthetic.yaml`), built with `graphrecall.graphs.views.user_groups`.

# %%
fields = list(OmegaConf.load(ROOT / "conf" / "dataset" / "synthetic.yaml").groups.fields)
codes, keys = user_groups(dataset.users, fields)
groups = pd.DataFrame({"group": keys[codes], "clicks": per_user.to_numpy()})
sizes = (groups.groupby("group").agg(users=("clicks", "size"), clicks=("clicks", "sum"),
                                     users_with_clicks=("clicks", lambda c: int((c > 0).sum())))
         .sort_values("users", ascending=False))
assert sizes["users"].sum() == len(dataset.users) and len(sizes) == len(keys)
print(f"{len(sizes)} groups of {' x '.join(fields)}; users per group: median {sizes['users'].median():.0f}, "
      f"min {sizes['users'].min()}, max {sizes['users'].max()}")
display(sizes.head(10))

fig, ax = plt.subplots(figsize=(10, 3.2), layout="constrained")
ax.bar(np.arange(len(sizes)), sizes["users"], label="users")
ax.bar(np.arange(len(sizes)), sizes["users_with_clicks"], label="users with clicks")
ax.set(xlabel="group (largest first)", ylabel="users", title="user-group sizes")
ax.legend()
plt.show()
