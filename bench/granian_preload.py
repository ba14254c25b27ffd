"""Serve the app with granian's WSGI server, built once in the parent and shared by the forked workers (preload).

    HOST=127.0.0.1 PORT=8000 WEB_CONCURRENCY=2 .venv/bin/python -m bench.granian_preload

A benchmark candidate for the production server (bench.run): as gunicorn.conf.py does, single-threaded BLAS and a
fresh Prometheus multi-process folder are set before the app is imported, and ``gc.freeze()`` runs before the fork,
so the workers share the loaded models copy-on-write (workers fork from the parent on Python 3.11).
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

from granian import Granian
from granian.constants import Interfaces
from granian.server.common import AbstractServer

METRICS_PREFIX = "sentiment-api-granian-metrics-"


def metrics_dir() -> str | None:
    """Point PROMETHEUS_MULTIPROC_DIR at a fresh folder unless it is set; return the folder if this made it."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=METRICS_PREFIX)
    return os.environ["PROMETHEUS_MULTIPROC_DIR"]


def server() -> AbstractServer[Any]:
    """Granian's WSGI server on HOST:PORT with WEB_CONCURRENCY workers, one blocking thread each; the app logs access."""
    return Granian(
        "app:create_app",
        address=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        interface=Interfaces.WSGI,
        workers=int(os.environ.get("WEB_CONCURRENCY", "2")),
        blocking_threads=1,
        backpressure=16,
        respawn_failed_workers=True,
        log_access=False,  # the app writes the access log itself, as under gunicorn.conf.py
    )


def access_log_to_stdout() -> None:
    """Send the app's JSON access lines to stdout as gunicorn.conf.py does (ACCESS_LOG= turns them off)."""
    logger = logging.getLogger("sentiment_api.access")
    logger.propagate = False
    if os.environ.get("ACCESS_LOG", "-"):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main() -> None:
    """Build the app once, freeze its heap, and serve it from forked workers; remove the metrics folder made here."""
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")  # before NumPy is imported, as in gunicorn.conf.py
    made, parent = metrics_dir(), os.getpid()
    try:
        import app  # only now: the settings above must be in place when NumPy and prometheus-client load

        access_log_to_stdout()
        wsgi = app.create_app()
        gc.freeze()  # the collector in each worker then never writes to the pages it shares with the parent
        server().serve(target_loader=lambda _target: wsgi)
    finally:
        if made and os.getpid() == parent:  # a forked worker never removes the folder its siblings still use
            shutil.rmtree(made, ignore_errors=True)


if __name__ == "__main__":
    main()
