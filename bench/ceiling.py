"""The ceiling: a Flask app that answers like the service but does no work, run under the same gunicorn config.

    gunicorn -c bench/gunicorn_conf.py bench.ceiling:app

Whatever the service loses against this app per request is what its own code (parsing, inference,
error handling) costs; the rest is gunicorn, Flask and the HTTP stack, which no change to app.py can win back.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify

ANSWER = {"prediction": "Positive", "confidence": 0.9, "probabilities": {"Negative": 0.1, "Positive": 0.9}}

app = Flask(__name__)


@app.get("/")
def constant() -> Response:
    """Answer every query with the same prediction, so the cost measured is the stack's alone."""
    return jsonify(ANSWER)
