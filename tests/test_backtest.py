"""Rolling-origin backtests (issue 26): the windows' folds on a hand-made log, the pooled value,
the user-cluster bootstrap, the paired comparison, the windows won and the detectable difference,
each checked against a hand computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graphrecall.data.splits import DAY, make_folds, rolling_folds, rolling_origins
from tests.test_splits import at, make_dataset

# one click a day on days 0..19 (users alternate), so cuts and periods are easy to count by hand
DAILY = [(f"u{d % 3 + 1}", f"c{d % 5}", d) for d in range(20)]


def test_rolling_origins_by_days_and_by_quantile():
    ts = np.array([at(d) for d in range(20)])
    end = at(19) + 1
    # the last 3 x 2 days, 2 days each
    assert rolling_origins(ts, 3, spacing_days=2) == [(end - 6 * DAY, end - 4 * DAY), (end - 4 * DAY, end - 2 * DAY),
                                                       (end - 2 * DAY, end)]
    # by quantile: 20 evenly spread clicks, q(0.6) = day 11.4, q(0.8) = day 15.2; the last period runs to the end
    got = rolling_origins(ts, 2, first_cut_quantile=0.6, spacing_quantile=0.2)
    assert got == [(int(np.quantile(ts, 0.6)), int(np.quantile(ts, 0.8))), (int(np.quantile(ts, 0.8)), end)]
    assert got[0][0] == at(11.4)
    with pytest.raises(ValueError, match=r"first_cut_quantile \+ windows x spacing_quantile = 1.2 > 1"):
        rolling_origins(ts, 3, first_cut_quantile=0.6, spacing_quantile=0.2)
    with pytest.raises(ValueError, match=r"split.rolling.windows=0: expected a whole number >= 1"):
        rolling_origins(ts, 0, spacing_days=2)
    with pytest.raises(ValueError, match="do not fit the log"):
        rolling_origins(np.array([at(0), at(0)]), 2, first_cut_quantile=0.2, spacing_quantile=0.3)


def test_each_window_is_cut_where_configured_and_never_overlaps_its_test():
    ds = make_dataset(DAILY)
    end = at(19) + 1
    tests = []
    for k in range(3):
        folds = make_folds(ds, {"kind": "rolling", "rolling": {"windows": 3, "index": k, "spacing_days": 2,
                                                                "window_days": 5, "val_days": 2}})
        val, test = folds["val"], folds["test"]
        cut = end - (3 - k) * 2 * DAY
        assert test.cut == cut and val.cut == cut - 2 * DAY
        assert test.info["window"] == k and test.info["window_end"] == cut + 2 * DAY
        # training windows end at their cut; nothing of a fold's own targets is in its train or history
        for fold, fold_end in ((val, cut), (test, cut + 2 * DAY)):
            assert fold.train["timestamp"].max() < fold.cut and fold.history["timestamp"].max() < fold.cut
            assert fold.train["timestamp"].min() >= fold.cut - 5 * DAY
        test_clicks = ds.clicks[(ds.clicks["timestamp"] >= cut) & (ds.clicks["timestamp"] < cut + 2 * DAY)]
        assert len(test.targets) <= len(test_clicks) == 2
        tests.append((cut, cut + 2 * DAY))
    assert all(a[1] <= b[0] for a, b in zip(tests, tests[1:]))  # the windows' test periods are disjoint
    with pytest.raises(ValueError, match=r"split.rolling.index=3: expected a whole number in \[0, 2\]"):
        rolling_folds(make_folds.__globals__["encode_clicks"](ds), 3, 3, spacing_days=2)


# ------------------------------------------------------------------------------------- pooling


def test_cluster_bootstrap_moves_a_users_windows_together():
    # user a: two windows at 1.0; user b: one window at 0.0. Drawing users, a resample holds {a, a}
    # (mean 1), {a, b} (2 / 3) or {b, b} (0); drawing rows independently could also give 1 / 3.
    from graphrecall.backtest import cluster_bootstrap

    values, users = np.array([1.0, 1.0, 0.0]), np.array(["a", "a", "b"])
    ci = cluster_bootstrap(values, users, num_resamples=400, seed=1)
    assert ci.mean == pytest.approx(2 / 3)  # the pooled value: the mean over user-windows
    rng = np.random.default_rng(1)
    draws = rng.multinomial(2, [0.5, 0.5], size=400)  # the same draws, by hand: [times a, times b]
    stats = (draws[:, 0] * 2.0) / (draws[:, 0] * 2 + draws[:, 1])
    assert set(np.round(stats, 6)) <= {1.0, round(2 / 3, 6), 0.0}
    assert (ci.low, ci.high) == (pytest.approx(np.quantile(stats, 0.025)), pytest.approx(np.quantile(stats, 0.975)))


def test_detectable_difference_by_hand():
    from graphrecall.backtest import cluster_standard_error, detectable_difference

    d, users = np.array([0.1, 0.3, -0.2, 0.0]), np.array(["a", "a", "b", "c"])
    # mean 0.05; per-user residual sums a: 0.05 + 0.25 = 0.3, b: -0.25, c: -0.05; sum of squares 0.155
    se = np.sqrt(3 / 2 * 0.155) / 4
    assert cluster_standard_error(d, users) == pytest.approx(se)
    assert detectable_difference(d, users) == pytest.approx((1.959964 + 0.841621) * se, rel=1e-5)
    # one row per cluster: the textbook s / sqrt(n) up to sqrt(n / (n - 1)) ... n / (n - 1) inside
    x = np.array([1.0, 2.0, 4.0])
    assert cluster_standard_error(x, np.arange(3)) == pytest.approx(np.std(x, ddof=1) / np.sqrt(3))


def test_paired_comparison_pairs_user_windows_and_counts_windows_won():
    from graphrecall.backtest import paired, pooled_table

    frame = pd.DataFrame({
        "label": ["A"] * 4 + ["B"] * 4,
        "window": [0, 0, 1, 1] * 2,
        "u": [1, 2, 1, 3] * 2,
        "value": [0.5, 0.2, 0.4, 0.0, 0.3, 0.2, 0.5, 0.1],
        "seeds": 1,
    })
    table = pooled_table(frame, num_resamples=200)
    a = table.set_index("label").loc["A"]
    assert a["pooled"] == pytest.approx(np.mean([0.5, 0.2, 0.4, 0.0])) and a["users"] == 3 and a["user_windows"] == 4
    assert (a["w0"], a["w1"]) == (pytest.approx(0.35), pytest.approx(0.2))
    c = paired(frame, "A", "B", num_resamples=200)
    assert c["mean"] == pytest.approx(np.mean([0.2, 0.0, -0.1, -0.1]))
    # window 0: A 0.35 vs B 0.25 (won); window 1: 0.2 vs 0.3 (lost)
    assert (c["won"], c["lost"], c["tied"]) == (1, 1, 0) and c["users"] == 3


@pytest.mark.slow
def test_backtest_runs_from_one_command_and_pools(tmp_path):
    """experiment=backtest_synthetic on the tiny world: 4 windows x 2 models in one sweep folder, then
    graphrecall.backtest; the pooled value equals the mean of the per-user-window values read here."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, TINY

    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "train.py", "experiment=backtest_synthetic", "model=popular,coclick", *TINY,
           f"data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [p.parent for p in sweep.rglob("metrics.json")]
    assert len(runs) == 8
    out = subprocess.run([sys.executable, "-m", "graphrecall.backtest", str(sweep), "--baseline", "model=popular",
                          "--metric", "recall@50", "--metric", "ndcg@50",
                          "--out", str(tmp_path / "backtest.md"), "--resamples", "200"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    values = {"popular": [], "coclick": []}
    ndcg = []
    cuts = set()
    for run in runs:
        cfg = json.loads((run / "config_resolved.json").read_text())
        table = pd.read_parquet(run / "per_user_test.parquet")
        values[cfg["choices"]["model"]].extend(table.loc[table["warm"], "recall@50"].dropna().tolist())
        if cfg["choices"]["model"] == "coclick":
            ndcg.extend(table.loc[table["warm"], "ndcg@50"].dropna().tolist())
        cuts.add(json.loads((run / "metrics.json").read_text())["details"]["folds"]["test"]["cut"])
    assert len(cuts) == 4  # four distinct windows
    text = (tmp_path / "backtest.md").read_text()
    row, ndcg_row = [line for line in text.splitlines() if line.startswith("| model=coclick")][:3:2]
    assert f"{np.mean(values['coclick']):.4f} [" in row
    assert "pooled test warm ndcg@50" in text and f"{np.mean(ndcg):.4f} [" in ndcg_row  # the second table
    assert "| model=coclick dataset=synthetic | model=popular dataset=synthetic |" in text
    bad = subprocess.run([sys.executable, "-m", "graphrecall.backtest", str(tmp_path / "nowhere")], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "nowhere" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_serving_choice_pooled_over_the_validation_windows(tmp_path):
    """--pooled-serving: the beta chosen on all windows' validation users together (recomputed here
    from the runs' serving_grid_val.parquet), then each window's test values at that beta."""
    import os
    import subprocess
    import sys

    from graphrecall.backtest import pooled_serving
    from tests.conftest import ROOT, TINY

    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "train.py", "experiment=backtest_synthetic", "model=coclick", "recall.mode=aggregate",
           "recall.popularity_beta=[0,1]", *TINY, f"data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p.parent for p in sweep.rglob("serving_grid_val.parquet"))
    assert len(runs) == 4 and all((r / "serving_grid_test.parquet").exists() for r in runs)
    val = pd.concat([pd.read_parquet(r / "serving_grid_val.parquet") for r in runs])
    pooled = val[["recall@50|beta=0", "recall@50|beta=1"]].mean()
    chosen = "beta=0" if pooled.iloc[0] >= pooled.iloc[1] else "beta=1"
    rows = pooled_serving([sweep])
    assert rows["label"].unique().tolist() == [f"model=coclick dataset=synthetic serving=pooled-val({chosen})"]
    expected = pd.concat([t[t["warm"]] for t in (pd.read_parquet(r / "serving_grid_test.parquet") for r in runs)])
    assert rows["value"].mean() == pytest.approx(expected[f"recall@50|{chosen}"].dropna().mean())
    # chosen on validation NDCG@50 instead: pooled, and each window on its own, by hand
    ndcg = val[["ndcg@50|beta=0", "ndcg@50|beta=1"]].mean()
    on_ndcg = "beta=0" if ndcg.iloc[0] >= ndcg.iloc[1] else "beta=1"
    rows = pooled_serving([sweep], metric="ndcg@50", choose_on="ndcg@50")
    assert rows["label"].unique().tolist() == [f"model=coclick dataset=synthetic serving=pooled-val-ndcg@50({on_ndcg})"]
    assert rows["value"].mean() == pytest.approx(expected[f"ndcg@50|{on_ndcg}"].dropna().mean())
    own_rows = pooled_serving([sweep], choose_on="ndcg@50", scope="window")
    assert own_rows["label"].unique().tolist() == ["model=coclick dataset=synthetic serving=val-ndcg@50"]
    by_hand = []
    for r in runs:
        v, t = pd.read_parquet(r / "serving_grid_val.parquet"), pd.read_parquet(r / "serving_grid_test.parquet")
        own = "beta=0" if v["ndcg@50|beta=0"].mean() >= v["ndcg@50|beta=1"].mean() else "beta=1"
        by_hand += t.loc[t["warm"], f"recall@50|{own}"].dropna().tolist()
    assert own_rows["value"].mean() == pytest.approx(np.mean(by_hand))
    from graphrecall.backtest import BacktestError

    with pytest.raises(BacktestError, match="no hit@7"):
        pooled_serving([sweep], choose_on="hit@7")
    # the command: both scopes, both choice metrics; the window scope adds no recall@50 row (the served one)
    out = subprocess.run([sys.executable, "-m", "graphrecall.backtest", str(sweep), "--pooled-serving",
                          "--window-serving", "--choose-on", "recall@50", "--choose-on", "ndcg@50", "--resamples", "50"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    labels = [line.split(" | ")[0][2:] for line in out.stdout.splitlines() if line.startswith("| model=coclick")]
    assert labels[:4] == ["model=coclick dataset=synthetic", f"model=coclick dataset=synthetic serving=pooled-val({chosen})",
                          f"model=coclick dataset=synthetic serving=pooled-val-ndcg@50({on_ndcg})",
                          "model=coclick dataset=synthetic serving=val-ndcg@50"]
    row = [line for line in out.stdout.splitlines() if line.startswith("| model=coclick dataset=synthetic serving=val-")]
    assert f"{np.mean(by_hand):.4f} [" in row[0]
    # each window's own choice is what the run served: its test recall equals the grid at its chosen beta
    import json

    for r in runs:
        m = json.loads((r / "metrics.json").read_text())["metrics"]
        own = f"beta={m['val/fit/serving/popularity_beta']:g}"
        grid = pd.read_parquet(r / "serving_grid_test.parquet")
        assert grid[f"recall@50|{own}"].mean() == pytest.approx(m["test/recall@50"])


def test_channel_slots_chosen_on_a_pooled_table_by_hand():
    """choose_slots: channels in order, each grid's count by the best mean with the later ones off
    (ties: the first), auto from the share of all target pairs; a count the table lacks is refused."""
    from graphrecall.backtest import BacktestError, choose_slots

    # three users of two windows' tables concatenated; grid channel a in [2, 0, 1], auto channel b
    val = pd.DataFrame({
        "pairs": [10, 20, 10], "pairs|b": [1, 1, 0],  # b's share: 2 / 40 -> round(50 x 0.05) = round(2.5) = 2
        "recall@50|a=0,b=0": [0.1, 0.2, 0.3],  # mean 0.2
        "recall@50|a=1,b=0": [0.3, 0.3, 0.3],  # mean 0.3, tied with a=2: the grid's first, 2, wins
        "recall@50|a=2,b=0": [0.0, 0.4, 0.5],
        "recall@50|a=2,b=2": [0.0, 0.0, 0.0], "recall@50|a=1,b=2": [0.0, 0.0, 0.0],  # b does not read a metric
        "ndcg@50|a=0,b=0": [0.9, 0.9, 0.9], "ndcg@50|a=1,b=0": [0.0] * 3, "ndcg@50|a=2,b=0": [0.0] * 3,
        "ndcg@50|a=0,b=2": [0.0] * 3,
    })
    assert choose_slots(val, {"a": [2, 0, 1], "b": "auto"}) == {"a": 2, "b": 2}
    assert choose_slots(val, {"a": [1, 2, 0], "b": "auto"}) == {"a": 1, "b": 2}  # the tie, in this grid's order
    assert choose_slots(val, {"a": [2, 0, 1], "b": "auto"}, choose_on="ndcg@50") == {"a": 0, "b": 2}
    with pytest.raises(BacktestError, match=r"auto takes 2 slots .*eval.channel_grid_auto_max"):
        choose_slots(val.drop(columns=["recall@50|a=2,b=2"]), {"a": [2, 0, 1], "b": "auto"})
    with pytest.raises(BacktestError, match=r"no column recall@50\|a=3,b=0"):
        choose_slots(val, {"a": [3], "b": "auto"})


@pytest.mark.slow
def test_channel_slots_chosen_on_the_pooled_validation_windows(tmp_path):
    """--pooled-channels: each run writes its channel grid (served at its own choices it gives the
    run's own test values); the slot counts are re-chosen on all windows' validation tables together
    (recomputed here by hand), then each window's test values at those counts."""
    import json
    import os
    import subprocess
    import sys

    from graphrecall.backtest import pooled_channels
    from tests.conftest import ROOT, TINY

    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "train.py", "experiment=backtest_synthetic", "model=coclick",
           "recall.channels.new.slots=[0,2]", "recall.channels.rare.slots=auto", "recall.channels.rare.min_clicks=1",
           "recall.channels.rare.max_clicks=2", "eval.channel_grid_auto_max=12", *TINY, f"data_dir={tmp_path / 'data'}",
           f"hydra.sweep.dir={sweep}"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p.parent for p in sweep.rglob("channel_grid_val.parquet"))
    assert len(runs) == 4 and all((r / "channel_grid_test.parquet").exists() for r in runs)
    for r in runs:  # each run's own choice, served from its grid, is what it served
        m = json.loads((r / "metrics.json").read_text())["metrics"]
        val, test = pd.read_parquet(r / "channel_grid_val.parquet"), pd.read_parquet(r / "channel_grid_test.parquet")
        assert len([c for c in test.columns if c.startswith("recall@50|")]) == 2 * 13  # new in {0, 2} x rare 0..12
        assert test["clicks_1-2/recall@50|new=0,rare=0"].notna().any()  # the slices the channels serve
        assert val["pairs|rare"].sum() / val["pairs"].sum() == pytest.approx(
            m["val/fit/serving/channel/rare/val_target_share"])
        own = f"new={m['val/fit/serving/channel/new/slots']:.0f},rare={m['val/fit/serving/channel/rare/slots']:.0f}"
        served = pd.read_parquet(r / "per_user_test.parquet").set_index("u")
        for metric in ("recall@50", "ndcg@50", "clicks_0/recall@50", "clicks_1-2/recall@50", "clicks_10+/recall@50"):
            assert test.set_index("u")[f"{metric}|{own}"].to_numpy() == pytest.approx(
                served.loc[test["u"], metric].to_numpy(), nan_ok=True)
    val = pd.concat([pd.read_parquet(r / "channel_grid_val.parquet") for r in runs])
    new = 0 if val["recall@50|new=0,rare=0"].mean() >= val["recall@50|new=2,rare=0"].mean() else 2
    rare = int(round(50 * val["pairs|rare"].sum() / val["pairs"].sum()))
    chosen = f"new={new},rare={rare}"
    rows = pooled_channels([sweep])
    assert rows["label"].unique().tolist() == [f"model=coclick dataset=synthetic channels=pooled-val({chosen})"]
    expected = pd.concat([t[t["warm"]] for t in (pd.read_parquet(r / "channel_grid_test.parquet") for r in runs)])
    assert rows["value"].mean() == pytest.approx(expected[f"recall@50|{chosen}"].dropna().mean())
    assert len(rows) == expected[f"recall@50|{chosen}"].notna().sum()
    # --channel-grid: both channels chosen from 0, 2 on the pooled validation recall, in order, by hand
    new_g = 0 if val["recall@50|new=0,rare=0"].mean() >= val["recall@50|new=2,rare=0"].mean() else 2
    rare_g = 0 if val[f"recall@50|new={new_g},rare=0"].mean() >= val[f"recall@50|new={new_g},rare=2"].mean() else 2
    on_grid = f"new={new_g},rare={rare_g}"
    grid_rows = pooled_channels([sweep], slot_grid=[0, 2])
    assert grid_rows["label"].unique().tolist() == [f"model=coclick dataset=synthetic channels=pooled-val-grid({on_grid})"]
    assert grid_rows["value"].mean() == pytest.approx(expected[f"recall@50|{on_grid}"].dropna().mean())
    out = subprocess.run([sys.executable, "-m", "graphrecall.backtest", str(sweep), "--pooled-channels",
                          "--channel-grid", "0,2", "--resamples", "50"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    row = [line for line in out.stdout.splitlines() if f"channels=pooled-val({chosen})" in line]
    assert len(row) == 1 and f"{rows['value'].mean():.4f} [" in row[0]
    assert any(f"channels=pooled-val-grid({on_grid})" in line for line in out.stdout.splitlines())
    none = subprocess.run([sys.executable, "-m", "graphrecall.backtest", str(sweep), "--pooled-channels",
                           "--fold", "val"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert none.returncode == 2 and "use --fold test" in none.stderr


def test_pooled_curve_weights_windows_by_their_validation_users():
    """Two windows' validation curves (the second stopped early), weighted 10 and 30 users: pooled
    over the 3 epochs both reached, by hand; ties go to the fewest epochs."""
    from graphrecall.backtest import pooled_curve

    a = pd.Series([0.10, 0.30, 0.20, 0.25])
    b = pd.Series([0.40, 0.30, 0.50])
    pooled, best = pooled_curve([a, b], [10, 30])
    np.testing.assert_allclose(pooled, [(1.0 + 12.0) / 40, (3.0 + 9.0) / 40, (2.0 + 15.0) / 40])
    assert best == 3
    _, tie = pooled_curve([pd.Series([0.2, 0.3, 0.3])], [5])
    assert tie == 2
    with pytest.raises(ValueError, match="skips an epoch"):
        pooled_curve([pd.Series([0.1, 0.2], index=[0, 2])], [1])
    with pytest.raises(ValueError, match="validation users"):
        pooled_curve([a], [0])


@pytest.mark.slow
def test_epochs_chosen_on_pooled_validation_then_refit(tmp_path):
    """--pooled-epochs on a 4-window MF backtest: the choice recomputed here from the runs' logs and
    validation users; a second backtest with model.refit_epochs=<it> refits that many epochs."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, TINY

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    common = ["train.py", "experiment=backtest_synthetic", "model=mf", "model.refit=true", "trainer.max_epochs=3",
              "trainer.early_stopping_patience=5", *TINY, f"data_dir={tmp_path / 'data'}"]
    sweep = tmp_path / "sweep"
    done = subprocess.run([sys.executable, *common, f"hydra.sweep.dir={sweep}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p.parent for p in sweep.rglob("metrics.json"))
    assert len(runs) == 4
    weighted, total = np.zeros(3), 0
    for run in runs:
        log = pd.read_csv(run / "csv" / "metrics.csv").dropna(subset=["val/recall@50"])
        users = int(pd.read_parquet(run / "per_user_val.parquet")["recall@50"].notna().sum())
        weighted += users * log["val/recall@50"].to_numpy()[:3]
        total += users
    expected = int(np.argmax(weighted / total)) + 1
    out = subprocess.run([sys.executable, "-m", "graphrecall.backtest", str(sweep), "--pooled-epochs",
                          "--resamples", "100"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"**{expected}** (`model.refit_epochs={expected}`)" in out.stdout
    fixed = tmp_path / "fixed"
    done = subprocess.run([sys.executable, *common, f"model.refit_epochs={expected}", "dataset.split.rolling.index=0,1",
                           f"hydra.sweep.dir={fixed}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for run in sorted(p.parent for p in fixed.rglob("metrics.json")):
        metrics = json.loads((run / "metrics.json").read_text())["metrics"]
        assert metrics["test/fit/refit/epochs"] == expected and metrics["test/fit/refit/fixed_epochs"] == 1.0
    bad = subprocess.run([sys.executable, "-m", "graphrecall.backtest", str(tmp_path / "nowhere"), "--pooled-epochs"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_windows_are_test_periods_so_designs_pool():
    """The 12-window preset's windows 4-11 are the 8-window design's windows (same cuts to the second),
    so runs of both pool by test period; overlapping periods of mixed designs are refused."""
    from graphrecall.backtest import BacktestError, number_windows

    rng = np.random.default_rng(0)
    ts = np.sort(rng.integers(0, 200 * int(DAY), size=5000))
    twelve = rolling_origins(ts, 12, first_cut_quantile=0.4, spacing_quantile=0.05)
    eight = rolling_origins(ts, 8, first_cut_quantile=0.6, spacing_quantile=0.05)
    early = rolling_origins(ts, 4, first_cut_quantile=0.4, spacing_quantile=0.05)
    assert twelve[4:] == eight and twelve[:4] == early
    numbers = number_windows([*eight, *early, eight[0]])
    assert [numbers[p] for p in twelve] == list(range(12))
    with pytest.raises(BacktestError, match="overlap"):
        number_windows([(0, 10), (5, 15)])


def test_backtest_preset_is_twelve_windows_from_q40(tmp_path):
    from tests.conftest import compose_train

    cfg = compose_train(tmp_path, ["experiment=backtest"])
    rolling = cfg.dataset.split.rolling
    assert cfg.dataset.split.kind == "rolling" and rolling.windows == 12 and rolling.first_cut_quantile == 0.4
    assert rolling.spacing_quantile == 0.05


def test_a_baseline_is_the_label_it_names_exactly_else_the_one_holding_its_words():
    from graphrecall.backtest import BacktestError, find_label

    labels = ["model=sage dataset=d", "model=sage dataset=d model.refit_epochs=3", "model=coclick dataset=d"]
    assert find_label(labels, "model=sage dataset=d") == labels[0]  # exact, though both hold the words
    assert find_label(labels, "model=coclick") == labels[2]
    with pytest.raises(BacktestError, match="matches 2 label"):
        find_label(labels, "model=sage")


def _fake_run(folder, model: str, world: int, seed: int, period: tuple[int, int], values: dict[int, float]) -> dict:
    """A run dict as graphrecall.report.collect_runs gives it, with its per-user test table written."""
    folder.mkdir(parents=True)
    pd.DataFrame({"u": list(values), "recall@50": list(values.values()), "warm": True}).to_parquet(
        folder / "per_user_test.parquet")
    return {"dir": str(folder), "config": {"dataset": {"loader": {"seed": world}, "split": {"kind": "rolling"}}},
            "details": {"folds": {"test": {"window_cut": period[0], "window_end": period[1]}}},
            "parts": {"model": model, "dataset": "synthetic"},
            "rep": (("seed", seed),)}  # as collect_runs labels runs whose data seed moves with the run seed


def test_worlds_keep_their_users_apart_and_number_their_own_windows(tmp_path):
    """Two synthetic worlds (dataset.loader.seed) hold a user 1 each: two users, not one averaged;
    their logs end seconds apart, so window k of each is its own k-th test period; a model seed is
    still averaged within its world's user-window."""
    from graphrecall.backtest import paired, pooled_table, run_world, user_windows

    day = 86400
    w0 = [(0, day), (day, 2 * day)]              # world 0's two test periods
    w1 = [(37, day + 37), (day + 37, 2 * day + 37)]  # world 1's: 37 s later (they overlap world 0's)
    runs = [
        _fake_run(tmp_path / "a0s0", "A", 0, 0, w0[0], {1: 1.0, 2: 0.0}),
        _fake_run(tmp_path / "a0s1", "A", 0, 1, w0[0], {1: 0.0, 2: 0.0}),  # seed 1: user 1 of world 0 -> 0.5
        _fake_run(tmp_path / "a0w1", "A", 0, 0, w0[1], {1: 1.0}),
        _fake_run(tmp_path / "a1s0", "A", 1, 0, w1[0], {1: 0.0}),
        _fake_run(tmp_path / "a1w1", "A", 1, 0, w1[1], {3: 1.0}),
        _fake_run(tmp_path / "b0", "B", 0, 0, w0[0], {1: 0.0, 2: 0.0}),
        _fake_run(tmp_path / "b0w1", "B", 0, 0, w0[1], {1: 0.0}),
        _fake_run(tmp_path / "b1", "B", 1, 0, w1[0], {1: 1.0}),
        _fake_run(tmp_path / "b1w1", "B", 1, 0, w1[1], {3: 0.0}),
    ]
    assert run_world(runs[0]) == "dataset.loader.seed=0"
    frame = user_windows([], runs=runs)
    a = frame[frame["label"] == "model=A dataset=synthetic"].set_index(["world", "window", "u"])["value"]
    # by hand: world 0 window 0: u1 (1 + 0) / 2 = 0.5, u2 0; window 1: u1 1; world 1 window 0: u1 0; window 1: u3 1
    assert a.to_dict() == {("dataset.loader.seed=0", 0, 1): 0.5, ("dataset.loader.seed=0", 0, 2): 0.0,
                           ("dataset.loader.seed=0", 1, 1): 1.0, ("dataset.loader.seed=1", 0, 1): 0.0,
                           ("dataset.loader.seed=1", 1, 3): 1.0}
    table = pooled_table(frame, num_resamples=100).set_index("label")
    row = table.loc["model=A dataset=synthetic"]
    assert row["users"] == 4 and row["user_windows"] == 5 and row["windows"] == 2  # u1, u2 of world 0; u1, u3 of world 1
    assert row["pooled"] == pytest.approx((0.5 + 0.0 + 1.0 + 0.0 + 1.0) / 5)
    assert (row["w0"], row["w1"]) == (pytest.approx(0.5 / 3), pytest.approx(1.0))
    c = paired(frame, "model=A dataset=synthetic", "model=B dataset=synthetic", num_resamples=100)
    # differences: w0 world 0 u1 +0.5, u2 0; w1 world 0 u1 +1; w0 world 1 u1 -1; w1 world 1 u3 +1
    assert c["user_windows"] == 5 and c["users"] == 4 and c["mean"] == pytest.approx(1.5 / 5)
    # one legend: the worlds' periods fall on the same dates
    assert frame.attrs["windows"] == "0: [1970-01-01, 1970-01-02); 1: [1970-01-02, 1970-01-03)"
    # a world missing a window would shift its numbering: refused
    from graphrecall.backtest import BacktestError

    with pytest.raises(BacktestError, match="different numbers of windows"):
        user_windows([], runs=[r for r in runs if r["dir"] != str(tmp_path / "a1w1") and r["dir"] != str(tmp_path / "b1w1")])
