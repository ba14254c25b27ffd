"""/demo in a real headless browser: typed sentences get the API's answer and highlights, hostile text stays text,
keyboard-only use works and is announced, the CSP holds without violations, and the page works under a path prefix.

Debian's chromium through its chromedriver (see tests/helpers.py). Screenshots at 1280x800 and at a phone's 390x844
are saved in the test's temporary folder (the path is printed).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("selenium", reason="selenium is not installed: make test-e2e installs it (requirements-e2e.txt)")

from selenium.webdriver import Chrome
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from app import create_app
from lib.demo import CONTENT_SECURITY_POLICY
from tests.helpers import Deadline, needs_chromium
from tests.support.harness import Server

pytestmark = [pytest.mark.e2e, pytest.mark.slow, needs_chromium]

SENTENCES = [  # the last is on the screenshots: words pushing both ways
    "A charming, funny and moving comedy about İstanbul",
    "That movie was boring and far too long",
    "It is not a bad film, though the plot is thin and the ending awful.",
]
HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script> a <b>great</b> film'
EMOJI = "😀 a wonderful film 🎬, never dull"
MOSTLY_UNKNOWN = "zzqx wwqx qqqx vvqx good"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
PREFIX = "/tools/sentiment"


def shown_marks(driver: WebDriver) -> list[list[str]]:
    """The highlighted words as the page shows them: [text, kind] in text order."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#highlighted .term'), e => [e.textContent,"
        " e.classList.contains('unknown') ? 'unknown' : e.classList.contains('towards-high') ? 'towards-high' : 'towards-low']);"
    )


def expected_marks(text: str, answer: dict[str, Any]) -> list[list[str]]:
    """What the page must highlight for the API's answer: each word (not word pair) listed, by where it pushed."""
    explanation = answer["explanation"]
    towards_high = 1 if explanation["predicted"] == list(answer["probabilities"])[-1] else -1
    marks = []
    for term in explanation["terms"]:
        if " " not in term["term"]:
            kind = "towards-high" if term["contribution"] * towards_high >= 0 else "towards-low"
            marks += [(start, text[start:end], kind) for start, end in term["spans"]]
    for term in explanation["unknown_terms"]:
        if " " not in term["term"]:
            marks += [(start, text[start:end], "unknown") for start, end in term["spans"]]
    return [[word, kind] for _, word, kind in sorted(marks)]


def api_answer(base: str, text: str) -> dict[str, Any]:
    response = requests.post(f"{base}/", json={"query": text, "explain": True, "explain_terms": 100}, timeout=10)
    assert response.status_code == 200
    return response.json()


def enter(driver: WebDriver, text: str, typed: bool = True) -> None:
    """Replace the box's text: typed key by key, or (for characters chromedriver cannot type, like emoji) set and announced."""
    box = driver.find_element(By.ID, "text")
    if typed:
        box.send_keys(Keys.CONTROL + "a", Keys.BACKSPACE)
        box.send_keys(text)
    else:
        driver.execute_script(
            "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}));", box, text
        )


def wait_for_answer(driver: WebDriver, budget: Deadline, text: str) -> None:
    """Wait until the page shows the answer for exactly this text."""
    budget.wait(
        driver,
        lambda d: d.execute_script(
            "return !document.getElementById('result').hidden && document.getElementById('highlighted').textContent;"
        )
        == text,
        f"the answer for {text!r}",
    )


def check_answer(driver: WebDriver, base: str, text: str) -> dict[str, Any]:
    answer = api_answer(base, text)
    assert driver.find_element(By.ID, "label").text == answer["prediction"]
    assert driver.find_element(By.ID, "confidence").text == f"{round(answer['confidence'] * 100)}% sure"
    ratings = requests.post(f"{base}/ratings", json={"query": text}, timeout=10).json()
    assert driver.find_element(By.ID, "rating-label").text == ratings["prediction"]
    assert shown_marks(driver) == expected_marks(text, answer)
    return answer


def screenshots(driver: WebDriver, folder: Path, name: str) -> None:
    """Save the viewport at each size (the exact viewport, set through the DevTools protocol), and the whole page too."""
    for size, (width, height) in SIZES.items():
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == "phone"}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        driver.save_screenshot(str(folder / f"{name}-{size}-{width}x{height}.png"))
        whole = driver.execute_script("return document.documentElement.scrollHeight")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": whole})
        driver.save_screenshot(str(folder / f"{name}-{size}-{width}-whole-page.png"))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def csp_problems(driver: Chrome) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if "Content Security Policy" in entry["message"]]


