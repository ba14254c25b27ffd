"""The production command, ``gunicorn -c gunicorn.conf.py``, with two workers on a free port."""

import hashlib
import hmac
import json
import os
import runpy
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from bench.harness import ROOT, Server, free_port, production_command, serving
from tests.helpers import CLIENT_TIMEOUT, COMMITTED_MODELS, gadgets, metric_value, plant, raw_exchange

pytestmark = pytest.mark.slow  # live production servers, stalled clients, reloads


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
        requests.get(f"{url}/metrics", timeout=10).text, "http_requests_total", endpoint="/ratings", method="GET", status="200"
    )
    for _ in range(60):  # a new connection each time, so both workers take some
        requests.get(f"{url}/ratings", {"query": "a fine film"}, timeout=10, headers={"Connection": "close"})
    scrapes = [requests.get(f"{url}/metrics", timeout=10, headers={"Connection": "close"}).text for _ in range(6)]
    # GET only: other tests share this server and POST batches to /ratings.
    counts = {
        metric_value(text, "http_requests_total", endpoint="/ratings", method="GET", status="200") - before for text in scrapes
    }
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


def open_slow_clients(url: str, count: int, body_started: bool) -> list[socket.socket]:
    """Open connections that start a request and then stall: mid-headers, or mid-body."""
    host, port = url.removeprefix("http://").split(":")
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
    sockets = []
    for _ in range(count):
        connection = socket.create_connection((host, int(port)), timeout=5)
        connection.sendall(head + b'\r\n{"queries": ["' if body_started else head)
        sockets.append(connection)
    return sockets


def test_stalled_header_client_is_cut_off(production_server: Server) -> None:
    [stalled] = open_slow_clients(production_server.url, 1, body_started=False)
    with stalled:
        started = time.monotonic()
        stalled.settimeout(CLIENT_TIMEOUT + 10)
        assert stalled.recv(4096) == b""
        assert time.monotonic() - started < CLIENT_TIMEOUT + 5
    assert requests.get(f"{production_server.url}/health", timeout=10).status_code == 200


def test_stalled_body_clients_are_cut_off_and_others_served(production_server: Server) -> None:
    body_started = True
    """Three times as many stalled uploads as workers: each is answered 408 after CLIENT_TIMEOUT."""
    slots = 2  # WEB_CONCURRENCY sync workers, one request each
    slow = open_slow_clients(production_server.url, 3 * slots, body_started)
    try:
        started = time.monotonic()
        for _ in range(5):
            answer = requests.get(production_server.url, {"query": "still answering?"}, timeout=60)
            assert answer.status_code == 200
        # Each stalled upload holds a thread for CLIENT_TIMEOUT, then the queue drains in turn;
        # without the timeout they would hold every thread for ever and this would never answer.
        assert time.monotonic() - started < 3 * 2 * CLIENT_TIMEOUT
        for connection in slow:  # the server has hung up on every one of them
            connection.settimeout(CLIENT_TIMEOUT + 5)
            assert connection.recv(4096).startswith(b"HTTP/1.1 408")
    finally:
        for connection in slow:
            connection.close()


@pytest.fixture
def reloadable_server(tmp_path: Path, tiny_models: Path) -> Iterator[tuple[Server, Path]]:
    """A two-worker production server over a models folder that the test may replace."""
    models = tmp_path / "models"
    shutil.copytree(COMMITTED_MODELS, models)
    env = {"WEB_CONCURRENCY": "2", "MODELS_DIR": str(models), "ACCESS_LOG": ""}
    with serving(production_command(), env, tmp_path) as server:
        yield server, models


def replace_model(models: Path, name: str, source: Path) -> None:
    """Swap a model folder in whole, the way the build does."""
    staging = models / f".{name}.new"
    shutil.copytree(source, staging)
    (models / name).rename(models / f".{name}.old")
    staging.rename(models / name)
    shutil.rmtree(models / f".{name}.old")


def served_version(url: str, name: str) -> str:
    return requests.get(f"{url}/models", timeout=10).json()["models"][name]["version"]


