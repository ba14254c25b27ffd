"""Benchmark the service against a do-nothing "ceiling" app, both under the production gunicorn config.

    .venv/bin/python bench/run.py                 # defaults: 10 s per load level, about a minute in all
    .venv/bin/python bench/run.py --help

Both servers run as ``gunicorn -c gunicorn.conf.py`` from the repo root, on 127.0.0.1 and a free port, one
after the other, with the same environment. wrk drives each with real sentences from the Kaggle test.tsv; then
come a batch-throughput run, the service's memory (PSS) after load, and the memory a second worker adds.
The summary is printed and written to bench/results/latest.json; server logs and raw wrk output go next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_PHRASES = ROOT.parent / "shared" / "data" / "kaggle" / "test.tsv"
GUNICORN = Path(sys.executable).with_name("gunicorn")
HOST = "127.0.0.1"
SEED = 1234  # fixed, so every run sends the same sentences in the same order
STOP_TIMEOUT = 15.0  # seconds a server gets to stop gracefully before its process group is killed
BUSY_WARNING = 10.0  # percent of CPU busy before the run above which the summary warns of noise
MS_PER_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
KAGGLE_URL = "https://www.kaggle.com/c/sentiment-analysis-on-movie-reviews/data"


class BenchError(Exception):
    """The benchmark cannot go on; the message says why and what to do."""


def note(message: str) -> None:
    """Show progress on stderr, so stdout holds only the summary."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the options; every default keeps the whole run under about 3 minutes."""
    parser = argparse.ArgumentParser(
        description="Load-test the service and a constant-answer ceiling app under gunicorn.conf.py, with wrk.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Both servers inherit the environment, so WORKER_CLASS, THREADS, WEB_CONCURRENCY etc. apply to both. "
        "WORKER_CLASS=sync needs THREADS=1: gunicorn runs sync with threads > 1 as gthread (the summary shows the class used).",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds of measured wrk load per connections level")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured wrk load before each level (0: none)")
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64], help="wrk connection levels (1 thread)")
    parser.add_argument("--phrases", type=Path, default=DEFAULT_PHRASES, help="Kaggle test.tsv to take sentences from")
    parser.add_argument("--phrase-count", type=int, default=300, help="distinct sentences the wrk script cycles through")
    parser.add_argument("--workers", type=int, metavar="N", help="WEB_CONCURRENCY for both; default: the config's")
    parser.add_argument("--no-access-log", action="store_true", help="run both servers with ACCESS_LOG='' (no access log)")
    parser.add_argument("--batch-size", type=int, default=1000, help="queries per POST in the batch run")
    parser.add_argument("--batch-seconds", type=float, default=5.0, help="time bound of the batch run")
    parser.add_argument("--batch-requests", type=int, default=100, help="count bound of the batch run")
    parser.add_argument("--batch-clients", type=int, default=2, help="threads posting batches concurrently")
    parser.add_argument("--memory-requests", type=int, default=400, help="requests that warm the 1- and 2-worker servers")
    parser.add_argument("--startup-timeout", type=float, default=60.0, help="seconds to wait for a server to answer")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json", help="where to write the JSON summary")
    args = parser.parse_args(argv)
    positive = [args.duration, *args.connections, args.phrase_count, args.batch_size, args.batch_requests, args.batch_clients]
    if min(positive) < 1 or args.warmup < 0 or (args.workers is not None and args.workers < 1):
        parser.error("counts, durations and connections must be positive (--warmup may be 0)")
    return args


def handle_sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into SystemExit, so the finally blocks that stop the servers still run."""
    raise SystemExit(128 + signum)


# --- inputs -----------------------------------------------------------------------------------


def read_sentences(path: Path) -> list[str]:
    """Return whole sentences (the longest phrase of each SentenceId), since whole sentences are what users send."""
    if not path.is_file():
        raise BenchError(
            f"phrases file not found: {path}. It is test.tsv from the Kaggle 'Sentiment Analysis on Movie Reviews' "
            f"data ({KAGGLE_URL}); put it at {DEFAULT_PHRASES} or pass --phrases PATH."
        )
    longest: dict[int, str] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, [])
        if header[:3] != ["PhraseId", "SentenceId", "Phrase"]:
            raise BenchError(f"{path}: expected a header 'PhraseId<TAB>SentenceId<TAB>Phrase', got {header!r}")
        for row in reader:
            if len(row) >= 3 and row[2].strip() and row[1].isdigit():
                sentence_id, phrase = int(row[1]), row[2].strip()
                if len(phrase) > len(longest.get(sentence_id, "")):
                    longest[sentence_id] = phrase
    if not longest:
        raise BenchError(f"{path}: no phrases found")
    return [longest[key] for key in sorted(longest)]


def sample(sentences: list[str], count: int) -> list[str]:
    """Pick ``count`` sentences in a fixed pseudo-random order, repeating them only when there are too few."""
    shuffled = random.Random(SEED).sample(sentences, len(sentences))
    return [shuffled[index % len(shuffled)] for index in range(count)]


def query_paths(phrases: Sequence[str]) -> list[str]:
    """URL-encode each phrase as ``/?query=...``, the way a browser's fetch would send it."""
    return ["/?query=" + urllib.parse.quote(phrase, safe="") for phrase in phrases]


