"""The Flask-RESTful resources: predictions, health, readiness, models and metrics.

Each resource receives what it needs through ``resource_class_kwargs``; none reads global state.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from flask import Response, request
from flask_restful import Resource
from werkzeug.exceptions import MethodNotAllowed

from lib.answers import explanation, shape_answers
from lib.errors import RequestRefused
from lib.headers import MODEL_VERSION_HEADER
from lib.lifecycle import Lifecycle
from lib.observability import Metrics
from lib.parsing import check_cost, read_batch, read_batch_body, read_explain, read_query
from lib.registry import ModelRegistry

#: POST reads its text from the body; a ``query`` in the URL as well would be one of two texts, silently dropped.
URL_QUERY_BESIDE_BODY = (
    "POST got 'query' in the URL and a body: send the text in the body only "
    '({"query": "..."} or {"queries": [...]}, or a form query=...), or use GET with ?query=... and no body.'
)


class LeanResource(Resource):
    """A Resource whose dispatch calls the method and returns its result, for ``JsonApi`` to encode.

    Flask-RESTful's own dispatch also parses the Accept header to pick a per-resource representation,
    which this service never declares; skipping it is a measured part of a request's cost.
    """

    def dispatch_request(self, *args: Any, **kwargs: Any) -> Any:
        """Call the method named by the request (HEAD falls back to GET, as in Flask-RESTful)."""
        method = request.method.lower()
        handler = getattr(self, method, None) or (getattr(self, "get", None) if method == "head" else None)
        if handler is None:
            raise MethodNotAllowed()
        return handler(*args, **kwargs)


class Prediction(LeanResource):
    """Classify one text (GET, or POST with ``query``) or a batch (POST with ``queries``)."""

    def __init__(self, model_name: str, registry: ModelRegistry, metrics: Metrics) -> None:
        self.served = registry.models[model_name]  # one model for the whole request, even across a reload
        self.settings = self.served.settings  # the service's, with this model's budgets
        self.metrics = metrics

    def get(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Classify the one text in ``query``."""
        text = read_query(self.settings)
        explain = read_explain(self.settings)
        check_cost([text], explain, self.settings, "query")
        probabilities, known, terms = self.served.model.score_one(text)
        [answer] = shape_answers(self.served, probabilities, np.array([known, terms]))
        if explain is not None:
            answer["explanation"] = explanation(self.served, text, explain, probabilities)
        self.metrics.count_prediction(self.served.name, answer["prediction"])
        self.metrics.observe_answers(self.served.name, self.served.version, [answer["confidence"]], [(known, terms)])
        return answer, 200, {MODEL_VERSION_HEADER: self.served.version}

    def post(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Classify a batch ``{"queries": [...]}``, or else one ``query`` as GET does."""
        current = request._get_current_object()  # type: ignore[attr-defined]  # one context look-up
        if current.content_length and "query" in current.args:  # two texts: which one was meant cannot be told
            raise RequestRefused(400, URL_QUERY_BESIDE_BODY)
        body = read_batch_body()
        if body is None:
            return self.get()
        texts = read_batch(body, self.settings)
        explain = read_explain(self.settings)
        check_cost(texts, explain, self.settings)
        probabilities, coverage = self.served.model.score_texts(texts)
        answers = shape_answers(self.served, probabilities, coverage)
        if explain is not None:
            for answer, text, row in zip(answers, texts, probabilities, strict=True):
                answer["explanation"] = explanation(self.served, text, explain, row)
        for label, count in Counter(answer["prediction"] for answer in answers).items():
            self.metrics.count_prediction(self.served.name, label, count)
        confidences = [answer["confidence"] for answer in answers]
        self.metrics.observe_answers(self.served.name, self.served.version, confidences, coverage.tolist())
        version = self.served.version
        return {"model_version": version, "predictions": answers}, 200, {MODEL_VERSION_HEADER: version}


class Health(LeanResource):
    """Liveness: the process answers."""

    def get(self) -> dict[str, str]:
        """Answer while the process can."""
        return {"status": "ok"}


class Ready(LeanResource):
    """Readiness: 200 with the served versions while taking traffic, 503 once draining for shutdown.

    What works less well without stopping the service (metrics that cannot be written) is named under ``degraded``.
    """

    def __init__(self, registry: ModelRegistry, lifecycle: Lifecycle, metrics: Metrics) -> None:
        self.registry = registry
        self.lifecycle = lifecycle
        self.metrics = metrics

    def get(self) -> tuple[dict[str, Any], int]:
        """Tell a load balancer or orchestrator whether to send traffic here."""
        draining = self.lifecycle.draining
        body: dict[str, Any] = {
            "status": "draining" if draining else "ready",
            "models": {name: model.version for name, model in self.registry.models.items()},
        }
        metrics = self.metrics.degradation()
        if metrics is not None:
            body["degraded"] = {"metrics": metrics}
        return body, 503 if draining else 200


class Models(LeanResource):
    """Each served model's manifest (versions, labels, parameters, validation metrics)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def get(self) -> dict[str, Any]:
        """List the served models."""
        return {"models": {name: model.describe() for name, model in self.registry.models.items()}}


class MetricsResource(LeanResource):
    """Prometheus text exposition of the service's metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def get(self) -> Response:
        """Render every metric, merged across workers."""
        return self.metrics.exposition()
