"""Numba kernels of BPR-MF's fixed-sample objective (:mod:`cfpoison.learners.bpr`).

A *pair* ``p = (r, i, j, c)`` is one row ``r`` of ``W = [U; U~]`` (a normal or a fake user),
a positive item ``i``, a negative item ``j != i`` and a weight ``c``; its term of the
objective is ``c l(x_p)`` with ``x_p = w_r.(v_i - v_j)`` and ``l(x) = -ln sigma(x)``
(``l' = -sigma(-x)``, ``l'' = sigma(x) sigma(-x)``). Pairs are stored grouped by user row
(``indptr`` over the rows of W) and, for the item side, indexed again grouped by item
(:func:`group_by_item`: each item's occurrences, ``p`` where it is the positive item and
``-(p + 1)`` where it is the negative one). Every sum over pairs is therefore two passes, one
``prange`` over user rows and one over items, each writing only its own rows: no races, and
the same result for every thread count.

Negatives come from a counter-based hash (SplitMix64) of ``(seed, stream, user, item,
sample)``: no generator state, the same draw whatever the order of evaluation, and defined for
every ``(user, item)`` (the dense fake gradient needs all ``m' x n``).

All kernels use ``fastmath=False``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, inline="always")
def _mix(x: np.uint64) -> np.uint64:
    """SplitMix64's finaliser: a bijection of 64-bit words that scrambles every bit."""
    x = (x ^ (x >> np.uint64(30))) * _MUL1
    x = (x ^ (x >> np.uint64(27))) * _MUL2
    return x ^ (x >> np.uint64(31))


@njit(cache=True, inline="always")
def _draw(base: np.uint64, key: int, sub: int, modulus: int) -> np.int64:
    """A uniform draw in ``[0, modulus)`` for one key (a user-item cell ``u n + i``) and
    sub-counter (sample and attempt)."""
    h = _mix(_mix(base ^ _mix(np.uint64(key) * _GAMMA)) ^ np.uint64(sub))
    return np.int64(h % np.uint64(modulus))


@njit(cache=True)
def _stream_key(seed: int, stream: int) -> np.uint64:
    return _mix(_mix(np.uint64(seed) + _GAMMA) ^ np.uint64(stream + 1))


def stream_key(seed: int, stream: int) -> np.uint64:
    """The hash key of one stream of draws (normal users 0, fake users 1) of a seed."""
    return np.uint64(_stream_key(seed, stream))


@njit(cache=True, inline="always")
def fake_negative(base: np.uint64, f: int, i: int, s: int, n: int) -> np.int64:
    """Negative ``s`` of fake user ``f``'s item ``i``: uniform over the ``n - 1`` items
    ``!= i`` (independent of the fake rows' weights and patterns)."""
    j = _draw(base, f * n + i, s << 32, n - 1)
    return j + 1 if j >= i else j


@njit(cache=True, parallel=True, fastmath=False)
def real_negatives(
    indptr: np.ndarray, indices: np.ndarray, n: int, samples: int, base: np.uint64
) -> np.ndarray:
    """``samples`` negatives per stored entry (CSR order, sorted rows): uniform over the items
    the entry's user has not interacted with (rejection; every row must leave one)."""
    out = np.empty(len(indices) * samples, dtype=np.int32)
    for u in prange(len(indptr) - 1):
        start, end = indptr[u], indptr[u + 1]
        for e in range(start, end):
            for s in range(samples):
                key = u * n + indices[e]
                attempt = 0
                while True:
                    j = _draw(base, key, (s << 32) + attempt, n)
                    pos = start + np.searchsorted(indices[start:end], j)
                    if pos == end or indices[pos] != j:
                        break
                    attempt += 1
                out[e * samples + s] = j
    return out


@njit(cache=True, parallel=True, fastmath=False)
def fake_negatives(
    indptr: np.ndarray, indices: np.ndarray, n: int, samples: int, base: np.uint64
) -> np.ndarray:
    """:func:`fake_negative` for every stored entry of a fake CSR (CSR order)."""
    out = np.empty(len(indices) * samples, dtype=np.int32)
    for f in prange(len(indptr) - 1):
        for e in range(indptr[f], indptr[f + 1]):
            for s in range(samples):
                out[e * samples + s] = fake_negative(base, f, indices[e], s, n)
    return out


