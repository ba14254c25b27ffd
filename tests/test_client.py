"""client.py against live servers: the production server, one with small limits, and scripted ones for retries."""

from __future__ import annotations

import dataclasses
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import score
from client import ApiError, Limits, SentimentClient
from tests.support.harness import HOST, Server, free_port, serving

pytestmark = pytest.mark.slow  # live servers

SMALL_LIMITS = {"MAX_BATCH": "3", "MAX_BODY_BYTES": "120", "MAX_QUERY_CHARS": "60", "MAX_REQUEST_CHARS": "70"}
TEXTS = [
    "that movie was boring",
    None,
    "A gorgeous , witty and moving film .",
    np.nan,
    "",
    "  ",
    42,
    "None",
    "ein schöner Film, ganz ohne Langeweile 🎬",
    "the plot is thin and the jokes are flat",
]


@pytest.fixture(scope="module")
def small_limits_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The development server (quicker to start) with limits small enough that chunking shows."""
    with serving([sys.executable, "app.py"], SMALL_LIMITS, tmp_path_factory.mktemp("small-limits")) as server:
        yield server


@pytest.mark.parametrize("method", ["predict", "rate"])
def test_answers_equal_in_process_scoring_row_for_row(production_server: Server, method: str) -> None:
    texts = pd.Series(TEXTS, index=range(100, 100 + len(TEXTS)), dtype=object)
    with SentimentClient(production_server.url) as client:
        answered = getattr(client, method)(texts)
    expected = score.score_texts(texts, "sentiment" if method == "predict" else "ratings")
    pd.testing.assert_frame_equal(answered, expected)
    assert answered.loc[[101, 103, 104, 105, 106]].isna().all().all()
    assert answered.loc[[100, 102, 107, 108, 109], "prediction"].notna().all()


def test_lists_get_a_positional_index(production_server: Server) -> None:
    answered = SentimentClient(production_server.url).predict(["that movie was boring", None])
    assert list(answered.index) == [0, 1]
    assert answered["prediction"].iloc[0] == "Negative" and pd.isna(answered["prediction"].iloc[1])


def test_batches_follow_the_published_limits(small_limits_server: Server) -> None:
    client = SentimentClient(small_limits_server.url)
    assert client.limits == Limits(max_batch=3, max_body_bytes=120, max_query_chars=60, max_request_chars=70)
    texts = [text for text in TEXTS if isinstance(text, str) and text.strip()] * 3
    bodies = list(client.batches(texts))
    sent = [json.loads(body)["queries"] for body in bodies]
    assert [text for batch in sent for text in batch] == texts
    assert all(len(batch) <= 3 and len(body) <= 120 for batch, body in zip(sent, bodies, strict=True))
    assert all(sum(map(len, batch)) <= 70 for batch in sent)
    assert any(len(batch) < 3 for batch in sent[:-1])  # some were cut by the body or characters limit, not the count
    # Every one of those requests is accepted (a batch over a limit would be refused with 413).
    pd.testing.assert_frame_equal(client.rate(texts), score.score_texts(pd.Series(texts, dtype=object), "ratings"))


def test_batches_follow_each_models_own_limits(tmp_path_factory: pytest.TempPathFactory, mixed_models: Path) -> None:
    """A model of character n-grams holds requests to a quarter of the characters: the client cuts its batches to that."""
    env = {"MODELS_DIR": str(mixed_models), "MAX_BATCH": "50", "MAX_REQUEST_CHARS": "400"}
    with serving([sys.executable, "app.py"], env, tmp_path_factory.mktemp("per-model-limits")) as server:
        client = SentimentClient(server.url)
        assert client.limits.max_request_chars == 400
        assert client.models["sentiment-logreg"].limits == Limits(50, client.limits.max_body_bytes, 20_000, 100)
        texts = pd.Series(["the plot is thin and the jokes are flat"] * 40, dtype=object)  # 1,560 characters in all
        answered = client.score(texts, "sentiment-logreg")
    assert answered["prediction"].notna().all() and len(answered) == 40
    sent = [json.loads(body)["queries"] for body in client.batches(texts.tolist(), client.models["sentiment-logreg"].limits)]
    assert all(sum(map(len, batch)) <= 100 for batch in sent) and len(sent) == 20


def test_a_text_over_the_limit_is_refused_before_anything_is_sent(small_limits_server: Server) -> None:
    client = SentimentClient(small_limits_server.url)
    with pytest.raises(ValueError, match="Text 1 has 61 characters; the server takes at most 60"):
        client.predict(["good", "x" * 61])


def test_batches_are_cut_by_the_characters_budget_alone() -> None:
    client = SentimentClient("http://127.0.0.1:1")
    client.limits = Limits(max_batch=100, max_body_bytes=10_000, max_query_chars=60, max_request_chars=25)
    sent = [json.loads(body)["queries"] for body in client.batches(["ten chars!"] * 5 + ["x" * 25])]
    assert sent == [["ten chars!"] * 2, ["ten chars!"] * 2, ["ten chars!"], ["x" * 25]]
    with pytest.raises(ValueError, match="Text 0 has 26 characters; the server takes at most 25"):
        list(client.batches(["x" * 26]))


def test_error_answers_raise_with_the_service_message(small_limits_server: Server) -> None:
    client = SentimentClient(small_limits_server.url)
    shrunk = Limits(max_batch=10, max_body_bytes=120, max_query_chars=60)  # as if the server shrank them (no budget)
    client.models["sentiment"] = dataclasses.replace(client.models["sentiment"], limits=shrunk)
    with pytest.raises(ApiError, match=r"413: 'queries' holds 4 items; the limit is 3 per request\.") as raised:
        client.predict(["good", "bad", "fine", "dull"])
    assert raised.value.status == 413


def test_unknown_model_names_the_served_ones(production_server: Server) -> None:
    with pytest.raises(
        ValueError, match=r"No model 'reviews' on .*; it serves ratings, ratings-logreg, sentiment, sentiment-logreg\."
    ):
        SentimentClient(production_server.url).score(["good"], "reviews")


class Scripted(BaseHTTPRequestHandler):
    """A stand-in for the service whose batch answers follow a script: "503", "reset" or "ok", then always "ok"."""

    script: list[str]
    posts: list[str]

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""

    def send_json(self, status: int, body: object) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        if self.path == "/openapi.json":
            self.send_json(200, {"info": {"x-limits": {"max_batch": 1000, "max_body_bytes": 2**21, "max_query_chars": 20000}}})
        else:
            self.send_json(200, {"models": {"sentiment": {"endpoint": "/", "labels": ["Negative", "Positive"]}}})

    def do_POST(self) -> None:
        queries = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["queries"]
        step = self.script.pop(0) if self.script else "ok"
        self.posts.append(step)
        if step == "reset":  # drop the connection with a RST, as a dying worker or a proxy does
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        elif step == "503":
            self.send_json(503, {"message": "Service unavailable: draining."})
        else:
            answer = {
                "prediction": "Positive",
                "confidence": 0.6,
                "probabilities": {"Negative": 0.4, "Positive": 0.6},
                "coverage": {"known_terms": 1, "terms": 1},
                "model_version": "sentiment-scripted",
            }
            self.send_json(200, {"model_version": "sentiment-scripted", "predictions": [answer] * len(queries)})


#: The scripted server's URL, its handler class (whose script the test fills) and the event that starts it.
ScriptedServer = tuple[str, type[Scripted], threading.Event]


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    """A scripted server on a free port, started when the test sets the event (so it can start late), always stopped."""
    handler = type("Handler", (Scripted,), {"script": [], "posts": []})
    port, start, stop = free_port(), threading.Event(), threading.Event()

    def run() -> None:
        start.wait()
        with ThreadingHTTPServer((HOST, port), handler) as server:
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            stop.wait()
            server.shutdown()

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    yield f"http://{HOST}:{port}", handler, start
    start.set()
    stop.set()
    runner.join(timeout=5)


@pytest.mark.parametrize("script", [["503", "503"], ["reset"], ["reset", "503", "reset"]])
def test_batches_are_retried_after_503s_and_dropped_connections(scripted: ScriptedServer, script: list[str]) -> None:
    url, handler, start = scripted
    handler.script.extend(script)
    start.set()
    answered = SentimentClient(url, backoff=0.01).predict(["good", None, "fine"])
    assert handler.posts == [*script, "ok"]
    assert answered["prediction"].tolist()[::2] == ["Positive", "Positive"] and pd.isna(answered["prediction"].iloc[1])


def test_a_server_that_starts_late_is_waited_for(scripted: ScriptedServer) -> None:
    url, _, start = scripted
    threading.Timer(0.5, start.set).start()
    began = time.monotonic()
    answered = SentimentClient(url, backoff=0.1).predict(["good"])
    assert answered["prediction"].tolist() == ["Positive"] and time.monotonic() - began >= 0.5


def test_retries_give_up_with_the_last_answer(scripted: ScriptedServer) -> None:
    url, handler, start = scripted
    handler.script.extend(["503"] * 4)
    start.set()
    with pytest.raises(ApiError, match=r"503: Service unavailable: draining\.") as raised:
        SentimentClient(url, retries=2, backoff=0.01).predict(["good"])
    assert raised.value.status == 503 and handler.posts == ["503"] * 3
