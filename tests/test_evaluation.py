"""lib/evaluation.py: the build's metrics, each equal to scikit-learn's or worked by hand."""

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, f1_score

from lib import evaluation


def test_reliability_bins_close_on_the_right() -> None:
    """Equal-width bins (a, b]: a confidence on an edge falls in the bin below it, 1.0 in the last."""
    y = np.array([0, 2, 1])
    probabilities = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.0, 1.0, 0.0]])
    mean_confidence, accuracy, counts = evaluation.reliability_bins(y, probabilities, 4)
    assert counts.tolist() == [0, 2, 0, 1]
    np.testing.assert_allclose(mean_confidence, [0, 0.5, 0, 1.0])
    np.testing.assert_allclose(accuracy, [0, 0.5, 0, 1.0])
    assert evaluation.expected_calibration_error(y, probabilities, 4) == 0.0


def test_expected_calibration_error_by_hand() -> None:
    # Confidences 0.9, 0.8 (both right) share bin (0.75, 1]: gap |1 - 0.85| = 0.15, weight 2/5.
    # Confidences 0.6 (right), 0.7 and 0.55 (wrong) share bin (0.5, 0.75]: gap |1/3 - 0.6166...| = 0.2833..., weight 3/5.
    y = np.array([1, 0, 1, 1, 0])
    probabilities = np.array([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6], [0.7, 0.3], [0.45, 0.55]])
    assert evaluation.expected_calibration_error(y, probabilities, 4) == pytest.approx(
        0.4 * 0.15 + 0.6 * (0.6 + 0.7 + 0.55 - 1) / 3
    )
    assert evaluation.expected_calibration_error(y, probabilities, 4) == pytest.approx(0.23)


def test_brier_score_by_hand() -> None:
    # Binary: mean squared error of P(class 1): ((1 - 0.8)**2 + (0 - 0.4)**2) / 2 = 0.1.
    assert evaluation.brier(np.array([1, 0]), np.array([[0.2, 0.8], [0.6, 0.4]])) == pytest.approx(0.1)
    # More than two classes: squared errors summed over classes, then averaged: (0.14 + 0.38) / 2.
    probabilities = np.array([[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    assert evaluation.brier(np.array([0, 2]), probabilities) == pytest.approx(0.26)


@pytest.mark.parametrize("n_labels", [2, 5])
def test_resampled_metrics_equal_scikit_learn(n_labels: int) -> None:
    generator = np.random.default_rng(0)
    y = generator.integers(0, n_labels, 300)
    probabilities = generator.dirichlet(np.ones(n_labels), 300)
    scores = probabilities[:, 1] if n_labels == 2 else probabilities
    assert evaluation.brier(y, probabilities) == pytest.approx(brier_score_loss(y, scores, labels=list(range(n_labels))))
    predicted = np.where(
        probabilities.argmax(axis=1) == n_labels - 1, 0, probabilities.argmax(axis=1)
    )  # one label never predicted
    expected = f1_score(y, predicted, average="macro", labels=list(range(n_labels)), zero_division=0)
    assert evaluation.macro_f1(y, predicted, n_labels) == pytest.approx(expected)


def test_bootstrap_intervals_hold_zero_for_no_change_and_exclude_it_for_a_real_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluation, "BOOTSTRAP_ROUNDS", 200)
    y = np.array([0, 1] * 100)
    sure = np.eye(2)[y] * 0.9 + 0.05  # right and 95% sure
    hedging = np.full_like(sure, 0.5) + (sure - 0.5) * 0.2  # right and 59% sure: same labels, far worse calibrated
    assert evaluation.bootstrap_changes(y, sure, sure, 0) == {
        name: [0.0, 0.0] for name in ("accuracy", "macro_f1", "brier", "ece")
    }
    changes = evaluation.bootstrap_changes(y, hedging, sure, 0)
    assert changes["accuracy"] == changes["macro_f1"] == [0.0, 0.0]
    assert changes["brier"][1] < 0 and changes["ece"][1] < 0
