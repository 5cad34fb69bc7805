"""Re-evaluate a trained run or a checkpoint, and export its recommendations.

``python evaluate.py run_dir=outputs/train/<date_time> [export.enabled=true export.users_file=u.csv]``
rebuilds the data and folds from the run's resolved config, loads the fitted artefacts (pool,
ranking), serves the fold's users, prints the metrics table and writes ``metrics.json`` (and
``recommendations.parquet``) into this evaluation's own run directory.

``python evaluate.py ckpt_path=<run dir>/checkpoints/best-epoch=3.ckpt`` takes the config saved in
the checkpoint, restores the weights, re-embeds the fold's graph and rebuilds the pool.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from graphrecall.config_checks import check_evaluate_config, check_train_config
from graphrecall.data.splits import make_folds
from graphrecall.determinism import pin_threads
from graphrecall.evaluation import (
    evaluate_model,
    export_recommendations,
    format_content_slices,
    format_summary,
    read_users_file,
)
from graphrecall.metrics import DEFAULT_CLICK_BINS
from graphrecall.runs import terminated_exits_nonzero  # also registers ${run_id:}

log = logging.getLogger("graphrecall.evaluate")


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
    record_path = Path(cfg.run_dir) / "config_resolved.json"
    if not record_path.exists():
        raise FileNotFoundError(f"{record_path} not found: run_dir must be a train.py run directory")
    return json.loads(record_path.read_text()), Path(cfg.run_dir)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    check_evaluate_config(cfg)
    pin_threads(cfg.get("threads", 1))
    record, run_dir = run_record(cfg)
    record = dict(record)
    record.pop("choices", None)
    record.pop("git_revision", None)
    train_cfg = OmegaConf.create(record)
    check_train_config(train_cfg)
    out = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else run_dir / "evaluate"
    out.mkdir(parents=True, exist_ok=True)

    dataset = instantiate(train_cfg.dataset.loader)
    folds = make_folds(dataset, OmegaConf.to_container(train_cfg.dataset.split), seed=int(train_cfg.seed))
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
        if hasattr(model, "restore_serving_choices"):  # i2i: beta, min_score, the channels' slots and scores
            model.restore_serving_choices(chosen)
        elif getattr(model, "popularity_beta", 0.0) is None and chosen:
            model.popularity_beta = chosen["popularity_beta"]
        model.fit(fold, dataset, cache_dir=train_cfg.get("cache_dir"))  # re-embeds the fold's graph only
    else:
        try:
            model.load(run_dir, fold, dataset)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"{run_dir} holds no fitted model artefacts ({e.filename}); train.py saves them only when "
                "eval.folds includes test"
            ) from e
    eval_cfg = {"ks": list(cfg.ks), "low_activity_max": train_cfg.eval.low_activity_max,
                "content_bins": list(train_cfg.eval.get("content_bins", DEFAULT_CLICK_BINS)),
                "bootstrap": OmegaConf.to_container(cfg.bootstrap)}
    evaluations = evaluate_model(model, fold, dataset, eval_cfg, int(train_cfg.seed))
    metrics = {k: v for ev in evaluations for k, v in ev.flat().items()}
    summaries = {ev.name: ev.summary.reset_index().to_dict(orient="records") for ev in evaluations}
    (out / "metrics.json").write_text(json.dumps({"run_dir": str(run_dir), "metrics": metrics,
                                                  "summary": summaries}, indent=2, default=str))
    if cfg.export.enabled:
        k = int(cfg.export.k)
        if cfg.export.users_file:
            recs = model.recommend(read_users_file(cfg.export.users_file, dataset.users), fold, k)
        else:
            recs = evaluations[0].recs
            recs.items = recs.items[:, :k]
        export_recommendations(recs, dataset).to_parquet(out / "recommendations.parquet", index=False)
        log.info("exported %d users' top-%d to %s", len(recs.users), k, out / "recommendations.parquet")
    table = format_summary(evaluations, ("recall@50", "ndcg@50", "distinct_style@50", "coverage@50"),
                           slices=("all", "low_activity", "cold"))
    table += "\n\nby the target content's training-window clicks (all users):\n" + format_content_slices(evaluations, 50)
    print(f"\n[evaluate {run_dir}] output: {out}\n{table}\n")
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with terminated_exits_nonzero("evaluate"):
        evaluate(cfg)


if __name__ == "__main__":
    main()
