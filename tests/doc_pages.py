"""The documentation's pages as the tests read them: code blocks, the commands in them, the outputs they show.

A page shows a command's output as comment lines right after it (``# {"prediction": ...}``); ``...`` stands for
what the page leaves out, and a number stands for the service's rounded to the digits shown. ``mismatches``
compares such an output with the service's answer and names every place where they differ.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from pathlib import Path

from tests.support.harness import ROOT

#: The front door and every page of the site, in that order.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Where the pages say the development server listens; tests put their own server's URL in its place.
PAGE_SERVER = "http://127.0.0.1:5000"
MORE = "..."  # what a page writes for what it leaves out
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", flags=re.M | re.S)


@dataclass(frozen=True)
class Block:
    """One fenced code block of one page."""

    page: str  # the page's path from the repository's root
    line: int  # the line of its opening fence
    section: str  # the heading it is under
    language: str
    code: str

    @property
    def where(self) -> str:
        """Where a reader finds it: ``docs/api.md:103``."""
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class Example:
    """One command of a block and the output the page shows after it (None when it shows none)."""

    command: str
    shown: str | None


def blocks(pages: list[Path] = PAGES) -> list[Block]:
    """Every fenced code block of the pages, in page order."""
    found = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            before = text[: match.start()]
            headings = re.findall(r"^#+ (.+)$", before, flags=re.M)
            found.append(
                Block(
                    page=str(page.relative_to(ROOT)),
                    line=before.count("\n") + 1,
                    section=headings[-1] if headings else "",
                    language=match.group(1),
                    code=match.group(2),
                )
            )
    return found


def block(containing: str, language: str = "python") -> Block:
    """The one block of any page, in ``language``, that contains ``containing``."""
    [found] = [each for each in blocks() if each.language == language and containing in each.code]
    return found


def runs_here(block: Block) -> bool:
    """Whether tests/test_doc_examples.py runs the block: curl and HTTPie commands, Python that calls the server."""
    if block.language == "sh":
        commands = [example.command for example in shell_examples(block.code)]
        return bool(commands) and all(command.startswith(("curl ", "http ")) for command in commands)
    return block.language == "python" and PAGE_SERVER in block.code


def _comment_text(line: str) -> str:
    """A comment line's text: the ``#`` and one space after it taken off."""
    return line[1:].removeprefix(" ")


def shell_examples(code: str) -> list[Example]:
    """The commands of a shell block, each with the output shown after it (a ``# {`` or ``# [`` line and its
    continuation lines); comments of other kinds are remarks, not output."""
    examples: list[Example] = []
    lines = code.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip() or line.startswith("#"):
            continue
        shown = []
        if index < len(lines) and re.match(r"^# [\[{]", lines[index]):
            while index < len(lines) and lines[index].startswith("#"):
                shown.append(_comment_text(lines[index]))
                index += 1
        examples.append(Example(line, "\n".join(shown) if shown else None))
    return examples


def python_examples(code: str) -> list[Example]:
    """The top-level statements of a Python block, each with the comment lines right after it as its output."""
    lines = code.splitlines()
    statements = ast.parse(code).body
    examples = []
    for number, statement in enumerate(statements):
        assert statement.end_lineno is not None
        source = "\n".join(lines[statement.lineno - 1 : statement.end_lineno])
        following = statements[number + 1].lineno - 1 if number + 1 < len(statements) else len(lines)
        shown = []
        for line in lines[statement.end_lineno : following]:
            if not line.startswith("#"):
                break
            shown.append(_comment_text(line))
        examples.append(Example(source, "\n".join(shown) if shown else None))
    return examples


MORE_MARK = "\u2026more\u2026"  # stands in for ``...`` while the text is parsed


def _mark_omissions(text: str) -> str:
    """Put a parseable mark where the text has ``...``: a key in an object, a value, an item in a list."""
    out: list[str] = []
    stack: list[str] = []
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if quote:
            out.append(char)
            if char == "\\":
                out.append(text[index + 1])
                index += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
            out.append(char)
        elif char in "{[":
            stack.append(char)
            out.append(char)
        elif char in "}]":
            stack.pop()
            out.append(char)
        elif text.startswith(MORE, index):
            is_key = stack and stack[-1] == "{" and not "".join(out).rstrip().endswith(":")
            out.append(f'"{MORE_MARK}": None' if is_key else f'"{MORE_MARK}"')
            index += len(MORE) - 1
        else:
            out.append(char)
        index += 1
    return "".join(out)


def shown_value(text: str) -> object:
    """Parse a shown output, JSON or a Python literal, with its ``...`` marked."""
    marked = _mark_omissions(" ".join(text.split("\n")))
    marked = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", marked)))
    return ast.literal_eval(marked)


def _decimals(number: float) -> int:
    """How many decimals a shown number has."""
    text = repr(number)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0


def mismatches(shown: object, actual: object, where: str = "answer") -> list[str]:
    """Every place where the shown value is not the actual one: keys and items the page leaves out (``...``)
    may be anything, and a shown number must be the actual rounded to its digits."""
    if shown == MORE_MARK:
        return []
    if isinstance(shown, dict):
        if not isinstance(actual, dict):
            return [f"{where}: shown an object, got {actual!r}"]
        keys = [key for key in shown if key != MORE_MARK]
        problems = [f"{where}: no {key!r}" for key in keys if key not in actual]
        if MORE_MARK not in shown and set(actual) - set(keys):
            problems.append(f"{where}: not shown {sorted(set(actual) - set(keys))} (write ... if left out)")
        for key in keys:
            if key in actual:
                problems += mismatches(shown[key], actual[key], f"{where}[{key!r}]")
        return problems
    if isinstance(shown, list):
        if not isinstance(actual, list):
            return [f"{where}: shown a list, got {actual!r}"]
        items = [item for item in shown if item != MORE_MARK]
        if len(items) > len(actual) or (MORE_MARK not in shown and len(items) != len(actual)):
            return [f"{where}: shown {len(items)} items, got {len(actual)}"]
        return [problem for i, item in enumerate(items) for problem in mismatches(item, actual[i], f"{where}[{i}]")]
    if isinstance(shown, float) and isinstance(actual, int | float) and not isinstance(actual, bool):
        if math.isclose(round(actual, _decimals(shown)), shown, rel_tol=0, abs_tol=1e-12):
            return []
        return [f"{where}: shown {shown}, got {actual}"]
    if shown != actual or type(shown) is not type(actual):
        return [f"{where}: shown {shown!r}, got {actual!r}"]
    return []
