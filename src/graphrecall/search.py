"""Optuna hyperparameter searches over ``train.train``, driven directly (no Hydra sweeper plugin).

``python -m graphrecall.search hparams_search=<study> [train overrides] [hparams_search.<field>=<value>]``

* ``hparams_search=<study>`` names ``conf/hparams_search/<study>.yaml`` (or is a path to a YAML file).
  The study file is *not* a group of the train config: it is loaded here with OmegaConf, so
  ``python train.py`` is unchanged. ``hparams_search.<field>=<value>`` overrides one of its fields
  (``hparams_search.n_trials=50``, ``hparams_search.storage=sqlite:////abs/x.db``).
* Every other argument is a train override (``dataset=synthetic``, ``trainer.max_epochs=10``). Each
  trial composes ``conf/train.yaml`` with Hydra's compose API from: the study's ``overrides``, then
  the command line, then the trial's sampled ``params`` (``model.optim.lr=0.0031``, ``aggregator=gat``).
* Validation only: trials score the val fold alone (``eval.folds=[val]`` in every study file); a
  study whose composed config has another fold is refused before any trial, so no test number is
  computed or printed while searching. Test is scored by the rerun of the best setting (below).
* Each trial runs ``train.train(cfg)`` in ``<output_dir>/<study_name>/trial_<n>/`` (a normal run
  directory, plus ``.hydra/overrides.yaml`` so that ``python -m graphrecall.report
  outputs/optuna/<study_name> --fold val`` tables the trials) and returns ``optimized_metric`` (or the
  list ``optimized_metrics`` for a multi-objective study) read from the run's metrics.
* Studies that cannot mix: a study records its **fixed overrides** in its user attrs
  (``fixed_overrides``, ``{key: value}``) when it is created: the study's ``overrides`` and the
  command line's train overrides, each key at its last value, minus the searched ``params`` and
  minus the bookkeeping keys. A later command on the same study (resume, more trials, a worker)
  whose fixed overrides differ is refused before any trial (exit status 2), naming every changed key
  (``old -> new``) and suggesting a new ``hparams_search.study_name``. Bookkeeping keys are those
  that change where things are written or shown, never a number in a run's metrics.json:

  - ``hydra.*`` (Hydra's own folders and logging), ``run_dir``, ``data_dir``, ``cache_dir`` (where
    data is downloaded and built graphs are cached: the cache is keyed by its inputs) and
    ``task_name`` (names folders and W&B groups);
  - ``logger`` and ``logger.*`` (CSV / W&B), ``trainer.enable_progress_bar``,
    ``trainer.enable_model_summary``, ``trainer.log_every_n_steps`` (console and logger output);
  - ``eval.export.*`` (the recommendation export, which only a test fold writes).

  Everything else is fixed, ``threads`` and ``eval.bootstrap.*`` included (they change numbers a
  trial writes). The study's own fields (``hparams_search.*``: budget, workers, storage, output
  folder, sampler, ``rerun_seeds``) are not train overrides and may change between commands. A study
  created before this record existed takes it from its first trial's overrides.
* Pruning: for a single-objective study with a pruner, models that train with Lightning (they have
  an ``extra_callbacks`` attribute: sage, mf, lightgcn) get :class:`PruningCallback` through
  ``train.train(cfg, extra_callbacks=...)``; it reports the monitored
  validation metric after every validation epoch and raises ``optuna.TrialPruned`` when the pruner
  says so (the trial is recorded PRUNED). Models without epochs (the baselines) are not pruned.
* Failures: a trial whose training raises is recorded FAIL and the study goes on, until
  ``max_failures`` trials have failed in this invocation. An optimized (or monitored) metric that
  the run does not produce is a configuration error: it raises ``KeyError`` (naming the available
  keys) at the end of the first trial at the latest, and stops the study.
* Stopping: SIGINT (Ctrl-C) or SIGTERM stops the study: the running trial is recorded FAIL (user attr
  ``interrupted``: the signal) through Optuna's own handling of an interrupted objective, one error
  line says so, and the command exits with 130 (SIGINT) or 143 (SIGTERM), as ``train.py`` does for
  SIGTERM (``graphrecall.runs``). A signal that arrives while Optuna writes to the storage (asking
  for or telling a trial) takes effect right after the write, so no trial is left RUNNING. With
  ``workers=N`` the signal is passed on to the worker processes, which stop the same way.
* Resume: the study lives in ``storage`` (default SQLite ``outputs/optuna/<study_name>.db``, absolute
  URL built at run time) and is loaded if it exists; re-running the same command continues it until
  ``n_trials`` trials have *finished* (COMPLETE + PRUNED) in total. The sampler is reseeded with
  ``seed + number of trials so far``, so a resumed study does not re-propose its first trials.
  Watch a running study live with ``optuna-dashboard <storage URL>`` (a separate package).
* Parallel workers: ``hparams_search.workers=N`` launches N worker processes of the same command
  (``python -m graphrecall.search``, logs in ``<output_dir>/<study_name>/worker_<k>.log``) that share
  the study through its storage; N launches of the same command on several machines with one
  ``storage`` URL (PostgreSQL on a cluster) do the same (give each its own
  ``hparams_search.worker_rank``). Each trial is asked from the storage once, so no trial runs twice.
  A worker starts a trial only while finished + live running trials < ``n_trials``, and waits while
  the other workers run the last ones. Every process sends heartbeats; a trial whose worker died
  (no heartbeat for ``grace_period`` s) is marked FAIL by the next worker that looks and replaced,
  so the study still ends with ``n_trials`` finished trials (or re-run the command after
  ``grace_period`` s if every worker died). Two workers that ask at the same instant for the last
  slot: the later trial number is recorded FAIL with ``user_attrs['surplus']`` before it runs
  anything (counted as ``surplus``, not against ``max_failures``).
* At the end of every command that was not stopped (a resume with nothing left to run included): a
  summary (best trial or Pareto front, params, values, counts of complete / pruned / failed
  trials, the fixed overrides) is printed and written to ``<output_dir>/<study_name>/best.json``,
  with Optuna's own plots beside it (:func:`write_study_plots`: ``optuna_history.png``,
  ``optuna_parallel_coordinate.png``, ``optuna_importance.png`` once 2+ parameters and
  ``IMPORTANCE_MIN_TRIALS`` complete trials exist; per objective plus ``optuna_pareto_front.png`` for a
  multi-objective study). With ``logger=wandb`` the plots, a table of the trials and the best values
  also go to one W&B run (``job_type`` study) in the trials' group (:func:`log_study_to_wandb`).
* The best setting on several seeds: best.json's ``rerun.command`` (per Pareto trial for a
  multi-objective study) is a ready-to-run ``train.py -m ... seed=0,1,2 hydra.sweep.dir=...`` with the
  trial's overrides (dataset included; :mod:`graphrecall.best_setting`, also a CLI).
  ``hparams_search.rerun_seeds=[0,1,2]`` runs it at the end (single-objective studies; skipped when
  that sweep already finished) and writes its ``graphrecall.report`` table to ``<sweep>/report.md``.
"""

