"""Soak test: sustained mixed load on the production server while a worker is killed and the models are reloaded.

    .venv/bin/python -m bench.soak [--duration 120] [--connections 64]     # about 2.5 minutes in all

The production command serves a temporary copy of lib/models (2 workers, no access log) while wrk sends a mix of valid,
invalid, oversized and batch requests (bench/soak.lua counts each answer's status by kind). At 1/3 of the run the busiest
worker is SIGKILLed and the recovery timed; at 2/3 the copy's sentiment folder is swapped and the master gets SIGHUP.
The report (statuses per kind, socket errors, latency, recovery, reload, PSS) is also written to bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

from bench import wrk
from bench.common import (
    PHRASES_HELP,
    RESULTS,
    BenchError,
    Report,
    growth,
    load_result,
    note,
    report_run,
    sample,
    shown_command,
    started,
    tool_version,
)
from lib.paths import MODELS_DIR
from tests.support.harness import Server, connections_by_worker, descendants, live_descendants, memory_snapshot

LUA_SCRIPT = Path(__file__).resolve().parent / "soak.lua"
MODELS = MODELS_DIR
POLL_S = 0.02  # how often the recovery and reload watchers look at the process tree
HEALTH_TIMEOUT_S = 1.0
RECOVERY_TIMEOUT_S = 30.0
BATCH_SIZE = 100
OVERSIZED_CHARS = 25_000  # over the service's 20,000-character limit, far under its 2 MB body limit
CYCLE_REPEAT = 4  # the plan is 100 * CYCLE_REPEAT requests, so GETs cycle through 280 different sentences
MAX_PATH = 4000  # keep request lines well under the service's MAX_URL_BYTES (lib/settings.py)
COUNTS_MARKER = "SOAK_COUNTS "


@dataclass(frozen=True)
class Kind:
    """One kind of request in the mix, and the status the HTTP contract promises for it."""

    name: str
    share: int  # requests of this kind in every 100
    expected: int
    what: str


KINDS = (
    Kind("get", 70, 200, "GET /?query=<sentence>"),
    Kind("ratings", 12, 200, "GET /ratings?query=<sentence>"),
    Kind("missing_query", 6, 400, "GET / without query"),
    Kind("malformed_json", 5, 400, "POST / with malformed JSON"),
    Kind("oversized", 2, 413, f"POST / JSON with a {OVERSIZED_CHARS:,}-character query"),
    Kind("batch", 5, 200, f"POST / JSON batch of {BATCH_SIZE} sentences"),
)
EXPECTED = {kind.name: kind.expected for kind in KINDS}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the options; the defaults give a 2-minute soak at 64 connections on 2 workers."""
    parser = argparse.ArgumentParser(
        description="Soak the production server with mixed wrk load while killing a worker and reloading the models.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=int, default=120, help="seconds of load (the kill comes at 1/3, the reload at 2/3)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, choices=(1, 2), help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY of the server")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of the same load before the first memory reading")
    parser.add_argument("--phrases", type=Path, help=PHRASES_HELP)
    parser.add_argument("--startup-timeout", type=float, default=60.0, help="seconds to wait for the server to answer")
    parser.add_argument("--output", type=Path, default=RESULTS / "soak.json", help="where to write the JSON summary")
    args = parser.parse_args(argv)
    if args.duration < 10 or args.warmup < 1 or args.workers < 2 or args.connections < args.threads:
        parser.error("--duration must be at least 10, --warmup 1, --workers 2 (one is killed), --connections --threads")
    return args


def interleaved_kinds(repeat: int) -> list[Kind]:
    """Spread each kind evenly over the cycle, so that no stretch of the run is all batches or all errors."""
    slots = [
        ((i + 0.5) / (kind.share * repeat), order, kind) for order, kind in enumerate(KINDS) for i in range(kind.share * repeat)
    ]
    return [kind for _, _, kind in sorted(slots, key=lambda slot: slot[:2])]


