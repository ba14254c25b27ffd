"""/docs (lib/docs.py), in process: its Content-Security-Policy, the one inline script it admits, and its assets.

Swagger UI running under this policy in a real browser: tests/test_browser.py (every operation executed, no
policy violation in the console).
"""

from __future__ import annotations

import base64
import hashlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from app import create_app
from lib.docs import ASSETS, CONTENT_SECURITY_POLICY, INIT_SCRIPT

PREFIX = "/tools/sentiment"


class Scripts(HTMLParser):
    """The page's script elements: the src of each external one, the text of each inline one."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.inline: list[str] = []
        self.styles: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.styles += [value for name, value in attrs if name == "style" and value]
        if tag == "style":
            self.styles.append("<style>")
        if tag == "script":
            self._in_script = True
            if found.get("src"):
                self.sources.append(str(found["src"]))

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data)


def policy() -> dict[str, list[str]]:
    """The policy as directive -> sources."""
    return {name: sources for name, *sources in (part.split(" ") for part in CONTENT_SECURITY_POLICY.split("; "))}


def page_scripts(client: FlaskClient, **kwargs: object) -> Scripts:
    page = client.get("/docs", **kwargs)
    assert page.status_code == 200
    scripts = Scripts()
    scripts.feed(page.get_data(as_text=True))
    return scripts


def test_docs_page_has_the_policy(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["Referrer-Policy"] == "no-referrer"
    directives = policy()
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"][0] == "'self'" and len(directives["script-src"]) == 2  # 'self' and one hash
    assert directives["style-src"] == ["'self'"]
    assert directives["img-src"] == ["'self'", "data:"]  # Swagger UI's style sheet draws its icons as data: images
    assert directives["connect-src"] == ["'self'"]
    for directive in ("object-src", "base-uri", "form-action", "frame-ancestors"):
        assert directives[directive] == ["'none'"], directive


def test_the_one_inline_script_is_the_hashed_one(client: FlaskClient) -> None:
    scripts = page_scripts(client)
    assert scripts.inline == [INIT_SCRIPT]
    digest = base64.b64encode(hashlib.sha256(scripts.inline[0].encode()).digest()).decode()
    assert policy()["script-src"][1] == f"'sha256-{digest}'"
    assert scripts.sources == ["/docs/swagger-ui-bundle.js"]
    assert not scripts.styles, "an inline style would need 'unsafe-inline'"


def test_the_inline_script_is_the_same_under_a_prefix(tiny_models: Path) -> None:
    """The document's URL is in a data attribute, so a prefix changes the page, never the hashed script."""
    # Werkzeug's test client calls from 127.0.0.1: the listed proxy, as nginx is in the pod.
    behind_proxy = create_app({"MODELS_DIR": str(tiny_models), "FORWARDED_ALLOW_IPS": "127.0.0.1"}).test_client()
    headers = {"X-Forwarded-Prefix": PREFIX}
    text = behind_proxy.get("/docs", headers=headers).get_data(as_text=True)
    assert f'data-url="{PREFIX}/openapi.json"' in text
    assert f'src="{PREFIX}/docs/swagger-ui-bundle.js"' in text
    assert page_scripts(behind_proxy, headers=headers).inline == [INIT_SCRIPT]


@pytest.mark.parametrize("filename", list(ASSETS))
def test_assets_carry_the_policy(client: FlaskClient, filename: str) -> None:
    with client.get(f"/docs/{filename}") as asset:
        assert asset.status_code == 200
        assert asset.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


class Metas(HTMLParser):
    """The page's meta elements, name -> content."""

    def __init__(self) -> None:
        super().__init__()
        self.named: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "meta" and found.get("name"):
            self.named[str(found["name"])] = str(found.get("content"))


def test_phones_get_the_mobile_layout(client: FlaskClient) -> None:
    """Without a viewport, a phone draws the desktop layout shrunk to a few pixels per letter."""
    metas = Metas()
    metas.feed(client.get("/docs").get_data(as_text=True))
    assert metas.named["viewport"] == "width=device-width, initial-scale=1"
