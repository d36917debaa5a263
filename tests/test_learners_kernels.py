"""The numba kernels agree with the plain NumPy reference path to 1e-10."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cfpoison.learners import kernels, reference
from cfpoison.learners.factored import _structure

TOL = {"rtol": 1e-10, "atol": 1e-10}


def _random_csr(rng: np.random.Generator, m: int, n: int, density: float) -> sp.csr_array:
    """Random pattern with empty rows and explicit stored zeros (observed 0.0 ratings)."""
    mask = rng.random((m, n)) < density
    mask[0] = False  # an empty row
    rows, cols = np.nonzero(mask)
    values = rng.uniform(-2, 2, len(rows))
    values[::7] = 0.0
    matrix = sp.csr_array((values, (rows, cols)), shape=(m, n))
    assert matrix.nnz == len(rows)
    return matrix


@pytest.fixture(params=[1, 3, 8, 13, 30])
def problem(request: pytest.FixtureRequest) -> dict[str, np.ndarray | tuple[np.ndarray, ...]]:
    k = request.param
    rng = np.random.default_rng(k)
    m, m_fake, n = 23, 4, 17
    real = _random_csr(rng, m, n, 0.4)
    fake = _random_csr(rng, m_fake, n, 0.9)
    return {
        "rows": _structure(real),
        "fake_rows": _structure(fake),
        "cols": _structure(real.tocsc()),
        "fake_cols": _structure(fake.tocsc()),
        "U": rng.normal(size=(m, k)),
        "F": rng.normal(size=(m_fake, k)),
        "V": rng.normal(size=(n, k)),
    }


def test_solve_rows_two_sources(problem: dict) -> None:
    p = problem
    outs, fits = [], []
    for ops in (kernels, reference):
        out = np.empty_like(p["V"])
        fits.append(ops.solve_rows(*p["cols"], p["U"], *p["fake_cols"], p["F"], 0.7, out))
        outs.append(out)
    np.testing.assert_allclose(outs[0], outs[1], **TOL)
    np.testing.assert_allclose(fits[0], fits[1], **TOL)


def test_solve_rows_one_source_and_normal_equations(problem: dict) -> None:
    p = problem
    k = p["V"].shape[1]
    out = np.empty_like(p["U"])
    fit = kernels.solve_rows(*p["rows"], p["V"], *kernels.empty_source(len(out), k), 0.3, out)
    indptr, indices, data = p["rows"]
    for r in range(len(out)):
        G = p["V"][indices[indptr[r] : indptr[r + 1]]]
        d = data[indptr[r] : indptr[r + 1]]
        # the normal equations (G^T G + lam I) x = G^T d hold
        np.testing.assert_allclose((G.T @ G + 0.3 * np.eye(k)) @ out[r], G.T @ d, **TOL)
        assert fit[r] == pytest.approx(np.sum((d - G @ out[r]) ** 2), rel=1e-9, abs=1e-10)
    assert np.all(out[0] == 0.0)  # an empty row solves to zero


def test_residual_rows(problem: dict) -> None:
    p = problem
    results = []
    for ops in (kernels, reference):
        grad = np.empty_like(p["V"])
        sq = ops.residual_rows(*p["cols"], p["U"], *p["fake_cols"], p["F"], p["V"], grad)
        results.append((sq, grad))
    np.testing.assert_allclose(results[0][0], results[1][0], **TOL)
    np.testing.assert_allclose(results[0][1], results[1][1], **TOL)


def test_residual_rows_against_dense(problem: dict) -> None:
    p = problem
    indptr, indices, data = p["rows"]
    n = p["V"].shape[0]
    dense = sp.csr_array((data, indices, indptr), shape=(len(indptr) - 1, n))
    mask = sp.csr_array((np.ones_like(data), indices, indptr), shape=dense.shape).toarray()
    residual = mask * (dense.toarray() - p["U"] @ p["V"].T)
    grad = np.empty_like(p["U"])
    k = p["V"].shape[1]
    sq = kernels.residual_rows(
        *p["rows"], p["V"], *kernels.empty_source(len(grad), k), p["U"], grad
    )
    np.testing.assert_allclose(sq, np.sum(residual**2, axis=1), **TOL)
    np.testing.assert_allclose(grad, residual @ p["V"], **TOL)


def test_ridge_blocks(problem: dict) -> None:
    p = problem
    k = p["V"].shape[1]
    args = (*p["cols"], p["U"], *p["fake_cols"], p["F"], 0.7, 2.0)
    got = kernels.ridge_blocks(*args, True)
    np.testing.assert_allclose(got, reference.ridge_blocks(*args, True), **TOL)
    blocks = kernels.ridge_blocks(*args, False)
    np.testing.assert_allclose(blocks, reference.ridge_blocks(*args, False), **TOL)
    np.testing.assert_allclose(blocks @ got, np.broadcast_to(np.eye(k), got.shape), atol=1e-9)
    # an inverse of the matrix solve_rows factorizes: its solution is inverse @ (2 sum d y)
    out = np.empty_like(p["V"])
    kernels.solve_rows(*p["cols"], p["U"], *p["fake_cols"], p["F"], 0.7, out)
    indptr, indices, data = p["cols"]
    rhs = np.zeros_like(out)
    for r in range(len(indptr) - 1):
        rhs[r] = data[indptr[r] : indptr[r + 1]] @ p["U"][indices[indptr[r] : indptr[r + 1]]]
    fptr, findices, fdata = p["fake_cols"]
    for r in range(len(fptr) - 1):
        rhs[r] += fdata[fptr[r] : fptr[r + 1]] @ p["F"][findices[fptr[r] : fptr[r + 1]]]
    np.testing.assert_allclose(np.einsum("rab,rb->ra", got, 2.0 * rhs), out, **TOL)
    assert got.shape == (len(indptr) - 1, k, k)


def test_products(problem: dict) -> None:
    p = problem
    indptr, indices, data = p["rows"]
    np.testing.assert_allclose(
        kernels.csr_dot(indptr, indices, p["U"], p["V"]),
        reference.csr_dot(indptr, indices, p["U"], p["V"]),
        **TOL,
    )
    np.testing.assert_allclose(
        kernels.csr_matmul(indptr, indices, data, p["V"]),
        reference.csr_matmul(indptr, indices, data, p["V"]),
        **TOL,
    )
    dense = sp.csr_array((data, indices, indptr), shape=(len(indptr) - 1, p["V"].shape[0]))
    np.testing.assert_allclose(kernels.csr_matmul(indptr, indices, data, p["V"]), dense @ p["V"])
    rng = np.random.default_rng(0)
    rows = rng.integers(0, p["U"].shape[0], 50)
    cols = rng.integers(0, p["V"].shape[0], 50)
    expected = np.sum(p["U"][rows] * p["V"][cols], axis=1)
    np.testing.assert_allclose(kernels.dot_rows(p["U"], p["V"], rows, cols), expected, **TOL)
    np.testing.assert_allclose(reference.dot_rows(p["U"], p["V"], rows, cols), expected, **TOL)


def test_set_threads() -> None:
    import numba

    kernels.set_threads(1)
    assert numba.get_num_threads() == 1
    kernels.set_threads(0)
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS


def test_solve_rows_shared_is_solve_rows_with_the_dense_block_as_a_source(problem: dict) -> None:
    """The shared block's Gram, right-hand sides and norms stand for a fully dense source."""
    p = problem
    rng = np.random.default_rng(p["V"].shape[1])
    n, k = p["V"].shape
    dense = rng.uniform(-2, 2, (5, n))
    dense[:, 2] = 0.0
    block = sp.csr_array((dense.ravel(), np.tile(np.arange(n), 5), np.arange(6) * n), (5, n))
    Z = rng.normal(size=(5, k))
    expected = np.empty_like(p["V"])
    fit = kernels.solve_rows(*p["cols"], p["U"], *_structure(block.tocsc()), Z, 0.7, expected)
    shared = (Z.T @ Z, dense.T @ Z, np.sum(dense**2, axis=0))
    for ops in (kernels, reference):
        out = np.empty_like(p["V"])
        got = ops.solve_rows_shared(*p["cols"], p["U"], *shared, 0.7, out)
        np.testing.assert_allclose(out, expected, **TOL)
        np.testing.assert_allclose(got, fit, rtol=1e-9, atol=1e-9)


