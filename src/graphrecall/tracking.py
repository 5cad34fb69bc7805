"""Experiment tracking: Weights & Biases, offline unless an API key is configured."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


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


def run_name(config: dict[str, Any] | None) -> str:
    """``model-aggregator-loss-dataset-s<seed>`` from the chosen config groups."""
    if not config:
        return "run"
    choices = config.get("choices", {})
    parts = [choices.get(g) for g in ("model", "aggregator", "loss", "dataset") if choices.get(g)]
    return "-".join([*parts, f"s{config.get('seed', 0)}"])


def wandb_logger(logger_cfg: dict[str, Any], run_dir: Path, run_config: dict[str, Any] | None):
    """A Lightning ``WandbLogger`` writing under ``run_dir``, config logged as flat keys."""
    from pytorch_lightning.loggers import WandbLogger

    mode = wandb_mode(str(logger_cfg.get("mode", "auto")))
    os.environ.setdefault("WANDB_SILENT", "true")
    config = flatten(run_config or {})
    return WandbLogger(
        project=logger_cfg.get("project", "graphrecall"),
        entity=logger_cfg.get("entity"),
        group=logger_cfg.get("group"),
        tags=list(logger_cfg.get("tags") or []),
        name=run_name(run_config),
        save_dir=str(run_dir),
        mode=mode,
        config=config,
    )
