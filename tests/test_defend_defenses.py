"""Each defense on a tiny synthetic problem: identities, a planted attack, calibration, configs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.ratings import Ratings
from cfpoison.data.synthetic import PRESETS, make_synthetic
from cfpoison.defend import (
    DEFENSES,
    ALSWRConfig,
    BaggingConfig,
    DefendedModel,
    DefenseConfig,
    DetectRemoveConfig,
    HuberConfig,
    InfluenceCapConfig,
    TrimmedConfig,
    defend,
    defenses,
)
from cfpoison.defend.defenses import DEFAULT_DEFENSES, PlainFits
from cfpoison.defend.supervised import learned_score
from cfpoison.errors import ConfigError
from cfpoison.experiments.defense_grid import evaluate_defenses
from cfpoison.learners import ALSConfig, ALSLearner
from cfpoison.models.measures import predict, rmse, rmse_shift

LEARNER = ALSConfig(rank=5, threads=1)


@pytest.fixture(scope="module")
def split() -> tuple[Ratings, Ratings]:
    return prepare(make_synthetic(PRESETS["small"]), PreprocessConfig())


def planted(train: Ratings, n_fake: int, budget: int, seed: int = 1) -> sp.csr_array:
    """A crude push attack: each fake user rates ``budget`` random items at the maximum."""
    rng = np.random.default_rng(seed)
    cols = np.concatenate([rng.choice(train.n_items, budget, replace=False) for _ in range(n_fake)])
    rows = np.repeat(np.arange(n_fake), budget)
    fake = sp.csr_array((np.full(len(cols), 2.0), (rows, cols)), shape=(n_fake, train.n_items))
    fake.sort_indices()
    return fake


def plain(train: Ratings, fake: sp.csr_array) -> ALSLearner:
    return ALSLearner(LEARNER).fit(train, fake=fake)


def test_trimmed_with_fraction_zero_is_plain_als(split: tuple[Ratings, Ratings]) -> None:
    train, _ = split
    fake = planted(train, 6, 40)
    model = defend(train, fake, TrimmedConfig(fraction=0.0), LEARNER, np.random.default_rng(0))
    reference = plain(train, fake)
    np.testing.assert_array_equal(model.user, reference.user_factors)
    np.testing.assert_array_equal(model.item, reference.item_factors)


@pytest.mark.parametrize("unit", ["ratings", "users"])
def test_trimmed_takes_its_first_round_from_known_fits(
    split: tuple[Ratings, Ratings], unit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A known plain fit on the same data is trimmed ALS's first round (one fit fewer): the
    defended model is bit for bit the one refitted from scratch; a fit on other data or of
    another config is not taken."""
    train, _ = split
    fake = planted(train, 6, 40)
    config = TrimmedConfig(fraction=0.05, unit=unit)
    fits = []
    original = defenses.fit_subset

    def counted(*args: Any, **kwargs: Any) -> defenses.SubsetFit:
        fits.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(defenses, "fit_subset", counted)
    fresh = defend(train, fake, config, LEARNER, np.random.default_rng(0))
    assert len(fits) == 1 + config.rounds
    known = PlainFits()
    first = plain(train, fake)
    known.add(first, train.matrix, fake)
    assert known.get(LEARNER, train.matrix, planted(train, 6, 40, seed=2)) is None
    assert known.get(LEARNER.replace(seed=1), train.matrix, fake) is None
    reused = defend(train, fake, config, LEARNER, np.random.default_rng(0), known=known)
    assert len(fits) == 1 + 2 * config.rounds
    np.testing.assert_array_equal(reused.user, fresh.user)
    np.testing.assert_array_equal(reused.item, fresh.item)
    assert reused.info == fresh.info


def test_ensemble_of_one_full_bag_is_plain_als(split: tuple[Ratings, Ratings]) -> None:
    train, _ = split
    fake = planted(train, 6, 40)
    config = BaggingConfig(bags=1, fraction=1.0)
    model = defend(train, fake, config, LEARNER, np.random.default_rng(0))
    reference = plain(train, fake)
    np.testing.assert_array_equal(model.user, reference.user_factors)
    np.testing.assert_array_equal(model.item, reference.item_factors)


