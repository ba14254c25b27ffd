"""Request ids, Prometheus metrics and log context for the service (lib/middleware.py applies them per request).

Under the production server, ``PROMETHEUS_MULTIPROC_DIR`` is set (by ``lib/server.py``) before prometheus-client
is imported: each worker then writes its counters to files there, and ``/metrics`` merges them (the
folder comes in as ``Settings.metrics_dir``), so every worker answers with the totals of all of them. How the files
are written, folded when a worker exits, and what a full or read-only folder does: ``lib/metric_files.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from flask import Response, g, has_request_context
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from lib.logs import iso_time
from lib.metric_files import StorageFaults, fold_exited_processes, install, locked

#: An incoming X-Request-ID is kept only if it matches; otherwise one is generated.
REQUEST_ID_PATTERN = "^[A-Za-z0-9._:-]{1,128}$"
SAFE_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
# Milliseconds matter here: a prediction takes well under one.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def request_id() -> str | None:
    """Return the current request's id, or None outside a request."""
    return g.get("request_id") if has_request_context() else None


class RequestIdFilter(logging.Filter):
    """Stamp log records made during a request with its id, so a line can be traced to a call."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id()
        return True


class Metrics:
    """The service's Prometheus metrics, on a registry of its own (one per app)."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir  # set: every worker's files there are merged by exposition()
        # Before the first series is made: from here on a full or read-only folder fails no update (lib/metric_files.py).
        self.storage_faults = install(multiprocess_dir) if multiprocess_dir is not None else None
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "http_requests", "HTTP requests answered.", ["endpoint", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from request start to response, in seconds.",
            ["endpoint", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "predictions", "Predictions made, by model and label.", ["model", "label"], registry=self.registry
        )
        self.model_load = Gauge(
            "model_load_seconds",
            "Seconds the last load of each model took.",
            ["model"],
            multiprocess_mode="max",
            registry=self.registry,
        )
        self.build_info = Gauge(
            "model_build_info",
            "1 for the model version being served (labels say which), 0 for replaced ones.",
            ["model", "version", "sklearn_version"],
            multiprocess_mode="max",
            registry=self.registry,
        )
        # What users send, per model version: drift shows here before it shows in accuracy.
        self.confidence = Histogram(
            "prediction_confidence",
            "Probability of the predicted label.",
            ["model", "version"],
            buckets=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
            registry=self.registry,
        )
        self.known_share = Histogram(
            "prediction_known_terms_ratio",
            "Share of a text's terms the model knew (0: the answer is the class prior alone).",
            ["model", "version"],
            buckets=(0.0, 0.25, 0.5, 0.75, 0.9, 1.0),
            registry=self.registry,
        )
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """A metric's series for these label values: labels() takes a lock and builds a key, so once per combination."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count and time one answered request."""
        code = str(status)
        self._child(self.requests, endpoint, method, code).inc()
        self._child(self.latency, endpoint, code).observe(seconds)

    def count_prediction(self, model: str, label: str, count: int = 1) -> None:
        """Count predictions of one label."""
        self._child(self.predictions, model, label).inc(count)

    def observe_answers(self, model: str, version: str, confidences: Sequence[float], coverage: Sequence[Sequence[int]]) -> None:
        """Record each answer's confidence and the share of its text's terms the model knew."""
        confidence, known_share = self._child(self.confidence, model, version), self._child(self.known_share, model, version)
        if len(confidences) == 1:  # a single query: two plain observes cost less than the array set-up below
            (known, terms), value = coverage[0], confidences[0]
            confidence.observe(value)
            known_share.observe(known / terms if terms else 0.0)
            return
        counts = np.asarray(coverage, dtype=np.float64).reshape(-1, 2)
        shares = np.divide(counts[:, 0], counts[:, 1], out=np.zeros(len(counts)), where=counts[:, 1] > 0)
        observe_many(confidence, np.asarray(confidences, dtype=np.float64))
        observe_many(known_share, shares)

    def models_loaded(
        self, manifests: Mapping[str, Mapping], load_seconds: Mapping[str, float], replaced: Mapping[str, Mapping]
    ) -> None:
        """Record a (re)load: load times, and which versions serve now."""
        for name, manifest in replaced.items():
            self.build_info.labels(name, manifest["version"], manifest["sklearn_version"]).set(0)
        for name, manifest in manifests.items():
            self.model_load.labels(name).set(load_seconds[name])
            self.build_info.labels(name, manifest["version"], manifest["sklearn_version"]).set(1)

    def exposition(self) -> Response:
        """Render every metric in Prometheus text format, merged across workers when there are several."""
        if self.multiprocess_dir is None:
            return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.multiprocess_dir))
        if self.storage_faults is not None:
            registry.register(StorageFaultsCollector(self.storage_faults))
        with locked(self.multiprocess_dir, self.storage_faults) as held:  # never read while counts are being moved
            if held:
                fold_exited_processes(self.multiprocess_dir, self.storage_faults)
            text = generate_latest(registry)
        return Response(text, content_type=CONTENT_TYPE_LATEST)

    def fold_exited(self) -> None:
        """Fold the files of workers that have exited (called as a worker starts, and at each scrape)."""
        if self.multiprocess_dir is not None:
            with locked(self.multiprocess_dir, self.storage_faults) as held:
                if held:
                    fold_exited_processes(self.multiprocess_dir, self.storage_faults)

    def degradation(self) -> dict[str, Any] | None:
        """What fails in the metrics folder, for /ready: None while every write to it succeeded."""
        return None if self.storage_faults is None else self.storage_faults.degradation()


