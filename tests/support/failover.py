"""The failover drills behind nginx: SIGKILL a replica under load, and kill one holding requests in flight.

Run by tests/test_deployed_stack.py and by ``python -m bench.failover``, which prints what the clients saw.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.harness import HOST, Server
from tests.support.proxy import proxying, start_replica

GET_PATH = "/?query=a+gripping+and+beautifully+acted+film"
BATCH = {"queries": ["a gripping and beautifully acted film", "a dull and lifeless mess"] * 50}


@dataclass
class Tally:
    """What the clients saw: outcomes by method, an outcome being the status code or the exception's name."""

    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: {"GET": Counter(), "POST": Counter()})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, outcome: str) -> None:
        """Count one answer (or failure)."""
        with self.lock:
            self.outcomes[method][outcome] += 1

    def failed(self, method: str) -> int:
        """Requests of ``method`` that did not get a 200."""
        return sum(count for outcome, count in self.outcomes[method].items() if outcome != "200")

    def total(self, method: str) -> int:
        """Requests of ``method`` sent."""
        return sum(self.outcomes[method].values())


def send(session: requests.Session, url: str, method: str) -> str:
    """One GET of a prediction, or one POST of a 100-query batch; the status, or the exception's name."""
    try:
        if method == "GET":
            return str(session.get(url + GET_PATH, timeout=30).status_code)
        return str(session.post(url + "/", json=BATCH, timeout=30).status_code)
    except requests.RequestException as exc:
        return type(exc).__name__


def send_once(url: str, method: str) -> str:
    """One request on a connection of its own."""
    with requests.Session() as session:
        return send(session, url, method)


class Load:
    """Clients that send without pause until stopped, each on its own kept-alive connection to the proxy."""

    def __init__(self, url: str, get_clients: int, post_clients: int, limit: int = 200_000) -> None:
        self.url, self.limit, self.tally = url, limit, Tally()
        self.stopping = threading.Event()
        methods = ["GET"] * get_clients + ["POST"] * post_clients
        self.threads = [threading.Thread(target=self.client, args=(method,), daemon=True) for method in methods]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def client(self, method: str) -> None:
        """Send requests one after another until stopped (or the count bound is reached)."""
        with requests.Session() as session:
            while not self.stopping.is_set() and self.tally.total(method) < self.limit:
                self.tally.add(method, send(session, self.url, method))


def kill_group(server: Server, signum: signal.Signals = signal.SIGKILL) -> None:
    """Signal a replica's whole process group (master and workers); wait for it if the signal ends it."""
    os.killpg(server.process.pid, signum)
    if signum == signal.SIGKILL:
        server.process.wait(timeout=10)


def served_by(log: Path, offset: int, port: int) -> int:
    """Answers in nginx's JSON access log, from byte ``offset`` on, that came from 127.0.0.1:``port``."""
    with log.open("rb") as handle:
        handle.seek(offset)
        lines = [json.loads(line) for line in handle.read().splitlines() if line.strip()]
    return sum(f"{HOST}:{port}" in line["upstream"].split(", ")[-1] and line["status"] == 200 for line in lines)


@dataclass(frozen=True)
class KillResult:
    """The kill drill's counts, and how long the restarted replica took to answer through nginx."""

    outcomes: dict[str, dict[str, int]]
    get_failed: int
    post_failed: int
    answered_by_restarted: int
    seconds_to_traffic: float | None


def kill_drill(
    log_dir: Path, replicas: int = 3, workers: int = 1, seconds: float = 9.0, recover_timeout: float = 20.0
) -> KillResult:
    """SIGKILL one replica a third of the way into ``seconds`` of load, restart it at two thirds, wait for its traffic."""
    with contextlib.ExitStack() as stack:
        servers = [start_replica(stack, log_dir, f"replica-{index}", workers) for index in range(replicas)]
        proxy = stack.enter_context(proxying([server.port for server in servers], log_dir))
        victim = servers[0]
        with Load(proxy.url, get_clients=4, post_clients=1) as load:
            time.sleep(seconds / 3)
            kill_group(victim)
            time.sleep(seconds / 3)
            offset = proxy.stdout.stat().st_size
            start_replica(stack, log_dir, "replica-0-restarted", workers, port=victim.port)
            restarted_at = time.monotonic()  # it answers /ready: from here on, nginx's fail_timeout is what it waits
            waited = None
            while time.monotonic() - restarted_at < recover_timeout:
                if served_by(proxy.stdout, offset, victim.port):
                    waited = time.monotonic() - restarted_at
                    break
                time.sleep(0.2)
            time.sleep(seconds / 3)
        tally = load.tally
        return KillResult(
            {method: dict(counts) for method, counts in tally.outcomes.items()},
            tally.failed("GET"),
            tally.failed("POST"),
            served_by(proxy.stdout, offset, victim.port),
            None if waited is None else round(waited, 2),
        )


def post_in_flight(log_dir: Path, replicas: int = 2, workers: int = 1, requests_each: int = 6) -> dict[str, dict[str, int]]:
    """Freeze one replica, send GETs and POSTs so some wait on it, SIGKILL it: what each method's clients got."""
    with contextlib.ExitStack() as stack:
        servers = [start_replica(stack, log_dir, f"frozen-{index}", workers) for index in range(replicas)]
        proxy = stack.enter_context(proxying([server.port for server in servers], log_dir, name="nginx-frozen"))
        victim = servers[0]
        kill_group(victim, signal.SIGSTOP)
        methods = ["GET", "POST"] * requests_each
        with ThreadPoolExecutor(max_workers=len(methods)) as pool:
            futures = [pool.submit(send_once, proxy.url, method) for method in methods]
            time.sleep(1.0)  # round robin has passed some of each to the frozen replica, which holds them
            kill_group(victim)
            outcomes: dict[str, Counter[str]] = {"GET": Counter(), "POST": Counter()}
            for method, future in zip(methods, futures, strict=True):
                outcomes[method][future.result()] += 1
    return {method: dict(counts) for method, counts in outcomes.items()}