def test_ensemble_predicts_the_mean_of_its_members(rng: np.random.Generator) -> None:
    none = np.zeros(4, dtype=bool)
    members = [
        DefendedModel(rng.standard_normal((4, 2)), rng.standard_normal((5, 2)), none, none, True)
        for _ in range(3)
    ]
    mean = DefendedModel.average(members, {})
    users, items = np.repeat(np.arange(4), 5), np.tile(np.arange(5), 4)
    expected = np.mean([predict(d, users, items) for d in members], axis=0)
    np.testing.assert_allclose(predict(mean, users, items), expected, rtol=1e-12)


def test_detect_and_remove_catches_a_planted_attack(split: tuple[Ratings, Ratings]) -> None:
    train, _ = split
    fake = planted(train, 10, 60)
    config = DetectRemoveConfig(detector="rdma", fpr=0.05)
    model = defend(train, fake, config, LEARNER, np.random.default_rng(0))
    assert model.removed_fake.all()
    # calibrated on the clean reference: the realised rate on the poisoned data stays near 5%
    assert model.removed_real.mean() <= 0.10
    # set-aside real users still get predictions (folded in against the refitted items)
    assert np.all(np.linalg.norm(model.user[model.removed_real], axis=1) > 0)
    # with every fake removed, the model is close to the clean one: below the undefended shift
    clean = ALSLearner(LEARNER).fit(train)
    clean_model = DefendedModel.undefended(clean)
    undefended = DefendedModel.undefended(plain(train, fake))
    assert rmse_shift(train.matrix, model, clean_model) < 0.5 * rmse_shift(
        train.matrix, undefended, clean_model
    )


def test_reference_calibration_hits_its_rate_on_clean_data(split: tuple[Ratings, Ratings]) -> None:
    train, _ = split
    empty = sp.csr_array((0, train.n_items))
    for fpr in (0.0, 0.02, 0.1):
        config = DetectRemoveConfig(detector="wda", fpr=fpr)
        model = defend(train, empty, config, LEARNER, np.random.default_rng(0))
        assert np.floor(fpr * train.n_users) - 1 <= model.removed_real.sum() <= fpr * train.n_users


def test_poisoned_calibration_flags_at_most_fpr_of_everyone(split: tuple[Ratings, Ratings]) -> None:
    train, _ = split
    fake = planted(train, 10, 60)
    config = DetectRemoveConfig(detector="rdma", fpr=0.02, calibration="poisoned")
    model = defend(train, fake, config, LEARNER, np.random.default_rng(0))
    flagged = model.removed_real.sum() + model.removed_fake.sum()
    assert flagged <= 0.02 * (train.n_users + fake.shape[0])


def test_any_score_function_plugs_in(split: tuple[Ratings, Ratings]) -> None:
    train, _ = split
    fake = planted(train, 5, 30)

    def oracle(matrix: sp.csr_array) -> np.ndarray:
        score = np.zeros(matrix.shape[0])
        score[train.n_users :] = 1.0
        return score

    config = DetectRemoveConfig(fpr=0.01)
    model = defend(train, fake, config, LEARNER, np.random.default_rng(0), score=oracle)
    assert model.removed_fake.all() and not model.removed_real.any()
    clean = ALSLearner(LEARNER).fit(train)  # every fake removed, nobody else: the clean fit
    np.testing.assert_array_equal(model.item, clean.item_factors)


@pytest.mark.parametrize(
    "config",
    [
        BaggingConfig(bags=3, fraction=0.7),
        BaggingConfig(bags=2, fraction=0.8, unit="ratings"),
        TrimmedConfig(fraction=0.05, rounds=2),
        TrimmedConfig(fraction=0.05, unit="users", rounds=2),
        HuberConfig(delta=0.5, iterations=3),
        InfluenceCapConfig(cap=0.5),
        ALSWRConfig(lam=0.1),
    ],
    ids=lambda c: c.label,
)
def test_every_defense_gives_a_sound_model(
    split: tuple[Ratings, Ratings], config: DefenseConfig
) -> None:
    train, test = split
    fake = planted(train, 6, 40)
    model = defend(train, fake, config, LEARNER, np.random.default_rng(0))
    assert model.user.shape[0] == train.n_users and model.item.shape[0] == train.n_items
    assert model.user.shape[1] == model.item.shape[1]
    assert np.all(np.isfinite(model.user)) and np.all(np.isfinite(model.item))
    assert rmse(model, test) < 1.5
    if "kkt_residual" in model.info:
        assert model.info["kkt_residual"] < 1e-2
    # the defense sees no labels: its result does not depend on where the fakes are stored
    again = defend(train, fake, config, LEARNER, np.random.default_rng(0))
    np.testing.assert_array_equal(again.user, model.user)


