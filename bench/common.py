"""What every bench command shares: the Kaggle sentences, progress notes, and running a measurement to a report."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import shlex
import signal
import subprocess
import sys
from argparse import Namespace
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.wrk import WrkError, WrkResult
from lib.paths import KAGGLE_URL, kaggle_file
from tests.support.harness import (
    ROOT,
    Server,
    ServerError,
    production_command,
    server_env,
    serving,
    wait_for_workers,
)

RESULTS = ROOT / "bench" / "results"
PHRASES_HELP = "Kaggle test.tsv to take sentences from (default: $KAGGLE_TEST, else lib/data/test.tsv, else the shared copy)"
SHOWN_ENV = ("HOST", "PORT", "ACCESS_LOG", "WEB_CONCURRENCY")
SEED = 1234  # fixed, so every run sends the same sentences in the same order

Report = dict[str, Any]


class BenchError(Exception):
    """The benchmark cannot go on; the message says why and what to do."""


def note(message: str) -> None:
    """Show progress on stderr, so stdout holds only the summary."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def phrases_path(option: Path | None) -> Path:
    """The Kaggle test.tsv: --phrases, else where every command looks (lib.paths); fail in one line if missing."""
    path = option or kaggle_file("test.tsv")
    if not path.is_file():
        raise BenchError(
            f"Kaggle test.tsv not found at {path}: put it in lib/data/, pass --phrases PATH or set KAGGLE_TEST; "
            f"it is test.tsv of Kaggle's 'Sentiment Analysis on Movie Reviews' ({KAGGLE_URL})"
        )
    return path


def read_sentences(path: Path) -> list[str]:
    """Whole sentences (the longest phrase of each SentenceId), since whole sentences are what users send."""
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
    """``count`` sentences in a fixed pseudo-random order, repeated only when there are too few."""
    shuffled = random.Random(SEED).sample(sentences, len(sentences))
    return [shuffled[index % len(shuffled)] for index in range(count)]


def tool_version(command: Sequence[str]) -> str:
    """A tool's first line of version output, for the record of what was measured."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].split(" Copyright")[0].strip() if lines else "unknown"


def shown_command(env: dict[str, str], port: int) -> str:
    """The production command with the environment it depends on, ready to paste."""
    return pasteable(production_command(), env, port)


def pasteable(command: Sequence[str], env: dict[str, str], port: int) -> str:
    """A server's command with the environment it depends on, ready to paste into a shell."""
    full = server_env(env, port)
    prefix = [f"{key}={shlex.quote(full[key])}" for key in SHOWN_ENV if key in full]
    return " ".join([*prefix, shlex.join([os.path.relpath(command[0], ROOT), *command[1:]])])


@contextlib.contextmanager
def started(name: str, env: dict[str, str], timeout: float, workers: int = 0) -> Iterator[Server]:
    """Run the production command until /health answers, with ``workers`` up before load; always stop it."""
    with launched(name, production_command(), env, timeout, "/health", workers) as server:
        yield server


@contextlib.contextmanager
def launched(
    name: str,
    command: Sequence[str],
    env: dict[str, str],
    timeout: float,
    ready_path: str = "/health",
    workers: int = 0,
    log_dir: Path = RESULTS / "logs",
) -> Iterator[Server]:
    """Run any server command until ``ready_path`` answers, with ``workers`` up before load; always stop it."""
    with serving(list(command), env, log_dir, name=name, ready_path=ready_path, timeout=timeout) as server:
        logs = os.path.relpath(log_dir / name, ROOT)
        note(f"started {name}: {pasteable(command, env, server.port)}  (logs: {logs}.*.log)")
        if workers:
            wait_for_workers(server, workers, timeout)
        yield server


def load_result(target: str, connections: int, result: WrkResult, spread: list[int]) -> dict[str, Any]:
    """One connections level's numbers, as the summary and the JSON report show them."""
    return {
        "target": target,
        "connections": connections,
        "requests": result.requests,
        "requests_per_s": result.requests_per_s,
        "p50_ms": result.percentile(50),
        "p99_ms": result.percentile(99),
        "socket_errors": result.socket_errors,
        # wrk counts statuses above 399 here; the service and the ceiling never redirect, so this is every non-2xx.
        "non_2xx": result.non_2xx_3xx,
        "errors": result.errors,
        "connections_per_worker": spread,
    }


def growth(start: float, end: float) -> float:
    """Percentage change from ``start`` to ``end``."""
    return round(100 * (end - start) / start, 1)


def report_run(
    args: Namespace, produce: Callable[[Namespace, str, list[str]], Report], render: Callable[[Report], str]
) -> tuple[int, Report | None]:
    """Run a measurement, print its summary and write it as JSON, or say in one line why not; return (status, report)."""
    try:
        args.phrases = phrases_path(args.phrases)
        sentences = read_sentences(args.phrases)
        spec = getattr(sys.modules["__main__"], "__spec__", None)  # python -m bench.<name>: show it so
        program = ["-m", spec.name] if spec else sys.argv[:1]
        command = shlex.join([os.path.relpath(sys.executable, Path.cwd()), *program, *sys.argv[1:]])
        print(f"command: {command}", flush=True)
        # SIGTERM becomes SystemExit, so the finally blocks that stop the servers still run.
        signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))
        report = produce(args, command, sentences)
    except (BenchError, ServerError, WrkError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2, None
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped, no results written", file=sys.stderr)
        return 130, None
    print(render(report))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    shown = os.path.relpath(args.output) if args.output.resolve().is_relative_to(Path.cwd()) else args.output
    print(f"\nJSON: {shown}  logs and raw wrk output: {os.path.relpath(RESULTS / 'logs')}")
    return 0, report
