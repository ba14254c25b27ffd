"""NLPModel: a TF-IDF vectorizer and a multinomial naive Bayes classifier, saved as data.

The method names follow the tutorial this project descends from (``vectorizer_fit``,
``vectorizer_transform``, ``train``, ``predict``, ``predict_proba``). ``save``/``load`` keep a
fitted model as plain data, never a pickle: the vectorizer's settings and vocabulary as JSON,
the idf weights and the classifier's log-probabilities as ``.npy`` arrays read with
``allow_pickle=False``. Whatever a model folder holds, loading it runs no code. A calibrated
model also holds its temperature scaling's one parameter, applied on every scoring path. A manifest pins
every file by SHA-256, and the version is derived from what is loaded. ``score_one`` and ``score_texts``
are the serving paths. This module knows nothing of HTTP or plotting.

Fitting writes the same bytes on every CPU: the idf weights, the training features and naive Bayes'
log-probabilities are computed with exact sums and correctly rounded logarithms (``lib.reproducible``),
never with the kernels NumPy or BLAS pick for the CPU at hand.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.naive_bayes import MultinomialNB
from sklearn.utils.validation import check_non_negative

from lib import reproducible
from lib.calibration import INVERSE_TEMPERATURE_RANGE, softmax, temperature_scale, temperature_scale_one

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2
VECTORIZER_FILE = "vectorizer.json"  # analyzer settings and the vocabulary in column order
IDF_FILE = "idf.npy"  # one weight per vocabulary term
FEATURE_LOG_PROB_FILE = "feature_log_prob.npy"  # log P(term | class), one row per label
CLASS_LOG_PRIOR_FILE = "class_log_prior.npy"  # log P(class), one per label
ARTIFACT_FILES = (VECTORIZER_FILE, IDF_FILE, FEATURE_LOG_PROB_FILE, CLASS_LOG_PRIOR_FILE)
#: Optional: the inverse temperature beta of a calibrated model, one float64 (no file: uncalibrated).
TEMPERATURE_FILE = "inverse_temperature.npy"
REBUILD_HINT = "Rebuild the models with: python build_model.py --data PATH/TO/train.tsv"

#: The vectorizer settings that shape ``transform``, with the values a saved model may hold.
#: Everything else is fixed (text input, no custom callables), so a model folder is pure data.
ANALYZER_CHOICES: dict[str, tuple[Any, ...]] = {
    "analyzer": ("word", "char", "char_wb"),
    "norm": ("l1", "l2", None),
    "strip_accents": (None, "ascii", "unicode"),
}
FLAG_PARAMS = ("binary", "lowercase", "sublinear_tf")
FIXED_PARAMS: dict[str, Any] = {"input": "content", "preprocessor": None, "tokenizer": None, "vocabulary": None, "use_idf": True}
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ModelLoadError(RuntimeError):
    """A model folder cannot be trusted or read; the message names the file and says how to rebuild."""


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
        self._fast: _FastPath | None = None
        self._explainer: _Explainer | None = None

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
        self._fast = None
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
        self._fast = None
        return self

    def predict_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Return class probabilities of raw texts in one vectorised call (the batch path)."""
        return self.predict_proba(self.vectorizer_transform(texts))

    def predict_one(self, text: str) -> np.ndarray:
        """Return class probabilities of one raw text without scikit-learn's per-call checks.

        Same arithmetic as ``vectorizer_transform`` + ``predict_proba`` (to ~1e-12), about a
        hundred times cheaper for a short phrase: the single-query serving path.
        """
        return self._fast_path()(text)

    def score_one(self, text: str) -> tuple[np.ndarray, int, int]:
        """Return one text's class probabilities, its terms the model knows, and its terms: the single-query path."""
        return self._fast_path().score(text)

    def score_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return class probabilities of raw texts and, per text, (known terms, terms): the serving path.

        A text whose terms the model never saw gets the class prior alone; the counts say so. Same
        arithmetic as ``predict_texts`` (to ~1e-12) in one sparse product, with each text analyzed
        once for both the features and the counts.
        """
        return self._fast_path().score_many(texts)

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

    def _explanation_path(self) -> _Explainer:
        """The explainer over the current fast path, built on first use after each fit or load."""
        fast = self._fast_path()
        if self._explainer is None or self._explainer.fast is not fast:
            self._explainer = _Explainer(self.vectorizer, fast)
        return self._explainer

    def _fast_path(self) -> _FastPath:
        """The fitted arrays arranged for scoring, built once per fit or load."""
        if self._fast is None:
            self._fast = _FastPath(self.vectorizer, self.clf, self.inverse_temperature_)
        return self._fast

    @property
    def version(self) -> str:
        """Content-derived version of the saved artifacts, e.g. ``sentiment-3f2a9c1b7d4e``."""
        return str(self.manifest.get("version", "unsaved"))

    def save(self, directory: str | Path, name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """Write the fitted model into ``directory`` as JSON and arrays, then the manifest."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = {filename: _write(directory / filename, payload) for filename, payload in self._artifacts().items()}
        self.manifest = {
            "format": MANIFEST_FORMAT,
            "name": name,
            "version": content_version(name, self.labels, files),
            "labels": list(self.labels),
            "files": files,
            "sklearn_version": sklearn.__version__,
            "python_version": platform.python_version(),
            **metadata,
        }
        (directory / MANIFEST).write_text(json.dumps(self.manifest, indent=2) + "\n")
        return self.manifest

    def _artifacts(self) -> dict[str, bytes]:
        """Serialize the fitted state: what ``transform`` and ``predict_proba`` read, nothing else."""
        params = analyzer_params(self.vectorizer)
        terms = self.vectorizer.get_feature_names_out().tolist()
        artifacts = {
            VECTORIZER_FILE: (json.dumps({"params": params, "vocabulary": terms}, sort_keys=True) + "\n").encode(),
            IDF_FILE: _npy(self.vectorizer.idf_),
            FEATURE_LOG_PROB_FILE: _npy(self.clf.feature_log_prob_),
            CLASS_LOG_PRIOR_FILE: _npy(self.clf.class_log_prior_),
        }
        if self.inverse_temperature_ is not None:
            artifacts[TEMPERATURE_FILE] = _npy(np.array([self.inverse_temperature_]))
        return artifacts

    @classmethod
    def load(cls, directory: str | Path) -> NLPModel:
        """Load a saved model after verifying every file; raise ModelLoadError naming the file otherwise."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        payloads = {name: _verified_bytes(directory, name, digest) for name, digest in manifest["files"].items()}
        installed = sklearn.__version__
        if manifest["sklearn_version"] != installed:
            raise ModelLoadError(
                f"{directory}: built with scikit-learn {manifest['sklearn_version']}, but "
                f"{installed} is installed. {REBUILD_HINT}"
            )
        model = cls(manifest["labels"])
        model.vectorizer = _vectorizer_from(directory, payloads)
        model.clf = _classifier_from(directory, payloads, len(model.labels), len(model.vectorizer.vocabulary_))
        if TEMPERATURE_FILE in payloads:
            model.inverse_temperature_ = _inverse_temperature_from(directory / TEMPERATURE_FILE, payloads[TEMPERATURE_FILE])
        model.manifest = manifest
        model._fast_path()  # built at load, so the first request pays nothing
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


def tf_idf(counts: sparse.spmatrix, binary: bool, sublinear_tf: bool, idf: np.ndarray | None, norm: str | None) -> Any:
    """Weigh a matrix of term counts as TfidfVectorizer does, and to the same bits on every CPU.

    Binary or sublinear term frequency (1 + log count), times idf, each row scaled to unit length (l1 or l2).
    """
    features = sparse.csr_matrix(counts, dtype=np.float64, copy=True)
    if binary:
        features.data[:] = 1.0
    elif sublinear_tf:
        features.data = reproducible.logs(features.data) + 1.0
    if idf is not None:
        features.data *= idf[features.indices]
    if norm is not None:
        features = reproducible.rows_normalized(features, norm)
    return features


def analyzer_params(vectorizer: TfidfVectorizer) -> dict[str, Any]:
    """Return the settings that shape ``transform`` as JSON data; refuse what data cannot hold."""
    params = vectorizer.get_params()
    for key, fixed in FIXED_PARAMS.items():
        if params[key] != fixed:
            raise ValueError(f"TfidfVectorizer {key}={params[key]!r} cannot be saved as data; use {key}={fixed!r}.")
    stop_words = params["stop_words"]
    return {
        **{key: params[key] for key in (*ANALYZER_CHOICES, *FLAG_PARAMS, "token_pattern")},
        "ngram_range": list(params["ngram_range"]),
        "stop_words": sorted(stop_words) if isinstance(stop_words, (list, set, frozenset, tuple)) else stop_words,
    }


def content_version(name: str, labels: Sequence[str], files: Mapping[str, str]) -> str:
    """Derive a model's version from its name, labels and every file's digest: new content, new version."""
    canonical = json.dumps({"name": name, "labels": list(labels), "files": dict(files)}, sort_keys=True)
    return f"{name}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read ``manifest.json`` and check its whole shape: it is JSON, so reading it runs no code."""
    path = directory / MANIFEST
    manifest = _json(path, _regular_file_bytes(directory, MANIFEST))
    fault = _manifest_fault(manifest)
    if fault:
        raise ModelLoadError(f"{path}: {fault}. {REBUILD_HINT}")
    expected = content_version(manifest["name"], manifest["labels"], manifest["files"])
    if manifest["version"] != expected:
        raise ModelLoadError(
            f"{path}: version {manifest['version']!r} does not match the content it names ({expected}); "
            f"the manifest was edited. {REBUILD_HINT}"
        )
    return manifest


