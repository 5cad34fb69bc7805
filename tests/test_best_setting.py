"""graphrecall.best_setting: the rerun of a study's best trial from its best.json (hand-made files;
the end-to-end run of a printed command is in tests/test_search.py)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from graphrecall import best_setting

TRIAL = ["model=coclick", "eval.folds=[val]", "dataset=synthetic", "dataset.loader.preset=tiny", "seed=3",
         "run_dir=/r", "hydra.job.chdir=true", "recall.popularity_beta=[0,0.1]", "dataset.graph_tau=0.5",
         "+model.note='a b'", "dataset.graph_tau=0.001"]


def _best_json(tmp: Path, **fields) -> Path:
    folder = tmp / "optuna" / "my_study"
    folder.mkdir(parents=True)
    best = {"study_name": "my_study", "best": {"number": 4, "values": {"val/recall@50": 0.5},
                                               "params": {"dataset.graph_tau": 0.001}, "overrides": TRIAL}}
    best.update(fields)
    (folder / "best.json").write_text(json.dumps(best))
    return folder


def test_rerun_overrides_keep_the_dataset_and_drop_what_the_rerun_sets():
    assert best_setting.rerun_overrides(TRIAL) == [
        "model=coclick", "dataset=synthetic", "dataset.loader.preset=tiny", "recall.popularity_beta=[0,0.1]",
        "+model.note='a b'", "dataset.graph_tau=0.001"]  # the trial's value of a key given twice: its last


def test_cli_needs_no_second_argument_and_prints_a_quoted_command(tmp_path, capsys, monkeypatch):
    folder = _best_json(tmp_path)  # as an older search wrote it: no recorded launch folder
    monkeypatch.chdir(tmp_path)
    assert best_setting.main([str(folder)]) == 0
    command = capsys.readouterr().out.strip()
    cd, _, rest = command.partition(" && ")
    assert cd == f"cd {tmp_path}"
    argv = shlex.split(rest)
    assert argv[1].endswith("train.py") and argv[2] == "-m"
    assert argv[3:] == [*best_setting.rerun_overrides(TRIAL), "seed=0,1,2",
                        f"hydra.sweep.dir={tmp_path / 'optuna' / 'my_study_rerun' / 'trial_4_seeds_0-1-2'}"]
    assert best_setting.main([str(folder / "best.json"), "--overrides"]) == 0
    assert capsys.readouterr().out.splitlines() == best_setting.rerun_overrides(TRIAL)


def test_the_launch_folder_the_study_recorded_is_kept(tmp_path, capsys):
    folder = _best_json(tmp_path)
    best = json.loads((folder / "best.json").read_text())
    best["best"]["rerun"] = {"cwd": str(tmp_path / "launch")}
    (folder / "best.json").write_text(json.dumps(best))
    plan = best_setting.plan_from_best_json(folder, seeds=[5])
    assert plan["cwd"] == str(tmp_path / "launch") and plan["command"].startswith(f"cd {tmp_path / 'launch'} && ")
    assert plan["argv"][-2:] == ["seed=5", f"hydra.sweep.dir={tmp_path / 'optuna' / 'my_study_rerun' / 'trial_4_seeds_5'}"]


def test_bad_inputs_say_what_is_wrong(tmp_path, capsys):
    assert best_setting.main([str(tmp_path / "nowhere")]) == 2
    assert "expected a study folder holding best.json" in capsys.readouterr().err
    empty = _best_json(tmp_path / "a", best=None)
    with pytest.raises(ValueError, match="no complete trial"):
        best_setting.plan_from_best_json(empty)
    front = [{"number": 2, "overrides": TRIAL}, {"number": 7, "overrides": TRIAL}]
    pareto = _best_json(tmp_path / "b")
    best = json.loads((pareto / "best.json").read_text())
    del best["best"]
    best["best_trials"] = front
    (pareto / "best.json").write_text(json.dumps(best))
    with pytest.raises(ValueError, match=r"Pareto front of trials \[2, 7\]: pick one with --trial"):
        best_setting.plan_from_best_json(pareto)
    with pytest.raises(ValueError, match=r"trial 3 is not on the Pareto front \[2, 7\]"):
        best_setting.plan_from_best_json(pareto, trial=3)
    assert "trial_7_seeds" in best_setting.plan_from_best_json(pareto, trial=7)["sweep_dir"]
    with pytest.raises(ValueError, match="at least one seed"):
        best_setting.rerun_argv(["model=coclick"], [], tmp_path, tmp_path)
