"""Optuna searches (graphrecall.search) on the tiny synthetic world: trial values, resume, failure
budget, unknown metrics, pruning through the Lightning loop, studies that cannot mix, validation-only
trials, Optuna's plots (files and a W&B study run), the best setting's rerun, SIGINT / SIGTERM."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from omegaconf import OmegaConf

from graphrecall import best_setting, search
from graphrecall.models.sage import SageRecall
from tests.conftest import ROOT, TINY

State = optuna.trial.TrialState


def _train(tmp: Path) -> list[str]:
    return [*TINY, f"data_dir={tmp / 'data'}", f"cache_dir={tmp / 'cache'}"]


def _study(tmp: Path, *extra: str) -> list[str]:
    return [f"storage=sqlite:///{tmp / 'optuna.db'}", f"output_dir={tmp / 'optuna'}", *extra]


def _load(tmp: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp / 'optuna.db'}")


def _run_metrics(trial: optuna.trial.FrozenTrial) -> dict[str, float]:
    return json.loads((Path(trial.user_attrs["run_dir"]) / "metrics.json").read_text())["metrics"]


def test_coclick_tau_study_returns_run_metrics_and_resumes(tmp_path):
    summary, study = search.run_search("coclick_tau", _train(tmp_path), _study(tmp_path, "n_trials=2"))
    trials = study.get_trials()
    assert [t.state for t in trials] == [State.COMPLETE] * 2
    for t in trials:
        assert Path(t.user_attrs["run_dir"]) == tmp_path / "optuna" / "coclick_tau" / f"trial_{t.number}"
        assert math.isfinite(t.value) and t.value == _run_metrics(t)["val/recall@50"]
        assert 1e-4 <= t.params["dataset.graph_tau"] <= 1e-2
    best = json.loads((tmp_path / "optuna" / "coclick_tau" / "best.json").read_text())
    assert best == json.loads(json.dumps(summary))
    assert best["counts"]["complete"] == 2 and best["best"]["values"]["val/recall@50"] == study.best_value

    # same command, larger budget: the same study gains exactly one trial, with a fresh proposal
    _, resumed = search.run_search("coclick_tau", _train(tmp_path), _study(tmp_path, "n_trials=3"))
    again = resumed.get_trials()
    assert [t.state for t in again] == [State.COMPLETE] * 3
    assert [t.params for t in again[:2]] == [t.params for t in trials]
    assert again[2].params != again[0].params  # the reseeded sampler does not replay trial 0
    # budget already reached: nothing runs (the CLI entry point, in-process), the plots are drawn again
    for png in (tmp_path / "optuna" / "coclick_tau").glob("optuna_*.png"):
        png.unlink()
    cli = ["hparams_search=coclick_tau", *_train(tmp_path),
           *(f"hparams_search.{o}" for o in _study(tmp_path, "n_trials=3"))]
    assert search.main(cli) == 0
    assert len(_load(tmp_path, "coclick_tau").get_trials()) == 3
    assert sorted(p.name for p in (tmp_path / "optuna" / "coclick_tau").glob("optuna_*.png")) == [
        "optuna_history.png", "optuna_parallel_coordinate.png"]


def test_unknown_metric_raises_after_the_first_trial(tmp_path):
    with pytest.raises(KeyError, match=r"val/no_such_metric.*val/recall@50"):
        search.run_search("coclick_tau", _train(tmp_path),
                          _study(tmp_path, "n_trials=3", "optimized_metric=val/no_such_metric"))
    assert [t.state for t in _load(tmp_path, "coclick_tau").get_trials()] == [State.FAIL]


def test_param_path_the_config_lacks_fails_before_any_trial(tmp_path):
    with pytest.raises(ValueError, match="model.optim.lr"):  # sage params on the co-click model
        search.run_search("sage", _train(tmp_path), _study(tmp_path, "overrides=[model=coclick]"))
    assert not (tmp_path / "optuna.db").exists()


def test_failing_trial_is_recorded_and_the_study_continues_within_max_failures(tmp_path):
    scfg = search.load_study_config("coclick_tau", _study(tmp_path))
    scfg.params["dataset.split.temporal.window_days"] = {"type": "int", "low": 14, "high": 15}
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    pre = optuna.create_study(storage=url, study_name="coclick_tau", direction="maximize")
    bad = {"dataset.graph_tau": 1e-3, "dataset.split.temporal.window_days": 0}  # an empty window: train raises
    pre.enqueue_trial(bad)
    with pytest.warns(UserWarning, match="out of range"):
        summary, study = search.run_search(scfg, _train(tmp_path), ["n_trials=1", "max_failures=2"])
    trials = study.get_trials()
    assert [t.state for t in trials] == [State.FAIL, State.COMPLETE]
    assert "window_days" in trials[0].user_attrs["error"]  # the empty window, named by the train config check
    assert summary["counts"]["fail"] == 1 and not summary["stopped_by_failures"]
    assert summary["best"]["number"] == 1

    # the failure budget: max_failures=1 stops at the first failure, before the trial budget
    pre.enqueue_trial(bad)
    with pytest.warns(UserWarning, match="out of range"):
        summary, study = search.run_search(scfg, _train(tmp_path), ["n_trials=3", "max_failures=1"])
    assert [t.state for t in study.get_trials()] == [State.FAIL, State.COMPLETE, State.FAIL]
    assert summary["stopped_by_failures"]


def test_multi_objective_study_writes_its_pareto_front(tmp_path):
    summary, study = search.run_search("coclick_tau", _train(tmp_path), _study(
        tmp_path, "n_trials=2", "directions=[maximize,maximize]",
        "optimized_metrics=[val/recall@50,val/distinct_style@50]"))
    assert len(study.directions) == 2 and summary["best_trials"]
    for b in summary["best_trials"]:
        m = _run_metrics(study.trials[b["number"]])
        assert b["values"] == {"val/recall@50": m["val/recall@50"], "val/distinct_style@50": m["val/distinct_style@50"]}


def test_sage_trial_is_pruned_through_the_lightning_loop(tmp_path):
    scfg = search.load_study_config("sage", _study(tmp_path, "n_trials=1"))
    scfg.pruner = {"name": "threshold", "lower": 1.1, "monitor": "val/recall@50"}  # recall < 1.1: prune at once
    scfg.params = {"model.optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
    fast = ["trainer.max_epochs=3", "trainer.early_stopping_patience=0", "model.optim.batch_size=256"]
    summary, study = search.run_search(scfg, [*_train(tmp_path), *fast])
    (trial,) = study.get_trials()
    assert trial.state == State.PRUNED
    assert list(trial.intermediate_values) == [0] and 0.0 <= trial.intermediate_values[0] <= 1.0
    assert summary["counts"]["pruned"] == 1 and summary["best"] is None
    assert SageRecall.extra_callbacks is None  # callbacks go to the trial's model instance, not the class


# ---- parallel workers (hparams_search.workers) ----------------------------------------------------


def _claimed_trial(tmp: Path, name: str, worker: str) -> optuna.trial.Trial:
    """A RUNNING trial of ``name`` claimed by ``worker`` with one heartbeat, as a worker leaves it
    when it is killed mid-trial."""
    scfg = search.load_study_config(name, _study(tmp, "heartbeat_interval=1", "grace_period=2"))
    study = optuna.create_study(storage=search.make_storage(scfg), study_name=name, direction="maximize",
                                load_if_exists=True)
    trial = study.ask()
    trial.set_user_attr("worker", worker)
    study._storage.record_heartbeat(trial._trial_id)
    return trial


@pytest.mark.slow
def test_two_worker_processes_share_one_study_and_run_each_trial_once(tmp_path):
    summary, study = search.run_search("coclick_tau", _train(tmp_path), _study(tmp_path, "n_trials=4", "workers=2", "poll_seconds=0.5"))
    # two workers may claim the last slot at the same instant: the later claim is recorded FAIL
    # ("surplus") before it runs anything, by design; every other trial completes
    surplus = [t for t in study.get_trials() if t.user_attrs.get("surplus")]
    assert all(t.state == State.FAIL and "run_dir" not in t.user_attrs for t in surplus)
    assert summary["counts"]["surplus"] == len(surplus)
    trials = [t for t in study.get_trials() if not t.user_attrs.get("surplus")]
    assert [t.state for t in trials] == [State.COMPLETE] * 4 and summary["counts"]["complete"] == 4
    logs = [(tmp_path / "optuna" / "coclick_tau" / f"worker_{k}.log").read_text() for k in range(2)]
    for t in trials:
        assert t.value == _run_metrics(t)["val/recall@50"]
        # each trial was run by exactly one worker process, which logged its result
        assert sum(f"Trial {t.number} finished" in log for log in logs) == 1
    assert len({t.user_attrs["run_dir"] for t in trials}) == 4
    # workers have their own sampler seeds: four distinct proposals
    assert len({t.params["dataset.graph_tau"] for t in trials}) == 4

    # both processes worked on the same study; each summary is read when that worker stops, so the
    # first to stop may still see the other's last trial running, and a surplus claim counts as failed
    pattern = (r"study 'coclick_tau' \(.*?\): (\d+) complete, (\d+) pruned, (\d+) failed "
               r"\(of which (\d+) surplus\), (\d+) running")
    for log in logs:
        found = re.search(pattern, log)
        assert found, log
        complete, pruned, failed, surplus_count, running = map(int, found.groups())
        assert pruned == 0 and failed == surplus_count and complete + running <= 4
    # the worker that stops last summarises after every trial was told: it sees all four complete
    assert any(int(re.search(pattern, log).group(1)) == 4 for log in logs)


def test_a_dead_workers_trial_goes_stale_and_is_replaced(tmp_path):
    dead = _claimed_trial(tmp_path, "coclick_tau", "gone:1")  # never finishes, no heartbeat after this
    summary, study = search.run_search("coclick_tau", _train(tmp_path), _study(
        tmp_path, "n_trials=2", "heartbeat_interval=1", "grace_period=2", "poll_seconds=0.2"))
    trials = study.get_trials()
    assert trials[0].number == dead.number and trials[0].state == State.FAIL  # failed as stale, not run
    assert "metrics" not in trials[0].user_attrs
    assert [t.state for t in trials[1:]] == [State.COMPLETE] * 2
    assert summary["counts"] == {"complete": 2, "pruned": 0, "fail": 1, "running": 0, "waiting": 0, "surplus": 0}


def test_a_trial_asked_after_the_budget_is_taken_is_surplus_and_runs_nothing(tmp_path):
    _claimed_trial(tmp_path, "coclick_tau", "alive:1")  # a live worker holds the only slot
    scfg = search.load_study_config("coclick_tau", _study(tmp_path, "n_trials=1"))
    study = optuna.load_study(study_name="coclick_tau", storage=search.make_storage(scfg))
    objective = search.Objective(scfg, _train(tmp_path), ["val/recall@50"], tmp_path / "out", prune=False)
    budget = search.Budget(1, max_failures=1)
    study.optimize(objective, n_trials=1, catch=(search.SurplusTrial,), callbacks=[budget])
    late = study.get_trials()[-1]
    assert late.state == State.FAIL and late.user_attrs["surplus"] and not late.params
    assert not (tmp_path / "out").exists() and not budget.stopped_by_failures and budget.failures == 0


def test_storage_that_is_not_a_database_url_names_the_key(tmp_path):
    scfg = search.load_study_config("coclick_tau", _study(tmp_path, f"storage={tmp_path / 'journal.log'}"))
    with pytest.raises(ValueError, match="hparams_search.storage"):
        search.make_storage(scfg)
    scfg = search.load_study_config("coclick_tau", _study(tmp_path, "heartbeat_interval=5", "grace_period=5"))
    with pytest.raises(ValueError, match="hparams_search.grace_period"):
        search.make_storage(scfg)


def test_family_studies_share_one_budget():
    """Issue 10's equal tuning budget: every family_* study has the same trial count, sampler and
    objective, reads validation only (its trials run the val fold alone) and tunes its own model."""
    studies = {p.stem: search.load_study_config(p.stem) for p in sorted(search.STUDY_DIR.glob("family_*.yaml"))}
    assert set(studies) == {f"family_{f}" for f in ("popular", "coclick", "sage", "m2grl", "mf", "lightgcn")}
    budgets = {(s.n_trials, s.sampler.name, s.sampler.seed, s.sampler.n_startup_trials, s.optimized_metric)
               for s in studies.values()}
    assert budgets == {(24, "tpe", 0, 8, "val/warm/recall@50")}
    for name, s in studies.items():
        assert "eval.folds=[val]" in s.overrides and s.study_name == name
        assert any(str(o).startswith("model=") for o in s.overrides) and len(s.params) >= 2


# ---- studies that cannot mix, validation only, plots, the best setting's rerun, stopping (issues 24, 25)


def test_fixed_overrides_leave_out_searched_parameters_and_bookkeeping():
    overrides = ["model=coclick", "eval.folds=[ val ]", "dataset=synthetic", "dataset.loader.preset=tiny",
                 "dataset.graph_tau=0.5", "data_dir=/x", "cache_dir=/y", "logger=wandb", "logger.mode=offline",
                 "trainer.enable_progress_bar=false", "hydra.run.dir=/z", "eval.export.enabled=true",
                 "threads=2", "+model.extra=1", "~recall.min_score", "dataset.loader.preset=small"]
    fixed = search.fixed_overrides(overrides, searched=["dataset.graph_tau"])
    assert fixed == {"model": "coclick", "eval.folds": "[val]", "dataset": "synthetic", "threads": "2",
                     "model.extra": "1", "recall.min_score": None, "dataset.loader.preset": "small"}
    changes = search.changed_fixed_overrides({"dataset.loader.preset": "tiny", "seed": "1"},
                                             {"dataset.loader.preset": "small", "threads": "2"})
    assert changes == ["dataset.loader.preset: tiny -> small", "seed: 1 -> (not set)", "threads: (not set) -> 2"]
    assert search.suggest_study_name("s", {"a": "tiny"}, {"a": "small"}, taken=["s_small"]) == "s_small_2"


def test_a_study_made_before_the_record_takes_its_first_trials_overrides():
    study = optuna.create_study(direction="maximize")
    dist = {"dataset.graph_tau": optuna.distributions.FloatDistribution(1e-4, 1e-2)}
    study.add_trial(optuna.trial.create_trial(
        params={"dataset.graph_tau": 1e-3}, distributions=dist, value=0.5,
        user_attrs={"overrides": ["model=coclick", "dataset=synthetic", "data_dir=/d", "dataset.graph_tau=0.001"]}))
    assert search.recorded_fixed_overrides(study, ["dataset.graph_tau"]) == {"model": "coclick", "dataset": "synthetic"}
    study.set_user_attr("fixed_overrides", {"model": "popular"})
    assert search.recorded_fixed_overrides(study, []) == {"model": "popular"}


def test_resume_with_another_preset_is_refused_and_adds_no_trial(tmp_path, caplog):
    search.run_search("coclick_tau", _train(tmp_path), _study(tmp_path, "n_trials=2", "plots=false"))
    stored = _load(tmp_path, "coclick_tau")
    assert stored.user_attrs["fixed_overrides"] == {
        "model": "coclick", "eval.folds": "[val]", "dataset": "synthetic", "dataset.loader.preset": "tiny",
        "eval.bootstrap.num_resamples": "50"}

    small = [o.replace("preset=tiny", "preset=small") for o in _train(tmp_path)]
    cli = ["hparams_search=coclick_tau", *small, *(f"hparams_search.{o}" for o in _study(tmp_path, "n_trials=3"))]
    with caplog.at_level("ERROR", logger="graphrecall.search"):
        assert search.main(cli) == search.EXIT_MISMATCH
    (message,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "dataset.loader.preset: tiny -> small" in message and "hparams_search.study_name=coclick_tau_small" in message
    assert message.count("->") == 1  # only the key that changed is named
    after = _load(tmp_path, "coclick_tau")  # the storage, read back: nothing was added or changed
    assert [t.number for t in after.get_trials()] == [0, 1]
    assert after.user_attrs["fixed_overrides"] == stored.user_attrs["fixed_overrides"]
    # bookkeeping keys (folders, logger mode, progress bar) may change: the same study resumes
    moved = [*_train(tmp_path)[:-2], f"data_dir={tmp_path / 'data2'}", "trainer.enable_progress_bar=false"]
    summary, _ = search.run_search("coclick_tau", moved, _study(tmp_path, "n_trials=3", "plots=false"))
    assert summary["counts"]["complete"] == 3


def test_a_study_never_scores_the_test_fold(tmp_path):
    for path in search.STUDY_DIR.glob("*.yaml"):  # every shipped study runs val only
        assert "eval.folds=[val]" in search.load_study_config(path.stem).overrides, path.name
    with pytest.raises(ValueError, match=r"eval.folds=\['val', 'test'\]"):
        search.run_search("coclick_tau", [*_train(tmp_path), "eval.folds=[val,test]"], _study(tmp_path))
    assert not (tmp_path / "optuna.db").exists()


def test_study_fields_of_the_wrong_type_name_the_key():
    with pytest.raises(ValueError, match=r"hparams_search.workers='abc': expected an integer >= 1"):
        search.load_study_config("coclick_tau", ["workers=abc"])
    with pytest.raises(ValueError, match="hparams_search.rerun_seeds"):
        search.load_study_config("coclick_tau", ["rerun_seeds=[a]"])


def _png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def test_plots_are_optunas_own_and_importance_needs_two_params_and_enough_trials(tmp_path):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) - 0.1 * t.suggest_float("y", 0, 1), n_trials=6)
    written, skipped = search.write_study_plots(study, ["val/recall@50"], tmp_path)
    assert set(written) == {"history", "importance", "parallel_coordinate"} and not skipped
    assert all(_png(Path(p)) and Path(p).parent == tmp_path for p in written.values())

    few = optuna.create_study(directions=["maximize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    few.optimize(lambda t: (t.suggest_float("x", 0, 1), -t.suggest_float("y", 0, 1)), n_trials=3)
    written, skipped = search.write_study_plots(few, ["val/recall@50", "val/coverage@50"], tmp_path / "multi")
    assert set(written) == {"history_val_recall_50", "parallel_coordinate_val_recall_50", "history_val_coverage_50",
                            "parallel_coordinate_val_coverage_50", "pareto_front"}
    assert "3 complete trial(s)" in skipped["importance_val_recall_50"]
    assert all(_png(Path(p)) for p in written.values())


def _wandb_records(run_dir: Path) -> dict:
    """job_type, group, name and summary of the offline W&B run in ``run_dir`` (its record log:
    32 KiB blocks of 7-byte-headed chunks of protobuf ``Record``s after a 7-byte ``:W&B`` header)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("run-*.wandb")
    data, pos, chunk, out = path.read_bytes(), 7, b"", {"summary": {}}
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = chunk + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunk)
            chunk = b""
            if record.WhichOneof("record_type") == "run":
                out.update(job_type=record.run.job_type, group=record.run.run_group, name=record.run.display_name)
            elif record.WhichOneof("record_type") == "summary":
                out["summary"].update({u.key: json.loads(u.value_json) for u in record.summary.update})
    return out


