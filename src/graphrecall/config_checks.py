"""Checks of a run's config before any work: out-of-range settings and fold orders that would
otherwise give a silently wrong result (an untrained model reported, every slot back-filled, a
model selected on the test fold...), values of the wrong type, and added keys (``+key``) that no
code reads. Each error names the config key, the value and what was expected.

The type and range of every numeric key come from the tables of :mod:`graphrecall.config_schema`;
the checks here relate keys to each other (fan-outs per layer, channel slots within a list, a
side-info score with side-info fields...) or reach outside the config (Spark settings, the cache
folder).

Where they run: :func:`check_train_config` first thing in ``train.train`` (train.py, the Optuna
trials, evaluate.py on a run's recorded config); :func:`check_evaluate_config` in evaluate.py;
:func:`check_search_config` for a study config (``graphrecall.search``). Under a Hydra app the
command line's added keys are read from Hydra; a config composed in Python (tests, Optuna trials)
passes its override list (``check_train_config(cfg, overrides)``, or
:func:`graphrecall.config_schema.check_added_keys`).
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Sequence
from typing import Any

from graphrecall.config_schema import (
    CHANNEL_LIST_LENGTH,
    EVALUATE_KEYS,
    PARAM_FIELDS,
    STUDY_KEYS,
    TRAIN_KEYS,
    ConfigError,
    check_added_keys,
    check_numeric_keys,
    hydra_task_overrides,
)
from graphrecall.metrics.content_slices import check_click_bins
from graphrecall.recall.candidates import check_candidate_rule

__all__ = ["ConfigError", "check_evaluate_config", "check_search_config", "check_train_config"]

FOLDS = ("val", "test")
SELECTION_K = 50  # model selection, early stopping, serving grids, tables and optimized_metric read recall@50


def _get(cfg: Any, dotted: str) -> Any:
    """``cfg[a][b]...`` for ``a.b...`` (dicts or DictConfigs); None when a level is absent or null."""
    node = cfg
    for part in dotted.split("."):
        if not hasattr(node, "get"):
            return None
        node = node.get(part)
    return node


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    return float(value)


def check_range(key: str, value: Any, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, allow_none: bool = False) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``value`` lies in the given interval."""
    if value is None:
        if allow_none:
            return
        raise ConfigError(f"{key} must be set, got null")
    x = _number(key, value)
    bad = (low is not None and (x < low or (low_open and x == low))) or \
          (high is not None and (x > high or (high_open and x == high)))
    if bad:
        lo = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "+inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
        raise ConfigError(f"{key}={value!r} is out of range: expected a value in {lo}, {hi}")


def is_trainable(model_cfg: Any) -> bool:
    """Models trained by Lightning (they carry a ``trainer`` block) select on the first fold."""
    return _get(model_cfg, "trainer") is not None


def check_folds(folds: Any, trainable: bool) -> None:
    """``eval.folds`` names known folds once each; trainable models need ``val`` first (they train
    and select on the first fold, which must never be the test fold)."""
    folds = list(folds or [])
    if not folds:
        raise ConfigError("eval.folds is empty: expected [val, test] (or a subset)")
    unknown = [f for f in folds if f not in FOLDS]
    if unknown or len(set(folds)) != len(folds):
        raise ConfigError(f"eval.folds={folds}: expected distinct names out of {list(FOLDS)}")
    if trainable and folds[0] != "val":
        raise ConfigError(
            f"eval.folds={folds}: trainable models train and select on the first fold, so it must be val "
            "(expected [val, test] or [val]); selecting on test would report a test score that was optimised"
        )


