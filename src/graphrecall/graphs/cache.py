"""Cache of built graphs, keyed by a hash of every input of the build (clicks, catalogue, side-info
mapping, parameters).

An entry is one numpy ``.npz`` file read with ``allow_pickle=False``: plain arrays plus a JSON header
(the key's inputs, the structure of the stored object and a SHA-256 checksum of both). Nothing in an
entry can run code when read. Only plain values, numeric arrays, sparse matrices and the graph
dataclasses (:class:`~graphrecall.graphs.views.WeightedGraph`,
:class:`~graphrecall.graphs.coclick.GraphStats`) can be stored.

An entry is written to a temporary file and renamed into place, so an interrupted build never
leaves a partial entry. An entry that cannot be read, whose checksum does not match, or whose
stored inputs differ from the requested ones is rebuilt and replaced, and the log says why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
_META = "__meta__"


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


def graph_inputs(window: pd.DataFrame, dataset: Any, view: str = "content") -> dict[str, Any]:
    """Fingerprints of everything a view graph is built from besides its parameters: the window's
    clicks, the catalogue (content ids, in row order) and, for a side-info view, the
    content-to-value mapping (relabelled values give a different key)."""
    from graphrecall.data.schema import CONTENT_ID

    parts = {"clicks": frame_fingerprint(window, ["u", "i", "timestamp"]),
             "contents": dataset.num_contents,
             "content_ids": frame_fingerprint(dataset.contents, [CONTENT_ID])}
    if view != "content":
        parts["view_values"] = frame_fingerprint(dataset.contents, [view]) if view in dataset.contents else None
    return parts


def cache_key(parts: dict[str, Any]) -> str:
    """Hash of a JSON-serialisable dict of everything the result depends on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


# ------------------------------------------------------------------------------- safe encoding


def _dataclass_types() -> dict[str, type]:
    """The only classes an entry may name (imported lazily: views imports this package)."""
    from graphrecall.graphs.coclick import GraphStats
    from graphrecall.graphs.views import WeightedGraph

    return {"WeightedGraph": WeightedGraph, "GraphStats": GraphStats}


def _encode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    """A JSON-able description of ``obj``; its numeric arrays go into ``arrays``."""
    if obj is None or isinstance(obj, (bool, str)):
        return {"t": "v", "v": obj}
    if isinstance(obj, (int, float, np.integer, np.floating, np.bool_)):
        return {"t": "v", "v": obj.item() if isinstance(obj, np.generic) else obj}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError("graph cache: dict keys must be strings")
        return {"t": "dict", "v": {k: _encode(v, arrays) for k, v in obj.items()}}
    if isinstance(obj, (list, tuple)):
        return {"t": type(obj).__name__, "v": [_encode(v, arrays) for v in obj]}
    if sp.issparse(obj):
        m = sp.csr_matrix(obj)
        return {"t": "csr", "shape": list(m.shape), "data": _encode(m.data, arrays),
                "indices": _encode(m.indices, arrays), "indptr": _encode(m.indptr, arrays)}
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            return {"t": "objarr", "v": [_encode(v, arrays) for v in obj.ravel().tolist()], "shape": list(obj.shape)}
        if obj.dtype.kind not in "biufcUS":
            raise TypeError(f"graph cache: cannot store arrays of dtype {obj.dtype}")
        name = f"a{len(arrays)}"
        arrays[name] = obj
        return {"t": "arr", "k": name}
    types = _dataclass_types()
    name = type(obj).__name__
    if dataclasses.is_dataclass(obj) and types.get(name) is type(obj):
        return {"t": "dc", "cls": name,
                "v": {f.name: _encode(getattr(obj, f.name), arrays) for f in dataclasses.fields(obj)}}
    raise TypeError(f"graph cache: cannot store a {type(obj).__name__} (plain values, arrays, sparse "
                    "matrices and graph dataclasses only)")


