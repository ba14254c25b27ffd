"""/demo in a real headless browser: typed sentences get the API's answer and highlights, hostile text stays text,
keyboard-only use works and is announced, the CSP holds without violations, and the page works under a path prefix.

Debian's chromium through its chromedriver (see tests/helpers.py). Screenshots at 1280x800 and at a phone's 390x844
are saved in the test's temporary folder (the path is printed).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
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
from selenium.webdriver.support.select import Select
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
MINUS = "\u2212"
NOTHING_KNOWN = "qqqq xxxq"


def shown_marks(driver: WebDriver) -> list[list[str]]:
    """The highlighted words as the page shows them: [text, kind, sign] in text order."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#highlighted .term'), e => [e.textContent,"
        " e.classList.contains('unknown') ? 'unknown' : e.classList.contains('towards-answer') ? 'towards-answer' :"
        " 'towards-other', e.dataset.sign || '?']);"
    )


def expected_marks(text: str, answer: dict[str, Any]) -> list[list[str]]:
    """What the page must highlight for the API's answer: each word (not word pair) listed, signed as the API signs it:
    + towards the answer (a positive contribution), - towards the runner-up."""
    explanation = answer["explanation"]
    marks = []
    for term in explanation["terms"]:
        if " " not in term["term"]:
            towards = term["contribution"] >= 0
            kind, sign = ("towards-answer", "+") if towards else ("towards-other", MINUS)
            marks += [(start, text[start:end], kind, sign) for start, end in term["spans"]]
    for term in explanation["unknown_terms"]:
        if " " not in term["term"]:
            marks += [(start, text[start:end], "unknown", "?") for start, end in term["spans"]]
    return [[word, kind, sign] for _, word, kind, sign in sorted(marks)]


def api_answer(base: str, text: str, path: str = "/") -> dict[str, Any]:
    response = requests.post(f"{base}{path}", json={"query": text, "explain": True, "explain_terms": 100}, timeout=10)
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


def signed(number: float) -> str:
    """A number as the page shows it: its sign (+ or the minus sign), then three decimals."""
    return ("+" if number >= 0 else MINUS) + f"{abs(number):.3f}"


def check_answer(driver: WebDriver, base: str, text: str, path: str = "/") -> dict[str, Any]:
    """The page shows the API's answer, and one sign convention in the table, the highlights, the footnote and the bar."""
    answer = api_answer(base, text, path)
    explanation = answer["explanation"]
    assert driver.find_element(By.ID, "label").text == answer["prediction"]
    shown_labels = driver.execute_script(
        "return Array.from(document.querySelectorAll('#rating-list .rating-name'), e => e.textContent)"
    )
    assert shown_labels == list(answer["probabilities"])
    assert shown_marks(driver) == expected_marks(text, answer)
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('#terms tr'), r => Array.from(r.cells, c => c.textContent))"
    )
    listed = explanation["terms"][: len(rows)]
    assert rows == [
        [term["term"], signed(term["contribution"]), explanation["predicted" if term["contribution"] >= 0 else "runner_up"]]
        for term in listed
    ]
    footnote = driver.find_element(By.ID, "log-odds").text
    assert f"of {explanation['predicted']} over {explanation['runner_up']}: {signed(explanation['log_odds'])} in all" in footnote
    assert signed(explanation["prior_difference"]) in footnote
    prior_only = not explanation["terms"] and not explanation["terms_omitted"]["count"]
    if not prior_only:
        assert explanation["log_odds"] >= 0, "the answer is the label the model scores highest"
        assert driver.find_element(By.ID, "confidence").text == f"{round(answer['confidence'] * 100)}% sure"
    labels = list(answer["probabilities"])
    if len(labels) == 2:  # each end of the bar holds its own label's share: the last label's fill is at the right end
        bar, fill = (driver.find_element(By.ID, name).rect for name in ("bar", "bar-fill"))
        assert abs(fill["x"] + fill["width"] - (bar["x"] + bar["width"])) <= 2
        assert abs(fill["width"] - answer["probabilities"][labels[-1]] * (bar["width"] - 2)) <= 2
    else:
        assert not driver.find_element(By.ID, "scale").is_displayed()
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
        assert any(kind != "unknown" for _, kind, _ in expected_marks(text, answer)), "a sentence with words the model knows"
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
    assert not browser.find_element(By.ID, "prior-only").is_displayed()

    enter(browser, NOTHING_KNOWN)  # the answer is the prior alone: said first, in large type, above the label
    wait_for_answer(browser, budget, NOTHING_KNOWN)
    answer = check_answer(browser, base, NOTHING_KNOWN)
    assert not answer["explanation"]["terms"]
    prior = browser.find_element(By.ID, "prior-only")
    assert prior.is_displayed() and prior.text.startswith("Only the prior")
    assert prior.rect["y"] < browser.find_element(By.ID, "label").rect["y"]
    assert browser.find_element(By.ID, "confidence").text == f"{round(answer['confidence'] * 100)}%, the prior alone"
    assert "Only the prior" in (browser.find_element(By.ID, "status").get_attribute("textContent") or "")
    screenshots(browser, tmp_path, "demo-prior-only")

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
    assert "sure" in (status.get_attribute("textContent") or "")
    screenshots(browser, tmp_path, "demo-keyboard")
    assert csp_problems(browser) == []


