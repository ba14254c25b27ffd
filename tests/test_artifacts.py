"""The model folder's caps and value ranges: at each cap a folder loads, one past it is refused naming the file."""

from __future__ import annotations

import io
import itertools
import json
import re
import string
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from lib import artifacts
from lib.artifacts import (
    LINEAR_WEIGHT_RANGE,
    MAX_ARRAY_BYTES,
    MAX_BLOCKS,
    MAX_CHARACTER_TERMS,
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_MANIFEST_BYTES,
    MAX_NGRAM,
    MAX_STOP_WORDS,
    MAX_TERM_CHARS,
    MAX_VECTORIZER_BYTES,
    MAX_VOCABULARY_TERMS,
    TOKEN_PATTERNS,
)
from model import ModelLoadError, NLPModel
from tests.helpers import plant, rewrite_manifest

WORDS = ["".join(letters) for letters in itertools.product(string.ascii_lowercase, repeat=3)]  # aaa, aab, ...


def folder_with(folder: Path, terms: list[str] | None = None, labels: int = 2, name: str = "m", **params: object) -> Path:
    """Save a model with these terms, labels and vectorizer settings (uniform probabilities), as a data scientist might."""
    terms = terms or WORDS[:10]
    vectorizer = TfidfVectorizer(**params)
    vectorizer.vocabulary_ = {term: index for index, term in enumerate(terms)}
    vectorizer.idf_ = np.ones(len(terms))
    log_prob = np.full((labels, len(terms)), -np.log(len(terms)))
    names = tuple(f"label {index}" for index in range(labels))
    fitted = artifacts.Artifacts(names, (vectorizer,), log_prob, np.full(labels, -np.log(labels)))
    artifacts.save(folder, name, fitted, {})
    return folder


def refused(folder: Path, filename: str, match: str) -> str:
    """Load a folder that must be refused by a one-line message naming ``filename``; return the message."""
    with pytest.raises(ModelLoadError, match=match) as caught:
        NLPModel.load(folder)
    message = str(caught.value)
    assert message.startswith(f"{folder / filename}: ") and "\n" not in message and "\r" not in message
    return message


def edit_vectorizer(folder: Path, **changes: object) -> None:
    """Change vectorizer.json's settings, the manifest updated to match, as an attacker would."""
    saved = json.loads((folder / artifacts.VECTORIZER_FILE).read_text())
    saved["blocks"][0]["params"].update(changes)
    plant(folder, artifacts.VECTORIZER_FILE, json.dumps(saved).encode())


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# --- sizes -----------------------------------------------------------------------------------------------------------


def test_manifest_at_its_byte_cap_loads_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    folder = folder_with(tmp_path / "m")
    manifest = (folder / "manifest.json").read_bytes()
    (folder / "manifest.json").write_bytes(manifest + b" " * (MAX_MANIFEST_BYTES - len(manifest)))
    NLPModel.load(folder)
    (folder / "manifest.json").write_bytes(manifest + b" " * (MAX_MANIFEST_BYTES + 1 - len(manifest)))
    refused(folder, "manifest.json", "65,537 bytes, more than the 65,536 it may hold")


def test_vectorizer_at_its_byte_cap_loads_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    folder = folder_with(tmp_path / "m")
    payload = (folder / artifacts.VECTORIZER_FILE).read_bytes()
    plant(folder, artifacts.VECTORIZER_FILE, payload + b" " * (MAX_VECTORIZER_BYTES - len(payload)))
    NLPModel.load(folder)
    plant(folder, artifacts.VECTORIZER_FILE, payload + b" " * (MAX_VECTORIZER_BYTES + 1 - len(payload)))
    refused(folder, artifacts.VECTORIZER_FILE, f"{MAX_VECTORIZER_BYTES + 1:,} bytes, more than the {MAX_VECTORIZER_BYTES:,}")


@pytest.mark.parametrize("filename", [artifacts.IDF_FILE, artifacts.WEIGHTS_FILE, artifacts.INTERCEPT_FILE])
def test_arrays_past_their_byte_cap_are_refused_before_they_are_read(tmp_path: Path, filename: str) -> None:
    folder = folder_with(tmp_path / "m")
    plant(folder, filename, b"\x93NUMPY" + b"\0" * (MAX_ARRAY_BYTES + 1 - 6))
    refused(folder, filename, f"{MAX_ARRAY_BYTES + 1:,} bytes, more than the {MAX_ARRAY_BYTES:,} it may hold")


