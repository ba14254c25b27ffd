"""NLPModel: TF-IDF feature blocks and a linear classifier, the class users fit, save, load and score with.

Two families share one format and one scoring path, softmax(features @ weights.T + intercept): multinomial naive
Bayes over one TF-IDF block (the weights are its log-probabilities, fitted the same to the bit on every CPU), and
linear models (logistic regression, a linear SVM or an SGD classifier) over one or more blocks of word and
character n-grams.

The method names follow the tutorial this project descends from (``vectorizer_fit``, ``vectorizer_transform``,
``train``, ``predict``, ``predict_proba``); ``score_one`` and ``score_texts`` are the serving paths, ``explain``
says why. Each job has its own module, and this class ties them together:

- ``lib.artifacts``: the model folder, plain data pinned by digest, and every check on reading it;
- ``lib.scoring``: TF-IDF blocks and the linear layer over the fitted arrays, for one text and for a batch;
- ``lib.explain``: each term's exact share of the log-odds, and its place in the text;
- ``lib.calibration``: temperature scaling, fitted at build time and applied on every scoring path;
- ``lib.reproducible``: the arithmetic that makes a fit the same bytes on every CPU.

This module knows nothing of HTTP or plotting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC
from sklearn.utils.validation import check_non_negative

from lib import artifacts, reproducible
from lib.artifacts import (
    ARTIFACT_FILES,
    FAMILIES,
    MANIFEST,
    NAIVE_BAYES,
    REBUILD_HINT,
    TEMPERATURE_FILE,
    ModelLoadError,
    content_version,
)
from lib.calibration import softmax, temperature_scale
from lib.corpus import counting_settings
from lib.explain import Explainer
from lib.scoring import Scorer, stacked, tf_idf

__all__ = [
    "ARTIFACT_FILES",
    "FAMILIES",
    "LINEAR_CLASSIFIERS",
    "MANIFEST",
    "NAIVE_BAYES",
    "REBUILD_HINT",
    "TEMPERATURE_FILE",
    "ModelLoadError",
    "NLPModel",
    "ReproducibleMultinomialNB",
    "SoftmaxLinearClassifier",
    "content_version",
    "inverse_document_frequency",
    "tf_idf",
]

#: The linear family's classifiers, by the name NLPModel(classifier=...) takes.
LINEAR_CLASSIFIERS: dict[str, type] = {"logistic_regression": LogisticRegression, "linear_svc": LinearSVC, "sgd": SGDClassifier}
RANDOM_STATE = 0  # for the solvers that shuffle or sample, unless classifier_params say otherwise


class NLPModel:
    """Text classifier: TF-IDF feature blocks and a linear classifier (naive Bayes by default) over named labels.

    Parameters
    ----------
    labels : sequence of str
        Label names in class order: ``labels[i]`` is the name of class ``i``.
    vectorizer_params : mapping, optional
        Keyword arguments for the one ``TfidfVectorizer`` of a one-block model; give ``blocks`` for several.
    classifier_params : mapping, optional
        Keyword arguments for the classifier: ``MultinomialNB``'s, or those of the linear ``classifier`` chosen.
    family : {"naive_bayes", "linear"}
        Multinomial naive Bayes, or a linear model whose probabilities are the softmax of its scores.
    blocks : sequence of mappings, optional
        ``TfidfVectorizer`` arguments of each feature block, e.g. word 1-2-grams then ``char_wb`` 2-5-grams; the
        features are the blocks' TF-IDF side by side, each block normalized on its own.
    classifier : {"logistic_regression", "linear_svc", "sgd"}, optional
        The linear family's classifier (``LINEAR_CLASSIFIERS``); logistic regression if not given.

    Examples
    --------
    >>> model = NLPModel(["Negative", "Positive"], family="linear", classifier_params={"C": 4.0},
    ...                  blocks=[{"ngram_range": (1, 2), "sublinear_tf": True},
    ...                          {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True}])
    >>> texts, y = ["a fine film", "a dull film"], [1, 0]
    >>> model = model.vectorizer_fit(texts).train(model.vectorizer_transform(texts), y)
    """

    def __init__(
        self,
        labels: Sequence[str],
        vectorizer_params: Mapping[str, Any] | None = None,
        classifier_params: Mapping[str, Any] | None = None,
        *,
        family: str = NAIVE_BAYES,
        blocks: Sequence[Mapping[str, Any]] | None = None,
        classifier: str | None = None,
    ) -> None:
        if family not in FAMILIES:
            raise ValueError(f"family {family!r} is not one of {', '.join(FAMILIES)}.")
        if blocks is not None and vectorizer_params is not None:
            raise ValueError("Give vectorizer_params for one feature block or blocks for several, not both.")
        settings = [dict(block) for block in blocks] if blocks is not None else [dict(vectorizer_params or {})]
        if not settings:
            raise ValueError("blocks must hold at least one feature block's settings.")
        self.labels = tuple(labels)
        self.family = family
        self._set_blocks(tuple(TfidfVectorizer(**block) for block in settings))
        params = dict(classifier_params or {})
        self.clf: MultinomialNB | SoftmaxLinearClassifier
        if family == NAIVE_BAYES:
            if classifier is not None:
                raise ValueError(f"classifier={classifier!r} is for the linear family; naive Bayes takes none.")
            self.clf = ReproducibleMultinomialNB(**params)
        else:
            name = classifier or "logistic_regression"
            if name not in LINEAR_CLASSIFIERS:
                raise ValueError(f"classifier {name!r} is not one of {', '.join(LINEAR_CLASSIFIERS)}.")
            self.clf = SoftmaxLinearClassifier(LINEAR_CLASSIFIERS[name](**{"random_state": RANDOM_STATE, **params}))
        self.manifest: dict[str, Any] = {}
        self.inverse_temperature_: float | None = None  # calibration; None: the classifier's own probabilities
        self._scorer: Scorer | None = None
        self._explainer: Explainer | None = None

    def _set_blocks(self, vectorizers: tuple[TfidfVectorizer, ...]) -> None:
        """Keep the feature blocks, and ``vectorizer``: the one block, or a FeatureUnion of several (for pipelines)."""
        self.vectorizers = vectorizers
        self.vectorizer: Any = (
            vectorizers[0]
            if len(vectorizers) == 1
            else FeatureUnion([(f"block{index}", vectorizer) for index, vectorizer in enumerate(vectorizers)])
        )

    def vectorizer_fit(self, texts: Iterable[str]) -> NLPModel:
        """Fit each block's vocabulary and idf weights on training texts, the same on every machine.

        With ``max_features`` scikit-learn keeps the most frequent terms, but breaks ties between equally
        frequent ones with NumPy's unstable sort, whose order follows the CPU's vector instructions: the
        same data gave 487 different terms of 20,000 with and without AVX-512. Here a tie goes to the term
        that sorts first, and the rest is scikit-learn's own counting and idf.
        """
        texts = list(texts)
        for vectorizer in self.vectorizers:
            _fit_block(vectorizer, texts)
        self._scorer = None
        return self

    def vectorizer_fit_counts(self, analyzed: Sequence[tuple[sparse.csr_matrix, np.ndarray]]) -> Any:
        """Fit each block from its training texts' counts of every term, and return the training features.

        ``analyzed`` holds per block the texts' counts (min_df and max_df applied) and the terms of its columns, in
        sorted order, as CountVectorizer's ``fit_transform`` and ``get_feature_names_out`` give them. The same
        vocabularies, idf and features, to the bit, as ``vectorizer_fit`` then ``vectorizer_transform`` on those
        texts, without reading them again: the build counts every phrase once for all its fits (``lib.corpus``).
        """
        if len(analyzed) != len(self.vectorizers):
            raise ValueError(f"{len(analyzed)} blocks of counts for a model of {len(self.vectorizers)} feature blocks.")
        matrices = []
        for vectorizer, (counts, terms) in zip(self.vectorizers, analyzed, strict=True):
            if not vectorizer.use_idf:
                raise ValueError("vectorizer_fit_counts needs use_idf=True blocks; fit the texts with vectorizer_fit.")
            kept = sparse.csr_matrix(counts[:, _kept_terms(vectorizer, counts, terms)])
            kept.sort_indices()  # as CountVectorizer.transform leaves them
            matrices.append(_tf_idf_of_counts(kept, vectorizer))
        self._scorer = None
        return stacked(matrices)

    def vectorizer_transform(self, texts: Iterable[str]) -> Any:
        """Turn texts into the TF-IDF matrix the classifier reads: scikit-learn's numbers, the same bits on every CPU.

        With several blocks, their matrices side by side (columns in block order), each normalized on its own, as
        separate TfidfVectorizers in a FeatureUnion would make them.
        """
        texts = texts if isinstance(texts, str) else list(texts)  # a str is refused by scikit-learn, as it should be
        matrices = []
        for vectorizer in self.vectorizers:
            counts = CountVectorizer.transform(vectorizer, texts)  # the term counts; TfidfVectorizer would weigh them next
            idf = vectorizer.idf_ if vectorizer.use_idf else None
            matrices.append(tf_idf(counts, vectorizer.binary, vectorizer.sublinear_tf, idf, vectorizer.norm))
        return stacked(matrices)

    def train(self, features: Any, y: Sequence[int] | np.ndarray) -> NLPModel:
        """Fit the classifier on vectorized texts and integer class indices (every label's index among them).

        Naive Bayes' fit is the same bytes on every CPU; an iterative solver's (logistic regression, SVM, SGD) is
        not, as its last bits follow the CPU's vector kernels: a linear model rebuilt elsewhere may be a new version.
        """
        self.clf.fit(features, y)
        if not np.array_equal(self.clf.classes_, np.arange(len(self.labels))):
            raise ValueError(
                f"Training labels must be the class indices 0 to {len(self.labels) - 1}, each at least once; "
                f"got {np.asarray(self.clf.classes_).tolist()[:25]}."
            )
        self._scorer = None
        return self

    def predict(self, features: Any) -> np.ndarray:
        """Return the class index of each vectorized text."""
        return self.clf.predict(features)

    def predict_proba(self, features: Any) -> np.ndarray:
        """Return class probabilities (columns in label order) of vectorized texts, calibrated if the model is."""
        probabilities = self.clf.predict_proba(features)
        if self.inverse_temperature_ is None:
            return probabilities
        return temperature_scale(probabilities, self.inverse_temperature_)

    def set_calibration(self, inverse_temperature: float | None) -> NLPModel:
        """Calibrate every scoring path by temperature scaling with this beta (fitted on held-out texts); None removes it.

        The ranking of classes never changes, so neither do predicted labels: only how sure the model says it is.
        """
        self.inverse_temperature_ = None if inverse_temperature is None else float(inverse_temperature)
        self._scorer = None
        return self

    def predict_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Return class probabilities of raw texts in one vectorised call (the batch path)."""
        return self.predict_proba(self.vectorizer_transform(texts))

    def score_one(self, text: str) -> tuple[np.ndarray, int, int]:
        """Return one text's class probabilities, its terms the model knows, and its terms: the single-query path."""
        return self._scoring_path().score(text)

    def score_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return class probabilities of raw texts and, per text, (known terms, terms): the serving path.

        A text whose terms the model never saw gets the class prior alone; the counts say so. Same
        arithmetic as ``predict_texts`` (to ~1e-12) in one sparse product, with each text analyzed
        once for both the features and the counts.
        """
        return self._scoring_path().score_many(texts)

    def explain(self, text: str, top: int = 10, predicted: int | None = None) -> dict[str, Any]:
        """Say which terms of ``text`` decided its class, exactly, and where they are in the text.

        For the predicted class c (``predicted``, else the most likely) against the runner-up r (the most likely
        other class), each distinct feature the model knows contributes ``w_t (W_c,t - W_r,t)``, w_t its TF-IDF
        weight in the text and W the weights (naive Bayes: log P(t | class)). ``prior_difference``, the
        intercepts' difference (naive Bayes: the log-priors'), plus every contribution equals ``log_odds``, the
        score of c minus that of r (naive Bayes: joint log-likelihoods; any linear model: its logits), to
        rounding: positive contributions pushed towards c, negative ones towards r. A ``char_wb`` block's n-grams
        are summed onto the whitespace-separated word each lies in, so a word is one term; terms of different
        blocks with the same text are one term (their contributions and weights added). Returns class indices and a
        JSON-ready dict:

        - ``terms``: the ``top`` known terms by absolute contribution (ties in text order), each with
          ``contribution``, ``weight``, ``count`` and ``spans``, the [start, end) of each occurrence in
          ``text`` itself (not the lower-cased text; a word pair spans both words and any one-letter word
          the tokenizer dropped between them);
        - ``terms_omitted``: how many known terms did not make the top and their summed contribution;
        - ``unknown_terms``: the first ``top`` distinct terms no block has any weight for, with spans, and
          ``unknown_terms_omitted``, how many more there are.
        """
        return self._explanation_path().explain(text, top, predicted)

    def _explanation_path(self) -> Explainer:
        """The explainer over the current scorer, built on first use after each fit or load."""
        scorer = self._scoring_path()
        if self._explainer is None or self._explainer.scorer is not scorer:
            self._explainer = Explainer(scorer)
        return self._explainer

    def _scoring_path(self) -> Scorer:
        """The fitted arrays arranged for scoring, built once per fit or load."""
        if self._scorer is None:
            self._scorer = Scorer(self.vectorizers, *self._linear_layer(), self.inverse_temperature_)
        return self._scorer

    def _linear_layer(self) -> tuple[np.ndarray, np.ndarray]:
        """The fitted classifier as one weight matrix (labels x features) and one intercept per label."""
        if isinstance(self.clf, SoftmaxLinearClassifier):
            return self.clf.coef_, self.clf.intercept_
        return self.clf.feature_log_prob_, self.clf.class_log_prior_

    @property
    def version(self) -> str:
        """Content-derived version of the saved artifacts, e.g. ``sentiment-3f2a9c1b7d4e``."""
        return str(self.manifest.get("version", "unsaved"))

    def save(self, directory: str | Path, name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """Write the fitted model into ``directory`` as JSON and arrays, then the manifest (``lib.artifacts``)."""
        fitted = artifacts.Artifacts(self.labels, self.vectorizers, *self._linear_layer(), self.family, self.inverse_temperature_)
        self.manifest = artifacts.save(directory, name, fitted, metadata)
        return self.manifest

    @classmethod
    def load(cls, directory: str | Path) -> NLPModel:
        """Load a saved model after verifying every file; raise ModelLoadError naming the file otherwise."""
        saved = artifacts.load(directory)
        model = cls(saved.labels, family=saved.family)
        model._set_blocks(saved.vectorizers)
        if saved.family == NAIVE_BAYES:
            model.clf = _naive_bayes(saved.weights, saved.intercept)
        else:
            model.clf = SoftmaxLinearClassifier.from_arrays(saved.weights, saved.intercept)
        model.inverse_temperature_ = saved.inverse_temperature
        model.manifest = saved.manifest
        model._scoring_path()  # built at load, so the first request pays nothing
        return model


class SoftmaxLinearClassifier(ClassifierMixin, BaseEstimator):
    """Any linear classifier as one weight row and intercept per label, its probabilities the softmax of its scores.

    ``fit`` fits a clone of ``estimator`` (LogisticRegression if None) and keeps its ``coef_`` and ``intercept_``
    with a row for every label: a binary model's one row w and intercept b become [0, w] and [0, b], since
    softmax(0, s) is the sigmoid of s. So a LogisticRegression's probabilities are its own ``predict_proba``
    (binary, or multinomial with more labels). A LinearSVC's or an SGDClassifier's margins are no probabilities:
    their softmax ranks the labels as the margins do, and temperature scaling fitted at build time makes the
    numbers honest. The scores are deliberately not offered as ``decision_function``: scikit-learn's calibration
    then reads ``predict_proba``, as ``lib.calibration`` does.

    Unlike naive Bayes, the fitted weights are not the same bytes on every CPU: an iterative solver's last bits
    follow the vector kernels it runs on.

    Parameters
    ----------
    estimator : LogisticRegression, LinearSVC or SGDClassifier, optional
        The (unfitted) linear classifier to fit.
    """

    def __init__(self, estimator: Any = None) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Sequence[int] | np.ndarray) -> SoftmaxLinearClassifier:
        """Fit the estimator and keep its weights and intercepts, one row per class."""
        estimator = clone(self.estimator if self.estimator is not None else LogisticRegression())
        estimator.fit(X, y)
        coef = np.array(estimator.coef_, dtype=np.float64)
        intercept = np.array(np.broadcast_to(np.asarray(estimator.intercept_, dtype=np.float64), (coef.shape[0],)))
        if coef.shape[0] == 1:  # binary: the positive class's scores against a class of zeros
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]])
        self.estimator_ = estimator
        self.coef_, self.intercept_, self.classes_ = coef, intercept, np.asarray(estimator.classes_)
        self.n_features_in_ = coef.shape[1]
        return self

    @classmethod
    def from_arrays(cls, coef: np.ndarray, intercept: np.ndarray) -> SoftmaxLinearClassifier:
        """A fitted classifier from saved weights and intercepts, its classes 0 to labels - 1."""
        fitted = cls()
        fitted.coef_, fitted.intercept_, fitted.classes_ = coef, intercept, np.arange(len(intercept))
        fitted.n_features_in_ = coef.shape[1]
        return fitted

    def scores(self, X: Any) -> np.ndarray:
        """Each text's score for each class: ``X @ coef_.T + intercept_`` (logistic regression: its logits)."""
        return np.asarray(X @ self.coef_.T) + self.intercept_

    def predict_proba(self, X: Any) -> np.ndarray:
        """Return the softmax of the scores: class probabilities, columns in class order."""
        return softmax(self.scores(X))

    def predict(self, X: Any) -> np.ndarray:
        """Return each text's highest-scoring class."""
        return self.classes_[self.scores(X).argmax(axis=1)]


