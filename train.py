"""Train (fit) a recall model and evaluate it: ``python train.py model=coclick dataset=movielens100k``.

Top to bottom: load and validate the data, split it into val and test folds, fit the model on each
fold's training window, serve the fold's users, evaluate, and write everything into the run
directory (resolved config, metrics.json, per-user metrics, graph statistics, model artefacts).
Model selection reads ``val/...``; ``test/...`` is reported.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from graphrecall.config_checks import check_train_config
from graphrecall.data.fingerprint import inputs_fingerprint
from graphrecall.data.schema import FeedDataset
from graphrecall.data.splits import Fold, encode_clicks, make_folds
from graphrecall.determinism import pin_threads, seed_everything
from graphrecall.evaluation import (
    FoldEvaluation,
    backfill_notes,
    content_slices,
    evaluate_model,
    export_recommendations,
    format_content_slices,
    format_summary,
    lists_to_export,
    read_users_file,
)
from graphrecall.metrics import DEFAULT_CLICK_BINS
from graphrecall.metrics.pool_health import pool_health
from graphrecall.recall.pool import CandidatePool
from graphrecall.runs import claim_run_dir, terminated_exits_nonzero  # also registers ${run_id:}
from graphrecall.tracking import finish_wandb, log_run_results, start_run

log = logging.getLogger("graphrecall.train")


def write_atomically(path: Path, write) -> None:
    """``write(tmp_path)`` then rename: an interrupted run never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def process_rank() -> int:
    """Global rank under a distributed launcher (0 otherwise)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))


def run_directory(cfg: DictConfig) -> Path:
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.get("run_dir") or "outputs/adhoc")


def git_revision() -> str | None:
    """The repository's commit (with ``+dirty`` for uncommitted changes), None outside a checkout."""
    import subprocess

    root = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def config_record(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as a plain dict plus the chosen group names (flat keys for loggers) and
    the git revision of the code that ran."""
    record = OmegaConf.to_container(cfg, resolve=True)
    if HydraConfig.initialized():
        record["choices"] = {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra")}
    record["git_revision"] = git_revision()
    return record


def interest_only_targets(dataset: FeedDataset, fold: Fold, cfg: DictConfig) -> dict[str, pd.DataFrame]:
    """The synthetic interest-only test for the fold's target users (empty for real data)."""
    io_cfg = cfg.eval.get("interest_only", {})
    if dataset.truth is None or not io_cfg.get("enabled", False) or fold.cut is None:
        return {}
    from graphrecall.data.synthetic import interest_only_test

    users = np.unique(fold.targets["u"].to_numpy())
    clicks = interest_only_test(
        dataset,
        dataset.users["user_id"].to_numpy()[users],
        clicks_per_user=int(io_cfg.get("clicks_per_user", 10)),
        start_timestamp=int(fold.cut),
        seed=int(cfg.seed),
    )
    from graphrecall.data.splits import target_pairs

    targets, _ = target_pairs(encode_clicks(dataset, clicks), fold.history)
    return {"interest_only": targets}


def train(cfg: DictConfig, extra_callbacks: list | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit and evaluate; returns (flat metrics, objects) so that tests and sweeps can call it.

    ``extra_callbacks`` (e.g. an Optuna pruning callback) go to the Lightning trainer of models
    that train with one (those with an ``extra_callbacks`` attribute).
    """
    check_train_config(cfg)  # out-of-range settings and fold orders fail here, before any work
    runtime = pin_threads(cfg.get("threads", 1))  # one seed, one result: the thread count is part of the config
    seed_everything(int(cfg.seed))
    # refuses a folder holding an earlier run; DDP's helper ranks start on the folder rank 0 has just claimed
    out = claim_run_dir(run_directory(cfg)) if process_rank() == 0 else run_directory(cfg)
    record = config_record(cfg)
    if process_rank() == 0:
        (out / "config_resolved.json").write_text(json.dumps(record, indent=2, default=str))
    start_run(cfg.get("logger"), out, record)  # logger=wandb: this job's W&B run, for every model (heuristics too)

    t0 = time.perf_counter()
    dataset: FeedDataset = instantiate(cfg.dataset.loader)
    load_seconds = time.perf_counter() - t0
    folds = make_folds(dataset, OmegaConf.to_container(cfg.dataset.split, resolve=True), seed=int(cfg.seed))
    for line in (dataset.report.lines() if dataset.report else []):  # after the folds: predefined files count too
        log.warning(line)
    inputs = inputs_fingerprint(dataset, folds)  # evaluate.py refuses to score this run on changed data
    export_users = None  # a users file for the export is read (and refused) before any training
    if cfg.eval.export.enabled and cfg.eval.export.users_file:
        export_users = read_users_file(cfg.eval.export.users_file, dataset.users)

    metrics: dict[str, float] = {"data/load_seconds": load_seconds}
    details: dict[str, Any] = {"dataset": dataset.summary(), "folds": {}, "fit": {},
                               "validation_drops": dict(dataset.report.counts) if dataset.report else {},
                               "runtime": runtime, "inputs": inputs}
    evaluations: list[FoldEvaluation] = []
    # one model for all folds: trainable models train (and select) on the first fold, val, and
    # reuse the selected weights on later folds; the baselines simply refit on each fold's window
    model = instantiate(cfg.model, _convert_="all")
    model.run_config = record
    if extra_callbacks and hasattr(model, "extra_callbacks"):
        model.extra_callbacks = list(extra_callbacks)
    for name in cfg.eval.folds:
        fold = folds[name]
        details["folds"][name] = fold.describe()
        extra_targets = interest_only_targets(dataset, fold, cfg)
        # model selection reads the fold's targets; eval.select_on=interest_only selects on the
        # synthetic interest-only targets instead (the unbiased protocol that DICE assumes)
        select_on = cfg.eval.get("select_on", "targets")
        if select_on == "interest_only":
            if "interest_only" not in extra_targets:
                raise ValueError("eval.select_on=interest_only needs synthetic data with eval.interest_only.enabled")
            fit_fold = dataclasses.replace(fold, targets=extra_targets["interest_only"])
        elif select_on == "targets":
            fit_fold = fold
        else:
            raise ValueError(f"eval.select_on must be targets or interest_only, got '{select_on}'")
        t0 = time.perf_counter()
        fit_info = model.fit(fit_fold, dataset, cache_dir=cfg.get("cache_dir"), run_dir=out)
        if process_rank() != 0:  # DDP: the other ranks only help to train; rank 0 evaluates and writes
            return {}, {"dataset": dataset, "folds": folds, "model": model, "evaluations": []}
        fit_info["fit_seconds"] = time.perf_counter() - t0
        pool = getattr(model, "pool", None)
        if isinstance(pool, CandidatePool):  # i2i models: does the pool's head spread, or collapse onto hubs
            fit_info |= {f"pool/{k}": v for k, v in pool_health(pool.neighbors).items()}
        details["fit"][name] = fit_info
        metrics.update({f"{name}/fit/{k}": float(v) for k, v in fit_info.items() if isinstance(v, (int, float))})
        t0 = time.perf_counter()
        evs = evaluate_model(
            model, fold, dataset, OmegaConf.to_container(cfg.eval, resolve=True), int(cfg.seed),
            extra_targets=extra_targets,
        )
        metrics[f"{name}/eval_seconds"] = time.perf_counter() - t0
        reference = getattr(model, "reference", None)
        if reference is not None:  # model.refit: the validation-trained model on this fold, for comparison
            evs = evs + evaluate_model(
                reference, dataclasses.replace(fold, name=f"{name}_no_refit"), dataset,
                OmegaConf.to_container(cfg.eval, resolve=True), int(cfg.seed), extra_targets=extra_targets,
            )
        for ev in evs:
            metrics.update(ev.flat())
            ev.per_user.to_parquet(out / f"per_user_{ev.name}.parquet", index=False)
        # per-user metrics at every serving setting of the grid: validation's for a choice pooled over a
        # backtest's windows (graphrecall.backtest), the test fold's (opt-in) for what that choice scores
        if hasattr(model, "serving_grid_per_user") and (name == "val" or cfg.eval.get("serving_grid_test", False)):
            grid = model.serving_grid_per_user(fold, dataset)
            if grid is not None:
                grid.to_parquet(out / f"serving_grid_{name}.parquet", index=False)
        # per-user metrics at every combination of the channels' slot counts (opt-in), for a channel choice
        # pooled over a backtest's validation windows and the test values it scores
        if cfg.eval.get("channel_grid", False) and getattr(model, "uses_channels", False):
            slices = content_slices(fold, dataset, tuple(cfg.eval.get("content_bins", DEFAULT_CLICK_BINS)))
            grid = model.channel_grid_per_user(fold, dataset, int(cfg.eval.get("channel_grid_auto_max", 4)), slices)
            grid.to_parquet(out / f"channel_grid_{name}.parquet", index=False)
        evaluations.extend(evs)
        if name == "test":
            model.save(out, dataset)
            if hasattr(model, "diagnostics"):  # model-specific checks (DICE: agreement with the truth, figure)
                metrics.update({f"test/diag/{k}": float(v) for k, v in model.diagnostics(fold, dataset, out).items()})
            export = cfg.eval.export
            if export.enabled:
                recs = lists_to_export(model, evs[0], fold, int(export.k), export_users)
                table = export_recommendations(recs, dataset)
                write_atomically(out / "recommendations.parquet", lambda p: table.to_parquet(p, index=False))
                log.info("exported %d users' top-%d lists (%d entries) to %s", len(recs.users), int(export.k),
                         len(table), out / "recommendations.parquet")

    table = format_summary(evaluations, ("recall@50", "ndcg@50", "distinct_style@50", "new_share@50", "coverage@50"),
                           slices=("all", "warm", "cold"))
    table += "\n\nby the target content's training-window clicks (all users):\n" + format_content_slices(evaluations, 50)
    model_name = cfg.model._target_.rsplit(".", 1)[-1]
    details["notes"] = backfill_notes(evaluations, model_name)  # a degenerate setting says so: log, table, metrics.json
    for note in details["notes"]:
        log.warning(note)
        table += "\n" + note
    (out / "metrics_table.txt").write_text(table + "\n")
    summaries = {ev.name: ev.summary.reset_index().to_dict(orient="records") for ev in evaluations}
    # metrics.json marks a finished run (the report reads only runs that have one): written last, atomically
    text = json.dumps({"metrics": metrics, "summary": summaries, "details": details}, indent=2, default=str)
    write_atomically(out / "metrics.json", lambda p: p.write_text(text))
    print(f"\n[{model_name} on {dataset.name}] run dir: {out}\n{table}\n")
    # logger=wandb: slice tables, intervals, figures, sample users, artifact and final metrics, then close the run
    log_run_results(out, metrics, evaluations, dataset, folds, seed=int(cfg.seed))
    return metrics, {"dataset": dataset, "folds": folds, "model": model, "evaluations": evaluations}


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        with terminated_exits_nonzero(f"train {run_directory(cfg)}"):  # SIGTERM: exit 143, not 0
            metrics, _ = train(cfg)
    except BaseException:
        finish_wandb(exit_code=1)  # a failed job closes its W&B run too
        raise
    key = cfg.get("optimized_metric")
    if key is None:
        return None
    if key not in metrics:
        raise KeyError(f"optimized_metric '{key}' is not a metric of this run; known: {sorted(metrics)[:20]}...")
    return metrics[key]


if __name__ == "__main__":
    import sys

    from graphrecall.runs import exit_if_output_dirs_used

    exit_if_output_dirs_used(sys.argv[1:], "train")  # before Hydra rewrites a finished run's .hydra/ files
    main()
