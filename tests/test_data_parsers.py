"""Parsers: every layout, every bad-input case (named by file and line), duplicate policies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cfpoison.data.parsers import describe_scale, infer_scale, parse_ratings
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.errors import DataError

FIVE = RatingScale(1, 5, 1)
HALF = RatingScale(0.5, 5, 0.5)


def write(tmp_path: Path, text: str, name: str = "r.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def triples(r: Ratings) -> list[tuple[int, int, float]]:
    rows, cols, values = r.triples()
    original = r.scale.to_original(values)
    return sorted(
        (int(r.user_ids[u]), int(r.item_ids[i]), float(v))
        for u, i, v in zip(rows, cols, original, strict=True)
    )


@pytest.mark.parametrize(
    ("layout", "text", "scale"),
    [
        ("tab", "1\t10\t3\t881250949\n2\t10\t5\t881250950\n1\t20\t1\t1\n", FIVE),
        ("dat", "1::10::3::978300760\n2::10::5::978300761\n1::20::1::1\n", FIVE),
        ("csv", "userId,movieId,rating,timestamp\n1,10,3,9\n2,10,5,9\n1,20,1,9\n", FIVE),
        ("csv", "u,i,r,t\r\n1,10,3.0,9\r\n2,10,5.0,9\r\n1,20,1.0,0\r\n", FIVE),
        ("generic", "user;item;rating\n1;10;3\n2;10;5\n1;20;1\n", None),
        ("generic", "1,10,3\n2,10,5\n\n1,20,1\n", None),
        ("generic", "1|10|3|7\n2|10|5|7.5\n1|20|1|8\n", None),
        ("generic", "1 10 3\n2 10 5\n1 20 1\n", None),
        ("generic", "\ufeffuser\titem\trating\n1\t10\t3\n2\t10\t5\n1\t20\t1\n", None),
    ],
)
def test_layouts_parse_the_same_ratings(
    tmp_path: Path, layout: str, text: str, scale: RatingScale | None
) -> None:
    r = parse_ratings(write(tmp_path, text), layout, scale=scale)  # type: ignore[arg-type]
    assert triples(r) == [(1, 10, 3.0), (1, 20, 1.0), (2, 10, 5.0)]
    assert r.scale == FIVE
    assert r.matrix.has_sorted_indices
    # 3 stars maps to 0.0 on the shifted scale: an explicit stored zero, still observed
    assert r.nnz == 3 and np.count_nonzero(r.matrix.data == 0.0) == 1


def test_sniffing_picks_a_delimiter_giving_3_or_4_fields(tmp_path: Path) -> None:
    # a comma inside the rating (decimal comma) must not be taken for the delimiter
    path = write(tmp_path, "1;2;3,5\n")
    with pytest.raises(DataError, match="line 1: rating '3,5' is not a number"):
        parse_ratings(path)


def test_generic_delimiter_given(tmp_path: Path) -> None:
    path = write(tmp_path, "u,i,r\n1,2,4.5\n3,2,0.5\n")
    assert parse_ratings(path, delimiter=",").nnz == 2
    with pytest.raises(DataError, match="line 1: expected 3 or 4 fields"):
        parse_ratings(path, delimiter=";")
    with pytest.raises(DataError, match="one character"):
        parse_ratings(path, delimiter=",,")


def test_ml_latest_small_counts(ml_small: Ratings) -> None:
    assert (ml_small.n_users, ml_small.n_items, ml_small.nnz) == (610, 9724, 100836)
    assert ml_small.scale == HALF
    assert describe_scale(ml_small.scale) == "0.5-5 in steps of 0.5"
    assert ml_small.user_counts.min() == 20
    assert ml_small.matrix.data.min() == -2.0 and ml_small.matrix.data.max() == 2.0


BAD_LINES = [
    ("1,10,4\n1,x,3\n", None, "line 2: item id 'x' is not an integer"),
    ("a,10,4\n", None, "line 1: user id 'a' is not an integer"),
    ("1,10,4\n2,10,1.5e\n", None, "line 2: rating '1.5e' is not a number"),
    ("1,10,4\n2,10,nan\n", None, "line 2: rating 'nan' is not a finite number"),
    ("1,10,4\n2,10,-inf\n", None, "line 2: rating '-inf' is not a finite number"),
    ("1,10,4\n2,10,6\n", FIVE, "line 2: rating 6 is not on the scale 1-5 in steps of 1"),
    ("1,10,4\n2,10,3.5\n", FIVE, "line 2: rating 3.5 is not on the scale"),
    ("1,10,4\n2,10,0\n", FIVE, "line 2: rating 0 is not on the scale"),
    ("1,10,4\n2,10\n", None, "line 2: expected 3 fields separated by ',', found 2"),
    ("1,10,4\n2,10,3,5\n", None, "line 2: expected 3 fields"),
    ("1,10,4,5\n2,10,3,5\n3,10,3,5,6\n", None, "line 3: expected 4 fields"),
    # one line short and one long: the totals balance, the line is still found
    ("1,10,4,5\n2,10,3\n3,10,3,5,6\n", None, "line 2: expected 4 fields"),
    ("1,10,4,5\n2,10,3,abc\n", None, "line 2: timestamp 'abc' is not a valid float"),
    ("1,10,4\n   \n2,11,3\n", None, "line 2: expected 3 fields"),
    ("1,10,4\n2,11,3\n1,10,5\n", None, "line 3: duplicate rating of user 1 for item 10 "),
]


@pytest.mark.parametrize(("text", "scale", "message"), BAD_LINES)
def test_bad_lines_name_file_and_line(
    tmp_path: Path, text: str, scale: RatingScale | None, message: str
) -> None:
    path = write(tmp_path, text, "bad.csv")
    with pytest.raises(DataError) as err:
        parse_ratings(path, scale=scale)
    assert str(err.value).startswith(f"{path}, {message}")
    assert "\n" not in str(err.value)


def test_first_bad_line_wins(tmp_path: Path) -> None:
    # the example: a NaN rating and a non-numeric id; the earlier line is named
    path = write(tmp_path, "userId,movieId,rating\n1,2,4\n1,3,nan\nx,4,3\n")
    with pytest.raises(DataError, match=r"line 3: rating 'nan'"):
        parse_ratings(path)
    path = write(tmp_path, "1,2,4\n1,2,3\n1,3,nan\n")
    with pytest.raises(DataError, match=r"line 2: duplicate .* \(first at line 1\)"):
        parse_ratings(path)


@pytest.mark.parametrize(
    ("layout", "text", "message"),
    [
        ("tab", "1\t10\t3\t88\n1\t11\t3.5\t88\n", "line 2: rating 3.5 is not on the scale"),
        ("tab", "1\t10\t3\t88\n1\t11\t3\t8.5\n", "line 2: timestamp '8.5' is not a valid int"),
        ("dat", "1::10::3::88\n1::11::3::88::9\n", "line 2: expected 4 fields separated by '::'"),
        ("dat", "1::10::3::88\n1:11::3::88\n", "line 2: expected 4 fields"),
        ("csv", "userId,movieId,rating,timestamp\n1,10,3,8\n1,10,3,9\n", "line 3: duplicate"),
    ],
)
def test_movielens_layouts_bad_lines(tmp_path: Path, layout: str, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=message):
        parse_ratings(path, layout, scale=FIVE)  # type: ignore[arg-type]


@pytest.mark.parametrize(("policy", "expected"), [("first", 1.0), ("last", 2.0), ("mean", 5 / 3)])
def test_duplicate_policies(tmp_path: Path, policy: str, expected: float) -> None:
    path = write(tmp_path, "7,1,1\n7,2,4\n7,1,2\n8,1,3\n7,1,2\n")
    r = parse_ratings(path, scale=FIVE, on_duplicate=policy)  # type: ignore[arg-type]
    assert triples(r) == [(7, 1, pytest.approx(expected)), (7, 2, 4.0), (8, 1, 3.0)]


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty file"), ("user,item,rating\n", "no ratings"), ("1,2\n", "expected 3 or 4")],
)
def test_empty_and_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_ratings(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        parse_ratings(tmp_path / "nope.csv")


def test_infer_scale() -> None:
    assert infer_scale(np.array([1.0, 2, 5])) == FIVE
    assert infer_scale(np.array([0.5, 2, 5])) == HALF
    assert infer_scale(np.array([1.0, 1.2, 2.0])) == RatingScale(1, 2, 0.2)
    assert infer_scale(np.array([0.0, 0.123, 1.0])).step == 0.0
    with pytest.raises(DataError, match="cannot be inferred"):
        infer_scale(np.array([3.0, 3.0]))
    assert describe_scale(RatingScale(0, 1, 0)) == "0-1, continuous"


def test_sparse_large_ids(tmp_path: Path) -> None:
    # ids far apart take the sort path of the id maps, with the same result
    path = write(tmp_path, "5000000000,3,1\n2,9000000000,5\n5000000000,9000000000,2\n")
    r = parse_ratings(path)
    assert list(r.user_ids) == [2, 5000000000] and list(r.item_ids) == [3, 9000000000]
    assert triples(r) == [(2, 9000000000, 5.0), (5000000000, 3, 1.0), (5000000000, 9000000000, 2.0)]


def test_load_dataset_accepts_a_string_data_dir(movielens_dir) -> None:
    from cfpoison.data.registry import load_dataset

    assert load_dataset("ml-latest-small", str(movielens_dir)).nnz == 100836
