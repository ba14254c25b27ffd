"""Helpers shared by the tests: reading answers, and tampering with model folders the way an attacker would."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pytest
import requests
from flask.testing import FlaskClient
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from lib.paths import MODELS_DIR, kaggle_file
from model import content_version
from tests.support.harness import ROOT as ROOT  # the tests import it from here too
from tests.support.harness import Server

if TYPE_CHECKING:
    from selenium.webdriver import Chrome
    from selenium.webdriver.remote.webdriver import WebDriver

COMMITTED_MODELS = MODELS_DIR
#: The Kaggle files where every command looks: lib/data/, else the shared copy; KAGGLE_TRAIN and KAGGLE_TEST override.
KAGGLE_TRAIN = kaggle_file("train.tsv")

KAGGLE_TEST = kaggle_file("test.tsv")

needs_kaggle = pytest.mark.skipif(
    not KAGGLE_TRAIN.is_file(),
    reason=f"Kaggle train.tsv not found at {KAGGLE_TRAIN}: put it in lib/data/ (see the README) or set KAGGLE_TRAIN",
)
needs_kaggle_test = pytest.mark.skipif(
    not KAGGLE_TEST.is_file(),
    reason=f"Kaggle test.tsv not found at {KAGGLE_TEST}: put it in lib/data/ (see the README) or set KAGGLE_TEST",
)

# Sentences in the Kaggle layout: the whole sentence, then shorter phrases of it, each rated 0-4.
TINY_SENTENCES = [
    (0, "a dull , boring and lifeless mess"),
    (0, "the worst film of the year , truly awful"),
    (1, "a tedious and forgettable sequel"),
    (1, "the plot is thin and the jokes are flat"),
    (2, "the film opens in a small town"),
    (2, "it is a movie about a family"),
    (3, "a charming and pleasant little comedy"),
    (3, "the cast is good and the story works"),
    (4, "a brilliant , moving and wonderful masterpiece"),
    (4, "the best and most entertaining film of the year"),
    (0, "boring , awful and painfully dull"),
    (4, "wonderful , brilliant and entertaining"),
]


def tiny_rows() -> list[tuple[int, int, str, int]]:
    """Return (PhraseId, SentenceId, Phrase, Sentiment) rows: each sentence, its halves, its words."""
    rows: list[tuple[int, int, str, int]] = []
    for sentence_id, (rating, sentence) in enumerate(TINY_SENTENCES, start=1):
        words = sentence.split()
        half = len(words) // 2
        phrases = [(sentence, rating), (" ".join(words[:half]), rating), (" ".join(words[half:]), rating)]
        phrases += [(word, 2) for word in words]
        for phrase, label in phrases:
            rows.append((len(rows) + 1, sentence_id, phrase, label))
    return rows


def write_tsv(path: Path, rows: list[tuple], header: str = "PhraseId\tSentenceId\tPhrase\tSentiment") -> Path:
    """Write rows as a Kaggle-style TSV."""
    lines = [header] + ["\t".join(str(value) for value in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


#: The one time format of every log line (lib/logs.py): ISO 8601, UTC, to the millisecond.
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


#: The linear family's blocks as the service's own linear models have them: word 1-2-grams and char_wb 2-5-grams.
WORD_AND_CHARACTER_BLOCKS = (
    {"ngram_range": (1, 2), "sublinear_tf": True},
    {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True},
)


def save_linear_model(models: Path, name: str, five_classes: bool = False) -> Path:
    """Fit a logistic regression over word and character n-grams of the tiny sentences, saved as ``models/name``.

    Two labels (Negative, Positive), or the five ratings with ``rating`` in each answer; served at ``/name``.
    """
    from model import NLPModel  # here, so that importing the helpers stays light

    texts = [sentence for _, sentence in TINY_SENTENCES]
    ratings = [rating for rating, _ in TINY_SENTENCES]
    labels = (
        ("negative", "somewhat negative", "neutral", "somewhat positive", "positive")
        if five_classes
        else ("Negative", "Positive")
    )
    y = ratings if five_classes else [int(rating >= 3) for rating in ratings]
    model = NLPModel(labels, family="linear", blocks=WORD_AND_CHARACTER_BLOCKS, classifier_params={"C": 10.0})
    model.vectorizer_fit(texts).train(model.vectorizer_transform(texts), y)
    metadata = {"endpoint": f"/{name}", **({"index_field": "rating"} if five_classes else {})}
    model.save(models / name, name, metadata)
    return models / name


CLIENT_TIMEOUT = 2  # seconds; shorter than the production default, so the slow-client tests finish sooner


def metric_value(text: str, name: str, **labels: str) -> float:
    """Find one sample in Prometheus text output (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def served_labels(client: FlaskClient, name: str) -> list[str]:
    """The labels a served model answers with, as its manifest gives them."""
    return list(client.application.extensions["models"].models[name].labels)


def assert_prediction(body: dict, labels: list[str]) -> None:
    """A prediction answer: one of the labels, every label's probability, confidence that of the prediction."""
    assert body["prediction"] in labels
    assert list(body["probabilities"]) == labels
    assert body["confidence"] == body["probabilities"][body["prediction"]] == max(body["probabilities"].values())
    assert abs(sum(body["probabilities"].values()) - 1) < 0.01


def rewrite_manifest(folder: Path, **changes: object) -> None:
    """Change manifest fields the way an attacker would: digests and version kept consistent."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(changes)
    if isinstance(manifest.get("files"), dict) and isinstance(manifest.get("labels"), list):
        manifest["version"] = content_version(manifest["name"], manifest["labels"], manifest["files"], manifest.get("family"))
    (folder / "manifest.json").write_text(json.dumps(manifest))


def plant(folder: Path, filename: str, payload: bytes) -> None:
    """Replace an artifact and update the manifest to match it, as a careful attacker would."""
    (folder / filename).write_bytes(payload)
    manifest = json.loads((folder / "manifest.json").read_text())
    rewrite_manifest(folder, files={**manifest["files"], filename: hashlib.sha256(payload).hexdigest()})


def declare_huge_array(folder: Path, filename: str = "weights.npy") -> None:
    """Plant a valid .npy header declaring 10**17 float64 (694 PiB): reading it raises MemoryError on any machine.

    10**12 (7 TiB) fails only where the kernel refuses to overcommit memory; 694 PiB is beyond any address space.
    """
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**17,)})
    plant(folder, filename, header.getvalue())


def name_too_long(models: Path) -> Path:
    """Make a folder in ``models`` whose manifest's path is longer than the system allows (``models`` must be deep)."""
    length = os.pathconf(models, "PC_PATH_MAX") - 2  # the longest path a folder may have, NUL and separator left
    folder = models / ("m" * (length - len(str(models)) - 1))
    assert len(folder.name) <= os.pathconf(models, "PC_NAME_MAX"), f"{models} is not deep enough"
    folder.mkdir()
    return folder


def deep_folder(root: Path, length: int) -> Path:
    """A new folder under ``root`` whose path is ``length`` characters long, made of 200-character names."""
    folder = root
    while (left := length - len(str(folder)) - 1) > 0:
        folder /= "d" * min(200, left)
    folder.mkdir(parents=True)
    return folder


class Reduce:
    """A pickle whose loading calls ``function(*args)``."""

    def __init__(self, function: object, *args: object) -> None:
        self.call = (function, args)

    def __reduce__(self) -> tuple:
        return self.call


def gadgets(marker: Path) -> dict[str, bytes]:
    """Pickles that each create ``marker`` when unpickled, in the shapes attackers use."""
    command = f"touch {marker}"
    object_array = io.BytesIO()
    np.save(object_array, np.array([Reduce(os.system, command)], dtype=object), allow_pickle=True)
    return {
        "os.system": pickle.dumps(Reduce(os.system, command)),
        "Path.touch": pickle.dumps(Reduce(Path.touch, marker)),
        "eval": pickle.dumps(Reduce(eval, f"__import__('os').system({command!r})")),
        "subprocess": pickle.dumps(Reduce(subprocess.call, ["touch", str(marker)])),
        # os reached through a NumPy module, then getattr: the hole in the old allow-list unpickler.
        "numpy-module-os": (b"cbuiltins\ngetattr\n(cnumpy.lib._datasource\nos\nVsystem\ntR(V" + command.encode() + b"\ntR."),
        "object-npy": object_array.getvalue(),
    }


def resolve(spec: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref (#/components/...) to what it names."""
    while "$ref" in item:
        node: Any = spec
        for part in item["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        item = node
    return item


def raw_exchange(server: Server, payload: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes on a fresh connection and read the whole answer (the server closes it); b"" if none in time."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as connection:
        connection.sendall(payload)
        answer = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := connection.recv(65536):
                answer += chunk
    return answer


def replace_model(models: Path, name: str, source: Path) -> None:
    """Swap a model folder in whole, the way the build does."""
    staging = models / f".{name}.new"
    shutil.copytree(source, staging)
    (models / name).rename(models / f".{name}.old")
    staging.rename(models / name)
    shutil.rmtree(models / f".{name}.old")


def served_version(url: str, name: str) -> str:
    return requests.get(f"{url}/models", timeout=10).json()["models"][name]["version"]


def wait_for_version(url: str, name: str, expected: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while served_version(url, name) != expected:
        assert time.monotonic() < deadline, f"{name} still {served_version(url, name)}, expected {expected}"
        time.sleep(0.2)


class Traffic(threading.Thread):
    """Clients calling the API without pause, counting what fails.

    They retry a GET whose kept-alive connection the server closed as they sent on it, as nginx in front does
    and as HTTP clients should: a worker that stops (reload, recycling) closes its idle connections, and a
    request already on its way on one of them can only be sent again. Status codes are never retried.
    ``versions`` holds the ``model_version`` of each answer, in the order they came.
    """

    def __init__(self, url: str, clients: int = 4) -> None:
        super().__init__(daemon=True)
        self.url, self.clients = url, clients
        self.stopping = threading.Event()
        self.failures: list[object] = []
        self.versions: list[str] = []  # list.append is atomic: the clients share it without a lock

    @property
    def answered(self) -> int:
        """How many requests were answered 200."""
        return len(self.versions)

    def run(self) -> None:
        with ThreadPoolExecutor(self.clients) as pool:
            for future in [pool.submit(self.client) for _ in range(self.clients)]:
                future.result()

    def client(self) -> None:
        session = requests.Session()
        session.mount("http://", HTTPAdapter(max_retries=Retry(total=2, connect=2, read=2, status=0, backoff_factor=0)))
        while not self.stopping.is_set():
            try:
                response = session.get(self.url, params={"query": "a fine film"}, timeout=10)
                if response.status_code == 200:
                    self.versions.append(response.json()["model_version"])
                else:
                    self.failures.append(response.status_code)
            except requests.RequestException as exc:
                self.failures.append(repr(exc))

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


# --- a real browser: Debian's chromium through its chromedriver (paths given, so nothing is downloaded) ------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MISSING_BROWSER = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
needs_chromium = pytest.mark.skipif(
    bool(MISSING_BROWSER),
    reason=f"needs Debian's chromium and chromium-driver ({', '.join(MISSING_BROWSER)} missing): "
    "apt-get install chromium chromium-driver",
)
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # the tests run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,2400",
]
TEST_BUDGET = 300.0  # seconds for a whole browser test, browser start included; each wait gets at most what is left
STEP_TIMEOUT = 90.0  # seconds one step may take: a page load, a button, an answer (/docs/ script: about 20 s to render here)

T = TypeVar("T")


class Deadline:
    """A browser test's time budget: each explicit wait gets at most what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            pytest.fail(f"the browser test ran over its {TEST_BUDGET:.0f} s budget")
        return min(left, STEP_TIMEOUT)

    def wait(self, driver: WebDriver, condition: Callable[[WebDriver], T | None], what: str) -> T:
        """Wait (polling, no sleep) until ``condition`` gives a true value, or fail saying ``what`` never happened."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            found = WebDriverWait(driver, self.left(), poll_frequency=0.1).until(condition)
        except TimeoutException:
            pytest.fail(f"timed out waiting for {what}")
        assert found is not None  # until() returns only a true value
        return found


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail the test if the block takes longer than ``seconds``, even inside one stuck WebDriver command."""

    def expire(signum: int, frame: object) -> None:
        pytest.fail(f"the browser test ran over its {seconds:.0f} s budget")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def chromium(folder: Path) -> Iterator[Chrome]:
    """Headless Chromium with a fresh profile in ``folder``, its console log kept for the test to read."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={folder / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium then skips Selenium Manager, which would try to download a driver.
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(folder / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(STEP_TIMEOUT)
        driver.set_script_timeout(STEP_TIMEOUT)
        yield driver
    finally:
        driver.quit()


def reload_under_traffic(url: str, models: Path, source: Path, send_hup: Callable[[], object], timeout: float = 20) -> Traffic:
    """Swap models/sentiment for ``source`` and send SIGHUP while clients call without pause; the stopped traffic."""
    new = json.loads((source / "manifest.json").read_text())["version"]
    assert served_version(url, "sentiment") != new
    traffic = Traffic(url)
    traffic.start()
    try:
        time.sleep(1)
        replace_model(models, "sentiment", source)
        send_hup()
        wait_for_version(url, "sentiment", new, timeout=timeout)
        time.sleep(1)
    finally:
        traffic.stop()
    return traffic
