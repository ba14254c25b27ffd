"""wrk, the HTTP load generator: find it, run it bounded in time, and parse its text report (``parse``, pure)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

MS_PER_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
SOCKET_ERRORS = ("connect", "read", "write", "timeout")


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed something this module cannot read."""


@dataclass(frozen=True)
class WrkResult:
    """The numbers of one wrk report."""

    requests: int
    duration_s: float
    requests_per_s: float
    latency_ms: dict[float, float]  # percentile -> latency; only with --latency
    socket_errors: dict[str, int]  # connect, read, write, timeout
    non_2xx_3xx: int  # wrk counts every status above 399 here

    @property
    def errors(self) -> int:
        """Socket errors of every kind plus error statuses."""
        return sum(self.socket_errors.values()) + self.non_2xx_3xx

    def percentile(self, percent: float) -> float:
        """Latency at ``percent`` in ms; wrk prints 50, 75, 90 and 99 with --latency."""
        if percent not in self.latency_ms:
            raise WrkError(f"no {percent:g}% latency in this wrk report (run wrk with --latency)")
        return self.latency_ms[percent]


def to_ms(value: str) -> float:
    """Convert a wrk duration such as 850.00us, 1.23ms, 2.01s or 1.50m to milliseconds."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if not found:
        raise WrkError(f"unexpected wrk duration {value!r}")
    return round(float(found.group(1)) * MS_PER_UNIT[found.group(2)], 3)


def parse(output: str) -> WrkResult:
    """Read requests, duration, req/s, latency percentiles and errors out of wrk's text report."""
    total = re.search(r"^\s*(\d+) requests in ([\d.]+\w+),", output, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if not total or not rate:
        raise WrkError(f"not a wrk report:\n{output[-2000:]}")
    socket_found = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=to_ms(total.group(2)) / 1000,
        requests_per_s=float(rate.group(1)),
        latency_ms={float(p): to_ms(v) for p, v in re.findall(r"^\s+([\d.]+)%\s+(\S+)\s*$", output, re.MULTILINE)},
        socket_errors=dict(zip(SOCKET_ERRORS, map(int, socket_found.groups()) if socket_found else (0,) * 4, strict=True)),
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def ensure_wrk(note: Callable[[str], None] = print) -> str:
    """Find wrk, installing it with apt-get if missing, since every load level needs it."""
    if not shutil.which("wrk") and shutil.which("apt-get"):
        note("wrk not found; installing it with apt-get update && apt-get install -y wrk")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["update"], ["install", "-y", "wrk"]):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(["apt-get", *step], env=env, capture_output=True, timeout=300, check=False)
    found = shutil.which("wrk")
    if not found:
        raise WrkError("wrk is missing and 'apt-get install -y wrk' could not install it (root needed): install wrk, retry.")
    return found


def command(wrk: str, url: str, connections: int, seconds: int, script: Path, threads: int = 1, *extra: str) -> list[str]:
    """A wrk command with --latency (for percentiles) and a Lua script; ``extra`` goes to the script after ``--``."""
    tail = ["--", *extra] if extra else []
    return [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url, *tail]


@contextlib.contextmanager
def running(argv: Sequence[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run wrk in its own process group with its output in a file; always kill it when leaving."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def finish(process: subprocess.Popen[bytes], log_path: Path, seconds: int) -> str:
    """Wait for wrk (bounded by its duration and 30 s) and return its output; fail if it did not run cleanly."""
    try:
        process.wait(timeout=seconds + 30)
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {seconds + 30} s") from exc
    output = log_path.read_text(encoding="utf-8", errors="replace")
    if process.returncode != 0:
        raise WrkError(f"wrk failed with status {process.returncode} (output in {log_path}):\n{output[-2000:]}")
    return output