def write_wrk_script(paths: Sequence[str], target: Path) -> Path:
    """Write a wrk script cycling through the paths, so every request carries a different real sentence."""
    # quote(safe="") leaves only [A-Za-z0-9_.~%-], so the paths are safe inside Lua double quotes.
    listed = ",\n".join(f'  "{path}"' for path in paths)
    target.write_text(
        "-- Generated by bench/run.py: GET /?query=<sentence>, cycling through real test.tsv sentences.\n"
        f"local paths = {{\n{listed}\n}}\n"
        "local next_index = 0\n"
        "request = function()\n"
        "  next_index = next_index % #paths + 1\n"
        '  return wrk.format("GET", paths[next_index])\n'
        "end\n",
        encoding="utf-8",
    )
    return target


# --- tools ------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """Find wrk, installing it with apt-get if missing, since every load level needs it."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise BenchError("wrk is not installed and there is no apt-get to install it: install wrk (https://github.com/wg/wrk).")
    note("wrk not found; installing it with apt-get")
    if not apt_get(apt, "install", "-y", "wrk"):
        apt_get(apt, "update")
        apt_get(apt, "install", "-y", "wrk")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("could not install wrk with 'apt-get install -y wrk' (root needed); install wrk and retry.")
    return found


def apt_get(apt: str, *arguments: str) -> bool:
    """Run one apt-get command quietly and bounded in time; say whether it succeeded."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run([apt, *arguments], env=env, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        note(f"apt-get {' '.join(arguments)} failed: {exc}")
        return False
    if done.returncode != 0:
        note(f"apt-get {' '.join(arguments)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.returncode == 0


def cpu_busy_percent(seconds: float = 1.0) -> float:
    """Sample how busy the CPUs are before the run: other load on these cores skews every number below."""

    def times() -> list[int]:
        return [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]

    before = times()
    time.sleep(seconds)
    deltas = [after - start for start, after in zip(before, times(), strict=True)]
    idle = deltas[3] + deltas[4]  # idle and iowait
    return round(100 * (1 - idle / max(1, sum(deltas))), 1)


def tool_version(command: Sequence[str]) -> str:
    """Return a tool's first line of version output, for the record of what was measured."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].split(" Copyright")[0].strip() if lines else "unknown"


# --- servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    """A gunicorn started by this script, and where to reach it."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    command: str

    @property
    def url(self) -> str:
        """Base URL, loopback only."""
        return f"http://{HOST}:{self.port}"


def free_port() -> int:
    """Ask the kernel for a free loopback port, so the benchmark never collides with a running service."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def server_env(access_log: str, workers: int | None) -> dict[str, str]:
    """Environment for both servers: the caller's, with the same access-log and worker settings for each."""
    env = dict(os.environ)
    # Each server gets a fresh metrics folder from the config, never a live service's.
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["ACCESS_LOG"] = access_log
    if workers is not None:
        env["WEB_CONCURRENCY"] = str(workers)
    return env


def server_command(app: str | None, port: int) -> list[str]:
    """The production command, bound to loopback on the given port."""
    command = [str(GUNICORN), "-c", "gunicorn.conf.py", "--bind", f"{HOST}:{port}"]
    return command + ([app] if app else [])


def shown_command(command: Sequence[str], env: dict[str, str]) -> str:
    """Render a server command with the environment it depends on, so it can be pasted into a shell."""
    keys = ("ACCESS_LOG", "WEB_CONCURRENCY", "WORKER_CLASS", "THREADS")
    prefix = [f"{key}={shlex.quote(env[key])}" for key in keys if key in env]
    executable = os.path.relpath(command[0], ROOT)
    return " ".join([*prefix, shlex.join([executable, *command[1:]])])


