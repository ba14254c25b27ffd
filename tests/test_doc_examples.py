"""Every page's examples run against the development server (its URL substituted), and every output they show
checked against the answer: the curl and HTTPie commands, the Python blocks, the tables and quoted messages."""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import requests

from client import ApiError
from tests.doc_pages import (
    PAGE_SERVER,
    PAGES,
    Block,
    blocks,
    mismatches,
    python_examples,
    runs_here,
    shell_examples,
    shown_value,
)
from tests.support.harness import ROOT

pytestmark = pytest.mark.slow  # a live server, called as the pages do

#: HTTPie as the pages run it: on the PATH, else beside this Python (the test requirements install it there).
HTTPIE = shutil.which("http") or str(Path(sys.executable).with_name("http"))
KAGGLE_LAYOUT = "PhraseId\tSentenceId\tPhrase\n156061\t1\tA gorgeous , witty film\n157451\t2\t \n171580\t3\tNone\n"


def shell(command: str, server: str) -> subprocess.CompletedProcess[str]:
    """Run a page's command line in a shell, against ``server``, with HTTPie's folder first on the PATH."""
    environ = {**os.environ, "PATH": f"{Path(HTTPIE).parent}{os.pathsep}{os.environ['PATH']}"}
    line = command.replace(PAGE_SERVER, server)
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30, env=environ, stdin=subprocess.DEVNULL)


def check_shown(shown: str, actual: object, where: str) -> None:
    """A page's shown output against the real one: a structure (JSON, a Python literal) or a printed table."""
    if shown.startswith(("{", "[")):
        assert mismatches(shown_value(shown), actual) == [], (where, actual)
    else:
        assert str(actual) == shown, (where, f"\n{actual}")


def run_shell_block(block: Block, server: str) -> int:
    """Run each command of a curl/HTTPie block and check what it shows; how many outputs were checked."""
    checked = 0
    for example in shell_examples(block.code):
        if example.command.startswith("curl "):
            completed = shell(example.command.replace("curl ", "curl -sS ", 1), server)
        else:
            completed = shell(example.command, server)
        assert completed.returncode == 0, (block.where, example.command, completed.stderr)
        answer = json.loads(completed.stdout)
        assert "message" not in answer, (block.where, example.command, answer)
        if example.shown is not None:
            check_shown(example.shown, answer, f"{block.where}: {example.command}")
            checked += 1
    return checked


def run_python_block(block: Block, server: str) -> int:
    """Run a Python block statement by statement; each expression followed by a shown output must give it."""
    namespace: dict = {}
    checked = 0
    for example in python_examples(block.code.replace(PAGE_SERVER, server)):
        code = compile(example.command, block.where, "eval" if example.shown is not None else "exec")
        value = eval(code, namespace)
        if example.shown is not None:
            check_shown(example.shown, value, f"{block.where}: {example.command}")
            checked += 1
    return checked


@pytest.mark.parametrize("block", [block for block in blocks() if runs_here(block)], ids=lambda block: block.where)
def test_page_block_runs_and_shows_what_the_service_answers(block: Block, dev_server: str) -> None:
    run = run_shell_block if block.language == "sh" else run_python_block
    shows = sum(1 for example in (shell_examples if block.language == "sh" else python_examples)(block.code) if example.shown)
    assert run(block, dev_server) == shows


def table_answers() -> list[tuple[str, str, str]]:
    """Every ``GET`` row of a page's table that shows a ``200 {...}`` answer: (page, path, shown)."""
    rows = []
    for page in PAGES:
        for line in page.read_text(encoding="utf-8").splitlines():
            found = re.match(r"^\| `GET ([^`]+)` \| `200 (\{.*?\})`", line)
            if found:
                rows.append((str(page.relative_to(ROOT)), found.group(1), found.group(2)))
    return rows


def test_tables_show_answers() -> None:
    assert {path for _, path, _ in table_answers()} >= {"/?query=that movie was boring", "/health", "/ready"}


@pytest.mark.parametrize(("page", "path", "shown"), table_answers())
def test_a_tables_answer_is_the_services(page: str, path: str, shown: str, dev_server: str) -> None:
    answer = requests.get(f"{dev_server}{path}", timeout=10)
    assert answer.status_code == 200
    check_shown(shown, answer.json(), f"{page}: GET {path}")


def many(count: int) -> dict:
    """A batch of ``count`` one-word texts."""
    return {"queries": ["fine"] * count}


#: Error messages the pages quote, each with the request that gets it.
QUOTED: list[tuple[str, str, Callable[[str], requests.Response]]] = [
    (
        "docs/client.md",
        "'queries' holds 1,500 items; the limit is 1,000 per request.",
        lambda url: requests.post(f"{url}/", json=many(1500), timeout=10),
    ),
    (
        "docs/api.md",
        "'queries[3]' must be a string, got number.",
        lambda url: requests.post(f"{url}/", json={"queries": ["a", "b", "c", 4]}, timeout=10),
    ),
    (
        "docs/api.md",
        "'queries' holds 150,001 characters in all; the limit is 150,000 per request (max_request_chars).",
        lambda url: requests.post(f"{url}/", json={"queries": ["a" * 20_000] * 7 + ["a" * 10_001]}, timeout=10),
    ),
    (
        "docs/api.md",
        "'explain' must be true or false, got 'yes'.",
        lambda url: requests.get(f"{url}/", {"query": "fine", "explain": "yes"}, timeout=10),
    ),
]


