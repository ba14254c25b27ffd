"""Train, validate and save every served model from the Kaggle movie-review phrases.

    python build_model.py [--data lib/data/train.tsv]

Validation holds out whole sentences (grouped by SentenceId, so no sentence's phrases straddle
the split) and scores both phrases and whole sentences, which is what users send. The served
model is then refitted on all rows. ``--tune`` runs the grouped cross-validation that chose the
parameters in MODEL_SPECS, on the training part only, and prints the ranking.

Each model's probabilities are calibrated by temperature scaling, fitted on whole sentences held
out from a sibling fit (never on validation sentences), unless its spec says calibration did not
help it (``ModelSpec.calibrate``). ``--compare-calibration`` measures the alternatives (none,
sigmoid, isotonic, temperature) on the validation sentences and prints them.

Both families are fitted from rows of every phrase's term counts, taken once per kind of feature
block (``lib.corpus``): the character n-grams of the linear models cost most of a fit to count.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline

import util
from lib.calibration import fit_inverse_temperature
from lib.corpus import Corpus
from lib.evaluation import ECE_BINS, bootstrap_changes, score
from lib.paths import MODELS_DIR, ROOT, kaggle_file
from lib.specs import (
    CALIBRATION_SHARE,
    MODEL_SPECS,
    RANDOM_STATE,
    TUNING_GRID,
    VALIDATION_SHARE,
    ModelSpec,
    evaluation_rows,
    split_by_sentence,
    training_rows,
)
from model import NLPModel, SoftmaxLinearClassifier

CALIBRATION_METHODS = ("none", "sigmoid", "isotonic", "temperature")  # what --compare-calibration measures
CALIBRATION_MIN_PER_CLASS = 5  # CalibratedClassifierCV's own floor (5 folds); fewer leaves the model uncalibrated
CALIBRATION_SOURCE = f"whole sentences of {CALIBRATION_SHARE:.0%} of the training sentences, held out from a sibling fit"
SERVED_CALIBRATION_SOURCE = "whole validation sentences, held out from the validated model"


@contextmanager
def step(message: str) -> Iterator[None]:
    """Print a step as it starts and how long it took, so long steps never look stuck."""
    print(f"  {message} ...", end="", flush=True, file=sys.stderr)
    started = time.perf_counter()
    yield
    print(f" done in {time.perf_counter() - started:.1f}s", file=sys.stderr)


def fit(spec: ModelSpec, phrases: pd.DataFrame, corpus: Corpus) -> NLPModel:
    """Fit a model of this spec; the vectorizer sees only these (training) phrases, counted once in ``corpus``."""
    texts, y = training_rows(spec, phrases)
    model = spec.new_model()
    return model.train(corpus.fit(model, texts.index), y)


def vocabulary_size(model: NLPModel) -> int:
    """How many terms a model knows, over all its feature blocks."""
    return sum(len(vectorizer.vocabulary_) for vectorizer in model.vectorizers)


def fit_temperature(spec: ModelSpec, sibling: NLPModel, held_out: pd.DataFrame, source: str) -> dict[str, Any]:
    """Fit temperature scaling of a fitted model on the whole sentences held out from it; return how, and its beta.

    scikit-learn's temperature scaling of the frozen sibling (its beta found so that a rebuild on any CPU
    gives the same one: ``lib.calibration``), on whole sentences because that is what users send. The model
    served or validated takes the sibling's calibration, as CalibratedClassifierCV(ensemble=False) does with
    the calibrator fitted on its cross-validation.
    """
    if not spec.calibrate:
        return {"method": None, "reason": "temperature scaling did not lower the validation sentences' ECE and Brier"}
    texts, y = evaluation_rows(spec, util.whole_sentences(held_out))
    counts = np.bincount(y, minlength=len(spec.labels))
    if counts.min() < CALIBRATION_MIN_PER_CLASS:
        return {"method": None, "reason": f"too few sentences per class to calibrate on ({counts.tolist()})"}
    beta = fit_inverse_temperature(sibling.clf.predict_proba(sibling.vectorizer_transform(texts)), y)
    return {"method": "temperature", "inverse_temperature": beta, "fitted_on": f"{len(y):,} {source}"}


def calibrate(model: NLPModel, method: str, texts: pd.Series, y: np.ndarray) -> CalibratedClassifierCV:
    """Fit scikit-learn's calibration of an already fitted model on held-out labelled texts."""
    frozen = FrozenEstimator(make_pipeline(model.vectorizer, model.clf))
    return CalibratedClassifierCV(frozen, method=method).fit(texts, y)


