"""File scoring's speed on the whole Kaggle test.tsv: in process, through the live production server, and on Dask.

    .venv/bin/python -m bench.score [--phrases PATH] [--model ratings] [--rounds 3]

Each way goes from the file to a scored DataFrame in memory (reading included, writing not), with the
models already loaded: in process (``score.score_frame``, one thread), through the production server
(2 workers) with ``client.SentimentClient`` (one client, batches of the server's MAX_BATCH in turn),
and on a ``distributed.LocalCluster`` of 1 and 2 worker processes (``dd.read_csv`` + ``map_partitions``).
After one warm-up run of each (every process loads the models), the ways take turns for ``--rounds``
rounds in an order that rotates, since these machines drift over minutes; each way's phrases/s is the
median over rounds and its ratio to in process the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

import score
from bench.common import PHRASES_HELP, BenchError, note, phrases_path, started
from client import SentimentClient

PARTITION_BYTES = "1MB"  # test.tsv (8 MB) in 8 partitions, so 2 workers have several each


def timed(run: Callable[[], pd.DataFrame], rows: int) -> float:
    """Seconds for one run, checking that it scored every row."""
    started_at = time.perf_counter()
    scored = run()
    seconds = time.perf_counter() - started_at
    if len(scored) != rows:
        raise BenchError(f"scored {len(scored)} rows of {rows}")
    return seconds


def in_process(path: Path, model: str) -> Callable[[], pd.DataFrame]:
    """score.py's own path without a server."""
    return lambda: score.score_frame(pd.read_csv(path, **score.read_options(path)), model=model)


def through_service(path: Path, model: str, client: SentimentClient) -> Callable[[], pd.DataFrame]:
    """The client against the live server, as ``score.py --url`` calls it."""

    def run() -> pd.DataFrame:
        frame = pd.read_csv(path, **score.read_options(path))
        return pd.concat([frame, client.score(frame["Phrase"], model)], axis=1)

    return run


def on_dask(path: Path, model: str, cluster: Any, workers: list[str]) -> Callable[[], pd.DataFrame]:
    """Dask's map_partitions over partitions the workers read themselves, on the given workers only."""
    import dask.dataframe as dd

    def run() -> pd.DataFrame:
        phrases = dd.read_csv(path, blocksize=PARTITION_BYTES, **score.read_options(path))
        return cluster.compute(phrases.map_partitions(score.score_frame, model=model), workers=workers).result()

    return run


def measure(path: Path, model: str, rounds: int) -> tuple[int, dict[str, list[float]]]:
    """Phrases/s of each way in each round; the ways take turns, in an order that rotates each round."""
    from distributed import Client, LocalCluster

    rows = len(pd.read_csv(path, **score.read_options(path)))
    with (
        started("score-server", {"WEB_CONCURRENCY": "2"}, timeout=60, workers=2) as server,
        SentimentClient(server.url) as client,
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as dask,
    ):
        addresses = sorted(dask.scheduler_info()["workers"])
        ways = {
            "in process": in_process(path, model),
            "production server, one client": through_service(path, model, client),
            "Dask, 1 worker": on_dask(path, model, dask, addresses[:1]),
            "Dask, 2 workers": on_dask(path, model, dask, addresses),
        }
        for run in ways.values():  # warm-up: every process loads the models
            timed(run, rows)
        rates: dict[str, list[float]] = {way: [] for way in ways}
        for round_ in range(rounds):
            names = list(ways)
            for way in names[round_ % len(names) :] + names[: round_ % len(names)]:
                rates[way].append(rows / timed(ways[way], rows))
            note(f"round {round_ + 1} of {rounds}: " + ", ".join(f"{way} {rate[-1]:,.0f}/s" for way, rate in rates.items()))
    return rows, rates


def main(argv: list[str] | None = None) -> int:
    """Measure and print phrases/s for each way, with its ratio to in process."""
    parser = argparse.ArgumentParser(description="Phrases/s of file scoring on the Kaggle test.tsv, each way.")
    parser.add_argument("--phrases", type=Path, help=PHRASES_HELP)
    parser.add_argument("--model", default="ratings", help="the model to score with (default: ratings, as --kaggle)")
    parser.add_argument("--rounds", type=int, default=3, help="measured runs of each way, after one warm-up (default: 3)")
    args = parser.parse_args(argv)
    try:
        path = phrases_path(args.phrases)
        rows, rates = measure(path, args.model, args.rounds)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{rows:,} phrases of {path.name}, model {args.model}, {args.rounds} rounds (medians; ratio: median of per-round ratios):"
    )
    for way, per_round in rates.items():
        ratio = statistics.median(rate / base for rate, base in zip(per_round, rates["in process"], strict=True))
        print(f"  {way:32} {statistics.median(per_round):>9,.0f} phrases/s   {ratio:.2f}x in process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
