"""Optuna hyperparameter searches over ``train.train``, driven directly (no Hydra sweeper plugin).

``python -m graphrecall.search hparams_search=<study> [train overrides] [hparams_search.<field>=<value>]``

* ``hparams_search=<study>`` names ``conf/hparams_search/<study>.yaml`` (or is a path to a YAML file).
  The study file is *not* a group of the train config: it is loaded here with OmegaConf, so
  ``python train.py`` is unchanged. ``hparams_search.<field>=<value>`` overrides one of its fields
  (``hparams_search.n_trials=50``, ``hparams_search.storage=sqlite:////abs/x.db``).
* Every other argument is a train override (``dataset=synthetic``, ``trainer.max_epochs=10``). Each
  trial composes ``conf/train.yaml`` with Hydra's compose API from: the study's ``overrides``, then
  the command line, then the trial's sampled ``params`` (``model.optim.lr=0.0031``, ``aggregator=gat``).
* Each trial runs ``train.train(cfg)`` in ``<output_dir>/<study_name>/trial_<n>/`` (a normal run
  directory, plus ``.hydra/overrides.yaml`` so that ``python -m graphrecall.report
  outputs/optuna/<study_name>`` tables the trials) and returns ``optimized_metric`` (or the list
  ``optimized_metrics`` for a multi-objective study) read from the run's metrics.
* Pruning: for a single-objective study with a pruner, models that train with Lightning (they have
  an ``extra_callbacks`` attribute: sage, mf, lightgcn) get :class:`PruningCallback` through
  ``train.train(cfg, extra_callbacks=...)``; it reports the monitored
  validation metric after every validation epoch and raises ``optuna.TrialPruned`` when the pruner
  says so (the trial is recorded PRUNED). Models without epochs (the baselines) are not pruned.
* Failures: a trial whose training raises is recorded FAIL and the study goes on, until
  ``max_failures`` trials have failed in this invocation. An optimized (or monitored) metric that
  the run does not produce is a configuration error: it raises ``KeyError`` (naming the available
  keys) at the end of the first trial at the latest, and stops the study.
* Resume: the study lives in ``storage`` (default SQLite ``outputs/optuna/<study_name>.db``, absolute
  URL built at run time) and is loaded if it exists; re-running the same command continues it until
  ``n_trials`` trials have *finished* (COMPLETE + PRUNED) in total. The sampler is reseeded with
  ``seed + number of trials so far``, so a resumed study does not re-propose its first trials.
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
* At the end: a summary (best trial or Pareto front, params, values, counts of complete / pruned /
  failed trials) is printed and written to ``<output_dir>/<study_name>/best.json``.
"""

from __future__ import annotations

import datetime
import difflib
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

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
}


