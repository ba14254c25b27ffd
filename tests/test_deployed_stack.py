"""The deployed stack on loopback: nginx (deploy/nginx.conf, as the pod runs it) in front of the production server.

Stalled clients, Expect: 100-continue, the body limit at the edge, the forwarded headers nginx decides, nginx's own
refusals in the API's error shape, and replicas killed under load. The app believes the forwarded headers of
127.0.0.1, as deploy/deployment.yaml says. nginx runs unprivileged with every file it writes under a fresh folder,
as in the pod (tests/support/proxy.py).
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
import yaml

from lib.settings import Settings
from tests.helpers import raw_exchange
from tests.support.failover import kill_drill, post_in_flight
from tests.support.harness import HOST, ROOT, Server, free_port, production_command, serving
from tests.support.proxy import proxying
from tests.support.stall import STALLS, health_under_stall, settle

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("nginx") is None, reason="needs nginx, Debian's package: apt-get install -y nginx"),
]

STALLED_CLIENTS = 40
STALL_SECONDS = 7.0  # longer than nginx's 5 s client timeouts, so they expire while /health is probed
PROBE_TIMEOUT = 10.0


def pod_env() -> dict[str, str]:
    """The app container's environment in deploy/deployment.yaml (FORWARDED_ALLOW_IPS, WEB_CONCURRENCY, ...), minus PORT."""
    deployment = yaml.safe_load((ROOT / "deploy" / "deployment.yaml").read_text())
    [api] = [container for container in deployment["spec"]["template"]["spec"]["containers"] if container["name"] == "api"]
    return {variable["name"]: variable["value"] for variable in api["env"] if variable["name"] != "PORT"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """The production server (2 workers) and nginx in front of it, as in one pod."""
    logs = tmp_path_factory.mktemp("stack")
    env = pod_env()
    assert env["FORWARDED_ALLOW_IPS"] == HOST and env["WEB_CONCURRENCY"] == "2"
    with ExitStack() as running:
        app = running.enter_context(serving(production_command(), env, logs, name="app"))
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


# --- the forwarded headers are nginx's -----------------------------------------------------------------------------

#: What a client may claim, under every X-Forwarded-* name the app could believe (and one spelt with "_", which
#: granian would read as the same variable).
SPOOFED = {
    "X-Forwarded-Prefix": "//evil.example",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Port": "4443",
    "X-Forwarded-For": "203.0.113.9",
    "X_Forwarded_Prefix": "/underscored",
}


class PageUrls(HTMLParser):
    """The src, href and data-url of every tag."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href", "data-url") and value]


def docs_urls(server: Server, headers: dict[str, str]) -> list[str]:
    page = requests.get(f"{server.url}/docs", headers=headers, timeout=10)
    assert page.status_code == 200
    parser = PageUrls()
    parser.feed(page.text)
    return parser.urls


def test_spoofed_forwarded_headers_do_not_move_the_docs_assets(stack: tuple[Server, Server]) -> None:
    app, proxy = stack
    # Straight to the app, from 127.0.0.1 (the address it believes), both spellings of the prefix move the page.
    assert docs_urls(app, {"X-Forwarded-Prefix": "//evil.example"})[0].startswith("//evil.example/docs/")
    assert docs_urls(app, {"X_Forwarded_Prefix": "/underscored"})[0].startswith("/underscored/docs/")
    urls = docs_urls(proxy, SPOOFED)
    assert urls == docs_urls(proxy, {})
    assert sorted(urls) == ["/docs/favicon-32x32.png", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/openapi.json"]


def test_spoofed_forwarded_headers_do_not_steer_a_redirect(stack: tuple[Server, Server]) -> None:
    _, proxy = stack
    # A doubled slash is merged by a redirect (werkzeug's), whose Location is absolute: scheme, host, port, prefix.
    answer = requests.get(f"{proxy.url}/docs//swagger-ui.css", headers=SPOOFED, allow_redirects=False, timeout=10)
    assert answer.status_code == 308
    assert answer.headers["Location"] == f"{proxy.url}/docs/swagger-ui.css"


def test_logs_name_the_address_nginx_saw(stack: tuple[Server, Server]) -> None:
    app, proxy = stack
    request_id = "spoof-check-1"
    requests.get(f"{proxy.url}/health", headers={**SPOOFED, "X-Request-ID": request_id}, timeout=10).raise_for_status()
    [edge] = [
        line
        for line in logged_lines(proxy, lambda found: any(line["request_id"] == request_id for line in found))
        if line["request_id"] == request_id
    ]
    [inner] = [
        line
        for line in logged_lines(app, lambda found: any(line.get("request_id") == request_id for line in found))
        if line.get("request_id") == request_id
    ]
    assert edge["remote"] == inner["remote"] == HOST


# --- nginx's own refusals: JSON, in the API's error shape -----------------------------------------------------------

HEAD = "Host: x\r\nConnection: close\r\n"
#: The real request that makes nginx refuse with each status, whatever reaches the app.
REFUSALS = {
    "trace": (b"TRACE / HTTP/1.1\r\n" + HEAD.encode() + b"\r\n", 405, "Method Not Allowed"),
    "bad transfer-encoding": (
        b"POST / HTTP/1.1\r\n" + HEAD.encode() + b"Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
        501,
        "Not Implemented",
    ),
    "two hosts": (b"GET / HTTP/1.1\r\n" + HEAD.encode() + b"Host: y\r\n\r\n", 400, "Bad Request"),
    "not http": (b"\x16\x03\x01 hello\r\n\r\n", 400, "Bad Request"),
    "http/3.0": (b"GET / HTTP/3.0\r\n" + HEAD.encode() + b"\r\n", 505, "HTTP Version Not Supported"),
    "body over the limit": (
        b"POST / HTTP/1.1\r\n" + HEAD.encode() + b"Content-Type: application/json\r\nContent-Length: 2097153\r\n\r\n",
        413,
        "Payload Too Large",
    ),
    "uri over 8 KB": (b"GET /?query=" + b"a" * 9000 + b" HTTP/1.1\r\n" + HEAD.encode() + b"\r\n", 414, "URI Too Long"),
    "header over 8 KB": (
        b"GET /health HTTP/1.1\r\n" + HEAD.encode() + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n",
        431,
        "Request Header Fields Too Large",
    ),
    "an internal error page": (b"GET /_errors/bad_gateway HTTP/1.1\r\n" + HEAD.encode() + b"\r\n", 404, "Not Found"),
}


def json_refusal(answer: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    """The status, headers (lower-case names) and JSON body of one raw HTTP answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split(" ")[1]), headers, json.loads(body)


