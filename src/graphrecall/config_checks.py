"""Checks of a run's config before any work: out-of-range settings and fold orders that would
otherwise give a silently wrong result (an untrained model reported, every slot back-filled, a
model selected on the test fold...). Each error names the config key, the value and what was
expected.
"""

from __future__ import annotations

from typing import Any

from graphrecall.metrics.content_slices import check_click_bins
from graphrecall.recall.candidates import check_candidate_rule

FOLDS = ("val", "test")


class ConfigError(ValueError):
    """A config value outside its accepted range (the message names the key)."""


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


def check_train_config(cfg: Any) -> None:
    """Validate a train.py config (``conf/train.yaml`` composed); raises :class:`ConfigError`."""
    model = _get(cfg, "model") or {}
    trainable = is_trainable(model)
    check_thread_count(cfg)
    check_folds(_get(cfg, "eval.folds"), trainable)
    graph = _get(model, "graph")  # the co-click graph of the models that build one
    if graph is not None:
        check_range("graph.top_k", _get(graph, "top_k"), low=0, allow_none=True)
        check_range("graph.tau (dataset.graph_tau)", _get(graph, "tau"), low=0, high=1, high_open=True,
                    allow_none=True)
    check_range("recall.share", _get(cfg, "recall.share"), low=0, high=1, allow_none=True)
    check_range("model.pool_size", _get(model, "pool_size"), low=0, low_open=True, allow_none=True)
    check_range("model.sampling.neighbors", _get(model, "sampling.neighbors"), low=0, low_open=True,
                allow_none=True)
    if trainable:
        check_range("trainer.max_epochs", _get(model, "trainer.max_epochs"), low=0, low_open=True)
    if _get(cfg, "eval.export.enabled"):
        check_range("eval.export.k", _get(cfg, "eval.export.k"), low=0, low_open=True)
    if _get(model, "candidates") is not None:
        try:
            check_candidate_rule(_get(model, "candidates"), "model.candidates")
        except ValueError as e:
            raise ConfigError(str(e)) from None
    check_split(_get(cfg, "dataset.split"))
    check_channels(cfg, model)
    check_min_score(cfg, model)
    if _get(cfg, "eval.content_bins") is not None:
        try:
            check_click_bins(_get(cfg, "eval.content_bins"), "eval.content_bins")
        except ValueError as e:
            raise ConfigError(str(e)) from None


def check_channels(cfg: Any, model: Any) -> None:
    """``recall.channels``: every channel's settings (:func:`graphrecall.recall.channels.parse_channels`),
    and active channels only for the i2i models that serve them (their ``triggers`` block carries
    ``channels``); elsewhere a non-zero ``slots`` would be ignored."""
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


def check_min_score(cfg: Any, model: Any) -> None:
    """``recall.min_score``: null, a number, or a list of numbers / nulls, and set (not null) only for
    the i2i models that serve from a pool (their ``triggers`` block); elsewhere it would be ignored.
    The model's own ``triggers.min_score`` (the presets' grids) is checked the same way."""
    from graphrecall.models.i2i import min_score_grid

    def grid_of(key: str, raw: Any) -> list[float]:
        values = raw if isinstance(raw, (list, tuple)) else [raw]
        if any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))) for v in values):
            raise ConfigError(f"{key}={raw}: expected null, a number or a list of numbers / nulls")
        try:
            return min_score_grid(raw)
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None

    has_pool = _get(model, "triggers") is not None
    raw = _plain(_get(cfg, "recall.min_score"))
    grid = grid_of("recall.min_score", raw)
    if has_pool:
        grid_of("model.triggers.min_score", _plain(_get(model, "triggers.min_score")))
    if any(m != float("-inf") for m in grid) and not has_pool:
        raise ConfigError(f"recall.min_score={raw} cuts the i2i pool rows (coclick, sage, sage_next_click, m2grl); "
                          f"model '{_get(model, '_target_')}' has no pool and would ignore it")
    # a model config that sets its own serving grid (the recipes) would silently ignore recall.<key>
    for key, default in (("min_score", None), ("popularity_beta", 0.0)):
        given, own = _plain(_get(cfg, f"recall.{key}")), _plain(_get(model, f"triggers.{key}"))
        if has_pool and given != default and own != given:
            raise ConfigError(f"recall.{key}={given}: model '{_get(model, '_target_')}' sets its own "
                              f"triggers.{key}={own}; override model.triggers.{key} instead")


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


def check_evaluate_config(cfg: Any) -> None:
    """Validate an evaluate.py config. A run directory holds the artefacts fitted on the test fold
    (their graph and back-fill include the validation targets), so only ``fold=test`` may score
    them; ``ckpt_path=`` re-embeds the requested fold and accepts ``fold=val``."""
    check_thread_count(cfg)
    fold = _get(cfg, "fold")
    if fold not in FOLDS:
        raise ConfigError(f"fold={fold!r}: expected one of {list(FOLDS)}")
    if fold != "test" and not _get(cfg, "ckpt_path"):
        raise ConfigError(
            f"fold={fold} with run_dir=: the run's saved artefacts were fitted on the test fold (their graph and "
            "back-fill include the validation targets), so scoring them on val would be optimistic; use fold=test, "
            "or ckpt_path=<checkpoint> to re-embed the val fold"
        )
    if _get(cfg, "export.enabled"):
        check_range("export.k", _get(cfg, "export.k"), low=0, low_open=True)
