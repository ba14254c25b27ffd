"""Serving the API's description: ``/openapi.json``, and Swagger UI at ``/docs`` with its assets served locally.

The assets come from the installed ``swagger_ui_bundle`` package, never a CDN: users' networks may be
closed. The document is built by ``lib.openapi`` from the served models and rebuilt only when a reload
changes their versions.
"""

from __future__ import annotations

import html
import json

from flask import Flask, Response, send_from_directory, url_for
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import NotFound

from lib import openapi
from lib.openapi import ASSET_MAX_AGE, ASSETS
from lib.registry import ModelRegistry
from lib.settings import Settings

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


def register(app: Flask, settings: Settings, registry: ModelRegistry) -> None:
    """Serve /openapi.json (rebuilt only when the served versions change), /docs and its assets."""
    built: dict[tuple[str, ...], str] = {}

    def openapi_json() -> Response:
        versions = tuple(model.version for model in registry.models.values())
        if versions not in built:
            built.clear()
            built[versions] = json.dumps(openapi.document(settings, registry.models.values()), indent=2)
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
