"""How well a model's probabilities do: accuracy, macro-F1, Brier, calibration error, and the noise a change must beat."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

ECE_BINS = 15
BOOTSTRAP_ROUNDS = 1000  # resamples behind a change's 95% interval


def score(y: np.ndarray, probabilities: np.ndarray, n_labels: int) -> dict[str, Any]:
    """Accuracy, macro-F1, Brier score, ECE, confusion matrix and (binary) ROC AUC of probabilities for labelled texts."""
    predicted = probabilities.argmax(axis=1)
    classes = list(range(n_labels))
    result: dict[str, Any] = {
        "n": len(y),
        "accuracy": round(float(accuracy_score(y, predicted)), 4),
        "macro_f1": round(float(f1_score(y, predicted, average="macro", labels=classes, zero_division=0)), 4),
        "brier": round(brier(y, probabilities), 4),
        "ece": round(expected_calibration_error(y, probabilities, ECE_BINS), 4),
    }
    if set(y) == set(classes):  # AUC needs every class present; multi-class is one-vs-rest, macro
        scores = probabilities[:, 1] if len(classes) == 2 else probabilities
        result["roc_auc"] = round(float(roc_auc_score(y, scores, multi_class="ovr", labels=classes)), 4)
    result["confusion_matrix"] = confusion_matrix(y, predicted, labels=classes).tolist()
    return result


def brier(y: np.ndarray, probabilities: np.ndarray) -> float:
    """Brier score as scikit-learn's brier_score_loss gives it (tested equal), cheap enough to resample a thousand times.

    For two classes the mean squared error of P(class 1); for more, the squared errors summed over the classes.
    """
    squared = ((probabilities - np.eye(probabilities.shape[1])[y]) ** 2).sum(axis=1)
    return float(squared.mean() / 2 if probabilities.shape[1] == 2 else squared.mean())


def macro_f1(y: np.ndarray, predicted: np.ndarray, n_labels: int) -> float:
    """Macro-F1 as scikit-learn's f1_score(average="macro", zero_division=0) gives it (tested equal), from a bincount."""
    matrix = np.bincount(y * n_labels + predicted, minlength=n_labels * n_labels).reshape(n_labels, n_labels)
    right = 2.0 * np.diag(matrix)
    seen = matrix.sum(axis=0) + matrix.sum(axis=1)
    return float(np.mean(np.divide(right, seen, out=np.zeros_like(right), where=seen > 0)))


def reliability_bins(y_true: np.ndarray, probabilities: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin texts by the predicted label's probability (equal-width bins over [0, 1], right edges closed).

    Return, per bin, the mean confidence, the share of correct predictions, and how many texts fell
    in it (empty bins hold 0 for the first two).
    """
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == y_true).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    filled = np.maximum(counts, 1)
    mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / filled
    accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / filled
    return mean_confidence, accuracy, counts


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy per bin of the predicted label's probability, weighted by the bin's share."""
    mean_confidence, accuracy, counts = reliability_bins(y_true, probabilities, n_bins)
    return float(np.abs(accuracy - mean_confidence) @ counts / counts.sum())


def bootstrap_changes(y: np.ndarray, before: np.ndarray, after: np.ndarray, seed: int) -> dict[str, list[float]]:
    """95% intervals of the change in accuracy, macro-F1, Brier and ECE from ``before`` to ``after``, resampling the texts.

    The noise a difference must beat: an interval that holds 0 is no measurable change.
    """
    generator = np.random.default_rng(seed)
    metrics = {
        "accuracy": lambda y, p: float(np.mean(p.argmax(axis=1) == y)),
        "macro_f1": lambda y, p: macro_f1(y, p.argmax(axis=1), p.shape[1]),
        "brier": brier,
        "ece": lambda y, p: expected_calibration_error(y, p, ECE_BINS),
    }
    changes: dict[str, list[float]] = {name: [] for name in metrics}
    for _ in range(BOOTSTRAP_ROUNDS):
        sample = generator.integers(0, len(y), len(y))
        for name, metric in metrics.items():
            changes[name].append(metric(y[sample], after[sample]) - metric(y[sample], before[sample]))
    return {name: [round(float(q), 4) for q in np.percentile(values, [2.5, 97.5])] for name, values in changes.items()}
