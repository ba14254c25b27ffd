"""deploy/deployment.yaml's pod run with `podman kube play`: the app and its nginx sidecar, reached through the sidecar.

No Kubernetes cluster can run here, but `podman kube play` turns a Deployment's pod template into a podman pod: the
containers with their command, environment, ports, users, read-only root filesystems, capabilities, memory and CPU
limits and stop signals, and their volumes (emptyDir, configMap). This runs the real manifest that way and calls it
on the sidecar's port 8080, as the Service would.

What changes, in memory only (deploy/deployment.yaml is read with PyYAML, never copied):

- the images. The app's is localhost/sentiment-api:test, built by tests/test_container.py's fixture. The sidecar's,
  docker.io/nginxinc/nginx-unprivileged:1.28-alpine, cannot be pulled here (no registry is reachable), so a
  **stand-in** takes its place: Debian's nginx (1.22) on the local Debian base, as user 101 with the upstream image's
  stop signal (tests/data/nginx.Containerfile), tagged localhost/sentiment-nginx:test. It is not the upstream image;
  what runs in a cluster is;
- every container port gets a hostPort on 127.0.0.1 (a free port each). podman 4.3 publishes a containerPort that has
  no hostPort on all interfaces under its own number (8000 and 8080 of the machine), which Kubernetes never does;
- the Deployment's name, unique per run, so the pod's is too.

The ConfigMap is the one kustomization.yaml's configMapGenerator makes from deploy/nginx.conf (tests/test_deploy's
render()), given in the same multi-document YAML, under the name the Deployment's volume refers to: kustomize adds a
content hash to the ConfigMap's name and to that reference alike, which changes nothing here. podman keeps a
ConfigMap's volume after the pod is gone; the test removes it if the run created it.

What podman kube play (4.3.1 here) ignores or does differently, so nothing below claims it:

- startupProbe and readinessProbe are ignored. The livenessProbes become podman health checks that never run here
  (no systemd to schedule them) and would fail if they did: a named port becomes port 0, and the command is curl or
  nc, which neither image has. The test waits for /ready through the sidecar itself, as the readiness probe would;
- lifecycle.preStop (the 5 s sleep) is ignored, and terminationGracePeriodSeconds is not the stop timeout (podman's
  10 s stays). `podman kube down` in 4.3 stops the pod with no grace at all (SIGKILL, exit 137; newer podman waits
  for each container's stop timeout). So the test stops the pod first with the manifest's grace period
  (`podman pod stop -t 45`: SIGTERM to the app, the image's SIGQUIT to nginx, at once and without the preStop
  sleep), checks both exited cleanly, then `podman kube down` removes the pod;
- resource requests (the limits are applied), emptyDir's medium and sizeLimit (podman's volumes are on disk),
  runAsNonRoot (not checked: both containers run as their non-root users anyway), and whatever needs a cluster: the
  Service, replicas and the HorizontalPodAutoscaler, rolling updates, the disruption budget, the NetworkPolicy.
"""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import yaml

from tests import test_container
from tests.support.harness import HOST, ROOT, free_port
from tests.test_container import COMMAND_TIMEOUT, READY_TIMEOUT, build_command, podman, tail
from tests.test_deploy import containers, find, render

pytestmark = test_container.pytestmark  # e2e; skipped, saying why, without podman, debootstrap, runc or root

# The image fixtures of tests/test_container.py (the Debian base, the app's image), shared rather than repeated.
podman_env = test_container.podman_env
base_image = test_container.base_image
image = test_container.image

NGINX_IMAGE = "localhost/sentiment-nginx:test"  # the stand-in for docker.io/nginxinc/nginx-unprivileged (see above)
NGINX_CONTAINERFILE = ROOT / "tests" / "data" / "nginx.Containerfile"
APP_USER, NGINX_USER = 10001, 101  # deploy/deployment.yaml's runAsUser for each
WRITABLE = {"api": "/tmp", "nginx": "/tmp/nginx"}  # each container's emptyDir


