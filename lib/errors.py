"""The one error shape: every failure, whatever raised it, leaves as ``{"message": ...}`` with its status."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Response, current_app, jsonify, request
from flask_restful import Api
from werkzeug.exceptions import ClientDisconnected, HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from lib.observability import request_id

log = logging.getLogger(__name__)


class RequestRefused(HTTPException):
    """An error this service raises on purpose, with its status and a message for the client."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(description=message)
        self.code = code


def error_response(exc: Exception) -> Response:
    """Turn any exception into the one error shape: ``{"message": ...}`` with its status."""
    code, message = status_and_message(exc)
    response = jsonify(message=message)
    response.status_code = code
    if isinstance(exc, MethodNotAllowed):
        response.headers["Allow"] = ", ".join(exc.valid_methods or ())
    return response


def status_and_message(exc: Exception) -> tuple[int, str]:
    """Say what went wrong in words for the caller; log (never send) what was not the caller's fault."""
    if isinstance(exc, RequestRefused):
        return exc.code or 400, exc.description or exc.name
    if isinstance(exc, RequestEntityTooLarge):
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        length = request.content_length
        if length is not None and length <= limit:  # within the byte limit: the form parser's own limits
            parts, memory = current_app.config["MAX_FORM_PARTS"], current_app.config["MAX_FORM_MEMORY_SIZE"]
            return 413, f"Form body has more than {parts:,} parts or a field over {memory:,} bytes."
        return 413, f"Request body is larger than the limit of {limit:,} bytes."
    if isinstance(exc, UnicodeDecodeError):
        return 400, "The request holds bytes that are not valid UTF-8; percent-encode the query as UTF-8."
    if isinstance(exc, (ClientDisconnected, TimeoutError)):
        return 408, "The request body did not arrive in time (the client stalled or disconnected)."
    if isinstance(exc, NotFound):
        return 404, f"No endpoint at {request.path}. See /docs for the API."
    if isinstance(exc, MethodNotAllowed):
        return 405, f"Method {request.method} is not allowed on {request.path}; allowed: {', '.join(exc.valid_methods or ())}."
    if isinstance(exc, HTTPException):
        return exc.code or 500, exc.description or exc.name
    log.exception("unhandled error on %s %s", request.method, request.path)
    return 500, f"Internal server error. It has been logged with request id {request_id()}; please retry or report it."


class JsonApi(Api):
    """Flask-RESTful's Api answering JSON only: results encoded by orjson, errors in the one error shape.

    Every answer is JSON whatever the Accept header says (Flask-RESTful's negotiation fell back to
    JSON anyway), so the per-request Accept parsing is skipped; orjson encodes an answer in a
    fraction of the standard library's time. Each ends with a newline, as Flask's own ``jsonify``
    does, so a terminal's prompt after ``curl`` starts on a line of its own.
    """

    def make_response(self, data: Any, *args: Any, **kwargs: Any) -> Response:
        """Encode a resource's result as JSON, with the status and headers it returned."""
        code = args[0] if args else kwargs.get("code", 200)
        headers = args[1] if len(args) > 1 else kwargs.get("headers")
        response = current_app.response_class(orjson.dumps(data) + b"\n", status=code, mimetype="application/json")
        if headers:
            response.headers.extend(headers)
        return response

    def handle_error(self, e: Exception) -> Response:
        """Answer any error a resource raised in the one error shape."""
        return error_response(e)
