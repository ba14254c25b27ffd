"""The Kubernetes manifests and the proxy config, checked offline: schemas (strict), lint, and agreement with the app.

The kustomization is rendered here as kustomize renders it (its resources, plus the ConfigMap its generator makes
from nginx.conf), without the content hash kustomize appends to the ConfigMap's name and to references to it.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lib.middleware import TrustedProxies
from lib.settings import Settings
from tests.support.harness import ROOT
from tests.support.proxy import NGINX_CONF

DEPLOY = ROOT / "deploy"
TOOLS = Path(sys.executable).parent  # kubernetes-validate, yamllint and hadolint come from requirements-dev.txt
KUSTOMIZE_KEYS = {"apiVersion", "kind", "resources", "configMapGenerator"}  # what render() understands
MARGIN_S = 5  # seconds of terminationGracePeriodSeconds beyond preStop + drain + graceful timeout


def render(folder: Path = DEPLOY) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k folder` creates (generated ConfigMap names without kustomize's hash suffix)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZE_KEYS
    assert not unknown, f"render() does not understand {sorted(unknown)}: teach it, or kubectl kustomize would differ"
    objects = [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((folder / name).read_text()) if doc]
    for generator in kustomization.get("configMapGenerator", []):
        data = {Path(name).name: (folder / name).read_text() for name in generator["files"]}
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    return objects


def find(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one object of ``kind``."""
    [found] = [item for item in objects if item["kind"] == kind]
    return found


def containers(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Deployment's containers by name."""
    return {item["name"]: item for item in find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]}


