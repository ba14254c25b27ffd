"""The one place that starts and stops servers, for the tests and the benchmarks, and looks at their processes.

    with serving(production_command(), {"WEB_CONCURRENCY": "2"}, log_dir) as server: ...

A server runs on 127.0.0.1:<free port> (its HOST and PORT) in its own process group, stdout and stderr in files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import requests

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
STOP_TIMEOUT = 15.0  # seconds a server gets to stop gracefully before its process group is killed
NOT_INHERITED = ("PROMETHEUS_MULTIPROC_DIR",)  # the harness picks the address; each server gets fresh metrics


def production_command() -> list[str]:
    """The command production runs (bound through HOST and PORT): switching servers changes only this."""
    return [sys.executable, "-m", "lib.server"]


class ServerError(RuntimeError):
    """A server exited or never became ready; the message carries the end of its stderr."""


@dataclass
class Server:
    """A running server: its URL, its process, and the files its stdout and stderr go to."""

    url: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def port(self) -> int:
        """The loopback port it listens on."""
        return int(urlsplit(self.url).port or 0)

    def check_alive(self) -> None:
        """Fail with the end of its stderr if the process has exited."""
        if self.process.poll() is not None:
            raise ServerError(f"server exited with status {self.process.returncode}:\n{log_tail(self.stderr)}")


def free_port() -> int:
    """Ask the kernel for a free TCP port on the loopback interface."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def server_env(env: Mapping[str, str], port: int) -> dict[str, str]:
    """The caller's environment and ``env`` on top, listening on HOST:port."""
    inherited = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    return {**inherited, **env, "HOST": HOST, "PORT": str(port)}


@contextlib.contextmanager
def serving(
    command: list[str],
    env: Mapping[str, str],
    log_dir: Path,
    *,
    port: int | None = None,
    name: str | None = None,
    ready_path: str = "/health",
    timeout: float = 30.0,
) -> Iterator[Server]:
    """Start ``command`` from the repo root on 127.0.0.1:port, yield it once ``ready_path`` answers 200, always stop it.

    Its temporary files (the metrics folder it makes) go in a folder of its own under ``log_dir``, unless ``env`` names
    a TMPDIR: a server a test or drill kills outright cannot remove them, and they must not pile up in /tmp.
    """
    port = port or free_port()
    stdout, stderr = (log_dir / f"{name or f'server-{port}'}.{stream}.log" for stream in ("stdout", "stderr"))
    private = log_dir / f"{name or f'server-{port}'}.tmp"
    private.mkdir(parents=True, exist_ok=True)
    with stdout.open("wb") as out, stderr.open("wb") as err:
        environ = server_env({"TMPDIR": str(private), **env}, port)
        process = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=out, stderr=err, start_new_session=True)
    try:
        server = Server(f"http://{HOST}:{port}", process, stdout, stderr)
        wait_until_healthy(server, timeout, ready_path)
        yield server
    finally:
        stop(process)


def wait_until_healthy(server: Server, timeout: float = 30.0, path: str = "/health") -> None:
    """Poll ``path`` until it answers 200, failing early with the server's stderr if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        with contextlib.suppress(requests.RequestException):
            if requests.get(server.url + path, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise ServerError(f"server at {server.url} did not answer {path} within {timeout:.0f} s:\n{log_tail(server.stderr)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server's whole process group: SIGTERM, then SIGKILL after STOP_TIMEOUT, so no worker outlives it."""
    blocked = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, blocked)  # a second Ctrl-C must not interrupt the cleanup
    try:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)


def log_tail(path: Path, lines: int = 20) -> str:
    """The end of a log file, indented, with its path."""
    text = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []
    return "\n".join(["  " + line for line in text[-lines:]] + [f"  (full log: {path})"])


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``: for a server, its workers and anything they started."""
    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


def live_descendants(pid: int) -> list[int]:
    """The descendants still running: a killed worker stays a zombie until its master reaps it."""
    alive = []
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                alive.append(child.pid)
    return sorted(alive)


def wait_for_workers(server: Server, workers: int, timeout: float = 30.0) -> None:
    """Wait until the server has at least ``workers`` live children."""
    deadline = time.monotonic() + timeout
    while len(live_descendants(server.process.pid)) < workers:
        server.check_alive()
        if time.monotonic() > deadline:
            raise ServerError(f"server at {server.url} did not start {workers} workers within {timeout:.0f} s")
        time.sleep(0.1)


def mib(size: int) -> float:
    """Bytes in MiB, rounded for reading."""
    return round(size / 2**20, 1)


def anonymous_pss(process: psutil.Process) -> int:
    """PSS of a process's anonymous mappings (heap, stacks, arrays): pages only its forks can share."""
    return sum(mapping.pss for mapping in process.memory_maps(grouped=True) if not mapping.path.startswith("/"))


def memory_snapshot(master: int) -> dict[str, Any]:
    """PSS of a process tree, master then each worker, and its anonymous part: what the server costs in RAM."""
    # PSS splits pages shared copy-on-write fairly between processes. Library pages are also shared with any other
    # process mapping them (a test run, say), so their share moves with what else runs; anonymous pages are shared
    # only between master and workers, so the anonymous part is the stable measure.
    processes = [psutil.Process(pid) for pid in (master, *descendants(master))]
    pss = [process.memory_full_info().pss for process in processes]
    return {
        "master_mb": mib(pss[0]),
        "workers_mb": [mib(size) for size in pss[1:]],
        "total_mb": mib(sum(pss)),
        "total_anon_mb": mib(sum(anonymous_pss(process) for process in processes)),
    }


def connections_by_worker(server: Server) -> dict[int, int]:
    """Map each worker pid to its established connections on the server's port."""
    counts = {}
    for child in psutil.Process(server.process.pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            sockets = child.net_connections(kind="tcp")
            counts[child.pid] = sum(s.status == psutil.CONN_ESTABLISHED and s.laddr.port == server.port for s in sockets)
    return counts
