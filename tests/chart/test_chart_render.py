"""The Helm chart rendered with Helm's own engine, for each placement and option.

Every rendered object is checked against Kubernetes' schema (``validate_all``), and each
option is checked for what it changes in the output, not just for rendering.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.chart.chartrender import (
    BASE_VALUES,
    CHART,
    UPSTREAM,
    JsonObject,
    all_of,
    env_of,
    kinds,
    merged,
    mwm_container,
    notes,
    only,
    parent_chart,
    render,
    render_files,
    validate_all,
    values,
)
from tests.crd.schema import CrdValidator, load_crd, strict, version_schema

GATEWAY_KINDS = sorted(
    [
        "ClusterRole",  # endpoint reader
        "ClusterRole",  # switch
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",  # the Role
        "RoleBinding",  # the endpoint reader, in the release namespace
        "Secret",
        "Service",
        "ServiceAccount",
    ]
)
SHARED_KINDS = sorted(
    ["ClusterRole", "ClusterRole", "Role", "RoleBinding", "RoleBinding", "Secret", "ServiceAccount"]
)


def deployment(objects: list[JsonObject]) -> JsonObject:
    return only(objects, "Deployment")


def pod_spec(objects: list[JsonObject]) -> JsonObject:
    spec: JsonObject = deployment(objects)["spec"]["template"]["spec"]
    return spec


def container(objects: list[JsonObject]) -> JsonObject:
    return mwm_container(pod_spec(objects))


# --- placements -------------------------------------------------------------------------


def test_default_values_render_a_gateway_in_front_of_the_app() -> None:
    objects = render(BASE_VALUES)
    validate_all(objects)
    assert kinds(objects) == GATEWAY_KINDS
    assert deployment(objects)["spec"]["replicas"] == 2
    assert env_of(container(objects))["MWM_UPSTREAM__URL"] == UPSTREAM
    service = only(objects, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", 80, "http"),
        ("management", 8081, "management"),
    ]
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert ports == {"http": 8080, "management": 8081}
    assert service["spec"]["selector"] == deployment(objects)["spec"]["selector"]["matchLabels"]


def test_every_object_is_in_the_release_namespace_or_cluster_scoped() -> None:
    for obj in render(BASE_VALUES, namespace="shop"):
        if obj["kind"] == "ClusterRole":
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == "shop", obj["kind"]


def test_gateway_without_an_upstream_refuses_to_render() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"config\.upstream\.url is required"):
        render({})


def test_sidecar_renders_only_the_shared_pieces() -> None:
    everything_on = {
        "placement": "sidecar",
        "autoscaling": {"enabled": True},
        "networkPolicy": {"enabled": True},
        "metrics": {"serviceMonitor": {"enabled": True}},
        "ingress": {"enabled": True, "hosts": [{"host": "shop.example.com"}]},
    }
    objects = render(everything_on)  # no upstream needed: the app is on 127.0.0.1
    validate_all(objects)
    assert kinds(objects) == SHARED_KINDS


SIDECAR_PARENT_VALUES: JsonObject = {
    "app": {"image": "ghcr.io/example/shop:1.0.0", "port": 8000},
    "mwm": {"placement": "sidecar", "config": {"upstream": {"url": "http://127.0.0.1:8000"}}},
}


def test_sidecar_example_renders_in_a_parent_chart(tmp_path: Path) -> None:
    example = (CHART / "examples" / "sidecar-deployment.yaml").read_text(encoding="utf-8")
    parent = parent_chart(tmp_path, template=example, parent_values=SIDECAR_PARENT_VALUES)
    objects = render(chart=parent, release="shop", namespace="shop")
    validate_all(objects)
    app = next(o for o in objects if o["kind"] == "Deployment")
    spec = app["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app", "mwm"]
    proxy = mwm_container(spec)
    assert env_of(proxy)["MWM_UPSTREAM__URL"] == "http://127.0.0.1:8000"
    # The Service sends traffic to the proxy's port, never straight to the app.
    service = next(o for o in objects if o["kind"] == "Service")
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    owners = [c["name"] for c in spec["containers"] for p in c["ports"] if p["name"] == "http"]
    assert owners == ["mwm"]
    # The pod runs as the account the subchart grants RBAC to, with mwm's volumes.
    account = next(o for o in objects if o["kind"] == "ServiceAccount")
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    volumes = {v["name"] for v in spec["volumes"]}
    assert {m["name"] for m in proxy["volumeMounts"]} <= volumes
    secret = next(o for o in objects if o["kind"] == "Secret")
    (secret_volume,) = (v for v in spec["volumes"] if v["name"] == "mwm-secrets")
    assert secret_volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert spec["enableServiceLinks"] is False
    assert "checksum/secret" in app["spec"]["template"]["metadata"]["annotations"]
    # The subchart itself renders no Deployment of its own in the sidecar placement.
    assert len(all_of(objects, "Deployment")) == 1


def test_sidecar_helpers_also_take_an_explicit_scope(tmp_path: Path) -> None:
    # For Helm versions without .Subcharts, the documented dict form works too (Name is
    # the dependency's name in the parent: its alias, which Helm also gives .Chart.Name).
    template = """\