def _manifest_fault(manifest: Any) -> str | None:
    """Say what is wrong with a manifest's shape, or None when every field is usable."""
    if not isinstance(manifest, dict):
        return "not a model manifest (expected a JSON object)"
    if "format" in manifest and manifest["format"] != MANIFEST_FORMAT:
        found = manifest["format"]
        return f"manifest format {found!r}, expected {MANIFEST_FORMAT} (older formats held pickles, which are never loaded)"
    required = {"format", "name", "version", "labels", "files", "sklearn_version"}
    if not required <= manifest.keys():
        return f"not a model manifest (needs {', '.join(sorted(required))})"
    if not all(isinstance(manifest[key], str) and manifest[key] for key in ("name", "version", "sklearn_version")):
        return "name, version and sklearn_version must be non-empty strings"
    labels = manifest["labels"]
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(label, str) and label.strip() for label in labels):
        return "labels must be a list of at least two non-empty strings"
    if len(set(labels)) != len(labels):
        return "labels must be distinct"
    files = manifest["files"]
    if not isinstance(files, dict) or set(files) - {TEMPERATURE_FILE} != set(ARTIFACT_FILES):
        return f"files must be exactly {', '.join(ARTIFACT_FILES)}, and {TEMPERATURE_FILE} if calibrated"
    if not all(isinstance(digest, str) and _SHA256.fullmatch(digest) for digest in files.values()):
        return "every file's digest must be 64 lower-case hex digits (SHA-256)"
    return None


