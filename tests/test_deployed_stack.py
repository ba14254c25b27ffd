"""The deployed stack on loopback: nginx (deploy/nginx.conf, as the pod runs it) in front of the production server.

Stalled clients, Expect: 100-continue, the body limit at the edge, and replicas killed under load. nginx runs
unprivileged with every file it writes under a fresh folder, as in the pod (tests/support/proxy.py).
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from lib.settings import Settings
from tests.helpers import raw_exchange
from tests.support.failover import kill_drill, post_in_flight
from tests.support.harness import HOST, Server, production_command, serving
from tests.support.proxy import proxying
from tests.support.stall import STALLS, health_under_stall, settle

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("nginx") is None, reason="needs nginx, Debian's package: apt-get install -y nginx"),
]

STALLED_CLIENTS = 40
STALL_SECONDS = 7.0  # longer than nginx's 5 s client timeouts, so they expire while /health is probed
PROBE_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """The production server (2 workers) and nginx in front of it, as in one pod."""
    logs = tmp_path_factory.mktemp("stack")
    with ExitStack() as running:
        app = running.enter_context(serving(production_command(), {"WEB_CONCURRENCY": "2"}, logs, name="app"))
        proxy = running.enter_context(proxying([app.port], logs))
        yield app, proxy


@pytest.mark.parametrize("stall", list(STALLS))
def test_stalled_clients_never_delay_health_through_nginx(stack: tuple[Server, Server], stall: str) -> None:
    _, proxy = stack
    result = health_under_stall(proxy, stall, STALLED_CLIENTS, STALL_SECONDS, PROBE_TIMEOUT)
    assert result.timed_out == 0 and result.worst_s < 1.0, result
    assert result.probes > 10


@pytest.mark.parametrize("stall", list(STALLS))
def test_bare_server_under_the_same_stall_is_measured(stack: tuple[Server, Server], stall: str) -> None:
    """Not a target (the README states what the bare server does): measured and shown, then it must recover."""
    app, _ = stack
    result = health_under_stall(app, stall, STALLED_CLIENTS, STALL_SECONDS, PROBE_TIMEOUT)
    print(f"bare server, {STALLED_CLIENTS} stalled clients ({stall}): {result.describe(PROBE_TIMEOUT)}")
    assert result.probes >= 1
    settle(app.url, PROBE_TIMEOUT)  # raises if /health is still slow a minute after the stalled clients left


def test_oversized_expect_100_continue_is_refused_before_100(stack: tuple[Server, Server]) -> None:
    _, proxy = stack
    too_large = Settings().max_body_bytes + 1
    head = (
        f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
        f"Content-Length: {too_large}\r\n\r\n"
    )
    answer = raw_exchange(proxy, head.encode())
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["message"].startswith("Payload Too Large")


def test_a_body_within_the_limit_is_sent_100_continue_and_answered(stack: tuple[Server, Server]) -> None:
    _, proxy = stack
    body = b'{"query": "a fine film"}'
    head = f"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {len(body)}\r\n"
    head += "Content-Type: application/json\r\n"
    with socket.create_connection((HOST, proxy.port), timeout=10) as connection:
        connection.sendall(head.encode() + b"Connection: close\r\n\r\n")
        assert connection.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        connection.sendall(body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_body_limit_at_the_edge_is_the_apps(stack: tuple[Server, Server]) -> None:
    _, proxy = stack
    limit = Settings().max_body_bytes
    query = b'{"query": "a fine film"}'
    exactly = query + b" " * (limit - len(query))  # JSON allows the trailing whitespace
    assert requests.post(proxy.url, data=exactly, headers={"Content-Type": "application/json"}, timeout=30).status_code == 200
    over = requests.post(proxy.url, data=exactly + b" ", headers={"Content-Type": "application/json"}, timeout=30)
    assert over.status_code == 413 and over.headers["Server"] == "nginx"
    assert over.json()["message"] == f"Payload Too Large: the body exceeds {limit} bytes."


def test_proxy_passes_request_ids_and_logs_json(stack: tuple[Server, Server]) -> None:
    _, proxy = stack
    answer = requests.get(proxy.url, {"query": "a fine film"}, headers={"X-Request-ID": "edge-check-1"}, timeout=10)
    assert answer.headers["X-Request-ID"] == "edge-check-1" and answer.headers["Server"] == "nginx"
    bad_id = requests.get(f"{proxy.url}/health", headers={"X-Request-ID": "bad id!"}, timeout=10)
    assert bad_id.headers["X-Request-ID"] != "bad id!"
    made_id = bad_id.headers["X-Request-ID"]
    lines = logged_lines(proxy, lambda found: {"edge-check-1", made_id} <= {line["request_id"] for line in found})
    [logged] = [line for line in lines if line["request_id"] == "edge-check-1"]
    assert logged["path"] == "/" and logged["status"] == 200 and "fine" not in json.dumps(logged)
    assert any(line["request_id"] == made_id for line in lines)


def logged_lines(proxy: Server, complete: Callable[[list[dict]], bool], timeout: float = 5.0) -> list[dict]:
    """nginx's access-log lines once ``complete`` says they are all there: nginx logs a request after answering it."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(line) for line in proxy.stdout.read_text().splitlines() if line.strip()]
        if complete(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_errors_made_by_nginx_are_json(stack: tuple[Server, Server]) -> None:
    _, proxy = stack
    metrics = requests.get(f"{proxy.url}/metrics", timeout=10)
    assert metrics.status_code == 403 and "message" in metrics.json()
    too_long = requests.get(proxy.url, {"query": "a" * 9000}, timeout=10)
    assert too_long.status_code == 414 and too_long.json()["message"].startswith("URI Too Long")


def test_killing_a_replica_under_load_fails_no_get(tmp_path: Path) -> None:
    result = kill_drill(tmp_path, replicas=3, workers=1, seconds=6.0)
    print(f"kill drill: {result}")
    assert result.outcomes["GET"].get("200", 0) > 100
    # nginx retries every GET that fails before an answer started; one whose answer the killed replica was writing
    # at that instant is torn (nginx had passed its headers on), seen once in 5,581 here: at most one, of that kind.
    torn = {"ChunkedEncodingError"}
    assert result.get_failed <= 1 and set(result.outcomes["GET"]) <= {"200"} | torn, result.outcomes
    assert set(result.outcomes["POST"]) <= {"200", "502"}, "a POST is answered or refused with 502, nothing else"
    assert result.seconds_to_traffic is not None and result.answered_by_restarted > 0, "the restarted replica serves again"


def test_a_post_in_flight_on_a_killed_replica_gets_502_and_gets_are_retried(tmp_path: Path) -> None:
    outcomes = post_in_flight(tmp_path, replicas=2, workers=1)
    print(f"POST in flight: {outcomes}")
    assert outcomes["GET"] == {"200": 6}
    assert set(outcomes["POST"]) == {"200", "502"}, outcomes
