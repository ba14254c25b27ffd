"""The production command, ``python -m lib.server`` (granian), with two workers on a free port.

Slow clients, malformed chunking and the JSON shape of refusals at the HTTP layer are the proxy's job in the
deployed stack: tests/test_proxy.py checks those through nginx.
"""

import contextlib
import hashlib
import hmac
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import requests

from lib.server import address_refusal, granian_server, lean_log_records, read_settings
from lib.settings import NUMERIC_RANGES, ConfigError, ServerSettings, available_cpus
from tests import server_whose_loads_fail
from tests.helpers import (
    CLIENT_TIMEOUT,
    COMMITTED_MODELS,
    ISO_TIME,
    Traffic,
    declare_huge_array,
    deep_folder,
    gadgets,
    metric_value,
    name_too_long,
    plant,
    raw_exchange,
    reload_under_traffic,
    rewrite_manifest,
    served_version,
)
from tests.support.harness import ROOT, Server, free_port, live_descendants, production_command, serving, wait_for_workers

pytestmark = pytest.mark.slow  # live production servers, stalled clients, reloads


def test_serves_the_tutorial_examples(production_server: Server) -> None:
    url = production_server.url
    assert requests.get(url, {"query": "that movie was boring"}, timeout=10).json()["prediction"] == "Negative"
    assert requests.get(url, {"query": "That was pretty entertaining"}, timeout=10).json()["prediction"] == "Positive"


def test_no_server_version_banner(production_server: Server) -> None:
    server = requests.get(f"{production_server.url}/health", timeout=10).headers["Server"]
    assert not any(character.isdigit() for character in server), f"the Server header names a version: {server}"


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
    assert all(ISO_TIME.fullmatch(line["time"]) for line in lines), [line["time"] for line in lines]


