"""/docs in a real headless browser: "Try it out" then "Execute" on every operation, with Swagger UI's defaults.

Debian's chromium, driven by selenium through Debian's chromedriver (paths given, so nothing is downloaded), against the
production command. The operations come from the served /openapi.json, so a new model's paths are covered without
editing this file. Screenshots of each executed operation are saved in the test's temporary folder. Then /docs on a
phone's screen: its layout, and POST / sending the one example it shows.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("selenium", reason="selenium is not installed: make test-e2e installs it (requirements-e2e.txt)")

from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.helpers import Deadline, needs_chromium, resolve
from tests.support.harness import Server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,  # a live server too, so `-m "not slow"` leaves it out as well
    needs_chromium,
]

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
FETCH_ERROR = "Failed to execute 'fetch'"
CSP_REFUSAL = "Content Security Policy"  # Chromium's words when the policy blocks something


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every (path, method, operation) of the document, in its order."""
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def block_id(operation: dict[str, Any]) -> str:
    """The id Swagger UI gives an operation's block when deep linking is on: operations-<tag>-<operationId>."""
    return f"operations-{operation['tags'][0]}-{operation['operationId']}".replace(" ", "_")


def fill_empty_parameters(block: WebElement, document: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    """Give the document's example to a parameter Swagger UI left empty, if the call needs it; return those filled.

    Needed means required, or the operation has no request body (a GET's text can only come in the URL: without it the
    answer is the documented 400). Swagger UI 4 pre-fills ``example`` itself, so this usually fills nothing.
    """
    filled = []
    has_body = "requestBody" in operation
    for parameter in (resolve(document, p) for p in operation.get("parameters", [])):
        if not (parameter.get("required") or (not has_body and "example" in parameter)):
            continue
        row = block.find_element(By.CSS_SELECTOR, f'tr[data-param-name="{parameter["name"]}"][data-param-in="{parameter["in"]}"]')
        fields = row.find_elements(By.CSS_SELECTOR, "input, textarea, select")
        assert fields, f"no input for parameter {parameter['name']!r}"
        field = fields[0]
        if field.tag_name == "select" or field.get_attribute("value"):
            continue  # an enum's select shows (and sends) its first value; a filled input keeps Swagger UI's value
        example = parameter.get("example", resolve(document, parameter.get("schema", {})).get("example"))
        assert example is not None, (
            f"Swagger UI left required parameter {parameter['name']!r} empty and the document has no example"
        )
        field.send_keys(str(example))
        filled.append(parameter["name"])
    return filled


LIVE_ROW = ".live-responses-table tbody tr.response"  # the executed call's row (the thead has a "Code" cell too)


def live_status(block: WebElement) -> str | None:
    """The status code of the executed call as Swagger UI shows it ('200'), or None while the answer is pending."""
    cells = block.find_elements(By.CSS_SELECTOR, f"{LIVE_ROW} td.response-col_status")
    if not cells:
        return None
    match = re.match(r"\s*(\d{3})", cells[0].text)
    return match.group(1) if match else f"no status ({live_error(block)!r})"


def live_error(block: WebElement) -> str:
    """The error Swagger UI shows when the call itself failed ('TypeError: Failed to execute 'fetch'...'), else ''.

    Swagger UI renders it as Markdown straight inside the row's Details cell, before (and apart from) any response body,
    which may itself contain such words (the /docs/ script does).
    """
    return block.parent.execute_script(
        "return Array.from(arguments[0].querySelectorAll(arguments[1]), e => e.textContent).join(' ');",
        block,
        f"{LIVE_ROW} td.response-col_description > :is(.markdown, .renderedMarkdown)",
    )


def execute(
    driver: WebDriver, deadline: Deadline, base: str, document: dict[str, Any], operation: dict[str, Any]
) -> tuple[str, list[str]]:
    """Open /docs, expand the operation, Try it out, Execute with the defaults: the status Swagger UI shows, and the
    parameters this had to fill."""
    driver.get(base + "/docs")
    name = operation["operationId"]
    block = deadline.wait(driver, lambda d: d.find_element(By.ID, block_id(operation)), f"{name}'s block on /docs")
    block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    try_out = deadline.wait(driver, lambda _: block.find_element(By.CSS_SELECTOR, "button.try-out__btn"), f"{name}: Try it out")
    try_out.click()
    run = deadline.wait(driver, lambda _: block.find_element(By.CSS_SELECTOR, "button.execute"), f"{name}: Execute")
    filled = fill_empty_parameters(block, document, operation)
    run.click()
    return deadline.wait(driver, lambda _: live_status(block), f"{name}: the live response"), filled


def test_try_it_out_executes_every_operation(
    production_server: Server, budget: Deadline, browser: Chrome, tmp_path: Path
) -> None:
    document = requests.get(production_server.url + "/openapi.json", timeout=10).json()
    seen: dict[str, str] = {}
    seconds: dict[str, float] = {}
    filled: dict[str, list[str]] = {}
    problems: list[str] = []
    console: list[dict[str, Any]] = []
    for path, method, operation in operations(document):
        label = f"{method.upper()} {path}"
        started = time.monotonic()
        status, filled[label] = execute(browser, budget, production_server.url, document, operation)
        seen[label], seconds[label] = status, round(time.monotonic() - started, 1)
        # The viewport, from the operation's top: the pre-filled values, the request sent and the status that came back.
        block = browser.find_element(By.ID, block_id(operation))
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", block)
        browser.save_screenshot(str(tmp_path / f"{operation['operationId']}.png"))
        console += browser.get_log("browser")
        if status not in operation["responses"]:
            problems.append(f"{label}: {status} is not a status the document lists ({', '.join(operation['responses'])})")
        # With the defaults every operation is a happy path: predictions get the example text (GET in the URL, POST
        # the example batch), the others need nothing, and /docs/{filename} sends its enum's first file.
        elif not status.startswith("2"):
            problems.append(f"{label}: {status}, expected 2xx with the pre-filled values")
        if error := live_error(block):
            problems.append(f"{label}: Swagger UI shows the call failed: {error[:500]!r}")
    (tmp_path / "statuses.json").write_text(json.dumps({"status": seen, "seconds": seconds, "filled": filled}, indent=2))
    print(f"statuses seen: {json.dumps(seen)}; seconds each: {json.dumps(seconds)}; screenshots in {tmp_path}")
    problems += [f"browser console: {entry['message']}" for entry in console if FETCH_ERROR in entry["message"]]
    # /docs runs under its Content-Security-Policy (lib/docs.py): Swagger UI must need nothing it refuses.
    problems += [f"browser console: {entry['message']}" for entry in console if CSP_REFUSAL in entry["message"]]
    assert seen, "/openapi.json lists no operation"
    assert not problems, "\n".join(problems)


#: A phone's screen in CSS pixels (an iPhone 14's), with touch-screen emulation, under which Chromium honours (or lacks)
#: the page's viewport meta: without one, a phone lays the page out 980 px wide and shrinks it to fit.
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True}


def test_docs_on_a_phone_has_the_mobile_layout_and_post_sends_only_its_body(
    production_server: Server, budget: Deadline, browser: Chrome, tmp_path: Path
) -> None:
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    document = requests.get(production_server.url + "/openapi.json", timeout=10).json()
    post = document["paths"]["/"]["post"]
    status, filled = execute(browser, budget, production_server.url, document, post)
    block = browser.find_element(By.ID, block_id(post))
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", block)
    browser.save_screenshot(str(tmp_path / "phone-post.png"))
    layout_width = browser.execute_script("return document.documentElement.clientWidth")
    assert layout_width == PHONE["width"]  # 980 without the viewport meta, and every letter shrunk to fit
    assert (status, filled) == ("200", [])
    assert not block.find_elements(By.CSS_SELECTOR, 'tr[data-param-name="query"]')  # the text goes in the body only
    sent = block.find_element(By.CSS_SELECTOR, ".request-url pre").text
    assert sent.rstrip("/") == production_server.url, sent