@njit(cache=True)
def group_by_item(pos: np.ndarray, neg: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each item's occurrences in the pairs (counting sort): ``p`` where it is the positive,
    ``-(p + 1)`` where the negative; ``(indptr, occurrences)``, pairs in increasing order."""
    counts = np.zeros(n + 1, dtype=np.int64)
    for p in range(len(pos)):
        counts[pos[p] + 1] += 1
        counts[neg[p] + 1] += 1
    indptr = np.cumsum(counts)
    fill = indptr[:-1].copy()
    occurrences = np.empty(2 * len(pos), dtype=np.int64)
    for p in range(len(pos)):
        occurrences[fill[pos[p]]] = p
        fill[pos[p]] += 1
        occurrences[fill[neg[p]]] = -(p + 1)
        fill[neg[p]] += 1
    return indptr, occurrences


@njit(cache=True, inline="always")
def _log_sigmoid_parts(x: float) -> tuple[float, float, float]:
    """``l(x) = -ln sigma(x)``, ``l'(x) = -sigma(-x)`` and ``l''(x) = sigma(x) sigma(-x)``,
    stable for large ``|x|``."""
    if x >= 0:
        e = math.exp(-x)
        tail = e / (1.0 + e)  # sigma(-x)
        return math.log1p(e), -tail, tail * (1.0 - tail)
    e = math.exp(x)
    tail = 1.0 / (1.0 + e)
    return -x + math.log1p(e), -tail, tail * (1.0 - tail)


@njit(cache=True, parallel=True, fastmath=False)
def pair_terms(
    indptr: np.ndarray,
    pos: np.ndarray,
    neg: np.ndarray,
    weight: np.ndarray,
    W: np.ndarray,
    V: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    loss: np.ndarray,
    grad_W: np.ndarray,
) -> None:
    """Per pair ``first = c l'(x)``, ``second = c l''(x)``; per user row ``loss[r] = sum c l``
    and ``grad_W[r] = sum c l'(x) (v_i - v_j)`` (the data part of ``dL/dw_r``)."""
    k = W.shape[1]
    for r in prange(len(indptr) - 1):
        total = 0.0
        for t in range(k):
            grad_W[r, t] = 0.0
        for p in range(indptr[r], indptr[r + 1]):
            i, j = pos[p], neg[p]
            x = 0.0
            for t in range(k):
                x += W[r, t] * (V[i, t] - V[j, t])
            value, d1, d2 = _log_sigmoid_parts(x)
            c = weight[p]
            total += c * value
            first[p] = c * d1
            second[p] = c * d2
            for t in range(k):
                grad_W[r, t] += c * d1 * (V[i, t] - V[j, t])
        loss[r] = total


@njit(cache=True, parallel=True, fastmath=False)
def hessian_users(
    indptr: np.ndarray,
    pos: np.ndarray,
    neg: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    W: np.ndarray,
    V: np.ndarray,
    dW: np.ndarray,
    dV: np.ndarray,
    scaled: np.ndarray,
    out_W: np.ndarray,
) -> None:
    """User side of ``H d``: with ``dx = dw_r.(v_i - v_j) + w_r.(dv_i - dv_j)``,
    ``out_W[r] += sum c l'' dx (v_i - v_j) + c l' (dv_i - dv_j)``; stores ``c l'' dx`` per pair
    in ``scaled`` for :func:`item_sums`."""
    k = W.shape[1]
    for r in prange(len(indptr) - 1):
        for p in range(indptr[r], indptr[r + 1]):
            i, j = pos[p], neg[p]
            dx = 0.0
            for t in range(k):
                dx += dW[r, t] * (V[i, t] - V[j, t]) + W[r, t] * (dV[i, t] - dV[j, t])
            a = second[p] * dx
            b = first[p]
            scaled[p] = a
            for t in range(k):
                out_W[r, t] += a * (V[i, t] - V[j, t]) + b * (dV[i, t] - dV[j, t])


@njit(cache=True, parallel=True, fastmath=False)
def item_sums(
    item_ptr: np.ndarray,
    occurrences: np.ndarray,
    rows: np.ndarray,
    a: np.ndarray,
    X: np.ndarray,
    b: np.ndarray,
    Y: np.ndarray,
    out: np.ndarray,
) -> None:
    """Item side: ``out[v] += sum_p sign_p (a_p X[r_p] + b_p Y[r_p])`` over item v's
    occurrences (sign +1 as the positive, -1 as the negative; ``b`` empty: no second term)."""
    k = X.shape[1]
    two = len(b) > 0
    for v in prange(len(item_ptr) - 1):
        for q in range(item_ptr[v], item_ptr[v + 1]):
            code = occurrences[q]
            p = code if code >= 0 else -code - 1
            sign = 1.0 if code >= 0 else -1.0
            r = rows[p]
            for t in range(k):
                out[v, t] += sign * a[p] * X[r, t]
            if two:
                for t in range(k):
                    out[v, t] += sign * b[p] * Y[r, t]


@njit(cache=True, parallel=True, fastmath=False)
def user_blocks(
    indptr: np.ndarray,
    pos: np.ndarray,
    neg: np.ndarray,
    second: np.ndarray,
    V: np.ndarray,
    diagonal: float,
) -> np.ndarray:
    """H's diagonal block of each user row: ``diagonal I + sum c l'' (v_i - v_j)(v_i - v_j)'``."""
    k = V.shape[1]
    out = np.zeros((len(indptr) - 1, k, k))
    for r in prange(len(indptr) - 1):
        d = np.empty(k)
        for p in range(indptr[r], indptr[r + 1]):
            for t in range(k):
                d[t] = V[pos[p], t] - V[neg[p], t]
            for s in range(k):
                for t in range(k):
                    out[r, s, t] += second[p] * d[s] * d[t]
        for t in range(k):
            out[r, t, t] += diagonal
    return out


@njit(cache=True, parallel=True, fastmath=False)
def item_blocks(
    item_ptr: np.ndarray,
    occurrences: np.ndarray,
    rows: np.ndarray,
    second: np.ndarray,
    W: np.ndarray,
    diagonal: float,
) -> np.ndarray:
    """H's diagonal block of each item: ``diagonal I + sum c l'' w_r w_r'`` over its
    occurrences (either role: the sign squares away)."""
    k = W.shape[1]
    out = np.zeros((len(item_ptr) - 1, k, k))
    for v in prange(len(item_ptr) - 1):
        for q in range(item_ptr[v], item_ptr[v + 1]):
            code = occurrences[q]
            p = code if code >= 0 else -code - 1
            r = rows[p]
            for s in range(k):
                for t in range(k):
                    out[v, s, t] += second[p] * W[r, s] * W[r, t]
        for t in range(k):
            out[v, t, t] += diagonal
    return out


@njit(cache=True, inline="always")
def _mixed(
    f: int,
    i: int,
    F: np.ndarray,
    V: np.ndarray,
    zF: np.ndarray,
    zV: np.ndarray,
    samples: int,
    base: np.uint64,
) -> float:
    """``(d grad L / d w_fi) . z = sum_s l'(x) ((v_i - v_j).z_f + u~_f.(z_i - z_j))``."""
    n, k = V.shape
    total = 0.0
    for s in range(samples):
        j = fake_negative(base, f, i, s, n)
        x = 0.0
        dot = 0.0
        for t in range(k):
            x += F[f, t] * (V[i, t] - V[j, t])
            dot += (V[i, t] - V[j, t]) * zF[f, t] + F[f, t] * (zV[i, t] - zV[j, t])
        total += _log_sigmoid_parts(x)[1] * dot
    return total


@njit(cache=True, parallel=True, fastmath=False)
def fake_mixed_pattern(
    indptr: np.ndarray,
    indices: np.ndarray,
    F: np.ndarray,
    V: np.ndarray,
    zF: np.ndarray,
    zV: np.ndarray,
    samples: int,
    base: np.uint64,
) -> np.ndarray:
    """``(d grad L / d w_fi) . z`` at each stored entry of a fake CSR pattern (CSR order)."""
    out = np.empty(len(indices))
    for f in prange(len(indptr) - 1):
        for e in range(indptr[f], indptr[f + 1]):
            out[e] = _mixed(f, indices[e], F, V, zF, zV, samples, base)
    return out


@njit(cache=True, parallel=True, fastmath=False)
def fake_mixed_dense(
    F: np.ndarray, V: np.ndarray, zF: np.ndarray, zV: np.ndarray, samples: int, base: np.uint64
) -> np.ndarray:
    """``(d grad L / d w_fi) . z`` on every ``m' x n`` entry."""
    n = V.shape[0]
    out = np.empty((F.shape[0], n))
    for f in prange(F.shape[0]):
        for i in range(n):
            out[f, i] = _mixed(f, i, F, V, zF, zV, samples, base)
    return out
