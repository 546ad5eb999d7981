"""The ServiceChecker CRD, the RBAC and the samples under ``config/``, checked offline.

Custom resources are validated with the CRD's own schema (see ``tests/crd/schema.py``);
the Kubernetes objects themselves (the CRD, Roles, bindings, ServiceAccount) with
``kubernetes-validate``'s copy of the newest Kubernetes API schemas it bundles, in strict
mode so a misspelt field fails.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft202012Validator

from tests.crd.schema import (
    CONFIG,
    CRD_PATH,
    CrdValidator,
    JsonObject,
    Problem,
    load_crd,
    load_documents,
    strict,
    version_schema,
)

# Verbatim from the seed operator's README ("Usage"): it must be accepted unchanged.
SEED_EXAMPLE = """\
apiVersion: maintenance.mamrezb.com/v1alpha1
kind: ServiceChecker
metadata:
  name: example-checker
spec:
  services:
    - name: my-service
      namespace: default
      critical: true
"""

GROUP = "maintenance.mamrezb.com"
RBAC = CONFIG / "rbac"
SAMPLES = CONFIG / "samples"

# Short names of built-in kinds that kubectl resolves; a CRD reusing one makes it ambiguous.
BUILTIN_SHORT_NAMES = {
    "cm", "cs", "csr", "crd", "crds", "cj", "deploy", "ds", "ep", "ev", "hpa", "ing", "limits",
    "netpol", "no", "ns", "pc", "pdb", "po", "psp", "pv", "pvc", "quota", "rc", "rs", "sa",
    "sc", "sts", "svc",
}  # fmt: skip


@pytest.fixture(scope="module")
def crd() -> JsonObject:
    return load_crd()


@pytest.fixture(scope="module")
def validator(crd: JsonObject) -> CrdValidator:
    return CrdValidator(version_schema(crd))


@pytest.fixture(scope="module")
def strict_validator(crd: JsonObject) -> CrdValidator:
    return CrdValidator(strict(version_schema(crd)))


def checker(spec: Any = None, *, status: Any = None) -> JsonObject:
    obj: JsonObject = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "ServiceChecker",
        "metadata": {"name": "shop", "namespace": "shop"},
    }
    if spec is not None:
        obj["spec"] = spec
    if status is not None:
        obj["status"] = status
    return obj


def window(start: str, end: str, reason: str | None = None) -> JsonObject:
    entry: JsonObject = {"start": start, "end": end}
    if reason is not None:
        entry["reason"] = reason
    return entry


def service(name: str = "frontend", **fields: Any) -> JsonObject:
    return {"name": name, **fields}


def assert_rejected(problems: list[Problem], path: str, keyword: str) -> None:
    assert any(p.path == path and p.keyword == keyword for p in problems), (
        f"expected a {keyword} problem at {path}, got {[str(p) for p in problems]}"
    )


# --- custom resources -------------------------------------------------------------------


def test_seed_example_is_accepted_unchanged(
    validator: CrdValidator, strict_validator: CrdValidator
) -> None:
    seed = yaml.safe_load(SEED_EXAMPLE)
    assert validator.problems(seed) == []
    assert strict_validator.problems(seed) == []


def test_seed_sample_is_the_seed_example_verbatim() -> None:
    text = (SAMPLES / "servicechecker_seed.yaml").read_text(encoding="utf-8")
    assert SEED_EXAMPLE in text
    assert load_documents(SAMPLES / "servicechecker_seed.yaml") == [yaml.safe_load(SEED_EXAMPLE)]


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"services": [{"name": "db"}]}, id="namespace-and-critical-left-out"),
        pytest.param({"services": [{"name": "db", "namespace": ""}]}, id="empty-namespace"),
        pytest.param({"services": []}, id="no-services"),
        pytest.param({}, id="empty-spec"),
        pytest.param(
            {"services": [service("db", critical=True), service("db", critical=False)]},
            id="same-service-twice",
        ),
    ],
)
def test_other_seed_shapes_are_accepted(strict_validator: CrdValidator, spec: JsonObject) -> None:
    assert strict_validator.problems(checker(spec)) == []


def sample_paths() -> list[Path]:
    return sorted(p for p in SAMPLES.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", sample_paths(), ids=lambda p: p.name)
def test_samples_are_accepted(strict_validator: CrdValidator, path: Path) -> None:
    documents = load_documents(path)
    assert documents
    for document in documents:
        assert document["kind"] == "ServiceChecker"
        assert strict_validator.problems(document) == []


def test_full_sample_uses_every_spec_field(crd: JsonObject) -> None:
    (full,) = load_documents(SAMPLES / "servicechecker_full.yaml")
    spec_schema = version_schema(crd)["properties"]["spec"]

    def unused(schema: JsonObject, values: list[Any], path: str) -> Iterator[str]:
        if "properties" in schema:
            for key, child in schema["properties"].items():
                present = [v[key] for v in values if isinstance(v, dict) and key in v]
                if not present:
                    yield f"{path}.{key}"
                else:
                    yield from unused(child, present, f"{path}.{key}")
        elif "items" in schema:
            items = [item for value in values for item in value]
            yield from unused(schema["items"], items, f"{path}[]")

    assert list(unused(spec_schema, [full["spec"]], "spec")) == []


def test_limits_are_inclusive(strict_validator: CrdValidator) -> None:
    spec = {
        "services": [service(f"svc-{i}") for i in range(100)],
        "windows": [
            window(f"2026-12-01T10:{i % 60:02d}:00Z", "2026-12-02T00:00:00Z") for i in range(100)
        ],
        "enterDelaySeconds": 0,
        "exitDelaySeconds": 3600,
        "maintenance": {"enabled": True, "reason": "x" * 500},
    }
    spec["services"][0] = service("a" * 63, minReady=1)
    spec["windows"][0]["announceSeconds"] = 2592000
    spec["windows"][1]["announceSeconds"] = 0
    assert strict_validator.problems(checker(spec)) == []


def test_window_order_compares_instants_not_text(strict_validator: CrdValidator) -> None:
    # 10:00+02:00 is 08:00Z: before 09:00Z, although it sorts after it as text.
    spec = {"windows": [window("2026-12-01T10:00:00+02:00", "2026-12-01T09:00:00Z")]}
    assert strict_validator.problems(checker(spec)) == []


def valid_spec() -> JsonObject:
    return {
        "services": [service("frontend", namespace="shop", critical=True, minReady=1)],
        "maintenance": {"enabled": False, "reason": "Upgrade", "until": "2026-12-01T12:00:00Z"},
        "windows": [window("2026-12-01T10:00:00Z", "2026-12-01T12:00:00Z", "Upgrade")],
        "enterDelaySeconds": 5,
        "exitDelaySeconds": 10,
    }


def test_valid_spec_is_accepted(strict_validator: CrdValidator) -> None:
    # The starting point of every invalid case below: each case breaks exactly one field.
    assert strict_validator.problems(checker(valid_spec())) == []


def _with(path: str, value: Any) -> Callable[[], JsonObject]:
    """A valid spec with the field at dotted ``path`` (``services.0.name``) set to value."""

    def build() -> JsonObject:
        spec = valid_spec()
        node: Any = spec
        *parents, last = path.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        return spec

    return build


INVALID_SPECS = [
    pytest.param(_with("services.0.name", "My-Service"), "$.spec.services[0].name", "pattern",
                 id="name-uppercase"),
    pytest.param(_with("services.0.name", "my_service"), "$.spec.services[0].name", "pattern",
                 id="name-underscore"),
    pytest.param(_with("services.0.name", "-frontend"), "$.spec.services[0].name", "pattern",
                 id="name-leading-dash"),
    pytest.param(_with("services.0.name", "a" * 64), "$.spec.services[0].name", "maxLength",
                 id="name-64-chars"),
    pytest.param(_with("services.0", {"critical": True}), "$.spec.services[0]", "required",
                 id="name-missing"),
    pytest.param(_with("services.0.namespace", "Shop"), "$.spec.services[0].namespace",
                 "pattern", id="namespace-uppercase"),
    pytest.param(_with("services.0.minReady", 0), "$.spec.services[0].minReady", "minimum",
                 id="minReady-0"),
    pytest.param(_with("services.0.minReady", "2"), "$.spec.services[0].minReady", "type",
                 id="minReady-string"),
    pytest.param(_with("services.0.critical", "yes"), "$.spec.services[0].critical", "type",
                 id="critical-string"),
    pytest.param(_with("services", [service(f"svc-{i}") for i in range(101)]),
                 "$.spec.services", "maxItems", id="101-services"),
    pytest.param(
        _with("windows", [window("2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z")] * 101),
        "$.spec.windows", "maxItems", id="101-windows"),
    pytest.param(_with("maintenance.until", "tomorrow"), "$.spec.maintenance.until", "format",
                 id="until-not-a-time"),
    pytest.param(_with("maintenance.until", "2026-12-01T10:00:00"), "$.spec.maintenance.until",
                 "format", id="until-without-time-zone"),
    pytest.param(_with("maintenance.until", "2026-12-01"), "$.spec.maintenance.until",
                 "format", id="until-date-only"),
    pytest.param(_with("maintenance.enabled", "true"), "$.spec.maintenance.enabled", "type",
                 id="enabled-string"),
    pytest.param(_with("maintenance.reason", "x" * 501), "$.spec.maintenance.reason",
                 "maxLength", id="reason-501-chars"),
    pytest.param(_with("windows.0", window("2026-12-01T12:00:00Z", "2026-12-01T10:00:00Z")),
                 "$.spec.windows[0]", "x-kubernetes-validations", id="window-end-before-start"),
    pytest.param(_with("windows.0", window("2026-12-01T10:00:00Z", "2026-12-01T10:00:00Z")),
                 "$.spec.windows[0]", "x-kubernetes-validations", id="window-end-equals-start"),
    pytest.param(_with("windows.0", window("2026-12-01T10:00:00Z", "2026-12-01T11:00:00+02:00")),
                 "$.spec.windows[0]", "x-kubernetes-validations",
                 id="window-end-before-start-in-another-zone"),
    pytest.param(_with("windows.0", {"start": "2026-12-01T10:00:00Z"}), "$.spec.windows[0]",
                 "required", id="window-end-missing"),
    pytest.param(_with("windows.0.start", "2026-12-01 10:00"), "$.spec.windows[0].start",
                 "format", id="window-start-not-rfc3339"),
    pytest.param(_with("enterDelaySeconds", -1), "$.spec.enterDelaySeconds", "minimum",
                 id="enterDelaySeconds--1"),
    pytest.param(_with("enterDelaySeconds", 3601), "$.spec.enterDelaySeconds", "maximum",
                 id="enterDelaySeconds-3601"),
    pytest.param(_with("exitDelaySeconds", -1), "$.spec.exitDelaySeconds", "minimum",
                 id="exitDelaySeconds--1"),
    pytest.param(_with("exitDelaySeconds", 3601), "$.spec.exitDelaySeconds", "maximum",
                 id="exitDelaySeconds-3601"),
    pytest.param(_with("exitDelaySeconds", 1.5), "$.spec.exitDelaySeconds", "type",
                 id="exitDelaySeconds-fraction"),
    pytest.param(_with("windows.0.announceSeconds", -1), "$.spec.windows[0].announceSeconds",
                 "minimum", id="announceSeconds--1"),
    pytest.param(_with("windows.0.announceSeconds", 2592001),
                 "$.spec.windows[0].announceSeconds", "maximum", id="announceSeconds-30-days+1"),
    pytest.param(_with("windows.0.announceSeconds", "3600"),
                 "$.spec.windows[0].announceSeconds", "type", id="announceSeconds-string"),
    pytest.param(_with("windows.0.announceSeconds", 1.5), "$.spec.windows[0].announceSeconds",
                 "type", id="announceSeconds-fraction"),
    pytest.param(_with("services.0.mode", "readonly"), "$.spec.services[0].mode", "enum",
                 id="service-mode-lower-case"),
    pytest.param(_with("maintenance.mode", "read-only"), "$.spec.maintenance.mode", "enum",
                 id="switch-mode-unknown"),
    pytest.param(_with("windows.0.mode", "partial"), "$.spec.windows[0].mode", "enum",
                 id="window-mode-unknown"),
    pytest.param(_with("services.0.holdSeconds", 301), "$.spec.services[0].holdSeconds",
                 "maximum", id="holdSeconds-301"),
    pytest.param(_with("services.0.holdSeconds", -1), "$.spec.services[0].holdSeconds",
                 "minimum", id="holdSeconds--1"),
    pytest.param(_with("services.0.holdSeconds", 1.5), "$.spec.services[0].holdSeconds",
                 "type", id="holdSeconds-fraction"),
    pytest.param(_with("services.0.routes", [{"pathPrefix": "/a"}] * 101),
                 "$.spec.services[0].routes", "maxItems", id="101-routes"),
    pytest.param(_with("services.0.routes", [{"methods": ["POST"]}]),
                 "$.spec.services[0].routes[0]", "required", id="route-without-prefix"),
    pytest.param(_with("services.0.routes", [{"pathPrefix": "checkout"}]),
                 "$.spec.services[0].routes[0]", "x-kubernetes-validations",
                 id="prefix-without-slash-cel"),
    pytest.param(_with("services.0.routes", [{"pathPrefix": "checkout"}]),
                 "$.spec.services[0].routes[0].pathPrefix", "pattern",
                 id="prefix-without-slash-pattern"),
    pytest.param(_with("services.0.routes", [{"pathPrefix": "/a/../b"}]),
                 "$.spec.services[0].routes[0]", "x-kubernetes-validations",
                 id="prefix-dot-dot"),
    pytest.param(_with("services.0.routes", [{"pathPrefix": "/a/./b"}]),
                 "$.spec.services[0].routes[0]", "x-kubernetes-validations", id="prefix-dot"),
    pytest.param(_with("services.0.routes", [{"pathPrefix": "/a%2fb"}]),
                 "$.spec.services[0].routes[0]", "x-kubernetes-validations",
                 id="prefix-encoded-slash"),
    pytest.param(_with("services.0.routes", [{"pathPrefix": "/a//b"}]),
                 "$.spec.services[0].routes[0].pathPrefix", "pattern", id="prefix-empty-segment"),
    pytest.param(_with("services.0.routes", [{"pathPrefix": "/checkout/"}]),
                 "$.spec.services[0].routes[0].pathPrefix", "pattern",
                 id="prefix-trailing-slash"),
    pytest.param(_with("services.0.routes", [{"pathPrefix": "/a?b=1"}]),
                 "$.spec.services[0].routes[0].pathPrefix", "pattern", id="prefix-query"),
    pytest.param(_with("services.0.routes", [{"pathPrefix": "/" + "a" * 512}]),
                 "$.spec.services[0].routes[0].pathPrefix", "maxLength", id="prefix-513-chars"),
    pytest.param(_with("services.0.routes", [{"pathPrefix": "/a", "methods": ["post"]}]),
                 "$.spec.services[0].routes[0].methods[0]", "pattern", id="method-lower-case"),
    pytest.param(_with("services.0.routes", [{"pathPrefix": "/a", "methods": ["GET"] * 17}]),
                 "$.spec.services[0].routes[0].methods", "maxItems", id="17-methods"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "path", "keyword"), INVALID_SPECS)
def test_invalid_specs_are_rejected_naming_the_field(
    validator: CrdValidator, build: Callable[[], JsonObject], path: str, keyword: str
) -> None:
    assert_rejected(validator.problems(checker(build())), path, keyword)


def test_scoped_fields_are_accepted(strict_validator: CrdValidator) -> None:
    spec = valid_spec()
    spec["services"] = [
        service(
            "payments",
            critical=True,
            routes=[
                {"pathPrefix": "/checkout", "methods": ["POST"]},
                {"pathPrefix": "/"},
                {"pathPrefix": "/a%20b/caf%C3%A9/.well-known/x..y"},
                {"pathPrefix": "/" + "a" * 511, "methods": ["PATCH"] * 16},
            ],
            holdSeconds=300,
        ),
        service("db-primary", critical=True, mode="readOnly", holdSeconds=0),
        service("db-replica", mode="full"),
    ]
    spec["maintenance"]["mode"] = "readOnly"
    spec["windows"][0]["mode"] = "readOnly"
    assert strict_validator.problems(checker(spec)) == []


def test_route_rule_messages_are_the_crds(validator: CrdValidator) -> None:
    spec = {"services": [service(routes=[{"pathPrefix": "/a/.."}, {"pathPrefix": "/%5c"}])]}
    messages = [str(p) for p in validator.problems(checker(spec))]
    assert "$.spec.services[0].routes[0]: pathPrefix must not have a . or .. segment" in messages
    assert (
        "$.spec.services[0].routes[1]: pathPrefix must not have an encoded slash or backslash"
        in messages
    )


def test_window_rule_message_is_the_crds(validator: CrdValidator) -> None:
    spec = {"windows": [window("2026-12-01T12:00:00Z", "2026-12-01T10:00:00Z")]}
    assert [str(p) for p in validator.problems(checker(spec))] == [
        "$.spec.windows[0]: end must be after start"
    ]


def test_misspelt_field_is_refused_with_strict_field_validation(
    validator: CrdValidator, strict_validator: CrdValidator
) -> None:
    spec = {"services": [{"name": "frontend", "minready": 2}]}
    # Without strict field validation the server prunes the field (structural schema) ...
    assert validator.problems(checker(spec)) == []
    # ... with kubectl's default (--validate=strict) it is an error naming the field.
    problems = strict_validator.problems(checker(spec))
    assert_rejected(problems, "$.spec.services[0]", "additionalProperties")
    assert "minready" in str(problems[0])


CONTROLLER_STATUS: JsonObject = {
    "observedGeneration": 3,
    "serviceStatuses": [
        {
            "name": "frontend",
            "namespace": "shop",
            "ready": False,
            "critical": True,
            "readyEndpoints": 1,
            "totalEndpoints": 3,
            "minReady": 2,
            "reason": "NoReadyEndpoints",
            "lastTransitionTime": "2026-12-01T10:00:00Z",
            "stale": False,
            "affectedRoutes": [],
        },
        {
            "name": "payments",
            "namespace": "payments",
            "ready": True,
            "reason": "Ready",
            "affectedRoutes": ["/checkout"],
        },
    ],
    "maintenance": {
        "active": True,
        "reason": "frontend is down",
        "since": "2026-12-01T10:00:00Z",
        "until": "2026-12-01T12:00:00Z",
        "scope": "Site",
    },
    "summary": {"readyCritical": "1/2"},
    "conditions": [
        {
            "type": "Maintenance",
            "status": "True",
            "observedGeneration": 3,
            "lastTransitionTime": "2026-12-01T10:00:00Z",
            "reason": "ServiceDown",
            "message": "",
        }
    ],
}


def test_controller_status_is_accepted(strict_validator: CrdValidator) -> None:
    assert strict_validator.problems(checker({}, status=CONTROLLER_STATUS)) == []


def test_seed_controller_status_is_accepted(strict_validator: CrdValidator) -> None:
    status = {"serviceStatuses": [{"name": "my-service", "namespace": "default", "ready": True}]}
    assert strict_validator.problems(checker({}, status=status)) == []


def _status_with(path: str, value: Any) -> JsonObject:
    status = copy.deepcopy(CONTROLLER_STATUS)
    node: Any = status
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    return status


@pytest.mark.parametrize(
    ("status", "path", "keyword"),
    [
        pytest.param(_status_with("serviceStatuses.0.reason", "Broken"),
                     "$.status.serviceStatuses[0].reason", "enum", id="unknown-reason"),
        pytest.param(_status_with("serviceStatuses.0.readyEndpoints", -1),
                     "$.status.serviceStatuses[0].readyEndpoints", "minimum",
                     id="negative-endpoints"),
        pytest.param(_status_with("summary.readyCritical", "1 of 2"),
                     "$.status.summary.readyCritical", "pattern", id="summary-not-n-slash-m"),
        pytest.param(_status_with("conditions.0.status", "true"),
                     "$.status.conditions[0].status", "enum", id="condition-status-lowercase"),
        pytest.param(_status_with("conditions.0.reason", ""),
                     "$.status.conditions[0].reason", "minLength", id="condition-empty-reason"),
        pytest.param(_status_with("maintenance.since", "yesterday"),
                     "$.status.maintenance.since", "format", id="since-not-a-time"),
        pytest.param({"serviceStatuses": [{"name": "db", "namespace": "shop"}]},
                     "$.status.serviceStatuses[0]", "required", id="seed-ready-missing"),
    ],
)  # fmt: skip
def test_invalid_status_is_rejected(
    validator: CrdValidator, status: JsonObject, path: str, keyword: str
) -> None:
    assert_rejected(validator.problems(checker({}, status=status)), path, keyword)


# --- the CRD itself ---------------------------------------------------------------------


def schema_nodes(node: JsonObject, path: str = "$") -> Iterator[tuple[str, JsonObject]]:
    """Every schema node, with the path of the field it describes."""
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{key}")
    if "items" in node:
        yield from schema_nodes(node["items"], f"{path}[]")


def test_names_match(crd: JsonObject) -> None:
    names = crd["spec"]["names"]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["spec"]["group"] == GROUP
    assert crd["metadata"]["name"] == f"{names['plural']}.{crd['spec']['group']}"
    assert names["kind"] == "ServiceChecker"
    assert names["plural"] == "servicecheckers"
    assert names["singular"] == "servicechecker"
    assert names["categories"] == ["maintenance"]
    assert crd["spec"]["scope"] == "Namespaced"


def test_short_names_clash_with_no_builtin(crd: JsonObject) -> None:
    short_names = set(crd["spec"]["names"]["shortNames"])
    assert short_names
    assert "sc" not in short_names  # StorageClass
    assert not short_names & BUILTIN_SHORT_NAMES


def test_one_served_storage_version_with_status_subresource(crd: JsonObject) -> None:
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}


def test_schema_is_structural(crd: JsonObject) -> None:
    schema = version_schema(crd)
    forbidden = {
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string",
        "x-kubernetes-embedded-resource",
        "additionalProperties",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "$ref",
    }
    types = {"object", "array", "string", "integer", "number", "boolean"}
    for path, node in schema_nodes(schema):
        assert node.get("type") in types, path
        assert not forbidden & node.keys(), path
        if node["type"] == "object" and path != "$.metadata":
            assert node.get("properties"), f"{path}: an object must list its properties"
        if node["type"] == "array":
            assert isinstance(node.get("items"), dict), path


def test_every_field_is_described(crd: JsonObject) -> None:
    # Except the root metadata: a real API server refuses anything there but `type: object`
    # (tests/kube/test_crd_install.py), and kubectl explain takes its description from
    # ObjectMeta anyway.
    undescribed = [
        path
        for path, node in schema_nodes(version_schema(crd))
        if path != "$.metadata" and not node.get("description", "").strip()
    ]
    assert undescribed == []


def test_root_metadata_is_only_an_object(crd: JsonObject) -> None:
    assert version_schema(crd)["properties"]["metadata"] == {"type": "object"}


def test_defaults_are_valid_for_their_field(crd: JsonObject) -> None:
    # The API server refuses a CRD whose default does not validate against its own field.
    defaulted = 0
    for path, node in schema_nodes(version_schema(crd)):
        if "default" in node:
            defaulted += 1
            field = {k: v for k, v in node.items() if k != "default"}
            errors = list(
                Draft202012Validator(
                    field, format_checker=Draft202012Validator.FORMAT_CHECKER
                ).iter_errors(node["default"])
            )
            assert errors == [], path
    assert defaulted == 5


def test_list_types(crd: JsonObject) -> None:
    lists = {
        path: node for path, node in schema_nodes(version_schema(crd)) if node["type"] == "array"
    }
    assert {path: node.get("x-kubernetes-list-type") for path, node in lists.items()} == {
        "$.spec.services": "atomic",
        "$.spec.windows": "atomic",
        "$.spec.services[].routes": "atomic",
        "$.spec.services[].routes[].methods": "atomic",
        "$.status.serviceStatuses": "atomic",
        "$.status.serviceStatuses[].affectedRoutes": "atomic",
        "$.status.conditions": "map",
    }
    conditions = lists["$.status.conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]


def test_spec_lists_are_bounded(crd: JsonObject) -> None:
    # Bounds keep the CEL rule's estimated cost within the API server's budget.
    spec = version_schema(crd)["properties"]["spec"]["properties"]
    assert spec["services"]["maxItems"] == 100
    assert spec["windows"]["maxItems"] == 100


def test_seed_fields_keep_their_types(crd: JsonObject) -> None:
    schema = version_schema(crd)
    item = schema["properties"]["spec"]["properties"]["services"]["items"]
    assert item["required"] == ["name"]
    assert {k: item["properties"][k]["type"] for k in ("name", "namespace", "critical")} == {
        "name": "string",
        "namespace": "string",
        "critical": "boolean",
    }
    status_item = schema["properties"]["status"]["properties"]["serviceStatuses"]["items"]
    assert {k: status_item["properties"][k]["type"] for k in ("name", "namespace", "ready")} == {
        "name": "string",
        "namespace": "string",
        "ready": "boolean",
    }


def test_window_rule_is_declared_on_the_window(crd: JsonObject) -> None:
    windows = version_schema(crd)["properties"]["spec"]["properties"]["windows"]
    assert windows["items"]["x-kubernetes-validations"] == [
        {
            "rule": "timestamp(self.end) > timestamp(self.start)",
            "message": "end must be after start",
        }
    ]


def _resolve(schema: JsonObject, json_path: str) -> JsonObject | None:
    node: JsonObject | None = schema
    for part in json_path.lstrip(".").split("."):
        node = (node or {}).get("properties", {}).get(part)
    return node


def test_printer_columns_point_at_schema_fields(crd: JsonObject) -> None:
    (version,) = crd["spec"]["versions"]
    schema = version_schema(crd)
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Maintenance", "Reason", "Scope", "Routes", "Ready", "Age"]
    assert columns["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }
    expected_types = {"boolean": "boolean", "string": "string"}
    for name in ("Maintenance", "Reason", "Scope", "Ready"):
        column = columns[name]
        field = _resolve(schema, column["jsonPath"])
        assert field is not None, f"{name}: {column['jsonPath']} is not in the schema"
        assert expected_types[field["type"]] == column["type"], name
    assert columns["Ready"]["jsonPath"] == ".status.summary.readyCritical"
    assert columns["Scope"]["jsonPath"] == ".status.maintenance.scope"


# --- RBAC -------------------------------------------------------------------------------

Grant = tuple[str, str, str, tuple[str, ...]]
"""(apiGroup, resource, verb, resourceNames); () means every object of the resource."""

CONTROLLER_ROLE: set[Grant] = {
    (GROUP, "servicecheckers", "list", ()),
    (GROUP, "servicecheckers", "watch", ()),
    (GROUP, "servicecheckers/status", "patch", ()),
    ("", "configmaps", "list", ("mwm-maintenance",)),
    ("", "configmaps", "watch", ("mwm-maintenance",)),
    ("coordination.k8s.io", "leases", "create", ()),
    ("coordination.k8s.io", "leases", "get", ("mwm-controller-leader",)),
    ("coordination.k8s.io", "leases", "update", ("mwm-controller-leader",)),
    ("", "events", "create", ()),
}
ENDPOINT_READER: set[Grant] = {
    ("discovery.k8s.io", "endpointslices", "list", ()),
    ("discovery.k8s.io", "endpointslices", "watch", ()),
    ("", "services", "list", ()),
    ("", "services", "watch", ()),
}
SWITCH: set[Grant] = {
    (GROUP, "servicecheckers", "get", ()),
    (GROUP, "servicecheckers", "list", ()),
    (GROUP, "servicecheckers", "watch", ()),
    (GROUP, "servicecheckers", "patch", ()),
}


def rbac_objects() -> dict[tuple[str, str], JsonObject]:
    objects = {}
    for path in sorted(RBAC.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in load_documents(path):
            objects[(document["kind"], document["metadata"]["name"])] = document
    return objects


def grants(role: JsonObject) -> set[Grant]:
    found: set[Grant] = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
        names = tuple(sorted(rule.get("resourceNames", ())))
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    grant = (group, resource, verb, names)
                    assert grant not in found, f"granted twice: {grant}"
                    found.add(grant)
    return found


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        pytest.param("Role", "mwm-controller", CONTROLLER_ROLE, id="controller"),
        pytest.param("ClusterRole", "mwm-endpoint-reader", ENDPOINT_READER, id="endpoint-reader"),
        pytest.param("ClusterRole", "mwm-switch", SWITCH, id="switch"),
    ],
)
def test_roles_grant_exactly_what_is_used(kind: str, name: str, expected: set[Grant]) -> None:
    assert grants(rbac_objects()[(kind, name)]) == expected


def test_no_wildcards_anywhere() -> None:
    for (kind, name), obj in rbac_objects().items():
        for rule in obj.get("rules", ()):
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert not any("*" in value for value in rule.get(key, ())), (kind, name, key)


def test_controller_cannot_write_servicechecker_specs() -> None:
    objects = rbac_objects()
    controller_roles = [objects[("Role", "mwm-controller")]]
    controller_roles += [objects[("ClusterRole", "mwm-endpoint-reader")]]
    writes = {"patch", "update", "create", "delete", "deletecollection"}
    for role in controller_roles:
        for group, resource, verb, _ in grants(role):
            if group == GROUP and resource == "servicecheckers":
                assert verb not in writes
    assert (GROUP, "servicecheckers/status", "patch", ()) in grants(controller_roles[0])


def test_switch_role_cannot_write_status() -> None:
    assert not any(
        resource.endswith("/status")
        for _, resource, _, _ in grants(rbac_objects()[("ClusterRole", "mwm-switch")])
    )


def test_bindings_give_the_controller_its_roles_and_nothing_else() -> None:
    objects = rbac_objects()
    bindings = {
        name: obj
        for (kind, name), obj in objects.items()
        if kind in ("RoleBinding", "ClusterRoleBinding")
    }
    assert {
        name: (b["kind"], b["roleRef"]["kind"], b["roleRef"]["name"])
        for name, b in bindings.items()
    } == {
        "mwm-controller": ("RoleBinding", "Role", "mwm-controller"),
        "mwm-endpoint-reader": ("RoleBinding", "ClusterRole", "mwm-endpoint-reader"),
    }
    for binding in bindings.values():
        assert binding["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in objects
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mwm-controller"}]
    assert ("ServiceAccount", "mwm-controller") in objects


def test_namespaced_objects_leave_the_namespace_to_kustomize() -> None:
    for path in config_manifests():
        for document in load_documents(path):
            assert "namespace" not in document["metadata"], path


# --- kustomize and Kubernetes' own schemas ----------------------------------------------


def config_manifests() -> list[Path]:
    return sorted(p for p in CONFIG.rglob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize(
    "kustomization", sorted(CONFIG.rglob("kustomization.yaml")), ids=lambda p: str(p.parent.name)
)
def test_kustomizations_list_every_manifest_beside_them(kustomization: Path) -> None:
    (document,) = load_documents(kustomization)
    assert document["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert document["kind"] == "Kustomization"
    listed = [kustomization.parent / entry for entry in document["resources"]]
    assert all(path.is_file() for path in listed), listed
    beside = {p for p in kustomization.parent.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert set(listed) == beside


def test_every_config_directory_has_a_kustomization() -> None:
    assert {p.parent.name for p in CONFIG.rglob("kustomization.yaml")} == {"crd", "rbac", "samples"}
    assert CRD_PATH in config_manifests()


@pytest.mark.parametrize("path", config_manifests(), ids=lambda p: str(p.relative_to(CONFIG)))
def test_manifests_are_valid_kubernetes_objects(strict_validator: CrdValidator, path: Path) -> None:
    version = kubernetes_validate.latest_version()
    assert tuple(int(part) for part in version.split(".")[:2]) >= (1, 33), version
    documents = load_documents(path)
    assert documents
    for document in documents:
        if document["apiVersion"].startswith(f"{GROUP}/"):
            assert strict_validator.problems(document) == []
        else:
            kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize(
    ("where", "typo"),
    [
        pytest.param(("spec", "versions", 0), "subresource", id="in-the-version"),
        pytest.param(
            ("spec", "versions", 0, "schema", "openAPIV3Schema", "properties", "spec",
             "properties", "windows"),
            "maxitems",
            id="deep-in-the-schema",
        ),
    ],
)  # fmt: skip
def test_kubernetes_validate_catches_a_misspelt_crd_field(
    crd: JsonObject, where: tuple[str | int, ...], typo: str
) -> None:
    # Guards the check above: strict mode must refuse what an API server would refuse.
    broken = copy.deepcopy(crd)
    node: Any = broken
    for key in where:
        node = node[key]
    node[typo] = 3
    with pytest.raises(kubernetes_validate.ValidationError, match=typo):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)
