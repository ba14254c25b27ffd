"""The HTTP service: ``create_app()`` wraps the saved models in Flask-RESTful resources.

    python app.py                      # local development server on 127.0.0.1:5000
    gunicorn -c gunicorn.conf.py       # production

Models load once, inside the factory, and are injected into the resources; nothing heavy runs
at import. Every error, whatever raised it, leaves through ``error_response`` as
``{"message": ...}`` with its status.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, Response, current_app, jsonify, request
from flask_cors import CORS
from flask_restful import Api, Resource
from werkzeug.exceptions import BadRequest, ClientDisconnected, HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from lib import openapi
from lib.observability import Metrics, instrument, request_id
from model import ModelLoadError, NLPModel

ROOT = Path(__file__).resolve().parent
log = logging.getLogger(__name__)

#: Served models: name (folder under MODELS_DIR) -> URL path.
ENDPOINTS = {"sentiment": "/", "ratings": "/ratings"}

#: Browser pages served from this machine may call the API unless CORS_ORIGINS says otherwise.
LOCAL_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"


class ConfigError(ValueError):
    """A configuration value cannot be used; the message names the key and the value."""


@dataclass(frozen=True)
class Settings:
    """Service configuration, read from environment variables (or a mapping in tests)."""

    models_dir: Path = ROOT / "lib" / "models"
    max_query_chars: int = 20_000
    max_batch: int = 1_000
    max_body_bytes: int = 2 * 1024 * 1024
    log_level: str = "INFO"
    cors_origins: tuple[str, ...] = (LOCAL_ORIGINS,)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Build settings from upper-case keys (MODELS_DIR, MAX_BATCH, ...); unknown keys are ignored."""
        defaults = cls()
        models_dir = Path(values.get("MODELS_DIR", defaults.models_dir))
        return cls(
            models_dir=models_dir if models_dir.is_absolute() else ROOT / models_dir,
            max_query_chars=_positive_int(values, "MAX_QUERY_CHARS", defaults.max_query_chars),
            max_batch=_positive_int(values, "MAX_BATCH", defaults.max_batch),
            max_body_bytes=_positive_int(values, "MAX_BODY_BYTES", defaults.max_body_bytes),
            log_level=_log_level(values, defaults.log_level),
            cors_origins=_origins(values, defaults.cors_origins),
        )


def _positive_int(values: Mapping[str, Any], key: str, default: int) -> int:
    """Read a positive integer setting, naming the key and the value when it is not one."""
    raw = values.get(key, default)
    try:
        number = int(raw)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or isinstance(raw, bool):
        raise ConfigError(f"Config {key!r} has value {raw!r}. Not a positive integer.")
    return number