def test_log_records_leave_out_the_stack_walk_but_keep_the_pid(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for flag in ("_srcfile", "logThreads", "logMultiprocessing"):
        monkeypatch.setattr(logging, flag, getattr(logging, flag))  # restored after the test
    lean_log_records()
    logging.getLogger("sentiment_api.test").warning("lean")
    record = caplog.records[-1]
    assert (record.getMessage(), record.lineno, record.threadName, record.processName) == ("lean", 0, None, None)
    assert record.process == os.getpid()


def test_error_log_is_json(production_server: Server) -> None:
    records = [json.loads(line) for line in production_server.stderr.read_text().splitlines() if line.strip()]
    assert any("loaded sentiment-" in record["message"] for record in records)
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    assert all(ISO_TIME.fullmatch(record["time"]) for record in records), [record["time"] for record in records]


@pytest.mark.parametrize("name", ["dev_server", "production_server"])
def test_json_answers_end_with_a_newline_on_both_servers(request: pytest.FixtureRequest, name: str) -> None:
    """So the shell's prompt after `curl` starts on a line of its own, whichever server answers."""
    server = request.getfixturevalue(name)
    url = server if isinstance(server, str) else server.url
    answers = [
        requests.get(url, {"query": "good"}, timeout=10),
        requests.post(url, json={"queries": ["good", "bad"]}, timeout=10),
        requests.get(f"{url}/nowhere", timeout=10),
        requests.get(f"{url}/openapi.json", timeout=10),
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 404, 200]
    assert all(answer.content.endswith(b"}\n") for answer in answers)


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


@pytest.fixture
def reloadable_server(tmp_path: Path, tiny_models: Path) -> Iterator[tuple[Server, Path]]:
    """A two-worker production server over a models folder that the test may replace."""
    models = tmp_path / "models"
    shutil.copytree(COMMITTED_MODELS, models)
    env = {"WEB_CONCURRENCY": "2", "MODELS_DIR": str(models), "ACCESS_LOG": ""}
    with serving(production_command(), env, tmp_path) as server:
        yield server, models


def test_sighup_reloads_models_without_failing_a_request(reloadable_server: tuple[Server, Path], tiny_models: Path) -> None:
    server, models = reloadable_server
    new = json.loads((tiny_models / "sentiment" / "manifest.json").read_text())["version"]
    traffic = reload_under_traffic(
        server.url, models, tiny_models / "sentiment", lambda: os.kill(server.process.pid, signal.SIGHUP)
    )
    assert traffic.failures == [] and traffic.answered > 50
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert metric_value(metrics, "model_build_info", model="sentiment", version=new) == 1


def served_everywhere(url: str, name: str, endpoint: str) -> dict[str, object]:
    """Where the server shows a model, asked on fresh connections (so of both workers): its route's status codes,
    and whether /models, /ready and /openapi.json name it."""
    fresh = {"Connection": "close"}
    return {
        "route": {requests.get(f"{url}{endpoint}?query=fine", timeout=10, headers=fresh).status_code for _ in range(10)},
        "models": {name in requests.get(f"{url}/models", timeout=10, headers=fresh).json()["models"] for _ in range(4)},
        "ready": {name in requests.get(f"{url}/ready", timeout=10, headers=fresh).json()["models"] for _ in range(4)},
        "openapi": {endpoint in requests.get(f"{url}/openapi.json", timeout=10, headers=fresh).json()["paths"] for _ in range(4)},
    }


def test_sighup_serves_an_added_model_and_stops_serving_a_removed_one_without_failing_a_request(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(COMMITTED_MODELS, models)
    env = {"WEB_CONCURRENCY": "2", "MODELS_DIR": str(models), "ACCESS_LOG": ""}
    with serving(production_command(), env, tmp_path) as server:
        wait_for_workers(server, 2)
        sentiment, ratings = Traffic(server.url, clients=2), Traffic(f"{server.url}/ratings", clients=2)
        for traffic in (sentiment, ratings):
            traffic.start()
        try:
            time.sleep(1)
            shutil.copytree(COMMITTED_MODELS / "sentiment", models / ".reviews.new")
            rewrite_manifest(models / ".reviews.new", name="reviews", endpoint="/reviews")
            (models / ".reviews.new").rename(models / "reviews")  # in whole, as the build swaps a folder in
            version = json.loads((models / "reviews" / "manifest.json").read_text())["version"]
            workers = set(live_descendants(server.process.pid))
            os.kill(server.process.pid, signal.SIGHUP)
            wait_for_new_workers(server, workers)
            added = served_everywhere(server.url, "reviews", "/reviews")
            metrics = requests.get(f"{server.url}/metrics", timeout=10).text
            loaded = metric_value(metrics, "model_build_info", model="reviews", version=version)
            shutil.rmtree(models / "reviews")
            workers = set(live_descendants(server.process.pid))
            os.kill(server.process.pid, signal.SIGHUP)
            wait_for_new_workers(server, workers)
            removed = served_everywhere(server.url, "reviews", "/reviews")
            metrics = requests.get(f"{server.url}/metrics", timeout=10).text
            time.sleep(0.5)
        finally:
            for traffic in (sentiment, ratings):
                traffic.stop()
    assert added == {"route": {200}, "models": {True}, "ready": {True}, "openapi": {True}}
    assert loaded == 1
    assert removed == {"route": {404}, "models": {False}, "ready": {False}, "openapi": {False}}
    retired = [line for line in metrics.splitlines() if line.startswith("model_build_info{") and 'model="reviews"' in line]
    assert retired and all(line.endswith(" 0.0") for line in retired), retired
    assert sentiment.failures == [] and ratings.failures == []
    assert sentiment.answered > 20 and ratings.answered > 20
    assert "reload refused" not in server.stderr.read_text()


def test_replaced_workers_keep_their_counts_and_the_metrics_folder_stays_bounded(tmp_path: Path) -> None:
    """Three reloads and a killed worker: 7 workers exit, their counts stay in the totals, their files (gauges too) go."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    env = {"WEB_CONCURRENCY": "2", "PROMETHEUS_MULTIPROC_DIR": str(folder), "ACCESS_LOG": ""}
    with serving(production_command(), env, tmp_path) as server:
        wait_for_workers(server, 2)
        for _ in range(3):
            answered = [requests.get(server.url, {"query": "a fine film"}, timeout=10).status_code for _ in range(10)]
            before = set(live_descendants(server.process.pid))
            os.kill(server.process.pid, signal.SIGHUP)
            wait_for_new_workers(server, before)
        time.sleep(6)  # granian stops the whole server if a worker dies within 5.5 s of its start ("crash loop")
        os.kill(live_descendants(server.process.pid)[0], signal.SIGKILL)
        time.sleep(1)
        wait_for_workers(server, 2)
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
        workers = live_descendants(server.process.pid)
    assert answered == [200] * 10
    assert metric_value(metrics, "http_requests_total", endpoint="/", method="GET", status="200") == 30
    assert metric_value(metrics, "model_build_info", model="sentiment") == 1 and metric_value(metrics, "model_load_seconds") > 0
    per_worker = {f"{kind}_{pid}.db" for kind in ("counter", "histogram") for pid in workers}
    left = {path.name for path in folder.glob("*.db")} - per_worker - {"counter_exited.db", "histogram_exited.db"}
    assert left == {f"gauge_max_{server.process.pid}.db"}, left  # the parent's model gauges: no worker's, live or exited


def wait_for_new_workers(server: Server, old: set[int], timeout: float = 20) -> None:
    """Wait until every worker that was running has been replaced."""
    deadline = time.monotonic() + timeout
    while set(live_descendants(server.process.pid)) & old or len(live_descendants(server.process.pid)) < len(old):
        assert time.monotonic() < deadline, "the workers were not replaced"
        time.sleep(0.2)


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
            with open(models / "sentiment" / "weights.npy", "ab") as artifact:
                artifact.write(b"tampered")
        else:
            plant(models / "sentiment", "weights.npy", gadgets(marker)["os.system"])
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
    assert "weights.npy: " in server.stderr.read_text()
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


def huge_array(models: Path) -> Path:
    declare_huge_array(models / "sentiment")
    return models / "sentiment"


def unreadable(models: Path) -> Path:
    (models / "sentiment").chmod(0)
    return models / "sentiment"


def failing_code(models: Path) -> Path:
    (models / "sentiment" / server_whose_loads_fail.MARKER).touch()  # the launcher's load raises RuntimeError there
    return models / "sentiment"


UNREADABLE = "folder the server may not read"
FAILING_CODE = "folder whose loading code raises"
TOO_LONG = "folder whose manifest's path is too long"
#: Model folders that get past every check and still fail, each for real: how to make one (it returns the folder),
#: and the exception type its one-line refusal names.
FAULTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "array declaring 694 PiB": (huge_array, "MemoryError"),
    UNREADABLE: (unreadable, "PermissionError"),
    FAILING_CODE: (failing_code, "RuntimeError"),
    TOO_LONG: (name_too_long, "OSError"),
}
STOP_SETTINGS = {"DRAIN_SECONDS": "1", "GRACEFUL_TIMEOUT": "2"}
STOP_BOUND = 1 + 2 + 1  # seconds: DRAIN_SECONDS + GRACEFUL_TIMEOUT + 1
#: Takes from root the capabilities that let it read and search any folder; another user has nothing to take.
UNPRIVILEGED = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def models_copy(tmp_path: Path, fault: str) -> Path:
    """The committed models copied under tmp_path; deep enough that a folder's manifest path can be too long if need be."""
    parent = deep_folder(tmp_path, os.pathconf(tmp_path, "PC_PATH_MAX") - 160) if fault == TOO_LONG else tmp_path
    return Path(shutil.copytree(COMMITTED_MODELS, parent / "models"))


def server_command(tmp_path: Path, fault: str) -> list[str]:
    """The production command, unable to read a folder it may not when ``fault`` needs it: skips if that cannot be."""
    if fault == FAILING_CODE:
        return [sys.executable, "-m", "tests.server_whose_loads_fail"]
    if fault != UNREADABLE:
        return production_command()
    prefix = UNPRIVILEGED if os.geteuid() == 0 else []
    probe = tmp_path / "probe"
    probe.mkdir(mode=0)
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-c", "import os, sys; os.listdir(sys.argv[1])", str(probe)], capture_output=True, text=True
        )
    except OSError as exc:
        pytest.skip(f"cannot run the server without root's power to read any folder: {exc}")
    if "PermissionError" not in done.stderr:
        last = (done.stderr.strip().splitlines() or ["it read the folder"])[-1]
        pytest.skip(f"cannot run the server without root's power to read any folder ({' '.join(prefix)}): {last}")
    return [*prefix, *production_command()]


def error_records(server: Server) -> list[str]:
    """The messages the server logged at ERROR and above (every line of its stderr is a JSON record)."""
    records = [json.loads(line) for line in server.stderr.read_text().splitlines() if line.strip()]
    return [record["message"] for record in records if record["level"] in ("ERROR", "CRITICAL")]


def stop_with_sigterm(server: Server) -> float:
    """Send SIGTERM to the server's parent only, as an orchestrator does; the seconds until it exited."""
    started = time.monotonic()
    os.kill(server.process.pid, signal.SIGTERM)
    server.process.wait(timeout=30)
    return time.monotonic() - started


def processes_left(group: int) -> list[int]:
    """The live processes of a process group: a server's workers that outlived it."""
    left = []
    for process in psutil.process_iter(["status"]):
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(process.pid) == group and process.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(process.pid)
    return left


@pytest.mark.parametrize("fault", FAULTS)
def test_a_folder_failing_in_any_way_stops_the_start_with_one_line(tmp_path: Path, fault: str) -> None:
    command = server_command(tmp_path, fault)
    make, kind = FAULTS[fault]
    models = models_copy(tmp_path, fault)
    folder = make(models)
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "MODELS_DIR": str(models), "PORT": str(free_port()), "TMPDIR": str(temp)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if str(folder) in line]
    assert line.startswith(f"Error: {folder}: ") and line.endswith(f"{kind})"), line
    assert list(temp.iterdir()) == [], "a failed start leaves no metrics folder behind"


