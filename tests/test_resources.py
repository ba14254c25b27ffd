"""The resources (lib/resources.py): prediction answers, batches, health, readiness, models."""

from typing import Any

import pytest
from flask.testing import FlaskClient

from lib import specs
from lib.resources import URL_QUERY_BESIDE_BODY
from tests.helpers import assert_prediction, served_labels


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
    body = client.get("/ratings?query=a brilliant , moving and wonderful masterpiece").get_json()
    labels = served_labels(client, "ratings")
    assert_prediction(body, labels)
    assert body["rating"] == labels.index(body["prediction"])
    batch = client.post("/ratings", json={"queries": ["wonderful", "awful"]}).json["predictions"]
    assert all("rating" in p for p in batch)


def test_health_ready_models(client: FlaskClient) -> None:
    assert client.get("/health").json == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json["status"] == "ready"
    models = client.get("/models").json["models"]
    assert set(models) == set(ready.json["models"]) == set(specs.MODEL_SPECS)
    assert {name: model["endpoint"] for name, model in models.items()} == {
        "sentiment": "/",
        "ratings": "/ratings",
        "sentiment-logreg": "/sentiment-logreg",
        "ratings-logreg": "/ratings-logreg",
    }
    assert models["sentiment"]["version"] == ready.json["models"]["sentiment"]
    assert "metrics" in models["ratings"] and "sklearn_version" in models["ratings"]


def test_tutorial_examples_on_committed_models(committed_client: FlaskClient) -> None:
    assert committed_client.get("/?query=that movie was boring").json["prediction"] == "Negative"
    assert committed_client.get("/?query=That was pretty entertaining").json["prediction"] == "Positive"


def test_every_answer_names_the_model_version(client: FlaskClient) -> None:
    served = client.application.extensions["models"].models
    single = client.get("/?query=good")
    assert single.json["model_version"] == single.headers["X-Model-Version"] == served["sentiment"].version
    batch = client.post("/ratings", json={"queries": ["good", "bad"]})
    version = served["ratings"].version
    assert batch.json["model_version"] == batch.headers["X-Model-Version"] == version
    assert {answer["model_version"] for answer in batch.json["predictions"]} == {version}


def test_every_answer_says_how_much_of_the_text_the_model_knew(client: FlaskClient) -> None:
    known = client.get("/?query=boring awful dull").json["coverage"]
    assert known["terms"] >= 3 and 0 < known["known_terms"] <= known["terms"]
    unknown = client.get("/ratings?query=zzzz qqqq").json
    assert unknown["coverage"] == {"known_terms": 0, "terms": 3}, "two words and one word pair; the answer is the prior alone"
    batch = client.post("/", json={"queries": ["boring awful dull", "zzzz"]}).json["predictions"]
    assert [answer["coverage"]["known_terms"] > 0 for answer in batch] == [True, False]


def test_the_linear_models_answer_on_their_own_paths(committed_client: FlaskClient) -> None:
    binary = committed_client.get("/sentiment-logreg", query_string={"query": "that movie was boring", "explain": "true"}).json
    assert binary["prediction"] == "Negative" and binary["model_version"].startswith("sentiment-logreg-")
    assert binary["explanation"]["terms"], "explanations work on the linear family"
    answers = committed_client.post("/ratings-logreg", json={"queries": ["dull and awful", "a wonderful , moving film"]}).json
    first, second = (answer["rating"] for answer in answers["predictions"])
    assert first < 2 < second


@pytest.mark.parametrize(
    "body",
    [
        {"json": {"queries": ["boring awful dull"]}},
        {"json": {"query": "boring awful dull"}},
        {"data": {"query": "boring awful dull"}},
        {"json": {"explain": True}},
    ],
    ids=["batch", "json query", "form query", "body without a text"],
)
def test_post_with_query_in_the_url_and_a_body_is_refused(client: FlaskClient, body: dict[str, Any]) -> None:
    """Two texts in one POST: answering either would silently drop the other."""
    response = client.post("/?query=brilliant wonderful", **body)
    assert response.status_code == 400
    assert response.json == {"message": URL_QUERY_BESIDE_BODY}
    assert "'query' in the URL and a body" in URL_QUERY_BESIDE_BODY


def test_post_with_the_text_in_the_url_only_is_still_answered(client: FlaskClient) -> None:
    """Clients that POST with ?query= and no body keep working (an empty body, as HTTPie sends from a script, is none)."""
    for extra in ({}, {"data": b"", "content_type": "application/json"}):
        response = client.post("/?query=boring awful dull", **extra)
        assert response.status_code == 200 and response.json["prediction"] == "Negative"
