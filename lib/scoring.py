"""Scoring raw texts with a fitted model's arrays: one text on Python floats or small arrays, a batch in one sparse product.

TF-IDF over each feature block (word or character n-grams, each block normalized on its own), then one linear
layer, ``features @ weights.T + intercept``, and its softmax: the same arithmetic as scikit-learn's ``transform``
and ``predict_proba`` (to ~1e-12) without their per-call checks, for naive Bayes (weights: log-probabilities) and
logistic regression alike. ``tf_idf`` is also what training weighs its features with, so the numbers it feeds a
naive Bayes fit are the same bits on every CPU (``lib.reproducible``).

scikit-learn's ``char_wb`` analyzer is pure Python and takes most of a text's time; a character block here makes
the very same n-grams (``char_wb_ngrams``) and remembers, for the words it met last, which columns they hit.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from lib import reproducible
from lib.calibration import softmax, temperature_scale, temperature_scale_one

#: Words whose known n-gram columns a character block remembers (least recently used go first); words repeat, so
#: most of a text's words are found here. An entry is an array of 8 bytes a column, at most CACHED_WORD_CHARS + 2
#: columns per n-gram size (2-5-grams: 94), so a full cache holds at most ~8 MB, and ~2 MB of everyday words.
WORD_CACHE_SIZE = 8192
#: Longer words are analyzed each time, so that no one word can make the cache large.
CACHED_WORD_CHARS = 24
#: Up to this many features, one text's scores cost less in plain Python floats than in NumPy calls (~1 us each);
#: beyond it (character n-grams: hundreds a text) one gather and one product win.
PYTHON_FEATURES = 48
#: Counts below this take their term frequency (and its square) from a table: one gather instead of a log, a sum and
#: a product. A text with fewer known n-grams than this has no count beyond it; a longer one computes them.
TF_TABLE_SIZE = 4096
_NO_COLUMNS = np.zeros(0, dtype=np.intp)
#: A text's columns as 4-byte integers: a vocabulary is far below 2 ** 31 terms, and the few hundred columns of a text
#: sort faster at half the width (measured: 4.8 -> 3.1 us), its remembered words take half the memory.
COLUMN = np.int32
IS_KNOWN = functools.partial(operator.is_not, None)  # a column found in a vocabulary (dict.get gives None otherwise)


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


def stacked(blocks: Sequence[Any]) -> Any:
    """The feature blocks of the same texts side by side, as one CSR matrix (a single block as it is)."""
    return blocks[0] if len(blocks) == 1 else sparse.hstack(blocks, format="csr")


def word_analyzer(vectorizer: TfidfVectorizer) -> Callable[[str], list[str]]:
    """The vectorizer's analyzer of a text, made shorter for the usual word unigrams (and pairs) without stop words.

    The same tokens in the same order as scikit-learn's, whose word pairs are joined in a Python loop and whose
    text passes through four more calls on the way (~3 us a sentence); any other setting gets scikit-learn's own.
    """
    plain = vectorizer.analyzer == "word" and vectorizer.stop_words is None and vectorizer.input == "content"
    if not plain or tuple(vectorizer.ngram_range) not in {(1, 1), (1, 2)}:
        return vectorizer.build_analyzer()
    preprocess, tokenize = vectorizer.build_preprocessor(), vectorizer.build_tokenizer()
    if vectorizer.ngram_range[1] == 1:
        return lambda text: tokenize(preprocess(text))

    def analyze(text: str) -> list[str]:
        """The text's words, then each pair of neighbours joined by a space."""
        tokens = tokenize(preprocess(text))
        return [*tokens, *map(" ".join, itertools.pairwise(tokens))]

    return analyze


def char_wb_ngrams(word: str, low: int, high: int) -> list[str]:
    """The ``char_wb`` n-grams of one word, exactly as scikit-learn's ``_char_wb_ngrams`` makes them.

    The word is padded with a space on each side, then cut into n-grams of each size from ``low`` to ``high``; a
    padded word no longer than n is one n-gram, itself, and no larger sizes follow.
    """
    padded = f" {word} "
    length = len(padded)
    grams: list[str] = []
    for n in range(low, high + 1):
        if length <= n:
            grams.append(padded)
            break
        grams.extend([padded[start : start + n] for start in range(length - n + 1)])
    return grams