@pytest.mark.parametrize("fault", FAULTS)
def test_a_folder_failing_in_any_way_on_reload_keeps_the_old_models_under_traffic(tmp_path: Path, fault: str) -> None:
    """Not one request fails, the old version answers throughout, and SIGTERM then stops the server in time."""
    command = server_command(tmp_path, fault)
    make, kind = FAULTS[fault]
    models = models_copy(tmp_path, fault)
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {"WEB_CONCURRENCY": "2", "MODELS_DIR": str(models), "ACCESS_LOG": "", "TMPDIR": str(temp), **STOP_SETTINGS}
    with serving(command, env, tmp_path) as server:
        wait_for_workers(server, 2)
        old = served_version(server.url, "sentiment")
        traffic = Traffic(server.url)
        traffic.start()
        try:
            time.sleep(0.5)
            folder = make(models)
            workers = set(live_descendants(server.process.pid))
            os.kill(server.process.pid, signal.SIGHUP)
            wait_for_new_workers(server, workers)  # forked from the parent after its failed load
            time.sleep(0.5)
        finally:
            traffic.stop()
        after = [
            requests.get(f"{server.url}{path}", timeout=10, headers={"Connection": "close"}).status_code
            for path in ("/health", "/metrics", "/?query=fine")
            for _ in range(10)
        ]
        stopped_in = stop_with_sigterm(server)
        left = processes_left(server.process.pid)
    assert traffic.failures == [] and traffic.answered > 20
    assert set(traffic.versions) == {old}
    assert after == [200] * 30
    [refusal] = error_records(server)
    assert refusal.startswith("reload refused, still serving ") and f": {folder}: " in refusal and refusal.endswith(f"{kind})")
    assert "Traceback" not in server.stderr.read_text()
    assert server.process.returncode == 0 and stopped_in < STOP_BOUND
    assert left == [] and list(temp.iterdir()) == [], "the workers stopped, then their metrics folder went"


