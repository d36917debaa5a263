"""The Schur-complement MINRES solve of H x = g: both orientations, true residuals, warm starts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.data.ratings import Ratings, RatingScale
from cfpoison.learners import ALSConfig, ALSLearner
from cfpoison.learners.hessian import FactorHessian, Rotations, _SchurSystem, minres, solve


def _problem(seed: int, m: int, m_fake: int, n: int) -> FactorHessian:
    """H at a stationary ALS fit (KKT 1e-12) of random ratings plus a fake block."""
    rng = np.random.default_rng(seed)
    mask = rng.random((m, n)) < 0.5
    mask[:, 0] = mask[0, :] = True
    rows, cols = np.nonzero(mask)
    train = sp.csr_array((rng.uniform(-2, 2, len(rows)), (rows, cols)), shape=(m, n))
    fake_mask = rng.random((m_fake, n)) < 0.6
    fr, fc = np.nonzero(fake_mask)
    fake = sp.csr_array((rng.uniform(-2, 2, len(fr)), (fr, fc)), shape=(m_fake, n))
    ratings = Ratings(train, np.arange(m) + 1, np.arange(n) + 1, RatingScale(1, 5, 0.5), "t")
    config = ALSConfig(rank=3, lambda_u=0.5, lambda_v=0.7, tol=0, kkt_tol=1e-12, max_sweeps=20000)
    learner = ALSLearner(config).fit(ratings, fake=fake)
    assert learner.converged
    f = learner.factors
    return FactorHessian(train, fake, f.user, f.fake_user, f.item, 0.5, 0.7)


def _dense(hessian: FactorHessian) -> np.ndarray:
    return np.column_stack([hessian.matvec(e) for e in np.eye(hessian.size)])


@pytest.mark.parametrize(("m", "m_fake", "n"), [(20, 3, 12), (6, 2, 25)])
def test_schur_solve_matches_the_dense_system(m: int, m_fake: int, n: int) -> None:
    hessian = _problem(m + n, m, m_fake, n)
    system = _SchurSystem(hessian, hessian.block_jacobi(), np.zeros(hessian.size))
    assert system.keep_items == (n <= m + m_fake)
    dense = _dense(hessian)
    np.testing.assert_allclose(dense, dense.T, atol=1e-9)
    rng = np.random.default_rng(1)
    rhs = dense @ rng.normal(size=hessian.size)  # consistent, as the utility's gradient is
    result = solve(hessian, rhs, tol=1e-9, max_iter=5000)
    assert result.converged and result.relative_residual <= 1e-9
    residual = np.linalg.norm(rhs - dense @ result.x) / np.linalg.norm(rhs)
    assert residual == pytest.approx(result.relative_residual, rel=1e-3, abs=1e-12)
    # the same solution as the dense least-norm one, up to H's null space (the rotations)
    reference = np.linalg.lstsq(dense, rhs, rcond=1e-10)[0]
    np.testing.assert_allclose(dense @ result.x, dense @ reference, atol=1e-8 * np.linalg.norm(rhs))
    # the Schur operator is the exact elimination: its products agree with the dense one
    keep = (
        slice(hessian.size - hessian.item.size, None)
        if system.keep_items
        else slice(0, hessian.size - hessian.item.size)
    )
    drop = np.setdiff1d(np.arange(hessian.size), np.arange(hessian.size)[keep])
    schur = dense[keep][:, keep] - dense[keep][:, drop] @ np.linalg.solve(
        dense[drop][:, drop], dense[drop][:, keep]
    )
    probe = rng.normal(size=system.size)
    np.testing.assert_allclose(system.matvec(probe), schur @ probe, rtol=1e-9, atol=1e-9)


def test_warm_start_and_the_iteration_cap_are_reported() -> None:
    hessian = _problem(3, 20, 3, 12)
    rhs = hessian.matvec(np.random.default_rng(2).normal(size=hessian.size))
    cold = solve(hessian, rhs, tol=1e-8, max_iter=5000)
    warm = solve(hessian, rhs, tol=1e-8, max_iter=5000, x0=cold.x)
    assert warm.converged and warm.iterations == 0
    capped = solve(hessian, rhs, tol=1e-14, max_iter=2)
    assert not capped.converged and capped.iterations <= 2
    assert capped.relative_residual > 1e-14


@pytest.mark.parametrize(("m", "m_fake", "n"), [(20, 3, 12), (6, 4, 25)])
def test_dense_fake_block_products_equal_the_sparse_ones(m: int, m_fake: int, n: int) -> None:
    """Fake rows that rate every item (SGLD's chains) go through BLAS; H, its off-diagonal
    blocks and a solve are those of the per-rating kernels, at a point that is not
    stationary (so the residual terms count)."""
    rng = np.random.default_rng(m + n)
    base = _problem(m + n, m, m_fake, n)
    values = rng.uniform(-2, 2, (m_fake, n))
    values[:, 1] = 0.0  # a stored zero is a rating too
    fake = sp.csr_array((values.ravel(), np.tile(np.arange(n), m_fake), np.arange(m_fake + 1) * n))
    point = (base.user, rng.normal(size=(m_fake, 3)), base.item + 0.1 * rng.normal(size=(n, 3)))
    fast = FactorHessian(base.train, fake, *point, 0.5, 0.7)
    slow = FactorHessian(base.train, fake, *point, 0.5, 0.7)
    assert fast._dense is not None
    slow._dense = None
    np.testing.assert_allclose(_dense(fast), _dense(slow), rtol=1e-10, atol=1e-10)
    dv = rng.normal(size=(n, 3))
    du, df = rng.normal(size=(m, 3)), rng.normal(size=(m_fake, 3))
    for a, b in zip(fast.couple_to_users(dv), slow.couple_to_users(dv), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        fast.couple_to_items(du, df), slow.couple_to_items(du, df), rtol=1e-10, atol=1e-10
    )
    rhs = _dense(slow) @ rng.normal(size=slow.size)
    x_fast, x_slow = (solve(h, rhs, tol=1e-10, max_iter=5000) for h in (fast, slow))
    assert x_fast.converged and x_slow.converged
    np.testing.assert_allclose(x_fast.x, x_slow.x, rtol=1e-6, atol=1e-8)


def _inexact_problem(kkt_tol: float) -> tuple[FactorHessian, np.ndarray]:
    """H at an ALS fit stationary to ``kkt_tol`` (60 users, 5 fake, 40 items, rank 4) and the
    gradient of a utility of ``U V'`` (``sum G_ij u_i.v_j``): orthogonal to the rotations."""
    rng = np.random.default_rng(1)
    m, m_fake, n = 60, 5, 40
    mask = rng.random((m, n)) < 0.3
    mask[:, 0] = mask[0, :] = True
    rows, cols = np.nonzero(mask)
    train = sp.csr_array((rng.uniform(-2, 2, len(rows)), (rows, cols)), shape=(m, n))
    fr, fc = np.nonzero(rng.random((m_fake, n)) < 0.5)
    fake = sp.csr_array((rng.uniform(-2, 2, len(fr)), (fr, fc)), shape=(m_fake, n))
    ratings = Ratings(train, np.arange(m) + 1, np.arange(n) + 1, RatingScale(1, 5, 0.5), "t")
    config = ALSConfig(
        rank=4,
        lambda_u=0.5,
        lambda_v=0.7,
        tol=0,
        kkt_tol=kkt_tol,
        max_sweeps=20000,
        anderson_memory=0,
    )
    f = ALSLearner(config).fit(ratings, fake=fake).factors
    hessian = FactorHessian(train, fake, f.user, f.fake_user, f.item, 0.5, 0.7)
    weights = rng.normal(size=(m, n))
    return hessian, hessian.rhs(weights @ hessian.item, weights.T @ hessian.user)


def _plain_solve(hessian: FactorHessian, rhs: np.ndarray, tol: float) -> tuple[np.ndarray, int]:
    """MINRES on the Schur complement without the rotations' gauge."""
    system = _SchurSystem(hessian, hessian.block_jacobi(), rhs)
    target = tol * np.linalg.norm(rhs)
    kept, iterations, _ = minres(
        system.matvec,
        system.precondition,
        system.reduced_rhs(),
        np.zeros(system.size),
        target,
        5000,
    )
    return system.expand(kept), iterations


@pytest.mark.parametrize("rotating", [None, 3])
def test_the_rotations_gauge_term_is_their_curvature_in_the_preconditioners_metric(
    rotating: int | None,
) -> None:
    """Against the dense ``D Y (Y'D Y)^-1 Y'D``; ``rotating = 3`` of 4 columns: biased MF's
    rows ``[u, b]``, whose last column does not rotate."""
    rng = np.random.default_rng(4)
    k = 4
    r = k if rotating is None else rotating
    parts = (rng.normal(size=(7, k)), rng.normal(size=(3, k)))
    blocks = tuple(
        a @ a.transpose(0, 2, 1) + np.eye(k)
        for a in (rng.normal(size=(len(z), k, k)) for z in parts)
    )
    stacked, diagonal = np.vstack(parts), sp.block_diag(np.concatenate(blocks)).toarray()
    basis = []
    for a in range(r):
        for b in range(a + 1, r):
            skew = np.zeros((k, k))
            skew[a, b], skew[b, a] = 1.0, -1.0
            basis.append((stacked @ skew).ravel())
    y = np.array(basis).T
    dense = diagonal @ y @ np.linalg.inv(y.T @ diagonal @ y) @ y.T @ diagonal
    rotations = Rotations(stacked, np.concatenate(blocks), rotating)
    x = rng.normal(size=stacked.size)
    np.testing.assert_allclose(rotations.term(x), dense @ x, atol=1e-12)
    # in the preconditioner's metric the term is the projector on the rotations (eigenvalue 1)
    inverse_root = np.linalg.inv(np.linalg.cholesky(diagonal))
    projector = inverse_root @ dense @ inverse_root.T
    np.testing.assert_allclose(projector @ projector, projector, atol=1e-10)
    assert np.trace(projector) == pytest.approx(r * (r - 1) / 2)


def test_gauged_solve_is_insensitive_to_an_inexact_fit() -> None:
    """At an exact fit the gauge changes nothing; at a fit stationary to 1e-5 the plain
    solve spends its iterations on the rotations (a small inconsistency there), the gauged
    one does not, and both give the exact fit's fake-entry gradient to the fit's accuracy."""
    exact, rhs_exact = _inexact_problem(1e-12)
    gauged = solve(exact, rhs_exact, tol=1e-8, max_iter=5000)
    plain, plain_iterations = _plain_solve(exact, rhs_exact, 1e-8)
    assert gauged.converged and gauged.iterations == plain_iterations
    reference = exact.fake_gradient(plain, exact.fake)
    np.testing.assert_allclose(exact.fake_gradient(gauged.x, exact.fake), reference, rtol=1e-9)

    inexact, rhs = _inexact_problem(1e-5)
    assert 1e-6 < inexact.kkt_residual() <= 1e-5
    gauged = solve(inexact, rhs, tol=1e-8, max_iter=5000)
    plain, plain_iterations = _plain_solve(inexact, rhs, 1e-8)
    assert gauged.converged and gauged.iterations <= plain_iterations / 3
    for x in (gauged.x, plain):
        gradient = inexact.fake_gradient(x, inexact.fake)
        assert np.linalg.norm(gradient - reference) <= 1e-3 * np.linalg.norm(reference)
