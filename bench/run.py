"""Measure the production server against its ceiling on the same load, in interleaved rounds.

    .venv/bin/python -m bench.run                                # every server, defaults: about 6 minutes
    .venv/bin/python -m bench.run --servers granian ceiling      # the service and its ceiling only: about 4 minutes
    .venv/bin/python -m bench.run --help

Servers: granian (the production command, lib/server.py), granian-nginx (the same behind deploy/nginx.conf's nginx,
as the pod runs it: what a client of the deployed stack gets), and the ceiling (bench/ceiling.py: a constant Flask
view under lib/server.py's own granian settings, so the ratio to it is the app's own cost). Every server starts at
once, each on 127.0.0.1 and its own free port with the same worker count, and wrk drives them with real sentences
from the Kaggle test.tsv in interleaved rounds: round r measures each server once (a warm-up, then the measured run)
in an order rotated by one place per round, while the others wait idle. So the machine's drift over minutes falls on
every server alike, and each server's ratio to the ceiling is taken round by round before the median. Then each
server has a batch run, and once all are stopped, the total PSS of each process tree at 2 and 5 workers is taken in
fresh starts, one server at a time (other servers mapping the same libraries would lower it). NLPModel.predict_texts
on the same batch, in process, is the batch reference. The summary (bench.summary) is printed and written to
bench/results/latest.json; server logs and raw wrk output go next to it, a folder per server.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from bench import summary, wrk
from bench.ceiling import COMMAND as CEILING_COMMAND
from bench.common import (
    PHRASES_HELP,
    RESULTS,
    BenchError,
    Report,
    launched,
    load_result,
    note,
    pasteable,
    report_run,
    sample,
    tool_version,
)
from lib.paths import MODELS_DIR
from tests.support.harness import Server, connections_by_worker, memory_snapshot, production_command
from tests.support.proxy import proxying


@dataclass(frozen=True)
class Candidate:
    """A server to measure: its command, the environment it adds, the path that answers once it is ready."""

    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/health"
    serves_models: bool = True  # False for the ceiling: no batch run, no memory measured
    behind_nginx: bool = False  # True: wrk talks to deploy/nginx.conf's nginx in front of it, as in the pod


CANDIDATES = {
    "granian": Candidate(production_command()),
    "granian-nginx": Candidate(production_command(), behind_nginx=True),
    summary.REFERENCE: Candidate(CEILING_COMMAND, ready_path="/", serves_models=False),
}
SENTIMENT_MODEL = MODELS_DIR / "sentiment"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the options; every default keeps the whole run near 6 minutes."""
    parser = argparse.ArgumentParser(
        description="Load-test the production server and its ceiling with wrk, in interleaved rounds.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Servers inherit the environment (MODELS_DIR, LOG_LEVEL, ...); WEB_CONCURRENCY comes from --workers.",
    )
    parser.add_argument("--servers", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES), help="servers to run")
    parser.add_argument("--duration", type=int, default=6, help="seconds of measured wrk load per run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured wrk load before each run (0: none)")
    parser.add_argument(
        "--repeat", type=int, default=5, help="rounds per level, each measuring every server once; the median is reported"
    )
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64], help="wrk connection levels (1 thread)")
    parser.add_argument("--phrases", type=Path, help=PHRASES_HELP)
    parser.add_argument("--phrase-count", type=int, default=300, help="distinct sentences the wrk script cycles through")
    parser.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY of every server under load")
    parser.add_argument(
        "--memory-workers",
        type=int,
        nargs="+",
        default=[2, 5],
        help="worker counts to take total PSS at, each in a fresh start after warm-up GETs, one server at a time after load",
    )
    parser.add_argument("--no-access-log", action="store_true", help="run every server with ACCESS_LOG='' (no access log)")
    parser.add_argument("--batch-size", type=int, default=1000, help="queries per POST in the batch run")
    parser.add_argument("--batch-seconds", type=float, default=5.0, help="time bound of each batch run")
    parser.add_argument("--batch-requests", type=int, default=100, help="count bound of each batch run")
    parser.add_argument("--batch-clients", type=int, default=2, help="threads posting batches concurrently")
    parser.add_argument("--memory-requests", type=int, default=400, help="requests that warm a server started for memory")
    parser.add_argument("--startup-timeout", type=float, default=60.0, help="seconds to wait for a server to answer")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json", help="where to write the JSON summary")
    args = parser.parse_args(argv)
    args.servers = list(dict.fromkeys(args.servers))
    counts = [args.duration, args.repeat, *args.connections, args.phrase_count, args.workers, *args.memory_workers]
    if min([*counts, args.batch_size, args.batch_requests, args.batch_clients]) < 1 or args.warmup < 0:
        parser.error("counts, durations and connections must be positive (--warmup may be 0)")
    return args