def plan_line(kind: Kind, sentences: Iterator[str]) -> str:
    """Render one request as ``kind TAB method TAB path TAB body`` for soak.lua (JSON bodies hold no raw tabs)."""
    if kind.name in ("get", "ratings"):
        path = ("/?query=" if kind.name == "get" else "/ratings?query=") + urllib.parse.quote(next(sentences), safe="")
        return f"{kind.name}\tGET\t{path}\t"
    if kind.name == "missing_query":
        return f"{kind.name}\tGET\t/\t"
    if kind.name == "malformed_json":
        return f'{kind.name}\tPOST\t/\t{{"queries": ["unterminated'
    if kind.name == "oversized":
        text = next(sentences)
        while len(text) < OVERSIZED_CHARS:
            text += " " + next(sentences)
        return f"{kind.name}\tPOST\t/\t{json.dumps({'query': text[:OVERSIZED_CHARS]})}"
    return f"{kind.name}\tPOST\t/\t{json.dumps({'queries': [next(sentences) for _ in range(BATCH_SIZE)]})}"


def plan(sentences: list[str]) -> str:
    """The cycle of requests soak.lua sends, with real sentences short enough for a URL."""
    usable = [sentence for sentence in sentences if len(urllib.parse.quote(sentence, safe="")) < MAX_PATH]
    stream = iter(sample(usable, 100_000))
    return "".join(plan_line(kind, stream) + "\n" for kind in interleaved_kinds(CYCLE_REPEAT))


def mix_command(binary: str, server: Server, plan_path: Path, args: argparse.Namespace, seconds: int) -> list[str]:
    """wrk sending the plan's mix through soak.lua for ``seconds``."""
    return wrk.command(binary, server.url, args.connections, seconds, LUA_SCRIPT, args.threads, str(plan_path))


