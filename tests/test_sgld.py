"""SGLD (Algorithm 2): log-posterior gradient, prior sampling at beta = 0, feasible output."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from cfpoison.attacks.gradient import ImplicitGradient, utility_gradient
from cfpoison.attacks.sgld import (
    ItemPrior,
    MimicPattern,
    Posterior,
    SGLDConfig,
    SGLDResult,
    candidate_iterations,
    dense_pattern,
    mimic_pattern,
    row_correlation,
    sgld_attack,
    sgld_chain,
    support_gradient,
    top_b_rows,
)
from cfpoison.attacks.threat import ThreatModel, grid_values, is_feasible, violations
from cfpoison.attacks.utility import Utility
from cfpoison.data.ratings import Ratings, RatingScale, item_moments
from cfpoison.errors import ConfigError
from cfpoison.learners.als import ALSConfig, ALSLearner
from cfpoison.learners.base import Factors, Learner

SCALE = RatingScale(1.0, 5.0, 1.0)
TIGHT = ALSConfig(rank=3, lambda_u=3.0, lambda_v=3.0, tol=1e-15, kkt_tol=1e-11, max_sweeps=20000)


def tiny_ratings(m: int = 30, n: int = 15, seed: int = 0, item_spread: float = 0.0) -> Ratings:
    """Low-rank whole-star ratings, about half observed, every item rated; plus item biases
    ``N(0, item_spread^2)`` when ``item_spread > 0`` (a crowd that agrees on items)."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(m, 2)) @ rng.normal(size=(2, n))
    mask = rng.random((m, n)) < 0.5
    mask[rng.integers(0, m, n), np.arange(n)] = True
    if item_spread > 0:
        truth += rng.normal(0.0, item_spread, size=n)
    users, items = np.nonzero(mask)
    stars = np.clip(np.round(3 + truth[users, items]), 1, 5)
    return Ratings.from_triples(users, items, stars, SCALE)


class Setup:
    """A clean model, a hybrid utility, and a fit(fake, init) closure around ALS."""

    def __init__(self, ratings: Ratings, config: ALSConfig = TIGHT, mu2: float = 0.5):
        self.ratings = ratings
        self.config = config
        self.clean = ALSLearner(config).fit(ratings)
        self.utility = Utility(
            1.0,
            mu2,
            ratings.matrix,
            self.clean.user_factors.copy(),
            self.clean.item_factors.copy(),
            np.array([2]),
            np.array([2.0]),
        )

    def fit(self, fake: sp.csr_array, init: Factors | None) -> ALSLearner:
        start = self.clean.factors if init is None else init
        return ALSLearner(self.config).fit(self.ratings, init=start, fake=fake)

    def gradient(self, learner: Learner, fake: sp.csr_array) -> ImplicitGradient:
        return utility_gradient(learner, self.ratings.matrix, fake, self.utility, solve_tol=1e-10)

    def posterior(self, prior: ItemPrior, beta: float) -> Posterior:
        return Posterior(prior, beta, self.fit, self.gradient)

    def attack(
        self, threat: ThreatModel, config: SGLDConfig, seed: int, grid: np.ndarray | None = None
    ) -> SGLDResult:
        n_fake = threat.n_fake(self.ratings.n_users)
        return sgld_attack(
            self.ratings.matrix,
            self.fit,
            self.gradient,
            self.utility,
            threat,
            n_fake,
            config,
            np.random.default_rng(seed),
            grid,
        )


