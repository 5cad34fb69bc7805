"""Validation of the canonical tables (schema.py) and of your own files (custom.py).

Every error case checks the error type and that the message names the file and the column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from graphrecall.data.custom import load_custom
from graphrecall.data.schema import DataValidationError, build_dataset, to_unix_seconds

T0 = 1_600_000_000  # 2020-09-13T12:26:40Z
SIDE_INFO = {"style": "single", "products": "multi"}
DIVERSITY = {"style": "style"}

CONTENTS_CSV = "content_id,style,products\n10,modern,sofa|lamp\n11,nordic,12\n12,,\n"
USERS_CSV = "user_id,gender\n1,F\n2,M\n"


def clicks_csv(*rows: str, header: str = "user_id,content_id,timestamp") -> str:
    return "\n".join([header, *rows]) + "\n"


GOOD_CLICKS = clicks_csv(f"1,10,{T0}", f"1,11,{T0 + 60}", f"2,10,{T0 + 120}")


def write_folder(tmp_path: Path, clicks: str = GOOD_CLICKS, contents: str = CONTENTS_CSV, users: str | None = USERS_CSV) -> Path:
    (tmp_path / "clicks.csv").write_text(clicks)
    (tmp_path / "contents.csv").write_text(contents)
    if users is not None:
        (tmp_path / "users.csv").write_text(users)
    return tmp_path


def load(folder: Path, **kwargs: object):
    return load_custom(folder, side_info=SIDE_INFO, diversity_fields=DIVERSITY, **kwargs)


# ----------------------------------------------------------------------------------- happy path


def test_valid_csv_folder_loads(tmp_path: Path) -> None:
    ds = load(write_folder(tmp_path))
    assert ds.name == "custom"
    assert ds.clicks.columns.tolist() == ["user_id", "content_id", "timestamp"]
    assert ds.clicks["timestamp"].tolist() == [T0, T0 + 60, T0 + 120]
    assert ds.clicks["timestamp"].dtype == "int64"
    assert ds.users["user_id"].tolist() == ["1", "2"]  # CSV ids are text unless declared numeric
    assert load(write_folder(tmp_path), numeric_ids=True).users["user_id"].tolist() == [1, 2]
    assert ds.report.counts == {}


def test_csv_multi_valued_field_parsing(tmp_path: Path) -> None:
    ds = load(write_folder(tmp_path))
    products = dict(zip(ds.contents["content_id"], ds.contents["products"]))
    # A lone "12" stays the string "12", like the elements of "sofa|lamp"; blank -> empty list.
    assert products == {"10": ["sofa", "lamp"], "11": ["12"], "12": []}
    assert ds.contents["style"].tolist() == ["modern", "nordic", "<unknown>"]


def test_csv_multi_valued_custom_separator_and_spaces(tmp_path: Path) -> None:
    contents = "content_id,style,products\n10,modern,sofa ; lamp\n11,nordic,rug\n12,x,\n"
    ds = load(write_folder(tmp_path, contents=contents), list_separator=";")
    assert ds.contents["products"].tolist() == [["sofa", "lamp"], ["rug"], []]


def test_parquet_folder_with_list_columns_and_mixed_id_types(tmp_path: Path) -> None:
    # Contents as parquet with string ids, clicks as CSV (integer ids): compared as strings.
    pd.DataFrame(
        {"content_id": ["10", "11", "12"], "style": ["a", "b", None], "products": [["p1", "p2"], [], None]}
    ).to_parquet(tmp_path / "contents.parquet")
    (tmp_path / "clicks.csv").write_text(GOOD_CLICKS)
    ds = load(tmp_path)
    assert ds.contents["products"].tolist() == [["p1", "p2"], [], []]
    assert ds.clicks["content_id"].tolist() == ["10", "11", "10"]
    # No users table: users come from the clicks, nothing reported as added.
    assert sorted(ds.users["user_id"]) == ["1", "2"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-09-13T12:26:40Z", T0),
        ("2020-09-13 12:26:40", T0),  # naive -> UTC
        ("2020-09-13T14:26:40+02:00", T0),
        ("2020-09-13T12:26:40.999Z", T0),  # fractions floor to the second
    ],
)
def test_iso_string_timestamps_exact_seconds(tmp_path: Path, text: str, expected: int) -> None:
    ds = load(write_folder(tmp_path, clicks=clicks_csv(f"1,10,{text}", "2,11,2020-09-13T12:27:41Z")))
    assert ds.clicks["timestamp"].tolist() == [expected, T0 + 61]


def test_datetime_column_converted_to_seconds() -> None:
    values = pd.Series(pd.to_datetime(["2020-09-13T12:26:40"]))
    assert to_unix_seconds(values, "x").tolist() == [T0]
    aware = pd.Series(pd.to_datetime(["2020-09-13T14:26:40+02:00"]))
    assert to_unix_seconds(aware, "x").tolist() == [T0]


# ----------------------------------------------------------------------------------- error cases


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, clicks="user_id,content_id\n1,10\n")
    with pytest.raises(DataValidationError) as err:
        load(folder)
    msg = str(err.value)
    assert "clicks.csv" in msg and "missing column(s) ['timestamp']" in msg


@pytest.mark.parametrize("misspelled", ["contentid", "Content_ID", "content-id"])
def test_misspelled_column_gets_hint(tmp_path: Path, misspelled: str) -> None:
    folder = write_folder(tmp_path, clicks=clicks_csv(f"1,10,{T0}", header=f"user_id,{misspelled},timestamp"))
    with pytest.raises(DataValidationError) as err:
        load(folder)
    msg = str(err.value)
    assert "clicks.csv" in msg and "'content_id'" in msg
    assert f"'{misspelled}' looks like 'content_id'" in msg


def test_misspelled_side_info_column_in_contents(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, contents="content_id,Style,products\n10,a,b\n")
    with pytest.raises(DataValidationError) as err:
        load(folder)
    msg = str(err.value)
    assert "contents.csv" in msg and "'Style' looks like 'style'" in msg


def test_null_ids(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, clicks=clicks_csv(f"1,10,{T0}", f",11,{T0}"))
    with pytest.raises(DataValidationError) as err:
        load(folder)
    msg = str(err.value)
    assert "clicks.csv" in msg and "'user_id'" in msg and "1 null value" in msg


def test_null_content_id_in_contents(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, contents="content_id,style,products\n10,a,b\n,b,c\n")
    with pytest.raises(DataValidationError) as err:
        load(folder)
    msg = str(err.value)
    assert "contents.csv" in msg and "'content_id'" in msg and "null" in msg


def test_unparsable_timestamps(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, clicks=clicks_csv(f"1,10,{T0}", "2,11,yesterday"))
    with pytest.raises(DataValidationError) as err:
        load(folder)
    msg = str(err.value)
    assert "clicks.csv" in msg and "'timestamp'" in msg and "unparsable" in msg and "yesterday" in msg


def test_null_timestamp(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, clicks=clicks_csv(f"1,10,{T0}", "2,11,"))
    with pytest.raises(DataValidationError) as err:
        load(folder)
    msg = str(err.value)
    assert "clicks.csv" in msg and "'timestamp'" in msg and "null" in msg


def test_millisecond_timestamps_out_of_range(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, clicks=clicks_csv(f"1,10,{T0 * 1000}", f"2,11,{T0 * 1000 + 5}"))
    with pytest.raises(DataValidationError) as err:
        load(folder)
    msg = str(err.value)
    assert "clicks.csv" in msg and "'timestamp'" in msg and "2 timestamp(s) outside" in msg
    assert "seconds" in msg


def test_duplicate_clicks_dropped_and_counted(tmp_path: Path) -> None:
    clicks = clicks_csv(f"1,10,{T0}", f"1,10,{T0}", f"1,10,{T0}", f"2,10,{T0}")
    ds = load(write_folder(tmp_path, clicks=clicks))
    assert len(ds.clicks) == 2
    assert ds.report.counts == {"duplicate click rows dropped": 2}
    assert ds.report.lines() == ["custom: 2 duplicate click rows dropped"]


def test_duplicate_clicks_error_policy(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, clicks=clicks_csv(f"1,10,{T0}", f"1,10,{T0}"))
    with pytest.raises(DataValidationError) as err:
        load(folder, duplicates="error")
    msg = str(err.value)
    assert "clicks.csv" in msg and "1 duplicate click row(s)" in msg


def test_unknown_contents_error(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, clicks=clicks_csv(f"1,10,{T0}", f"1,99,{T0}", f"2,99,{T0}"))
    with pytest.raises(DataValidationError) as err:
        load(folder)
    msg = str(err.value)
    assert "clicks.csv" in msg and "2 click(s) on content_id(s) absent" in msg and "['99']" in msg


def test_unknown_contents_drop_counted(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, clicks=clicks_csv(f"1,10,{T0}", f"1,99,{T0}", f"2,99,{T0}"))
    ds = load(folder, unknown_contents="drop")
    assert ds.clicks["content_id"].tolist() == ["10"]
    assert ds.report.counts == {"clicks on contents absent from the contents table dropped": 2}


def test_all_clicks_unknown_leaves_none(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, clicks=clicks_csv(f"1,99,{T0}"))
    with pytest.raises(DataValidationError, match=r"clicks\.csv: no clicks left after validation: of 1 rows, dropped "
                                                  r"1 on contents absent from the contents table \(dataset.loader.unknown_contents=drop\)"):
        load(folder, unknown_contents="drop")


def test_every_click_dropped_before_publication_says_why(tmp_path: Path) -> None:
    """Issue 25: publication times a year late (a wrong export) put every click before its content's
    publication; the message says that the policy dropped them all, and asks about the times."""
    year = 365 * 86_400
    late = PUBLISHED_CSV.replace(f",{T0}\n", f",{T0 + year}\n").replace(f",{T0 + 60}\n", f",{T0 + 60 + year}\n")
    late = late.replace(f",{T0 + 1_000}\n", f",{T0 + 1_000 + year}\n")
    clicks = clicks_csv(f"1,10,{T0}", f"1,11,{T0 + 60}", f"2,12,{T0 + 1_000}")
    with pytest.raises(DataValidationError, match=r"no clicks left after validation: of 3 rows, dropped 3 before their "
                                                  r"content's publication \(dataset.loader.before_publication=drop; is "
                                                  r"'published_at' of .*contents.csv in Unix seconds like the clicks\?\)"):
        load(write_folder(tmp_path, clicks=clicks, contents=late), before_publication="drop")


def test_duplicate_content_ids(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, contents="content_id,style,products\n10,a,x\n10,b,y\n11,c,z\n")
    with pytest.raises(DataValidationError) as err:
        load(folder)
    msg = str(err.value)
    assert "contents.csv" in msg and "'content_id'" in msg and "1 duplicate id(s)" in msg


def test_duplicate_user_ids(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, users="user_id,gender\n1,F\n1,M\n")
    with pytest.raises(DataValidationError) as err:
        load(folder)
    msg = str(err.value)
    assert "users.csv" in msg and "'user_id'" in msg and "duplicate" in msg


def test_users_added_from_clicks_counted(tmp_path: Path) -> None:
    clicks = clicks_csv(f"1,10,{T0}", f"3,10,{T0}", f"4,11,{T0}", f"4,12,{T0 + 1}")
    ds = load(write_folder(tmp_path, clicks=clicks, users="user_id,gender\n1,F\n2,M\n"))
    assert ds.report.counts == {"users added from clicks (absent from the user table, attributes null)": 2}
    assert ds.users["user_id"].tolist() == ["1", "2", "3", "4"]
    assert ds.users["gender"].isna().tolist() == [False, False, True, True]


def test_users_table_with_string_ids_matches_integer_clicks(tmp_path: Path) -> None:
    write_folder(tmp_path, users=None)
    pd.DataFrame({"user_id": ["1", "2"], "gender": ["F", "M"]}).to_parquet(tmp_path / "users.parquet")
    ds = load(tmp_path)
    assert ds.report.counts == {}  # no user duplicated as "absent"
    assert ds.users["user_id"].tolist() == ["1", "2"]


# ------------------------------------------------------------------------------------ files


def test_missing_table_names_folder_and_expected_files(tmp_path: Path) -> None:
    (tmp_path / "contents.csv").write_text(CONTENTS_CSV)
    with pytest.raises(DataValidationError) as err:
        load(tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and "clicks.parquet or clicks.csv" in msg


def test_both_formats_of_a_table_is_an_error(tmp_path: Path) -> None:
    write_folder(tmp_path)
    pd.DataFrame({"user_id": [1]}).to_parquet(tmp_path / "users.parquet")
    with pytest.raises(DataValidationError) as err:
        load(tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and "users.parquet" in msg and "users.csv" in msg


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="folder not found"):
        load(tmp_path / "nope")


def test_unreadable_parquet_names_file(tmp_path: Path) -> None:
    write_folder(tmp_path, users=None)
    (tmp_path / "users.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(DataValidationError, match=r"users\.parquet: cannot be read as parquet"):
        load(tmp_path)


def test_empty_csv_names_file(tmp_path: Path) -> None:
    write_folder(tmp_path, clicks="")
    with pytest.raises(DataValidationError, match=r"clicks\.csv: cannot be read as csv"):
        load(tmp_path)


# ------------------------------------------------------------------------------- schema direct


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    clicks = pd.DataFrame({"user_id": [1, 2], "content_id": [10, 11], "timestamp": [T0, T0 + 1]})
    contents = pd.DataFrame({"content_id": [10, 11], "style": ["a", "b"], "products": [["x"], ["y", "z"]]})
    return clicks, contents


def test_build_dataset_default_sources_named() -> None:
    clicks, contents = _frames()
    with pytest.raises(DataValidationError, match=r"demo/clicks: missing column"):
        build_dataset("demo", clicks.drop(columns="timestamp"), contents, None, SIDE_INFO, DIVERSITY)


def test_build_dataset_rejects_unknown_policy() -> None:
    clicks, contents = _frames()
    with pytest.raises(ValueError, match="duplicates must be 'error' or 'drop'"):
        build_dataset("demo", clicks, contents, None, SIDE_INFO, DIVERSITY, duplicates="warn")  # type: ignore[arg-type]


def test_build_dataset_diversity_field_must_be_side_info() -> None:
    clicks, contents = _frames()
    with pytest.raises(DataValidationError, match=r"demo/contents: diversity field\(s\) \{'space': 'space'\}"):
        build_dataset("demo", clicks, contents, None, SIDE_INFO, {"space": "space"})


def test_multi_values_with_pandas_na_are_empty() -> None:
    clicks, contents = _frames()
    contents["products"] = pd.Series(["x|y", pd.NA], dtype="string")
    ds = build_dataset("demo", clicks, contents, None, SIDE_INFO, DIVERSITY)
    assert ds.contents["products"].tolist() == [["x", "y"], []]


def test_bad_side_info_kind() -> None:
    clicks, contents = _frames()
    with pytest.raises(DataValidationError, match="side_info kinds must be 'single' or 'multi'"):
        build_dataset("demo", clicks, contents, None, {"style": "list"}, DIVERSITY)  # type: ignore[dict-item]


# ------------------------------------------------------------------------------- published_at

PUBLISHED_CSV = (
    "content_id,style,products,published_at\n"
    f"10,modern,sofa,{T0}\n"
    f"11,nordic,lamp,{T0 + 60}\n"
    f"12,x,rug,{T0 + 1_000}\n"
)


def test_published_at_parsed_and_kept(tmp_path: Path) -> None:
    ds = load(write_folder(tmp_path, contents=PUBLISHED_CSV))
    assert ds.contents.columns.tolist() == ["content_id", "style", "products", "published_at"]
    assert ds.contents["published_at"].tolist() == [T0, T0 + 60, T0 + 1_000]
    assert ds.contents["published_at"].dtype == "int64"
    assert ds.report.counts == {}  # clicks at or after publication are fine (11 is clicked at T0 + 60)
    # ISO strings and datetimes are parsed like click timestamps.
    iso = PUBLISHED_CSV.replace(str(T0 + 60), "2020-09-13T12:27:40Z").replace(str(T0 + 1_000), "2020-09-13T12:43:20Z")
    iso = iso.replace(f",{T0}\n", ",2020-09-13 12:26:40\n")
    ds = load(write_folder(tmp_path, contents=iso))
    assert ds.contents["published_at"].tolist() == [T0, T0 + 60, T0 + 1_000]


def test_click_before_publication_is_an_error(tmp_path: Path) -> None:
    clicks = clicks_csv(f"1,10,{T0}", f"1,11,{T0 + 59}", f"2,12,{T0 + 120}", f"2,12,{T0 + 999}")
    with pytest.raises(DataValidationError) as err:
        load(write_folder(tmp_path, clicks=clicks, contents=PUBLISHED_CSV))
    msg = str(err.value)
    assert "clicks.csv" in msg and "contents.csv" in msg and "'published_at'" in msg
    assert "3 click(s) before their content's publication" in msg
    # The example is the first offending row of the file, with both times.
    assert "content_id='11'" in msg and f"timestamp={T0 + 59}" in msg and f"published_at={T0 + 60}" in msg
    assert "before_publication=drop" in msg


def test_click_before_publication_drop_counted(tmp_path: Path) -> None:
    clicks = clicks_csv(f"1,10,{T0}", f"1,11,{T0 + 59}", f"2,12,{T0 + 120}", f"2,12,{T0 + 1_000}")
    ds = load(write_folder(tmp_path, clicks=clicks, contents=PUBLISHED_CSV), before_publication="drop")
    kept = list(zip(ds.clicks["content_id"], ds.clicks["timestamp"]))
    assert kept == [("10", T0), ("12", T0 + 1_000)]  # CSV ids are text (issue 12)
    assert ds.report.counts == {"clicks before their content's publication dropped": 2}
    assert ds.report.lines() == ["custom: 2 clicks before their content's publication dropped"]


def test_unparsable_published_at_names_file_and_column(tmp_path: Path) -> None:
    contents = "content_id,style,products,published_at\n10,a,x,soon\n11,b,y,\n12,c,z,\n"
    with pytest.raises(DataValidationError) as err:
        load(write_folder(tmp_path, contents=contents))
    msg = str(err.value)
    assert "contents.csv" in msg and "'published_at'" in msg


def test_published_at_in_milliseconds_rejected(tmp_path: Path) -> None:
    contents = f"content_id,style,products,published_at\n10,a,x,{T0 * 1000}\n11,b,y,{T0}\n12,c,z,{T0}\n"
    with pytest.raises(DataValidationError, match=r"contents\.csv: column 'published_at' has 1 timestamp\(s\) outside"):
        load(write_folder(tmp_path, contents=contents))


def test_before_publication_policy_checked_and_not_side_info() -> None:
    clicks, contents = _frames()
    with pytest.raises(ValueError, match="before_publication must be 'error' or 'drop'"):
        build_dataset("demo", clicks, contents, None, SIDE_INFO, DIVERSITY, before_publication="warn")  # type: ignore[arg-type]
    contents["published_at"] = [T0, T0]
    with pytest.raises(DataValidationError, match=r"demo/contents: column 'published_at' is the publication time"):
        build_dataset("demo", clicks, contents, None, {**SIDE_INFO, "published_at": "single"}, DIVERSITY)


def test_predefined_split_file_before_publication(tmp_path: Path) -> None:
    from graphrecall.data.splits import make_folds

    clicks = pd.DataFrame({"user_id": [1, 2, 1], "content_id": [10, 11, 11], "timestamp": [T0, T0 + 10, T0 + 20]})
    contents = pd.DataFrame(
        {"content_id": [10, 11], "style": ["a", "b"], "products": [["x"], ["y"]], "published_at": [T0, T0 + 5]}
    )
    ds = build_dataset("demo", clicks, contents, None, SIDE_INFO, DIVERSITY)
    files = {}
    for name, rows in (("train", [(1, 10, T0)]), ("val", [(2, 11, T0 + 10)]), ("test", [(1, 11, T0 + 1)])):
        path = tmp_path / f"{name}.csv"
        pd.DataFrame(rows, columns=["user_id", "content_id", "timestamp"]).to_csv(path, index=False)
        files[name] = str(path)
    with pytest.raises(DataValidationError) as err:
        make_folds(ds, {"kind": "predefined", "predefined": {"files": files}})
    msg = str(err.value)
    assert "test.csv" in msg and "'published_at'" in msg and "1 click(s) before" in msg


# ------------------------------------------------------------------------- timestamp formats (issue 12)


def test_epoch_seconds_as_text_and_iso_are_accepted(tmp_path: Path) -> None:
    clicks = clicks_csv(f"1,10,{T0}", f"1,11,{T0 + 60}.7", "2,10,2020-09-13T12:28:40Z", "2,11,2020-09-13")
    ds = load(write_folder(tmp_path, clicks=clicks))
    assert sorted(ds.clicks["timestamp"].tolist()) == sorted([T0, T0 + 60, T0 + 120, T0 - 44800])


@pytest.mark.parametrize("text", ["05/01/2026", "01-05-2026 10:00"])
def test_ambiguous_day_month_is_an_error(tmp_path: Path, text: str) -> None:
    folder = write_folder(tmp_path, clicks=clicks_csv(f"1,10,{T0}", f"2,11,{text}"))
    with pytest.raises(DataValidationError) as err:
        load(folder)
    msg = str(err.value)
    assert "clicks.csv" in msg and "'timestamp'" in msg and "1 unparsable" in msg and text in msg
    assert "ambiguous" in msg and "timestamp_format" in msg and "[1]" in msg  # names the row


def test_other_formats_need_timestamp_format(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, clicks=clicks_csv("1,10,13/01/2026", "2,11,05/01/2026", "2,10,31/12/2025"))
    with pytest.raises(DataValidationError, match="3 unparsable timestamp.*timestamp_format"):
        load(folder)
    ds = load(folder, timestamp_format="%d/%m/%Y")
    days = pd.to_datetime(ds.clicks["timestamp"], unit="s").dt.strftime("%Y-%m-%d").tolist()
    assert days == ["2025-12-31", "2026-01-05", "2026-01-13"]  # 05/01 is January 5th, not May 1st
    with pytest.raises(DataValidationError, match=r"1 value\(s\) not in timestamp_format='%d/%m/%Y'.*2026-01-05"):
        load(write_folder(tmp_path, clicks=clicks_csv("1,10,13/01/2026", "2,11,2026-01-05")),
             timestamp_format="%d/%m/%Y")


# ------------------------------------------------------------------------------------ ids (issue 12)


def test_zero_padded_csv_ids_stay_text(tmp_path: Path) -> None:
    folder = write_folder(
        tmp_path,
        clicks=clicks_csv(f"0007,0157,{T0}", f"7,157,{T0 + 1}"),
        contents="content_id,style,products\n0157,a,x\n157,b,y\n",
        users="user_id,gender\n0007,F\n7,M\n",
    )
    ds = load(folder)
    assert ds.users["user_id"].tolist() == ["0007", "7"]
    assert ds.contents["content_id"].tolist() == ["0157", "157"]
    assert sorted(zip(ds.clicks["user_id"], ds.clicks["content_id"])) == [("0007", "0157"), ("7", "157")]
    with pytest.raises(DataValidationError, match="contents.csv: column 'content_id' has 1 non-numeric id"):
        load(write_folder(tmp_path, contents="content_id,style,products\n10,a,x\nA1,b,y\n"), numeric_ids=True)


@pytest.mark.parametrize("where", ["first", "later"])
def test_csv_row_with_an_extra_field_names_the_line(tmp_path: Path, where: str) -> None:
    # pandas would read an extra field on the first data row as an index column: every value shifts
    # one column left and all timestamps read as null ("3 null timestamps" instead of the real fault)
    rows = [f"1,10,{T0}", f"1,11,{T0 + 60}", f"2,10,{T0 + 120}"]
    line = 2 if where == "first" else 4
    rows[line - 2] += ",extra"
    folder = write_folder(tmp_path, clicks=clicks_csv(*rows))
    with pytest.raises(DataValidationError) as err:
        load(folder)
    assert str(err.value).startswith(f"{folder / 'clicks.csv'}: line {line} has 4 fields but the header has 3")


def test_csv_row_with_an_extra_field_in_contents(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, contents=CONTENTS_CSV + "13,modern,sofa,extra\n")
    with pytest.raises(DataValidationError, match=r"contents\.csv: line 5 has 4 fields but the header has 3"):
        load(folder)


def test_one_bad_timestamp_among_many_is_reported_alone(tmp_path: Path) -> None:
    rows = [f"{u % 2 + 1},{10 + u % 3},{T0 + 60 * u}" for u in range(200)]
    rows[57] = "1,10,not-a-time"
    with pytest.raises(DataValidationError) as err:
        load(write_folder(tmp_path, clicks=clicks_csv(*rows)))
    msg = str(err.value)
    assert "clicks.csv: column 'timestamp' has 1 unparsable timestamp(s)" in msg and "[57]" in msg


def test_unknown_contents_error_names_the_loader_key(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, clicks=clicks_csv(f"1,10,{T0}", f"1,99,{T0}"))
    with pytest.raises(DataValidationError, match=r"set dataset\.loader\.unknown_contents=drop"):
        load(folder)