def env(container: dict[str, Any]) -> dict[str, str]:
    """A container's environment variables."""
    return {item["name"]: item["value"] for item in container.get("env", [])}


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    """Run a linter or validator, its output in the result."""
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def validate_strictly(objects: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """kubernetes-validate --strict over the objects, written as one multi-document file."""
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return run_tool(str(TOOLS / "kubernetes-validate"), "--strict", "--quiet", str(rendered))


def nginx_directive(name: str) -> str:
    """The value of a directive that appears once in deploy/nginx.conf."""
    [value] = re.findall(rf"^\s*{name}\s+([^;]+);", NGINX_CONF.read_text(), re.MULTILINE)
    return value


def test_manifests_pass_strict_schema_validation(tmp_path: Path) -> None:
    ingress = list(yaml.safe_load_all((DEPLOY / "ingress.yaml").read_text()))
    done = validate_strictly(render() + ingress, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_strict_validation_rejects_a_misspelt_field(tmp_path: Path) -> None:
    objects = copy.deepcopy(render())
    api = containers(objects)["api"]
    api["readinesProbe"] = api.pop("readinessProbe")
    done = validate_strictly(objects, tmp_path)
    assert done.returncode != 0 and "'readinesProbe' was unexpected" in done.stdout + done.stderr


def test_yaml_is_lint_free() -> None:
    done = run_tool(str(TOOLS / "yamllint"), "--strict", "-c", str(DEPLOY / "yamllint.yaml"), str(DEPLOY))
    assert done.returncode == 0, done.stdout + done.stderr


def test_containerfile_is_lint_free() -> None:
    done = run_tool(str(TOOLS / "hadolint"), str(ROOT / "Containerfile"))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (apt-get install -y nginx)")
def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    done = run_tool("nginx", "-t", "-p", f"{tmp_path}/", "-c", str(NGINX_CONF), "-e", "stderr")
    assert done.returncode == 0, done.stderr


def test_proxy_enforces_the_apps_body_limit() -> None:
    limit = Settings().max_body_bytes
    size = nginx_directive("client_max_body_size")
    assert int(size.removesuffix("m")) * 2**20 == limit
    assert f"exceeds {limit} bytes" in NGINX_CONF.read_text()


def test_proxy_decides_every_forwarded_header_the_app_believes() -> None:
    """Each X-Forwarded-* header the app reads from its listed proxy is set by nginx, or sent empty (left out)."""
    set_headers = dict(re.findall(r"^\s*proxy_set_header\s+(\S+)\s+([^;]+);", NGINX_CONF.read_text(), re.MULTILINE))
    believed = TrustedProxies(lambda *_: None, ("127.0.0.1",)).behind_proxy  # werkzeug's ProxyFix, as the app builds it
    for part in ("for", "proto", "host", "port", "prefix"):
        name = f"X-Forwarded-{part.capitalize()}"
        assert name in set_headers, f"{name} (the app {'believes' if getattr(believed, f'x_{part}') else 'ignores'} it)"
        assert "$http_" not in set_headers[name] and "$proxy_add_x_forwarded_for" not in set_headers[name], name
    assert set_headers["X-Forwarded-For"] == "$remote_addr" and set_headers["X-Forwarded-Proto"] == "$scheme"


def test_every_nginx_error_page_answers_json_with_its_status() -> None:
    """error_page N [=M] URI: the internal location at URI returns M (else N) with a {"message": ...} body."""
    text = NGINX_CONF.read_text()
    pages = re.findall(r"^\s*error_page\s+(\d+)\s+(?:=(\d+)\s+)?(\S+);", text, re.MULTILINE)
    assert {int(status) for status, _, _ in pages} >= {400, 404, 405, 408, 413, 414, 494, 500, 501, 502, 503, 504, 505}
    for status, answered, uri in pages:
        [(returned, body)] = re.findall(rf"location = {re.escape(uri)} {{\s*internal;\s*return (\d+) '([^']*)';", text)
        assert returned == (answered or status), uri
        message = json.loads(body.replace("\\n", "\n"))
        assert list(message) == ["message"] and message["message"], uri


def test_sidecar_runs_the_config_in_this_folder() -> None:
    objects = render()
    assert find(objects, "ConfigMap")["data"] == {"nginx.conf": NGINX_CONF.read_text()}
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    nginx = containers(objects)["nginx"]
    mounts = {mount["name"]: mount["mountPath"] for mount in nginx["volumeMounts"]}
    config_volume = next(name for name, volume in volumes.items() if "configMap" in volume)
    assert volumes[config_volume]["configMap"]["name"] == find(objects, "ConfigMap")["metadata"]["name"]
    command = nginx["command"]
    assert command[command.index("-c") + 1] == f"{mounts[config_volume]}/nginx.conf"
    prefix = command[command.index("-p") + 1].rstrip("/")
    assert "emptyDir" in volumes[next(name for name, path in mounts.items() if path == prefix)]


def test_ports_agree_between_proxy_app_and_service() -> None:
    objects = render()
    api, nginx = containers(objects)["api"], containers(objects)["nginx"]
    [app_port] = api["ports"]
    [proxy_port] = nginx["ports"]
    assert nginx_directive("listen") == str(proxy_port["containerPort"])
    upstream = re.search(r"^\s*server (127\.0\.0\.1:\d+) ", NGINX_CONF.read_text(), re.MULTILINE)
    assert upstream and upstream.group(1) == f"127.0.0.1:{app_port['containerPort']}"
    assert env(api)["PORT"] == str(app_port["containerPort"])
    assert find(objects, "Service")["spec"]["ports"][0]["targetPort"] == proxy_port["name"]


def test_workers_match_the_cpu_limit() -> None:
    api = containers(render())["api"]
    assert env(api)["WEB_CONCURRENCY"] == api["resources"]["limits"]["cpu"]


def test_probes_and_hardening() -> None:
    objects = render()
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    api = containers(objects)["api"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert api["startupProbe"]["httpGet"]["path"] == "/ready"
    for container in containers(objects).values():
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
        assert context["capabilities"] == {"drop": ["ALL"]} and context["runAsUser"] > 0
        assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]


def test_grace_period_covers_prestop_drain_and_graceful_timeout() -> None:
    objects = render()
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    api = containers(objects)["api"]
    pre_stop = api["lifecycle"]["preStop"]["sleep"]["seconds"]
    needed = pre_stop + float(env(api)["DRAIN_SECONDS"]) + float(env(api)["GRACEFUL_TIMEOUT"]) + MARGIN_S
    assert pod["terminationGracePeriodSeconds"] == needed
    assert containers(objects)["nginx"]["lifecycle"]["preStop"]["sleep"]["seconds"] == pre_stop


def test_autoscaler_and_budget_select_these_pods() -> None:
    objects = render()
    deployment = find(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = find(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["metrics"][0]["containerResource"]["container"] in containers(objects)
    assert find(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert find(objects, "Service")["spec"]["selector"].items() <= labels.items()


def test_prometheus_scrapes_each_pods_app_port() -> None:
    objects = render()
    template = find(objects, "Deployment")["spec"]["template"]
    [job] = yaml.safe_load((DEPLOY / "prometheus-scrape.yaml").read_text())["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    by_port_name = ["__meta_kubernetes_pod_container_port_name"]
    port_rule = next(rule for rule in job["relabel_configs"] if rule["source_labels"] == by_port_name)
    [app_port] = containers(objects)["api"]["ports"]
    assert port_rule["regex"] == app_port["name"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(app_port["containerPort"])
    shown = (ROOT / "docs" / "operations.md").read_text()  # the page shows the file's job as it is
    assert (DEPLOY / "prometheus-scrape.yaml").read_text().split("scrape_configs:\n", 1)[1] in shown
