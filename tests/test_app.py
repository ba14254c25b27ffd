"""The HTTP contract through Flask's test client: every input form, answer and error."""

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from app import create_app
from lib import resources
from lib.settings import ConfigError, Settings
from model import ModelLoadError


def assert_prediction(body: dict, labels: set[str]) -> None:
    assert body["prediction"] in labels
    assert set(body["probabilities"]) == labels
    assert body["confidence"] == body["probabilities"][body["prediction"]] == max(body["probabilities"].values())
    assert abs(sum(body["probabilities"].values()) - 1) < 0.01


SENTIMENT = {"Negative", "Positive"}


def test_query_in_url(client: FlaskClient) -> None:
    response = client.get("/?query=a brilliant and wonderful film")
    assert response.status_code == 200
    assert response.json["prediction"] == "Positive"
    assert_prediction(response.json, SENTIMENT)


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


def test_confidence_is_probability_of_the_predicted_label(client: FlaskClient) -> None:
    body = client.get("/?query=boring awful dull").json
    assert body["prediction"] == "Negative"
    assert body["confidence"] == body["probabilities"]["Negative"] > 0.5


def test_batch_keeps_input_order(client: FlaskClient) -> None:
    response = client.post("/", json={"queries": ["brilliant wonderful", "boring awful dull", "brilliant"]})
    assert response.status_code == 200
    predictions = response.json["predictions"]
    assert [p["prediction"] for p in predictions] == ["Positive", "Negative", "Positive"]
    single = client.get("/?query=boring awful dull").json
    assert predictions[1] == single


def test_ratings_endpoint(client: FlaskClient) -> None:
    body = client.get("/ratings?query=a brilliant , moving and wonderful masterpiece").json
    labels = {"negative", "somewhat negative", "neutral", "somewhat positive", "positive"}
    assert_prediction(body, labels)
    assert body["rating"] == ["negative", "somewhat negative", "neutral", "somewhat positive", "positive"].index(
        body["prediction"]
    )
    batch = client.post("/ratings", json={"queries": ["wonderful", "awful"]}).json["predictions"]
    assert all("rating" in p for p in batch)


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
        ({"queries": ["ok", None]}, 400, "Missing required parameter 'queries[1]'"),
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


def test_body_over_limit_is_413_with_the_limit(client: FlaskClient) -> None:
    response = client.post("/", json={"queries": ["x" * 5000]})
    assert response.status_code == 413
    assert response.json == {"message": "Request body is larger than the limit of 4,096 bytes."}


def test_body_over_limit_is_refused_even_when_query_is_in_url(client: FlaskClient) -> None:
    response = client.get("/?query=good", data="x" * 5000, content_type="text/plain")
    assert response.status_code == 413


def test_json_null_body_is_named(client: FlaskClient) -> None:
    response = client.post("/", data="null", content_type="application/json")
    assert response.status_code == 400 and "got null" in response.json["message"]


def test_unknown_path_is_json_404(client: FlaskClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json == {"message": "No endpoint at /nowhere. See /docs for the API."}


def test_wrong_method_is_json_405_with_allow(client: FlaskClient) -> None:
    response = client.delete("/")
    assert response.status_code == 405
    assert "Method DELETE is not allowed on /" in response.json["message"]
    assert "POST" in response.headers["Allow"] and "GET" in response.headers["Allow"]


def test_unexpected_error_is_json_500_without_traceback(app, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: object) -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    monkeypatch.setattr(resources, "describe", explode)
    response = app.test_client().get("/?query=fine")
    assert response.status_code == 500
    assert response.json["message"].startswith("Internal server error")
    assert "secret" not in response.get_data(as_text=True)
    assert app.test_client().get("/health").status_code == 200


def test_health_ready_models(client: FlaskClient) -> None:
    assert client.get("/health").json == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json["status"] == "ready"
    models = client.get("/models").json["models"]
    assert set(models) == {"sentiment", "ratings"}
    assert models["sentiment"]["endpoint"] == "/" and models["ratings"]["endpoint"] == "/ratings"
    assert models["sentiment"]["version"] == ready.json["models"]["sentiment"]
    assert "metrics" in models["ratings"] and "sklearn_version" in models["ratings"]


def test_tutorial_examples_on_committed_models(committed_client: FlaskClient) -> None:
    assert committed_client.get("/?query=that movie was boring").json["prediction"] == "Negative"
    assert committed_client.get("/?query=That was pretty entertaining").json["prediction"] == "Positive"


def test_missing_models_refuse_to_start(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no model folder \(a folder holding manifest\.json\)"):
        create_app({"MODELS_DIR": str(tmp_path)})


@pytest.mark.parametrize(
    ("key", "value"), [("MAX_BATCH", "lots"), ("MAX_QUERY_CHARS", "0"), ("MAX_BODY_BYTES", "-5"), ("LOG_LEVEL", "loud")]
)
def test_bad_config_names_key_and_value(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"Config '{key}' has value"):
        Settings.from_mapping({key: value})


def test_settings_read_environment(monkeypatch: pytest.MonkeyPatch, tiny_models: Path) -> None:
    monkeypatch.setenv("MAX_BATCH", "2")
    monkeypatch.setenv("MODELS_DIR", str(tiny_models))
    response = create_app().test_client().post("/", json={"queries": ["a", "b", "c"]})
    assert response.status_code == 413 and "limit is 2" in response.json["message"]
