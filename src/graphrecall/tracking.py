"""Experiment tracking: Weights & Biases runs a report can be built from (offline unless an API key is
configured; ``logger.mode``).

One W&B run per job with ``logger=wandb``: every train.py run of every model (the heuristics
included: :func:`start_run` opens it before fitting, and the Lightning logger of trained models
writes its curves into that same run), every Optuna trial and every evaluate.py evaluation
(:func:`start_evaluate_run`). A run holds:

- **identity** (:func:`run_identity`): a *group* per study (``<task_name>/<sweep folder>`` for the
  jobs of a multirun, ``<task_name>`` for a single Hydra run, ``optuna/<study>`` for the trials of a
  study, ``logger.group`` when given); a *name* from the resolved choices that matter (model, then
  aggregator and loss only for models that read them, debias only for DICE models, dataset), the seed
  (``s<seed>``) and the axes the job sets: in a multirun only the swept ones, in a single run every
  override; never logger, progress-bar, folder or export keys (``sage-gat-bce-synthetic-s1
  model.optim.lr=0.01``, ``dice-dice_hard-synthetic-s0``); a trial is ``<study>-trial<n>``; *tags*
  dataset, model, stage (``stage1`` / ``stage2`` / ``stage3`` / ``baseline`` / ``oracle``) and
  ``logger.tags``; *job_type* ``train`` / ``trial`` / ``evaluate`` (``report`` for report runs);
- **config**: the resolved config flattened once with dotted keys (``model.optim.lr``,
  ``choices.aggregator``, ``git_revision``); the model's copies of top-level groups
  (``model.trainer`` = ``trainer``) are left out, and so are the hyperparameters Lightning would add
  (unprefixed duplicates and a ``run_config`` blob): W&B groups and compares runs by flat keys only;
- **curves** of Lightning-trained models and **best-value summaries** ``best/val/<metric>`` (the
  epoch with the best ``val/recall@50``) and ``best/epoch``;
- **results** (:func:`log_run_results`, at the end of the job): the tables ``results/slices``
  (fold x user slice x metric: mean, interval, users), ``results/content_slices`` and
  ``results/sample_users`` (a few seeded users: recent clicks, the recommended list with hits marked
  ``✓``, their targets and ranks); the interval bounds as summary keys named like the metric keys
  (``test/warm/recall@50_ci_low``, ``_ci_high``); the run's figures (``*.png``) as ``figures/<name>``;
  a ``run-results`` artifact with metrics.json, config_resolved.json, serving.json, metrics_table.txt
  (per-user tables, checkpoints and the model's pool / vector files when ``logger.artifact.*`` opts
  in); the final metrics in the summary. Then the run is finished (also when the job fails, and in
  any case before the next job's run starts, so that the jobs of a multirun never share a run).

Offline runs are uploaded later with ``wandb sync <run dir>/wandb/offline-run-*``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from graphrecall.data.schema import FeedDataset
    from graphrecall.data.splits import Fold
    from graphrecall.evaluation import FoldEvaluation

IDENTITY_FILE = "wandb_run.json"  # the W&B identity of a run, beside its metrics (an evaluation joins its group)
HIT = "✓ "                        # marks a recommended content that the user clicked in the fold
NAMED_GROUPS = ("model", "aggregator", "loss", "debias", "dataset")  # config groups that make a run name
STAGES = {"SageRecall": "stage1", "M2GRLRecall": "stage2", "DICERecall": "stage3", "TrueInterestOracle": "oracle"}
TRIAL_DIR = re.compile(r"trial_(\d+)")      # <output_dir>/<study>/trial_<n> (graphrecall.search)
TITLE_COLUMNS = ("title", "movie_title", "name")  # a content column that names the content, when there is one
# overrides that never name a run: where a run writes, how it reports progress, what it exports
_BOOKKEEPING = {"logger", "experiment", "seed", "task_name", "optimized_metric", "trainer.enable_progress_bar"}
_BOOKKEEPING_PREFIXES = ("hydra.", "logger.", "eval.export.", "eval.bootstrap.")  # bootstrap: interval precision
_BOOKKEEPING_SUFFIXES = ("dir", "resume_from", "ckpt_path")


# ------------------------------------------------------------------------------------ identity


@dataclass(frozen=True)
class RunIdentity:
    """How a run is found in W&B: ``group`` (the study), ``name`` (the legend), ``job_type``, ``tags``."""

    name: str
    group: str
    job_type: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobContext:
    """What the launcher says about a job.

    Attributes:
        overrides: the job's overrides (``model=sage``, ``seed=1``, ...).
        swept: keys a multirun sweeps (values differ between its jobs); None for a single run.
        sweep_dir: the multirun's sweep folder name; None for a single run.
        hydra: True inside a Hydra app (train.py), False for composed configs (tests, Optuna trials).
    """

    overrides: tuple[str, ...] = ()
    swept: frozenset[str] | None = None
    sweep_dir: str | None = None
    hydra: bool = False


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``: W&B compares and groups runs by flat keys only."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def wandb_config(record: Mapping[str, Any]) -> dict[str, Any]:
    """The run config: ``record`` (the resolved config + ``choices`` + ``git_revision``) flattened with
    dotted keys, each value once: a model's copy of a top-level group (``model.trainer`` when it equals
    ``trainer``, ``model.loss`` = ``loss``) is left out."""
    record = dict(record)
    model = record.get("model")
    if isinstance(model, Mapping):
        record["model"] = {k: v for k, v in model.items()
                           if not (isinstance(v, Mapping) and k in record and record[k] == v)}
    return flatten(record)


def override_key(override: str) -> tuple[str, str]:
    """``"+model.optim.lr=0.01" -> ("model.optim.lr", "0.01")``."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def is_bookkeeping(key: str) -> bool:
    """Keys that say where or how a job runs, not what it computes: they never name a run."""
    return key in _BOOKKEEPING or key.startswith(_BOOKKEEPING_PREFIXES) or key.endswith(_BOOKKEEPING_SUFFIXES)


