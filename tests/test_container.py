"""The container image (Containerfile) built and run with podman: read-only, non-root, graceful on SIGTERM.

These machines pull from no registry, so the image is built FROM a local Debian 12 + Python 3.11 base made with
debootstrap, exactly as /work/shared/CONTAINERS.md does (once: it is reused while ``podman image exists``). Every
podman call gets a containers.conf with the settings this host needs (runc, ulimits within the host's limits).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.helpers import Traffic, reload_under_traffic, replace_model, served_version, wait_for_version
from tests.support.harness import HOST, ROOT, free_port, memory_snapshot
from tests.support.proxy import proxying
from tests.test_deploy import containers, env, render

TOOLS = ("podman", "debootstrap", "runc")
MISSING = [tool for tool in TOOLS if shutil.which(tool) is None]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"needs {', '.join(MISSING)} (the image builds FROM Debian packages): apt-get install -y podman debootstrap runc",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap and rootful podman need root"),
]

BASE_IMAGE = "localhost/debian-py:base"
IMAGE = "localhost/sentiment-api:test"
IMAGE_V2 = "localhost/sentiment-api:test-v2"  # the rolling update's new image: another sentiment model version
# podman's image store is the machine's: two test runs at once would each debootstrap and re-tag the base.
BASE_LOCK = Path(tempfile.gettempdir()) / "sentiment-api-debian-py-base.lock"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # the host's; mounted for the build only (CONTAINERS.md point 3)
# What the Containerfile copies: the bad-model build gets these and nothing else.
CONTEXT_FILES = ("Containerfile", ".dockerignore", "requirements.txt", "app.py", "model.py")
# podman's defaults (nofile 1048576) exceed this host's hard limits; a --ulimit on the command line replaces the
# containers.conf defaults rather than adding to them, so nproc is given again beside nofile.
ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768")
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
"""

DEBOOTSTRAP_TIMEOUT = 1200.0  # seconds; about 2.5 minutes measured here
BUILD_TIMEOUT = 900.0  # seconds; about 1.5 minutes from scratch (pip downloads), seconds with cached layers
COMMAND_TIMEOUT = 60.0  # seconds for any other podman command
READY_TIMEOUT = 60.0  # seconds from `podman run` to the first /ready 200
STOP_GRACE = 10  # seconds `podman stop` waits after SIGTERM before it sends SIGKILL
MAX_IMAGE_BYTES = 600 * 10**6


def podman(env: dict[str, str], *args: str, timeout: float = COMMAND_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
    """Run one podman command with the test's containers.conf; with ``check``, fail showing its output."""
    done = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} exited {done.returncode}:\n{tail(done.stdout + done.stderr)}")
    return done


def tail(text: str, lines: int = 40) -> str:
    """The end of a command's output, for failure messages."""
    return "\n".join(text.splitlines()[-lines:])


def debian_mirror() -> str:
    """The Debian mirror apt already uses (deb822 file first, then the classic list), as CONTAINERS.md finds it."""
    with contextlib.suppress(OSError):
        for line in Path("/etc/apt/sources.list.d/debian.sources").read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    with contextlib.suppress(OSError):
        for line in Path("/etc/apt/sources.list").read_text().splitlines():
            if line.split()[:1] == ["deb"]:
                return line.split()[1]
    return "http://deb.debian.org/debian"


