"""A model folder at every cap lib/artifacts.py allows: the memory loading it adds, and what the costliest requests take.

    .venv/bin/python -m bench.model_worst_case             # about a minute
    .venv/bin/python -m bench.model_worst_case --repeat 1

Builds, in a temporary folder, one model per analyzer with every cap at its most: the most vocabulary terms (filled
up with terms of the longest length), the widest n-gram range, as many labels of the longest length as the array
cap leaves room for, and a vocabulary made of every n-gram of a few short words (or letters), so that every term
of the texts sent is known and costs its full work. A fourth folder has the most labels instead of the most terms.
Each is loaded in a fresh process (the memory the load adds, and its peak), then served in process (the WSGI app
alone, default settings) and sent every request shape at the largest the limits allow (``bench.worst_case``).
Last, a vectorizer.json at its byte cap made of the shortest strings, which is refused: what parsing it costs.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as lib/server.py does; set before the app imports NumPy

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from bench.common import note
from bench.worst_case import largest_shapes, request_body, timed
from lib import artifacts
from lib.artifacts import (
    MAX_ARRAY_BYTES,
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_NGRAM,
    MAX_TERM_CHARS,
    MAX_VECTORIZER_BYTES,
    MAX_VOCABULARY_TERMS,
)

NPY_HEADER = 128  # bytes before a float64 array's data in a .npy file
SEED = 1234


def most_labels_for(terms: int) -> int:
    """The most labels a vocabulary of ``terms`` leaves room for under the array cap."""
    return min(MAX_LABELS, (MAX_ARRAY_BYTES - NPY_HEADER) // 8 // terms)


def most_terms_for(labels: int) -> int:
    """The most terms ``labels`` labels leave room for under the array cap."""
    return min(MAX_VOCABULARY_TERMS, (MAX_ARRAY_BYTES - NPY_HEADER) // 8 // labels)


def word_ngrams(words: Sequence[str], high: int) -> list[str]:
    """Every word n-gram of ``words`` from 1 to ``high`` words long."""
    return [" ".join(gram) for n in range(1, high + 1) for gram in itertools.product(words, repeat=n)]


def char_ngrams(alphabet: str, high: int) -> list[str]:
    """Every string of ``alphabet``'s characters from 1 to ``high`` long."""
    return ["".join(gram) for n in range(1, high + 1) for gram in itertools.product(alphabet, repeat=n)]


def most_symbols(high: int, budget: int) -> int:
    """The most words (or characters) k whose n-grams from 1 to ``high`` long, k + k**2 + ..., fit ``budget`` terms."""
    k = 1
    while sum((k + 1) ** n for n in range(1, high + 1)) <= budget:
        k += 1
    return k