class StorageFaultsCollector(Collector):
    """The count of failed writes to the metrics folder, which lives in shared memory rather than in the folder."""

    def __init__(self, faults: StorageFaults) -> None:
        self.faults = faults

    def collect(self) -> Iterator[CounterMetricFamily]:
        """One sample: the failures in every process of the server."""
        yield CounterMetricFamily(
            "metrics_write_failures",
            "Writes to the metrics folder that failed; the values they carried are missing from these totals.",
            value=self.faults.failures,
        )


ACCESS_LOGGER = "sentiment_api.access"


class AccessLog:
    """One JSON object per answered request on the access logger, valid whatever the client sent.

    The URL's query string holds users' texts: by default the line keeps only whether there was
    one; LOG_QUERIES=hmac logs a keyed HMAC-SHA256 of it (a plain hash of a short text is reversed
    with a dictionary), LOG_QUERIES=text the text itself.
    """

    def __init__(self, log_queries: str, key: bytes) -> None:
        self.logger = logging.getLogger(ACCESS_LOGGER)
        self.log_queries = log_queries
        self.key = key

    def record(self, environ: Mapping[str, Any], status: int, size: int | None, seconds: float, request_id: str) -> None:
        """Log one request: who, what, how it ended, how long it took."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        line: dict[str, Any] = {
            "time": iso_time(time.time()),
            "remote": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "status": status,
            "bytes": size,
            "duration_ms": round(seconds * 1000, 3),
            "request_id": request_id,
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        query = environ.get("QUERY_STRING", "")
        if query and self.log_queries == "text":
            line["query"] = query
        elif query and self.log_queries == "hmac":
            line["query_hmac"] = hmac.new(self.key, query.encode("latin-1", "replace"), hashlib.sha256).hexdigest()
        self.logger.info(orjson.dumps(line, option=orjson.OPT_NON_STR_KEYS).decode())


def observe_many(histogram: Any, values: np.ndarray) -> None:
    """Observe a batch of values with one write per bucket, where ``observe`` makes two per value.

    prometheus-client has no bulk observe, and in multi-process mode each write takes a lock on a
    shared file: for a 1,000-query batch, per-value calls cost ~9 ms. This does what
    ``Histogram.observe`` does (add to the sum, count the first bucket whose bound is >= the value)
    through the same internals; the version is pinned and a test holds it to ``observe``.
    """
    bounds = histogram._upper_bounds
    per_bucket = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    histogram._sum.inc(float(values.sum()))
    for bucket, count in zip(histogram._buckets, per_bucket.tolist(), strict=True):
        if count:
            bucket.inc(count)
