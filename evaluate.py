"""Re-evaluate a trained run or a checkpoint, and export its recommendations.

``python evaluate.py run_dir=outputs/train/<date_time> [eval.export.enabled=true eval.export.users_file=u.csv]``
rebuilds the data and folds from the run's resolved config, refuses data that changed since the
run was trained, loads the fitted artefacts (pool, ranking), serves the fold's users, prints the
metrics table (warm users are the headline slice) and writes ``metrics.json`` (and
``recommendations.parquet``) into this evaluation's own folder, never the train run's.

``python evaluate.py ckpt_path=<run dir>/checkpoints/best-epoch3.ckpt`` takes the config saved in
the checkpoint, restores the weights, re-embeds the fold's graph and rebuilds the pool.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from graphrecall.config_checks import ConfigError, check_evaluate_config, check_train_config
from graphrecall.data.fingerprint import describe_changes, inputs_fingerprint
from graphrecall.data.splits import make_folds
from graphrecall.determinism import pin_threads
from graphrecall.evaluation import (
    backfill_notes,
    evaluate_model,
    export_recommendations,
    format_content_slices,
    format_summary,
    lists_to_export,
    read_users_file,
)
from graphrecall.metrics import DEFAULT_CLICK_BINS
from graphrecall.runs import FINISHED_MARKER, RUN_ID, RunDirInUse, terminated_exits_nonzero  # also registers ${run_id:}
from graphrecall.tracking import finish_wandb, log_run_results, start_evaluate_run

log = logging.getLogger("graphrecall.evaluate")
DEFAULTS = OmegaConf.load(Path(__file__).resolve().parent / "conf" / "evaluate.yaml")


LEGACY_KEYS = {"ks": "eval.ks", "bootstrap.num_resamples": "eval.bootstrap.num_resamples",
               "bootstrap.confidence": "eval.bootstrap.confidence", "export.enabled": "eval.export.enabled",
               "export.users_file": "eval.export.users_file", "export.k": "eval.export.k"}


def canonical_keys(cfg: DictConfig) -> DictConfig:
    """The config with train.py's key names: an old name (``export.k``) that is set moves to its new
    key (``eval.export.k``) with a warning naming it; both set to different values is an error."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for old, new in LEGACY_KEYS.items():
        value = OmegaConf.select(cfg, old, default=None)
        if value is None:
            continue
        current, default = OmegaConf.select(cfg, new), OmegaConf.select(DEFAULTS, new)
        if current != default and current != value:
            raise ConfigError(f"{old}={value} and {new}={current}: {old} is the old name of {new}; give {new} only")
        log.warning("%s is the old name of %s (train.py's key): use %s", old, new, new)
        OmegaConf.update(cfg, new, value, merge=False)
    return cfg


def run_record(cfg: DictConfig) -> tuple[dict, Path]:
    """(the train run's resolved config, the directory that holds its artefacts)."""
    if cfg.get("ckpt_path"):
        from graphrecall.checkpoints import load_checkpoint_file

        ckpt = load_checkpoint_file(cfg.ckpt_path)  # weights_only: a crafted file cannot run code
        record = (ckpt.get("hyper_parameters") or {}).get("run_config")
        if not record:
            raise ValueError(f"{cfg.ckpt_path} holds no run_config: not a graphrecall checkpoint")
        return record, Path(cfg.run_dir) if cfg.get("run_dir") else Path(cfg.ckpt_path).parent.parent
    if not cfg.get("run_dir"):
        raise ValueError("give run_dir=<train run directory> or ckpt_path=<checkpoint>")
    run_dir = Path(cfg.run_dir)
    record_path = run_dir / "config_resolved.json"
    if not record_path.exists():
        raise FileNotFoundError(f"{record_path} not found: run_dir must be a train.py run directory")
    if not (run_dir / FINISHED_MARKER).exists():
        raise FileNotFoundError(f"run_dir={run_dir} is an unfinished train run (no {FINISHED_MARKER}: killed, failed or "
                                "still running): nothing of it can be scored; its checkpoints can "
                                "(ckpt_path=<run>/checkpoints/last.ckpt)")
    return json.loads(record_path.read_text()), run_dir