def wait_for_version(url: str, name: str, expected: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while served_version(url, name) != expected:
        assert time.monotonic() < deadline, f"{name} still {served_version(url, name)}, expected {expected}"
        time.sleep(0.2)


class Traffic(threading.Thread):
    """Clients calling the API without pause, as a front end would, counting what fails."""

    def __init__(self, url: str, clients: int = 4) -> None:
        super().__init__(daemon=True)
        self.url, self.clients = url, clients
        self.stopping = threading.Event()
        self.answered, self.failures = 0, []

    def run(self) -> None:
        with ThreadPoolExecutor(self.clients) as pool:
            for future in [pool.submit(self.client) for _ in range(self.clients)]:
                future.result()

    def client(self) -> None:
        session = requests.Session()
        while not self.stopping.is_set():
            try:
                response = session.get(self.url, params={"query": "a fine film"}, timeout=10)
                if response.status_code == 200:
                    self.answered += 1
                else:
                    self.failures.append(response.status_code)
            except requests.RequestException as exc:
                self.failures.append(repr(exc))

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


def test_sighup_reloads_models_without_failing_a_request(reloadable_server: tuple[Server, Path], tiny_models: Path) -> None:
    server, models = reloadable_server
    old = served_version(server.url, "sentiment")
    new = json.loads((tiny_models / "sentiment" / "manifest.json").read_text())["version"]
    assert new != old
    traffic = Traffic(server.url)
    traffic.start()
    try:
        time.sleep(1)
        replace_model(models, "sentiment", tiny_models / "sentiment")
        os.kill(server.process.pid, signal.SIGHUP)
        wait_for_version(server.url, "sentiment", new)
        time.sleep(1)
    finally:
        traffic.stop()
    assert traffic.failures == [] and traffic.answered > 50
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert metric_value(metrics, "model_build_info", model="sentiment", version=new) == 1


@pytest.mark.parametrize("attack", ["appended bytes", "code-running pickle with matching digest"])
def test_bad_model_on_reload_is_refused_old_keeps_serving(
    reloadable_server: tuple[Server, Path], tmp_path: Path, attack: str
) -> None:
    server, models = reloadable_server
    old = served_version(server.url, "sentiment")
    marker = tmp_path / "pwned"
    traffic = Traffic(server.url)
    traffic.start()
    try:
        if attack == "appended bytes":
            with open(models / "sentiment" / "feature_log_prob.npy", "ab") as artifact:
                artifact.write(b"tampered")
        else:
            plant(models / "sentiment", "feature_log_prob.npy", gadgets(marker)["os.system"])
        os.kill(server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "reload refused" not in server.stderr.read_text():
            assert time.monotonic() < deadline, "the master never logged the refused reload"
            time.sleep(0.2)
        time.sleep(2)  # new workers have forked from the master by now, with the old models
    finally:
        traffic.stop()
    assert served_version(server.url, "sentiment") == old
    assert traffic.failures == [] and traffic.answered > 50
    assert "feature_log_prob.npy: " in server.stderr.read_text()
    assert not marker.exists()


@pytest.mark.parametrize("attack", ["replaced file", "code-running pickle with matching digest"])
def test_tampered_model_refuses_to_start(tmp_path: Path, attack: str) -> None:
    models = tmp_path / "models"
    shutil.copytree(COMMITTED_MODELS, models)
    marker = tmp_path / "pwned"
    if attack == "replaced file":
        (models / "ratings" / "vectorizer.json").write_bytes(b"not the file the manifest names")
        expected = "vectorizer.json: SHA-256 does not match manifest.json"
    else:
        plant(models / "ratings", "vectorizer.json", gadgets(marker)["numpy-module-os"])
        expected = "vectorizer.json: not valid JSON"
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "MODELS_DIR": str(models), "PORT": str(free_port()), "TMPDIR": str(temp)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = subprocess.run(production_command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Rebuild the models with: python build_model.py" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()
    assert list(temp.iterdir()) == [], "a failed start leaves no metrics folder behind"


def test_production_defaults_are_safe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in ("HOST", "PORT", "BIND", "WEB_CONCURRENCY", "ACCESS_LOG"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert config["bind"] == "127.0.0.1:8000"
    assert config["workers"] == 2 * (os.cpu_count() or 1) + 1
    assert config["worker_class"] == "sync"
    assert config["preload_app"] is True and config["wsgi_app"] == "app:create_app()"
    assert config["timeout"] > 0 and config["max_requests"] > 0 and config["max_requests_jitter"] > 0
    assert "debug" not in config and "reload" not in config


def test_requests_gunicorn_refuses_are_answered_in_json(production_server: Server) -> None:
    too_long = requests.get(production_server.url, params={"query": "a" * 9000}, timeout=10)
    assert too_long.status_code == 414
    assert too_long.headers["Content-Type"] == "application/json"
    assert too_long.json()["message"].startswith("URI Too Long")
    bad_header = requests.get(f"{production_server.url}/health", headers={"X-Big": "b" * 9000}, timeout=10)
    assert bad_header.status_code in (400, 431) and "message" in bad_header.json()


def test_sigterm_drains_before_stopping(tmp_path: Path) -> None:
    """With DRAIN_SECONDS, /ready turns 503 at SIGTERM while predictions are still answered, then the server exits."""
    env = {"WEB_CONCURRENCY": "2", "DRAIN_SECONDS": "3", "ACCESS_LOG": ""}
    with serving(production_command(), env, tmp_path) as server:
        assert requests.get(f"{server.url}/ready", timeout=10).status_code == 200
        time.sleep(1)  # both workers past their start-up, so both have the drain handler
        os.kill(server.process.pid, signal.SIGTERM)
        time.sleep(0.5)
        ready = requests.get(f"{server.url}/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        assert requests.get(server.url, {"query": "a fine film"}, timeout=10).status_code == 200
        started = time.monotonic()
        server.process.wait(timeout=20)
        assert server.process.returncode == 0
        assert 1.5 < time.monotonic() - started < 10, "workers stop once the drain period is over"


CHUNKED_HEAD = (
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
)


def chunks(body: bytes, size: int = 4096) -> bytes:
    """Frame a body as HTTP/1.1 chunks."""
    framed = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size))
    return framed + b"0\r\n\r\n"


@pytest.mark.parametrize(
    ("framing", "status", "message"),
    [
        (chunks(json.dumps({"queries": ["good", "dull"]}).encode()), b"200", b"predictions"),
        (chunks(json.dumps({"queries": ["x" * 1000] * 3000}).encode()), b"413", b"larger than the limit of 2,097,152 bytes"),
        (b"zz\r\nabc\r\n0\r\n\r\n", b"400", b"Malformed chunked request body"),
        (b"0x10\r\n0123456789abcdef\r\n0\r\n\r\n", b"400", b"Malformed chunked request body"),
        (b"10 \r\n0123456789abcdef\r\n0\r\n\r\n", b"400", b"Malformed chunked request body"),
        (b"4\r\nabcd0\r\n\r\n", b"400", b"Malformed chunked request body"),
        (b'4\r\n{"q"\r\n0\r\nContent-Length: 5\r\n\r\n', b"400", b"Malformed chunked request body"),
    ],
    ids=["whole", "3 MB", "size zz", "size 0x10", "size with space", "missing CRLF", "forbidden trailer"],
)
def test_chunked_bodies_are_bounded_and_checked(production_server: Server, framing: bytes, status: bytes, message: bytes) -> None:
    logged_before = len(production_server.stderr.read_text())
    answer = raw_exchange(production_server, CHUNKED_HEAD + framing)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    assert message in answer
    time.sleep(0.2)
    assert "Traceback" not in production_server.stderr.read_text()[logged_before:]


def test_client_cannot_set_script_name(production_server: Server) -> None:
    request = b"GET /?query=good HTTP/1.1\r\nHost: x\r\nSCRIPT_NAME: /evil\r\nConnection: close\r\n\r\n"
    answer = raw_exchange(production_server, request)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_listed_proxy_may_mount_the_service_under_a_prefix(tmp_path: Path) -> None:
    env = {"WEB_CONCURRENCY": "1", "FORWARDED_ALLOW_IPS": "127.0.0.1", "ACCESS_LOG": ""}
    with serving(production_command(), env, tmp_path) as server:
        request = b"GET /api/?query=good HTTP/1.1\r\nHost: x\r\nSCRIPT_NAME: /api\r\nConnection: close\r\n\r\n"
        assert raw_exchange(server, request).startswith(b"HTTP/1.1 200")


HOSTILE = ['"', "\\", '\\"', '"}{"x": 1', "\x00", "\u2028", "é", "%22%5C", "\r"]


def test_every_log_line_is_json_whatever_the_client_sends(production_server: Server) -> None:
    """Quotes, backslashes, control characters and odd bytes in the path, query and User-Agent."""
    for value in HOSTILE:
        requests.get(f"{production_server.url}/x{value}y", params={"query": value}, timeout=10)
        raw = f"GET /p{value}?query={value} HTTP/1.1\r\nHost: x\r\nUser-Agent: a{value}b\r\nConnection: close\r\n\r\n"
        raw_exchange(production_server, raw.encode("utf-8", "surrogateescape"))
    time.sleep(0.5)
    for stream in (production_server.stdout, production_server.stderr):
        for line in stream.read_text(errors="replace").splitlines():
            assert isinstance(json.loads(line), dict), line


def test_access_log_keeps_no_text_by_default(production_server: Server) -> None:
    requests.get(production_server.url, {"query": "my secret review"}, headers={"X-Request-ID": "no-text-1"}, timeout=10)
    time.sleep(0.5)
    [line] = [json.loads(line) for line in production_server.stdout.read_text().splitlines() if "no-text-1" in line]
    assert "secret" not in json.dumps(line) and "query" not in line and "query_hmac" not in line


def test_access_log_can_keep_a_keyed_hmac_of_the_query(tmp_path: Path) -> None:
    key = "a-secret-of-some-length"
    env = {"WEB_CONCURRENCY": "1", "LOG_QUERIES": "hmac", "QUERY_LOG_KEY": key}
    with serving(production_command(), env, tmp_path) as server:
        requests.get(server.url, {"query": "my secret review"}, headers={"X-Request-ID": "hmac-1"}, timeout=10)
        time.sleep(0.5)
        [line] = [json.loads(line) for line in server.stdout.read_text().splitlines() if "hmac-1" in line]
    expected = hmac.new(key.encode(), b"query=my+secret+review", hashlib.sha256).hexdigest()
    assert line["query_hmac"] == expected and "secret" not in json.dumps(line)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WEB_CONCURRENCY", "0", "Config 'WEB_CONCURRENCY' has value '0'. Not a positive integer."),
        ("TIMEOUT", "abc", "Config 'TIMEOUT' has value 'abc'. Not a positive integer."),
        ("CLIENT_TIMEOUT", "-3", "Config 'CLIENT_TIMEOUT' has value '-3'. Not a number of 0 or more."),
        ("MAX_REQUESTS", "abc", "Config 'MAX_REQUESTS' has value 'abc'. Not a whole number of 0 or more."),
        ("WORKER_CLASS", "eventlet", "Config 'WORKER_CLASS' has value 'eventlet'. Expected sync or gthread."),
        ("MAX_BATCH", "-1", "Config 'MAX_BATCH' has value '-1'. Not a positive integer."),
        ("LOG_LEVEL", "verbose", "Config 'LOG_LEVEL' has value 'VERBOSE'. Expected DEBUG, INFO, WARNING, ERROR or CRITICAL."),
        ("PORT", "99999", "Config 'PORT' has value '99999'. Not a port number (1-65535)."),
        (
            "PROMETHEUS_MULTIPROC_DIR",
            "/nonexistent",
            "Config 'PROMETHEUS_MULTIPROC_DIR' has value '/nonexistent'. Not a writable folder.",
        ),
    ],
)
def test_bad_setting_stops_the_config_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # the config makes no folder of its own
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert stopped.value.code == f"Error: {message}"


@pytest.mark.parametrize(("variable", "value"), [("WEB_CONCURRENCY", "0"), ("MAX_BATCH", "-1")])
def test_bad_setting_stops_the_server_with_one_line(variable: str, value: str) -> None:
    """As gunicorn itself shows it: one line, status 1, no traceback."""
    env = {**os.environ, "PORT": str(free_port()), variable: value}
    result = subprocess.run(production_command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: Config {variable!r} has value {value!r}. Not a positive integer."
