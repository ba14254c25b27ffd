"""What wraps every request (lib/middleware.py): the body-size gate, security headers, CORS."""

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder

from app import create_app


def test_body_over_limit_is_413_with_the_limit(client: FlaskClient) -> None:
    response = client.post("/", json={"queries": ["x" * 5000]})
    assert response.status_code == 413
    assert response.json == {"message": "Request body is larger than the limit of 4,096 bytes."}


def test_body_over_limit_is_refused_even_when_query_is_in_url(client: FlaskClient) -> None:
    response = client.get("/?query=good", data="x" * 5000, content_type="text/plain")
    assert response.status_code == 413


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


def test_cors_origins_from_configuration(tiny_models: Path) -> None:
    app = create_app({"MODELS_DIR": str(tiny_models), "CORS_ORIGINS": "https://app.example.com"})
    client = app.test_client()
    assert (
        client.get("/health", headers={"Origin": "https://app.example.com"}).headers["Access-Control-Allow-Origin"]
        == "https://app.example.com"
    )
    assert "Access-Control-Allow-Origin" not in client.get("/health", headers={"Origin": "http://localhost:3000"}).headers
    closed = create_app({"MODELS_DIR": str(tiny_models), "CORS_ORIGINS": ""}).test_client()
    assert "Access-Control-Allow-Origin" not in closed.get("/health", headers={"Origin": "http://localhost:3000"}).headers


def test_cors_headers_on_errors_and_only_for_browsers(client: FlaskClient) -> None:
    origin = {"Origin": "http://localhost:3000"}
    for response in (client.get("/nowhere", headers=origin), client.get("/", headers=origin), client.delete("/", headers=origin)):
        assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000", response.status_code
    assert not any(name.startswith("Access-Control-") for name in client.get("/?query=good").headers.keys())


def test_one_step_before_and_after_every_request(app: Flask) -> None:
    """Every hook costs each request a few microseconds: the service keeps one each way."""
    assert len(app.before_request_funcs[None]) == 1
    assert len(app.after_request_funcs[None]) == 1


def chunked(client: FlaskClient, stream: io.RawIOBase | io.BytesIO) -> tuple[int, dict]:
    """POST a body the way a chunked upload arrives: no Content-Length, the server decoding the chunks."""
    environ = EnvironBuilder(path="/", method="POST", content_type="application/json").get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": stream, "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"})
    status: list[str] = []

    def start_response(line: str, headers: list[tuple[str, str]], *exc_info: object) -> Callable[[bytes], object]:
        status.append(line)
        return io.BytesIO().write  # WSGI's legacy write(), which Flask never calls

    body = b"".join(client.application(environ, start_response))
    return int(status[0].split()[0]), json.loads(body)


def test_chunked_body_within_the_limit_is_read_whole(client: FlaskClient) -> None:
    status, answer = chunked(client, io.BytesIO(json.dumps({"queries": ["good", "awful dull"]}).encode()))
    assert status == 200 and len(answer["predictions"]) == 2


def test_chunked_body_over_the_limit_is_413_not_cut(client: FlaskClient) -> None:
    body = json.dumps({"queries": ["x" * 40] * 200}).encode()  # 9 KB against the fixture's 4,096 bytes
    status, answer = chunked(client, io.BytesIO(body))
    assert status == 413 and "4,096 bytes" in answer["message"]


class BrokenChunks(io.RawIOBase):
    """A server's chunk decoder that meets a bad chunk size."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        raise ValueError("Invalid chunk size: 'zz'")


def test_malformed_chunks_are_400(client: FlaskClient) -> None:
    status, answer = chunked(client, BrokenChunks())
    assert status == 400 and "Malformed chunked request body" in answer["message"]


def test_too_many_form_parts_says_so(tiny_models: Path) -> None:
    client = create_app({"MODELS_DIR": str(tiny_models)}).test_client()  # the default 2 MB body limit
    body = "--b\r\n" + "".join(f'Content-Disposition: form-data; name="f{i}"\r\n\r\nx\r\n--b\r\n' for i in range(1001))
    response = client.post("/", data=body[:-2] + "--\r\n", content_type="multipart/form-data; boundary=b")
    assert response.status_code == 413
    assert "more than 1,000 parts" in response.json["message"]


def test_url_over_the_limit_is_414_whatever_the_server(client: FlaskClient) -> None:
    response = client.get("/", query_string={"query": "a" * 9000})
    assert response.status_code == 414 and response.json["message"].startswith("URI Too Long")
    assert client.get("/", query_string={"query": "a" * 7000}).status_code == 413  # within the URL limit: the query limit


FORWARDED = {"X-Forwarded-For": "10.9.9.9", "X-Forwarded-Prefix": "/api", "X-Forwarded-Host": "api.example"}


def test_forwarded_headers_are_ignored_unless_from_a_listed_proxy(tiny_models: Path) -> None:
    listed = {"MODELS_DIR": str(tiny_models), "FORWARDED_ALLOW_IPS": "10.0.0.5"}
    for config, remote, prefixed in [
        ({"MODELS_DIR": str(tiny_models)}, "10.0.0.5", False),  # no proxy listed: nobody's headers count
        (listed, "10.0.0.6", False),  # not the listed proxy
        (listed, "10.0.0.5", True),
        ({**listed, "FORWARDED_ALLOW_IPS": "*"}, "192.0.2.1", True),
    ]:
        page = create_app(config).test_client().get("/docs", headers=FORWARDED, environ_base={"REMOTE_ADDR": remote})
        assert page.status_code == 200
        assert ("/api/openapi.json" in page.get_data(as_text=True)) is prefixed, (config, remote)


@pytest.mark.parametrize(
    ("allowed", "remote", "prefixed"),
    [
        ("10.0.0.0/8", "10.200.3.4", True),
        ("10.0.0.0/8", "11.0.0.1", False),
        ("192.0.2.0/24,10.0.0.5", "10.0.0.5", True),
        ("fd00::/8", "fd12::7", True),
        ("fd00::/8", "fe80::1", False),
        ("10.0.0.0/8", "::ffff:10.1.1.1", True),  # an IPv4 proxy seen on a dual-stack socket
        ("10.0.0.0/8", "not an address", False),
        ("10.0.0.0/8", "", False),
    ],
)
def test_trusted_proxies_may_be_networks(tiny_models: Path, allowed: str, remote: str, prefixed: bool) -> None:
    config = {"MODELS_DIR": str(tiny_models), "FORWARDED_ALLOW_IPS": allowed}
    page = create_app(config).test_client().get("/docs", headers=FORWARDED, environ_base={"REMOTE_ADDR": remote})
    assert page.status_code == 200
    assert ("/api/openapi.json" in page.get_data(as_text=True)) is prefixed