@contextlib.contextmanager
def running_server(
    name: str, app: str | None, env: dict[str, str], ready_path: str, timeout: float, workers: int | None = None
) -> Iterator[Server]:
    """Start a gunicorn in its own process group and always stop the whole group, whatever happens meanwhile."""
    port = free_port()
    command = server_command(app, port)
    log_path = RESULTS / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process: subprocess.Popen[bytes] | None = None
    try:
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        server = Server(name, process, port, log_path, shown_command(command, env))
        note(f"started {name}: {server.command}  (log: {os.path.relpath(log_path, ROOT)})")
        wait_ready(server, ready_path, timeout, workers)
        yield server
    finally:
        if process is not None:
            stop(process)


def wait_ready(server: Server, path: str, timeout: float, workers: int | None) -> None:
    """Wait until the server answers 200 on ``path`` (and has ``workers`` workers), so no load hits a booting server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive(server)
        with contextlib.suppress(requests.RequestException):
            answered = requests.get(server.url + path, timeout=2).status_code == 200
            if answered and (workers is None or len(descendants(server.process.pid)) >= workers):
                return
        time.sleep(0.1)
    raise BenchError(f"{server.name} did not answer {path} within {timeout:.0f} s:\n{log_tail(server.log_path)}")


def check_alive(server: Server) -> None:
    """Fail with the server's last log lines if it has exited, rather than report a dead server's numbers."""
    if server.process.poll() is not None:
        raise BenchError(f"{server.name} exited with status {server.process.returncode}:\n{log_tail(server.log_path)}")


def log_tail(path: Path, lines: int = 15) -> str:
    """Return the end of a server log, to show why a server failed without sending the reader to the file."""
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(["  " + line for line in text[-lines:]] + [f"  (full log: {path})"])


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server's whole process group: TERM for a graceful exit, then KILL, so no worker outlives the run."""
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


def worker_class_in_log(path: Path) -> str:
    """Read the worker class gunicorn actually used from its log, rather than guess from the environment."""
    found = re.search(r"Using worker: ([\w.:]+)", path.read_text(encoding="utf-8", errors="replace"))
    return found.group(1) if found else "unknown"


# --- memory -----------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """List a process's direct children from /proc, scanning parent ids where the kernel lacks task/*/children."""
    files = list(Path(f"/proc/{pid}/task").glob("*/children"))
    if files:
        return [int(child) for file in files for child in file.read_text().split()]
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def descendants(pid: int) -> list[int]:
    """List every process below ``pid``: for gunicorn, the workers and anything they started."""
    return [found for child in children(pid) for found in (child, *descendants(child))]


def pss_kib(pid: int) -> tuple[int, int]:
    """Read a process's PSS and its anonymous part: PSS splits pages shared copy-on-write fairly between processes."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("Pss", "Pss_Anon"):
            fields[name] = int(value.split()[0])
    if len(fields) < 2:
        raise BenchError(f"no Pss and Pss_Anon lines in /proc/{pid}/smaps_rollup")
    return fields["Pss"], fields["Pss_Anon"]


def memory_snapshot(master: int) -> dict[str, Any]:
    """Measure PSS of the master and each worker; their sum is what the server really costs in RAM."""
    master_kib, master_anon = pss_kib(master)
    workers = [pss_kib(pid) for pid in descendants(master)]
    return {
        "master_mb": mib(master_kib),
        "workers_mb": [mib(pss) for pss, _ in workers],
        "total_mb": mib(master_kib + sum(pss for pss, _ in workers)),
        # Library pages are shared with any other process mapping them (a test run, say), so their PSS share moves
        # with what else runs; the anonymous part is shared only between master and workers, and is stable.
        "total_anon_mb": mib(master_anon + sum(anon for _, anon in workers)),
    }


def mib(kib: int) -> float:
    """Convert KiB to MiB, rounded for reading."""
    return round(kib / 1024, 1)


# --- load -------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """One wrk run's numbers, as the summary and the JSON report show them."""

    target: str
    connections: int
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    socket_errors: dict[str, int]
    non_2xx: int
    errors: int
    connections_per_worker: list[int]


