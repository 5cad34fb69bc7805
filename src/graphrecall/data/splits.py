"""Train / validation / test folds: temporal, rolling-origin (a backtest over K windows), intervened
(DICE protocol) and predefined.

Every split returns two :class:`Fold` objects, ``val`` (for every model selection) and ``test``.
A fold has

* ``train``: the clicks graphs are built from and models are trained on (the window);
* ``history``: every click visible at the cut (triggers, training-item filtering); ``train`` is a
  subset of it (temporal: ``history`` also holds clicks older than the window);
* ``targets``: what is evaluated, one row per (user, content), without contents the user had
  already clicked in ``history`` (those re-clicks are counted in ``info``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from graphrecall.data.schema import (
    CONTENT_ID,
    PUBLISHED_AT,
    TIMESTAMP,
    USER_ID,
    DataValidationError,
    FeedDataset,
)

log = logging.getLogger(__name__)
DAY = 86_400


@dataclass
class Fold:
    """One evaluation fold; frames carry the integer codes ``u`` (user row) and ``i`` (content row)."""

    name: str
    train: pd.DataFrame
    history: pd.DataFrame
    targets: pd.DataFrame
    cut: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "fold": self.name,
            "train_clicks": len(self.train),
            "history_clicks": len(self.history),
            "target_pairs": len(self.targets),
            "target_users": int(self.targets["u"].nunique()),
            "cut": None if self.cut is None else str(pd.to_datetime(self.cut, unit="s")),
            **self.info,
        }


def encode_clicks(dataset: FeedDataset, clicks: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add integer columns ``u`` (row in ``dataset.users``) and ``i`` (row in ``dataset.contents``)."""
    clicks = dataset.clicks if clicks is None else clicks
    u = pd.Index(dataset.users[USER_ID]).get_indexer(clicks[USER_ID])
    i = pd.Index(dataset.contents[CONTENT_ID]).get_indexer(clicks[CONTENT_ID])
    if (u < 0).any() or (i < 0).any():
        raise DataValidationError(
            f"{dataset.name}: {int((u < 0).sum())} click(s) with unknown user_id and {int((i < 0).sum())} "
            "with unknown content_id; validate the tables with build_dataset first"
        )
    return clicks.assign(u=u.astype(np.int64), i=i.astype(np.int64))


