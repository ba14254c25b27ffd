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
