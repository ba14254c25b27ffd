"""Where a request's time goes, in process: the WSGI app alone, without server or network.

    .venv/bin/python -m bench.request_cost

Prints the CPU time per request of the constant-JSON ceiling view, of the service's /health and
of a prediction, what each layer of the prediction path adds, what ``explain=true`` adds, and a
cProfile of the prediction. The two ratios come from interleaved rounds: measured minutes apart,
the same request's cost drifts by a third on these machines.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import time
from collections.abc import Callable

from flask import Flask
from flask_restful import Api, Resource
from werkzeug.test import EnvironBuilder

from bench.ceiling import ANSWER
from bench.ceiling import app as ceiling

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as lib/server.py does; set before app imports NumPy

QUERY = "/?query=" + "the%20film%20is%20a%20bit%20too%20long%20but%20the%20cast%20is%20wonderful"
TEXT = "the film is a bit too long but the cast is wonderful"


def per_call_us(function: Callable[[], object], count: int = 3000, rounds: int = 5) -> float:
    """Best-of-rounds microseconds per call: the least disturbed measure on a shared machine."""
    for _ in range(200):
        function()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            function()
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e6


def interleaved_us(functions: list[Callable[[], object]], count: int = 1000, rounds: int = 21) -> list[float]:
    """Best-of-rounds microseconds per call of each function, their rounds interleaved so a busy moment hits all alike."""
    for function in functions:
        for _ in range(200):
            function()
    best = [float("inf")] * len(functions)
    for _ in range(rounds):
        for index, function in enumerate(functions):
            started = time.perf_counter()
            for _ in range(count):
                function()
            best[index] = min(best[index], (time.perf_counter() - started) / count)
    return [seconds * 1e6 for seconds in best]


def absent_explain_cost(service: Flask) -> float:
    """What a plain prediction pays to learn it was not asked to explain: reading ``explain`` from a request without it."""
    from lib.parsing import read_explain

    settings = service.config["SETTINGS"]
    with service.test_request_context(QUERY):
        return per_call_us(lambda: read_explain(settings), count=20000)


def wsgi_call(app: Callable, path: str) -> Callable[[], bytes]:
    """A function that runs one request through a WSGI app and reads the whole answer."""
    environ = EnvironBuilder(path=path).get_environ()
    return lambda: b"".join(app(dict(environ), lambda *_: None))


def restful_ceiling() -> Flask:
    """The ceiling's constant answer from a Flask-RESTful Resource: what the resource layer alone costs."""
    app = Flask(__name__)

    class Constant(Resource):
        def get(self) -> dict:
            return ANSWER

    Api(app).add_resource(Constant, "/")
    return app


def main() -> None:
    """Print the per-layer costs and the profile."""
    from app import create_app  # imported here, after OPENBLAS_NUM_THREADS is set

    service = create_app()
    model = service.extensions["models"].models["sentiment"].model  # the NLPModel a ServedModel wraps
    ceiling_us, prediction_us = interleaved_us([wsgi_call(ceiling, "/"), wsgi_call(service, QUERY)])
    rows = [
        ("ceiling: Flask view returning a constant dict", ceiling_us),
        ("same constant from a Flask-RESTful Resource", per_call_us(wsgi_call(restful_ceiling(), "/"))),
        ("service: GET /health (Flask-RESTful + hooks)", per_call_us(wsgi_call(service, "/health"))),
        ("service: GET /?query=... (prediction)", prediction_us),
        ("  of which NLPModel.score_one", per_call_us(lambda: model.score_one(TEXT))),
        ("  scikit-learn transform + predict_proba instead", per_call_us(lambda: model.predict_texts([TEXT]), count=500)),
    ]
    plain, explained = interleaved_us([wsgi_call(service, QUERY), wsgi_call(service, QUERY + "&explain=true")])
    rows += [
        ("plain prediction, interleaved with the next", plain),
        ("service: GET /?query=...&explain=true", explained),
        ("  of which NLPModel.explain", per_call_us(lambda: model.explain(TEXT))),
        ("plain prediction: reading explain (absent)", absent_explain_cost(service)),
    ]
    for label, microseconds in rows:
        print(f"{label:<52} {microseconds:8.1f} us")
    print(f"prediction / ceiling: {prediction_us / ceiling_us:.2f}x the ceiling's in-process cost, rounds interleaved")
    print(f"explain=true / plain prediction: {explained / plain:.2f}x (+{explained - plain:.1f} us), rounds interleaved")
    profiler = cProfile.Profile()
    call = wsgi_call(service, QUERY)
    profiler.enable()
    for _ in range(2000):
        call()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    print(out.getvalue())


if __name__ == "__main__":
    main()
