"""Your own logs: a folder of parquet or CSV files in the canonical schema.

Expected files (one format per table)::

    <folder>/clicks.parquet   | clicks.csv     user_id, content_id, timestamp [, traffic_source]
    <folder>/contents.parquet | contents.csv   content_id + side-info columns [, published_at]
    <folder>/users.parquet    | users.csv      user_id + attributes (optional)

Timestamps (and ``published_at``) may be Unix seconds (numbers, also as text), datetimes or ISO 8601
strings; any other spelling needs ``timestamp_format`` (day/month order is never guessed). Ids in CSV
are read as text (``"0157"`` stays ``"0157"``) unless ``numeric_ids=true``. In CSV, multi-valued
side-info fields are ``list_separator``-joined strings (``"sofa|lamp"``); in parquet, list columns.
Validation (see :mod:`graphrecall.data.schema`) names the offending file and column.

Public API: :func:`load_custom`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd

from graphrecall.data.schema import (
    CONTENT_ID,
    USER_ID,
    DataValidationError,
    FeedDataset,
    FieldKind,
    build_dataset,
    read_csv_file,
)

FORMATS = ("parquet", "csv")


def _find_table(folder: Path, table: str, required: bool) -> Path | None:
    """Return ``<folder>/<table>.parquet`` or ``.csv``; error on none (if required) or both."""
    found = [folder / f"{table}.{ext}" for ext in FORMATS if (folder / f"{table}.{ext}").is_file()]
    expected = " or ".join(f"{table}.{ext}" for ext in FORMATS)
    if len(found) > 1:
        raise DataValidationError(
            f"{folder}: both {found[0].name} and {found[1].name} exist; keep exactly one of {expected}"
        )
    if not found:
        if required:
            raise DataValidationError(f"{folder}: no {table} table found; expected {expected}")
        return None
    return found[0]


def _read_table(path: Path, text_columns: list[str], id_columns: tuple[str, ...] = (),
                numeric_ids: bool = False) -> pd.DataFrame:
    """Read one parquet or CSV file, wrapping reader errors so that they name the file.

    Args:
        path: the file.
        text_columns: CSV columns read as text (multi-valued fields: a lone ``"12"`` must stay the
            string ``"12"`` like the elements of ``"12|15"``, not become the integer 12).
        id_columns: CSV id columns: read as text (zero-padded ids keep their zeros) unless
            ``numeric_ids``, when they must be integers.
    """
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        header = pd.read_csv(path, nrows=0).columns
        text = [*text_columns, *([] if numeric_ids else id_columns)]
        frame = read_csv_file(path, dtype={c: str for c in text if c in header})
    except DataValidationError:
        raise
    except Exception as exc:  # pyarrow, parser and decoding errors have no common base class
        raise DataValidationError(f"{path}: cannot be read as {path.suffix[1:]}: {exc}") from exc
    for c in id_columns if numeric_ids else ():
        if c in frame.columns and not pd.api.types.is_numeric_dtype(frame[c]):
            bad = pd.to_numeric(frame[c], errors="coerce").isna() & frame[c].notna()
            raise DataValidationError(
                f"{path}: column '{c}' has {int(bad.sum())} non-numeric id(s), e.g. {frame.loc[bad, c].head(3).tolist()} "
                f"at data rows {frame.index[bad][:5].tolist()} (0-based); expected integers (numeric_ids=true) or set numeric_ids=false"
            )
    return frame


def _harmonise_ids(frames: list[pd.DataFrame], column: str) -> None:
    """Give an id column one dtype across tables, in place.

    A CSV table yields integer ids while a parquet table may hold the same ids as strings; compared
    as they are, every click would look like an unknown content (or user). When the kinds differ,
    all are compared as strings.
    """
    present = [f for f in frames if column in f.columns]
    numeric = {pd.api.types.is_numeric_dtype(f[column]) for f in present}
    if len(numeric) > 1:
        for f in present:
            f[column] = f[column].map(lambda v: v if pd.isna(v) else _id_text(v)).astype(object)


def _id_text(value: object) -> str:
    # Integral floats (ids read from a CSV column with blanks) must match their integer spelling.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def load_custom(
    folder: str | Path,
    side_info: dict[str, FieldKind],
    diversity_fields: dict[str, str],
    list_separator: str = "|",
    unknown_contents: Literal["error", "drop"] = "error",
    duplicates: Literal["error", "drop"] = "drop",
    before_publication: Literal["error", "drop"] = "error",
    timestamp_format: str | None = None,
    numeric_ids: bool = False,
) -> FeedDataset:
    """Load and validate your own click, content and (optional) user tables.

    Args:
        folder: folder holding ``clicks``, ``contents`` and optionally ``users`` as parquet or CSV.
        side_info: content side-info columns and their kind, e.g.
            ``{"style": "single", "products": "multi"}``.
        diversity_fields: metric name -> content column, e.g. ``{"style": "style"}``.
        list_separator: separator of multi-valued fields stored as strings (CSV).
        unknown_contents: clicks on contents absent from the contents table: ``"error"`` or
            ``"drop"`` (counted in ``dataset.report``).
        duplicates: exact duplicate clicks: ``"drop"`` (counted) or ``"error"``.
        before_publication: clicks before their content's ``published_at`` (when the contents
            table has that column): ``"error"`` or ``"drop"`` (counted in ``dataset.report``).
        timestamp_format: ``strftime`` format of text timestamps that are neither ISO 8601 nor Unix
            seconds, e.g. ``"%d/%m/%Y %H:%M"`` (ambiguous day/month text is an error without it).
        numeric_ids: read the CSV id columns as integers; by default they are text, so that ids go
            out exactly as they came in (``"0157"``).

    Returns:
        The validated :class:`FeedDataset` named ``custom``.

    Raises:
        DataValidationError: missing/ambiguous files or invalid content; the message names the file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataValidationError(
            f"{folder}: folder not found (expected clicks, contents and optional users tables)"
        )
    paths = {
        "clicks": _find_table(folder, "clicks", required=True),
        "contents": _find_table(folder, "contents", required=True),
        "users": _find_table(folder, "users", required=False),
    }
    multi = [col for col, kind in side_info.items() if kind == "multi"]
    ids = (USER_ID, CONTENT_ID)
    clicks = _read_table(paths["clicks"], [], ids, numeric_ids)
    contents = _read_table(paths["contents"], multi, ids, numeric_ids)
    users = _read_table(paths["users"], [], ids, numeric_ids) if paths["users"] else None
    _harmonise_ids([clicks, contents], CONTENT_ID)
    _harmonise_ids([clicks] + ([users] if users is not None else []), USER_ID)
    return build_dataset(
        "custom",
        clicks=clicks,
        contents=contents,
        users=users,
        side_info=side_info,
        diversity_fields=diversity_fields,
        sources={k: str(p) for k, p in paths.items() if p is not None},
        unknown_contents=unknown_contents,
        duplicates=duplicates,
        list_separator=list_separator,
        before_publication=before_publication,
        timestamp_format=timestamp_format,
        policy_prefix="dataset.loader.",
    )