def evaluate(spec: ModelSpec, model: NLPModel, validation: pd.DataFrame, calibration: dict[str, Any]) -> dict[str, Any]:
    """Score a model on held-out phrases and on the whole sentences among them, calibrated and not."""
    metrics: dict[str, Any] = {
        "validation": (
            f"{VALIDATION_SHARE:.0%} of sentences held out (GroupShuffleSplit by SentenceId, "
            f"random_state={RANDOM_STATE}); served model refitted on all rows"
        ),
        "labels": list(spec.labels),
        "calibration": {**calibration, "ece_bins": f"{ECE_BINS} equal-width bins of the predicted label's probability"},
        "uncalibrated": {},
    }
    for level, rows in (("phrases", validation), ("sentences", util.whole_sentences(validation))):
        texts, y = evaluation_rows(spec, rows)
        features = model.vectorizer_transform(texts)
        metrics[level] = score(y, model.predict_proba(features), len(spec.labels))
        raw = score(y, model.clf.predict_proba(features), len(spec.labels))
        metrics["uncalibrated"][level] = {key: raw[key] for key in ("accuracy", "macro_f1", "brier", "ece")}
    return metrics


def write_report(name: str, spec: ModelSpec, model: NLPModel, validation: pd.DataFrame, metrics: dict, folder: Path) -> None:
    """Write metrics.json, confusion.png, reliability.png and roc.png (when every class was seen) for the validation run."""
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    sentences = metrics["sentences"]
    util.plot_confusion(
        np.array(sentences["confusion_matrix"]),
        spec.labels,
        folder / "confusion.png",
        f"{name}: whole validation sentences (accuracy {sentences['accuracy']:.3f})",
    )
    texts, y = evaluation_rows(spec, util.whole_sentences(validation))
    features = model.vectorizer_transform(texts)
    curves = {"uncalibrated": model.clf.predict_proba(features)}
    if model.inverse_temperature_ is not None:
        curves[f"temperature scaling (beta {model.inverse_temperature_:.3f})"] = model.predict_proba(features)
    util.plot_reliability(y, curves, ECE_BINS, folder / "reliability.png", f"{name}: whole validation sentences")
    if "roc_auc" in sentences:
        util.plot_roc(y, model.predict_proba(features), spec.labels, folder / "roc.png", f"{name}: whole validation sentences")


def validated_model(spec: ModelSpec, train: pd.DataFrame, corpus: Corpus) -> tuple[NLPModel, dict[str, Any]]:
    """Fit a model on training phrases and calibrate it from a sibling fitted on part of them; return it and how."""
    fitting, held_out = split_by_sentence(train, CALIBRATION_SHARE)
    model = fit(spec, train, corpus)
    sibling = fit(spec, fitting, corpus) if spec.calibrate else model
    calibration = fit_temperature(spec, sibling, held_out, CALIBRATION_SOURCE)
    return model.set_calibration(calibration.get("inverse_temperature")), calibration


