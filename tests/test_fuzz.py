"""Property-based fuzzing: whatever arrives, the service answers JSON with a 2xx or 4xx, never a 5xx.

Flat values, any bytes, and the shapes attackers use: JSON nested thousands deep, malformed chunked
framing and forwarded/SCRIPT_NAME headers (the last two on the live production server, which parses them);
and model folders whose manifest names and labels and analyzer settings are anything at all.

Bounded: a few hundred examples per property, no deadlines (CI machines are noisy).
"""

import functools
import json
import math
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import requests
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from app import create_app
from lib.paths import MODELS_DIR
from lib.settings import NUMERIC_RANGES, ConfigError, ServerSettings, Settings
from model import ModelLoadError, NLPModel
from tests.helpers import plant, raw_exchange, rewrite_manifest
from tests.support.harness import Server

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
    fast = model.score_one(text)[0]
    assert np.isfinite(fast).all() and abs(fast.sum() - 1) < 1e-9
    np.testing.assert_allclose(fast, model.predict_texts([text])[0], rtol=0, atol=1e-9)


@functools.cache
def _committed_sentiment() -> NLPModel:
    """Load the committed sentiment model once for the whole property."""
    return NLPModel.load(MODELS_DIR / "sentiment")


# --- the shapes attackers use: deep nesting, chunked framing, proxy headers ----------------------

OPENERS = st.sampled_from(["[", '{"a": '])


@st.composite
def deeply_nested(draw: st.DrawFn) -> str:
    """JSON text nested up to a few thousand levels, lists and objects mixed, around a string."""
    openers = draw(st.lists(OPENERS, min_size=1, max_size=3000))
    closers = "".join("]" if opener == "[" else "}" for opener in reversed(openers))
    return "".join(openers) + '"x"' + closers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nested=deeply_nested(), where=st.sampled_from(["body", "query", "queries", "item"]))
def test_any_nesting_depth(fuzz_client: FlaskClient, nested: str, where: str) -> None:
    body = {"body": nested, "query": f'{{"query": {nested}}}', "queries": f'{{"queries": {nested}}}'}.get(
        where, f'{{"queries": ["fine", {nested}]}}'
    )
    response = fuzz_client.post("/", data=body, content_type="application/json")
    assert_clean(response, {200, 400, 413})


CHUNK_SIZES = st.sampled_from(["4", "04", "zz", "0x4", "4 ", " 4", "-4", "4;ext=1", "ffffffffffffffff", "", "4\t"])
LINE_ENDS = st.sampled_from(["\r\n", "\n", "", "\r"])
TRAILERS = st.sampled_from(["", "Content-Length: 5\r\n", "X-Trailer: ok\r\n", "Transfer-Encoding: chunked\r\n", ": bad\r\n"])


@st.composite
def chunked_bodies(draw: st.DrawFn) -> bytes:
    """A chunked body whose sizes, line ends and trailers may each be wrong."""
    parts = []
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        parts.append(draw(CHUNK_SIZES) + draw(LINE_ENDS) + '{"q"' + draw(LINE_ENDS))
    return ("".join(parts) + "0" + draw(LINE_ENDS) + draw(TRAILERS) + "\r\n").encode()


LIVE = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def assert_clean_raw(answer: bytes) -> None:
    """A 2xx or 4xx status and a JSON body, from the production server itself."""
    status_line, _, rest = answer.partition(b"\r\n")
    assert re.match(rb"HTTP/1\.[01] [24]\d\d ", status_line), answer[:300]
    body = rest.split(b"\r\n\r\n", 1)[1]
    assert isinstance(json.loads(body), dict), answer[:300]


@LIVE
@given(framing=chunked_bodies())
def test_any_chunked_framing_on_the_live_server(production_server: Server, framing: bytes) -> None:
    head = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    answer = raw_exchange(production_server, head + framing, timeout=1.0)
    if answer:
        assert_clean_raw(answer)
    else:  # framing the parser reads as unfinished: it waits for the rest, like any stalled upload (nginx's to cut)
        assert requests.get(f"{production_server.url}/health", timeout=5).status_code == 200
        assert "Traceback" not in production_server.stderr.read_text()


