"""The full-data rebuild, started in a process of its own as the suite begins: its minute and a half overlaps the tests
that mostly wait on live servers, instead of adding to the suite's time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.support.harness import ROOT

#: How long the build may take before its test fails: several times its 85 s on a busy 2-core machine.
BUILD_TIMEOUT = 900


class BackgroundBuild:
    """``build_model.py --data DATA --out FOLDER/models`` (the README's build) in a process of its own, started at once.

    ``folder`` defaults to a new temporary one; ``environ`` is the process's environment (e.g. kernels switched off).
    ``models()`` waits for it.
    """

    def __init__(self, data: Path, folder: Path | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.folder = folder or Path(tempfile.mkdtemp(prefix="rebuilt-"))
        self.log = self.folder / "build.log"
        command = [sys.executable, "build_model.py", "--data", str(data), "--out", str(self.folder / "models")]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT)

    def models(self) -> Path:
        """The rebuilt models folder, once the build has ended well; the build's own output if it did not."""
        try:
            status = self.process.wait(BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"the build did not end within {BUILD_TIMEOUT} s:\n{self.log.read_text()[-2000:]}")
        assert status == 0, f"the build failed with status {status}:\n{self.log.read_text()[-2000:]}"
        return self.folder / "models"

    def stop(self) -> None:
        """Stop the build if it still runs (the run was cut short) and remove everything it wrote."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
