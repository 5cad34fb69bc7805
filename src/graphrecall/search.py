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
* At the end: a summary (best trial or Pareto front, params, values, counts of complete / pruned /
  failed trials) is printed and written to ``<output_dir>/<study_name>/best.json``.
"""

from __future__ import annotations

import difflib
import json
import logging
import sys
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
}


class MetricNotFound(KeyError):
    """An optimized or monitored metric that the run does not produce (a config error: stops the study)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class TrialFailed(RuntimeError):
    """Training raised inside a trial: the trial is recorded FAIL and the study continues."""


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


class Budget:
    """Stop once ``n_trials`` trials have finished (COMPLETE + PRUNED, in total) or ``max_failures``
    trials have failed in this invocation."""

    def __init__(self, n_trials: int, max_failures: int) -> None:
        self.n_trials, self.max_failures, self.failures = n_trials, max_failures, 0
        self.stopped_by_failures = False

    @staticmethod
    def finished(study: optuna.Study) -> int:
        return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                             optuna.trial.TrialState.PRUNED)))

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.FAIL:
            self.failures += 1
            if self.failures >= self.max_failures:
                self.stopped_by_failures = True
                log.error("%d trial(s) failed: stopping the study (max_failures=%d)", self.failures, self.max_failures)
                study.stop()
                return
        if self.finished(study) >= self.n_trials:
            study.stop()


def open_study(scfg: DictConfig, directions: list[str], metrics: list[str], pruner) -> optuna.Study:
    study = optuna.create_study(storage=storage_url(scfg), study_name=str(scfg.study_name),
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
    if n_so_far:  # resumed: do not replay the seeded sampler's first proposals
        study.sampler = make_sampler(scfg.sampler, offset=n_so_far)
    return study


def summarize(study: optuna.Study, scfg: DictConfig, metrics: list[str], budget: Budget | None) -> dict[str, Any]:
    states = optuna.trial.TrialState
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,)))
              for s in (states.COMPLETE, states.PRUNED, states.FAIL, states.RUNNING, states.WAITING)}

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
             f"{c['pruned']} pruned, {c['fail']} failed, {c['running']} running"]
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
    remaining = budget.n_trials - budget.finished(optuna_study)
    if remaining > 0:
        objective = Objective(scfg, base_overrides, metrics, out_dir, prune=pruner is not None)
        optuna_study.optimize(objective, n_trials=remaining + budget.max_failures, catch=(TrialFailed,),
                              callbacks=[budget])
    else:
        log.info("study '%s' already has %d finished trials (n_trials=%d): nothing to run",
                 scfg.study_name, budget.finished(optuna_study), budget.n_trials)
    summary = summarize(optuna_study, scfg, metrics, budget)
    (out_dir / "best.json").write_text(json.dumps(summary, indent=2, default=str))
    print(format_summary(summary) + f"\nwritten: {out_dir / 'best.json'}")
    return summary, optuna_study


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
