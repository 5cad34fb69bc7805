"""Candidates at the cut (recall/candidates.py): the pure rules on a hand-made table, then stage 1 on a
tiny hand-made world where a content without clicks shares its side info with clicked ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from graphrecall.data.schema import FeedDataset, build_dataset
from graphrecall.data.splits import DAY, Fold, encode_clicks, target_pairs
from graphrecall.recall.candidates import (
    candidate_mask,
    non_candidate_entries,
    restrict_pool,
    search_width,
)
from graphrecall.recall.pool import CandidatePool
from tests.conftest import compose_train

T0 = int(pd.Timestamp("2024-05-01", tz="UTC").timestamp())
CUT = T0 + 10 * DAY
VAL_CUT = T0 + 8 * DAY


# ------------------------------------------------------------------------------- the world
def world() -> tuple[FeedDataset, dict[str, Fold]]:
    """Styles A and B, 4 clicked contents each (a0..a3, b0..b3), style C 60 (c0..c59); ``nA``
    (style A, published on day 0, never clicked) and ``fA`` (style A, published after the cut,
    clicked after it). 24 users: 6 click only A contents, 6 only B (two a day for 12 days, new ones
    from day 8), 12 only C."""
    rng = np.random.default_rng(0)
    log = []
    for u in range(12):
        style = "a" if u < 6 else "b"
        for d in range(12):  # two contents of the user's style before the validation cut, the other two after
            for j in ((u, u + 1) if d < 8 else (u + 2, u + 3)):
                log.append((f"u{u}", f"{style}{j % 4}", T0 + d * DAY + int(rng.integers(0, 3600))))
    for u in range(12, 24):  # style C: 60 filler contents, so that validation recall@50 tells epochs apart
        for d in range(12):
            for j in rng.choice(60, size=3, replace=False):
                log.append((f"u{u}", f"c{j}", T0 + d * DAY + int(rng.integers(0, 3600))))
    log += [("u0", "nA", CUT + DAY), ("u1", "fA", CUT + 2 * DAY), ("u2", "nA", CUT + 2 * DAY)]
    clicks = pd.DataFrame(log, columns=["user_id", "content_id", "timestamp"])
    ids = [f"a{j}" for j in range(4)] + [f"b{j}" for j in range(4)] + [f"c{j}" for j in range(60)] + ["nA", "fA"]
    contents = pd.DataFrame({
        "content_id": ids,
        "style": [c[0].upper() if c[0] in "abc" else "A" for c in ids],
        "space": [f"s{j % 2}" for j in range(4)] + [f"s{2 + j % 2}" for j in range(4)] + ["s4"] * 60 + ["s0", "s1"],
        "published_at": [T0] * 69 + [CUT + DAY],
    })  # fmt: skip
    ds = build_dataset("cands", clicks, contents, None, {"style": "single", "space": "single"},
                       {"style": "style", "space": "space"})
    enc = encode_clicks(ds)
    folds = {}
    for name, cut, end in (("val", VAL_CUT, CUT), ("test", CUT, CUT + 3 * DAY)):
        history = enc[enc["timestamp"] < cut].reset_index(drop=True)
        targets, _ = target_pairs(enc[(enc["timestamp"] >= cut) & (enc["timestamp"] < end)], history)
        folds[name] = Fold(name, history, history, targets, cut=cut)
    return ds, folds


def rows(ds: FeedDataset, names: list[str]) -> list[int]:
    return pd.Index(ds.contents["content_id"]).get_indexer(names).tolist()


# ------------------------------------------------------------------------------- pure rules
def test_candidate_rules() -> None:
    ds, folds = world()
    test = folds["test"]
    names = ds.contents["content_id"].to_numpy()
    on = lambda mask: sorted(names[mask].tolist())  # noqa: E731
    everything = sorted(names.tolist())
    assert on(candidate_mask(test, ds, "published")) == sorted(set(everything) - {"fA"})
    assert on(candidate_mask(test, ds, "auto")) == on(candidate_mask(test, ds, "published"))
    assert on(candidate_mask(test, ds, "history")) == sorted(set(everything) - {"fA", "nA"})
    assert on(candidate_mask(test, ds, "catalogue")) == everything
    # without published_at, auto = history; published is refused with the reason
    import dataclasses

    plain = dataclasses.replace(ds, contents=ds.contents.drop(columns=["published_at"]))
    assert on(candidate_mask(test, plain, "auto")) == on(candidate_mask(test, ds, "history"))
    with pytest.raises(ValueError, match="published_at"):
        candidate_mask(test, plain, "published")
    with pytest.raises(ValueError, match="model.candidates='future'"):
        candidate_mask(test, ds, "future")
    # a fold without a cut (intervened, predefined): published by its last history click
    no_cut = dataclasses.replace(test, cut=None)
    assert on(candidate_mask(no_cut, ds, "published")) == sorted(set(everything) - {"fA"})


def test_restrict_pool_keeps_order_and_counts() -> None:
    # contents 0..4; 3 may not be recommended; searched 2 + 1 wide
    cand = np.array([True, True, True, False, True])
    assert search_width(2, cand) == 3 and search_width(2, None) == 2
    pool = CandidatePool(np.array([[3, 1, 2], [0, 2, 3], [3, 4, -1], [0, 1, 2], [-1, -1, -1]]),
                         np.array([[9, 8, 7], [9, 8, 7], [9, 8, np.nan], [9, 8, 7], [np.nan] * 3], dtype=np.float32))
    out = restrict_pool(pool, cand, 2)
    assert out.neighbors.tolist() == [[1, 2], [0, 2], [4, -1], [0, 1], [-1, -1]]
    np.testing.assert_array_equal(out.scores, np.array([[8, 7], [9, 8], [8, np.nan], [9, 8], [np.nan, np.nan]],
                                                       dtype=np.float32))
    assert non_candidate_entries(pool, cand) == 3 and non_candidate_entries(pool, cand, 2) == 2
    assert restrict_pool(pool, None, 2).neighbors.tolist() == pool.neighbors[:, :2].tolist()


# ------------------------------------------------------------------------------- stage 1 and co-click
def sage_model(tmp_path: Path, extra: list[str] = ()):
    # one epoch of many small steps: validation recall@50 cannot tell epochs apart in a 70-content world
    cfg = compose_train(tmp_path, ["dataset=synthetic", "model=sage", "dataset.graph_tau=0", "model.pool_size=8",
                                   "model.encoder.node_ids=false", "model.encoder.normalize=true",
                                   "model.optim.temperature=0.1", "model.optim.lr=0.02", "model.optim.batch_size=16",
                                   "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                                   "model.sampling.neighbors=3", *extra])
    return instantiate(OmegaConf.to_container(cfg.model, resolve=True), _convert_="all")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cands")
    ds, folds = world()
    model = sage_model(tmp)
    model.fit(folds["val"], ds, cache_dir=None, run_dir=tmp / "run")
    test_info = model.fit(folds["test"], ds, cache_dir=None, run_dir=tmp / "run")
    return ds, folds, model, test_info


def test_new_content_is_embedded_and_reaches_the_gnn_pool(fitted) -> None:
    ds, folds, model, test_info = fitted
    n_a, f_a = rows(ds, ["nA", "fA"])
    a_rows = rows(ds, ["a0", "a1", "a2", "a3"])
    assert np.isfinite(model.vectors[n_a]).all()
    # nA has no click and no edge: its side info (style A) places it next to the A contents
    assert sorted(model.pool.neighbors[n_a, :4].tolist()) == sorted(a_rows)
    # and it is a candidate: it enters the 8-slot pool rows of the A contents
    assert all(n_a in model.pool.neighbors[r].tolist() for r in a_rows)
    # fA (published after the cut) is embedded too, but held by no pool row; the restriction is counted
    assert not (model.pool.neighbors == f_a).any()
    assert test_info["pool/candidates"] == 69
    assert test_info["pool/non_candidates_in_top_p"] >= 1  # fA would have taken slots without it
    # served: style-A users reach nA (u0 and u2 click it after the cut); nobody gets fA
    users = np.arange(len(ds.users))
    recs = model.recommend(users, folds["test"], 20).items
    assert (recs == n_a).any()
    assert not (recs == f_a).any()


def test_catalogue_rule_would_leak_the_future_content(tmp_path) -> None:
    """The same model with candidates=catalogue puts fA in the pool: the restriction is what stops it."""
    ds, folds = world()
    model = sage_model(tmp_path, ["model.candidates=catalogue"])
    model.fit(folds["val"], ds, cache_dir=None, run_dir=tmp_path / "run")
    info = model.fit(folds["test"], ds, cache_dir=None, run_dir=tmp_path / "run")
    assert (model.pool.neighbors == rows(ds, ["fA"])[0]).any()
    assert info["pool/non_candidates_in_top_p"] == 0 and info["pool/candidates"] == 70


def test_coclick_pool_never_holds_contents_without_clicks() -> None:
    from graphrecall.models.coclick import CoClickRecall

    ds, folds = world()
    model = CoClickRecall(pool_size=8, graph={"view": "content", "session_days": 3, "tau": 0.0})
    model.fit(folds["test"], ds)
    n_a, f_a = rows(ds, ["nA", "fA"])
    assert not np.isin(model.pool.neighbors, [n_a, f_a]).any()
    assert (model.pool.neighbors[rows(ds, ["a0"])[0]] >= 0).sum() == 3  # the other A contents only


def test_u2i_scores_serve_candidates_only() -> None:
    import scipy.sparse as sp
    import torch

    from graphrecall.models.u2i import top_k_by_score

    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    contents = torch.tensor([[3.0, 0.0], [2.0, 0.0], [0.1, 3.0], [0.05, 2.0], [1.0, 1.0]])  # no ties
    seen = sp.csr_matrix(np.array([[0, 1, 0, 0, 0], [0, 0, 0, 0, 0]]))
    assert top_k_by_score(users, contents, seen, 3).tolist() == [[0, 4, 2], [2, 3, 4]]
    cand = np.array([False, True, True, True, True])  # content 0 not yet published
    assert top_k_by_score(users, contents, seen, 3, candidates=cand).tolist() == [[4, 2, 3], [2, 3, 4]]
    assert top_k_by_score(users, contents, seen, 5, candidates=cand).tolist() == [[4, 2, 3, -1, -1], [2, 3, 4, 1, -1]]


def test_oracle_ranks_only_published_contents(tiny_cfg) -> None:
    """The true-interest ceiling on the tiny world with content arrival: targets on contents published
    after the cut exist, and the oracle never recommends one."""
    import sys

    from tests.conftest import ROOT

    sys.path.insert(0, str(ROOT))
    import train as train_app

    arrival = ["+dataset.loader.arrival_share=0.5", "+dataset.loader.fresh_boost=4.0"]
    metrics, objects = train_app.train(tiny_cfg(["model=oracle", *arrival]))
    assert metrics["test/content_slice/after_cut/targets"] > 0
    assert metrics["test/after_cut/recall@50"] == 0.0
    ev = [e for e in objects["evaluations"] if e.name == "test"][0]
    published = objects["dataset"].contents["published_at"].to_numpy()
    recommended = ev.recs.items[ev.recs.items >= 0]
    assert (published[recommended] <= objects["folds"]["test"].cut).all()
