"""Why a model chose its class: each known term's exact share of the log-odds, and where the term is in the text."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np

from lib.scoring import Block, Scorer, char_wb_ngrams

#: A term's (start, end) in the original text; NOWHERE when it has no position.
Span = tuple[int, int]
NOWHERE: Span = (-1, -1)
#: What a whitespace-separated word is to str.split() (and so to scikit-learn's char_wb analyzer): the same
#: characters are whitespace to both (Py_UNICODE_ISSPACE).
WORD = re.compile(r"\S+")


class Explainer:
    """Why the model chose its class: each known term's share of the log-odds, and where the term is in the text.

    A text's score for class c is ``b_c + sum_t w_t W_c,t`` (w_t: feature t's TF-IDF weight; naive Bayes: b the
    log-priors, W the log-probabilities), so the log-odds of class c against class r split exactly into the
    intercepts' difference plus one contribution ``w_t (W_c,t - W_r,t)`` per distinct known feature. Each block's
    text is analyzed as its vectorizer does (same preprocessing, token pattern, stop words and n-grams), keeping
    each token's position. A ``char_wb`` n-gram lies in exactly one whitespace-separated word, so its contribution
    goes to that word, shared equally among the n-gram's occurrences; terms of several blocks with the same text
    (the word "fine" and the word n-grams of "fine") are one term, their contributions added.
    """

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.blocks = [BlockTerms(block) for block in scorer.blocks]

    def explain(self, text: str, top: int, predicted: int | None) -> dict[str, Any]:
        """Explain the prediction for ``text``: see ``NLPModel.explain``."""
        scorer = self.scorer
        found = [terms.known_and_unknown(text) for terms in self.blocks]
        weighted: dict[int, float] = {}
        for block, (known, _, _) in zip(scorer.blocks, found, strict=True):
            if known:  # as scoring weighs
                weighted.update(block.weights_one(Counter(index for index, _ in known)))
        indices = np.fromiter(weighted.keys(), dtype=np.intp, count=len(weighted))
        weights = np.fromiter(weighted.values(), dtype=np.float64, count=len(weighted))
        log_prob = scorer.log_prob[indices]
        joint = scorer.log_prior + weights @ log_prob
        best = int(joint.argmax()) if predicted is None else predicted
        runner_up = int(np.where(np.arange(joint.size) == best, -np.inf, joint).argmax())
        contribution = dict(zip(weighted, (weights * (log_prob[:, best] - log_prob[:, runner_up])).tolist(), strict=True))
        entries: dict[str, Entry] = {}
        unknown: dict[str, list[Span]] = {}
        for terms, (known, by_word, missing) in zip(self.blocks, found, strict=True):
            terms.add_entries(entries, known, by_word, weighted, contribution)
            for term, spans in missing.items():
                if term in unknown:  # the same word unknown to another block: its places once
                    seen = set(unknown[term])
                    unknown[term].extend(span for span in spans if span not in seen)
                else:
                    unknown[term] = spans
        unknown = {term: spans for term, spans in unknown.items() if term not in entries}
        listed = list(entries.items())
        amounts = np.array([entry.contribution for _, entry in listed], dtype=np.float64)
        order = np.argsort(-np.abs(amounts), kind="stable")  # stable: ties keep text order
        shown, rest = order[:top].tolist(), order[top:]
        return {
            "predicted": best,
            "runner_up": runner_up,
            "log_odds": float(joint[best] - joint[runner_up]),
            "prior_difference": float(scorer.log_prior[best] - scorer.log_prior[runner_up]),
            "terms": [listed[i][1].shown(listed[i][0]) for i in shown],
            "terms_omitted": {"count": len(rest), "contribution": float(amounts[rest].sum())},
            "unknown_terms": [
                {"term": term, "count": len(where), "spans": _located(where)} for term, where in list(unknown.items())[:top]
            ],
            "unknown_terms_omitted": max(0, len(unknown) - top),
        }

    def terms_with_spans(self, text: str, block: int = 0) -> list[tuple[str, Span]]:
        """One block's terms of ``text``, in its analyzer's order, each with its (start, end) in the original text."""
        return self.blocks[block].terms_with_spans(text)


class Entry:
    """One explained term: its contribution and weight, summed over the features it stands for, and its places."""

    def __init__(self) -> None:
        self.contribution = 0.0
        self.weight = 0.0
        self.spans: list[Span] = []
        self.count = 0

    def add(self, contribution: float, weight: float, spans: list[Span]) -> None:
        """Add a feature's share, and the places of its term not yet listed (the same word seen by another block)."""
        self.contribution += contribution
        self.weight += weight
        self.count = max(self.count, len(spans))
        if self.spans:
            seen = set(self.spans)
            self.spans.extend(span for span in spans if span not in seen)
        else:
            self.spans = list(spans)

    def shown(self, term: str) -> dict[str, Any]:
        """The entry as the answer shows it."""
        return {
            "term": term,
            "contribution": self.contribution,
            "weight": self.weight,
            "count": self.count,
            "spans": _located(self.spans),
        }