def check_thread_count(cfg: Any) -> None:
    """``threads``: a whole number >= 1 or null (:mod:`graphrecall.determinism`)."""
    from graphrecall.determinism import check_threads

    try:
        check_threads(_get(cfg, "threads"))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def check_train_config(cfg: Any, overrides: Sequence[str] | None = None) -> None:
    """Validate a train.py config (``conf/train.yaml`` composed); raises :class:`ConfigError`.

    Args:
        cfg: the composed config (DictConfig or nested dicts).
        overrides: the overrides ``cfg`` was composed from, whose added keys (``+key``) are checked;
            None: the running Hydra app's command line when it composed train.yaml (none otherwise).
    """
    model = _get(cfg, "model") or {}
    trainable = is_trainable(model)
    check_thread_count(cfg)
    check_folds(_get(cfg, "eval.folds"), trainable)
    check_added_keys(cfg, hydra_task_overrides("train") if overrides is None else overrides, "train")
    graph = _get(model, "graph")  # the co-click graph of the models that build one
    if graph is not None:  # named with its source: graph.tau is set per dataset
        check_range("graph.top_k", _get(graph, "top_k"), low=0, allow_none=True)
        check_range("graph.tau (dataset.graph_tau)", _get(graph, "tau"), low=0, high=1, high_open=True,
                    allow_none=True)
    check_numeric_keys(cfg, TRAIN_KEYS)  # the type and range of every numeric key
    check_selection_ks("eval.ks", _get(cfg, "eval.ks"))
    if _get(model, "candidates") is not None:
        try:
            check_candidate_rule(_get(model, "candidates"), "model.candidates")
        except ValueError as e:
            raise ConfigError(str(e)) from None
    check_split(_get(cfg, "dataset.split"))
    check_graph_build(cfg)
    check_fanouts(model)
    check_channels(cfg, model)
    check_min_score(cfg, model)
    check_prior_weight(cfg, model)
    if _get(cfg, "eval.content_bins") is not None:
        try:
            check_click_bins(_get(cfg, "eval.content_bins"), "eval.content_bins")
        except ValueError as e:
            raise ConfigError(str(e)) from None
    check_cache(_get(cfg, "cache_dir"))


def check_selection_ks(key: str, ks: Any) -> None:
    """``eval.ks`` (types and range: the table) must hold 50: model selection (checkpoints, early
    stopping), the serving grids, the printed tables and ``optimized_metric`` read recall@50."""
    if ks is not None and SELECTION_K not in list(ks):
        raise ConfigError(f"{key}={list(ks)}: expected a list that includes {SELECTION_K} (model selection, early "
                          f"stopping, the serving grids, the tables and optimized_metric read recall@{SELECTION_K}); "
                          f"e.g. [20, {SELECTION_K}]")


def check_graph_build(cfg: Any) -> None:
    """The co-click build's settings beyond their ranges: a session of at least one second (session
    ids are whole seconds // session length), a known weighting and backend, and Spark settings
    Spark takes (checked before any Spark starts)."""
    from graphrecall.graphs.coclick import DAY_SECONDS, Weighting
    from graphrecall.graphs.spark import check_spark_settings
    from graphrecall.graphs.views import BACKENDS

    graph = _get(cfg, "graph")
    if graph is None:
        return
    days = _get(graph, "session_days")
    if days is not None and int(days * DAY_SECONDS) < 1:
        raise ConfigError(f"graph.session_days={days!r}: expected a session of at least one second "
                          f"({1 / DAY_SECONDS:.3g} days): sessions are counted in whole seconds")
    weighting, weightings = _get(graph, "weighting"), typing.get_args(Weighting)
    if weighting is not None and weighting not in weightings:
        raise ConfigError(f"graph.weighting={weighting!r}: expected one of {' | '.join(weightings)}")
    backend = _get(graph, "backend")
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"graph.backend={backend!r}: expected one of {' | '.join(BACKENDS)}")
    if _get(graph, "spark") is not None:
        try:
            check_spark_settings(_plain(_get(graph, "spark")), "graph.spark")
        except ValueError as e:
            raise ConfigError(str(e)) from None


def check_fanouts(model: Any) -> None:
    """``model.sampling.fanouts``: null, or one whole number >= 1 per aggregation layer, whatever
    the batching (full-graph passes ignore them, so a config that runs small would fail large)."""
    fanouts = _plain(_get(model, "sampling.fanouts"))
    layers = _get(model, "encoder.num_layers")
    if fanouts is None or layers is None:
        return
    if len(fanouts) != int(layers):
        raise ConfigError(f"model.sampling.fanouts={fanouts}: expected one whole number >= 1 per aggregation layer "
                          f"(model.encoder.num_layers={layers}), e.g. {[50, 10, 5][:int(layers)]}, or null (all k)")


def check_cache(cache_dir: Any) -> None:
    """``cache_dir``: null (off) or a folder (created when missing), not a file."""
    from graphrecall.graphs.cache import check_cache_dir

    try:
        check_cache_dir(cache_dir)
    except NotADirectoryError as e:
        raise ConfigError(str(e)) from None