def swept_keys(argv: Sequence[str], sweeper_params: Mapping[str, Any] | None = None) -> frozenset[str]:
    """Keys a multirun sweeps: the command line's sweep overrides (``seed=0,1``, ``range(..)``,
    ``choice(..)``) and the sweeper's ``params`` (an experiment's ``hydra.sweeper.params``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    keys = set(sweeper_params or {})
    for arg in argv:
        if arg.startswith("-"):
            continue
        try:
            (override,) = parser.parse_overrides([arg])
        except Exception:  # noqa: BLE001 - not an override (e.g. the value of a flag): not a sweep
            continue
        if override.is_sweep_override():
            keys.add(override.key_or_group)
    return frozenset(k.lstrip("+~") for k in keys)


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


def _hydra_config():
    """Hydra's config of the running job, or None outside a Hydra app (tests, Optuna trials)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def job_context(run_dir: Path | None) -> JobContext:
    """The running job's :class:`JobContext` (from Hydra, else from ``<run_dir>/.hydra/overrides.yaml``)."""
    overrides = tuple(job_overrides(run_dir))
    hc = _hydra_config()
    if hc is None:
        return JobContext(overrides=overrides)
    from hydra.types import RunMode

    if hc.mode != RunMode.MULTIRUN:
        return JobContext(overrides=overrides, hydra=True)
    params = hc.sweeper.get("params") if "sweeper" in hc else None
    return JobContext(overrides=overrides, swept=swept_keys(sys.argv[1:], params),
                      sweep_dir=Path(hc.sweep.dir).name, hydra=True)


def _target_class(model_cfg: Mapping[str, Any]) -> str:
    return str(model_cfg.get("_target_", "")).rsplit(".", 1)[-1]


def used_groups(model_cfg: Mapping[str, Any]) -> set[str]:
    """The optional groups a model reads: ``aggregator`` (GNN encoders), ``loss`` (pair reconstruction,
    not the next-click objective), ``debias`` (DICE models)."""
    used = set()
    if isinstance(model_cfg.get("aggregator"), Mapping):
        used.add("aggregator")
    if isinstance(model_cfg.get("loss"), Mapping) and model_cfg.get("objective", "reconstruction") != "next_click":
        used.add("loss")
    if isinstance(model_cfg.get("dice"), Mapping):
        used.add("debias")
    return used