def test_sigterm_during_a_reload_stops_the_server_in_time(tmp_path: Path) -> None:
    """Replacing 6 workers a second apart outlasts the bound: the stop is then forced, and nothing is left."""
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {"WEB_CONCURRENCY": "6", "ACCESS_LOG": "", "TMPDIR": str(temp), **STOP_SETTINGS}
    with serving(production_command(), env, tmp_path) as server:
        wait_for_workers(server, 6)
        os.kill(server.process.pid, signal.SIGHUP)
        time.sleep(0.2)
        stopped_in = stop_with_sigterm(server)
        left = processes_left(server.process.pid)
    assert stopped_in < STOP_BOUND
    assert left == [] and list(temp.iterdir()) == []
    forced = "not stopped 3.5 s after SIGTERM: killing the workers" in error_records(server)
    assert forced == (server.process.returncode == 1)


def test_a_failing_server_stops_its_workers_before_removing_their_metrics_folder(tmp_path: Path) -> None:
    """granian raising out of its loop (here: no worker can be forked) ends the server in one line, workers first."""
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {"WEB_CONCURRENCY": "2", "ACCESS_LOG": "", "TMPDIR": str(temp), **STOP_SETTINGS}
    with serving([sys.executable, "-m", "tests.server_that_cannot_fork"], env, tmp_path) as server:
        wait_for_workers(server, 2)
        assert requests.get(f"{server.url}/metrics", timeout=10).status_code == 200
        [metrics] = temp.iterdir()
        started = time.monotonic()
        os.kill(server.process.pid, signal.SIGHUP)
        server.process.wait(timeout=30)
        stopped_in = time.monotonic() - started
        left = processes_left(server.process.pid)
    assert server.process.returncode == 1 and stopped_in < 2 + 1  # GRACEFUL_TIMEOUT + 1
    assert "server failed, stopping the workers: [Errno 11] Resource temporarily unavailable (BlockingIOError)" in (
        error_records(server)
    )
    assert "Traceback" not in server.stderr.read_text()
    assert left == [] and not metrics.exists()