class MetricNotFound(KeyError):
    """An optimized or monitored metric that the run does not produce (a config error: stops the study)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class TrialFailed(RuntimeError):
    """Training raised inside a trial: the trial is recorded FAIL and the study continues."""


class SurplusTrial(RuntimeError):
    """Another worker took the last slot of the budget first: recorded FAIL (``surplus``), never run."""


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
    return cfg


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
    """Report ``monitor`` (from Lightning's logged metrics) after each validation epoch; prune on demand."""

    def __init__(self, trial: optuna.Trial, monitor: str = "val/recall@50") -> None:
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            raise missing_metric(self.monitor, list(metrics), "the model's validation epoch (pruner.monitor)")
        epoch = trainer.current_epoch
        self.trial.report(float(metrics[self.monitor]), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} ({self.monitor}={float(metrics[self.monitor]):.4f})")


def import_train():
    """The repo's ``train.py`` (next to conf/, outside the package)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import train

    return train


# ---- the search
class Objective:
    def __init__(self, scfg: DictConfig, base_overrides: list[str], metrics: list[str], out_dir: Path,
                 prune: bool) -> None:
        self.scfg, self.base_overrides, self.metrics, self.out_dir = scfg, base_overrides, metrics, out_dir
        self.prune = prune
        self.monitor = str((scfg.pruner or {}).get("monitor") or "val/recall@50")
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
        cfg = compose_train(overrides)
        with open_dict(cfg):
            cfg.run_dir = str(run_dir)
        (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        model_cls = get_class(cfg.model._target_)
        hooked = self.prune and hasattr(model_cls, "extra_callbacks")  # models without epochs: not pruned
        callbacks = [PruningCallback(trial, self.monitor)] if hooked else []
        try:
            metrics, _ = self.train.train(cfg, extra_callbacks=callbacks)
        except (optuna.TrialPruned, MetricNotFound):
            raise
        except Exception as exc:  # noqa: BLE001 - any training error is this trial's failure
            log.exception("trial %d failed (%s)", trial.number, run_dir)
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise TrialFailed(f"trial {trial.number}: {type(exc).__name__}: {exc}") from exc
        for name in self.metrics:
            if name not in metrics:
                raise missing_metric(name, list(metrics), f"this run ({run_dir}) (optimized_metric)")
        values = [float(metrics[name]) for name in self.metrics]
        trial.set_user_attr("metrics", dict(zip(self.metrics, values)))
        return values[0] if len(values) == 1 else values


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


def open_study(scfg: DictConfig, directions: list[str], metrics: list[str], pruner) -> optuna.Study:
    study = optuna.create_study(storage=make_storage(scfg), study_name=str(scfg.study_name),
                                directions=directions, sampler=make_sampler(scfg.sampler), pruner=pruner,
                                load_if_exists=True)
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise ValueError(f"study '{scfg.study_name}' exists with directions {stored}, not {directions}: "
                         "use another study_name or storage")
    previous = study.user_attrs.get("optimized_metrics")
    if previous is None:
        study.set_user_attr("optimized_metrics", metrics)
    elif list(previous) != metrics:
        raise ValueError(f"study '{scfg.study_name}' optimizes {previous}, not {metrics}: "
                         "use another study_name or storage")
    n_so_far = len(study.get_trials(deepcopy=False))
    rank = int(scfg.worker_rank or 0)
    if n_so_far or rank:  # resumed: do not replay the seeded sampler's first proposals; workers: differ
        study.sampler = make_sampler(scfg.sampler, offset=n_so_far + 7919 * rank)
    return study


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
    if summary["stopped_by_failures"]:
        lines.append("stopped early: max_failures reached (see the FAIL trials' user_attrs['error'])")
    return "\n".join(lines)


def run_search(study: str | Path | DictConfig, train_overrides: Sequence[str] = (),
               study_overrides: Sequence[str] = ()) -> tuple[dict[str, Any], optuna.Study]:
    """Run (or resume) a study; returns (summary, study). The summary is also written to best.json."""
    scfg = load_study_config(study, study_overrides)
    directions, metrics = objectives(scfg)
    base_overrides = [*scfg.overrides, *train_overrides]
    # fail fast on overrides or param paths that the train config cannot take
    for name, spec in scfg.params.items():
        if spec.get("type") not in ("float", "int", "categorical"):
            raise ValueError(f"params.{name}: type must be float, int or categorical, got {spec.get('type')!r}")
    probe = param_overrides({name: representative(spec) for name, spec in scfg.params.items()})
    try:
        compose_train([*base_overrides, *probe])
    except Exception as exc:
        raise ValueError(f"study '{scfg.study_name}': the train config does not take the overrides "
                         f"{[*base_overrides, *probe]}: {exc}") from exc

    pruner = make_pruner(scfg.pruner)
    if pruner is not None and len(directions) > 1:
        log.warning("multi-objective study: Optuna does not prune these; pruner ignored")
        pruner = None
    optuna_study = open_study(scfg, directions, metrics, pruner)
    out_dir = Path(scfg.output_dir).resolve() / str(scfg.study_name)
    out_dir.mkdir(parents=True, exist_ok=True)

    budget = Budget(int(scfg.n_trials), int(scfg.max_failures))
    if int(scfg.workers) > 1:
        budget.stopped_by_failures = launch_workers(study, scfg, train_overrides, study_overrides, out_dir)
        optuna_study = open_study(scfg, directions, metrics, pruner)  # re-read: the workers filled it
    elif budget.finished(optuna_study) >= budget.n_trials:
        log.info("study '%s' already has %d finished trials (n_trials=%d): nothing to run",
                 scfg.study_name, budget.finished(optuna_study), budget.n_trials)
    else:
        objective = Objective(scfg, base_overrides, metrics, out_dir, prune=pruner is not None)
        run_worker(optuna_study, objective, budget, int(scfg.grace_period), float(scfg.poll_seconds))
    summary = summarize(optuna_study, scfg, metrics, budget)
    (out_dir / "best.json").write_text(json.dumps(summary, indent=2, default=str))
    print(format_summary(summary) + f"\nwritten: {out_dir / 'best.json'}")
    return summary, optuna_study


def run_worker(study: optuna.Study, objective: Objective, budget: Budget, grace_period: int,
               poll_seconds: float) -> None:
    """Run trials one at a time until the study has ``n_trials`` finished trials (or the failure
    budget is spent). Trials of other live workers count as pending: while they fill the budget
    this worker waits, and replaces any of them whose worker dies (heartbeat older than the grace
    period: marked FAIL here)."""
    waited = False
    while not budget.stopped_by_failures:
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
            time.sleep(poll_seconds)
            continue
        waited = False
        study.optimize(objective, n_trials=1, catch=(TrialFailed, SurplusTrial), callbacks=[budget])


def launch_workers(study: str | Path | DictConfig, scfg: DictConfig, train_overrides: Sequence[str],
                   study_overrides: Sequence[str], out_dir: Path) -> bool:
    """Run ``scfg.workers`` worker processes of this command on the study and wait for them.

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
               "hparams_search.workers=1", f"hparams_search.worker_rank={rank}"]
        logfile = out_dir / f"worker_{rank}.log"
        with logfile.open("w") as fh:
            procs.append((rank, logfile, subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)))
        log.info("worker %d: pid %d, log %s", rank, procs[-1][2].pid, logfile)
    codes = {rank: (logfile, proc.wait()) for rank, logfile, proc in procs}
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
    summary, _ = run_search(study, train_overrides, study_overrides)
    return 1 if summary["stopped_by_failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
