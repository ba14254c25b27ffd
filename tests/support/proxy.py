"""nginx in front of replicas, with the pod's own config (deploy/nginx.conf), for the tests and the benchmarks.

    with proxying([replica.port for replica in replicas], log_dir) as proxy: requests.get(proxy.url + "/health")

``nginx_config`` rewrites only the ``listen`` line (127.0.0.1 and a free port) and the upstream's server line (one
per replica, same parameters); everything else is what the pod runs. nginx runs without root, as it does in the pod:
as the invoking user, or as nobody when that is root, with every file it writes under a fresh prefix folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.harness import (
    HOST,
    ROOT,
    Server,
    ServerError,
    free_port,
    live_descendants,
    log_tail,
    production_command,
    serving,
)

NGINX_CONF = ROOT / "deploy" / "nginx.conf"
NOBODY = 65534  # the unprivileged user nginx runs as when the caller is root
LISTEN = re.compile(r"^(?P<indent>[ \t]*)listen 8080;$", re.MULTILINE)
UPSTREAM_SERVER = re.compile(r"^(?P<indent>[ \t]*)server 127\.0\.0\.1:8000(?P<parameters>[^;\n]*);$", re.MULTILINE)


class ProxyConfigError(RuntimeError):
    """deploy/nginx.conf no longer has the lines this module rewrites."""


def nginx_config(listen_port: int, upstream_ports: Sequence[int], text: str | None = None) -> str:
    """deploy/nginx.conf listening on 127.0.0.1:``listen_port``, in front of 127.0.0.1:<each upstream port>."""
    text = NGINX_CONF.read_text(encoding="utf-8") if text is None else text
    if not upstream_ports:
        raise ValueError("at least one upstream port is needed")
    for pattern in (LISTEN, UPSTREAM_SERVER):
        if len(pattern.findall(text)) != 1:
            raise ProxyConfigError(f"{NGINX_CONF} must have exactly one line matching {pattern.pattern!r}")

    def servers(found: re.Match[str]) -> str:
        return "\n".join(f"{found['indent']}server {HOST}:{port}{found['parameters']};" for port in upstream_ports)

    text = LISTEN.sub(lambda found: f"{found['indent']}listen {HOST}:{listen_port};", text)
    return UPSTREAM_SERVER.sub(servers, text)


def unprivileged(command: list[str], prefix: Path, log_files: Sequence[Path]) -> list[str]:
    """Run ``command`` as nobody when this process is root, owning its prefix and the log files it reopens."""
    if os.geteuid() != 0:
        return command
    # nginx opens /dev/stdout by path, so the file behind it must be writable by nginx's user.
    for path in log_files:
        path.touch(exist_ok=True)
    for path in (prefix, *log_files):
        os.chown(path, NOBODY, NOBODY)
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]


@dataclass
class Proxy(Server):
    """A running nginx, and the config file it reads (in its prefix folder)."""

    config: Path

    def route_to(self, upstream_ports: Sequence[int], timeout: float = 30.0) -> None:
        """Rewrite the upstream to these ports and `nginx -s reload`; return once every worker of the old config exited.

        From then on each request goes to the new upstream only: the old workers finished what they held and left.
        """
        old_workers = set(live_descendants(self.process.pid))
        self.config.write_text(nginx_config(self.port, upstream_ports), encoding="utf-8")
        reload = ["nginx", "-p", f"{self.config.parent}/", "-c", str(self.config), "-e", "stderr", "-s", "reload"]
        done = subprocess.run(reload, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise ServerError(f"nginx -s reload exited {done.returncode}: {done.stderr.strip()}")
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            workers = set(live_descendants(self.process.pid))
            if workers and not workers & old_workers:
                return
            if time.monotonic() > deadline:
                raise ServerError(f"nginx kept its old workers {timeout:.0f} s after a reload:\n{log_tail(self.stderr)}")
            time.sleep(0.05)


@contextlib.contextmanager
def proxying(upstream_ports: Sequence[int], log_dir: Path, *, name: str = "nginx", port: int | None = None) -> Iterator[Proxy]:
    """Run nginx with deploy/nginx.conf in front of the upstream ports until /health answers through it; always stop it.

    ``proxy.route_to(ports)`` changes the upstream under way, as an endpoint change does in Kubernetes.
    """
    if shutil.which("nginx") is None:
        raise FileNotFoundError("nginx is not installed: apt-get install -y nginx")
    port = port or free_port()
    prefix = Path(tempfile.mkdtemp(prefix="sentiment-nginx-"))
    try:
        config = prefix / "nginx.conf"
        config.write_text(nginx_config(port, upstream_ports), encoding="utf-8")
        log_dir.mkdir(parents=True, exist_ok=True)
        logs = [log_dir / f"{name}.{stream}.log" for stream in ("stdout", "stderr")]  # the names serving() gives them
        command = unprivileged(["nginx", "-p", f"{prefix}/", "-c", str(config), "-e", "stderr"], prefix, logs)
        with serving(command, {}, log_dir, port=port, name=name) as server:
            yield Proxy(server.url, server.process, server.stdout, server.stderr, config)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def replica_env(workers: int) -> dict[str, str]:
    """What each replica gets on top of the inherited environment: its worker count (production defaults otherwise)."""
    return {"WEB_CONCURRENCY": str(workers)}


def start_replica(stack: contextlib.ExitStack, log_dir: Path, name: str, workers: int, port: int | None = None) -> Server:
    """Start one replica of the production server (its own process group and port); leaving ``stack`` stops it."""
    replica = serving(production_command(), replica_env(workers), log_dir, port=port, name=name, ready_path="/ready")
    return stack.enter_context(replica)