@pytest.mark.parametrize(("page", "message", "send"), QUOTED, ids=[message for _, message, _ in QUOTED])
def test_a_quoted_message_is_the_one_the_service_gives(
    page: str, message: str, send: Callable[[str], requests.Response], dev_server: str
) -> None:
    text = " ".join((ROOT / page).read_text(encoding="utf-8").split())
    answer = send(dev_server)
    assert answer.status_code in {400, 413} and answer.json() == {"message": message}
    shown = str(ApiError(answer.status_code, message)) if page == "docs/client.md" else message  # as the client raises it
    assert shown in text


def run_score_command(line: str, server: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run one ``.venv/bin/python score.py ...`` line as that script's __main__ in this interpreter (its imports are
    already loaded, which saves seconds a command), from ``workdir``, which holds its inputs: every output lands there."""
    python, script, *args = shlex.split(line.replace(PAGE_SERVER, server), comments=True)
    assert (python, script) == (".venv/bin/python", "score.py"), line
    with monkeypatch.context() as patch:
        patch.chdir(workdir)
        patch.setattr(sys, "argv", [str(ROOT / script), *args])
        with pytest.raises(SystemExit) as exited:
            runpy.run_path(str(ROOT / script), run_name="__main__")
    assert exited.value.code == 0, line


def test_score_commands_as_the_pages_show_them(dev_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each score.py command, in a folder of its own holding copies of the inputs (examples/ and a small
    lib/data/test.tsv in Kaggle's layout): an output named like a file of the checkout never replaces it."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("*.ipynb", "*.png"))
    (tmp_path / "lib" / "data").mkdir(parents=True)
    (tmp_path / "lib" / "data" / "test.tsv").write_text(KAGGLE_LAYOUT, encoding="utf-8")
    commands = [line for block in blocks() if block.language == "sh" for line in block.code.splitlines() if " score.py " in line]
    assert len(commands) == 3
    outputs = [ROOT / name for name in ("scores.csv", "scores-api.csv", "submission.csv")]
    before = [path.stat() if path.exists() else None for path in outputs]  # a user's own files of these names
    for line in commands:
        run_score_command(line, dev_server, tmp_path, monkeypatch)
    assert [path.stat() if path.exists() else None for path in outputs] == before
    in_process, through_api = ((tmp_path / name).read_text() for name in ("scores.csv", "scores-api.csv"))
    assert in_process == through_api and in_process.startswith("id,review,prediction,confidence,p_Negative,p_Positive")
    assert pd.read_csv(tmp_path / "scores.csv")["prediction"].isna().sum() == 1  # the empty review
    submission = (tmp_path / "submission.csv").read_text().splitlines()
    assert submission[0] == "PhraseId,Sentiment" and submission[2] == "157451,2" and len(submission) == 4


@pytest.mark.parametrize("stdin", ["/dev/null", "empty pipe"])
def test_httpie_from_a_script(dev_server: str, stdin: str) -> None:
    """The README's HTTPie command as a script, cron job or notebook runs it: stdin is not a terminal."""
    command = [HTTPIE, f"{dev_server}/", "query==that movie was boring"]
    if stdin == "/dev/null":
        with open(os.devnull, "rb") as nothing:
            completed = subprocess.run(command, stdin=nothing, capture_output=True, text=True, timeout=30, check=True)
    else:
        completed = subprocess.run(command, input="", capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(completed.stdout)["prediction"] == "Negative"


def test_httpie_in_a_terminal(dev_server: str) -> None:
    """The same command under a pseudo-terminal, as a person types it."""
    import pty

    output = bytearray()

    def read(fd: int) -> bytes:
        data = os.read(fd, 65536)
        output.extend(data)
        return data

    status = pty.spawn([HTTPIE, f"{dev_server}/", "query==That was pretty entertaining"], read)
    assert os.waitstatus_to_exitcode(status) == 0
    shown = re.sub(r"\x1b\[[0-9;]*m", "", output.decode())  # HTTPie colours what a terminal shows
    assert "HTTP/1.1 200 OK" in shown and re.search(r'"prediction": "Positive"', shown), shown


def test_errors_over_http_are_json(dev_server: str) -> None:
    missing = requests.get(f"{dev_server}/", timeout=10)
    assert missing.status_code == 400 and missing.headers["Content-Type"] == "application/json"
    assert "query" in missing.json()["message"]
    assert requests.get(f"{dev_server}/nowhere", timeout=10).status_code == 404
    assert requests.delete(f"{dev_server}/", timeout=10).status_code == 405
    oversized = requests.post(
        f"{dev_server}/", data=b"x" * (3 * 1024 * 1024), headers={"Content-Type": "application/json"}, timeout=10
    )
    assert oversized.status_code == 413 and "2,097,152 bytes" in oversized.json()["message"]


def test_demo_and_docs_pages_answer_as_the_readme_says(dev_server: str) -> None:
    for path in ("/docs", "/demo"):
        page = requests.get(f"{dev_server}{path}", timeout=10)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html"), path