PROXY_HEADERS = st.sampled_from(
    [
        "SCRIPT_NAME",
        "Script-Name",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "X-Forwarded-Host",
        "X-Forwarded-Prefix",
        "Forwarded",
        "X-Real-IP",
        "X-Forwarded-Port",
        "Wsgi-Url-Scheme",
    ]
)
HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@LIVE
@given(
    headers=st.dictionaries(PROXY_HEADERS, HEADER_VALUES, max_size=4), path=st.sampled_from(["/", "/ratings", "/health", "/x/y"])
)
def test_any_proxy_headers_on_the_live_server(production_server: Server, headers: dict[str, str], path: str) -> None:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = f"GET {path}?query=good HTTP/1.1\r\nHost: x\r\n{lines}Connection: close\r\n\r\n"
    assert_clean_raw(raw_exchange(production_server, request.encode()))


# --- model folders: whatever a manifest or vectorizer.json holds, a load serves it or refuses it in one line ---------

NAMES = st.one_of(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,70}", fullmatch=True), ANY_TEXT)
LABELS = st.lists(st.one_of(st.sampled_from(["Negative", "Positive", "<img src=x>", "très bien"]), ANY_TEXT), max_size=4)
ANALYZER_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "analyzer": st.sampled_from(["word", "char", "char_wb", "evil", None]),
        "ngram_range": st.one_of(st.lists(st.integers(-2, 12), max_size=3), JSON_VALUES),
        "token_pattern": st.one_of(
            st.sampled_from([r"(?u)\b\w\w+\b", r"(?u)\b\w+\b", r"(\w+\s?)+$x", "(", None]), ANY_TEXT, JSON_VALUES
        ),
        "stop_words": st.one_of(st.none(), st.just("english"), st.lists(ANY_TEXT, max_size=5), JSON_VALUES),
        "lowercase": st.one_of(st.booleans(), JSON_VALUES),
        "strip_accents": st.sampled_from([None, "ascii", "unicode", "latin"]),
        "norm": st.sampled_from(["l1", "l2", None, "l3"]),
    },
)


@pytest.fixture(scope="module")
def model_folder(tiny_models: Path) -> Path:
    """The tiny sentiment model, to copy and tamper with."""
    return tiny_models / "sentiment"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.one_of(st.none(), NAMES), labels=st.one_of(st.none(), LABELS), params=ANALYZER_PARAMS)
def test_any_model_folder_loads_and_serves_or_is_refused_in_one_line(
    model_folder: Path, name: str | None, labels: list[str] | None, params: dict
) -> None:
    with tempfile.TemporaryDirectory() as temporary:
        models = Path(temporary) / "models"
        folder = Path(shutil.copytree(model_folder, models / "sentiment"))
        saved = json.loads((folder / "vectorizer.json").read_text())
        saved["blocks"][0]["params"].update(params)
        plant(folder, "vectorizer.json", json.dumps(saved).encode())
        changes = {key: value for key, value in (("name", name), ("labels", labels)) if value is not None}
        rewrite_manifest(folder, **changes)
        try:
            client = create_app({"MODELS_DIR": str(models)}).test_client()
        except ModelLoadError as exc:
            message = str(exc)
            assert "\n" not in message and "\r" not in message and str(folder) in message, message
            return
        served = client.application.extensions["models"].models
        (model,) = served.values()
        for path in (f"{model.endpoint}?query=a%20fine%20film&explain=true", f"{model.endpoint}?query=%C4%B0x%20y"):
            answer = client.get(path)
            assert answer.status_code == 200 and answer.headers["X-Model-Version"] == model.version
        assert client.get("/openapi.json").status_code == 200 and client.get("/models").status_code == 200


#: What a numeric setting may be given: any text (digits, signs, exponents, "inf", "nan" and garbage), any number.
SETTING_VALUES = st.one_of(
    st.text(alphabet="0123456789+-.eE_xinfaINFA ", max_size=12),
    ANY_TEXT,
    st.floats(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.floats().map(repr),
)


@FUZZ
@given(key=st.sampled_from(sorted(NUMERIC_RANGES)), value=SETTING_VALUES)
def test_any_numeric_setting_is_within_its_range_or_refused_in_one_line(key: str, value: object) -> None:
    low, high = NUMERIC_RANGES[key]
    try:
        service, server = Settings.from_mapping({key: value}), ServerSettings.from_mapping({key: value})
    except ConfigError as refused:
        [line] = str(refused).splitlines()
        assert line.startswith(f"Config {key!r} has value {value!r}. Not "), line
        return
    field = "workers" if key == "WEB_CONCURRENCY" else key.lower()
    number = getattr(service, field) if hasattr(service, field) else getattr(server, field)
    assert math.isfinite(number) and low <= number <= high, (key, value, number)