apiVersion: v1
kind: Pod
metadata:
  name: probe
spec:
  {{- $mwm := dict "Values" .Values.mwm "Release" .Release "Chart" (dict "Name" "mwm"
      "Version" "0.1.0" "AppVersion" "0.1.0") }}
  serviceAccountName: {{ include "maintenance-window-manager.serviceAccountName" $mwm }}
  containers:
    - {{ include "maintenance-window-manager.sidecarContainer" $mwm | nindent 6 | trim }}
  volumes:
    {{- include "maintenance-window-manager.sidecarVolumes" $mwm | nindent 4 }}
"""
    parent = parent_chart(tmp_path, template=template, parent_values=SIDECAR_PARENT_VALUES)
    objects = render(chart=parent, release="shop", namespace="shop")
    validate_all(objects)
    pod = only(objects, "Pod")
    account = only(objects, "ServiceAccount")
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    # Named after the dependency as the parent calls it (alias mwm, release shop).
    env = env_of(mwm_container(pod["spec"]))
    assert env["MWM_SOURCE__LEADER_ELECTION__LEASE_NAME"] == "shop-mwm-leader"


# --- options that change the output -----------------------------------------------------


def test_autoscaling_replaces_the_replica_count() -> None:
    objects = render(values(autoscaling={"enabled": True, "targetMemoryUtilizationPercentage": 75}))
    validate_all(objects)
    assert "replicas" not in deployment(objects)["spec"]
    hpa = only(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment(objects)["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert targets == {
        "cpu": {"type": "Utilization", "averageUtilization": 80},
        "memory": {"type": "Utilization", "averageUtilization": 75},
    }


def test_autoscaling_without_a_target_is_refused() -> None:
    with pytest.raises(helm_python.HelmRenderError, match="targetCPUUtilizationPercentage"):
        render(values(autoscaling={"enabled": True, "targetCPUUtilizationPercentage": None}))


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        pytest.param({}, {"minAvailable": 1}, id="default-min-available"),
        pytest.param({"minAvailable": "50%"}, {"minAvailable": "50%"}, id="percentage"),
        pytest.param({"maxUnavailable": 1}, {"maxUnavailable": 1}, id="max-unavailable"),
        pytest.param({"enabled": False}, None, id="disabled"),
    ],
)
def test_pod_disruption_budget(budget: JsonObject, expected: JsonObject | None) -> None:
    objects = render(values(podDisruptionBudget=budget))
    validate_all(objects)
    pdbs = all_of(objects, "PodDisruptionBudget")
    if expected is None:
        assert pdbs == []
        return
    (pdb,) = pdbs
    selector = pdb["spec"].pop("selector")
    assert pdb["spec"] == expected
    assert selector["matchLabels"] == deployment(objects)["spec"]["selector"]["matchLabels"]


def test_service_monitor_scrapes_metrics_on_the_management_port() -> None:
    objects = render(
        values(
            metrics={
                "serviceMonitor": {
                    "enabled": True,
                    "interval": "15s",
                    "scrapeTimeout": "10s",
                    "labels": {"release": "prometheus"},
                }
            }
        )
    )
    validate_all(objects)  # everything but the ServiceMonitor, which is checked here
    monitor = only(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "shop"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = only(objects, "Service")
    assert monitor["spec"]["selector"] == {"matchLabels": service["spec"]["selector"]}
    assert all(
        service["metadata"]["labels"][k] == v for k, v in service["spec"]["selector"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["shop"]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "management", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    assert "management" in {p["name"] for p in service["spec"]["ports"]}
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(monitor["spec"]) == {"selector", "namespaceSelector", "endpoints"}


MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


@pytest.mark.parametrize(
    "peers", [pytest.param([MONITORING], id="monitoring"), pytest.param([], id="nobody")]
)
def test_network_policy_opens_http_and_restricts_management(peers: list[JsonObject]) -> None:
    objects = render(values(networkPolicy={"enabled": True, "managementFrom": peers}))
    validate_all(objects)
    policy = only(objects, "NetworkPolicy")
    assert policy["spec"]["podSelector"] == deployment(objects)["spec"]["selector"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = policy["spec"]["ingress"]
    # http from anywhere: a rule without "from".
    assert rules[0] == {"ports": [{"port": "http", "protocol": "TCP"}]}
    management = [r for r in rules if {"port": "management", "protocol": "TCP"} in r["ports"]]
    if peers:
        assert management == [{"from": peers, "ports": [{"port": "management", "protocol": "TCP"}]}]
    else:
        assert management == []
    assert all("from" in r for r in management)


def test_generated_secret_holds_three_random_tokens() -> None:
    objects = render(BASE_VALUES)
    secret = only(objects, "Secret")
    assert set(secret["data"]) == {"bypass-token", "cookie-secret", "admin-token"}
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", v) for v in decoded.values()), decoded
    assert len(set(decoded.values())) == 3
    again = only(render(BASE_VALUES), "Secret")
    assert again["data"] != secret["data"], "tokens must be random, not fixed in the chart"
    (volume,) = (v for v in pod_spec(objects)["volumes"] if v["name"] == "mwm-secrets")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert {i["key"] for i in volume["secret"]["items"]} == set(secret["data"])


def test_existing_secret_is_mounted_instead_of_a_generated_one() -> None:
    objects = render(values(secrets={"existingSecret": "shop-mwm-tokens"}))
    validate_all(objects)
    assert all_of(objects, "Secret") == []
    (volume,) = (v for v in pod_spec(objects)["volumes"] if v["name"] == "mwm-secrets")
    assert volume["secret"]["secretName"] == "shop-mwm-tokens"
    # Deterministic, so `helm template` twice gives the same pods.
    assert render(values(secrets={"existingSecret": "shop-mwm-tokens"})) == objects


def test_secrets_are_files_never_plain_values() -> None:
    objects = render(BASE_VALUES)
    proxy = container(objects)
    env = env_of(proxy)
    assert {k: v for k, v in env.items() if "TOKEN" in k or "SECRET" in k} == {
        "MWM_BYPASS__TOKEN_FILE": "/etc/mwm/secrets/bypass-token",
        "MWM_BYPASS__COOKIE_SECRET_FILE": "/etc/mwm/secrets/cookie-secret",
        "MWM_MANAGEMENT__ADMIN_TOKEN_FILE": "/etc/mwm/secrets/admin-token",
    }
    (mount,) = (m for m in proxy["volumeMounts"] if m["name"] == "mwm-secrets")
    assert mount == {"name": "mwm-secrets", "mountPath": "/etc/mwm/secrets", "readOnly": True}


TEMPLATE = "<!doctype html><title>{{ title }}</title><p>{{ message }}</p>\n"


def test_page_templates_become_a_mounted_config_map() -> None:
    objects = render(values(pageTemplates={"maintenance.html": TEMPLATE}))
    validate_all(objects)
    config_map = only(objects, "ConfigMap")
    assert config_map["data"] == {"maintenance.html": TEMPLATE}
    proxy = container(objects)
    assert env_of(proxy)["MWM_PAGE__TEMPLATE_DIR"] == "/etc/mwm/templates"
    (mount,) = (m for m in proxy["volumeMounts"] if m["name"] == "mwm-templates")
    assert mount == {"name": "mwm-templates", "mountPath": "/etc/mwm/templates", "readOnly": True}
    (volume,) = (v for v in pod_spec(objects)["volumes"] if v["name"] == "mwm-templates")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]


def test_page_template_changes_roll_the_pods() -> None:
    def annotations(source: str) -> JsonObject:
        objects = render(values(pageTemplates={"maintenance.html": source}))
        result: JsonObject = deployment(objects)["spec"]["template"]["metadata"]["annotations"]
        return result

    assert annotations("a")["checksum/templates"] != annotations("b")["checksum/templates"]


def test_an_existing_template_config_map_is_mounted() -> None:
    objects = render(values(pageTemplatesConfigMap="shop-pages"))
    validate_all(objects)
    assert all_of(objects, "ConfigMap") == []
    (volume,) = (v for v in pod_spec(objects)["volumes"] if v["name"] == "mwm-templates")
    assert volume["configMap"]["name"] == "shop-pages"
    assert env_of(container(objects))["MWM_PAGE__TEMPLATE_DIR"] == "/etc/mwm/templates"


def test_without_templates_nothing_is_mounted_for_them() -> None:
    objects = render(BASE_VALUES)
    assert "MWM_PAGE__TEMPLATE_DIR" not in env_of(container(objects))
    assert "mwm-templates" not in {v["name"] for v in pod_spec(objects)["volumes"]}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        pytest.param(
            {"pageTemplates": {"error.txt": "x"}, "pageTemplatesConfigMap": "pages"},
            "not both",
            id="templates-twice",
        ),
        pytest.param(
            {"pageTemplates": {"error.txt": "x"}, "config": {"page": {"template_dir": "/x"}}},
            "template_dir is set by the chart",
            id="template-dir-and-templates",
        ),
        pytest.param(
            {
                "switchConfigMap": {"enabled": False},
                "config": {"source": {"kubernetes": {"configmap_name": "x"}}},
            },
            "switchConfigMap.enabled is false",
            id="switch-name-without-switch",
        ),
        pytest.param(
            {"extraEnv": [{"name": "MWM_UPSTREAM__URL", "value": "http://x"}]},
            "MWM_UPSTREAM__URL is already set",
            id="extra-env-twice",
        ),
        pytest.param(
            {"terminationGracePeriodSeconds": 30},
            r"must exceed .* at least 36",
            id="grace-period-too-short",
        ),
    ],
)
def test_contradictory_values_are_refused_with_a_reason(override: JsonObject, message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=message):
        render(values(**override))


def test_watch_namespaces_bind_the_endpoint_reader_there() -> None:
    objects = render(values(watchNamespaces=["payments", "search"]))
    validate_all(objects)
    reader = next(
        r for r in all_of(objects, "ClusterRole") if "endpoint-reader" in r["metadata"]["name"]
    )
    bindings = [
        b
        for b in all_of(objects, "RoleBinding")
        if b["roleRef"]["name"] == reader["metadata"]["name"]
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["payments", "search", "shop"]
    account = only(objects, "ServiceAccount")["metadata"]["name"]
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "ClusterRole"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": "shop"}
        ]


def test_switch_role_is_optional() -> None:
    names = {r["metadata"]["name"] for r in all_of(render(BASE_VALUES), "ClusterRole")}
    assert "shop-mwm-maintenance-window-manager-switch" in names
    without = render(values(rbac={"createSwitchRole": False}))
    assert {r["metadata"]["name"] for r in all_of(without, "ClusterRole")} == names - {
        "shop-mwm-maintenance-window-manager-switch"
    }


def test_without_rbac_or_account_the_pods_use_the_named_account() -> None:
    objects = render(
        values(rbac={"create": False}, serviceAccount={"create": False, "name": "shop-proxy"})
    )
    validate_all(objects)
    assert kinds(objects) == ["Deployment", "PodDisruptionBudget", "Secret", "Service"]
    assert pod_spec(objects)["serviceAccountName"] == "shop-proxy"


def test_ingress_routes_to_the_http_port() -> None:
    ingress_values = {
        "enabled": True,
        "className": "nginx",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "0"},
        "hosts": [{"host": "shop.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
        "tls": [{"secretName": "shop-tls", "hosts": ["shop.example.com"]}],
    }
    objects = render(values(ingress=ingress_values))
    validate_all(objects)
    ingress = only(objects, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {
        "name": only(objects, "Service")["metadata"]["name"],
        "port": {"name": "http"},
    }
    assert ingress["spec"]["tls"] == ingress_values["tls"]


CHECKERS = [
    {
        "name": "shop",
        "labels": {"team": "web"},
        "spec": {"services": [{"name": "frontend", "critical": True}]},
    },
    {
        "name": "payments",
        "spec": {
            "services": [{"name": "payments", "namespace": "payments", "minReady": 2}],
            "windows": [{"start": "2026-12-01T10:00:00Z", "end": "2026-12-01T12:00:00Z"}],
        },
    },
]  # fmt: skip


def test_no_service_checker_by_default_and_listed_ones_are_valid() -> None:
    assert all_of(render(BASE_VALUES), "ServiceChecker") == []
    objects = render(values(serviceCheckers=CHECKERS))
    validate_all(objects)
    checkers = all_of(objects, "ServiceChecker")
    assert [c["metadata"]["name"] for c in checkers] == ["shop", "payments"]
    validator = CrdValidator(strict(version_schema(load_crd())))
    for checker, wanted in zip(checkers, CHECKERS, strict=True):
        assert validator.problems(checker) == []
        assert checker["metadata"]["namespace"] == "shop"
        assert checker["spec"] == wanted["spec"]
    assert checkers[0]["metadata"]["labels"]["team"] == "web"
    assert checkers[0]["metadata"]["labels"]["app.kubernetes.io/instance"] == "mwm"


def test_everything_on_at_once_is_valid() -> None:
    everything = values(
        autoscaling={"enabled": True},
        metrics={"serviceMonitor": {"enabled": True}},
        networkPolicy={"enabled": True, "managementFrom": [MONITORING]},
        ingress={"enabled": True, "hosts": [{"host": "shop.example.com"}]},
        pageTemplates={"maintenance.txt": "{{ title }}"},
        watchNamespaces=["payments"],
        serviceCheckers=CHECKERS,
        extraEnv=[{"name": "TZ", "value": "UTC"}],
        imagePullSecrets=[{"name": "regcred"}],
        priorityClassName="high",
        nodeSelector={"kubernetes.io/os": "linux"},
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "edge"}],
        affinity={"nodeAffinity": {}},
        podAnnotations={"example.com/owner": "web"},
        podLabels={"team": "web"},
        serviceAccount={"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}},
        service={"type": "LoadBalancer", "annotations": {"example.com/lb": "internal"}},
        image={"digest": "sha256:" + "a" * 64},
    )
    objects = render(everything)
    validate_all(objects)
    pod = deployment(objects)["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "web"
    assert pod["metadata"]["annotations"]["example.com/owner"] == "web"
    assert pod["spec"]["priorityClassName"] == "high"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    proxy = mwm_container(pod["spec"])
    assert proxy["image"] == "ghcr.io/mamrezb/maintenance-window-manager@sha256:" + "a" * 64
    assert env_of(proxy)["TZ"] == "UTC"


def test_pod_labels_cannot_break_the_selector() -> None:
    objects = render(values(podLabels={"app.kubernetes.io/name": "other"}))
    selector = deployment(objects)["spec"]["selector"]["matchLabels"]
    labels = deployment(objects)["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in selector.items())


def test_image_tag_defaults_to_the_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    image = container(render(BASE_VALUES))["image"]
    assert image == f"ghcr.io/mamrezb/maintenance-window-manager:{chart['appVersion']}"
    tagged = container(render(values(image={"tag": "0.2.0", "repository": "mwm"})))
    assert tagged["image"] == "mwm:0.2.0"


# --- pods: probes, security, shutdown, spreading ----------------------------------------


def test_probes_point_at_the_management_port() -> None:
    for port in (8081, 9091):
        objects = render(values(config={"listen": {"management_port": port}}))
        proxy = container(objects)
        ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
        assert ports["management"] == port
        probes = {
            name: (proxy[name]["httpGet"]["path"], proxy[name]["httpGet"]["port"])
            for name in ("livenessProbe", "readinessProbe", "startupProbe")
        }
        assert probes == {
            "livenessProbe": ("/healthz", "management"),
            "readinessProbe": ("/readyz", "management"),
            "startupProbe": ("/healthz", "management"),
        }
        assert env_of(proxy)["MWM_LISTEN__MANAGEMENT_PORT"] == str(port)
    assert "MWM_LISTEN__MANAGEMENT_PORT" not in env_of(container(render(BASE_VALUES)))


def test_public_port_follows_the_setting() -> None:
    objects = render(values(config={"listen": {"public_port": 9000}}))
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert ports["http"] == 9000
    assert env_of(container(objects))["MWM_LISTEN__PUBLIC_PORT"] == "9000"
    http = next(p for p in only(objects, "Service")["spec"]["ports"] if p["name"] == "http")
    assert http["targetPort"] == "http"


def test_pod_runs_non_root_with_a_read_only_root_filesystem() -> None:
    objects = render(BASE_VALUES)
    pod = pod_spec(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container(objects)["securityContext"]
    assert context == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # The one writable place: /tmp (the workers' shared switch file), an emptyDir.
    mounts = container(objects)["volumeMounts"]
    (tmp,) = (m for m in mounts if m["mountPath"] == "/tmp")  # noqa: S108 (an emptyDir)
    (volume,) = (v for v in pod["volumes"] if v["name"] == tmp["name"])
    assert "emptyDir" in volume
    assert pod["enableServiceLinks"] is False
    resources = container(objects)["resources"]
    assert resources == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }


def test_shutdown_needs_no_pre_stop_hook() -> None:
    objects = render(BASE_VALUES)
    proxy = container(objects)
    assert "lifecycle" not in proxy
    env = env_of(proxy)
    assert env["MWM_SHUTDOWN__PRESTOP_DELAY_S"] == "5"
    grace = pod_spec(objects)["terminationGracePeriodSeconds"]
    assert grace > 5 + 30  # prestop delay + the default drain timeout
    longer = render(
        values(config={"shutdown": {"drain_timeout_s": 50}}, terminationGracePeriodSeconds=60)
    )
    assert pod_spec(longer)["terminationGracePeriodSeconds"] == 60


def test_replicas_spread_over_nodes_by_default() -> None:
    objects = render(BASE_VALUES)
    (constraint,) = pod_spec(objects)["topologySpreadConstraints"]
    assert constraint == {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": deployment(objects)["spec"]["selector"]["matchLabels"]},
    }
    assert "topologySpreadConstraints" not in pod_spec(render(values(topologySpreadConstraints=[])))
    own = {
        "maxSkew": 2,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "x"}},
    }
    assert pod_spec(render(values(topologySpreadConstraints=[own])))[
        "topologySpreadConstraints"
    ] == [own]


def test_extra_env_is_appended() -> None:
    extra = [
        {"name": "TZ", "value": "UTC"},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    objects = render(values(extraEnv=extra))
    validate_all(objects)
    assert container(objects)["env"][-2:] == extra


# --- releases, lint, notes --------------------------------------------------------------


def test_two_releases_in_one_namespace_do_not_collide() -> None:
    everything = values(
        pageTemplates={"maintenance.txt": "x"},
        autoscaling={"enabled": True},
        networkPolicy={"enabled": True},
        metrics={"serviceMonitor": {"enabled": True}},
        ingress={"enabled": True, "hosts": [{"host": "a.example.com"}]},
        watchNamespaces=["payments"],
    )
    first = render(everything, release="shop-a")
    second = render(everything, release="shop-b")

    def identities(objects: list[JsonObject]) -> set[tuple[str, str, str]]:
        return {
            (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects
        }

    assert identities(first).isdisjoint(identities(second))
    assert len(identities(first)) == len(first)  # nothing collides within one release either

    def settings(objects: list[JsonObject]) -> dict[str, str]:
        return env_of(container(objects))

    for name in (
        "MWM_SOURCE__LEADER_ELECTION__LEASE_NAME",
        "MWM_SOURCE__KUBERNETES__CONFIGMAP_NAME",
    ):
        assert settings(first)[name] != settings(second)[name]
    # Each release's pods are selected by its own Service and budget only.
    assert only(first, "Service")["spec"]["selector"] != only(second, "Service")["spec"]["selector"]


def test_cluster_scoped_names_include_namespace_and_release() -> None:
    shop = render(BASE_VALUES, namespace="shop")
    staging = render(BASE_VALUES, namespace="staging")
    shop_names = {r["metadata"]["name"] for r in all_of(shop, "ClusterRole")}
    staging_names = {r["metadata"]["name"] for r in all_of(staging, "ClusterRole")}
    assert shop_names.isdisjoint(staging_names)
    assert all(n.startswith("shop-mwm-") for n in shop_names)


def lint_errors(values: JsonObject) -> list[Any]:
    # skip_schema_validation: the SDK's lint (helm-python-sdk 0.2.2) adds a phantom "false"
    # key to the values it checks against the schema, which additionalProperties: false
    # rejects; the schema is checked with Helm's own validator in test_chart_values_schema.
    report = helm_python.lint(
        CHART, values, strict=True, namespace="shop", skip_schema_validation=True
    )
    return [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"placement": "sidecar"}, id="sidecar"),
        pytest.param(
            {"autoscaling": {"enabled": True}, "networkPolicy": {"enabled": True}},
            id="options",
        ),
    ],
)
def test_lint_passes(override: JsonObject) -> None:
    assert lint_errors(values(**override)) == []


def test_lint_reports_a_broken_render() -> None:
    # Guards the check above: lint must report what Kubernetes would refuse.
    assert lint_errors(values(fullnameOverride="Bad_Name"))


def test_notes_tell_how_to_switch_and_where_status_is() -> None:
    text = notes(BASE_VALUES)
    assert "mwm on  --checker example-checker -n shop" in text
    assert "kubectl patch svcc example-checker -n shop --type merge" in text
    assert "kubectl create configmap mwm-maintenance-window-manager-maintenance -n shop" in text
    assert "kubectl port-forward -n shop svc/mwm-maintenance-window-manager 8081:8081" in text
    assert "curl -s http://127.0.0.1:8081/status" in text
    assert "curl -s http://127.0.0.1:8081/services" in text
    assert "jsonpath='{.data.admin-token}'" in text
    assert "jsonpath='{.data.bypass-token}'" in text
    without_switch = notes(values(switchConfigMap={"enabled": False}))
    assert "configmap" not in without_switch
    sidecar = notes({"placement": "sidecar"})
    assert "maintenance-window-manager.sidecarContainer" in sidecar
    assert "targetPort" in sidecar


def test_notes_render_for_every_placement() -> None:
    for placement_values in (BASE_VALUES, merged(BASE_VALUES, {"placement": "sidecar"})):
        files = render_files(placement_values)
        assert any(path.endswith("NOTES.txt") for path in files)
