"""Nuclear-norm minimization against dense singular-value thresholding; its certificate."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.errors import ConvergenceError
from cfpoison.learners import ALSConfig, ALSLearner, NuclearConfig, NuclearNormLearner
from contracts import LearnerCase, LearnerContract
from test_learners_als import tiny_problem

TIGHT = {"tol": 0.0, "kkt_tol": 1e-10, "certificate_tol": 1e-8, "max_sweeps": 20000}


def dense_svt(data: np.ndarray, mask: np.ndarray, lam: float, iters: int = 6000) -> np.ndarray:
    """argmin ||mask * (data - X)||^2 / 2 + lam ||X||_* by accelerated proximal gradient.

    The smooth part has Lipschitz constant 1, so the step is 1 and the proximal map is
    singular-value soft-thresholding at ``lam``; FISTA with adaptive restart.
    """
    X = np.zeros_like(data)
    Y, t = X.copy(), 1.0
    for _ in range(iters):
        u, s, vt = np.linalg.svd(Y + mask * (data - Y), full_matrices=False)
        X_new = (u * np.maximum(s - lam, 0.0)) @ vt
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        if np.sum((X_new - X) * (Y - X_new)) > 0:  # restart when momentum goes uphill
            t_new = 1.0
        Y = X_new + (t - 1) / t_new * (X_new - X)
        X, t = X_new, t_new
    return X


def dense_objective(X: np.ndarray, data: np.ndarray, mask: np.ndarray, lam: float) -> float:
    nuclear = np.sum(np.linalg.svd(X, compute_uv=False))
    return float(np.sum((mask * (data - X)) ** 2) + 2 * lam * nuclear)


@pytest.fixture(scope="module")
def solved() -> dict:
    ratings, fake, data, mask = tiny_problem(21, m=25, n=15, m_fake=3, density=0.5)
    lam = 1.5
    learner = NuclearNormLearner(NuclearConfig(lam=lam, rank=2, **TIGHT)).fit(ratings, fake=fake)
    return {
        "ratings": ratings,
        "fake": fake,
        "data": data,
        "mask": mask,
        "lam": lam,
        "learner": learner,
        "reference": dense_svt(data, mask, lam),
    }


def test_matches_dense_svt_and_certificate_holds(solved: dict) -> None:
    learner, reference = solved["learner"], solved["reference"]
    A, s, B = learner.low_rank()
    X = (A * s) @ B.T
    np.testing.assert_allclose(X, reference, atol=1e-6)
    np.testing.assert_allclose(A.T @ A, np.eye(len(s)), atol=1e-10)
    np.testing.assert_allclose(B.T @ B, np.eye(len(s)), atol=1e-10)
    assert np.all(np.diff(s) <= 0) and np.all(s > 0)
    assert learner.rank == np.sum(np.linalg.svd(reference, compute_uv=False) > 1e-6)
    assert learner.rank > 2  # the working rank had to grow from its initial 2
    certificate = learner.certificate()
    assert certificate["ok"] and learner.converged
    assert certificate["spectral_ratio"] <= 1 + 1e-8
    assert certificate["relative_gap"] <= 1e-8
    dense = dense_objective(X, solved["data"], solved["mask"], solved["lam"])
    assert learner.objective() == pytest.approx(dense, rel=1e-12)
    assert certificate["objective"] == pytest.approx(dense, rel=1e-12)
    assert (
        learner.objective()
        <= dense_objective(reference, solved["data"], solved["mask"], solved["lam"]) + 1e-8
    )


def test_balanced_factors_are_stationary_for_als(solved: dict) -> None:
    learner = solved["learner"]
    f = learner.factors
    A, s, B = learner.low_rank()
    m = solved["ratings"].n_users
    np.testing.assert_allclose(np.vstack([f.user, f.fake_user]), A * np.sqrt(s), atol=1e-12)
    np.testing.assert_allclose(f.item, B * np.sqrt(s), atol=1e-12)
    assert f.user.shape[0] == m
    # U^T U = V^T V = S (balanced)
    users = np.vstack([f.user, f.fake_user])
    np.testing.assert_allclose(users.T @ users, np.diag(s), atol=1e-10)
    np.testing.assert_allclose(f.item.T @ f.item, np.diag(s), atol=1e-10)
    assert learner.lambda_u == learner.lambda_v == solved["lam"]
    assert learner.kkt_residual() < 1e-7
    # ALS with lam_U = lam_V = lam at these factors: stationary, so one sweep and no move
    als = ALSConfig(
        rank=learner.rank, lambda_u=solved["lam"], lambda_v=solved["lam"], tol=1e-10, kkt_tol=0
    )
    refit = ALSLearner(als).fit(solved["ratings"], init=f, fake=solved["fake"])
    assert refit.n_sweeps == 1
    assert refit.kkt_residual() < 1e-7
    X = np.vstack([f.user, f.fake_user]) @ f.item.T
    X_als = np.vstack([refit.user_factors, refit.fake_user_factors]) @ refit.item_factors.T
    np.testing.assert_allclose(X_als, X, atol=1e-7)
    assert refit.objective() == pytest.approx(learner.objective(), rel=1e-10)


def test_warm_start_from_a_solution_stops_after_one_sweep(solved: dict) -> None:
    learner = solved["learner"]
    config = learner.config.replace(tol=1e-10, kkt_tol=1e-8)
    warm = NuclearNormLearner(config).fit(
        solved["ratings"], init=learner.factors, fake=solved["fake"]
    )
    assert warm.n_sweeps == 1
    assert warm.certificate()["rounds"] == 1 and warm.converged


def test_numpy_backend_agrees(solved: dict) -> None:
    config = solved["learner"].config.replace(backend="numpy")
    slow = NuclearNormLearner(config).fit(solved["ratings"], fake=solved["fake"])
    A, s, B = slow.low_rank()
    np.testing.assert_allclose((A * s) @ B.T, solved["reference"], atol=1e-6)


def test_large_lambda_gives_zero() -> None:
    ratings, _, data, mask = tiny_problem(22, m=12, n=9, m_fake=0)
    lam = 2.0 * np.linalg.norm(mask[:12] * data[:12], 2)
    learner = NuclearNormLearner(NuclearConfig(lam=lam, **TIGHT)).fit(ratings)
    assert learner.rank == 0
    assert np.all(learner.predict(np.arange(12), np.zeros(12, dtype=int)) == 0.0)
    assert learner.certificate()["ok"]
    assert learner.certificate()["spectral_ratio"] == pytest.approx(0.5, rel=1e-6)


def test_unconverged_fit_fails_its_certificate() -> None:
    ratings, fake, _, _ = tiny_problem(23, m=25, n=15, density=0.5)
    config = NuclearConfig(lam=1.0, rank=1, max_sweeps=2, tol=0, kkt_tol=0, certificate_tol=1e-6)
    learner = NuclearNormLearner(config).fit(ratings, fake=fake)
    certificate = learner.certificate()
    assert not certificate["ok"] and not learner.converged
    assert certificate["spectral_ratio"] > 1 + 1e-6 or certificate["relative_gap"] > 1e-6


def test_rank_cap_is_a_clear_error() -> None:
    ratings, _, _, _ = tiny_problem(24, m=25, n=15, density=0.6)
    config = NuclearConfig(lam=0.3, rank=1, max_rank=2, **TIGHT)
    with pytest.raises(ConvergenceError, match="max_rank=2"):
        NuclearNormLearner(config).fit(ratings)


def test_sparse_svd_path_on_a_larger_problem() -> None:
    """Large enough that the certificate uses ARPACK rather than a dense SVD."""
    rng = np.random.default_rng(25)
    m, n = 120, 80
    mask = rng.random((m, n)) < 0.3
    truth = rng.normal(size=(m, 4)) @ rng.normal(size=(n, 4)).T / 2
    rows, cols = np.nonzero(mask)
    matrix = sp.csr_array((truth[rows, cols], (rows, cols)), shape=(m, n))
    from cfpoison.data.ratings import Ratings, RatingScale

    ratings = Ratings(matrix, np.arange(m), np.arange(n), RatingScale(1, 5, 0))
    lam = 2.0
    learner = NuclearNormLearner(
        NuclearConfig(lam=lam, rank=2, certificate_tol=1e-6, tol=0, kkt_tol=1e-9, max_sweeps=5000)
    ).fit(ratings)
    certificate = learner.certificate()
    assert certificate["ok"]
    A, s, B = learner.low_rank()
    residual = mask * (np.where(mask, truth, 0.0) - (A * s) @ B.T)
    assert certificate["spectral_norm"] == pytest.approx(np.linalg.norm(residual, 2), rel=1e-8)


class TestNuclearNormContract(LearnerContract):
    @pytest.fixture(scope="class")
    @classmethod
    def learner_case(cls) -> LearnerCase:
        ratings, fake, _, _ = tiny_problem(32, m=25, n=15, m_fake=3, density=0.5)
        return LearnerCase(NuclearConfig(lam=1.5, rank=2, threads=1, **TIGHT), ratings, fake)


# ----------------------------------------------------------------- robust sparse SVD (issue 9)
def arpack_stress_problem(seed: int) -> tuple:
    """80 users x 60 items at density 0.3 (rank-3 signal plus noise) and 4 fake rows.

    At ``lam = 1.5`` the solution has rank 14-17 and the residual a cluster of as many singular
    values at ``lam``; with SciPy's ARPACK defaults (20 Lanczos vectors) the certificate raised
    ArpackNoConvergence on the cold fit (seeds 1, 5) or a warm refit (seeds 2, 4).
    """
    from cfpoison.data.ratings import Ratings, RatingScale

    rng = np.random.default_rng(seed)
    m, n = 80, 60
    mask = rng.random((m, n)) < 0.3
    mask[:, 0] = True
    M = np.clip(rng.normal(size=(m, 3)) @ rng.normal(size=(n, 3)).T / 1.5, -2, 2)
    M = np.round(M + 0.2 * rng.normal(size=(m, n)), 1)
    rows, cols = np.nonzero(mask)
    matrix = sp.csr_array((M[rows, cols], (rows, cols)), shape=(m, n))
    ratings = Ratings(matrix, np.arange(m) + 1, np.arange(n) + 1, RatingScale(1, 5, 0.5), "r")
    fake_mask = rng.random((4, n)) < 0.3
    fr, fc = np.nonzero(fake_mask)
    fake = sp.csr_array((rng.uniform(-2, 2, fr.size), (fr, fc)), shape=(4, n))
    return ratings, fake, rng


def residual_spectral_norm(learner: NuclearNormLearner, ratings, fake: sp.csr_array) -> float:
    """``||[R_Omega(M - X); R_Omega~(M~ - X~)]||_2`` by a dense SVD."""
    A, s, B = learner.low_rank()
    stacked = sp.coo_array(sp.vstack([ratings.matrix, fake]))
    X = (A * s) @ B.T
    residual = np.zeros(X.shape)
    residual[stacked.row, stacked.col] = stacked.data - X[stacked.row, stacked.col]
    return float(np.linalg.norm(residual, 2))


@pytest.mark.parametrize("route", ["gram", "arpack"])
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_warm_refits_with_a_clustered_residual_do_not_crash(
    seed: int, route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cfpoison.learners import nuclear

    if route == "arpack":  # the sparse routes, as on a problem with both sides > GRAM_SIDE
        monkeypatch.setattr(nuclear, "GRAM_SIDE", 0)
    ratings, fake, rng = arpack_stress_problem(seed)
    learner = NuclearNormLearner(NuclearConfig(lam=1.5, threads=1)).fit(ratings, fake=fake)
    for _ in range(6):  # warm refits on nudged fake ratings, as PGA takes them
        fake = fake.copy()
        fake.data = np.clip(fake.data + 0.05 * rng.standard_normal(fake.nnz), -2, 2)
        learner = NuclearNormLearner(learner.config).fit(ratings, init=learner.factors, fake=fake)
        certificate = learner.certificate()
        assert certificate["ok"] and certificate["svd_solver"] == route
        assert certificate["svd_residual"] <= 1e-8 * certificate["spectral_norm"]
    assert 11 <= learner.rank <= 20
    dense = residual_spectral_norm(learner, ratings, fake)
    assert certificate["spectral_norm"] == pytest.approx(dense, rel=1e-8)


def failing_svds(monkeypatch: pytest.MonkeyPatch, solvers: set[str]) -> list[str]:
    """Make ``scipy.sparse.linalg.svds`` fail for ``solvers`` as when they do not converge
    (and skip the dense Gram route, which these small problems would otherwise take first);
    returns the list of solvers called."""
    import scipy.sparse.linalg as spla

    from cfpoison.learners import nuclear

    monkeypatch.setattr(nuclear, "GRAM_SIDE", 0)
    svds, called = spla.svds, []

    def patched(*args, solver: str = "arpack", **kwargs):
        called.append(solver)
        if solver == "arpack" and solver in solvers:
            raise spla.ArpackNoConvergence("ARPACK error -1: No convergence (forced)", [], [])
        if solver in solvers:
            raise np.linalg.LinAlgError(f"{solver} did not converge (forced)")
        return svds(*args, solver=solver, **kwargs)

    monkeypatch.setattr(spla, "svds", patched)
    return called


def test_arpack_failure_falls_back_to_propack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Top singular values and the grown factors stay exact when ARPACK never converges."""
    ratings, fake, _ = arpack_stress_problem(3)
    called = failing_svds(monkeypatch, {"arpack"})
    learner = NuclearNormLearner(NuclearConfig(lam=1.5, rank=2, threads=1)).fit(ratings, fake=fake)
    certificate = learner.certificate()
    assert certificate["svd_solver"] == "propack" and certificate["ok"]
    assert certificate["svd_failures"][0].startswith("arpack: ARPACK error -1")
    assert "arpack" in called and "propack" in called
    assert learner.rank > 2  # grown through the fallback too
    dense = residual_spectral_norm(learner, ratings, fake)
    assert certificate["spectral_norm"] == pytest.approx(dense, rel=1e-8)


