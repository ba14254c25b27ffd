"""Every phrase's term counts, taken once per kind of feature block, so each fit of a build selects rows instead of text.

A build fits every model several times (validated, calibration sibling, served; ``--tune`` and the accuracy benchmark
fit per fold), each time on a subset of the same phrases. Splitting text into character n-grams is most of the cost
of a fit, and the subsets' counts are rows of the counts of all phrases: the vocabulary of a subset is the terms its
rows hold, in the same sorted order. ``NLPModel.vectorizer_fit_counts`` turns them into the same model, to the bit,
as fitting the subset's texts would.
"""

from __future__ import annotations

import json
from numbers import Integral
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

if TYPE_CHECKING:
    import pandas as pd

    from model import NLPModel


def counting_settings(vectorizer: TfidfVectorizer) -> dict[str, Any]:
    """A block's settings that decide its term counts (analyzer, n-grams, case...), without the TF-IDF weighing."""
    tfidf_only = {"norm", "use_idf", "smooth_idf", "sublinear_tf"}
    return {key: value for key, value in vectorizer.get_params().items() if key not in tfidf_only}


class Corpus:
    """The phrases a build fits on, and their term counts per block kind, counted on first use.

    Parameters
    ----------
    texts : pandas.Series
        Every phrase, indexed as the DataFrames whose rows the fits select (``texts.index`` labels).
    """

    def __init__(self, texts: pd.Series) -> None:
        if not texts.index.is_unique:
            raise ValueError("the phrases' index must be unique: rows are selected by it")
        self.texts = texts
        self._counted: dict[str, tuple[sparse.csr_matrix, np.ndarray]] = {}

    def fit(self, model: NLPModel, rows: pd.Index) -> Any:
        """Fit ``model``'s blocks on the phrases labelled ``rows`` and return their training features."""
        positions = self.texts.index.get_indexer(rows)
        if (positions < 0).any():
            raise ValueError("rows must be labels of the corpus' phrases")
        return model.vectorizer_fit_counts([self._subset(vectorizer, positions) for vectorizer in model.vectorizers])

    def _subset(self, vectorizer: TfidfVectorizer, positions: np.ndarray) -> tuple[sparse.csr_matrix, np.ndarray]:
        """The counts of the terms the selected phrases hold, columns sorted by term, min_df and max_df applied."""
        counts, terms = self._all_counts(vectorizer)
        selected = counts[positions]
        documents = np.bincount(selected.indices, minlength=selected.shape[1])
        low, high = (
            float(bound) if isinstance(bound, Integral) else bound * len(positions)
            for bound in (vectorizer.min_df, vectorizer.max_df)
        )
        if high < low:
            raise ValueError("max_df corresponds to < documents than min_df")
        columns = np.flatnonzero((documents > 0) & (documents >= low) & (documents <= high))
        if not columns.size:
            raise ValueError("After pruning, no terms remain. Try a lower min_df or a higher max_df.")
        return sparse.csr_matrix(selected[:, columns]), terms[columns]

    def _all_counts(self, vectorizer: TfidfVectorizer) -> tuple[sparse.csr_matrix, np.ndarray]:
        """Every phrase's counts of every term, for the block's counting settings (counted once per kind)."""
        settings = {**counting_settings(vectorizer), "max_features": None, "min_df": 1, "max_df": 1.0, "vocabulary": None}
        key = json.dumps(settings, sort_keys=True, default=repr)
        if key not in self._counted:
            counter = CountVectorizer(**settings)
            counts = sparse.csr_matrix(counter.fit_transform(self.texts.tolist()))
            self._counted[key] = counts, counter.get_feature_names_out()
        return self._counted[key]