def _regular_file_bytes(directory: Path, filename: str) -> bytes:
    """Read a file of the model folder, refusing (without blocking) anything but a regular file inside it."""
    path = directory / filename
    try:
        real = path.resolve(strict=True)
        if not real.is_relative_to(directory.resolve(strict=True)):
            raise ModelLoadError(f"{path}: links outside the model folder (to {real}). {REBUILD_HINT}")
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        descriptor = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: not found. {REBUILD_HINT}") from None
    except OSError as exc:
        raise ModelLoadError(f"{path}: unreadable ({exc.strerror}). {REBUILD_HINT}") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise ModelLoadError(f"{path}: not a regular file. {REBUILD_HINT}")
        try:
            return handle.read()
        except OSError as exc:
            raise ModelLoadError(f"{path}: unreadable ({exc.strerror}). {REBUILD_HINT}") from None


def _verified_bytes(directory: Path, filename: str, expected_sha256: str) -> bytes:
    """Read an artifact and check it against the manifest's digest before anything parses it."""
    payload = _regular_file_bytes(directory, filename)
    if hashlib.sha256(payload).hexdigest() != expected_sha256:
        raise ModelLoadError(
            f"{directory / filename}: SHA-256 does not match {MANIFEST} (file changed, truncated or replaced). {REBUILD_HINT}"
        )
    return payload


