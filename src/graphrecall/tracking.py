"""Experiment tracking: Weights & Biases, offline unless an API key is configured.

One W&B run per training job, with

- a **group** per study: ``<task_name>/<sweep folder>`` for the jobs of one multirun (``task_name``
  is the experiment's name, the sweep folder its timestamp), ``<task_name>`` for a single Hydra run,
  ``<task_name>/<parent folder of the run>`` otherwise (an Optuna study: its name);
- a **name** from the chosen config groups, the seed and every other override of the job
  (``sage-gat-bce-synthetic-s1 model.optim.lr=0.01``): the jobs of a sweep differ by name exactly
  where their overrides differ;
- the resolved config as **flat keys** (``model.optim.lr``, ``choices.aggregator``, ``seed``,
  ``git_revision``): W&B groups and compares runs by flat keys only;
- **best-value summaries**: ``best/val/<metric>`` = the validation metrics of the epoch with the best
  ``val/recall@50`` (the epoch that checkpointing selects) and ``best/epoch``;
- the run **finished** by :func:`finish_wandb` at the end of the job (with the final val / test metrics
  in its summary), when the fit fails, and in any case before the next job's run starts, so that the
  jobs of a multirun never share a run.

Offline runs are uploaded later with ``wandb sync <run dir>/wandb/offline-run-*``.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path
from typing import Any

import yaml

NAME_GROUPS = ("model", "aggregator", "loss", "dataset")  # config groups that prefix a run name


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``: W&B compares and groups runs by flat keys only."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def has_wandb_key() -> bool:
    """True when W&B could log online without a prompt (environment or stored login)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import wandb

        return bool(wandb.Api(timeout=1).api_key)
    except Exception:  # no stored key, or the client cannot tell without a network call
        return False


def wandb_mode(requested: str) -> str:
    """``auto`` -> online with a key, else offline; never an interactive prompt."""
    if requested == "auto":
        return "online" if has_wandb_key() else "offline"
    if requested not in ("online", "offline", "disabled"):
        raise ValueError(f"logger.mode must be auto, online, offline or disabled, got '{requested}'")
    return requested