from __future__ import annotations

import datetime
import difflib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from graphrecall.best_setting import DEFAULT_SEEDS, override_key, parse_overrides, rerun_plan
from graphrecall.config_checks import check_search_config, check_train_config
from graphrecall.study_report import IMPORTANCE_MIN_TRIALS, log_study_to_wandb, write_study_plots  # noqa: F401 (re-exported)

log = logging.getLogger("graphrecall.search")

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
STUDY_DIR = CONF / "hparams_search"

# fields a study file may leave out (see conf/hparams_search/sage.yaml for what each means)
DEFAULTS: dict[str, Any] = {
    "study_name": None,
    "storage": None,
    "output_dir": "outputs/optuna",
    "overrides": [],
    "direction": "maximize",
    "directions": None,
    "optimized_metric": "val/recall@50",
    "optimized_metrics": None,
    "n_trials": 20,
    "max_failures": 3,
    "sampler": {"name": "tpe", "seed": 0},
    "pruner": {"name": "none"},
    "params": {},
    "workers": 1,
    "worker_rank": None,
    "heartbeat_interval": 10,
    "grace_period": 60,
    "poll_seconds": 5.0,
    "rerun_seeds": None,
    "plots": True,
}

# train overrides that never change a number of a run (see the module docstring): left out of a
# study's fixed overrides
BOOKKEEPING_KEYS = frozenset({
    "run_dir", "data_dir", "cache_dir", "task_name", "logger",
    "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
})
BOOKKEEPING_PREFIXES = ("hydra.", "logger.", "eval.export.")
EXIT_MISMATCH = 2  # a command refused before any trial (its study was made with other fixed overrides)


