"""The model folder format and its trust checks: the one place that reads or writes a model's files.

A model is a linear classifier over one or more TF-IDF feature blocks (word n-grams, character n-grams), kept as
plain data, never a pickle: each block's settings and vocabulary as JSON, the blocks' idf weights, one weight
matrix (labels x features) and one intercept per label as ``.npy`` arrays read with ``allow_pickle=False``, and
for a calibrated model its temperature scaling's one parameter. Its scores are ``features @ weights.T +
intercept`` and its probabilities their softmax, for every family: naive Bayes is the case where the weights are
log P(term | class) and the intercept log P(class), logistic regression is it as fitted, and a linear SVM or SGD
model's margins become probabilities by the same softmax and the temperature scaling fitted at build time. The
manifest names the family (which value checks apply), pins every file by SHA-256, and the version is derived
from the content. Whatever a folder holds, reading it runs no code: every file is read
link- and FIFO-safely, checked against its digest before anything parses it, and checked for shape and
range after; each refusal is a ModelLoadError naming the file and saying how to rebuild.
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
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from scipy.special import logsumexp
from sklearn.feature_extraction.text import TfidfVectorizer

from lib.calibration import INVERSE_TEMPERATURE_RANGE

MANIFEST = "manifest.json"
#: 3: one or more feature blocks and any linear family. (1 held pickles; 2 held one word block and naive Bayes.)
MANIFEST_FORMAT = 3
VECTORIZER_FILE = "vectorizer.json"  # {"blocks": [{"params", "vocabulary"}, ...]}: each block's columns in order
IDF_FILE = "idf.npy"  # one weight per feature: the blocks' idf, concatenated
WEIGHTS_FILE = "weights.npy"  # one row per label, one column per feature
INTERCEPT_FILE = "intercept.npy"  # one per label
ARTIFACT_FILES = (VECTORIZER_FILE, IDF_FILE, WEIGHTS_FILE, INTERCEPT_FILE)
#: What the weights are: log-probabilities (naive Bayes) or any linear model's coefficients.
NAIVE_BAYES, LINEAR = "naive_bayes", "linear"
FAMILIES = (NAIVE_BAYES, LINEAR)
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
_SKLEARN_VERSION = re.compile(r"[0-9A-Za-z.+-]{1,32}")

#: A model's name goes into URLs, the X-Model-Version header, metric labels and OpenAPI names: a safe charset only.
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: Labels are answers' keys and values: printable text (str.isprintable: no control or format characters).
MAX_LABELS = 20
MAX_LABEL_CHARS = 64
#: The token patterns a word analyzer may use: scikit-learn's default and its one-letter-words variant. Any other
#: regular expression could backtrack catastrophically ((\w+\s?)+$x took 7 s on 26 characters), so none is run.
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
TOKEN_PATTERNS = (DEFAULT_TOKEN_PATTERN, r"(?u)\b\w+\b")

# Caps on what a model folder may hold, so that no folder can exhaust a worker's memory or make a request slow. Each
# is checked before the thing it bounds is read or used; bench/model_worst_case.py measures a folder at every cap.
#: Bytes of manifest.json (the committed ones hold under 4 KB); /models answers every manifest whole.
MAX_MANIFEST_BYTES = 64 * 1024
#: Bytes of vectorizer.json, stated before it is parsed: its parse briefly takes several times this.
MAX_VECTORIZER_BYTES = 8 * 1024 * 1024
#: Bytes of each .npy file: at most about a million float64 weights, labels x features in weights.npy.
MAX_ARRAY_BYTES = 8 * 1024 * 1024
#: Feature blocks: each is one more analysis of every text.
MAX_BLOCKS = 4
#: Terms of a word block. Kaggle's phrases make 94,644 word 1-2-grams and 204,788 word 1-3-grams (no max_features).
MAX_VOCABULARY_TERMS = 250_000
#: Terms of a character block. Kaggle's phrases make 71,069 char_wb 2-5-grams (no max_features).
MAX_CHARACTER_TERMS = 250_000
#: Features of all blocks together (weights.npy holds labels times this, under MAX_ARRAY_BYTES).
MAX_FEATURES = 500_000
#: Characters of a term or stop word. Kaggle's longest word 1-3-gram has 40.
MAX_TERM_CHARS = 100
#: Stop words in a custom list (scikit-learn's English list has 318).
MAX_STOP_WORDS = 1_000
#: Longest n-grams per analyzer: each size adds one term per word (or character) to analyze, count and look up.
#: Measured with bench/model_worst_case.py, the worst batch the default budgets allow (150,000 characters): word
#: 1-3-grams 180-310 ms; character 1-5-grams 570-910 ms, 1-6-grams no less. The build makes word 1-2-grams.
MAX_NGRAM = {"word": 3, "char": 5, "char_wb": 5}
#: idf = log(n / df) + 1 (n and df plus one if smoothed) is at least 1, and at most 1 + log(2**53) for any
#: number of documents a float64 counts exactly.
IDF_RANGE = (1.0, 1.0 + math.log(2.0**53))
#: log P(term | class) and log P(class): at most 0, and above the log of float64's smallest positive number
#: (-744.4; scikit-learn smooths with alpha >= 1e-10, so no fit goes near it), so no sum of them overflows.
LOG_PROBABILITY_RANGE = (math.log(np.finfo(np.float64).smallest_subnormal), 0.0)
#: Each class's probabilities sum to 1: their logsumexp is 0 within this (a fit's rounding is about 1e-12).
LOG_TOTAL_TOLERANCE = 1e-6
#: A linear model's weights and intercepts: finite and at most this in magnitude. A regularized fit on TF-IDF
#: features (each at most 1 with the usual l2 norm) stays far below it; a text's score then stays finite.
LINEAR_WEIGHT_RANGE = (-1e4, 1e4)


class ModelLoadError(RuntimeError):
    """A model folder cannot be trusted or read; the message names the file and says how to rebuild."""


@dataclass(frozen=True)
class Artifacts:
    """What a model folder holds: fitted feature blocks, a weight matrix and intercept, the calibration, the manifest."""

    labels: tuple[str, ...]
    vectorizers: tuple[TfidfVectorizer, ...]  # fitted (vocabulary_ and idf_ set), in column order
    weights: np.ndarray  # (labels, features): naive Bayes' log P(term | class), or a linear model's coefficients
    intercept: np.ndarray  # (labels,): naive Bayes' log P(class), or a linear model's intercepts
    family: str = NAIVE_BAYES
    inverse_temperature: float | None = None  # None: uncalibrated
    manifest: dict[str, Any] = field(default_factory=dict)


def save(directory: str | Path, name: str, artifacts: Artifacts, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Write a fitted model into ``directory`` as JSON and arrays, then the manifest; return the manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if artifacts.family not in FAMILIES:
        raise ValueError(f"family {artifacts.family!r} is not one of {', '.join(FAMILIES)}.")
    files = {filename: _write(directory / filename, payload) for filename, payload in _payloads(artifacts).items()}
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "version": content_version(name, artifacts.labels, files, artifacts.family),
        "family": artifacts.family,
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
    blocks = [
        {"params": analyzer_params(vectorizer), "vocabulary": vectorizer.get_feature_names_out().tolist()}
        for vectorizer in artifacts.vectorizers
    ]
    payloads = {
        VECTORIZER_FILE: (json.dumps({"blocks": blocks}, sort_keys=True) + "\n").encode(),
        IDF_FILE: _npy(np.concatenate([vectorizer.idf_ for vectorizer in artifacts.vectorizers])),
        WEIGHTS_FILE: _npy(artifacts.weights),
        INTERCEPT_FILE: _npy(artifacts.intercept),
    }
    if artifacts.inverse_temperature is not None:
        payloads[TEMPERATURE_FILE] = _npy(np.array([artifacts.inverse_temperature]))
    return payloads


def load(directory: str | Path) -> Artifacts:
    """Read a model folder after verifying every file; raise ModelLoadError naming the file otherwise."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    payloads = {name: _verified_bytes(directory, name, digest, _cap(name)) for name, digest in manifest["files"].items()}
    installed = sklearn.__version__
    if manifest["sklearn_version"] != installed:
        raise ModelLoadError(
            f"{directory}: built with scikit-learn {manifest['sklearn_version']}, but {installed} is installed. {REBUILD_HINT}"
        )
    labels, family = tuple(manifest["labels"]), manifest["family"]
    vectorizers = _vectorizers_from(directory, payloads)
    features = sum(len(vectorizer.vocabulary_) for vectorizer in vectorizers)
    weights, intercept = _classifier_arrays(directory, payloads, family, len(labels), features)
    beta = None
    if TEMPERATURE_FILE in payloads:
        beta = _inverse_temperature_from(directory / TEMPERATURE_FILE, payloads[TEMPERATURE_FILE])
    return Artifacts(labels, vectorizers, weights, intercept, family, beta, manifest)


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


