"""graphrecall.tracking: W&B runs a report can be built from. The pure pieces (identity, flat config,
table rows, interval keys, sample users) on hand-made inputs; then real offline runs of train.py
(co-click, a GraphSAGE Optuna-style trial, a two-job multirun), read back from W&B's own offline
files: the record log ``run-<id>.wandb`` and the tables under ``files/media/table/``."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from graphrecall import tracking
from graphrecall.evaluation import FoldEvaluation
from graphrecall.models.base import Recommendations
from tests.conftest import ROOT, TINY, compose_train

sys.path.insert(0, str(ROOT))
import train as train_app  # noqa: E402

FAST = ["trainer.enable_progress_bar=false", "trainer.early_stopping_patience=0", "eval.interest_only.enabled=false"]


# ------------------------------------------------------------------------------ reading a run back


def read_wandb_run(run_dir: Path) -> dict:
    """The one offline run under ``run_dir/wandb``, parsed from its record log (LevelDB-style 32 KiB
    blocks of protobuf ``Record``s after a 7-byte ``:W&B`` header): ``name, group, tags, job_type, id,
    config, summary, history, artifacts, exit_code, files``. Keys of history / summary items are
    tuples (``("val/recall@50",)``; a table value's fields are ``("results/slices", "path")``)."""
    from wandb.proto import wandb_internal_pb2 as pb

    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    data = files[0].read_bytes()
    assert data[:4] == b":W&B"
    out: dict = {"summary": {}, "history": [], "artifacts": [], "exit_code": None, "files": files[0].parent / "files"}
    pos, chunk = 7, b""

    def key(u) -> tuple[str, ...]:
        return (u.key,) if u.key else tuple(u.nested_key)

    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind not in (1, 4):  # FULL or LAST completes a record
            continue
        record = pb.Record()
        record.ParseFromString(chunk)
        chunk = b""
        what = record.WhichOneof("record_type")
        if what == "run":
            out.update(name=record.run.display_name, group=record.run.run_group, id=record.run.run_id,
                       tags=list(record.run.tags), job_type=record.run.job_type,
                       config={u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif what == "config":  # later config updates (none expected: the config is set once)
            out.setdefault("config_updates", []).extend(u.key for u in record.config.update)
        elif what == "summary":
            for u in record.summary.update:
                out["summary"][key(u)] = json.loads(u.value_json)
        elif what == "history":
            out["history"].append({key(u): json.loads(u.value_json) for u in record.history.item})
        elif what == "artifact":
            out["artifacts"].append({"name": record.artifact.name, "type": record.artifact.type,
                                     "files": sorted(e.path for e in record.artifact.manifest.contents)})
        elif what == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def read_finished_run(run_dir: Path, timeout: float = 30.0) -> dict:
    """:func:`read_wandb_run` once the run's exit record is on disk: W&B's service process writes the
    file asynchronously, and may still be writing when ``wandb.finish()`` or the launcher returns."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            run = read_wandb_run(run_dir)
            if run["exit_code"] is not None and "id" in run:
                return run
        except AssertionError:  # the file does not exist yet
            pass
        if time.monotonic() > deadline:
            return read_wandb_run(run_dir)
        time.sleep(0.2)


def read_table(run: dict, key: str) -> pd.DataFrame:
    """A ``wandb.Table`` logged under ``key``, read from the run's ``files/media/table/`` JSON."""
    paths = [row[(key, "path")] for row in run["history"] if (key, "path") in row]
    assert len(paths) == 1, (key, paths)
    table = json.loads((run["files"] / paths[0]).read_text())
    return pd.DataFrame(table["data"], columns=table["columns"])


def summary_cells(run_dir: Path) -> pd.DataFrame:
    """metrics.json's slice summaries as one frame: evaluation, slice, metric, mean, ci_low, ci_high, n_users."""
    summary = json.loads((run_dir / "metrics.json").read_text())["summary"]
    return pd.concat([pd.DataFrame(rows).assign(evaluation=name) for name, rows in summary.items()], ignore_index=True)


def check_results(run: dict, run_dir: Path) -> None:
    """What every train run logs: the slice tables equal metrics.json's summaries, the interval keys
    hold the same bounds, the sample users agree with the per-user metrics, the artifact lists the
    result files (and no pool / checkpoint: not opted in)."""
    cells = summary_cells(run_dir)
    plain = cells[~cells["metric"].str.contains("/")]
    slices = read_table(run, "results/slices")
    assert list(slices.columns) == list(tracking.SLICE_COLUMNS)
    assert len(slices) == len(plain)
    merged = slices.merge(plain, left_on=["fold", "user_slice", "metric"], right_on=["evaluation", "slice", "metric"],
                          suffixes=("", "_json"))
    assert len(merged) == len(plain)
    for col in ("mean", "ci_low", "ci_high", "n_users"):
        np.testing.assert_allclose(merged[col].astype(float), merged[f"{col}_json"].astype(float), equal_nan=True)
    with_ci = merged.dropna(subset=["ci_low_json"])
    assert len(with_ci) > 0 and (with_ci["n_users"] > 0).all()
    for row in with_ci.itertuples():  # the same bounds as summary keys named like the metric keys
        assert run["summary"][(f"{row.key}_ci_low",)] == pytest.approx(row.ci_low_json)
        assert run["summary"][(f"{row.key}_ci_high",)] == pytest.approx(row.ci_high_json)
    warm = with_ci[(with_ci["fold"] == "test") & (with_ci["user_slice"] == "warm") & (with_ci["metric"] == "recall@50")]
    if (run_dir / "per_user_test.parquet").exists():
        assert len(warm) == 1 and ("test/warm/recall@50_ci_low",) in run["summary"]
    content = read_table(run, "results/content_slices")
    assert {"content_slice", "ci_low", "ci_high", "n_users", "slice_targets"} <= set(content.columns)
    assert len(content) == cells["metric"].str.contains("/").sum() and content["ci_low"].notna().any()
    # sample users: hits marked in the list, counts that agree with the per-user recall of the same users
    users = read_table(run, "results/sample_users")
    fold = users["fold"].iloc[0]
    per_user = pd.read_parquet(run_dir / f"per_user_{fold}.parquet")
    assert len(users) == 8 and users["user_id"].is_unique and (users["user_slice"] == "warm").all()
    assert sum(cell.count(tracking.HIT) for cell in users["recommended_top10"]) == users["hits@10"].sum()
    assert users["hits@10"].sum() > 0, "no hit among 8 sample users: the marker is untested"
    for row in users.to_dict("records"):
        assert len(row["recommended_top10"].split("\n")) == 10
        assert row["recent_clicks"] and row["history_clicks"] > 0
        recall = per_user.loc[per_user["u"] == row["user_id"], "recall@50"]  # synthetic user ids are the user rows
        assert len(recall) == 1 and row["hits@50"] / row["targets"] == pytest.approx(float(recall.iloc[0]))
        assert len(row["target_contents"].split("\n")) == row["targets"]
        assert row["target_contents"].count("[rank ") == row["hits@50"]
    (artifact,) = [a for a in run["artifacts"] if a["type"] == "run-results"]
    assert artifact["files"] == sorted(f for f in tracking.RESULT_FILES if (run_dir / f).exists())
    assert {"metrics.json", "config_resolved.json", "metrics_table.txt", "wandb_run.json"} <= set(artifact["files"])
    assert run["exit_code"] == 0


def check_config(config: dict, model_key: str = "model.optim.lr") -> None:
    """Flat, prefixed once: no unprefixed copy of a model setting, no blob, no model copy of a group."""
    assert model_key in config and "seed" in config and "git_revision" in config
    for bare in ("lr", "loss", "encoder", "run_config", "num_negatives", "aggregator"):
        assert bare not in config, bare
    assert not any(k.startswith(("model.trainer.", "model.logger.", "model.graph.")) for k in config)
    assert "trainer.max_epochs" in config and "logger.name" in config
    assert not any(isinstance(v, dict) for k, v in config.items() if k != "_wandb")  # _wandb: W&B's own


# ------------------------------------------------------------------------------ identity (pure)


def _record(tmp_path: Path, overrides: list[str]) -> dict:
    return OmegaConf.to_container(compose_train(tmp_path, [*TINY, *overrides]), resolve=True)


def test_names_carry_only_the_groups_a_model_reads(tmp_path):
    single = tracking.JobContext(hydra=True)
    cases = {  # overrides -> (name, stage tags)
        ("model=sage", "aggregator=gat"): ("sage-gat-bce-synthetic-s0", ["stage1"]),
        ("model=sage_next_click",): ("sage_next_click-mean-synthetic-s0", ["stage1"]),  # next-click: no pair loss
        ("model=m2grl",): ("m2grl-mean-bce-synthetic-s0", ["stage2"]),
        ("model=dice", "debias=dice_hard", "aggregator=gat", "loss=bpr"): ("dice-dice_hard-synthetic-s0", ["stage3"]),
        ("model=dice", "debias=bpr"): ("dice-bpr-synthetic-s0", ["stage3", "baseline"]),
        ("model=coclick", "aggregator=gat", "seed=4"): ("coclick-synthetic-s4", ["baseline"]),
        ("model=popular",): ("popular-synthetic-s0", ["baseline"]),
    }
    for overrides, (name, stages) in cases.items():
        record = _record(tmp_path, list(overrides))
        context = tracking.JobContext(overrides=overrides, hydra=True)
        identity = tracking.run_identity(record, tmp_path / "run", context, {"tags": ["mine"]})
        assert identity.name == name, overrides
        assert identity.tags == ("synthetic", name.split("-")[0], *stages, "mine")
        assert identity.job_type == "train" and identity.group == "train"
    # Hydra's choices win over class names; without them or a model= override the class names the run
    record = _record(tmp_path, ["model=mf"])
    assert tracking.run_identity(record, None, single).name == "MFRecall-synthetic-s0"
    assert tracking.run_identity({**record, "choices": {"model": "mf"}}, None, single).name == "mf-synthetic-s0"


def test_axes_in_names_groups_and_trials(tmp_path):
    record = {**_record(tmp_path, ["model=sage", "seed=1"]), "task_name": "flagship"}
    overrides = ("model=sage", "seed=1", "model.optim.lr=0.01", "aggregator.heads=8", "dataset.loader.preset=tiny",
                 "logger=wandb", "logger.mode=offline", "trainer.enable_progress_bar=false", "data_dir=/d",
                 "hydra.run.dir=/r", "eval.export.enabled=true", "eval.bootstrap.num_resamples=50", "+x.y=2")
    # a single run: every override that sets what is computed, never logger / progress bar / folders / export
    single = tracking.run_identity(record, None, tracking.JobContext(overrides=overrides, hydra=True))
    assert single.name == "sage-mean-bce-synthetic-s1 model.optim.lr=0.01 aggregator.heads=8 " \
                          "dataset.loader.preset=tiny x.y=2"
    assert single.group == "flagship"
    # a multirun: only the swept axes; group = task / sweep folder
    swept = tracking.swept_keys(["-m", "model=sage,coclick", "seed=0,1", "dataset.loader.preset=tiny",
                                 "model.optim.lr=choice(0.01,0.1)", "logger=wandb", "--cfg", "job"],
                                {"recall.share": "0.5,1.0"})
    assert swept == {"model", "seed", "model.optim.lr", "recall.share"}
    multi = tracking.run_identity(record, None, tracking.JobContext(
        overrides=(*overrides, "recall.share=0.5"), swept=swept, sweep_dir="2026-12-06_19-19-56_1-a", hydra=True))
    assert multi.name == "sage-mean-bce-synthetic-s1 model.optim.lr=0.01 recall.share=0.5"
    assert multi.group == "flagship/2026-12-06_19-19-56_1-a"
    # an explicit group wins
    assert tracking.run_identity(record, None, tracking.JobContext(hydra=True), {"group": "mine"}).group == "mine"
    # an Optuna trial (graphrecall.search: <output_dir>/<study>/trial_<n>, composed config, overrides file)
    trial = tracking.run_identity(record, tmp_path / "optuna" / "sage_small" / "trial_7",
                                  tracking.JobContext(overrides=overrides))
    assert (trial.name, trial.group, trial.job_type) == ("sage_small-trial7", "optuna/sage_small", "trial")
    # code that composes configs into sibling folders: the folder above is the study
    other = tracking.run_identity(record, tmp_path / "study" / "run_3", tracking.JobContext())
    assert other.group == "flagship/study" and other.job_type == "train"


def test_flat_config_holds_each_value_once(tmp_path):
    record = {**_record(tmp_path, ["model=sage"]), "choices": {"model": "sage"}, "git_revision": "abc"}
    config = tracking.wandb_config(record)
    check_config(config)
    assert config["model.optim.lr"] == record["model"]["optim"]["lr"] and config["choices.model"] == "sage"
    assert config["model.triggers.decay"] == record["recall"]["decay"]  # the model's own serving block stays
    assert len(config) == len(tracking.flatten(record)) - len(tracking.flatten(
        {k: v for k, v in record["model"].items() if k in ("trainer", "logger", "graph", "aggregator", "loss")}))


# ------------------------------------------------------------------------------ results (pure)


def _evaluation() -> FoldEvaluation:
    summary = pd.DataFrame(
        [("all", "recall@50", 0.5, 0.4, 0.6, 10), ("warm", "recall@50", 0.55, 0.45, 0.65, 8),
         ("all", "coverage@50", 0.3, np.nan, np.nan, 10), ("warm", "clicks_0/recall@50", 0.1, 0.0, 0.2, 3)],
        columns=["slice", "metric", "mean", "ci_low", "ci_high", "n_users"]).set_index(["slice", "metric"])
    glob = {"content_slice/clicks_0/targets": 4.0, "content_slice/clicks_0/contents": 7.0}
    return FoldEvaluation("test", summary, glob, pd.DataFrame(), Recommendations(np.zeros(0), np.zeros((0, 1))))


def test_slice_rows_and_interval_keys():
    ev = _evaluation()
    assert tracking.slice_rows([ev]) == [
        ["test", "all", "recall@50", "test/recall@50", 0.5, 0.4, 0.6, 10],
        ["test", "warm", "recall@50", "test/warm/recall@50", 0.55, 0.45, 0.65, 8],
        ["test", "all", "coverage@50", "test/coverage@50", 0.3, None, None, 10],
    ]
    assert tracking.content_slice_rows([ev]) == [
        ["test", "warm", "clicks_0", "recall@50", "test/warm/clicks_0/recall@50", 0.1, 0.0, 0.2, 3, 4.0, 7.0]]
    assert tracking.interval_summary([ev]) == {
        "test/recall@50_ci_low": 0.4, "test/recall@50_ci_high": 0.6,
        "test/warm/recall@50_ci_low": 0.45, "test/warm/recall@50_ci_high": 0.65,
        "test/warm/clicks_0/recall@50_ci_low": 0.0, "test/warm/clicks_0/recall@50_ci_high": 0.2}


def test_sample_users_warm_first_and_seeded():
    is_warm = np.array([False, True, True, False, True, True, False])
    picked = tracking.choose_sample_users(is_warm, 3, seed=0)
    assert len(picked) == 3 and is_warm[picked].all() and np.array_equal(picked, np.sort(picked))
    assert np.array_equal(picked, tracking.choose_sample_users(is_warm, 3, seed=0))
    assert {tuple(tracking.choose_sample_users(is_warm, 3, seed=s)) for s in range(10)} != {tuple(picked)}
    filled = tracking.choose_sample_users(is_warm, 6, seed=1)  # 4 warm, then 2 of the 3 cold users
    assert len(filled) == 6 and is_warm[filled].sum() == 4
    contents = pd.DataFrame({"content_id": [10, 11], "style": ["nordic", "modern"], "genres": [["Action", "War"], []]})
    labels = tracking.content_labels(contents, [1, 0], ["style", "genres"])
    assert labels == ["11 (modern, -)", "10 (nordic, Action|War)"]
    titled = contents.assign(title=["Heat (1995)", "Fargo (1996)"])
    assert tracking.content_labels(titled, [0], ["style"]) == ["10 Heat (1995)"]


def test_figures_and_artifact_files(tmp_path):
    for name in ("metrics.json", "config_resolved.json", "pool.parquet", "v.npy", "per_user_test.parquet",
                 "checkpoints/last.ckpt", "plot.png", "sub/b.png", "wandb/offline-run-x/files/media/i.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert tracking.figure_files(tmp_path) == {"figures/plot": tmp_path / "plot.png",
                                               "figures/sub/b": tmp_path / "sub/b.png"}

    def names(**kw) -> list[str]:
        return [p.relative_to(tmp_path).as_posix() for p in tracking.artifact_files(tmp_path, **kw)]

    assert names() == ["metrics.json", "config_resolved.json"]
    assert names(per_user=True, checkpoints=True, pools=True) == [
        "metrics.json", "config_resolved.json", "per_user_test.parquet", "checkpoints/last.ckpt", "pool.parquet",
        "v.npy"]


def test_finish_without_a_run_is_a_no_op():
    tracking.finish_wandb()  # whatever an earlier test left open
    assert tracking.finish_wandb({"test/recall@50": 0.5}) is False


# ------------------------------------------------------------------------------ real offline runs


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")


def test_coclick_run_logs_tables_intervals_figures_samples_and_artifact(tmp_path, offline):
    cfg = compose_train(tmp_path, [*TINY, *FAST, "model=coclick", "logger=wandb", "seed=2"])
    run_dir = Path(cfg.run_dir)
    (run_dir / ".hydra").mkdir(parents=True)  # as Hydra leaves it before the job runs
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
        ["model=coclick", "seed=2", "logger=wandb", "dataset=synthetic", "recall.decay=0.5"]))
    import matplotlib.pyplot as plt  # a figure a model writes during its fit (DICE does)

    fig = plt.figure()
    plt.plot([0, 1])
    fig.savefig(run_dir / "probe.png")
    plt.close(fig)
    metrics, objects = train_app.train(cfg)
    assert tracking.finish_wandb(metrics) is False  # train() closed its run
    run = read_finished_run(run_dir)
    assert run["name"] == "coclick-synthetic-s2 recall.decay=0.5"
    assert run["group"] == f"train/{tmp_path.name}" and run["job_type"] == "train"
    assert run["tags"] == ["synthetic", "coclick", "baseline"]
    assert json.loads((run_dir / "wandb_run.json").read_text())["id"] == run["id"]
    check_config(run["config"], "model.pool_size")
    assert run["config"]["seed"] == 2 and run["config"]["model._target_"].endswith("CoClickRecall")
    assert run["summary"][("test/recall@50",)] == pytest.approx(metrics["test/recall@50"])
    check_results(run, run_dir)
    images = [row for row in run["history"] if ("figures/probe", "_type") in row]
    assert len(images) == 1 and images[0][("figures/probe", "_type")] == "image-file"
    assert (run["files"] / images[0][("figures/probe", "path")]).read_bytes() == (run_dir / "probe.png").read_bytes()
    # an evaluation of this run (what evaluate.py does): its own run, in the train run's group
    record = json.loads((run_dir / "config_resolved.json").read_text())
    out = tmp_path / "evaluation"
    assert tracking.start_evaluate_run(record, run_dir, out, {"fold": "test", "ks": [20, 50]}) is not None
    test_evs = [ev for ev in objects["evaluations"] if ev.name == "test"]
    assert tracking.log_run_results(out, {"test/recall@50": 0.25}, test_evs, objects["dataset"],
                                    {"test": objects["folds"]["test"]}, seed=2) is True
    evaluation = read_finished_run(out)
    assert (evaluation["name"], evaluation["group"], evaluation["job_type"], evaluation["tags"]) == (
        f"{run['name']} evaluate", run["group"], "evaluate", run["tags"])
    assert evaluation["config"]["evaluate.fold"] == "test" and evaluation["config"]["seed"] == 2
    assert evaluation["summary"][("test/recall@50",)] == 0.25
    assert read_table(evaluation, "results/sample_users").equals(read_table(run, "results/sample_users"))
    assert set(read_table(evaluation, "results/slices")["fold"]) == {"test"}


def test_sage_trial_is_one_run_with_curves_best_summary_and_results(tmp_path, offline):
    """A Lightning model in an Optuna-style trial folder: one run (start_run's; the Lightning logger
    writes into it), named and grouped by study, curves, best/ summaries, no hyperparameter copies."""
    cfg = compose_train(tmp_path, [*TINY, *FAST, "model=sage", "trainer.max_epochs=2", "logger=wandb",
                                   "model.optim.batch_size=256"])
    run_dir = tmp_path / "optuna" / "sage_tiny" / "trial_3"
    cfg.run_dir = str(run_dir)
    (run_dir / ".hydra").mkdir(parents=True)  # as graphrecall.search writes it before the trial runs
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["model=sage", "trainer.max_epochs=2"]))
    metrics, _ = train_app.train(cfg)
    run = read_finished_run(run_dir)  # asserts exactly one offline run under the folder
    assert (run["name"], run["group"], run["job_type"]) == ("sage_tiny-trial3", "optuna/sage_tiny", "trial")
    assert run["tags"] == ["synthetic", "sage", "stage1"]
    check_config(run["config"])
    assert "config_updates" not in run, run.get("config_updates")  # Lightning added no hyperparameters
    # curves: one val/recall@50 per epoch, equal to the CSV log; best/ = the best epoch's (first maximum)
    csv = pd.read_csv(run_dir / "csv" / "metrics.csv").dropna(subset=["val/recall@50"]).reset_index(drop=True)
    curve = [row[("val/recall@50",)] for row in run["history"] if ("val/recall@50",) in row]
    assert len(csv) == 2 and curve == pytest.approx(csv["val/recall@50"].tolist())
    assert any(("train/loss",) in row for row in run["history"])
    best = int(np.argmax(csv["val/recall@50"].to_numpy()))
    assert run["summary"][("best/val/recall@50",)] == pytest.approx(csv["val/recall@50"][best])
    assert run["summary"][("best/epoch",)] == csv["epoch"][best]
    assert run["summary"][("best/val/recall@50",)] == pytest.approx(metrics["val/fit/best_val_recall@50"])
    check_results(run, run_dir)