THREADED = """
import numpy as np, scipy.sparse as sp
from cfpoison.learners import kernels, reference
from cfpoison.learners.factored import _structure
kernels.set_threads(2)
assert kernels.numba.get_num_threads() == 2
rng = np.random.default_rng(0)
m, n, k = 300, 200, 12  # items with fewer and more ratings than 3k/4: both routes
real = sp.random_array((m, n), density=0.05, rng=rng, format="csr")
U, V = rng.normal(size=(m, k)), rng.normal(size=(n, k))
cols = _structure(real.tocsc())
empty = kernels.empty_source(n, k)
Z, D = rng.normal(size=(5, k)), rng.normal(size=(5, n))  # a dense block: 5 rows rate all
gram, rhs, dd = Z.T @ Z, D.T @ Z, np.sum(D**2, axis=0)
for ops_args in [(*cols, U, *empty, 0.7), (*cols, U, gram, rhs, dd, 0.7)]:
    name = "solve_rows" if len(ops_args) == 9 else "solve_rows_shared"
    got, want = np.empty((n, k)), np.empty((n, k))
    fit_got = getattr(kernels, name)(*ops_args, got)
    fit_want = getattr(reference, name)(*ops_args, want)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(fit_got, fit_want, rtol=1e-10, atol=1e-10)
grad = np.empty((n, k))
sq = kernels.residual_rows(*cols, U, *empty, V, grad)
np.testing.assert_allclose(sq, reference.residual_rows(*cols, U, *empty, V, np.empty((n, k))))
"""


def test_kernels_with_two_threads_in_a_fresh_process() -> None:
    """The parallel loops with 2 numba threads (the suite's xdist workers run one each:
    tests/conftest.py), against the NumPy path."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", THREADED], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_offset_values_is_the_gather_and_subtract() -> None:
    rng = np.random.default_rng(3)
    indices = rng.integers(0, 40, size=500).astype(np.int32)
    data, shift = rng.standard_normal(500), rng.standard_normal(40)
    assert np.array_equal(kernels.offset_values(indices, data, shift), data - shift[indices])
