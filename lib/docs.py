"""Serving the API's description: ``/openapi.json``, and Swagger UI at ``/docs`` with its assets served locally.

The assets come from the installed ``swagger_ui_bundle`` package, never a CDN: users' networks may be closed.
The document is built by ``lib.openapi`` (which reads this module's asset table to describe these pages) from
the served models, and rebuilt only when a reload changes their versions.
"""

from __future__ import annotations

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

DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Sentiment API</title>
  <link rel="stylesheet" href="{css}">
  <link rel="icon" type="image/png" href="{icon}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{js}"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: {spec}, dom_id: "#swagger-ui", deepLinking: true}});
  </script>
</body>
</html>
"""

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
            built[versions] = json.dumps(document(settings, registry.models.values()), indent=2)
        return Response(built[versions], mimetype="application/json")

    def docs() -> Response:
        page = DOCS_PAGE.format(
            css=html.escape(url_for("docs_asset", filename="swagger-ui.css")),
            icon=html.escape(url_for("docs_asset", filename="favicon-32x32.png")),
            js=html.escape(url_for("docs_asset", filename="swagger-ui-bundle.js")),
            spec=json.dumps(url_for("openapi_json")).replace("</", "<\\/"),
        )
        return Response(page, mimetype="text/html")

    def docs_asset(filename: str) -> Response:
        if filename not in ASSETS:
            raise NotFound()
        return send_from_directory(swagger_ui_path, filename, mimetype=ASSETS[filename], max_age=ASSET_MAX_AGE)

    app.add_url_rule("/openapi.json", "openapi_json", openapi_json, methods=["GET"])
    app.add_url_rule("/docs", "docs", docs, methods=["GET"])
    app.add_url_rule("/docs/<path:filename>", "docs_asset", docs_asset, methods=["GET"])