def stable_memory(master: int, workers: int, timeout: float = 10.0) -> dict[str, Any]:
    """Read PSS once exactly the expected workers are alive, retrying while processes come and go."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(psutil.Error):
            if len(live_descendants(master)) == workers and len(descendants(master)) == workers:
                return memory_snapshot(master)
        if time.monotonic() > deadline:
            raise BenchError(f"could not read the memory of a steady set of {workers} workers within {timeout:.0f} s")
        time.sleep(0.1)


def wait_until(deadline: float, server: Server, load: subprocess.Popen[bytes]) -> None:
    """Sleep until ``deadline``, but stop early with an error if the server or wrk died meanwhile."""
    while time.monotonic() < deadline:
        server.check_alive()
        if load.poll() is not None:
            raise BenchError(f"wrk exited early with status {load.returncode}")
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def ms(seconds: float) -> float:
    """Express a duration in milliseconds, rounded for reading."""
    return round(seconds * 1000, 1)


def kill_busiest_worker(server: Server, started_at: float) -> tuple[dict[str, Any], float]:
    """SIGKILL the worker holding most connections: the worst case for requests in flight."""
    load = connections_by_worker(server)
    pid = max(live_descendants(server.process.pid), key=lambda worker: load.get(worker, 0))
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    held = load.get(pid, 0)
    note(f"SIGKILL worker {pid} at {killed_at - started_at:.1f} s (it held {held} of the connections)")
    return {
        "pid": pid,
        "connections_held": held,
        "connections_by_worker": load,
        "at_s": round(killed_at - started_at, 2),
    }, killed_at


def health_ok(url: str) -> bool:
    """Ask /health on a new connection, so the answer comes from whichever worker accepts it now."""
    with contextlib.suppress(requests.RequestException):
        return requests.get(url + "/health", headers={"Connection": "close"}, timeout=HEALTH_TIMEOUT_S).status_code == 200
    return False


def watch_recovery(server: Server, killed: int, killed_at: float, workers: int, stop: threading.Event) -> dict[str, Any]:
    """Poll until the master has a full set of live workers again and a fresh /health succeeds; time both."""
    full_at = None
    while not stop.is_set() and time.monotonic() - killed_at < RECOVERY_TIMEOUT_S:
        live = [pid for pid in live_descendants(server.process.pid) if pid != killed]
        if len(live) >= workers:
            full_at = full_at or time.monotonic()
            if health_ok(server.url):
                full_ms, done_ms = ms(full_at - killed_at), ms(time.monotonic() - killed_at)
                return {"recovered": True, "recovery_ms": done_ms, "workers_full_ms": full_ms, "workers": live}
        time.sleep(POLL_S)
    return {"recovered": False, "recovery_ms": None, "workers_full_ms": ms(full_at - killed_at) if full_at else None}


def swap_sentiment(models: Path) -> None:
    """Replace the copy's sentiment folder by a fresh copy of the repo's (identical files: a reload of the same model)."""
    fresh, previous, current = models / "sentiment.next", models / "sentiment.previous", models / "sentiment"
    shutil.copytree(MODELS / "sentiment", fresh)
    current.rename(previous)  # nothing reads the folder now: workers never load models, the master only on SIGHUP
    fresh.rename(current)
    shutil.rmtree(previous)


def reload_models(server: Server, models: Path, workers: int, started_at: float, bound: float) -> dict[str, Any]:
    """Swap the model folder, SIGHUP the master, and wait (up to ``bound``) until every worker has been replaced."""
    master = server.process.pid
    before = after = live_descendants(master)
    swap_sentiment(models)
    os.kill(master, signal.SIGHUP)
    sent_at = time.monotonic()
    note(f"swapped models/sentiment and sent SIGHUP at {sent_at - started_at:.1f} s (workers {before})")
    replaced_ms = None
    while replaced_ms is None and time.monotonic() < sent_at + bound:
        after = live_descendants(master)
        if len(after) == workers and not set(after) & set(before):
            replaced_ms = ms(time.monotonic() - sent_at)
        time.sleep(POLL_S)
    return {
        "at_s": round(sent_at - started_at, 2),
        "workers_before": before,
        "workers_after": after,
        "workers_replaced": replaced_ms is not None,
        "replaced_ms": replaced_ms,
    }


def sentiment_version(url: str) -> str:
    """Read the served sentiment model's version from /models, on a new connection."""
    response = requests.get(url + "/models", headers={"Connection": "close"}, timeout=5)
    response.raise_for_status()
    return str(response.json()["models"]["sentiment"]["version"])


def disrupt(server: Server, load: subprocess.Popen[bytes], models: Path, started_at: float, args: argparse.Namespace) -> Report:
    """Kill a worker at 1/3 of the run (timing its recovery in a thread), then reload the models at 2/3."""
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recovery") as pool:
        try:
            wait_until(started_at + args.duration / 3, server, load)
            kill, killed_at = kill_busiest_worker(server, started_at)
            recovery = pool.submit(watch_recovery, server, kill["pid"], killed_at, args.workers, stop)
            wait_until(started_at + 2 * args.duration / 3, server, load)
            memory_before_reload = stable_memory(server.process.pid, args.workers)
            version_before = sentiment_version(server.url)
            bound = started_at + args.duration - time.monotonic() + 10
            reload = reload_models(server, models, args.workers, started_at, bound)
            kill["recovery"] = recovery.result(timeout=RECOVERY_TIMEOUT_S + 5)
        finally:
            stop.set()
    reload["sentiment_version_before"] = version_before
    return {"kill": kill, "reload": reload, "memory_before_reload": memory_before_reload}


def lua_counts(output: str) -> dict[str, Any]:
    """Pull soak.lua's one-line JSON (requests sent and statuses, per kind) out of wrk's output."""
    line = next((line for line in output.splitlines() if line.startswith(COUNTS_MARKER)), None)
    if line is None:
        raise BenchError(f"no {COUNTS_MARKER.strip()} line in wrk's output:\n{output[-2000:]}")
    counts = json.loads(line.removeprefix(COUNTS_MARKER))
    return {
        "sent": {kind: int(count) for kind, count in counts["sent"].items()},
        "statuses": {kind: {int(status): int(n) for status, n in by.items()} for kind, by in counts["statuses"].items()},
    }