def _decode(node: Any, arrays: Any) -> Any:
    """Inverse of :func:`_encode`; only the allow-listed classes are ever constructed."""
    t = node["t"]
    if t == "v":
        return node["v"]
    if t == "dict":
        return {k: _decode(v, arrays) for k, v in node["v"].items()}
    if t in ("list", "tuple"):
        items = [_decode(v, arrays) for v in node["v"]]
        return items if t == "list" else tuple(items)
    if t == "csr":
        return sp.csr_matrix((_decode(node["data"], arrays), _decode(node["indices"], arrays),
                              _decode(node["indptr"], arrays)), shape=tuple(node["shape"]))
    if t == "arr":
        return arrays[node["k"]]
    if t == "objarr":
        out = np.empty(len(node["v"]), dtype=object)
        out[:] = [_decode(v, arrays) for v in node["v"]]
        return out.reshape(node["shape"])
    if t == "dc":
        cls = _dataclass_types()[node["cls"]]  # KeyError for anything not allow-listed
        return cls(**{k: _decode(v, arrays) for k, v in node["v"].items()})
    raise ValueError(f"unknown node type '{t}'")


def _checksum(tree_json: str, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(tree_json.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _normalised(parts: dict[str, Any]) -> Any:
    return json.loads(json.dumps(parts, sort_keys=True, default=str))


def write_entry(path: Path, parts: dict[str, Any], obj: Any) -> None:
    """Store ``obj`` (built from ``parts``) at ``path`` atomically."""
    arrays: dict[str, np.ndarray] = {}
    tree_json = json.dumps(_encode(obj, arrays), sort_keys=True)
    meta = {"format": FORMAT_VERSION, "parts": _normalised(parts), "tree": tree_json,
            "checksum": _checksum(tree_json, arrays)}
    arrays[_META] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves neither an entry nor a temporary file
        raise


def read_entry(path: Path, parts: dict[str, Any]) -> Any:
    """The object stored at ``path``; ValueError when it does not hold ``parts``' result intact."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    meta = json.loads(arrays.pop(_META).tobytes().decode())
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"format {meta.get('format')}, expected {FORMAT_VERSION}")
    if meta.get("parts") != _normalised(parts):
        raise ValueError("the entry was built from other inputs than its name says")
    if meta.get("checksum") != _checksum(meta["tree"], arrays):
        raise ValueError("checksum mismatch (the entry was modified or damaged)")
    return _decode(json.loads(meta["tree"]), arrays)


def check_cache_dir(cache_dir: str | Path | None, key: str = "cache_dir") -> Path | None:
    """``cache_dir`` as a path, None when off; a ``NotADirectoryError`` naming ``key`` when it, or
    the nearest existing folder above it, is a file (the entry could not be written after the build).
    """
    if cache_dir is None:
        return None
    path = Path(cache_dir)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        what = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise NotADirectoryError(f"{key}={cache_dir} {what}, not a folder: give a folder for the built graphs "
                                 f"(created when missing), or {key}=null to build without a cache")
    return path


def cached(cache_dir: str | Path | None, name: str, parts: dict[str, Any], build: Callable[[], Any]) -> Any:
    """Return the cached result of ``build()`` for ``parts``, building and storing it if absent.

    ``parts`` must name every input the result depends on. An unreadable, damaged or mismatching
    entry is rebuilt and replaced (logged as a warning). With ``cache_dir=None`` nothing is cached.

    Raises:
        NotADirectoryError: ``cache_dir`` is a file (checked before the build).
    """
    if check_cache_dir(cache_dir) is None:
        return build()
    path = Path(cache_dir) / f"{name}-{cache_key(parts)}.npz"
    if path.exists():
        try:
            result = read_entry(path, parts)
        except Exception as e:  # noqa: BLE001 - any damage means: rebuild
            log.warning("graph cache entry %s is unusable (%s: %s): rebuilding it", path, type(e).__name__, e)
        else:
            log.info("graph cache hit: %s", path)
            return result
    result = build()
    write_entry(path, parts, result)
    return result