def content_version(name: str, labels: Sequence[str], files: Mapping[str, str], family: str) -> str:
    """Derive a model's version from its name, labels, family and every file's digest: new content, new version."""
    canonical = json.dumps({"name": name, "labels": list(labels), "files": dict(files), "family": family}, sort_keys=True)
    return f"{name}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read ``manifest.json`` and check its whole shape: it is JSON, so reading it runs no code."""
    path = directory / MANIFEST
    manifest = _json(path, _regular_file_bytes(directory, MANIFEST, MAX_MANIFEST_BYTES))
    fault = _manifest_fault(manifest)
    if fault:
        raise ModelLoadError(f"{path}: {fault}. {REBUILD_HINT}")
    expected = content_version(manifest["name"], manifest["labels"], manifest["files"], manifest["family"])
    if manifest["version"] != expected:
        raise ModelLoadError(
            f"{path}: version {manifest['version'][:80]!r} does not match the content it names ({expected}); "
            f"the manifest was edited. {REBUILD_HINT}"
        )
    return manifest


def _manifest_fault(manifest: Any) -> str | None:
    """Say what is wrong with a manifest's shape, or None when every field is usable."""
    if not isinstance(manifest, dict):
        return "not a model manifest (expected a JSON object)"
    if "format" in manifest and manifest["format"] != MANIFEST_FORMAT:
        found = manifest["format"]
        return (
            f"manifest format {repr(found)[:40]}, expected {MANIFEST_FORMAT} "
            "(format 1 held pickles, which are never loaded; format 2 held naive Bayes alone)"
        )
    required = {"format", "name", "version", "family", "labels", "files", "sklearn_version"}
    if not required <= manifest.keys():
        return f"not a model manifest (needs {', '.join(sorted(required))})"
    if manifest["family"] not in FAMILIES:
        return f"family {repr(manifest['family'])[:40]} is not one of {', '.join(FAMILIES)}"
    if not all(isinstance(manifest[key], str) and manifest[key] for key in ("name", "version", "sklearn_version")):
        return "name, version and sklearn_version must be non-empty strings"
    name = manifest["name"]
    if not MODEL_NAME.fullmatch(name):
        return (
            f"name {name[:80]!r} must be 1 to 64 lower-case letters, digits, - and _, starting with a letter or digit "
            "(it goes into URLs, headers and metric labels)"
        )
    if not _SKLEARN_VERSION.fullmatch(manifest["sklearn_version"]):
        return f"sklearn_version {manifest['sklearn_version'][:40]!r} is not a version number"
    return _labels_fault(manifest["labels"]) or _files_fault(manifest["files"])