class ReproducibleMultinomialNB(MultinomialNB):
    """scikit-learn's multinomial naive Bayes with its fitted numbers computed the same, bit for bit, on every CPU.

    scikit-learn sums the class counts with NumPy's vector kernels, whose order follows the CPU, and takes NumPy's
    logarithm, which differs by kernel too: a rebuild on an AVX-512 machine changed every log-probability by up to
    1.8e-15. Here the sums are exact and the logarithms correctly rounded (``lib.reproducible``); the formulas are
    scikit-learn's, and so are the results, to a unit in the last place.
    """

    def _count(self, X: Any, Y: np.ndarray) -> None:
        """Add the features' exact sums per class, and the classes' exact weights."""
        check_non_negative(X, "MultinomialNB (input X)")
        self.feature_count_ += reproducible.weighted_column_sums(X, Y)
        self.class_count_ += reproducible.column_sums(Y)

    def _update_feature_log_prob(self, alpha: Any) -> None:
        """log P(term | class): the smoothed counts over their class's exact total, logarithms correctly rounded."""
        smoothed = self.feature_count_ + alpha
        totals = reproducible.row_sums(smoothed)
        self.feature_log_prob_ = reproducible.logs(smoothed) - reproducible.logs(totals)[:, np.newaxis]

    def _update_class_log_prior(self, class_prior: Any = None) -> None:
        """log P(class): the given prior, the classes' shares of the training weight, or uniform, as scikit-learn does."""
        n_classes = len(self.classes_)
        if class_prior is not None:
            if len(class_prior) != n_classes:
                raise ValueError("Number of priors must match number of classes.")
            self.class_log_prior_ = reproducible.logs(np.asarray(class_prior, dtype=np.float64))
        elif self.fit_prior:
            total = reproducible.log(reproducible.exact_sum(self.class_count_))
            self.class_log_prior_ = reproducible.logs(self.class_count_) - total
        else:
            self.class_log_prior_ = np.full(n_classes, -reproducible.log(n_classes))