class MetricNotFound(KeyError):
    """An optimized or monitored metric that the run does not produce (a config error: stops the study)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class TrialFailed(RuntimeError):
    """Training raised inside a trial: the trial is recorded FAIL and the study continues."""


class SurplusTrial(RuntimeError):
    """Another worker took the last slot of the budget first: recorded FAIL (``surplus``), never run."""


class StudyMismatch(ValueError):
    """A command whose study exists with other fixed overrides, directions or metrics: refused
    before any trial (exit status 2)."""


class RerunFailed(RuntimeError):
    """The rerun of the best setting (``hparams_search.rerun_seeds``) exited non-zero."""


# ---- stopping on SIGINT / SIGTERM
class SignalReceived(BaseException):
    """Raised by :class:`StopSignals`' handler. Not an ``Exception``, so that training code's
    ``except Exception`` cannot take it for a failed trial, and not a ``KeyboardInterrupt``, so that
    Lightning re-raises it as it is (it turns a ``KeyboardInterrupt`` into ``sys.exit(1)``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


class TrialInterrupted(KeyboardInterrupt):
    """What leaves the objective when a signal stops its trial: Optuna records a ``KeyboardInterrupt``
    raised by the objective as FAIL, then re-raises it."""


class StudyStopped(KeyboardInterrupt):
    """The study was stopped by a signal; ``exit_status`` is 128 + the signal number (130, 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.exit_status = 128 + int(signum)


class StopSignals:
    """SIGINT / SIGTERM handling of a search process.

    While *armed* (the default; training, waiting) the first signal raises :class:`SignalReceived`
    at once. While *disarmed* (Optuna asking for, telling or reporting a trial: a storage write) it is
    only recorded, and :meth:`check` raises it at the next armed point, so a storage write is never
    cut in half and no trial is left RUNNING. Later signals are ignored: the process is stopping.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._armed = True

    def handler(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            return
        self.signum = int(signum)
        if self._armed:
            raise SignalReceived(signum)

    def check(self) -> None:
        """Raise :class:`SignalReceived` if a signal arrived."""
        if self.signum is not None:
            raise SignalReceived(self.signum)

    @contextmanager
    def armed(self, armed: bool = True) -> Iterator[None]:
        """Within the block signals raise (``armed=True``) or are only recorded (``False``); on
        entering an armed block a signal recorded before raises at once."""
        previous, self._armed = self._armed, armed
        try:
            if armed:
                self.check()
            yield
        finally:
            self._armed = previous

    def sleep(self, seconds: float) -> None:
        """``time.sleep`` that a signal ends (armed for its duration). In steps of at most 0.2 s: a
        signal that the system hands to another thread reaches Python's handler (which runs in the
        main thread) only when the main thread next runs Python code."""
        end = time.monotonic() + seconds
        with self.armed():
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(left, 0.2))

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        """Install the handler for SIGINT and SIGTERM (main thread only: elsewhere Python delivers no
        signal); the previous handlers are restored afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in self.SIGNALS}
        for s in self.SIGNALS:
            signal.signal(s, self.handler)
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def wait_passing_signals(procs: Sequence[subprocess.Popen], stop: StopSignals, grace: float = 120.0) -> list[int]:
    """Exit statuses of ``procs``; a signal that stops this process is passed on to those still
    running, which are then waited for (up to ``grace`` s, then killed) before it propagates."""
    try:
        return [proc.wait() for proc in procs]
    except SignalReceived as exc:
        live = [p for p in procs if p.poll() is None]
        for proc in live:
            proc.send_signal(exc.signum)
        for proc in live:
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise


# ---- fixed overrides: what every trial of a study shares
def is_bookkeeping(key: str) -> bool:
    """A train override key that changes where things are written or shown, never a number."""
    return key in BOOKKEEPING_KEYS or key.startswith(BOOKKEEPING_PREFIXES)


def fixed_overrides(overrides: Sequence[str], searched: Iterable[str]) -> dict[str, str | None]:
    """``{key: value}`` of the train overrides that define a study: each key at its last value
    (Hydra's value grammar, normalised: ``[ val ]`` -> ``[val]``; a deletion ``~key`` -> None), minus
    the ``searched`` parameter paths and the bookkeeping keys (:func:`is_bookkeeping`)."""
    searched = set(searched)
    fixed: dict[str, str | None] = {}
    for o in parse_overrides(overrides):
        key = override_key(o)
        if key in searched or is_bookkeeping(key):
            continue
        fixed.pop(key, None)  # keep the order of the last occurrence
        fixed[key] = None if o.is_delete() else o.get_value_element_as_str()
    return fixed


def changed_fixed_overrides(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``["dataset.loader.preset: tiny -> small", "seed: 1 -> (not set)", ...]`` for every key whose
    value differs (keys of ``old`` first, in their order)."""
    def show(d: dict[str, Any], key: str) -> str:
        if key not in d:
            return "(not set)"
        return "(deleted)" if d[key] is None else str(d[key])

    keys = [*old, *(k for k in new if k not in old)]
    return [f"{k}: {show(old, k)} -> {show(new, k)}" for k in keys if (k in old, old.get(k)) != (k in new, new.get(k))]


def suggest_study_name(study_name: str, old: dict[str, Any], new: dict[str, Any], taken: Iterable[str]) -> str:
    """A new study name from the changed values (``coclick_tau_small``), not among ``taken``."""
    values = [str(new[k]) for k in new if old.get(k, object()) != new[k] and new[k] is not None]
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", "_".join(values)).strip("_")[:40]
    base = f"{study_name}_{slug}" if slug else f"{study_name}_2"
    taken, name, n = set(taken), base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name

def missing_metric(name: str, available: Sequence[str], where: str) -> MetricNotFound:
    keys = sorted(available)
    close = difflib.get_close_matches(name, keys, n=5, cutoff=0.6)
    headline = [k for k in keys if k.count("/") == 1]  # fold/metric, without slices and fit details
    return MetricNotFound(
        f"metric '{name}' is not produced by {where}; closest: {close}; available ({len(keys)} keys, "
        f"per-slice and fit details omitted here): {headline or keys[:60]}"
    )


# ---- study config
def load_study_config(study: str | Path | DictConfig, overrides: Sequence[str] = ()) -> DictConfig:
    """The study config: defaults <- ``conf/hparams_search/<study>.yaml`` (or a YAML path, or a
    DictConfig) <- ``overrides`` (dotlist: ``n_trials=5``)."""
    if isinstance(study, DictConfig):
        loaded = study
        default_name = None
    else:
        path = Path(study)
        if path.suffix not in (".yaml", ".yml"):
            path = STUDY_DIR / f"{study}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in STUDY_DIR.glob("*.yaml"))
            raise FileNotFoundError(f"no study config {path}; known studies: {known}")
        loaded = OmegaConf.load(path)
        default_name = path.stem
    cfg = OmegaConf.merge(OmegaConf.create(DEFAULTS), loaded, OmegaConf.from_dotlist(list(overrides)))
    if cfg.study_name is None:
        if default_name is None:
            raise ValueError("the study config needs a study_name")
        cfg.study_name = default_name
    check_study_fields(cfg)
    check_search_config(cfg)  # misspelt study fields, sampler / pruner keys Optuna does not take, bad params
    return cfg


# numeric study fields: (kind, lowest value); None allowed where the default is None
NUMERIC_FIELDS: dict[str, tuple[type, float]] = {
    "n_trials": (int, 1), "max_failures": (int, 1), "workers": (int, 1), "worker_rank": (int, 0),
    "heartbeat_interval": (int, 1), "grace_period": (int, 1), "poll_seconds": (float, 0.0),
}


def check_study_fields(cfg: DictConfig) -> None:
    """Types and ranges of the numeric study fields, ``rerun_seeds`` and ``plots``.

    Raises:
        ValueError: naming the field (``hparams_search.workers='abc': expected an integer >= 1``).
    """
    for key, (kind, low) in NUMERIC_FIELDS.items():
        value = cfg.get(key)
        if value is None and DEFAULTS[key] is None:
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or isinstance(value, int))
        if not ok or value < low:
            what = "an integer" if kind is int else "a number"
            raise ValueError(f"hparams_search.{key}={value!r}: expected {what} >= {low:g}")
    seeds = cfg.get("rerun_seeds")
    if seeds is not None and (not OmegaConf.is_list(seeds) or not seeds
                              or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise ValueError(f"hparams_search.rerun_seeds={seeds!r}: expected null or a non-empty list of integer seeds, "
                         "e.g. hparams_search.rerun_seeds=[0,1,2]")
    if not isinstance(cfg.get("plots"), bool):
        raise ValueError(f"hparams_search.plots={cfg.get('plots')!r}: expected true or false")


def objectives(scfg: DictConfig) -> tuple[list[str], list[str]]:
    """(directions, metric names): ``directions``/``optimized_metrics`` when given, else the single ones."""
    directions = list(scfg.directions) if scfg.directions else [scfg.direction]
    metrics = list(scfg.optimized_metrics) if scfg.optimized_metrics else [scfg.optimized_metric]
    if len(directions) != len(metrics):
        raise ValueError(f"{len(directions)} direction(s) {directions} for {len(metrics)} metric(s) {metrics}")
    for d in directions:
        if d not in ("maximize", "minimize"):
            raise ValueError(f"direction must be maximize or minimize, got {d!r}")
    return directions, metrics


def storage_url(scfg: DictConfig) -> str:
    if scfg.storage:
        return str(scfg.storage)
    db = (Path(scfg.output_dir) / f"{scfg.study_name}.db").resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"  # db is absolute: sqlite:////abs/path.db


def make_storage(scfg: DictConfig) -> optuna.storages.RDBStorage:
    """The study's RDB storage with heartbeats, so that a dead worker's RUNNING trial goes stale.

    Raises:
        ValueError: a storage URL that is not an SQLAlchemy database URL (``hparams_search.storage``).
    """
    url = storage_url(scfg)
    if "://" not in url:
        raise ValueError(f"hparams_search.storage={url!r}: expected a database URL (sqlite:////abs/x.db, "
                         "postgresql://user@host/db); workers need heartbeats, which Optuna's RDB storage keeps")
    interval, grace = int(scfg.heartbeat_interval), int(scfg.grace_period)
    if interval <= 0 or grace <= interval:
        raise ValueError(f"hparams_search.grace_period={grace} must exceed hparams_search.heartbeat_interval="
                         f"{interval} > 0 (a live trial must not be taken for a dead one)")
    # SQLite serialises writers: wait for the lock instead of failing at once when workers write together
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=interval,
                                          grace_period=grace)


def make_sampler(cfg: DictConfig | dict, offset: int = 0) -> optuna.samplers.BaseSampler:
    cfg = dict(cfg or {})
    name = cfg.pop("name", "tpe")
    seed = cfg.pop("seed", None)
    seed = None if seed is None else int(seed) + offset
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **cfg)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed, **cfg)
    raise ValueError(f"unknown sampler {name!r} (tpe | random)")


