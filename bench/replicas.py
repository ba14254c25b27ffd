"""Scale-out on one machine: throughput and p99 for 1, 2 and 3 replicas behind nginx, against the same load.

    .venv/bin/python -m bench.replicas               # about 3 minutes; needs nginx and wrk (apt-get install -y nginx wrk)
    .venv/bin/python -m bench.replicas --replicas 1 2 --repeat 1

Every stack starts at once: nginx (deploy/nginx.conf, rewritten by tests.support.proxy for N upstreams) in front of N
production servers, each its own process group on its own port with ``--workers`` workers, plus one replica with no
proxy as the reference. wrk (1 thread, fixed connections) drives them in interleaved rounds, as bench.run does, with
real sentences from the Kaggle test.tsv; the median round is reported. While wrk runs, the CPU time of the replicas,
nginx and wrk is read from /proc, so the table shows where the cores went. Then the memory the pod manifests are sized
from: PSS of the production server with 2 workers (a fresh start, after GETs and batches), and of nginx.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

from bench import summary, wrk
from bench.common import PHRASES_HELP, RESULTS, BenchError, Report, note, report_run, sample
from bench.run import query_paths, wrk_script
from tests.support.harness import Server, memory_snapshot, production_command, serving
from tests.support.proxy import proxying, replica_env, start_replica

LOGS = RESULTS / "logs" / "replicas"
DIRECT = "1, no proxy"


@dataclass
class Stack:
    """What one table row measures: the replicas, the proxy in front (None for the reference), the URL wrk loads."""

    name: str
    replicas: list[Server]
    proxy: Server | None

    @property
    def url(self) -> str:
        """Where the load goes."""
        return (self.proxy or self.replicas[0]).url

    def groups(self) -> dict[str, list[int]]:
        """The root pid of each process tree whose CPU time is counted, by role."""
        return {
            "replicas": [server.process.pid for server in self.replicas],
            "nginx": [self.proxy.process.pid] if self.proxy else [],
        }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the options; the defaults keep the run near 3 minutes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3], help="replica counts behind nginx")
    parser.add_argument("--workers", type=int, default=1, help="WEB_CONCURRENCY of each replica")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (1 thread)")
    parser.add_argument("--duration", type=int, default=8, help="seconds of measured load per run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load before each run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds, each measuring every stack once; the median is shown")
    parser.add_argument("--phrases", type=Path, help=PHRASES_HELP)
    parser.add_argument("--phrase-count", type=int, default=300, help="distinct sentences the wrk script cycles through")
    parser.add_argument("--output", type=Path, default=RESULTS / "replicas.json", help="where to write the JSON summary")
    args = parser.parse_args(argv)
    if min([*args.replicas, args.workers, args.connections, args.duration, args.repeat, args.phrase_count]) < 1:
        parser.error("counts, durations and connections must be positive")
    return args


def cpu_seconds(root: int) -> float:
    """User and system CPU seconds of a process and its live descendants."""
    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        process = psutil.Process(root)
        for member in (process, *process.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):
                times = member.cpu_times()
                total += times.user + times.system
    return total


def cpu_by_role(stack: Stack, wrk_pid: int) -> dict[str, float]:
    """CPU seconds so far of each role's process trees: the replicas, nginx and wrk."""
    roles = {**stack.groups(), "wrk": [wrk_pid]}
    return {role: sum(cpu_seconds(pid) for pid in pids) for role, pids in roles.items()}


def measured(binary: str, stack: Stack, script: Path, args: argparse.Namespace, round_number: int) -> dict[str, Any]:
    """A warm-up, then one measured wrk run with each role's CPU use (in cores) over it."""
    logs = LOGS / f"{stack.name.replace(' ', '').replace(',', '-')}-round{round_number}"
    if args.warmup:
        with wrk.running(
            wrk.command(binary, stack.url + "/", args.connections, args.warmup, script), Path(f"{logs}-warmup.txt")
        ) as run:
            wrk.finish(run, Path(f"{logs}-warmup.txt"), args.warmup)
    note(f"{stack.name}: {args.connections} connections for {args.duration} s (round {round_number} of {args.repeat})")
    log = Path(f"{logs}.txt")
    with wrk.running(wrk.command(binary, stack.url + "/", args.connections, args.duration, script), log) as run:
        started, before = time.monotonic(), cpu_by_role(stack, run.pid)
        time.sleep(args.duration - 0.5)  # read the counters while wrk is still alive (its own CPU time goes with it)
        after, elapsed = cpu_by_role(stack, run.pid), time.monotonic() - started
        result = wrk.parse(wrk.finish(run, log, args.duration))
    return {
        "requests_per_s": result.requests_per_s,
        "p50_ms": result.percentile(50),
        "p99_ms": result.percentile(99),
        "errors": result.errors,
        "cpu_cores": {role: round((after[role] - before[role]) / elapsed, 2) for role in before},
    }