def _hydra_config():
    """Hydra's config of the running job, or None outside a Hydra app (tests, Optuna trials)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def job_overrides(run_dir: Path | None) -> list[str]:
    """The job's command-line and sweep overrides: Hydra's, else ``<run_dir>/.hydra/overrides.yaml``
    (which Optuna trials write too), else none."""
    hc = _hydra_config()
    if hc is not None:
        return list(hc.overrides.task)
    path = Path(run_dir) / ".hydra" / "overrides.yaml" if run_dir is not None else None
    if path is not None and path.exists():
        return [str(o) for o in yaml.safe_load(path.read_text()) or []]
    return []


def run_name(config: dict[str, Any] | None, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """``<model>-<aggregator>-<loss>-<dataset>-s<seed>`` then every other override of the job.

    Left out of the override part: ``hydra.*``, ``experiment=`` (the group names the study), the
    groups already in the prefix, ``seed=`` (the ``s<seed>`` part) and folders (``*dir=``). Without
    Hydra's group choices (composed configs) the prefix is the model class.
    """
    if not config:
        return "run"
    choices = config.get("choices") or {}
    prefix = [str(choices[g]) for g in NAME_GROUPS if choices.get(g)]
    if not prefix:
        target = str((config.get("model") or {}).get("_target_", ""))
        prefix = [target.rsplit(".", 1)[-1]] if target else []
    extra = []
    for o in overrides:
        key, _, value = o.partition("=")
        key = key.lstrip("+~")
        if key.startswith("hydra.") or key in ("experiment", "seed") or key.endswith("dir"):
            continue
        if key in NAME_GROUPS and choices.get(key) == value:
            continue
        extra.append(f"{key}={value}")
    return " ".join(["-".join([*prefix, f"s{config.get('seed', 0)}"]), *extra])


def run_group(config: dict[str, Any] | None, run_dir: Path | None) -> str:
    """The study a run belongs to (see the module docstring)."""
    task = str((config or {}).get("task_name") or "train")
    hc = _hydra_config()
    if hc is not None:
        from hydra.types import RunMode

        return f"{task}/{Path(hc.sweep.dir).name}" if hc.mode == RunMode.MULTIRUN else task
    parent = Path(run_dir).resolve().parent.name if run_dir is not None else ""
    return f"{task}/{parent}" if parent else task


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finish_wandb(metrics: dict[str, Any] | None = None, exit_code: int | None = None) -> bool:
    """Write ``metrics`` (e.g. the final val / test metrics) into the active W&B run's summary and
    finish it. A no-op returning False when no run is active (or wandb was never imported)."""
    wandb = sys.modules.get("wandb")  # never import wandb only to find that no run exists
    if wandb is None or wandb.run is None:
        return False
    for key, value in (metrics or {}).items():
        if _finite(value):
            wandb.run.summary[key] = value
    wandb.finish(exit_code=exit_code)
    return True


@functools.cache
def study_wandb_logger_class() -> type:
    """Build :class:`StudyWandbLogger` (a subclass of Lightning's ``WandbLogger``) on first use, so that
    importing this module (``train.py`` calls :func:`finish_wandb` after every job) does not import
    Lightning (~1 s) in runs of models that never train with it."""
    from pytorch_lightning.loggers import WandbLogger
    from pytorch_lightning.utilities import rank_zero_only

    class StudyWandbLogger(WandbLogger):
        """``WandbLogger`` that keeps the validation metrics of the best epoch and writes them to the run
        summary as ``best/<key>`` (plus ``best/epoch``) when the fit ends; a failed fit finishes its run.

        Args:
            monitor: the selection metric (``val/recall@50``), maximised; ties keep the first epoch, as
                ``ModelCheckpoint`` does.
            *args, **kwargs: ``WandbLogger`` arguments.
        """

        def __init__(self, *args: Any, monitor: str = "val/recall@50", **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.monitor = monitor
            self.best: dict[str, float] | None = None

        @rank_zero_only
        def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
            super().log_metrics(metrics, step)
            value = metrics.get(self.monitor)
            value = float(value) if value is not None else None
            if value is not None and math.isfinite(value) and (self.best is None or value > self.best[self.monitor]):
                prefix = self.monitor.split("/", 1)[0] + "/"
                self.best = {k: float(v) for k, v in metrics.items() if k.startswith(prefix) and not k.endswith("_best")}
                if "epoch" in metrics:
                    self.best["epoch"] = float(metrics["epoch"])

        def best_summary(self) -> dict[str, float]:
            """``{"best/val/recall@50": ..., "best/epoch": ...}`` of the best epoch so far (empty before one)."""
            return {f"best/{k}": v for k, v in (self.best or {}).items()}

        @rank_zero_only
        def finalize(self, status: str) -> None:
            super().finalize(status)
            if self._experiment is None:
                return
            for key, value in self.best_summary().items():
                self._experiment.summary[key] = value
            if status != "success":  # the job is failing: close its run now (train.py finishes successful ones)
                finish_wandb(exit_code=1)

    StudyWandbLogger.__module__, StudyWandbLogger.__qualname__ = __name__, "StudyWandbLogger"  # picklable by name
    return StudyWandbLogger


def __getattr__(name: str) -> Any:
    if name == "StudyWandbLogger":  # tracking.StudyWandbLogger, built on first access
        return study_wandb_logger_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def wandb_logger(logger_cfg: dict[str, Any], run_dir: Path, run_config: dict[str, Any] | None):
    """A W&B logger writing under ``run_dir/wandb``: group per study, name from the job's overrides,
    config as flat keys, best-value summaries (see the module docstring).

    ``logger_cfg``: ``project, entity, group`` (null: per study), ``tags``, ``mode`` (auto | offline |
    online | disabled).
    """
    from graphrecall.training import VAL_METRIC

    finish_wandb()  # a run left open by an earlier job of this process (multirun, Optuna) must not be reused
    mode = wandb_mode(str(logger_cfg.get("mode", "auto")))
    os.environ.setdefault("WANDB_SILENT", "true")
    config = flatten(run_config or {})
    return study_wandb_logger_class()(
        project=logger_cfg.get("project", "graphrecall"),
        entity=logger_cfg.get("entity"),
        group=logger_cfg.get("group") or run_group(run_config, run_dir),
        tags=list(logger_cfg.get("tags") or []),
        name=run_name(run_config, job_overrides(run_dir)),
        save_dir=str(run_dir),
        mode=mode,
        config=config,
        monitor=VAL_METRIC,
    )
