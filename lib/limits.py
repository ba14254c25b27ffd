"""What one request may carry and cost, per model: the service's budgets, made smaller for a model that costs more.

A model's cost per character comes from its feature blocks: a word block makes a few terms per word, a character
block (``char_wb``, ``char``) a few n-grams per character, each looked up and weighed. So a model with a character
block is held to CHARACTER_BLOCK_SHARE of the service's character budgets (MAX_REQUEST_CHARS, MAX_EXPLAIN_CHARS),
which keeps its most expensive request as short as a word model's (sized by ``python -m bench.worst_case``); every
other limit, and every limit of a model without a character block, is the service's own. Each model's limits are in
``/models`` and in the ``x-limits`` of its path in the OpenAPI document, and a 413 names the one exceeded.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

from lib.settings import MAX_EXPLAIN_TERMS, Settings
from model import NLPModel

#: The share of the character budgets a model with a character block gets: its costliest request at the service's
#: budgets took ~740 ms, against ~150 ms for naive Bayes over words (bench.worst_case, in process).
CHARACTER_BLOCK_SHARE = Fraction(1, 4)
CHARACTER_ANALYZERS = frozenset({"char", "char_wb"})


def reads_characters(model: NLPModel) -> bool:
    """Whether ``model`` has a block of character n-grams (which cost more per character, and know parts of words)."""
    return any(vectorizer.analyzer in CHARACTER_ANALYZERS for vectorizer in model.vectorizers)


def cost_share(model: NLPModel) -> Fraction:
    """The share of the service's character budgets ``model`` gets: less than all for a model with a character block."""
    return CHARACTER_BLOCK_SHARE if reads_characters(model) else Fraction(1)


def model_settings(settings: Settings, model: NLPModel) -> Settings:
    """The settings one model's requests are held to: ``settings`` with its character budgets scaled by its cost."""
    share = cost_share(model)
    if share == 1:
        return settings
    return dataclasses.replace(
        settings,
        max_request_chars=max(1, int(settings.max_request_chars * share)),
        max_explain_chars=max(1, int(settings.max_explain_chars * share)),
    )


def limits(settings: Settings) -> dict[str, int]:
    """Every limit on what one request may carry or cost, by the name its 413 message gives."""
    return {
        "max_query_chars": settings.max_query_chars,
        "max_batch": settings.max_batch,
        "max_body_bytes": settings.max_body_bytes,
        "max_request_chars": settings.max_request_chars,
        "max_explain_texts": settings.max_explain_texts,
        "max_explain_chars": settings.max_explain_chars,
        "max_explained_terms": settings.max_explained_terms,
        "max_explain_terms": MAX_EXPLAIN_TERMS,
    }
