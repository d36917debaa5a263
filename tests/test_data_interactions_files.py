"""Native implicit-feedback files (``interactions:PATH``) and interaction profile files, read,
preprocessed and judged by ``promote`` and ``evaluate --feedback implicit``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cfpoison.cli import main
from cfpoison.data.interactions import Interactions
from cfpoison.data.parsers import parse_interactions, parse_ratings
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.profiles import profile_sizes, read_interaction_profiles
from cfpoison.data.registry import load_dataset, load_interactions
from cfpoison.errors import ConfigError, DataError


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "weights"),
    [
        ("1,10\n1,11\n2,10\n", [1.0, 1.0, 1.0]),
        ("user,item,plays\n1,10,3\n1,11,0.5\n2,10,2\n", [3.0, 0.5, 2.0]),
        ("1\t10\t3\t99\n1\t11\t1\t98\n2\t10\t2\t97\n", [3.0, 1.0, 2.0]),
    ],
    ids=["two-fields", "header-and-weights", "tab-with-timestamps"],
)
def test_interaction_files_read_with_or_without_weights(
    tmp_path: Path, text: str, weights: list[float]
) -> None:
    users, items, matrix = parse_interactions(_write(tmp_path / "f.csv", text))
    assert users.tolist() == [1, 2] and items.tolist() == [10, 11]
    assert matrix.toarray().tolist() == [[weights[0], weights[1]], [weights[2], 0.0]]
    assert matrix.has_sorted_indices


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,10,0\n", "line 1: weight 0 is not > 0"),
        ("1,10,2\n1,11,-1\n", "line 2: weight -1 is not > 0"),
        ("1,10,nan\n", "line 1: weight 'nan' is not a finite number"),
        ("1,10,1,5,6\n", "expected 2, 3 or 4 fields (user, item[, weight[, timestamp]])"),
        ("1,x\n", "line 1: item id 'x' is not an integer"),
        ("1,10\n2,10\n1,10\n", "line 3: duplicate interaction of user 1 with item 10 (first at"),
    ],
)
def test_bad_interaction_lines_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        parse_interactions(_write(tmp_path / "f.csv", text))


def test_repeated_pairs_add_up_with_sum_and_sum_is_refused_for_ratings(tmp_path: Path) -> None:
    path = _write(tmp_path / "plays.csv", "1,10,1\n1,10,1\n1,11,2\n1,10,0.5\n")
    _, _, matrix = parse_interactions(path, on_duplicate="sum")
    assert matrix.toarray().tolist() == [[2.5, 2.0]]
    assert parse_interactions(path, on_duplicate="last")[2].toarray().tolist() == [[0.5, 2.0]]
    ratings = _write(tmp_path / "r.csv", "1,10,4\n1,11,3\n")
    with pytest.raises(ConfigError, match="ratings cannot be summed"):
        parse_ratings(ratings, on_duplicate="sum")
    argv = ["--quiet", "train", "--dataset", f"csv:{ratings}", "--on-duplicate", "sum"]
    assert main(argv) == 2  # a bad setting
    with pytest.raises(DataError, match="an interactions file has no ratings"):
        parse_ratings(path, "interactions")


def test_an_interactions_data_set_is_refused_where_ratings_are_needed(tmp_path: Path) -> None:
    path = _write(tmp_path / "clicks.csv", "1,10\n1,11\n2,10\n")
    expected = "holds interactions, not ratings: `cfpoison promote`, `gradcheck promote`"
    with pytest.raises(ConfigError, match=expected):
        load_dataset(f"interactions:{path}")
    data = load_interactions(f"interactions:{path}")
    assert data.name == f"interactions:{path}" and data.nnz == 3
    assert main(["--quiet", "train", "--dataset", f"interactions:{path}"]) == 2


def _native(rng: np.random.Generator, m: int = 60, n: int = 40) -> Interactions:
    """A low-rank preference pattern with play counts as weights."""
    scores = rng.normal(size=(m, 3)) @ rng.normal(size=(3, n)) - np.linspace(0, 2, n)
    users, items = np.nonzero(scores > 0.3)
    plays = rng.integers(1, 6, size=len(users)).astype(float)
    return Interactions.from_triples(users + 100, items + 7, plays, name="native")


def test_preprocessing_keeps_weights_and_records_its_steps() -> None:
    data = _native(np.random.default_rng(0))
    train, test = prepare(data, PreprocessConfig(min_user_ratings=5, test_fraction=0.2, seed=3))
    assert isinstance(train, Interactions) and isinstance(test, Interactions)
    kept = data.user_counts >= 5
    assert train.n_users == int(kept.sum()) and train.user_ids.tolist() == (
        data.user_ids[kept].tolist()
    )
    assert [s["step"] for s in train.steps] == ["filter_min_ratings", "train_test_split"]
    whole = (train.matrix + test.matrix).toarray()
    assert np.array_equal(whole, data.matrix.toarray()[kept])  # a split: weights kept
    assert not np.any((train.matrix.toarray() > 0) & (test.matrix.toarray() > 0))


def test_interaction_profiles_are_checked_and_mapped_to_columns(tmp_path: Path) -> None:
    data = Interactions.from_triples([1, 1, 2, 3], [10, 20, 20, 30], name="d")  # weights 1
    good = _write(tmp_path / "ok.csv", "userId,movieId,weight\n9,30,1\n9,10,0.5\n8,20,1\n")
    ids, fake = read_interaction_profiles(good, data)
    assert ids.tolist() == [8, 9]
    assert fake.shape == (2, 3) and fake.toarray().tolist() == [[0, 1, 0], [0.5, 0, 1]]
    assert profile_sizes(fake) == {"n_fake": 2, "items": {"min": 1, "median": 1.5, "max": 2}}
    assert read_interaction_profiles(_write(tmp_path / "two.csv", "9,30\n"), data)[1].nnz == 1
    for text, message in (
        ("9,40,1\n", "line 1: item id 40 is not an item of d"),
        ("9,10,1\n2,10,1\n", "line 2: user id 2 is a real user of d"),
        ("9,10,2\n", "line 1: weight 2 is above d's largest, 1"),
    ):
        with pytest.raises(DataError, match=message):
            read_interaction_profiles(_write(tmp_path / "bad.csv", text), data)


def _csv(data: Interactions, path: Path) -> Path:
    rows, cols, weights = data.triples()
    lines = [
        f"{data.user_ids[r]},{data.item_ids[c]},{w:g}"
        for r, c, w in zip(rows, cols, weights, strict=True)
    ]
    return _write(path, "user,item,plays\n" + "\n".join(lines) + "\n")


@pytest.mark.slow
def test_promote_and_evaluate_agree_on_a_native_file(tmp_path: Path) -> None:
    """``promote`` on ``interactions:PATH`` writes profiles that ``evaluate --feedback
    implicit`` (here implied by the data set) judges to the same numbers; flags that do not
    apply are usage errors."""
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 150)) - np.linspace(0, 3, 150)
    users, items = np.nonzero(scores > 0.0)
    plays = rng.integers(1, 4, size=len(users)).astype(float)
    native = Interactions.from_triples(users + 1, items + 1, plays, name="n")
    dataset = f"interactions:{_csv(native, tmp_path / 'plays.csv')}"
    profiles, promoted, judged = (tmp_path / n for n in ("fake.csv", "p.json", "e.json"))
    common = ["--dataset", dataset, "--threads", "1"]
    argv = ["--quiet", "promote", *common, "--method", "covisitation", "--json", str(promoted)]
    assert main([*argv, "--profiles", str(profiles)]) == 0
    assert (
        main(["--quiet", "evaluate", *common, "--profiles", str(profiles), "--json", str(judged)])
        == 0
    )
    before, after = json.loads(promoted.read_text()), json.loads(judged.read_text())
    assert before["feedback"] == after["feedback"] == "native"
    assert after["targets"] == before["targets"]
    for key in ("hr@10", "hr@50", "ndcg@50"):
        for when in ("before", "after", "floor"):
            assert after["metrics"][f"{key}_{when}"] == before["metrics"][f"{key}_{when}"]
    assert after["metrics"]["hr@50_after"] > after["metrics"]["hr@50_before"]
    detected = tmp_path / "d.json"
    assert (
        main(
            ["--quiet", "detect", *common[:2], "--profiles", str(profiles), "--json", str(detected)]
        )
        == 0
    )
    assert json.loads(detected.read_text())["n_fake"] == before["n_fake"]
    sizes = after["profile_sizes"]["fake"]
    assert sizes["n_fake"] == before["n_fake"] == after["budget"]["n_fake"]
    assert sizes["items"]["max"] == after["budget"]["items_per_user"]
    base = ["--quiet", "evaluate", *common, "--profiles", str(profiles)]
    for extra in (["--top-k", "5"], ["--rank", "4"]):
        with pytest.raises(SystemExit) as usage:
            main([*base, *extra])
        assert usage.value.code == 2
    assert main([*base, "--feedback", "implicit"]) == 2  # the file holds interactions
    twin = _write(tmp_path / "twin.csv", profiles.read_text())
    with pytest.raises(SystemExit) as usage:
        main([*base, str(twin)])  # several files need --victims
    assert usage.value.code == 2


def test_evaluate_implicit_usage_and_data_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    item = int(load_dataset("synthetic:small").item_ids[0])
    profiles = _write(tmp_path / "fake.csv", f"userId,movieId,weight\n999999,{item},1\n")
    base = ["--quiet", "evaluate", "--dataset", "synthetic:small", "--feedback", "implicit"]
    for extra in (["--baseline", str(profiles)], ["--report", str(tmp_path / "r")]):
        with pytest.raises(SystemExit) as usage:
            main([*base, "--profiles", str(profiles), *extra])
        assert usage.value.code == 2
        assert "needs --victims" in capsys.readouterr().err or "--report" in str(extra)
    heavy = _write(tmp_path / "heavy.csv", f"userId,movieId,weight\n999999,{item},2\n")
    assert main([*base, "--profiles", str(heavy)]) == 1
    assert "line 2: weight 2 is above synthetic:small>=4's largest, 1" in capsys.readouterr().err


def test_a_panel_must_train_on_the_profiles_kind_of_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ALS victims cannot judge interaction profiles, nor WRMF star ratings: a usage error
    before any victim is fitted (it was an AttributeError)."""
    item = int(load_dataset("synthetic:small").item_ids[0])
    profiles = _write(tmp_path / "fake.csv", f"userId,movieId,weight\n999999,{item},1\n")
    base = ["--quiet", "evaluate", "--dataset", "synthetic:small", "--profiles", str(profiles)]
    assert main([*base, "--feedback", "implicit", "--victims", "default"]) == 2
    assert "victim 'als' (als) trains on ratings, these profiles are interactions" in (
        capsys.readouterr().err
    )
    assert main([*base, "--victims", "implicit"]) == 2
    assert "victim 'wrmf' (wrmf) trains on interactions" in capsys.readouterr().err


def test_data_info_summarises_an_interactions_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "plays.csv", "user,item,plays\n1,10,3\n1,11,1\n2,10,2\n")
    out = tmp_path / "info.json"
    assert main(["data", "info", f"interactions:{path}", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "interactions      3" in text and "weights           min 1, mean 2, max 3" in text
    summary = json.loads(out.read_text())
    assert (summary["users"], summary["items"], summary["interactions"]) == (2, 2, 3)
    assert summary["interactions_per_user"]["max"] == 2 and summary["weights"]["mean"] == 2.0
    assert main(["data", "info", f"interactions:{path}", "--scale", "1:5:1"]) == 2


def test_a_filter_that_leaves_no_user_says_interactions(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", "1,10\n2,11\n")
    data = load_interactions(f"interactions:{path}")
    with pytest.raises(DataError, match="all 2 users have fewer than 20 interactions"):
        prepare(data, PreprocessConfig())
