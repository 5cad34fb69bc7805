"""Recall channels for contents with few clicks (recall.channels, issue 15): hand-made pools, the
merge, the val-only choice, the config checks and end-to-end runs of co-click and stage 1."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import train as train_app
from graphrecall.config_checks import ConfigError, check_train_config
from graphrecall.data.splits import Fold
from graphrecall.models.i2i import PoolRecall
from graphrecall.recall.ann import exact_topk
from graphrecall.recall.candidates import candidate_mask
from graphrecall.recall.pool import CandidatePool
from graphrecall.recall.channels import auto_slots, channel_contents, merge_channels, parse_channels, slot_grid
from graphrecall.recall.triggers import TriggerRecallResult
from tests.conftest import TINY, compose_train


def test_channel_contents_by_hand() -> None:
    # content 0: 3 clicks, 1: 2, 2: 0, 3: 1, 4: 0 (not a candidate)
    clicks = np.array([0, 0, 0, 1, 1, 3])
    cand = np.array([True, True, True, True, False])
    assert channel_contents(clicks, 5, 1, 2, cand).tolist() == [False, True, False, True, False]
    assert channel_contents(clicks, 5, 0, 0, cand).tolist() == [False, False, True, False, False]
    assert channel_contents(clicks, 5, 0, 0).tolist() == [False, False, True, False, True]
    with pytest.raises(ValueError, match="min_clicks"):
        channel_contents(clicks, 5, 2, 1)


def test_auto_slots_follow_the_share_of_targets() -> None:
    mask = np.array([True, False, False, True])
    # 3 of 8 target pairs on channel contents: round(50 * 3/8) = round(18.75) = 19
    assert auto_slots(np.array([0, 1, 1, 2, 3, 3, 2, 1]), mask, 50) == (19, 3 / 8)
    assert auto_slots(np.array([1, 2]), mask, 50) == (0, 0.0)


def test_slot_grid_and_channel_settings_are_checked() -> None:
    assert slot_grid(3) == [3] and slot_grid([0, 2]) == [0, 2] and slot_grid("auto") == "auto"
    for bad in ([], [-1], [1.5], [True], "all"):
        with pytest.raises(ValueError, match="slots"):
            slot_grid(bad)
    chans = parse_channels({"new": {"slots": [0, 2]}, "rare": {"slots": 3, "min_clicks": 1, "max_clicks": 2}})
    assert list(chans) == ["new", "rare"] and chans["new"].slots is None and chans["rare"].slots == 3
    chans = parse_channels({"new": {"slots": 1, "score": ["similarity", "side_info"]}, "rare": {"score": "pool"}})
    assert chans["new"].scores == ["similarity", "side_info"] and chans["new"].score is None  # a grid: val chooses
    assert chans["rare"].score == "pool" and chans["rare"].scores_to_build() == ["pool"]
    for bad, key in (({"score": "cosine"}, "score"), ({"score": []}, "score"), ({"score": ["pool", "pool"]}, "score"),
                     ({"min_clicks": 3, "max_clicks": 1}, "min_clicks"),
                     ({"pool_size": 0}, "pool_size"), ({"size": 3}, "unknown")):
        with pytest.raises(ValueError, match=key):
            parse_channels({"x": bad})


def test_exact_topk_restricted_to_columns_keeps_the_full_softmax() -> None:
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(7, 3, generator=gen)
    bias = torch.randn(7, generator=gen)
    cols = np.array([1, 4, 5])
    pool = exact_topk(v, 2, columns=cols, scale=2.0, item_bias=bias, softmax=True)
    # independently: the softmax over all contents but the row itself, then the best 2 of cols
    logits = 2.0 * (v @ v.T) + bias[None, :]
    logits.fill_diagonal_(float("-inf"))
    prob = torch.softmax(logits, 1).numpy()
    for row in range(7):
        allowed = [c for c in cols if c != row]
        want = sorted(allowed, key=lambda c: -prob[row, c])[:2]
        assert pool.neighbors[row].tolist() == want
        np.testing.assert_allclose(pool.scores[row], prob[row, want], rtol=1e-5)
    # every row of the columns drops itself; rows 1/4/5 have 2 others left, so none is padded
    assert (pool.neighbors != np.arange(7)[:, None]).all()
    wide = exact_topk(v, 3, columns=cols)
    assert (wide.neighbors[[1, 4, 5], 2] == -1).all() and np.isnan(wide.scores[[1, 4, 5], 2]).all()
    assert (wide.neighbors[[0, 2, 3, 6]] >= 0).all()


def test_merge_channels_by_hand() -> None:
    main = TriggerRecallResult(recs=np.array([[7, 8, 9, 6], [5, 6, -1, -1]]),
                               from_triggers=np.array([2, 1]), backfilled=np.array([2, 1]))
    first, second = np.array([[1, -1], [2, 3]]), np.array([[4], [-1]])
    res, used = merge_channels(main, [first, second], 4)
    # user 0: 1 + 1 channel entries -> 2 main entries (both from triggers), then 1, then 4
    assert res.recs[0].tolist() == [7, 8, 1, 4]
    assert (res.from_triggers[0], res.backfilled[0], used[0][0], used[1][0]) == (2, 0, 1, 1)
    # user 1: two entries of the first channel, a short main list: 5, 6 then 2, 3
    assert res.recs[1].tolist() == [5, 6, 2, 3]
    assert (res.from_triggers[1], res.backfilled[1], used[0][1], used[1][1]) == (1, 1, 2, 0)


def channel_model(new, rare=0) -> PoolRecall:
    # contents 0..5; main pool: 0 -> 2, 3; 1 -> 3, 4. Channel "new" (contents 4, 5): 0 -> 5, 4; 1 -> 4, 5;
    # channel "rare" (content 2): 0 -> 2
    model = PoolRecall(2, {"mode": "aggregate", "decay": 0.5,
                           "channels": {"new": {"slots": new}, "rare": {"slots": rare, "min_clicks": 1, "max_clicks": 2}}})
    model.pool = CandidatePool(np.array([[2, 3], [3, 4]] + [[-1, -1]] * 4),
                               np.array([[0.5, 0.2], [0.4, 0.3]] + [[np.nan] * 2] * 4, dtype=np.float32))
    model.channels["new"].pool = CandidatePool(
        np.array([[5, 4], [4, 5]] + [[-1, -1]] * 4),
        np.array([[0.3, 0.1], [0.2, 0.05]] + [[np.nan] * 2] * 4, dtype=np.float32))
    model.channels["rare"].pool = CandidatePool(np.array([[2], [-1]] + [[-1]] * 4),
                                                np.array([[0.9], [np.nan]] + [[np.nan]] * 4, dtype=np.float32))
    model.fallback = np.array([5, 4, 3, 2, 1, 0])
    model.recent_log_popularity = np.zeros(6)
    return model


def test_serving_reserves_the_channel_slots() -> None:
    triggers = [np.array([1, 0]), np.array([0]), np.array([], dtype=np.int64)]
    seen = sp.csr_matrix(([1, 1, 1, 1], ([0, 0, 1, 1], [0, 1, 0, 5])), shape=(3, 6))
    users = np.arange(3)
    off = channel_model(0).serve(users, (triggers, seen), 4)
    # main alone (test_next_click's hand case): user 0 -> 3 (.5), 4 (.3), 2 (.25), back-fill 5
    assert off.items[0].tolist() == [3, 4, 2, 5]
    assert "channel_new" not in off.counters
    rec = channel_model(1).serve(users, (triggers, seen), 4)
    # user 0, "new" scores: 4: .2 + .5*.1 = .25, 5: .05 + .5*.3 = .2 -> 4 takes the channel's slot; the
    # main channel serves without it: 3, 2, then back-fill 5; the list ends with the channel's entry
    assert rec.items[0].tolist() == [3, 2, 5, 4]
    assert rec.counters["channel_new"][0] == 1
    assert (rec.counters["from_triggers"][0], rec.counters["backfilled"][0]) == (2, 1)
    # user 1 (trigger 0, 5 seen): channel 4 (.1); main 2, 3, back-fill 1 (5 seen, 4 taken)
    assert rec.items[1].tolist() == [2, 3, 1, 4]
    # user 2 has no trigger: no channel entry, the main channel (back-fill) fills the list
    assert rec.items[2].tolist() == off.items[2].tolist() and rec.counters["channel_new"][2] == 0
    two = channel_model(2).serve(users, (triggers, seen), 4)
    assert two.items[0].tolist() == [3, 2, 4, 5]  # 4 (.25) then 5 (.2) take the last two slots
    both = channel_model(1, 1).serve(users, (triggers, seen), 4)
    # user 0: "new" takes 4, then "rare" takes 2 (its only entry, .5 * .9); main: 3, back-fill 5
    assert both.items[0].tolist() == [3, 5, 4, 2]
    assert (both.counters["channel_new"][0], both.counters["channel_rare"][0]) == (1, 1)
    for r in (off, rec, two, both):  # never a duplicate, never a seen content
        for u in users:
            row = r.items[u][r.items[u] >= 0]
            assert len(set(row.tolist())) == len(row)
            assert not set(row.tolist()) & set(seen.indices[seen.indptr[u]:seen.indptr[u + 1]].tolist())


def test_slot_grids_are_chosen_on_val_only() -> None:
    model = channel_model([0, 2])
    assert model.channels["new"].slots is None
    users, ctx = np.arange(1), ([np.array([0])], sp.csr_matrix((1, 6), dtype=np.int8))
    with pytest.raises(ValueError, match="has not been chosen"):
        model.serve(users, ctx, 4)
    empty = pd.DataFrame({"u": [], "i": [], "timestamp": []})
    with pytest.raises(ValueError, match="val fold"):
        model.choose_serving(Fold("test", empty, empty, empty), None)
    model = channel_model("auto")
    with pytest.raises(ValueError, match="val fold"):
        model.choose_serving(Fold("test", empty, empty, empty), None)


def test_a_score_grid_is_chosen_on_val_and_only_the_chosen_pool_is_kept() -> None:
    from types import SimpleNamespace

    # user 0 clicked content 0 (the trigger); the val target is content 5. "similarity" offers 4,
    # "side_info" offers 5: validation recall@50 chooses side_info (1.0 vs 0.0)
    model = PoolRecall(2, {"mode": "aggregate", "decay": 0.5, "max_triggers": 10,
                           "channels": {"new": {"slots": 1, "score": ["similarity", "side_info"]}}})
    model.pool = CandidatePool(np.array([[2, 3]] + [[-1, -1]] * 5), np.array([[0.5, 0.2]] + [[np.nan] * 2] * 5,
                                                                             dtype=np.float32))
    row = lambda c: CandidatePool(np.array([[c]] + [[-1]] * 5), np.array([[0.3]] + [[np.nan]] * 5, dtype=np.float32))
    new = model.channels["new"]
    new.pools = {"similarity": row(4), "side_info": row(5)}
    model.fallback, model.recent_log_popularity = np.array([1, 2, 3]), np.zeros(6)  # back-fill never lists 4, 5
    history = pd.DataFrame({"u": [0], "i": [0], "timestamp": [1]})
    val = Fold("val", history, history, pd.DataFrame({"u": [0], "i": [5], "timestamp": [2]}))
    info = model.choose_serving(val, SimpleNamespace(num_contents=6))
    assert (new.score, new.slots) == ("side_info", 1) and list(new.pools) == ["side_info"]
    assert info["serving/channel/new/val_recall@50_score=similarity_slots=1"] == 0.0
    assert info["serving/channel/new/val_recall@50_score=side_info_slots=1"] == 1.0
    assert model.serve(np.arange(1), model.user_context(np.arange(1), val, 6), 3).items[0].tolist() == [2, 3, 5]
    # a tie goes to the first score of the grid
    new.score, new.pools = None, {"similarity": row(4), "side_info": row(1)}
    model.choose_serving(val, SimpleNamespace(num_contents=6))
    assert new.score == "similarity"


def test_config_refuses_channel_slots_where_they_would_be_ignored(tiny_cfg) -> None:
    check_train_config(tiny_cfg(["model=coclick", "recall.channels.new.slots=[0,2]"]))
    check_train_config(tiny_cfg(["model=sage_next_click", "recall.channels.rare.slots=auto"]))
    check_train_config(tiny_cfg(["model=m2grl", "recall.channels.rare.slots=3"]))
    with pytest.raises(ConfigError, match="lightgcn"):
        check_train_config(tiny_cfg(["model=lightgcn", "recall.channels.rare.slots=3"]))
    check_train_config(tiny_cfg(["model=lightgcn"]))  # slots 0: nothing to serve, nothing refused
    with pytest.raises(ConfigError, match="recall.channels.new.slots"):
        check_train_config(tiny_cfg(["model=coclick", "recall.channels.new.slots=-1"]))
    check_train_config(tiny_cfg(["model=sage_next_click", "recall.channels.new.slots=1",
                                 "recall.channels.new.score=[similarity,side_info]"]))
    with pytest.raises(ConfigError, match="side_info"):  # co-click has no encoder to embed side info
        check_train_config(tiny_cfg(["model=coclick", "recall.channels.new.slots=1", "recall.channels.new.score=side_info"]))
    with pytest.raises(ConfigError, match="recall.channels.rare.pool_size"):
        check_train_config(tiny_cfg(["model=coclick", "recall.channels.rare.slots=1",
                                     "recall.channels.rare.pool_size=0"]))


def test_coclick_channel_pool_holds_only_its_contents(tmp_path) -> None:
    cfg = compose_train(tmp_path, [*TINY, "model=coclick", "recall.channels.rare.slots=5",
                                   "recall.channels.rare.max_clicks=3"])
    metrics, objects = train_app.train(cfg)
    model, dataset, test = objects["model"], objects["dataset"], objects["folds"]["test"]
    mask = channel_contents(test.train["i"].to_numpy(), dataset.num_contents, 1, 3, candidate_mask(test, dataset))
    pool = model.channels["rare"].pool
    got = pool.neighbors[pool.neighbors >= 0]
    assert len(got) and mask[got].all()
    assert metrics["test/fit/channel/rare/contents"] == mask.sum()
    assert 0 < metrics["test/mean_channel_rare"] <= 5
    assert model.channels["new"].pool is None  # slots 0: no pool built


def test_sage_next_click_serves_the_channels_end_to_end(tmp_path) -> None:
    cfg = compose_train(tmp_path, [*TINY, "model=sage_next_click", "trainer.max_epochs=2",
                                   "trainer.enable_progress_bar=false", "model.optim.batch_size=128",
                                   "model.next_click.num_uniform=32", "recall.channels.rare.slots=[0,4]",
                                   "recall.channels.new.slots=auto"])
    metrics, objects = train_app.train(cfg)
    model, dataset = objects["model"], objects["dataset"]
    val, test = objects["folds"]["val"], objects["folds"]["test"]
    new, rare = model.channels["new"], model.channels["rare"]
    # auto: round(50 x the share of the val fold's target pairs on contents without a training click)
    pairs = val.targets.drop_duplicates(["u", "i"])["i"].to_numpy()
    clicks = np.bincount(val.train["i"].to_numpy(), minlength=dataset.num_contents)
    val_cand = candidate_mask(val, dataset, "auto")
    share = float(((clicks == 0) & val_cand)[pairs].mean())
    assert metrics["val/fit/serving/channel/new/val_target_share"] == pytest.approx(share)
    assert new.slots == round(50 * share) == metrics["val/fit/serving/channel/new/slots"]
    assert rare.slots in (0, 4) and metrics["val/fit/serving/channel/rare/slots"] == rare.slots
    assert {"val/fit/serving/channel/rare/val_recall@50_slots=0",
            "val/fit/serving/channel/rare/val_recall@50_slots=4"} <= set(metrics)
    mask = channel_contents(test.train["i"].to_numpy(), dataset.num_contents, 1, 2, model.candidate_rows)
    assert metrics["test/fit/channel/rare/contents"] == mask.sum()
    got = rare.pool.neighbors[rare.pool.neighbors >= 0]
    assert mask[got].all()
    # with the rare slots fixed at 4 (new off), the lists end with their rare entries
    rare.slots, new.slots = 4, 0
    users = np.unique(test.targets["u"].to_numpy())
    recs = model.recommend(users, test, 50)
    used = recs.counters["channel_rare"]
    assert used.max() == 4 and (used <= 4).all()
    assert mask[recs.items[used == 4][:, -4:]].all()
    assert np.isin(recs.items[recs.items >= 0], np.flatnonzero(model.candidate_rows)).all()


def test_channels_hold_no_content_published_after_the_cut() -> None:
    from types import SimpleNamespace

    # contents 0..3, published at 0, 0, 50, 200; the cut is 100; content 0 has a training click
    clicks = pd.DataFrame({"u": [0], "i": [0], "timestamp": [10]})
    fold = Fold("val", clicks, clicks, clicks, cut=100)
    dataset = SimpleNamespace(contents=pd.DataFrame({"published_at": [0, 0, 50, 200]}), num_contents=4, name="hand")
    model = PoolRecall(2, {"channels": {"new": {"slots": 1}}})
    assert model.candidate_rows is None  # co-click: no candidate set of its own
    assert model.channel_mask(model.channels["new"], fold, dataset).tolist() == [False, True, True, False]


def test_evaluate_reproduces_the_channels_from_the_run_and_from_a_checkpoint(tmp_path) -> None:
    import evaluate as evaluate_app
    from omegaconf import OmegaConf

    from tests.conftest import ROOT

    cfg = compose_train(tmp_path, [*TINY, "model=sage_next_click", "trainer.max_epochs=1",
                                   "trainer.enable_progress_bar=false", "model.optim.batch_size=128",
                                   "model.next_click.num_uniform=32", "recall.channels.new.slots=2",
                                   "recall.channels.new.score=[similarity,side_info]",
                                   "recall.channels.rare.slots=[3,3]", "recall.channels.rare.max_clicks=5"])
    metrics, objects = train_app.train(cfg)  # grids chosen on val, so evaluate must restore them
    assert metrics["val/fit/serving/channel/rare/slots"] == 3
    new, module = objects["model"].channels["new"], objects["model"].module
    assert new.score == ["similarity", "side_info"][int(metrics["val/fit/serving/channel/new/score_index"])]
    assert {f"val/fit/serving/channel/new/val_recall@50_score={s}_slots=2" for s in ("similarity", "side_info")} <= set(metrics)
    # side-info vectors ignore the node ids and the graph: perturbing the id embeddings changes every
    # content's full vector but none of them
    side, full = module.side_info_vectors(), module.embed_all()
    with torch.no_grad():
        module.net.features.node_embedding.weight.add_(1.0)
    assert torch.allclose(module.side_info_vectors(), side) and not torch.allclose(module.embed_all(), full)
    with torch.no_grad():
        module.net.features.node_embedding.weight.sub_(1.0)
    assert metrics["test/mean_channel_rare"] > 0  # the channel took slots
    ecfg = OmegaConf.load(ROOT / "conf" / "evaluate.yaml")
    ecfg.pop("hydra")
    ecfg.run_dir, ecfg.eval.bootstrap.num_resamples = str(cfg.run_dir), 20
    ecfg.out_dir = str(tmp_path / "evaluate_run")
    again = evaluate_app.evaluate(ecfg)  # the saved pools, channel pools and slots
    for key in ("test/recall@50", "test/mean_channel_new", "test/mean_channel_rare"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-9), key
    ecfg.ckpt_path = str(next((tmp_path / "run" / "refit").rglob("last.ckpt")))
    ecfg.out_dir = str(tmp_path / "evaluate_ckpt")
    again = evaluate_app.evaluate(ecfg)  # re-embedded from the refit weights, channel pools rebuilt
    for key in ("test/recall@50", "test/mean_channel_new", "test/mean_channel_rare"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-9), key