def per_kind(counts: dict[str, Any]) -> list[dict[str, Any]]:
    """Tabulate each kind: sent, answered, answered as the contract says, and any other statuses."""
    rows = []
    for name in [kind.name for kind in KINDS] + sorted(set(counts["statuses"]) - set(EXPECTED)):
        statuses = counts["statuses"].get(name, {})
        expected = EXPECTED.get(name)  # "unknown" (no echoed request id) has no expected status
        rows.append(
            {
                "kind": name,
                "expected": expected,
                "sent": counts["sent"].get(name, 0),
                "answered": sum(statuses.values()),
                "as_expected": statuses.get(expected, 0) if expected else 0,
                "unexpected": {status: n for status, n in sorted(statuses.items()) if status != expected},
            }
        )
    return rows


def answered_by_status(counts: dict[str, Any]) -> dict[int, int]:
    """Add up the answers of every kind by status."""
    return dict(sorted(sum((Counter(statuses) for statuses in counts["statuses"].values()), Counter()).items()))


def log_findings(text: str, master: int, killed: int) -> dict[str, Any]:
    """Read the server's JSON error log: did the master log a reload and load the models again, and what errors."""
    records = []
    for line in text.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    records = [record for record in records if isinstance(record, dict)]
    hup = next((i for i, r in enumerate(records) if "HUP signal received" in str(r.get("message", ""))), None)
    reloaded = hup is not None and any(
        r.get("pid") == master and str(r.get("message", "")).startswith("loaded sentiment") for r in records[hup:]
    )
    errors = [str(r.get("message")) for r in records if r.get("level") in ("ERROR", "CRITICAL")]
    spawned = (str(r.get("message", "")) for r in records)
    slot = next((m.split()[1] for m in spawned if m.startswith("Spawning worker-") and m.endswith(f"PID: {killed}")), None)
    expected = [message for message in errors if slot is not None and message == f"Unexpected exit from {slot}"]
    return {
        "hang_up_logged": hup is not None,
        "master_loaded_models_after_hup": reloaded,
        "error_lines": len(errors),
        "error_lines_about_killed_worker": len(expected),
        "other_error_lines": [message for message in errors if message not in expected][:20],
    }


def assess(report: Report) -> dict[str, Any]:
    """Compare failures with what the kill explains: a request per connection the killed worker held, at least one."""
    errors, kill = report["load"]["socket_errors"], report["kill"]
    socket_failures = errors["connect"] + errors["read"] + errors["write"]
    unexpected = sum(sum(row["unexpected"].values()) for row in report["kinds"])
    allowance = max(kill["connections_held"], 1)
    return {
        "socket_failures": socket_failures,
        "unexpected_answers": unexpected,
        "timeouts": errors["timeout"],
        "explained_by_kill_at_most": allowance,
        "within_expectation": socket_failures + unexpected <= allowance and not errors["timeout"],
    }


