"""The bagging certificate (cfpoison.defend.certify, docs/math.md section 8): its formulas, and
certified overlaps that hold against the attacks cfpoison computes."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.attacks.engine import AttackConfig, run_attack
from cfpoison.attacks.promotion import PromotionConfig, run_promotion
from cfpoison.attacks.threat import ThreatModel
from cfpoison.attacks.utility import UtilityConfig
from cfpoison.cli import main
from cfpoison.data.interactions import Interactions
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.defend.certify import (
    BagTopN,
    als_top_n,
    certified_sizes,
    clopper_pearson,
    fake_probability,
    vote_counts,
    vote_top_n,
    wrmf_top_n,
)
from cfpoison.defend.defenses import BaggingConfig, bag_subsets
from cfpoison.errors import ConfigError
from cfpoison.learners import ALSConfig, WRMFConfig
from cfpoison.learners.wrmf import WRMFLearner, fold_in

LEARNER = ALSConfig(rank=2, lambda_u=3.0, lambda_v=3.0, threads=1, kkt_tol=1e-4)
TOP_N, SAMPLE, BAGS, CONFIDENCE, FAKES = 5, 10, 50, 0.999, 2


@pytest.fixture(scope="module")
def loved() -> Ratings:
    """200 users x 40 items (1-5 stars), 30% observed: 8 items everyone rates high, a rank-2
    taste on top; small bags agree on those 8, so certified overlaps are not all 0."""
    rng = np.random.default_rng(7)
    m, n = 200, 40
    bias = np.r_[np.full(8, 1.6), rng.normal(-0.3, 0.5, n - 8)]
    taste = rng.normal(size=(m, 2)) @ rng.normal(size=(2, n)) * 0.4
    rows, cols = np.nonzero(rng.random((m, n)) < 0.3)
    noise = 0.4 * rng.normal(size=len(rows))
    stars = np.clip(np.round(3 + bias[cols] + taste[rows, cols] + noise), 1, 5)
    return Ratings.from_triples(rows + 1, cols + 1, stars, RatingScale(1, 5, 1), "loved")


def test_delta_is_the_chance_that_a_bag_holds_a_fake(loved: Ratings) -> None:
    n = loved.n_users
    exact = [1 - math.comb(n, SAMPLE) / math.comb(n + e, SAMPLE) for e in (1, 2, 5)]
    assert fake_probability(np.array([1, 2, 5]), n, SAMPLE) == pytest.approx(exact, rel=1e-12)
    draws, e = 3000, 5
    fake = sp.csr_array((np.ones(e), (np.arange(e), np.zeros(e, int))), shape=(e, loved.n_items))
    config = BaggingConfig(bags=draws, fraction=SAMPLE / (n + e))
    rng = np.random.default_rng(1)
    holds = np.array([s.fake_rows.any() for s in bag_subsets(loved, fake, config, rng)])
    sd = math.sqrt(exact[2] * (1 - exact[2]) / draws)
    assert abs(holds.mean() - exact[2]) < 4 * sd
    with pytest.raises(ConfigError):
        fake_probability(np.array([1]), 10, 11)


def test_clopper_pearson_contains_the_share_and_covers() -> None:
    bags, level = 40, 0.1
    k = np.arange(bags + 1)
    lower, upper = clopper_pearson(k, bags, level)
    assert np.all(lower <= k / bags) and np.all(k / bags <= upper)
    assert np.all(np.diff(lower) > 0) and np.all(np.diff(upper) > 0)
    assert upper[0] == pytest.approx(1 - (level / 2) ** (1 / bags))
    assert lower[-1] == pytest.approx((level / 2) ** (1 / bags))
    votes = np.random.default_rng(2).binomial(bags, 0.3, size=20000)
    low, high = clopper_pearson(votes, bags, level)
    assert np.mean((low <= 0.3) & (high >= 0.3)) >= 1 - level


def _worst_overlap(lower: np.ndarray, upper: np.ndarray, ours: list[int], n: int) -> int:
    """The adversary's best: our items at their lowest votes, the others at their highest,
    ties ranked against ours; how many of ours stay in the top ``n``."""
    scored = [(lower[j], 0, j) for j in ours]
    scored += [(upper[j], 1, j) for j in range(len(lower)) if j not in ours]
    scored.sort(key=lambda t: (-t[0], -t[1]))
    return sum(1 for _, other, _ in scored[:n] if not other)


def test_certified_size_is_the_worst_case_over_the_bounds() -> None:
    rng = np.random.default_rng(3)
    m, n_items, bags = 30, 25, 30
    counts = rng.binomial(bags, rng.beta(0.5, 2.0, size=(m, n_items)))
    omega = sp.csr_array((rng.random((m, n_items)) < 0.2).astype(float))
    omega.data[:] = 0.0  # explicit zeros are ratings too
    delta = np.array([0.0, 0.01, 0.05, 0.2, 1.0])
    sizes = certified_sizes(counts, omega, bags, TOP_N, delta, 0.9)
    assert sizes.shape == (m, len(delta))
    assert np.all((sizes >= 0) & (sizes <= TOP_N)) and np.all(np.diff(sizes, axis=1) <= 0)
    assert np.all(sizes[:, -1] == 0)
    top = vote_top_n(counts, omega, TOP_N)
    for u in range(m):
        rated = omega.indices[omega.indptr[u] : omega.indptr[u + 1]]
        candidates = np.setdiff1d(np.arange(n_items), rated)
        low, high = clopper_pearson(counts[u], bags, 0.1 / len(candidates))
        ours = [int(j) for j in top[u] if j >= 0]
        assert set(ours) <= set(candidates)
        for d, size in zip(delta, sizes[u], strict=True):
            lo = np.where(np.isin(np.arange(n_items), candidates), (1 - d) * low, -np.inf)
            hi = np.where(np.isin(np.arange(n_items), candidates), (1 - d) * high + d, -np.inf)
            assert size == _worst_overlap(lo, hi, ours, TOP_N)


def test_unanimous_bags_certify_every_item_at_no_fakes() -> None:
    m, n_items, bags = 4, 30, 50
    counts = np.zeros((m, n_items), dtype=np.int64)
    counts[:, :TOP_N] = bags
    omega = sp.csr_array((m, n_items))
    sizes = certified_sizes(counts, omega, bags, TOP_N, np.array([0.0, 0.9]), CONFIDENCE)
    assert np.all(sizes[:, 0] == TOP_N) and np.all(sizes[:, 1] == 0)
    assert np.array_equal(vote_top_n(counts, omega, TOP_N), np.tile(np.arange(TOP_N), (m, 1)))


def _certified_overlap_holds(
    data: Ratings | Interactions,
    bagged: Callable[[sp.csr_array], BagTopN],
    fakes: dict[str, sp.csr_array],
    seed: int,
    least_mean: float,
) -> None:
    """Clean bags certify r per user at e = FAKES (a mean of at least ``least_mean``: not
    vacuous); each attack's e fakes, bagged again with the defender's generator, leave at least
    r of the clean vote's top N (with probability at least CONFIDENCE per user over the clean
    bags, up to the poisoned vote's own bag noise)."""
    none = sp.csr_array((0, data.n_items))
    omega = data.matrix
    clean = vote_counts(data, none, bagged(none), BAGS, SAMPLE, np.random.default_rng(seed))
    delta = fake_probability(np.array([FAKES]), data.n_users, SAMPLE)
    certified = certified_sizes(clean, omega, BAGS, TOP_N, delta, CONFIDENCE)[:, 0]
    assert certified.mean() >= least_mean
    ours = vote_top_n(clean, omega, TOP_N)
    for name, fake in fakes.items():
        assert fake.shape[0] == FAKES
        poisoned = vote_counts(data, fake, bagged(fake), BAGS, SAMPLE, np.random.default_rng(seed))
        theirs = vote_top_n(poisoned, omega, TOP_N)
        overlap = (ours[:, :, None] == theirs[:, None, :]).any(axis=2).sum(axis=1)
        assert np.all(overlap >= certified), name