def _origins(values: Mapping[str, Any], default: tuple[str, ...]) -> tuple[str, ...]:
    """Read CORS_ORIGINS: comma-separated origins, "*" for any, "" for none."""
    if "CORS_ORIGINS" not in values:
        return default
    origins = tuple(origin.strip() for origin in str(values["CORS_ORIGINS"]).split(",") if origin.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://", "^")):
            raise ConfigError(f"Config 'CORS_ORIGINS' has value {origin!r}. Expected origins like https://app.example.com, or *.")
    return origins


def _log_level(values: Mapping[str, Any], default: str) -> str:
    """Read LOG_LEVEL as one of logging's level names."""
    level = str(values.get("LOG_LEVEL", default)).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"Config 'LOG_LEVEL' has value {level!r}. Expected DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    return level


class ApiError(HTTPException):
    """An error this service raises on purpose, with its status and a message for the client."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(description=message)
        self.code = code


def error_response(exc: Exception) -> Response:
    """Turn any exception into the one error shape: ``{"message": ...}`` with its status."""
    if isinstance(exc, ApiError):
        code, message = exc.code, exc.description
    elif isinstance(exc, RequestEntityTooLarge):
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        code, message = 413, f"Request body is larger than the limit of {limit:,} bytes."
    elif isinstance(exc, UnicodeDecodeError):
        code, message = 400, "The request holds bytes that are not valid UTF-8; percent-encode the query as UTF-8."
    elif isinstance(exc, (ClientDisconnected, TimeoutError)):
        stop_reading_client()
        code, message = 408, "The request body did not arrive in time (the client stalled or disconnected)."
    elif isinstance(exc, NotFound):
        code, message = 404, f"No endpoint at {request.path}. See /docs for the API."
    elif isinstance(exc, MethodNotAllowed):
        allowed = ", ".join(exc.valid_methods or ())
        code, message = 405, f"Method {request.method} is not allowed on {request.path}; allowed: {allowed}."
    elif isinstance(exc, HTTPException):
        code, message = exc.code or 500, exc.description or exc.name
    else:
        log.exception("unhandled error on %s %s", request.method, request.path)
        code = 500
        message = f"Internal server error. It has been logged with request id {request_id()}; please retry or report it."
    response = jsonify(message=message)
    response.status_code = code
    if isinstance(exc, MethodNotAllowed):
        response.headers["Allow"] = ", ".join(exc.valid_methods or ())
    return response


def stop_reading_client() -> None:
    """Close the read side of a stalled client's socket, so the server drops it instead of waiting for the rest."""
    client = request.environ.get("gunicorn.socket")
    if client is not None:
        with suppress(OSError):
            client.shutdown(socket.SHUT_RD)


class JsonErrorsApi(Api):
    """Flask-RESTful's Api, with every error answered by ``error_response``."""

    def handle_error(self, e: Exception) -> Response:
        return error_response(e)


# --- reading requests -------------------------------------------------------------------------


def json_type(value: Any) -> str:
    """Name a decoded JSON value's type as JSON does, for messages to any client."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def json_object() -> dict[str, Any]:
    """Return the request's JSON body, which must be an object."""
    try:
        body = request.get_json()
    except ClientDisconnected:
        raise
    except BadRequest:
        raise ApiError(400, 'Malformed JSON body. Send a JSON object such as {"query": "text"}.') from None
    if not isinstance(body, dict):
        raise ApiError(400, f'JSON body must be an object such as {{"query": "text"}}, got {json_type(body)}.')
    return body


def read_query(settings: Settings) -> str:
    """Find ``query`` in the URL, a JSON body or a form body, and check it."""
    if "query" in request.args:
        value: Any = request.args["query"]
    elif request.is_json:
        value = json_object().get("query")
    else:
        value = request.form.get("query")
    return checked_text(value, "query", settings)


def read_batch(body: dict[str, Any], settings: Settings) -> list[str]:
    """Check a batch ``{"queries": [...]}``: a list of non-blank strings within the limits."""
    queries = body["queries"]
    if not isinstance(queries, list):
        raise ApiError(400, f"'queries' must be an array of strings, got {json_type(queries)}.")
    if not queries:
        raise ApiError(400, "'queries' is empty. Send at least one string.")
    if len(queries) > settings.max_batch:
        raise ApiError(413, f"'queries' holds {len(queries):,} items; the limit is {settings.max_batch:,} per request.")
    return [checked_text(query, f"queries[{index}]", settings) for index, query in enumerate(queries)]


def checked_text(value: Any, name: str, settings: Settings) -> str:
    """Return a text to classify, or raise naming the field and what was wrong with it."""
    if value is None:
        raise ApiError(
            400,
            f"Missing required parameter '{name}'. Send it in the URL (?query=...), "
            'a form body (query=...) or a JSON body ({"query": "..."}).',
        )
    if not isinstance(value, str):
        raise ApiError(400, f"'{name}' must be a string, got {json_type(value)}.")
    if not value.strip():
        raise ApiError(400, f"'{name}' is blank. Send some text to classify.")
    if len(value) > settings.max_query_chars:
        raise ApiError(413, f"'{name}' is {len(value):,} characters long; the limit is {settings.max_query_chars:,}.")
    return value


# --- resources --------------------------------------------------------------------------------


def describe(model: NLPModel, probabilities: np.ndarray, with_rating: bool) -> list[dict[str, Any]]:
    """Shape predictions, one per row: the label, its probability as ``confidence``, and all probabilities.

    Rounds in one vectorised call, so a batch of a thousand costs about what a few single answers do.
    """
    rows = np.atleast_2d(probabilities)
    labels = model.labels
    answers = []
    for best, rounded in zip(rows.argmax(axis=1).tolist(), rows.round(3).tolist(), strict=True):
        answer: dict[str, Any] = {"prediction": labels[best]}
        if with_rating:
            answer["rating"] = best
        answer["confidence"] = rounded[best]
        answer["probabilities"] = dict(zip(labels, rounded, strict=True))
        answers.append(answer)
    return answers


class Prediction(Resource):
    """Classify one text (GET, or POST with ``query``) or a batch (POST with ``queries``)."""

    def __init__(self, model_name: str, registry: ModelRegistry, settings: Settings, metrics: Metrics) -> None:
        self.name = model_name
        self.model = registry.models[model_name]  # one model for the whole request, even across a reload
        self.settings = settings
        self.with_rating = model_name == "ratings"
        self.metrics = metrics

    def get(self) -> dict[str, Any]:
        [answer] = describe(self.model, self.model.predict_one(read_query(self.settings)), self.with_rating)
        self.metrics.count_prediction(self.name, answer["prediction"])
        return answer

    def post(self) -> dict[str, Any]:
        if request.is_json:
            body = json_object()
            if "queries" in body:
                probabilities = self.model.predict_texts(read_batch(body, self.settings))
                answers = describe(self.model, probabilities, self.with_rating)
                for label, count in Counter(answer["prediction"] for answer in answers).items():
                    self.metrics.count_prediction(self.name, label, count)
                return {"predictions": answers}
        return self.get()


class Health(Resource):
    """Liveness: the process answers."""

    def get(self) -> dict[str, str]:
        return {"status": "ok"}


class Ready(Resource):
    """Readiness: every served model is loaded."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.models = registry.models

    def get(self) -> tuple[dict[str, Any], int]:
        missing = [name for name in ENDPOINTS if name not in self.models]
        versions = {name: model.version for name, model in self.models.items()}
        if missing:
            return {"status": "loading", "missing": missing, "models": versions}, 503
        return {"status": "ready", "models": versions}, 200


class Models(Resource):
    """Each served model's manifest (versions, labels, parameters, validation metrics)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.models = registry.models

    def get(self) -> dict[str, Any]:
        return {"models": {name: {"endpoint": ENDPOINTS[name], **model.manifest} for name, model in self.models.items()}}


class MetricsResource(Resource):
    """Prometheus text exposition of the service's metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def get(self) -> Response:
        return self.metrics.exposition()


# --- the factory ------------------------------------------------------------------------------


class ModelRegistry:
    """The served models, replaced as a whole on reload so that a request sees one consistent set."""

    def __init__(self, models_dir: Path, metrics: Metrics) -> None:
        self.models_dir = models_dir
        self.metrics = metrics
        self.models: dict[str, NLPModel] = {}

    def load(self) -> None:
        """Load and verify every served model; raise ModelLoadError, naming the file, if one fails."""
        models, seconds = {}, {}
        for name in ENDPOINTS:
            started = time.perf_counter()
            models[name] = NLPModel.load(self.models_dir / name)
            seconds[name] = time.perf_counter() - started
            log.info("loaded %s from %s in %.3fs", models[name].version, self.models_dir / name, seconds[name])
        replaced = {name: model.manifest for name, model in self.models.items() if models[name].version != model.version}
        self.models = models
        self.metrics.models_loaded({name: model.manifest for name, model in models.items()}, seconds, replaced)

    def reload(self) -> bool:
        """Load the models again; if the new set fails verification, keep serving the old one."""
        try:
            self.load()
        except ModelLoadError as exc:
            log.error("reload refused, still serving %s: %s", ", ".join(m.version for m in self.models.values()), exc)
            return False
        return True


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


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the service: settings from the environment (then ``config``), models, resources."""
    settings = Settings.from_mapping({**os.environ, **(config or {})})
    log.setLevel(settings.log_level)
    app = Flask(__name__, static_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        ERROR_404_HELP=False,
        SETTINGS=settings,
    )
    metrics = Metrics()
    registry = ModelRegistry(settings.models_dir, metrics)
    registry.load()
    app.extensions["models"] = registry
    instrument(app, metrics)
    app.before_request(refuse_large_bodies)
    app.after_request(secure_headers)
    if settings.cors_origins:
        CORS(app, origins=list(settings.cors_origins), methods=["GET", "POST"], expose_headers=["X-Request-ID"], max_age=600)

    api = JsonErrorsApi(app, catch_all_404s=True)
    for name, path in ENDPOINTS.items():
        kwargs = {"model_name": name, "registry": registry, "settings": settings, "metrics": metrics}
        api.add_resource(Prediction, path, endpoint=name, resource_class_kwargs=kwargs)
    api.add_resource(Health, "/health")
    api.add_resource(Ready, "/ready", resource_class_kwargs={"registry": registry})
    api.add_resource(Models, "/models", resource_class_kwargs={"registry": registry})
    api.add_resource(MetricsResource, "/metrics", resource_class_kwargs={"metrics": metrics})
    openapi.register(app, settings)
    app.register_error_handler(Exception, error_response)
    return app


def main() -> int:
    """Run the development server (HOST, PORT; DEBUG=1 only when you ask for it)."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app = create_app()
        port = int(os.environ.get("PORT", "5000"))
    except (ModelLoadError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError:
        print(f"error: Config 'PORT' has value {os.environ['PORT']!r}. Not a port number.", file=sys.stderr)
        return 1
    debug = os.environ.get("DEBUG", "") == "1"
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=port, debug=debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
