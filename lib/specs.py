"""What each served model learns, and which rows it learns and is judged on: the build's one source for both.

A spec names a model's labels, the URL path that serves it, how Kaggle's 0-4 ratings map to its classes, the
ratings it is fitted on, and its vectorizer and classifier settings (chosen by ``build_model.py --tune`` over
TUNING_GRID). Rows are always split by SentenceId, so no sentence's phrases straddle the split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

import util
from model import NLPModel

RANDOM_STATE = 0
VALIDATION_SHARE = 0.2
CALIBRATION_SHARE = 0.2  # of the sentences a model is fitted on, held out from a sibling fit to calibrate it


@dataclass(frozen=True)
class ModelSpec:
    """What one served model learns: which Kaggle ratings, mapped to which classes, and how."""

    labels: tuple[str, ...]
    endpoint: str  # URL path that serves the model
    classes: dict[int, int]  # Kaggle rating -> class index, for training and evaluation
    train_ratings: tuple[int, ...]  # the ratings whose phrases the model is fitted on
    vectorizer: dict[str, Any] = field(default_factory=dict)
    classifier: dict[str, Any] = field(default_factory=dict)
    sentence_accuracy_floor: float = 0.0
    index_field: str | None = None  # also answer the class index under this name
    family: str = "naive_bayes"  # or "linear": ``blocks`` of features and a ``classifier_name`` over them
    blocks: tuple[dict[str, Any], ...] = ()  # the linear family's TfidfVectorizer settings, one per feature block
    classifier_name: str | None = None  # the linear family's classifier (model.LINEAR_CLASSIFIERS)
    calibrate: bool = True  # temperature scaling, kept where it lowered the validation sentences' ECE and Brier

    def new_model(self) -> NLPModel:
        """An unfitted model of this spec."""
        if self.family == "linear":
            return NLPModel(
                self.labels,
                classifier_params=self.classifier,
                family="linear",
                blocks=self.blocks,
                classifier=self.classifier_name,
            )
        return NLPModel(self.labels, self.vectorizer, self.classifier)

    def params(self) -> dict[str, Any]:
        """The settings a manifest records: the vectorizer and classifier, and for the linear family its blocks."""
        if self.family == "linear":
            return {"blocks": list(self.blocks), "classifier": {"name": self.classifier_name, **self.classifier}}
        return {"vectorizer": self.vectorizer, "classifier": self.classifier}


#: The linear family's feature blocks: TF-IDF of word 1-2-grams, and of character 2-5-grams within word boundaries.
WORDS = {"ngram_range": (1, 2), "sublinear_tf": True}
CHARACTERS = {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True}
#: Logistic regression fitted by stochastic gradient descent: a fixed number of passes, no stopping rule, so a fit
#: costs seconds and a rebuild repeats it step for step.
LOGISTIC_SGD = {"loss": "log_loss", "max_iter": 10, "tol": None}

# Chosen by `python build_model.py --tune` (grouped 5-fold CV on the training part); see README.
MODEL_SPECS: dict[str, ModelSpec] = {
    "sentiment": ModelSpec(
        labels=util.SENTIMENT_NAMES,
        endpoint="/",
        classes={0: 0, 1: 0, 3: 1, 4: 1},
        train_ratings=(0, 1, 3, 4),
        vectorizer={"ngram_range": (1, 2), "sublinear_tf": True, "max_features": 20_000},
        classifier={"alpha": 1.0},
        sentence_accuracy_floor=0.80,
    ),
    "ratings": ModelSpec(
        labels=util.RATING_NAMES,
        endpoint="/ratings",
        index_field="rating",
        classes={rating: rating for rating in range(5)},
        train_ratings=(0, 1, 2, 3, 4),
        vectorizer={"ngram_range": (1, 2), "sublinear_tf": True, "max_features": 20_000},
        # Phrases are 51% neutral; with the learned prior whole sentences collapse to "neutral".
        classifier={"alpha": 0.3, "fit_prior": False},
        sentence_accuracy_floor=0.38,
    ),
    "sentiment-logreg": ModelSpec(
        labels=util.SENTIMENT_NAMES,
        endpoint="/sentiment-logreg",
        classes={0: 0, 1: 0, 3: 1, 4: 1},
        train_ratings=(0, 1, 3, 4),
        family="linear",
        blocks=({**WORDS, "max_features": 50_000}, {**CHARACTERS, "max_features": 50_000}),
        classifier_name="sgd",
        classifier={**LOGISTIC_SGD, "alpha": 1e-5},
        sentence_accuracy_floor=0.82,
        calibrate=False,  # temperature scaling raised the validation sentences' ECE (0.024 to 0.031)
    ),
    "ratings-logreg": ModelSpec(
        labels=util.RATING_NAMES,
        endpoint="/ratings-logreg",
        index_field="rating",
        classes={rating: rating for rating in range(5)},
        train_ratings=(0, 1, 2, 3, 4),
        family="linear",
        blocks=({**WORDS, "max_features": 20_000}, {**CHARACTERS, "max_features": 100_000}),
        classifier_name="sgd",
        classifier={**LOGISTIC_SGD, "alpha": 1e-5},
        sentence_accuracy_floor=0.42,
    ),
}

TUNING_GRID: dict[str, dict[str, Any]] = {
    "sentiment": {
        "train_ratings": [(0, 4), (0, 1, 3, 4)],
        "vectorizer": {"ngram_range": [(1, 1), (1, 2)], "max_features": [20_000, 50_000, None]},
        "classifier": {"alpha": [0.1, 0.3, 1.0]},
    },
    "ratings": {
        "train_ratings": [(0, 1, 2, 3, 4)],
        "vectorizer": {"ngram_range": [(1, 1), (1, 2)], "max_features": [20_000, 50_000, None]},
        "classifier": {"alpha": [0.1, 0.3, 1.0], "fit_prior": [True, False]},
    },
    **{
        name: {
            "train_ratings": [MODEL_SPECS[name].train_ratings],
            "blocks": [
                ({**WORDS, "max_features": 50_000},),
                *(
                    ({**WORDS, "max_features": words}, {**CHARACTERS, "max_features": characters})
                    for words in (20_000, 50_000)
                    for characters in (50_000, 100_000, 150_000)
                ),
            ],
            "classifier": {"alpha": [3e-6, 1e-5, 3e-5]},
        }
        for name in ("sentiment-logreg", "ratings-logreg")
    },
}


def split_by_sentence(phrases: pd.DataFrame, share: float = VALIDATION_SHARE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a share of whole sentences, with every phrase of each, for validation (or calibration)."""
    if phrases["SentenceId"].nunique() < 2:
        raise util.DataError("need phrases from at least two sentences to hold some out for validation")
    splitter = GroupShuffleSplit(n_splits=1, test_size=share, random_state=RANDOM_STATE)
    train_rows, validation_rows = next(splitter.split(phrases, groups=phrases["SentenceId"]))
    return phrases.iloc[train_rows], phrases.iloc[validation_rows]


def training_rows(spec: ModelSpec, phrases: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
    """Select the phrases a model is fitted on and their class indices."""
    selected = phrases[phrases["Sentiment"].isin(spec.train_ratings)]
    return selected["Phrase"], selected["Sentiment"].map(spec.classes).to_numpy()


def evaluation_rows(spec: ModelSpec, phrases: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
    """Select the phrases a model is judged on: every rating it has a class for."""
    selected = phrases[phrases["Sentiment"].isin(spec.classes.keys())]
    return selected["Phrase"], selected["Sentiment"].map(spec.classes).to_numpy()