def test_importing_the_server_loads_no_metrics_library() -> None:
    """prometheus_client reads PROMETHEUS_MULTIPROC_DIR as it loads: only after serve() has set it may anything import it."""
    probe = "import sys, lib.server; print(*sorted(sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    loaded = done.stdout.split()
    assert "lib.server" in loaded
    assert [name for name in loaded if name.startswith("prometheus")] == []
    assert not {"app", "lib.observability", "lib.metric_files"} & set(loaded), "nothing that loads the metrics library"


def test_production_defaults_are_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("HOST", "PORT", "WEB_CONCURRENCY", "CLIENT_TIMEOUT", "DRAIN_SECONDS", "GRACEFUL_TIMEOUT"):
        monkeypatch.delenv(variable, raising=False)
    settings, config = read_settings(os.environ)
    assert (config.host, config.port) == ("127.0.0.1", 8000)
    assert config.workers == available_cpus()
    server = granian_server(config, settings)
    assert (server.bind_addr, server.bind_port, server.workers) == ("127.0.0.1", 8000, available_cpus())
    assert server.blocking_threads == 1 and server.backpressure > 0 and server.respawn_failed_workers
    assert server.http1_settings.header_read_timeout == 5000 and server.workers_kill_timeout == 30
    assert not server.reload_on_changes


def test_oversized_url_and_headers_are_refused(production_server: Server) -> None:
    too_long = requests.get(production_server.url, params={"query": "a" * 9000}, timeout=10)
    assert too_long.status_code == 414
    assert too_long.headers["Content-Type"] == "application/json"
    assert too_long.json()["message"].startswith("URI Too Long")
    bad_header = requests.get(f"{production_server.url}/health", headers={"X-Big": "b" * 1_000_000}, timeout=10)
    assert bad_header.status_code == 431  # granian's own answer, with no body; nginx in front answers in JSON


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
        # granian ends the body where the framing breaks; the app then refuses what arrived (nginx refuses the framing)
        (b"zz\r\nabc\r\n0\r\n\r\n", b"400", b'"message"'),
        (b"0x10\r\n0123456789abcdef\r\n0\r\n\r\n", b"400", b'"message"'),
        (b"10 \r\n0123456789abcdef\r\n0\r\n\r\n", b"400", b'"message"'),
        (b"4\r\nabcd0\r\n\r\n", b"400", b'"message"'),
        (b'4\r\n{"q"\r\n0\r\nContent-Length: 5\r\n\r\n', b"400", b'"message"'),
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


PROXY_HEADERS = (
    b"SCRIPT_NAME: /evil\r\nX-Forwarded-Prefix: /evil\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-For: 10.9.9.9\r\n"
)


def test_client_cannot_set_script_name_or_forwarded_headers(production_server: Server) -> None:
    request = b"GET /docs HTTP/1.1\r\nHost: x\r\n" + PROXY_HEADERS + b"X-Request-ID: unproxied-1\r\nConnection: close\r\n\r\n"
    answer = raw_exchange(production_server, request)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"/evil" not in answer and b"evil.example" not in answer
    time.sleep(0.5)
    [line] = [json.loads(line) for line in production_server.stdout.read_text().splitlines() if "unproxied-1" in line]
    assert line["remote"] == "127.0.0.1"