def rounds(binary: str, stacks: list[Stack], script: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``--repeat`` rounds, each running every stack once in an order rotated per round; each stack's median run."""
    runs: dict[str, list[dict[str, Any]]] = {stack.name: [] for stack in stacks}
    for index in range(args.repeat):
        for stack in summary.rotation(stacks, index):
            runs[stack.name].append(measured(binary, stack, script, args, index + 1))
    return {name: summary.median_run(found) for name, found in runs.items()}


@contextlib.contextmanager
def stacks_running(args: argparse.Namespace) -> Iterator[list[Stack]]:
    """The reference replica with no proxy, and nginx in front of N fresh replicas for each N; all stopped on leaving."""
    with ExitStack() as stack:
        found = [Stack(DIRECT, [start_replica(stack, LOGS, "direct", args.workers)], None)]
        for count in args.replicas:
            replicas = [start_replica(stack, LOGS, f"r{count}-{index}", args.workers) for index in range(count)]
            proxy = stack.enter_context(proxying([server.port for server in replicas], LOGS, name=f"nginx-r{count}"))
            found.append(Stack(f"{count} behind nginx", replicas, proxy))
        for item in found:
            note(f"started {item.name}: {item.url}")
        yield found


def warm(url: str, paths: list[str], batch: list[str]) -> None:
    """GETs on fresh connections (so every worker gets some) and a few full batches, before memory is read."""

    def get(path: str) -> None:
        requests.get(url + path, headers={"Connection": "close"}, timeout=30).raise_for_status()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(get, paths))
    for _ in range(5):
        requests.post(url + "/", json={"queries": batch}, timeout=60).raise_for_status()


def memory(paths: list[str], batch: list[str]) -> dict[str, Any]:
    """PSS of the production server with 2 workers after GETs and batches, and of nginx in front of it."""
    with ExitStack() as stack:
        server = stack.enter_context(serving(production_command(), replica_env(2), LOGS, name="memory", ready_path="/ready"))
        proxy = stack.enter_context(proxying([server.port], LOGS, name="nginx-memory"))
        warm(proxy.url, paths, batch)
        return {
            "server_2_workers": memory_snapshot(server.process.pid),
            "nginx": memory_snapshot(proxy.process.pid),
            "after": f"{len(paths)} GETs and 5 batches of {len(batch)} through nginx",
        }


def benchmark(args: argparse.Namespace, command: str, sentences: list[str]) -> Report:
    """Run every stack in interleaved rounds, then take memory; the report bench.common writes and render() prints."""
    if shutil.which("nginx") is None:
        raise BenchError("nginx is not installed: apt-get install -y nginx")
    binary = wrk.ensure_wrk(note)
    LOGS.mkdir(parents=True, exist_ok=True)
    busy = psutil.cpu_percent(interval=1.0)  # other load on these cores skews every number below
    paths = query_paths(sample(sentences, args.phrase_count))
    script = LOGS / "phrases.lua"
    script.write_text(wrk_script(paths), encoding="utf-8")
    with stacks_running(args) as stacks:
        results = rounds(binary, stacks, script, args)
    return {
        "command": command,
        "cpus": {"os_cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "busy_before_percent": busy},
        "production_command": production_command(),
        "settings": {key: value for key, value in vars(args).items() if key not in ("phrases", "output")},
        "stacks": results,
        "memory": memory(paths, sample(sentences, 1000)),
    }


def render(report: Report) -> str:
    """The table, the CPU count, and the memory figures, as the README quotes them."""
    settings, cpus = report["settings"], report["cpus"]
    lines = [
        f"CPUs: os.cpu_count() {cpus['os_cpu_count']}, usable by this process (affinity) {cpus['affinity']}; "
        f"{cpus['busy_before_percent']}% busy before the run",
        f"load: wrk -t1 -c{settings['connections']}, {settings['duration']} s after {settings['warmup']} s warm-up, "
        f"median of {settings['repeat']} interleaved rounds; each replica: {settings['workers']} worker(s)",
        "",
        "| replicas | req/s | vs 1 behind nginx | p50 | p99 | errors | CPU cores: replicas / nginx / wrk |",
        "|---|---|---|---|---|---|---|",
    ]
    stacks = report["stacks"]
    base = next((run["requests_per_s"] for name, run in stacks.items() if name.startswith("1 behind")), None)
    for name, run in stacks.items():
        cores = run["cpu_cores"]
        ratio = f"{run['requests_per_s'] / base:.2f}" if base else "-"
        lines.append(
            f"| {name} | {run['requests_per_s']:,.0f} | {ratio} | {run['p50_ms']:.1f} ms | {run['p99_ms']:.1f} ms "
            f"| {run['errors_all_runs']} | {cores['replicas']:.2f} / {cores['nginx']:.2f} / {cores['wrk']:.2f} |"
        )
    found = report["memory"]
    server, nginx = found["server_2_workers"], found["nginx"]
    lines += [
        "",
        f"memory after {found['after']}:",
        f"  production server, 2 workers: {server['total_mb']} MB PSS (master {server['master_mb']}, workers "
        f"{', '.join(map(str, server['workers_mb']))}; anonymous {server['total_anon_mb']})",
        f"  nginx (master + 1 worker): {nginx['total_mb']} MB PSS",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table and write it as JSON, or say in one line why it could not run."""
    status, _ = report_run(parse_args(argv), benchmark, render)
    return status


if __name__ == "__main__":
    sys.exit(main())
