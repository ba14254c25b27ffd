"""Request ids and Prometheus metrics (lib/observability.py), through Flask's test client."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import sklearn
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from app import create_app
from lib.observability import Metrics, observe_many
from tests.helpers import metric_value, served_labels


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
        sum(metric_value(text, "predictions_total", model="ratings", label=label) for label in served_labels(client, "ratings"))
        == 2
    )
    versions = client.get("/ready").json["models"]
    assert (
        metric_value(
            text, "model_build_info", model="sentiment", version=versions["sentiment"], sklearn_version=sklearn.__version__
        )
        == 1
    )
    assert metric_value(text, "model_load_seconds", model="ratings") > 0


def test_metric_labels_stay_bounded_whatever_the_method(client: FlaskClient) -> None:
    for method in ("BREW", "PROPFIND", "XXXXXXXXXXXXXXXXXXXX"):
        assert client.open("/", method=method).status_code == 405
    text = client.get("/metrics").get_data(as_text=True)
    assert metric_value(text, "http_requests_total", endpoint="unmatched", method="other", status="405") == 3
    assert "BREW" not in text and "PROPFIND" not in text


def test_access_log_lines_are_json_and_keep_no_text_by_default(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="sentiment_api.access"):
        client.get('/?query=my "secret" \\ review', headers={"User-Agent": 'ua "quoted" \\', "X-Request-ID": "a-1"})
    [line] = [json.loads(record.getMessage()) for record in caplog.records if record.name == "sentiment_api.access"]
    assert line["request_id"] == "a-1" and line["status"] == 200 and line["user_agent"] == 'ua "quoted" \\'
    assert "query" not in line and "secret" not in json.dumps(line)


@pytest.mark.parametrize(("mode", "field"), [("text", "query"), ("hmac", "query_hmac")])
def test_access_log_keeps_what_log_queries_asks(
    tiny_models: Path, caplog: pytest.LogCaptureFixture, mode: str, field: str
) -> None:
    config = {"MODELS_DIR": str(tiny_models), "LOG_QUERIES": mode, "QUERY_LOG_KEY": "k" * 16}
    with caplog.at_level("INFO", logger="sentiment_api.access"):
        create_app(config).test_client().get("/?query=fine")
    [line] = [json.loads(record.getMessage()) for record in caplog.records if record.name == "sentiment_api.access"]
    assert field in line and ("fine" in line[field]) == (mode == "text")


def test_confidence_and_coverage_histograms_per_model_version(client: FlaskClient) -> None:
    client.get("/?query=boring awful dull")
    client.post("/", json={"queries": ["zzzz", "brilliant wonderful"]})
    text = client.get("/metrics").get_data(as_text=True)
    version = client.get("/ready").json["models"]["sentiment"]
    labels = {"model": "sentiment", "version": version}
    assert metric_value(text, "prediction_confidence_count", **labels) == 3
    assert metric_value(text, "prediction_known_terms_ratio_bucket", le="0.0", **labels) == 1  # "zzzz": the prior alone
    assert metric_value(text, "prediction_known_terms_ratio_count", **labels) == 3


def test_batch_histogram_updates_equal_one_observe_per_value() -> None:
    values = np.array([0.0, 0.25, 0.26, 0.5, 0.74, 0.9, 0.95, 1.0, 0.3333, 0.0])
    one_by_one, batched = Metrics(), Metrics()
    for value in values:
        one_by_one.known_share.labels("m", "v").observe(float(value))
    observe_many(batched.known_share.labels("m", "v"), values)
    samples = [
        [line for line in generate_latest(metrics.registry).decode().splitlines() if "_created" not in line]
        for metrics in (one_by_one, batched)
    ]
    assert samples[0] == samples[1]


def write_counter(path: Path, value: float) -> None:
    """A worker's counter file as prometheus-client writes it, holding one series."""
    key = mmap_key("http_requests", "http_requests_total", ["endpoint"], ["/"], "HTTP requests answered.")
    values = MmapedDict(str(path))
    values.write_value(key, value, 0.0)
    values.close()


def merged_total(folder: Path) -> float:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    return metric_value(generate_latest(registry).decode(), "http_requests_total", endpoint="/")


def test_exited_workers_files_are_folded_and_their_counts_kept(tmp_path: Path) -> None:
    dead = [999_999_991, 999_999_992]  # above any pid_max: processes that cannot exist
    for pid, count in zip(dead, (3, 4), strict=True):
        write_counter(tmp_path / f"counter_{pid}.db", count)
    write_counter(tmp_path / f"counter_{os.getpid()}.db", 5)  # a live worker's file stays where it is
    assert merged_total(tmp_path) == 12
    text = Metrics(tmp_path).exposition().get_data(as_text=True)
    assert metric_value(text, "http_requests_total", endpoint="/") == 12
    assert {path.name for path in tmp_path.glob("*.db")} == {"counter_exited.db", f"counter_{os.getpid()}.db"}
    write_counter(tmp_path / "counter_999999993.db", 10)  # another worker exits later: added to the same file
    Metrics(tmp_path).fold_exited()
    assert merged_total(tmp_path) == 22 and len(list(tmp_path.glob("*.db"))) == 2
