"""What every request passes through besides its view, as one step before and one after it.

Before: the start time, the request id (a safe incoming X-Request-ID, else a new one), the URL-length
gate (414) and the body-size gate (413 from the Content-Length alone, before any of the body is read). After: the
Prometheus counts and latency, the JSON access-log line, the X-Request-ID header, the security headers, and flask-cors's
CORS headers for requests that carry an Origin. One hook each way, because every hook costs each
request a few microseconds of Flask's dispatch, and each step looks the request and ``g`` up once:
every access through Flask's context proxies costs about 2 us (measured: see README, Performance).
"""

from __future__ import annotations

import functools
import io
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, cast

from flask import Flask, Response, g, request
from flask_cors import CORS
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from lib.errors import RequestRefused
from lib.headers import MODEL_VERSION_HEADER, REQUEST_ID_HEADER
from lib.observability import SAFE_REQUEST_ID, AccessLog, Metrics
from lib.settings import MAX_URL_BYTES, Settings

log = logging.getLogger(__name__)

#: Methods counted under their own name in the metrics; any other token counts as "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: The same limit under any server (granian itself takes request lines of hundreds of kilobytes).
URL_TOO_LONG = f"URI Too Long: the URL is over {MAX_URL_BYTES:,} bytes. Send long texts in a body (form or JSON)."

#: Answers are about users' texts: no cache keeps them, and no browser sniffs their type.
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff"}


def install(app: Flask, settings: Settings, metrics: Metrics) -> None:
    """Register the one before-request and one after-request step (CORS included, when origins are set)."""
    max_body_bytes = settings.max_body_bytes
    cors = cors_step(app, settings)
    access_log = AccessLog(settings.log_queries, settings.query_log_key) if settings.access_log else None

    def begin() -> None:
        """Time the request, name it, and refuse an oversized body before reading it."""
        current, context = request._get_current_object(), g._get_current_object()  # type: ignore[attr-defined]
        context.started = time.perf_counter()
        environ = current.environ
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        context.request_id = incoming if SAFE_REQUEST_ID.fullmatch(incoming) else secrets.token_hex(16)
        if len(environ.get("QUERY_STRING", "")) + len(environ.get("PATH_INFO", "")) > MAX_URL_BYTES:
            raise RequestRefused(414, URL_TOO_LONG)
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            buffer_chunked_body(environ, max_body_bytes)
        length = current.content_length
        if length is not None and length > max_body_bytes:
            raise RequestEntityTooLarge()

    def finish(response: Response) -> Response:
        """Count and time the answer, and stamp it with the request id and the security headers."""
        current, context = request._get_current_object(), g._get_current_object()  # type: ignore[attr-defined]
        rule = current.url_rule
        endpoint = rule.rule if rule is not None else "unmatched"  # never the raw path: unbounded labels
        started = getattr(context, "started", None) or time.perf_counter()
        method = current.method if current.method in KNOWN_METHODS else "other"  # any 3-20 letter token arrives here
        seconds = time.perf_counter() - started
        metrics.observe_request(endpoint, method, response.status_code, seconds)
        request_id = getattr(context, "request_id", None) or secrets.token_hex(16)
        environ = current.environ
        if access_log is not None:
            access_log.record(environ, response.status_code, response.content_length, seconds, request_id)
        headers = response.headers
        headers[REQUEST_ID_HEADER] = request_id
        headers.update(SECURITY_HEADERS)
        # Not `"Cache-Control" in headers`: a miss there builds an HTTP exception (~8 us a request).
        if not any(name.lower() == "cache-control" for name, _ in headers.items()):
            headers["Cache-Control"] = "no-store"
        if cors is not None and "HTTP_ORIGIN" in environ:
            return cors(response)
        return response

    app.before_request(begin)
    app.after_request(finish)
    if settings.forwarded_allow_ips:
        app.wsgi_app = TrustedProxies(app.wsgi_app, settings.forwarded_allow_ips)  # type: ignore[method-assign]


class TrustedProxies:
    """Believe X-Forwarded-For, -Proto, -Host and -Prefix only from the listed proxies ("*": any).

    Each entry is an address or a network (``10.0.0.5``, ``10.0.0.0/8``, ``fd00::/8``), as FORWARDED_ALLOW_IPS lists
    them; an IPv4 client seen on a dual-stack socket (``::ffff:10.0.0.5``) counts as its IPv4 address. From anyone
    else the headers are ignored, so no client can pose as another address or mount the service under a path of its
    choosing. Behind a listed proxy, the prefix it sends is where the demo page and /docs live.
    """

    def __init__(self, app: Callable[..., Any], entries: tuple[str, ...]) -> None:
        self.app = app
        self.behind_proxy = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_prefix=1)
        self.any_address = "*" in entries
        self.networks = tuple(ipaddress.ip_network(entry) for entry in entries if entry != "*")
        # A proxy's address repeats on every request it forwards: parse and match each distinct one once.
        self.is_listed = functools.lru_cache(maxsize=1024)(self.listed)

    def listed(self, remote: str) -> bool:
        """Whether ``remote`` (REMOTE_ADDR) is a listed proxy's address; anything that is no IP address is not."""
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Pass the request on, through ProxyFix when it comes from a listed proxy."""
        if self.any_address or self.is_listed(environ.get("REMOTE_ADDR") or ""):
            return self.behind_proxy(environ, start_response)
        return self.app(environ, start_response)


def buffer_chunked_body(environ: dict[str, Any], limit: int) -> None:
    """Read a chunked body (it has no Content-Length) up to the limit, so an oversized one gets 413, not a silent cut.

    The server decodes the chunks; a malformed chunk is the client's fault and answers 400.
    """
    stream, parts, size = environ["wsgi.input"], [], 0
    try:
        while size <= limit:
            part = stream.read(limit + 1 - size)
            if not part:
                break
            parts.append(part)
            size += len(part)
    except Exception as exc:  # the server's chunk parser: werkzeug and granian raise unrelated types
        log.info("malformed chunked body: %s", " ".join(str(exc).split())[:200])
        raise RequestRefused(400, "Malformed chunked request body (bad chunk size, framing or trailer).") from None
    if size > limit:
        raise RequestEntityTooLarge()
    body = b"".join(parts)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)


def cors_step(app: Flask, settings: Settings) -> Callable[[Response], Response] | None:
    """Return flask-cors's per-response step, taken out of Flask's hook list so it runs only for browsers.

    Only requests with an Origin header (what browsers send cross-origin, preflights included) need
    CORS headers; skipping flask-cors for the rest saves ~25 us a request (measured).
    """
    if not settings.cors_origins:
        return None
    hooks = app.after_request_funcs.setdefault(None, [])
    before = list(hooks)
    CORS(
        app,
        origins=list(settings.cors_origins),
        methods=["GET", "POST"],
        expose_headers=[REQUEST_ID_HEADER, MODEL_VERSION_HEADER],
        max_age=600,
    )
    [step] = [hook for hook in hooks if hook not in before]
    hooks[:] = before
    return cast(Callable[[Response], Response], step)  # flask-cors's step is synchronous
