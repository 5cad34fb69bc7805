"""What a config may hold: the type and range of every numeric key, and which added keys (``+key``)
some code reads.

Numeric keys. :data:`TRAIN_KEYS` (``conf/train.yaml`` composed with any model, dataset, graph...),
:data:`EVALUATE_KEYS` (``conf/evaluate.yaml``) and :data:`STUDY_KEYS` (``conf/hparams_search/*``)
give each numeric key its :class:`Number` (a number, whole or not, in an interval, maybe null, maybe
a word such as ``auto``, maybe a grid: a list of such numbers chosen on validation) or
:class:`NumberList` (a list of numbers: ``eval.ks``, ``model.sampling.fanouts``). A ``*`` segment
matches any one key (``recall.channels.*.slots``). A model's own copy of a shared block
(``model.triggers`` of the recipes, ``model.graph``...) is checked by the shared block's entries
(:data:`ALIASES`). :func:`check_numeric_keys` walks a config and checks every leaf that has an
entry (interpolations are checked where they point), so ``model.cold_start.share=abc`` fails at
the start naming the key, not deep inside torch. ``tests/test_config_checks.py`` composes every
model and dataset config and fails when a numeric leaf, or a key whose YAML comment says
``# (int)`` / ``# (float)``, has no entry: a new key cannot slip through unchecked.

Added keys. Hydra suggests ``+key=value`` for a key the config does not have; a misspelt
``+model.optim.learning_rate=0.01`` would then run at the default learning rate and be reported as
its own configuration. The rule (:func:`check_added_keys`): an added key is accepted only where a
callable takes it as a keyword argument, which is how code reads a key the YAML files do not list:

* a key of a node with ``_target_``, when the target's signature has a parameter of that name,
  or ``**kwargs`` and the table below lists the key (``+dataset.loader.arrival_share=0.5``:
  ``generate_home_feed(**overrides)`` takes :class:`~graphrecall.data.synthetic.SyntheticConfig`'s
  fields, listed in :data:`SYNTHETIC_LOADER_KEYS`);
* a key of a node whose keys are passed on as keyword arguments (:data:`KEYWORD_NODES`: the
  ``trainer`` block goes to ``pytorch_lightning.Trainer``, so ``+trainer.num_nodes=2`` works).

Anything else is refused, naming the key and the nearest existing key. When the parameter has a
plain type annotation (int, float, bool, str, optionally None), the added value must have it.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONF = Path(__file__).resolve().parents[2] / "conf"
CHANNEL_LIST_LENGTH = 50  # channels' slots are chosen on validation recall@50, within a list of 50


class ConfigError(ValueError):
    """A config value outside its accepted range, of the wrong type, or a key no code reads (the
    message names the key)."""


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    lo = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
    hi = "+inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
    return f"{lo}, {hi}"


@dataclass(frozen=True)
class Number:
    """A number of ``kind`` (int: whole numbers only; float: any finite number, ints included) in
    ``[low, high]`` (an open end where ``low_open`` / ``high_open``).

    Attributes:
        null: null is accepted (a setting that is off, or all).
        words: words accepted instead of a number (``auto``, ``median``).
        grid: a non-empty list of such numbers is accepted too (a grid chosen on validation; null
            inside it where ``null``).
    """

    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    null: bool = False
    words: tuple[str, ...] = ()
    grid: bool = False

    def describe(self) -> str:
        what = "a whole number" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            what += f" in {_interval(self.low, self.high, self.low_open, self.high_open)}"
        elif self.low is not None:
            what += f" {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            what += f" {'<' if self.high_open else '<='} {self.high:g}"
        what += "".join(f" or {w}" for w in self.words) + (" or null" if self.null else "")
        return what + (", or a non-empty list of them (a grid chosen on validation)" if self.grid else "")

    def check(self, key: str, value: Any) -> None:
        """Raise :class:`ConfigError` naming ``key`` unless ``value`` is accepted."""
        if isinstance(value, (list, tuple)):
            if not self.grid or not value:
                raise ConfigError(f"{key}={value!r}: expected {self.describe()}")
            for v in value:
                self.check_scalar(key, v, value)
            return
        if isinstance(value, str) and value in self.words:
            return
        self.check_scalar(key, value, value)

    def check_scalar(self, key: str, v: Any, shown: Any) -> None:
        """One number (``shown``: the whole value, for the message)."""
        if v is None:
            if self.null:
                return
            raise ConfigError(f"{key}={_show(shown)}: expected {self.describe()}")
        kinds = (int,) if self.kind is int else (int, float)
        if isinstance(v, bool) or not isinstance(v, kinds) or (isinstance(v, float) and not math.isfinite(v)):
            raise ConfigError(f"{key}={_show(shown)}: expected {self.describe()}")
        x = float(v)
        if (self.low is not None and (x < self.low or (self.low_open and x == self.low))) or \
                (self.high is not None and (x > self.high or (self.high_open and x == self.high))):
            raise ConfigError(f"{key}={_show(shown)} is out of range: expected a value in "
                              f"{_interval(self.low, self.high, self.low_open, self.high_open)}")


@dataclass(frozen=True)
class NumberList:
    """A list of numbers, each an ``item``; ``length`` of them when given (else at least one),
    strictly ``increasing`` or ``distinct`` where said; null where ``null``."""

    item: Number
    length: int | None = None
    increasing: bool = False
    distinct: bool = False
    null: bool = False

    def describe(self) -> str:
        size = f"a list of {self.length}" if self.length else "a non-empty list of"
        order = " strictly increasing" if self.increasing else (" distinct" if self.distinct else "")
        what = self.item.describe().replace("a whole number", "whole numbers").replace("a number", "numbers")
        return f"{size}{order} {what}" + (" (or null)" if self.null else "")

    def check(self, key: str, value: Any) -> None:
        if value is None and self.null:
            return
        if not isinstance(value, (list, tuple)) or not value or (self.length and len(value) != self.length):
            raise ConfigError(f"{key}={_show(value)}: expected {self.describe()}")
        for v in value:
            self.item.check_scalar(key, v, value)
        if self.increasing and any(b <= a for a, b in zip(value, value[1:])):
            raise ConfigError(f"{key}={_show(value)}: expected {self.describe()}")
        if self.distinct and len(set(value)) != len(value):
            raise ConfigError(f"{key}={_show(value)}: expected {self.describe()}")


@dataclass(frozen=True)
class Choices:
    """A non-empty list of values of any type (a categorical search parameter's ``choices``)."""

    def describe(self) -> str:
        return "a non-empty list of values"

    def check(self, key: str, value: Any) -> None:
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{key}={_show(value)}: expected {self.describe()}")


Spec = Number | NumberList | Choices


def _show(value: Any) -> str:
    return "null" if value is None else repr(value)


def Int(low: int | None = None, high: int | None = None, **kw: Any) -> Number:  # noqa: N802 - a table constructor
    return Number(int, low, high, **kw)


def Float(low: float | None = None, high: float | None = None, **kw: Any) -> Number:  # noqa: N802
    return Number(float, low, high, **kw)


POSITIVE = Float(0, low_open=True)       # > 0
NON_NEGATIVE = Float(0)                 # >= 0
SHARE = Float(0, 1)                     # [0, 1]
DROPOUT = Float(0, 1, high_open=True)   # [0, 1)
THRESHOLD = Float(0, 1, high_open=True)  # a co-click weight threshold: w > tau keeps nothing at tau >= 1
DAYS = Float(0, low_open=True)
DAYS_OR_ALL = Float(0, low_open=True, null=True)
RANK_BAND = NumberList(Int(0), length=2, increasing=True)  # [low, high) ranks of the current model


# conf/train.yaml and every group it composes (model, dataset, graph, aggregator, loss, trainer, debias, experiment)
TRAIN_KEYS: dict[str, Spec] = {
    "seed": Int(0),
    "threads": Int(1, null=True),
    # recall: online trigger selection and channels
    "recall.max_triggers": Int(1),  # 0 triggers: every slot back-fill, a model that never serves a candidate
    "recall.decay": SHARE,
    "recall.share": SHARE,
    "recall.popularity_beta": Float(grid=True),
    "recall.min_score": Float(null=True, grid=True),
    "recall.prior_weight": Float(0, 1, null=True, grid=True),  # lambda of the merged score; null: off
    "recall.channels.*.slots": Int(0, CHANNEL_LIST_LENGTH, words=("auto",), grid=True),
    "recall.channels.*.min_clicks": Int(0),
    "recall.channels.*.max_clicks": Int(0),
    "recall.channels.*.pool_size": Int(1),
    # evaluation
    "eval.ks": NumberList(Int(1), distinct=True),
    "eval.low_activity_max": Int(1),
    "eval.content_bins": NumberList(Int(0), increasing=True),
    "eval.bootstrap.num_resamples": Int(1),
    "eval.bootstrap.confidence": Float(0, 1, low_open=True, high_open=True),
    "eval.interest_only.clicks_per_user": Int(1),
    "eval.channel_grid_auto_max": Int(0, 50),
    "eval.export.k": Int(1),
    # graph: the co-click build (conf/graph)
    "graph.session_days": DAYS,
    "graph.tau": THRESHOLD,
    "graph.min_count": Int(1),
    "graph.top_k": Int(0, null=True),  # 0 or null: no top-k cut
    "graph.spark.shuffle_partitions": Int(1),
    # dataset
    "dataset.graph_tau": THRESHOLD,
    "dataset.groups.graph_tau": THRESHOLD,
    "dataset.groups.bins.*": NumberList(Float(), increasing=True),
    "dataset.loader.seed": Int(0),
    "dataset.loader.min_rating": Int(1, 5),
    "dataset.split.temporal.window_days": DAYS_OR_ALL,
    "dataset.split.temporal.test_days": DAYS_OR_ALL,
    "dataset.split.temporal.val_days": DAYS,
    "dataset.split.temporal.cut_quantile": Float(0, 1, low_open=True, high_open=True, null=True),
    "dataset.split.rolling.windows": Int(1),
    "dataset.split.rolling.index": Int(0),  # < windows: checked by the split (data/splits.py)
    "dataset.split.rolling.spacing_days": DAYS_OR_ALL,
    "dataset.split.rolling.first_cut_quantile": Float(0, 1, low_open=True, high_open=True, null=True),
    "dataset.split.rolling.spacing_quantile": Float(0, 1, low_open=True, null=True),
    "dataset.split.rolling.window_days": DAYS_OR_ALL,
    "dataset.split.rolling.val_days": DAYS,
    "dataset.split.intervened.intervened_fraction": Float(0, 1, low_open=True),
    "dataset.split.intervened.train_share": Float(0, 1, low_open=True, high_open=True),
    "dataset.split.intervened.val_share": Float(0, 1, low_open=True, high_open=True),
    "dataset.split.intervened.popularity_power": NON_NEGATIVE,
    # trainer (Lightning Trainer arguments plus early stopping)
    "trainer.max_epochs": Int(1),
    "trainer.devices": Int(-1, words=("auto",), grid=True),
    "trainer.num_nodes": Int(1),
    "trainer.check_val_every_n_epoch": Int(1, null=True),
    "trainer.num_sanity_val_steps": Int(-1),
    "trainer.log_every_n_steps": Int(1),
    "trainer.early_stopping_patience": Int(0),
    "aggregator.heads": Int(1),
    "logger.sample_users": Int(0),
    "logger.sample_top": Int(1),
    # model: shared by several models
    "model.seed": Int(0),
    "model.pool_size": Int(1),
    "model.refit_epochs": Int(1, null=True),  # null: the val-selected epoch count
    "model.backfill_recent_days": DAYS_OR_ALL,
    "model.recent_days": DAYS_OR_ALL,
    "model.popularity_beta": Float(grid=True),
    "model.optim.lr": POSITIVE,
    "model.optim.weight_decay": NON_NEGATIVE,
    "model.optim.batch_size": Int(1),
    "model.optim.temperature": POSITIVE,
    "model.optim.lambda_reg": NON_NEGATIVE,
    "model.optim.plateau.factor": Float(0, 1, low_open=True, high_open=True),
    "model.optim.plateau.patience": Int(0),
    "model.optim.plateau.min_lr": NON_NEGATIVE,
    # sage / m2grl
    "model.next_click.horizon_days": DAYS,
    "model.next_click.context": Int(1),
    "model.next_click.num_uniform": Int(0),
    "model.next_click.half_life_days": DAYS_OR_ALL,
    "model.popularity.hidden_dim": Int(1),
    "model.popularity.pool_weight": Float(0, grid=True),
    "model.popularity.pool_weight_min_coverage": Float(0, 1, null=True),
    "model.cold_start.share": SHARE,
    "model.encoder.field_dim": Int(1),
    "model.encoder.hidden_dim": Int(1),
    "model.encoder.num_layers": Int(1),
    "model.encoder.dropout": DROPOUT,
    "model.sampling.neighbors": Int(1),
    "model.sampling.num_negatives": Int(1),
    "model.sampling.hard_negatives.share": SHARE,
    "model.sampling.hard_negatives.ranks": RANK_BAND,
    "model.sampling.hard_negatives.start_epoch": Int(0),
    "model.sampling.fanouts": NumberList(Int(1), null=True),  # one per layer: checked with the layers
    "model.view_neighbors": Int(1),
    "model.relation_dim": Int(1),
    "model.weighting_lr": Float(0, low_open=True, null=True),
    "model.task_weights.*": NON_NEGATIVE,
    "model.alignment.temperature": POSITIVE,
    "model.alignment.weight": NON_NEGATIVE,
    "model.alignment.ramp_epochs": Int(0),
    "model.intra.min_values": Int(0),
    "model.view_batch": Int(1),
    "model.diversity.quota": SHARE,
    "model.diversity.neighbor_values": Int(0),
    # dice / ips_bpr
    "model.groups.tau": THRESHOLD,
    "model.dice.field_dim": Int(1),
    "model.dice.embedding_dim": Int(1),
    "model.dice.num_layers": Int(0),
    "model.dice.num_negatives": Int(1),
    "model.dice.margin": NON_NEGATIVE,
    "model.dice.pool": Int(1),
    "model.dice.a_int": NON_NEGATIVE,
    "model.dice.a_con": NON_NEGATIVE,
    "model.dice.b": NON_NEGATIVE,
    "model.dice.decay": Float(0, 1, low_open=True),
    "model.dice.dis_sample": Int(2, null=True),
    "model.dice.dropout": DROPOUT,
    "model.dice.ips_cap": Float(0, low_open=True, null=True, words=("median",)),
    "model.dice.hard_negatives.share": SHARE,
    "model.dice.hard_negatives.ranks": RANK_BAND,
    "model.figure.num_points": Int(1),
    # mf / lightgcn
    "model.embedding_dim": Int(1),
    "model.num_layers": Int(0),  # LightGCN: 0 layers is MF on the same loss
    "model.num_negatives": Int(1),
    "model.init_std": POSITIVE,
}

# a model's own copy of a shared block is checked by the shared block's entries
ALIASES: dict[str, str] = {
    "model.triggers": "recall",
    "model.graph": "graph",
    "model.trainer": "trainer",
    "model.aggregator": "aggregator",
    "model.logger": "logger",
    "model.groups.spark": "graph.spark",
    "model.groups.graph_tau": "dataset.groups.graph_tau",
}

# keyword overrides of generate_home_feed (conf/dataset/synthetic.yaml's loader): SyntheticConfig's fields
SYNTHETIC_LOADER_KEYS: dict[str, Spec] = {
    **{f"dataset.loader.{k}": Int(1) for k in (
        "num_users", "num_contents", "num_clicks", "num_days", "num_styles", "num_spaces", "num_designers",
        "num_categories", "num_products", "max_products", "dim", "low_max_clicks", "max_session_length",
        "num_candidates")},
    "dataset.loader.start_timestamp": Int(0),
    **{f"dataset.loader.{k}": NON_NEGATIVE for k in (
        "content_noise", "user_noise", "popularity_sigma", "promotion_boost", "interest_scale", "intent_bonus",
        "gamma", "fresh_boost")},
    **{f"dataset.loader.{k}": SHARE for k in ("promoted_share", "uniform_exposure", "repeat_prob")},
    **{f"dataset.loader.{k}": POSITIVE for k in ("high_activity_ratio", "intent_temperature", "fresh_days")},
    "dataset.loader.mean_session_length": Float(1),
    "dataset.loader.arrival_share": Float(0, 1, high_open=True),
    "dataset.loader.activity_shares": NumberList(NON_NEGATIVE, length=4),
}
TRAIN_KEYS.update(SYNTHETIC_LOADER_KEYS)

# conf/evaluate.yaml (with the names before issue 24, still read: ks, bootstrap.*, export.k)
EVALUATE_KEYS: dict[str, Spec] = {
    "threads": Int(1, null=True),
    "eval.ks": TRAIN_KEYS["eval.ks"],
    "eval.bootstrap.num_resamples": Int(1),
    "eval.bootstrap.confidence": TRAIN_KEYS["eval.bootstrap.confidence"],
    "eval.export.k": Int(1),
    "ks": NumberList(Int(1), distinct=True, null=True),
    "bootstrap.num_resamples": Int(1, null=True),
    "bootstrap.confidence": Float(0, 1, low_open=True, high_open=True, null=True),
    "export.k": Int(1, null=True),
}

# conf/hparams_search/*.yaml (graphrecall.search's study config)
STUDY_KEYS: dict[str, Spec] = {
    "n_trials": Int(1),
    "max_failures": Int(1),
    "workers": Int(1),
    "worker_rank": Int(0, null=True),
    "heartbeat_interval": Int(1),
    "grace_period": Int(1),
    "poll_seconds": POSITIVE,
    "sampler.seed": Int(0, null=True),
    "sampler.n_startup_trials": Int(0),
    "sampler.n_ei_candidates": Int(1),
    "pruner.n_startup_trials": Int(0),
    "pruner.n_warmup_steps": Int(0),
    "pruner.interval_steps": Int(1),
    "pruner.n_min_trials": Int(1),
    "pruner.lower": Float(null=True),
    "pruner.upper": Float(null=True),
    "params.**.low": Float(),  # a param's path has dots: params.model.optim.lr.low
    "params.**.high": Float(),
    "params.**.step": Float(0, low_open=True, null=True),
    "params.**.choices": Choices(),
    "rerun_seeds": NumberList(Int(0), distinct=True, null=True),
}
PARAM_FIELDS = ("type", "low", "high", "log", "step", "choices")

# nodes without _target_ whose keys the code passes on as keyword arguments of a callable
KEYWORD_NODES: dict[str, str] = {"trainer": "pytorch_lightning.Trainer"}


# ------------------------------------------------------------------------------- walking a config


def _is_config(node: Any) -> bool:
    from omegaconf import OmegaConf

    return OmegaConf.is_config(node)


def config_items(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``(dotted key, value)`` of a config (DictConfig or dict), mappings included, in
    order, lists as plain lists. Interpolated and missing (``???``) values are left out: an
    interpolation is checked where it points."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, DictConfig):
        keys = list(node.keys())
    elif isinstance(node, Mapping):
        keys = list(node)
    else:
        return
    for k in keys:
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(node, DictConfig):
            if OmegaConf.is_interpolation(node, k) or OmegaConf.is_missing(node, k):
                continue
            value = node[k]
            if isinstance(value, ListConfig):
                try:
                    value = OmegaConf.to_container(value, resolve=True)
                except Exception:  # noqa: BLE001 - an unresolvable item: left to the code that reads it
                    continue
        else:
            value = node[k]
        yield key, value
        if isinstance(value, (Mapping, DictConfig)):
            yield from config_items(value, key)


def _canonical(key: str) -> str:
    for alias, target in ALIASES.items():
        if key == alias or key.startswith(alias + "."):
            return target + key[len(alias):]
    return key


def spec_for(key: str, table: Mapping[str, Spec]) -> Spec | None:
    """The entry of ``table`` for a dotted ``key`` (after :data:`ALIASES`; in a pattern ``*``
    matches one segment, ``**`` one or more: a study's ``params`` are keyed by dotted paths)."""
    key = _canonical(key)
    if key in table:
        return table[key]
    parts = key.split(".")
    for pattern, spec in table.items():
        if "*" in pattern and _matches(pattern.split("."), parts):
            return spec
    return None


def _matches(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_matches(pattern[1:], parts[i:]) for i in range(1, len(parts) + 1))
    return bool(parts) and pattern[0] in ("*", parts[0]) and _matches(pattern[1:], parts[1:])


def check_numeric_keys(cfg: Any, table: Mapping[str, Spec] = TRAIN_KEYS, prefix: str = "") -> None:
    """Check the type and range of every key of ``cfg`` that ``table`` lists; the first bad one
    raises :class:`ConfigError` naming it (``prefix`` + its key: ``hparams_search.workers``)."""
    for key, value in config_items(cfg):
        if key.split(".")[0] == "hydra":
            continue
        spec = spec_for(key, table)
        if spec is None:
            continue
        if isinstance(value, Mapping) or _is_config(value):
            raise ConfigError(f"{prefix}{key}={value}: expected {spec.describe()}")
        spec.check(prefix + key, value)


# ------------------------------------------------------------------------------- added keys (+key)


@dataclass(frozen=True)
class AddedKey:
    """One key that an override adds to the composed config (``+key=value``, or ``++key=value`` for
    a key the config did not have)."""

    key: str
    text: str  # the override as given


def _parse(overrides: Sequence[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


def _is_group(name: str, config_dir: Path) -> bool:
    return (config_dir / name.replace(".", "/")).is_dir()


def added_keys(overrides: Sequence[str], config_name: str = "train", config_dir: Path = CONF) -> list[AddedKey]:
    """The keys that ``overrides`` add to ``config_name`` (config groups such as ``+experiment=x``
    are left to Hydra, which knows their options). ``++key`` counts where the config composed
    without the adding overrides lacks the key."""
    parsed = [o for o in _parse(overrides) if o.package is None or o.package == ""]
    adds = [o for o in parsed if (o.is_add() or o.is_force_add()) and not _is_group(o.key_or_group, config_dir)]
    base = None
    if any(o.is_force_add() for o in adds):
        try:
            base = _compose(config_name, [o.input_line for o in parsed if o not in adds], config_dir)
        except Exception:  # noqa: BLE001 - no config without them (one builds on another): ++ is taken as given
            adds = [o for o in adds if not o.is_force_add()]
    return [AddedKey(o.key_or_group, o.input_line) for o in adds
            if not (o.is_force_add() and _has_key(base, o.key_or_group))]  # ++ on an existing key: an override


def _has_key(cfg: Any, key: str) -> bool:
    from omegaconf import OmegaConf

    node = cfg
    for part in key.split("."):
        if node is None or not (isinstance(node, Mapping) or OmegaConf.is_dict(node)) or part not in node:
            return False
        node = node._get_node(part) if OmegaConf.is_dict(node) else node[part]
    return True


def _compose(config_name: str, overrides: list[str], config_dir: Path) -> Any:
    """The config composed from ``overrides`` (inside a running Hydra app, with its search path)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name, overrides=overrides)
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(config_name, overrides=overrides)


def hydra_task_overrides(config_name: str) -> list[str]:
    """The command line's task overrides of the running Hydra app when it composed ``config_name``
    (``[]`` outside one, or inside another app: evaluate.py checks a train run's config)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    hc = HydraConfig.get()
    if hc.job.get("config_name") != config_name:
        return []
    return list(hc.overrides.task)


@functools.lru_cache(maxsize=64)
def _signature(target: str) -> inspect.Signature | None:
    from hydra.utils import get_method

    try:
        return inspect.signature(get_method(target))
    except Exception:  # noqa: BLE001 - a target that does not import: instantiate says why
        return None


@functools.lru_cache(maxsize=64)
def _hints(target: str) -> dict[str, Any]:
    from hydra.utils import get_method

    try:
        fn = get_method(target)
        return typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: no type check
        return {}


def reading_callable(cfg: Any, parent: str) -> str | None:
    """The callable that receives the keys of node ``parent`` as keyword arguments: its
    ``_target_``, or :data:`KEYWORD_NODES`' entry; None when no callable does."""
    from omegaconf import OmegaConf

    node = OmegaConf.select(cfg, parent) if parent else cfg
    if node is not None and (isinstance(node, Mapping) or OmegaConf.is_dict(node)) and "_target_" in node:
        return str(node["_target_"])
    return KEYWORD_NODES.get(parent)


def _takes(sig: inspect.Signature, name: str) -> str | None:
    """``"named"`` when ``sig`` has a keyword parameter ``name``, ``"kwargs"`` when only its
    ``**kwargs`` would take it, None when nothing does."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    p = sig.parameters.get(name)
    if p is not None and p.kind in kinds:
        return "named"
    return "kwargs" if _has_var_keyword(sig) else None


def _has_var_keyword(sig: inspect.Signature) -> bool:
    return any(q.kind is inspect.Parameter.VAR_KEYWORD for q in sig.parameters.values())


def _plain_types(annotation: Any) -> tuple[type, ...] | None:
    """``(int,)``, ``(float, NoneType)``... for a plain annotation; None for anything else."""
    simple = (int, float, bool, str, type(None))
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    args = typing.get_args(annotation) if union else (annotation,)
    if not args or not all(a in simple for a in args):
        return None
    return tuple(args)


def _type_matches(value: Any, accepted: tuple[type, ...]) -> bool:
    if value is None:
        return type(None) in accepted
    if isinstance(value, bool):
        return bool in accepted
    if isinstance(value, int):
        return int in accepted or float in accepted
    return any(isinstance(value, t) for t in accepted if t is not type(None))


def known_keys(cfg: Any, skip: Sequence[str] = ()) -> list[str]:
    """Every dotted key of ``cfg`` (interpolations included), but ``skip`` and what lies under it."""
    from omegaconf import DictConfig

    out = []

    def walk(node: Any, prefix: str) -> None:
        for k in (node.keys() if isinstance(node, DictConfig) else node):
            key = f"{prefix}.{k}" if prefix else str(k)
            if key in skip or key == "hydra":
                continue
            out.append(key)
            child = node._get_node(k) if isinstance(node, DictConfig) else node[k]
            if isinstance(child, (DictConfig, Mapping)) and not (isinstance(node, DictConfig) and
                                                                  child._is_interpolation()):
                walk(child, key)

    walk(cfg, "")
    return out


def check_added_keys(cfg: Any, overrides: Sequence[str], config_name: str = "train",
                     config_dir: Path = CONF) -> None:
    """Refuse every key that ``overrides`` add to ``cfg`` (composed from them) unless a callable
    takes it (see the module docstring); the message names the key and the nearest known one.

    A callable that takes any keyword (``**kwargs``) takes the keys the schema table lists for
    its node (``dataset.loader.arrival_share`` for ``generate_home_feed(**overrides)``), so that a
    misspelt one is refused here, before any work. Keys that ``cfg`` does not hold are skipped:
    ``cfg`` was not composed from those overrides.
    """
    table = EVALUATE_KEYS if config_name == "evaluate" else TRAIN_KEYS
    for added in added_keys(overrides, config_name, config_dir):
        if not _has_key(cfg, added.key):
            continue
        parent, _, name = added.key.rpartition(".")
        target = reading_callable(cfg, parent)
        sig = _signature(target) if target else None
        how = _takes(sig, name) if sig is not None else None
        if how == "kwargs" and spec_for(added.key, table) is None:
            how = None
        if how is None:
            raise ConfigError(_refusal(cfg, added, parent, target, table))
        accepted = _plain_types(_hints(target).get(name)) if how == "named" else None
        value = _plain(_select(cfg, added.key))
        if accepted is not None and not _type_matches(value, accepted):
            names = " | ".join("null" if t is type(None) else t.__name__ for t in accepted)
            raise ConfigError(f"{added.text}: {target.rsplit('.', 1)[-1]}'s {name} takes {names}, got {value!r}")


def _select(cfg: Any, key: str) -> Any:
    """``cfg``'s value at a dotted ``key`` (DictConfig or nested dicts)."""
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key) if _is_config(cfg) else functools.reduce(lambda n, p: n[p], key.split("."), cfg)


def _plain(value: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _refusal(cfg: Any, added: AddedKey, parent: str, target: str | None, table: Mapping[str, Spec]) -> str:
    """The message: the key, why nothing reads it, the nearest key (its node's keys first; with a
    ``**kwargs`` target, the keys the table lists for the node count too)."""
    sig = _signature(target) if target else None
    documented = [k for k in table if k.rpartition(".")[0] == parent and "*" not in k] \
        if sig is not None and _has_var_keyword(sig) else []
    candidates = sorted(set(known_keys(cfg, skip=[added.key])) | set(documented))
    near_keys = [k for k in candidates if k.rpartition(".")[0] == parent]
    near = difflib.get_close_matches(added.key, near_keys, n=1, cutoff=0.6) or \
        difflib.get_close_matches(added.key, candidates, n=1, cutoff=0.6)
    siblings = sorted(k.rpartition(".")[2] for k in near_keys)
    where = parent or "the top level"
    if target:
        why = f"{target.rsplit('.', 1)[-1]}, which receives {where}, takes no '{added.key.rpartition('.')[2]}'"
    else:
        why = f"{where} is not passed to any callable as keyword arguments"
    hint = f" Did you mean {near[0]}?" if near else ""
    known = f" (keys under {where}: {siblings})" if siblings else ""
    return (f"{added.text}: no code reads {added.key} ({why}), so the run would ignore it.{hint}{known} An added "
            "key (+) is accepted only where a _target_'s signature or the Lightning Trainer (trainer.*) takes it.")
