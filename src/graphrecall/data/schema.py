"""Canonical tables of graphrecall and their validation.

Every data source (synthetic, MovieLens-100K, a user's own files) is converted to three tables:

* ``clicks``:   ``user_id, content_id, timestamp`` (+ optional ``traffic_source``);
  ``timestamp`` is int64 Unix seconds after validation.
* ``contents``: ``content_id`` + side-info columns. Single-valued fields hold one value per row,
  multi-valued fields (mounted products, their categories, genres) hold a list per row. An optional
  ``published_at`` column (parsed like ``timestamp``, int64 Unix seconds) says when a content
  appeared; a click before it is an error or, when asked for, a counted drop.
* ``users``:    ``user_id`` + attribute columns (demographics, traffic source, ...).

Validation raises :class:`DataValidationError` naming the source, the column and what was
expected; rows dropped by documented policy (exact duplicate clicks; clicks on unknown contents or
before their content's publication, when asked for) are counted in a :class:`ValidationReport`,
never dropped silently.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

USER_ID = "user_id"
CONTENT_ID = "content_id"
TIMESTAMP = "timestamp"
TRAFFIC_SOURCE = "traffic_source"
PUBLISHED_AT = "published_at"
TITLE = "title"  # optional contents column: a readable name for people looking at lists (never a feature)
CLICK_COLUMNS = (USER_ID, CONTENT_ID, TIMESTAMP)

# Timestamps outside this range are almost surely unit mistakes (ms or ns read as seconds).
MIN_TIMESTAMP = int(pd.Timestamp("1990-01-01", tz="UTC").timestamp())
MAX_TIMESTAMP = int(pd.Timestamp("2100-01-01", tz="UTC").timestamp())

FieldKind = Literal["single", "multi"]


class DataValidationError(ValueError):
    """Input data that does not match the canonical schema. The message names source and column."""


@dataclass
class ValidationReport:
    """Counts of rows dropped or added (by documented policy) while validating one source."""

    source: str
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str, n: int) -> None:
        if n:
            self.counts[what] = self.counts.get(what, 0) + int(n)

    def lines(self) -> list[str]:
        return [f"{self.source}: {n} {what}" for what, n in self.counts.items()]


@dataclass
class FeedDataset:
    """One data source in canonical form.

    Attributes:
        name: dataset name (``synthetic``, ``movielens100k``, ``custom``).
        clicks: canonical click table, sorted by (timestamp, user_id).
        contents: canonical content table, one row per content; defines the catalogue.
        users: canonical user table, one row per user (users without clicks allowed).
        side_info: content side-info columns and their kind, e.g. ``{"style": "single",
            "products": "multi"}``; the encoder turns each into an ID feature.
        diversity_fields: metric name -> content column used for distinct-value counts,
            e.g. ``{"style": "style", "space": "space"}`` (MovieLens: style -> genres).
        truth: optional ground truth (synthetic data only), free-form arrays.
        report: rows dropped during validation.
    """

    name: str
    clicks: pd.DataFrame
    contents: pd.DataFrame
    users: pd.DataFrame
    side_info: dict[str, FieldKind]
    diversity_fields: dict[str, str]
    truth: dict[str, Any] | None = None
    report: ValidationReport | None = None

    @property
    def num_contents(self) -> int:
        return len(self.contents)

    def summary(self) -> dict[str, Any]:
        ts = self.clicks[TIMESTAMP]
        return {
            "dataset": self.name,
            "clicks": len(self.clicks),
            "users": len(self.users),
            "users_with_clicks": int(self.clicks[USER_ID].nunique()),
            "contents": len(self.contents),
            "first_click": str(pd.to_datetime(ts.min(), unit="s")) if len(ts) else None,
            "last_click": str(pd.to_datetime(ts.max(), unit="s")) if len(ts) else None,
        }


def _normalise_name(name: object) -> str:
    """Column name reduced to lower-case letters and digits: 'Content_ID', 'contentid' -> 'contentid'."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def _require_columns(df: pd.DataFrame, required: tuple[str, ...] | list[str], source: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        hints = []
        # Normalised beyond case so that 'contentid', 'Content-ID', 'content id' also get a hint;
        # str() because CSV/parquet column names are not always strings.
        normalised = {_normalise_name(c): c for c in df.columns}
        for m in missing:
            if _normalise_name(m) in normalised:
                hints.append(f"'{normalised[_normalise_name(m)]}' looks like '{m}' (check spelling/case)")
        raise DataValidationError(
            f"{source}: missing column(s) {missing}; expected at least {list(required)}, "
            f"found {list(df.columns)}" + (f". Hint: {'; '.join(hints)}" if hints else "")
        )


