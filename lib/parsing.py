"""Reading a request: where ``query`` or ``queries`` come from, and what makes them acceptable.

``query`` may come in the URL, a form body or a JSON body; ``{"queries": [...]}`` in a JSON body is a
batch. An empty body is no body, whatever its Content-Type (HTTPie run from a script sends one with
``application/json``). When the URL has ``query`` and the body is not a batch, the URL's answers and
the body is only checked to be well-formed. Each function raises ``RequestRefused`` with a message naming
the field and what was wrong.

``explain=true`` (and ``explain_terms``, how many terms to list) may come in the URL, a form or a JSON body,
for one query or a whole batch; the URL's wins over the body's. A request without a body and without
``explain`` in the URL pays about a microsecond for it (measured: ``python -m bench.request_cost``).

A request's cost grows with its characters, and an explanation's far faster than a plain score's, so ``check_cost``
holds every request to budgets of characters, and of texts, characters and listed terms to explain, before any text
is scored
(sized by ``python -m bench.worst_case``).
"""

from __future__ import annotations

import re
from typing import Any

from flask import request
from werkzeug.exceptions import BadRequest, ClientDisconnected

from lib.errors import RequestRefused
from lib.settings import MAX_EXPLAIN_TERMS, Settings

#: ``explain`` in a URL or form: these spellings, in any case; in JSON, only true or false.
TRUE_WORDS, FALSE_WORDS = frozenset({"true", "1"}), frozenset({"false", "0"})
ABSENT = object()


def json_type(value: Any) -> str:
    """Name a decoded JSON value's type as JSON does, for messages to any client."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def json_object() -> dict[str, Any]:
    """Return the request's JSON body, which must be an object."""
    try:
        body = request.get_json()
    except ClientDisconnected:
        raise
    except BadRequest:
        raise RequestRefused(400, 'Malformed JSON body. Send a JSON object such as {"query": "text"}.') from None
    except RecursionError:
        raise RequestRefused(400, 'JSON body nested too deeply. Send a flat object such as {"queries": ["text"]}.') from None
    if not isinstance(body, dict):
        raise RequestRefused(400, f'JSON body must be an object such as {{"query": "text"}}, got {json_type(body)}.')
    return body


def json_body() -> dict[str, Any] | None:
    """Return the request's JSON object, or None without a JSON body (an empty one, as HTTPie sends from scripts, is none)."""
    return json_object() if request.is_json and request.content_length else None


def read_batch_body() -> dict[str, Any] | None:
    """Return a JSON body that holds ``queries`` (a batch), or None when the request is a single query."""
    body = json_body()
    return body if body is not None and "queries" in body else None


def read_query(settings: Settings) -> str:
    """Find ``query`` in the URL, a JSON body or a form body, and check it."""
    args = request.args
    if "query" in args:
        given = args.getlist("query")
        if len(given) > 1:
            raise RequestRefused(
                400, f"'query' appears {len(given)} times in the URL. Send one, or POST {{\"queries\": [...]}} for several."
            )
        value: Any = given[0]
    elif (body := json_body()) is not None:
        value = body.get("query")
    else:
        value = request.form.get("query")
    return checked_text(value, "query", settings)


def read_batch(body: dict[str, Any], settings: Settings) -> list[str]:
    """Check a batch ``{"queries": [...]}``: a list of non-blank strings within the limits."""
    queries = body["queries"]
    if not isinstance(queries, list):
        raise RequestRefused(400, f"'queries' must be an array of strings, got {json_type(queries)}.")
    if not queries:
        raise RequestRefused(400, "'queries' is empty. Send at least one string.")
    if len(queries) > settings.max_batch:
        raise RequestRefused(413, f"'queries' holds {len(queries):,} items; the limit is {settings.max_batch:,} per request.")
    return [checked_text(query, f"queries[{index}]", settings) for index, query in enumerate(queries)]