def make_pruner(cfg: DictConfig | dict | None) -> optuna.pruners.BasePruner | None:
    """None for ``name: none``; ``monitor`` is read by the callback, not the pruner."""
    cfg = {k: v for k, v in dict(cfg or {}).items() if k != "monitor"}
    name = cfg.pop("name", "none")
    if name in (None, "none"):
        return None
    if name == "median":
        return optuna.pruners.MedianPruner(**cfg)
    if name == "threshold":
        return optuna.pruners.ThresholdPruner(**cfg)
    raise ValueError(f"unknown pruner {name!r} (none | median | threshold)")


# ---- params grammar -> overrides
def suggest(trial: optuna.Trial, name: str, spec: DictConfig | dict) -> Any:
    """One ``params`` entry: ``{type: float|int|categorical, low, high, log, step, choices}``."""
    spec = dict(spec)
    kind = spec.get("type")
    if kind == "float":
        return trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False)),
                                   step=None if spec.get("step") is None else float(spec["step"]))
    if kind == "int":
        return trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log", False)),
                                 step=int(spec.get("step") or 1))
    if kind == "categorical":
        return trial.suggest_categorical(name, list(spec["choices"]))
    raise ValueError(f"params.{name}: type must be float, int or categorical, got {kind!r}")


def representative(spec: DictConfig | dict) -> Any:
    """A value of the param's space (for checking, before the study, that every path can be overridden)."""
    if spec.get("type") == "categorical":
        return list(spec["choices"])[0]
    return spec["low"]


