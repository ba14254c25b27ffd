"""The documentation site: mkdocs.yml builds every page in strict mode, and a broken link or anchor fails the build."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.doc_pages import PAGES
from tests.support.harness import ROOT

MKDOCS = [sys.executable, "-m", "mkdocs", "build", "--strict"]
QUIET = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # the theme's notice about MkDocs 2, not a warning about the pages


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """Build the site of ``config`` into ``site``, as make docs does (never --quiet: it hides what --strict counts)."""
    command = [*MKDOCS, "--config-file", str(config), "--site-dir", str(site)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=QUIET)


def test_nav_lists_every_page_in_order() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = [next(iter(entry.values())) for entry in config["nav"]]
    assert nav == ["index.md", "api.md", "client.md", "models.md", "operations.md", "performance.md", "development.md"]
    assert sorted(nav) == sorted(page.name for page in PAGES[1:])


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    built = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert built.returncode == 0, built.stderr
    assert "WARNING" not in built.stderr
    assert (tmp_path / "site" / "api" / "index.html").is_file()
    for page in (tmp_path / "site").rglob("*.html"):  # read offline or on an intranet: no fonts or scripts from elsewhere
        assert not re.search(r'<(script|link)[^>]*(src|href)="https?://', page.read_text(encoding="utf-8")), page


@pytest.mark.slow  # a second build, of a copy with one broken anchor
def test_a_broken_anchor_fails_the_build(tmp_path: Path) -> None:
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    with (tmp_path / "docs" / "index.md").open("a", encoding="utf-8") as page:
        page.write("\nSee [the limits](api.md#no-such-heading).\n")
    built = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert built.returncode != 0
    assert "does not contain an anchor '#no-such-heading'" in built.stderr