def query_paths(phrases: Sequence[str]) -> list[str]:
    """URL-encode each phrase as ``/?query=...``, the way a browser's fetch would send it."""
    return ["/?query=" + urllib.parse.quote(phrase, safe="") for phrase in phrases]


def wrk_script(paths: Sequence[str]) -> str:
    """A wrk script cycling through the paths, so every request carries a different real sentence."""
    # quote(safe="") leaves only [A-Za-z0-9_.~%-], so the paths are safe inside Lua double quotes.
    listed = ",\n".join(f'  "{path}"' for path in paths)
    return (
        f"-- Generated by bench/run.py: GET /?query=<sentence>, cycling through real test.tsv sentences.\n"
        f"local paths = {{\n{listed}\n}}\nlocal next_index = 0\nrequest = function()\n  next_index = next_index % #paths + 1\n"
        '  return wrk.format("GET", paths[next_index])\nend\n'
    )


def worker_class(server: Server) -> str:
    """What the server says it runs (not guessed from the command): 'granian wsgi' once granian has logged its start."""
    logs = [path.read_text(encoding="utf-8", errors="replace") for path in (server.stderr, server.stdout)]
    return "granian wsgi" if any("Starting granian" in log for log in logs) else "unknown"


def run_wrk(binary: str, server: Server, script: Path, connections: int, seconds: int, log: Path) -> tuple[str, list[int]]:
    """Run wrk with one thread; halfway through, count each worker's connections (a keep-alive one stays put)."""
    with wrk.running(wrk.command(binary, server.url + "/", connections, seconds, script), log) as process:
        time.sleep(seconds / 2)
        spread = sorted(connections_by_worker(server).values(), reverse=True)
        return wrk.finish(process, log, seconds), spread


def log_dir(name: str) -> Path:
    """The folder of one server's logs and raw wrk output."""
    return RESULTS / "logs" / name


