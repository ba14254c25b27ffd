"""NLPModel: a TF-IDF vectorizer and a multinomial naive Bayes classifier, the class users fit, save, load and score with.

The method names follow the tutorial this project descends from (``vectorizer_fit``, ``vectorizer_transform``,
``train``, ``predict``, ``predict_proba``); ``score_one`` and ``score_texts`` are the serving paths, ``explain``
says why. Each job has its own module, and this class ties them together:

- ``lib.artifacts``: the model folder, plain data pinned by digest, and every check on reading it;
- ``lib.scoring``: TF-IDF and naive Bayes over the fitted arrays, for one text and for a batch;
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
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.naive_bayes import MultinomialNB
from sklearn.utils.validation import check_non_negative

from lib import artifacts, reproducible
from lib.artifacts import ARTIFACT_FILES, MANIFEST, REBUILD_HINT, TEMPERATURE_FILE, ModelLoadError, content_version
from lib.calibration import temperature_scale
from lib.explain import Explainer
from lib.scoring import Scorer, tf_idf

__all__ = [
    "ARTIFACT_FILES",
    "MANIFEST",
    "REBUILD_HINT",
    "TEMPERATURE_FILE",
    "ModelLoadError",
    "NLPModel",
    "ReproducibleMultinomialNB",
    "content_version",
    "inverse_document_frequency",
    "tf_idf",
]


class NLPModel:
    """Text classifier: TF-IDF features and multinomial naive Bayes over named labels.

    Parameters
    ----------
    labels : sequence of str
        Label names in class order: ``labels[i]`` is the name of class ``i``.
    vectorizer_params, classifier_params : mapping, optional
        Keyword arguments for ``TfidfVectorizer`` and ``MultinomialNB``.
    """

    def __init__(
        self,
        labels: Sequence[str],
        vectorizer_params: Mapping[str, Any] | None = None,
        classifier_params: Mapping[str, Any] | None = None,
    ) -> None:
        self.labels = tuple(labels)
        self.vectorizer = TfidfVectorizer(**dict(vectorizer_params or {}))
        self.clf = ReproducibleMultinomialNB(**dict(classifier_params or {}))
        self.manifest: dict[str, Any] = {}
        self.inverse_temperature_: float | None = None  # calibration; None: the classifier's own probabilities
        self._scorer: Scorer | None = None
        self._explainer: Explainer | None = None

    def vectorizer_fit(self, texts: Iterable[str]) -> NLPModel:
        """Fit the vocabulary and idf weights on training texts, the same on every machine.

        With ``max_features`` scikit-learn keeps the most frequent terms, but breaks ties between equally
        frequent ones with NumPy's unstable sort, whose order follows the CPU's vector instructions: the
        same data gave 487 different terms of 20,000 with and without AVX-512. Here a tie goes to the term
        that sorts first, and the rest is scikit-learn's own counting and idf.
        """
        texts = list(texts)
        tfidf_only = {"norm", "use_idf", "smooth_idf", "sublinear_tf"}
        settings = {key: value for key, value in self.vectorizer.get_params().items() if key not in tfidf_only}
        counter = CountVectorizer(**{**settings, "max_features": None})
        counts = counter.fit_transform(texts)  # min_df and max_df applied; binary counts if binary
        terms = counter.get_feature_names_out()  # sorted, as the columns are
        frequencies = np.asarray(counts.sum(axis=0)).ravel()
        columns = np.arange(len(terms))
        # Most frequent first, ties by column, i.e. by term: every key differs, so any sort gives this one order.
        kept = np.sort(np.lexsort((columns, -frequencies))[: self.vectorizer.max_features])
        vocabulary = {str(term): index for index, term in enumerate(terms[kept])}
        if self.vectorizer.use_idf:  # as a load sets them: the vocabulary, then idf over the same counts
            self.vectorizer.vocabulary_ = vocabulary
            self.vectorizer.idf_ = inverse_document_frequency(counts[:, kept], self.vectorizer.smooth_idf)
        else:  # nothing to carry over: scikit-learn fits on exactly these terms
            self.vectorizer.set_params(vocabulary=list(vocabulary)).fit(texts).set_params(vocabulary=None)
        return self

    def vectorizer_transform(self, texts: Iterable[str]) -> Any:
        """Turn texts into the TF-IDF matrix the classifier reads: scikit-learn's numbers, the same bits on every CPU."""
        vectorizer = self.vectorizer
        counts = CountVectorizer.transform(vectorizer, texts)  # the term counts; TfidfVectorizer would weigh them next
        idf = vectorizer.idf_ if vectorizer.use_idf else None
        return tf_idf(counts, vectorizer.binary, vectorizer.sublinear_tf, idf, vectorizer.norm)

    def train(self, features: Any, y: Sequence[int] | np.ndarray) -> NLPModel:
        """Fit the classifier on vectorized texts and integer class indices."""
        self.clf.fit(features, y)
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

        For the predicted class c (``predicted``, else naive Bayes' most likely) against the runner-up r (the
        most likely other class), each distinct term the model knows contributes ``w_t (log theta_c,t - log
        theta_r,t)``, w_t its TF-IDF weight in the text. ``prior_difference`` plus every contribution equals
        ``log_odds``, the joint log-likelihood of c minus that of r (to rounding): positive contributions
        pushed towards c, negative ones towards r. Returns class indices and a JSON-ready dict:

        - ``terms``: the ``top`` known terms by absolute contribution (ties in text order), each with
          ``contribution``, ``weight``, ``count`` and ``spans``, the [start, end) of each occurrence in
          ``text`` itself (not the lower-cased text; a word pair spans both words and any one-letter word
          the tokenizer dropped between them);
        - ``terms_omitted``: how many known terms did not make the top and their summed contribution;
        - ``unknown_terms``: the first ``top`` distinct terms the model has no weight for, with spans, and
          ``unknown_terms_omitted``, how many more there are.
        """
        return self._explanation_path().explain(text, top, predicted)

    def _explanation_path(self) -> Explainer:
        """The explainer over the current scorer, built on first use after each fit or load."""
        scorer = self._scoring_path()
        if self._explainer is None or self._explainer.scorer is not scorer:
            self._explainer = Explainer(self.vectorizer, scorer)
        return self._explainer

    def _scoring_path(self) -> Scorer:
        """The fitted arrays arranged for scoring, built once per fit or load."""
        if self._scorer is None:
            self._scorer = Scorer(
                self.vectorizer, self.clf.feature_log_prob_, self.clf.class_log_prior_, self.inverse_temperature_
            )
        return self._scorer

    @property
    def version(self) -> str:
        """Content-derived version of the saved artifacts, e.g. ``sentiment-3f2a9c1b7d4e``."""
        return str(self.manifest.get("version", "unsaved"))

    def save(self, directory: str | Path, name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """Write the fitted model into ``directory`` as JSON and arrays, then the manifest (``lib.artifacts``)."""
        fitted = artifacts.Artifacts(
            self.labels, self.vectorizer, self.clf.feature_log_prob_, self.clf.class_log_prior_, self.inverse_temperature_
        )
        self.manifest = artifacts.save(directory, name, fitted, metadata)
        return self.manifest

    @classmethod
    def load(cls, directory: str | Path) -> NLPModel:
        """Load a saved model after verifying every file; raise ModelLoadError naming the file otherwise."""
        saved = artifacts.load(directory)
        model = cls(saved.labels)
        model.vectorizer = saved.vectorizer
        model.clf = _naive_bayes(saved.feature_log_prob, saved.class_log_prior)
        model.inverse_temperature_ = saved.inverse_temperature
        model.manifest = saved.manifest
        model._scoring_path()  # built at load, so the first request pays nothing
        return model


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
