"""Predictions as a flat table: one row per input text, in input order and with its index.

The client (answers from the service) and the file scorer (models in process) both build their
DataFrames here, so the two give the same columns, types and values:

- ``prediction``: the label (missing for a row that was not text);
- the model's index field if it has one (``rating`` for ratings, nullable integer);
- ``confidence``: the probability of the predicted label, rounded to 3 decimals as the service answers;
- ``p_<label>``: each label's probability, labels in the model's order (``p_somewhat_negative``:
  characters other than letters, digits and ``_`` become ``_``, so every name is an identifier);
- ``known_terms``, ``terms``: coverage (zero known terms means the answer is the class prior alone);
- ``model_version``: the model that answered.

A row whose input is not a non-blank string (None, NaN, "", whitespace, a number) is missing in
every column: NaN, or <NA> for the integer ones.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def is_text(value: Any) -> bool:
    """Tell whether a value can be classified: a string with something besides whitespace (as the service requires)."""
    return isinstance(value, str) and bool(value.strip())


def text_mask(texts: pd.Series) -> np.ndarray:
    """One boolean per row: True where the row holds text to classify."""
    return np.fromiter((is_text(value) for value in texts), dtype=bool, count=len(texts))


def probability_column(label: str) -> str:
    """The column holding a label's probability: ``p_`` and the label, made an identifier."""
    return "p_" + re.sub(r"\W", "_", label)


def columns(labels: Sequence[str], index_field: str | None) -> list[str]:
    """The columns, in order, of a model with these labels and index field."""
    index = [index_field] if index_field else []
    return ["prediction", *index, "confidence", *map(probability_column, labels), "known_terms", "terms", "model_version"]


def predictions_frame(
    index: pd.Index,
    scored: np.ndarray,
    labels: Sequence[str],
    index_field: str | None,
    best: np.ndarray,
    probabilities: np.ndarray,
    coverage: np.ndarray,
    versions: Sequence[str],
) -> pd.DataFrame:
    """Lay predictions out as the table described above.

    ``scored`` marks the rows that were classified; ``best`` (class indices), ``probabilities`` (one row per
    scored text, columns in label order, rounded), ``coverage`` ((known terms, terms) per scored text) and
    ``versions`` hold one entry per scored row, in order.
    """
    rows = len(index)
    data: dict[str, Any] = {"prediction": _strings(rows, scored, np.asarray(labels, dtype=object)[best])}
    if index_field:
        data[index_field] = _integers(rows, scored, best)
    data["confidence"] = _floats(rows, scored, np.take_along_axis(probabilities, best[:, None], axis=1)[:, 0])
    for column, label in enumerate(labels):
        data[probability_column(label)] = _floats(rows, scored, probabilities[:, column])
    data["known_terms"] = _integers(rows, scored, coverage[:, 0])
    data["terms"] = _integers(rows, scored, coverage[:, 1])
    data["model_version"] = _strings(rows, scored, np.asarray(versions, dtype=object))
    return pd.DataFrame(data, index=index)


def _floats(rows: int, scored: np.ndarray, values: np.ndarray) -> np.ndarray:
    column = np.full(rows, np.nan)
    column[scored] = values
    return column


def _integers(rows: int, scored: np.ndarray, values: np.ndarray) -> pd.arrays.IntegerArray:
    column = np.zeros(rows, dtype=np.int64)
    column[scored] = values
    return pd.arrays.IntegerArray(column, ~scored)


def _strings(rows: int, scored: np.ndarray, values: np.ndarray) -> Any:
    column = np.full(rows, None, dtype=object)
    column[scored] = values
    return pd.array(column, dtype="str")