def run_wrk(wrk: str, server: Server, script: Path, connections: int, seconds: int) -> tuple[str, list[int]]:
    """Run wrk with one thread; halfway through, count each worker's connections. Fail loudly on a broken run."""
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), server.url + "/"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(seconds / 2)
        spread = connections_per_worker(server)
        output, errors = process.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {shlex.join(command)}") from exc
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise BenchError(f"wrk failed ({process.returncode}): {shlex.join(command)}\n{output}{errors}")
    return output, spread


def connections_per_worker(server: Server) -> list[int]:
    """Count each worker's established client connections: a keep-alive connection stays with the worker that accepted it."""
    return sorted(connections_by_worker(server).values(), reverse=True)


def connections_by_worker(server: Server) -> dict[int, int]:
    """Map each worker pid to its established client connections, so a caller can pick a worker by its load."""
    inodes = established_inodes(server.port)
    counts = {}
    for pid in descendants(server.process.pid):
        links = []
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            with contextlib.suppress(OSError):  # descriptors come and go while we look
                links.append(os.readlink(fd))
        counts[pid] = sum(link.startswith("socket:[") and link[8:-1] in inodes for link in links)
    return counts


def established_inodes(port: int) -> set[str]:
    """Socket inodes of established TCP connections to ``port`` on this host, read from /proc/net/tcp."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 01: ESTABLISHED
            inodes.add(fields[9])
    return inodes


def to_ms(value: str) -> float:
    """Convert a wrk duration such as 850.00us, 1.23ms or 2.01s to milliseconds."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if not found:
        raise BenchError(f"unexpected wrk duration {value!r}")
    return round(float(found.group(1)) * MS_PER_UNIT[found.group(2)], 3)


