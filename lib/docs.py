"""Serving the API's description: ``/openapi.json``, and Swagger UI at ``/docs`` with its assets served locally.

The assets come from the installed ``swagger_ui_bundle`` package, never a CDN: users' networks may be closed.
The document is built by ``lib.openapi`` (which reads this module's asset table to describe these pages) from
the served models, and rebuilt only when a reload changes their versions.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, send_from_directory, url_for
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import NotFound

from lib.registry import ModelRegistry, ServedModel
from lib.settings import Settings

#: What builds the OpenAPI document: ``lib.openapi.document``, handed in by the app factory.
Document = Callable[[Settings, Iterable[ServedModel]], dict[str, Any]]

#: The page's one inline script, the same on every page: the document's URL comes from the page (a data attribute), so
#: the Content-Security-Policy admits this exact script by its hash and no other inline script. No validator: Swagger
#: UI would send the document's URL to validator.swagger.io for a badge.
INIT_SCRIPT = (
    'window.ui = SwaggerUIBundle({url: document.getElementById("swagger-ui").dataset.url, dom_id: "#swagger-ui", '
    "deepLinking: true, validatorUrl: null});"
)

DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Sentiment API</title>
  <link rel="stylesheet" href="{css}">
  <link rel="icon" type="image/png" href="{icon}">
</head>
<body>
  <div id="swagger-ui" data-url="{spec}"></div>
  <script src="{js}"></script>
  <script>{init}</script>
</body>
</html>
"""

#: Swagger UI needs its own script and style sheet, and the init script above; its style sheet draws icons as data:
#: images, and "Try it out" calls this service. Nothing else loads, no page may frame it, no form posts elsewhere.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        f"script-src 'self' 'sha256-{base64.b64encode(hashlib.sha256(INIT_SCRIPT.encode()).digest()).decode()}'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

ASSET_MAX_AGE = 3600  # seconds; the bundle's files only change with the package version
#: The bundle files /docs needs, with their types (not guessed: Python's guess for .js varies by platform).
#: The bundle's own index.html and initializer are left out: they load the petstore example from the internet.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}


def register(app: Flask, settings: Settings, registry: ModelRegistry, document: Document) -> None:
    """Serve ``document`` at /openapi.json (rebuilt only when the served versions change), /docs and its assets."""
    built: dict[tuple[str, ...], str] = {}

    def openapi_json() -> Response:
        versions = tuple(model.version for model in registry.models.values())
        if versions not in built:
            built.clear()
            built[versions] = json.dumps(document(settings, registry.models.values()), indent=2) + "\n"
        return Response(built[versions], mimetype="application/json")

    def docs() -> Response:
        page = DOCS_PAGE.format(
            css=html.escape(url_for("docs_asset", filename="swagger-ui.css")),
            icon=html.escape(url_for("docs_asset", filename="favicon-32x32.png")),
            js=html.escape(url_for("docs_asset", filename="swagger-ui-bundle.js")),
            spec=html.escape(url_for("openapi_json")),
            init=INIT_SCRIPT,
        )
        response = Response(page, mimetype="text/html")
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def docs_asset(filename: str) -> Response:
        if filename not in ASSETS:
            raise NotFound()
        response = send_from_directory(swagger_ui_path, filename, mimetype=ASSETS[filename], max_age=ASSET_MAX_AGE)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response

    app.add_url_rule("/openapi.json", "openapi_json", openapi_json, methods=["GET"])
    app.add_url_rule("/docs", "docs", docs, methods=["GET"])
    app.add_url_rule("/docs/<path:filename>", "docs_asset", docs_asset, methods=["GET"])
