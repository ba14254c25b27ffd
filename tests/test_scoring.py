"""lib/scoring.py: the char_wb analyzer's exact equivalent, and a character block's counts with its per-word memory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

from lib.scoring import CACHED_WORD_CHARS, WORD_CACHE_SIZE, Block, char_wb_ngrams, run_lengths, word_analyzer

#: Texts with what tends to break analyzers: every kind of whitespace, accents, case that changes length, emoji.
SPICY = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u2029\u3000\u200b")),
        st.sampled_from(list("aAéÉİ\u0131ßﬁΣ\u03c3\u03c2\u0301😀-'.,")),  # dotless i, sigma and final sigma too
        st.characters(),
    ),
    max_size=60,
)
SETTINGS = [
    {"lowercase": True, "strip_accents": None},
    {"lowercase": True, "strip_accents": "unicode"},
    {"lowercase": False, "strip_accents": "ascii"},
]


@settings(max_examples=300, deadline=None)
@given(SPICY, st.integers(1, 5), st.integers(0, 4), st.sampled_from(SETTINGS))
def test_char_wb_ngrams_are_scikit_learns_on_any_text(text: str, low: int, extra: int, options: dict) -> None:
    high = min(5, low + extra)
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(low, high), **options)
    words = vectorizer.build_preprocessor()(text).split()
    assert [gram for word in words for gram in char_wb_ngrams(word, low, high)] == vectorizer.build_analyzer()(text)


def test_a_padded_word_no_longer_than_n_is_one_ngram_and_the_last() -> None:
    """scikit-learn's short-word rule: " a " is the only n-gram of "a" from size 3 up."""
    assert char_wb_ngrams("a", 2, 5) == [" a", "a ", " a "]
    assert char_wb_ngrams("ab", 4, 5) == [" ab "]
    assert char_wb_ngrams("abc", 2, 3) == [" a", "ab", "bc", "c ", " ab", "abc", "bc "]


def character_block(**options: object) -> Block:
    """A fitted char_wb 2-4-gram block over a few words, placed after 7 columns of another block."""
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, **options)
    vectorizer.fit(["a wonderful film", "an awful film, truly", "wonder café"])
    return Block(vectorizer, offset=7)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(SPICY, st.sampled_from(["film", "wonderful", "awful", "x" * 40, "café"])), max_size=12))
def test_character_block_counts_are_the_analyzers_whatever_it_remembers(words: list[str]) -> None:
    block = character_block(strip_accents="unicode")
    analyze = block.vectorizer.build_analyzer()
    for text in (" ".join(words), " ".join(reversed(words)), " ".join(words)):  # the second time from memory
        grams = analyze(text)
        expected: dict[int, int] = {}
        for gram in grams:
            if gram in block.vocabulary:  # the block's own columns; the model's are offset further
                column = block.offset + block.vocabulary[gram]
                expected[column] = expected.get(column, 0) + 1
        counts, terms = block.counts(text)
        assert dict(counts) == expected and terms == len(grams)
        assert all(column >= 7 for column in counts)


def test_the_word_memory_is_bounded_and_skips_long_words() -> None:
    block = character_block()
    block.counts(" ".join(f"w{index}" for index in range(WORD_CACHE_SIZE + 100)))
    info = block.cached_word_columns.cache_info()
    assert info.maxsize == WORD_CACHE_SIZE and info.currsize == WORD_CACHE_SIZE
    block.cached_word_columns.cache_clear()
    block.counts("f" * (CACHED_WORD_CHARS + 1) + " " + "f" * CACHED_WORD_CHARS)
    assert block.cached_word_columns.cache_info().currsize == 1


@pytest.mark.parametrize("norm", ["l1", "l2", None])
def test_a_character_blocks_weights_are_scikit_learns(norm: str | None) -> None:
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, norm=norm)
    vectorizer.fit(["a wonderful film", "an awful film, truly", "wonder café"])
    block = Block(vectorizer, offset=3)
    text = "wonderful wonderful awful café zz"
    weights = block.weights_one(block.counts(text)[0])
    expected = vectorizer.transform([text]).toarray()[0]
    actual = np.zeros_like(expected)
    for column, weight in weights.items():
        actual[column - 3] = weight
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=300))
def test_run_lengths_are_numpys_unique_with_counts(columns: list[int]) -> None:
    values, counts = run_lengths(np.array(columns, dtype=np.intp))
    expected_values, expected_counts = np.unique(np.array(columns, dtype=np.intp), return_counts=True)
    assert values.tolist() == expected_values.tolist() and counts.tolist() == expected_counts.tolist()


@settings(max_examples=300, deadline=None)
@given(
    SPICY,
    st.sampled_from([(1, 1), (1, 2), (2, 2), (1, 3)]),
    st.sampled_from([*SETTINGS, {"stop_words": "english"}, {"token_pattern": r"(?u)\b(\w)\w+\b"}]),
)
def test_word_analyzer_is_scikit_learns_on_any_text(text: str, ngram_range: tuple[int, int], options: dict) -> None:
    vectorizer = TfidfVectorizer(ngram_range=ngram_range, **options)
    assert word_analyzer(vectorizer)(text) == vectorizer.build_analyzer()(text)
