"""The chart's RBAC grants what config/rbac grants, and covers every API call the code makes.

The calls are read from the source, not listed by hand: every ``Reflector`` (a list, then
watches) and every ``api.<verb>(RESOURCE, ...)`` call in the modules the server process
imports (``proxy.runtime`` and everything it imports, transitively), plus the Lease calls
kubernetes-asyncio's ``LeaseLock`` makes for leader election.  A new watch or write in the
code fails here until the chart (and config/rbac) grants it.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller import kube
from tests.chart.chartrender import (
    BASE_VALUES,
    JsonObject,
    all_of,
    env_of,
    mwm_container,
    only,
    render,
    values,
)
from tests.crd.test_crd import grants, rbac_objects

Call = tuple[str, str, str]
"""(apiGroup, resource, verb)."""

KUBE_API_VERBS = {
    "get": "get",
    "list": "list",
    "watch": "watch",
    "patch": "patch",
    "create": "create",
}
"""controller.kube.KubeApi's methods and the Kubernetes verb each one is authorized as."""
LEASE_LOCK_VERBS = {"read": "get", "create": "create", "replace": "update", "patch": "patch"}


def module_path(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def imported_modules(root: str) -> set[str]:
    """``root`` and every module of ours it imports, transitively."""
    seen: set[str] = set()
    pending = [root]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_path(name)
        assert path is not None, name
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            pending.extend(t for t in targets if t.split(".")[0] in ("proxy", "controller"))
    return seen


def resource(name: str) -> kube.Resource:
    value = getattr(kube, name)
    assert isinstance(value, kube.Resource), name
    return value


def calls_in(module: str) -> Iterator[Call]:
    path = module_path(module)
    assert path is not None
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "Reflector":
            # Reflector(api, RESOURCE, ...): lists, then watches (controller/watching.py).
            target = node.args[1]
            assert isinstance(target, ast.Name), ast.unparse(node)
            found = resource(target.id)
            yield from ((found.group, found.plural, verb) for verb in reflector_verbs())
        elif (
            isinstance(func, ast.Attribute)
            and func.attr in KUBE_API_VERBS
            and ast.unparse(func.value).endswith("api")
            and node.args
            and isinstance(node.args[0], ast.Name)
        ):
            found = resource(node.args[0].id)
            plural = found.plural
            for keyword in node.keywords:
                if keyword.arg == "subresource" and isinstance(keyword.value, ast.Constant):
                    plural = f"{plural}/{keyword.value.value}"
            yield (found.group, plural, KUBE_API_VERBS[func.attr])


def reflector_verbs() -> set[str]:
    """The KubeApi methods controller/watching.py calls, as verbs."""
    path = module_path("controller.watching")
    assert path is not None
    verbs = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and ast.unparse(node.func.value) == "self.api"
        ):
            verbs.add(KUBE_API_VERBS[node.func.attr])
    return verbs


def lease_calls() -> set[Call]:
    """What kubernetes-asyncio's LeaseLock (used by controller/leadership.py) calls."""
    path = module_path("kubernetes_asyncio.leaderelection.resourcelock.leaselock")
    assert path is not None
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr.endswith("_namespaced_lease"):
            action = node.attr.removesuffix("_namespaced_lease")
            found.add((kube.LEASES.group, kube.LEASES.plural, LEASE_LOCK_VERBS[action]))
    return found


def server_calls() -> set[Call]:
    modules = imported_modules("proxy.runtime")
    assert {"controller.kubesource", "controller.statuswriter", "controller.leadership"} <= modules
    found = {call for module in modules for call in calls_in(module)}
    if "controller.leadership" in modules:
        found |= lease_calls()
    return found


def test_the_call_table_is_read_from_the_code() -> None:
    # Guards the reading itself: these calls are known to exist.
    group = kube.SERVICECHECKERS.group
    assert reflector_verbs() == {"list", "watch"}
    assert lease_calls() == {
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
    }
    assert server_calls() >= {
        (group, "servicecheckers", "list"),
        (group, "servicecheckers", "watch"),
        (group, "servicecheckers/status", "patch"),
        ("discovery.k8s.io", "endpointslices", "watch"),
        ("", "services", "list"),
        ("", "configmaps", "watch"),
        ("", "events", "create"),
    }


