"""The most expensive request the published limits allow, and what one client looping it does to everyone else.

    .venv/bin/python -m bench.worst_case             # about 4 minutes; behind nginx too if it is installed
    .venv/bin/python -m bench.worst_case --seconds 5 --repeat 1

Every request shape (one text or a batch, plain or ``explain=true`` with the most terms) is built at the largest size
the service's own ``x-limits`` allow, with texts made to cost the most per character (the model's shortest known
words; two-letter words it does not know; one word repeated, so every occurrence is listed; a dotted capital I, which
makes an explanation line the text up character by character), for every served model. Each is timed in process
(the WSGI app alone) and through the production server (2 workers). Then the most expensive one is sent in a loop by
one client while 4 clients send ordinary single-sentence GETs and /health is probed on fresh connections, as a
liveness probe does: first on the bare server, then behind nginx (deploy/nginx.conf).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import requests

from bench.common import PHRASES_HELP, RESULTS, BenchError, Report, note, report_run, sample, started
from tests.support.harness import Server
from tests.support.proxy import proxying
from tests.support.stall import probe_health

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as lib/server.py does; set before the app imports NumPy

TARGET_REQUEST_MS = 250.0
TARGET_HEALTH_MS = 1000.0
TARGET_ORDINARY_P99_MS = 300.0
PROBE_INTERVAL_S = 0.1
SEED = 1234
DOTTED = "İ"  # lower-cases to two characters, so an explanation maps each character back to the text
NEW_WORD_CHARS, NEW_WORDS = 30, 10_000  # 310,000 characters of words seen once: more than any request may carry
TWO_LETTERS = [first + second for first in "abcdefghijklmnopqrstuvwxyz" for second in "abcdefghijklmnopqrstuvwxyz0123456789"]


@dataclass(frozen=True)
class Shape:
    """A request at the largest size the limits allow: ``lengths`` are its texts' characters."""

    name: str
    lengths: tuple[int, ...]
    explain_terms: int | None  # None: a plain request
    batch: bool = True

    @property
    def chars(self) -> int:
        """Characters of all its texts together."""
        return sum(self.lengths)


