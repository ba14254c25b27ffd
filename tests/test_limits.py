"""lib/limits.py: each model's budgets, from its feature blocks; shown in /models and its path's x-limits; a 413 names them."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from app import create_app
from lib.limits import CHARACTER_BLOCK_SHARE, cost_share, limits, model_settings
from lib.settings import Settings
from model import NLPModel
from tests.helpers import TINY_SENTENCES

BUDGETS = {"MAX_QUERY_CHARS": 1_000, "MAX_REQUEST_CHARS": 400, "MAX_EXPLAIN_CHARS": 200}


@pytest.fixture
def mixed_app(mixed_models: Path) -> Flask:
    """The service over naive Bayes and linear models, with character budgets small enough to reach."""
    return create_app({"MODELS_DIR": str(mixed_models), **BUDGETS})


def test_a_model_with_a_character_block_gets_a_share_of_the_character_budgets(mixed_models: Path) -> None:
    settings = Settings(max_request_chars=400, max_explain_chars=200)
    linear = NLPModel.load(mixed_models / "sentiment-logreg")
    assert cost_share(linear) == CHARACTER_BLOCK_SHARE < 1
    own = limits(model_settings(settings, linear))
    assert own == {
        **limits(settings),
        "max_request_chars": int(400 * CHARACTER_BLOCK_SHARE),
        "max_explain_chars": int(200 * CHARACTER_BLOCK_SHARE),
    }


def test_naive_bayes_and_word_only_models_keep_the_services_limits_exactly(mixed_models: Path, tmp_path: Path) -> None:
    settings = Settings(max_request_chars=400, max_explain_chars=200)
    naive_bayes = NLPModel.load(mixed_models / "sentiment")
    assert model_settings(settings, naive_bayes) is settings
    words = NLPModel(("Negative", "Positive"), family="linear", blocks=[{"ngram_range": (1, 2)}])
    texts = [sentence for _, sentence in TINY_SENTENCES]
    words.vectorizer_fit(texts).train(words.vectorizer_transform(texts), [int(rating >= 3) for rating, _ in TINY_SENTENCES])
    assert model_settings(settings, words) is settings


def test_the_smallest_budget_stays_one_character() -> None:
    linear_share = model_settings(Settings(max_request_chars=1, max_explain_chars=1), _character_model())
    assert (linear_share.max_request_chars, linear_share.max_explain_chars) == (1, 1)


def _character_model() -> NLPModel:
    """A fitted two-label model over char_wb n-grams alone."""
    model = NLPModel(("Negative", "Positive"), family="linear", blocks=[{"analyzer": "char_wb", "ngram_range": (2, 3)}])
    texts = [sentence for _, sentence in TINY_SENTENCES]
    return model.vectorizer_fit(texts).train(model.vectorizer_transform(texts), [int(r >= 3) for r, _ in TINY_SENTENCES])


def test_models_and_the_openapi_document_show_each_models_own_limits(mixed_app: Flask) -> None:
    client = mixed_app.test_client()
    served = client.get("/models").get_json()["models"]
    document = client.get("/openapi.json").get_json()
    service = document["info"]["x-limits"]
    assert service["max_request_chars"] == 400 and service["max_explain_chars"] == 200
    for name in ("sentiment", "ratings"):
        assert served[name]["limits"] == service
        assert document["paths"][served[name]["endpoint"]]["x-limits"] == service
    for name in ("sentiment-logreg", "ratings-logreg"):
        own = {**service, "max_request_chars": 100, "max_explain_chars": 50}
        assert served[name]["limits"] == own
        path = document["paths"][served[name]["endpoint"]]
        assert path["x-limits"] == own
        assert "max_request_chars 100 (the service's: 400)" in path["get"]["description"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"query": "a" * 101}, "'query' is 101 characters long; the limit is 100 per request (max_request_chars)."),
        (
            {"queries": ["a" * 60, "b" * 41]},
            "'queries' holds 101 characters in all; the limit is 100 per request (max_request_chars).",
        ),
        (
            {"query": "a" * 51, "explain": True},
            "'query' is 51 characters long; the limit is 50 per request with explain (max_explain_chars).",
        ),
    ],
)
def test_a_linear_model_refuses_beyond_its_own_budget_where_naive_bayes_answers(
    mixed_app: Flask, body: dict, message: str
) -> None:
    client = mixed_app.test_client()
    refused = client.post("/sentiment-logreg", json=body)
    assert refused.status_code == 413 and refused.get_json() == {"message": message}
    assert client.post("/", json=body).status_code == 200
    within = {key: (value[:50] if isinstance(value, str) else value) for key, value in body.items() if key != "queries"}
    if "query" in within:
        assert client.post("/sentiment-logreg", json=within).status_code == 200