def _json(path: Path, payload: bytes) -> Any:
    """Parse JSON bytes, turning every way they can be bad into one line naming the file."""
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelLoadError(f"{path}: not valid JSON ({reason[:200]}). {REBUILD_HINT}") from None


def _array(path: Path, payload: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Read a float64 ``.npy`` array of the given shape; object arrays and pickles are refused."""
    try:
        array = np.lib.format.read_array(io.BytesIO(payload), allow_pickle=False)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelLoadError(f"{path}: not a plain .npy array ({reason[:200]}). {REBUILD_HINT}") from None
    if array.dtype != np.float64 or array.shape != shape:
        raise ModelLoadError(f"{path}: holds {array.dtype} {array.shape}, expected float64 {shape}. {REBUILD_HINT}")
    if not np.isfinite(array).all():
        raise ModelLoadError(f"{path}: holds values that are not finite. {REBUILD_HINT}")
    return array


def _vectorizer_from(directory: Path, payloads: Mapping[str, bytes]) -> TfidfVectorizer:
    """Rebuild the fitted vectorizer from its settings, vocabulary and idf weights."""
    path = directory / VECTORIZER_FILE
    saved = _json(path, payloads[VECTORIZER_FILE])
    params, vocabulary = _vectorizer_data(path, saved)
    vectorizer = TfidfVectorizer(**{**params, "ngram_range": tuple(params["ngram_range"])})
    try:
        vectorizer.build_analyzer()  # compiles token_pattern, checks stop_words
    except (ValueError, re.error) as exc:
        raise ModelLoadError(f"{path}: unusable settings ({' '.join(str(exc).split())[:200]}). {REBUILD_HINT}") from None
    vectorizer.vocabulary_ = {term: index for index, term in enumerate(vocabulary)}
    vectorizer.idf_ = _array(directory / IDF_FILE, payloads[IDF_FILE], (len(vocabulary),))
    return vectorizer


def _vectorizer_data(path: Path, saved: Any) -> tuple[dict[str, Any], list[str]]:
    """Check ``vectorizer.json``: exactly the known settings with allowed values, and distinct terms."""

    def fail(fault: str) -> ModelLoadError:
        return ModelLoadError(f"{path}: {fault}. {REBUILD_HINT}")

    if not isinstance(saved, dict) or set(saved) != {"params", "vocabulary"}:
        raise fail('expected an object with "params" and "vocabulary"')
    params, vocabulary = saved["params"], saved["vocabulary"]
    known = {*ANALYZER_CHOICES, *FLAG_PARAMS, "token_pattern", "ngram_range", "stop_words"}
    if not isinstance(params, dict) or set(params) != known:
        raise fail(f"params must hold exactly {', '.join(sorted(known))}")
    for key, choices in ANALYZER_CHOICES.items():
        if params[key] not in choices:
            raise fail(f"{key} is {params[key]!r}, expected one of {choices}")
    for key in FLAG_PARAMS:
        if not isinstance(params[key], bool):
            raise fail(f"{key} must be true or false")
    low_high = params["ngram_range"]
    if not (
        isinstance(low_high, list)
        and len(low_high) == 2
        and all(type(n) is int for n in low_high)
        and 1 <= low_high[0] <= low_high[1] <= 10
    ):
        raise fail("ngram_range must be [low, high] with 1 <= low <= high <= 10")
    if not (params["token_pattern"] is None or isinstance(params["token_pattern"], str)):
        raise fail("token_pattern must be a string or null")
    stop_words = params["stop_words"]
    if not (stop_words in (None, "english") or (isinstance(stop_words, list) and all(isinstance(w, str) for w in stop_words))):
        raise fail('stop_words must be null, "english" or a list of strings')
    if not isinstance(vocabulary, list) or not vocabulary or not all(isinstance(term, str) and term for term in vocabulary):
        raise fail("vocabulary must be a non-empty list of non-empty strings")
    if len(set(vocabulary)) != len(vocabulary):
        raise fail("vocabulary terms must be distinct")
    return params, vocabulary


def _classifier_from(directory: Path, payloads: Mapping[str, bytes], n_labels: int, n_terms: int) -> MultinomialNB:
    """Rebuild the fitted naive Bayes from its log-probabilities; their shapes must match labels and vocabulary."""
    clf = MultinomialNB()
    clf.feature_log_prob_ = _array(directory / FEATURE_LOG_PROB_FILE, payloads[FEATURE_LOG_PROB_FILE], (n_labels, n_terms))
    clf.class_log_prior_ = _array(directory / CLASS_LOG_PRIOR_FILE, payloads[CLASS_LOG_PRIOR_FILE], (n_labels,))
    clf.classes_ = np.arange(n_labels)
    clf.n_features_in_ = n_terms
    return clf


def _inverse_temperature_from(path: Path, payload: bytes) -> float:
    """Read the calibration's beta: one float64 in the range scikit-learn searches (0 or less would flip or flatten answers)."""
    beta = float(_array(path, payload, (1,))[0])
    low, high = INVERSE_TEMPERATURE_RANGE
    if not low <= beta <= high:
        raise ModelLoadError(f"{path}: inverse temperature {beta!r} is outside [{low:.3g}, {high:.3g}]. {REBUILD_HINT}")
    return beta


def _npy(array: np.ndarray) -> bytes:
    """Serialize an array as ``.npy`` bytes: float64, C order, no pickle, same bytes every time."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float64), allow_pickle=False)
    return buffer.getvalue()


def _write(path: Path, payload: bytes) -> str:
    """Write a file and return its SHA-256."""
    path.write_bytes(payload)
    return hashlib.sha256(payload).hexdigest()


class _FastPath:
    """TF-IDF + multinomial NB over the fitted arrays: one text with small dense arrays, a batch in one sparse product."""

    def __init__(self, vectorizer: TfidfVectorizer, clf: MultinomialNB, inverse_temperature: float | None = None) -> None:
        self.analyze = vectorizer.build_analyzer()
        self.vocabulary = vectorizer.vocabulary_
        self.idf = vectorizer.idf_ if vectorizer.use_idf else None
        self.sublinear_tf = vectorizer.sublinear_tf
        self.norm = vectorizer.norm
        self.binary = vectorizer.binary
        # Row per feature, so one text's features gather a small contiguous block.
        self.log_prob = np.ascontiguousarray(clf.feature_log_prob_.T)
        self.log_prior = clf.class_log_prior_.copy()
        self.inverse_temperature = inverse_temperature
        # The same numbers as Python floats, for one text: a dozen terms times a few classes cost less in plain
        # arithmetic than in a dozen NumPy calls of ~2 us each (measured: 78 -> 50 us a text).
        self.rows = self.log_prob.tolist()
        self.idf_values = self.idf.tolist() if self.idf is not None else None
        self.prior_values = self.log_prior.tolist()

    def __call__(self, text: str) -> np.ndarray:
        return self.score(text)[0]

    def counts(self, text: str) -> tuple[dict[int, int], int]:
        """Count the text's terms the model knows, by column; also return how many terms the text has."""
        counts: dict[int, int] = {}
        vocabulary = self.vocabulary
        terms = self.analyze(text)
        for token in terms:
            index = vocabulary.get(token)
            if index is not None:
                counts[index] = counts.get(index, 0) + 1
        return counts, len(terms)

    def score(self, text: str) -> tuple[np.ndarray, int, int]:
        """Return the class probabilities, how many of the text's terms the model knows, and how many terms it has."""
        counts, terms = self.counts(text)
        joint = list(self.prior_values)
        if counts:
            weights = self._weights_one(counts)
            rows = self.rows
            for index, weight in weights.items():
                for label, log_prob in enumerate(rows[index]):
                    joint[label] += weight * log_prob
        return self._probabilities_one(joint), sum(counts.values()), terms

    def _weights_one(self, counts: dict[int, int]) -> dict[int, float]:
        """One text's TF-IDF weights by column, normalized: ``_tf_idf`` and the vectorizer's norm on Python floats."""
        if self.binary:
            weights = dict.fromkeys(counts, 1.0)
        elif self.sublinear_tf:
            weights = {index: math.log(count) + 1.0 for index, count in counts.items()}
        else:
            weights = {index: float(count) for index, count in counts.items()}
        if self.idf_values is not None:
            idf = self.idf_values
            weights = {index: weight * idf[index] for index, weight in weights.items()}
        if self.norm == "l2":
            length = math.sqrt(sum(weight * weight for weight in weights.values()))
        elif self.norm == "l1":
            length = sum(abs(weight) for weight in weights.values())
        else:
            return weights
        return {index: weight / length for index, weight in weights.items()} if length > 0 else weights

    def _probabilities_one(self, joint: list[float]) -> np.ndarray:
        """``_probabilities`` for one text's joint log-likelihoods, on Python floats."""
        top = max(joint)
        shifted = [math.exp(value - top) for value in joint]
        total = sum(shifted)
        probabilities = [value / total for value in shifted]
        if self.inverse_temperature is None:
            return np.array(probabilities)
        return temperature_scale_one(probabilities, self.inverse_temperature)

    def score_many(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Score texts in one sparse product; return probabilities and (known terms, terms) per text."""
        indptr, indices, values = [0], list[int](), list[int]()
        coverage = np.zeros((len(texts), 2), dtype=np.int64)
        for row, text in enumerate(texts):
            counts, terms = self.counts(text)
            indices.extend(counts.keys())
            values.extend(counts.values())
            indptr.append(len(indices))
            coverage[row] = sum(counts.values()), terms
        features = sparse.csr_matrix(
            (np.asarray(values, dtype=np.float64), np.asarray(indices, dtype=np.intp), np.asarray(indptr, dtype=np.intp)),
            shape=(len(texts), self.log_prob.shape[0]),
        )
        features = tf_idf(features, self.binary, self.sublinear_tf, self.idf, self.norm)
        return self._probabilities(features @ self.log_prob + self.log_prior), coverage

    def _probabilities(self, joint: np.ndarray) -> np.ndarray:
        """Turn joint log-likelihoods into the model's (calibrated, if it is) class probabilities."""
        probabilities = softmax(joint)
        if self.inverse_temperature is None:
            return probabilities
        return temperature_scale(probabilities, self.inverse_temperature)


#: A term's (start, end) in the original text; NOWHERE when it has no position.
Span = tuple[int, int]
NOWHERE: Span = (-1, -1)


class _Explainer:
    """Why naive Bayes chose its class: each known term's share of the log-odds, and where the term is in the text.

    Multinomial NB's joint log-likelihood is ``log P(c) + sum_t w_t log theta_c,t`` (w_t: the term's TF-IDF
    weight), so the log-odds of class c against class r split exactly into the prior difference plus one
    contribution ``w_t (log theta_c,t - log theta_r,t)`` per distinct known term. The text is analyzed as the
    vectorizer does (same preprocessing, token pattern, stop words and n-grams), keeping each token's position.
    """

    def __init__(self, vectorizer: TfidfVectorizer, fast: _FastPath) -> None:
        self.fast = fast
        self.terms = [""] * len(fast.vocabulary)
        for term, index in fast.vocabulary.items():
            self.terms[index] = term
        self.preprocess = vectorizer.build_preprocessor()
        self.token_pattern = re.compile(vectorizer.token_pattern) if vectorizer.analyzer == "word" else None
        self.stop_words = frozenset(vectorizer.get_stop_words() or ())
        self.ngram_range = (int(vectorizer.ngram_range[0]), int(vectorizer.ngram_range[1]))
        # Lower-casing alone never shortens a character, so equal lengths then mean positions line up one to one.
        self.same_length_is_aligned = vectorizer.strip_accents is None

    def explain(self, text: str, top: int, predicted: int | None) -> dict[str, Any]:
        """Explain the prediction for ``text``: see ``NLPModel.explain``."""
        known: dict[int, list[Span]] = {}
        unknown: dict[str, list[Span]] = {}
        vocabulary = self.fast.vocabulary
        for term, span in self.terms_with_spans(text):
            index = vocabulary.get(term)
            if index is None:
                unknown.setdefault(term, []).append(span)
            else:
                known.setdefault(index, []).append(span)
        weighted = self.fast._weights_one({index: len(spans) for index, spans in known.items()})  # as scoring weighs
        indices = np.fromiter(weighted.keys(), dtype=np.intp, count=len(weighted))
        weights = np.fromiter(weighted.values(), dtype=np.float64, count=len(weighted))
        log_prob = self.fast.log_prob[indices]
        joint = self.fast.log_prior + weights @ log_prob
        best = int(joint.argmax()) if predicted is None else predicted
        runner_up = int(np.where(np.arange(joint.size) == best, -np.inf, joint).argmax())
        contributions = weights * (log_prob[:, best] - log_prob[:, runner_up])
        order = np.argsort(-np.abs(contributions), kind="stable")  # stable: ties keep text order
        shown, rest = order[:top].tolist(), order[top:]
        spans, terms, amounts, weighed = list(known.values()), indices.tolist(), contributions.tolist(), weights.tolist()
        return {
            "predicted": best,
            "runner_up": runner_up,
            "log_odds": float(joint[best] - joint[runner_up]),
            "prior_difference": float(self.fast.log_prior[best] - self.fast.log_prior[runner_up]),
            "terms": [
                {
                    "term": self.terms[terms[i]],
                    "contribution": amounts[i],
                    "weight": weighed[i],
                    "count": len(spans[i]),
                    "spans": _located(spans[i]),
                }
                for i in shown
            ],
            "terms_omitted": {"count": len(rest), "contribution": float(contributions[rest].sum())},
            "unknown_terms": [
                {"term": term, "count": len(where), "spans": _located(where)} for term, where in list(unknown.items())[:top]
            ],
            "unknown_terms_omitted": max(0, len(unknown) - top),
        }

    def terms_with_spans(self, text: str) -> list[tuple[str, Span]]:
        """The terms the vectorizer makes of ``text``, in its order, each with its (start, end) in the original text.

        The span is (-1, -1) where no position can be given: character analyzers, or a preprocessing whose
        output does not line up with the text character by character (no known case; kept safe anyway).
        """
        if self.token_pattern is None:
            return [(term, NOWHERE) for term in self.fast.analyze(text)]
        processed = self.preprocess(text)
        origin = self.origins(text, processed)
        group = 1 if self.token_pattern.groups == 1 else 0  # scikit-learn's rule for a capturing group
        tokens = []
        for match in self.token_pattern.finditer(processed):
            token = match.group(group)
            if token in self.stop_words:
                continue
            start, end = match.span(group)
            if origin is None:
                span = (start, end)
            elif origin:
                # Through the end of the last character, and any the preprocessing dropped after it (an accent).
                span = (origin[start], max(origin[end - 1] + 1, origin[end] if end < len(origin) else len(text)))
            else:
                span = NOWHERE
            tokens.append((token, span))
        return self.ngrams(tokens)

    def origins(self, text: str, processed: str) -> list[int] | None:
        """For each character of the preprocessed text, the index of the original character it came from.

        None when positions are the same in both (the usual case); empty when they cannot be lined up.
        Lower-casing can lengthen a character ("İ" becomes "i" and a combining dot) and accent stripping
        can lengthen ("ﬁ" becomes "fi") or drop one, so each character is preprocessed alone and counted.
        """
        if len(processed) == len(text) and self.same_length_is_aligned:
            return None
        preprocess = self.preprocess
        origin = [index for index, character in enumerate(text) for _ in range(len(preprocess(character)))]
        return origin if len(origin) == len(processed) else []

    def ngrams(self, tokens: list[tuple[str, Span]]) -> list[tuple[str, Span]]:
        """Word n-grams as scikit-learn makes them, each spanning its first token's start to its last token's end.

        Tokens the pattern drops (one-letter words for the default) are not there, so "not a bad" gives the
        bigram "not bad", spanning all three words.
        """
        low, high = self.ngram_range
        terms = list(tokens) if low == 1 else []
        for n in range(max(low, 2), high + 1):
            for first in range(len(tokens) - n + 1):
                window = tokens[first : first + n]
                start, end = window[0][1][0], window[-1][1][1]
                terms.append((" ".join(token for token, _ in window), (start, end) if start >= 0 else NOWHERE))
        return terms


def _located(spans: list[Span]) -> list[list[int]]:
    """Spans as JSON arrays, leaving out those with no position."""
    return [[start, end] for start, end in spans if start >= 0]