def test_listed_proxy_may_mount_the_service_under_a_prefix(tmp_path: Path) -> None:
    env = {"WEB_CONCURRENCY": "1", "FORWARDED_ALLOW_IPS": "127.0.0.1"}
    with serving(production_command(), env, tmp_path) as server:
        request = b"GET /docs HTTP/1.1\r\nHost: x\r\n" + PROXY_HEADERS + b"X-Request-ID: proxied-1\r\nConnection: close\r\n\r\n"
        answer = raw_exchange(server, request)
        assert answer.startswith(b"HTTP/1.1 200") and b"/evil/openapi.json" in answer, answer[:300]
        time.sleep(0.5)
        [line] = [json.loads(line) for line in server.stdout.read_text().splitlines() if "proxied-1" in line]
    assert line["remote"] == "10.9.9.9"


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
        ("WEB_CONCURRENCY", "0", "Config 'WEB_CONCURRENCY' has value '0'. Not a number of workers (1-256)."),
        ("CLIENT_TIMEOUT", "-3", "Config 'CLIENT_TIMEOUT' has value '-3'. Not a number of seconds from 0.1 to 600."),
        ("CLIENT_TIMEOUT", "0", "Config 'CLIENT_TIMEOUT' has value '0'. Not a number of seconds from 0.1 to 600."),
        ("CLIENT_TIMEOUT", "1e30", "Config 'CLIENT_TIMEOUT' has value '1e30'. Not a number of seconds from 0.1 to 600."),
        ("GRACEFUL_TIMEOUT", "abc", "Config 'GRACEFUL_TIMEOUT' has value 'abc'. Not a number of seconds from 1 to 3,600."),
        ("GRACEFUL_TIMEOUT", "inf", "Config 'GRACEFUL_TIMEOUT' has value 'inf'. Not a number of seconds from 1 to 3,600."),
        ("DRAIN_SECONDS", "soon", "Config 'DRAIN_SECONDS' has value 'soon'. Not a number of seconds from 0 to 600."),
        ("DRAIN_SECONDS", "1e300", "Config 'DRAIN_SECONDS' has value '1e300'. Not a number of seconds from 0 to 600."),
        ("MAX_BATCH", "-1", "Config 'MAX_BATCH' has value '-1'. Not a whole number from 1 to 100,000."),
        ("MAX_BODY_BYTES", "1e30", "Config 'MAX_BODY_BYTES' has value '1e30'. Not a whole number from 1 to 1,073,741,824."),
        ("LOG_LEVEL", "verbose", "Config 'LOG_LEVEL' has value 'VERBOSE'. Expected DEBUG, INFO, WARNING, ERROR or CRITICAL."),
        ("PORT", "99999", "Config 'PORT' has value '99999'. Not a port number (1-65535)."),
        (
            "PROMETHEUS_MULTIPROC_DIR",
            "/nonexistent",
            "Config 'PROMETHEUS_MULTIPROC_DIR' has value '/nonexistent'. Not a writable folder.",
        ),
    ],
)
def test_bad_setting_is_one_line_naming_it(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        read_settings({variable: value})
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WEB_CONCURRENCY", "0"),
        ("MAX_BATCH", "-1"),
        ("HOST", "not a host"),
        ("HOST", "999.1.1.1"),
        ("CORS_ORIGINS", "^(unclosed"),
        ("FORWARDED_ALLOW_IPS", "10.0.0.0/33"),
    ],
)
def test_bad_setting_stops_the_server_with_one_line(variable: str, value: str) -> None:
    """One line on stderr, status 1, no traceback, and no worker ever started."""
    env = {**os.environ, "PORT": str(free_port()), variable: value}
    result = subprocess.run(production_command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"Error: Config {variable!r} has value {value!r}.")
    assert len(result.stderr.strip().splitlines()) == 1