def test_multirun_jobs_get_their_own_runs_in_one_group(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "train.py", "-m", *TINY, *FAST, "model=coclick,popular", "trainer.max_epochs=1",
           "logger=wandb", "logger.mode=offline", "seed=1", f"data_dir={tmp_path / 'data'}",
           f"hydra.sweep.dir={sweep}"]
    # no API key, and not this process's W&B service (WANDB_SERVICE, set by an earlier in-process run):
    # a child attached to it loses the run it finishes at exit
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True, env={**env, "WANDB_DIR": str(tmp_path)})
    runs = [read_finished_run(sweep / str(job)) for job in (0, 1)]
    assert runs[0]["id"] != runs[1]["id"]
    assert {r["group"] for r in runs} == {"train/sweep"}
    # the swept model and the seed; not the fixed preset, logger, progress bar or folders
    assert [r["name"] for r in runs] == ["coclick-synthetic-s1", "popular-synthetic-s1"]
    assert [r["tags"] for r in runs] == [["synthetic", "coclick", "baseline"], ["synthetic", "popular", "baseline"]]
    for job, run in enumerate(runs):
        assert run["config"]["choices.model"] == ("coclick", "popular")[job] and run["job_type"] == "train"
        check_results(run, sweep / str(job))


def test_importing_tracking_does_not_import_lightning_or_wandb():
    """train.py imports tracking for every model, also those that never train with Lightning."""
    code = ("import sys, graphrecall.tracking; assert 'pytorch_lightning' not in sys.modules; "
            "assert 'wandb' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    from pytorch_lightning.loggers import WandbLogger

    assert issubclass(tracking.StudyWandbLogger, WandbLogger)  # built on first access