def test_huber_down_weights_the_planted_ratings(split: tuple[Ratings, Ratings]) -> None:
    train, _ = split
    fake = planted(train, 6, 40)
    model = defend(train, fake, HuberConfig(delta=0.5), LEARNER, np.random.default_rng(0))
    assert model.info["mean_weight_fake"] < model.info["mean_weight_real"]


def test_influence_cap_caps_the_long_profiles(split: tuple[Ratings, Ratings]) -> None:
    train, _ = split
    fake = planted(train, 6, 200)
    model = defend(train, fake, InfluenceCapConfig(cap=1.0), LEARNER, np.random.default_rng(0))
    assert model.info["capped_fake"] == 6


def test_configs_round_trip_and_validate() -> None:
    for cls in DEFENSES.values():
        config = cls()
        assert type(config).from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match="fpr"):
        DetectRemoveConfig(fpr=1.5)
    with pytest.raises(ConfigError, match="unknown detector"):
        DetectRemoveConfig(detector="nope")
    with pytest.raises(ConfigError):
        BaggingConfig(bags=0)
    with pytest.raises(ConfigError):
        TrimmedConfig(fraction=1.0)
    with pytest.raises(ConfigError):
        HuberConfig(delta=0.0)


def test_grid_rows_carry_the_required_keys(split: tuple[Ratings, Ratings]) -> None:
    train, test = split
    attacks = {"planted": planted(train, 8, 60)}
    defenses: list[DefenseConfig] = [DetectRemoveConfig(fpr=0.05), TrimmedConfig(fraction=0.0)]
    result = evaluate_defenses(train, test, attacks, defenses, LEARNER, np.array([0]))
    rows = {r["name"]: r for r in result["defenses"]}
    trimmed = rows[TrimmedConfig(fraction=0.0).label]
    # trimming nothing is plain ALS: same shift, same clean RMSE, nothing removed
    assert trimmed["rmse_shift"] == pytest.approx(trimmed["rmse_shift_undefended"])
    assert trimmed["test_rmse_clean_defended"] == pytest.approx(trimmed["test_rmse_clean"])
    assert trimmed["rmse_shift_defense_alone"] == pytest.approx(0.0, abs=1e-6)
    caught = rows[DetectRemoveConfig(fpr=0.05).label]
    assert caught["removed_fake"] == 8
    assert caught["shift_removed"] is None or caught["shift_removed"] > 0.5


def test_learned_score_trained_on_an_earlier_attack(split: tuple[Ratings, Ratings]) -> None:
    train, _ = split
    score = learned_score(train, planted(train, 12, 60, seed=5), np.random.default_rng(0))
    config = DetectRemoveConfig(detector="learned", fpr=0.05)
    fake = planted(train, 10, 60, seed=6)
    model = defend(train, fake, config, LEARNER, np.random.default_rng(0), score=score)
    assert model.removed_fake.all()
    # cross-fitted reference scores: the realised rate on the real users stays near 5%
    assert model.removed_real.mean() <= 0.10
    with pytest.raises(ConfigError, match="score function"):
        defend(train, planted(train, 2, 10), config, LEARNER, np.random.default_rng(0))


def test_labels_are_the_templates_filled_with_the_fields() -> None:
    """Tables, store keys and README rows name defenses by these labels."""
    assert [d.label for d in DEFAULT_DEFENSES] == [
        "detect_remove[rdma,fpr=0.01,reference]",
        "detect_remove[wdma,fpr=0.01,reference]",
        "detect_remove[fmtd,fpr=0.01,reference]",
        "detect_remove[degsim,fpr=0.01,reference]",
        "bagging[10x0.8 users]",
        "trimmed[ratings 0.02]",
        "trimmed[users 0.03]",
        "huber[delta=1]",
        "influence_cap[1]",
        "als_wr[lam=0.1]",
    ]
    assert BaggingConfig(bags=2000, fraction=0.0295).label == "bagging[2000x0.0295 users]"
