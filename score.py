"""Score a TSV or CSV file of texts, in process from lib/models (no server needed) or through the service.

    .venv/bin/python score.py examples/reviews.csv --text review --out scores.csv
    .venv/bin/python score.py lib/data/test.tsv --kaggle --out submission.csv
    .venv/bin/python score.py examples/reviews.csv --text review --url http://127.0.0.1:5000

The output is the input's columns followed by the prediction columns of ``client.predictions_frame``, one row per
input row in order. ``score_frame`` is the in-process scorer as a plain function over a DataFrame, for
Dask's ``map_partitions`` and Spark's ``mapInPandas``: each process loads the models once, on first use.
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests
from tqdm import tqdm

from client import RATING_FIELD, ROOT_ENDPOINT, ApiError, SentimentClient, model_name, predictions_frame, text_mask
from lib.paths import MODELS_DIR
from lib.registry import ServedModel, load_all
from model import ModelLoadError

SEPARATORS = {".tsv": "\t", ".tab": "\t", ".csv": ","}
IN_PROCESS_STEP = 5_000  # rows scored per call (and per progress-bar update) without a server
#: The Sentiment of a Kaggle row whose phrase is blank: neutral, the "no idea" rating (every PhraseId needs one).
KAGGLE_BLANK_RATING = 2


class ScoreError(ValueError):
    """The input cannot be scored as asked; the message names the file or option."""


@functools.cache
def served_models(models_dir: Path) -> Mapping[str, ServedModel]:
    """Load and verify every model folder once per process (per worker under Dask or Spark), as the service does."""
    return load_all(models_dir)[0]


def score_texts(texts: pd.Series, model: str | None = None, models_dir: str | Path = MODELS_DIR) -> pd.DataFrame:
    """Classify a Series of texts in process (``model`` by name; by default the one served at ``/``); one row per text."""
    models = served_models(Path(models_dir).resolve())
    model = model or model_name(models, endpoint=ROOT_ENDPOINT)
    if model not in models:
        raise ScoreError(f"No model {model!r} in {models_dir}; it holds {', '.join(models)}.")
    served = models[model]
    scored = text_mask(texts)
    if scored.any():
        probabilities, coverage = served.model.score_texts(texts[scored].tolist())
    else:  # scikit-learn refuses an empty matrix
        probabilities, coverage = np.empty((0, len(served.labels))), np.empty((0, 2), dtype=np.int64)
    best = probabilities.argmax(axis=1)  # on the unrounded probabilities, as the service does
    versions = [served.version] * len(best)
    return predictions_frame(
        texts.index, scored, served.labels, served.index_field, best, probabilities.round(3), coverage, versions
    )


def score_frame(
    frame: pd.DataFrame, text_column: str = "Phrase", model: str | None = None, models_dir: str | Path = MODELS_DIR
) -> pd.DataFrame:
    """Return ``frame`` with the prediction columns of its ``text_column`` appended: the function for Dask and Spark."""
    return pd.concat([frame, score_texts(frame[text_column], model, models_dir)], axis=1)


def read_options(path: str | Path, sep: str | None = None) -> dict[str, Any]:
    """How to read a table with pandas (or Dask) so every cell stays the text it is: "NA" or "None" is a phrase."""
    sep = sep or SEPARATORS.get(Path(path).suffix.lower())
    if sep is None:
        raise ScoreError(f"{path}: cannot tell the delimiter from the extension (.tsv or .csv); pass --sep.")
    # Tab-separated files (Kaggle's among them) do not quote: a quote is part of the text.
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    return {"sep": sep, "dtype": str, "keep_default_na": False, "quoting": quoting, "encoding": "utf-8"}


def read_table(path: str | Path, sep: str | None, required: Sequence[str]) -> pd.DataFrame:
    """Read the input file, naming the file and the fault when it cannot be read or lacks a column."""
    try:
        frame = pd.read_csv(path, **read_options(path, sep))
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ScoreError(f"{path}: cannot read it ({exc})") from None
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ScoreError(f"{path}: no column {', '.join(missing)} (found {', '.join(frame.columns)}); see --text and --id.")
    return frame


def score_in_steps(frame: pd.DataFrame, scorer: Callable[[pd.DataFrame], pd.DataFrame], step: int, quiet: bool) -> pd.DataFrame:
    """Score the frame a step at a time, with a progress bar on stderr (off when stderr is not a terminal, or quiet)."""
    parts = []
    with tqdm(total=len(frame), unit=" texts", file=sys.stderr, disable=True if quiet else None) as bar:
        for start in range(0, len(frame), step):
            parts.append(scorer(frame.iloc[start : start + step]))
            bar.update(min(step, len(frame) - start))
    return pd.concat(parts) if parts else scorer(frame)


def kaggle_submission(scores: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """Kaggle's ``PhraseId,Sentiment``: every row, the 0-4 rating, KAGGLE_BLANK_RATING where the phrase is blank."""
    rating = scores["rating"].fillna(KAGGLE_BLANK_RATING).astype("int64")
    return pd.DataFrame({"PhraseId": scores[id_column], "Sentiment": rating})


def chosen_model(models: Mapping[str, Any], args: argparse.Namespace) -> str:
    """The model the command line asks for: --model, else for --kaggle the first answering a rating, else the one at /."""
    if args.kaggle and args.model in models and models[args.model].index_field != RATING_FIELD:
        raise ScoreError(f"--kaggle needs a model answering a {RATING_FIELD!r}; {args.model!r} does not.")
    if args.model:
        return str(args.model)
    return model_name(models, index_field=RATING_FIELD) if args.kaggle else model_name(models, endpoint=ROOT_ENDPOINT)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description="Score a TSV or CSV file of texts and write a CSV.")
    parser.add_argument("path", help="the file to score (.tsv or .csv, or say --sep)")
    parser.add_argument("--out", help="the CSV to write (default: standard output)")
    parser.add_argument("--text", default="Phrase", help="the column holding the texts (default: Phrase)")
    parser.add_argument("--id", default="PhraseId", help="the id column, for --kaggle (default: PhraseId)")
    parser.add_argument("--model", help="any served model by name (default: the one served at /, sentiment)")
    parser.add_argument("--sep", help="the input's delimiter (default: from the extension; .tsv tab, .csv comma)")
    parser.add_argument("--url", help="score through the service at this URL (default: in process, from --models-dir)")
    parser.add_argument("--models-dir", default=str(MODELS_DIR), help="model folders for in-process scoring")
    parser.add_argument(
        "--kaggle",
        action="store_true",
        help="write a Kaggle submission, PhraseId,Sentiment (--model, else the first model answering a rating: ratings)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Score the file; 0 on success, 2 for a bad file or option, 1 when the models or the service fail."""
    args = parse_args(argv)
    try:
        frame = read_table(args.path, args.sep, [args.text, args.id] if args.kaggle else [args.text])
        if args.url:
            with SentimentClient(args.url) as client:
                model = chosen_model(client.models, args)
                scores = score_in_steps(
                    frame,
                    lambda part: pd.concat([part, client.score(part[args.text], model)], axis=1),
                    client.limits.max_batch,
                    args.quiet,
                )
        else:
            model = chosen_model(served_models(Path(args.models_dir).resolve()), args)
            scores = score_in_steps(
                frame, lambda part: score_frame(part, args.text, model, args.models_dir), IN_PROCESS_STEP, args.quiet
            )
        output = kaggle_submission(scores, args.id) if args.kaggle else scores
        output.to_csv(args.out or sys.stdout, index=False)
    except ScoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ModelLoadError, ApiError, requests.RequestException, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader stopped early (| head): end quietly, as command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
