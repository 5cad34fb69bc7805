"""What a run was trained and evaluated on, as row counts and content hashes (issue 25).

``train.py`` stores :func:`inputs_fingerprint` in ``metrics.json`` (``details.inputs``);
``evaluate.py`` recomputes it on the data it loads and refuses to score a run whose inputs changed
since training (a click file edited, a content added): its numbers would not be the run's.
:func:`describe_changes` says what changed, table by table.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from graphrecall.data.schema import FeedDataset


def table_fingerprint(frame: pd.DataFrame) -> dict[str, Any]:
    """``{"rows": n, "columns": [...], "sha256": ...}`` of a table's values, row order included
    (the index is not part of it)."""
    digest = hashlib.sha256()
    digest.update(repr(list(map(str, frame.columns))).encode())
    if len(frame):
        values = frame.copy()
        for col in values.columns[values.dtypes == object]:  # list-valued side info (genres, products) as text
            values[col] = values[col].map(lambda v: repr(list(v)) if isinstance(v, (list, tuple, np.ndarray)) else repr(v))
        digest.update(pd.util.hash_pandas_object(values, index=False).to_numpy().tobytes())
    return {"rows": int(len(frame)), "columns": [str(c) for c in frame.columns], "sha256": digest.hexdigest()}


def inputs_fingerprint(dataset: FeedDataset, folds: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Fingerprints of the dataset's clicks, contents and users, and of every fold's history and
    targets (a predefined split's own files included)."""
    out = {"clicks": table_fingerprint(dataset.clicks), "contents": table_fingerprint(dataset.contents),
           "users": table_fingerprint(dataset.users)}
    for name, fold in sorted((folds or {}).items()):
        for part in ("history", "targets"):
            frame = getattr(fold, part, None)
            if frame is not None:
                out[f"{name}.{part}"] = table_fingerprint(frame[[c for c in ("u", "i", "timestamp") if c in frame]])
    return out


def describe_changes(recorded: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]) -> list[str]:
    """One line per table whose fingerprint differs (``clicks: 100,000 rows at training, 98,500 now``);
    empty when nothing changed. Tables present on one side only are named too."""
    lines = []
    for name in sorted(set(recorded) | set(current)):
        old, new = recorded.get(name), current.get(name)
        if old is None or new is None:
            lines.append(f"{name}: {'not recorded at training' if old is None else 'absent now'}")
        elif old["sha256"] != new["sha256"]:
            if old["rows"] != new["rows"]:
                lines.append(f"{name}: {old['rows']:,} rows at training, {new['rows']:,} now")
            elif old.get("columns") != new.get("columns"):
                lines.append(f"{name}: columns {old.get('columns')} at training, {new.get('columns')} now")
            else:
                lines.append(f"{name}: same {new['rows']:,} rows, different values")
    return lines