def _labels_fault(labels: Any) -> str | None:
    """Say what is wrong with a manifest's labels, or None: 2 to MAX_LABELS distinct, short, printable strings."""
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(label, str) and label.strip() for label in labels):
        return "labels must be a list of at least two non-empty strings"
    if len(labels) > MAX_LABELS:
        return f"{len(labels)} labels, more than the {MAX_LABELS} a model may have"
    for label in labels:
        if len(label) > MAX_LABEL_CHARS or not label.isprintable():
            return (
                f"label {label[:80]!r} must be at most {MAX_LABEL_CHARS} printable characters "
                "(no line breaks, control or format characters)"
            )
    if len(set(labels)) != len(labels):
        return "labels must be distinct"
    return None


def _files_fault(files: Any) -> str | None:
    """Say what is wrong with a manifest's file table, or None when it names exactly the model's files by SHA-256."""
    if not isinstance(files, dict) or set(files) - {TEMPERATURE_FILE} != set(ARTIFACT_FILES):
        return f"files must be exactly {', '.join(ARTIFACT_FILES)}, and {TEMPERATURE_FILE} if calibrated"
    if not all(isinstance(digest, str) and _SHA256.fullmatch(digest) for digest in files.values()):
        return "every file's digest must be 64 lower-case hex digits (SHA-256)"
    return None


def _cap(filename: str) -> int:
    """The most bytes a model file may hold."""
    return MAX_VECTORIZER_BYTES if filename == VECTORIZER_FILE else MAX_ARRAY_BYTES