def check_channels(cfg: Any, model: Any) -> None:
    """``recall.channels``: every channel's settings (:func:`graphrecall.recall.channels.parse_channels`),
    and active channels only for the i2i models that serve them (their ``triggers`` block carries
    ``channels``); elsewhere a non-zero ``slots`` would be ignored. A ``side_info`` score needs an
    encoder with side-info fields; the channels' slots together (a grid: its largest value) fit in
    a list of 50, else the last channels would be cut without a word."""
    from omegaconf import OmegaConf

    from graphrecall.recall.channels import parse_channels

    raw = _get(cfg, "recall.channels")
    if raw is None:
        return
    if not isinstance(raw, dict):
        raw = OmegaConf.to_container(raw, resolve=True)
    try:
        channels = parse_channels(raw)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    active = [c.name for c in channels.values() if c.active]
    if active and _get(model, "triggers.channels") is None:
        raise ConfigError(f"recall.channels {active} have slots: the channels are served by the i2i models "
                          f"(coclick, sage, sage_next_click, m2grl); model '{_get(model, '_target_')}' would ignore them")
    side = [c.name for c in channels.values() if c.active and "side_info" in c.scores]
    if side and _get(model, "encoder") is None:
        raise ConfigError(f"recall.channels.{side[0]}.score=side_info scores by the GNN encoder's side-info vectors; "
                          f"model '{_get(model, '_target_')}' has no encoder (use pool or similarity)")
    if side:
        check_side_info_fields(cfg, model, side[0])
    fixed = {c.name: max(c.grid) for c in channels.values() if c.active and c.grid != "auto"}
    if sum(fixed.values()) > CHANNEL_LIST_LENGTH:
        raise ConfigError(f"recall.channels: the channels' slots {fixed} add up to {sum(fixed.values())} (a grid: its "
                          f"largest value), more than the {CHANNEL_LIST_LENGTH} slots of a list: the last channels "
                          f"would be cut without a word; expected a total <= {CHANNEL_LIST_LENGTH}")


def check_side_info_fields(cfg: Any, model: Any, channel: str) -> None:
    """A ``side_info`` score needs side-info fields in the encoder: with none (``model.encoder.fields=[]``,
    or a custom dataset whose ``dataset.loader.side_info`` is empty) every content's side-info
    vector is the same and the channel would rank its contents by nothing."""
    fields = _plain(_get(model, "encoder.fields"))
    if fields is not None and len(fields) == 0:
        source = "model.encoder.fields=[] gives the encoder no side-info field"
    elif fields is None and _get(cfg, "dataset.loader.side_info") is not None \
            and len(_plain(_get(cfg, "dataset.loader.side_info"))) == 0:
        source = "dataset.loader.side_info is empty: the contents have no side-info field"
    else:
        return
    raise ConfigError(f"recall.channels.{channel}.score=side_info: {source}, so every content's side-info vector "
                      "is the same and the channel would rank its contents by nothing; give the encoder fields "
                      "(model.encoder.fields) or use score=pool or similarity")


def _serving_grid(key: str, raw: Any, parse, expected: str) -> list:
    """A serving grid's values (``parse(raw)``: one value or a list, nulls allowed), each a number;
    else a :class:`ConfigError` naming ``key`` and what was ``expected``."""
    values = raw if isinstance(raw, (list, tuple)) else [raw]
    if any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))) for v in values):
        raise ConfigError(f"{key}={raw}: expected {expected}")
    try:
        return parse(raw)
    except ValueError as e:
        raise ConfigError(f"{key}: {e}") from None


def check_min_score(cfg: Any, model: Any) -> None:
    """``recall.min_score``: null, a number, or a list of numbers / nulls, and set (not null) only for
    the i2i models that serve from a pool (their ``triggers`` block); elsewhere it would be ignored.
    The model's own ``triggers.min_score`` (the presets' grids) is checked the same way."""
    from graphrecall.models.i2i import min_score_grid

    def grid_of(key: str, raw: Any) -> list[float]:
        return _serving_grid(key, raw, min_score_grid, "null, a number or a list of numbers / nulls")

    has_pool = _get(model, "triggers") is not None
    raw = _plain(_get(cfg, "recall.min_score"))
    grid = grid_of("recall.min_score", raw)
    if has_pool:
        grid_of("model.triggers.min_score", _plain(_get(model, "triggers.min_score")))
    if any(m != float("-inf") for m in grid) and not has_pool:
        raise ConfigError(f"recall.min_score={raw} cuts the i2i pool rows (coclick, sage, sage_next_click, m2grl); "
                          f"model '{_get(model, '_target_')}' has no pool and would ignore it")
    # a model config that sets its own serving grid (the recipes) would silently ignore recall.<key>
    for key, default in (("min_score", None), ("popularity_beta", 0.0), ("prior_weight", None)):
        given, own = _plain(_get(cfg, f"recall.{key}")), _plain(_get(model, f"triggers.{key}"))
        if has_pool and given != default and own != given:
            raise ConfigError(f"recall.{key}={given}: model '{_get(model, '_target_')}' sets its own "
                              f"triggers.{key}={own}; override model.triggers.{key} instead")