def filled_up(terms: list[str], total: int) -> list[str]:
    """``terms`` then distinct terms of the longest allowed length, up to ``total`` terms within the byte cap."""
    room = MAX_VECTORIZER_BYTES - 4096 - sum(len(term) + 4 for term in terms)  # 4: quotes, comma, space
    length = max(1, min(MAX_TERM_CHARS, room // max(1, total - len(terms)) - 4))
    extra = [f"zz{index:09d}".ljust(length, "q") for index in range(total - len(terms))]
    return terms + extra


def save(folder: Path, name: str, analyzer: str, terms: list[str], labels: int) -> Path:
    """Write a model folder with these terms and labels, random log-probabilities, idf at its most."""
    rng = np.random.default_rng(SEED)
    vectorizer = TfidfVectorizer(analyzer=analyzer, ngram_range=(1, MAX_NGRAM[analyzer]), sublinear_tf=True)
    vectorizer.vocabulary_ = {term: index for index, term in enumerate(terms)}
    vectorizer.idf_ = rng.uniform(*artifacts.IDF_RANGE, size=len(terms))
    weights = rng.normal(size=(labels, len(terms)))
    log_prob = weights - np.log(np.exp(weights).sum(axis=1, keepdims=True))
    names = [f"{index:02d}".ljust(MAX_LABEL_CHARS, "x") for index in range(labels)]
    fitted = artifacts.Artifacts(tuple(names), (vectorizer,), log_prob, np.full(labels, -np.log(labels)), inverse_temperature=1.0)
    artifacts.save(folder / "models" / name, name, fitted, {"endpoint": f"/{name}"})
    return folder / "models"


def build(root: Path) -> list[dict[str, Any]]:
    """The folders at the caps: (name, models dir, words the texts are made of, what it holds)."""
    folders = []
    labels = most_labels_for(MAX_VOCABULARY_TERMS)
    for analyzer in ("word", "char_wb", "char"):
        high = MAX_NGRAM[analyzer]
        k = most_symbols(high, MAX_VOCABULARY_TERMS)
        if analyzer == "word":
            words = two_letter_words(k)
            known = word_ngrams(words, high)
        else:  # the space too: character n-grams span words (char) or are padded with one (char_wb)
            letters = string.ascii_lowercase[: k - 1]
            known = char_ngrams(letters + " ", high)
            words = ["".join(gram) for gram in itertools.product(letters, repeat=3)]
        name = f"{analyzer.replace('_', '-')}-terms"
        terms = filled_up(known, MAX_VOCABULARY_TERMS)
        folders.append({"name": name, "models": save(root / name, name, analyzer, terms, labels), "words": words})
    terms_for_labels = most_terms_for(MAX_LABELS)
    words = two_letter_words(most_symbols(MAX_NGRAM["word"], terms_for_labels))
    name = "word-labels"
    terms = filled_up(word_ngrams(words, MAX_NGRAM["word"]), terms_for_labels)
    folders.append({"name": name, "models": save(root / name, name, "word", terms, MAX_LABELS), "words": words})
    return folders


def two_letter_words(count: int) -> list[str]:
    """Two-letter words, the shortest the default token pattern keeps: aa, ab, ..."""
    return ["".join(pair) for pair in itertools.islice(itertools.product(string.ascii_lowercase, repeat=2), count)]


def refused_parse(root: Path) -> Path:
    """A folder whose vectorizer.json is at its byte cap, all of it the shortest strings: refused after parsing."""
    models = save(root / "refused", "refused", "word", ["aa", "ab"], 2)
    folder = models / "refused"
    words = two_letter_words(26 * 26)
    settings = json.loads((folder / artifacts.VECTORIZER_FILE).read_text())["blocks"][0]["params"]
    head = '{"blocks": [{"params": ' + json.dumps(settings) + ', "vocabulary": ['
    count = (MAX_VECTORIZER_BYTES - len(head) - 3) // 5  # "aa", is five bytes
    vocabulary = ",".join(f'"{words[index % len(words)]}"' for index in range(count))
    payload = (head + vocabulary + "]}]}").encode()
    (folder / artifacts.VECTORIZER_FILE).write_bytes(payload)
    manifest = json.loads((folder / artifacts.MANIFEST).read_text())
    manifest["files"][artifacts.VECTORIZER_FILE] = hashlib.sha256(payload).hexdigest()  # as a careful attacker would
    manifest["version"] = artifacts.content_version(manifest["name"], manifest["labels"], manifest["files"], manifest["family"])
    (folder / artifacts.MANIFEST).write_text(json.dumps(manifest))
    return folder


def load_in_fresh_process(folder: Path) -> dict[str, Any]:
    """Load one model folder in a new interpreter: the resident memory it adds, its peak, and any refusal."""
    answer = subprocess.run(
        [sys.executable, "-m", "bench.model_worst_case", "--load-only", str(folder)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(answer.stdout))


def load_only(folder: Path) -> dict[str, Any]:
    """In this process: load the folder and build its scorer and explainer, as serving does; measure memory."""
    from model import ModelLoadError, NLPModel

    before = rss()
    started = time.perf_counter()
    try:
        model = NLPModel.load(folder)
        model.explain("aa", 1)  # the explainer is built on first use
        outcome = "loaded"
    except ModelLoadError as exc:
        outcome = f"refused ({str(exc).split(': ', 1)[1].split('. ')[0]})"
    seconds = time.perf_counter() - started
    added, peak = rss("VmRSS") - before, rss("VmHWM") - before
    return {"outcome": outcome, "seconds": round(seconds, 2), "added_mb": round(added, 1), "peak_mb": round(peak, 1)}


def rss(field: str = "VmRSS") -> float:
    """This process's resident memory (VmRSS), or its peak so far (VmHWM), in MB."""
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def timed_requests(models: Path, words: list[str], repeat: int) -> list[dict[str, Any]]:
    """Send every largest shape to the one model in ``models`` through the WSGI app; median milliseconds each."""
    from app import create_app
    from lib.limits import limits

    service = create_app({"MODELS_DIR": str(models), "ACCESS_LOG": ""})
    client = service.test_client()
    (served,) = service.extensions["models"].models.values()
    rows = []
    for shape in largest_shapes(limits(service.config["SETTINGS"])):
        body = request_body(shape, words)

        def send(body: bytes = body) -> tuple[int, int]:
            answer = client.post(served.endpoint, data=body, content_type="application/json")
            return answer.status_code, len(answer.data)

        milliseconds, status, size = timed(send, repeat)
        if status != 200:
            raise SystemExit(f"{shape.name} answered {status}: the shape is not within the limits")
        rows.append({"shape": shape.name, "texts": len(shape.lengths), "chars": shape.chars, "ms": milliseconds, "answer": size})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Build the folders, measure them, print one summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="times each request is sent; the median is shown")
    parser.add_argument("--load-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load_only:
        print(json.dumps(load_only(args.load_only)))
        return 0
    with tempfile.TemporaryDirectory(prefix="model-worst-case-") as temporary:
        root = Path(temporary)
        note("building model folders at the caps")
        folders = build(root)
        lines = [
            f"caps: {MAX_VOCABULARY_TERMS:,} terms of up to {MAX_TERM_CHARS} characters, "
            f"vectorizer.json {MAX_VECTORIZER_BYTES:,} bytes, each array {MAX_ARRAY_BYTES:,} bytes, "
            f"{MAX_LABELS} labels of {MAX_LABEL_CHARS} characters, n-grams up to {MAX_NGRAM}",
        ]
        for entry in folders:
            folder = entry["models"] / entry["name"]
            held = json.loads((folder / artifacts.VECTORIZER_FILE).read_text())
            labels = len(json.loads((folder / artifacts.MANIFEST).read_text())["labels"])
            note(f"{entry['name']}: loading, then timing requests")
            loaded = load_in_fresh_process(folder)
            rows = timed_requests(entry["models"], entry["words"], args.repeat)
            lines.append(
                f"\n{entry['name']}: {len(held['vocabulary']):,} terms, {labels} labels, "
                f"ngram_range {held['params']['ngram_range']}, "
                f"vectorizer.json {(folder / artifacts.VECTORIZER_FILE).stat().st_size:,} bytes"
            )
            lines.append(
                f"  load: {loaded['outcome']} in {loaded['seconds']} s, adds {loaded['added_mb']} MB resident "
                f"(at its peak {loaded['peak_mb']} MB)"
            )
            for row in rows:
                lines.append(
                    f"  {row['shape']:<30} {row['texts']:>5} texts {row['chars']:>8,} chars {row['ms']:>8.1f} ms "
                    f"{row['answer']:>10,} answer bytes"
                )
        note("a vectorizer.json at its byte cap of the shortest strings")
        refused = load_in_fresh_process(refused_parse(root))
        lines.append(
            f"\nvectorizer.json of {MAX_VECTORIZER_BYTES:,} bytes of two-letter strings: {refused['outcome']} after "
            f"{refused['seconds']} s, peak {refused['peak_mb']} MB above the process before it"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
