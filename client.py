"""A Python client for the Sentiment API: texts in, a pandas DataFrame out, one row per text, same index.

    from client import SentimentClient

    client = SentimentClient("http://127.0.0.1:5000")
    scores = client.predict(reviews["text"])     # sentiment: Negative or Positive
    ratings = client.rate(reviews["text"])       # ratings: 0-4

Batches are cut to the limits of the model they go to (its ``limits`` in ``/models``, else the server's
``info.x-limits`` in ``/openapi.json``: texts, bytes and characters per request; a model of character n-grams
holds requests to fewer characters); a 503 or a
dropped connection is retried with exponential backoff (urllib3's ``Retry``); a row that is not text
(None, NaN, "", whitespace, a number) comes back missing instead of failing its batch. The columns are
those of ``predictions_frame`` below. Any other error answer raises ``ApiError`` with the service's message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

#: The service's main model answers at its root; the five-class one adds a ``rating`` to each answer (the HTTP contract).
ROOT_ENDPOINT = "/"
RATING_FIELD = "rating"
#: The envelope of a batch body, as sent: ``{"queries":[...]}`` with no spaces.
BATCH_PREFIX, BATCH_SUFFIX = b'{"queries":[', b"]}"


class ApiError(RuntimeError):
    """The service refused a request; ``status`` is the HTTP status and the message is the service's own."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What one request may carry, as the server publishes it."""

    max_batch: int
    max_body_bytes: int
    max_query_chars: int
    max_request_chars: int | None = None  # characters of a batch's texts together; None from a server without one


@dataclass(frozen=True)
class ModelInfo:
    """Where a served model answers and what its answers hold."""

    endpoint: str
    labels: tuple[str, ...]
    index_field: str | None
    limits: Limits | None = None  # this model's own, from /models; None from a server that does not list them