def name_choices(record: Mapping[str, Any], overrides: Sequence[str] = ()) -> dict[str, str]:
    """The resolved choices that name a run, in name order: model, aggregator, loss, debias (only
    where the model reads them), dataset. Hydra's group choices where known, else the job's group
    overrides, else the resolved values (the model's class, ``aggregator.name``, ``dataset.name``)."""
    choices = dict(record.get("choices") or {})
    for o in overrides:
        key, value = override_key(o)
        if key in NAMED_GROUPS and key not in (record.get("choices") or {}):
            choices[key] = value
    model_cfg = record.get("model") or {}
    used = used_groups(model_cfg)
    out: dict[str, str] = {}
    model = choices.get("model") or _target_class(model_cfg)
    if model:
        out["model"] = str(model)
    for group in ("aggregator", "loss"):  # the resolved name: `aggregator.name=sum` is what ran
        if group in used:
            value = (model_cfg[group] or {}).get("name") or choices.get(group)
            if value:
                out[group] = str(value)
    if "debias" in used and choices.get("debias") not in (None, "null"):
        out["debias"] = str(choices["debias"])
    dataset = (record.get("dataset") or {}).get("name") or choices.get("dataset")
    if dataset:
        out["dataset"] = str(dataset)
    return out


def name_axes(record: Mapping[str, Any], context: JobContext) -> list[str]:
    """``key=value`` of the job's overrides that name it: the swept ones in a multirun, every one in a
    single run; never bookkeeping keys, the named groups (their values are in the name already) or
    settings of a group the model does not read (``aggregator.heads`` for co-click)."""
    unused = {"aggregator", "loss", "debias"} - used_groups(record.get("model") or {})
    out = []
    for o in context.overrides:
        key, value = override_key(o)
        if is_bookkeeping(key) or key in NAMED_GROUPS or key.split(".", 1)[0] in unused:
            continue
        if context.swept is not None and key not in context.swept:
            continue
        out.append(f"{key}={value}")
    return out


def trial_of(run_dir: Path | None) -> tuple[str, int] | None:
    """``(study, trial number)`` of an Optuna trial's run folder ``<output_dir>/<study>/trial_<n>``."""
    if run_dir is None:
        return None
    match = TRIAL_DIR.fullmatch(Path(run_dir).name)
    return (Path(run_dir).resolve().parent.name, int(match.group(1))) if match else None


def stage_tags(model_cfg: Mapping[str, Any]) -> list[str]:
    """``stage1`` (GraphSAGE i2i), ``stage2`` (M2GRL), ``stage3`` (DICE; + ``baseline`` for its
    non-disentangled and IPS variants), ``oracle``, else ``baseline``."""
    stage = STAGES.get(_target_class(model_cfg), "baseline")
    if stage == "stage3" and not (model_cfg.get("dice") or {}).get("enabled", True):
        return [stage, "baseline"]
    return [stage]


def run_identity(record: Mapping[str, Any], run_dir: Path | None, context: JobContext,
                 logger_cfg: Mapping[str, Any] | None = None) -> RunIdentity:
    """The identity of a train job or trial (see the module docstring); pure: all inputs are given."""
    logger_cfg = logger_cfg or {}
    seed = record.get("seed", 0)
    choices = name_choices(record, context.overrides)
    tags = [choices.get("dataset"), choices.get("model"), *stage_tags(record.get("model") or {}),
            *[str(t) for t in logger_cfg.get("tags") or []]]
    tags = tuple(dict.fromkeys(t for t in tags if t))
    task = str(record.get("task_name") or "train")
    trial = None if context.hydra else trial_of(run_dir)
    if trial is not None:
        study, number = trial
        name, group, job_type = f"{study}-trial{number}", f"optuna/{study}", "trial"
    else:
        name = " ".join(["-".join([*choices.values(), f"s{seed}"]), *name_axes(record, context)])
        job_type = "train"
        if context.sweep_dir:
            group = f"{task}/{context.sweep_dir}"
        elif context.hydra or run_dir is None:
            group = task
        else:  # a composed config run by code: its runs' common folder is the study
            parent = Path(run_dir).resolve().parent.name
            group = f"{task}/{parent}" if parent else task
    return RunIdentity(name=name, group=str(logger_cfg.get("group") or group), job_type=job_type, tags=tags)


