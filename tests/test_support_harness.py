"""tests/support/harness.py: starting a tiny server on loopback, watching its processes, stopping its whole group."""

import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.support import harness

# A stand-in server: answers 200 on /health at $HOST:$PORT, and starts a child, as the production server starts workers.
TINY_SERVER = textwrap.dedent(
    """
    import http.server, os, subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(str(child.pid).encode())
        def log_message(self, *args):
            pass
    http.server.HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
    """
)


def gone(pid: int, timeout: float = 5.0) -> bool:
    """Wait until the process has exited: it no longer exists, or is a zombie waiting for its new parent to reap it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_serving_starts_on_loopback_and_stops_the_whole_process_group(tmp_path: Path) -> None:
    with harness.serving([sys.executable, "-c", TINY_SERVER], {"PORT": "1"}, tmp_path, name="tiny") as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        child = int(requests.get(server.url + "/health", timeout=5).text)
        assert harness.descendants(server.process.pid) == harness.live_descendants(server.process.pid) == [child]
        assert harness.connections_by_worker(server) == {child: 0}
        memory = harness.memory_snapshot(server.process.pid)
        assert len(memory["workers_mb"]) == 1 and 0 < memory["total_anon_mb"] < memory["total_mb"]
        server.check_alive()
    assert server.process.returncode is not None and gone(child)
    assert (server.stdout.name, server.stderr.name) == ("tiny.stdout.log", "tiny.stderr.log")


@pytest.mark.slow
def test_serving_fails_early_with_the_servers_stderr(tmp_path: Path) -> None:
    dying = [sys.executable, "-c", "import sys; sys.exit('boom: cannot start')"]
    with pytest.raises(harness.ServerError, match=r"(?s)exited with status 1.*boom: cannot start"):
        with harness.serving(dying, {}, tmp_path, timeout=20):
            pass


def test_server_env_picks_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "80")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/somewhere/live")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    env = harness.server_env({"HOST": "0.0.0.0", "ACCESS_LOG": ""}, 1234)
    assert (env["HOST"], env["PORT"], env["ACCESS_LOG"], env["LOG_LEVEL"]) == ("127.0.0.1", "1234", "", "DEBUG")
    assert "PROMETHEUS_MULTIPROC_DIR" not in env


def test_production_command_and_free_port() -> None:
    assert harness.production_command() == [sys.executable, "-m", "lib.server"]
    assert 1024 <= harness.free_port() <= 65535