def test_study_run_in_wandb_holds_plots_trials_and_best_values(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    scfg = search.load_study_config("coclick_tau", _study(tmp_path))
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="coclick_tau",
                                direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("dataset.graph_tau", 0, 1), n_trials=3)
    summary = search.summarize(study, scfg, ["val/recall@50"], None)
    summary["plots"], _ = search.write_study_plots(study, ["val/recall@50"], tmp_path / "out")
    logger = OmegaConf.create({"logger": {"name": "wandb", "mode": "offline", "project": "p", "tags": ["t"]}})
    info = search.log_study_to_wandb(summary, logger, tmp_path / "out")
    run_dir = Path(info["run_dir"])
    assert run_dir.parent == tmp_path / "out" / "wandb" and info["group"] == "optuna/coclick_tau"
    for _ in range(100):  # W&B's service writes the record log asynchronously
        run = _wandb_records(run_dir)
        if "best/trial" in run["summary"]:
            break
        time.sleep(0.2)
    assert (run["job_type"], run["group"], run["name"]) == ("study", "optuna/coclick_tau", "coclick_tau study")
    assert run["summary"]["best/val/recall@50"] == study.best_value and run["summary"]["best/trial"] == study.best_trial.number
    images = sorted(p.name.split("_")[0] for p in (run_dir / "files" / "media" / "images" / "study").glob("*.png"))
    assert images == ["history", "parallel"]
    (table,) = (run_dir / "files" / "media" / "table" / "study").glob("trials_*.table.json")
    rows = json.loads(table.read_text())["data"]
    assert [(r[0], r[2]) for r in rows] == [(t.number, t.value) for t in study.get_trials()]


