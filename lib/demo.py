"""The demo page at ``/demo``: one static page (``lib/static``: HTML, a script, a style sheet) that calls the public API.

No build step, no CDN, no framework: the files are served as they are. Every URL in them is relative, so the page
works wherever the service is mounted (under a path prefix behind a proxy too). The Content-Security-Policy lets the
page load only this service's own script, style sheet and API, and run no inline script or style; the script writes
what users type and what the API answers with ``textContent`` only, never as HTML.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, send_from_directory
from werkzeug.exceptions import NotFound

STATIC = Path(__file__).resolve().parent / "static"
PAGE = "demo.html"
#: The page's assets, with their types (not guessed: Python's guess for .js varies by platform).
ASSETS = {"demo.js": "text/javascript", "demo.css": "text/css"}
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


def register(app: Flask) -> None:
    """Serve /demo and its assets, revalidated by ETag so a new release shows at once."""

    def demo() -> Response:
        response = send_from_directory(STATIC, PAGE, mimetype="text/html")
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def demo_asset(filename: str) -> Response:
        if filename not in ASSETS:
            raise NotFound()
        return send_from_directory(STATIC, filename, mimetype=ASSETS[filename])

    app.add_url_rule("/demo", "demo", demo, methods=["GET"])
    app.add_url_rule("/demo/<path:filename>", "demo_asset", demo_asset, methods=["GET"])