def split(total: int, count: int) -> tuple[int, ...]:
    """``count`` lengths as equal as can be, adding up to ``total``."""
    return tuple(total // count + (1 if index < total % count else 0) for index in range(count))


def largest_shapes(limits: dict[str, int]) -> list[Shape]:
    """Each request shape at the most the limits allow: one text, a batch of the longest texts, a batch of the most."""
    longest = limits["max_query_chars"]
    scored = min(limits["max_request_chars"], limits["max_batch"] * longest)
    explained = min(scored, limits["max_explain_chars"], limits["max_explain_texts"] * longest)
    shapes = [
        Shape("single", (min(scored, longest),), None, batch=False),
        Shape("batch, longest texts", split(scored, math.ceil(scored / longest)), None),
        Shape("batch, most texts", split(scored, min(limits["max_batch"], scored)), None),
    ]
    for name, count in (
        ("single explain", 0),
        ("batch explain, longest texts", math.ceil(explained / longest)),
        ("batch explain, most texts", min(limits["max_explain_texts"], limits["max_batch"], explained)),
    ):
        lengths = split(explained, count) if count else (min(explained, longest),)
        terms = min(limits["max_explain_terms"], limits["max_explained_terms"] // len(lengths))
        shapes.append(Shape(name, lengths, terms, batch=count > 0))
    return shapes


def filled(words: Sequence[str], length: int, prefix: str = "") -> str:
    """A text of exactly ``length`` characters: ``prefix`` then ``words`` in turn, one space apart."""
    parts, size, index = [prefix] if prefix else [], len(prefix), 0
    while size < length:
        word = words[index % len(words)]
        parts.append(word)
        size += len(word) + (1 if len(parts) > 1 else 0)
        index += 1
    return " ".join(parts)[:length]


def contents(vocabulary: dict[str, int]) -> dict[str, tuple[list[str], str]]:
    """The costliest kinds of text per character for a model: (words, prefix) by name."""
    unigrams = sorted((term for term in vocabulary if " " not in term), key=lambda term: (len(term), term))
    shortest = [term for term in unigrams if len(term) <= len(unigrams[0]) + 1][:200] or unigrams[:200]
    random.Random(SEED).shuffle(shortest)
    unknown = [word for word in TWO_LETTERS if word not in vocabulary]
    random.Random(SEED).shuffle(unknown)
    return {
        "short known words": (shortest, ""),
        "unknown words": (unknown, ""),
        "one word repeated": (shortest[:1], ""),
        "dotted I, then known words": (shortest, DOTTED),
        # Each word new and longer than a character block remembers (lib.scoring.CACHED_WORD_CHARS): every one of its
        # n-grams looked up afresh, of the letters the model's words are made of.
        "long words, each new": (new_words(unigrams, NEW_WORD_CHARS, NEW_WORDS), ""),
    }


def new_words(unigrams: Sequence[str], length: int, count: int) -> list[str]:
    """``count`` distinct words of ``length`` letters drawn from the model's own words' letters (seeded)."""
    letters = sorted({letter for term in unigrams[:2000] for letter in term if letter.isalpha()}) or list("etaoinshr")
    chooser = random.Random(SEED)
    return ["".join(chooser.choice(letters) for _ in range(length)) for _ in range(count)]


def request_body(shape: Shape, words: Sequence[str], prefix: str = "") -> bytes:
    """The JSON body of ``shape``, its texts made of ``words`` after ``prefix``."""
    texts = [filled(words, length, prefix) for length in shape.lengths]
    body: dict[str, Any] = {"queries": texts} if shape.batch else {"query": texts[0]}
    if shape.explain_terms is not None:
        body.update(explain=True, explain_terms=shape.explain_terms)
    return orjson.dumps(body)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``th percentile (0-100) by the nearest-rank method: a value that was observed."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def timed(send: Callable[[], tuple[int, int]], repeat: int) -> tuple[float, int, int]:
    """Median milliseconds of ``repeat`` calls, and the last call's status and answer size."""
    durations, status, size = [], 0, 0
    for _ in range(repeat):
        started_at = time.perf_counter()
        status, size = send()
        durations.append(1000 * (time.perf_counter() - started_at))
    return statistics.median(durations), status, size


# --- the load: run in processes of their own, so no client waits on another's interpreter lock ------------------------


def loop_requests(url: str, path: str, body: bytes | None, until: float) -> list[tuple[float, int]]:
    """Send one request after another on one kept-alive connection until ``until`` (time.time()); (ms, status) each."""
    results = []
    headers = {"Content-Type": "application/json"}
    with requests.Session() as session:
        while time.time() < until:
            started_at = time.perf_counter()
            try:
                if body is None:
                    status = session.get(url + path, timeout=60).status_code
                else:
                    status = session.post(url + path, data=body, headers=headers, timeout=60).status_code
            except requests.RequestException:
                status = 0
            results.append((1000 * (time.perf_counter() - started_at), status))
    return results


def loop_ordinary(url: str, paths: Sequence[str], until: float) -> list[tuple[float, int]]:
    """GET single-sentence predictions in turn on one kept-alive connection until ``until``; (ms, status) each."""
    results = []
    with requests.Session() as session:
        index = 0
        while time.time() < until:
            started_at = time.perf_counter()
            try:
                status = session.get(url + paths[index % len(paths)], timeout=60).status_code
            except requests.RequestException:
                status = 0
            results.append((1000 * (time.perf_counter() - started_at), status))
            index += 1
    return results


def probe_until(url: str, until: float, timeout: float) -> list[float | None]:
    """Probe /health on a fresh connection every PROBE_INTERVAL_S until ``until``: seconds each, None when unanswered."""
    latencies = []
    while time.time() < until:
        latencies.append(probe_health(url, timeout))
        time.sleep(PROBE_INTERVAL_S)
    return latencies


def under_load(url: str, expensive: tuple[str, bytes] | None, paths: Sequence[str], args: argparse.Namespace) -> Report:
    """Run 4 ordinary clients (and the looping expensive one, if given) for ``args.seconds``, probing /health."""
    until = time.time() + 1.0 + args.seconds  # a second for the processes to start
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=args.clients + 2, mp_context=context) as pool:
        ordinary = [pool.submit(loop_ordinary, url, paths[index :: args.clients], until) for index in range(args.clients)]
        looping = pool.submit(loop_requests, url, expensive[0], expensive[1], until) if expensive else None
        probes = pool.submit(probe_until, url, until, args.probe_timeout).result()
        answers = [result for future in ordinary for result in future.result()]
        heavy = looping.result() if looping else []
    return load_summary(answers, heavy, probes, args.seconds, args.probe_timeout)


def load_summary(
    answers: list[tuple[float, int]], heavy: list[tuple[float, int]], probes: list[float | None], seconds: float, timeout: float
) -> Report:
    """What the clients and the probe saw: counts, ordinary p50 and p99, the expensive request's times, /health's worst."""
    answered = [ms for ms, status in answers if status == 200]
    health = [1000 * latency for latency in probes if latency is not None]
    unanswered = len(probes) - len(health)
    return {
        "seconds": seconds,
        "ordinary_answers": len(answered),
        "ordinary_failed": len(answers) - len(answered),
        "ordinary_p50_ms": round(percentile(answered, 50), 1),
        "ordinary_p99_ms": round(percentile(answered, 99), 1),
        "expensive_answers": sum(status == 200 for _, status in heavy),
        "expensive_failed": sum(status != 200 for _, status in heavy),
        "expensive_p50_ms": round(percentile([ms for ms, _ in heavy], 50), 1) if heavy else None,
        "expensive_max_ms": round(max(ms for ms, _ in heavy), 1) if heavy else None,
        "health_probes": len(probes),
        "health_unanswered": unanswered,
        "health_worst_ms": round(1000 * timeout if unanswered else max(health, default=math.nan), 1),
    }


# --- measuring --------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--phrases", type=Path, default=None, help=PHRASES_HELP)
    parser.add_argument("--repeat", type=int, default=3, help="times each request is sent (its median is shown)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each load runs")
    parser.add_argument("--clients", type=int, default=4, help="ordinary clients beside the one looping the worst request")
    parser.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY of the production server")
    parser.add_argument("--probe-timeout", type=float, default=10.0, help="longest a /health probe waits")
    parser.add_argument("--no-nginx", action="store_true", help="measure the bare server only")
    parser.add_argument("--output", type=Path, default=RESULTS / "worst_case.json", help="where the JSON report goes")
    return parser.parse_args(argv)


def requests_by_shape(service: Any) -> list[dict[str, Any]]:
    """Every largest shape, for every served model and every costly kind of text: its row and its request."""
    rows = []
    for name, served in service.extensions["models"].models.items():
        # Words from the first block (the build puts word n-grams first), at the model's own limits.
        for kind, (words, prefix) in contents(served.model.vectorizers[0].vocabulary_).items():
            for shape in largest_shapes(served.limits):
                row = {"model": name, "shape": shape.name, "text": kind, "texts": len(shape.lengths), "chars": shape.chars}
                rows.append({"row": row, "path": served.endpoint, "body": request_body(shape, words, prefix)})
    return rows


def measure_in_process(service: Any, cases: list[dict[str, Any]], repeat: int) -> None:
    """Time each request through the WSGI app alone (Flask's test client); fail on any answer but 200."""
    client = service.test_client()
    for case in cases:

        def send(case: dict[str, Any] = case) -> tuple[int, int]:
            answer = client.post(case["path"], data=case["body"], content_type="application/json")
            return answer.status_code, len(answer.data)

        milliseconds, status, size = timed(send, repeat)
        if status != 200:
            raise BenchError(f"{case['row']} answered {status}: the shape is not within the limits")
        case["row"].update(body_bytes=len(case["body"]), answer_bytes=size, in_process_ms=round(milliseconds, 1))


def measure_live(server: Server, cases: list[dict[str, Any]], repeat: int) -> None:
    """Time each request through the production server, on one kept-alive connection."""
    with requests.Session() as session:
        for case in cases:

            def send(case: dict[str, Any] = case) -> tuple[int, int]:
                headers = {"Content-Type": "application/json"}
                answer = session.post(server.url + case["path"], data=case["body"], headers=headers, timeout=60)
                return answer.status_code, len(answer.content)

            milliseconds, status, _ = timed(send, repeat)
            if status != 200:
                raise BenchError(f"{case['row']} answered {status} from the production server")
            case["row"]["live_ms"] = round(milliseconds, 1)


def benchmark(args: argparse.Namespace, command: str, sentences: list[str]) -> Report:
    """Time every largest shape, then load the servers with the most expensive one looping."""
    from app import create_app  # imported here, after OPENBLAS_NUM_THREADS is set
    from lib.limits import limits

    service = create_app({"ACCESS_LOG": ""})
    cases = requests_by_shape(service)
    note(f"{len(cases)} requests at the limits, each sent {args.repeat} times in process")
    measure_in_process(service, cases, args.repeat)
    paths = ["/?query=" + urllib.parse.quote(sentence) for sentence in sample(sentences, 400)]
    report: Report = {"command": command, "limits": limits(service.config["SETTINGS"]), "workers": args.workers, "load": []}
    env = {"WEB_CONCURRENCY": str(args.workers)}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(started("worst-case", env, 60, workers=args.workers))
        note("the same requests through the production server")
        measure_live(server, cases, args.repeat)
        worst = max(cases, key=lambda case: case["row"]["live_ms"])
        report["shapes"] = [case["row"] for case in cases]
        report["worst"] = worst["row"]
        fronts = [("bare server", server)]
        if args.no_nginx:
            pass
        elif shutil.which("nginx") is None:
            note("nginx is not installed (apt-get install -y nginx): measuring the bare server only")
        else:
            proxy = proxying([server.port], RESULTS / "logs", name="worst-case-nginx")
            fronts.append(("behind nginx", stack.enter_context(proxy)))
        for front, target in fronts:
            for looping in (False, True):
                what = "with the worst request looping" if looping else "ordinary clients alone"
                note(f"{front}: {args.clients} ordinary clients, {what}, {args.seconds:g} s")
                expensive = (worst["path"], worst["body"]) if looping else None
                report["load"].append({"front": front, "looping": looping, **under_load(target.url, expensive, paths, args)})
    return report


# --- the summary ------------------------------------------------------------------------------------------------------


def verdict(value: float | None, target: float) -> str:
    """Met or missed, with the target."""
    if value is None or math.isnan(value):
        return "not measured"
    return f"{'met' if value <= target else 'MISSED'} (<= {target:g} ms)"


def render(report: Report) -> str:
    """The shapes table, the worst request, and the load lines, with the targets."""
    limits = ", ".join(f"{key}={value:,}" for key, value in report["limits"].items())
    lines = [
        f"limits: {limits}",
        "",
        f"{'model':<10} {'shape':<28} {'text':<27} {'texts':>5} {'chars':>8} "
        f"{'body KB':>8} {'answer KB':>9} {'in-process':>10} {'server':>9}",
    ]
    for row in report["shapes"]:
        lines.append(
            f"{row['model']:<10} {row['shape']:<28} {row['text']:<27} {row['texts']:>5} {row['chars']:>8,} "
            f"{row['body_bytes'] / 1000:>8,.0f} {row['answer_bytes'] / 1000:>9,.0f} {row['in_process_ms']:>7.1f} ms "
            f"{row['live_ms']:>6.1f} ms"
        )
    worst = report["worst"]
    slowest = max(row["in_process_ms"] for row in report["shapes"])
    lines += [
        "",
        f"most expensive through the server: {worst['model']}, {worst['shape']}, {worst['text']}: {worst['live_ms']:.1f} ms "
        f"(in process {worst['in_process_ms']:.1f} ms); answer {worst['answer_bytes'] / 1000:,.0f} KB",
        f"slowest in process: {slowest:.1f} ms, {verdict(slowest, TARGET_REQUEST_MS)}; "
        f"through the server: {worst['live_ms']:.1f} ms, {verdict(worst['live_ms'], TARGET_REQUEST_MS)}",
        f"largest answer: {max(row['answer_bytes'] for row in report['shapes']) / 1e6:.2f} MB",
        "",
        f"load: {report['workers']} workers; /health probed on fresh connections every {PROBE_INTERVAL_S:g} s",
    ]
    for run in report["load"]:
        what = "ordinary + worst looping" if run["looping"] else "ordinary clients alone"
        unanswered = f" ({run['health_unanswered']} unanswered)" if run["health_unanswered"] else ""
        health = f"{run['health_worst_ms']:.0f} ms{unanswered}"
        line = (
            f"{run['front']:<13} {what:<25} ordinary {run['ordinary_answers']:>6,} answers ({run['ordinary_failed']} failed), "
            f"p50 {run['ordinary_p50_ms']:.1f} ms, p99 {run['ordinary_p99_ms']:.1f} ms; /health worst {health}"
        )
        if run["looping"]:
            line += (
                f"; worst request {run['expensive_answers']} times, p50 {run['expensive_p50_ms']:.0f} ms, "
                f"max {run['expensive_max_ms']:.0f} ms"
            )
        lines.append(line)
        if run["looping"]:
            lines.append(
                f"{'':<13} {'':<25} /health {verdict(run['health_worst_ms'], TARGET_HEALTH_MS)}, "
                f"ordinary p99 {verdict(run['ordinary_p99_ms'], TARGET_ORDINARY_P99_MS)}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the summary and write the JSON report."""
    args = parse_args(argv)
    status, _ = report_run(args, benchmark, render)
    return status


if __name__ == "__main__":
    sys.exit(main())