@pytest.mark.slow
def test_study_writes_plots_and_a_rerun_command_that_runs_as_printed(tmp_path, capsys):
    summary, study = search.run_search("coclick_tau", _train(tmp_path), _study(tmp_path, "n_trials=2"))
    folder = tmp_path / "optuna" / "coclick_tau"
    for t in study.get_trials():  # trials score val only: no test number in their metrics
        metrics = _run_metrics(t)
        assert "val/recall@50" in metrics and not [k for k in metrics if k.startswith("test")]
    best = json.loads((folder / "best.json").read_text())
    assert {Path(p).name for p in best["plots"].values()} == {"optuna_history.png", "optuna_parallel_coordinate.png"}
    assert all(_png(folder / Path(p).name) for p in best["plots"].values())
    assert "1 searched parameter" in best["plots_skipped"]["importance"]
    rerun = best["best"]["rerun"]
    assert rerun["seeds"] == [0, 1, 2] and "seed=0,1,2" in rerun["command"] and "dataset.loader.preset=tiny" in rerun["command"]
    assert "eval.folds" not in rerun["command"]

    # the best setting's command for two seeds, as `python -m graphrecall.best_setting <folder>` prints it
    capsys.readouterr()  # drop the study's own output
    assert best_setting.main([str(folder), "--seeds", "0", "1"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == rerun["command"].replace("seed=0,1,2", "seed=0,1").replace("seeds_0-1-2", "seeds_0-1")
    done = subprocess.run(["bash", "-c", printed], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = folder.parent / "coclick_tau_rerun" / f"trial_{best['best']['number']}_seeds_0-1"
    tau = best["best"]["params"]["dataset.graph_tau"]
    for k in (0, 1):
        metrics = json.loads((sweep / str(k) / "metrics.json").read_text())["metrics"]
        assert "test/recall@50" in metrics and "val/recall@50" in metrics  # the rerun scores val and test
        record = json.loads((sweep / str(k) / "config_resolved.json").read_text())
        assert (record["seed"], record["dataset"]["graph_tau"], record["dataset"]["loader"]["preset"]) == (k, tau, "tiny")

    # hparams_search.rerun_seeds=[0,1]: the same sweep, already finished, is not run again; its report
    # table is written (graphrecall.report) with the rerun's test numbers
    summary, _ = search.run_search("coclick_tau", _train(tmp_path), _study(tmp_path, "n_trials=2", "rerun_seeds=[0,1]"))
    assert summary["best"]["rerun"]["sweep_dir"] == str(sweep) and summary["best"]["rerun"]["ran"] is False
    report = (sweep / "report.md").read_text()
    values = [json.loads((sweep / str(k) / "metrics.json").read_text())["metrics"]["test/recall@50"] for k in (0, 1)]
    assert f"{np.mean(values):.4f}" in report  # the two seeds' mean test recall@50 in the table
    assert json.loads((folder / "best.json").read_text())["best"]["rerun"]["report"] == str(sweep / "report.md")


@pytest.fixture
def sigterm_net():
    """A SIGTERM handler that only records (so that a handler left uninstalled fails the test instead
    of killing pytest); the signals it saw."""
    seen: list[int] = []
    net = lambda signum, frame: seen.append(signum)  # noqa: E731
    before = signal.signal(signal.SIGTERM, net)
    yield net, seen
    signal.signal(signal.SIGTERM, before)


def test_signals_are_held_back_during_storage_writes(sigterm_net):
    net, seen = sigterm_net
    stop = search.StopSignals()
    with stop.installed():
        with stop.armed(False):
            os.kill(os.getpid(), signal.SIGTERM)  # recorded, not raised: a storage write goes on
            time.sleep(0.05)
        assert stop.signum == signal.SIGTERM
        with pytest.raises(search.SignalReceived):
            stop.check()
        with pytest.raises(search.SignalReceived):
            with stop.armed():  # entering an armed block takes the recorded signal
                pass
    assert signal.getsignal(signal.SIGTERM) is net and seen == []  # restored; the net saw nothing


def test_sigterm_during_a_trial_records_it_fail_and_exits_143(tmp_path, monkeypatch, caplog, sigterm_net):
    """In process, with a trial whose training blocks until the signal comes (the Lightning path is
    the subprocess test below)."""
    train = search.import_train()
    started = threading.Event()

    def blocking_train(cfg, extra_callbacks=None):
        started.set()
        for _ in range(600):  # Python code runs, as in training: the handler runs in the main thread
            time.sleep(0.1)
        raise AssertionError("the signal did not stop the trial")

    monkeypatch.setattr(train, "train", blocking_train)
    threading.Thread(target=lambda: started.wait(60) and os.kill(os.getpid(), signal.SIGTERM), daemon=True).start()
    cli = ["hparams_search=coclick_tau", *_train(tmp_path), *(f"hparams_search.{o}" for o in _study(tmp_path, "n_trials=2"))]
    with caplog.at_level("ERROR", logger="graphrecall.search"):
        assert search.main(cli) == 143
    assert "study 'coclick_tau' stopped by SIGTERM; its running trial 0 is recorded FAIL; 0 of 2 trials finished" in caplog.text
    (trial,) = _load(tmp_path, "coclick_tau").get_trials()
    assert trial.state == State.FAIL and trial.user_attrs["interrupted"] == "SIGTERM"
    assert not (tmp_path / "optuna" / "coclick_tau" / "best.json").exists()  # a stopped command writes no summary
    assert sigterm_net[1] == []


@pytest.mark.slow
def test_sigint_stops_a_search_subprocess_records_its_trial_fail_and_exits_130(tmp_path):
    """A sage trial (Lightning, which turns a KeyboardInterrupt into sys.exit(1)) of 200 epochs is
    running when Ctrl-C comes."""
    signum, status = signal.SIGINT, 130
    db = tmp_path / "optuna.db"
    cmd = [sys.executable, "-m", "graphrecall.search", "hparams_search=sage", *_train(tmp_path),
           "trainer.max_epochs=200", "trainer.early_stopping_patience=0",
           *(f"hparams_search.{o}" for o in _study(tmp_path, "n_trials=3"))]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # wait until trial 0 is RUNNING and training
        time.sleep(0.5)
        if db.exists() and (tmp_path / "optuna" / "sage" / "trial_0" / "config_resolved.json").exists():
            with sqlite3.connect(db) as con:
                if con.execute("select count(*) from trials where state = 'RUNNING'").fetchone()[0] == 1:
                    break
    time.sleep(3)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == status, out[-3000:]
    name = signal.Signals(signum).name
    assert f"study 'sage' stopped by {name}; its running trial 0 is recorded FAIL" in out
    (trial,) = _load(tmp_path, "sage").get_trials()  # the storage, read back: nothing left RUNNING
    assert trial.state == State.FAIL and trial.user_attrs["interrupted"] == name
    assert not (tmp_path / "optuna" / "sage" / "trial_0" / "metrics.json").exists()