def _fit_block(vectorizer: TfidfVectorizer, texts: list[str]) -> None:
    """Fit one block's vocabulary and idf, ties for ``max_features`` broken by term (see ``NLPModel.vectorizer_fit``)."""
    counter = CountVectorizer(**{**counting_settings(vectorizer), "max_features": None})
    counts = counter.fit_transform(texts)  # min_df and max_df applied; binary counts if binary
    terms = counter.get_feature_names_out()  # sorted, as the columns are
    kept = _kept_terms(vectorizer, counts, terms)
    if not vectorizer.use_idf:  # nothing to carry over: scikit-learn fits on exactly these terms
        vectorizer.set_params(vocabulary=[str(term) for term in terms[kept]]).fit(texts).set_params(vocabulary=None)


def _kept_terms(vectorizer: TfidfVectorizer, counts: sparse.csr_matrix, terms: np.ndarray) -> np.ndarray:
    """Keep a block's ``max_features`` most frequent terms (ties by term) of these counts; set its vocabulary and idf.

    ``counts`` are the training texts' counts of ``terms`` (sorted, as the columns are, min_df and max_df applied).
    Returns the kept columns, in order.
    """
    frequencies = np.asarray(counts.sum(axis=0)).ravel()
    columns = np.arange(len(terms))
    # Most frequent first, ties by column, i.e. by term: every key differs, so any sort gives this one order.
    kept = np.sort(np.lexsort((columns, -frequencies))[: vectorizer.max_features])
    if vectorizer.use_idf:  # as a load sets them: the vocabulary, then idf over the same counts
        vectorizer.vocabulary_ = {str(term): index for index, term in enumerate(terms[kept])}
        vectorizer.idf_ = inverse_document_frequency(counts[:, kept], vectorizer.smooth_idf)
    return kept


