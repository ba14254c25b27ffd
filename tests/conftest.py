"""Shared fixtures: a tiny Kaggle-shaped TSV, models built from it, the app, and live servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

import build_model
from app import create_app

ROOT = Path(__file__).resolve().parent.parent
COMMITTED_MODELS = ROOT / "lib" / "models"
KAGGLE_TRAIN = Path(os.environ.get("KAGGLE_TRAIN", ROOT.parent / "shared" / "data" / "kaggle" / "train.tsv"))

needs_kaggle = pytest.mark.skipif(
    not KAGGLE_TRAIN.is_file(), reason=f"full Kaggle data not found at {KAGGLE_TRAIN} (set KAGGLE_TRAIN)"
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


@pytest.fixture(scope="session")
def tiny_tsv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small training file shaped like the Kaggle one."""
    return write_tsv(tmp_path_factory.mktemp("data") / "train.tsv", tiny_rows())


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, tiny_tsv: Path) -> Path:
    """Both models built by the real build command from the tiny file."""
    out = tmp_path_factory.mktemp("models")
    assert build_model.main(["--data", str(tiny_tsv), "--out", str(out)]) == 0
    return out


@pytest.fixture
def app(tiny_models: Path):
    """The service over the tiny models, with small limits that tests can reach."""
    return create_app({"MODELS_DIR": str(tiny_models), "MAX_QUERY_CHARS": 50, "MAX_BATCH": 3, "MAX_BODY_BYTES": 4096})


@pytest.fixture
def client(app):
    """Flask's test client for the tiny-model app."""
    return app.test_client()


@pytest.fixture(scope="session")
def committed_client():
    """Flask's test client over the committed models, as a fresh clone serves them."""
    return create_app().test_client()


def free_port() -> int:
    """Ask the OS for a free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(server: Server, timeout: float = 30.0) -> None:
    """Poll /health until it answers, failing early if the server process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}: {server.stderr.read_text()}")
        try:
            if requests.get(f"{server.url}/health", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"server at {server.url} did not become healthy within {timeout}s")


@dataclass
class Server:
    """A running server: its URL, its process, and the files its stdout and stderr go to."""

    url: str
    process: subprocess.Popen
    stdout: Path
    stderr: Path


def start_server(command: list[str], env: dict[str, str], port: int, log_dir: Path) -> Iterator[Server]:
    """Start a server process on 127.0.0.1:port, yield it once healthy, and always stop it."""
    stdout, stderr = log_dir / f"stdout-{port}.log", log_dir / f"stderr-{port}.log"
    with open(stdout, "w") as out, open(stderr, "w") as err:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=err, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", process, stdout, stderr)
    try:
        wait_until_healthy(server)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """Stop a server and everything it started (its process group), gracefully first."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python app.py`` on a free port, over the committed models: the README's first command."""
    port = free_port()
    env = {"HOST": "127.0.0.1", "PORT": str(port)}
    for server in start_server([sys.executable, "app.py"], env, port, tmp_path_factory.mktemp("dev-server")):
        yield server.url


GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
CLIENT_TIMEOUT = 2  # seconds; shorter than the default so the slow-client tests finish sooner


@pytest.fixture(scope="session")
def production_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``gunicorn -c gunicorn.conf.py`` with two workers on a free port: the production command."""
    port = free_port()
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "ACCESS_LOG": "-",
        "CLIENT_TIMEOUT": str(CLIENT_TIMEOUT),
    }
    yield from start_server([GUNICORN, "-c", "gunicorn.conf.py"], env, port, tmp_path_factory.mktemp("gunicorn"))
