"""The OpenAPI document: valid, complete, configured, servable offline, and true to the real responses."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from werkzeug.wrappers import Response

from app import create_app
from lib import openapi, resources
from lib.settings import MAX_EXPLAIN_TERMS, Settings
from tests.helpers import resolve, rewrite_manifest

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}  # Flask adds both to every route
IGNORED_ENDPOINTS = {"static"}  # Flask's own /static/<path:filename>; the service has no static folder
RULE_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
ASSET_TYPES = {".js": {"text/javascript", "application/javascript"}, ".css": {"text/css"}, ".png": {"image/png"}}


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    """The document as the tiny-model app (MAX_QUERY_CHARS=50, MAX_BATCH=3, MAX_BODY_BYTES=4096) serves it."""
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def openapi_path(rule: str) -> str:
    """Flask's /docs/<path:filename> is OpenAPI's /docs/{filename}."""
    return RULE_VARIABLE.sub(r"{\1}", rule)


def schema_errors(spec: dict[str, Any], schema: dict[str, Any], instance: Any) -> list[str]:
    """Validate against a schema that may $ref the document's components; return the errors' messages."""
    root = {"components": spec["components"], "allOf": [schema]}
    validator = OAS30Validator(root, format_checker=OAS30Validator.FORMAT_CHECKER)
    return [error.message for error in validator.iter_errors(instance)]


def documented_response(spec: dict[str, Any], path: str | None, method: str, status: int) -> dict[str, Any]:
    """The response object the document gives for this status; errors off the map are the shared Error responses."""
    operation = spec["paths"].get(path, {}).get(method) if path else None
    if operation is None:  # unknown path or method: 404 and 405 have no operation to hang on
        assert status in (404, 405), f"{method.upper()} {path} answered {status} but is not documented"
        return resolve(spec, {"$ref": "#/components/responses/" + ("NotFound" if status == 404 else "MethodNotAllowed")})
    answers = operation["responses"]
    assert str(status) in answers, f"{method.upper()} {path}: status {status} not documented (has {sorted(answers)})"
    return resolve(spec, answers[str(status)])


def assert_conforms(spec: dict[str, Any], path: str | None, method: str, response: Response) -> None:
    """Status, headers, media type and body are as documented."""
    documented = documented_response(spec, path, method, response.status_code)
    for name, header in documented.get("headers", {}).items():
        assert name in response.headers, f"documented header {name} missing"
        value_schema = resolve(spec, header)["schema"]
        assert not schema_errors(spec, value_schema, response.headers[name]), (name, response.headers[name])
    content = documented.get("content", {})
    if not content:
        assert not response.data
        return
    assert response.mimetype in content, f"{response.mimetype} not among documented {sorted(content)}"
    schema = content[response.mimetype]["schema"]
    if schema.get("format") == "binary":
        return
    body = response.get_json() if response.mimetype == "application/json" else response.get_data(as_text=True)
    assert not schema_errors(spec, schema, body), (body, schema_errors(spec, schema, body))


# --- (a) a valid document, built once ---------------------------------------------------------


def test_document_is_valid_openapi(spec: dict[str, Any], app: Flask) -> None:
    validate(spec)
    assert spec["openapi"].startswith("3.0")
    assert spec == openapi.document(app.config["SETTINGS"], app.extensions["models"].models.values())


def test_document_is_built_once_per_model_set(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    before = client.get("/openapi.json").data

    def rebuilt(*args: object) -> dict:
        raise AssertionError("document() called per request")

    monkeypatch.setattr(openapi, "document", rebuilt)
    assert client.get("/openapi.json").data == before


def test_document_follows_a_reload_with_new_labels(tiny_models: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    app = create_app({"MODELS_DIR": str(models)})
    client = app.test_client()
    assert client.get("/openapi.json").json["components"]["schemas"]["SentimentPrediction"]["required"]
    rewrite_manifest(models / "sentiment", labels=["bad", "good"])
    assert app.extensions["models"].reload()
    schema = client.get("/openapi.json").json["components"]["schemas"]["SentimentPrediction"]
    assert schema["properties"]["prediction"]["enum"] == ["bad", "good"]
    assert client.get("/?query=fine").json["prediction"] in ("bad", "good")


#: Labels are any printable text a manifest holds: HTML and Markdown here must stay out of every Markdown field.
HOSTILE_LABELS = {
    "sentiment": ["<img src=x onerror=alert(1)>", "**bold**"],
    "ratings": ["<script>alert(1)</script>", "[click](javascript:alert(1))", "_under_", "`tick`", "# heading"],
}


def markdown_fields(node: Any) -> Iterator[str]:
    """Every ``description`` string in the document: the fields OpenAPI defines as CommonMark (Swagger UI renders them)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                yield value
            else:
                yield from markdown_fields(value)
    elif isinstance(node, list):
        for value in node:
            yield from markdown_fields(value)


