"""The ceiling: a Flask view that answers like the service but does no work, under the production server's settings.

    HOST=127.0.0.1 PORT=8001 WEB_CONCURRENCY=2 .venv/bin/python -m bench.ceiling

The server is lib/server.py's own granian (``granian_server``: the same workers, one Python thread each, the same
backpressure and timeouts, read from the same environment variables), serving this constant view instead of the
service. Whatever the service loses against it per request is what its own code (parsing, inference, metrics, the
access log, error handling) costs; the rest is granian, Flask and the HTTP stack, which no change to app.py can win
back.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Mapping

from flask import Flask, Response, jsonify

from lib.server import granian_server, lean_log_records, read_settings
from lib.settings import ConfigError

ANSWER = {"prediction": "Positive", "confidence": 0.9, "probabilities": {"Negative": 0.1, "Positive": 0.9}}
COMMAND = [sys.executable, "-m", "bench.ceiling"]

app = Flask(__name__)


@app.get("/")
def constant() -> Response:
    """Answer every query with the same prediction, so the cost measured is the stack's alone."""
    return jsonify(ANSWER)


def serve(environ: Mapping[str, str]) -> int:
    """Serve the constant view as lib.server serves the app: settings checked first, workers forked from this process."""
    try:
        settings, config = read_settings(environ)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    server = granian_server(config, settings)
    lean_log_records()
    gc.freeze()
    server.serve(target_loader=lambda _target: app)
    return 0


if __name__ == "__main__":
    sys.exit(serve(os.environ))
