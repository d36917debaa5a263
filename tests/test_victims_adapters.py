"""Adapters: triples with appended fake users, scale maps, agreement with the libraries'
own predictions, and the one-line error of a missing extra."""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.cli import main
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.victims import MissingExtraError, Panel, VictimSpec, build_victim
from cfpoison.victims.adapters import triples


def tiny() -> tuple[Ratings, sp.csr_array]:
    rng = np.random.default_rng(1)
    m, n = 40, 25
    mask = rng.random((m, n)) < 0.4
    mask[:, :3] = True
    mask[:, -1] = False  # an item nobody rated in training
    rows, cols = np.nonzero(mask)
    scale = RatingScale(0.5, 5, 0.5)
    values = scale.to_shifted(scale.snap(rng.uniform(0.5, 5, len(rows))))
    matrix = sp.csr_array((values, (rows, cols)), shape=(m, n))
    ratings = Ratings(matrix, np.arange(m) + 10, np.arange(n) + 100, scale, "tiny")
    fake = sp.csr_array(([2.0, -2.0, 0.0], ([0, 0, 1], [1, 2, 3])), shape=(2, n))
    return ratings, fake


def test_triples_append_fake_users_on_the_original_scale() -> None:
    ratings, fake = tiny()
    users, items, values = triples(ratings, fake)
    assert len(values) == ratings.nnz + 3
    np.testing.assert_array_equal(users[-3:], [40, 40, 41])
    np.testing.assert_array_equal(items[-3:], [1, 2, 3])
    np.testing.assert_allclose(values[-3:], [5.0, 0.5, 2.75])
    assert values.min() >= 0.5 and values.max() <= 5


def test_cmfrec_factors_match_its_predictions() -> None:
    cmfrec = pytest.importorskip("cmfrec")
    ratings, fake = tiny()
    victim = build_victim(VictimSpec("c", "cmfrec", {"k": 4, "nthreads": 1}), 3)
    victim.fit(ratings, fake)
    users, items, values = triples(ratings, fake)
    matrix = sp.coo_matrix((values, (users, items)), shape=(42, 25))
    model = cmfrec.CMF(k=4, nthreads=1, random_state=3, use_float=False).fit(matrix)
    u, i = np.arange(40).repeat(24), np.tile(np.arange(24), 40)  # items rated in training
    expected = ratings.scale.to_shifted(model.predict(user=u, item=i))
    np.testing.assert_allclose(victim.predict(u, i), expected, atol=1e-8)


def test_surprise_factors_match_its_predictions() -> None:
    pytest.importorskip("surprise")
    ratings, fake = tiny()
    victim = build_victim(VictimSpec("s", "surprise-svd", {"n_factors": 3, "n_epochs": 5}), 3)
    victim.fit(ratings, fake)
    for u in (0, 7, 39):
        for i in (0, 5, 24):  # 24: unknown item, where the library predicts mu + b_u
            est = victim.model.predict(u, i, clip=False).est
            shifted = ratings.scale.to_shifted(est)
            assert victim.predict(np.array([u]), np.array([i]))[0] == pytest.approx(shifted)
    assert victim.model.trainset.n_users == 42  # the fake users were appended
    again = build_victim(VictimSpec("s", "surprise-svd", {"n_factors": 3, "n_epochs": 5}), 4)
    assert not np.allclose(again.fit(ratings, fake).item_factors, victim.item_factors)


def test_missing_library_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    real_find, real_import = importlib.util.find_spec, importlib.import_module

    def find_spec(name: str, *args):  # type: ignore[no-untyped-def]
        return None if name == "surprise" else real_find(name, *args)

    def import_module(name: str, *args):  # type: ignore[no-untyped-def]
        if name == "surprise":
            raise ImportError("No module named 'surprise'")
        return real_import(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(importlib, "import_module", import_module)
    message = "victim 'surprise-svd' needs scikit-surprise: pip install \"cfpoison[victims]\""
    ratings, _ = tiny()
    with pytest.raises(MissingExtraError) as err:
        build_victim(VictimSpec("surprise-svd", "surprise-svd"), 0).fit(ratings)
    assert str(err.value) == message

    required = Panel((VictimSpec("surprise-svd", "surprise-svd"),))
    with pytest.raises(MissingExtraError, match="cfpoison\\[victims\\]"):
        required.runnable()
    optional = Panel((VictimSpec("als", "als"), VictimSpec("s", "surprise-svd", optional=True)))
    run, skipped = optional.runnable()
    assert [s.name for s in run] == ["als"] and "scikit-surprise" in skipped["s"]

    panel = tmp_path / "panel.toml"
    panel.write_text('[[victims]]\nname = "surprise-svd"\nmodel = "surprise-svd"\n')
    argv = ["evaluate", "--dataset", "synthetic:small", "--profiles", str(panel)]
    assert main([*argv, "--victims", str(panel)]) == 1
    assert capsys.readouterr().err.strip() == f"cfpoison: error: {message}"