def mounts_under(folder: Path) -> list[str]:
    """Mount points at or below ``folder`` (debootstrap mounts /proc, and in a container binds /dev, in its target)."""
    prefix = str(folder.resolve())
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [point for point in points if point == prefix or point.startswith(prefix + "/")]


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for every podman call: CONTAINERS_CONF naming runc and ulimits this host allows."""
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


@contextlib.contextmanager
def machine_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (other test runs on this machine wait for it), for at most ``timeout`` waiting."""
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test run held {path} for over {timeout:.0f} s")
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def base_image(podman_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """Debian 12 with Python 3.11 from debootstrap, imported as localhost/debian-py:base; reused once it exists."""
    with machine_lock(BASE_LOCK, DEBOOTSTRAP_TIMEOUT + COMMAND_TIMEOUT * 5):
        if podman(podman_env, "image", "exists", BASE_IMAGE, check=False).returncode != 0:
            debootstrap_base(podman_env, tmp_path_factory.mktemp("debian-py") / "rootfs")
    return BASE_IMAGE


def debootstrap_base(podman_env: dict[str, str], rootfs: Path) -> None:
    """Build the base as CONTAINERS.md does: debootstrap a minimal bookworm with Python, then podman import it."""
    started = time.monotonic()
    try:
        command = ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip,ca-certificates"]
        done = subprocess.run(
            [*command, "bookworm", str(rootfs), debian_mirror()], capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT
        )
        if done.returncode != 0:
            pytest.fail(f"debootstrap exited {done.returncode}:\n{tail(done.stdout + done.stderr)}")
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            imported = subprocess.run(
                ["podman", "import", "--change", 'CMD ["/bin/bash"]', "-", BASE_IMAGE],
                stdin=tar.stdout,
                env=podman_env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT * 5,
            )
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait(timeout=COMMAND_TIMEOUT)
        if imported.returncode != 0:
            pytest.fail(f"podman import exited {imported.returncode}:\n{tail(imported.stdout + imported.stderr)}")
    finally:
        mounted = mounts_under(rootfs) if rootfs.exists() else []
        if mounted:  # never delete through a mount: it could be the host's /dev or /proc
            print(f"\nleft {rootfs} in place: still mounted there: {', '.join(mounted)}")
        else:
            shutil.rmtree(rootfs, ignore_errors=True)
    print(f"\nbuilt {BASE_IMAGE} with debootstrap in {time.monotonic() - started:.0f} s")


def build_command(context: Path, *extra: str) -> list[str]:
    """`podman build` of the Containerfile in ``context`` FROM the local base, keeping the HEALTHCHECK (docker format)."""
    volume = ["-v", f"{CA_BUNDLE}:/run/host-ca.crt:ro"] if CA_BUNDLE.is_file() else []
    return ["build", "--build-arg", f"BASE={BASE_IMAGE}", "--format", "docker", "--force-rm", *volume, *extra, str(context)]


@pytest.fixture(scope="module")
def image(podman_env: dict[str, str], base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The service image built from this checkout, tagged localhost/sentiment-api:test; its id, which no other run re-tags."""
    iidfile = tmp_path_factory.mktemp("image") / "iid"
    started = time.monotonic()
    build = build_command(ROOT, "-f", str(ROOT / "Containerfile"), "-t", IMAGE, "--iidfile", str(iidfile))
    podman(podman_env, *build, timeout=BUILD_TIMEOUT)
    print(f"\nbuilt {IMAGE} in {time.monotonic() - started:.1f} s")
    return iidfile.read_text().strip()


@dataclass
class Container:
    """A running container of the image: its name, its URL on the loopback, and how long it took to be ready."""

    name: str
    url: str
    startup_seconds: float

    @property
    def port(self) -> int:
        """The loopback port it is published on."""
        return int(urlsplit(self.url).port or 0)


def container_state(env: dict[str, str], name: str) -> dict:
    """podman's view of the container's state (Running, ExitCode, ...)."""
    return json.loads(podman(env, "inspect", "--format", "{{json .State}}", name).stdout)


@contextlib.contextmanager
def running(env: dict[str, str], image: str, *options: str) -> Iterator[Container]:
    """Run the image read-only with a tmpfs /tmp on a free loopback port; yield it once /ready answers; always remove it.

    ``options`` go to `podman run` before the image (limits, volumes, environment).
    """
    name = f"sentiment-api-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    url = f"http://{HOST}:{port}"
    started = time.monotonic()
    try:
        podman(
            env,
            "run",
            "-d",
            "--name",
            name,
            "--read-only",
            "--tmpfs",
            "/tmp",
            "-p",
            f"{HOST}:{port}:8000",
            *ULIMITS,
            *options,
            image,
        )
        deadline = started + READY_TIMEOUT
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            if not container_state(env, name)["Running"] or time.monotonic() > deadline:
                logs = podman(env, "logs", name, check=False)
                pytest.fail(f"{name} never answered /ready within {READY_TIMEOUT:.0f} s:\n{tail(logs.stdout + logs.stderr)}")
            time.sleep(0.1)
        yield Container(name, url, time.monotonic() - started)
    finally:
        podman(env, "rm", "-f", "-t", "0", name, check=False)


@pytest.fixture(scope="module")
def container(podman_env: dict[str, str], image: str) -> Iterator[Container]:
    """One container of the image, shared by the tests that only call it."""
    with running(podman_env, image) as served:
        yield served


def test_serves_read_only_as_non_root(podman_env: dict[str, str], container: Container) -> None:
    ready = requests.get(f"{container.url}/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    answer = requests.get(f"{container.url}/", {"query": "that movie was boring"}, timeout=10)
    assert answer.status_code == 200 and answer.json()["prediction"] == "Negative"
    metrics = requests.get(f"{container.url}/metrics", timeout=10)
    assert metrics.status_code == 200 and "http_requests_total" in metrics.text
    uid = podman(podman_env, "exec", container.name, "id", "-u").stdout.strip()
    assert uid != "0"
    # Nothing but /tmp is writable: not the code, not the models.
    refused = podman(podman_env, "exec", container.name, "touch", "/app/lib/models/written", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    # The image's HEALTHCHECK (kept by --format docker) passes against the running server.
    podman(podman_env, "healthcheck", "run", container.name)


def test_image_holds_only_what_serving_needs(podman_env: dict[str, str], image: str) -> None:
    check = (
        "import importlib.util, json, os; print(json.dumps({"
        "'app': sorted(os.listdir('/app')), 'lib': sorted(os.listdir('/app/lib')),"
        "'absent_packages': [m for m in ('pandas', 'matplotlib') if importlib.util.find_spec(m) is None],"
        "'ca_bytes': os.path.getsize('/run/host-ca.crt') if os.path.exists('/run/host-ca.crt') else 0}))"
    )
    name = f"sentiment-api-test-{uuid.uuid4().hex[:8]}"
    try:
        done = podman(podman_env, "run", "--name", name, *ULIMITS, image, "python", "-c", check)
    finally:
        podman(podman_env, "rm", "-f", "-t", "0", name, check=False)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(found["app"]) <= {"app.py", "model.py", "lib", "__pycache__"}
    assert "models" in found["lib"] and "data" not in found["lib"]
    assert found["absent_packages"] == ["pandas", "matplotlib"]  # build-only dependencies stay out
    assert found["ca_bytes"] == 0  # the build's CA bundle was mounted, never copied (podman leaves an empty mount point)


def test_stops_gracefully_on_sigterm(podman_env: dict[str, str], image: str) -> None:
    with running(podman_env, image) as served:
        assert requests.get(f"{served.url}/", {"query": "that movie was boring"}, timeout=10).status_code == 200
        started = time.monotonic()
        podman(podman_env, "stop", "-t", str(STOP_GRACE), served.name, timeout=STOP_GRACE + COMMAND_TIMEOUT)
        took = time.monotonic() - started
        state = container_state(podman_env, served.name)
        logs = podman(podman_env, "logs", served.name)
    print(f"\nSIGTERM to exit: {took:.2f} s, exit code {state['ExitCode']}")
    assert took < STOP_GRACE, "podman had to SIGKILL: the server did not stop within the grace period"
    assert state["ExitCode"] == 0
    assert "Granian shutdown completed" in logs.stdout + logs.stderr  # the graceful path, not a kill


def test_image_size_and_start_up(podman_env: dict[str, str], image: str, container: Container) -> None:
    size = int(podman(podman_env, "image", "inspect", "--format", "{{.Size}}", image).stdout.strip())
    print(f"\n{IMAGE}: {size / 10**6:.0f} MB; podman run to first /ready 200: {container.startup_seconds:.2f} s")
    assert size < MAX_IMAGE_BYTES


def kubernetes_quantity_bytes(quantity: str) -> int:
    """Bytes in a Kubernetes memory quantity with a binary suffix, such as "512Mi"."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(quantity[:-2]) * units[quantity[-2:]]


def test_memory_under_load_fits_the_pods_limit(podman_env: dict[str, str], image: str) -> None:
    """The Deployment's memory limit was sized from this figure: the image's server with the pod's worker count."""
    app = containers(render())["api"]
    limit = kubernetes_quantity_bytes(app["resources"]["limits"]["memory"])
    with running(podman_env, image, "-e", f"WEB_CONCURRENCY={env(app)['WEB_CONCURRENCY']}") as served:
        batch = {"queries": [f"a {word} film, honestly" for word in ("good", "bad", "dull", "moving") * 250]}
        for number in range(300):  # fresh connections, so both workers answer some
            assert requests.get(f"{served.url}/", {"query": f"review number {number}"}, timeout=10).status_code == 200
        for _ in range(5):
            assert requests.post(f"{served.url}/", json=batch, timeout=30).status_code == 200
        pid = int(podman(podman_env, "inspect", "--format", "{{.State.Pid}}", served.name).stdout.strip())
        used = memory_snapshot(pid)
    print(
        f"\n{IMAGE}, {len(used['workers_mb'])} workers after 300 GETs and 5 batches of 1,000: {used['total_mb']} MiB PSS "
        f"(master {used['master_mb']}, workers {', '.join(map(str, used['workers_mb']))}); pod limit {limit // 2**20} MiB"
    )
    assert len(used["workers_mb"]) == int(env(app)["WEB_CONCURRENCY"])
    assert used["total_mb"] * 2**20 < limit / 2  # room for a reload's second set of workers and a long batch


def copy_context(context: Path) -> Path:
    """A build context in ``context`` with what the Containerfile copies from this checkout, to change before a build."""
    context.mkdir()
    for name in CONTEXT_FILES:
        shutil.copy2(ROOT / name, context / name)
    shutil.copytree(ROOT / "lib", context / "lib", ignore=shutil.ignore_patterns("data", "__pycache__", ".*"))
    return context


def test_bad_model_fails_the_build(podman_env: dict[str, str], base_image: str, tmp_path: Path) -> None:
    context = copy_context(tmp_path / "context")
    corrupted = context / "lib" / "models" / "ratings" / "idf.npy"
    with corrupted.open("ab") as artifact:
        artifact.write(b"tampered")
    done = podman(podman_env, *build_command(context, "-f", str(context / "Containerfile")), timeout=BUILD_TIMEOUT, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"the build accepted a corrupted model:\n{tail(output)}"
    assert "lib/models/ratings/idf.npy" in output, tail(output)


def test_workers_follow_the_cpu_limit(podman_env: dict[str, str], image: str) -> None:
    """No WEB_CONCURRENCY: the server reads the container's CPU quota, not the host's core count."""
    with running(podman_env, image, "--cpus", "1") as served:
        assert requests.get(f"{served.url}/", {"query": "a fine film"}, timeout=10).status_code == 200
        logs = podman(podman_env, "logs", served.name)
    spawned = (logs.stdout + logs.stderr).count("Spawning worker-")
    assert spawned == 1, f"{spawned} workers under --cpus 1 on a host with {os.cpu_count()} CPUs"


def test_models_on_a_volume_reload_on_sighup_without_a_failed_request(
    podman_env: dict[str, str], image: str, tiny_models: Path, tmp_path: Path
) -> None:
    """The operator's second way to update: models on a volume, replaced, then `podman kill --signal HUP`."""
    models = tmp_path / "models"
    shutil.copytree(ROOT / "lib" / "models", models, ignore=shutil.ignore_patterns(".*"))
    volume = ("-v", f"{models}:/models:ro", "-e", "MODELS_DIR=/models", "-e", "WEB_CONCURRENCY=2")
    with running(podman_env, image, *volume) as served:
        hup = functools.partial(podman, podman_env, "kill", "--signal", "HUP", served.name)
        traffic = reload_under_traffic(served.url, models, tiny_models / "sentiment", hup, timeout=60)
    assert traffic.failures == [] and traffic.answered > 50


@pytest.fixture
def image_v2(podman_env: dict[str, str], base_image: str, tiny_models: Path, tmp_path: Path) -> Iterator[str]:
    """The image built again with another sentiment model (tiny_models'), tagged IMAGE_V2: its id; removed afterwards.

    Only the layers from `COPY lib/` on are rebuilt; the dependencies' layer comes from the cache.
    """
    context = copy_context(tmp_path / "context-v2")
    replace_model(context / "lib" / "models", "sentiment", tiny_models / "sentiment")
    iidfile = tmp_path / "iid-v2"
    started = time.monotonic()
    try:
        build = build_command(context, "-f", str(context / "Containerfile"), "-t", IMAGE_V2, "--iidfile", str(iidfile))
        podman(podman_env, *build, timeout=BUILD_TIMEOUT)
        print(f"\nbuilt {IMAGE_V2} in {time.monotonic() - started:.1f} s")
        yield iidfile.read_text().strip()
    finally:
        podman(podman_env, "rmi", IMAGE_V2, check=False)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="needs nginx, the Service in front: apt-get install -y nginx")
def test_new_image_per_model_version_rolls_out_without_a_failed_request(
    podman_env: dict[str, str], image: str, image_v2: str, tiny_models: Path, tmp_path: Path
) -> None:
    """The operator's first way to update: a new image per model version, rolled out as Kubernetes does it.

    A RollingUpdate with maxSurge 1 and maxUnavailable 0, nginx standing for the Service's endpoints: the new
    container starts and joins the upstream once /ready answers; then the old one leaves it and gets SIGTERM.
    """
    pod = ("-e", "WEB_CONCURRENCY=2", "-e", "DRAIN_SECONDS=5")  # as deploy/deployment.yaml runs the app
    new_version = json.loads((tiny_models / "sentiment" / "manifest.json").read_text())["version"]
    with contextlib.ExitStack() as stack:
        old = stack.enter_context(running(podman_env, image, *pod))
        proxy = stack.enter_context(proxying([old.port], tmp_path / "nginx"))
        old_version = served_version(proxy.url, "sentiment")
        assert old_version != new_version
        traffic = Traffic(proxy.url)
        traffic.start()
        try:
            new = stack.enter_context(running(podman_env, image_v2, *pod))  # back once its /ready answers 200
            before_new = len(traffic.versions)
            proxy.route_to([old.port, new.port])  # the ready pod becomes an endpoint
            wait_for_version(proxy.url, "sentiment", new_version)
            proxy.route_to([new.port])  # the old pod is taken out of the endpoints ...
            started = time.monotonic()
            podman(podman_env, "stop", "-t", str(STOP_GRACE), old.name, timeout=STOP_GRACE + COMMAND_TIMEOUT)  # ... and stopped
            took = time.monotonic() - started
            after_old = len(traffic.versions)
            time.sleep(1)
        finally:
            traffic.stop()
        state = container_state(podman_env, old.name)
        logs = podman(podman_env, "logs", old.name)
    answers = traffic.versions
    print(
        f"\nrolling update through nginx: {traffic.answered} answered, {len(traffic.failures)} failed; "
        f"{answers.count(old_version)} by {old_version}, {answers.count(new_version)} by {new_version}; "
        f"old container stopped in {took:.2f} s, exit code {state['ExitCode']}"
    )
    assert traffic.failures == []
    assert before_new > 0 and set(answers[:before_new]) == {old_version}
    assert len(answers) > after_old and set(answers[after_old:]) == {new_version}
    assert took < STOP_GRACE and state["ExitCode"] == 0
    assert "Granian shutdown completed" in logs.stdout + logs.stderr
