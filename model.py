"""NLPModel: a TF-IDF vectorizer and a multinomial naive Bayes classifier, saved with a manifest.

The method names follow the tutorial this project descends from (``vectorizer_fit``,
``vectorizer_transform``, ``train``, ``predict``, ``predict_proba``). ``save``/``load`` add a
manifest that pins every file by SHA-256 and the scikit-learn version, because unpickling runs
code: only files named in a verified manifest are ever unpickled. ``predict_texts`` and
``predict_one`` are the serving paths. This module knows nothing of HTTP or plotting.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.naive_bayes import MultinomialNB

MANIFEST = "manifest.json"
VECTORIZER_FILE = "vectorizer.pkl"
CLASSIFIER_FILE = "classifier.pkl"
MANIFEST_FORMAT = 1

#: Modules a fitted vectorizer or classifier may reference when unpickled.
_TRUSTED_MODULES = ("sklearn.", "numpy", "scipy.", "copyreg", "_codecs")
_TRUSTED_BUILTINS = frozenset(
    {
        "dict",
        "list",
        "set",
        "frozenset",
        "tuple",
        "slice",
        "str",
        "float",
        "int",
        "bool",
        "complex",
        "bytearray",
        "type",
        "getattr",
    }
)


class ModelLoadError(RuntimeError):
    """A model folder cannot be trusted or read; the message says how to rebuild it."""


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
        self.clf = MultinomialNB(**dict(classifier_params or {}))
        self.manifest: dict[str, Any] = {}
        self._fast: _FastPath | None = None

    def vectorizer_fit(self, texts: Iterable[str]) -> NLPModel:
        """Fit the vocabulary and idf weights on training texts."""
        self.vectorizer.fit(texts)
        # Plain ints pickle smaller than NumPy scalars and look up faster.
        self.vectorizer.vocabulary_ = {term: int(index) for term, index in self.vectorizer.vocabulary_.items()}
        return self

    def vectorizer_transform(self, texts: Iterable[str]):
        """Turn texts into the TF-IDF matrix the classifier reads."""
        return self.vectorizer.transform(texts)

    def train(self, features, y: Sequence[int]) -> NLPModel:
        """Fit the classifier on vectorized texts and integer class indices."""
        self.clf.fit(features, y)
        self._fast = None
        return self

    def predict(self, features) -> np.ndarray:
        """Return the class index of each vectorized text."""
        return self.clf.predict(features)

    def predict_proba(self, features) -> np.ndarray:
        """Return class probabilities (columns in label order) of vectorized texts."""
        return self.clf.predict_proba(features)

    def predict_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Return class probabilities of raw texts in one vectorised call (the batch path)."""
        return self.predict_proba(self.vectorizer_transform(texts))

    def predict_one(self, text: str) -> np.ndarray:
        """Return class probabilities of one raw text without scikit-learn's per-call checks.

        Same arithmetic as ``vectorizer_transform`` + ``predict_proba`` (to ~1e-12), about a
        hundred times cheaper for a short phrase: the single-query serving path.
        """
        if self._fast is None:
            self._fast = _FastPath(self.vectorizer, self.clf)
        return self._fast(text)

    @property
    def version(self) -> str:
        """Content-derived version of the saved artifacts, e.g. ``sentiment-3f2a9c1b7d4e``."""
        return str(self.manifest.get("version", "unsaved"))

    def save(self, directory: str | Path, name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """Pickle the vectorizer and classifier into ``directory`` and write the manifest."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # transform() caches id(stop_words), which differs per process: drop it so that the same
        # model always pickles to the same bytes (and so the same version).
        self.vectorizer.__dict__.pop("_stop_words_id", None)
        files = {}
        for filename, obj in ((VECTORIZER_FILE, self.vectorizer), (CLASSIFIER_FILE, self.clf)):
            payload = pickle.dumps(obj, protocol=5)
            (directory / filename).write_bytes(payload)
            files[filename] = hashlib.sha256(payload).hexdigest()
        version_digest = hashlib.sha256("".join(sorted(files.values())).encode()).hexdigest()
        self.manifest = {
            "format": MANIFEST_FORMAT,
            "name": name,
            "version": f"{name}-{version_digest[:12]}",
            "labels": list(self.labels),
            "files": files,
            "sklearn_version": sklearn.__version__,
            "python_version": platform.python_version(),
            **metadata,
        }
        (directory / MANIFEST).write_text(json.dumps(self.manifest, indent=2) + "\n")
        return self.manifest

    @classmethod
    def load(cls, directory: str | Path) -> NLPModel:
        """Load a saved model after verifying its manifest; raise ModelLoadError otherwise."""
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
        model.vectorizer = _trusted_unpickle(directory / VECTORIZER_FILE, payloads[VECTORIZER_FILE], TfidfVectorizer)
        model.clf = _trusted_unpickle(directory / CLASSIFIER_FILE, payloads[CLASSIFIER_FILE], MultinomialNB)
        if len(model.clf.classes_) != len(model.labels):
            raise ModelLoadError(
                f"{directory}: classifier has {len(model.clf.classes_)} classes but the manifest "
                f"names {len(model.labels)} labels. {REBUILD_HINT}"
            )
        model.manifest = manifest
        model._fast = _FastPath(model.vectorizer, model.clf)
        return model


REBUILD_HINT = "Rebuild the models with: python build_model.py --data PATH/TO/train.tsv"


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and shape-check ``manifest.json``: it is JSON, so reading it runs no code."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: not found. {REBUILD_HINT}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: unreadable ({exc}). {REBUILD_HINT}") from None
    expected = {"format", "name", "version", "labels", "files", "sklearn_version"}
    if not isinstance(manifest, dict) or not expected <= manifest.keys():
        raise ModelLoadError(f"{path}: not a model manifest (needs {', '.join(sorted(expected))}). {REBUILD_HINT}")
    if manifest["format"] != MANIFEST_FORMAT:
        raise ModelLoadError(f"{path}: manifest format {manifest['format']!r}, expected {MANIFEST_FORMAT}. {REBUILD_HINT}")
    files = manifest["files"]
    if not isinstance(files, dict) or set(files) != {VECTORIZER_FILE, CLASSIFIER_FILE}:
        raise ModelLoadError(f"{path}: files must be exactly {VECTORIZER_FILE} and {CLASSIFIER_FILE}. {REBUILD_HINT}")
    return manifest


def _verified_bytes(directory: Path, filename: str, expected_sha256: str) -> bytes:
    """Read an artifact and check it against the manifest's digest before anyone unpickles it."""
    path = directory / filename
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{path}: unreadable ({exc.strerror}). {REBUILD_HINT}") from None
    if hashlib.sha256(payload).hexdigest() != expected_sha256:
        raise ModelLoadError(f"{path}: SHA-256 does not match {MANIFEST} (file changed, truncated or replaced). {REBUILD_HINT}")
    return payload


class _TrustedUnpickler(pickle.Unpickler):
    """Resolve only scikit-learn, NumPy and SciPy classes: a second lock behind the digest."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _TRUSTED_BUILTINS:
            return super().find_class(module, name)
        if module.startswith(_TRUSTED_MODULES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _trusted_unpickle(path: Path, payload: bytes, expected_type: type) -> Any:
    """Unpickle verified bytes and check that they hold the expected estimator."""
    try:
        obj = _TrustedUnpickler(io.BytesIO(payload)).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot be unpickled safely ({exc}). {REBUILD_HINT}") from None
    if not isinstance(obj, expected_type):
        raise ModelLoadError(f"{path}: holds {type(obj).__name__}, expected {expected_type.__name__}. {REBUILD_HINT}")
    return obj


class _FastPath:
    """TF-IDF + multinomial NB for one text, over the fitted arrays, without sparse matrices."""

    def __init__(self, vectorizer: TfidfVectorizer, clf: MultinomialNB) -> None:
        self.analyze = vectorizer.build_analyzer()
        self.vocabulary = vectorizer.vocabulary_
        self.idf = vectorizer.idf_ if vectorizer.use_idf else None
        self.sublinear_tf = vectorizer.sublinear_tf
        self.norm = vectorizer.norm
        self.binary = vectorizer.binary
        # Row per feature, so one text's features gather a small contiguous block.
        self.log_prob = np.ascontiguousarray(clf.feature_log_prob_.T)
        self.log_prior = clf.class_log_prior_.copy()

    def __call__(self, text: str) -> np.ndarray:
        counts: dict[int, int] = {}
        vocabulary = self.vocabulary
        for token in self.analyze(text):
            index = vocabulary.get(token)
            if index is not None:
                counts[index] = counts.get(index, 0) + 1
        joint = self.log_prior.copy()
        if counts:
            indices = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
            weights = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            if self.binary:
                weights[:] = 1.0
            elif self.sublinear_tf:
                weights = np.log(weights) + 1.0
            if self.idf is not None:
                weights *= self.idf[indices]
            weights = self._normalize(weights)
            joint += weights @ self.log_prob[indices]
        joint -= joint.max()
        probabilities = np.exp(joint)
        return probabilities / probabilities.sum()

    def _normalize(self, weights: np.ndarray) -> np.ndarray:
        if self.norm == "l2":
            length = math.sqrt(float(weights @ weights))
        elif self.norm == "l1":
            length = float(np.abs(weights).sum())
        else:
            return weights
        return weights / length if length > 0 else weights