def soak(args: argparse.Namespace, command: str, sentences: list[str]) -> Report:
    """Start the server on a copy of the models, warm it up, run the disrupted load, and gather the report."""
    binary = wrk.ensure_wrk(note)
    (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
    plan_path, wrk_log = RESULTS / "soak-plan.tsv", RESULTS / "logs" / "wrk-soak.txt"
    plan_path.write_text(plan(sentences), encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="soak-models-") as temporary:
        models = Path(temporary) / "models"
        shutil.copytree(MODELS, models, ignore=shutil.ignore_patterns(".*"))
        env = {"ACCESS_LOG": "", "WEB_CONCURRENCY": str(args.workers), "MODELS_DIR": str(models)}
        with started("soak", env, args.startup_timeout, workers=args.workers) as server:
            note(f"warm-up: {args.warmup} s of the same mix")
            with wrk.running(mix_command(binary, server, plan_path, args, args.warmup), wrk_log) as warmup:
                wrk.finish(warmup, wrk_log, args.warmup)
            time.sleep(1)  # let the warm-up's connections close before reading memory
            memory_start = stable_memory(server.process.pid, args.workers)
            note(f"load: {args.duration} s, {args.connections} connections; kill at 1/3, reload at 2/3")
            with wrk.running(mix_command(binary, server, plan_path, args, args.duration), wrk_log) as load:
                events = disrupt(server, load, models, time.monotonic(), args)
                output = wrk.finish(load, wrk_log, args.duration)
            server.check_alive()
            memory_end = stable_memory(server.process.pid, args.workers)
            events["reload"]["sentiment_version_after"] = sentiment_version(server.url)
            findings = log_findings(server.stderr.read_text(errors="replace"), server.process.pid, events["kill"]["pid"])
            server_command = shown_command(env, server.port)
    counts = lua_counts(output)
    memory_before_reload = events.pop("memory_before_reload")
    report = {
        "command": command,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": {
            "server": server_command + "  (MODELS_DIR=<temporary copy of lib/models>)",
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "workers": args.workers,
            "phrases_file": str(args.phrases),
            "mix_per_100": {kind.name: {"share": kind.share, "expected": kind.expected, "what": kind.what} for kind in KINDS},
            "cpus": os.cpu_count(),
            "wrk": tool_version([binary, "-v"]),
        },
        "load": load_result("service", args.connections, wrk.parse(output), []),
        "sent": sum(counts["sent"].values()),
        "answered_by_status": answered_by_status(counts),
        "kinds": per_kind(counts),
        **events,
        "server_log": findings,
        "memory": {
            "start": memory_start,
            "before_reload": memory_before_reload,
            "end": memory_end,
            "growth_percent": growth(memory_start["total_mb"], memory_end["total_mb"]),
            "anon_growth_percent": growth(memory_start["total_anon_mb"], memory_end["total_anon_mb"]),
        },
    }
    report["assessment"] = assess(report)
    return report


def render(report: Report) -> str:
    """Lay the report out for a terminal: setup, events, answers, errors and what explains them, latency, memory."""
    settings, load, kill, reload = report["settings"], report["load"], report["kill"], report["reload"]
    verdict, errors = report["assessment"], report["load"]["socket_errors"]
    answered = sum(report["answered_by_status"].values())
    mix = ", ".join(f"{kind.share} {kind.name} ({kind.expected})" for kind in KINDS)
    outcome = "as expected" if verdict["within_expectation"] else "MORE THAN THE KILL EXPLAINS"
    lines = [
        f"server: {settings['server']}",
        f"load: wrk -t{settings['wrk_threads']} -c{settings['connections']} for {settings['duration_s']} s "
        f"(after {settings['warmup_s']} s warm-up) on {settings['cpus']} cpus; {settings['wrk']}",
        f"mix per 100 requests (expected status): {mix}",
        "",
        *event_lines(kill, kill["recovery"], reload, report["server_log"]),
        "",
        f"requests: {report['sent']:,} sent (soak.lua count), {answered:,} answered "
        f"(wrk: {load['requests']:,} requests, {load['requests_per_s']:,.0f} req/s); "
        f"{report['sent'] - answered:,} never answered",
        "answered by status: " + ", ".join(f"{status}: {n:,}" for status, n in report["answered_by_status"].items()),
        *kind_table(report["kinds"]),
        f"unexpected statuses: {verdict['unexpected_answers']:,}"
        + "".join(f"; {row['kind']}: {row['unexpected']}" for row in report["kinds"] if row["unexpected"]),
        "socket errors: " + ", ".join(f"{key} {n:,}" for key, n in errors.items()),
        f"  Socket errors and unexpected answers are expected only for requests in flight on the killed worker: it held "
        f"{kill['connections_held']} connections besides the request it was serving, so at most "
        f"{verdict['explained_by_kill_at_most']} are explained; observed "
        f"{verdict['socket_failures'] + verdict['unexpected_answers']:,} failures and "
        f"{verdict['timeouts']:,} timeouts -> {outcome}",
        "  (never answered = failed in flight + up to one request per connection still in flight when wrk stopped)",
        f"latency, all kinds together: p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms",
        *memory_lines(report["memory"]),
    ]
    return "\n".join(lines)