@pytest.fixture(scope="module")
def nginx_image(podman_env: dict[str, str], base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The sidecar's stand-in: Debian's nginx as user 101, built FROM the local base (apt reaches the Debian mirror)."""
    context = tmp_path_factory.mktemp("nginx-context")  # the Containerfile copies nothing
    started = time.monotonic()
    podman(podman_env, *build_command(context, "-f", str(NGINX_CONTAINERFILE), "-t", NGINX_IMAGE), timeout=600)
    print(f"\nbuilt {NGINX_IMAGE} in {time.monotonic() - started:.1f} s")
    return NGINX_IMAGE


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def pod_yaml(name: str, images: dict[str, str], ports: dict[int, int]) -> str:
    """The ConfigMap and the Deployment as `kubectl apply -k deploy/` would send them, for `podman kube play`.

    Changed in memory: the Deployment's name, each container's image (``images``, by container name) and a hostPort
    on 127.0.0.1 for each container port (``ports``, containerPort to host port).
    """
    objects = render()
    deployment = copy.deepcopy(find(objects, "Deployment"))
    deployment["metadata"]["name"] = name
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        container["image"] = images[container["name"]]
        for port in container.get("ports", []):
            port["hostIP"] = HOST
            port["hostPort"] = ports[port["containerPort"]]
    return yaml.safe_dump_all([find(objects, "ConfigMap"), deployment], sort_keys=False)


def kube(env: dict[str, str], verb: str, manifest: str, check: bool = True) -> subprocess.CompletedProcess:
    """`podman kube play -` or `podman kube down -`, the manifest on stdin."""
    done = subprocess.run(
        ["podman", "kube", verb, "-"], input=manifest, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    if check and done.returncode != 0:
        pytest.fail(f"podman kube {verb} exited {done.returncode}:\n{tail(done.stdout + done.stderr)}")
    return done


@dataclass
class Pod:
    """The running pod: its name, its containers' names by the manifest's names, the proxy's and the app's URLs."""

    name: str
    containers: dict[str, str]
    url: str
    app_url: str
    manifest: str
    startup_seconds: float


def pod_containers(env: dict[str, str], pod: str) -> dict[str, str]:
    """The pod's containers by their names in the manifest (podman names them <pod>-<container>), infra left out."""
    inspected = json.loads(podman(env, "pod", "inspect", pod).stdout)
    names = [item["Name"] for item in inspected["Containers"]]
    return {name.removeprefix(f"{pod}-"): name for name in names if name.startswith(f"{pod}-")}


def state(env: dict[str, str], container: str) -> dict[str, Any]:
    """podman's view of a container's state (Running, ExitCode, ...)."""
    return json.loads(podman(env, "inspect", "--format", "{{json .State}}", container).stdout)


def logs(env: dict[str, str], container: str) -> str:
    """A container's output so far, both streams."""
    done = podman(env, "logs", container, check=False)
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def pod(podman_env: dict[str, str], image: str, nginx_image: str) -> Iterator[Pod]:
    """deploy/deployment.yaml played as a pod; yielded once /ready answers 200 through the sidecar; always removed.

    ``image`` builds localhost/sentiment-api:test from this checkout; the manifest names it by that tag, as a cluster would.
    """
    objects = render()
    by_name = {port["name"]: port["containerPort"] for container in containers(objects).values() for port in container["ports"]}
    ports = dict(zip(by_name.values(), free_ports(len(by_name)), strict=True))  # containerPort: host port
    url, app_url = f"http://{HOST}:{ports[by_name['http']]}", f"http://{HOST}:{ports[by_name['app']]}"
    name = f"sentiment-api-test-{uuid.uuid4().hex[:8]}"
    manifest = pod_yaml(name, {"api": test_container.IMAGE, "nginx": nginx_image}, ports)
    config_volume = find(objects, "ConfigMap")["metadata"]["name"]  # podman names the ConfigMap's volume after it
    config_volume_existed = podman(podman_env, "volume", "exists", config_volume, check=False).returncode == 0
    started = time.monotonic()
    pod_id: str | None = None
    try:
        played = kube(podman_env, "play", manifest, check=False)
        pod_id = played.stdout.split("Pod:", 1)[-1].split()[0] if "Pod:" in played.stdout else None
        if played.returncode != 0 or pod_id is None:
            pytest.fail(f"podman kube play exited {played.returncode}:\n{tail(played.stdout + played.stderr)}")
        pod_name = json.loads(podman(podman_env, "pod", "inspect", pod_id).stdout)["Name"]
        names = pod_containers(podman_env, pod_name)
        assert set(names) == {"api", "nginx"}, names
        # The readiness probe's part, which kube play leaves out: ready once /ready answers 200 through the sidecar.
        deadline = started + READY_TIMEOUT
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            stopped = [c for c in names.values() if not state(podman_env, c)["Running"]]
            if stopped or time.monotonic() > deadline:
                output = "\n".join(f"--- {c}\n{tail(logs(podman_env, c))}" for c in names.values())
                pytest.fail(f"the pod never answered /ready through nginx within {READY_TIMEOUT:.0f} s:\n{output}")
            time.sleep(0.2)
        yield Pod(pod_name, names, url, app_url, manifest, time.monotonic() - started)
    finally:  # by the manifest's names, then by the id kube play printed, whatever state the pod is in
        kube(podman_env, "down", manifest, check=False)
        if pod_id is not None:
            podman(podman_env, "pod", "rm", "-f", "-t", "0", pod_id, check=False)
        if not config_volume_existed:
            podman(podman_env, "volume", "rm", config_volume, check=False)


def test_pod_answers_through_the_sidecar(pod: Pod) -> None:
    ready = requests.get(f"{pod.url}/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.headers["Server"] == "nginx"  # the sidecar's, not the app server's
    answer = requests.get(f"{pod.url}/", {"query": "that movie was boring"}, headers={"X-Request-ID": "pod-e2e-1"}, timeout=10)
    assert answer.status_code == 200 and answer.json()["prediction"] == "Negative"
    assert answer.headers["X-Request-ID"] == "pod-e2e-1"  # passed through nginx to the app and back
    batch = requests.post(f"{pod.url}/", json={"queries": ["a fine film", "dull and far too long"]}, timeout=10)
    assert batch.status_code == 200 and len(batch.json()["predictions"]) == 2
    print(f"\nkube play to the first /ready 200 through nginx: {pod.startup_seconds:.2f} s")


def test_nginx_refuses_in_json(pod: Pod) -> None:
    too_large = requests.post(f"{pod.url}/", data=b"x" * (2 * 2**20 + 1), headers={"Content-Type": "text/plain"}, timeout=10)
    assert too_large.status_code == 413 and too_large.headers["Content-Type"] == "application/json"
    assert too_large.json()["message"] == "Payload Too Large: the body exceeds 2097152 bytes."
    # /metrics: refused by the proxy, served on the app's own port (the one Prometheus scrapes in each pod).
    refused = requests.get(f"{pod.url}/metrics", timeout=10)
    assert refused.status_code == 403 and refused.json()["message"].startswith("Forbidden")
    metrics = requests.get(f"{pod.app_url}/metrics", timeout=10)
    assert metrics.status_code == 200 and "http_requests_total" in metrics.text


@pytest.mark.parametrize(("container", "uid"), [("api", APP_USER), ("nginx", NGINX_USER)])
def test_containers_run_as_their_users_read_only(podman_env: dict[str, str], pod: Pod, container: str, uid: int) -> None:
    name = pod.containers[container]
    # PID 1 is the server (granian's parent, nginx's master); every other process of the container is its child.
    status = podman(podman_env, "exec", name, "cat", "/proc/1/status").stdout
    fields = {key: value.split() for key, _, value in (line.partition(":") for line in status.splitlines())}
    assert fields["Uid"] == [str(uid)] * 4 and fields["Gid"] == [str(uid)] * 4
    assert fields["CapEff"] == ["0000000000000000"]  # capabilities: drop ALL
    assert fields["NoNewPrivs"] == ["1"]  # allowPrivilegeEscalation: false
    assert fields["Seccomp"] == ["2"]  # a seccomp filter (podman's default profile: RuntimeDefault)
    refused = podman(podman_env, "exec", name, "touch", "/written", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    podman(podman_env, "exec", name, "touch", f"{WRITABLE[container]}/written")  # its emptyDir is writable
    if container == "nginx":
        refused = podman(podman_env, "exec", name, "touch", "/etc/nginx/sentiment/written", check=False)
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr  # the ConfigMap, mounted readOnly
        mounted = podman(podman_env, "exec", name, "cat", "/etc/nginx/sentiment/nginx.conf").stdout
        assert mounted == (ROOT / "deploy" / "nginx.conf").read_text()


def test_memory_limits_are_the_manifests(podman_env: dict[str, str], pod: Pod) -> None:
    limits = {"api": 512 * 2**20, "nginx": 128 * 2**20}  # deploy/deployment.yaml: 512Mi and 128Mi
    for container, limit in limits.items():
        memory = podman(podman_env, "inspect", "--format", "{{.HostConfig.Memory}}", pod.containers[container]).stdout
        assert int(memory) == limit, container


def test_stops_gracefully_and_kube_down_removes_it(podman_env: dict[str, str], pod: Pod) -> None:
    grace = find(render(), "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert requests.get(f"{pod.url}/", {"query": "a fine film"}, timeout=10).status_code == 200
    volumes = {
        mount["Name"]
        for container in pod.containers.values()
        for mount in json.loads(podman(podman_env, "inspect", "--format", "{{json .Mounts}}", container).stdout)
        if mount["Type"] == "volume" and mount["Destination"] in WRITABLE.values()
    }
    assert len(volumes) == 2, volumes  # the two emptyDirs
    # kube down alone would SIGKILL the pod on podman 4.3 (see the module's docstring): stop it with the grace first.
    started = time.monotonic()
    podman(podman_env, "pod", "stop", "-t", str(grace), pod.name, timeout=grace + COMMAND_TIMEOUT)
    took = time.monotonic() - started
    states = {container: state(podman_env, name) for container, name in pod.containers.items()}
    app_logs = logs(podman_env, pod.containers["api"])
    print(f"\npod stop (SIGTERM to the app, SIGQUIT to nginx) to both exited: {took:.2f} s")
    assert took < grace, "podman had to SIGKILL: the pod did not stop within the manifest's grace period"
    assert {container: s["ExitCode"] for container, s in states.items()} == {"api": 0, "nginx": 0}
    assert "Granian shutdown completed" in app_logs  # the graceful path, after DRAIN_SECONDS
    kube(podman_env, "down", pod.manifest)
    assert podman(podman_env, "pod", "exists", pod.name, check=False).returncode != 0
    for name in pod.containers.values():
        assert podman(podman_env, "container", "exists", name, check=False).returncode != 0
    for volume in volumes:
        assert podman(podman_env, "volume", "exists", volume, check=False).returncode != 0, f"emptyDir {volume} left behind"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{pod.url}/health", timeout=2)
