"""u2i baselines (models/u2i.py, mf.py, lightgcn.py) on a hand-made two-group world.

Six groups of 20 contents (group g = contents 20g..20g+19); each of 15 users per group clicks 10
random contents of their own group, and one more in-group click per user is held out as the val
target. A user then has 10 unseen in-group and 100 unseen out-group contents (so val recall@50 is
far from 1 for random vectors and checkpointing has something to select); user ``c`` has no click.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from graphrecall.data.schema import FeedDataset, build_dataset
from graphrecall.data.splits import DAY, Fold, encode_clicks
from graphrecall.models.lightgcn import LightGCNRecall, bipartite_edge_index
from graphrecall.models.mf import MFRecall
from graphrecall.models.popular import popularity_counts, ranking_from_scores
from graphrecall.models.u2i import sample_negatives_uniform, top_k_by_score

T0 = int(pd.Timestamp("2024-03-01", tz="UTC").timestamp())
GROUPS, PER_GROUP, USERS_PER_GROUP, CLICKS = "abcdef", 20, 15, 10
TRAINER = {"max_epochs": 15, "accelerator": "cpu", "devices": 1, "deterministic": True, "num_sanity_val_steps": 0,
           "enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 1,
           "early_stopping_patience": 0}
OPTIM = {"lr": 0.02, "lambda_reg": 1e-4, "batch_size": 64}


def group_of(content: np.ndarray) -> np.ndarray:
    return np.asarray(content) // PER_GROUP


def world() -> tuple[FeedDataset, Fold]:
    rng = np.random.default_rng(0)
    log, held_out = [], []
    for g, name in enumerate(GROUPS):
        for n in range(USERS_PER_GROUP):
            picks = g * PER_GROUP + rng.choice(PER_GROUP, CLICKS + 1, replace=False)
            log += [(f"{name}{n}", f"c{i}", T0 + n * 60 + r) for r, i in enumerate(picks[:-1])]
            held_out.append((f"{name}{n}", f"c{picks[-1]}", T0 + DAY))
    columns = ["user_id", "content_id", "timestamp"]
    contents = pd.DataFrame({"content_id": [f"c{i}" for i in range(len(GROUPS) * PER_GROUP)],
                             "style": np.repeat(list(GROUPS), PER_GROUP)})
    users = pd.DataFrame({"user_id": [f"{g}{n}" for g in GROUPS for n in range(USERS_PER_GROUP)] + ["cold"]})
    ds = build_dataset("hand", pd.DataFrame(log, columns=columns), contents, users, {"style": "single"},
                       {"style": "style"})
    train = encode_clicks(ds)
    targets = encode_clicks(ds, pd.DataFrame(held_out, columns=columns))
    return ds, Fold("val", train, train, targets, cut=T0 + DAY)


def user_rows(ds: FeedDataset, *ids: str) -> np.ndarray:
    return pd.Index(ds.users["user_id"]).get_indexer(list(ids)).astype(np.int64)


@pytest.fixture(scope="module", params=[MFRecall, LightGCNRecall], ids=["mf", "lightgcn"])
def trained(request, tmp_path_factory):
    ds, fold = world()
    model = request.param(optim=OPTIM, trainer=TRAINER, backfill_recent_days=None, num_negatives=2, seed=0)
    run = tmp_path_factory.mktemp(request.param.__name__)
    info = model.fit(fold, ds, run_dir=run)
    return model, ds, fold, info, run


def test_held_out_in_group_content_ranks_above_out_group(trained) -> None:
    model, ds, fold, info, _ = trained
    targets = fold.targets.sort_values("u")
    users = targets["u"].to_numpy()
    recs = model.recommend(users, fold, len(GROUPS) * PER_GROUP).items  # every unseen content, ranked
    in_group = group_of(recs) == group_of(targets["i"].to_numpy())[:, None]
    held_out_rank = np.argmax(recs == targets["i"].to_numpy()[:, None], axis=1)
    first_out_group = np.argmax(~in_group, axis=1)
    # the held-out content precedes every out-group content (for all but at most 5% of the users),
    # and the top 10 are the user's 10 unseen in-group contents
    assert (held_out_rank < first_out_group).mean() >= 0.95
    assert in_group[:, :CLICKS].mean() >= 0.95
    assert info["best_val_recall@50"] == pytest.approx(1.0) and info["trained_users"] == len(GROUPS) * USERS_PER_GROUP


def test_seen_contents_never_recommended(trained) -> None:
    model, ds, fold, _, _ = trained
    users = np.arange(len(GROUPS) * USERS_PER_GROUP)
    recs = model.recommend(users, fold, 115)
    # 120 contents - 10 seen = 110 per user: the last 5 slots are padding
    assert ((recs.items >= 0).sum(1) == 110).all()
    seen = set(zip(fold.history["u"], fold.history["i"]))
    assert not any((u, i) in seen for u, row in zip(users, recs.items) for i in row if i >= 0)
    assert (recs.counters["backfilled"] == 0).all() and (recs.counters["from_model"] == 110).all()


def test_cold_users_get_the_popularity_backfill_and_are_counted(trained) -> None:
    model, ds, fold, _, _ = trained
    cold = user_rows(ds, "cold")[0]
    recs = model.recommend(np.array([cold, 0]), fold, 5)
    expected = ranking_from_scores(popularity_counts(fold.train, ds.num_contents))[:5]
    assert recs.items[0].tolist() == expected.tolist()
    assert recs.counters["backfilled"].tolist() == [5, 0]
    assert recs.counters["from_model"].tolist() == [0, 5]


def test_save_load_round_trip(trained, tmp_path: Path) -> None:
    model, ds, fold, _, _ = trained
    model.save(tmp_path, ds)
    fresh = type(model)(optim=OPTIM, trainer=TRAINER, backfill_recent_days=None)
    fresh.load(tmp_path, fold, ds)
    users = np.arange(len(ds.users))
    a, b = model.recommend(users, fold, 5), fresh.recommend(users, fold, 5)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.counters["backfilled"], b.counters["backfilled"])


def test_top_k_by_score_masks_seen_and_pads() -> None:
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    contents = torch.tensor([[3.0, 0.0], [2.0, 1.0], [0.0, 2.0]])  # scores u0: 3, 2, 0; u1: 0, 1, 2
    seen = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 0]]))
    out = top_k_by_score(users, contents, seen, 4, chunk_size=1)
    assert out.tolist() == [[1, 2, -1, -1], [2, 1, 0, -1]]


def test_uniform_negatives_avoid_positives() -> None:
    # user 0 clicked 0..8 of 10 contents: only 9 is a valid negative
    keys = torch.arange(9)
    neg, collisions = sample_negatives_uniform(torch.zeros(50, dtype=torch.long), 10, 4, keys,
                                               torch.Generator().manual_seed(0), rounds=200)
    assert collisions == 0 and (neg == 9).all()


def test_bipartite_edge_index_is_undirected() -> None:
    ei = bipartite_edge_index(torch.tensor([0, 1]), torch.tensor([0, 2]), num_users=2)
    assert ei.tolist() == [[0, 1, 2, 4], [2, 4, 0, 1]]
