"""lib/calibration.py: scikit-learn's temperature scaling, its beta unmoved by the last bits of its inputs."""

import math

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.naive_bayes import GaussianNB

from lib.calibration import BETA_DIGITS, INVERSE_TEMPERATURE_RANGE, fit_inverse_temperature, temperature_scale


def held_out(n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray, CalibratedClassifierCV]:
    """Probabilities of an over- or an under-confident classifier on held-out rows, and scikit-learn's calibration of it.

    The classifier has predict_proba alone, as naive Bayes does: scikit-learn calibrates a decision_function instead.
    """
    generator = np.random.default_rng(seed)
    x = generator.normal(size=(800, 3))
    y = (x @ generator.normal(size=(3, n_classes)) + generator.normal(scale=2.0, size=(800, n_classes))).argmax(axis=1)
    classifier = GaussianNB(var_smoothing=[1e-9, 3.0][seed % 2]).fit(x[:400], y[:400])
    calibrated = CalibratedClassifierCV(FrozenEstimator(classifier), method="temperature").fit(x[400:], y[400:])
    return classifier.predict_proba(x[400:]), y[400:], calibrated


@pytest.mark.parametrize(("n_classes", "seed"), [(2, 0), (2, 1), (5, 2), (5, 3)])
def test_beta_equals_scikit_learn_to_the_digits_kept(n_classes: int, seed: int) -> None:
    probabilities, y, calibrated = held_out(n_classes, seed)
    expected = float(calibrated.calibrated_classifiers_[0].calibrators[0].beta_)
    beta = fit_inverse_temperature(probabilities, y)
    assert beta == pytest.approx(expected, rel=10.0 ** (1 - BETA_DIGITS))
    assert beta == float(f"{beta:.{BETA_DIGITS}g}")


@pytest.mark.parametrize("seed", range(4))
def test_beta_does_not_move_with_the_last_bits_of_its_inputs(seed: int) -> None:
    """What another CPU's kernels do to the probabilities: a unit or two in the last place, here at random."""
    probabilities, y, _ = held_out(2 + 3 * (seed % 2), seed)
    generator = np.random.default_rng(seed)
    nudged = probabilities * (1.0 + generator.integers(-2, 3, probabilities.shape) * np.finfo(float).eps)
    rows = generator.permutation(len(y))
    assert fit_inverse_temperature(nudged[rows], y[rows]) == fit_inverse_temperature(probabilities, y)


def test_beta_stays_inside_scikit_learns_range() -> None:
    low, high = INVERSE_TEMPERATURE_RANGE
    sure_and_right = np.array([[0.9, 0.1], [0.2, 0.8]] * 20)
    assert fit_inverse_temperature(sure_and_right, np.array([0, 1] * 20)) == high
    always_wrong = np.array([[0.9, 0.1], [0.2, 0.8]] * 20)
    beta = fit_inverse_temperature(always_wrong, np.array([1, 0] * 20))
    assert beta == low and math.isfinite(beta)


def test_calibration_keeps_the_ranking_of_classes() -> None:
    probabilities, _, _ = held_out(5, 2)
    for beta in (0.2, 1.0, 3.0):
        scaled = temperature_scale(probabilities, beta)
        np.testing.assert_array_equal(scaled.argmax(axis=1), probabilities.argmax(axis=1))
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0)
