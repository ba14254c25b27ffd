"""Reading a request (lib/parsing.py): query from the URL, a form or JSON; batches; messages for bad input."""

from pathlib import Path
from typing import Any

import hypothesis
import orjson
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import strategies as st

from app import create_app
from bench.worst_case import largest_shapes, request_body
from lib.limits import limits
from tests.helpers import assert_prediction, served_labels
from tests.support.harness import Server


def test_query_in_url(client: FlaskClient) -> None:
    response = client.get("/?query=a brilliant and wonderful film")
    assert response.status_code == 200
    assert response.json["prediction"] == "Positive"
    assert_prediction(response.get_json(), served_labels(client, "sentiment"))


def test_query_in_form_body_of_get(client: FlaskClient) -> None:
    """The tutorial's curl -X GET ... -d query=... sends a form body with GET."""
    response = client.get("/", data={"query": "boring awful dull"})
    assert response.status_code == 200
    assert response.json["prediction"] == "Negative"


def test_query_in_json_body(client: FlaskClient) -> None:
    response = client.get("/", json={"query": "boring awful dull"})
    assert response.status_code == 200
    assert response.json["prediction"] == "Negative"


def test_url_query_wins_over_body(client: FlaskClient) -> None:
    response = client.get("/?query=brilliant wonderful", json={"query": "boring awful dull"})
    assert response.json["prediction"] == "Positive"


def test_post_single_query(client: FlaskClient) -> None:
    assert client.post("/", json={"query": "boring awful dull"}).json["prediction"] == "Negative"
    assert client.post("/", data={"query": "brilliant wonderful"}).json["prediction"] == "Positive"


@pytest.mark.parametrize(
    ("request_args", "status", "fragment"),
    [
        ({"path": "/"}, 400, "Missing required parameter 'query'"),
        ({"path": "/?query="}, 400, "'query' is blank"),
        ({"path": "/?query=%20%20"}, 400, "'query' is blank"),
        ({"path": "/", "json": {"query": 5}}, 400, "'query' must be a string, got number"),
        ({"path": "/", "json": ["query"]}, 400, "must be an object"),
        ({"path": "/", "data": "{not json", "content_type": "application/json"}, 400, "Malformed JSON body"),
        ({"path": "/?query=" + "a" * 51}, 413, "the limit is 50"),
        ({"path": "/ratings"}, 400, "Missing required parameter 'query'"),
    ],
)
def test_bad_single_queries(client: FlaskClient, request_args: dict, status: int, fragment: str) -> None:
    response = client.get(**request_args)
    assert response.status_code == status
    assert response.is_json and fragment in response.json["message"]
    assert set(response.get_json()) == {"message"}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"queries": "text"}, 400, "'queries' must be an array of strings, got string"),
        ({"queries": []}, 400, "'queries' is empty"),
        ({"queries": ["ok", 3]}, 400, "'queries[1]' must be a string, got number"),
        ({"queries": ["ok", None]}, 400, "'queries[1]' must be a string, got null."),
        ({"queries": ["ok", " "]}, 400, "'queries[1]' is blank"),
        ({"queries": ["ok", ["nested"]]}, 400, "'queries[1]' must be a string, got array"),
        ({"queries": ["a"] * 4}, 413, "the limit is 3 per request"),
        ({"queries": ["ok", "a" * 51]}, 413, "'queries[1]' is 51 characters long; the limit is 50"),
        ({}, 400, "Missing required parameter 'query'"),
    ],
)
def test_bad_batches(client: FlaskClient, body: dict, status: int, fragment: str) -> None:
    response = client.post("/", json=body)
    assert response.status_code == status
    assert fragment in response.json["message"]


def test_json_null_body_is_named(client: FlaskClient) -> None:
    response = client.post("/", data="null", content_type="application/json")
    assert response.status_code == 400 and "got null" in response.json["message"]


