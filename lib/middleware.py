"""What every request passes through besides its view: the body-size gate, security headers and CORS."""

from __future__ import annotations

from flask import Flask, Response, current_app, request
from flask_cors import CORS
from werkzeug.exceptions import RequestEntityTooLarge

from lib.observability import REQUEST_ID_HEADER
from lib.settings import Settings


def refuse_large_bodies() -> None:
    """Answer 413 from the Content-Length alone, before any of the body is read or parsed."""
    length = request.content_length
    if length is not None and length > current_app.config["MAX_CONTENT_LENGTH"]:
        raise RequestEntityTooLarge()


def secure_headers(response: Response) -> Response:
    """Tell browsers not to sniff types, and caches not to keep answers about users' texts."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def protect(app: Flask, settings: Settings) -> None:
    """Install the body-size gate, the security headers and (when origins are set) CORS."""
    app.before_request(refuse_large_bodies)
    app.after_request(secure_headers)
    if settings.cors_origins:
        CORS(app, origins=list(settings.cors_origins), methods=["GET", "POST"], expose_headers=[REQUEST_ID_HEADER], max_age=600)
