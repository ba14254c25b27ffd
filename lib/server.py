"""The production server: ``python -m lib.server`` (``make production``) serves the API on HOST:PORT with granian.

granian's HTTP front is Rust; each worker runs the app on one Python thread, so a request costs only the app's own
Python (see "Serving in production" in the README for the measurements behind the choice, and for what the proxy
in front of it guards). The app is built once, here in the parent, and the workers fork from it: they share the
loaded models copy-on-write, and a bad setting or model stops the start with one line before any worker exists.

Signals: SIGHUP builds a new app in the parent, loading every model folder again (a model added, removed or moved
gets or loses its route; a folder that fails in any way is refused in one log line and the old app keeps serving),
then replaces the workers one by one, each new one serving the new app. SIGTERM makes /ready answer 503 for
DRAIN_SECONDS, then stops the workers, which finish in-flight requests within GRACEFUL_TIMEOUT; whatever the parent
is doing meanwhile (a reload, say), the server has stopped STOP_MARGIN seconds after that.
"""

from __future__ import annotations

import argparse
import errno
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lib.settings import ConfigError, ServerSettings, Settings

log = logging.getLogger("lib.server")

#: Requests a worker queues for its Python thread before granian answers 503 (measured: see README, Performance).
BACKPRESSURE = 16
#: Seconds between starting a new worker and stopping the one it replaces on SIGHUP.
RESPAWN_INTERVAL = 1.0
#: Seconds past DRAIN_SECONDS + GRACEFUL_TIMEOUT after SIGTERM at which a stop still under way is forced.
STOP_MARGIN = 0.5
METRICS_PREFIX = "sentiment-api-metrics-"
STREAM = {"class": "logging.StreamHandler"}


def logging_config(level: str, access_log: bool) -> dict[str, Any]:
    """One JSON object per line: the access log on stdout, everything else on stderr, with request ids; one time format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "lib.observability.RequestIdFilter"}},
        "formatters": {
            "json": {
                "()": "lib.logs.JsonLogFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(request_id)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
            },
            "access": {"format": "%(message)s"},
        },
        "handlers": {
            "error": {**STREAM, "stream": "ext://sys.stderr", "formatter": "json", "filters": ["request_id"]},
            "access": {**STREAM, "stream": "ext://sys.stdout", "formatter": "access"},
        },
        "loggers": {
            "_granian": {"handlers": ["error"], "level": level, "propagate": False},
            "granian.access": {"handlers": [], "level": "CRITICAL", "propagate": False},  # the app logs access
            "sentiment_api.access": {"handlers": ["access"] if access_log else [], "level": "INFO", "propagate": False},
        },
        "root": {"handlers": ["error"], "level": level},
    }


def lean_log_records() -> None:
    """Leave out of every log record what no line here shows: the caller's file and line, thread and process names.

    Finding the caller walks the stack on every call; with these off (the logging HOWTO's "Optimization"), an
    access-log line costs about half as much (measured ~22 to ~11 us). The pid, which the error log shows, stays.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False


def read_settings(environ: Mapping[str, str]) -> tuple[Settings, ServerSettings]:
    """Every setting, checked before anything starts; production listens on port 8000 unless PORT says otherwise."""
    return Settings.from_mapping(environ), ServerSettings.from_mapping(environ)


def address_refusal(config: ServerSettings) -> str | None:
    """Why the server cannot listen on HOST:PORT, or None: asked of the kernel with a plain socket, before any worker.

    granian's workers each bind the address with SO_REUSEPORT, which the kernel grants beside any listener of the same
    user that set it too: a second server on a busy port would start without a word and take part of the first one's
    connections. A socket without SO_REUSEPORT is refused beside any listener (as the development server's is), and
    bound without listening it never accepts a connection meant for another server. SO_REUSEADDR keeps a restart from
    being refused over the last run's connections in TIME_WAIT. Checked first, so the refusal is the only line: a
    server started between this check and the workers' listening (the model loading, about a second) is not seen.
    """
    family = socket.AF_INET6 if ":" in config.address else socket.AF_INET
    where = f"[{config.address}]:{config.port}" if family == socket.AF_INET6 else f"{config.address}:{config.port}"
    named = "" if config.host == config.address else f" ({config.host})"
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((config.address, config.port))
    except OSError as exc:  # in use; not this machine's address; a port below 1024 without the right; no IPv6 here
        if exc.errno == errno.EADDRINUSE:
            return f"{where}{named} is already in use (HOST, PORT): stop the server listening there, or choose another PORT."
        return f"Cannot listen on {where}{named} (HOST, PORT): {exc.strerror or exc}."
    return None


def metrics_folder(environ: dict[str, str] | os._Environ[str]) -> Path | None:
    """Give the workers a fresh folder for their Prometheus files unless PROMETHEUS_MULTIPROC_DIR names one.

    Returns the folder when this made it, for removal at exit: counts start from zero with each server start.
    """
    if environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=METRICS_PREFIX)
    return Path(environ["PROMETHEUS_MULTIPROC_DIR"])