def target_pairs(clicks: pd.DataFrame, history: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """One row per (user, content) of the target clicks, first click kept, seen pairs removed."""
    first = clicks.sort_values(TIMESTAMP, kind="stable").drop_duplicates(["u", "i"])
    seen = pd.MultiIndex.from_frame(history[["u", "i"]]).unique()
    is_seen = pd.MultiIndex.from_frame(first[["u", "i"]]).isin(seen)
    info = {
        "target_clicks": len(clicks),
        "target_repeat_clicks_merged": len(clicks) - len(first),
        "target_pairs_already_in_history_removed": int(is_seen.sum()),
    }
    return first[~is_seen].reset_index(drop=True), info


def _parse_time(value: str | int | float, what: str) -> int:
    # Numbers are Unix seconds (pd.Timestamp would read a float as nanoseconds).
    if isinstance(value, (int, float, np.integer, np.floating)):
        return int(value)
    try:
        return int(pd.Timestamp(value, tz="UTC").timestamp())
    except (ValueError, TypeError) as e:
        raise ValueError(f"split.{what}={value!r} is not a Unix time or an ISO date") from e


def _nonempty(frame: pd.DataFrame, what: str, lo: int, hi: int, data_range: tuple[int, int]) -> None:
    if len(frame) == 0:
        fmt = lambda s: str(pd.to_datetime(s, unit="s"))  # noqa: E731
        raise DataValidationError(
            f"split: the {what} window [{fmt(lo)}, {fmt(hi)}) selects no clicks; the clicks span "
            f"[{fmt(data_range[0])}, {fmt(data_range[1])}]: change split.cut / cut_quantile / "
            "window_days / val_days / test_days"
        )


def temporal_folds(
    clicks: pd.DataFrame,
    window_days: float | None = 15,
    test_days: float | None = 3,
    val_days: float = 3,
    cut: str | int | None = None,
    cut_quantile: float | None = None,
    end: int | None = None,
) -> dict[str, Fold]:
    """Temporal split: training window of ``window_days`` ending at the cut, test after it.

    The cut is ``cut`` if given, else the ``cut_quantile`` of click times, else ``test_days``
    before the last click. Validation is carved the same way ``val_days`` before the cut: its window
    ends at ``cut - val_days`` and its targets are the clicks in ``[cut - val_days, cut)``.

    Args:
        clicks: encoded clicks (with ``u``, ``i``).
        window_days: training window length (None: all clicks before the cut).
        test_days: test period length (None: everything after the cut).
        val_days: validation period length.
        cut: ISO date or Unix seconds.
        cut_quantile: quantile of click timestamps used as the cut when ``cut`` is None.
        end: the end of the test period (Unix seconds, exclusive); overrides ``test_days``.
    """
    ts = clicks[TIMESTAMP].to_numpy(np.int64)
    data_range = (int(ts.min()), int(ts.max()))
    if cut is not None:
        t_cut = _parse_time(cut, "cut")
    elif cut_quantile is not None:
        t_cut = int(np.quantile(ts, cut_quantile))
    else:
        if test_days is None:
            raise ValueError("split: give cut, cut_quantile or test_days")
        t_cut = data_range[1] + 1 - int(test_days * DAY)
    t_end = (int(end) if end is not None else data_range[1] + 1 if test_days is None
             else t_cut + int(test_days * DAY))

    folds = {}
    for name, fold_cut, fold_end in (("val", t_cut - int(val_days * DAY), t_cut), ("test", t_cut, t_end)):
        start = -(2**62) if window_days is None else fold_cut - int(window_days * DAY)
        history = clicks[ts < fold_cut]
        train = clicks[(ts >= start) & (ts < fold_cut)]
        target_clicks = clicks[(ts >= fold_cut) & (ts < fold_end)]
        _nonempty(train, f"{name} training", max(start, data_range[0]), fold_cut, data_range)
        _nonempty(target_clicks, f"{name} target", fold_cut, fold_end, data_range)
        targets, info = target_pairs(target_clicks, history)
        folds[name] = Fold(name, train.reset_index(drop=True), history.reset_index(drop=True), targets,
                           cut=fold_cut, info=info)
    return folds


def rolling_origins(timestamps: np.ndarray, windows: int, first_cut_quantile: float | None = None,
                    spacing_quantile: float | None = None, spacing_days: float | None = None) -> list[tuple[int, int]]:
    """The (cut, end) of each of ``windows`` consecutive test periods of a rolling-origin backtest.

    With ``spacing_days``, the periods are the last ``windows`` x ``spacing_days`` days of the log,
    ``spacing_days`` each; else they are slices of the clicks' time line by quantile: window ``k``
    tests ``[q(f + k s), q(f + (k + 1) s))``, ``f = first_cut_quantile``, ``s = spacing_quantile``
    (the last period runs to the last click when ``f + windows s`` reaches 1). The periods never
    overlap, so a user's clicks are a target in at most one window each.

    Args:
        timestamps: [E] click times (Unix seconds).
        windows: K >= 1.

    Returns:
        K (cut, end) pairs, Unix seconds, ``end`` exclusive, in time order.
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    last = int(ts.max()) + 1
    if isinstance(windows, bool) or not isinstance(windows, (int, np.integer)) or windows < 1:
        raise ValueError(f"split.rolling.windows={windows!r}: expected a whole number >= 1")
    if spacing_days is not None:
        if spacing_days <= 0:
            raise ValueError(f"split.rolling.spacing_days={spacing_days}: expected > 0")
        step = int(round(spacing_days * DAY))
        cuts = [last - (windows - k) * step for k in range(windows + 1)]
    else:
        if first_cut_quantile is None or spacing_quantile is None:
            raise ValueError("split.rolling needs spacing_days, or first_cut_quantile and spacing_quantile")
        if not 0.0 < first_cut_quantile < 1.0 or spacing_quantile <= 0.0:
            raise ValueError(f"split.rolling.first_cut_quantile={first_cut_quantile} must be in (0, 1) and "
                             f"spacing_quantile={spacing_quantile} > 0")
        top = first_cut_quantile + windows * spacing_quantile
        if top > 1.0 + 1e-9:
            raise ValueError(f"split.rolling: first_cut_quantile + windows x spacing_quantile = {top:g} > 1: the last "
                             "window would end after the last click")
        # rounded, so that 0.4 + 4 x 0.05 is the 0.6 of a design starting there (the same cut to the second)
        qs = [round(first_cut_quantile + k * spacing_quantile, 12) for k in range(windows + 1)]
        cuts = [int(np.quantile(ts, q)) for q in qs[:-1]] + [last if qs[-1] >= 1.0 - 1e-9 else int(np.quantile(ts, qs[-1]))]
    if any(b <= a for a, b in zip(cuts, cuts[1:])):
        raise ValueError(f"split.rolling: the {windows} windows do not fit the log (cuts {cuts}): fewer windows or a "
                         "wider spacing")
    return list(zip(cuts[:-1], cuts[1:]))


def rolling_folds(clicks: pd.DataFrame, windows: int, index: int, window_days: float | None = None,
                  val_days: float = 3, first_cut_quantile: float | None = None,
                  spacing_quantile: float | None = None, spacing_days: float | None = None) -> dict[str, Fold]:
    """Window ``index`` of a rolling-origin backtest (time-series cross-validation): the temporal
    split at that window's cut (:func:`rolling_origins`), its test period ending at the next cut,
    validation ``val_days`` before the cut. Every model choice (epochs, serving grids) reads that
    window's validation fold; the test folds of the K windows are disjoint in time. A backtest is
    K runs, one per ``index`` (``experiment=backtest``); ``fold.info`` records the window."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < windows:
        raise ValueError(f"split.rolling.index={index!r}: expected a whole number in [0, {windows - 1}] "
                         f"(split.rolling.windows={windows})")
    origins = rolling_origins(clicks[TIMESTAMP].to_numpy(), windows, first_cut_quantile, spacing_quantile, spacing_days)
    cut, end = origins[index]
    folds = temporal_folds(clicks, window_days=window_days, val_days=val_days, cut=cut, end=end)
    for fold in folds.values():
        fold.info.update({"window": int(index), "windows": int(windows), "window_cut": int(cut), "window_end": int(end)})
    return folds


def weighted_sample_without_replacement(
    weights: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Indices of ``n`` draws without replacement, probabilities proportional to ``weights``.

    Efraimidis-Spirakis: keep the ``n`` largest keys ``log(U) / w``, equivalent to sequential
    weighted draws without replacement.
    """
    if n > len(weights):
        raise ValueError(f"cannot draw {n} of {len(weights)} without replacement")
    keys = np.log(rng.random(len(weights))) / np.asarray(weights, dtype=np.float64)
    return np.argpartition(-keys, n - 1)[:n] if n > 0 else np.array([], dtype=np.int64)


def intervened_folds(
    clicks: pd.DataFrame,
    intervened_fraction: float = 0.4,
    train_share: float = 0.25,
    val_share: float = 0.25,
    popularity_power: float = 1.0,
    seed: int = 0,
) -> dict[str, Fold]:
    """The DICE unbiased protocol: one global draw of interactions with weights 1/popularity^power.

    Interactions are (user, content) pairs (repeat clicks merged; the count is in ``info``). A
    fraction ``intervened_fraction`` (0.4) is drawn without replacement, split randomly into
    train / val / test shares of it (0.25 / 0.25 / 0.5 = 10% / 10% / 20% of all pairs). Models
    train on the normal 60% plus the intervened train part; validation and test are the intervened
    parts. Popularity = distinct users per content.
    """
    rng = np.random.default_rng(seed)
    pairs = clicks.sort_values(TIMESTAMP, kind="stable").drop_duplicates(["u", "i"], keep="last")
    pairs = pairs.reset_index(drop=True)
    pop = pairs["i"].map(pairs["i"].value_counts()).to_numpy(np.float64)
    n_int = int(round(intervened_fraction * len(pairs)))
    drawn = weighted_sample_without_replacement(pop ** -popularity_power, n_int, rng)
    drawn = rng.permutation(drawn)
    n_tr, n_va = int(round(train_share * n_int)), int(round(val_share * n_int))
    part = np.zeros(len(pairs), dtype=np.int8)  # 0 normal, 1 int-train, 2 int-val, 3 int-test
    part[drawn[:n_tr]] = 1
    part[drawn[n_tr : n_tr + n_va]] = 2
    part[drawn[n_tr + n_va :]] = 3
    train = pairs[part <= 1].reset_index(drop=True)
    info = {"repeat_clicks_merged": len(clicks) - len(pairs), "intervened_pairs": n_int, "seed": seed}
    folds = {}
    for name, code in (("val", 2), ("test", 3)):
        targets, tinfo = target_pairs(pairs[part == code], train)
        folds[name] = Fold(name, train, train, targets, cut=None, info={**info, **tinfo})
    return folds


def _time_span(frame: pd.DataFrame) -> str:
    fmt = lambda s: str(pd.to_datetime(s, unit="s"))  # noqa: E731
    return f"[{fmt(frame[TIMESTAMP].min())}, {fmt(frame[TIMESTAMP].max())}]"


def _check_predefined(frames: dict[str, pd.DataFrame], paths: dict[str, str] | None = None) -> None:
    """Refuse predefined files that cannot give an honest score: a test (or val) file holding the same
    clicks as another file, or lying wholly before the training clicks."""
    paths = paths or {k: f"the predefined {k} file" for k in frames}
    keys = {k: set(zip(f["u"].tolist(), f["i"].tolist(), f[TIMESTAMP].tolist())) for k, f in frames.items()}
    for a, b in (("test", "val"), ("test", "train"), ("val", "train")):
        if keys[a] == keys[b]:
            raise DataValidationError(
                f"split: {paths[a]} ({a}) holds exactly the same clicks as {paths[b]} ({b}); "
                f"expected disjoint {a} clicks (check split.predefined.files)"
            )
    for name in ("val", "test"):
        if frames[name][TIMESTAMP].max() < frames["train"][TIMESTAMP].min():
            raise DataValidationError(
                f"split: every click of {paths[name]} ({name}, {_time_span(frames[name])}) lies before the train "
                f"clicks ({_time_span(frames['train'])}); expected {name} after train (are the files swapped?)"
            )


def predefined_folds(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame,
                     paths: dict[str, str] | None = None) -> dict[str, Fold]:
    """Folds from user-given train / validation / test clicks (encoded).

    Validation targets are evaluated with ``train`` as history; test targets with train + val as
    history (val clicks act as triggers and are filtered). A test or val file equal to another
    file, lying before train, or without any new (user, content) pair is refused with the reason.

    **Files ordered in time** (every val click after every train click, every test click after
    every val click; the common case of a log cut by date) give each fold the cut they imply, as
    a temporal split does: the val fold's cut is its first click, the test fold's its first click,
    and the test fold trains on everything before its cut (train + val), so that a model refit on
    the test fold, recent popularity and the learned popularity term see the clicks up to the cut.
    **Other files** have no cut: models train on ``train`` in both folds, and what needs a moment in
    time (``model.popularity``, recency windows) is refused or off; ``fold.info["not_ordered"]``
    says why the files are not ordered.
    """
    for name, frame in (("train", train), ("val", val), ("test", test)):
        if len(frame) == 0:
            raise DataValidationError(f"split: the predefined {name} file has no clicks")
    _check_predefined({"train": train, "val": val, "test": test}, paths)
    full = pd.concat([train, val], ignore_index=True)
    not_ordered = _not_ordered_in_time({"train": train, "val": val, "test": test}, paths)
    folds = {}
    for name, hist, tgt in (("val", train, val), ("test", full, test)):
        targets, info = target_pairs(tgt, hist)
        if len(targets) == 0:
            where = (paths or {}).get(name, f"the predefined {name} file")
            raise DataValidationError(
                f"split: {where} ({name}) has no target left: every (user, content) pair of it was already clicked "
                f"in its history ({'train' if name == 'val' else 'train + val'}); expected new pairs to score"
            )
        if not_ordered:
            folds[name] = Fold(name, train.reset_index(drop=True), hist.reset_index(drop=True), targets,
                               info={**info, "not_ordered": not_ordered})
        else:  # the cut the files imply; the fold trains on everything before it
            folds[name] = Fold(name, hist.reset_index(drop=True), hist.reset_index(drop=True), targets,
                               cut=int(tgt[TIMESTAMP].min()), info=info)
    return folds


def _not_ordered_in_time(frames: dict[str, pd.DataFrame], paths: dict[str, str] | None = None) -> str | None:
    """None when every val click follows every train click and every test click every val click
    (strictly: a shared second has no cut between them); else why not, naming the files."""
    paths = paths or {k: f"the predefined {k} file" for k in frames}
    for early, late in (("train", "val"), ("val", "test")):
        last = int(frames[early][TIMESTAMP].max())
        overlap = int((frames[late][TIMESTAMP] <= last).sum())
        if overlap:
            return (f"{overlap} click(s) of {paths[late]} ({late}) are at or before the last click of {paths[early]} "
                    f"({early}, {pd.to_datetime(last, unit='s')})")
    return None


def _read_click_file(path: str, dataset: FeedDataset, timestamp_format: str | None = None,
                     unknown_contents: str = "error") -> pd.DataFrame:
    """One predefined split file, validated like the dataset's clicks and encoded; clicks on contents
    absent from the catalogue are an error or, with ``unknown_contents="drop"``, a drop counted in
    ``dataset.report``."""
    from graphrecall.data.schema import ValidationReport, read_csv_file, validate_clicks

    p = str(path)
    if p.endswith(".parquet"):
        raw = pd.read_parquet(p)
    elif p.endswith(".csv"):
        # ids read as text when the dataset's ids are text: '0157' must match '0157', not 157
        text_ids = {c: str for c, table in ((USER_ID, dataset.users), (CONTENT_ID, dataset.contents))
                    if not pd.api.types.is_numeric_dtype(table[c])}
        raw = read_csv_file(p, dtype=text_ids)
    else:
        raise DataValidationError(f"split.files: '{p}' must be a .parquet or .csv file")
    for c, table in ((USER_ID, dataset.users), (CONTENT_ID, dataset.contents)):
        if c in raw.columns and pd.api.types.is_numeric_dtype(raw[c]) != pd.api.types.is_numeric_dtype(table[c]):
            raw[c] = raw[c].map(lambda v: v if pd.isna(v) else str(int(v)) if isinstance(v, float) and v.is_integer()
                                else str(v))
            table_ids = table[c].astype(str)
            raw[c] = raw[c].map(dict(zip(table_ids, table[c]))).fillna(raw[c])
    report = dataset.report if dataset.report is not None else ValidationReport(dataset.name)
    published = None
    if PUBLISHED_AT in dataset.contents.columns:  # a predefined click before publication is an error
        published = pd.Series(dataset.contents[PUBLISHED_AT].to_numpy(), index=dataset.contents[CONTENT_ID])
    clicks = validate_clicks(
        raw, p, report, pd.Index(dataset.contents[CONTENT_ID]), unknown_contents=unknown_contents,
        published_at=published, contents_source=dataset.name, timestamp_format=timestamp_format,
        policy_prefix="dataset.split.predefined.",
    )
    unknown_users = ~clicks[USER_ID].isin(dataset.users[USER_ID])
    if unknown_users.any():
        raise DataValidationError(
            f"{p}: {int(unknown_users.sum())} click(s) by user_id(s) absent from the dataset, "
            f"e.g. {clicks.loc[unknown_users, USER_ID].head(3).tolist()}"
        )
    return encode_clicks(dataset, clicks)


def make_folds(dataset: FeedDataset, split: dict[str, Any], seed: int = 0) -> dict[str, Fold]:
    """Dispatch on ``split["kind"]`` (``temporal`` | ``rolling`` | ``intervened`` | ``predefined``).

    ``split`` is the dataset config's ``split`` block: ``kind`` plus one sub-block of arguments per
    kind (``split.temporal: {...}``, ``split.intervened: {...}``, ``split.predefined: {files:
    {train, val, test}}``), so that ``dataset.split.kind=intervened`` switches on the command line.
    A flat block (the arguments beside ``kind``) is accepted too.
    """
    split = dict(split)
    kind = split.pop("kind", "temporal")
    kinds = ("temporal", "intervened", "predefined", "rolling")
    if kind not in kinds:
        raise ValueError(f"unknown split.kind '{kind}'; expected one of {kinds}")
    params = dict(split[kind] or {}) if kind in split else {k: v for k, v in split.items() if k not in kinds}
    if kind == "temporal":
        return temporal_folds(encode_clicks(dataset), **params)
    if kind == "rolling":
        return rolling_folds(encode_clicks(dataset), **params)
    if kind == "intervened":
        params.setdefault("seed", seed)
        return intervened_folds(encode_clicks(dataset), **params)
    files = params.get("files") or {}
    missing = [k for k in ("train", "val", "test") if not files.get(k)]
    if missing:
        raise ValueError(f"split.kind=predefined needs split.predefined.files.{{train,val,test}}; missing {missing}")
    fmt = params.get("timestamp_format")
    policy = params.get("unknown_contents") or "error"
    frames = [_read_click_file(files[k], dataset, fmt, policy) for k in ("train", "val", "test")]
    return predefined_folds(*frames, paths={k: str(files[k]) for k in ("train", "val", "test")})
