"""lib/reproducible.py and the fit built on it: exact sums and correctly rounded logarithms, the same bits in any order."""

import math
from pathlib import Path
from random import Random

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.naive_bayes import MultinomialNB
from sklearn.preprocessing import normalize

from lib import reproducible
from model import NLPModel, ReproducibleMultinomialNB, inverse_document_frequency, tf_idf
from tests.helpers import TINY_SENTENCES

TEXTS = [text for _, text in TINY_SENTENCES] + ["good fun film", "bad dull film", "great fun", "awful boring mess"]
RATINGS = [rating for rating, _ in TINY_SENTENCES] + [4, 0, 3, 1]
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


def shuffled(matrix: sparse.csr_matrix, seed: int) -> sparse.csr_matrix:
    """The same matrix with the entries of each row stored in another order (scipy keeps them as given)."""
    generator = np.random.default_rng(seed)
    matrix = matrix.tocsr(copy=True)
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        order = start + generator.permutation(end - start)
        matrix.indices[start:end], matrix.data[start:end] = matrix.indices[order], matrix.data[order]
    matrix.has_sorted_indices = False
    return matrix


@given(st.floats(min_value=1e-300, max_value=1e300))
def test_log_is_the_double_nearest_the_true_logarithm(value: float) -> None:
    precise = gmpy2.context(precision=256).log(gmpy2.mpfr(value, 256))  # exact far past a double's 53 bits
    result = reproducible.log(value)
    error = abs(gmpy2.mpfr(result, 256) - precise)
    assert error <= abs(gmpy2.mpfr(math.nextafter(result, math.inf), 256) - precise)
    assert error <= abs(gmpy2.mpfr(math.nextafter(result, -math.inf), 256) - precise)


def test_logs_of_an_array_keep_its_shape_and_give_minus_infinity_for_zero() -> None:
    values = np.array([[1.0, 2.0, 0.0], [2.0, 10.0, 1e-300]])
    log = reproducible.log
    expected = [[0.0, log(2.0), -math.inf], [log(2.0), log(10.0), log(1e-300)]]
    np.testing.assert_array_equal(reproducible.logs(values), expected)


@settings(max_examples=50)
@given(st.lists(finite, min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_exact_sum_is_the_same_in_any_order(values: list[float], random: Random) -> None:
    reordered = list(values)
    random.shuffle(reordered)
    assert reproducible.exact_sum(np.array(values)) == reproducible.exact_sum(np.array(reordered)) == math.fsum(values)


def test_a_sum_in_numpy_order_can_differ_where_the_exact_sum_cannot() -> None:
    """Why the module exists: reordering a float sum changes its last bits."""
    values = [1e16, 1.0, -1e16, 1.0] * 8
    assert sum(values) != sum(sorted(values))
    assert reproducible.exact_sum(np.array(values)) == reproducible.exact_sum(np.array(sorted(values))) == 16.0


@pytest.mark.parametrize("seed", range(3))
def test_weighted_column_sums_equal_the_sparse_product_in_any_storage_order(seed: int) -> None:
    generator = np.random.default_rng(seed)
    matrix = sparse.random(200, 30, density=0.2, format="csr", random_state=seed) * 1e3
    weights = np.eye(4)[generator.integers(0, 4, 200)]
    expected = weights.T @ matrix.toarray()
    result = reproducible.weighted_column_sums(matrix, weights)
    np.testing.assert_allclose(result, expected, rtol=1e-13, atol=0)
    np.testing.assert_array_equal(reproducible.weighted_column_sums(shuffled(matrix, seed), weights), result)
    rows = generator.permutation(200)  # the training rows in another order: the same sums, bit for bit
    np.testing.assert_array_equal(reproducible.weighted_column_sums(matrix[rows], weights[rows]), result)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_rows_normalized_equal_scikit_learn_in_any_storage_order(norm: str) -> None:
    dense = sparse.random(100, 40, density=0.3, random_state=1).toarray()
    dense[5] = 0  # an empty row stays empty
    matrix = sparse.csr_matrix(dense)
    result = reproducible.rows_normalized(matrix, norm)
    np.testing.assert_allclose(result.toarray(), normalize(matrix, norm=norm).toarray(), rtol=1e-15, atol=1e-16)
    np.testing.assert_array_equal(reproducible.rows_normalized(shuffled(matrix, 2), norm).toarray(), result.toarray())


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"sublinear_tf": True, "ngram_range": (1, 2)},
        {"binary": True},
        {"norm": "l1"},
        {"norm": None, "smooth_idf": False},
        {"use_idf": False},
    ],
)
def test_tf_idf_and_idf_equal_scikit_learn(params: dict) -> None:
    reference = TfidfVectorizer(**params).fit(TEXTS)
    counts = CountVectorizer.transform(reference, TEXTS)  # the counts TfidfVectorizer weighs
    if reference.use_idf:
        np.testing.assert_allclose(inverse_document_frequency(counts, reference.smooth_idf), reference.idf_, rtol=1e-15)
    idf = reference.idf_ if reference.use_idf else None
    features = tf_idf(counts, reference.binary, reference.sublinear_tf, idf, reference.norm)
    np.testing.assert_allclose(features.toarray(), reference.transform(TEXTS).toarray(), rtol=1e-15, atol=1e-16)


PRIORS = [{"alpha": 1.0}, {"alpha": 0.3, "fit_prior": False}, {"class_prior": [0.1, 0.2, 0.3, 0.2, 0.2]}]


@pytest.mark.parametrize("params", PRIORS)
def test_naive_bayes_equals_scikit_learn_and_ignores_row_order(params: dict) -> None:
    features = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2)).fit_transform(TEXTS)
    fitted = ReproducibleMultinomialNB(**params).fit(features, RATINGS)
    reference = MultinomialNB(**params).fit(features, RATINGS)
    for attribute in ("feature_count_", "class_count_", "feature_log_prob_", "class_log_prior_"):
        np.testing.assert_allclose(getattr(fitted, attribute), getattr(reference, attribute), rtol=1e-14, atol=0)
    rows = np.random.default_rng(0).permutation(len(TEXTS))
    again = ReproducibleMultinomialNB(**params).fit(shuffled(features[rows], 3), np.array(RATINGS)[rows])
    np.testing.assert_array_equal(again.feature_log_prob_, fitted.feature_log_prob_)
    np.testing.assert_array_equal(again.class_log_prior_, fitted.class_log_prior_)


def test_a_model_fitted_on_its_rows_in_another_order_saves_the_same_bytes(tmp_path: Path) -> None:
    """The whole fit, vocabulary to saved files: no sum that reaches a file depends on the order of its terms."""

    def saved(order: np.ndarray, folder: Path) -> dict[str, bytes]:
        texts, ratings = [TEXTS[i] for i in order], [RATINGS[i] for i in order]
        model = NLPModel([str(r) for r in range(5)], {"sublinear_tf": True, "ngram_range": (1, 2), "max_features": 40})
        model.vectorizer_fit(texts).train(model.vectorizer_transform(texts), ratings)
        model.save(folder, "m", {})
        return {path.name: path.read_bytes() for path in folder.iterdir()}

    first = saved(np.arange(len(TEXTS)), tmp_path / "first")
    assert saved(np.random.default_rng(1).permutation(len(TEXTS)), tmp_path / "second") == first