def _regular_file_bytes(directory: Path, filename: str, cap: int) -> bytes:
    """Read a regular file inside the model folder of at most ``cap`` bytes; refuse anything else, never blocking."""
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
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise ModelLoadError(f"{path}: not a regular file. {REBUILD_HINT}")
        if status.st_size > cap:
            raise ModelLoadError(f"{path}: {status.st_size:,} bytes, more than the {cap:,} it may hold. {REBUILD_HINT}")
        try:
            payload = handle.read(cap + 1)  # never more than the cap, even if the file grows as it is read
        except OSError as exc:
            raise ModelLoadError(f"{path}: unreadable ({exc.strerror}). {REBUILD_HINT}") from None
    if len(payload) > cap:
        raise ModelLoadError(f"{path}: more than the {cap:,} bytes it may hold. {REBUILD_HINT}")
    return payload


def _verified_bytes(directory: Path, filename: str, expected_sha256: str, cap: int) -> bytes:
    """Read an artifact of at most ``cap`` bytes and check it against the manifest's digest before anything parses it."""
    payload = _regular_file_bytes(directory, filename, cap)
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


def _ranged(path: Path, array: np.ndarray, low_high: tuple[float, float], what: str) -> np.ndarray:
    """Refuse an array holding a value outside [low, high], naming the first such value."""
    low, high = low_high
    outside = (array < low) | (array > high)
    if outside.any():
        value = float(array[outside].flat[0])
        raise ModelLoadError(f"{path}: holds {what} {value!r}, outside [{low:.4g}, {high:.4g}]. {REBUILD_HINT}")
    return array


def _log_probabilities(path: Path, array: np.ndarray) -> np.ndarray:
    """Refuse log-probabilities that are out of range or whose probabilities (each row's, if 2-D) do not sum to 1."""
    _ranged(path, array, LOG_PROBABILITY_RANGE, "log-probability")
    totals = np.atleast_1d(logsumexp(array, axis=-1))
    worst = int(np.abs(totals).argmax())
    if abs(totals[worst]) > LOG_TOTAL_TOLERANCE:
        where = f"row {worst}'s " if array.ndim == 2 else ""
        raise ModelLoadError(
            f"{path}: {where}probabilities sum to {math.exp(totals[worst]):.6g}, not 1 (log {totals[worst]:.3g}). {REBUILD_HINT}"
        )
    return array


def _vectorizers_from(directory: Path, payloads: Mapping[str, bytes]) -> tuple[TfidfVectorizer, ...]:
    """Rebuild the fitted feature blocks from their settings, vocabularies and idf weights (one array for all blocks)."""
    path = directory / VECTORIZER_FILE
    saved = _json(path, payloads[VECTORIZER_FILE])
    if not isinstance(saved, dict) or set(saved) != {"blocks"} or not isinstance(saved["blocks"], list):
        raise ModelLoadError(f'{path}: expected an object with "blocks", a list of feature blocks. {REBUILD_HINT}')
    blocks = saved["blocks"]
    if not 1 <= len(blocks) <= MAX_BLOCKS:
        raise ModelLoadError(f"{path}: {len(blocks)} feature blocks, expected 1 to {MAX_BLOCKS}. {REBUILD_HINT}")
    checked = [_block_data(path, index, block) for index, block in enumerate(blocks)]
    features = sum(len(vocabulary) for _, vocabulary in checked)
    if features > MAX_FEATURES:
        raise ModelLoadError(
            f"{path}: {features:,} features in all blocks, more than the {MAX_FEATURES:,} a model may have. {REBUILD_HINT}"
        )
    idf_path = directory / IDF_FILE
    idf = _ranged(idf_path, _array(idf_path, payloads[IDF_FILE], (features,)), IDF_RANGE, "idf")
    vectorizers, offset = [], 0
    for index, (params, vocabulary) in enumerate(checked):
        vectorizer = TfidfVectorizer(**{**params, "ngram_range": tuple(params["ngram_range"])})
        try:
            with warnings.catch_warnings(record=True) as warned:
                warnings.simplefilter("always")  # scikit-learn warns of stop words the token pattern never makes
                vectorizer.build_analyzer()  # compiles token_pattern, checks stop_words
            fault = str(warned[0].message) if warned else ""
        except (ValueError, re.error) as exc:
            fault = str(exc)
        if fault:
            raise ModelLoadError(f"{path}: block {index}: unusable settings ({' '.join(fault.split())[:200]}). {REBUILD_HINT}")
        vectorizer.vocabulary_ = {term: column for column, term in enumerate(vocabulary)}
        vectorizer.idf_ = idf[offset : offset + len(vocabulary)].copy()
        vectorizers.append(vectorizer)
        offset += len(vocabulary)
    return tuple(vectorizers)


