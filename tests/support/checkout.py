"""What the suite may leave in the checkout: caches only. The user's files (a submission.csv, lib/data/) are theirs.

``snapshot()`` records ``git status --porcelain --ignored`` file by file, with each untracked or ignored file's size and
modification time (so an overwritten file shows even when git's status for it stays the same); ``changes()`` names what
differs between two snapshots. The caches below are left out: tools rebuild them, and nobody keeps work in them.
"""

from __future__ import annotations

import getpass
import hashlib
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

#: Folders tools keep for themselves, anywhere in the tree: the virtualenv, bytecode, pytest's and the linters' caches.
CACHES = (".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache")

#: path -> (git's two-letter status, (size, mtime in ns) of an untracked or ignored file, else None)
Snapshot = Mapping[str, tuple[str, tuple[int, int] | None]]


def pathspecs() -> list[str]:
    """The whole tree but the caches, wherever they are (a cache may be a folder or, like a linked .venv, a file)."""
    excluded = [f":(exclude,glob)**/{name}{tail}" for name in CACHES for tail in ("", "/**")]
    return [".", *excluded]


def snapshot(root: Path) -> Snapshot | None:
    """Every untracked, ignored or modified path under ``root`` but the caches; None if ``root`` is no git checkout."""
    git = shutil.which("git")
    if git is None:
        return None
    command = [git, "status", "--porcelain=v1", "-z", "--ignored=traditional", "--untracked-files=all", "--", *pathspecs()]
    done = subprocess.run(command, cwd=root, capture_output=True, check=False)
    if done.returncode != 0:
        return None
    state: dict[str, tuple[str, tuple[int, int] | None]] = {}
    entries = iter(done.stdout.decode("utf-8", "surrogateescape").split("\0"))
    for entry in entries:
        if not entry:
            continue
        status, path = entry[:2], entry[3:]
        if status[0] in "RC":  # a rename or copy: its source path follows as the next entry
            next(entries, None)
        state[path] = (status, signature(root / path) if status in ("??", "!!") else None)
    return state


def signature(path: Path) -> tuple[int, int] | None:
    """A file's size and modification time, enough to see it was rewritten; None for a folder or a vanished path."""
    try:
        info = path.lstat()
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns) if not path.is_dir() else None


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """One line per path that appeared, vanished or changed between the snapshots, sorted."""
    lines = []
    for path in sorted(before.keys() | after.keys()):
        if path not in before:
            status = after[path][0]
            lines.append(f"new: {path}" if status in ("??", "!!") else f"changed: {path} (git status {status!r})")
        elif path not in after:
            lines.append(f"no longer there: {path} (git status was {before[path][0]!r})")
        elif before[path] != after[path]:
            was, now = before[path][0], after[path][0]
            lines.append(f"changed: {path}" + (f" (git status {was!r} -> {now!r})" if was != now else " (rewritten)"))
    return lines


def report(lines: list[str]) -> str:
    """The failure message: what the tests left in the checkout, and where such output belongs."""
    listed = "\n  ".join(lines)
    return (
        f"The tests changed the checkout (git status --porcelain --ignored, caches {', '.join(CACHES)} aside):\n  {listed}\n"
        "Tests write to tmp_path (or tmp_path_factory), never into the repository: restore or remove these paths. (Found "
        "after the last test: the test this is reported against is only where it was noticed.)"
    )


def checkout_key(root: Path) -> str:
    """A short name for this checkout and user, for folders kept outside it (two clones never share one)."""
    return hashlib.sha256(f"{getpass.getuser()}:{root}".encode()).hexdigest()[:12]