class Current:
    """The app the workers forked from now on serve: built once at start, then again by each SIGHUP that succeeds."""

    def __init__(self, wsgi: Any) -> None:
        self.wsgi = wsgi


def reload_models(current: Current, build: Callable[[Any], Any]) -> Callable[[], None]:
    """The SIGHUP hook: build a new app in the parent with ``build(previous app)``, before the new workers fork from it.

    The new app loads and verifies every model folder, so a model added, removed or moved gets or loses its route with
    the rest; it takes over the old app's lifecycle and metrics. If anything fails, one line says why and the old app
    keeps serving.
    """
    from lib.registry import load_error

    def reload() -> None:
        registry = current.wsgi.extensions["models"]
        try:
            current.wsgi = build(current.wsgi)
        except Exception as exc:  # raised into granian, it would end the serve loop and leave the workers unmanaged
            log.error("reload refused, still serving %s: %s", registry.versions(), load_error(registry.models_dir, exc))
        gc.unfreeze()  # the replaced app's objects were frozen with the rest: without this they would never be freed
        gc.collect()
        gc.freeze()

    return reload


def stop_on_sigterm(server: Any, current: Current, config: ServerSettings, cleanup: Callable[[bool], None]) -> Callable[[], None]:
    """The start-up hook for SIGTERM: /ready answers 503 for DRAIN_SECONDS, then the workers stop as usual.

    The stop is bounded whatever the parent is busy with when it comes: STOP_MARGIN seconds past DRAIN_SECONDS and
    GRACEFUL_TIMEOUT, the workers still running are killed and the parent exits with status 1.
    """

    def install() -> None:
        stop = server.signal_handler_interrupt
        stopping = threading.Event()

        def drain_then_stop(signum: int, frame: Any) -> None:
            if stopping.is_set():
                return
            stopping.set()
            current.wsgi.extensions["lifecycle"].begin_drain()  # shared by every app the parent has built
            if config.drain_seconds:
                log.info("draining for %.1f s before stopping", config.drain_seconds)
            deadline = config.drain_seconds + config.graceful_timeout + STOP_MARGIN
            for seconds, action in ((config.drain_seconds, stop), (deadline, lambda: force_stop(deadline, cleanup))):
                timer = threading.Timer(seconds, action)
                timer.daemon = True
                timer.start()

        signal.signal(signal.SIGTERM, drain_then_stop)

    return install


def stop_workers(timeout: float) -> None:
    """Stop every worker this process started: SIGTERM, then SIGKILL to those still running ``timeout`` seconds later."""
    workers = multiprocessing.active_children()
    for worker in workers:
        worker.terminate()
    deadline = time.monotonic() + timeout
    for worker in workers:
        worker.join(max(deadline - time.monotonic(), 0))
        if worker.is_alive():
            worker.kill()
            worker.join()


def workers_left(wait: float = 0.5) -> bool:
    """Whether a worker of this process still runs, waiting up to ``wait`` seconds for the exits being collected.

    granian's threads collect its workers' exits too: for a moment, one that exited can still look alive here.
    """
    deadline = time.monotonic() + wait
    while multiprocessing.active_children():
        if time.monotonic() > deadline:
            return True
        time.sleep(0.01)
    return False


def force_stop(seconds: float, cleanup: Callable[[bool], None]) -> None:
    """End a stop that is still under way ``seconds`` after SIGTERM: kill the workers, clean up, exit with status 1."""
    log.error("not stopped %.1f s after SIGTERM: killing the workers", seconds)
    os.register_at_fork(before=threading.Event().wait)  # the parent, perhaps replacing workers, starts no more of them
    deadline = time.monotonic() + STOP_MARGIN / 2
    # Until none is left: a worker forked just as this began shows up a moment later.
    while (workers := multiprocessing.active_children()) and time.monotonic() < deadline:
        for worker in workers:
            worker.kill()
        time.sleep(0.01)
    cleanup(True)
    os._exit(1)