def parse_wrk(output: str, target: str, connections: int, spread: list[int]) -> LoadResult:
    """Pull req/s, p50, p99 and every kind of error out of wrk's --latency report."""

    def number(pattern: str, default: str | None = None) -> str:
        found = re.search(pattern, output, re.MULTILINE)
        if found:
            return found.group(1)
        if default is None:
            raise BenchError(f"could not find {pattern!r} in wrk output:\n{output}")
        return default

    socket_found = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    counts = map(int, socket_found.groups()) if socket_found else ()
    socket_errors = dict(zip(("connect", "read", "write", "timeout"), counts, strict=False))
    # wrk counts statuses above 399 here; the service and the ceiling never redirect, so this is every non-2xx.
    non_2xx = int(number(r"Non-2xx or 3xx responses: (\d+)", "0"))
    return LoadResult(
        target=target,
        connections=connections,
        requests=int(number(r"(\d+) requests in")),
        requests_per_s=float(number(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=to_ms(number(r"^\s+50(?:\.0+)?%\s+(\S+)$")),
        p99_ms=to_ms(number(r"^\s+99(?:\.0+)?%\s+(\S+)$")),
        socket_errors=socket_errors,
        non_2xx=non_2xx,
        errors=sum(socket_errors.values()) + non_2xx,
        connections_per_worker=spread,
    )


def load_levels(wrk: str, server: Server, script: Path, args: argparse.Namespace) -> list[LoadResult]:
    """Warm up, then measure, at each connections level; keep wrk's raw output beside the results."""
    results = []
    for connections in args.connections:
        check_alive(server)
        if args.warmup:
            run_wrk(wrk, server, script, connections, args.warmup)
        note(f"{server.name}: {connections} connections for {args.duration} s")
        output, spread = run_wrk(wrk, server, script, connections, args.duration)
        check_alive(server)
        (RESULTS / "logs" / f"wrk-{server.name}-c{connections}.txt").write_text(output, encoding="utf-8")
        results.append(parse_wrk(output, server.name, connections, spread))
    return results


def batch_throughput(url: str, phrases: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """POST full batches from a few clients until the time or count bound; phrases/s is end to end, wall clock."""
    body = json.dumps({"queries": phrases}).encode("utf-8")
    budgets = [len(range(client, args.batch_requests, args.batch_clients)) for client in range(args.batch_clients)]
    started = time.perf_counter()
    deadline = time.monotonic() + args.batch_seconds
    with ThreadPoolExecutor(max_workers=args.batch_clients) as pool:
        runs = list(pool.map(lambda budget: post_batches(url, body, len(phrases), budget, deadline), budgets))
    wall = time.perf_counter() - started
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
            started = time.perf_counter()
            response = session.post(url + "/", data=body, headers={"Content-Type": "application/json"}, timeout=60)
            ok = response.status_code == 200 and len(response.json().get("predictions", [])) == size
            results.append((time.perf_counter() - started, ok))
    return results


def warm_workers(url: str, paths: list[str], count: int) -> int:
    """Send ``count`` GETs, each on a new connection so every worker gets some; return how many failed."""

    def get(path: str) -> bool:
        with contextlib.suppress(requests.RequestException):
            return requests.get(url + path, headers={"Connection": "close"}, timeout=10).status_code == 200
        return False

    with ThreadPoolExecutor(max_workers=8) as pool:
        return sum(not ok for ok in pool.map(get, (paths[index % len(paths)] for index in range(count))))


def marginal_worker(env: dict[str, str], paths: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Measure total PSS with one worker and with two after the same warm-up: the difference is one worker's cost."""
    totals: dict[str, Any] = {}
    for workers in (1, 2):
        worker_env = {**env, "WEB_CONCURRENCY": str(workers)}
        with running_server(f"service-{workers}w", None, worker_env, "/health", args.startup_timeout, workers) as server:
            failed = warm_workers(server.url, paths, args.memory_requests)
            totals[f"{workers}_worker"] = {**memory_snapshot(server.process.pid), "failed_requests": failed}
    for key in ("total_mb", "total_anon_mb"):
        totals[f"second_worker_adds_{key.removeprefix('total_')}"] = round(totals["2_worker"][key] - totals["1_worker"][key], 1)
    return totals


# --- the run ----------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Run every measurement in turn, one server at a time, and gather the report."""
    sentences = read_sentences(args.phrases)
    wrk = ensure_wrk()
    busy = cpu_busy_percent()
    if busy > BUSY_WARNING:
        note(f"warning: the CPUs are already {busy}% busy before the run; expect noisy numbers")
    paths = query_paths(sample(sentences, args.phrase_count))
    RESULTS.mkdir(parents=True, exist_ok=True)
    script = write_wrk_script(paths, RESULTS / "phrases.lua")
    env = server_env("" if args.no_access_log else "-", args.workers)
    with running_server("service", None, env, "/health", args.startup_timeout) as service:
        loads = load_levels(wrk, service, script, args)
        note(f"service: batches of {args.batch_size} for up to {args.batch_seconds:g} s")
        batch = batch_throughput(service.url, sample(sentences, args.batch_size), args)
        after_load = memory_snapshot(service.process.pid)
        service_info = {"command": service.command, "worker_class": worker_class_in_log(service.log_path)}
    with running_server("ceiling", "bench.ceiling:app", env, "/", args.startup_timeout) as ceiling:
        loads += load_levels(wrk, ceiling, script, args)
        ceiling_info = {"command": ceiling.command, "worker_class": worker_class_in_log(ceiling.log_path)}
    note("memory: service with 1 worker, then 2")
    marginal = marginal_worker(env, paths, args)
    return {
        "command": command,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": {
            "cpus": os.cpu_count(),
            "cpu_busy_before_percent": busy,
            "gunicorn": tool_version([str(GUNICORN), "--version"]),
            "wrk": tool_version([wrk, "-v"]),
            "python": sys.version.split()[0],
        },
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "wrk_threads": 1,
            "phrases_file": str(args.phrases),
            "distinct_phrases": len(set(paths)),
            "access_log": not args.no_access_log,
            "env": {key: env.get(key, "(config default)") for key in ("WEB_CONCURRENCY", "WORKER_CLASS", "THREADS")},
        },
        "servers": {"service": service_info, "ceiling": ceiling_info},
        "load": [asdict(result) for result in loads],
        "batch": batch,
        "memory": {"service_after_load": after_load, "marginal": marginal},
    }


def render(report: dict[str, Any]) -> str:
    """Lay the report out for a terminal: settings, the load table with ratios, batch and memory lines."""
    settings, memory = report["settings"], report["memory"]
    after, marginal, batch = memory["service_after_load"], memory["marginal"], report["batch"]
    env = report["environment"]
    one, two = marginal["1_worker"], marginal["2_worker"]
    noisy = ": other processes compete, numbers are noisy" if env["cpu_busy_before_percent"] > BUSY_WARNING else ""
    lines = [
        f"machine: {env['cpus']} cpus ({env['cpu_busy_before_percent']}% busy before the run{noisy}), "
        f"wrk on the same cpus; {env['gunicorn']}; {env['wrk']}",
        f"servers: worker class {report['servers']['service']['worker_class']}, {len(after['workers_mb'])} workers, "
        f"env {settings['env']}, access log {'on' if settings['access_log'] else 'off'}",
        f"  service: {report['servers']['service']['command']}",
        f"  ceiling: {report['servers']['ceiling']['command']}",
        f"load: wrk -t1, {settings['warmup_s']} s warm-up + {settings['duration_s']} s per level, "
        f"GET /?query=<one of {settings['distinct_phrases']} test.tsv sentences>",
        "",
        *load_table(report["load"]),
        "",
        f"batch: POST / with {batch['batch_size']} queries, {batch['clients']} clients: {batch['phrases_per_s']:,.0f} phrases/s "
        f"end to end, {batch['mean_batch_ms']} ms mean per batch ({batch['batches']} batches in {batch['wall_s']} s, "
        f"{batch['failed_batches']} failed)",
        f"memory (PSS) after load: {after['total_mb']} MB total = master {after['master_mb']} MB "
        f"+ workers {after['workers_mb']} MB; anonymous part {after['total_anon_mb']} MB",
        f"memory with 1 worker: {one['total_mb']} MB ({one['total_anon_mb']} anon), with 2 workers: {two['total_mb']} MB "
        f"({two['total_anon_mb']} anon) -> second worker adds {marginal['second_worker_adds_mb']} MB PSS "
        f"({marginal['second_worker_adds_anon_mb']} MB anonymous, the part no other process can shift)",
    ]
    return "\n".join(lines)


def load_table(loads: list[dict[str, Any]]) -> list[str]:
    """Tabulate each connections level: service and ceiling rows, and the service's share of the ceiling's req/s."""
    header = (
        f"{'conns':>5}  {'target':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  {'service/ceiling':>15}"
        f"  {'conns per worker':<16}"
    )
    rows = [header, "-" * len(header)]
    for connections in dict.fromkeys(load["connections"] for load in loads):
        level = {load["target"]: load for load in loads if load["connections"] == connections}
        for target, load in level.items():
            ceiling_rps = level.get("ceiling", {}).get("requests_per_s")
            ratio = f"{load['requests_per_s'] / ceiling_rps:.2f}" if target == "service" and ceiling_rps else ""
            rows.append(
                f"{connections:>5}  {target:<8} {load['requests_per_s']:>9,.0f} {load['p50_ms']:>8.2f} {load['p99_ms']:>8.2f} "
                f"{load['errors']:>7}  {ratio:>15}  {'/'.join(map(str, load['connections_per_worker'])):<16}".rstrip()
            )
    if any(uneven(load["connections_per_worker"]) for load in loads):
        rows.append(
            "note: uneven connections per worker: a gthread worker keeps every keep-alive connection it accepts, so one"
            " worker can hold most of them while another core idles; req/s then varies from run to run."
        )
    return rows


def uneven(spread: list[int]) -> bool:
    """Say whether one worker holds over three quarters of the connections while others exist to share them."""
    return len(spread) > 1 and sum(spread) > 0 and max(spread) > 0.75 * sum(spread)


def report_run(
    args: argparse.Namespace,
    produce: Callable[[argparse.Namespace, str], dict[str, Any]],
    render_report: Callable[[dict[str, Any]], str],
) -> tuple[int, dict[str, Any] | None]:
    """Run a measurement the way every bench command does: echo the command, stop cleanly on SIGTERM or Ctrl-C,
    say in one line why it could not run, print the summary and write it as JSON. Return (exit status, report)."""
    command = shlex.join([os.path.relpath(sys.executable, Path.cwd()), *sys.argv])
    print(f"command: {command}", flush=True)
    signal.signal(signal.SIGTERM, handle_sigterm)
    try:
        report = produce(args, command)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2, None
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped, no results written", file=sys.stderr)
        return 130, None
    print(render_report(report))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    shown = os.path.relpath(args.output) if args.output.resolve().is_relative_to(Path.cwd()) else args.output
    print(f"\nJSON: {shown}  logs and raw wrk output: {os.path.relpath(RESULTS / 'logs')}")
    return 0, report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the summary and write it as JSON, or say in one line why it could not run."""
    status, _ = report_run(parse_args(argv), benchmark, render)
    return status


if __name__ == "__main__":
    sys.exit(main())
