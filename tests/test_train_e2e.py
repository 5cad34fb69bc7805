"""End-to-end: train.py's train() for every model config, determinism, evaluate.py, the CLI + report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF, ROOT, TINY, compose_train

sys.path.insert(0, str(ROOT))
import evaluate as evaluate_app  # noqa: E402
import train as train_app  # noqa: E402

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_trains_and_evaluates(model, tiny_cfg):
    cfg = tiny_cfg([f"model={model}"])
    metrics, objects = train_app.train(cfg)
    run = Path(cfg.run_dir)
    for name in ("config_resolved.json", "metrics.json", "metrics_table.txt", "per_user_test.parquet"):
        assert (run / name).exists(), name
    for key in ("val/recall@50", "test/recall@50", "test/ndcg@20", "test/coverage@50",
                "test/distinct_style@50", "test_interest_only/recall@50", "test/cold/recall@50"):
        assert key in metrics, key
        assert np.isfinite(metrics[key]) or "cold" in key
    assert 0.0 <= metrics["test/recall@50"] <= 1.0
    # the per-user file agrees with the reported mean
    per_user = pd.read_parquet(run / "per_user_test.parquet")
    assert per_user["recall@50"].mean() == pytest.approx(metrics["test/recall@50"])
    saved = json.loads((run / "config_resolved.json").read_text())
    assert saved["model"]["_target_"] == cfg.model._target_ and saved["seed"] == cfg.seed
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert saved["git_revision"] is None or saved["git_revision"].split("+")[0] == head


def test_same_seed_same_metrics(tiny_cfg, tmp_path):
    a, _ = train_app.train(tiny_cfg(["model=coclick"]))
    cfg_b = compose_train(tmp_path / "b", [*TINY, "model=coclick"])
    b, _ = train_app.train(cfg_b)
    # NaN marks an empty slice (e.g. no cold user with a target on a rare content): equal to itself here
    drop = lambda m: {k: ("nan" if v != v else v) for k, v in m.items() if "seconds" not in k}  # noqa: E731
    assert drop(a) == drop(b)


@pytest.mark.parametrize("model", ["coclick", "sage"])
def test_trains_and_evaluates_with_content_arrival(model, tiny_cfg):
    # The `fresh` preset's parameters on the tiny world: a published_at column flows through training.
    arrival = ["+dataset.loader.arrival_share=0.5", "+dataset.loader.fresh_boost=4.0", "+dataset.loader.uniform_exposure=0.6"]
    metrics, objects = train_app.train(tiny_cfg([f"model={model}", *arrival]))
    assert "published_at" in objects["dataset"].contents.columns
    for key in ("test/recall@50", "test_interest_only/recall@50"):
        assert 0.0 <= metrics[key] <= 1.0, key


def test_coclick_serves_warm_users_from_triggers(tiny_cfg):
    metrics, objects = train_app.train(tiny_cfg(["model=coclick"]))
    ev = [e for e in objects["evaluations"] if e.name == "test"][0]
    # users with history are served from their triggers, cold users only from the back-fill
    warm = ev.per_user["u"].isin(objects["folds"]["test"].history["u"]).to_numpy()
    counters = ev.recs.counters
    assert counters["from_triggers"][warm].sum() > 0
    assert counters["from_triggers"][~warm].sum() == 0


def test_evaluate_reproduces_train_metrics_and_exports(tiny_cfg, tmp_path):
    cfg = tiny_cfg(["model=coclick"])
    metrics, objects = train_app.train(cfg)
    users = objects["dataset"].users["user_id"].head(7)
    users_file = tmp_path / "users.csv"
    pd.DataFrame({"user_id": users}).to_csv(users_file, index=False)
    ecfg = OmegaConf.load(CONF / "evaluate.yaml")
    ecfg.pop("hydra")
    ecfg.run_dir, ecfg.out_dir = cfg.run_dir, str(tmp_path / "evaluate")
    ecfg.eval.export.enabled = True
    ecfg.eval.export.k = 10
    ecfg.eval.export.users_file = str(users_file)
    ecfg.eval.bootstrap.num_resamples = 50
    emetrics = evaluate_app.evaluate(ecfg)
    for key in ("test/recall@50", "test/ndcg@50", "test/coverage@50", "test/distinct_space@50"):
        assert emetrics[key] == pytest.approx(metrics[key])
    recs = pd.read_parquet(tmp_path / "evaluate" / "recommendations.parquet")
    assert list(recs.columns) == ["user_id", "content_id", "rank", "score", "source"]
    assert set(recs["user_id"]) <= set(users) and recs.groupby("user_id")["rank"].max().max() <= 10
    # no user is recommended something they clicked before the cut
    hist = objects["folds"]["test"].history
    seen = set(zip(objects["dataset"].users["user_id"].to_numpy()[hist["u"]],
                   objects["dataset"].contents["content_id"].to_numpy()[hist["i"]]))
    assert not any((u, c) in seen for u, c in zip(recs["user_id"], recs["content_id"]))


def test_cli_multirun_and_report(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "train.py", "experiment=baselines", "dataset=synthetic", "dataset.loader.preset=tiny",
           "eval.bootstrap.num_resamples=20", f"data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    from graphrecall.report import collect_runs, main as report_main

    runs = collect_runs(sweep)
    assert sorted(r["label"] for r in runs) == sorted(["model=coclick dataset=synthetic", "model=popular dataset=synthetic",
                                                       "model=popular_group dataset=synthetic"])
    text = report_main([str(sweep), "--out", str(tmp_path / "results.md"), "--extra", "val/recall@50"])
    assert "| model=coclick dataset=synthetic | 1 |" in text and (tmp_path / "results.md").exists()
    # the extra column shows the run's own validation value, read independently here
    coclick = [r for r in runs if r["label"] == "model=coclick dataset=synthetic"][0]
    row = [line for line in text.splitlines() if line.startswith("| model=coclick dataset=synthetic")][0]
    assert row.split("|")[-2].strip() == f"{coclick['metrics']['val/recall@50']:.4f}"


def test_make_train_flagship_sweep_and_report(tmp_path):
    """`make train` (experiment=flagship: the sweep writes its own results.md) on the tiny world."""
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "train.py", "experiment=flagship", "dataset=synthetic", "dataset.loader.preset=tiny",
           "trainer.max_epochs=2", "eval.bootstrap.num_resamples=20", f"data_dir={tmp_path / 'data'}",
           f"hydra.sweep.dir={sweep}"]
    done = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    from graphrecall.report import collect_runs

    runs = {r["label"]: r for r in collect_runs(sweep)}
    flagship_label = "model=sage_next_click_confident aggregator=mean dataset=synthetic"
    assert sorted(runs) == ["model=coclick dataset=synthetic", "model=popular dataset=synthetic", flagship_label]
    flagship = runs[flagship_label]["metrics"]
    # validation chose the epochs and the popularity bonus; the test model was refit for exactly those epochs
    assert flagship["test/fit/refit/epochs"] == flagship["val/fit/selected_epochs"]
    assert flagship["val/fit/serving/popularity_beta"] in (0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10)
    assert 0 <= flagship["val/fit/serving/min_score_index"] < 9  # and the confidence cut-off (index 0: off)
    text = (sweep / "results.md").read_text()  # written by the sweep itself (graphrecall.sweep_summary)
    assert f"| {flagship_label} | 1 |" in text and f"sweep: {sweep}" in done.stdout
    assert "| warm/recall@50 |" in text  # the headline slice is a column of the printed table


def test_train_exports_listed_users(tiny_cfg, tmp_path):
    users_file = tmp_path / "users.csv"
    pd.DataFrame({"user_id": [0, 3, 7]}).to_csv(users_file, index=False)
    cfg = tiny_cfg(["model=coclick", "eval.export.enabled=true", f"eval.export.users_file={users_file}",
                    "eval.export.k=5"])
    train_app.train(cfg)
    recs = pd.read_parquet(Path(cfg.run_dir) / "recommendations.parquet")
    assert sorted(recs["user_id"].unique()) == [0, 3, 7]
    assert recs.groupby("user_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()
    assert not list(Path(cfg.run_dir).glob("*.tmp"))


def test_experiment_recipes_override_the_primary_config(tmp_path):
    """An experiment's own values (task_name, eval.select_on) must win over train.yaml's defaults."""
    from tests.conftest import compose_train

    cfg = compose_train(tmp_path, ["experiment=debias"])
    assert cfg.task_name == "debias" and cfg.eval.select_on == "interest_only"
    assert cfg.model.figure.enabled is False and cfg.trainer.early_stopping_patience == 6
    assert compose_train(tmp_path, ["experiment=debias", "eval.select_on=targets"]).eval.select_on == "targets"
    plain = compose_train(tmp_path, [])
    assert plain.task_name == "train" and plain.eval.select_on == "targets"