def in_worker(wsgi: Any) -> Any:
    """Called in each worker as it starts, after the fork: fold exited workers' metric files, then serve the app."""
    wsgi.extensions["metrics"].fold_exited()
    return wsgi


def granian_server(config: ServerSettings, settings: Settings) -> Any:
    """granian's WSGI server with one Python thread per worker and a bounded queue in front of it."""
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    return Granian(
        "app:create_app",  # named for the process title only: the app itself comes from serve()'s target_loader
        address=config.address,
        port=config.port,
        interface=Interfaces.WSGI,
        workers=config.workers,
        blocking_threads=1,
        backpressure=BACKPRESSURE,
        http1_settings=HTTP1Settings(header_read_timeout=int(config.client_timeout * 1000)),
        respawn_failed_workers=True,  # a crashed or killed worker is replaced, not the end of the server
        respawn_interval=RESPAWN_INTERVAL,
        workers_kill_timeout=int(config.graceful_timeout),  # whole seconds, at least 1 (GRACEFUL_TIMEOUT_RANGE)
        log_level=LogLevels(settings.log_level.lower()),
        log_dictconfig=logging_config(settings.log_level, settings.access_log),
        log_access=False,
    )


def serve(environ: dict[str, str] | os._Environ[str]) -> int:
    """Check the settings, build the app once, and serve it from forked workers until SIGTERM; 1 on a bad start."""
    try:
        settings, config = read_settings(environ)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    refusal = address_refusal(config)
    if refusal:
        print(f"Error: {refusal}", file=sys.stderr)
        return 1
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        environ.setdefault(variable, "1")  # before NumPy loads: BLAS thread pools per worker fight for the cores
    made, parent = metrics_folder(environ), os.getpid()

    def remove_metrics_folder(workers_killed: bool = False) -> None:
        """Remove the metrics folder made here, from the parent only, once no worker is left to write to it (or killed)."""
        if made is not None and os.getpid() == parent and (workers_killed or not workers_left()):
            shutil.rmtree(made, ignore_errors=True)

    try:
        return run(settings, config, remove_metrics_folder)
    finally:
        remove_metrics_folder()


def run(settings: Settings, config: ServerSettings, cleanup: Callable[[bool], None]) -> int:
    """Build the app (a bad model stops here with one line) and serve it; 1 if the server itself fails."""
    import app  # only now: the metrics folder and thread settings must be in place when the app's libraries load
    from lib.registry import cause
    from model import ModelLoadError

    server = granian_server(config, settings)  # also sets up logging, here and in each worker
    try:
        wsgi = app.create_app()
    except (ModelLoadError, ConfigError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    lean_log_records()  # in the parent, so every forked worker has it
    gc.freeze()  # the collector in each worker then never writes to the pages it shares with the parent
    current = Current(wsgi)
    server.on_reload(reload_models(current, lambda previous: app.create_app(previous=previous)))
    server.on_startup(stop_on_sigterm(server, current, config, cleanup))
    try:
        server.serve(target_loader=lambda _target: in_worker(current.wsgi))
    except Exception as exc:  # e.g. no worker could be forked: granian has left its loop with the workers running
        log.error("server failed, stopping the workers: %s", cause(exc))
        stop_workers(config.graceful_timeout)
        return 1
    return 0


def check(environ: Mapping[str, str]) -> int:
    """Load the settings and the models as a start would, then stop: a container build fails here on a bad model."""
    import app
    from model import ModelLoadError

    try:
        read_settings(environ)
        served = app.create_app().extensions["models"].models
    except (ConfigError, ModelLoadError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print("ok: " + ", ".join(model.version for model in served.values()))
    return 0


def main(argv: list[str] | None = None) -> None:
    """Serve until stopped (or with --check, verify the settings and models and stop); status 1 with one line when bad."""
    parser = argparse.ArgumentParser(prog="python -m lib.server", description="Serve the API in production (granian).")
    parser.add_argument("--check", action="store_true", help="load the settings and models as a start would, then exit")
    args = parser.parse_args(argv)
    sys.exit(check(os.environ) if args.check else serve(os.environ))


if __name__ == "__main__":
    main()
