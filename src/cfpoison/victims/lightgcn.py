"""LightGCN (He et al., SIGIR 2020) as a victim, in NumPy/SciPy.

The ``(m + m') x n`` interaction matrix ``R`` (normal users, then the fake users; fake rows
binarised at ``> 0``, as every stored entry is an edge of the graph) defines the bipartite
graph ``A = [[0, R], [R^T, 0]]`` on ``N = m + m' + n`` nodes and its symmetric normalisation
``A^ = D^-1/2 A D^-1/2`` (``D`` the degrees; an isolated node's row is 0). From the free
embeddings ``E0`` (``N x d``) the layers are ``E_(k+1) = A^ E_k`` and the model's embeddings
their mean ``E = (E_0 + ... + E_K) / (K + 1) = P E0``; the score is ``s_ij = e_i . e_j``.

Training is the paper's: per epoch ``nnz(R)`` triples ``(u, i, j)`` (a user drawn uniformly
among those with interactions, one of its items ``i``, an item ``j`` it has not interacted
with), in mini-batches ``B`` minimising

    (1 / |B|) sum_B softplus(s_uj - s_ui) + l2 / (2 |B|) sum_B (|e0_u|^2 + |e0_i|^2 + |e0_j|^2)

with Adam on ``E0``. The gradient through the layers is ``P^T G = P G`` (``A^`` symmetric),
``G`` the loss's gradient in ``E``. The victim's factors are ``E``'s rows of the normal users
and of the items.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from cfpoison.config import JsonConfig, require_ranges
from cfpoison.data.interactions import Interactions
from cfpoison.victims.base import Victim
from cfpoison.victims.implicit import implicit_matrix


@dataclasses.dataclass(frozen=True)
class LightGCNConfig(JsonConfig):
    """LightGCN's settings (module docstring).

    Defaults: the paper's (64 dimensions, 3 layers, Adam at learning rate 1e-3, l2 1e-4,
    mini-batches of 1024); embeddings start normal with standard deviation 0.1, as in the
    authors' code. Epochs: a fixed number (the paper trains to convergence, 1000 in the
    authors' code).

    Attributes:
        dim: embedding dimension ``d``.
        layers: propagation layers ``K``.
        learning_rate: Adam's step size.
        l2: weight of the embeddings' squared norms (``E0``'s rows in the batch).
        batch_size: triples per Adam step.
        epochs: passes of ``nnz(R)`` triples.
        init_std: standard deviation of the initial embeddings.
        seed: seeds the initial embeddings and the sampling.
    """

    kind: ClassVar[str] = "victim"
    dim: int = 64
    layers: int = 3
    learning_rate: float = 1e-3
    l2: float = 1e-4
    batch_size: int = 1024
    epochs: int = 100
    init_std: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        require_ranges(
            self,
            "lightgcn",
            dim=">= 1",
            layers=">= 0",
            learning_rate="> 0",
            l2=">= 0",
            batch_size=">= 1",
            epochs=">= 1",
            init_std="> 0",
        )


def normalized_adjacency(R: sp.csr_matrix) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` of ``A = [[0, R], [R^T, 0]]`` (module docstring), float32."""
    A = sp.csr_matrix(sp.bmat([[None, R], [R.T, None]], format="csr"))
    degree = np.asarray(A.sum(axis=1)).ravel()
    scale = np.zeros_like(degree)
    np.divide(1.0, np.sqrt(degree), out=scale, where=degree > 0)
    D = sp.diags(scale)
    return sp.csr_matrix(D @ A @ D, dtype=np.float32)


def propagate(A: sp.csr_matrix, E0: np.ndarray, layers: int) -> np.ndarray:
    """``P E0 = (E0 + A E0 + ... + A^K E0) / (K + 1)``."""
    total, layer = E0.copy(), E0
    for _ in range(layers):
        layer = A @ layer
        total += layer
    total /= layers + 1
    return total