def test_an_array_at_its_byte_cap_is_read(tmp_path: Path) -> None:
    """The cap is on bytes, so the read stops there: exactly the cap is read whole (then its shape is checked)."""
    folder = folder_with(tmp_path / "m")
    header = npy(np.zeros(1))[:128]
    assert len(npy(np.zeros((MAX_ARRAY_BYTES - 128) // 8))) == MAX_ARRAY_BYTES
    plant(folder, artifacts.IDF_FILE, npy(np.ones((MAX_ARRAY_BYTES - 128) // 8)))
    refused(folder, artifacts.IDF_FILE, r"holds float64 \(1048560,\), expected float64 \(10,\)")
    assert header.startswith(b"\x93NUMPY")


def test_most_vocabulary_terms_load_and_one_more_is_refused(tmp_path: Path) -> None:
    terms = [f"t{index:06d}" for index in range(MAX_VOCABULARY_TERMS)]
    assert NLPModel.load(folder_with(tmp_path / "at", terms)).vectorizer.idf_.shape == (MAX_VOCABULARY_TERMS,)
    folder = folder_with(tmp_path / "over", [*terms, "one more"])
    refused(folder, artifacts.VECTORIZER_FILE, f"{MAX_VOCABULARY_TERMS + 1:,} vocabulary terms, more than the")


def test_longest_term_loads_and_one_character_more_is_refused(tmp_path: Path) -> None:
    NLPModel.load(folder_with(tmp_path / "at", ["x" * MAX_TERM_CHARS, "fine"]))
    refused(
        folder_with(tmp_path / "over", ["x" * (MAX_TERM_CHARS + 1), "fine"]),
        artifacts.VECTORIZER_FILE,
        "vocabulary terms must be",
    )


def test_most_stop_words_load_and_one_more_is_refused(tmp_path: Path) -> None:
    NLPModel.load(folder_with(tmp_path / "at", stop_words=WORDS[:MAX_STOP_WORDS]))
    folder = folder_with(tmp_path / "over", stop_words=WORDS[: MAX_STOP_WORDS + 1])
    refused(folder, artifacts.VECTORIZER_FILE, f"{MAX_STOP_WORDS + 1:,} stop words, more than the {MAX_STOP_WORDS:,}")
    refused(
        folder_with(tmp_path / "long", stop_words=["x" * (MAX_TERM_CHARS + 1)]), artifacts.VECTORIZER_FILE, "stop_words must be"
    )


def test_stop_words_the_token_pattern_never_makes_are_refused(tmp_path: Path) -> None:
    """scikit-learn only warns of them; a load refuses them, so no warning is left for a log."""
    refused(folder_with(tmp_path / "m", stop_words=["don't"]), artifacts.VECTORIZER_FILE, "stop_words may be inconsistent")


def test_most_labels_load_and_one_more_is_refused(tmp_path: Path) -> None:
    folder = folder_with(tmp_path / "m", labels=MAX_LABELS)
    assert len(NLPModel.load(folder).labels) == MAX_LABELS
    rewrite_manifest(folder, labels=[f"label {index}" for index in range(MAX_LABELS + 1)])
    refused(folder, "manifest.json", f"{MAX_LABELS + 1} labels, more than the {MAX_LABELS} a model may have")


def test_longest_label_loads_and_one_character_more_is_refused(tmp_path: Path) -> None:
    folder = folder_with(tmp_path / "m")
    rewrite_manifest(folder, labels=["x" * MAX_LABEL_CHARS, "y"])
    assert NLPModel.load(folder).labels[0] == "x" * MAX_LABEL_CHARS
    rewrite_manifest(folder, labels=["x" * (MAX_LABEL_CHARS + 1), "y"])
    refused(folder, "manifest.json", f"must be at most {MAX_LABEL_CHARS} printable characters")


@pytest.mark.parametrize(
    "label", ["bad\r\nX-Injected: 1", "tab\there", "nul\x00", "rtl\u202eoverride", "zero\u200bwidth", "\x1b[31mred"]
)
def test_labels_with_control_or_format_characters_are_refused(tmp_path: Path, label: str) -> None:
    folder = folder_with(tmp_path / "m")
    rewrite_manifest(folder, labels=[label, "fine"])
    refused(folder, "manifest.json", "printable characters")


def test_printable_labels_in_any_script_load(tmp_path: Path) -> None:
    folder = folder_with(tmp_path / "m")
    rewrite_manifest(folder, labels=["très négatif", "積極的 😀"])
    assert NLPModel.load(folder).labels == ("très négatif", "積極的 😀")


# --- analyzer settings --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("analyzer", sorted(MAX_NGRAM))
def test_widest_ngram_range_loads_and_one_wider_is_refused(tmp_path: Path, analyzer: str) -> None:
    high = MAX_NGRAM[analyzer]
    model = NLPModel.load(folder_with(tmp_path / "at", analyzer=analyzer, ngram_range=(1, high)))
    assert model.score_one("aaa aab aac")[0].shape == (2,)
    folder = folder_with(tmp_path / "over", analyzer=analyzer, ngram_range=(1, high + 1))
    refused(folder, artifacts.VECTORIZER_FILE, rf"ngram_range must be \[low, high\] with 1 <= low <= high <= {high}")


@pytest.mark.parametrize("pattern", TOKEN_PATTERNS)
def test_known_token_patterns_load(tmp_path: Path, pattern: str) -> None:
    NLPModel.load(folder_with(tmp_path / "m", token_pattern=pattern))


@pytest.mark.parametrize("pattern", [r"(\w+\s?)+$x", r"(a+)+b", r"(?u)\b\w\w+\b|(x+x+)+y", r"\w+", ""])
def test_any_other_token_pattern_is_refused_without_running_it(tmp_path: Path, pattern: str) -> None:
    folder = folder_with(tmp_path / "m")
    edit_vectorizer(folder, token_pattern=pattern)
    started = time.perf_counter()
    refused(folder, artifacts.VECTORIZER_FILE, "token_pattern .* is not one of")
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize(
    ("change", "match"),
    [({"stop_words": ["aaa"]}, "uses no token_pattern or stop_words"), ({"token_pattern": r"(?u)\b\w+\b"}, "uses no")],
)
def test_character_analyzers_refuse_word_settings(tmp_path: Path, change: dict, match: str) -> None:
    folder = folder_with(tmp_path / "m", analyzer="char_wb", ngram_range=(2, 5))
    edit_vectorizer(folder, **change)
    refused(folder, artifacts.VECTORIZER_FILE, match)


# --- names --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "movie-ratings", "movie_ratings", "x" * 64, "2024-reviews"])
def test_safe_names_load(tmp_path: Path, name: str) -> None:
    assert NLPModel.load(folder_with(tmp_path / "m", name=name)).version.startswith(f"{name}-")


@pytest.mark.parametrize(
    "name", ["bad\r\nX-Injected: 1", "line\nbreak", "crème", "Ratings", "x" * 65, "-lead", "a b", "a/b", "a.b"]
)
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    folder = folder_with(tmp_path / "m")
    rewrite_manifest(folder, name=name)
    refused(folder, "manifest.json", "must be 1 to 64 lower-case letters, digits, - and _")


def test_a_scikit_learn_version_with_a_line_break_is_refused(tmp_path: Path) -> None:
    folder = folder_with(tmp_path / "m")
    rewrite_manifest(folder, sklearn_version="1.9.1\nINFO all fine")
    refused(folder, "manifest.json", "is not a version number")


# --- value ranges -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "shown"), [(-1.0, "-1.0"), (0.5, "0.5"), (1e6, "1000000.0")])
def test_idf_outside_its_range_is_refused(tmp_path: Path, value: float, shown: str) -> None:
    folder = folder_with(tmp_path / "m")
    idf = np.ones(10)
    idf[3] = value
    plant(folder, artifacts.IDF_FILE, npy(idf))
    refused(folder, artifacts.IDF_FILE, rf"holds idf {re.escape(shown)}, outside \[1, 37\.74\]")


def test_a_negative_idf_no_longer_flips_answers(tmp_path: Path) -> None:
    """The attack the issue names: idf -1 on every term turns each term's vote around."""
    folder = folder_with(tmp_path / "m")
    plant(folder, artifacts.IDF_FILE, npy(-np.ones(10)))
    refused(folder, artifacts.IDF_FILE, "holds idf -1.0")


@pytest.mark.parametrize("value", [1e308, -1e308, 0.5, -800.0])
def test_log_probabilities_out_of_range_are_refused(tmp_path: Path, value: float) -> None:
    folder = folder_with(tmp_path / "m")
    log_prob = np.full((2, 10), -np.log(10))
    log_prob[1, 4] = value
    plant(folder, artifacts.WEIGHTS_FILE, npy(log_prob))
    refused(folder, artifacts.WEIGHTS_FILE, rf"holds log-probability {re.escape(repr(value))}, outside \[-744\.4, 0\]")


def test_log_probabilities_that_do_not_sum_to_one_are_refused(tmp_path: Path) -> None:
    folder = folder_with(tmp_path / "m")
    log_prob = np.full((2, 10), -np.log(10))
    log_prob[1] = np.log(0.2)  # ten terms of 0.2: twice a probability
    plant(folder, artifacts.WEIGHTS_FILE, npy(log_prob))
    refused(folder, artifacts.WEIGHTS_FILE, "row 1's probabilities sum to 2, not 1")


@pytest.mark.parametrize(
    ("prior", "match"),
    [([0.0, -1e308], "outside"), ([np.log(0.9), np.log(0.9)], "probabilities sum to 1.8, not 1"), ([0.1, -3.0], "outside")],
)
def test_class_priors_out_of_range_or_not_summing_to_one_are_refused(tmp_path: Path, prior: list[float], match: str) -> None:
    folder = folder_with(tmp_path / "m")
    plant(folder, artifacts.INTERCEPT_FILE, npy(np.array(prior)))
    refused(folder, artifacts.INTERCEPT_FILE, match)


def test_smallest_log_probabilities_a_fit_can_make_load_and_explain_finitely(tmp_path: Path) -> None:
    """One term almost certain, the rest near float64's floor: loads, and scores and explains in finite numbers."""
    folder = folder_with(tmp_path / "m")
    log_prob = np.full((2, 10), -744.0)
    log_prob[:, 0] = 0.0
    plant(folder, artifacts.WEIGHTS_FILE, npy(log_prob))
    model = NLPModel.load(folder)
    text = " ".join(WORDS[:10] * 50)
    assert np.isfinite(model.score_one(text)[0]).all()
    explanation = model.explain(text, top=10)
    assert np.isfinite([term["contribution"] for term in explanation["terms"]]).all()
    assert np.isfinite([explanation["log_odds"], explanation["terms_omitted"]["contribution"]]).all()


# --- feature blocks and the linear family ---------------------------------------------------------------------------

CHARACTER_TERMS = ["".join(letters) for letters in itertools.product(string.ascii_lowercase + " ", repeat=4)]  # 531,441


def blocks_folder(
    folder: Path, blocks: list[tuple[dict[str, Any], list[str]]], family: str = "linear", weight: float = 0.5
) -> Path:
    """Save a model of these blocks (settings, terms), two labels, all weights ``weight`` (naive Bayes: uniform)."""
    vectorizers = []
    for params, terms in blocks:
        vectorizer = TfidfVectorizer(**params)
        vectorizer.vocabulary_ = {term: index for index, term in enumerate(terms)}
        vectorizer.idf_ = np.ones(len(terms))
        vectorizers.append(vectorizer)
    features = sum(len(terms) for _, terms in blocks)
    if family == artifacts.NAIVE_BAYES:
        weights, intercept = np.full((2, features), -np.log(features)), np.full(2, -np.log(2))
    else:
        weights, intercept = np.full((2, features), weight), np.array([0.0, weight])
    fitted = artifacts.Artifacts(("a", "b"), tuple(vectorizers), weights, intercept, family)
    artifacts.save(folder, "m", fitted, {})
    return folder


WORD_BLOCK = ({"ngram_range": (1, 2)}, WORDS[:10])
CHAR_BLOCK = ({"analyzer": "char_wb", "ngram_range": (2, 5)}, CHARACTER_TERMS[:20])


def test_most_blocks_load_and_one_more_is_refused(tmp_path: Path) -> None:
    model = NLPModel.load(blocks_folder(tmp_path / "at", [WORD_BLOCK, CHAR_BLOCK] * (MAX_BLOCKS // 2)))
    assert len(model.vectorizers) == MAX_BLOCKS and model.score_one("aaa aab")[0].shape == (2,)
    folder = blocks_folder(tmp_path / "over", [WORD_BLOCK] * (MAX_BLOCKS + 1))
    refused(folder, artifacts.VECTORIZER_FILE, f"{MAX_BLOCKS + 1} feature blocks, expected 1 to {MAX_BLOCKS}")


def test_most_character_terms_load_and_one_more_is_refused(tmp_path: Path) -> None:
    params = {"analyzer": "char_wb", "ngram_range": (2, 5)}
    model = NLPModel.load(blocks_folder(tmp_path / "at", [(params, CHARACTER_TERMS[:MAX_CHARACTER_TERMS])]))
    assert model.vectorizers[0].idf_.shape == (MAX_CHARACTER_TERMS,)
    folder = blocks_folder(tmp_path / "over", [(params, CHARACTER_TERMS[: MAX_CHARACTER_TERMS + 1])])
    refused(folder, artifacts.VECTORIZER_FILE, f"block 0: {MAX_CHARACTER_TERMS + 1:,} vocabulary terms, more than the")


def test_most_features_in_all_blocks_load_and_one_more_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cap on all blocks together (the real one takes 500,000 terms to reach; the rule is the same)."""
    monkeypatch.setattr(artifacts, "MAX_FEATURES", 30)
    NLPModel.load(blocks_folder(tmp_path / "at", [WORD_BLOCK, CHAR_BLOCK]))
    folder = blocks_folder(tmp_path / "over", [WORD_BLOCK, CHAR_BLOCK, ({}, ["one"])])
    refused(folder, artifacts.VECTORIZER_FILE, "31 features in all blocks, more than the 30 a model may have")


@pytest.mark.parametrize("analyzer", ["char", "char_wb"])
def test_character_terms_longer_than_the_blocks_ngrams_are_refused(tmp_path: Path, analyzer: str) -> None:
    params = {"analyzer": analyzer, "ngram_range": (2, 4)}
    NLPModel.load(blocks_folder(tmp_path / "at", [(params, ["abcd", " ab "])]))
    folder = blocks_folder(tmp_path / "over", [(params, ["abcd", "abcde"])])
    refused(folder, artifacts.VECTORIZER_FILE, "block 0: vocabulary terms must be non-empty strings of at most 4 characters")


def test_one_idf_per_feature_of_every_block(tmp_path: Path) -> None:
    folder = blocks_folder(tmp_path / "m", [WORD_BLOCK, CHAR_BLOCK])
    plant(folder, artifacts.IDF_FILE, npy(np.ones(10)))
    refused(folder, artifacts.IDF_FILE, r"holds float64 \(10,\), expected float64 \(30,\)")


def test_the_naive_bayes_only_vectorizer_file_is_refused(tmp_path: Path) -> None:
    folder = blocks_folder(tmp_path / "m", [WORD_BLOCK])
    saved = json.loads((folder / artifacts.VECTORIZER_FILE).read_text())
    plant(folder, artifacts.VECTORIZER_FILE, json.dumps(saved["blocks"][0]).encode())
    refused(folder, artifacts.VECTORIZER_FILE, 'expected an object with "blocks"')


@pytest.mark.parametrize("filename", [artifacts.WEIGHTS_FILE, artifacts.INTERCEPT_FILE])
def test_linear_weights_at_their_bound_load_and_past_it_are_refused(tmp_path: Path, filename: str) -> None:
    low, high = LINEAR_WEIGHT_RANGE
    for value in (low, high):
        NLPModel.load(blocks_folder(tmp_path / f"at{value}", [WORD_BLOCK], weight=value))
    folder = blocks_folder(tmp_path / "over", [WORD_BLOCK])
    array = np.lib.format.read_array(io.BytesIO((folder / filename).read_bytes()))
    array.flat[1] = np.nextafter(high, np.inf)
    plant(folder, filename, npy(array))
    what = "weight" if filename == artifacts.WEIGHTS_FILE else "intercept"
    refused(folder, filename, rf"holds {what} 10000\.000000000002, outside \[-1e\+04, 1e\+04\]")
    array.flat[1] = np.nan
    plant(folder, filename, npy(array))
    refused(folder, filename, "holds values that are not finite")


def test_linear_weights_need_not_be_log_probabilities_but_naive_bayes_weights_must(tmp_path: Path) -> None:
    """The family picks the checks: positive weights are a linear model's, never naive Bayes' log-probabilities."""
    folder = blocks_folder(tmp_path / "m", [WORD_BLOCK], weight=2.0)
    assert NLPModel.load(folder).family == "linear"
    rewrite_manifest(folder, family="naive_bayes")
    refused(folder, artifacts.WEIGHTS_FILE, r"holds log-probability 2\.0, outside \[-744\.4, 0\]")
