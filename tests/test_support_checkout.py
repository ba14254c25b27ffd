"""The suite's guard on the checkout (tests/support/checkout.py): what counts as a change, and what is a cache."""

import subprocess
from pathlib import Path

import pytest

from tests.support import checkout
from tests.support.harness import ROOT


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A git checkout with one committed file and a .gitignore, as a user's clone has."""
    subprocess.run(["git", "init", "--quiet", str(tmp_path)], check=True)
    (tmp_path / "README.md").write_text("read me\n")
    (tmp_path / ".gitignore").write_text(".venv/\n__pycache__/\nlib/data/\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "start"], check=True
    )
    return tmp_path


def test_a_clean_checkout_has_nothing_to_report(repository: Path) -> None:
    before = checkout.snapshot(repository)
    assert before == {}
    assert checkout.changes(before, checkout.snapshot(repository) or {}) == []


def test_new_rewritten_modified_and_ignored_files_are_named(repository: Path) -> None:
    (repository / "submission.csv").write_text("66,293 lines of the user's\n")
    (repository / "lib" / "data").mkdir(parents=True)
    (repository / "lib" / "data" / "test.tsv").write_text("the user's data\n")
    before = checkout.snapshot(repository)
    assert before is not None
    (repository / "submission.csv").write_text("4 lines\n")
    (repository / "lib" / "data" / "test.tsv").unlink()
    (repository / "scores.csv").write_text("new\n")
    (repository / "README.md").write_text("changed\n")
    assert checkout.changes(before, checkout.snapshot(repository) or {}) == [
        "changed: README.md (git status ' M')",
        "no longer there: lib/data/test.tsv (git status was '!!')",
        "new: scores.csv",
        "changed: submission.csv (rewritten)",
    ]


def test_caches_are_left_out_wherever_they_are(repository: Path) -> None:
    before = checkout.snapshot(repository)
    assert before is not None
    for cache in (
        ".venv/bin/python",
        "lib/__pycache__/app.cpython-311.pyc",
        ".pytest_cache/v/x",
        ".ruff_cache/x",
        ".mypy_cache/x",
    ):
        (repository / cache).parent.mkdir(parents=True, exist_ok=True)
        (repository / cache).write_text("cached\n")
    (repository / ".venv-link").symlink_to(repository / ".venv")
    (repository / ".venv-link").rename(repository / "lib" / ".venv")  # a linked .venv is a file to git
    assert checkout.changes(before, checkout.snapshot(repository) or {}) == []


def test_outside_a_checkout_there_is_no_snapshot(tmp_path: Path) -> None:
    assert checkout.snapshot(tmp_path) is None


def test_the_report_names_the_paths_and_where_output_belongs() -> None:
    message = checkout.report(["new: scores.csv"])
    assert "new: scores.csv" in message and "tmp_path" in message and ".venv" in message


def test_hypothesis_keeps_its_database_and_caches_outside_the_checkout() -> None:
    from hypothesis import settings
    from hypothesis.configuration import storage_directory
    from hypothesis.database import DirectoryBasedExampleDatabase

    database = settings().database
    assert isinstance(database, DirectoryBasedExampleDatabase)
    assert not Path(database.path).resolve().is_relative_to(ROOT)
    assert not storage_directory("constants", intent_to_write=False).path.resolve().is_relative_to(ROOT)
