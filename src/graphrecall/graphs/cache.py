"""Cache of built graphs, keyed by a hash of the input clicks and the build parameters.

A cache entry is written to a temporary file and renamed into place, so an interrupted build never
leaves a partial entry that a later run would read as complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def frame_fingerprint(df: pd.DataFrame, columns: list[str]) -> str:
    """Stable hash of the given columns of a frame (row order matters)."""
    h = hashlib.sha256()
    h.update(str(len(df)).encode())
    for c in columns:
        col = df[c]
        if col.dtype == object:
            col = col.map(lambda v: "|".join(map(str, v)) if isinstance(v, (list, tuple, np.ndarray)) else str(v))
        h.update(c.encode())
        h.update(pd.util.hash_pandas_object(col, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(parts: dict[str, Any]) -> str:
    """Hash of a JSON-serialisable dict of everything the result depends on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cached(cache_dir: str | Path | None, name: str, parts: dict[str, Any], build: Callable[[], Any]) -> Any:
    """Return the cached result of ``build()`` for ``parts``, building and storing it if absent.

    With ``cache_dir=None`` nothing is cached.
    """
    if cache_dir is None:
        return build()
    path = Path(cache_dir) / f"{name}-{cache_key(parts)}.pkl"
    if path.exists():
        log.info("graph cache hit: %s", path)
        with path.open("rb") as f:
            return pickle.load(f)
    result = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves neither an entry nor a temporary file
        raise
    return result
