"""The one error shape (lib/errors.py): 404, 405 and 500 as JSON."""

import pytest
from flask import Flask
from flask.testing import FlaskClient

from lib import resources


def test_unknown_path_is_json_404(client: FlaskClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json == {"message": "No endpoint at /nowhere. See /docs for the API."}


def test_wrong_method_is_json_405_with_allow(client: FlaskClient) -> None:
    response = client.delete("/")
    assert response.status_code == 405
    assert "Method DELETE is not allowed on /" in response.json["message"]
    assert "POST" in response.headers["Allow"] and "GET" in response.headers["Allow"]


def test_unexpected_error_is_json_500_without_traceback(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: object) -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    monkeypatch.setattr(resources, "shape_answers", explode)
    response = app.test_client().get("/?query=fine")
    assert response.status_code == 500
    assert response.json["message"].startswith("Internal server error")
    assert "secret" not in response.get_data(as_text=True)
    assert app.test_client().get("/health").status_code == 200


#: One request per kind of JSON answer: each route's success, and each error status.
JSON_ANSWERS = [
    ("GET", "/?query=fine", {}, 200),
    ("POST", "/", {"json": {"queries": ["fine", "bad"]}}, 200),
    ("POST", "/ratings", {"data": {"query": "fine"}}, 200),
    ("GET", "/", {}, 400),
    ("POST", "/", {"data": "{not json", "content_type": "application/json"}, 400),
    ("GET", "/nowhere", {}, 404),
    ("DELETE", "/", {}, 405),
    ("POST", "/", {"json": {"queries": ["a", "b", "c", "d"]}}, 413),
    ("POST", "/", {"data": "x" * 5000, "content_type": "text/plain"}, 413),
    ("GET", "/?query=" + "x" * 9000, {}, 414),
]


@pytest.mark.parametrize(("method", "url", "kwargs", "status"), JSON_ANSWERS, ids=[f"{a[0]} {a[3]}" for a in JSON_ANSWERS])
def test_every_json_answer_ends_with_a_newline(client: FlaskClient, method: str, url: str, kwargs: dict, status: int) -> None:
    """So the shell's prompt after `curl` starts on a line of its own."""
    response = client.open(url, method=method, **kwargs)
    assert (response.status_code, response.mimetype) == (status, "application/json")
    assert response.data.endswith(b"}\n") and response.json is not None


def test_every_json_route_ends_its_answer_with_a_newline(app: Flask) -> None:
    """Every GET route without a path parameter that answers JSON, found in the URL map."""
    client, json_answers = app.test_client(), {}
    for rule in app.url_map.iter_rules():
        if "GET" in (rule.methods or ()) and not rule.arguments:
            with client.get(rule.rule) as answer:  # closed: pages and assets are served from open files
                if answer.mimetype == "application/json":
                    json_answers[rule.rule] = answer.data
    assert {"/health", "/ready", "/models", "/openapi.json", "/"} <= json_answers.keys()
    assert all(data.endswith(b"}\n") for data in json_answers.values()), json_answers
