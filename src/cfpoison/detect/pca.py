"""PCA-based selection of shilling profiles (Mehta and Nejdl, 2009, "PCA-VarSelect").

Each user's ratings are z-scored over the items they rated, ``z_uj = (r_uj - mu_u) / s_u``,
unrated entries set to 0 (the user's mean on the z scale; ``s_u = 0`` gives an all-zero row).
Users are the variables: the principal directions among users are the left singular vectors
``A`` of ``Z`` (``Z Z^T = A S^2 A^T``). A user's contribution to the top ``r`` components is
``sum_{c < r} A_uc^2``. Attack profiles, highly correlated with each other and carrying
little of the normal users' shared variance, have the *smallest* contributions, so the score
is its negative. ``Z`` stays sparse; a truncated SVD with a fixed start vector keeps the
result deterministic.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from cfpoison.detect.features import row_ids, row_means


def zscore_rows(matrix: sp.csr_array) -> sp.csr_array:
    """Per-user z-scores over the rated items (same sparsity pattern; 0 where ``s_u = 0``)."""
    rows = row_ids(matrix)
    mean = row_means(matrix, matrix.data)
    std = np.sqrt(row_means(matrix, (matrix.data - mean[rows]) ** 2))
    safe = np.where(std > 0, std, 1.0)
    z = np.where(std[rows] > 0, (matrix.data - mean[rows]) / safe[rows], 0.0)
    return sp.csr_array((z, matrix.indices, matrix.indptr), shape=matrix.shape)


def pca_select(matrix: sp.csr_array, components: int = 3) -> np.ndarray:
    """Negative contribution of every user to the top ``components`` principal components."""
    Z = zscore_rows(matrix)
    r = min(components, min(Z.shape) - 1)
    if r < 1:
        return np.zeros(matrix.shape[0])
    v0 = np.full(min(Z.shape), 1.0 / np.sqrt(min(Z.shape)))
    left, _, _ = svds(Z, k=r, v0=v0)
    return -np.sum(left**2, axis=1)