def checked_text(value: Any, name: str, settings: Settings) -> str:
    """Return a text to classify, or raise naming the field and what was wrong with it."""
    if value is None and name != "query":
        raise RequestRefused(400, f"'{name}' must be a string, got null.")
    if value is None:
        raise RequestRefused(
            400,
            f"Missing required parameter '{name}'. Send it in the URL (?query=...), "
            'a form body (query=...) or a JSON body ({"query": "..."}).',
        )
    if not isinstance(value, str):
        raise RequestRefused(400, f"'{name}' must be a string, got {json_type(value)}.")
    if not value.strip():
        raise RequestRefused(400, f"'{name}' is blank. Send some text to classify.")
    if len(value) > settings.max_query_chars:
        raise RequestRefused(413, f"'{name}' is {len(value):,} characters long; the limit is {settings.max_query_chars:,}.")
    return value


def check_cost(texts: list[str], explain: int | None, settings: Settings, name: str = "queries") -> None:
    """Refuse, before any scoring, texts whose scoring (or explaining, when ``explain`` is set) is over budget."""
    chars = sum(map(len, texts))
    held = f"'{name}' is {chars:,} characters long" if name == "query" else f"'{name}' holds {chars:,} characters in all"
    if chars > settings.max_request_chars:
        raise RequestRefused(413, f"{held}; the limit is {settings.max_request_chars:,} per request (max_request_chars).")
    if explain is None:
        return
    if len(texts) > settings.max_explain_texts:
        raise RequestRefused(
            413,
            f"'{name}' holds {len(texts):,} items to explain; the limit is {settings.max_explain_texts:,} per request "
            "with explain (max_explain_texts). Explain fewer texts per request.",
        )
    if chars > settings.max_explain_chars:
        raise RequestRefused(
            413, f"{held}; the limit is {settings.max_explain_chars:,} per request with explain (max_explain_chars)."
        )
    if len(texts) * explain > settings.max_explained_terms:
        what = "one text" if len(texts) == 1 else f"{len(texts):,} texts"
        raise RequestRefused(
            413,
            f"Explaining {what} with explain_terms={explain} lists up to {len(texts) * explain:,} terms; the limit is "
            f"{settings.max_explained_terms:,} per request (max_explained_terms). Ask for fewer terms or texts.",
        )


def read_explain(settings: Settings) -> int | None:
    """Return how many terms to explain, or None unless ``explain`` is true (URL first, then a JSON or form body)."""
    current = request._get_current_object()  # type: ignore[attr-defined]  # one context look-up: runs on every prediction
    if "explain" not in current.args and not current.content_length:
        return None
    explain = option("explain")
    if explain is ABSENT or not checked_flag(explain, "explain"):
        return None
    terms = option("explain_terms")
    return settings.explain_terms if terms is ABSENT else checked_count(terms, "explain_terms")


def option(name: str) -> Any:
    """Find an optional field in the URL, else in a JSON or form body; ABSENT when nowhere."""
    if name in request.args:
        given = request.args.getlist(name)
        if len(given) > 1:
            raise RequestRefused(400, f"'{name}' appears {len(given)} times in the URL. Send it once.")
        return given[0]
    if not request.content_length:
        return ABSENT
    body = json_body()
    if body is not None:
        return body.get(name, ABSENT)
    return request.form.get(name, ABSENT)


def checked_flag(value: Any, name: str) -> bool:
    """Read a yes/no field: JSON true or false, or in a URL or form true, false, 1 or 0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in TRUE_WORDS | FALSE_WORDS:
        return value.lower() in TRUE_WORDS
    shown = repr(value) if isinstance(value, str) else json_type(value)
    raise RequestRefused(400, f"'{name}' must be true or false, got {shown[:60]}.")


def checked_count(value: Any, name: str) -> int:
    """Read a whole number from 1 to MAX_EXPLAIN_TERMS: a JSON integer, or digits in a URL or form."""
    number = int(value) if isinstance(value, str) and re.fullmatch("[0-9]{1,6}", value) else value
    if type(number) is int and 1 <= number <= MAX_EXPLAIN_TERMS:
        return number
    shown = repr(value) if isinstance(value, str) else str(value) if type(value) is int else json_type(value)
    raise RequestRefused(400, f"'{name}' must be a whole number from 1 to {MAX_EXPLAIN_TERMS}, got {shown[:60]}.")