def _rating_attacks_hold(
    data: Ratings, methods: tuple[str, ...], iterations: int, seed: int, least_mean: float
) -> None:
    """:func:`_certified_overlap_holds` for ALS bags against ``methods``' FAKES fake users
    (B = 10, the ranking utility, ``iterations`` steps)."""
    threat = ThreatModel(alpha=FAKES / data.n_users, items_per_user=10)
    utility = UtilityConfig(mu1=0.0, mu3=1.0)
    fakes = {
        method: run_attack(
            data,
            AttackConfig(
                method=method,
                learner=LEARNER,
                threat=threat,
                utility=utility,
                iterations=iterations,
                seed=seed,
            ),
        ).fake
        for method in methods
    }
    _certified_overlap_holds(
        data, lambda fake: als_top_n(data, fake, LEARNER, TOP_N), fakes, seed, least_mean
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_certified_items_survive_the_attacks(loved: Ratings, seed: int) -> None:
    """The certificate of ALS bags holds against the rating attacks."""
    _rating_attacks_hold(loved, ("uniform", "average", "bandwagon", "pga"), 3, seed, 2)


def test_defend_certify_reports_per_fake_and_refuses_what_does_not_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["defend", "--dataset", "synthetic:small", "--threads", "1", "--rank", "5"]
    out = tmp_path / "certify.json"
    bagging = ["--defense", "bagging:bags=10,fraction=0.1"]
    assert main([*base, *bagging, "--certify", "--alpha", "0.02", "--json", str(out)]) == 0
    result = json.loads(out.read_text())["certify"]
    assert [row["fakes"] for row in result["per_fake"]] == [1, 2, 3, 4]  # ceil(0.02 * 200)
    assert result["bags"] == 10 and result["sample_size"] == 20 and result["top_n"] == 10
    assert set(result["accuracy"]) == {"bagged_hr", "bagged_ndcg", "unbagged_hr", "unbagged_ndcg"}
    assert "mean r@10" in capsys.readouterr().out
    for wrong in (
        ["--defense", "huber", "--certify"],
        [*bagging, "--defense", "huber", "--certify"],
        ["--defense", "bagging:unit=ratings", "--certify"],
        [*bagging, "--certify", "--grid", "uniform"],
        [*bagging, "--certify", "--fpr", "0.1"],
        [*bagging, "--grid", "uniform", "--top-n", "5"],
        [*bagging, "--certify", "--confidence", "1"],
    ):
        assert main([*base, *wrong]) == 2, wrong
        assert len(capsys.readouterr().err.splitlines()) == 2  # the error, then --help


@pytest.fixture(scope="module")
def clicked(loved: Ratings) -> Interactions:
    """``loved`` binarised at 4 stars (the 8 loved items are most of the interactions)."""
    return Interactions.from_ratings(loved, 4.0)


WRMF = WRMFConfig(rank=1, lam=1.0, threads=1, kkt_tol=1e-4)  # rank 1: small bags agree


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_certified_implicit_items_survive_the_promotion_attacks(
    clicked: Interactions, seed: int
) -> None:
    """The certificate of WRMF bags (implicit top N) holds against every promotion method
    cfpoison computes, as the explicit one does against the rating attacks (a mean r of
    1.7-2.4 at these seeds)."""
    fakes = {
        method: run_promotion(
            clicked,
            PromotionConfig(
                method=method,
                learner=WRMF,
                alpha=FAKES / clicked.n_users,
                items_per_user=8,
                n_targets=2,
                iterations=2,
                seed=seed,
            ),
        ).fake
        for method in ("random", "popular", "covisitation", "pga")
    }
    _certified_overlap_holds(
        clicked, lambda fake: wrmf_top_n(clicked, fake, WRMF, TOP_N), fakes, seed, 1
    )


def test_wrmf_fold_in_is_the_fit_s_own_user_step(clicked: Interactions) -> None:
    """A user folded in against a fit's item factors gets the factors the fit's exact user
    half-step gives it (the fit ends on its items, so one more user step is the reference)."""
    fitted = WRMFLearner(WRMF).fit(clicked)
    rows = np.array([0, 5, 17])
    folded = fold_in(clicked.matrix, fitted.item_factors, WRMF, rows)
    again = fold_in(clicked.matrix, fitted.item_factors, WRMF, np.arange(clicked.n_users))
    np.testing.assert_allclose(folded, again[rows], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(folded, fitted.user_factors[rows], atol=1e-3)


def test_defend_certify_implicit(tmp_path: Path) -> None:
    out = tmp_path / "certify.json"
    args = ["defend", "--dataset", "synthetic:small", "--threads", "1", "--certify"]
    bagging = ["--defense", "bagging:bags=4,fraction=0.1", "--feedback", "implicit:4"]
    assert main([*args, *bagging, "--alpha", "0.01", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["feedback"] == "implicit:4" and result["learner"]["name"] == "wrmf"
    assert [row["fakes"] for row in result["certify"]["per_fake"]] == [1, 2]
    assert main(["defend", "--dataset", "synthetic:small", *bagging]) == 2  # needs --certify
    ranked = tmp_path / "ranked.json"
    assert main([*args, *bagging, "--rank", "4", "--seed", "3", "--json", str(ranked)]) == 0
    learner = json.loads(ranked.read_text())["learner"]
    assert (learner["rank"], learner["seed"]) == (4, 3)  # WRMF's settings from the flags
    assert main([*args, *bagging, "--learner.lambda-u", "2"]) == 2  # an ALS-only setting


@pytest.fixture(scope="module")
def ml_subset(ml_small: Ratings) -> Ratings:
    """ml-latest-small's training split on its 200 most active users and the 40 items they
    rate most."""
    train, _ = prepare(ml_small, PreprocessConfig(top_users=200, top_items=40, seed=0))
    return train


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_certified_items_survive_every_attack_on_movielens(ml_subset: Ratings, seed: int) -> None:
    """On real ratings, the certificate holds against every rating attack cfpoison computes:
    the shilling baselines, PGA, robust PGA over surrogates and PGA against the bagging itself."""
    methods = ("uniform", "average", "bandwagon", "pga", "robust", "adaptive")
    _rating_attacks_hold(ml_subset, methods, 2, seed, 0.5)
