"""Where the project keeps its models and data: each default path once, resolved from the checkout, never the working directory.

The Kaggle files of "Sentiment Analysis on Movie Reviews" (``train.tsv``, ``test.tsv``) go in ``lib/data/``,
which git ignores. Every command, test and benchmark looks for them there first, then in a shared copy beside
the checkout (``../shared/data/kaggle/``); ``KAGGLE_TRAIN`` and ``KAGGLE_TEST`` name another file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "lib" / "models"
DATA_DIR = ROOT / "lib" / "data"
SHARED_DATA_DIR = ROOT.parent / "shared" / "data" / "kaggle"
KAGGLE_URL = "https://www.kaggle.com/c/sentiment-analysis-on-movie-reviews/data"
#: The environment variable that names each Kaggle file instead.
KAGGLE_VARIABLES = {"train.tsv": "KAGGLE_TRAIN", "test.tsv": "KAGGLE_TEST"}


def kaggle_file(name: str, environ: Mapping[str, str] = os.environ) -> Path:
    """Return where the Kaggle file ``name`` is: its variable, else lib/data/, else the shared copy; else lib/data/."""
    named = environ.get(KAGGLE_VARIABLES[name], "")
    if named:
        return Path(named)
    for folder in (DATA_DIR, SHARED_DATA_DIR):
        if (folder / name).is_file():
            return folder / name
    return DATA_DIR / name