def test_labels_never_enter_markdown(tiny_models: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    for name, labels in HOSTILE_LABELS.items():
        rewrite_manifest(models / name, labels=labels)
    served = create_app({"MODELS_DIR": str(models)}).test_client().get("/openapi.json").json
    texts = list(markdown_fields(served))
    assert len(texts) > 50
    for label in (label for labels in HOSTILE_LABELS.values() for label in labels):
        assert not [text for text in texts if label in text], label
    assert not [text for text in texts if re.search(r"<[a-z/!]|\*\*|\]\(", text)], "raw HTML or Markdown in a description"
    schemas = served["components"]["schemas"]
    assert schemas["SentimentPrediction"]["properties"]["prediction"]["enum"] == HOSTILE_LABELS["sentiment"]
    assert schemas["RatingsPrediction"]["properties"]["prediction"]["enum"] == HOSTILE_LABELS["ratings"]


# --- (b) every route, nothing else ------------------------------------------------------------


def test_every_route_and_method_is_documented(spec: dict[str, Any], app: Flask) -> None:
    served = {
        (openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in IGNORED_ENDPOINTS
        for method in (rule.methods or set()) - IGNORED_METHODS
    }
    documented = {(path, method) for path, item in spec["paths"].items() for method in item if method in HTTP_METHODS}
    assert documented == served


def test_path_parameters_match_the_rules(spec: dict[str, Any], app: Flask) -> None:
    for rule in app.url_map.iter_rules():
        if rule.endpoint in IGNORED_ENDPOINTS:
            continue
        for method, operation in spec["paths"][openapi_path(rule.rule)].items():
            if method not in HTTP_METHODS:  # an extension of the path item (a model's x-limits)
                continue
            params = [resolve(spec, p) for p in operation.get("parameters", [])]
            in_path = {p["name"] for p in params if p["in"] == "path"}
            assert in_path == set(rule.arguments), (method, rule.rule)
            assert {p["name"] for p in params if p["in"] == "header"} >= {"X-Request-ID"}


# --- (c) documented limits are the configured ones --------------------------------------------


def values_of(node: Any, key: str) -> list[Any]:
    """Every value of ``key`` anywhere in a JSON tree."""
    if isinstance(node, dict):
        own = [node[key]] if key in node else []
        return own + [v for child in node.values() for v in values_of(child, key)]
    if isinstance(node, list):
        return [v for child in node for v in values_of(child, key)]
    return []


@pytest.mark.parametrize(
    "settings",
    [Settings(max_query_chars=50, max_batch=3, max_body_bytes=4096), Settings()],
    ids=["tiny", "defaults"],
)
def test_limits_are_the_configured_ones(settings: Settings, app: Flask) -> None:
    doc = openapi.document(settings, app.extensions["models"].models.values())
    components = doc["components"]
    assert set(values_of(doc, "maxLength")) == {settings.max_query_chars}
    assert set(values_of(doc, "maxItems")) == {settings.max_batch}
    assert components["parameters"]["Query"]["schema"]["maxLength"] == settings.max_query_chars
    assert components["schemas"]["QueryBody"]["properties"]["query"]["maxLength"] == settings.max_query_chars
    queries = components["schemas"]["BatchBody"]["properties"]["queries"]
    assert (queries["maxItems"], queries["items"]["maxLength"]) == (settings.max_batch, settings.max_query_chars)
    assert doc["info"]["x-limits"] == {
        "max_query_chars": settings.max_query_chars,
        "max_batch": settings.max_batch,
        "max_body_bytes": settings.max_body_bytes,
        "max_request_chars": settings.max_request_chars,
        "max_explain_texts": settings.max_explain_texts,
        "max_explain_chars": settings.max_explain_chars,
        "max_explained_terms": settings.max_explained_terms,
        "max_explain_terms": MAX_EXPLAIN_TERMS,
    }
    too_large = components["responses"]["TooLarge"]["description"]
    assert f"{settings.max_body_bytes:,} bytes" in too_large
    assert f"{settings.max_query_chars:,} characters" in too_large
    for text in (too_large, doc["info"]["description"], components["parameters"]["Explain"]["description"]):
        assert f"{settings.max_explain_texts:,} texts" in text
        assert f"{settings.max_explain_chars:,} characters" in text
        assert f"{settings.max_explained_terms:,}" in text
    for text in (too_large, doc["info"]["description"]):
        assert f"{settings.max_request_chars:,} characters" in text


def test_served_limits_follow_the_app(spec: dict[str, Any], committed_client: FlaskClient) -> None:
    defaults = Settings()
    assert spec["info"]["x-limits"] == {
        "max_query_chars": 50,
        "max_batch": 3,
        "max_body_bytes": 4096,
        "max_request_chars": defaults.max_request_chars,
        "max_explain_texts": defaults.max_explain_texts,
        "max_explain_chars": defaults.max_explain_chars,
        "max_explained_terms": defaults.max_explained_terms,
        "max_explain_terms": MAX_EXPLAIN_TERMS,
    }
    assert committed_client.get("/openapi.json").json["info"]["x-limits"]["max_batch"] == defaults.max_batch


def test_documented_labels_are_the_models(spec: dict[str, Any], app: Flask, committed_client: FlaskClient) -> None:
    schemas = spec["components"]["schemas"]
    for registry in (app.extensions["models"], committed_client.application.extensions["models"]):
        for name, schema in (("sentiment", "SentimentPrediction"), ("ratings", "RatingsPrediction")):
            labels = list(registry.models[name].labels)
            assert schemas[schema]["properties"]["prediction"]["enum"] == labels
            assert schemas[schema]["properties"]["probabilities"]["required"] == labels


# --- (d) /docs works offline ------------------------------------------------------------------


class AssetLinks(HTMLParser):
    """Collect the src and href of a page's scripts and links."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "link", "img"):
            self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def test_docs_page_uses_only_local_assets(client: FlaskClient, spec: dict[str, Any]) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert "http://" not in text and "https://" not in text
    assert "SwaggerUIBundle(" in text and '"/openapi.json"' in text
    parser = AssetLinks()
    parser.feed(text)
    assert any(url.endswith(".js") for url in parser.urls) and any(url.endswith(".css") for url in parser.urls)
    documented = set(resolve(spec, spec["paths"]["/docs/{filename}"]["get"]["parameters"][0])["schema"]["enum"])
    for url in parser.urls:
        assert url.startswith("/docs/") and not url.startswith("//"), url
        assert url.removeprefix("/docs/") in documented
        with client.get(url) as asset:
            assert asset.status_code == 200, url
            assert asset.mimetype in ASSET_TYPES[url[url.rindex(".") :]], (url, asset.mimetype)
            assert asset.data
            assert_conforms(spec, "/docs/{filename}", "get", asset)


@pytest.mark.parametrize("url", ["/docs/index.html", "/docs/swagger-initializer.js", "/docs/../app.py", "/docs/nope.js"])
def test_only_the_needed_assets_are_served(client: FlaskClient, spec: dict[str, Any], url: str) -> None:
    """The bundle's own index.html and initializer would fetch the petstore example from the internet."""
    response = client.get(url)
    assert response.status_code == 404
    assert_conforms(spec, "/docs/{filename}" if url.startswith("/docs/") else None, "get", response)


# --- (e) real answers match the documented ones -----------------------------------------------

TOO_LONG = "x" * 51

CALLS: list[tuple[str, str, dict[str, Any], int]] = [
    ("get", "/", {"query_string": {"query": "a brilliant and wonderful film"}}, 200),
    ("get", "/", {"data": {"query": "boring awful dull"}}, 200),
    ("get", "/", {"json": {"query": "boring awful dull"}}, 200),
    ("post", "/", {"json": {"query": "boring awful dull"}}, 200),
    ("post", "/", {"data": {"query": "brilliant wonderful"}}, 200),
    ("post", "/", {"json": {"queries": ["brilliant wonderful", "boring awful dull", "brilliant"]}}, 200),
    ("get", "/ratings", {"query_string": {"query": "a charming and pleasant little comedy"}}, 200),
    ("post", "/ratings", {"json": {"query": "the plot is thin"}}, 200),
    ("post", "/ratings", {"json": {"queries": ["wonderful", "awful"]}}, 200),
    ("get", "/health", {}, 200),
    ("get", "/ready", {}, 200),
    ("get", "/models", {}, 200),
    ("get", "/metrics", {}, 200),
    ("get", "/openapi.json", {}, 200),
    ("get", "/docs", {}, 200),
    ("get", "/", {}, 400),
    ("get", "/", {"query_string": {"query": "   "}}, 400),
    ("get", "/ratings", {"json": {"query": 3}}, 400),
    ("post", "/", {"data": "{not json", "content_type": "application/json"}, 400),
    ("post", "/", {"json": ["a list"]}, 400),
    ("post", "/", {"json": {"queries": []}}, 400),
    ("post", "/ratings", {"json": {"queries": ["ok", 3]}}, 400),
    ("post", "/", {"json": {"queries": "not a list"}}, 400),
    ("post", "/", {"query_string": {"query": "brilliant"}, "json": {"queries": ["dull"]}}, 400),
    ("post", "/ratings", {"query_string": {"query": "brilliant"}, "data": {"query": "dull"}}, 400),
    ("get", "/", {"query_string": {"query": TOO_LONG}}, 413),
    ("post", "/", {"json": {"query": TOO_LONG}}, 413),
    ("post", "/ratings", {"json": {"queries": ["a", "b", "c", "d"]}}, 413),
    ("post", "/", {"json": {"queries": ["ok", TOO_LONG]}}, 413),
    ("post", "/", {"data": {"query": "x" * 5000}}, 413),
    ("get", "/nowhere", {}, 404),
    ("get", "/ratings/", {}, 404),
    ("put", "/", {}, 405),
    ("delete", "/ratings", {}, 405),
    ("post", "/health", {}, 405),
    ("post", "/openapi.json", {}, 405),
    ("post", "/docs", {}, 405),
]


def documented_path(spec: dict[str, Any], url: str) -> str | None:
    """The documented path a URL falls under, if any."""
    for path in spec["paths"]:
        if re.fullmatch(re.sub(r"\\\{[^/]+\\\}", "[^/]+", re.escape(path)), url):
            return path
    return None


@pytest.mark.parametrize(("method", "url", "kwargs", "status"), CALLS, ids=[f"{c[0]} {c[1]} {c[3]}" for c in CALLS])
def test_real_responses_match_the_document(
    client: FlaskClient, spec: dict[str, Any], method: str, url: str, kwargs: dict, status: int
) -> None:
    response = client.open(url, method=method.upper(), **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    assert_conforms(spec, documented_path(spec, url), method, response)
    if status == 405:
        path = documented_path(spec, url)
        allowed = {m.strip().lower() for m in response.headers["Allow"].split(",")} - {"head", "options"}
        assert allowed == {m for m in spec["paths"][path] if m in HTTP_METHODS}


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status"), [c for c in CALLS if "json" in c[2] and c[0] == "post" and "query_string" not in c[2]]
)
def test_documented_json_bodies_agree_with_the_code(
    client: FlaskClient, spec: dict[str, Any], method: str, url: str, kwargs: dict, status: int
) -> None:
    """A JSON body the document accepts is answered 200; one it rejects gets 400 or 413 (GET documents no body).

    A body sent with ``query`` in the URL is refused whatever it holds: the URL is judged, not the body.
    """
    operation = spec["paths"][url][method]
    schema = resolve(spec, operation["requestBody"])["content"]["application/json"]["schema"]
    accepted = not schema_errors(spec, schema, kwargs["json"])
    assert accepted == (status == 200), schema_errors(spec, schema, kwargs["json"])


def test_unexpected_error_matches_the_document(app: Flask, spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(resources, "shape_answers", explode)
    response = app.test_client().get("/?query=fine")
    assert response.status_code == 500
    assert_conforms(spec, "/", "get", response)


def test_committed_models_match_the_document(committed_client: FlaskClient) -> None:
    """The real manifests (dates, hashes, metrics) fit the Models schema."""
    spec = committed_client.get("/openapi.json").get_json()
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("get", "/models", {}),
        ("get", "/ready", {}),
        ("get", "/", {"query_string": {"query": "that movie was boring"}}),
        ("post", "/ratings", {"json": {"queries": ["That was pretty entertaining", "that movie was boring"]}}),
    ]
    for method, url, kwargs in calls:
        response = committed_client.open(url, method=method.upper(), **kwargs)
        assert response.status_code == 200
        assert_conforms(spec, url, method, response)


def test_request_id_header_is_as_documented(client: FlaskClient, spec: dict[str, Any]) -> None:
    pattern = spec["components"]["parameters"]["XRequestID"]["schema"]["pattern"]
    assert client.get("/health", headers={"X-Request-ID": "call-42:a.b_c"}).headers["X-Request-ID"] == "call-42:a.b_c"
    replaced = client.get("/health", headers={"X-Request-ID": "not safe!"}).headers["X-Request-ID"]
    assert replaced != "not safe!" and re.fullmatch(pattern, replaced)


def test_confidence_says_whether_the_model_is_calibrated(client: FlaskClient, committed_client: FlaskClient) -> None:
    """The committed models are calibrated; the tiny ones (too few sentences to calibrate on) are not, and say so."""
    for served, expected in ((committed_client, "calibrated on held-out sentences"), (client, "not calibrated")):
        schemas = served.get("/openapi.json").json["components"]["schemas"]
        for name in ("SentimentPrediction", "RatingsPrediction"):
            assert expected in schemas[name]["properties"]["confidence"]["description"]
