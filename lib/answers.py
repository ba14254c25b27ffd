"""The prediction answers' shape: the label, its probability as ``confidence``, every probability, coverage, version.

The resources answer with it and the OpenAPI document's examples are made with it, so the two never differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lib.registry import ServedModel


def shape_answers(served: ServedModel, probabilities: np.ndarray, coverage: np.ndarray) -> list[dict[str, Any]]:
    """Shape predictions, one per row: the label, its probability as ``confidence``, all probabilities, coverage.

    Rounds in one vectorised call, so a batch of a thousand costs about what a few single answers do.
    """
    rows = np.atleast_2d(probabilities)
    labels, index_field, version = served.labels, served.index_field, served.version
    answers = []
    counts = np.atleast_2d(coverage).tolist()
    for best, rounded, (known, terms) in zip(rows.argmax(axis=1).tolist(), rows.round(3).tolist(), counts, strict=True):
        answer: dict[str, Any] = {"prediction": labels[best]}
        if index_field:
            answer[index_field] = best
        answer["confidence"] = rounded[best]
        answer["probabilities"] = dict(zip(labels, rounded, strict=True))
        answer["coverage"] = {"known_terms": known, "terms": terms}
        answer["model_version"] = version
        answers.append(answer)
    return answers


def explanation(served: ServedModel, text: str, terms: int, probabilities: np.ndarray) -> dict[str, Any]:
    """Explain the answer's label (the most probable) against the runner-up, with label names instead of indices."""
    explained = served.model.explain(text, terms, predicted=int(probabilities.argmax()))
    labels = served.labels
    return {**explained, "predicted": labels[explained["predicted"]], "runner_up": labels[explained["runner_up"]]}