def test_prior_statistics_in_both_modes() -> None:
    dense = np.array([[2.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    observed = np.array([[True, False, False], [True, True, False], [False, True, False]])
    rows, cols = np.nonzero(observed)
    matrix = sp.csr_array((dense[rows, cols], (rows, cols)), shape=(3, 3))
    paper = ItemPrior.from_ratings(matrix, "paper", 1e-4)
    np.testing.assert_allclose(paper.mean, dense.mean(axis=0))
    np.testing.assert_allclose(paper.variance, np.maximum(dense.var(axis=0), 1e-4))
    seen = ItemPrior.from_ratings(matrix, "observed", 1e-4)
    # item 0: {2, -1}; item 1: {1, 0} (an explicit zero rating); item 2: nobody -> global
    np.testing.assert_allclose(seen.mean, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(seen.variance, [2.25, 0.25, np.var([2.0, -1.0, 1.0, 0.0])])
    assert paper.variance[2] == 1e-4  # sigma_j = 0 is floored, never divided by


@pytest.mark.slow
@pytest.mark.parametrize("support", ["dense", "top-b"])
def test_log_posterior_gradient_matches_finite_differences(support: str) -> None:
    setup = Setup(tiny_ratings())
    prior = ItemPrior.from_ratings(setup.ratings.matrix, "paper", 1e-2)
    posterior = setup.posterior(prior, 0.7)
    if support == "top-b":  # the learner sees each row's 5 largest |M~_ij| of 15
        posterior = dataclasses.replace(
            posterior, to_fake=top_b_rows(5), gradient_of=support_gradient
        )
    rng = np.random.default_rng(1)
    dense = np.clip(prior.sample(3, rng), -2, 2)
    log_p, utility, grad, learner, diagnostics = posterior.evaluate(dense)
    assert diagnostics["kkt_residual"] >= 0 and "solve_residual" in diagnostics
    assert learner.kkt_residual() < 1e-6
    log_prior, grad_prior = prior.log_density_and_gradient(dense)
    assert log_p == pytest.approx(log_prior + 0.7 * utility)
    h = 1e-4
    for _ in range(2):  # directional derivatives along random directions
        direction = rng.normal(size=dense.shape)
        plus = posterior.evaluate(dense + h * direction, learner.factors)[0]
        minus = posterior.evaluate(dense - h * direction, learner.factors)[0]
        assert np.sum(grad * direction) == pytest.approx((plus - minus) / (2 * h), rel=1e-3)
    # the utility part alone, along the utility gradient (the prior part is exact)
    utility_grad = grad - grad_prior
    direction = utility_grad / np.linalg.norm(utility_grad)
    plus = posterior.evaluate(dense + h * direction, learner.factors)[1]
    minus = posterior.evaluate(dense - h * direction, learner.factors)[1]
    fd = 0.7 * (plus - minus) / (2 * h)
    assert np.sum(utility_grad * direction) == pytest.approx(fd, rel=1e-2)


@pytest.mark.parametrize(
    ("preconditioner", "step", "iterations", "offset"),
    [("prior", 0.2, 100, 1.0), ("identity", 0.002, 200, 0.0)],
)
def test_beta_zero_samples_follow_the_prior(
    preconditioner: str, step: float, iterations: int, offset: float
) -> None:
    setup = Setup(tiny_ratings(), ALSConfig(rank=3, lambda_u=1.0, lambda_v=1.0, max_sweeps=2))
    prior = ItemPrior.from_ratings(setup.ratings.matrix, "paper", 0.05)
    posterior = setup.posterior(prior, 0.0)
    config = SGLDConfig(
        beta=0.0,
        iterations=iterations,
        step_size=step,
        preconditioner=preconditioner,  # type: ignore[arg-type]
        box=False,
    )
    rng = np.random.default_rng(2)
    # P = Sigma contracts every item at rate s / 2 per step: it forgets a start off the prior;
    # P = I contracts item j at s / (2 sigma_j^2), far too slowly here: it must stay put
    start = prior.sample(4000, rng) + offset
    samples, history = sgld_chain(posterior, config, start, rng)
    assert np.isnan(history[-1].utility)  # beta = 0: no learner is fitted
    # stationary variance of the discretised chain: sigma^2 / (1 - s / 4) for P = Sigma
    se_mean = np.sqrt(prior.variance / len(samples))
    assert np.all(np.abs(samples.mean(axis=0) - prior.mean) < 5 * se_mean)
    np.testing.assert_allclose(samples.var(axis=0), prior.variance, rtol=0.12)


@pytest.mark.slow
def test_beta_pulls_the_samples_up_the_utility() -> None:
    setup = Setup(tiny_ratings(), ALSConfig(rank=3, lambda_u=1.0, lambda_v=1.0))
    prior = ItemPrior.from_ratings(setup.ratings.matrix, "paper", 1e-2)
    rng = np.random.default_rng(3)
    start = np.clip(prior.sample(4, rng), -2, 2)
    final = {}
    for beta in (0.0, 5.0):
        posterior = setup.posterior(prior, beta)
        config = SGLDConfig(beta=beta, iterations=15, step_size=0.05)
        sample, _ = sgld_chain(posterior, config, start, np.random.default_rng(4), 0, 2.0)
        refit = setup.fit(dense_pattern(sample), None)
        final[beta] = setup.utility.value(refit.user_factors, refit.item_factors)
    assert final[5.0] > 2 * final[0.0]


@settings(max_examples=6, deadline=None)
@given(
    items_per_user=st.integers(1, 15),
    max_rating=st.floats(0.3, 2.0),
    scale=st.sampled_from([SCALE, RatingScale(0.5, 5.0, 0.5), RatingScale(1.0, 5.0, 0.0)]),
    box=st.booleans(),
)
def test_every_output_is_feasible(
    items_per_user: int, max_rating: float, scale: RatingScale, box: bool
) -> None:
    ratings = tiny_ratings(20, 15, seed=5)
    setup = Setup(ratings, ALSConfig(rank=2, lambda_u=1.0, lambda_v=1.0, max_sweeps=20))
    threat = ThreatModel(alpha=0.1, items_per_user=items_per_user, max_rating=max_rating)
    grid = grid_values(scale, max_rating)
    config = SGLDConfig(iterations=2, chains=2, samples=1, box=box)
    result = setup.attack(threat, config, 6, grid)
    assert is_feasible(result.fake, threat, threat.n_fake(ratings.n_users), grid)
    assert np.all(np.diff(result.fake.indptr) == items_per_user)
    assert len(result.candidates) == 2 and len(result.history) == 4
    assert result.utility == max(c.utility for c in result.candidates)


@pytest.mark.slow
def test_attack_is_deterministic_and_keeps_the_best_candidate() -> None:
    ratings = tiny_ratings()
    setup = Setup(ratings, ALSConfig(rank=3, lambda_u=1.0, lambda_v=1.0))
    threat = ThreatModel(alpha=0.1, items_per_user=5)
    config = SGLDConfig(iterations=4, chains=2, samples=2)
    runs = [setup.attack(threat, config, 8) for _ in range(2)]
    assert (runs[0].fake != runs[1].fake).nnz == 0
    assert runs[0].utility == runs[1].utility
    best = max(runs[0].candidates, key=lambda c: c.utility)
    refit = setup.fit(runs[0].fake, None)
    value = setup.utility.value(refit.user_factors, refit.item_factors)
    assert value == pytest.approx(best.utility, rel=1e-3)


def test_top_b_support_fits_the_chain_on_b_entries_per_row() -> None:
    setup = Setup(tiny_ratings(seed=11), ALSConfig(rank=3, lambda_u=1.0, lambda_v=1.0))
    seen: list[sp.csr_array] = []
    original = setup.fit

    def fit(fake: sp.csr_array, init: Factors | None) -> ALSLearner:
        seen.append(fake)
        return original(fake, init)

    setup.fit = fit  # type: ignore[method-assign]
    threat = ThreatModel(alpha=0.1, items_per_user=4)
    config = SGLDConfig(iterations=3, chains=1, samples=1, support="top-b")
    result = setup.attack(threat, config, 12)
    chain, candidates = seen[:3], seen[3:]
    for fake in chain:  # continuous values, B per row: R of rows the attacker could inject
        assert np.all(np.diff(fake.indptr) == 4) and np.abs(fake.data).max() <= 2.0
    assert len(candidates) == 1 and is_feasible(result.fake, threat, 3)
    setup.fit = original  # type: ignore[method-assign]
    dense_run = setup.attack(threat, dataclasses.replace(config, support="dense"), 12)
    assert dense_run.history[0].utility != result.history[0].utility
    state = np.array([[0.1, -1.5, 0.3, 2.0], [1.0, 0.0, -0.2, 0.05]])
    rows = top_b_rows(2)(state)
    np.testing.assert_array_equal(rows.toarray(), [[0, -1.5, 0, 2.0], [1.0, 0, -0.2, 0]])
    for bad in ({"support": "sparse"}, {"support": "dense", "mode": "mimic"}):
        with pytest.raises(ConfigError):
            SGLDConfig(**bad)  # type: ignore[arg-type]


def test_dense_pattern_stores_every_entry() -> None:
    dense = np.array([[0.0, 1.5], [-2.0, 0.0]])
    matrix = dense_pattern(dense)
    assert matrix.nnz == 4
    np.testing.assert_array_equal(matrix.toarray(), dense)


def test_candidates_and_config() -> None:
    assert candidate_iterations(20, 3) == [11, 16, 20]
    assert candidate_iterations(1, 3) == [1]
    assert candidate_iterations(4, 10) == [3, 4]
    config = SGLDConfig(beta=0.3, step_decay=0.55)
    assert SGLDConfig.from_dict(config.to_dict()) == config
    assert config.step(3) == pytest.approx(0.1 * 4**-0.55)
    for bad in ({"beta": -1.0}, {"iterations": 0}, {"step_size": 0.0}, {"step_decay": 2.0}):
        with pytest.raises(ConfigError):
            SGLDConfig(**bad)  # type: ignore[arg-type]


def test_engine_runs_sgld_from_options() -> None:
    from cfpoison.attacks.engine import AttackConfig, run_attack

    ratings = tiny_ratings(seed=9)
    config = AttackConfig(
        method="sgld",
        learner=ALSConfig(rank=3, lambda_u=1.0, lambda_v=1.0),
        threat=ThreatModel(alpha=0.1, items_per_user=4),
        iterations=3,
        options={"beta": 0.6, "chains": 2, "samples": 1},
        seed=3,
    )
    result = run_attack(ratings, config)
    assert result.fake.shape == (3, ratings.n_items)
    assert [h["iteration"] for h in result.history] == [1, 2, 3, 1, 2, 3]
    assert result.info["sgld"]["beta"] == 0.6 and len(result.info["candidates"]) == 2
    assert result.info["best_utility"] == pytest.approx(result.metrics["utility"], rel=1e-6)
    with pytest.raises(ConfigError):
        run_attack(ratings, config.replace(options={"iterations": 5}))
    with pytest.raises(ConfigError):
        run_attack(ratings, config.replace(options={"beta": -1.0}))


def test_assign_maps_latent_ranks_onto_the_row_ratings() -> None:
    pattern = sp.csr_array(
        (np.zeros(5), np.array([0, 2, 3, 1, 4]), np.array([0, 3, 5])), shape=(2, 5)
    )
    mimic = MimicPattern(pattern, np.array([-1.0, 0.5, 2.0, -2.0, 1.0]))
    fake = mimic.assign(np.array([0.3, -5.0, 9.0, 1.0, 0.0]))
    # row 0: items 0, 2, 3 with latents 0.3, -5, 9 -> ratings 0.5, -1, 2
    # row 1: items 1, 4 with latents 1, 0 -> ratings 1, -2
    np.testing.assert_array_equal(fake.toarray()[0, [0, 2, 3]], [0.5, -1.0, 2.0])
    np.testing.assert_array_equal(fake.toarray()[1, [1, 4]], [1.0, -2.0])


def test_mimic_pattern_copies_a_real_users_shape() -> None:
    ratings = tiny_ratings(40, 15, seed=11)
    matrix, budget = ratings.matrix, 7
    short = [u for u in range(matrix.shape[0]) if matrix.indptr[u + 1] - matrix.indptr[u] <= budget]
    profiles = {
        u: (
            tuple(matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]]),
            tuple(np.sort(matrix.data[matrix.indptr[u] : matrix.indptr[u + 1]])),
        )
        for u in short
    }
    for window in (0, 2):
        mimic = mimic_pattern(matrix, budget, 30, window, np.random.default_rng(5))
        lengths = np.diff(mimic.pattern.indptr)
        assert lengths.max() <= budget and len(set(lengths.tolist())) > 1
        copies = 0
        for row in range(30):
            span = slice(mimic.pattern.indptr[row], mimic.pattern.indptr[row + 1])
            items, values = tuple(mimic.pattern.indices[span]), tuple(mimic.values[span])
            assert values in {v for _, v in profiles.values()}  # a real user's ratings
            assert len(set(items)) == len(items)
            copies += (items, values) in profiles.values()
        # window 0: the template's own items; window 2: other items of similar popularity
        assert copies == 30 if window == 0 else copies < 30


def test_mimic_profiles_match_the_real_users_length_histogram_and_agreement() -> None:
    matrix, budget = tiny_ratings(300, 40, seed=15, item_spread=0.8).matrix, 20
    mimic = mimic_pattern(matrix, budget, 200, 2, np.random.default_rng(7))
    lengths = np.diff(matrix.indptr)
    short = lengths <= budget
    fake_lengths = np.diff(mimic.pattern.indptr)
    grid = np.arange(lengths.min(), budget + 1)
    cdf = [
        np.searchsorted(np.sort(x), grid, side="right") / len(x)
        for x in (lengths[short], fake_lengths)
    ]
    assert np.abs(cdf[0] - cdf[1]).max() < 0.12  # Kolmogorov-Smirnov distance
    real_values = np.concatenate(
        [matrix.data[matrix.indptr[u] : matrix.indptr[u + 1]] for u in np.flatnonzero(short)]
    )
    stars = np.arange(-2.0, 2.5)
    share = [np.mean(v[:, None] == stars, axis=0) for v in (real_values, mimic.values)]
    assert np.abs(share[0] - share[1]).max() < 0.03
    # a latent order against the crowd's: the floor keeps each fake as much in agreement with
    # the crowd as real users are; without it, the fakes disagree
    assert mimic.crowd is not None and mimic.agreement_target is not None
    against = np.random.default_rng(9).normal(size=mimic.values.size) - mimic.crowd
    kept = mimic.assign(against)
    free = dataclasses.replace(mimic, agreement_target=None).assign(against)
    items = item_moments(matrix)[1]
    real = row_correlation(matrix.indptr, matrix.data, items[matrix.indices])[short]
    assert abs(mimic.agreement(kept.data).mean() - real.mean()) < 0.03
    assert mimic.agreement(free.data).mean() < real.mean() - 0.5
    for row in range(200):  # each row keeps its template's ratings
        span = slice(kept.indptr[row], kept.indptr[row + 1])
        np.testing.assert_array_equal(np.sort(kept.data[span]), mimic.values[span])


def test_assign_lands_each_row_near_its_agreement_target() -> None:
    matrix = tiny_ratings(60, 20, seed=14, item_spread=0.8).matrix
    mimic = mimic_pattern(matrix, 12, 25, 2, np.random.default_rng(6))
    assert mimic.crowd is not None and mimic.agreement_target is not None
    rng = np.random.default_rng(8)
    for at_least in (False, True):
        rows = dataclasses.replace(mimic, at_least=at_least)
        for shift in (-1.0, 0.0, 1.0):  # latent orders against, across and with the crowd's
            latent = rng.normal(size=mimic.values.size) + shift * mimic.crowd
            got = rows.agreement(rows.assign(latent).data)
            reach = [rows.agreement(rows._ranked(latent, s * mimic.crowd)) for s in (-1, 1)]
            want = np.clip(mimic.agreement_target, *reach)
            if at_least:  # rows above their target are left alone
                want = np.maximum(want, rows.agreement(rows._ranked(latent)))
            gap = np.abs(got - want)
            assert np.median(gap) < 0.05 and gap.mean() < 0.15


def test_row_correlation_is_pearsons_per_row() -> None:
    indptr = np.array([0, 3, 5, 7])
    a = np.array([1.0, 2.0, 4.0, 1.0, 1.0, 3.0, 2.0])
    b = np.array([0.5, 0.1, 2.0, 5.0, 6.0, 1.0, 1.0])
    expected = [np.corrcoef(a[:3], b[:3])[0, 1], 0.0, 0.0]  # rows 1 and 2: a or b constant
    np.testing.assert_allclose(row_correlation(indptr, a, b), expected)


def test_centred_prior_removes_each_users_mean() -> None:
    # user 0 rated item 0 only (centred 0); user 1: +1 and -1
    prior = ItemPrior.from_ratings(
        sp.csr_array((np.array([2.0, 1.0, -1.0]), np.array([0, 0, 1]), np.array([0, 1, 3]))),
        "centred",
        1e-4,
    )
    np.testing.assert_allclose(prior.mean, [0.5, -1.0])
    np.testing.assert_allclose(prior.variance, [0.25, 1e-4])


@pytest.mark.parametrize("beta", [0.0, 0.6])
def test_mimic_mode_is_feasible_on_the_grid_and_deterministic(beta: float) -> None:
    ratings = tiny_ratings(40, 15, seed=12)
    setup = Setup(ratings, ALSConfig(rank=2, lambda_u=1.0, lambda_v=1.0, max_sweeps=30))
    threat = ThreatModel(alpha=0.2, items_per_user=7)
    grid = grid_values(SCALE, threat.max_rating)
    config = SGLDConfig(beta=beta, iterations=3, chains=2, samples=1, mode="mimic")
    assert config.prior_mode == "centred"
    runs = [setup.attack(threat, config, 3, grid) for _ in range(2)]
    fake = runs[0].fake
    assert violations(fake, threat, threat.n_fake(ratings.n_users), grid) == []
    lengths = np.diff(fake.indptr)
    assert lengths.max() <= 7 and len(set(lengths.tolist())) > 1
    assert (runs[0].fake != runs[1].fake).nnz == 0 and runs[0].utility == runs[1].utility
    other = setup.attack(threat, config, 4, grid).fake
    assert other.shape != fake.shape or (other != fake).nnz > 0


def test_beta_reorders_mimic_ratings_up_the_utility() -> None:
    setup = Setup(tiny_ratings(40, 15, seed=13), ALSConfig(rank=3, lambda_u=1.0, lambda_v=1.0))
    threat = ThreatModel(alpha=0.2, items_per_user=8)
    utilities = {}
    for beta in (0.0, 50.0):
        config = SGLDConfig(
            beta=beta, iterations=12, chains=1, samples=1, mode="mimic", step_size=0.5
        )
        utilities[beta] = setup.attack(threat, config, 5).utility
    # the same templates and items (same seed), only the order of the ratings differs
    assert utilities[50.0] > utilities[0.0]


def test_mimic_config_validation() -> None:
    config = SGLDConfig(mode="mimic", window=3, prior="observed", agreement="free")
    assert SGLDConfig.from_dict(config.to_dict()) == config
    assert config.prior_mode == "observed" and SGLDConfig().prior_mode == "paper"
    for bad in ({"mode": "copy"}, {"window": -1}, {"prior": "dense"}, {"agreement": "crowd"}):
        with pytest.raises(ConfigError):
            SGLDConfig(**bad)  # type: ignore[arg-type]


def test_sgld_counts_every_unconverged_gradient() -> None:
    """A solve capped at one iteration leaves each SGLD step's gradient untrustworthy; the
    result counts them (the diagnostics sit in each step's record, not at its top level)."""
    from cfpoison.attacks.engine import AttackConfig, run_attack

    config = AttackConfig(
        method="sgld",
        learner=ALSConfig(rank=3, lambda_u=1.0, lambda_v=1.0),
        threat=ThreatModel(alpha=0.1, items_per_user=4),
        iterations=2,
        solve_tol=1e-12,
        solve_max_iter=1,
        options={"beta": 0.6, "chains": 1, "samples": 1},
        seed=3,
    )
    result = run_attack(tiny_ratings(seed=9), config)
    assert result.untrustworthy_gradients == len(result.history) == 2
    assert result.to_dict()["untrustworthy_gradients"] == 2
