"""The real server over HTTP, called as the README shows: requests, curl and HTTPie."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.slow  # live servers called as the README does

HTTPIE = shutil.which("http") or str(Path(sys.executable).with_name("http"))


def run_json(command: list[str]) -> dict:
    """Run a client command and decode its JSON output."""
    completed = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    return json.loads(completed.stdout)


def test_requests_like_the_readme(dev_server: str) -> None:
    response = requests.get(f"{dev_server}/", {"query": "that movie was boring"}, timeout=10)
    assert response.status_code == 200
    assert response.json()["prediction"] == "Negative"
    batch = requests.post(
        f"{dev_server}/", json={"queries": ["That was pretty entertaining", "that movie was boring"]}, timeout=10
    )
    assert [p["prediction"] for p in batch.json()["predictions"]] == ["Positive", "Negative"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_like_the_readme(dev_server: str) -> None:
    body = run_json(["curl", "-s", "-X", "GET", f"{dev_server}/", "-d", "query=that movie was boring"])
    assert body["prediction"] == "Negative"
    body = run_json(["curl", "-s", "-G", f"{dev_server}/ratings", "--data-urlencode", "query=That was pretty entertaining"])
    assert body["prediction"] in {"somewhat positive", "positive"} and body["rating"] >= 3


@pytest.mark.parametrize("stdin", ["/dev/null", "empty pipe"])
def test_httpie_like_the_readme_from_a_script(dev_server: str, stdin: str) -> None:
    """The README's command verbatim, as a script, cron job or notebook runs it: stdin is not a terminal."""
    command = [HTTPIE, f"{dev_server}/", "query==that movie was boring"]
    if stdin == "/dev/null":
        with open(os.devnull, "rb") as nothing:
            completed = subprocess.run(command, stdin=nothing, capture_output=True, text=True, timeout=30, check=True)
    else:
        completed = subprocess.run(command, input="", capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(completed.stdout)["prediction"] == "Negative"


def test_httpie_like_the_readme_in_a_terminal(dev_server: str) -> None:
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
    assert requests.get(f"{dev_server}/ready", timeout=10).json()["status"] == "ready"
