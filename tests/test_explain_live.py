"""The README's Explanations examples, run verbatim against the development server (host and port substituted)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import requests

pytestmark = pytest.mark.slow  # a live server, called as the README does


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_explain_like_the_readme(dev_server: str) -> None:
    command = ["curl", "-G", f"{dev_server}/", "--data-urlencode", "query=It is not a bad film", "-d", "explain=true"]
    command += ["-d", "explain_terms=3"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    answer = json.loads(completed.stdout)
    assert answer["prediction"] == "Negative" and answer["confidence"] == 0.85
    explanation = answer["explanation"]
    assert (explanation["predicted"], explanation["runner_up"]) == ("Negative", "Positive")
    assert round(explanation["log_odds"], 4) == 1.3155 and round(explanation["prior_difference"], 4) == -0.2044
    shown = [(term["term"], round(term["contribution"], 4), term["spans"]) for term in explanation["terms"]]
    assert shown == [("bad", 0.6889, [[12, 15]]), ("bad film", 0.6711, [[12, 20]]), ("not bad", -0.3958, [[6, 15]])]
    assert explanation["terms_omitted"]["count"] == 6 and explanation["unknown_terms"] == []


def test_requests_explain_like_the_readme(dev_server: str) -> None:
    answer = requests.post(
        f"{dev_server}/ratings",
        json={"queries": ["That was pretty entertaining"], "explain": True, "explain_terms": 2},
        timeout=10,
    ).json()
    explanation = answer["predictions"][0]["explanation"]
    assert (explanation["predicted"], explanation["runner_up"]) == ("positive", "somewhat negative")
    assert [(term["term"], round(term["contribution"], 4)) for term in explanation["terms"]] == [
        ("entertaining", 0.9836),
        ("that was", -0.5554),
    ]
    assert explanation["terms_omitted"] == {"count": 3, "contribution": pytest.approx(-0.3752, abs=1e-4)}
    assert explanation["unknown_terms"][0] == {"term": "was pretty", "count": 1, "spans": [[5, 15]]}


def test_demo_page_like_the_readme(dev_server: str) -> None:
    page = requests.get(f"{dev_server}/demo", timeout=10)
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers
