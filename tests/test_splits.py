"""Train / validation / test folds (data/splits.py) on hand-made click logs.

Every expectation below is computed by hand from the tiny logs defined here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphrecall.data.schema import DataValidationError, FeedDataset, build_dataset
from graphrecall.data.splits import (
    DAY,
    encode_clicks,
    intervened_folds,
    make_folds,
    predefined_folds,
    temporal_folds,
    weighted_sample_without_replacement,
)

T0 = int(pd.Timestamp("2024-01-01", tz="UTC").timestamp())  # 1704067200
CONTENTS = ["c0", "c1", "c2", "c3", "c4"]


def at(days: float) -> int:
    return T0 + int(days * DAY)


# (user, content, day). Test cut 2024-01-15 = day 14, window 5 days, val_days 3, test_days 3:
#   test: train [9, 14), history < 14, targets [14, 17)
#   val:  train [6, 11), history < 11, targets [11, 14)
LOG = [
    ("u1", "c0", 0),  # old: history of both folds, no window
    ("u2", "c3", 6),  # exactly at val cut - window: val train; test history only
    ("u3", "c1", 8.5),  # val train; test history only
    ("u1", "c1", 9),  # exactly at test cut - window: test train
    ("u2", "c1", 11),  # exactly at val cut: val target; test train
    ("u3", "c3", 12),  # val target; test train
    ("u1", "c2", 14),  # exactly at the test cut: test target
    ("u1", "c2", 15),  # repeat of a target pair: merged
    ("u1", "c0", 15),  # pair already in history: removed
    ("u2", "c4", 16.9),  # test target
    ("u3", "c4", 17),  # exactly at cut + test_days: outside the test period
    ("u3", "c0", 19),  # last click
]


def make_dataset(log=LOG) -> FeedDataset:
    clicks = pd.DataFrame(
        {"user_id": [r[0] for r in log], "content_id": [r[1] for r in log], "timestamp": [at(r[2]) for r in log]}
    )
    contents = pd.DataFrame({"content_id": CONTENTS, "style": ["a", "b", "a", "b", "a"]})
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "gender": ["F", "M", "F"]})
    return build_dataset("hand", clicks, contents, users, {"style": "single"}, {"style": "style"})


@pytest.fixture(scope="module")
def ds() -> FeedDataset:
    return make_dataset()


def pairs(frame: pd.DataFrame, ds: FeedDataset) -> set[tuple[str, str]]:
    """(user_id, content_id) pairs of a frame with integer codes u, i."""
    uid = ds.users["user_id"].to_numpy()
    cid = ds.contents["content_id"].to_numpy()
    return set(zip(uid[frame["u"]].tolist(), cid[frame["i"]].tolist()))


def days(frame: pd.DataFrame) -> list[float]:
    return sorted(((frame["timestamp"] - T0) / DAY).tolist())


# ------------------------------------------------------------------------------------ temporal


def test_temporal_iso_cut_windows_history_and_targets(ds: FeedDataset) -> None:
    folds = temporal_folds(encode_clicks(ds), window_days=5, test_days=3, val_days=3, cut="2024-01-15")
    test, val = folds["test"], folds["val"]
    assert test.cut == at(14) and val.cut == at(11)

    assert days(test.train) == [9, 11, 12]  # the click at cut - window (day 9) is in
    assert days(test.history) == [0, 6, 8.5, 9, 11, 12]  # history reaches before the window
    assert set(map(tuple, test.train[["u", "i"]].to_numpy())) <= set(map(tuple, test.history[["u", "i"]].to_numpy()))
    # day 14 (at the cut) is a target, day 17 (cut + test_days) is not; (u1,c2) twice -> once;
    # (u1,c0) was clicked on day 0 -> removed
    assert pairs(test.targets, ds) == {("u1", "c2"), ("u2", "c4")}
    assert len(test.targets) == 2
    assert test.targets["timestamp"].tolist() == [at(14), at(16.9)]  # first click of a pair kept
    assert test.info == {
        "target_clicks": 4,
        "target_repeat_clicks_merged": 1,
        "target_pairs_already_in_history_removed": 1,
    }

    assert days(val.train) == [6, 8.5, 9]  # val window [6, 11): carved val_days before the cut
    assert days(val.history) == [0, 6, 8.5, 9]
    assert pairs(val.targets, ds) == {("u2", "c1"), ("u3", "c3")}
    assert val.info == {
        "target_clicks": 2,
        "target_repeat_clicks_merged": 0,
        "target_pairs_already_in_history_removed": 0,
    }
    d = test.describe()
    assert d["target_users"] == 2 and d["train_clicks"] == 3 and d["cut"] == "2024-01-15 00:00:00"


def test_temporal_cut_forms_agree(ds: FeedDataset) -> None:
    clicks = encode_clicks(ds)
    kw = dict(window_days=5, test_days=3, val_days=3)
    iso = temporal_folds(clicks, cut="2024-01-15", **kw)
    tz = temporal_folds(clicks, cut="2024-01-15T08:00:00+08:00", **kw)
    secs = temporal_folds(clicks, cut=at(14), **kw)
    fsecs = temporal_folds(clicks, cut=float(at(14)), **kw)  # Unix seconds as a float
    for other in (tz, secs, fsecs):
        for name in ("val", "test"):
            assert other[name].cut == iso[name].cut
            pd.testing.assert_frame_equal(other[name].targets, iso[name].targets)
    with pytest.raises(ValueError, match="split.cut="):
        temporal_folds(clicks, cut="not a date", **kw)


def test_temporal_quantile_cut(ds: FeedDataset) -> None:
    # 12 click days: 0 6 8.5 9 11 12 14 15 15 16.9 17 19 -> median (12 + 14) / 2 = day 13
    folds = temporal_folds(encode_clicks(ds), window_days=5, test_days=3, val_days=3, cut_quantile=0.5)
    assert folds["test"].cut == at(13)
    assert folds["val"].cut == at(10)
    assert days(folds["test"].train) == [8.5, 9, 11, 12]  # [8, 13)
    # targets [13, 16): (u1,c2) x2 merged, (u1,c0) already seen
    assert pairs(folds["test"].targets, ds) == {("u1", "c2")}
    assert folds["test"].info["target_pairs_already_in_history_removed"] == 1
    assert days(folds["val"].train) == [6, 8.5, 9]  # [5, 10)
    assert pairs(folds["val"].targets, ds) == {("u2", "c1"), ("u3", "c3")}  # [10, 13)


def test_temporal_default_cut_and_open_windows(ds: FeedDataset) -> None:
    # no cut: test_days before the last click (day 19) + 1 s; window None: all clicks before
    folds = temporal_folds(encode_clicks(ds), window_days=None, test_days=3, val_days=3)
    assert folds["test"].cut == at(19) + 1 - 3 * DAY
    assert len(folds["test"].train) == len(folds["test"].history) == 9  # every click before day 16 + 1 s
    folds = temporal_folds(encode_clicks(ds), window_days=5, test_days=None, val_days=3, cut="2024-01-15")
    # test period open-ended: day 17 and day 19 clicks count as targets too
    assert pairs(folds["test"].targets, ds) == {("u1", "c2"), ("u2", "c4"), ("u3", "c4"), ("u3", "c0")}


def test_temporal_empty_window_names_window_and_data_range(ds: FeedDataset) -> None:
    clicks = encode_clicks(ds)
    with pytest.raises(DataValidationError) as e:
        temporal_folds(clicks, window_days=None, test_days=3, val_days=3, cut="2024-02-01")
    msg = str(e.value)
    # val: history up to Jan 29, target window [Jan 29, Feb 1) is empty
    assert "val target window [2024-01-29 00:00:00, 2024-02-01 00:00:00)" in msg
    assert "[2024-01-01 00:00:00, 2024-01-20 00:00:00]" in msg  # the data range
    with pytest.raises(DataValidationError, match=r"val training window \[2024-01-21 00:00:00, 2024-01-26"):
        temporal_folds(clicks, window_days=5, test_days=3, val_days=3, cut="2024-01-29")


# ---------------------------------------------------------------------------------- intervened


def popular_log(num_users: int = 40) -> pd.DataFrame:
    """Every user clicks content 0 (popularity 40) and one content of their own (popularity 1):
    80 pairs, half of them on content 0; plus one repeat click."""
    rows = []
    for u in range(num_users):
        rows.append((u, 0, T0 + 10 * u))
        rows.append((u, u + 1, T0 + 10 * u + 5))
    rows.append((0, 0, T0 + 100_000))  # repeat click
    return pd.DataFrame(rows, columns=["u", "i", "timestamp"])


def test_intervened_sizes_partition_and_determinism() -> None:
    clicks = popular_log()
    folds = intervened_folds(clicks, seed=3)
    val, test = folds["val"], folds["test"]
    key = lambda f: set(map(tuple, f[["u", "i"]].to_numpy()))  # noqa: E731
    # 80 distinct pairs: 32 intervened = 8 train + 8 val + 16 test; 48 normal
    assert len(test.train) == 48 + 8 and len(val.targets) == 8 and len(test.targets) == 16
    assert val.info["intervened_pairs"] == 32 and val.info["repeat_clicks_merged"] == 1
    assert test.info["target_pairs_already_in_history_removed"] == 0
    train, tv, tt = key(test.train), key(val.targets), key(test.targets)
    assert len(train) == 56  # pairs, no duplicate
    assert not (train & tv) and not (train & tt) and not (tv & tt)
    assert train | tv | tt == key(clicks)
    assert val.train is test.train and test.history is test.train  # normal + intervened train
    again = intervened_folds(clicks, seed=3)
    other = intervened_folds(clicks, seed=4)
    pd.testing.assert_frame_equal(again["test"].targets, test.targets)
    pd.testing.assert_frame_equal(again["val"].train, val.train)
    assert key(other["test"].targets) != tt


def test_intervened_draw_favours_unpopular_items() -> None:
    # Weights 1/pop: content 0's 40 pairs weigh 1/40 each (1 in all), the 40 tail pairs 1 each.
    # At draw k (of 32) the head is taken with probability <= 1 / (1 + 40 - k), so the expected
    # number of head pairs drawn is <= sum_{j=10}^{41} 1/j = 1.47: a share <= 4.6% of the 32
    # intervened pairs, against 50% of the data. Uniform weights (power 0) give 50%.
    clicks = popular_log()
    bound = sum(1 / j for j in range(10, 42))
    assert bound == pytest.approx(1.474, abs=1e-3)

    def head_share(power: float) -> float:
        # val + test targets are a random 24 of the 32 intervened pairs: same expected share
        shares = []
        for seed in range(20):
            f = intervened_folds(clicks, popularity_power=power, seed=seed)
            drawn = pd.concat([f["val"].targets, f["test"].targets])
            assert len(drawn) == 24
            shares.append(float((drawn["i"] == 0).mean()))
        return float(np.mean(shares))

    assert head_share(1.0) < bound / 32 * 1.5  # bound 0.046 (x 1.5 for sampling noise), far below 0.5
    assert head_share(0.0) == pytest.approx(0.5, abs=0.07)  # uniform draw: the data share


def test_weighted_sample_matches_sequential_draw_probabilities() -> None:
    w = np.array([1.0, 2.0, 7.0])
    p = w / w.sum()
    # n=1: P(i) = w_i / 10
    # n=2: P(i in sample) = 1 - P({j,k}), P({j,k}) = p_j p_k/(1-p_j) + p_k p_j/(1-p_k)
    excl = [p[j] * p[k] / (1 - p[j]) + p[k] * p[j] / (1 - p[k]) for j, k in ((1, 2), (0, 2), (0, 1))]
    expected2 = 1 - np.array(excl)
    np.testing.assert_allclose(expected2, [0.358333, 0.688889, 0.952778], atol=1e-6)
    n_seeds = 6000
    count1 = np.zeros(3)
    count2 = np.zeros(3)
    for seed in range(n_seeds):
        s1 = weighted_sample_without_replacement(w, 1, np.random.default_rng(seed))
        s2 = weighted_sample_without_replacement(w, 2, np.random.default_rng(seed))
        assert len(s1) == 1 and len(s2) == 2 and len(set(s2.tolist())) == 2
        count1[s1] += 1
        count2[s2] += 1
    np.testing.assert_allclose(count1 / n_seeds, [0.1, 0.2, 0.7], atol=0.025)
    np.testing.assert_allclose(count2 / n_seeds, expected2, atol=0.025)
    assert len(weighted_sample_without_replacement(w, 0, np.random.default_rng(0))) == 0
    assert sorted(weighted_sample_without_replacement(w, 3, np.random.default_rng(0)).tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="cannot draw 4 of 3"):
        weighted_sample_without_replacement(w, 4, np.random.default_rng(0))


# ---------------------------------------------------------------------------------- predefined


def test_predefined_folds_histories_and_targets(ds: FeedDataset) -> None:
    enc = lambda rows: encode_clicks(  # noqa: E731
        ds, pd.DataFrame(rows, columns=["user_id", "content_id", "timestamp"])
    )
    train = enc([("u1", "c0", at(1)), ("u2", "c1", at(2))])
    val = enc([("u1", "c0", at(3)), ("u1", "c2", at(3)), ("u3", "c3", at(4))])
    test = enc([("u1", "c2", at(5)), ("u2", "c4", at(6)), ("u2", "c4", at(7))])
    folds = predefined_folds(train, val, test)
    # ordered in time: the cuts the files imply, and the test fold trains on everything before its cut
    assert (folds["val"].cut, folds["test"].cut) == (at(3), at(5))
    assert len(folds["val"].train) == 2 and len(folds["test"].train) == 5
    # not ordered (a val click in the train period): no cut, models train on train only, and why
    late_train = enc([("u1", "c0", at(1)), ("u2", "c1", at(3))])
    unordered = predefined_folds(late_train, val, test)
    assert unordered["val"].cut is None and unordered["test"].cut is None
    assert len(unordered["val"].train) == len(unordered["test"].train) == 2
    assert unordered["val"].info["not_ordered"].startswith("2 click(s) of the predefined val file (val) are at or "
                                                           "before the last click of the predefined train file (train")
    assert pairs(folds["val"].targets, ds) == {("u1", "c2"), ("u3", "c3")}  # (u1,c0) seen in train
    assert folds["val"].info["target_pairs_already_in_history_removed"] == 1
    assert len(folds["test"].history) == 5  # train + val
    assert pairs(folds["test"].targets, ds) == {("u2", "c4")}  # (u1,c2) seen in val
    assert folds["test"].info["target_repeat_clicks_merged"] == 1
    with pytest.raises(DataValidationError, match="predefined val file has no clicks"):
        predefined_folds(train, val.iloc[:0], test)


def write(path: Path, rows: list[tuple]) -> str:
    df = pd.DataFrame(rows, columns=["user_id", "content_id", "timestamp"])
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return str(path)


def test_make_folds_predefined_files(tmp_path: Path, ds: FeedDataset) -> None:
    files = {
        "train": write(tmp_path / "train.csv", [("u1", "c0", at(1)), ("u2", "c1", at(2))]),
        "val": write(tmp_path / "val.parquet", [("u1", "c2", at(3))]),
        "test": write(tmp_path / "test.csv", [("u1", "c2", at(5)), ("u3", "c4", at(6))]),
    }
    folds = make_folds(ds, {"kind": "predefined", "files": files})
    assert pairs(folds["val"].targets, ds) == {("u1", "c2")}
    assert pairs(folds["test"].targets, ds) == {("u3", "c4")}
    assert pairs(folds["test"].history, ds) == {("u1", "c0"), ("u2", "c1"), ("u1", "c2")}

    bad = write(tmp_path / "bad_test.csv", [("u1", "c2", at(5)), ("stranger", "c4", at(6))])
    with pytest.raises(DataValidationError, match=r"bad_test\.csv: 1 click\(s\) by user_id.*stranger"):
        make_folds(ds, {"kind": "predefined", "files": {**files, "test": bad}})
    with pytest.raises(ValueError, match=r"missing \['test'\]"):
        make_folds(ds, {"kind": "predefined", "files": {"train": files["train"], "val": files["val"]}})
    with pytest.raises(DataValidationError, match="must be a .parquet or .csv"):
        make_folds(ds, {"kind": "predefined", "files": {**files, "val": str(tmp_path / "val.json")}})


def test_make_folds_dispatch(ds: FeedDataset) -> None:
    with pytest.raises(ValueError, match="unknown split.kind 'random'"):
        make_folds(ds, {"kind": "random"})
    folds = make_folds(ds, {"kind": "temporal", "window_days": 5, "test_days": 3, "val_days": 3, "cut": "2024-01-15"})
    assert pairs(folds["test"].targets, ds) == {("u1", "c2"), ("u2", "c4")}
    a = make_folds(ds, {"kind": "intervened"}, seed=1)
    b = make_folds(ds, {"kind": "intervened", "seed": 1}, seed=99)  # explicit seed wins
    assert a["test"].info["seed"] == b["test"].info["seed"] == 1
    pd.testing.assert_frame_equal(a["test"].targets, b["test"].targets)


def test_predefined_files_that_cannot_score_honestly_are_refused(tmp_path: Path, ds: FeedDataset) -> None:
    train_rows = [("u1", "c0", at(5)), ("u2", "c1", at(6))]
    val_rows = [("u1", "c2", at(7))]
    test_rows = [("u1", "c3", at(8)), ("u3", "c4", at(9))]
    files = {"train": write(tmp_path / "train.csv", train_rows), "val": write(tmp_path / "val.csv", val_rows),
             "test": write(tmp_path / "test.csv", test_rows)}
    make_folds(ds, {"kind": "predefined", "files": files})  # a sound split passes
    # test file = val file (same path, or a copy)
    with pytest.raises(DataValidationError, match=r"val\.csv \(test\) holds exactly the same clicks as .*val\.csv \(val\)"):
        make_folds(ds, {"kind": "predefined", "files": {**files, "test": files["val"]}})
    copy = write(tmp_path / "copy_of_train.csv", train_rows)
    with pytest.raises(DataValidationError, match=r"copy_of_train\.csv \(test\) holds exactly the same clicks as "
                                                  r".*train\.csv \(train\)"):
        make_folds(ds, {"kind": "predefined", "files": {**files, "test": copy}})
    # test lies wholly before train
    early = write(tmp_path / "early.csv", [("u1", "c3", at(1)), ("u3", "c4", at(2))])
    with pytest.raises(DataValidationError, match=r"early\.csv \(test, .*\) lies before the train clicks"):
        make_folds(ds, {"kind": "predefined", "files": {**files, "test": early}})
    # every test pair already clicked: no target (would give NaN metrics)
    seen = write(tmp_path / "seen.csv", [("u1", "c0", at(9)), ("u1", "c2", at(9))])
    with pytest.raises(DataValidationError, match=r"seen\.csv \(test\) has no target left"):
        make_folds(ds, {"kind": "predefined", "files": {**files, "test": seen}})


def test_predefined_csv_keeps_zero_padded_string_ids(tmp_path: Path) -> None:
    clicks = pd.DataFrame({"user_id": ["007", "7"], "content_id": ["0157", "157"], "timestamp": [at(1), at(2)]})
    contents = pd.DataFrame({"content_id": ["0157", "157"], "style": ["a", "b"]})
    dsz = build_dataset("pad", clicks, contents, None, {"style": "single"}, {"style": "style"})
    rows = lambda r: [("007", "0157", at(r)), ("7", "157", at(r))]  # noqa: E731
    files = {"train": write(tmp_path / "train.csv", rows(1)),
             "val": write(tmp_path / "val.csv", [("007", "157", at(3))]),
             "test": write(tmp_path / "test.csv", [("7", "0157", at(5))])}
    folds = make_folds(dsz, {"kind": "predefined", "files": files})
    assert pairs(folds["test"].targets, dsz) == {("7", "0157")}
    assert pairs(folds["val"].targets, dsz) == {("007", "157")}


def test_predefined_files_read_their_timestamp_format(tmp_path: Path, ds: FeedDataset) -> None:
    day = lambda d: pd.Timestamp(at(d), unit="s").strftime("%d/%m/%Y")  # noqa: E731
    files = {"train": write(tmp_path / "train.csv", [("u1", "c0", day(1)), ("u2", "c1", day(2))]),
             "val": write(tmp_path / "val.csv", [("u1", "c2", day(3))]),
             "test": write(tmp_path / "test.csv", [("u1", "c3", day(5)), ("u3", "c4", day(6))])}
    with pytest.raises(DataValidationError, match="train.csv: column 'timestamp'.*ambiguous.*timestamp_format"):
        make_folds(ds, {"kind": "predefined", "files": files})
    folds = make_folds(ds, {"kind": "predefined", "predefined": {"files": files, "timestamp_format": "%d/%m/%Y"}})
    assert folds["test"].targets["u"].nunique() == 2


def test_predefined_unknown_contents_follow_the_split_policy(tmp_path: Path, ds: FeedDataset) -> None:
    files = {"train": write(tmp_path / "train.csv", [("u1", "c0", at(1)), ("u2", "c1", at(2)), ("u2", "gone", at(2))]),
             "val": write(tmp_path / "val.csv", [("u1", "c2", at(3))]),
             "test": write(tmp_path / "test.csv", [("u1", "c3", at(5)), ("u3", "gone", at(6)), ("u3", "c4", at(6))])}
    with pytest.raises(DataValidationError, match=r"train\.csv: 1 click\(s\) on content_id\(s\) absent .*'gone'.*"
                                                  r"set dataset\.split\.predefined\.unknown_contents=drop"):
        make_folds(ds, {"kind": "predefined", "predefined": {"files": files}})
    before = dict(ds.report.counts)
    folds = make_folds(ds, {"kind": "predefined", "predefined": {"files": files, "unknown_contents": "drop"}})
    assert pairs(folds["test"].targets, ds) == {("u1", "c3"), ("u3", "c4")}
    dropped = "clicks on contents absent from the contents table dropped"
    assert ds.report.counts.get(dropped, 0) - before.get(dropped, 0) == 2  # one in train, one in test: counted


def test_predefined_csv_row_with_an_extra_field_names_the_line(tmp_path: Path, ds: FeedDataset) -> None:
    files = {"train": write(tmp_path / "train.csv", [("u1", "c0", at(1)), ("u2", "c1", at(2))]),
             "val": write(tmp_path / "val.csv", [("u1", "c2", at(3))]),
             "test": str(tmp_path / "test.csv")}
    Path(files["test"]).write_text(f"user_id,content_id,timestamp\nu1,c3,{at(5)},oops\nu3,c4,{at(6)}\n")
    with pytest.raises(DataValidationError, match=r"test\.csv: line 2 has 4 fields but the header has 3"):
        make_folds(ds, {"kind": "predefined", "files": files})


def test_predefined_parquet_with_text_ids_matches_an_integer_dataset(tmp_path: Path) -> None:
    # synthetic and MovieLens ids are integers; a parquet split file may hold them as text ("12")
    clicks = pd.DataFrame({"user_id": [1, 2, 3, 1], "content_id": [10, 11, 12, 12],
                           "timestamp": [at(1), at(2), at(3), at(4)]})
    contents = pd.DataFrame({"content_id": [10, 11, 12], "style": ["a", "b", "a"]})
    dsi = build_dataset("ints", clicks, contents, None, {"style": "single"}, {"style": "style"})
    text = lambda rows: pd.DataFrame(rows, columns=["user_id", "content_id", "timestamp"])  # noqa: E731
    files = {}
    for name, rows in (("train", [("1", "10", at(1)), ("2", "11", at(2))]), ("val", [("1", "11", at(3))]),
                       ("test", [("2", "12", at(5)), ("3", "10", at(6))])):
        text(rows).to_parquet(tmp_path / f"{name}.parquet", index=False)
        files[name] = str(tmp_path / f"{name}.parquet")
    folds = make_folds(dsi, {"kind": "predefined", "files": files})
    assert pairs(folds["test"].targets, dsi) == {(2, 12), (3, 10)}
    assert pairs(folds["val"].targets, dsi) == {(1, 11)}
