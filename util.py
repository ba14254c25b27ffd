"""Helpers for the build: reading the Kaggle TSV, its label names, and the report's plots.

Only ``build_model.py`` (and the tests) import this module; the service never does, so
matplotlib and pandas stay out of the serving process.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from lib.evaluation import expected_calibration_error, reliability_bins
from lib.paths import KAGGLE_URL

REQUIRED_COLUMNS = ("PhraseId", "SentenceId", "Phrase", "Sentiment")


#: The five Kaggle labels, in rating order 0-4.
RATING_NAMES = ("negative", "somewhat negative", "neutral", "somewhat positive", "positive")

#: Binary labels, in class order 0-1.
SENTIMENT_NAMES = ("Negative", "Positive")


class DataError(ValueError):
    """The training file is missing or does not look like the Kaggle TSV."""


def load_phrases(path: str | Path) -> pd.DataFrame:
    """Read and validate a Kaggle ``train.tsv``; raise DataError naming the file and the fault."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: no such file. Download train.tsv of Kaggle's 'Sentiment Analysis on Movie Reviews' "
            f"({KAGGLE_URL}) into lib/data/, or pass its path with --data PATH (make models DATA=PATH)"
        )
    try:
        # Phrases hold quotes and words like "null"/"NA": read them verbatim, never as NaN.
        frame = pd.read_csv(
            path,
            sep="\t",
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            dtype=str,
            encoding="utf-8",
        )
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: not a readable tab-separated file ({exc})") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column {', '.join(missing)} "
            f"(expected {', '.join(REQUIRED_COLUMNS)}; found {', '.join(frame.columns)})"
        )
    frame = frame[list(REQUIRED_COLUMNS)]
    for column in ("PhraseId", "SentenceId", "Sentiment"):
        frame[column] = _integer_column(path, frame[column], column)
    bad = frame.index[~frame["Sentiment"].between(0, len(RATING_NAMES) - 1)]
    if len(bad):
        raise DataError(
            f"{path}: bad label {frame.at[bad[0], 'Sentiment']} in column Sentiment on line {bad[0] + 2} (expected 0-4)"
        )
    if frame.empty:
        raise DataError(f"{path}: no rows after the header")
    return frame


def _integer_column(path: Path, values: pd.Series, column: str) -> pd.Series:
    """Convert a column to int, naming the first line that is not an integer."""
    numbers = pd.to_numeric(values.str.strip(), errors="coerce")
    bad = numbers.index[numbers.isna() | (numbers != numbers.round())]
    if len(bad):
        raise DataError(f"{path}: bad value {values.at[bad[0]]!r} in column {column} on line {bad[0] + 2} (expected an integer)")
    return numbers.astype(np.int64)


def file_sha256(path: str | Path) -> str:
    """Return the SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def whole_sentences(phrases: pd.DataFrame) -> pd.DataFrame:
    """Keep the longest phrase of each SentenceId: the full sentence a user would send."""
    longest = phrases["Phrase"].str.len().groupby(phrases["SentenceId"]).idxmax()
    return phrases.loc[longest.sort_values().to_numpy()]


def plot_reliability(y_true: np.ndarray, curves: dict[str, np.ndarray], n_bins: int, path: str | Path, title: str) -> None:
    """Save a reliability diagram as a PNG: accuracy against confidence per bin, one line per set of probabilities."""
    plt = _pyplot()
    figure, (axes, histogram) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True, height_ratios=(3, 1))
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    edges = np.linspace(0, 1, n_bins + 1)
    for label, probabilities in curves.items():
        mean_confidence, accuracy, counts = reliability_bins(y_true, probabilities, n_bins)
        filled = counts > 0
        ece = expected_calibration_error(y_true, probabilities, n_bins)
        axes.plot(mean_confidence[filled], accuracy[filled], marker="o", label=f"{label}: ECE {ece:.3f}")
        histogram.stairs(counts, edges, label=label)
    axes.set_ylabel("share of predictions that were right")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.legend(loc="upper left", fontsize="small")
    axes.set_title(title)
    histogram.set_xlabel("confidence (probability of the predicted label)")
    histogram.set_ylabel("texts")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], path: str | Path, title: str) -> None:
    """Save a confusion matrix (rows: true label, columns: predicted) as a PNG."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay(matrix, display_labels=list(labels)).plot(
        ax=axes, cmap="Blues", colorbar=False, values_format="d", xticks_rotation=40
    )
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_roc(y_true: np.ndarray, probabilities: np.ndarray, labels: Sequence[str], path: str | Path, title: str) -> None:
    """Save ROC curves as a PNG: one for a binary model, one per class (one-vs-rest) otherwise."""
    from sklearn.metrics import RocCurveDisplay

    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 5))
    if len(labels) == 2:
        RocCurveDisplay.from_predictions(y_true, probabilities[:, 1], ax=axes, name=labels[1])
    else:
        for index, label in enumerate(labels):
            RocCurveDisplay.from_predictions(y_true == index, probabilities[:, index], ax=axes, name=label)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.legend(loc="lower right", fontsize="small")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _pyplot() -> ModuleType:
    """Import pyplot on the non-interactive backend, so the build never opens a window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
