"""Issue 25: a finished run's files never change, evaluate.py never scores what the run was not,
and a setting that leaves only the back-fill says so. Each case failed on the code before the fix."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from graphrecall.runs import RunDirInUse, refuse_used_output_dirs
from tests.conftest import CONF, ROOT, TINY, compose_train
from tests.test_run_safety import _custom_folder

sys.path.insert(0, str(ROOT))
import evaluate as evaluate_app  # noqa: E402
import train as train_app  # noqa: E402


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` -> the hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def launch(script: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def evaluate_cfg(**values):
    ecfg = OmegaConf.load(CONF / "evaluate.yaml")
    ecfg.pop("hydra")
    for k, v in values.items():
        OmegaConf.update(ecfg, k, v, merge=False)
    return ecfg


@pytest.mark.slow
def test_relaunch_into_a_finished_run_or_sweep_changes_none_of_its_files(tmp_path):
    common = [*TINY, f"data_dir={tmp_path / 'data'}", f"cache_dir={tmp_path / 'cache'}"]
    run, sweep = tmp_path / "run", tmp_path / "sweep"
    assert launch("train.py", *common, "model=popular", f"hydra.run.dir={run}").returncode == 0
    assert launch("train.py", "-m", *common, "model=popular", "seed=0,1", f"hydra.sweep.dir={sweep}").returncode == 0
    before_run, before_sweep = snapshot(run), snapshot(sweep)
    assert ".hydra/overrides.yaml" in before_run and "multirun.yaml" in before_sweep
    again = launch("train.py", *common, "model=coclick", f"hydra.run.dir={run}")
    assert again.returncode == 2 and f"hydra.run.dir={run} already holds a finished run" in again.stderr
    again = launch("train.py", "-m", *common, "model=coclick", f"hydra.sweep.dir={sweep}")
    assert again.returncode == 2 and f"hydra.sweep.dir={sweep} already holds a sweep" in again.stderr
    # evaluate.py into the train run's folder: refused before anything is written
    again = launch("evaluate.py", f"run_dir={run}", f"hydra.run.dir={run}")
    assert again.returncode == 2 and "evaluate.py never writes into a train run's folder" in again.stderr
    assert snapshot(run) == before_run and snapshot(sweep) == before_sweep
    # the same refusal from Python, and its own folder is not a train run's either
    with pytest.raises(RunDirInUse, match="is a train run's folder"):
        evaluate_app.evaluate(evaluate_cfg(run_dir=str(run), out_dir=str(run)))
    with pytest.raises(RunDirInUse, match="is a train run's folder"):
        evaluate_app.evaluate(evaluate_cfg(run_dir=str(run), out_dir=str(sweep / "1")))
    assert snapshot(run) == before_run and snapshot(sweep) == before_sweep
    refuse_used_output_dirs([f"hydra.run.dir={tmp_path / 'new'}", "hydra.run.dir=${now:%H}"])  # new or dated: fine


def test_a_killed_runs_folder_is_refused_not_mixed(tmp_path):
    """A SIGKILLed run leaves config_resolved.json and checkpoints/ without metrics.json; a new run
    there would write last-v1.ckpt beside the old last.ckpt (which a resume would then pick up)."""
    cfg = compose_train(tmp_path, [*TINY, "model=sage", "trainer.max_epochs=1"])
    killed = Path(cfg.run_dir)
    (killed / "checkpoints").mkdir(parents=True)
    (killed / "checkpoints" / "last.ckpt").write_bytes(b"the killed run's weights")
    (killed / "config_resolved.json").write_text("{}")
    before = snapshot(killed)
    with pytest.raises(RunDirInUse, match=r"holds an unfinished earlier run \(config_resolved.json, checkpoints; "
                                          r"killed or failed\).*model.resume_from=.*last.ckpt"):
        train_app.train(cfg)
    assert snapshot(killed) == before
    with pytest.raises(RunDirInUse, match="already holds an unfinished run"):
        refuse_used_output_dirs([f"hydra.run.dir={killed}"])
    # evaluate.py names the real problem (not eval.folds)
    with pytest.raises(FileNotFoundError, match=r"unfinished train run \(no metrics.json"):
        evaluate_app.evaluate(evaluate_cfg(run_dir=str(killed), out_dir=str(tmp_path / "ev")))


def test_evaluate_refuses_a_run_whose_data_changed(tmp_path):
    _custom_folder(tmp_path / "logs")
    cfg = compose_train(tmp_path, ["dataset=custom", f"dataset.loader.folder={tmp_path / 'logs'}", "model=coclick",
                                   "eval.bootstrap.num_resamples=20"])
    metrics, _ = train_app.train(cfg)
    recorded = json.loads((Path(cfg.run_dir) / "metrics.json").read_text())["details"]["inputs"]
    assert recorded["clicks"]["rows"] == 1500
    same = evaluate_app.evaluate(evaluate_cfg(run_dir=cfg.run_dir, out_dir=str(tmp_path / "ev0"),
                                              **{"eval.bootstrap.num_resamples": 20}))
    assert same["test/recall@50"] == pytest.approx(metrics["test/recall@50"])
    clicks = pd.read_csv(tmp_path / "logs" / "clicks.csv", dtype=str)
    clicks.iloc[:-300].to_csv(tmp_path / "logs" / "clicks.csv", index=False)  # 300 clicks removed since training
    with pytest.raises(ValueError, match=r"the data changed since .*\(clicks: 1,500 rows at training, 1,200 now;.*"
                                         r"allow_changed_inputs=true"):
        evaluate_app.evaluate(evaluate_cfg(run_dir=cfg.run_dir, out_dir=str(tmp_path / "ev1")))
    assert not (tmp_path / "ev1" / "metrics.json").exists()
    changed = evaluate_app.evaluate(evaluate_cfg(run_dir=cfg.run_dir, out_dir=str(tmp_path / "ev2"),
                                                 allow_changed_inputs=True, **{"eval.bootstrap.num_resamples": 20}))
    assert "test/recall@50" in changed


def test_evaluate_takes_train_keys_exports_what_was_asked_and_shows_warm_users(tmp_path, capsys):
    cfg = compose_train(tmp_path, [*TINY, "model=coclick"])
    train_app.train(cfg)
    out = tmp_path / "ev"
    evaluate_app.evaluate(evaluate_cfg(run_dir=cfg.run_dir, out_dir=str(out), **{
        "eval.export.enabled": True, "eval.export.k": 120, "eval.bootstrap.num_resamples": 20}))
    recs = pd.read_parquet(out / "recommendations.parquet")
    per_user = recs.groupby("user_id")["rank"].max()
    assert per_user.max() == 120  # served at 120, not the evaluated 50
    table = (out / "metrics_table.txt").read_text()
    assert " warm " in table and capsys.readouterr().out.count(" warm ") >= 1
    # the old names still work, and say which key to use
    evaluate_app.evaluate(evaluate_cfg(run_dir=cfg.run_dir, out_dir=str(tmp_path / "ev_old"), **{
        "export.enabled": True, "export.k": 7, "bootstrap.num_resamples": 20}))
    assert pd.read_parquet(tmp_path / "ev_old" / "recommendations.parquet").groupby("user_id")["rank"].max().max() == 7
    from graphrecall.config_checks import ConfigError

    with pytest.raises(ConfigError, match="export.k=7 and eval.export.k=9: export.k is the old name of eval.export.k"):
        evaluate_app.evaluate(evaluate_cfg(run_dir=cfg.run_dir, out_dir=str(tmp_path / "ev_both"),
                                           **{"export.k": 7, "eval.export.k": 9}))


def test_train_exports_longer_lists_than_it_evaluates(tmp_path):
    cfg = compose_train(tmp_path, [*TINY, "model=popular", "eval.export.enabled=true", "eval.export.k=80"])
    train_app.train(cfg)
    recs = pd.read_parquet(Path(cfg.run_dir) / "recommendations.parquet")
    assert recs.groupby("user_id")["rank"].max().max() == 80


@pytest.mark.parametrize("override", ["recall.min_score=1000000"])
def test_a_list_of_back_fill_says_so(tmp_path, override):
    """A co-click cut-off above every pool weight: every slot is back-fill. The run is not reported
    as co-click without a word: the log, the table and metrics.json say it."""
    cfg = compose_train(tmp_path, [*TINY, "model=coclick", override])
    metrics, _ = train_app.train(cfg)
    assert metrics["test/warm/backfill_share"] == pytest.approx(1.0)
    table = (Path(cfg.run_dir) / "metrics_table.txt").read_text()
    assert "NOTE test: 100% of the warm users' list slots are popularity back-fill: this row measures the back-fill, " \
           "not CoClickRecall" in table
    notes = json.loads((Path(cfg.run_dir) / "metrics.json").read_text())["details"]["notes"]
    assert any(n.startswith("NOTE val:") for n in notes) and any(n.startswith("NOTE test:") for n in notes)
    # an ordinary co-click run has no note, and its back-fill share is what the counters say
    plain = compose_train(tmp_path / "plain", [*TINY, "model=coclick"])
    metrics, objects = train_app.train(plain)
    ev = [e for e in objects["evaluations"] if e.name == "test"][0]
    assert metrics["test/backfill_share"] == pytest.approx(ev.recs.counters["backfilled"].mean() / 50)
    assert metrics["test/warm/backfill_share"] < 0.9
    assert json.loads((Path(plain.run_dir) / "metrics.json").read_text())["details"]["notes"] == []


def _predefined_files(tmp_path: Path, ordered: bool) -> list[str]:
    """The custom log cut by date into train / val / test files (the last 8 and 4 days); with
    ``ordered=False`` one val click is moved into the train period."""
    _custom_folder(tmp_path / "logs")
    clicks = pd.read_csv(tmp_path / "logs" / "clicks.csv", dtype={"user_id": str, "content_id": str})
    end = clicks["timestamp"].max()
    parts = {"train": clicks[clicks["timestamp"] < end - 8 * 86_400],
             "val": clicks[(clicks["timestamp"] >= end - 8 * 86_400) & (clicks["timestamp"] < end - 4 * 86_400)],
             "test": clicks[clicks["timestamp"] >= end - 4 * 86_400]}
    if not ordered:
        parts["val"] = parts["val"].copy()
        parts["val"].iloc[0, parts["val"].columns.get_loc("timestamp")] = int(parts["train"]["timestamp"].min())
    for name, frame in parts.items():
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    return ["dataset=custom", f"dataset.loader.folder={tmp_path / 'logs'}", "dataset.split.kind=predefined",
            *[f"dataset.split.predefined.files.{n}={tmp_path / f'{n}.csv'}" for n in parts]]


def test_the_learned_recipe_runs_on_predefined_files_ordered_in_time(tmp_path):
    """Issue 25: time-ordered train / val / test files give the folds their cuts, so the flagship
    recipe (learned popularity term, refit) runs on them; unordered files are refused with why."""
    recipe = ["model=sage_next_click_confident", "trainer.max_epochs=2", "eval.bootstrap.num_resamples=20",
              "model.optim.batch_size=128", "model.next_click.num_uniform=32"]
    cfg = compose_train(tmp_path / "ordered", [*_predefined_files(tmp_path / "ordered", True), *recipe])
    metrics, objects = train_app.train(cfg)
    test_fold = objects["folds"]["test"]
    test_clicks = pd.read_csv(tmp_path / "ordered" / "test.csv")
    assert test_fold.cut == int(test_clicks["timestamp"].min())
    assert len(test_fold.train) == 1500 - len(test_clicks)  # train + val: everything before the cut
    assert metrics["test/fit/refit/epochs"] == metrics["val/fit/selected_epochs"]
    cfg = compose_train(tmp_path / "unordered", [*_predefined_files(tmp_path / "unordered", False), *recipe])
    with pytest.raises(ValueError, match=r"predefined files are not ordered: 1 click\(s\) of .*val.csv \(val\) are at "
                                         r"or before the last click of .*train.csv.*model.popularity.enabled=false"):
        train_app.train(cfg)


def test_resuming_another_architecture_names_the_mismatch(tmp_path):
    """Issue 25: a checkpoint of another model config was a torch dump of every state_dict key."""
    common = [*TINY, "model=sage", "trainer.max_epochs=1", "eval.folds=[val]"]
    _, objects = train_app.train(compose_train(tmp_path / "mean", common))
    ckpt = Path(objects["model"].best_checkpoint).parent / "last.ckpt"
    cfg = compose_train(tmp_path / "gat", [*common, "aggregator=gat", f"model.resume_from={ckpt}"])
    with pytest.raises(ValueError, match=r"checkpoint .*last.ckpt \(written by graphrecall.models.sage.SageRecall\) "
                                         r"does not fit this run's model SageI2IModule: .*weight\(s\) missing"):
        train_app.train(cfg)
