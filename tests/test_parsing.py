"""Reading a request (lib/parsing.py): query from the URL, a form or JSON; batches; messages for bad input."""

import pytest
from flask.testing import FlaskClient

from tests.helpers import assert_prediction, served_labels


def test_query_in_url(client: FlaskClient) -> None:
    response = client.get("/?query=a brilliant and wonderful film")
    assert response.status_code == 200
    assert response.json["prediction"] == "Positive"
    assert_prediction(response.json, served_labels(client, "sentiment"))


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
    assert set(response.json) == {"message"}


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
    response = client.post("/?query=brilliant wonderful", json={"query": "boring awful dull"})
    assert response.status_code == 200 and response.json["prediction"] == "Positive"


def test_query_given_twice_in_the_url_is_400(client: FlaskClient) -> None:
    response = client.get("/?query=good&query=bad")
    assert response.status_code == 400
    assert response.json["message"].startswith("'query' appears 2 times in the URL")