def test_oversized_upload_with_expect_continue_is_refused_without_100_continue(production_server: Server) -> None:
    """The client waits for 100 Continue before sending 3 MB; it gets the 413 instead, and sends nothing."""
    head = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3000000\r\n"
        b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    answer = raw_exchange(production_server, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"100 Continue" not in answer and b"larger than the limit" in answer


#: The production server's own numeric settings, and one of the service's whose 10**30 broke every chunked request.
SERVER_NUMBERS = ("PORT", "WEB_CONCURRENCY", "CLIENT_TIMEOUT", "DRAIN_SECONDS", "GRACEFUL_TIMEOUT", "MAX_BODY_BYTES")
ATTACKS = ["inf", "-inf", "nan", "1e300", str(10**30), "-1", "0", "lots"]


@pytest.mark.parametrize("variable", SERVER_NUMBERS)
def test_every_server_number_out_of_range_stops_the_server_with_one_line(variable: str) -> None:
    """Each value is read within its range (tests/test_settings.py checks which), or the command exits 1 naming it."""
    refused = []
    for value in ATTACKS:
        try:
            read_settings({variable: value})
        except ConfigError:
            refused.append(value)
    assert {"inf", "-inf", "nan", "1e300", str(10**30), "-1", "lots"} <= set(refused)
    environ = {key: value for key, value in os.environ.items() if key not in NUMERIC_RANGES}
    for value in refused:
        env = {**environ, "PORT": str(free_port()), variable: value}
        result = subprocess.run(production_command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, (variable, value, result.stderr[-500:])
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"Error: Config {variable!r} has value {value!r}. Not "), line


def listener(host: str, port: int = 0) -> socket.socket:
    """A socket listening on host:port the way granian's workers do (SO_REUSEPORT), which a second granian would join."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    held = socket.socket(family, socket.SOCK_STREAM)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        held.bind((host, port))
    except OSError as exc:
        held.close()
        pytest.skip(f"cannot listen on {host}: {exc}")
    held.listen()
    return held


def start_on(host: str, port: int) -> subprocess.CompletedProcess[str]:
    """Run the production command on host:port, expecting it to refuse."""
    env = {**os.environ, "HOST": host, "PORT": str(port)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.run(production_command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_a_second_server_on_a_served_port_is_refused_and_the_first_serves_on(production_server: Server) -> None:
    """granian's SO_REUSEPORT would let it start and take part of the first one's connections: one line, status 1."""
    started = time.monotonic()
    result = start_on("127.0.0.1", production_server.port)
    assert result.returncode == 1 and time.monotonic() - started < 10, "refused before any model loads"
    assert result.stderr.strip() == (
        f"Error: 127.0.0.1:{production_server.port} is already in use (HOST, PORT): "
        "stop the server listening there, or choose another PORT."
    )
    answers = [requests.get(f"{production_server.url}/health", timeout=10, headers={"Connection": "close"}) for _ in range(20)]
    assert [answer.status_code for answer in answers] == [200] * 20


@pytest.mark.parametrize(
    ("held", "host", "shown"),
    [
        ("127.0.0.1", "127.0.0.1", "127.0.0.1:{port}"),
        ("0.0.0.0", "127.0.0.1", "127.0.0.1:{port}"),  # a server on every interface holds the loopback's port too
        ("::1", "::1", "[::1]:{port}"),
        ("localhost", "localhost", "{address}:{port} (localhost)"),
    ],
)
def test_busy_address_is_refused_in_one_line_naming_it(held: str, host: str, shown: str) -> None:
    address = ServerSettings.from_mapping({"HOST": held}).address
    with listener(address) as holder:
        port = holder.getsockname()[1]
        result = start_on(host, port)
    assert result.returncode == 1
    where = shown.format(port=port, address=address)
    assert result.stderr.strip() == (
        f"Error: {where} is already in use (HOST, PORT): stop the server listening there, or choose another PORT."
    )


def test_address_not_on_this_machine_is_refused_in_one_line() -> None:
    result = start_on("192.0.2.1", free_port())  # TEST-NET-1: no interface of this machine has it
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: Cannot listen on 192.0.2.1:")
    assert line.endswith("(HOST, PORT): Cannot assign requested address.")


def test_a_free_address_is_not_refused() -> None:
    """The check binds without listening: it leaves nothing behind, and a restart's TIME_WAIT does not refuse it."""
    port = free_port()
    with listener("127.0.0.1", port) as previous:  # a connection closed by the server stays in TIME_WAIT on its port
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = previous.accept()
        accepted.close()
        client.close()
    assert address_refusal(ServerSettings.from_mapping({"PORT": str(port)})) is None
    assert address_refusal(ServerSettings.from_mapping({"PORT": str(port)})) is None


@pytest.mark.skipif(shutil.which("make") is None, reason="no make (apt-get install make)")
def test_make_production_writes_only_json_on_stdout(tmp_path: Path) -> None:
    """`make production | jq` works: make echoes no command, and notes for people go to stderr."""
    command = ["make", "--no-print-directory", f"BIN={Path(sys.executable).parent}", "-o", ".venv/.runtime", "production"]
    with serving(command, {"WEB_CONCURRENCY": "1", "ACCESS_LOG": "-"}, tmp_path, name="make") as server:
        assert requests.get(server.url, {"query": "good"}, timeout=10).status_code == 200
        deadline = time.monotonic() + 5
        while not server.stdout.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.1)
    lines = server.stdout.read_text().splitlines()
    assert lines and all(isinstance(json.loads(line), dict) for line in lines), lines
