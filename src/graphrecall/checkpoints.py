"""Safe reading of Lightning checkpoints given by a user (``ckpt_path=``, ``model.resume_from=``).

Every checkpoint is read with ``torch.load(..., weights_only=True)``: tensors, plain containers and
numbers only, so a crafted file cannot run code. graphrecall's checkpoints hold nothing else (their
hyperparameters are plain values: the run's resolved config as a dict).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch


def _unpickler_reason(e: Exception) -> str:
    """The line of torch's message that names what was refused."""
    lines = [ln.strip() for ln in str(e).splitlines() if "Unsupported global" in ln or "WeightsUnpickler" in ln]
    return (lines[0] if lines else str(e).splitlines()[0])[:300]


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path``, loaded with ``weights_only=True``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a torch checkpoint, or it holds objects other than tensors and
            plain values (it is refused rather than executed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"checkpoint {path} is not a readable torch checkpoint (expected a .ckpt written by train.py)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"checkpoint {path} was refused: it holds objects other than tensors and plain values, "
            f"which could run code when loaded ({_unpickler_reason(e)})"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"checkpoint {path} is not a readable torch checkpoint "
                         f"(expected a .ckpt written by train.py): {e}") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"checkpoint {path} holds no state_dict: expected a Lightning checkpoint written by train.py")
    return ckpt


def check_weights_fit(ckpt: dict[str, Any], module: torch.nn.Module, path: str | Path) -> None:
    """Refuse a checkpoint whose weights do not fit ``module`` (another model, aggregator, size or
    side-info field): one line naming the file, the model it was written by and the first
    differences, instead of torch's dump of every key.

    Raises:
        ValueError: a weight missing, unexpected or of another shape.
    """
    saved = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    wanted = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(wanted) - set(saved))
    unexpected = sorted(set(saved) - set(wanted))
    reshaped = sorted(k for k in set(saved) & set(wanted) if saved[k] != wanted[k])
    if not (missing or unexpected or reshaped):
        return
    run = (ckpt.get("hyper_parameters") or {}).get("run_config") or {}
    written_by = ((run.get("model") or {}).get("_target_") if isinstance(run, dict) else None) or "an unknown model"
    parts = []
    if reshaped:
        parts.append("other shapes: " + ", ".join(f"{k} {list(saved[k])} vs {list(wanted[k])}" for k in reshaped[:3]))
    if missing:
        parts.append(f"{len(missing)} weight(s) missing, e.g. {missing[:3]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}")
    raise ValueError(f"checkpoint {path} (written by {written_by}) does not fit this run's model "
                     f"{type(module).__name__}: {'; '.join(parts)}; resume a checkpoint of the same model config")
