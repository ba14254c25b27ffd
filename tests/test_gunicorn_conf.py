"""The production command, ``gunicorn -c gunicorn.conf.py``, with two workers on a free port."""

import json
import time

import requests

from tests.conftest import Server
from tests.test_observability import metric_value


def test_serves_the_tutorial_examples(production_server: Server) -> None:
    url = production_server.url
    assert requests.get(url, {"query": "that movie was boring"}, timeout=10).json()["prediction"] == "Negative"
    assert requests.get(url, {"query": "That was pretty entertaining"}, timeout=10).json()["prediction"] == "Positive"


def test_no_server_version_banner(production_server: Server) -> None:
    server = requests.get(f"{production_server.url}/health", timeout=10).headers["Server"]
    assert "gunicorn" not in server.lower() and not any(character.isdigit() for character in server)


def test_metrics_add_up_across_workers(production_server: Server) -> None:
    url = production_server.url
    before = metric_value(
        requests.get(f"{url}/metrics", timeout=10).text, "http_requests_total", endpoint="/ratings", status="200"
    )
    for _ in range(60):  # a new connection each time, so both workers take some
        requests.get(f"{url}/ratings", {"query": "a fine film"}, timeout=10, headers={"Connection": "close"})
    scrapes = [requests.get(f"{url}/metrics", timeout=10, headers={"Connection": "close"}).text for _ in range(6)]
    counts = {metric_value(text, "http_requests_total", endpoint="/ratings", status="200") - before for text in scrapes}
    assert counts == {60.0}, "every worker must report the total of all workers"


def test_access_log_is_json_with_request_ids(production_server: Server) -> None:
    sent = requests.get(production_server.url, {"query": "good"}, headers={"X-Request-ID": "log-me-1"}, timeout=10)
    generated = requests.get(f"{production_server.url}/nowhere", timeout=10).headers["X-Request-ID"]
    assert sent.headers["X-Request-ID"] == "log-me-1"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in production_server.stdout.read_text().splitlines()]
        by_id = {line["request_id"]: line for line in lines}
        if {"log-me-1", generated} <= by_id.keys():
            break
        time.sleep(0.1)
    assert by_id["log-me-1"]["status"] == 200 and by_id["log-me-1"]["path"] == "/"
    assert by_id[generated]["status"] == 404
    assert all({"time", "method", "path", "status", "duration_ms", "request_id"} <= line.keys() for line in lines)


def test_error_log_is_json(production_server: Server) -> None:
    records = [json.loads(line) for line in production_server.stderr.read_text().splitlines() if line.strip()]
    assert any("loaded sentiment-" in record["message"] for record in records)
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
