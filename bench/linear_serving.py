"""What serving the linear models costs beside naive Bayes: one request's latency through the server, and memory.

    .venv/bin/python -m bench.linear_serving                          # the models in lib/models
    .venv/bin/python -m bench.linear_serving --models /path/to/models --rounds 5

Starts the production server (2 workers) over the models folder and sends single-sentence GETs from the Kaggle
test.tsv, one at a time on one kept-alive connection, each naive Bayes model and its linear counterpart (``NAME`` and
``NAME-logreg``) in turn for every sentence, so a busy moment hits both alike: the p50 of each and their ratio. Then
the server's PSS with 2 workers, after GETs to every model, with the naive Bayes models alone and with every model:
what the linear models add.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import requests

from bench.common import PHRASES_HELP, RESULTS, BenchError, Report, note, report_run, sample, started
from lib.paths import MODELS_DIR
from model import MANIFEST
from tests.support.harness import memory_snapshot

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as lib/server.py does; set before the app imports NumPy

TARGET_RATIO = 1.5
LINEAR_SUFFIX = "-logreg"
WARM_GETS = 400


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--models", type=Path, default=MODELS_DIR, help="models folder: naive Bayes NAME beside NAME-logreg")
    parser.add_argument("--phrases", type=Path, default=None, help=PHRASES_HELP)
    parser.add_argument("--sentences", type=int, default=300, help="sentences sent per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the sentences")
    parser.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY of the production server")
    parser.add_argument("--output", type=Path, default=RESULTS / "linear_serving.json", help="where the JSON report goes")
    return parser.parse_args(argv)


def endpoints(models: Path) -> dict[str, str]:
    """Each model's path in the folder, from its manifest (as the service reads it), by name."""
    served = {}
    for folder in sorted(models.iterdir()):
        manifest = folder / MANIFEST
        if folder.name.startswith(".") or not manifest.is_file():
            continue
        data = json.loads(manifest.read_text())
        served[data["name"]] = data.get("endpoint", f"/{data['name']}")
    return served


def pairs(served: dict[str, str]) -> list[tuple[str, str]]:
    """(naive Bayes, linear) model names served side by side: NAME and NAME-logreg."""
    found = [(name, name + LINEAR_SUFFIX) for name in served if name + LINEAR_SUFFIX in served]
    if not found:
        raise BenchError(f"no NAME beside NAME{LINEAR_SUFFIX} among the served models ({', '.join(served)})")
    return found


def interleaved_p50(url: str, paths: dict[str, str], sentences: list[str], rounds: int) -> dict[str, float]:
    """Milliseconds per GET of each model, its p50 over every sentence and round, the models in turn per sentence."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    with requests.Session() as session:
        for _ in range(rounds):
            for sentence in sentences:
                query = "?query=" + urllib.parse.quote(sentence)
                for name, path in paths.items():
                    started_at = time.perf_counter()
                    answer = session.get(url + path + query, timeout=30)
                    times[name].append(1000 * (time.perf_counter() - started_at))
                    if answer.status_code != 200:
                        raise BenchError(f"{path} answered {answer.status_code}")
    return {name: statistics.median(values) for name, values in times.items()}


def warmed_pss(models: Path, served: dict[str, str], sentences: list[str], workers: int) -> dict[str, float]:
    """PSS of the production server over ``models`` after GETs to every model on fresh connections (every worker)."""
    env = {"MODELS_DIR": str(models), "WEB_CONCURRENCY": str(workers), "ACCESS_LOG": ""}
    with started(f"linear-serving-memory-{len(served)}", env, 120, workers=workers) as server:
        for index in range(WARM_GETS):
            path = list(served.values())[index % len(served)]
            query = urllib.parse.quote(sentences[index % len(sentences)])
            requests.get(f"{server.url}{path}?query={query}", headers={"Connection": "close"}, timeout=30)
        return memory_snapshot(server.process.pid)


def benchmark(args: argparse.Namespace, command: str, sentences: list[str]) -> Report:
    """Time the pairs through one server, then take the PSS with naive Bayes alone and with every model."""
    served = endpoints(args.models)
    chosen = sample(sentences, args.sentences)
    report: Report = {"command": command, "models": str(args.models), "workers": args.workers, "pairs": []}
    env = {"MODELS_DIR": str(args.models), "WEB_CONCURRENCY": str(args.workers), "ACCESS_LOG": ""}
    with started("linear-serving", env, 120, workers=args.workers) as server:
        for naive_bayes, linear in pairs(served):
            note(f"{naive_bayes} and {linear}: {args.rounds} rounds of {len(chosen)} GETs each, interleaved")
            p50 = interleaved_p50(server.url, {naive_bayes: served[naive_bayes], linear: served[linear]}, chosen, args.rounds)
            report["pairs"].append({"naive_bayes": naive_bayes, "linear": linear, "p50_ms": p50})
    naive_only = {name: path for name, path in served.items() if not name.endswith(LINEAR_SUFFIX)}
    with tempfile.TemporaryDirectory() as folder:
        for name in naive_only:
            shutil.copytree(args.models / name, Path(folder) / name)
        note("memory with the naive Bayes models alone")
        before = warmed_pss(Path(folder), naive_only, chosen, args.workers)
    note("memory with every model")
    after = warmed_pss(args.models, served, chosen, args.workers)
    report["memory"] = {"naive_bayes_only": before, "every_model": after}
    return report


def render(report: Report) -> str:
    """One line per pair (p50s and their ratio, with the target), then the memory the linear models add."""
    lines = [f"production server, {report['workers']} workers, models in {report['models']}", ""]
    for pair in report["pairs"]:
        naive, linear = pair["p50_ms"][pair["naive_bayes"]], pair["p50_ms"][pair["linear"]]
        ratio = linear / naive
        verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
        lines.append(
            f"single GET p50: {pair['linear']} {linear:.2f} ms, {pair['naive_bayes']} {naive:.2f} ms: {ratio:.2f}x "
            f"({verdict}, <= {TARGET_RATIO:g}x)"
        )
    before, after = report["memory"]["naive_bayes_only"], report["memory"]["every_model"]
    lines += [
        "",
        f"PSS, naive Bayes alone: {before['total_mb']} MB (anonymous {before['total_anon_mb']} MB)",
        f"PSS, every model:       {after['total_mb']} MB (anonymous {after['total_anon_mb']} MB)",
        f"the linear models add {after['total_mb'] - before['total_mb']:.1f} MB "
        f"({'met' if after['total_mb'] - before['total_mb'] <= 100 else 'MISSED'}, <= 100 MB)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the summary and write the JSON report."""
    args = parse_args(argv)
    status, _ = report_run(args, benchmark, render)
    return status


if __name__ == "__main__":
    sys.exit(main())