@pytest.mark.parametrize("route", ["gram", "arpack", "propack", "lobpcg", "dense"])
@pytest.mark.parametrize("shape", [(90, 70), (70, 90)])
def test_each_svd_route_matches_a_dense_svd(route: str, shape: tuple[int, int]) -> None:
    """On a residual operator with sparse real rows and dense fake rows, tall and wide."""
    from cfpoison.learners import nuclear

    rng = np.random.default_rng(41)
    matrix = sp.random_array(shape, density=0.3, rng=rng, format="csr")
    op = nuclear.ResidualOperator(matrix[:60], matrix[60:].toarray())
    u, s, vt = getattr(nuclear, f"_{route}")(op, 3, rng)
    order = np.argsort(s)[::-1][:3]
    u, s, v = u[:, order], s[order], vt[order].T
    dense_u, dense_s, _ = np.linalg.svd(matrix.toarray())
    np.testing.assert_allclose(s, dense_s[:3], rtol=1e-9)
    np.testing.assert_allclose(np.abs(np.sum(u * dense_u[:, :3], axis=0)), 1.0, rtol=1e-8)
    np.testing.assert_allclose(matrix @ v, u * s, atol=1e-8 * s[0])


def test_arpack_and_propack_failing_leave_lobpcg_or_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    failing_svds(monkeypatch, {"arpack", "propack"})
    ratings, fake, _ = arpack_stress_problem(3)
    learner = NuclearNormLearner(NuclearConfig(lam=1.5, threads=1)).fit(ratings, fake=fake)
    certificate = learner.certificate()
    assert [f.split(":")[0] for f in certificate["svd_failures"][:2]] == ["arpack", "propack"]
    assert certificate["svd_solver"] in {"lobpcg", "dense"} and certificate["ok"]
    dense = residual_spectral_norm(learner, ratings, fake)
    assert certificate["spectral_norm"] == pytest.approx(dense, rel=1e-8)


def test_every_route_failing_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    from cfpoison.learners import nuclear

    monkeypatch.setattr(nuclear, "DENSE_SIDE", 0)
    monkeypatch.setattr(nuclear, "LOBPCG_MAXITER", 1)
    failing_svds(monkeypatch, {"arpack", "propack"})
    ratings, fake, _ = arpack_stress_problem(1)
    learner = NuclearNormLearner(NuclearConfig(lam=1.5, threads=1)).fit(ratings, fake=fake)
    certificate = learner.certificate()
    assert certificate["svd_solver"] is None and not certificate["ok"] and not learner.converged
    assert np.isnan(certificate["spectral_norm"]) and np.isnan(certificate["relative_gap"])
    assert certificate["reason"].startswith("no SVD route converged: arpack: ")
    assert [f.split(":")[0] for f in certificate["svd_failures"]] == [
        "arpack",
        "propack",
        "lobpcg",
        "dense",
    ]