def chart_grants(objects: list[JsonObject], kind: str, suffix: str = "") -> set[Call]:
    roles = [o for o in all_of(objects, kind) if o["metadata"]["name"].endswith(suffix)]
    assert len(roles) == 1, [r["metadata"]["name"] for r in roles]
    return {(group, res, verb) for group, res, verb, _ in grants(roles[0])}


def config_grants(kind: str, name: str) -> set[Call]:
    return {(group, res, verb) for group, res, verb, _ in grants(rbac_objects()[(kind, name)])}


def test_chart_grants_what_config_rbac_grants() -> None:
    objects = render(BASE_VALUES)
    assert chart_grants(objects, "Role") == config_grants("Role", "mwm-controller")
    assert chart_grants(objects, "ClusterRole", "-endpoint-reader") == config_grants(
        "ClusterRole", "mwm-endpoint-reader"
    )
    assert chart_grants(objects, "ClusterRole", "-switch") == config_grants(
        "ClusterRole", "mwm-switch"
    )


def test_chart_grants_exactly_the_calls_of_the_server() -> None:
    objects = render(BASE_VALUES)
    granted = chart_grants(objects, "Role") | chart_grants(
        objects, "ClusterRole", "-endpoint-reader"
    )
    # Exactly: every call is granted, and nothing is granted that no call needs.
    assert granted == server_calls()


def test_switch_role_covers_the_cli() -> None:
    calls = {call for module in ("proxy.cli", "controller.switching") for call in calls_in(module)}
    assert calls, "mwm on/off --checker must call the API"
    assert calls <= chart_grants(render(BASE_VALUES), "ClusterRole", "-switch")


def test_resource_names_are_the_ones_the_pods_use() -> None:
    objects = render(BASE_VALUES)
    env = env_of(mwm_container(only(objects, "Deployment")["spec"]["template"]["spec"]))
    role = only(objects, "Role")
    named = {
        (rule["resources"][0], tuple(rule["resourceNames"]))
        for rule in role["rules"]
        if "resourceNames" in rule
    }
    assert named == {
        ("configmaps", (env["MWM_SOURCE__KUBERNETES__CONFIGMAP_NAME"],)),
        ("leases", (env["MWM_SOURCE__LEADER_ELECTION__LEASE_NAME"],)),
    }
    assert role["metadata"]["namespace"] == env["MWM_SOURCE__KUBERNETES__NAMESPACE"] == "shop"


def test_renamed_lease_and_switch_are_granted_by_their_new_names() -> None:
    objects = render(
        values(
            config={
                "source": {
                    "kubernetes": {"configmap_name": "shop-maintenance"},
                    "leader_election": {"lease_name": "shop-leader"},
                }
            }
        )
    )
    names = {
        rule["resources"][0]: rule["resourceNames"]
        for rule in only(objects, "Role")["rules"]
        if "resourceNames" in rule
    }
    assert names == {"configmaps": ["shop-maintenance"], "leases": ["shop-leader"]}


def test_without_the_config_map_switch_no_config_map_is_readable() -> None:
    objects = render(values(switchConfigMap={"enabled": False}))
    assert ("", "configmaps", "get") not in chart_grants(objects, "Role")
    env = env_of(mwm_container(only(objects, "Deployment")["spec"]["template"]["spec"]))
    assert "MWM_SOURCE__KUBERNETES__CONFIGMAP_NAME" not in env


def test_a_watched_namespace_elsewhere_gets_the_role_there() -> None:
    objects = render(values(config={"source": {"kubernetes": {"namespace": "shop-checkers"}}}))
    assert only(objects, "Role")["metadata"]["namespace"] == "shop-checkers"
    role_binding = next(b for b in all_of(objects, "RoleBinding") if b["roleRef"]["kind"] == "Role")
    assert role_binding["metadata"]["namespace"] == "shop-checkers"
    assert role_binding["subjects"][0]["namespace"] == "shop"


@pytest.mark.parametrize("placement", ["gateway", "sidecar"])
def test_no_wildcards_and_no_secret_access(placement: str) -> None:
    objects = render(values(placement=placement, watchNamespaces=["payments"]))
    for role in all_of(objects, "Role") + all_of(objects, "ClusterRole"):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert not any("*" in v for v in rule.get(key, ())), (role["metadata"]["name"], key)
            assert "secrets" not in rule["resources"]
    assert not all_of(objects, "ClusterRoleBinding"), "reading endpoints is granted per namespace"
