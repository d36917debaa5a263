"""The exact implicit gradient against central finite differences of re-solved models.

For every fake entry (i, j): re-solve the learner from the unperturbed solution (warm start,
tight tolerances) at ``M~_ij +- h`` and difference the utility. The exact gradient must match
with cosine >= 0.999 and relative error <= 1e-2 for availability, integrity, hybrid and the
ranking utility, for ALS and for nuclear norm. The paper's Eq. 12 (block-diagonal,
``docs/math.md`` section 3.4) is measurably worse on these fixed problems: cosine between
-0.29 and 0.70 (README, "What we measured"), relative error above 0.8; the test asserts that
range with a margin.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.attacks.gradient import utility_gradient
from cfpoison.attacks.utility import Utility, candidate_pattern
from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.learners import ALSConfig, LearnerConfig, NuclearConfig, build_learner
from cfpoison.learners.base import Factors
from cfpoison.models.ranking import top_unrated

STEP = 1e-4
#: The paper gradient's cosine with finite differences on ``_problem``: measured -0.29 to 0.70.
PAPER_COSINE = (-0.35, 0.75)
UTILITIES = {
    "availability": (1.0, 0.0, 0.0),
    "integrity": (0.0, 1.0, 0.0),
    "hybrid": (1.0, -1.0, 0.0),
    "ranking": (0.0, 0.0, 1.0),
}
LEARNERS: dict[str, LearnerConfig] = {
    "als": ALSConfig(
        rank=3, lambda_u=2.0, lambda_v=2.0, tol=0.0, kkt_tol=1e-11, max_sweeps=200_000
    ),
    "nuclear": NuclearConfig(
        lam=3.0, rank=2, tol=0.0, kkt_tol=1e-11, certificate_tol=1e-9, max_sweeps=200_000
    ),
}


def _problem() -> tuple[Ratings, sp.csr_array]:
    """30 users x 20 items, rank-3 signal plus noise, 40% observed; 3 fake users, 6 items."""
    rng = np.random.default_rng(11)
    m, n, n_fake, b = 30, 20, 3, 6
    signal = rng.normal(size=(m, 3)) @ rng.normal(size=(3, n)) * 0.6
    dense = np.clip(signal + 0.3 * rng.normal(size=(m, n)), -2, 2)
    rows, cols = np.nonzero(rng.random((m, n)) < 0.4)
    scale = RatingScale(-2.0, 2.0, 0.0)
    ratings = Ratings.from_triples(rows, cols, dense[rows, cols], scale, "tiny")
    fake_cols = np.sort(np.argsort(rng.random((n_fake, n)), axis=1)[:, :b], axis=1)
    fake = sp.csr_array(
        (rng.uniform(-2, 2, n_fake * b), fake_cols.ravel(), np.arange(n_fake + 1) * b),
        shape=(n_fake, n),
    )
    return ratings, fake


def _factors_after(config: LearnerConfig, ratings: Ratings, fake: sp.csr_array, init: Factors):
    model = build_learner(config).fit(ratings, init=init, fake=fake)
    return model.user_factors.copy(), model.item_factors.copy()


@pytest.mark.parametrize("learner_name", sorted(LEARNERS))
def test_exact_gradient_matches_finite_differences(learner_name: str) -> None:
    config = LEARNERS[learner_name]
    ratings, fake = _problem()
    clean = build_learner(config).fit(ratings)
    model = build_learner(config).fit(ratings, fake=fake)
    assert model.kkt_residual() < 1e-8
    targets = np.array([2, 7])
    top = top_unrated(ratings.matrix, clean.user_factors, clean.item_factors, 5, exclude=targets)
    utilities = {
        name: Utility(
            mu1,
            mu2,
            ratings.matrix,
            clean.user_factors,
            clean.item_factors,
            targets,
            np.array([2.0, 1.0]),
            mu3,
            candidate_pattern(top, ratings.n_items),
            0.5,
        )
        for name, (mu1, mu2, mu3) in UTILITIES.items()
    }
    differences = {name: np.zeros(fake.nnz) for name in utilities}
    for entry in range(fake.nnz):
        values = {name: [] for name in utilities}
        for sign in (1.0, -1.0):
            moved = fake.copy()
            moved.data[entry] += sign * STEP
            user, item = _factors_after(config, ratings, moved, model.factors.copy())
            for name, utility in utilities.items():
                values[name].append(utility.value(user, item))
        for name in utilities:
            differences[name][entry] = (values[name][0] - values[name][1]) / (2 * STEP)

    for name, utility in utilities.items():
        fd = differences[name]
        report = []
        for method in ("exact", "paper"):
            grad = utility_gradient(
                model, ratings.matrix, fake, utility, method, solve_tol=1e-12, solve_max_iter=5000
            ).on_pattern(fake)
            cosine = grad @ fd / (np.linalg.norm(grad) * np.linalg.norm(fd))
            relative = np.linalg.norm(grad - fd) / np.linalg.norm(fd)
            report.append((method, cosine, relative))
            if method == "exact":
                assert cosine >= 0.999, (learner_name, name, cosine)
                assert relative <= 1e-2, (learner_name, name, relative)
            else:
                assert PAPER_COSINE[0] <= cosine <= PAPER_COSINE[1], (learner_name, name, cosine)
                assert relative >= 0.5, (learner_name, name, relative)
        print(
            f"{learner_name:8s} {name:12s} "
            + "  ".join(f"{m}: cosine {c:+.4f} rel.err {r:.2e}" for m, c, r in report)
        )


def test_dense_gradient_agrees_with_the_pattern() -> None:
    ratings, fake = _problem()
    config = LEARNERS["als"].replace(kkt_tol=1e-8)
    clean = build_learner(config).fit(ratings)
    model = build_learner(config).fit(ratings, fake=fake)
    utility = Utility(
        1.0, 0.5, ratings.matrix, clean.user_factors, clean.item_factors, np.array([3]), np.ones(1)
    )
    grad = utility_gradient(model, ratings.matrix, fake, utility)
    rows = np.repeat(np.arange(fake.shape[0]), np.diff(fake.indptr))
    np.testing.assert_allclose(grad.dense()[rows, fake.indices], grad.on_pattern(fake))
    assert grad.solver_residual <= 1e-4