def test_typed_sentences_get_the_apis_answer_and_highlights(
    production_server: Server, budget: Deadline, browser: Chrome, tmp_path: Path
) -> None:
    base = production_server.url
    page = requests.get(f"{base}/demo", timeout=10)
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    browser.get(f"{base}/demo")
    for text in SENTENCES:
        enter(browser, text)
        wait_for_answer(browser, budget, text)
        answer = check_answer(browser, base, text)
        assert any(kind != "unknown" for _, kind in expected_marks(text, answer)), "a sentence with words the model knows"
        assert browser.find_element(By.ID, "coverage-note").get_attribute("hidden") is not None
    screenshots(browser, tmp_path, "demo")

    enter(browser, EMOJI, typed=False)  # spans count code points; the page must not slice UTF-16 halves
    wait_for_answer(browser, budget, EMOJI)
    check_answer(browser, base, EMOJI)

    enter(browser, MOSTLY_UNKNOWN)
    wait_for_answer(browser, budget, MOSTLY_UNKNOWN)
    check_answer(browser, base, MOSTLY_UNKNOWN)
    note = browser.find_element(By.ID, "coverage-note")
    assert note.is_displayed() and "knows only" in note.text

    enter(browser, HOSTILE)
    wait_for_answer(browser, budget, HOSTILE)
    check_answer(browser, base, HOSTILE)
    assert browser.execute_script("return document.querySelectorAll('img, script:not([src]), b').length") == 0
    assert browser.execute_script("return window.pwned === undefined")
    assert "<img src=x" in browser.find_element(By.ID, "highlighted").text
    screenshots(browser, tmp_path, "demo-hostile")
    assert csp_problems(browser) == []
    print(f"screenshots in {tmp_path}")


def test_keyboard_only_use_is_announced(production_server: Server, budget: Deadline, browser: Chrome, tmp_path: Path) -> None:
    browser.get(f"{production_server.url}/demo")
    ActionChains(browser).send_keys(Keys.TAB).perform()
    active = browser.switch_to.active_element
    assert active.get_attribute("id") == "text", "the first Tab reaches the text box"
    label = browser.execute_script("return document.activeElement.labels[0].textContent")
    assert label == "Text to classify"
    outline = browser.execute_script(
        "const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth];"
    )
    assert outline == ["solid", "3px"], "a visible focus ring"
    ActionChains(browser).send_keys(SENTENCES[1]).perform()  # typed into whatever has focus: the box, reached by Tab
    status = browser.find_element(By.ID, "status")
    assert (status.get_attribute("role"), status.get_attribute("aria-live")) == ("status", "polite")
    answer = api_answer(production_server.url, SENTENCES[1])
    budget.wait(
        browser,
        lambda _: (status.get_attribute("textContent") or "").startswith(answer["prediction"] + ","),
        "the answer in the live region",
    )
    assert "Rating:" in (status.get_attribute("textContent") or "")
    screenshots(browser, tmp_path, "demo-keyboard")
    assert csp_problems(browser) == []


@pytest.fixture
def prefixed_server(tiny_models: Path) -> Iterator[str]:
    """The app mounted under a path prefix (as a proxy passing SCRIPT_NAME does), on a free loopback port, small limits."""
    app = create_app({"MODELS_DIR": str(tiny_models), "MAX_QUERY_CHARS": 60})
    mounted = DispatcherMiddleware(NotFound(), {PREFIX: app})
    server = make_server("127.0.0.1", 0, mounted, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{PREFIX}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_page_works_under_a_path_prefix_and_shows_api_errors(
    prefixed_server: str, budget: Deadline, browser: Chrome, tmp_path: Path
) -> None:
    browser.get(f"{prefixed_server}/demo")
    text = "a brilliant and wonderful film"
    enter(browser, text)
    wait_for_answer(browser, budget, text)
    check_answer(browser, prefixed_server, text)
    too_long = "boring " * 10
    message = requests.post(f"{prefixed_server}/", json={"query": too_long}, timeout=10).json()["message"]
    assert "the limit is 60" in message
    enter(browser, too_long)
    error = browser.find_element(By.ID, "error")
    budget.wait(browser, lambda _: error.is_displayed() and error.text == message, "the API's message shown as the error")
    assert error.get_attribute("role") == "alert"
    assert not browser.find_element(By.ID, "result").is_displayed()
    screenshots(browser, tmp_path, "demo-error")
    assert csp_problems(browser) == []