def check_prior_weight(cfg: Any, model: Any) -> None:
    """``recall.prior_weight`` (the merged score's lambda): null, a number in [0, 1], or a list of them
    / nulls, set (not null) only for the i2i models that serve from a pool (their ``triggers``
    block), in aggregate mode (quota serving ranks by neighbour rank, not by score), and on a pool
    of probabilities (``model.pool_score=logit`` inner products are on no scale to mix with the
    popularity distribution). The model's own ``triggers.prior_weight`` (the presets' grids) is
    checked the same way; :func:`check_min_score` refuses ``recall.prior_weight`` beside it."""
    from graphrecall.models.i2i import prior_weight_grid

    def grid_of(key: str, raw: Any) -> list[float | None]:
        return _serving_grid(key, raw, prior_weight_grid, "null, a number in [0, 1] or a list of them / nulls")

    has_pool = _get(model, "triggers") is not None
    raw = _plain(_get(cfg, "recall.prior_weight"))
    grid = grid_of("recall.prior_weight", raw)
    if any(w is not None for w in grid) and not has_pool:
        raise ConfigError(f"recall.prior_weight={raw} merges the i2i candidates with the back-fill (coclick, sage, "
                          f"sage_next_click, m2grl); model '{_get(model, '_target_')}' has no pool and would ignore it")
    if not has_pool:
        return
    key = "model.triggers.prior_weight"
    own = _plain(_get(model, "triggers.prior_weight"))
    if not any(w is not None for w in grid_of(key, own)):
        return
    mode = _get(model, "triggers.mode")
    if mode != "aggregate":
        raise ConfigError(f"{key}={own} (the merged score) needs recall.mode=aggregate, got {mode!r}: quota serving "
                          "ranks by neighbour rank, not by score")
    if _get(model, "pool_score") == "logit":
        raise ConfigError(f"{key}={own} mixes the pool's scores with the recent-popularity distribution: it needs "
                          "model.pool_score=probability (next-click probabilities), not logit")