@pytest.mark.parametrize(
    "body",
    [
        "[" * 1000 + "]" * 1000,  # 2,000 bytes that blow the JSON decoder's recursion limit
        '{"queries": ' + "[" * 1500 + "]" * 1500 + "}",
        '{"query": ' + "[" * 1000 + "]" * 1000 + "}",
    ],
)
def test_deeply_nested_json_is_400(client: FlaskClient, body: str) -> None:
    response = client.post("/", data=body, content_type="application/json")
    assert response.status_code == 400 and "nested too deeply" in response.json["message"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_empty_body_is_no_body_whatever_its_type(client: FlaskClient, method: str) -> None:
    """What HTTPie sends from a script, cron or notebook: the URL's query and an empty JSON body."""
    response = client.open("/?query=boring awful dull", method=method, data=b"", content_type="application/json")
    assert response.status_code == 200 and response.json["prediction"] == "Negative"
    missing = client.open("/", method=method, data=b"", content_type="application/json")
    assert missing.status_code == 400 and "Missing required parameter 'query'" in missing.json["message"]


def test_url_query_with_a_single_query_body_answers_for_the_url(client: FlaskClient) -> None:
    response = client.get("/?query=brilliant wonderful", json={"query": "boring awful dull"})
    assert response.status_code == 200 and response.json["prediction"] == "Positive"


def test_query_given_twice_in_the_url_is_400(client: FlaskClient) -> None:
    response = client.get("/?query=good&query=bad")
    assert response.status_code == 400
    assert response.json["message"].startswith("'query' appears 2 times in the URL")


# --- budgets that bound a request's cost: checked before any text is scored -------------------------------------------

BUDGETS = {
    "MAX_QUERY_CHARS": 50,
    "MAX_BATCH": 10,
    "MAX_REQUEST_CHARS": 120,
    "MAX_EXPLAIN_TEXTS": 3,
    "MAX_EXPLAIN_CHARS": 45,
    "MAX_EXPLAINED_TERMS": 30,
}


@pytest.fixture
def budget_app(tiny_models: Path) -> Flask:
    """The tiny-model app with cost budgets that tests can reach and step over."""
    return create_app({"MODELS_DIR": str(tiny_models), "MAX_BODY_BYTES": 4096, **BUDGETS})


@pytest.fixture
def scored(budget_app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the model methods that ran, in order, for every served model."""
    calls: list[str] = []
    for served in budget_app.extensions["models"].models.values():
        for method in ("score_one", "score_texts", "explain"):
            original = getattr(served.model, method)

            def spy(*args: Any, _original: Any = original, _method: str = method, **kwargs: Any) -> Any:
                calls.append(_method)
                return _original(*args, **kwargs)

            monkeypatch.setattr(served.model, method, spy)
    return calls


def texts_of(total: int, count: int) -> list[str]:
    """``count`` non-blank texts adding up to ``total`` characters."""
    lengths = [total // count + (index < total % count) for index in range(count)]
    return [("boring film " * (length // 12 + 1))[:length] for length in lengths]


BUDGET_CASES = [
    # (what, request at the limit, one over it, the limit's name and value in the message)
    (
        "max_request_chars, a batch",
        {"json": {"queries": texts_of(120, 3)}},
        {"json": {"queries": texts_of(121, 3)}},
        "'queries' holds 121 characters in all; the limit is 120 per request (max_request_chars).",
    ),
    (
        "max_explain_texts",
        {"json": {"queries": texts_of(30, 3), "explain": True}},
        {"json": {"queries": texts_of(30, 4), "explain": True}},
        "'queries' holds 4 items to explain; the limit is 3 per request with explain (max_explain_texts).",
    ),
    (
        "max_explain_texts, explain in the URL",
        {"query_string": {"explain": "true"}, "json": {"queries": texts_of(30, 3)}},
        {"query_string": {"explain": "true"}, "json": {"queries": texts_of(30, 4)}},
        "the limit is 3 per request with explain (max_explain_texts)",
    ),
    (
        "max_explain_chars, a batch",
        {"json": {"queries": texts_of(45, 2), "explain": True, "explain_terms": 15}},
        {"json": {"queries": texts_of(46, 2), "explain": True, "explain_terms": 15}},
        "'queries' holds 46 characters in all; the limit is 45 per request with explain (max_explain_chars).",
    ),
    (
        "max_explain_chars, one query",
        {"json": {"query": texts_of(45, 1)[0], "explain": True}},
        {"json": {"query": texts_of(46, 1)[0], "explain": True}},
        "'query' is 46 characters long; the limit is 45 per request with explain (max_explain_chars).",
    ),
    (
        "max_explained_terms",
        {"json": {"queries": texts_of(30, 3), "explain": True, "explain_terms": 10}},
        {"json": {"queries": texts_of(30, 3), "explain": True, "explain_terms": 11}},
        "Explaining 3 texts with explain_terms=11 lists up to 33 terms; the limit is 30 per request (max_explained_terms).",
    ),
    (
        "max_explained_terms, one query",
        {"query_string": {"query": "boring film", "explain": "true", "explain_terms": "30"}},
        {"query_string": {"query": "boring film", "explain": "true", "explain_terms": "31"}},
        "Explaining one text with explain_terms=31 lists up to 31 terms; the limit is 30 per request (max_explained_terms).",
    ),
]


@pytest.mark.parametrize(("what", "at_limit", "over", "message"), BUDGET_CASES, ids=[case[0] for case in BUDGET_CASES])
def test_each_budget_takes_its_limit_and_refuses_one_more_before_scoring(
    budget_app: Flask, scored: list[str], what: str, at_limit: dict[str, Any], over: dict[str, Any], message: str
) -> None:
    client = budget_app.test_client()
    for path in ("/", "/ratings"):
        scored.clear()
        refused = client.post(path, **over)
        assert refused.status_code == 413 and message in refused.json["message"], refused.json
        assert scored == []
        accepted = client.post(path, **at_limit)
        assert accepted.status_code == 200, accepted.json
        assert scored and scored[0] in ("score_one", "score_texts")


def test_a_plain_batch_is_held_to_max_request_chars_only(budget_app: Flask, scored: list[str]) -> None:
    """Without explain, more texts and characters than the explain budgets allow are fine, up to max_request_chars."""
    response = budget_app.test_client().post("/", json={"queries": texts_of(120, 10)})
    assert response.status_code == 200 and len(response.json["predictions"]) == 10
    assert scored == ["score_texts"]


def test_one_query_is_held_to_max_request_chars_below_max_query_chars(tiny_models: Path) -> None:
    client = create_app({"MODELS_DIR": str(tiny_models), "MAX_QUERY_CHARS": 50, "MAX_REQUEST_CHARS": 40}).test_client()
    assert client.get("/", query_string={"query": texts_of(40, 1)[0]}).status_code == 200
    refused = client.get("/", query_string={"query": texts_of(41, 1)[0]})
    assert refused.status_code == 413
    assert refused.json == {"message": "'query' is 41 characters long; the limit is 40 per request (max_request_chars)."}


def test_explain_false_is_not_held_to_the_explain_budgets(budget_app: Flask) -> None:
    response = budget_app.test_client().post("/", json={"queries": texts_of(100, 10), "explain": False})
    assert response.status_code == 200


@pytest.mark.slow
def test_the_live_server_refuses_one_over_each_published_budget(production_server: Server) -> None:
    """The production server's own x-limits: each budget at its value answers 200, one over 413 naming it."""
    limits = requests.get(production_server.url + "/openapi.json", timeout=10).json()["info"]["x-limits"]
    chars, texts, explained = limits["max_request_chars"], limits["max_explain_texts"], limits["max_explain_chars"]
    per_text = limits["max_query_chars"]
    cases: list[tuple[dict[str, Any], dict[str, Any], str]] = [
        ({"queries": texts_of_length(chars, per_text)}, {"queries": texts_of_length(chars + 1, per_text)}, "max_request_chars"),
        (
            {"queries": ["good"] * texts, "explain": True},
            {"queries": ["good"] * (texts + 1), "explain": True},
            "max_explain_texts",
        ),
        (
            {"queries": texts_of_length(explained, per_text), "explain": True},
            {"queries": texts_of_length(explained + 1, per_text), "explain": True},
            "max_explain_chars",
        ),
    ]
    with requests.Session() as session:
        for at_limit, over, name in cases:
            refused = session.post(production_server.url + "/", json=over, timeout=30)
            assert refused.status_code == 413 and f"({name})" in refused.json()["message"]
            assert f"{limits[name]:,}" in refused.json()["message"]
            assert session.post(production_server.url + "/", json=at_limit, timeout=30).status_code == 200


def texts_of_length(total: int, longest: int) -> list[str]:
    """As few texts as hold ``total`` characters, none longer than ``longest``."""
    count = -(-total // longest)
    return texts_of(total, count)


# The budgets scaled down, on the committed models: the same shapes, small enough to send many of.
SCALED = {
    "MAX_QUERY_CHARS": 400,
    "MAX_BATCH": 40,
    "MAX_REQUEST_CHARS": 3000,
    "MAX_EXPLAIN_TEXTS": 8,
    "MAX_EXPLAIN_CHARS": 600,
    "MAX_EXPLAINED_TERMS": 120,
}
PIECES = ["İ", "a", ",", "zq", "qz", "x" * 30, "don't", "ÀB", "\u0301", "..."]


@pytest.fixture(scope="module")
def scaled_app() -> Flask:
    """The committed models behind budgets small enough that a property test can send the largest requests."""
    return create_app({**SCALED, "ACCESS_LOG": ""})


@pytest.mark.slow
@hypothesis.settings(max_examples=60, deadline=None, suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(data=st.data())
def test_the_largest_request_of_every_shape_stays_within_the_budgets_scale(scaled_app: Flask, data: st.DataObject) -> None:
    """Whatever the texts, the largest request each shape allows is answered, and its work grows with the budget only.

    Work, not time (speed is bench.worst_case's business): the terms the model reads are at most one per character,
    each explanation lists at most explain_terms known and unknown terms, with no more places than the text has terms,
    and an answer is at most a few hundred bytes per text or listed term and some tens of bytes per character explained.
    """
    served = data.draw(st.sampled_from(list(scaled_app.extensions["models"].models.values())), label="model")
    budgets = limits(served.settings)  # each model's own: a model of character n-grams takes less
    shape = data.draw(st.sampled_from(largest_shapes(budgets)), label="shape")
    words = [*PIECES, *sorted(term for term in served.model.vectorizers[0].vocabulary_ if " " not in term)[:50]]
    drawn = data.draw(st.lists(st.sampled_from(words), min_size=1, max_size=40), label="words")
    body = orjson.loads(request_body(shape, [word for word in drawn if word.strip()] or ["ab"]))
    client = scaled_app.test_client()
    answer = client.post(served.endpoint, json=body)
    assert answer.status_code == 200, answer.json
    predictions = answer.json["predictions"] if shape.batch else [answer.json]
    read = sum(prediction["coverage"]["terms"] for prediction in predictions)
    assert read <= shape.chars
    if shape.explain_terms is None:
        assert len(answer.data) <= 400 * len(shape.lengths)
    else:
        characters = any(vectorizer.analyzer != "word" for vectorizer in served.model.vectorizers)
        texts = body["queries"] if shape.batch else [body["query"]]
        for prediction, text in zip(predictions, texts, strict=True):
            explained = prediction["explanation"]
            listed = explained["terms"] + explained["unknown_terms"]
            assert len(explained["terms"]) <= shape.explain_terms and len(explained["unknown_terms"]) <= shape.explain_terms
            # coverage counts words and word pairs; character n-grams are explained on each whitespace-separated word
            places = prediction["coverage"]["terms"] + (len(text.split()) if characters else 0)
            assert sum(len(term["spans"]) for term in listed) <= places
        assert len(answer.data) <= 400 * (len(shape.lengths) + 2 * budgets["max_explained_terms"]) + 50 * shape.chars
    one_more = dict(body, queries=[*body["queries"], "ab"]) if shape.batch else dict(body, query=body["query"] + "b")
    assert client.post(served.endpoint, json=one_more).status_code == 413