def override_value(value: Any) -> str:
    """A Python value in Hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if text and all(c.isalnum() or c in "_-./@:" for c in text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def param_overrides(params: dict[str, Any]) -> list[str]:
    return [f"{path}={override_value(v)}" for path, v in params.items()]


def compose_train(overrides: Sequence[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="search"):
        return compose("train", overrides=list(overrides))


# ---- pruning
class PruningCallback(pl.Callback):
    """Report ``monitor`` (from Lightning's logged metrics) after each validation epoch; prune on demand.

    The report is a storage write: ``stop`` (the search's :class:`StopSignals`) holds a signal back
    until it is done."""

    def __init__(self, trial: optuna.Trial, monitor: str = "val/recall@50", stop: StopSignals | None = None) -> None:
        self.trial, self.monitor, self.stop = trial, monitor, stop or StopSignals()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            raise missing_metric(self.monitor, list(metrics), "the model's validation epoch (pruner.monitor)")
        epoch = trainer.current_epoch
        with self.stop.armed(False):
            self.trial.report(float(metrics[self.monitor]), step=epoch)
            prune = self.trial.should_prune()
        self.stop.check()
        if prune:
            raise optuna.TrialPruned(f"pruned after epoch {epoch} ({self.monitor}={float(metrics[self.monitor]):.4f})")


def import_train():
    """The repo's ``train.py`` (next to conf/, outside the package)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import train

    return train


# ---- the search
class Objective:
    """One trial: compose the train config with the trial's parameters, train, return the metric(s).

    Only the training itself is *armed* for signals (:class:`StopSignals`); a signal there is raised
    as :class:`TrialInterrupted`, which Optuna records FAIL. ``interrupted`` holds that trial's number.
    """

    def __init__(self, scfg: DictConfig, base_overrides: list[str], metrics: list[str], out_dir: Path,
                 prune: bool, stop: StopSignals | None = None) -> None:
        self.scfg, self.base_overrides, self.metrics, self.out_dir = scfg, base_overrides, metrics, out_dir
        self.prune = prune
        self.monitor = str((scfg.pruner or {}).get("monitor") or "val/recall@50")
        self.stop = stop or StopSignals()
        self.interrupted: int | None = None
        self.train = import_train()

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        trial.set_user_attr("worker", worker_id())
        ahead = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
        if len(finished_trials(ahead)) + len(live_running(ahead, int(self.scfg.grace_period))) >= self.scfg.n_trials:
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"trial {trial.number}: the budget of {self.scfg.n_trials} trials is taken")
        params = {name: suggest(trial, name, spec) for name, spec in self.scfg.params.items()}
        overrides = [*self.base_overrides, *param_overrides(params)]
        run_dir = self.out_dir / f"trial_{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("overrides", overrides)
        try:
            with self.stop.armed():
                metrics = self.run(trial, overrides, run_dir)
        except SignalReceived as exc:
            self.interrupted = trial.number
            trial.set_user_attr("interrupted", signal.Signals(exc.signum).name)
            raise TrialInterrupted(f"trial {trial.number} stopped by {signal.Signals(exc.signum).name}") from None
        for name in self.metrics:
            if name not in metrics:
                raise missing_metric(name, list(metrics), f"this run ({run_dir}) (optimized_metric)")
        values = [float(metrics[name]) for name in self.metrics]
        trial.set_user_attr("metrics", dict(zip(self.metrics, values)))
        return values[0] if len(values) == 1 else values

    def run(self, trial: optuna.Trial, overrides: list[str], run_dir: Path) -> dict[str, float]:
        """Compose and train one trial in ``run_dir``; returns the run's flat metrics.

        Raises:
            TrialFailed: training raised (the trial is recorded FAIL, the study goes on).
        """
        cfg = compose_train(overrides)
        with open_dict(cfg):
            cfg.run_dir = str(run_dir)
        (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        model_cls = get_class(cfg.model._target_)
        hooked = self.prune and hasattr(model_cls, "extra_callbacks")  # models without epochs: not pruned
        callbacks = [PruningCallback(trial, self.monitor, self.stop)] if hooked else []
        try:
            metrics, _ = self.train.train(cfg, extra_callbacks=callbacks)
        except (optuna.TrialPruned, MetricNotFound):
            raise
        except Exception as exc:  # noqa: BLE001 - any training error is this trial's failure
            log.exception("trial %d failed (%s)", trial.number, run_dir)
            with self.stop.armed(False):
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise TrialFailed(f"trial {trial.number}: {type(exc).__name__}: {exc}") from exc
        return metrics


def worker_id() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def finished_trials(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in trials if t.state in done]


def live_running(trials: Sequence[optuna.trial.FrozenTrial], grace_period: int) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials that a live worker may still finish: those a worker of this module claimed
    (their heartbeat makes them go stale when it dies) and, for the instant between ``ask`` and the
    claim, those started less than ``grace_period`` s ago. A RUNNING trial left without heartbeat
    by an older version is ignored once that old."""
    now = datetime.datetime.now()
    recent = datetime.timedelta(seconds=grace_period)
    return [t for t in trials if t.state == optuna.trial.TrialState.RUNNING
            and ("worker" in t.user_attrs or (t.datetime_start is not None and now - t.datetime_start < recent))]


class Budget:
    """Stop once ``n_trials`` trials have finished (COMPLETE + PRUNED, in total) or ``max_failures``
    trials have failed in this invocation."""

    def __init__(self, n_trials: int, max_failures: int) -> None:
        self.n_trials, self.max_failures, self.failures = n_trials, max_failures, 0
        self.stopped_by_failures = False

    @staticmethod
    def finished(study: optuna.Study) -> int:
        return len(finished_trials(study.get_trials(deepcopy=False)))

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.FAIL and not trial.user_attrs.get("surplus"):
            self.failures += 1
            if self.failures >= self.max_failures:
                self.stopped_by_failures = True
                log.error("%d trial(s) failed: stopping the study (max_failures=%d)", self.failures, self.max_failures)
                study.stop()
                return
        if self.finished(study) >= self.n_trials:
            study.stop()


def open_study(scfg: DictConfig, directions: list[str], metrics: list[str], pruner,
               fixed: dict[str, str | None] | None = None) -> optuna.Study:
    """Create or load the study; a loaded one must have the same directions, optimized metrics and
    fixed overrides (``fixed``, :func:`fixed_overrides`; None: not checked).

    Raises:
        StudyMismatch: the study exists with other directions, metrics or fixed overrides (nothing
            is written to it).
    """
    study = optuna.create_study(storage=make_storage(scfg), study_name=str(scfg.study_name),
                                directions=directions, sampler=make_sampler(scfg.sampler), pruner=pruner,
                                load_if_exists=True)
    where = f"study '{scfg.study_name}' ({storage_url(scfg)})"
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise StudyMismatch(f"{where} exists with directions {stored}, not {directions}: use another "
                            "hparams_search.study_name or storage")
    previous = study.user_attrs.get("optimized_metrics")
    if previous is not None and list(previous) != metrics:
        raise StudyMismatch(f"{where} optimizes {previous}, not {metrics}: use another "
                            "hparams_search.study_name or storage")
    if fixed is not None:
        check_fixed_overrides(study, scfg, fixed, where)
    if previous is None:
        study.set_user_attr("optimized_metrics", metrics)
    n_so_far = len(study.get_trials(deepcopy=False))
    rank = int(scfg.worker_rank or 0)
    if n_so_far or rank:  # resumed: do not replay the seeded sampler's first proposals; workers: differ
        study.sampler = make_sampler(scfg.sampler, offset=n_so_far + 7919 * rank)
    return study


def recorded_fixed_overrides(study: optuna.Study, searched: Iterable[str]) -> dict[str, str | None] | None:
    """The study's fixed overrides: its user attr, else (a study made before that record) those of its
    first trial that recorded its overrides, else None (a new study)."""
    stored = study.user_attrs.get("fixed_overrides")
    if stored is not None:
        return dict(stored)
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("overrides"):
            return fixed_overrides(t.user_attrs["overrides"], {*searched, *t.params})
    return None


def check_fixed_overrides(study: optuna.Study, scfg: DictConfig, fixed: dict[str, str | None], where: str) -> None:
    """Record ``fixed`` in a study that has no record yet; refuse a study recorded with others.

    Raises:
        StudyMismatch: naming every changed key (old -> new) and a new study name to use instead.
    """
    old = recorded_fixed_overrides(study, scfg.params.keys())
    if old is not None and old != fixed:
        changes = changed_fixed_overrides(old, fixed)
        taken = optuna.get_all_study_names(study._storage)
        raise StudyMismatch(
            f"{where} was made with other fixed overrides; changed: {'; '.join(changes)}. Its trials would not "
            f"compare with this command's: repeat its overrides to resume it, or start a new study with "
            f"hparams_search.study_name={suggest_study_name(str(scfg.study_name), old, fixed, taken)}")
    if "fixed_overrides" not in study.user_attrs:
        study.set_user_attr("fixed_overrides", fixed if old is None else old)


def summarize(study: optuna.Study, scfg: DictConfig, metrics: list[str], budget: Budget | None) -> dict[str, Any]:
    states = optuna.trial.TrialState
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,)))
              for s in (states.COMPLETE, states.PRUNED, states.FAIL, states.RUNNING, states.WAITING)}
    counts["surplus"] = sum(bool(t.user_attrs.get("surplus")) for t in study.get_trials(deepcopy=False))

    def record(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
        return {"number": t.number, "values": dict(zip(metrics, t.values)), "params": t.params,
                "run_dir": t.user_attrs.get("run_dir"), "overrides": t.user_attrs.get("overrides")}

    complete = counts["complete"] > 0
    summary: dict[str, Any] = {
        "study_name": study.study_name,
        "storage": storage_url(scfg),
        "directions": [d.name.lower() for d in study.directions],
        "optimized_metrics": metrics,
        "n_trials": int(scfg.n_trials),
        "counts": counts,
        "stopped_by_failures": bool(budget and budget.stopped_by_failures),
        "fixed_overrides": study.user_attrs.get("fixed_overrides"),
    }
    if len(metrics) == 1:
        summary["best"] = record(study.best_trial) if complete else None
    else:
        summary["best_trials"] = [record(t) for t in study.best_trials] if complete else []
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    c = summary["counts"]
    lines = [f"study '{summary['study_name']}' ({summary['storage']}): {c['complete']} complete, "
             f"{c['pruned']} pruned, {c['fail']} failed (of which {c['surplus']} surplus), {c['running']} running"]
    best = [summary["best"]] if summary.get("best") else summary.get("best_trials", [])
    if not best:
        lines.append("no complete trial yet")
    for b in best:
        values = ", ".join(f"{k} = {v:.6g}" for k, v in b["values"].items())
        lines.append(f"{'best trial' if 'best' in summary else 'Pareto trial'} {b['number']}: {values}")
        lines.extend(f"  {k}={override_value(v)}" for k, v in b["params"].items())
        lines.append(f"  run dir: {b['run_dir']}")
        if b.get("rerun"):
            lines.append(f"  rerun on seeds {b['rerun']['seeds']} (val and test): {b['rerun']['command']}")
    if summary.get("plots"):
        lines.append(f"plots: {', '.join(Path(p).name for p in summary['plots'].values())}")
    if summary["stopped_by_failures"]:
        lines.append("stopped early: max_failures reached (see the FAIL trials' user_attrs['error'])")
    return "\n".join(lines)


def check_validation_only(cfg: DictConfig, study_name: str) -> None:
    """Trials score the validation fold alone.

    Raises:
        ValueError: the composed train config evaluates another fold (naming ``eval.folds``).
    """
    folds = list(cfg.eval.folds)
    if folds != ["val"]:
        raise ValueError(f"study '{study_name}': trials score the validation fold only, got eval.folds={folds}: "
                         "add \"eval.folds=[val]\" to the study's overrides; test is scored by the rerun of the best "
                         "setting (best.json 'rerun', or hparams_search.rerun_seeds=[0,1,2])")


class Session:
    """What a stopped search reports: its study and objective, once they exist."""

    def __init__(self) -> None:
        self.study: optuna.Study | None = None
        self.objective: Objective | None = None
        self.workers = 0


def stopped_message(scfg: DictConfig, signum: int, session: Session) -> str:
    """The one line a stopped study logs."""
    name = signal.Signals(signum).name
    parts = [f"study '{scfg.study_name}' stopped by {name}"]
    interrupted = session.objective.interrupted if session.objective else None
    if session.workers:
        parts.append(f"passed on to its {session.workers} worker processes, which record their running trials FAIL")
    elif interrupted is not None:
        state = "FAIL"
        if session.study is not None:
            try:
                state = session.study._storage.get_trial(session.study.trials[interrupted]._trial_id).state.name
            except Exception as exc:  # noqa: BLE001 - the message must still go out
                state = f"(not read back: {type(exc).__name__})"
        parts.append(f"its running trial {interrupted} is recorded {state}")
    else:
        parts.append("no trial was running")
    if session.study is not None:
        try:
            parts.append(f"{len(finished_trials(session.study.get_trials(deepcopy=False)))} of {int(scfg.n_trials)} "
                         "trials finished")
        except Exception:  # noqa: BLE001 - the storage may be what failed
            pass
    return "; ".join(parts) + f"; run the same command again to resume (exit status {128 + signum})"


def run_search(study: str | Path | DictConfig, train_overrides: Sequence[str] = (),
               study_overrides: Sequence[str] = ()) -> tuple[dict[str, Any], optuna.Study]:
    """Run (or resume) a study; returns (summary, study). The summary is also written to best.json.

    Raises:
        StudyMismatch: the study exists with other fixed overrides (or directions, metrics).
        StudyStopped: SIGINT / SIGTERM (after one error line; the running trial is recorded FAIL).
        RerunFailed: ``rerun_seeds`` given and the rerun or its report failed.
    """
    scfg = load_study_config(study, study_overrides)
    stop, session = StopSignals(), Session()
    with stop.installed():
        try:
            return search_study(study, scfg, train_overrides, study_overrides, stop, session)
        except (SignalReceived, KeyboardInterrupt) as exc:
            signum = stop.signum or getattr(exc, "signum", None) or int(signal.SIGINT)
            log.error(stopped_message(scfg, signum, session))
            raise StudyStopped(signum) from None


def search_study(study: str | Path | DictConfig, scfg: DictConfig, train_overrides: Sequence[str],
                 study_overrides: Sequence[str], stop: StopSignals, session: Session) -> tuple[dict[str, Any], optuna.Study]:
    """The body of :func:`run_search`."""
    directions, metrics = objectives(scfg)
    if scfg.rerun_seeds is not None and len(metrics) > 1:
        raise ValueError("hparams_search.rerun_seeds: a multi-objective study has a Pareto front, not one best trial; "
                         "rerun one of them: python -m graphrecall.best_setting <study folder> --trial N")
    base_overrides = [*scfg.overrides, *train_overrides]
    # fail fast on overrides or param paths that the train config cannot take
    for name, spec in scfg.params.items():
        if spec.get("type") not in ("float", "int", "categorical"):
            raise ValueError(f"params.{name}: type must be float, int or categorical, got {spec.get('type')!r}")
    probe = param_overrides({name: representative(spec) for name, spec in scfg.params.items()})
    try:
        probe_cfg = compose_train([*base_overrides, *probe])
    except Exception as exc:
        raise ValueError(f"study '{scfg.study_name}': the train config does not take the overrides "
                         f"{[*base_overrides, *probe]}: {exc}") from exc
    check_validation_only(probe_cfg, str(scfg.study_name))
    check_train_config(probe_cfg, [*base_overrides, *probe])  # trials compose without Hydra: their +keys are checked here
    fixed = fixed_overrides(base_overrides, scfg.params.keys())

    pruner = make_pruner(scfg.pruner)
    if pruner is not None and len(directions) > 1:
        log.warning("multi-objective study: Optuna does not prune these; pruner ignored")
        pruner = None
    optuna_study = session.study = open_study(scfg, directions, metrics, pruner, fixed)
    out_dir = Path(scfg.output_dir).resolve() / str(scfg.study_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info("study '%s': watch it live with `optuna-dashboard %s` (pip install optuna-dashboard)",
             scfg.study_name, storage_url(scfg))

    budget = Budget(int(scfg.n_trials), int(scfg.max_failures))
    if int(scfg.workers) > 1:
        session.workers = int(scfg.workers)
        budget.stopped_by_failures = launch_workers(study, scfg, train_overrides, study_overrides, out_dir, stop)
        session.workers = 0
        optuna_study = session.study = open_study(scfg, directions, metrics, pruner, fixed)  # re-read: the workers filled it
    elif budget.finished(optuna_study) >= budget.n_trials:
        log.info("study '%s' already has %d finished trials (n_trials=%d): nothing to run",
                 scfg.study_name, budget.finished(optuna_study), budget.n_trials)
    else:
        session.objective = Objective(scfg, base_overrides, metrics, out_dir, prune=pruner is not None, stop=stop)
        run_worker(optuna_study, session.objective, budget, int(scfg.grace_period), float(scfg.poll_seconds), stop)

    summary = summarize(optuna_study, scfg, metrics, budget)
    seeds = list(scfg.rerun_seeds) if scfg.rerun_seeds is not None else list(DEFAULT_SEEDS)
    for record in [summary["best"]] if summary.get("best") else summary.get("best_trials", []):
        record["rerun"] = rerun_plan(record, str(scfg.study_name), out_dir, seeds, Path.cwd())
    if scfg.plots:
        summary["plots"], summary["plots_skipped"] = write_study_plots(optuna_study, metrics, out_dir)
        if probe_cfg.logger.get("name") == "wandb":
            summary["wandb"] = log_study_to_wandb(summary, probe_cfg, out_dir)
    write_best_json(out_dir, summary)
    print(format_summary(summary) + f"\nwritten: {out_dir / 'best.json'}")
    if scfg.rerun_seeds is not None:
        if summary.get("best"):
            summary["best"]["rerun"].update(run_rerun(summary["best"]["rerun"], metrics, stop))
            write_best_json(out_dir, summary)
        else:
            log.warning("hparams_search.rerun_seeds: no complete trial, nothing to rerun")
    return summary, optuna_study


def write_best_json(out_dir: Path, summary: dict[str, Any]) -> Path:
    path = out_dir / "best.json"
    tmp = path.with_name(".best.json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    os.replace(tmp, path)  # an interrupted write never leaves half a best.json
    return path


# ---- the best setting on several seeds
def run_rerun(plan: dict[str, Any], metrics: list[str], stop: StopSignals) -> dict[str, Any]:
    """Run the rerun of the best setting (``plan``: best.json's ``rerun``) unless its sweep already
    finished, then ``graphrecall.report`` on the sweep (printed, and written to ``<sweep>/report.md``,
    with the optimized validation metrics as extra columns).

    Returns:
        ``{"ran": bool, "report": path}``.

    Raises:
        RerunFailed: the rerun or the report exited non-zero.
    """
    sweep = Path(plan["sweep_dir"])
    finished = all((sweep / str(i) / "metrics.json").exists() for i in range(len(plan["seeds"])))
    if finished:
        log.info("rerun of the best setting already finished in %s: not run again", sweep)
    else:
        log.info("rerun of the best setting on seeds %s: %s", plan["seeds"], plan["command"])
        argv = [sys.executable, *plan["argv"][1:]]  # this environment's interpreter, whatever PATH holds
        (code,) = wait_passing_signals([subprocess.Popen(argv, cwd=plan["cwd"])], stop)
        if code != 0:
            raise RerunFailed(f"the rerun of the best setting exited with status {code} (its output is above): "
                              f"{plan['command']}")
    report = sweep / "report.md"
    cmd = [sys.executable, "-m", "graphrecall.report", str(sweep), "--out", str(report), "--extra", *metrics]
    out = subprocess.run(cmd, cwd=plan["cwd"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RerunFailed(f"graphrecall.report on the rerun {sweep} exited with status {out.returncode}: "
                          f"{out.stderr.strip()[-2000:]}")
    print(out.stdout)
    return {"ran": not finished, "report": str(report)}


def run_worker(study: optuna.Study, objective: Objective, budget: Budget, grace_period: int,
               poll_seconds: float, stop: StopSignals | None = None) -> None:
    """Run trials one at a time until the study has ``n_trials`` finished trials (or the failure
    budget is spent). Trials of other live workers count as pending: while they fill the budget
    this worker waits, and replaces any of them whose worker dies (heartbeat older than the grace
    period: marked FAIL here). Storage reads and writes run with signals held back (``stop``); the
    objective's training and the waits take them at once."""
    stop = stop or StopSignals()
    waited = False
    with stop.armed(False):
        while not budget.stopped_by_failures:
            stop.check()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            finished, pending = len(finished_trials(trials)), len(live_running(trials, grace_period))
            if finished >= budget.n_trials:
                return
            if finished + pending >= budget.n_trials:
                if not waited:
                    log.info("%d finished + %d running in other workers fill the budget of %d: waiting for them",
                             finished, pending, budget.n_trials)
                    waited = True
                stop.sleep(poll_seconds)
                continue
            waited = False
            study.optimize(objective, n_trials=1, catch=(TrialFailed, SurplusTrial), callbacks=[budget])
        stop.check()


def launch_workers(study: str | Path | DictConfig, scfg: DictConfig, train_overrides: Sequence[str],
                   study_overrides: Sequence[str], out_dir: Path, stop: StopSignals | None = None) -> bool:
    """Run ``scfg.workers`` worker processes of this command on the study and wait for them. The
    workers leave the plots, the W&B study run and the rerun to this process. A signal that stops
    this process is passed on to them (:func:`wait_passing_signals`).

    Returns:
        True when a worker stopped on its failure budget (exit status 1).

    Raises:
        RuntimeError: a worker crashed (any other non-zero status), naming its log file.
    """
    if isinstance(study, DictConfig):  # a study built in Python: hand the workers a file
        path = out_dir / "study.yaml"
        OmegaConf.save(study, path)
        study = path
    procs = []
    for rank in range(int(scfg.workers)):
        cmd = [sys.executable, "-m", "graphrecall.search", f"hparams_search={study}", *train_overrides,
               *(f"hparams_search.{o}" for o in study_overrides),
               f"hparams_search.storage={storage_url(scfg)}", f"hparams_search.output_dir={Path(scfg.output_dir).resolve()}",
               "hparams_search.workers=1", f"hparams_search.worker_rank={rank}", "hparams_search.plots=false",
               "hparams_search.rerun_seeds=null"]
        logfile = out_dir / f"worker_{rank}.log"
        with logfile.open("w") as fh:
            procs.append((rank, logfile, subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)))
        log.info("worker %d: pid %d, log %s", rank, procs[-1][2].pid, logfile)
    statuses = wait_passing_signals([proc for _, _, proc in procs], stop or StopSignals())
    codes = {rank: (logfile, code) for (rank, logfile, _), code in zip(procs, statuses)}
    crashed = {rank: f"exit {code}, log {logfile}" for rank, (logfile, code) in codes.items() if code not in (0, 1)}
    if crashed:
        raise RuntimeError(f"search worker(s) crashed: {crashed}")
    return any(code == 1 for _, code in codes.values())


def parse_args(argv: Sequence[str]) -> tuple[str, list[str], list[str]]:
    study, train_overrides, study_overrides = None, [], []
    for arg in argv:
        if arg.startswith("hparams_search="):
            study = arg.split("=", 1)[1]
        elif arg.startswith("hparams_search."):
            study_overrides.append(arg[len("hparams_search."):])
        else:
            train_overrides.append(arg)
    if not study:
        raise SystemExit("usage: python -m graphrecall.search hparams_search=<study> [train overrides] "
                         "[hparams_search.<field>=<value>]; studies: "
                         f"{sorted(p.stem for p in STUDY_DIR.glob('*.yaml'))}")
    return study, train_overrides, study_overrides


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s")
    study, train_overrides, study_overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        summary, _ = run_search(study, train_overrides, study_overrides)
    except StudyStopped as exc:  # its line is logged
        return exc.exit_status
    except StudyMismatch as exc:
        log.error("%s", exc)
        return EXIT_MISMATCH
    except RerunFailed as exc:
        log.error("%s", exc)
        return 1
    return 1 if summary["stopped_by_failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
