"""Request ids, metrics, CORS and response headers, through Flask's test client."""

import pytest
from flask.testing import FlaskClient

from app import create_app
from lib.settings import LOCAL_ORIGINS, ConfigError, Settings


def metric_value(text: str, name: str, **labels: str) -> float:
    """Find one sample in Prometheus text output (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_request_id_is_echoed_when_safe(client: FlaskClient) -> None:
    assert client.get("/health", headers={"X-Request-ID": "abc-123.x:y"}).headers["X-Request-ID"] == "abc-123.x:y"


@pytest.mark.parametrize("incoming", [None, "", "has space", 'quote"', "x" * 129, "tab\there"])
def test_request_id_is_generated_otherwise(client: FlaskClient, incoming: str | None) -> None:
    headers = {} if incoming is None else {"X-Request-ID": incoming}
    generated = client.get("/health", headers=headers).headers["X-Request-ID"]
    assert generated != incoming and len(generated) == 32 and generated.isalnum()


def test_errors_carry_request_id_too(client: FlaskClient) -> None:
    response = client.get("/nowhere", headers={"X-Request-ID": "trace-me"})
    assert response.status_code == 404 and response.headers["X-Request-ID"] == "trace-me"


def test_metrics_count_requests_latency_and_predictions(client: FlaskClient) -> None:
    client.get("/?query=brilliant wonderful")
    client.get("/?query=boring awful dull")
    client.post("/ratings", json={"queries": ["wonderful", "awful"]})
    client.get("/")
    client.get("/nowhere/at/all")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain; version=")
    text = response.get_data(as_text=True)
    assert metric_value(text, "http_requests_total", endpoint="/", method="GET", status="200") == 2
    assert metric_value(text, "http_requests_total", endpoint="/", method="GET", status="400") == 1
    assert metric_value(text, "http_requests_total", endpoint="unmatched", status="404") == 1
    assert metric_value(text, "http_request_duration_seconds_count", endpoint="/ratings", status="200") == 1
    assert metric_value(text, "http_request_duration_seconds_bucket", endpoint="/", status="200", le="+Inf") == 2
    assert metric_value(text, "predictions_total", model="sentiment", label="Positive") == 1
    assert metric_value(text, "predictions_total", model="sentiment", label="Negative") == 1
    assert (
        sum(
            metric_value(text, "predictions_total", model="ratings", label=label)
            for label in ("negative", "somewhat negative", "neutral", "somewhat positive", "positive")
        )
        == 2
    )
    versions = client.get("/ready").json["models"]
    assert metric_value(text, "model_build_info", model="sentiment", version=versions["sentiment"], sklearn_version="1.9.1") == 1
    assert metric_value(text, "model_load_seconds", model="ratings") > 0


def test_api_responses_are_not_sniffed_or_cached(client: FlaskClient) -> None:
    for response in (client.get("/?query=good"), client.get("/"), client.get("/nowhere")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"


def test_cors_allows_local_pages_by_default(client: FlaskClient) -> None:
    response = client.get("/?query=good", headers={"Origin": "http://localhost:3000"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]
    preflight = client.options(
        "/",
        headers={
            "Origin": "http://127.0.0.1:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:5173"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


def test_cors_refuses_other_origins_by_default(client: FlaskClient) -> None:
    response = client.get("/?query=good", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_origins_from_configuration(tiny_models) -> None:
    app = create_app({"MODELS_DIR": str(tiny_models), "CORS_ORIGINS": "https://app.example.com"})
    client = app.test_client()
    assert (
        client.get("/health", headers={"Origin": "https://app.example.com"}).headers["Access-Control-Allow-Origin"]
        == "https://app.example.com"
    )
    assert "Access-Control-Allow-Origin" not in client.get("/health", headers={"Origin": "http://localhost:3000"}).headers
    closed = create_app({"MODELS_DIR": str(tiny_models), "CORS_ORIGINS": ""}).test_client()
    assert "Access-Control-Allow-Origin" not in closed.get("/health", headers={"Origin": "http://localhost:3000"}).headers


def test_cors_settings() -> None:
    assert Settings.from_mapping({}).cors_origins == (LOCAL_ORIGINS,)
    assert Settings.from_mapping({"CORS_ORIGINS": " https://a.example , * "}).cors_origins == ("https://a.example", "*")
    with pytest.raises(ConfigError, match=r"Config 'CORS_ORIGINS' has value 'a\.example'"):
        Settings.from_mapping({"CORS_ORIGINS": "a.example"})
