"""Naive Bayes against the linear family on the same folds: grouped cross-validation over all sentences, paired.

    .venv/bin/python -m bench.accuracy [--data lib/data/train.tsv] [--folds 5]

For the binary pair (``sentiment``, ``sentiment-logreg``) and the five-class pair (``ratings``, ``ratings-logreg``),
the sentences are split into folds (GroupKFold by SentenceId: a sentence's phrases are all in one fold). Each model
is fitted from its committed spec on the other folds' phrases as the build fits its validated model (calibrated from a
sibling where the spec calibrates) and scores the held-out fold's whole sentences. The table gives per model the mean
(sd) over folds of accuracy, macro-F1, ECE and Brier, then the paired difference (linear minus naive Bayes) over every
held-out sentence: its 95% bootstrap interval, resampling sentences, and McNemar's exact p-value on the sentences
exactly one of the two got right. Accuracy varies with the data, not the machine: the figures hold anywhere.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from sklearn.model_selection import GroupKFold

import build_model
import util
from lib.corpus import Corpus
from lib.evaluation import bootstrap_changes, score
from lib.paths import kaggle_file
from lib.specs import MODEL_SPECS, evaluation_rows

PAIRS = {"binary": ("sentiment", "sentiment-logreg"), "five-class": ("ratings", "ratings-logreg")}
METRICS = ("accuracy", "macro_f1", "ece", "brier")
SEED = 0


@dataclass
class Scored:
    """One model's held-out whole sentences over every fold: labels, probabilities, and each fold's scores."""

    y: list[np.ndarray] = field(default_factory=list)
    probabilities: list[np.ndarray] = field(default_factory=list)
    folds: list[dict[str, float]] = field(default_factory=list)

    def add(self, y: np.ndarray, probabilities: np.ndarray) -> None:
        """Keep one fold's sentences and its scores."""
        self.y.append(y)
        self.probabilities.append(probabilities)
        scores = score(y, probabilities, probabilities.shape[1])
        self.folds.append({metric: scores[metric] for metric in METRICS})

    def means(self) -> dict[str, tuple[float, float]]:
        """Each metric's mean and standard deviation over the folds."""
        return {metric: (float(np.mean(values)), float(np.std(values))) for metric, values in self.columns().items()}

    def columns(self) -> dict[str, list[float]]:
        """Each metric's value per fold."""
        return {metric: [fold[metric] for fold in self.folds] for metric in METRICS}


def mcnemar_p(first_right: np.ndarray, second_right: np.ndarray) -> tuple[float, int, int]:
    """McNemar's exact two-sided p-value for paired right/wrong answers; also the two discordant counts.

    Only the texts exactly one model got right count: under the null hypothesis each is the first's or the
    second's with probability 1/2, so the smaller count is binomial.
    """
    only_first = int(np.sum(first_right & ~second_right))
    only_second = int(np.sum(~first_right & second_right))
    if only_first + only_second == 0:
        return 1.0, 0, 0
    return float(binomtest(only_first, only_first + only_second, 0.5).pvalue), only_first, only_second


def cross_validate(phrases: pd.DataFrame, names: Sequence[str], folds: int) -> dict[str, Scored]:
    """Fit each named spec on every fold's training sentences, score its held-out whole sentences, same folds for all."""
    corpus = Corpus(phrases["Phrase"])
    scored = {name: Scored() for name in names}
    splits = GroupKFold(n_splits=folds).split(phrases, groups=phrases["SentenceId"])
    for fold, (fit_rows, held_rows) in enumerate(splits, start=1):
        held_out = util.whole_sentences(phrases.iloc[held_rows])
        for name in names:
            spec = MODEL_SPECS[name]
            with build_model.step(f"fold {fold}/{folds}: {name}"):
                model, _ = build_model.validated_model(spec, phrases.iloc[fit_rows], corpus)
                texts, y = evaluation_rows(spec, held_out)
                scored[name].add(y, model.predict_texts(texts))
    return scored


def pair_rows(task: str, naive_bayes: str, linear: str, scored: dict[str, Scored]) -> list[str]:
    """The table's lines for one pair of models: each model's CV means, then their paired difference."""
    y = np.concatenate(scored[naive_bayes].y)
    before, after = (np.concatenate(scored[name].probabilities) for name in (naive_bayes, linear))
    p, only_naive_bayes, only_linear = mcnemar_p(before.argmax(axis=1) == y, after.argmax(axis=1) == y)
    changes = bootstrap_changes(y, before, after, SEED)
    difference = float(np.mean(after.argmax(axis=1) == y) - np.mean(before.argmax(axis=1) == y))
    lines = [
        f"{task}: {len(scored[naive_bayes].folds)} grouped folds, {len(y):,} held-out whole sentences",
        f"  {'model':<18}" + "".join(f"{metric:>17}" for metric in ("accuracy", "macro-F1", "ECE", "Brier")),
    ]
    for name in (naive_bayes, linear):
        means = scored[name].means()
        lines.append(f"  {name:<18}" + "".join(f"{f'{mean:.4f} ({sd:.4f})':>17}" for mean, sd in means.values()))
    low, high = changes["accuracy"]
    lines.append(
        f"  paired, {linear} - {naive_bayes}: accuracy {difference:+.4f}, 95% bootstrap CI [{low:+.4f}, {high:+.4f}]; "
        f"McNemar p = {p:.2g} ({only_linear:,} sentences only the linear model got right, {only_naive_bayes:,} only naive Bayes)"
    )
    lines.append(
        "  other changes, 95% CI: "
        + ", ".join(f"{metric} [{low:+.4f}, {high:+.4f}]" for metric, (low, high) in changes.items() if metric != "accuracy")
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Cross-validate both families on the same folds and print the side-by-side table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=kaggle_file("train.tsv"), help="Kaggle train.tsv (default: %(default)s)")
    parser.add_argument("--folds", type=int, default=5, help="grouped folds (default: 5)")
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), default=list(PAIRS), help="which pairs (default: both)")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"skipped: Kaggle train.tsv not found at {args.data} (give --data or set KAGGLE_TRAIN)", file=sys.stderr)
        return 0
    phrases = util.load_phrases(args.data)
    names = [name for pair in args.pairs for name in PAIRS[pair]]
    scored = cross_validate(phrases, names, args.folds)
    for task in args.pairs:
        print("\n".join(pair_rows(task, *PAIRS[task], scored)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
