"""How fast a linear model of word and character n-grams scores, in process, beside the committed naive Bayes models.

    .venv/bin/python -m bench.linear_speed [--rows 156060]
    .venv/bin/python -m bench.linear_speed --models lib/models     # the saved NAME-logreg folders, not a fit

Builds logistic regressions over word 1-2-grams (at most 50,000) and char_wb 2-5-grams (at most 100,000; the
Kaggle phrases have 71,069) from the Kaggle training file (where ``lib.paths.kaggle_file`` finds it),
for the two labels of ``sentiment`` and the five of ``ratings``, and prints per model: the median microseconds of
``score_one`` over whole sentences, rounds interleaved with the committed naive Bayes models (the same sentences,
so a busy moment hits all alike), and the texts per second of ``score_texts`` on batches of 20,000. With
``--models``, the linear models are the saved ``sentiment-logreg`` and ``ratings-logreg`` of that folder instead.
Each linear model's last line says whether it meets the targets: one text in at most 100 us and at most twice naive
Bayes' time, batches of at least 20,000 texts a second.
``--cpu-time`` times each round in the thread's CPU time: on a machine shared with other work, what the scoring costs
rather than how long it waited for a core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as lib/server.py does; set before NumPy is imported

from lib.paths import MODELS_DIR, kaggle_file

if TYPE_CHECKING:
    from model import NLPModel

BLOCKS = (
    {"ngram_range": (1, 2), "sublinear_tf": True, "max_features": 50_000},
    {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True, "max_features": 100_000},
)
BATCH = 20_000
ROUNDS = 15
#: What a linear model must reach beside naive Bayes: one text in at most this many microseconds and this many times
#: naive Bayes' time, and batches at this many texts a second at least.
MOST_US, MOST_RATIO, LEAST_BATCH = 100.0, 2.0, 20_000


def median_us_interleaved(
    scorers: Sequence[NLPModel], texts: Sequence[str], rounds: int = ROUNDS, clock: Callable[[], float] = time.perf_counter
) -> list[float]:
    """Median over rounds of each scorer's mean microseconds per text, the rounds interleaved."""
    samples: list[list[float]] = [[] for _ in scorers]
    for scorer in scorers:  # warm: caches filled, code paths taken once
        for text in texts:
            scorer.score_one(text)
    for _ in range(rounds):
        for index, scorer in enumerate(scorers):
            score_one = scorer.score_one
            started = clock()
            for text in texts:
                score_one(text)
            samples[index].append((clock() - started) / len(texts) * 1e6)
    return [statistics.median(times) for times in samples]


def texts_per_second(
    model: NLPModel, texts: Sequence[str], rounds: int = 3, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Best of a few rounds of ``score_texts`` on the whole batch, in texts per second."""
    best = float("inf")
    for _ in range(rounds):
        started = clock()
        model.score_texts(texts)
        best = min(best, clock() - started)
    return len(texts) / best


def verdict(one_us: float, ratio: float, batch_per_second: float) -> str:
    """Say whether a linear model meets the speed targets, naming each one it misses."""
    missed = [
        f"{name} {value:,.1f} (target {target})"
        for name, value, target, met in (
            ("one text us", one_us, f"<= {MOST_US:g}", one_us <= MOST_US),
            ("ratio to naive Bayes", ratio, f"<= {MOST_RATIO:g}", ratio <= MOST_RATIO),
            ("batch texts/s", batch_per_second, f">= {LEAST_BATCH:,}", batch_per_second >= LEAST_BATCH),
        )
        if not met
    ]
    return "targets met" if not missed else "targets missed: " + "; ".join(missed)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the linear models, time them beside naive Bayes, print one table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="train on this many phrases (default: all)")
    parser.add_argument("--models", type=Path, default=None, help="load NAME-logreg from this folder instead of fitting")
    parser.add_argument("--cpu-time", action="store_true", help="time rounds in thread CPU time, not wall-clock time")
    args = parser.parse_args(argv)
    clock = time.thread_time if args.cpu_time else time.perf_counter
    train = kaggle_file("train.tsv")
    if not train.is_file():
        print(f"skipped: Kaggle train.tsv not found at {train}: put it in lib/data/ or set KAGGLE_TRAIN", file=sys.stderr)
        return 0
    import util
    from lib.specs import MODEL_SPECS, training_rows
    from model import NLPModel

    phrases = util.load_phrases(train)
    if args.rows:
        phrases = phrases.head(args.rows)
    sentences = util.whole_sentences(phrases)["Phrase"].sample(1000, random_state=0).tolist()
    batch = (phrases["Phrase"].tolist() * 2)[:BATCH]
    print(f"{'model':<34} {'features':>9} {'one text (median us)':>21} {'batch of 20,000 (texts/s)':>26}")
    for name, spec in MODEL_SPECS.items():
        if spec.family != "naive_bayes":  # each naive Bayes model is timed beside its NAME-logreg
            continue
        started = time.perf_counter()
        if args.models:
            linear = NLPModel.load(args.models / f"{name}-logreg")
        else:
            texts, y = training_rows(spec, phrases)
            linear = NLPModel(spec.labels, family="linear", blocks=BLOCKS, classifier_params={"C": 4.0, "max_iter": 300})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # lbfgs may stop short of its tolerance: the speed is the same
                linear.vectorizer_fit(texts).train(linear.vectorizer_transform(texts), y)
        built = time.perf_counter() - started
        naive_bayes = NLPModel.load(MODELS_DIR / name)
        features = sum(len(vectorizer.vocabulary_) for vectorizer in linear.vectorizers)
        linear_us, naive_us = median_us_interleaved([linear, naive_bayes], sentences, clock=clock)
        naive_features = len(naive_bayes.vectorizer.vocabulary_)
        rows = [
            (f"{name}: logistic, words + char_wb", features, linear_us, texts_per_second(linear, batch, clock=clock)),
            (f"{name}: committed naive Bayes", naive_features, naive_us, texts_per_second(naive_bayes, batch, clock=clock)),
        ]
        for label, size, one, many in rows:
            print(f"{label:<34} {size:>9,} {one:>21.1f} {many:>26,.0f}")
        made = "loaded" if args.models else "built"
        print(f"  linear / naive Bayes, one text: {linear_us / naive_us:.2f}x (the linear model {made} in {built:.0f}s)")
        print(f"  {verdict(linear_us, linear_us / naive_us, rows[0][3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