def build(name: str, spec: ModelSpec, phrases: pd.DataFrame, data_path: Path, out: Path, corpus: Corpus) -> dict[str, Any]:
    """Validate, refit on all rows, and save one model folder atomically; return its manifest."""
    train, validation = split_by_sentence(phrases)
    with step(f"{name}: fitting on {len(train):,} phrases, calibrating, validating on {len(validation):,}"):
        validated, calibration = validated_model(spec, train, corpus)
        metrics = evaluate(spec, validated, validation, calibration)
    with step(f"{name}: refitting on all {len(phrases):,} phrases, calibrating on the validation sentences"):
        final = fit(spec, phrases, corpus)
        served_calibration = fit_temperature(spec, validated, validation, SERVED_CALIBRATION_SOURCE)
        final.set_calibration(served_calibration.get("inverse_temperature"))
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the models from a server run as another user
    try:
        with step(f"{name}: writing artifacts and report"):
            manifest = final.save(
                staging,
                name,
                {
                    "endpoint": spec.endpoint,
                    **({"index_field": spec.index_field} if spec.index_field else {}),
                    "data": {
                        "file": data_path.name,
                        "sha256": util.file_sha256(data_path),
                        "rows": len(phrases),
                        "training_rows": int(training_rows(spec, phrases)[0].size),
                    },
                    "params": {
                        "train_ratings": list(spec.train_ratings),
                        "classes": {str(rating): cls for rating, cls in spec.classes.items()},
                        **spec.params(),
                        "vocabulary_size": vocabulary_size(final),
                    },
                    "calibration": served_calibration,
                    "metrics": metrics,
                },
            )
            write_report(name, spec, validated, validation, metrics, staging)
        _replace_folder(staging, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _replace_folder(new: Path, target: Path) -> None:
    """Swap a finished model folder into place, so a reader never sees half of one."""
    retired = target.with_name(f".{target.name}.old")
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        target.rename(retired)
    new.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def summary(manifests: dict[str, dict[str, Any]], out: Path) -> str:
    """Render the one-screen table the build ends with."""
    lines = [
        f"Models written to {out}",
        f"{'model':<16} {'version':<29} {'vocab':>7} {'phrase acc':>10} {'sentence acc':>12} "
        f"{'macro-F1':>8} {'ROC AUC':>7} {'ECE before/after':>16}  floor",
    ]
    for name, manifest in manifests.items():
        sentences = manifest["metrics"]["sentences"]
        floor = MODEL_SPECS[name].sentence_accuracy_floor
        verdict = "ok" if sentences["accuracy"] >= floor else "BELOW"
        auc = sentences.get("roc_auc")
        ece = f"{manifest['metrics']['uncalibrated']['sentences']['ece']:.3f} / {sentences['ece']:.3f}"
        lines.append(
            f"{name:<16} {manifest['version']:<29} {manifest['params']['vocabulary_size']:>7,} "
            f"{manifest['metrics']['phrases']['accuracy']:>10.3f} {sentences['accuracy']:>12.3f} "
            f"{sentences['macro_f1']:>8.3f} {'-' if auc is None else f'{auc:.3f}':>7} {ece:>16}  "
            f"{floor:.2f} {verdict}"
        )
    lines.append(
        "Metrics on held-out whole sentences, ECE before and after calibration; "
        "see metrics.json, confusion.png, roc.png, reliability.png."
    )
    return "\n".join(lines)


def compare_calibration(name: str, phrases: pd.DataFrame) -> list[tuple[str, str, dict[str, Any]]]:
    """Score every CALIBRATION_METHODS choice on the validation phrases and sentences, as the build would fit it.

    Each calibrator is fitted on the frozen sibling's held-out sentences, then applied to the model
    fitted on the whole training part, exactly as the build does with ``fit_temperature``.
    """
    spec = MODEL_SPECS[name]
    corpus = Corpus(phrases["Phrase"])
    train, validation = split_by_sentence(phrases)
    model = fit(spec, train, corpus)
    fitting, held_out = split_by_sentence(train, CALIBRATION_SHARE)
    sibling = fit(spec, fitting, corpus)
    calibration_texts, calibration_y = evaluation_rows(spec, util.whole_sentences(held_out))
    levels = {
        level: evaluation_rows(spec, rows)
        for level, rows in (("phrases", validation), ("sentences", util.whole_sentences(validation)))
    }
    uncalibrated = {level: model.predict_texts(texts) for level, (texts, _) in levels.items()}
    rows = []
    for method in CALIBRATION_METHODS:
        if method != "none":
            calibrated = calibrate(sibling, method, calibration_texts, calibration_y)
            # ensemble=False's one calibrated classifier, pointed at the model fitted on all the training part.
            calibrated.calibrated_classifiers_[0].estimator = make_pipeline(model.vectorizer, model.clf)
        for level, (texts, y) in levels.items():
            probabilities = uncalibrated[level] if method == "none" else calibrated.predict_proba(texts)
            scores = score(y, probabilities, len(spec.labels))
            if method != "none" and level == "sentences":
                scores["changes"] = bootstrap_changes(y, uncalibrated[level], probabilities, RANDOM_STATE)
            rows.append((method, level, scores))
    return rows


def tuning_variants(name: str) -> list[tuple[dict[str, Any], ModelSpec]]:
    """The TUNING_GRID's feature settings for a model: what each is called in the ranking, and its spec."""
    base, grid = MODEL_SPECS[name], TUNING_GRID[name]
    variants = []
    for ratings in grid["train_ratings"]:
        if base.family == "linear":
            for blocks in grid["blocks"]:
                variants.append(
                    (
                        {"train_ratings": ratings, "blocks": describe_blocks(blocks)},
                        replace(base, train_ratings=ratings, blocks=blocks),
                    )
                )
        else:
            for values in itertools.product(*grid["vectorizer"].values()):
                params = dict(zip(grid["vectorizer"], values, strict=True))
                variants.append(
                    (
                        {"train_ratings": ratings, **params},
                        replace(base, train_ratings=ratings, vectorizer={**base.vectorizer, **params}),
                    )
                )
    return variants


def describe_blocks(blocks: tuple[dict[str, Any], ...]) -> str:
    """A feature-block list in a few words: ``word 1-2 <= 50000 + char_wb 2-5 <= 100000``."""
    return " + ".join(
        f"{block.get('analyzer', 'word')} {block['ngram_range'][0]}-{block['ngram_range'][1]} <= {block.get('max_features')}"
        for block in blocks
    )


def set_classifier_params(model: NLPModel, params: dict[str, Any]) -> None:
    """Change the (unfitted or fitted) classifier's settings: naive Bayes' own, or the linear family's estimator's."""
    (model.clf.estimator if isinstance(model.clf, SoftmaxLinearClassifier) else model.clf).set_params(**params)


def tune(name: str, phrases: pd.DataFrame, folds: int = 5) -> list[tuple[float, float, dict[str, Any]]]:
    """Rank the TUNING_GRID by grouped-CV whole-sentence accuracy on the training part."""
    base, grid = MODEL_SPECS[name], TUNING_GRID[name]
    train, _ = split_by_sentence(phrases)
    corpus = Corpus(train["Phrase"])
    splits = list(GroupKFold(n_splits=folds).split(train, groups=train["SentenceId"]))
    classifier_options = [
        dict(zip(grid["classifier"], values, strict=True)) for values in itertools.product(*grid["classifier"].values())
    ]
    scores: dict[str, tuple[dict[str, Any], list[float]]] = {}
    for described, spec in tuning_variants(name):
        with step(f"{name}: {described}"):
            for fit_rows, held_rows in splits:
                texts, y = training_rows(spec, train.iloc[fit_rows])
                model = spec.new_model()
                features = corpus.fit(model, texts.index)
                held_texts, held_y = evaluation_rows(spec, util.whole_sentences(train.iloc[held_rows]))
                held = model.vectorizer_transform(held_texts)
                for classifier_params in classifier_options:
                    set_classifier_params(model, {**base.classifier, **classifier_params})
                    accuracy = accuracy_score(held_y, model.train(features, y).predict(held))
                    params = {**described, **classifier_params}
                    scores.setdefault(repr(params), (params, []))[1].append(float(accuracy))
    ranked = [(float(np.mean(values)), float(np.std(values)), params) for params, values in scores.values()]
    return sorted(ranked, key=lambda row: -row[0])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=kaggle_file("train.tsv"),
        help="Kaggle train.tsv (default: lib/data/train.tsv, else a shared copy beside the checkout; or KAGGLE_TRAIN)",
    )
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help=f"models folder (default: {MODELS_DIR.relative_to(ROOT)})")
    parser.add_argument(
        "--models", nargs="+", choices=sorted(MODEL_SPECS), default=list(MODEL_SPECS), help="which models to build (default: all)"
    )
    parser.add_argument("--tune", action="store_true", help="rank the parameter grid by grouped 5-fold CV instead of building")
    parser.add_argument(
        "--compare-calibration",
        action="store_true",
        help="score no calibration, sigmoid, isotonic and temperature scaling on the validation sentences instead of building",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build (or tune) the models; return the process exit status."""
    args = parse_args(argv)
    try:
        with step(f"reading {args.data}"):
            phrases = util.load_phrases(args.data)
        if args.tune:
            for name in args.models:
                print(f"\n{name}: mean (sd) whole-sentence accuracy over 5 grouped folds, best first", flush=True)
                for mean, sd, params in tune(name, phrases):
                    print(f"  {mean:.4f} ({sd:.4f})  {params}")
            return 0
        if args.compare_calibration:
            for name in args.models:
                print(f"\n{name}: calibration choices on the validation set (ECE: {ECE_BINS} equal-width bins)")
                print("  sentences: change from none, 95% bootstrap interval over the sentences (one that holds 0 is noise)")
                print(
                    f"  {'method':<12} {'level':<10} {'accuracy':>8} {'macro-F1':>8} {'Brier':>7} {'ECE':>7}   "
                    + "".join(f"{title + ' change':<19}" for title in ("accuracy", "macro-F1", "Brier", "ECE")).rstrip()
                )
                for method, level, scores in compare_calibration(name, phrases):
                    changes = "".join(f"[{low:+.4f}, {high:+.4f}] " for low, high in scores.get("changes", {}).values())
                    print(
                        f"  {method:<12} {level:<10} {scores['accuracy']:>8.4f} {scores['macro_f1']:>8.4f} "
                        f"{scores['brier']:>7.4f} {scores['ece']:>7.4f}   {changes}".rstrip()
                    )
            return 0
        args.out.mkdir(parents=True, exist_ok=True)
        corpus = Corpus(phrases["Phrase"])
        manifests = {name: build(name, MODEL_SPECS[name], phrases, args.data, args.out, corpus) for name in args.models}
    except util.DataError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    print(summary(manifests, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
