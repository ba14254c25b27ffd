"""Why a model chose its class: each known term's exact share of the log-odds, and where the term is in the text."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from lib.scoring import Scorer

#: A term's (start, end) in the original text; NOWHERE when it has no position.
Span = tuple[int, int]
NOWHERE: Span = (-1, -1)


class Explainer:
    """Why naive Bayes chose its class: each known term's share of the log-odds, and where the term is in the text.

    Multinomial NB's joint log-likelihood is ``log P(c) + sum_t w_t log theta_c,t`` (w_t: the term's TF-IDF
    weight), so the log-odds of class c against class r split exactly into the prior difference plus one
    contribution ``w_t (log theta_c,t - log theta_r,t)`` per distinct known term. The text is analyzed as the
    vectorizer does (same preprocessing, token pattern, stop words and n-grams), keeping each token's position.
    """

    def __init__(self, vectorizer: TfidfVectorizer, scorer: Scorer) -> None:
        self.scorer = scorer
        self.terms = [""] * len(scorer.vocabulary)
        for term, index in scorer.vocabulary.items():
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
        vocabulary = self.scorer.vocabulary
        for term, span in self.terms_with_spans(text):
            index = vocabulary.get(term)
            if index is None:
                unknown.setdefault(term, []).append(span)
            else:
                known.setdefault(index, []).append(span)
        weighted = self.scorer.weights_one({index: len(spans) for index, spans in known.items()})  # as scoring weighs
        indices = np.fromiter(weighted.keys(), dtype=np.intp, count=len(weighted))
        weights = np.fromiter(weighted.values(), dtype=np.float64, count=len(weighted))
        log_prob = self.scorer.log_prob[indices]
        joint = self.scorer.log_prior + weights @ log_prob
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
            "prior_difference": float(self.scorer.log_prior[best] - self.scorer.log_prior[runner_up]),
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
            return [(term, NOWHERE) for term in self.scorer.analyze(text)]
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