class Adam:
    """Adam (Kingma and Ba) as PyTorch steps it: moments ``beta1 = 0.9, beta2 = 0.999``,
    ``x -= rate / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)``; in place, float32."""

    def __init__(self, shape: tuple[int, ...], rate: float, eps: float = 1e-8):
        self.rate, self.eps, self.t = rate, eps, 0
        self.m, self.v = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        self.work = np.empty(shape, np.float32)

    def step(self, x: np.ndarray, grad: np.ndarray) -> None:
        """One step on ``x`` along ``grad`` (both float32)."""
        self.t += 1
        work = self.work
        self.m *= 0.9
        np.multiply(grad, 0.1, out=work)
        self.m += work
        self.v *= 0.999
        np.multiply(grad, grad, out=work)
        work *= 0.001
        self.v += work
        np.multiply(self.v, 1.0 / (1.0 - 0.999**self.t), out=work)
        np.sqrt(work, out=work)
        work += self.eps
        np.divide(self.m, work, out=work)
        work *= self.rate / (1.0 - 0.9**self.t)
        x -= work


def sample_triples(
    R: sp.csr_matrix, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``size`` triples ``(u, i, j)``: ``u`` uniform among the users with interactions, ``i``
    uniform among its items, ``j`` uniform among the others (redrawn until unstored)."""
    counts = np.diff(R.indptr)
    active = np.flatnonzero(counts)
    u = active[rng.integers(len(active), size=size)]
    i = R.indices[R.indptr[u] + (rng.random(size) * counts[u]).astype(np.int64)]
    n = R.shape[1]
    keys = np.repeat(np.arange(R.shape[0], dtype=np.int64), counts) * n + R.indices
    j = rng.integers(n, size=size)
    clash = np.flatnonzero(np.isin(u * n + j, keys))
    while clash.size:
        j[clash] = rng.integers(n, size=clash.size)
        clash = clash[np.isin(u[clash] * n + j[clash], keys)]
    return u, i, j


def loss_gradient(
    A: sp.csr_matrix,
    E0: np.ndarray,
    triples: tuple[np.ndarray, np.ndarray, np.ndarray],
    layers: int,
    l2: float,
) -> tuple[float, np.ndarray]:
    """The mini-batch loss of the module docstring and its gradient in ``E0`` (``E0``'s
    dtype); ``triples`` index rows of ``E`` (items offset by the number of users)."""
    bu, bi, bj = triples
    size = len(bu)
    E = propagate(A, E0, layers)
    eu, ei, ej = E[bu], E[bi], E[bj]
    x = np.einsum("bd,bd->b", eu, ej - ei)  # s_uj - s_ui
    norms = sum(float(np.sum(E0[rows] ** 2)) for rows in triples)
    loss = float(np.mean(np.logaddexp(0.0, x))) + l2 / (2 * size) * norms
    s = (0.5 * (1.0 + np.tanh(0.5 * x)) / size)[:, None].astype(E0.dtype)  # softplus' / |B|
    G = np.zeros_like(E0)
    np.add.at(G, bu, s * (ej - ei))
    np.add.at(G, bi, -s * eu)
    np.add.at(G, bj, s * eu)
    grad = propagate(A, G, layers)
    for rows in triples:
        np.add.at(grad, rows, (l2 / size) * E0[rows])
    return loss, grad


def fit_lightgcn(R: sp.csr_matrix, config: LightGCNConfig) -> np.ndarray:
    """The propagated embeddings ``E = P E0`` (``N x d``: users, then items; float32, as
    the authors' code) after training (module docstring)."""
    rng = np.random.default_rng(config.seed)
    users, n = R.shape
    A = normalized_adjacency(R)
    E0 = (config.init_std * rng.standard_normal((users + n, config.dim))).astype(np.float32)
    adam = Adam(E0.shape, config.learning_rate)
    for _ in range(config.epochs):
        u, i, j = sample_triples(R, R.nnz, rng)
        for start in range(0, R.nnz, config.batch_size):
            batch = slice(start, start + config.batch_size)
            triples = (u[batch], i[batch] + users, j[batch] + users)
            _, grad = loss_gradient(A, E0, triples, config.layers, config.l2)
            adam.step(E0, grad)
    return propagate(A, E0, config.layers)


class LightGCNVictim(Victim[Interactions]):
    """cfpoison's LightGCN of ``config`` (seeded by ``config.seed``) fitted from scratch; a
    fixed number of epochs."""

    def __init__(self, config: LightGCNConfig, name: str = "lightgcn"):
        super().__init__()
        self.config = config
        self.name = name

    def _fit(
        self, train: Interactions, fake: sp.csr_array | None
    ) -> tuple[np.ndarray, np.ndarray, bool | None]:
        R = implicit_matrix(self.name, train, fake, binary=True)
        E = fit_lightgcn(R, self.config)
        m, users = train.n_users, R.shape[0]
        return E[:m].astype(np.float64), E[users:].astype(np.float64), None