def output_dir(cfg: DictConfig, run_dir: Path) -> Path:
    """This evaluation's own folder: Hydra's run folder, else ``out_dir``, else a new
    ``outputs/evaluate/<date_time>_<launch id>``; never a train run's folder or an earlier evaluation's."""
    if HydraConfig.initialized():
        out = Path(HydraConfig.get().runtime.output_dir)
    elif cfg.get("out_dir"):
        out = Path(cfg.out_dir)
    else:
        out = Path("outputs/evaluate") / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{RUN_ID}"
    if out.resolve() == run_dir.resolve() or (out / "config_resolved.json").exists():
        raise RunDirInUse(f"{out} is a train run's folder: evaluate.py never writes into it; give another folder")
    if (out / FINISHED_MARKER).exists():
        raise RunDirInUse(f"{out} already holds an evaluation ({FINISHED_MARKER}); give another folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_inputs_unchanged(run_dir: Path, dataset, folds, allow: bool) -> None:
    """Refuse (or, with ``allow_changed_inputs=true``, warn) when the data differ from what the run
    was trained on (:mod:`graphrecall.data.fingerprint`): its numbers would not be the run's."""
    path = run_dir / FINISHED_MARKER
    recorded = (json.loads(path.read_text()).get("details") or {}).get("inputs") if path.exists() else None
    if not recorded:
        log.warning("%s records no fingerprint of its inputs (a run from before issue 25): cannot check that the data "
                    "are the ones it was trained on", run_dir)
        return
    changes = describe_changes(recorded, inputs_fingerprint(dataset, folds))
    if not changes:
        return
    what = "; ".join(changes)
    if not allow:
        raise ValueError(f"the data changed since {run_dir} was trained ({what}): its scores here would not be the "
                         "run's; retrain, or pass allow_changed_inputs=true to score it anyway")
    log.warning("SCORING ON CHANGED DATA (allow_changed_inputs=true): %s", what)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    cfg = canonical_keys(cfg)
    check_evaluate_config(cfg)
    pin_threads(cfg.get("threads", 1))
    record, run_dir = run_record(cfg)
    train_record = record  # with its choices: the W&B run's config
    record = dict(record)
    record.pop("choices", None)
    record.pop("git_revision", None)
    train_cfg = OmegaConf.create(record)
    check_train_config(train_cfg)
    out = output_dir(cfg, run_dir)
    start_evaluate_run(train_record, run_dir, out, cfg, cfg.get("logger"))  # W&B when the run used logger=wandb (or logger= given)

    dataset = instantiate(train_cfg.dataset.loader)
    folds = make_folds(dataset, OmegaConf.to_container(train_cfg.dataset.split), seed=int(train_cfg.seed))
    check_inputs_unchanged(run_dir, dataset, folds, bool(cfg.get("allow_changed_inputs", False)))
    fold = folds[cfg.fold]
    model = instantiate(train_cfg.model, _convert_="all")
    if cfg.get("ckpt_path"):
        if not hasattr(model, "load_checkpoint"):
            raise ValueError(f"{train_cfg.model._target_} has no checkpoints; use run_dir=")
        model.load_checkpoint(cfg.ckpt_path, dataset)
        if getattr(model, "refit", False):  # the checkpoint's weights are served as they are, never retrained
            model.refit = False
        serving = run_dir / "serving.json"  # serving grids: the values validation chose for the run
        chosen = json.loads(serving.read_text()) if serving.exists() else {}
        if hasattr(model, "restore_serving_choices"):  # i2i: beta, min_score, prior_weight, the channels' slots and scores
            model.restore_serving_choices(chosen)
        elif getattr(model, "popularity_beta", 0.0) is None and chosen:
            model.popularity_beta = chosen["popularity_beta"]
        model.fit(fold, dataset, cache_dir=train_cfg.get("cache_dir"))  # re-embeds the fold's graph only
    else:
        try:
            model.load(run_dir, fold, dataset)
        except FileNotFoundError as e:
            folds_run = list(train_cfg.eval.get("folds", []))
            why = ("train.py saves them only when eval.folds includes test (this run had eval.folds="
                   f"{folds_run})" if "test" not in folds_run else "the run's files are incomplete (deleted or moved?)")
            raise FileNotFoundError(f"{run_dir} holds no fitted model artefact {Path(e.filename).name if e.filename else e}: "
                                    f"{why}") from e
    ev_cfg = cfg.eval
    eval_cfg = {"ks": list(ev_cfg.ks), "low_activity_max": train_cfg.eval.low_activity_max,
                "content_bins": list(train_cfg.eval.get("content_bins", DEFAULT_CLICK_BINS)),
                "bootstrap": OmegaConf.to_container(ev_cfg.bootstrap)}
    evaluations = evaluate_model(model, fold, dataset, eval_cfg, int(train_cfg.seed))
    metrics = {k: v for ev in evaluations for k, v in ev.flat().items()}
    summaries = {ev.name: ev.summary.reset_index().to_dict(orient="records") for ev in evaluations}
    model_name = str(train_cfg.model._target_).rsplit(".", 1)[-1]
    notes = backfill_notes(evaluations, model_name)
    if ev_cfg.export.enabled:
        k = int(ev_cfg.export.k)
        users = read_users_file(ev_cfg.export.users_file, dataset.users) if ev_cfg.export.users_file else None
        recs = lists_to_export(model, evaluations[0], fold, k, users)
        table = export_recommendations(recs, dataset)
        table.to_parquet(out / "recommendations.parquet", index=False)
        log.info("exported %d users' top-%d lists (%d entries) to %s", len(recs.users), k, len(table),
                 out / "recommendations.parquet")
    table = format_summary(evaluations, ("recall@50", "ndcg@50", "distinct_style@50", "coverage@50"),
                           slices=("all", "warm", "cold", "low_activity"))
    table += "\n\nby the target content's training-window clicks (all users):\n" + format_content_slices(evaluations, 50)
    for note in notes:
        log.warning(note)
        table += "\n" + note
    (out / "metrics_table.txt").write_text(table + "\n")
    (out / FINISHED_MARKER).write_text(json.dumps({"run_dir": str(run_dir), "metrics": metrics, "summary": summaries,
                                                   "notes": notes}, indent=2, default=str))
    log_run_results(out, metrics, evaluations, dataset, {fold.name: fold}, seed=int(train_cfg.seed))
    print(f"\n[evaluate {run_dir}] output: {out}\n{table}\n")
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    try:
        with terminated_exits_nonzero("evaluate"):
            evaluate(cfg)
    except BaseException:
        finish_wandb(exit_code=1)  # a failed evaluation closes its W&B run too
        raise


if __name__ == "__main__":
    import sys

    from graphrecall.runs import exit_if_output_dirs_used

    exit_if_output_dirs_used(sys.argv[1:], "evaluate")  # never into a train run's (or an evaluation's) folder
    main()