# ------------------------------------------------------------------------------------ the run


_ACTIVE: dict[str, Any] = {}  # the run this module opened: {"run", "dir", "logger_cfg"}


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


def is_rank_zero() -> bool:
    """False in the helper processes of a distributed launch (they train; rank 0 logs)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) == 0


def plain(config: Any) -> Any:
    """A DictConfig as a plain resolved dict; anything else as it is."""
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config


def wandb_enabled(logger_cfg: Mapping[str, Any] | None) -> bool:
    """``logger=wandb`` and not ``logger.mode=disabled``."""
    return bool(logger_cfg) and logger_cfg.get("name") == "wandb" and str(logger_cfg.get("mode", "auto")) != "disabled"


def open_run(logger_cfg: Mapping[str, Any], save_dir: Path, identity: RunIdentity, config: Mapping[str, Any]):
    """Start a W&B run writing under ``save_dir/wandb`` and record its identity in
    ``save_dir/wandb_run.json``; the run :func:`log_run_results` and :func:`finish_wandb` close.
    Report runs (job_type ``report``) start here too."""
    finish_wandb()  # a run left open by an earlier job of this process (multirun, Optuna) is never reused
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    mode = wandb_mode(str(logger_cfg.get("mode", "auto")))
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=logger_cfg.get("project") or "graphrecall", entity=logger_cfg.get("entity"),
                     group=identity.group, name=identity.name, job_type=identity.job_type,
                     tags=list(identity.tags), config=dict(config), dir=str(save_dir), mode=mode)
    (save_dir / IDENTITY_FILE).write_text(json.dumps(
        {"id": run.id, "project": run.project, "entity": logger_cfg.get("entity"), "mode": mode,
         **asdict(identity)}, indent=2))
    _ACTIVE.update(run=run, dir=save_dir.resolve(), logger_cfg=dict(logger_cfg))
    return run


def start_run(logger_cfg: Mapping[str, Any] | None, run_dir: Path, record: Mapping[str, Any]):
    """The W&B run of a train job (or Optuna trial), started before fitting, or None when the logger
    is not W&B (``logger=csv``, ``logger.mode=disabled``) or this process is not rank 0. A
    Lightning-trained model's logger then writes into this run (:func:`wandb_logger`).

    Args:
        logger_cfg: the ``logger`` group (a dict or the job's DictConfig).
        run_dir: the job's folder (``wandb/`` and ``wandb_run.json`` go there).
        record: the job's resolved config with ``choices`` and ``git_revision`` (config_resolved.json).
    """
    logger_cfg = plain(logger_cfg)
    if not wandb_enabled(logger_cfg) or not is_rank_zero():
        return None
    identity = run_identity(record, Path(run_dir), job_context(run_dir), logger_cfg)
    return open_run(logger_cfg, Path(run_dir), identity, wandb_config(record))


def evaluate_identity(record: Mapping[str, Any], train_run_dir: Path,
                      logger_cfg: Mapping[str, Any] | None = None) -> RunIdentity:
    """An evaluation of a train run: the train run's group and tags (from its ``wandb_run.json``, else
    recomputed from its config and overrides), its name + `` evaluate``, job_type ``evaluate``."""
    path = Path(train_run_dir) / IDENTITY_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        train = RunIdentity(saved["name"], saved["group"], saved["job_type"], tuple(saved.get("tags") or ()))
    else:
        overrides_file = Path(train_run_dir) / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        train = run_identity(record, Path(train_run_dir), JobContext(overrides=tuple(overrides or ())), logger_cfg)
    group = (logger_cfg or {}).get("group") or train.group
    return RunIdentity(name=f"{train.name} evaluate", group=str(group), job_type="evaluate", tags=train.tags)


def start_evaluate_run(record: Mapping[str, Any], train_run_dir: Path, out_dir: Path,
                       evaluate_config: Mapping[str, Any] | None = None,
                       logger_cfg: Mapping[str, Any] | None = None):
    """The W&B run of an evaluate.py evaluation, or None when the logger is not W&B.

    Args:
        record: the train run's ``config_resolved.json``.
        train_run_dir: the train run's folder (its ``wandb_run.json`` gives the group).
        out_dir: the evaluation's own folder (its ``wandb/`` goes there).
        evaluate_config: evaluate.py's config (dict or DictConfig), logged under ``evaluate.*``.
        logger_cfg: the ``logger`` settings (dict or DictConfig); None: the train run's
            (``record["logger"]``: a run trained with ``logger=wandb`` is evaluated with W&B too).
    """
    logger_cfg = plain(logger_cfg) if logger_cfg is not None else record.get("logger")
    if not wandb_enabled(logger_cfg) or not is_rank_zero():
        return None
    config = {**wandb_config(record), **flatten(plain(evaluate_config) or {}, "evaluate.")}
    return open_run(logger_cfg, Path(out_dir), evaluate_identity(record, train_run_dir, logger_cfg), config)


def active_run(run_dir: Path | None = None):
    """The run this module opened, when still running and (with ``run_dir``) opened for ``run_dir`` or
    a folder above it (a refit writes into ``<run_dir>/refit``); else None."""
    wandb = sys.modules.get("wandb")
    run = _ACTIVE.get("run")
    if wandb is None or run is None or wandb.run is not run:
        return None
    if run_dir is not None:
        here = Path(run_dir).resolve()
        if here != _ACTIVE["dir"] and _ACTIVE["dir"] not in here.parents:
            return None
    return run


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finish_wandb(metrics: Mapping[str, Any] | None = None, exit_code: int | None = None) -> bool:
    """Write ``metrics`` (e.g. the final val / test metrics) into the active W&B run's summary and
    finish it. A no-op returning False when no run is active (or wandb was never imported)."""
    wandb = sys.modules.get("wandb")  # never import wandb only to find that no run exists
    _ACTIVE.clear()
    if wandb is None or wandb.run is None:
        return False
    for key, value in (metrics or {}).items():
        if _finite(value):
            wandb.run.summary[key] = value
    wandb.finish(exit_code=exit_code)
    return True


# ------------------------------------------------------------------------------------ Lightning


@functools.cache
def study_wandb_logger_class() -> type:
    """Build :class:`StudyWandbLogger` (a subclass of Lightning's ``WandbLogger``) on first use, so that
    importing this module (``train.py`` does, for every model) does not import Lightning (~1 s) in runs
    of models that never train with it."""
    from pytorch_lightning.loggers import WandbLogger
    from pytorch_lightning.utilities import rank_zero_only

    class StudyWandbLogger(WandbLogger):
        """``WandbLogger`` that keeps the validation metrics of the best epoch and writes them to the run
        summary as ``best/<key>`` (plus ``best/epoch``) when the fit ends; a failed fit finishes its run.
        It logs no hyperparameters: the run's config is the flat one :func:`start_run` gave it.

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
        def log_hyperparams(self, params: Any) -> None:
            """Left out: the module's hyperparameters would add unprefixed copies (``lr``, ``loss``) of
            the flat config keys and the whole ``run_config`` as one value."""

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


def wandb_logger(logger_cfg: Mapping[str, Any], run_dir: Path, run_config: Mapping[str, Any] | None):
    """The Lightning logger of a fit: writes into the job's W&B run (the one :func:`start_run` opened
    for ``run_dir`` or a folder above it; a fit outside train.py starts its own), adds the best-value
    summaries. None with ``logger.mode=disabled``.

    ``logger_cfg``: ``project, entity, group`` (null: per study), ``tags``, ``mode`` (auto | offline |
    online | disabled).
    """
    from graphrecall.training import VAL_METRIC

    if not wandb_enabled(logger_cfg):
        return None
    run = None
    if is_rank_zero():
        run = active_run(run_dir) or start_run(logger_cfg, Path(run_dir), run_config or {})
        run.define_metric("trainer/global_step")  # as WandbLogger does for a run it starts itself
        run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
    return study_wandb_logger_class()(experiment=run, save_dir=str(run_dir), project=logger_cfg.get("project"),
                                      monitor=VAL_METRIC)


# ------------------------------------------------------------------------------------ results


def _cell(value: Any) -> Any:
    """A table cell: floats as floats, NaN as an empty cell (W&B tables are JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalar
        return _cell(value.item())
    return value


SLICE_COLUMNS = ("fold", "user_slice", "metric", "key", "mean", "ci_low", "ci_high", "n_users")
CONTENT_SLICE_COLUMNS = ("fold", "user_slice", "content_slice", "metric", "key", "mean", "ci_low", "ci_high",
                         "n_users", "slice_targets", "slice_contents")


def metric_key(evaluation: str, user_slice: str, metric: str) -> str:
    """The flat key of a summary cell, as in metrics.json: ``test/recall@50``, ``test/warm/recall@50``."""
    return f"{evaluation}/{metric}" if user_slice == "all" else f"{evaluation}/{user_slice}/{metric}"


def slice_rows(evaluations: Iterable[FoldEvaluation]) -> list[list[Any]]:
    """Rows of ``results/slices`` (:data:`SLICE_COLUMNS`): one per (evaluation, user slice, metric) of
    the evaluations' summaries, content-slice metrics left to :func:`content_slice_rows`. ``fold`` is
    the evaluation's name (``test``, ``test_interest_only``); bounds are empty without an interval."""
    rows = []
    for ev in evaluations:
        for (user_slice, metric), r in ev.summary.iterrows():
            if "/" in metric:
                continue
            rows.append([ev.name, user_slice, metric, metric_key(ev.name, user_slice, metric),
                         *(_cell(float(r[c])) for c in ("mean", "ci_low", "ci_high")), int(r["n_users"])])
    return rows


def content_slice_rows(evaluations: Iterable[FoldEvaluation]) -> list[list[Any]]:
    """Rows of ``results/content_slices`` (:data:`CONTENT_SLICE_COLUMNS`): one per (evaluation, user
    slice, content slice, metric); ``slice_targets`` / ``slice_contents`` are the content slice's target
    pairs (over all evaluated users) and catalogue contents."""
    rows = []
    for ev in evaluations:
        g = ev.global_metrics
        for (user_slice, metric), r in ev.summary.iterrows():
            if "/" not in metric:
                continue
            content, inner = metric.split("/", 1)
            counts = [_cell(g.get(f"content_slice/{content}/{what}")) for what in ("targets", "contents")]
            rows.append([ev.name, user_slice, content, inner, metric_key(ev.name, user_slice, metric),
                         *(_cell(float(r[c])) for c in ("mean", "ci_low", "ci_high")), int(r["n_users"]), *counts])
    return rows


def interval_summary(evaluations: Iterable[FoldEvaluation]) -> dict[str, float]:
    """``{"<metric key>_ci_low": ..., "<metric key>_ci_high": ...}`` for every summary cell with an
    interval (``test/warm/recall@50_ci_low``, ``test/clicks_0/recall@50_ci_high``)."""
    out: dict[str, float] = {}
    for ev in evaluations:
        for (user_slice, metric), r in ev.summary.iterrows():
            low, high = float(r["ci_low"]), float(r["ci_high"])
            if math.isfinite(low) and math.isfinite(high):
                key = metric_key(ev.name, user_slice, metric)
                out[f"{key}_ci_low"], out[f"{key}_ci_high"] = low, high
    return out


def choose_sample_users(is_warm: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Positions of ``n`` users drawn with ``seed``: users with clicks before the cut (``is_warm``
    ``[U]`` bool) first, cold users only to fill up. Sorted ``[min(n, U)]`` int64."""
    import numpy as np

    rng = np.random.default_rng(seed)
    warm, cold = np.flatnonzero(is_warm), np.flatnonzero(~np.asarray(is_warm, dtype=bool))
    picked = rng.permutation(warm)[:n]
    if len(picked) < n:
        picked = np.concatenate([picked, rng.permutation(cold)[: n - len(picked)]])
    return np.sort(picked).astype(np.int64)


def content_labels(contents: pd.DataFrame, rows: Sequence[int], fields: Sequence[str]) -> list[str]:
    """Readable labels of content rows: ``<content_id> <title>`` when the table has a title column,
    else ``<content_id> (<field>, <field>)`` from ``fields`` (e.g. style, space; MovieLens: genres,
    decade), list values joined with ``|`` (``-`` for an empty list)."""
    import numpy as np

    from graphrecall.data.schema import CONTENT_ID

    title = next((c for c in TITLE_COLUMNS if c in contents.columns), None)
    fields = [f for f in fields if f in contents.columns]
    out = []
    for row in rows:
        record = contents.iloc[int(row)]
        if title is not None:
            out.append(f"{record[CONTENT_ID]} {record[title]}")
            continue
        values = [("|".join(map(str, v)) or "-") if isinstance(v, (list, tuple, np.ndarray)) else str(v)
                  for v in (record[f] for f in fields)]
        out.append(f"{record[CONTENT_ID]} ({', '.join(values)})" if values else str(record[CONTENT_ID]))
    return out


def sample_user_columns(top: int, k: int) -> list[str]:
    """Columns of ``results/sample_users`` (see :func:`sample_user_rows`)."""
    return ["fold", "user_id", "user_slice", "history_clicks", "recent_clicks", f"recommended_top{top}",
            f"hits@{top}", f"hits@{k}", "targets", "target_contents"]


def sample_user_rows(evaluation: FoldEvaluation, fold: Fold, dataset: FeedDataset, n: int = 8, top: int = 10,
                     recent: int = 5, seed: int = 0) -> tuple[list[str], list[list[Any]]]:
    """``(columns, rows)`` of ``results/sample_users``: ``n`` users of the evaluation (seeded, see
    :func:`choose_sample_users`), each with the ``recent`` newest clicks before the cut (newest first),
    the ``top`` first recommendations (hits, i.e. contents among the user's fold targets, marked
    ``✓``), the hit counts at ``top`` and at the list length ``k``, the number of targets and each
    target with its rank in the list (``[rank 3]`` or ``[not in top k]``). Cells list one content per
    line."""
    from graphrecall.data.schema import TIMESTAMP, USER_ID

    recs = evaluation.recs
    k = recs.items.shape[1]
    history = fold.history
    counts = history["u"].value_counts().reindex(recs.users, fill_value=0).to_numpy()
    picked = choose_sample_users(counts > 0, n, seed)
    chosen = recs.users[picked]
    history = history[history["u"].isin(chosen)]  # a few users: filter once, then per user
    targets = fold.targets[fold.targets["u"].isin(chosen)].groupby("u")["i"].apply(list)
    fields = list(dataset.diversity_fields.values())

    def labels(rows: Sequence[int]) -> list[str]:
        return content_labels(dataset.contents, rows, fields)

    out = []
    for pos in picked:
        u = int(recs.users[pos])
        items = [int(i) for i in recs.items[pos] if i >= 0]
        wanted = set(int(i) for i in targets.get(u, []))
        rank = {i: r + 1 for r, i in enumerate(items)}
        clicks = history[history["u"] == u].sort_values(TIMESTAMP, ascending=False, kind="stable")["i"].head(recent)
        shown = [f"{HIT if i in wanted else ''}{label}" for i, label in zip(items[:top], labels(items[:top]))]
        ordered = sorted(wanted, key=lambda i: rank.get(i, k + 1))
        target_cells = [f"{label} [rank {rank[i]}]" if i in rank else f"{label} [not in top {k}]"
                        for i, label in zip(ordered, labels(ordered))]
        out.append([evaluation.name, _cell(dataset.users[USER_ID].iloc[u]), "warm" if counts[pos] else "cold",
                    int(counts[pos]), "\n".join(labels(clicks.tolist())), "\n".join(shown),
                    sum(i in wanted for i in items[:top]), sum(i in wanted for i in items), len(wanted),
                    "\n".join(target_cells)])
    return sample_user_columns(top, k), out


def sample_evaluation(evaluations: Sequence[FoldEvaluation], folds: Mapping[str, Fold]) -> tuple[Any, Any]:
    """The evaluation the sample users come from: ``test`` when evaluated, else the last one that is a
    plain fold (not ``*_interest_only`` / ``*_no_refit``); ``(None, None)`` without one."""
    plain = [ev for ev in evaluations if ev.name in folds]
    chosen = next((ev for ev in plain if ev.name == "test"), plain[-1] if plain else None)
    return (chosen, folds[chosen.name]) if chosen is not None else (None, None)


def figure_files(run_dir: Path) -> dict[str, Path]:
    """``{"figures/<name>": path}`` of the images a run wrote (``*.png`` under ``run_dir``, W&B's own
    folder left out)."""
    run_dir = Path(run_dir)
    out = {}
    for path in sorted(run_dir.rglob("*.png")):
        rel = path.relative_to(run_dir)
        if rel.parts[0] != "wandb":
            out["figures/" + rel.with_suffix("").as_posix()] = path
    return out


RESULT_FILES = ("metrics.json", "config_resolved.json", "serving.json", "metrics_table.txt", IDENTITY_FILE)


def artifact_files(run_dir: Path, per_user: bool = False, checkpoints: bool = False,
                   pools: bool = False) -> list[Path]:
    """Files of the ``run-results`` artifact: :data:`RESULT_FILES` that exist, plus on request the
    per-user tables and exported lists (``per_user_*.parquet``, ``recommendations.parquet``), the
    checkpoints (``**/*.ckpt``) and the served model's files (``pool.parquet``, ``*.npy``, ``*.npz``)."""
    run_dir = Path(run_dir)
    files = [run_dir / f for f in RESULT_FILES if (run_dir / f).is_file()]
    if per_user:
        files += sorted(run_dir.glob("per_user_*.parquet")) + sorted(run_dir.glob("recommendations.parquet"))
    if checkpoints:
        files += sorted(p for p in run_dir.rglob("*.ckpt") if p.relative_to(run_dir).parts[0] != "wandb")
    if pools:
        files += sorted(run_dir.glob("pool.parquet")) + sorted(run_dir.glob("*.npy")) + sorted(run_dir.glob("*.npz"))
    return files


def log_run_results(run_dir: Path, metrics: Mapping[str, Any], evaluations: Sequence[FoldEvaluation],
                    dataset: FeedDataset, folds: Mapping[str, Fold], seed: int = 0) -> bool:
    """Log a finished job's results into its W&B run (see the module docstring: tables, interval
    summaries, figures, sample users, the ``run-results`` artifact, the final ``metrics``) and finish
    the run. With no run of this module open for ``run_dir`` only finishes whatever run is active (as
    :func:`finish_wandb`); False when there was none."""
    run = active_run(run_dir)
    if run is None:
        return finish_wandb(metrics)
    import wandb

    cfg = _ACTIVE["logger_cfg"]
    run_dir = Path(run_dir)
    logged: dict[str, Any] = {
        "results/slices": wandb.Table(columns=list(SLICE_COLUMNS), data=slice_rows(evaluations)),
        "results/content_slices": wandb.Table(columns=list(CONTENT_SLICE_COLUMNS),
                                              data=content_slice_rows(evaluations)),
    }
    ev, fold = sample_evaluation(evaluations, folds)
    n = int(cfg.get("sample_users", 8))
    if ev is not None and n > 0:
        columns, rows = sample_user_rows(ev, fold, dataset, n=n, top=int(cfg.get("sample_top", 10)), seed=seed)
        logged["results/sample_users"] = wandb.Table(columns=columns, data=rows)
    logged.update({key: wandb.Image(str(path)) for key, path in figure_files(run_dir).items()})
    run.log(logged)
    for key, value in interval_summary(evaluations).items():
        run.summary[key] = value
    art_cfg = cfg.get("artifact") or {}
    if art_cfg.get("enabled", True):
        artifact = wandb.Artifact(f"results-{run.id}", type="run-results",
                                  metadata={"name": run.name, "group": run.group, "run_dir": str(run_dir)})
        for path in artifact_files(run_dir, per_user=bool(art_cfg.get("per_user", False)),
                                   checkpoints=bool(art_cfg.get("checkpoints", False)),
                                   pools=bool(art_cfg.get("pools", False))):
            artifact.add_file(str(path), name=path.relative_to(run_dir).as_posix())
        run.log_artifact(artifact)
    return finish_wandb(metrics)
