"""Arithmetic whose every bit is the same on every CPU: the numbers the build writes into model files.

NumPy and OpenBLAS pick their kernels by the CPU they run on. An AVX-512 kernel sums in another order than an
AVX2 one, and NumPy's logarithm on AVX-512 is not the C library's; the C library's own ``log`` and ``exp`` differ
again between its FMA and plain builds. Each gives a last bit of its own, and a file that holds it is a new
version. So the numbers a model file keeps are made only of operations that round correctly, and so give the one
right answer whatever the hardware:

- sums are exact (``math.fsum``: the exact sum of the values, rounded once, in whatever order they come);
- logarithms are correctly rounded (MPFR, through gmpy2: the double nearest the true logarithm);
- everything else is one IEEE 754 operation (+, -, *, /, sqrt), which rounds correctly on every CPU.
"""

from __future__ import annotations

import itertools
import math

import gmpy2
import numpy as np
from scipy import sparse

#: Double precision, rounding to nearest: each result is the double nearest the exact value.
_DOUBLE = gmpy2.context(precision=53)


def log(value: float) -> float:
    """Return the natural logarithm of ``value`` correctly rounded (``-inf`` for 0)."""
    return float(_DOUBLE.log(float(value)))


def logs(values: np.ndarray) -> np.ndarray:
    """Return the correctly rounded logarithm of each value, computing each distinct value once."""
    values = np.asarray(values, dtype=np.float64)
    distinct, positions = np.unique(values, return_inverse=True)
    return np.array([log(value) for value in distinct.tolist()], dtype=np.float64)[positions].reshape(values.shape)


def exact_sum(values: np.ndarray) -> float:
    """Return the exact sum of ``values``, rounded once: the same in any order and on any CPU."""
    return math.fsum(np.asarray(values, dtype=np.float64).ravel().tolist())


def row_sums(matrix: np.ndarray) -> np.ndarray:
    """Return the exact sum of each row of a dense matrix."""
    return np.array([math.fsum(row) for row in np.asarray(matrix, dtype=np.float64).tolist()], dtype=np.float64)


def column_sums(matrix: np.ndarray) -> np.ndarray:
    """Return the exact sum of each column of a dense matrix."""
    return row_sums(np.asarray(matrix).T)


def weighted_column_sums(matrix: sparse.spmatrix, weights: np.ndarray) -> np.ndarray:
    """Return ``out[k, j] = sum over rows r of weights[r, k] * matrix[r, j]``, each sum exact.

    The sparse product scipy would use adds in storage order; here the order cannot show. With 0/1 weights (one
    column per class) this is each class's column totals, the products themselves exact.
    """
    coo = sparse.coo_matrix(matrix)
    out = np.zeros((weights.shape[1], coo.shape[1]), dtype=np.float64)
    for k in range(weights.shape[1]):
        weight = np.asarray(weights[coo.row, k], dtype=np.float64)
        kept = weight != 0
        out[k] = _sums_by_key(coo.col[kept], weight[kept] * coo.data[kept], coo.shape[1])
    return out


def rows_normalized(matrix: sparse.csr_matrix, norm: str) -> sparse.csr_matrix:
    """Divide each row by its length, l1 (sum of magnitudes) or l2 (Euclidean), as scikit-learn's ``normalize`` does.

    The length comes from an exact sum; a row of zeros stays as it is.
    """
    matrix = sparse.csr_matrix(matrix, dtype=np.float64, copy=True)
    parts = (np.abs(matrix.data) if norm == "l1" else matrix.data * matrix.data).tolist()
    bounds = matrix.indptr.tolist()
    lengths = [math.fsum(parts[start:end]) for start, end in itertools.pairwise(bounds)]
    if norm == "l2":
        lengths = [math.sqrt(length) for length in lengths]
    divisors = np.array([length or 1.0 for length in lengths], dtype=np.float64)
    matrix.data /= np.repeat(divisors, np.diff(matrix.indptr))
    return matrix


def _sums_by_key(keys: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Return the exact sum of the values of each key in 0..size-1 (0 for a key with none)."""
    order = np.argsort(keys, kind="stable")
    keys, ordered = keys[order], values[order].tolist()
    out = np.zeros(size, dtype=np.float64)
    if keys.size:
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        ends = [*starts[1:].tolist(), keys.size]
        out[keys[starts]] = [math.fsum(ordered[start:end]) for start, end in zip(starts.tolist(), ends, strict=True)]
    return out