def measured_run(
    binary: str, name: str, server: Server, script: Path, connections: int, round_number: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One server's turn in a round: the warm-up (the server sat idle while the others ran), then one measured run."""
    logs = log_dir(name) / f"wrk-c{connections}-round{round_number}"
    if args.warmup:
        run_wrk(binary, server, script, connections, args.warmup, Path(f"{logs}-warmup.txt"))
    note(f"{name}: {connections} connections for {args.duration} s (round {round_number} of {args.repeat})")
    output, spread = run_wrk(binary, server, script, connections, args.duration, Path(f"{logs}.txt"))
    server.check_alive()
    return load_result(name, connections, wrk.parse(output), spread)


def load_rounds(binary: str, servers: dict[str, Server], script: Path, args: argparse.Namespace) -> dict[str, list[Report]]:
    """At each connections level, ``--repeat`` rounds each measure every server once, in an order rotating per round."""
    loads: dict[str, list[Report]] = {name: [] for name in servers}
    for connections in args.connections:
        runs: dict[str, list[Report]] = {name: [] for name in servers}
        for index in range(args.repeat):
            order = summary.rotation(list(servers), index)
            note(f"{connections} connections, round {index + 1} of {args.repeat}: {', '.join(order)}")
            for name in order:
                runs[name].append(measured_run(binary, name, servers[name], script, connections, index + 1, args))
        for name, level_runs in runs.items():
            loads[name].append(summary.median_run(level_runs))
    return loads


def batch_throughput(url: str, phrases: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """POST full batches from a few clients until the time or count bound; phrases/s is end to end, wall clock."""
    body = json.dumps({"queries": phrases}).encode("utf-8")
    budgets = [len(range(client, args.batch_requests, args.batch_clients)) for client in range(args.batch_clients)]
    started_at = time.perf_counter()
    deadline = time.monotonic() + args.batch_seconds
    with ThreadPoolExecutor(max_workers=args.batch_clients) as pool:
        runs = list(pool.map(lambda budget: post_batches(url, body, len(phrases), budget, deadline), budgets))
    wall = time.perf_counter() - started_at
    latencies = [latency for run in runs for latency, _ in run]
    good = sum(ok for run in runs for _, ok in run)
    return {
        "batch_size": len(phrases),
        "clients": args.batch_clients,
        "batches": len(latencies),
        "failed_batches": len(latencies) - good,
        "wall_s": round(wall, 2),
        "phrases_per_s": round(good * len(phrases) / wall, 1),
        "mean_batch_ms": round(1000 * sum(latencies) / max(1, len(latencies)), 1),
    }


def post_batches(url: str, body: bytes, size: int, budget: int, deadline: float) -> list[tuple[float, bool]]:
    """Post one batch after another on a kept-alive connection; record each latency and whether all answers came."""
    results: list[tuple[float, bool]] = []
    with requests.Session() as session:
        while len(results) < budget and time.monotonic() < deadline:
            started_at = time.perf_counter()
            response = session.post(url + "/", data=body, headers={"Content-Type": "application/json"}, timeout=60)
            ok = response.status_code == 200 and len(response.json().get("predictions", [])) == size
            results.append((time.perf_counter() - started_at, ok))
    return results


def in_process_batch(phrases: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Time NLPModel.predict_texts on the batch in this process, one thread, under the batch run's bounds."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as in the servers; set before model imports NumPy
    from model import NLPModel

    model = NLPModel.load(SENTIMENT_MODEL)
    model.predict_texts(phrases)  # the first call pays for lazy set-up
    batches, started_at = 0, time.perf_counter()
    while batches < args.batch_requests and time.perf_counter() - started_at < args.batch_seconds:
        model.predict_texts(phrases)
        batches += 1
    wall = time.perf_counter() - started_at
    return {
        "batch_size": len(phrases),
        "batches": batches,
        "wall_s": round(wall, 2),
        "phrases_per_s": round(batches * len(phrases) / wall, 1),
        "mean_batch_ms": round(1000 * wall / batches, 1),
    }


def warm_workers(url: str, paths: list[str], count: int) -> int:
    """Send ``count`` GETs, each on a new connection so every worker gets some; return how many failed."""

    def get(path: str) -> bool:
        with contextlib.suppress(requests.RequestException):
            return requests.get(url + path, headers={"Connection": "close"}, timeout=10).status_code == 200
        return False

    with ThreadPoolExecutor(max_workers=8) as pool:
        return sum(not ok for ok in pool.map(get, (paths[index % len(paths)] for index in range(count))))


def candidate_env(args: argparse.Namespace, candidate: Candidate, workers: int) -> dict[str, str]:
    """What a server gets on top of the inherited environment: the access log setting, its worker count, its own."""
    return {"ACCESS_LOG": "" if args.no_access_log else "-", "WEB_CONCURRENCY": str(workers), **candidate.env}


def memory_at(name: str, workers: int, paths: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Start the server alone with ``workers`` workers, warm them with GETs, and take the PSS of its process tree."""
    candidate = CANDIDATES[name]
    env = candidate_env(args, candidate, workers)
    note(f"{name}: memory with {workers} workers")
    with ExitStack() as stack:
        front, processes = launch(stack, f"{name}-{workers}w", candidate, env, workers, args)
        failed = warm_workers(front.url, paths, args.memory_requests)
        trees = [memory_snapshot(server.process.pid) for server in processes]
        return {**combined(trees), "after": f"{args.memory_requests} GETs", "failed_requests": failed}


def launch(
    stack: ExitStack, name: str, candidate: Candidate, env: dict[str, str], workers: int, args: argparse.Namespace
) -> tuple[Server, list[Server]]:
    """Start a candidate (and nginx in front when it has one) until ready: what clients talk to, and every server."""
    app = launched(name, candidate.command, env, args.startup_timeout, candidate.ready_path, workers, log_dir(name))
    server = stack.enter_context(app)
    if not candidate.behind_nginx:
        return server, [server]
    proxy = stack.enter_context(proxying([server.port], log_dir(name), name=f"nginx-{name}"))
    return proxy, [server, proxy]


def combined(trees: list[dict[str, Any]]) -> dict[str, Any]:
    """One memory figure of the process trees a candidate runs (the app, and nginx in front): totals summed."""
    if len(trees) == 1:
        return trees[0]
    totals = {key: round(sum(tree[key] for tree in trees), 1) for key in ("total_mb", "total_anon_mb")}
    return {**trees[0], **totals, "proxy_mb": round(sum(tree["total_mb"] for tree in trees[1:]), 1)}


def start(stack: ExitStack, name: str, args: argparse.Namespace) -> Server:
    """Start one server with ``--workers`` workers, its logs in its own folder; leaving ``stack`` stops it."""
    candidate = CANDIDATES[name]
    front, _ = launch(stack, name, candidate, candidate_env(args, candidate, args.workers), args.workers, args)
    return front


def after_load(name: str, server: Server, load: list[Report], batch: list[str], args: argparse.Namespace) -> Report:
    """One server's record once the rounds are over: its command and load levels, then (if it serves models) a batch run."""
    candidate = CANDIDATES[name]
    result: Report = {"command": pasteable(candidate.command, candidate_env(args, candidate, args.workers), server.port)}
    result["load"] = load
    if candidate.serves_models:
        note(f"{name}: batches of {len(batch)} for up to {args.batch_seconds:g} s")
        result["batch"] = batch_throughput(server.url, batch, args)
    return {**result, "worker_class": "granian wsgi behind nginx" if candidate.behind_nginx else worker_class(server)}


def measure_all(binary: str, script: Path, batch: list[str], paths: list[str], args: argparse.Namespace) -> dict[str, Report]:
    """Start every server, run the load rounds and then the batch runs; once all are stopped, take memory one by one."""
    with ExitStack() as stack:
        servers = {name: start(stack, name, args) for name in args.servers}
        loads = load_rounds(binary, servers, script, args)
        results = {name: after_load(name, server, loads[name], batch, args) for name, server in servers.items()}
    for name, result in results.items():
        if CANDIDATES[name].serves_models:
            result["memory"] = {str(workers): memory_at(name, workers, paths, args) for workers in args.memory_workers}
    return add_ceiling_ratios(results)


def add_ceiling_ratios(servers: dict[str, Report]) -> dict[str, Report]:
    """Give each load level its per-round ratios to the ceiling and their median, the 'x ceiling' figure published."""
    for name, info in servers.items():
        for load in info["load"]:
            ratios = summary.ceiling_ratios({"servers": servers}, name, load["connections"])
            median = summary.ceiling_ratio({"servers": servers}, name, load["connections"])
            load["x_ceiling_by_round"] = None if ratios is None else [round(ratio, 4) for ratio in ratios]
            load["x_ceiling"] = None if median is None else round(median, 4)
    return servers


def package_version(name: str) -> str:
    """An installed package's name and version, for the record of what was measured."""
    try:
        return f"{name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{name} (not installed)"


def benchmark(args: argparse.Namespace, command: str, sentences: list[str]) -> Report:
    """Measure the batch in process, then every server in interleaved rounds, and gather the report with the verdicts."""
    if "granian" in args.servers and package_version("granian").endswith("(not installed)"):
        raise BenchError("granian is not installed: .venv/bin/pip install granian==2.8.7, or leave it out with --servers")
    binary = wrk.ensure_wrk(note)
    busy = psutil.cpu_percent(interval=1.0)  # other load on these cores skews every number below
    if busy > summary.BUSY_WARNING:
        note(f"warning: the CPUs are already {busy}% busy before the run; expect noisy numbers")
    paths = query_paths(sample(sentences, args.phrase_count))
    (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
    script = RESULTS / "phrases.lua"
    script.write_text(wrk_script(paths), encoding="utf-8")
    batch = sample(sentences, args.batch_size)
    note(f"in process: NLPModel.predict_texts on batches of {len(batch)} for up to {args.batch_seconds:g} s")
    report: Report = {
        "command": command,
        "environment": {
            "cpus": os.cpu_count(),
            "cpu_busy_before_percent": busy,
            "granian": package_version("granian"),
            "wrk": tool_version([binary, "-v"]),
            "python": sys.version.split()[0],
        },
        "settings": {
            "servers": args.servers,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "repeat": args.repeat,
            "interleaved": True,
            "wrk_threads": 1,
            "connections": args.connections,
            "workers": args.workers,
            "memory_workers": args.memory_workers,
            "phrases_file": str(args.phrases),
            "distinct_phrases": len(set(paths)),
            "access_log": not args.no_access_log,
        },
        "in_process_batch": in_process_batch(batch, args),
        "servers": measure_all(binary, script, batch, paths, args),
    }
    return {**report, "targets": summary.target_results(report), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the summary and write it as JSON, or say in one line why it could not run."""
    status, _ = report_run(parse_args(argv), benchmark, summary.render)
    return status


if __name__ == "__main__":
    sys.exit(main())
