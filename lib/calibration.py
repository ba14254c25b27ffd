"""Temperature scaling: fitting its one parameter at build time, and applying it on every scoring path.

The model is scikit-learn's ``CalibratedClassifierCV(method="temperature")``: softmax(beta * log(p + 1e-12)), beta
searched in e**-10..e**10. scikit-learn finds beta by minimising the log-loss's value; near its minimum that value is
flat, so the last bits of the probabilities move beta by ~1e-8 and a rebuild on another CPU wrote another file.
Here beta is the root of the log-loss's derivative, which moves no more than its inputs do, found by bisection with
exact sums, and kept to BETA_DIGITS significant digits: CPU-sized differences (~1e-15) never reach the file.
"""

from __future__ import annotations

import math

import numpy as np

from lib import reproducible

#: scikit-learn's temperature scaling: softmax(beta * log(p + LOGIT_EPS)), beta searched in e**-10..e**10.
LOGIT_EPS = 1e-12
INVERSE_TEMPERATURE_RANGE = (math.exp(-10.0), math.exp(10.0))
#: Significant digits beta is kept to: far more than calibration can tell apart, far fewer than rounding reaches.
BETA_DIGITS = 6


def logits(probabilities: np.ndarray) -> np.ndarray:
    """The scores temperature scaling multiplies: log(p + 1e-12), the first of two classes rebuilt as 1 - p[1].

    scikit-learn rebuilds a binary model's first column from the positive class, so this does too.
    """
    if probabilities.shape[-1] == 2:
        probabilities = probabilities.copy()  # cheaper than np.stack for the one-text path
        probabilities[..., 0] = 1.0 - probabilities[..., 1]
    return np.log(probabilities + LOGIT_EPS)


def temperature_scale(probabilities: np.ndarray, inverse_temperature: float) -> np.ndarray:
    """Calibrate probabilities (last axis: classes) exactly as scikit-learn's temperature scaling does."""
    return softmax(inverse_temperature * logits(probabilities))


def temperature_scale_one(probabilities: list[float], inverse_temperature: float) -> np.ndarray:
    """``temperature_scale`` for one text's probabilities, the same arithmetic on Python floats."""
    if len(probabilities) == 2:
        probabilities = [1.0 - probabilities[1], probabilities[1]]
    scores = [inverse_temperature * math.log(p + LOGIT_EPS) for p in probabilities]
    top = max(scores)
    shifted = [math.exp(score - top) for score in scores]
    total = sum(shifted)
    return np.array([value / total for value in shifted])


def softmax(scores: np.ndarray) -> np.ndarray:
    """Turn scores (last axis: classes) into probabilities, without overflow."""
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def fit_inverse_temperature(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Return the beta of temperature scaling that minimises the log-loss of held-out ``probabilities`` for labels ``y``.

    The log-loss is convex in beta, and its derivative, sum_i (E_beta[z_i] - z_i[y_i]) for the logits z, grows with
    beta: its sign says which side of the minimum a beta is on. Bisection on log beta over scikit-learn's range keeps
    the side it says until the interval is one double wide; a beta at an end of the range is returned as that end.
    """
    scores = logits(np.asarray(probabilities, dtype=np.float64))
    observed = scores[np.arange(len(y)), np.asarray(y)]

    def slope(log_beta: float) -> float:
        """The log-loss's derivative in beta, up to the positive factor that does not change its sign."""
        weights = softmax(math.exp(log_beta) * scores)
        return reproducible.exact_sum((weights * scores).sum(axis=1) - observed)

    low, high = -10.0, 10.0
    if slope(low) >= 0:
        return _kept(math.exp(low))
    if slope(high) <= 0:
        return _kept(math.exp(high))
    while True:
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if slope(middle) < 0:
            low = middle
        else:
            high = middle
    return _kept(math.exp((low + high) / 2))


def _kept(beta: float) -> float:
    """Round beta to BETA_DIGITS significant digits, inside scikit-learn's range."""
    low, high = INVERSE_TEMPERATURE_RANGE
    return min(max(float(f"{beta:.{BETA_DIGITS}g}"), low), high)
