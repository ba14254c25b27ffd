"""Production server settings: ``gunicorn -c gunicorn.conf.py`` serves the API on 127.0.0.1:8000.

Every setting reads an environment variable first, and ``GUNICORN_CMD_ARGS`` still overrides
anything here. Why each value is what it is: see "Serving in production" in the README.
"""

import gc
import json
import os
import shutil
import signal
import tempfile

import gunicorn.http.wsgi
import gunicorn.util
from gunicorn.workers import gthread
from gunicorn.workers.sync import SyncWorker

from lib.settings import MAX_URL_BYTES

# Single-threaded maths in every worker. NumPy's BLAS would otherwise start a thread pool per
# worker whose spinning threads fight the workers for the cores: measured here, it halved
# throughput (see README). Set before the app, and so NumPy, is imported.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

# No server name and version in every response: they only help an attacker pick an exploit.
gunicorn.http.wsgi.SERVER = "sentiment-api"


def _write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """Answer what gunicorn refuses itself (URL too long, bad headers) in the API's error shape, not HTML."""
    body = json.dumps({"message": f"{reason}: {mesg}" if mesg else reason}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"X-Content-Type-Options: nosniff\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn.util.write_nonblock(sock, head.encode("latin-1") + body)


gunicorn.util.write_error = _write_json_error

wsgi_app = "app:create_app()"
bind = os.environ.get("BIND", f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}")

# Sync workers, one request at a time each: measured against gthread on this service, they
# matched gthread's best throughput at 16 connections (2.5x its worst) with a lower p99, and
# share the load evenly (a gthread worker can keep every keep-alive connection while a core idles).
# Gunicorn's 2 x cores + 1 keeps the cores busy while a worker waits on a client; each extra
# worker costs ~11 MB (copy-on-write, see README).
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1) + 1))
worker_class = os.environ.get("WORKER_CLASS", "sync")
threads = int(os.environ.get("THREADS", "1"))
backlog = 2048
# Off by default: with SO_REUSEPORT each worker gets its own socket, but connections waiting on
# a worker's socket are reset when that worker exits (reload, max_requests, crash) unless the
# host sets net.ipv4.tcp_migrate_req=1. Only worth it for gthread workers; see README.
reuse_port = os.environ.get("REUSE_PORT", "") == "1"

timeout = int(os.environ.get("TIMEOUT", "30"))
# A client that goes silent for this long mid-request (headers or body) is disconnected, so a
# stalled or deliberately slow client holds a worker for seconds, not forever.
CLIENT_TIMEOUT = float(os.environ.get("CLIENT_TIMEOUT", "5"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "30"))
# On SIGTERM, keep answering for this long while /ready says 503 "draining", so a load balancer
# stops routing here before the workers stop (set it to the balancer's readiness-check interval
# and keep it below GRACEFUL_TIMEOUT). 0: stop as soon as in-flight requests finish.
DRAIN_SECONDS = float(os.environ.get("DRAIN_SECONDS", "0"))
keepalive = int(os.environ.get("KEEPALIVE", "5"))

# Load the models once in the master; workers share their pages copy-on-write.
preload_app = True
max_requests = int(os.environ.get("MAX_REQUESTS", "100000"))
max_requests_jitter = int(os.environ.get("MAX_REQUESTS_JITTER", str(max(1, max_requests // 10))))

# Requests reach the app with a bounded request line and headers (the body is bounded by the app).
limit_request_line = MAX_URL_BYTES
limit_request_fields = 100
limit_request_field_size = MAX_URL_BYTES

loglevel = os.environ.get("LOG_LEVEL", "info").lower()
errorlog = "-"
# The access log is the app's own (lib/observability.py: AccessLog), one JSON object per line on
# stdout, so it is the same under any server and escapes whatever a client sends; gunicorn's is off.
accesslog = None
ACCESS_LOG = os.environ.get("ACCESS_LOG", "-")

# One JSON object per line on both streams: access log on stdout, everything else on stderr,
# with the request id on any line logged while a request is served.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "lib.observability.RequestIdFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        },
        "access": {"format": "%(message)s"},
    },
    "handlers": {
        "error": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "json", "filters": ["request_id"]},
        "access": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "access"},
    },
    "loggers": {
        "gunicorn.error": {"handlers": ["error"], "level": loglevel.upper(), "propagate": False},
        "sentiment_api.access": {"handlers": ["access"] if ACCESS_LOG else [], "level": "INFO", "propagate": False},
    },
    "root": {"handlers": ["error"], "level": loglevel.upper()},
}


def _with_read_timeout(handle):
    """Make every read on a client socket give up after CLIENT_TIMEOUT seconds of silence."""

    def set_timeout_then_handle(worker, listener, client, address) -> None:
        client.settimeout(CLIENT_TIMEOUT)
        handle(worker, listener, client, address)

    set_timeout_then_handle.wrapped = True
    return set_timeout_then_handle


def _gthread_with_read_timeout(init):
    """The same for gthread, whose init() makes the socket blocking with no timeout."""

    def init_then_set_timeout(conn) -> None:
        init(conn)
        conn.sock.settimeout(CLIENT_TIMEOUT)

    init_then_set_timeout.wrapped = True
    return init_then_set_timeout


# Gunicorn reads requests from blocking sockets with no timeout: a silent client would hold a
# worker for ever. (Guarded: a SIGHUP executes this file again.)
if not getattr(SyncWorker.handle, "wrapped", False):
    SyncWorker.handle = _with_read_timeout(SyncWorker.handle)
if not getattr(gthread.TConn.init, "wrapped", False):
    gthread.TConn.init = _gthread_with_read_timeout(gthread.TConn.init)

# Trust no client's forwarded or SCRIPT_NAME headers unless it is a listed proxy (gunicorn's own default
# trusts loopback, so anyone on the machine could set SCRIPT_NAME and get a 500). List your proxies'
# addresses in FORWARDED_ALLOW_IPS, comma-separated, to serve under a path prefix behind them.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "")

# The runtime control socket is not used; one fixed path would also clash between instances.
control_socket_disable = True

# Prometheus counters are per process; workers write them to files that /metrics merges. A
# fresh folder per server start (set before the app is imported) means counts start from zero.
_METRICS_PREFIX = "sentiment-api-metrics-"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=_METRICS_PREFIX)


def when_ready(server) -> None:
    """Freeze the preloaded heap, so the collector in each worker never writes to shared pages."""
    gc.freeze()


def on_reload(server) -> None:
    """On SIGHUP, load the models again in the master before new workers fork from it."""
    server.app.wsgi().extensions["models"].reload()
    gc.freeze()


def post_worker_init(worker) -> None:
    """Make SIGTERM drain first: /ready answers 503 for DRAIN_SECONDS, then the worker stops as usual."""
    if DRAIN_SECONDS <= 0:
        return
    stop = worker.handle_exit

    def drain_then_stop(signum, frame) -> None:
        worker.wsgi.extensions["lifecycle"].begin_drain()
        signal.signal(signal.SIGALRM, lambda *_: stop(signum, frame))
        signal.setitimer(signal.ITIMER_REAL, DRAIN_SECONDS)

    signal.signal(signal.SIGTERM, drain_then_stop)


def child_exit(server, worker) -> None:
    """Drop a dead worker's live gauges from the merged metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Remove the metrics folder if this config created it (a folder you set is yours to empty)."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if os.path.basename(directory).startswith(_METRICS_PREFIX):
        shutil.rmtree(directory, ignore_errors=True)