def _block_data(path: Path, index: int, saved: Any) -> tuple[dict[str, Any], list[str]]:
    """Check one feature block: exactly the known settings with allowed values, and distinct terms within its caps."""

    def fail(fault: str) -> ModelLoadError:
        return ModelLoadError(f"{path}: block {index}: {fault}. {REBUILD_HINT}")

    if not isinstance(saved, dict) or set(saved) != {"params", "vocabulary"}:
        raise fail('expected an object with "params" and "vocabulary"')
    params, vocabulary = saved["params"], saved["vocabulary"]
    known = {*ANALYZER_CHOICES, *FLAG_PARAMS, "token_pattern", "ngram_range", "stop_words"}
    if not isinstance(params, dict) or set(params) != known:
        raise fail(f"params must hold exactly {', '.join(sorted(known))}")
    for key, choices in ANALYZER_CHOICES.items():
        if params[key] not in choices:
            raise fail(f"{key} is {repr(params[key])[:80]}, expected one of {choices}")
    for key in FLAG_PARAMS:
        if not isinstance(params[key], bool):
            raise fail(f"{key} must be true or false")
    analyzer, low_high = params["analyzer"], params["ngram_range"]
    widest = MAX_NGRAM[analyzer]
    if not (
        isinstance(low_high, list)
        and len(low_high) == 2
        and all(type(n) is int for n in low_high)
        and 1 <= low_high[0] <= low_high[1] <= widest
    ):
        raise fail(f"ngram_range must be [low, high] with 1 <= low <= high <= {widest} for analyzer {analyzer!r}")
    token_pattern, stop_words = params["token_pattern"], params["stop_words"]
    if analyzer == "word" and token_pattern not in TOKEN_PATTERNS:
        raise fail(f"token_pattern {repr(token_pattern)[:80]} is not one of {', '.join(TOKEN_PATTERNS)}")
    if analyzer != "word" and (token_pattern not in (None, DEFAULT_TOKEN_PATTERN) or stop_words is not None):
        raise fail(f"analyzer {analyzer!r} uses no token_pattern or stop_words: they must be the default and null")
    if not (stop_words in (None, "english") or (isinstance(stop_words, list) and _short_strings(stop_words, MAX_TERM_CHARS))):
        raise fail(f'stop_words must be null, "english" or a list of non-empty strings of at most {MAX_TERM_CHARS} characters')
    if isinstance(stop_words, list) and len(stop_words) > MAX_STOP_WORDS:
        raise fail(f"{len(stop_words):,} stop words, more than the {MAX_STOP_WORDS:,} a model may have")
    if not isinstance(vocabulary, list) or not vocabulary:
        raise fail("vocabulary must be a non-empty list of non-empty strings")
    most = MAX_VOCABULARY_TERMS if analyzer == "word" else MAX_CHARACTER_TERMS
    if len(vocabulary) > most:
        raise fail(f"{len(vocabulary):,} vocabulary terms, more than the {most:,} a {analyzer} block may have")
    # A character n-gram is never longer than the block's longest n-grams: a longer term could never be found.
    longest = MAX_TERM_CHARS if analyzer == "word" else low_high[1]
    if not _short_strings(vocabulary, longest):
        raise fail(f"vocabulary terms must be non-empty strings of at most {longest} characters")
    if len(set(vocabulary)) != len(vocabulary):
        raise fail("vocabulary terms must be distinct")
    return params, vocabulary


def _short_strings(items: list[Any], longest: int) -> bool:
    """Whether every item is a non-empty string of at most ``longest`` characters."""
    return all(isinstance(item, str) and 0 < len(item) <= longest for item in items)


def _classifier_arrays(
    directory: Path, payloads: Mapping[str, bytes], family: str, n_labels: int, n_features: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read the weights and intercept, shaped for the labels and features; naive Bayes' must be log-probabilities."""
    weights_path, intercept_path = directory / WEIGHTS_FILE, directory / INTERCEPT_FILE
    weights = _array(weights_path, payloads[WEIGHTS_FILE], (n_labels, n_features))
    intercept = _array(intercept_path, payloads[INTERCEPT_FILE], (n_labels,))
    if family == NAIVE_BAYES:
        return _log_probabilities(weights_path, weights), _log_probabilities(intercept_path, intercept)
    return (
        _ranged(weights_path, weights, LINEAR_WEIGHT_RANGE, "weight"),
        _ranged(intercept_path, intercept, LINEAR_WEIGHT_RANGE, "intercept"),
    )


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
