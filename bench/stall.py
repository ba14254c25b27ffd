"""Stalled clients against the bare production server and against the same server behind nginx: /health latency.

    .venv/bin/python -m bench.stall                  # about 1 minute; needs nginx (apt-get install -y nginx)
    .venv/bin/python -m bench.stall --clients 40 --seconds 8

Each case opens ``--clients`` connections that send part of a request and then go silent (headers without their end,
or whole headers and half the body), then asks /health on fresh connections for ``--seconds``, each probe waiting at
most ``--probe-timeout``; the worst probe is the figure. The tests use the same functions (tests/test_deployed_stack.py).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.harness import HOST, Server, ServerError, production_command, serving
from bench.proxy import proxying

STALLS = {
    "headers-only": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
    "half-body": b'POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{"query": "half',
}


@dataclass(frozen=True)
class StallResult:
    """/health probes made while the stalled clients held their connections open."""

    stall: str
    clients: int
    probes: int
    worst_s: float
    timed_out: int  # probes that got no answer within the probe timeout (worst_s is then that timeout)

    def describe(self, probe_timeout: float) -> str:
        """The worst probe in words: a latency, or that it got no answer at all."""
        if self.timed_out:
            return f"{self.timed_out} of {self.probes} probes unanswered after {probe_timeout:g} s"
        return f"worst {1000 * self.worst_s:.0f} ms over {self.probes} probes"


@contextlib.contextmanager
def stalled_clients(port: int, count: int, stall: str) -> Iterator[list[socket.socket]]:
    """Open ``count`` connections that each send the start of a request and then go silent; close them on leaving."""
    connections: list[socket.socket] = []
    try:
        for _ in range(count):
            connection = socket.create_connection((HOST, port), timeout=5)
            connections.append(connection)
            connection.sendall(STALLS[stall])
        yield connections
    finally:
        for connection in connections:
            connection.close()


def probe_health(url: str, timeout: float) -> float | None:
    """Seconds /health took on a fresh connection, or None when no answer came within ``timeout``."""
    started = time.monotonic()
    try:
        answer = requests.get(f"{url}/health", headers={"Connection": "close"}, timeout=timeout)
    except requests.RequestException:
        return None
    return time.monotonic() - started if answer.status_code == 200 else None


def health_under_stall(server: Server, stall: str, clients: int, seconds: float, probe_timeout: float) -> StallResult:
    """Ask /health again and again for ``seconds`` while ``clients`` stalled connections are open."""
    latencies: list[float | None] = []
    with stalled_clients(server.port, clients, stall):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            latencies.append(probe_health(server.url, probe_timeout))
            time.sleep(0.1)
    answered = [latency for latency in latencies if latency is not None]
    timed_out = len(latencies) - len(answered)
    return StallResult(stall, clients, len(latencies), probe_timeout if timed_out else max(answered), timed_out)


def settle(url: str, probe_timeout: float, limit: float = 60.0) -> None:
    """Wait until /health answers within a second again, so one case's stall does not spill into the next."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        latency = probe_health(url, probe_timeout)
        if latency is not None and latency < 1.0:
            return
    raise ServerError(f"{url}/health still slow {limit:g} s after the stalled clients left")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--clients", type=int, default=40, help="stalled connections held open at once")
    parser.add_argument("--seconds", type=float, default=8.0, help="how long /health is probed while they stall")
    parser.add_argument("--probe-timeout", type=float, default=10.0, help="longest a /health probe waits")
    parser.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY of the production server")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure both stalls against the bare server, then through nginx, and print one line each."""
    args = parse_args(argv)
    print(f"{args.clients} stalled clients, /health probed for {args.seconds:g} s; production server, {args.workers} workers")
    try:
        with tempfile.TemporaryDirectory(prefix="sentiment-stall-") as logs:
            env = {"WEB_CONCURRENCY": str(args.workers), "ACCESS_LOG": ""}
            with serving(production_command(), env, Path(logs), name="app") as app, proxying([app.port], Path(logs)) as proxy:
                for front, server in (("bare server", app), ("behind nginx", proxy)):
                    for stall in STALLS:
                        result = health_under_stall(server, stall, args.clients, args.seconds, args.probe_timeout)
                        print(f"{front:13} {stall:13} {result.describe(args.probe_timeout)}", flush=True)
                        settle(server.url, args.probe_timeout)
    except (ServerError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