class SentimentClient:
    """Call a Sentiment API server from Python.

    Parameters
    ----------
    base_url : str
        The server, e.g. ``http://127.0.0.1:5000``.
    timeout : float
        Seconds to wait for each answer.
    retries : int
        How many times to retry a request that met a 503 or a failed or dropped connection.
    backoff : float
        Seconds before the second retry; each later one waits twice as long (the first is immediate).
    """

    def __init__(
        self, base_url: str = "http://127.0.0.1:5000", *, timeout: float = 30.0, retries: int = 5, backoff: float = 0.5
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # Predictions change nothing on the server, so a batch POST is as safe to repeat as a GET.
        retry = Retry(
            total=retries,
            backoff_factor=backoff,
            status_forcelist=(503,),
            allowed_methods=None,
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))

    def __enter__(self) -> SentimentClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()

    def predict(self, texts: Iterable[Any]) -> pd.DataFrame:
        """Classify texts with the model the service answers at its root (sentiment: Negative or Positive)."""
        return self.score(texts, model_name(self.models, endpoint=ROOT_ENDPOINT))

    def rate(self, texts: Iterable[Any]) -> pd.DataFrame:
        """Rate texts with the model whose answers carry a ``rating`` (ratings: 0-4, negative to positive)."""
        return self.score(texts, model_name(self.models, index_field=RATING_FIELD))

    def score(self, texts: Iterable[Any], model: str) -> pd.DataFrame:
        """Classify texts with any served model, by name; the frame has the index of ``texts`` (a Series) or 0..n-1."""
        info = self.models.get(model)
        if info is None:
            raise ValueError(f"No model {model!r} on {self.base_url}; it serves {', '.join(self.models)}.")
        series = texts if isinstance(texts, pd.Series) else pd.Series(list(texts), dtype=object)
        scored = text_mask(series)
        batches = self.batches(series[scored].tolist(), info.limits)
        answers = [answer for batch in batches for answer in self._post(info.endpoint, batch)]
        labels = info.labels
        best = np.array([labels.index(answer["prediction"]) for answer in answers], dtype=np.intp)
        probabilities = np.array([[answer["probabilities"][label] for label in labels] for answer in answers], dtype=float)
        coverage = np.array([[answer["coverage"]["known_terms"], answer["coverage"]["terms"]] for answer in answers])
        return predictions_frame(
            series.index,
            scored,
            labels,
            info.index_field,
            best,
            probabilities.reshape(len(answers), len(labels)),
            coverage.reshape(len(answers), 2),
            [answer["model_version"] for answer in answers],
        )

    def batches(self, texts: Sequence[str], limits: Limits | None = None) -> Iterator[bytes]:
        """Yield batch bodies of consecutive texts, each within a model's batch, body and characters limits.

        ``limits`` are the model's own (``ModelInfo.limits``); without them, the server's (``self.limits``).
        """
        limits = limits or self.limits
        longest = min(limits.max_query_chars, limits.max_request_chars or limits.max_query_chars)
        empty = len(BATCH_PREFIX) + len(BATCH_SUFFIX)
        batch: list[bytes] = []
        size, chars = empty, 0
        for position, text in enumerate(texts):
            if len(text) > longest:
                raise ValueError(
                    f"Text {position} has {len(text):,} characters; the server takes at most {longest:,}. "
                    "Shorten it first (e.g. texts.str.slice(0, limit))."
                )
            item = encode(text)
            if empty + len(item) > limits.max_body_bytes:
                raise ValueError(f"Text {position} alone makes a body over the server's {limits.max_body_bytes:,} bytes.")
            too_long = limits.max_request_chars is not None and chars + len(text) > limits.max_request_chars
            if batch and (len(batch) == limits.max_batch or size + 1 + len(item) > limits.max_body_bytes or too_long):
                yield BATCH_PREFIX + b",".join(batch) + BATCH_SUFFIX
                batch, size, chars = [], empty, 0
            size += len(item) + (1 if batch else 0)
            chars += len(text)
            batch.append(item)
        if batch:
            yield BATCH_PREFIX + b",".join(batch) + BATCH_SUFFIX

    @cached_property
    def limits(self) -> Limits:
        """The server's limits, read once from its OpenAPI document."""
        return published_limits(self._get("/openapi.json")["info"]["x-limits"])

    @cached_property
    def models(self) -> dict[str, ModelInfo]:
        """The served models by name, read once from ``/models``."""
        served = self._get("/models")["models"]
        return {
            name: ModelInfo(
                manifest["endpoint"],
                tuple(manifest["labels"]),
                manifest.get("index_field"),
                published_limits(manifest["limits"]) if "limits" in manifest else None,
            )
            for name, manifest in served.items()
        }

    def _get(self, path: str) -> Any:
        return read_answer(self.session.get(self.base_url + path, timeout=self.timeout))

    def _post(self, endpoint: str, body: bytes) -> list[dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        response = self.session.post(self.base_url + endpoint, data=body, headers=headers, timeout=self.timeout)
        return read_answer(response)["predictions"]


def published_limits(published: Mapping[str, Any]) -> Limits:
    """The limits a client needs of those a server publishes (``x-limits``, or a model's ``limits`` in ``/models``)."""
    return Limits(
        published["max_batch"], published["max_body_bytes"], published["max_query_chars"], published.get("max_request_chars")
    )


def model_name(models: Mapping[str, Any], *, endpoint: str | None = None, index_field: str | None = None) -> str:
    """The name of the served model at ``endpoint`` or answering with ``index_field``; names come from the models served.

    ``models`` maps names to anything with ``endpoint`` and ``index_field``: the client's ``/models``, or the scorer's
    loaded models.
    """
    for name, served in models.items():
        if (endpoint is None or served.endpoint == endpoint) and (index_field is None or served.index_field == index_field):
            return name
    wanted = f"at {endpoint}" if endpoint is not None else f"answering with a {index_field!r}"
    raise ValueError(f"No model {wanted}; the models served are {', '.join(models) or 'none'}.")


def encode(text: str) -> bytes:
    """One text as JSON, as it goes into a batch body (ASCII escapes, so any string encodes)."""
    return json.dumps(text).encode()


def read_answer(response: requests.Response) -> Any:
    """The decoded JSON of a successful answer; ApiError with the service's message otherwise."""
    if response.ok:
        return response.json()
    try:
        message = response.json()["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200] or response.reason
    raise ApiError(response.status_code, message)


# --- the table: predictions as a flat DataFrame ---------------------------------------------------
#
# Predictions as a flat table: one row per input text, in input order and with its index.
#
# The client (answers from the service) and the file scorer (models in process) both build their
# DataFrames here, so the two give the same columns, types and values:
#
# - ``prediction``: the label (missing for a row that was not text);
# - the model's index field if it has one (``rating`` for ratings, nullable integer);
# - ``confidence``: the probability of the predicted label, rounded to 3 decimals as the service answers;
# - ``p_<label>``: each label's probability, labels in the model's order (``p_somewhat_negative``:
#   characters other than letters, digits and ``_`` become ``_``, so every name is an identifier);
# - ``known_terms``, ``terms``: coverage (zero known terms means the answer is the class prior alone);
# - ``model_version``: the model that answered.
#
# A row whose input is not a non-blank string (None, NaN, "", whitespace, a number) is missing in
# every column: NaN, or <NA> for the integer ones.


def is_text(value: Any) -> bool:
    """Tell whether a value can be classified: a string with something besides whitespace (as the service requires)."""
    return isinstance(value, str) and bool(value.strip())


def text_mask(texts: pd.Series) -> np.ndarray:
    """One boolean per row: True where the row holds text to classify."""
    return np.fromiter((is_text(value) for value in texts), dtype=bool, count=len(texts))


def probability_column(label: str) -> str:
    """The column holding a label's probability: ``p_`` and the label, made an identifier."""
    return "p_" + re.sub(r"\W", "_", label)


def columns(labels: Sequence[str], index_field: str | None) -> list[str]:
    """The columns, in order, of a model with these labels and index field."""
    index = [index_field] if index_field else []
    return ["prediction", *index, "confidence", *map(probability_column, labels), "known_terms", "terms", "model_version"]


def predictions_frame(
    index: pd.Index,
    scored: np.ndarray,
    labels: Sequence[str],
    index_field: str | None,
    best: np.ndarray,
    probabilities: np.ndarray,
    coverage: np.ndarray,
    versions: Sequence[str],
) -> pd.DataFrame:
    """Lay predictions out as the table described above.

    ``scored`` marks the rows that were classified; ``best`` (class indices), ``probabilities`` (one row per
    scored text, columns in label order, rounded), ``coverage`` ((known terms, terms) per scored text) and
    ``versions`` hold one entry per scored row, in order.
    """
    rows = len(index)
    data: dict[str, Any] = {"prediction": _strings(rows, scored, np.asarray(labels, dtype=object)[best])}
    if index_field:
        data[index_field] = _integers(rows, scored, best)
    data["confidence"] = _floats(rows, scored, np.take_along_axis(probabilities, best[:, None], axis=1)[:, 0])
    for column, label in enumerate(labels):
        data[probability_column(label)] = _floats(rows, scored, probabilities[:, column])
    data["known_terms"] = _integers(rows, scored, coverage[:, 0])
    data["terms"] = _integers(rows, scored, coverage[:, 1])
    data["model_version"] = _strings(rows, scored, np.asarray(versions, dtype=object))
    return pd.DataFrame(data, index=index)


def _floats(rows: int, scored: np.ndarray, values: np.ndarray) -> np.ndarray:
    column = np.full(rows, np.nan)
    column[scored] = values
    return column


def _integers(rows: int, scored: np.ndarray, values: np.ndarray) -> pd.arrays.IntegerArray:
    column = np.zeros(rows, dtype=np.int64)
    column[scored] = values
    return pd.arrays.IntegerArray(column, ~scored)


def _strings(rows: int, scored: np.ndarray, values: np.ndarray) -> Any:
    column = np.full(rows, None, dtype=object)
    column[scored] = values
    return pd.array(column, dtype="str")