def run_lengths(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort ``columns`` in place; return each distinct one and how often it occurs.

    ``np.unique(return_counts=True)`` without its checks, in as few NumPy calls as it takes: at a few hundred
    columns each call (~1 us) costs more than its work.
    """
    columns.sort()
    size = columns.size
    if size < 2:
        return columns, np.ones(size, dtype=np.intp)
    edges = np.empty(size + 1, dtype=bool)  # where a run starts, and the end
    edges[0] = edges[size] = True
    np.not_equal(columns[1:], columns[:-1], out=edges[1:size])
    starts = edges.nonzero()[0]
    return columns.take(starts[:-1]), starts[1:] - starts[:-1]


class Block:
    """One fitted TF-IDF block arranged for scoring: its analysis of a text, its columns in the model, its weighing."""

    def __init__(self, vectorizer: TfidfVectorizer, offset: int) -> None:
        self.analyzer = vectorizer.analyzer
        self.vectorizer = vectorizer
        self.offset = offset
        self.size = len(vectorizer.vocabulary_)
        # The block's own columns (from 0): the model's are ``offset`` further. Not a copy with the offset added: a
        # vocabulary of characters n-grams is 100,000 terms, and a second dict of it some 7 MB more in every server.
        self.vocabulary = vectorizer.vocabulary_
        self.idf = vectorizer.idf_ if vectorizer.use_idf else None
        self.sublinear_tf = vectorizer.sublinear_tf
        self.norm = vectorizer.norm
        self.binary = vectorizer.binary
        self.analyze = word_analyzer(vectorizer)
        self.preprocess = vectorizer.build_preprocessor()
        self.ngram_range = (int(vectorizer.ngram_range[0]), int(vectorizer.ngram_range[1]))
        self.by_word = self.analyzer == "char_wb"
        # Python floats, for one text's few dozen words; a character block's hundreds of n-grams gather from the array.
        self.idf_values = self.idf.tolist() if self.idf is not None and not self.by_word else None
        # Per block, so a reload starts afresh and the memory goes with the model.
        self.cached_word_columns = functools.lru_cache(maxsize=WORD_CACHE_SIZE)(self.word_columns)
        self.tf_table = np.hstack(([[0.0], [0.0]], self.tf_powers(np.arange(1, TF_TABLE_SIZE), tabled=False)))

    def counts(self, text: str) -> tuple[dict[int, int], int]:
        """Count the text's terms the block knows, by the model's column; also return how many terms the text has."""
        if self.by_word:
            return self.counts_by_word(text)
        counted: dict[int, int] = {}
        vocabulary = self.vocabulary
        analyzed = self.analyze(text)
        for token in analyzed:
            index = vocabulary.get(token)
            if index is not None:
                counted[index] = counted.get(index, 0) + 1
        if self.offset:
            counted = {index + self.offset: count for index, count in counted.items()}
        return counted, len(analyzed)

    def counts_by_word(self, text: str) -> tuple[dict[int, int], int]:
        """``counts`` for a ``char_wb`` block, from ``counted``."""
        columns, counts, terms = self.counted(text)
        return dict(zip(columns.tolist(), counts.tolist(), strict=True)), terms

    def counted(self, text: str) -> tuple[np.ndarray, np.ndarray, int]:
        """``counts`` as arrays: the known terms' columns (sorted) and counts, and how many terms the text has."""
        found, _, terms = self.occurrences(text)
        columns = np.concatenate(found) if found else _NO_COLUMNS
        if columns.size == 0:
            return _NO_COLUMNS, _NO_COLUMNS, terms
        return (*run_lengths(columns), terms)

    def occurrences(self, text: str, counted: bool = True) -> tuple[list[np.ndarray], int, int]:
        """The model's column of each of the text's known terms, one per occurrence, in arrays to concatenate; how many
        there are; and how many terms the text has (both 0 unless ``counted``: only the first block's are shown).

        A ``char_wb`` block looks up each whitespace-separated word's n-grams once and remembers them as an array.
        """
        if not self.by_word:
            analyzed = self.analyze(text)
            # A list first: np.fromiter over a filter costs twice as much (measured: 11 -> 7.5 us for 37 terms).
            known = np.array(list(filter(IS_KNOWN, map(self.vocabulary.get, analyzed))), dtype=COLUMN)
            if self.offset:
                known += self.offset
            return [known], known.size, len(analyzed)
        cached, columns_of = self.cached_word_columns, self.word_columns
        found = [cached(word) if len(word) <= CACHED_WORD_CHARS else columns_of(word) for word in self.preprocess(text).split()]
        pieces = [columns for columns, _ in found]
        if not counted:
            return pieces, 0, 0
        return pieces, sum(columns.size for columns in pieces), sum(grams for _, grams in found)

    def word_columns(self, word: str) -> tuple[np.ndarray, int]:
        """The model's columns of a word's known n-grams (one per occurrence), and how many n-grams it has."""
        grams = char_wb_ngrams(word, *self.ngram_range)
        columns = np.array(list(filter(IS_KNOWN, map(self.vocabulary.get, grams))), dtype=COLUMN)
        if self.offset:
            columns += self.offset
        columns.flags.writeable = False  # remembered and shared by every text with this word: never changed in place
        return columns, len(grams)

    def term_frequencies(self, counts: np.ndarray) -> np.ndarray:
        """The term-frequency part of the weights of terms seen this often in one text (binary, 1 + log, or counts)."""
        if self.binary:
            return np.ones(counts.size)
        if self.sublinear_tf:
            weights = np.log(counts)
            weights += 1.0
            return weights
        return counts.astype(np.float64)

    def tf_powers(self, counts: np.ndarray, tabled: bool) -> np.ndarray:
        """The counts' term frequencies and their squares, in two rows; from the table if every count is in it.

        Rows, not columns: the product with the features' rows is then of C-ordered arrays (~1.5 us less).
        """
        if tabled:
            return self.tf_table.take(counts, axis=1)
        frequencies = self.term_frequencies(counts)
        return np.vstack((frequencies, frequencies * frequencies))

    def weights_one(self, counts: dict[int, int]) -> dict[int, float]:
        """One text's TF-IDF weights by column, normalized: ``tf_idf`` and the vectorizer's norm on Python floats."""
        if self.binary:
            weights = dict.fromkeys(counts, 1.0)
        elif self.sublinear_tf:
            weights = {index: math.log(count) + 1.0 for index, count in counts.items()}
        else:
            weights = {index: float(count) for index, count in counts.items()}
        if self.idf_values is not None:
            idf, offset = self.idf_values, self.offset
            if offset:
                weights = {index: weight * idf[index - offset] for index, weight in weights.items()}
            else:
                weights = {index: weight * idf[index] for index, weight in weights.items()}
        elif self.idf is not None:
            columns = np.fromiter(weights.keys(), dtype=np.intp, count=len(weights)) - self.offset
            weighed = np.fromiter(weights.values(), dtype=np.float64, count=len(weights)) * self.idf[columns]
            weights = dict(zip(weights, weighed.tolist(), strict=True))
        if self.norm == "l2":
            length = math.sqrt(sum(weight * weight for weight in weights.values()))
        elif self.norm == "l1":
            length = sum(abs(weight) for weight in weights.values())
        else:
            return weights
        return {index: weight / length for index, weight in weights.items()} if length > 0 else weights

    def counts_many(self, texts: Sequence[str]) -> tuple[sparse.csr_matrix, np.ndarray]:
        """The texts' counts of the block's known terms, a row per text in its own columns (from 0), and per text its
        known terms and terms."""
        coverage = np.zeros((len(texts), 2), dtype=np.int64)
        indptr = [0]
        if self.by_word:
            column_parts, count_parts = [], []
            for row, text in enumerate(texts):
                columns, counts, terms = self.counted(text)
                column_parts.append(columns)
                count_parts.append(counts)
                indptr.append(indptr[-1] + columns.size)
                coverage[row] = int(counts.sum()), terms
            indices, values = np.concatenate([*column_parts, _NO_COLUMNS]), np.concatenate([*count_parts, _NO_COLUMNS])
        else:
            listed, seen = list[int](), list[int]()
            for row, text in enumerate(texts):
                counted, terms = self.counts(text)
                listed.extend(counted.keys())
                seen.extend(counted.values())
                indptr.append(len(listed))
                coverage[row] = sum(counted.values()), terms
            indices, values = np.asarray(listed, dtype=np.intp), np.asarray(seen)
        shape = (len(texts), self.size)
        return sparse.csr_matrix((values.astype(np.float64), indices - self.offset, np.asarray(indptr)), shape=shape), coverage

    def features(self, counts: sparse.csr_matrix) -> Any:
        """Weigh a batch's float64 counts in this block's columns (numbered from 0), in place, as ``tf_idf`` does.

        In NumPy's and scikit-learn's own kernels: serving needs the same numbers to ~1e-15, not the same bits on
        every CPU, and exact sums over every row would cost a batch of char n-grams more than all the rest.
        """
        if self.binary:
            counts.data[:] = 1.0
        elif self.sublinear_tf:
            np.log(counts.data, out=counts.data)
            counts.data += 1.0
        if self.idf is not None:
            counts.data *= self.idf.take(counts.indices)
        if self.norm is not None:
            normalize(counts, norm=self.norm, copy=False)
        return counts


class Scorer:
    """TF-IDF blocks then one linear layer and its softmax: one text on Python floats, a batch in one sparse product.

    Parameters
    ----------
    vectorizers : sequence of fitted TfidfVectorizer
        The feature blocks, in column order.
    weights : ndarray of shape (labels, features)
        Naive Bayes' log P(term | class), or a linear model's coefficients.
    intercept : ndarray of shape (labels,)
        Naive Bayes' log P(class), or a linear model's intercepts.
    inverse_temperature : float, optional
        Temperature scaling's beta, applied on every path; None: the softmax's own probabilities.
    """

    def __init__(
        self,
        vectorizers: Sequence[TfidfVectorizer],
        weights: np.ndarray,
        intercept: np.ndarray,
        inverse_temperature: float | None = None,
    ) -> None:
        offsets = itertools.accumulate((len(vectorizer.vocabulary_) for vectorizer in vectorizers), initial=0)
        self.blocks = [Block(vectorizer, offset) for vectorizer, offset in zip(vectorizers, offsets, strict=False)]
        # Row per feature, so one text's features gather a small contiguous block.
        self.log_prob = np.ascontiguousarray(weights.T, dtype=np.float64)
        self.log_prior = np.array(intercept, dtype=np.float64)
        self.inverse_temperature = inverse_temperature
        # The same numbers as Python floats, for one text: a dozen terms times a few classes cost less in plain
        # arithmetic than in a dozen NumPy calls of ~2 us each (measured: 78 -> 50 us a text).
        # A character block makes hundreds of features a text, and the rows of several blocks as Python floats would
        # be scattered through memory: then every block's features go through NumPy arrays.
        self.in_arrays = len(self.blocks) > 1 or any(block.by_word for block in self.blocks)
        self.rows = [] if self.in_arrays else self.log_prob.tolist()
        # For the one-text path, which weighs all blocks' terms in one set of arrays: a row per feature of its idf
        # times its weights, its idf and its idf squared (idf 1 where its block has none), so that one gather and one
        # product per block give a text's scores and its length; and where each block's columns begin, and end.
        self.labels = self.log_prior.size
        self.scaled = self._scaled_rows() if self.in_arrays else np.zeros((0, self.labels + 2))
        self.offsets = np.array([block.offset for block in self.blocks] + [self.log_prob.shape[0]], dtype=COLUMN)
        self.same_weighing = len({(block.binary, block.sublinear_tf) for block in self.blocks}) == 1
        self.norms = [(block.norm == "l2", block.norm == "l1") for block in self.blocks]
        self.prior_values = self.log_prior.tolist()

    def _scaled_rows(self) -> np.ndarray:
        """Each feature's idf times its weights, its idf and its idf squared, a row per feature."""
        idf = np.concatenate([block.idf if block.idf is not None else np.ones(block.size) for block in self.blocks])
        return np.column_stack((self.log_prob * idf[:, np.newaxis], idf, idf * idf))

    def score(self, text: str) -> tuple[np.ndarray, int, int]:
        """Return the class probabilities, how many of the text's terms the model knows, and how many terms it has.

        The terms are those of the first block (the build puts word n-grams first): what a person calls the text's
        words and word pairs, not its hundreds of character n-grams.
        """
        if not self.in_arrays:  # a few dozen terms: Python floats
            [block] = self.blocks
            counted, terms = block.counts(text)
            return self._probabilities_one(self.joint_one(block.weights_one(counted))), sum(counted.values()), terms
        first, *others = self.blocks
        pieces, known, terms = first.occurrences(text)
        for block in others:
            pieces.extend(block.occurrences(text, counted=False)[0])
        occurrences = np.concatenate(pieces) if pieces else _NO_COLUMNS  # a copy: the remembered words' arrays stay as they are
        if not occurrences.size:
            return self._probabilities_one(list(self.prior_values)), known, terms
        return self._probabilities_one(self.joint_of_occurrences(occurrences)), known, terms

    def joint_of_occurrences(self, occurrences: np.ndarray) -> list[float]:
        """One text's scores from the columns of all its blocks' known terms, one per occurrence, in one pass.

        The columns are counted once for every block together, and their rows gathered once; each block's columns
        are contiguous, so the sorted columns hold each block's in one run, and one product of its term frequencies
        (and their squares) with its rows gives the sums of tf * idf * weights, tf * idf and (tf * idf) ** 2: its
        scores before normalization and its length. The same numbers as ``weights_one`` to ~1e-15, not the same bits.
        """
        tabled = occurrences.size < TF_TABLE_SIZE  # no count can exceed the occurrences
        columns, counts = run_lengths(occurrences)
        rows = self.scaled.take(columns, axis=0)
        bounds = columns.searchsorted(self.offsets).tolist()
        shared = self.blocks[0].tf_powers(counts, tabled) if self.same_weighing else None  # one gather for all
        joint, labels = list(self.prior_values), self.labels
        for block, (l2, l1), start, end in zip(self.blocks, self.norms, bounds, bounds[1:], strict=False):
            if start == end:
                continue
            powers = shared[:, start:end] if shared is not None else block.tf_powers(counts[start:end], tabled)
            by_tf, by_squares = (powers @ rows[start:end]).tolist()
            # The block's length: the l2 norm from the sum of (tf * idf) ** 2 (the last of by_squares), the l1 norm
            # the sum of tf * idf (the last but one of by_tf: both are positive).
            length = math.sqrt(by_squares[-1]) if l2 else by_tf[-2] if l1 else 1.0
            if length > 0:  # in C: a loop over the labels in Python costs a few us here
                joint = list(map(operator.add, joint, map(operator.truediv, by_tf[:labels], itertools.repeat(length))))
        return joint

    def joint_one(self, weights: dict[int, float]) -> list[float]:
        """One text's scores (naive Bayes: joint log-likelihoods) per label: the intercept plus its weighted features."""
        if len(weights) > PYTHON_FEATURES:
            columns = np.fromiter(weights.keys(), dtype=np.intp, count=len(weights))
            return self.joint_of([(columns, np.fromiter(weights.values(), dtype=np.float64, count=len(weights)))])
        joint = list(self.prior_values)
        rows = self.rows
        for index, weight in weights.items():
            for label, log_prob in enumerate(rows[index]):
                joint[label] += weight * log_prob
        return joint

    def joint_of(self, parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[float]:
        """``joint_one`` for features given as arrays of columns and weights: one gather and one product."""
        if not parts:
            return list(self.prior_values)
        columns = np.concatenate([columns for columns, _ in parts]) if len(parts) > 1 else parts[0][0]
        values = np.concatenate([values for _, values in parts]) if len(parts) > 1 else parts[0][1]
        return (self.log_prior + values @ self.log_prob.take(columns, axis=0)).tolist()

    def _probabilities_one(self, joint: list[float]) -> np.ndarray:
        """``_probabilities`` for one text's scores, on Python floats."""
        top = max(joint)
        shifted = [math.exp(value - top) for value in joint]
        total = sum(shifted)
        probabilities = [value / total for value in shifted]
        if self.inverse_temperature is None:
            return np.array(probabilities)
        return temperature_scale_one(probabilities, self.inverse_temperature)

    def score_many(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Score texts in one sparse product; return probabilities and (known terms, terms) per text (first block)."""
        matrices, coverages = [], []
        for block in self.blocks:
            counts, coverage = block.counts_many(texts)
            matrices.append(block.features(counts))
            coverages.append(coverage)
        return self._probabilities(stacked(matrices) @ self.log_prob + self.log_prior), coverages[0]

    def _probabilities(self, joint: np.ndarray) -> np.ndarray:
        """Turn scores into the model's (calibrated, if it is) class probabilities."""
        probabilities = softmax(joint)
        if self.inverse_temperature is None:
            return probabilities
        return temperature_scale(probabilities, self.inverse_temperature)