def event_lines(kill: dict[str, Any], recovery: dict[str, Any], reload: dict[str, Any], log: dict[str, Any]) -> list[str]:
    """Describe the kill and the reload, and what the watchers and the server log saw of each."""
    recovered = (
        f"recovered in {recovery['recovery_ms']} ms (full set of workers after {recovery['workers_full_ms']} ms, "
        "then a fresh /health answered 200)"
        if recovery["recovered"]
        else f"NOT recovered within {RECOVERY_TIMEOUT_S:.0f} s"
    )
    replaced = (
        f"workers {reload['workers_before']} -> {reload['workers_after']} in {reload['replaced_ms']} ms"
        if reload["workers_replaced"]
        else f"workers NOT all replaced (before {reload['workers_before']}, last seen {reload['workers_after']})"
    )
    versions = reload["sentiment_version_before"], reload["sentiment_version_after"]
    same = "same version: identical files" if versions[0] == versions[1] else "new version"
    reloaded = log["master_loaded_models_after_hup"]
    logged = "the parent logged the HUP and loaded the models again" if reloaded else "server log shows NO reload of the models"
    other = log["other_error_lines"]
    return [
        f"kill: SIGKILL worker {kill['pid']} at {kill['at_s']} s (held {kill['connections_held']} of the connections, "
        f"by worker {kill['connections_by_worker']}); {recovered}",
        f"reload: swapped models/sentiment, SIGHUP at {reload['at_s']} s; {replaced}; {logged}",
        f"  /models sentiment version {versions[0]} -> {versions[1]} ({same})",
        f"server log: {log['error_lines']} error lines, {log['error_lines_about_killed_worker']} about the killed worker"
        + (f"; others: {other}" if other else ""),
    ]


def kind_table(rows: list[dict[str, Any]]) -> list[str]:
    """Tabulate the answers of each kind against the status it should get."""
    lines = [f"  {'kind':<15} {'expected':>8} {'sent':>9} {'answered':>9} {'as expected':>11}  unexpected"]
    for row in rows:
        unexpected = ", ".join(f"{status}: {n}" for status, n in row["unexpected"].items()) or "-"
        lines.append(
            f"  {row['kind']:<15} {row['expected'] or '-':>8} {row['sent']:>9,} {row['answered']:>9,} "
            f"{row['as_expected']:>11,}  {unexpected}"
        )
    return lines


def memory_lines(memory: dict[str, Any]) -> list[str]:
    """Show PSS after warm-up, before the reload and at the end, with the growth over the run, total and anonymous."""
    start, before, end = memory["start"], memory["before_reload"], memory["end"]
    warn = "  (over 10%!)" if memory["growth_percent"] > 10 else ""
    return [
        f"memory (PSS, master + workers): start {start['total_mb']} MB {start['workers_mb']}, "
        f"before reload {before['total_mb']} MB {before['workers_mb']}, end {end['total_mb']} MB {end['workers_mb']} "
        f"-> growth {memory['growth_percent']:+}%{warn}",
        f"  anonymous part (private to the server, the stable measure): {start['total_anon_mb']} -> {end['total_anon_mb']} MB "
        f"({memory['anon_growth_percent']:+}%); the rest is library pages, whose PSS share moves with how many other",
        "  processes on the machine map the same files; the end reading is of workers forked at the reload",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak; print the summary and write it as JSON; exit 1 if more failed than the kill explains."""
    status, report = report_run(parse_args(argv), soak, render)
    if report is None:
        return status
    return 0 if report["assessment"]["within_expectation"] else 1


if __name__ == "__main__":
    sys.exit(main())