def footnote_changed(before: str) -> Callable[[WebDriver], bool]:
    """A wait condition: the footnote no longer reads ``before`` (a new answer is shown)."""
    return lambda driver: driver.find_element(By.ID, "log-odds").text != before


@pytest.fixture
def mixed_server(mixed_models: Path) -> Iterator[str]:
    """The app over naive Bayes and linear models (word and character n-grams), on a free loopback port."""
    with threaded_server(create_app({"MODELS_DIR": str(mixed_models)})) as url:
        yield url


@contextlib.contextmanager
def threaded_server(app: Any) -> Iterator[str]:
    """Serve a WSGI app on a free loopback port in a thread, stopped on exit."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_the_picker_lists_the_served_models_and_scores_through_the_chosen_one(
    mixed_server: str, budget: Deadline, browser: Chrome, tmp_path: Path
) -> None:
    served = requests.get(f"{mixed_server}/models", timeout=10).json()["models"]
    browser.get(f"{mixed_server}/demo")
    picker = Select(browser.find_element(By.ID, "model"))
    budget.wait(browser, lambda _: len(picker.options) == len(served), "the served models in the picker")
    choices = {option.get_attribute("value"): option.text for option in picker.options}
    assert choices == {
        f".{model['endpoint']}": f"{name} ({'naive Bayes' if model['family'] == 'naive_bayes' else 'linear'})"
        for name, model in served.items()
    }
    assert picker.first_selected_option.get_attribute("value") == "./", "the main model first"
    text = "That movie was boring and far too long"
    enter(browser, text)
    wait_for_answer(browser, budget, text)
    check_answer(browser, mixed_server, text)
    for name in ("sentiment-logreg", "ratings-logreg"):
        path = served[name]["endpoint"]
        before = browser.find_element(By.ID, "log-odds").text
        picker.select_by_value(f".{path}")
        budget.wait(browser, footnote_changed(before), name)
        answer = check_answer(browser, mixed_server, text, path)
        assert "score (logit) difference" in browser.find_element(By.ID, "log-odds").text
        assert name in (browser.find_element(By.ID, "status").get_attribute("textContent") or "")
        assert answer["model_version"] == served[name]["version"]
        screenshots(browser, tmp_path, f"demo-{name}")
    assert csp_problems(browser) == []


@pytest.fixture
def prefixed_server(tiny_models: Path) -> Iterator[str]:
    """The app mounted under a path prefix (as a proxy passing SCRIPT_NAME does), on a free loopback port, small limits."""
    app = create_app({"MODELS_DIR": str(tiny_models), "MAX_QUERY_CHARS": 60})
    with threaded_server(DispatcherMiddleware(NotFound(), {PREFIX: app})) as url:
        yield f"{url}{PREFIX}"


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
