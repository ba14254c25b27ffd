"""Property-based fuzzing: whatever arrives, the service answers JSON with a 2xx or 4xx, never a 5xx.

Bounded: a few hundred examples per property, no deadlines (CI machines are noisy).
"""

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from app import create_app
from model import NLPModel

pytestmark = pytest.mark.slow  # hypothesis fuzzing

ROOT = str(Path(__file__).resolve().parent.parent)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any code point, lone surrogates and control characters included.
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=200)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(ANY_TEXT, children, max_size=5),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def fuzz_client(tiny_models: Path) -> FlaskClient:
    app = create_app({"MODELS_DIR": str(tiny_models), "MAX_QUERY_CHARS": 100, "MAX_BATCH": 5, "MAX_BODY_BYTES": 4096})
    return app.test_client()


def assert_clean(response: TestResponse, allowed: set[int]) -> None:
    """A well-formed answer: expected status, JSON, no internals leaked."""
    assert response.status_code in allowed, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.is_json
    body = response.get_json()
    assert isinstance(body, dict) and ("message" in body or "prediction" in body or "predictions" in body)
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and ROOT not in text


@FUZZ
@given(query=ANY_TEXT)
def test_any_query_in_json(fuzz_client: FlaskClient, query: str) -> None:
    for path in ("/", "/ratings"):
        response = fuzz_client.post(path, data=json.dumps({"query": query}), content_type="application/json")
        assert_clean(response, {200, 400, 413})


@FUZZ
@given(body=JSON_VALUES)
def test_any_json_body(fuzz_client: FlaskClient, body: object) -> None:
    for wrapped in (body, {"query": body}, {"queries": body}, {"queries": [body, "fine"]}):
        response = fuzz_client.post("/", data=json.dumps(wrapped), content_type="application/json")
        assert_clean(response, {200, 400, 413})


@FUZZ
@given(
    raw=st.binary(max_size=600),
    content_type=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x", ""]
    ),
)
def test_any_bytes_as_body(fuzz_client: FlaskClient, raw: bytes, content_type: str) -> None:
    for method in ("GET", "POST"):
        response = fuzz_client.open("/", method=method, data=raw, content_type=content_type)
        assert_clean(response, {200, 400, 413})


@FUZZ
@given(raw=st.binary(max_size=300))
def test_any_bytes_as_query_string(fuzz_client: FlaskClient, raw: bytes) -> None:
    """Invalid percent-encoding and invalid UTF-8 in the URL included."""
    # WSGI carries the raw query string as latin-1: every byte arrives as it was sent.
    response = fuzz_client.get("/ratings", environ_overrides={"QUERY_STRING": (b"query=" + raw).decode("latin-1")})
    assert_clean(response, {200, 400, 413})


@FUZZ
@given(size=st.integers(min_value=0, max_value=300))
def test_empty_and_huge_values(fuzz_client: FlaskClient, size: int) -> None:
    response = fuzz_client.get("/", query_string={"query": "a" * size})
    assert_clean(response, {200} if 0 < size <= 100 else {400, 413})


@settings(max_examples=300, deadline=None)
@given(text=ANY_TEXT)
def test_model_handles_any_text(text: str) -> None:
    model = _committed_sentiment()
    fast = model.predict_one(text)
    assert np.isfinite(fast).all() and abs(fast.sum() - 1) < 1e-9
    np.testing.assert_allclose(fast, model.predict_texts([text])[0], rtol=0, atol=1e-9)


@functools.cache
def _committed_sentiment() -> NLPModel:
    """Load the committed sentiment model once for the whole property."""
    return NLPModel.load(Path(ROOT) / "lib" / "models" / "sentiment")