def _plain(value: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def check_split(split: Any) -> None:
    """The intervened split's shares: a fraction of the pairs in (0, 1], train and val shares of it
    that leave room for a test share."""
    if _get(split, "kind") != "intervened":
        return
    key = "dataset.split.intervened"
    check_range(f"{key}.intervened_fraction", _get(split, "intervened.intervened_fraction"), low=0, high=1,
                low_open=True)
    train_share, val_share = _get(split, "intervened.train_share"), _get(split, "intervened.val_share")
    check_range(f"{key}.train_share", train_share, low=0, high=1, low_open=True, high_open=True)
    check_range(f"{key}.val_share", val_share, low=0, high=1, low_open=True, high_open=True)
    if float(train_share) + float(val_share) >= 1:
        raise ConfigError(f"{key}.train_share + val_share = {float(train_share) + float(val_share):g}: expected "
                          "below 1 (the rest of the drawn pairs is the test fold)")


def check_evaluate_config(cfg: Any, overrides: Sequence[str] | None = None) -> None:
    """Validate an evaluate.py config. A run directory holds the artefacts fitted on the test fold
    (their graph and back-fill include the validation targets), so only ``fold=test`` may score
    them; ``ckpt_path=`` re-embeds the requested fold and accepts ``fold=val``.

    Args:
        overrides: as :func:`check_train_config`'s (None: the running Hydra app's when it composed
            evaluate.yaml).
    """
    check_thread_count(cfg)
    check_added_keys(cfg, hydra_task_overrides("evaluate") if overrides is None else overrides, "evaluate")
    fold = _get(cfg, "fold")
    if fold not in FOLDS:
        raise ConfigError(f"fold={fold!r}: expected one of {list(FOLDS)}")
    if fold != "test" and not _get(cfg, "ckpt_path"):
        raise ConfigError(
            f"fold={fold} with run_dir=: the run's saved artefacts were fitted on the test fold (their graph and "
            "back-fill include the validation targets), so scoring them on val would be optimistic; use fold=test, "
            "or ckpt_path=<checkpoint> to re-embed the val fold"
        )
    if _get(cfg, "eval.export.enabled"):
        check_range("eval.export.k", _get(cfg, "eval.export.k"), low=0, low_open=True)
    check_numeric_keys(cfg, EVALUATE_KEYS)
    for key in ("eval.ks", "ks"):
        check_selection_ks(key, _plain(_get(cfg, key)))


def check_search_config(scfg: Any, fields: Sequence[str] | None = None) -> None:
    """Validate a study config (``conf/hparams_search/<study>.yaml`` with its defaults and the
    command line's ``hparams_search.<field>=`` merged): known fields only (a misspelt
    ``hparams_search.n_trails=50`` would be ignored), the type and range of every numeric field
    (``workers=abc`` fails here naming it, not in ``int()``), the sampler's and pruner's keys taken
    by the Optuna class they configure, and each ``params`` entry's fields.

    Args:
        fields: the fields a study config may have (default: ``graphrecall.search.DEFAULTS``).
    """
    if fields is None:
        from graphrecall.search import DEFAULTS

        fields = list(DEFAULTS)
    unknown = [k for k in (scfg or {}) if k not in fields]
    if unknown:
        near = difflib.get_close_matches(str(unknown[0]), list(fields), n=1)
        hint = f"; did you mean {near[0]}?" if near else ""
        raise ConfigError(f"hparams_search.{unknown[0]}: not a field of a study config, it would be ignored{hint} "
                          f"(fields: {sorted(fields)})")
    check_numeric_keys(scfg, STUDY_KEYS, prefix="hparams_search.")
    for block, classes in (("sampler", _SAMPLERS), ("pruner", _PRUNERS)):
        settings = _plain(_get(scfg, block)) or {}
        name = settings.get("name", "tpe" if block == "sampler" else "none")
        if name not in classes:
            raise ConfigError(f"hparams_search.{block}.name={name!r}: expected one of {' | '.join(classes)}")
        check_optuna_kwargs(f"hparams_search.{block}", classes[name], settings)
    for path, spec in (_plain(_get(scfg, "params")) or {}).items():
        key = f"hparams_search.params.{path}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{key}={spec!r}: expected {{type: float|int|categorical, low, high, log, step, "
                              "choices}")
        extra = sorted(set(spec) - set(PARAM_FIELDS))
        if extra:
            raise ConfigError(f"{key}: unknown field(s) {extra}; expected {list(PARAM_FIELDS)}")
        if spec.get("type") in ("float", "int"):
            low, high = spec.get("low"), spec.get("high")
            if low is None or high is None or not low < high:
                raise ConfigError(f"{key}: expected low < high, got low={low!r}, high={high!r}")
            whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high))
            if spec.get("type") == "int" and not whole:
                raise ConfigError(f"{key}: an int parameter needs whole numbers low and high, got {low!r}, {high!r}")
        elif spec.get("type") == "categorical":
            if not isinstance(spec.get("choices"), list) or not spec["choices"]:
                raise ConfigError(f"{key}.choices={spec.get('choices')!r}: expected a non-empty list")
        else:
            raise ConfigError(f"{key}.type={spec.get('type')!r}: expected float, int or categorical")


# the Optuna class each sampler / pruner name builds (graphrecall.search.make_sampler / make_pruner)
_SAMPLERS = {"tpe": "optuna.samplers.TPESampler", "random": "optuna.samplers.RandomSampler"}
_PRUNERS = {"none": None, "median": "optuna.pruners.MedianPruner", "threshold": "optuna.pruners.ThresholdPruner"}


def check_optuna_kwargs(key: str, target: str | None, settings: dict[str, Any]) -> None:
    """Every key of a sampler / pruner block but ``name`` (and ``monitor``, read by the pruning
    callback) is a keyword of the Optuna class it builds."""
    import inspect

    from hydra.utils import get_class

    given = [k for k in settings if k not in ("name", "monitor")]
    if not given:
        return
    if target is None:
        raise ConfigError(f"{key}: {given} set with name={settings.get('name')!r}, which takes no settings")
    params = inspect.signature(get_class(target)).parameters
    for k in given:
        if k not in params:
            near = difflib.get_close_matches(k, list(params), n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise ConfigError(f"{key}.{k}: {target.rsplit('.', 1)[-1]} takes no '{k}'{hint}")