def _require_no_nulls(df: pd.DataFrame, column: str, source: str) -> None:
    nulls = int(df[column].isna().sum())
    if nulls:
        first = df.index[df[column].isna()][:5].tolist()
        raise DataValidationError(
            f"{source}: column '{column}' has {nulls} null value(s) "
            f"(first at data rows {first}, 0-based, header not counted); "
            "ids must be present on every row"
        )


def _first_long_row(path: str) -> tuple[int, int, int] | None:
    """(line number, fields, header fields) of the first CSV row with more fields than the header."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        for row in reader:
            if len(row) > len(header):
                return reader.line_num, len(row), len(header)
    return None


def read_csv_file(path: str | Any, dtype: dict[str, Any] | None = None) -> pd.DataFrame:
    """Read a user-given CSV file in which every row has the header's fields.

    pandas reads a first data row with one field too many as an index column (shifting every
    value one column left, so the last column reads as null) and stops at a later one with a
    tokenizer message; both become an error naming the file, the line and the field counts.
    Shorter rows are kept (their missing values are nulls, refused by the column checks).

    Raises:
        DataValidationError: a row with more fields than the header, or a file pandas cannot parse.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, dtype=dtype, index_col=False)
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        long_row = _first_long_row(str(path))
        if long_row is None:
            raise DataValidationError(f"{path}: cannot be read as csv: {exc}") from exc
        line, fields, expected = long_row
        raise DataValidationError(
            f"{path}: line {line} has {fields} fields but the header has {expected}; expected {expected} "
            "comma-separated fields on every row (a stray comma, or a value holding a comma without quotes?)"
        ) from exc
    except Exception as exc:  # parser and decoding errors have no common base class
        raise DataValidationError(f"{path}: cannot be read as csv: {exc}") from exc


# ISO 8601: a date, optionally a time (T or space) with seconds/fractions and a zone (Z, +hh:mm, +hhmm, +hh)
_ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)?)?$")
_EPOCH = re.compile(r"^[+-]?\d+(\.\d*)?$")
_DAY_MONTH = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{2,4})")


def _row_examples(values: pd.Series, bad: np.ndarray | pd.Series) -> str:
    bad = np.asarray(bad, dtype=bool)
    rows = values.index[bad][:5].tolist()
    examples = values[bad].astype(str).head(3).tolist()
    return f"e.g. {examples} at data rows {rows} (0-based, header not counted)"