@pytest.mark.parametrize("case", list(REFUSALS))
def test_nginx_refusals_are_json_in_the_error_shape(stack: tuple[Server, Server], case: str) -> None:
    _, proxy = stack
    payload, status, words = REFUSALS[case]
    answered, headers, body = json_refusal(raw_exchange(proxy, payload))
    assert answered == status
    assert headers["content-type"] == "application/json" and headers["server"] == "nginx"
    assert list(body) == ["message"] and str(body["message"]).startswith(f"{words}: ")


def test_metrics_are_refused_at_the_proxy(stack: tuple[Server, Server]) -> None:
    _, proxy = stack
    metrics = requests.get(f"{proxy.url}/metrics", timeout=10)
    assert metrics.status_code == 403 and metrics.headers["Content-Type"] == "application/json"
    assert list(metrics.json()) == ["message"]


def test_a_stalled_body_is_cut_off_without_an_answer(stack: tuple[Server, Server]) -> None:
    """nginx answers nothing on client_body_timeout (5 s): it resets the connection, and its log says 408."""
    _, proxy = stack
    head = "POST / HTTP/1.1\r\nHost: x\r\nX-Request-ID: stalled-body-1\r\nContent-Type: application/json\r\n"
    started = time.monotonic()
    answer = raw_exchange(proxy, (head + "Content-Length: 100\r\n\r\n").encode() + b'{"query": ', timeout=15)
    assert answer == b"" and 4.5 < time.monotonic() - started < 10
    lines = logged_lines(proxy, lambda found: any(line["request_id"] == "stalled-body-1" for line in found))
    assert [line["status"] for line in lines if line["request_id"] == "stalled-body-1"] == [408]


def test_upstream_down_answers_502_in_the_error_shape(stack: tuple[Server, Server], tmp_path: Path) -> None:
    app, _ = stack
    with proxying([app.port], tmp_path) as proxy:
        proxy.route_to([free_port()])  # nothing listens there
        for method in ("GET", "POST"):
            answer = requests.request(method, proxy.url, params={"query": "a fine film"}, timeout=30)
            assert answer.status_code == 502 and answer.headers["Content-Type"] == "application/json", method
            assert answer.json()["message"].startswith("Bad Gateway: "), answer.text


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
