"""The model folder format and its trust checks: the one place that reads or writes a model's files.

A fitted model is kept as plain data, never a pickle: the vectorizer's settings and vocabulary as JSON, the
idf weights and the classifier's log-probabilities as ``.npy`` arrays read with ``allow_pickle=False``, and for
a calibrated model its temperature scaling's one parameter. A manifest pins every file by SHA-256, and the
version is derived from the content. Whatever a folder holds, reading it runs no code: every file is read
link- and FIFO-safely, checked against its digest before anything parses it, and checked for shape and
range after; each refusal is a ModelLoadError naming the file and saying how to rebuild.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer

from lib.calibration import INVERSE_TEMPERATURE_RANGE

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


@dataclass(frozen=True)
class Artifacts:
    """What a model folder holds: a fitted vectorizer, naive Bayes' arrays, the calibration, and the manifest."""

    labels: tuple[str, ...]
    vectorizer: TfidfVectorizer  # fitted: vocabulary_ and idf_ set
    feature_log_prob: np.ndarray  # (labels, terms)
    class_log_prior: np.ndarray  # (labels,)
    inverse_temperature: float | None = None  # None: uncalibrated
    manifest: dict[str, Any] = field(default_factory=dict)


def save(directory: str | Path, name: str, artifacts: Artifacts, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Write a fitted model into ``directory`` as JSON and arrays, then the manifest; return the manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {filename: _write(directory / filename, payload) for filename, payload in _payloads(artifacts).items()}
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "version": content_version(name, artifacts.labels, files),
        "labels": list(artifacts.labels),
        "files": files,
        "sklearn_version": sklearn.__version__,
        "python_version": platform.python_version(),
        **metadata,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _payloads(artifacts: Artifacts) -> dict[str, bytes]:
    """Serialize the fitted state: what scoring reads, nothing else."""
    params = analyzer_params(artifacts.vectorizer)
    terms = artifacts.vectorizer.get_feature_names_out().tolist()
    payloads = {
        VECTORIZER_FILE: (json.dumps({"params": params, "vocabulary": terms}, sort_keys=True) + "\n").encode(),
        IDF_FILE: _npy(artifacts.vectorizer.idf_),
        FEATURE_LOG_PROB_FILE: _npy(artifacts.feature_log_prob),
        CLASS_LOG_PRIOR_FILE: _npy(artifacts.class_log_prior),
    }
    if artifacts.inverse_temperature is not None:
        payloads[TEMPERATURE_FILE] = _npy(np.array([artifacts.inverse_temperature]))
    return payloads


def load(directory: str | Path) -> Artifacts:
    """Read a model folder after verifying every file; raise ModelLoadError naming the file otherwise."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    payloads = {name: _verified_bytes(directory, name, digest) for name, digest in manifest["files"].items()}
    installed = sklearn.__version__
    if manifest["sklearn_version"] != installed:
        raise ModelLoadError(
            f"{directory}: built with scikit-learn {manifest['sklearn_version']}, but {installed} is installed. {REBUILD_HINT}"
        )
    labels = tuple(manifest["labels"])
    vectorizer = _vectorizer_from(directory, payloads)
    feature_log_prob, class_log_prior = _classifier_arrays(directory, payloads, len(labels), len(vectorizer.vocabulary_))
    beta = None
    if TEMPERATURE_FILE in payloads:
        beta = _inverse_temperature_from(directory / TEMPERATURE_FILE, payloads[TEMPERATURE_FILE])
    return Artifacts(labels, vectorizer, feature_log_prob, class_log_prior, beta, manifest)


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


def _classifier_arrays(
    directory: Path, payloads: Mapping[str, bytes], n_labels: int, n_terms: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read naive Bayes' log-probabilities and prior; their shapes must match the labels and the vocabulary."""
    feature_log_prob = _array(directory / FEATURE_LOG_PROB_FILE, payloads[FEATURE_LOG_PROB_FILE], (n_labels, n_terms))
    class_log_prior = _array(directory / CLASS_LOG_PRIOR_FILE, payloads[CLASS_LOG_PRIOR_FILE], (n_labels,))
    return feature_log_prob, class_log_prior


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