def _string_timestamps(values: pd.Series, source: str, column: str, timestamp_format: str | None) -> pd.Series:
    """Seconds from text: ISO 8601 or Unix seconds (as numbers in text) unless ``timestamp_format``."""
    text = values.map(lambda v: v.isoformat() if isinstance(v, (pd.Timestamp, dt.datetime)) else str(v).strip())
    if timestamp_format is not None:
        parsed = pd.to_datetime(text, format=timestamp_format, errors="coerce", utc=True)
        if parsed.isna().any():
            raise DataValidationError(
                f"{source}: column '{column}' has {int(parsed.isna().sum())} value(s) not in timestamp_format="
                f"{timestamp_format!r}, {_row_examples(values, parsed.isna())}"
            )
        return (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    epoch = text.str.match(_EPOCH)
    iso = ~epoch & text.str.match(_ISO_8601)
    other = ~(epoch | iso)
    if other.any():
        dm = text[other].str.extract(_DAY_MONTH).dropna().astype(int)
        ambiguous = bool(len(dm)) and bool(((dm[0] <= 12) & (dm[1] <= 12)).any())
        hint = (" (day/month order is ambiguous, e.g. 05/01/2026)" if ambiguous else "")
        raise DataValidationError(
            f"{source}: column '{column}' has {int(other.sum())} unparsable timestamp(s): neither ISO 8601 "
            f"(2026-01-05T10:00:00Z) nor Unix seconds{hint}, {_row_examples(values, other)}; "
            "set the dataset's timestamp_format (e.g. '%d/%m/%Y %H:%M') to read them"
        )
    seconds = pd.Series(np.zeros(len(text), dtype=np.int64), index=values.index)
    if epoch.any():
        seconds[epoch] = np.floor(text[epoch].astype(float)).astype(np.int64)
    if iso.any():
        parsed = pd.to_datetime(text[iso].str.replace(",", ".", regex=False), format="ISO8601",
                                errors="coerce", utc=True)
        if parsed.isna().any():  # shaped like ISO 8601 but not a real date (2026-13-45)
            bad = pd.Series(False, index=values.index)
            bad[parsed.index[parsed.isna()]] = True
            raise DataValidationError(
                f"{source}: column '{column}' has {int(bad.sum())} invalid ISO 8601 date(s), {_row_examples(values, bad)}"
            )
        seconds[iso] = ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype(np.int64)
    return seconds


def to_unix_seconds(values: pd.Series, source: str, column: str = TIMESTAMP,
                    timestamp_format: str | None = None) -> pd.Series:
    """Convert integer seconds, datetimes or text to int64 Unix seconds, range-checked.

    Text must be ISO 8601 (``2026-01-05``, ``2026-01-05T10:00:00+01:00``; a missing zone means UTC)
    or Unix seconds written as a number (``"1767607200"``); any other spelling (``05/01/2026``: May 1
    or January 5?) needs an explicit ``timestamp_format`` (``strftime`` codes, e.g. ``%d/%m/%Y``).

    Raises:
        DataValidationError: on nulls, unparsable or ambiguous text, or values outside 1990..2100;
            the message names the file, the column, examples and their rows.
    """
    if values.isna().any():
        bad = values.index[values.isna()][:5].tolist()
        raise DataValidationError(
            f"{source}: column '{column}' has {int(values.isna().sum())} null value(s) "
            f"(first at data rows {bad}, 0-based, header not counted)"
        )
    if pd.api.types.is_datetime64_any_dtype(values):
        dtv = values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
        seconds = (dtv - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    elif pd.api.types.is_integer_dtype(values) and timestamp_format is None:
        seconds = values.astype(np.int64)
    elif pd.api.types.is_float_dtype(values) and timestamp_format is None:
        if not np.all(np.isfinite(values.to_numpy())):
            raise DataValidationError(f"{source}: column '{column}' has non-finite values, "
                                      f"{_row_examples(values, ~np.isfinite(values.to_numpy()))}")
        seconds = np.floor(values).astype(np.int64)
    else:
        seconds = _string_timestamps(values, source, column, timestamp_format)
    seconds = seconds.astype(np.int64)
    out = (seconds < MIN_TIMESTAMP) | (seconds > MAX_TIMESTAMP)
    if out.any():
        raise DataValidationError(
            f"{source}: column '{column}' has {int(out.sum())} timestamp(s) outside 1990-01-01..2100-01-01, "
            f"{_row_examples(values, out)}; expected Unix *seconds* (milliseconds or nanoseconds are not accepted)"
        )
    return seconds


def validate_clicks(
    clicks: pd.DataFrame,
    source: str,
    report: ValidationReport,
    known_contents: pd.Index | None = None,
    unknown_contents: Literal["error", "drop"] = "error",
    duplicates: Literal["error", "drop"] = "drop",
    published_at: pd.Series | None = None,
    before_publication: Literal["error", "drop"] = "error",
    contents_source: str = "contents",
    timestamp_format: str | None = None,
    policy_prefix: str = "",
) -> pd.DataFrame:
    """Validate and normalise a click table.

    Args:
        clicks: raw table with at least ``user_id, content_id, timestamp``.
        source: file or source name used in error messages.
        report: receives counts of dropped rows.
        known_contents: the catalogue; clicks on other contents are an error or a counted drop.
        unknown_contents: policy for clicks on contents missing from the catalogue.
        duplicates: policy for exact duplicate rows (same user, content, timestamp).
        published_at: publication time (int64 seconds) indexed by content id, or None; a click with
            ``timestamp < published_at`` of its content is an error or a counted drop.
        before_publication: policy for such clicks.
        contents_source: file or source name of the content table (named in that error).
        timestamp_format: ``strftime`` format of text timestamps that are neither ISO 8601 nor Unix
            seconds (see :func:`to_unix_seconds`).
        policy_prefix: config path of the policies, named in the errors that suggest one
            (``"dataset.loader."`` -> ``set dataset.loader.unknown_contents=drop``).

    Returns:
        The canonical click table, timestamp as int64 seconds, sorted by (timestamp, user_id).
    """
    # A misspelled policy ("warn", "ignore") would otherwise silently act as "drop".
    policies = {"unknown_contents": unknown_contents, "duplicates": duplicates, "before_publication": before_publication}
    for arg, value in policies.items():
        if value not in ("error", "drop"):
            raise ValueError(f"{arg} must be 'error' or 'drop', got {value!r}")
    _require_columns(clicks, CLICK_COLUMNS, source)
    for col in (USER_ID, CONTENT_ID):
        _require_no_nulls(clicks, col, source)
    keep = [c for c in (*CLICK_COLUMNS, TRAFFIC_SOURCE) if c in clicks.columns]
    out = clicks[keep].copy()
    dropped: dict[str, int] = {}  # this file's drops, for the message when none is left
    out[TIMESTAMP] = to_unix_seconds(out[TIMESTAMP], source, timestamp_format=timestamp_format)

    dup = out.duplicated(subset=list(CLICK_COLUMNS))
    if dup.any():
        if duplicates == "error":
            raise DataValidationError(
                f"{source}: {int(dup.sum())} duplicate click row(s) (same user_id, content_id, timestamp)"
            )
        report.count("duplicate click rows dropped", int(dup.sum()))
        dropped[f"{int(dup.sum())} duplicate rows ({policy_prefix}duplicates=drop)"] = int(dup.sum())
        out = out[~dup]

    if known_contents is not None:
        unknown = ~out[CONTENT_ID].isin(known_contents)
        if unknown.any():
            examples = out.loc[unknown, CONTENT_ID].unique()[:5].tolist()
            if unknown_contents == "error":
                raise DataValidationError(
                    f"{source}: {int(unknown.sum())} click(s) on content_id(s) absent from the contents "
                    f"table, e.g. {examples}; fix the tables or set {policy_prefix}unknown_contents=drop"
                )
            report.count("clicks on contents absent from the contents table dropped", int(unknown.sum()))
            dropped[f"{int(unknown.sum())} on contents absent from the contents table ({policy_prefix}unknown_contents=drop)"] = 1
            out = out[~unknown]
    if published_at is not None and len(out):
        published = published_at.reindex(out[CONTENT_ID]).to_numpy()
        early = out[TIMESTAMP].to_numpy() < published  # NaN (content unknown to published_at) is never early
        if early.any():
            if before_publication == "error":
                first = int(np.flatnonzero(early)[0])  # the first offending row in file order
                user, content, ts = (out[c].iloc[[first]].tolist()[0] for c in (USER_ID, CONTENT_ID, TIMESTAMP))
                raise DataValidationError(
                    f"{source}: {int(early.sum())} click(s) before their content's publication "
                    f"(column '{PUBLISHED_AT}' of {contents_source}), e.g. row {out.index[first]}: "
                    f"user_id={user!r}, content_id={content!r}, timestamp={ts} < "
                    f"published_at={int(published[first])}; fix the tables or set {policy_prefix}before_publication=drop"
                )
            report.count("clicks before their content's publication dropped", int(early.sum()))
            dropped[f"{int(early.sum())} before their content's publication ({policy_prefix}before_publication=drop; "
                    f"is '{PUBLISHED_AT}' of {contents_source} in Unix seconds like the clicks?)"] = 1
            out = out[~early]
    if len(out) == 0:
        why = f": of {len(clicks)} rows, dropped " + "; ".join(dropped) if dropped else ""
        raise DataValidationError(f"{source}: no clicks left after validation{why}")
    return out.sort_values([TIMESTAMP, USER_ID], kind="stable").reset_index(drop=True)


def _is_missing(value: Any) -> bool:
    """True for scalar missing markers: None, NaN, pd.NA, NaT (string dtypes may use pd.NA)."""
    return not isinstance(value, (list, tuple, np.ndarray, str)) and bool(pd.isna(value))


def _as_list(value: Any, sep: str) -> list:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [v for v in value if not _is_missing(v)]
    if _is_missing(value):
        return []
    if isinstance(value, str):
        # Whitespace around separators ("a | b") is formatting, not part of the value.
        return [v.strip() for v in value.split(sep) if v.strip() != ""]
    return [value]


def validate_contents(
    contents: pd.DataFrame,
    side_info: dict[str, FieldKind],
    source: str,
    list_separator: str = "|",
    timestamp_format: str | None = None,
) -> pd.DataFrame:
    """Validate a content table: unique non-null ids, every declared side-info column present.

    Multi-valued fields may arrive as lists or as ``list_separator``-joined strings (CSV); they are
    returned as Python lists. Missing single values become the category ``"<unknown>"``. An optional
    ``published_at`` column is kept, converted like click timestamps to int64 Unix seconds, and an
    optional ``title`` column (text shown to people, e.g. in W&B's sample-users table; not a feature).
    """
    _require_columns(contents, [CONTENT_ID, *side_info], source)
    _require_no_nulls(contents, CONTENT_ID, source)
    dup = contents[CONTENT_ID].duplicated()
    if dup.any():
        raise DataValidationError(
            f"{source}: column '{CONTENT_ID}' has {int(dup.sum())} duplicate id(s), "
            f"e.g. {contents.loc[dup, CONTENT_ID].head(3).tolist()}; one row per content expected"
        )
    bad_kinds = {k: v for k, v in side_info.items() if v not in ("single", "multi")}
    if bad_kinds:
        raise DataValidationError(f"{source}: side_info kinds must be 'single' or 'multi', got {bad_kinds}")
    if PUBLISHED_AT in side_info:
        raise DataValidationError(
            f"{source}: column '{PUBLISHED_AT}' is the publication time, not a side-info field; remove it from side_info"
        )
    has_published = PUBLISHED_AT in contents.columns
    title = [TITLE] if TITLE in contents.columns and TITLE not in side_info else []
    out = contents[[CONTENT_ID, *side_info, *([PUBLISHED_AT] if has_published else []), *title]].copy()
    if title:
        out[TITLE] = out[TITLE].astype(object).where(out[TITLE].notna(), "").astype(str)
    if has_published:
        out[PUBLISHED_AT] = to_unix_seconds(out[PUBLISHED_AT], source, column=PUBLISHED_AT,
                                            timestamp_format=timestamp_format)
    for col, kind in side_info.items():
        if kind == "multi":
            out[col] = [_as_list(v, list_separator) for v in out[col]]
        else:
            out[col] = out[col].astype(object).where(out[col].notna(), "<unknown>")
    return out.reset_index(drop=True)


def validate_users(users: pd.DataFrame, source: str) -> pd.DataFrame:
    """Validate a user table: unique non-null ``user_id``; other columns are free attributes."""
    _require_columns(users, [USER_ID], source)
    _require_no_nulls(users, USER_ID, source)
    dup = users[USER_ID].duplicated()
    if dup.any():
        raise DataValidationError(
            f"{source}: column '{USER_ID}' has {int(dup.sum())} duplicate id(s), "
            f"e.g. {users.loc[dup, USER_ID].head(3).tolist()}; one row per user expected"
        )
    return users.reset_index(drop=True)


def build_dataset(
    name: str,
    clicks: pd.DataFrame,
    contents: pd.DataFrame,
    users: pd.DataFrame | None,
    side_info: dict[str, FieldKind],
    diversity_fields: dict[str, str],
    sources: dict[str, str] | None = None,
    unknown_contents: Literal["error", "drop"] = "error",
    duplicates: Literal["error", "drop"] = "drop",
    truth: dict[str, Any] | None = None,
    list_separator: str = "|",
    before_publication: Literal["error", "drop"] = "error",
    timestamp_format: str | None = None,
    policy_prefix: str = "",
) -> FeedDataset:
    """Validate three raw tables together and return a :class:`FeedDataset`.

    Users who click but are absent from the user table are added with null attributes (counted in
    the report); ``sources`` maps ``clicks|contents|users`` to file names for error messages;
    ``list_separator`` splits multi-valued side info given as strings (CSV); ``timestamp_format``
    reads text timestamps that are neither ISO 8601 nor Unix seconds. When the content table
    has ``published_at``, clicks before their content's publication are an error or, with
    ``before_publication="drop"``, a counted drop. ``policy_prefix`` is the config path of these
    policies, named in the errors that suggest one.
    """
    sources = {"clicks": f"{name}/clicks", "contents": f"{name}/contents", "users": f"{name}/users", **(sources or {})}
    report = ValidationReport(source=name)
    contents_v = validate_contents(contents, side_info, sources["contents"], list_separator, timestamp_format)
    missing_div = {k: v for k, v in diversity_fields.items() if v not in contents_v.columns}
    if missing_div:
        raise DataValidationError(
            f"{sources['contents']}: diversity field(s) {missing_div} name columns that are not side-info "
            f"columns {list(side_info)}"
        )
    published = (
        pd.Series(contents_v[PUBLISHED_AT].to_numpy(), index=contents_v[CONTENT_ID])
        if PUBLISHED_AT in contents_v.columns
        else None
    )
    clicks_v = validate_clicks(
        clicks, sources["clicks"], report, pd.Index(contents_v[CONTENT_ID]), unknown_contents, duplicates,
        published_at=published, before_publication=before_publication, contents_source=sources["contents"],
        timestamp_format=timestamp_format, policy_prefix=policy_prefix,
    )  # fmt: skip
    if users is None:
        users = pd.DataFrame({USER_ID: pd.unique(clicks_v[USER_ID])})
    users_v = validate_users(users, sources["users"])
    absent = pd.Index(pd.unique(clicks_v[USER_ID])).difference(pd.Index(users_v[USER_ID]))
    if len(absent):
        report.count("users added from clicks (absent from the user table, attributes null)", len(absent))
        users_v = pd.concat([users_v, pd.DataFrame({USER_ID: absent.to_numpy()})], ignore_index=True)
    return FeedDataset(
        name=name,
        clicks=clicks_v,
        contents=contents_v,
        users=users_v,
        side_info=dict(side_info),
        diversity_fields=dict(diversity_fields),
        truth=truth,
        report=report,
    )
