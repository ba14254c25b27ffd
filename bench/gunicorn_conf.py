"""The old production stack, kept as the benchmarks' reference: ``gunicorn -c bench/gunicorn_conf.py`` on 127.0.0.1:8000.

bench.run measures the production server (lib/server.py, granian) against it and against its ceiling (a constant
Flask view under these same settings). Every setting reads an environment variable first.
"""

import atexit
import gc
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import gunicorn.http.wsgi
import gunicorn.util
from gunicorn.workers import gthread
from gunicorn.workers.sync import SyncWorker

from lib.server import logging_config
from lib.settings import MAX_URL_BYTES, ConfigError, Settings, non_negative_number, positive_int


def _setting(read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Read a setting from the environment; a bad value stops the server with one line naming it."""
    try:
        return read(os.environ, *args, **kwargs)
    except ConfigError as exc:
        sys.exit(f"Error: {exc}")  # SystemExit: gunicorn would print any Exception with its traceback


def _worker_class(values: Mapping[str, str]) -> str:
    """Read WORKER_CLASS: sync or gthread."""
    name = values.get("WORKER_CLASS", "sync")
    if name not in ("sync", "gthread"):
        raise ConfigError(f"Config 'WORKER_CLASS' has value {name!r}. Expected sync or gthread.")
    return name


_SETTINGS: Settings = _setting(Settings.from_mapping)  # the app's own settings, checked before anything starts

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
workers = _setting(positive_int, "WEB_CONCURRENCY", 2 * (os.cpu_count() or 1) + 1)
worker_class = _setting(_worker_class)
threads = _setting(positive_int, "THREADS", 1)
backlog = 2048
# Off by default: with SO_REUSEPORT each worker gets its own socket, but connections waiting on
# a worker's socket are reset when that worker exits (reload, max_requests, crash) unless the
# host sets net.ipv4.tcp_migrate_req=1. Only worth it for gthread workers; see README.
reuse_port = os.environ.get("REUSE_PORT", "") == "1"

timeout = _setting(positive_int, "TIMEOUT", 30)
# A client that goes silent for this long mid-request (headers or body) is disconnected, so a
# stalled or deliberately slow client holds a worker for seconds, not forever.
CLIENT_TIMEOUT = _setting(non_negative_number, "CLIENT_TIMEOUT", 5.0) or None  # 0: no timeout
graceful_timeout = _setting(positive_int, "GRACEFUL_TIMEOUT", 30)
# On SIGTERM, keep answering for this long while /ready says 503 "draining", so a load balancer
# stops routing here before the workers stop (set it to the balancer's readiness-check interval
# and keep it below GRACEFUL_TIMEOUT). 0: stop as soon as in-flight requests finish.
DRAIN_SECONDS = _setting(non_negative_number, "DRAIN_SECONDS", 0.0)
keepalive = _setting(positive_int, "KEEPALIVE", 5)

# Load the models once in the master; workers share their pages copy-on-write.
preload_app = True
max_requests = int(_setting(non_negative_number, "MAX_REQUESTS", 100_000, whole=True))  # 0: never recycle
max_requests_jitter = int(_setting(non_negative_number, "MAX_REQUESTS_JITTER", max(1, max_requests // 10), whole=True))

# Requests reach the app with a bounded request line and headers (the body is bounded by the app).
limit_request_line = MAX_URL_BYTES
limit_request_fields = 100
limit_request_field_size = MAX_URL_BYTES

loglevel = _SETTINGS.log_level.lower()
errorlog = "-"
# The access log is the app's own (lib/observability.py: AccessLog), one JSON object per line on
# stdout, so it is the same under any server and escapes whatever a client sends; gunicorn's is off.
accesslog = None

# One JSON object per line on both streams: access log on stdout, everything else on stderr,
# with the request id on any line logged while a request is served.
logconfig_dict = logging_config(loglevel.upper(), _SETTINGS.access_log)  # the production server's, for gunicorn
logconfig_dict["loggers"]["gunicorn.error"] = logconfig_dict["loggers"].pop("_granian")
del logconfig_dict["loggers"]["granian.access"]


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
# The folder goes when the master exits, however it exits (a failed start included); never when a
# worker does, since workers inherit this registration when they fork.
_METRICS_PREFIX = "sentiment-api-metrics-"


def _remove_metrics_folder(directory: str, master_pid: int) -> None:
    """Remove the metrics folder this config created, from the master only."""
    if os.getpid() == master_pid:
        shutil.rmtree(directory, ignore_errors=True)


if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=_METRICS_PREFIX)
    atexit.register(_remove_metrics_folder, os.environ["PROMETHEUS_MULTIPROC_DIR"], os.getpid())


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
