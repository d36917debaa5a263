"""Fake-profile files: round trip in the data set's ids and scale, and every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.data.profiles import read_profiles, write_profiles
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.errors import DataError


@pytest.fixture
def base() -> Ratings:
    return Ratings.from_triples(
        np.array([3, 3, 9]), np.array([10, 20, 30]), np.array([1.0, 4.5, 5]),
        RatingScale(0.5, 5, 0.5), name="base",
    )  # fmt: skip


def test_round_trip(tmp_path: Path, base: Ratings) -> None:
    # two fake users; shifted values off the grid are snapped (0.0 is 2.75 stars, a tie that
    # RatingScale.snap rounds to the even step, 2.5; 0.4 is 3.2 stars); 0.0 is still a rating
    matrix = sp.csr_array(
        (np.array([2.0, 0.0, -1.93, 0.4]), np.array([0, 1, 2, 0]), np.array([0, 3, 4])),
        shape=(2, 3),
    )
    path = tmp_path / "fakes.csv"
    ids = write_profiles(path, matrix, base)
    assert list(ids) == [10, 11]
    assert path.read_text().splitlines() == [
        "userId,movieId,rating", "10,10,5", "10,20,2.5", "10,30,0.5", "11,10,3",
    ]  # fmt: skip
    fake_ids, back = read_profiles(path, base)
    assert list(fake_ids) == [10, 11] and back.shape == (2, 3)
    expected = base.scale.to_shifted(base.scale.snap(base.scale.to_original(matrix.data)))
    np.testing.assert_allclose(back.data, expected)
    np.testing.assert_array_equal(back.indices, matrix.indices)


def test_first_user_id(tmp_path: Path, base: Ratings) -> None:
    matrix = sp.csr_array(np.array([[1.0, 0, 0]]))
    assert list(write_profiles(tmp_path / "a.csv", matrix, base, first_user_id=100)) == [100]
    with pytest.raises(DataError, match="above the largest real id 9"):
        write_profiles(tmp_path / "b.csv", matrix, base, first_user_id=9)
    with pytest.raises(DataError, match="profiles have 2 items, base has 3"):
        write_profiles(tmp_path / "b.csv", sp.csr_array(np.ones((1, 2))), base)
    with pytest.raises(TypeError):
        write_profiles(tmp_path / "b.csv", np.ones((1, 3)), base)
    assert not (tmp_path / "b.csv").exists()


def test_integer_scale_written_as_integers(tmp_path: Path) -> None:
    r = Ratings.from_triples(np.array([1]), np.array([5]), np.array([3.0]), RatingScale(1, 5, 1))
    write_profiles(tmp_path / "p.csv", sp.csr_array(np.array([[0.96]])), r)
    assert (tmp_path / "p.csv").read_text() == "userId,movieId,rating\n2,5,4\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("10,99,4\n", "line 2: item id 99 is not an item of base"),
        ("10,10,4\n10,20,5.5\n", "line 3: rating 5.5 is not on the scale 0.5-5"),
        ("10,10,4\n10,20,4.25\n", "line 3: rating 4.25 is not on the scale"),
        ("10,10,4\n10,10,3\n", "line 3: duplicate rating of user 10 for item 10"),
        ("10,10,nan\n", "line 2: rating 'nan' is not a finite number"),
        ("10,10,4\n3,20,4\n", "line 3: user id 3 is a real user of base"),
        ("10,ten,4\n", "line 2: item id 'ten' is not an integer"),
    ],
)
def test_bad_profiles(tmp_path: Path, base: Ratings, body: str, message: str) -> None:
    path = tmp_path / "fakes.csv"
    path.write_text("userId,movieId,rating\n" + body)
    with pytest.raises(DataError) as err:
        read_profiles(path, base)
    assert str(err.value) == f"{path}, {message}" or str(err.value).startswith(f"{path}, {message}")


def test_profiles_on_ml_small(tmp_path: Path, ml_small: Ratings, rng: np.random.Generator) -> None:
    m_fake, budget = 18, 100
    rows = np.repeat(np.arange(m_fake), budget)
    cols = np.concatenate(
        [rng.choice(ml_small.n_items, budget, replace=False) for _ in range(m_fake)]
    )
    values = rng.uniform(-2, 2, len(cols))
    matrix = sp.csr_array((values, (rows, cols)), shape=(m_fake, ml_small.n_items))
    ids = write_profiles(tmp_path / "f.csv", matrix, ml_small)
    assert ids[0] == ml_small.user_ids.max() + 1
    fake_ids, back = read_profiles(tmp_path / "f.csv", ml_small)
    np.testing.assert_array_equal(fake_ids, ids)
    assert back.nnz == m_fake * budget
    assert np.all(ml_small.scale.contains(ml_small.scale.to_original(back.data)))
    assert (
        np.abs(back.toarray() - matrix.toarray()).max() <= ml_small.scale.shifted_step / 2 + 1e-12
    )