def _tf_idf_of_counts(counts: sparse.csr_matrix, vectorizer: TfidfVectorizer) -> Any:
    """``tf_idf`` of a block's counts, 1 + log(count) looked up in a table of the few counts there are: the same bits.

    The logarithms are correctly rounded, so a table of them gives each count's own; taking them one by one costs
    seconds on the millions of character n-grams of a build's fit.
    """
    if not vectorizer.sublinear_tf or vectorizer.binary or not counts.nnz:
        return tf_idf(counts, vectorizer.binary, vectorizer.sublinear_tf, vectorizer.idf_, vectorizer.norm)
    whole = counts.data.astype(np.int64)
    if (whole != counts.data).any() or whole.min() < 1:  # weighted counts: no table of them
        return tf_idf(counts, False, True, vectorizer.idf_, vectorizer.norm)
    table = reproducible.logs(np.arange(1, whole.max() + 1, dtype=np.float64)) + 1.0
    sublinear = sparse.csr_matrix((table[whole - 1], counts.indices, counts.indptr), shape=counts.shape)
    return tf_idf(sublinear, False, False, vectorizer.idf_, vectorizer.norm)


def inverse_document_frequency(counts: sparse.spmatrix, smooth: bool) -> np.ndarray:
    """scikit-learn's idf, log(n / df) + 1 (n and df plus one if smoothed), its logarithm correctly rounded."""
    documents = np.bincount(sparse.csr_matrix(counts).indices, minlength=counts.shape[1]) + int(smooth)
    return reproducible.logs((counts.shape[0] + int(smooth)) / documents) + 1.0


def _naive_bayes(feature_log_prob: np.ndarray, class_log_prior: np.ndarray) -> MultinomialNB:
    """A fitted naive Bayes from its saved arrays, as scikit-learn's own methods read it."""
    clf = MultinomialNB()
    clf.feature_log_prob_ = feature_log_prob
    clf.class_log_prior_ = class_log_prior
    clf.classes_ = np.arange(len(class_log_prior))
    clf.n_features_in_ = feature_log_prob.shape[1]
    return clf
