"""What an Optuna study leaves for people to read: Optuna's own plots of the study (history,
parallel coordinates, parameter importances; a Pareto front for several objectives) as PNG files
beside ``best.json``, and, with ``logger=wandb``, one W&B run (job_type ``study``) in the study's
group holding those plots, a table of the trials, the best values and the fixed overrides.
Called by :mod:`graphrecall.search` at the end of every command that was not stopped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("graphrecall.search")
IMPORTANCE_MIN_TRIALS = 5  # complete trials before a parameter-importance plot (fANOVA) is drawn


def metric_slug(metric: str) -> str:
    """A file-name part of a metric: ``val/warm/recall@50`` -> ``val_warm_recall_50``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", metric).strip("_")


def write_study_plots(study: optuna.Study, metrics: list[str], out_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Optuna's own matplotlib plots of the study, as ``<out_dir>/optuna_<plot>.png``.

    Drawn: the optimization history and the parallel coordinates (one per objective, suffixed with
    the metric for a multi-objective study), the parameter importances (fANOVA, seed 0) once the
    complete trials hold >= 2 parameters and number >= ``IMPORTANCE_MIN_TRIALS``, and the Pareto front
    of a 2- or 3-objective study.

    Returns:
        ({plot: path written}, {plot: why it was not drawn}); the second is also logged.
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization import matplotlib as optuna_plots

    from graphrecall.plots import save_figure

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        log.warning("study '%s': no complete trial, no plots", study.study_name)
        return {}, {"all": "no complete trial"}
    params = set().union(*(t.params for t in complete))
    single = len(metrics) == 1
    draws, skipped = {}, {}
    for i, metric in enumerate(metrics):
        suffix = "" if single else f"_{metric_slug(metric)}"
        target = {"target_name": metric} if single else {"target": (lambda t, i=i: t.values[i]), "target_name": metric}
        draws[f"history{suffix}"] = lambda target=target: optuna_plots.plot_optimization_history(study, **target)
        if len(params) < 2:
            skipped[f"importance{suffix}"] = f"{len(params)} searched parameter(s): importances need 2 or more"
        elif len(complete) < IMPORTANCE_MIN_TRIALS:
            skipped[f"importance{suffix}"] = (f"{len(complete)} complete trial(s): importances need "
                                              f"{IMPORTANCE_MIN_TRIALS} (IMPORTANCE_MIN_TRIALS)")
        else:
            draws[f"importance{suffix}"] = lambda target=target: optuna_plots.plot_param_importances(
                study, evaluator=FanovaImportanceEvaluator(seed=0), **target)
        draws[f"parallel_coordinate{suffix}"] = lambda target=target: optuna_plots.plot_parallel_coordinate(study, **target)
    if len(metrics) in (2, 3):
        draws["pareto_front"] = lambda: optuna_plots.plot_pareto_front(study, target_names=metrics)
    written = {}
    for name, draw in draws.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # one complete trial: an axis of a single value, which matplotlib widens itself
                warnings.filterwarnings("ignore", "Attempting to set identical", UserWarning)
                axes = draw()
            fig = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            written[name] = str(save_figure(fig, out_dir / f"optuna_{name}.png"))
            plt.close(fig)
        except Exception as exc:  # noqa: BLE001 - a plot must not lose the study's summary
            skipped[name] = f"{type(exc).__name__}: {exc}"
    for name, why in skipped.items():
        log.info("study '%s': plot %s not drawn: %s", study.study_name, name, why)
    return written, skipped


def trial_wandb_identity(summary: dict[str, Any]) -> dict[str, Any]:
    """The W&B identity a trial of the study recorded (``<trial run dir>/wandb_run.json``: group,
    tags), best trial first; empty when no trial logged to W&B."""
    records = [summary["best"]] if summary.get("best") else list(summary.get("best_trials") or [])
    study = optuna.load_study(study_name=summary["study_name"], storage=summary["storage"])
    dirs = [r.get("run_dir") for r in records] + [t.user_attrs.get("run_dir") for t in study.get_trials(deepcopy=False)]
    for run_dir in dirs:
        path = Path(run_dir) / "wandb_run.json" if run_dir else None
        if path is not None and path.is_file():
            return json.loads(path.read_text())
    return {}


def log_study_to_wandb(summary: dict[str, Any], train_cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """One W&B run (``job_type`` study, name ``<study> study``) in the trials' group with the study's
    plots (images), a table of its trials, the best values, parameters and rerun command (summary) and
    the fixed overrides (config). The group is ``logger.group``, else the one the trials recorded
    (``wandb_run.json``), else ``optuna/<study>``. It writes under ``<out_dir>/wandb`` (offline unless
    an API key is configured, as the trials).

    Returns:
        ``{"run_dir", "group", "mode"}``, or ``{"error": ...}`` when W&B failed (logged; the study's own
        files are unaffected).
    """
    from graphrecall import tracking

    logger_cfg = OmegaConf.to_container(train_cfg.logger, resolve=True)
    try:
        mode = tracking.wandb_mode(str(logger_cfg.get("mode", "auto")))
        if mode == "disabled":
            return {"mode": mode}
        import wandb

        tracking.finish_wandb()  # never log into a trial's run
        os.environ.setdefault("WANDB_SILENT", "true")
        trial = trial_wandb_identity(summary)
        group = str(logger_cfg.get("group") or trial.get("group") or f"optuna/{summary['study_name']}")
        tags = list(dict.fromkeys([*(trial.get("tags") or logger_cfg.get("tags") or []), "study"]))
        config = tracking.flatten({"study": {k: summary[k] for k in ("study_name", "storage", "directions",
                                                                      "optimized_metrics", "n_trials")},
                                   "fixed": summary.get("fixed_overrides") or {}})
        run = wandb.init(project=logger_cfg.get("project") or "graphrecall", entity=logger_cfg.get("entity"),
                         group=group, job_type="study", name=f"{summary['study_name']} study", tags=tags,
                         dir=str(out_dir), mode=mode, config=config)
        try:
            run.log({f"study/{name}": wandb.Image(path) for name, path in summary.get("plots", {}).items()})
            run.log({"study/trials": trials_table(summary, wandb)})
            run.summary.update(study_run_summary(summary))
        finally:
            run.finish()
        return {"run_dir": str(Path(run.dir).parent), "group": group, "mode": mode}
    except Exception as exc:  # noqa: BLE001 - W&B is optional: say so, keep the study's files
        log.warning("study '%s': W&B study run not logged: %s: %s", summary["study_name"], type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}


def trials_table(summary: dict[str, Any], wandb: Any) -> Any:
    """A ``wandb.Table`` of the study's trials: number, state, objective values, parameters."""
    study = optuna.load_study(study_name=summary["study_name"], storage=summary["storage"])
    trials = study.get_trials(deepcopy=False)
    metrics = list(summary["optimized_metrics"])
    params = sorted(set().union(*(t.params for t in trials))) if trials else []
    rows = [[t.number, t.state.name, *(t.values or [None] * len(metrics)), *(t.params.get(p) for p in params)]
            for t in trials]
    return wandb.Table(columns=["trial", "state", *metrics, *params], data=rows)


def study_run_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """Flat W&B summary keys: trial counts, the best trial's values and parameters, its rerun command."""
    out: dict[str, Any] = {f"study/{k}": v for k, v in summary["counts"].items()}
    best = summary.get("best")
    if best:
        out["best/trial"] = best["number"]
        out.update({f"best/{k}": v for k, v in best["values"].items()})
        out.update({f"best/params/{k}": v for k, v in best["params"].items()})
        if best.get("rerun"):
            out["best/rerun_command"] = best["rerun"]["command"]
    out["study/pareto_trials"] = [b["number"] for b in summary.get("best_trials", [])] or None
    return {k: v for k, v in out.items() if v is not None}
