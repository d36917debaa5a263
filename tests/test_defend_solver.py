"""The weighted ALS engine of the defenses: row solver against dense algebra, KKT, monotonicity."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.errors import DataError
from cfpoison.learners.weighted import WeightedProblem, fold_in, weighted_als
from cfpoison.learners.weighted_kernels import weighted_solve_rows


def random_matrix(rng: np.random.Generator, m: int, n: int, density: float) -> sp.csr_array:
    """A random sparse rating matrix on [-2, 2] with explicit zeros among the ratings."""
    dense = rng.choice([-2.0, -1.0, 0.0, 1.0, 2.0], (m, n))
    mask = rng.random((m, n)) < density
    rows, cols = np.nonzero(mask)
    matrix = sp.csr_array((dense[rows, cols], (rows, cols)), shape=(m, n))
    matrix.sort_indices()
    return matrix


@pytest.mark.parametrize(("k", "density"), [(3, 0.5), (10, 0.1)])
def test_weighted_rows_match_dense_normal_equations(
    rng: np.random.Generator, k: int, density: float
) -> None:
    """Both routes (k x k Cholesky; Woodbury for rows with fewer than 3k/4 entries, at k = 10
    and density 0.1), with zero weights among the entries."""
    matrix = random_matrix(rng, 40, 30, density)
    Y = rng.standard_normal((30, k))
    w = rng.uniform(0.1, 2.0, matrix.nnz)
    w[::5] = 0.0
    lam = rng.uniform(0.5, 3.0, 40)
    out = np.zeros((40, k))
    fit = weighted_solve_rows(
        matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32), matrix.data, w, Y, lam, out
    )
    counts = np.diff(matrix.indptr)
    assert np.any(4 * counts < 3 * k) == (k == 10)
    for r in range(40):
        sl = slice(matrix.indptr[r], matrix.indptr[r + 1])
        Yr, d, wr = Y[matrix.indices[sl]], matrix.data[sl], w[sl]
        x = np.linalg.solve(Yr.T @ (wr[:, None] * Yr) + lam[r] * np.eye(k), Yr.T @ (wr * d))
        np.testing.assert_allclose(out[r], x, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(fit[r], np.sum(wr * (d - Yr @ x) ** 2), rtol=1e-9, atol=1e-12)


def test_weighted_als_reaches_a_stationary_point_and_descends(rng: np.random.Generator) -> None:
    matrix = random_matrix(rng, 30, 20, 0.4)
    w = rng.uniform(0.2, 1.0, matrix.nnz)
    problem = WeightedProblem.build(matrix, rng.uniform(1, 2, 30), rng.uniform(1, 2, 20))
    start = 0.1 * rng.standard_normal((20, 4))
    values = [weighted_als(problem, w, start, s, 0.0).objective for s in (1, 2, 5, 10)]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(values))
    fit = weighted_als(problem, w, start, 2000, 1e-13)
    assert fit.converged
    assert problem.kkt_residual(w, fit.user, fit.item) < 1e-5
    # the objective it reports is the weighted objective at its factors
    direct = np.sum(w * problem.residuals(fit.user, fit.item) ** 2)
    assert np.isclose(fit.objective, direct + problem.penalty(fit.user, fit.item), rtol=1e-9)


def test_kkt_residual_sees_a_perturbation(rng: np.random.Generator) -> None:
    matrix = random_matrix(rng, 20, 15, 0.5)
    w = np.ones(matrix.nnz)
    problem = WeightedProblem.build(matrix, np.full(20, 2.0), np.full(15, 2.0))
    fit = weighted_als(problem, w, 0.1 * rng.standard_normal((15, 3)), 2000, 1e-13)
    assert problem.kkt_residual(w, fit.user + 0.01, fit.item) > 100 * problem.kkt_residual(
        w, fit.user, fit.item
    )


def test_fold_in_is_the_user_half_step(rng: np.random.Generator) -> None:
    matrix = random_matrix(rng, 10, 8, 0.6)
    V = rng.standard_normal((8, 2))
    users = fold_in(matrix, V, 3.0, np.array([1, 4]))
    for i, r in enumerate((1, 4)):
        row = matrix[[r]]
        Vr = V[row.indices]
        x = np.linalg.solve(Vr.T @ Vr + 3.0 * np.eye(2), Vr.T @ row.data)
        np.testing.assert_allclose(users[i], x, rtol=1e-10)


def test_weighted_als_stops_on_the_kkt_residual(rng: np.random.Generator) -> None:
    matrix = random_matrix(rng, 25, 15, 0.4)
    w = rng.uniform(0.2, 1.0, matrix.nnz)
    problem = WeightedProblem.build(matrix, np.full(25, 1.5), np.full(15, 1.5))
    fit = weighted_als(problem, w, 0.1 * rng.standard_normal((15, 3)), 5000, 0.0, 1e-6)
    assert fit.converged and fit.sweeps < 5000
    assert problem.kkt_residual(w, fit.user, fit.item) <= 1e-6


def test_negative_or_nan_weights_are_refused(rng: np.random.Generator) -> None:
    matrix = random_matrix(rng, 6, 5, 0.6)
    problem = WeightedProblem.build(matrix, np.ones(6), np.ones(5))
    for bad in (-0.5, np.nan):
        w = np.ones(matrix.nnz)
        w[0] = bad
        with pytest.raises(DataError, match="weight must be >= 0"):
            weighted_als(problem, w, rng.standard_normal((5, 2)), 10, 0.0)
