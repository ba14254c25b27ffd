"""Stalled clients: connections that send the start of a request and go silent, and /health probed meanwhile.

Run by tests/test_deployed_stack.py and by ``python -m bench.stall``, which prints the worst probe of each case.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import requests

from tests.support.harness import HOST, Server, ServerError

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
