"""Optuna searches (graphrecall.search) on the tiny synthetic world: trial values, resume, failure
budget, unknown metrics, pruning through the Lightning loop."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import optuna
import pytest

from graphrecall import search
from graphrecall.models.sage import SageRecall
from tests.conftest import TINY

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
    # budget already reached: nothing runs (the CLI entry point, in-process)
    cli = ["hparams_search=coclick_tau", *_train(tmp_path),
           *(f"hparams_search.{o}" for o in _study(tmp_path, "n_trials=3"))]
    assert search.main(cli) == 0
    assert len(_load(tmp_path, "coclick_tau").get_trials()) == 3


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
    assert "selects no clicks" in trials[0].user_attrs["error"]
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
