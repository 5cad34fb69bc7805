"""The learned popularity/recency term of the next-click score (issue 10, item 2), on hand-made
cases: the time-aware feature table, each example's moment, the candidate bias, the pool scored
as the model's next-click probability, and an end-to-end fit on the tiny synthetic world.

Expected values are written out by hand or computed independently with plain numpy.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from graphrecall.data.next_click import next_click_pairs
from graphrecall.data.popularity_features import (
    moment_index,
    popularity_feature_table,
    publication_features,
    published_days,
)
from graphrecall.data.splits import DAY
from graphrecall.losses import sampled_softmax_logits
from graphrecall.models.popularity_bias import PopularityBias
from graphrecall.recall.ann import exact_topk
from tests.conftest import ROOT, TINY, assert_pool_weight_choice, compose_train

sys.path.insert(0, str(ROOT))
import train as train_app  # noqa: E402

CUT = 100 * DAY


def clicks_at(rows: list[tuple[int, float]]) -> pd.DataFrame:
    """(content, days before the cut) pairs -> a click frame (one user)."""
    i, before = zip(*rows)
    t = CUT - (np.array(before) * DAY).astype(np.int64)
    return pd.DataFrame({"u": 0, "i": i, "timestamp": t})



def test_publication_features_are_ages_to_the_second():
    # content 0 published 2.5 days before the cut, content 1 40 days before, content 2 at the cut itself,
    # content 3 six hours after the cut
    published = published_days(np.array([CUT - 2.5 * DAY, CUT - 40 * DAY, CUT, CUT + DAY // 4]), CUT)
    np.testing.assert_allclose(published.numpy(), [-2.5, -40.0, 0.0, 0.25], rtol=1e-6)
    # queries at the cut and 1.5 days before it (a training example's time, not its day boundary)
    when = torch.tensor([0.0, -1.5])
    feats = publication_features(when.unsqueeze(1) - published.unsqueeze(0)).numpy()
    assert feats.shape == (2, 4, 2)
    log = np.log1p
    np.testing.assert_allclose(feats[0, :, 0], [log(2.5), log(40), 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(feats[0, :, 1], [0, 0, 0, 1])  # at the cut, content 3 does not exist yet
    np.testing.assert_allclose(feats[1, :, 0], [log(1.0), log(38.5), 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(feats[1, :, 1], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="published_at"):
        published_days(np.array([0.0, np.nan]), CUT)


def test_candidate_bias_appends_per_query_features():
    torch.manual_seed(0)
    bias = PopularityBias(num_features=3, hidden_dim=4)
    torch.nn.init.normal_(bias.mlp[2].weight)
    table = torch.rand(2, 5, 2)  # [K, C, 2]
    moments, candidates = torch.tensor([1, 0, 1]), torch.tensor([4, 0])
    extra = torch.rand(3, 2, 1)  # [B, N, 1]
    got = bias.candidate_bias(table, moments, candidates, extra)
    for b in range(3):
        for n in range(2):
            want = bias(torch.cat([table[moments[b], candidates[n]], extra[b, n]]))
            assert torch.allclose(got[b, n], want, atol=1e-6)


def test_feature_table_counts_only_clicks_before_each_moment():
    # content 0: clicks 0.5, 3.5 and 9.5 days before the cut; content 1: one click 0.2 days before;
    # content 2: never clicked
    table = popularity_feature_table(clicks_at([(0, 0.5), (0, 3.5), (0, 9.5), (1, 0.2)]), 3, CUT).numpy()
    # buckets: 0.5 -> 0, 3.5 -> 3, 9.5 -> 9, 0.2 -> 0; moments k = 0 .. 10 (the last precedes every click)
    assert table.shape == (11, 3, 4)
    log = np.log1p
    # as of the cut (k = 0)
    np.testing.assert_allclose(table[0, 0], [log(1), log(2), log(3), log(10)], rtol=1e-6)
    np.testing.assert_allclose(table[0, 1], [log(1), log(1), log(1), log(1)], rtol=1e-6)
    np.testing.assert_allclose(table[0, 2], [0, 0, 0, 0])
    # one day before the cut (k = 1): the clicks of the last day are not seen yet
    np.testing.assert_allclose(table[1, 0], [0, log(1), log(2), log(9)], rtol=1e-6)
    np.testing.assert_allclose(table[1, 1], [0, 0, 0, 0])
    # k = 3: the click 3.5 days before is in bucket 3, the day before a_3; 9.5 is 6.5 days before a_3
    np.testing.assert_allclose(table[3, 0], [log(1), log(2), log(2), log(7)], rtol=1e-6)
    # k = 4: only the click 9.5 days before remains, 6 days before a_4: inside the 7-day window
    np.testing.assert_allclose(table[4, 0], [0, log(1), log(1), log(6)], rtol=1e-6)
    # k = 10: nothing is before it
    np.testing.assert_allclose(table[10], 0)


def test_feature_table_refuses_clicks_at_or_after_the_cut():
    frame = clicks_at([(0, 1.0)])
    frame.loc[0, "timestamp"] = CUT
    with pytest.raises(ValueError, match="at or after the cut"):
        popularity_feature_table(frame, 1, CUT)


def test_moment_is_the_last_day_boundary_at_or_before_the_trigger():
    t = CUT - np.array([0, 1, DAY - 1, DAY, DAY + 1, 5 * DAY])
    np.testing.assert_array_equal(moment_index(t, CUT), [0, 1, 1, 1, 2, 5])
    with pytest.raises(ValueError, match="after the cut"):
        moment_index(np.array([CUT + 1]), CUT)


def test_next_click_pairs_return_the_trigger_and_target_times():
    frame = pd.DataFrame({"u": [0, 0, 0], "i": [5, 6, 7], "timestamp": [10, 20, 30 + 2 * DAY]})
    src, dst, when, clicked = next_click_pairs(frame, horizon_days=1.0, context=2, return_times=True)
    assert list(zip(src, dst, when, clicked)) == [(5, 6, 10, 20)]  # 7 comes more than a day after both


def test_training_positives_are_never_flagged_not_yet_published(tmp_path):
    """Issue 25: a target published between its trigger and its own click. Its age at the trigger's
    time is negative (the old flag said "not yet published" for a clicked positive); the ages the
    model trains with are taken when the target was clicked, so every positive is published."""
    from types import SimpleNamespace

    # content 1 is published 12 hours after the click on content 0 and clicked 6 hours after that
    published_at = np.array([CUT - 20 * DAY, CUT - 3 * DAY + DAY // 2, CUT - 20 * DAY])
    train = pd.DataFrame({"u": [0, 0, 1, 1], "i": [0, 1, 2, 0],
                          "timestamp": [CUT - 3 * DAY, CUT - 3 * DAY + 3 * DAY // 4, CUT - 5 * DAY, CUT - 5 * DAY + 60]})
    cfg = compose_train(tmp_path, [*TINY, "model=sage_next_click", "model.popularity.publication=true"])
    from hydra.utils import instantiate

    model = instantiate(cfg.model, _convert_="all")
    fold = SimpleNamespace(train=train, cut=CUT, name="val")
    examples, _ = model.training_examples(fold, SimpleNamespace(num_nodes=3))  # (logQ reads the node count)
    src, dst, query_days = examples.tensors[0], examples.tensors[1], examples.tensors[-1]
    assert sorted(zip(src.tolist(), dst.tolist())) == [(0, 1), (2, 0)]
    published = published_days(published_at, CUT)
    flags = publication_features(query_days - published[dst])[:, 1]
    assert flags.tolist() == [0.0, 0.0]  # no positive is "not yet published"
    trigger = src.tolist().index(0)
    assert query_days[trigger].item() == pytest.approx(-(3 * DAY - 3 * DAY // 4) / DAY, abs=1e-5)  # the click on 1
    # at the trigger's own time content 1 did not exist yet: what the old definition flagged
    assert publication_features(torch.tensor([-3.0]) - published[1:2])[0, 1].item() == 1.0


def test_example_features_never_include_the_target_click():
    # a trigger and its target on the same day: the target's click must not be in the features the
    # example is scored with (its moment is the day boundary before the trigger)
    frame = pd.DataFrame({"u": [0, 0], "i": [0, 1], "timestamp": [CUT - DAY // 2, CUT - DAY // 4]})
    table = popularity_feature_table(frame, 2, CUT)
    src, dst, when, _ = next_click_pairs(frame, 1.0, 1, return_times=True)
    k = moment_index(when, CUT)
    assert k.tolist() == [1]
    assert table[k[0], dst[0]].abs().sum().item() == 0.0  # content 1 has no click before a_1


def test_candidate_bias_uses_each_query_moment():
    torch.manual_seed(0)
    bias = PopularityBias(num_features=2, hidden_dim=4)
    torch.nn.init.normal_(bias.mlp[2].weight)
    table = torch.randn(3, 5, 2)  # [K, C, F]
    moments = torch.tensor([2, 0, 2])
    candidates = torch.tensor([4, 1, 1, 3])
    out = bias.candidate_bias(table, moments, candidates)
    expected = torch.stack([bias(table[m, candidates]) for m in moments.tolist()])
    torch.testing.assert_close(out, expected)


def test_popularity_term_starts_at_zero():
    bias = PopularityBias(4, 8)
    assert torch.count_nonzero(bias(torch.randn(10, 4))) == 0


def test_logits_add_the_bias_before_the_logq_correction():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    uni = torch.tensor([[1.0, 1.0]])
    log_q = torch.log(torch.tensor([1.0, 2.0, 4.0, 8.0]))
    bias = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.25, -0.5]])
    out = sampled_softmax_logits(q, pos, uni, torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([1]),
                                 log_q, 0.5, bias)
    # candidates: 2, 3, 1; row 1's uniform draw is the query itself (content 1): masked
    expected = torch.tensor([[2 + 0.5 - math.log(4), 0 - 1.0 - math.log(8), 2 + 2.0 - math.log(2)],
                             [0 + 0.0 - math.log(4), 2 + 0.25 - math.log(8), float("-inf")]])
    torch.testing.assert_close(out, expected)


def test_pool_as_next_click_probability():
    v = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    bias = torch.tensor([0.0, -1.0, 2.0, 0.5])
    pool = exact_topk(v, 3, scale=2.0, item_bias=bias, softmax=True)
    logits = 2.0 * (v @ v.T).numpy() + bias.numpy()[None, :]
    np.fill_diagonal(logits, -np.inf)
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    for row in range(4):
        order = np.argsort(-prob[row], kind="stable")[:3]
        np.testing.assert_array_equal(pool.neighbors[row], order)
        np.testing.assert_allclose(pool.scores[row], prob[row, order], rtol=1e-5)
    # logits without softmax: the same order, the raw scores
    raw = exact_topk(v, 3, scale=2.0, item_bias=bias)
    np.testing.assert_array_equal(raw.neighbors, pool.neighbors)
    np.testing.assert_allclose(raw.scores[0], logits[0, pool.neighbors[0]], rtol=1e-5)


def test_probability_pool_is_normalised_over_the_candidates_only():
    """Issue 25: a content published after the cut (not a candidate) takes no probability mass.
    Content 2 has the largest bias; it is not a candidate, so every row's probabilities are the
    softmax over the other contents (the row itself excluded), computed here with numpy."""
    v = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    bias = torch.tensor([0.0, -1.0, 2.0, 0.5])
    candidates = np.array([True, True, False, True])
    pool = exact_topk(v, 3, scale=2.0, item_bias=bias, softmax=True, normalise_over=candidates)
    logits = 2.0 * (v @ v.T).numpy().astype(np.float64) + bias.numpy()[None, :]
    np.fill_diagonal(logits, -np.inf)
    for row in range(4):
        norm = np.exp(logits[row, candidates]).sum()
        for col, score in zip(pool.neighbors[row], pool.scores[row]):
            assert score == pytest.approx(math.exp(logits[row, col]) / norm, rel=1e-5)
    # over the candidates the kept probabilities of row 0 sum to 1 (its candidates are 1 and 3)
    row0 = {int(c): float(p) for c, p in zip(pool.neighbors[0], pool.scores[0])}
    assert row0[1] + row0[3] == pytest.approx(1.0, rel=1e-6)
    # the catalogue-wide softmax gave content 1 far less: the mass content 2 took
    wide = exact_topk(v, 3, scale=2.0, item_bias=bias, softmax=True)
    wide0 = {int(c): float(p) for c, p in zip(wide.neighbors[0], wide.scores[0])}
    assert wide0[1] < 0.5 * row0[1]
    # a row whose only candidate is itself gets no probability anywhere
    alone = exact_topk(v, 3, softmax=True, normalise_over=np.array([True, False, False, False]))
    assert np.nan_to_num(alone.scores[0], nan=0.0).max() == 0.0
    with pytest.raises(ValueError, match="normalise_over must be a bool mask of shape"):
        exact_topk(v, 3, softmax=True, normalise_over=np.array([True, False]))


def test_popularity_term_needs_the_next_click_objective(tmp_path):
    cfg = compose_train(tmp_path, [*TINY, "model=sage", "model.popularity.enabled=true"])
    with pytest.raises(Exception, match="needs model.objective=next_click"):
        train_app.train(cfg)


def test_stage1_with_popularity_term_end_to_end(tmp_path):
    cfg = compose_train(tmp_path, [*TINY, "model=sage", "model.objective=next_click", "model.popularity.enabled=true",
                         "model.pool_score=probability", "model.refit=true", "recall.mode=aggregate",
                         "recall.popularity_beta=[0,1]", "model.encoder.normalize=true",
                         "model.optim.temperature=0.1", "model.next_click.half_life_days=3",
                         "trainer.max_epochs=2"])
    metrics, objects = train_app.train(cfg)
    model = objects["model"]
    assert model.module.popularity_bias is not None
    # the pool stores probabilities of a distribution over the catalogue: each row sums to <= 1
    scores = np.nan_to_num(model.pool.scores, nan=0.0)
    assert (scores >= 0).all() and (scores.sum(1) <= 1 + 1e-5).all()
    assert np.isfinite(metrics["test/recall@50"])
    assert metrics["test/fit/refit/epochs"] == metrics["val/fit/selected_epochs"]
    # evaluate.py from the refit model's checkpoint: the same weights re-embedded on the test
    # window, the popularity term as of the cut, the beta validation chose -> the same test recall
    import evaluate as evaluate_app
    from omegaconf import OmegaConf

    ckpt = next((Path(cfg.run_dir) / "refit").rglob("last.ckpt"))
    ecfg = OmegaConf.load(ROOT / "conf" / "evaluate.yaml")
    ecfg.pop("hydra")
    ecfg.run_dir, ecfg.ckpt_path, ecfg.eval.bootstrap.num_resamples = str(cfg.run_dir), str(ckpt), 20
    ecfg.out_dir = str(tmp_path / "evaluate")
    again = evaluate_app.evaluate(ecfg)
    assert again["test/recall@50"] == pytest.approx(metrics["test/recall@50"], abs=1e-9)


def test_publication_features_train_end_to_end_and_are_refused_without_published_at(tmp_path):
    """A tiny world with content arrival: the learned term reads 6 features; without published_at the
    option is refused, naming the key."""
    common = [*TINY, "model=sage_next_click", "model.popularity.publication=true", "trainer.max_epochs=1",
              "trainer.enable_progress_bar=false", "model.optim.batch_size=128", "model.next_click.num_uniform=32"]
    arrival = ["+dataset.loader.arrival_share=0.5", "+dataset.loader.fresh_boost=4.0"]
    cfg = compose_train(tmp_path / "fresh", [*common, *arrival])
    metrics, objects = train_app.train(cfg)
    model = objects["model"]
    module = model.module
    assert module.popularity_bias.mlp[0].in_features == 6 and module.uses_publication
    # after the test fold: its publication times in days from its cut; serving reads the ages at the cut
    folds = objects["folds"]
    test_fold = folds["test"] if isinstance(folds, dict) else [f for f in folds if f.name == "test"][0]
    published = objects["dataset"].contents["published_at"].to_numpy()
    np.testing.assert_allclose(module.published_days.numpy(), (published - int(test_fold.cut)) / DAY, atol=1e-4)
    assert torch.isfinite(module.serving_bias()).all()
    assert np.isfinite(objects["model"].vectors).all()
    assert 0.0 <= metrics["test/recall@50"] <= 1.0
    # the test pool's probabilities are normalised over the contents published by the test cut
    # (issue 25), recomputed here from the served vectors and the learned term as of the cut
    cand = model.candidate_rows
    assert (~cand).sum() > 0 and (published[~cand] > int(test_fold.cut)).all()
    vectors = torch.from_numpy(model.vectors).double()
    temperature = float(model.optim.get("temperature", 1.0))
    for row in np.flatnonzero(cand)[:5]:
        logits = (vectors[row] @ vectors.T / temperature + module.serving_bias().double()).numpy()
        logits[row] = -np.inf
        z = np.exp(logits[cand] - logits[cand].max()).sum() * np.exp(logits[cand].max())
        kept = model.pool.neighbors[row] >= 0
        expected = np.exp(logits[model.pool.neighbors[row][kept]]) / z
        np.testing.assert_allclose(model.pool.scores[row][kept], expected, rtol=2e-4)
    # with the cold-start simulation, the drawn targets are also made brand new (age 0) for the step
    cold = ["model.cold_start.share=0.5", "model.cold_start.popularity=true", "eval.folds=[val]"]
    metrics, objects = train_app.train(compose_train(tmp_path / "cold", [*common, *arrival, *cold]))
    assert objects["model"].module.cold_popularity and np.isfinite(objects["model"].vectors).all()
    with pytest.raises(ValueError, match="model.popularity.publication=true needs a 'published_at' column"):
        train_app.train(compose_train(tmp_path / "plain", common))


def test_pool_weight_scales_the_popularity_term_in_the_pool_only(tmp_path):
    """model.popularity.pool_weight=w: the pool's probabilities are softmax(<h_t, h_c> / T + w b_c)
    over the candidates, recomputed here from the served vectors and the learned term; w = 0 ranks
    every row by the inner products alone. Training is the same (the term keeps weight 1 there)."""
    common = [*TINY, "model=sage_next_click", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
              "model.optim.batch_size=128", "model.next_click.num_uniform=32", "eval.folds=[val]"]
    for w in (0.5, 0.0):
        metrics, objects = train_app.train(compose_train(tmp_path / f"w{w}", [*common, f"model.popularity.pool_weight={w}"]))
        model = objects["model"]
        bias = model.module.serving_bias().double()
        assert bias.abs().max() > 0  # a real term to weigh
        vectors = torch.from_numpy(model.vectors).double()
        temperature = float(model.optim.get("temperature", 1.0))
        cand = model.candidate_rows
        for row in np.flatnonzero(cand)[:5]:
            logits = (vectors[row] @ vectors.T / temperature + w * bias).numpy()
            logits[row] = -np.inf
            kept = model.pool.neighbors[row] >= 0
            z = np.exp(logits[cand] - logits[cand].max()).sum() * np.exp(logits[cand].max())
            np.testing.assert_allclose(model.pool.scores[row][kept], np.exp(logits[model.pool.neighbors[row][kept]]) / z,
                                       rtol=2e-4)
            if w == 0.0:  # by similarity alone: the row is the top of the inner products
                sims = (vectors[row] @ vectors.T).numpy()
                sims[row], sims[~cand] = -np.inf, -np.inf
                top = np.sort(sims)[::-1][: kept.sum()]
                np.testing.assert_allclose(sims[model.pool.neighbors[row][kept]], top, rtol=1e-5)
    with pytest.raises(Exception, match="model.popularity.pool_weight"):
        train_app.train(compose_train(tmp_path / "bad", [*common, "model.popularity.pool_weight=-1"]))
    with pytest.raises(Exception, match=r"model.popularity.pool_weight=0.5 weighs .* which is off"):
        train_app.train(compose_train(tmp_path / "off", [*common, "model.popularity.enabled=false",
                                                         "model.popularity.pool_weight=0.5"]))


def test_choose_pool_weight_by_hand():
    """The best recall among the weights at or above the floor (ties: grid order); none there: the
    widest, flagged; no floor: the best recall. Grids are refused when empty, negative or repeated."""
    from graphrecall.recall.pool_weight import choose_pool_weight, pool_weight_grid

    grid = [1.0, 0.5, 0.3, 0.0]
    recall = {1.0: 0.0787, 0.5: 0.0754, 0.3: 0.0696, 0.0: 0.0222}
    coverage = {1.0: 0.0054, 0.5: 0.0498, 0.3: 0.256, 0.0: 0.978}
    assert choose_pool_weight(grid, recall, coverage, None) == (1.0, True)
    assert choose_pool_weight(grid, recall, coverage, 0.106) == (0.3, True)  # 0.5 covers 5%: below the floor
    assert choose_pool_weight(grid, recall, coverage, 0.0498) == (0.5, True)  # at the floor counts
    assert choose_pool_weight(grid, recall, coverage, 0.99) == (0.0, False)  # none: the widest
    tie = {1.0: 0.07, 0.5: 0.07, 0.3: 0.06, 0.0: 0.02}
    assert choose_pool_weight(grid, tie, coverage, None) == (1.0, True)
    assert choose_pool_weight([0.5, 1.0, 0.3, 0.0], tie, coverage, None) == (0.5, True)
    assert choose_pool_weight(grid, recall, {w: 0.1 for w in grid}, 0.5) == (1.0, False)  # equal widths: first
    assert pool_weight_grid(0.3) == [0.3] and pool_weight_grid([1, 0.5]) == [1.0, 0.5]
    for bad, why in (([], "non-empty"), ([0.5, -1], ">= 0"), ([0.5, 0.5], "twice")):
        with pytest.raises(ValueError, match=why):
            pool_weight_grid(bad)


def test_pool_weight_grid_is_chosen_on_validation_under_a_coverage_floor(tmp_path, caplog):
    """model.popularity.pool_weight=[1, 0.5, 0]: one trained model, one pool per weight, the weight
    chosen on the val fold. With one epoch every weight's pool comes from the same vectors, so each
    weight's logged validation recall and coverage must equal a separate run at that fixed weight, the
    choice must follow the rule on those numbers, and the test fold must be served exactly as the
    separate run at the chosen weight serves it."""
    common = [*TINY, "model=sage_next_click", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
              "model.optim.batch_size=128", "model.next_click.num_uniform=32"]
    grid = [1.0, 0.5, 0.0]
    fixed = {w: train_app.train(compose_train(tmp_path / f"w{w}", [*common, f"model.popularity.pool_weight={w}"]))[0]
             for w in grid}
    recall = {w: m["val/recall@50"] for w, m in fixed.items()}
    coverage = {w: m["val/coverage@50"] for w, m in fixed.items()}
    assert len(set(recall.values())) > 1  # the weights differ here, so the choice is a real one

    def grid_run(name: str, extra: list[str]) -> tuple[dict[str, float], dict]:
        return train_app.train(compose_train(tmp_path / name, [*common, "model.popularity.pool_weight=[1.0,0.5,0.0]",
                                                               *extra]))

    def logged(metrics: dict[str, float]) -> None:
        for w in grid:
            assert metrics[f"val/fit/pool_weight/val_recall@50_w={w:g}"] == pytest.approx(recall[w], abs=1e-12)
            assert metrics[f"val/fit/pool_weight/val_coverage@50_w={w:g}"] == pytest.approx(coverage[w], abs=1e-12)
        # the served pool's build info and health are the chosen weight's (whichever place it has in the grid)
        same = fixed[metrics["val/fit/pool_weight"]]
        keys = [k for k in same if k.startswith("val/fit/pool/") and k != "val/fit/pool/seconds"]
        assert len(keys) >= 6 and {k: metrics.get(k) for k in keys} == {k: same[k] for k in keys}

    # no floor: the best validation recall (ties: the first)
    best = max(grid, key=lambda w: (recall[w], -grid.index(w)))
    metrics, _ = grid_run("grid", [])
    logged(metrics)
    assert metrics["val/fit/pool_weight"] == best and "val/fit/pool_weight_floor_met" not in metrics
    for key in ("val/recall@50", "val/coverage@50", "val/fit/pool/distinct_top10", "test/recall@50",
                "test/ndcg@50", "test/coverage@50", "test/fit/pool/distinct_top10"):
        assert metrics[key] == pytest.approx(fixed[best][key], abs=1e-12), key
    # a floor at the widest coverage: the best recall among the widest
    floor = max(coverage.values())
    expected = max((w for w in grid if coverage[w] >= floor), key=lambda w: (recall[w], -grid.index(w)))
    metrics, _ = grid_run("floor", [f"model.popularity.pool_weight_min_coverage={floor}", "eval.folds=[val]"])
    logged(metrics)
    assert metrics["val/fit/pool_weight"] == expected and metrics["val/fit/pool_weight_floor_met"] == 1.0
    assert metrics["val/recall@50"] == pytest.approx(recall[expected], abs=1e-12)
    # a floor nobody reaches: the widest (first on a tie), flagged and warned
    assert floor < 1.0
    widest = max(grid, key=lambda w: (coverage[w], -grid.index(w)))
    with caplog.at_level("WARNING"):
        metrics, objects = grid_run("unmet", ["model.popularity.pool_weight_min_coverage=1.0", "eval.folds=[val]"])
    logged(metrics)
    assert metrics["val/fit/pool_weight"] == widest and metrics["val/fit/pool_weight_floor_met"] == 0.0
    assert "no weight of [1.0, 0.5, 0.0] reaches the coverage floor 1.0" in caplog.text
    # refusals: a floor without a grid, a choice on any fold but val, bad values named by key
    with pytest.raises(Exception, match="pool_weight_min_coverage=0.1 is the floor of a choice"):
        train_app.train(compose_train(tmp_path / "nogrid", [*common, "model.popularity.pool_weight_min_coverage=0.1"]))
    model, folds = objects["model"], objects["folds"]
    with pytest.raises(ValueError, match="pool_weight is a grid: it is chosen on the val fold, not on 'test'"):
        model.choose_pool_weight(folds["test"], objects["dataset"], {})
    for bad in ("model.popularity.pool_weight=[0.5,-1]", "model.popularity.pool_weight_min_coverage=1.5"):
        with pytest.raises(Exception, match=bad.split("=")[0].replace(".", r"\.")):
            train_app.train(compose_train(tmp_path / "bad", [*common, bad]))


def test_pool_weight_grid_in_m2grl(tmp_path):
    """M2GRL (stage 2) chooses the pool weight through the same fit: the logged choice follows the rule on
    the logged numbers, and the run's own validation evaluation is the chosen weight's."""
    metrics, _ = train_app.train(compose_train(tmp_path, [
        *TINY, "model=m2grl_next_click", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
        "eval.folds=[val]", "model.popularity.pool_weight=[1.0,0.0]", "model.popularity.pool_weight_min_coverage=0.3"]))
    assert_pool_weight_choice(metrics, [1.0, 0.0], 0.3)