class BlockTerms:
    """One block's terms of a text as its analyzer makes them, each with its place in the original text."""

    def __init__(self, block: Block) -> None:
        vectorizer = block.vectorizer
        self.block = block
        self.preprocess = block.preprocess
        self.token_pattern = re.compile(vectorizer.token_pattern) if vectorizer.analyzer == "word" else None
        self.stop_words = frozenset(vectorizer.get_stop_words() or ())
        self.ngram_range = block.ngram_range
        # Lower-casing alone never shortens a character, so equal lengths then mean positions line up one to one.
        self.same_length_is_aligned = vectorizer.strip_accents is None
        self.terms = [""] * block.size  # by column, counted from the block's first
        for term, index in block.vocabulary.items():
            self.terms[index] = term

    def known_and_unknown(
        self, text: str
    ) -> tuple[list[tuple[int, Span]], dict[str, list[tuple[Span, list[int]]]], dict[str, list[Span]]]:
        """The text's known features (column, span) in order; for a ``char_wb`` block also each word's occurrences and
        the columns of its known n-grams; and the terms (or words) the block knows nothing of, with their spans."""
        vocabulary, offset = self.block.vocabulary, self.block.offset  # the block's own columns; the model's are further
        known: list[tuple[int, Span]] = []
        unknown: dict[str, list[Span]] = {}
        by_word: dict[str, list[tuple[Span, list[int]]]] = {}
        if self.block.by_word:
            for word, span in self.words_with_spans(text):
                grams = char_wb_ngrams(word, *self.ngram_range)
                columns = [vocabulary[gram] + offset for gram in grams if gram in vocabulary]
                known.extend((column, span) for column in columns)
                if columns:
                    by_word.setdefault(word, []).append((span, columns))
                else:
                    unknown.setdefault(word, []).append(span)
            return known, by_word, unknown
        for term, span in self.terms_with_spans(text):
            index = vocabulary.get(term)
            if index is None:
                unknown.setdefault(term, []).append(span)
            else:
                known.append((index + offset, span))
        return known, by_word, unknown

    def add_entries(
        self,
        entries: dict[str, Entry],
        known: list[tuple[int, Span]],
        by_word: dict[str, list[tuple[Span, list[int]]]],
        weighted: dict[int, float],
        contribution: dict[int, float],
    ) -> None:
        """Add this block's share to the entries: a term's own contribution, or a word's share of its n-grams'."""
        if not by_word:
            spans: dict[int, list[Span]] = {}
            for index, span in known:
                spans.setdefault(index, []).append(span)
            offset = self.block.offset
            for index, where in spans.items():
                entries.setdefault(self.terms[index - offset], Entry()).add(contribution[index], weighted[index], where)
            return
        occurrences = Counter(index for index, _ in known)
        for word, places in by_word.items():
            share = [
                (contribution[index] / occurrences[index], weighted[index] / occurrences[index])
                for _, columns in places
                for index in columns
            ]
            entries.setdefault(word, Entry()).add(
                sum(amount for amount, _ in share), sum(weight for _, weight in share), [span for span, _ in places]
            )

    def terms_with_spans(self, text: str) -> list[tuple[str, Span]]:
        """The terms the vectorizer makes of ``text``, in its order, each with its (start, end) in the original text.

        A ``char_wb`` n-gram spans the word it lies in. The span is (-1, -1) where no position can be given: the
        ``char`` analyzer (its n-grams cross words), or a preprocessing whose output does not line up with the
        text character by character (no known case; kept safe anyway).
        """
        if self.block.by_word:
            low, high = self.ngram_range
            return [(gram, span) for word, span in self.words_with_spans(text) for gram in char_wb_ngrams(word, low, high)]
        if self.token_pattern is None:
            return [(term, NOWHERE) for term in self.block.analyze(text)]
        processed = self.preprocess(text)
        origin = self.origins(text, processed)
        group = 1 if self.token_pattern.groups == 1 else 0  # scikit-learn's rule for a capturing group
        tokens = []
        for match in self.token_pattern.finditer(processed):
            token = match.group(group)
            if token in self.stop_words:
                continue
            start, end = match.span(group)
            tokens.append((token, self.span(origin, start, end, len(text))))
        return self.ngrams(tokens)

    def words_with_spans(self, text: str) -> list[tuple[str, Span]]:
        """The whitespace-separated words of the preprocessed text, as ``char_wb`` splits it, each with its span."""
        processed = self.preprocess(text)
        origin = self.origins(text, processed)
        words = []
        for match in WORD.finditer(processed):
            start, end = match.span()
            words.append((match.group(), self.span(origin, start, end, len(text))))
        return words

    @staticmethod
    def span(origin: list[int] | None, start: int, end: int, length: int) -> Span:
        """The [start, end) of the preprocessed text in the original one, through ``origins``' mapping."""
        if origin is None:
            return (start, end)
        if not origin:
            return NOWHERE
        # Through the end of the last character, and any the preprocessing dropped after it (an accent).
        return (origin[start], max(origin[end - 1] + 1, origin[end] if end < len(origin) else length))

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
