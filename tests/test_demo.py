"""The demo page (lib/demo.py), in process: headers, assets, no inline script or style, relative URLs under a prefix."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from flask.testing import FlaskClient

from lib.demo import ASSETS, CONTENT_SECURITY_POLICY, STATIC

PREFIX = "/tools/sentiment"


class PageParts(HTMLParser):
    """Every tag with its attributes, and the text inside script and style elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open and data.strip():
            self.inline.append(f"<{self._open}>{data.strip()[:60]}")


def parsed(client: FlaskClient, **kwargs: str) -> PageParts:
    parts = PageParts()
    with client.get("/demo", **kwargs) as page:
        parts.feed(page.get_data(as_text=True))
    return parts


def test_demo_page_headers(client: FlaskClient) -> None:
    with client.get("/demo") as page:
        assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    policy = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert policy["script-src"] == policy["style-src"] == policy["connect-src"] == "'self'", "no inline script or style"
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-cache" and page.headers["ETag"]
    with client.get("/demo", headers={"If-None-Match": page.headers["ETag"]}) as again:
        assert again.status_code == 304


def test_demo_page_has_no_inline_script_style_or_handler(client: FlaskClient) -> None:
    parts = parsed(client)
    assert parts.inline == []
    assert [tag for tag, _ in parts.tags].count("script") == 1
    for tag, attrs in parts.tags:
        assert "style" not in attrs, tag
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        assert not any((value or "").strip().lower().startswith("javascript:") for value in attrs.values()), (tag, attrs)


def test_demo_page_is_labelled_for_screen_readers(client: FlaskClient) -> None:
    tags = parsed(client).tags
    ids = {attrs.get("id"): (tag, attrs) for tag, attrs in tags}
    assert ("label", {"for": "text"}) in tags and ids["text"][0] == "textarea"
    assert ids["status"][1]["aria-live"] == "polite" and ids["status"][1]["role"] == "status"
    assert ids["error"][1]["role"] == "alert"
    assert ("html", {"lang": "en"}) in tags


def test_the_script_reads_models_and_limits_from_the_service(client: FlaskClient) -> None:
    """No model name, path or limit is restated in the script: it reads /models and the document's x-limits."""
    script = (STATIC / "demo.js").read_text()
    assert not re.search(r"""["'`]\.?/?(sentiment|ratings)["'`]""", script)
    assert "x-limits" in script and "max_explain_terms" in script and not re.search(r"explain_terms: \d", script)
    models = client.get("/models").json["models"]
    assert {"/", "/ratings"} <= {model["endpoint"] for model in models.values()}
    assert any(model.get("index_field") == "rating" for model in models.values())
    assert client.get("/openapi.json").json["info"]["x-limits"]["max_explain_terms"] >= 1


def test_every_url_in_the_page_and_script_is_relative(client: FlaskClient) -> None:
    """So the page works under a path prefix: no URL starts with / (nor names a scheme or another host)."""
    urls = [attrs[name] for _, attrs in parsed(client).tags for name in ("href", "src") if attrs.get(name)]
    assert urls and all(url and not url.startswith("/") and not urlsplit(url).scheme for url in urls), urls
    script = (STATIC / "demo.js").read_text()
    assert not re.search(r"""fetch\(\s*["'`]/""", script) and "http" not in script.replace("https://", "")
    assert re.search(r'MODELS_URL = "models"', script) and re.search(r'DOCUMENT_URL = "openapi\.json"', script)
    assert ".innerHTML" not in script and "insertAdjacentHTML" not in script and "document.write" not in script


def test_page_and_assets_resolve_under_a_path_prefix(client: FlaskClient) -> None:
    """Mounted under a prefix (SCRIPT_NAME, as a trusted proxy sets it): every relative URL the page holds resolves there."""
    base = f"http://localhost{PREFIX}"
    page_url = f"{base}/demo"
    urls = [attrs[name] for _, attrs in parsed(client, base_url=base).tags for name in ("href", "src") if attrs.get(name)]
    # The page's links and assets, what its script reads first, and the two model paths it then calls.
    for url in [*urls, "models", "openapi.json", "./", "./ratings"]:
        path = urlsplit(urljoin(page_url, url)).path
        assert path.startswith(PREFIX + "/"), (url, path)
        api = url in ("./", "./ratings")
        body = {"query": "wonderful", "explain": True} if api else None
        with client.open(path.removeprefix(PREFIX), base_url=base, method="POST" if api else "GET", json=body) as answer:
            assert answer.status_code == 200, (url, path)


@pytest.mark.parametrize("filename", list(ASSETS))
def test_assets_are_served_with_their_types(client: FlaskClient, filename: str) -> None:
    with client.get(f"/demo/{filename}") as asset:
        assert asset.status_code == 200 and asset.mimetype == ASSETS[filename]
        assert asset.data == (STATIC / filename).read_bytes()
        assert asset.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("url", ["/demo/demo.html", "/demo/../model.py", "/demo/nope.js", "/demo/", "/demo/static/demo.js"])
def test_only_the_pages_assets_are_served(client: FlaskClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404 and response.is_json


def test_demo_is_in_the_openapi_document(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").json["paths"]
    assert "text/html" in paths["/demo"]["get"]["responses"]["200"]["content"]
    assert paths["/demo/{filename}"]["get"]["parameters"][0]["schema"]["enum"] == list(ASSETS)
