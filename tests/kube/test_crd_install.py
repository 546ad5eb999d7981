"""The ServiceChecker CRD installs on an API server as strict as a real one (issue 10).

The fake validates CustomResourceDefinitions like kube-apiserver
(``tests/kube/fake/crdvalidation.py``); these tests send the CRD as shipped (``config/crd``, the
chart's ``crds/``, ``deploy/install.yaml``) over real HTTP with the real ``kubernetes_asyncio``
client, then show that the defect of issue 10 and other known-bad CRDs are refused the way a
real server refuses them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, ApiextensionsV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from tests.crd.schema import CONFIG, CRD_PATH, REPO, load_documents
from tests.kube.fakeapi import ApiError, FakeKubeAPI

CHART_CRD = REPO / "charts" / "maintenance-window-manager" / "crds" / CRD_PATH.name
INSTALL = REPO / "deploy" / "install.yaml"
NAME = "servicecheckers.maintenance.mamrezb.com"
P = "spec.validation.openAPIV3Schema"
METADATA_ONLY = (
    "Forbidden: must not specify anything other than name and generateName, but metadata is "
    "implicitly specified"
)

JsonObject = dict[str, Any]


def crd_in(path: Path) -> JsonObject:
    (crd,) = (doc for doc in load_documents(path) if doc["kind"] == "CustomResourceDefinition")
    return crd


def root_schema(crd: JsonObject) -> JsonObject:
    schema: JsonObject = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def field(crd: JsonObject, *names: str) -> JsonObject:
    """The schema node of a field: ``field(crd, "spec", "services", "[]", "name")``."""
    node = root_schema(crd)
    for name in names:
        node = node["items"] if name == "[]" else node["properties"][name]
    return node


def invalid_status(error: ApiException) -> JsonObject:
    assert error.status == 422, error.body
    status: JsonObject = json.loads(error.body)
    assert (status["kind"], status["apiVersion"], status["status"]) == ("Status", "v1", "Failure")
    assert (status["reason"], status["code"]) == ("Invalid", 422)
    return status


@pytest.fixture
def crds(kube_client: ApiClient) -> ApiextensionsV1Api:
    return ApiextensionsV1Api(kube_client)


# -- the CRD as shipped ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [CRD_PATH, CHART_CRD, INSTALL],
    ids=["config-crd-bases", "chart-crds", "deploy-install"],
)
async def test_the_shipped_crd_is_accepted(
    fake_kube: FakeKubeAPI, crds: ApiextensionsV1Api, path: Path
) -> None:
    body = crd_in(path)
    created = await crds.create_custom_resource_definition(body)
    assert created.metadata.name == NAME
    assert created.spec.names.kind == "ServiceChecker"
    (post,) = fake_kube.requests_to(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions$"
    )
    assert post.body == body  # sent as shipped, nothing dropped on the way
    stored = fake_kube.get("customresourcedefinitions", None, NAME)
    assert stored is not None
    assert stored["spec"] == body["spec"]
    fetched = await crds.read_custom_resource_definition(NAME)
    assert fetched.metadata.uid == created.metadata.uid


async def test_the_crd_describes_the_resource_the_fake_serves(fake_kube: FakeKubeAPI) -> None:
    # The fake serves ServiceCheckers from a fixed table row: it must match the CRD.
    crd = fake_kube.apply_crd(CRD_PATH)
    resource = fake_kube.table.resolve("servicecheckers")
    (version,) = crd["spec"]["versions"]
    assert (resource.group, resource.plural, resource.kind) == (
        crd["spec"]["group"],
        crd["spec"]["names"]["plural"],
        crd["spec"]["names"]["kind"],
    )
    assert resource.version == version["name"]
    assert resource.namespaced == (crd["spec"]["scope"] == "Namespaced")
    assert resource.has_status_subresource == ("status" in version["subresources"])


async def test_the_crd_can_be_updated_and_read_back(
    fake_kube: FakeKubeAPI, crds: ApiextensionsV1Api
) -> None:
    created = await crds.create_custom_resource_definition(crd_in(CRD_PATH))
    body = crd_in(CRD_PATH)
    body["metadata"]["resourceVersion"] = created.metadata.resource_version
    body["spec"]["names"]["categories"] = ["maintenance", "all"]
    replaced = await crds.replace_custom_resource_definition(NAME, body)
    assert replaced.spec.names.categories == ["maintenance", "all"]
    assert replaced.metadata.generation == 2


# -- the defect of issue 10 --------------------------------------------------------------------


def with_metadata_description(crd: JsonObject) -> JsonObject:
    broken = copy.deepcopy(crd)
    field(broken, "metadata")["description"] = "Standard object metadata."
    return broken


async def test_a_description_under_metadata_is_refused_with_the_real_message(
    fake_kube: FakeKubeAPI, crds: ApiextensionsV1Api
) -> None:
    with pytest.raises(ApiException) as raised:
        await crds.create_custom_resource_definition(with_metadata_description(crd_in(CRD_PATH)))
    assert invalid_status(raised.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'CustomResourceDefinition.apiextensions.k8s.io "{NAME}" is invalid: '
        f"{P}.properties[metadata]: {METADATA_ONLY}",
        "reason": "Invalid",
        "details": {
            "name": NAME,
            "group": "apiextensions.k8s.io",
            "kind": "CustomResourceDefinition",
            "causes": [
                {
                    "reason": "FieldValueForbidden",
                    "message": METADATA_ONLY,
                    "field": f"{P}.properties[metadata]",
                }
            ],
        },
        "code": 422,
    }
    assert fake_kube.get("customresourcedefinitions", None, NAME) is None


async def test_the_defect_cannot_come_back_by_update(
    fake_kube: FakeKubeAPI, crds: ApiextensionsV1Api
) -> None:
    created = await crds.create_custom_resource_definition(crd_in(CRD_PATH))
    body = with_metadata_description(crd_in(CRD_PATH))
    body["metadata"]["resourceVersion"] = created.metadata.resource_version
    with pytest.raises(ApiException) as replace:
        await crds.replace_custom_resource_definition(NAME, body)
    metadata_path = ["spec", "versions", 0, "schema", "openAPIV3Schema", "properties", "metadata"]
    patches: list[Any] = [
        [
            {
                "op": "add",
                "path": "/" + "/".join(map(str, [*metadata_path, "description"])),
                "value": "Standard object metadata.",
            }
        ],
        {"spec": {"versions": body["spec"]["versions"]}},  # strategic merge: lists replaced
    ]
    for patch in patches:
        with pytest.raises(ApiException) as patched:
            await crds.patch_custom_resource_definition(NAME, patch)
        assert invalid_status(patched.value)["details"]["causes"][0]["field"] == (
            f"{P}.properties[metadata]"
        )
    assert invalid_status(replace.value)["details"]["causes"][0]["message"] == METADATA_ONLY
    stored = fake_kube.get("customresourcedefinitions", None, NAME)
    assert stored is not None
    assert stored["metadata"]["resourceVersion"] == created.metadata.resource_version
    assert "description" not in field(stored, "metadata")


def test_apply_crd_goes_through_the_same_checks(fake_kube: FakeKubeAPI) -> None:
    with pytest.raises(ApiError) as raised:
        fake_kube.apply_crd(with_metadata_description(crd_in(INSTALL)))
    assert raised.value.code == 422
    assert raised.value.message.endswith(f"{P}.properties[metadata]: {METADATA_ONLY}")


# -- other known-bad CRDs ----------------------------------------------------------------------


def setting(*names: str, **values: Any) -> Callable[[JsonObject], None]:
    """A mutation: set ``values`` on the schema node of the field ``names``."""
    return lambda crd: field(crd, *names).update(values)


def removing(key: str, *names: str) -> Callable[[JsonObject], None]:
    return lambda crd: field(crd, *names).pop(key)


def in_spec(**values: Any) -> Callable[[JsonObject], None]:
    return lambda crd: crd["spec"].update(values)


def in_version(**values: Any) -> Callable[[JsonObject], None]:
    return lambda crd: crd["spec"]["versions"][0].update(values)


def in_names(**values: Any) -> Callable[[JsonObject], None]:
    return lambda crd: crd["spec"]["names"].update(values)


def in_column(index: int, **values: Any) -> Callable[[JsonObject], None]:
    return lambda crd: crd["spec"]["versions"][0]["additionalPrinterColumns"][index].update(values)


S = f"{P}.properties[spec].properties"
ST = f"{P}.properties[status].properties"

BAD_CRDS = [
    pytest.param(setting("metadata", title="Metadata"), f"{P}.properties[metadata]",
                 METADATA_ONLY, id="metadata-title"),
    pytest.param(setting("metadata", properties={"labels": {"type": "object"}}),
                 f"{P}.properties[metadata]", METADATA_ONLY, id="metadata-restricts-labels"),
    pytest.param(setting("metadata", default={}), f"{P}.properties[metadata].default",
                 "Forbidden: must not be set in top-level metadata", id="metadata-default"),
    pytest.param(setting("metadata", type="string"), f"{P}.properties[metadata].type",
                 'Invalid value: "string": must be object', id="metadata-not-an-object"),
    pytest.param(setting("kind", type="integer"), f"{P}.properties[kind].type",
                 'Invalid value: "integer": must be string', id="kind-not-a-string"),
    pytest.param(removing("type", "spec", "services", "[]", "name"),
                 f"{S}[services].items.properties[name].type",
                 "Required value: must not be empty for specified object fields",
                 id="untyped-field"),
    pytest.param(removing("type", "spec", "windows", "[]"), f"{S}[windows].items.type",
                 "Required value: must not be empty for specified array items", id="untyped-item"),
    pytest.param(removing("items", "spec", "windows"), f"{S}[windows].items",
                 "Required value: must be specified", id="array-without-items"),
    pytest.param(lambda crd: field(crd, "spec", "windows").update(
                     items=[field(crd, "spec", "windows", "[]")]),
                 f"{S}[windows].items", "Forbidden: items must be a schema object and not an array",
                 id="items-as-a-list"),
    pytest.param(setting("spec", additionalProperties={"type": "string"}),
                 f"{S.removesuffix('.properties')}.additionalProperties",
                 "Forbidden: additionalProperties and properties are mutual exclusive",
                 id="properties-and-additionalProperties"),
    pytest.param(setting(additionalProperties=False), f"{P}.additionalProperties",
                 "Forbidden: must not be used at the root", id="additionalProperties-at-the-root"),
    pytest.param(setting("spec", "maintenance", **{"x-kubernetes-preserve-unknown-fields": False}),
                 f"{S}[maintenance].x-kubernetes-preserve-unknown-fields",
                 "Invalid value: false: must be true or undefined", id="preserve-unknown-false"),
    pytest.param(setting("spec", "maintenance", "reason",
                         **{"x-kubernetes-embedded-resource": True}),
                 f"{S}[maintenance].properties[reason].type",
                 'Invalid value: "string": must be object if x-kubernetes-embedded-resource is '
                 "true",
                 id="embedded-resource-not-an-object"),
    pytest.param(setting("spec", "enterDelaySeconds",
                         anyOf=[{"type": "integer"}, {"type": "boolean"}]),
                 f"{S}[enterDelaySeconds].anyOf[1].type",
                 "Forbidden: must be empty to be structural", id="typed-anyOf"),
    pytest.param(setting("spec", "maintenance", "reason", allOf=[{"description": "x"}]),
                 f"{S}[maintenance].properties[reason].allOf[0].description",
                 "Forbidden: must be empty to be structural", id="description-under-allOf"),
    pytest.param(setting("spec", "maintenance", **{"$ref": "#/definitions/Maintenance"}),
                 f"{S}[maintenance].$ref", "Forbidden: $ref is not supported", id="ref"),
    pytest.param(setting("spec", "windows", uniqueItems=True), f"{S}[windows].uniqueItems",
                 "Forbidden: uniqueItems cannot be set to true since the runtime complexity "
                 "becomes quadratic", id="uniqueItems"),
    pytest.param(setting("spec", "maintenance",
                         patternProperties={"^x-": {"type": "string"}}),
                 f"{S}[maintenance].patternProperties",
                 "Forbidden: patternProperties is not supported", id="patternProperties"),
    pytest.param(setting("spec", "maintenance", "reason", type="null"),
                 f"{S}[maintenance].properties[reason].type",
                 "Forbidden: type cannot be set to null, use nullable as an alternative",
                 id="type-null"),
    pytest.param(setting("spec", "windows", **{"x-kubernetes-list-type": "ordered"}),
                 f"{S}[windows].x-kubernetes-list-type",
                 'Unsupported value: "ordered": supported values: "atomic", "set", "map"',
                 id="unknown-list-type"),
    pytest.param(setting("spec", "services", **{"x-kubernetes-list-type": "set"}),
                 f"{S}[services].items.x-kubernetes-map-type",
                 "Invalid value: null: must be atomic as item of a list with "
                 "x-kubernetes-list-type=set", id="set-of-objects"),
    pytest.param(removing("x-kubernetes-list-map-keys", "status", "conditions"),
                 f"{ST}[conditions].x-kubernetes-list-map-keys",
                 "Required value: must not be empty if x-kubernetes-list-type is map",
                 id="map-list-without-keys"),
    pytest.param(setting("status", "conditions", "[]", required=["status"]),
                 f"{ST}[conditions].items.properties[type].default",
                 "Required value: this property is in x-kubernetes-list-map-keys, so it must "
                 "have a default or be a required property", id="map-key-not-required"),
    pytest.param(setting("spec", "maintenance", **{"x-kubernetes-map-type": "partial"}),
                 f"{S}[maintenance].x-kubernetes-map-type",
                 'Unsupported value: "partial": supported values: "atomic", "granular"',
                 id="unknown-map-type"),
    pytest.param(setting("spec", "services", "[]", "name", pattern="^(?!kube-)[a-z]+$"),
                 f"{S}[services].items.properties[name].pattern",
                 "must be a valid regular expression, but isn't: error parsing regexp: invalid "
                 "or unsupported Perl syntax: `(?!`", id="lookahead-pattern"),
    pytest.param(setting("spec", "windows", "[]",
                         **{"x-kubernetes-validations": [{"rule": " "}]}),
                 f"{S}[windows].items.x-kubernetes-validations[0].rule",
                 "Required value: rule is not specified", id="empty-validation-rule"),
    pytest.param(setting(nullable=True), f"{P}.nullable",
                 "Forbidden: nullable cannot be true at the root", id="nullable-root"),
    pytest.param(setting(anyOf=[{"required": ["spec"]}]), P,
                 "fields are allowed at the root of the schema if the status subresource is "
                 "enabled", id="root-junctor-with-status-subresource"),
    pytest.param(in_spec(group="maintenance"), "spec.group",
                 'Invalid value: "maintenance": should be a domain with at least one dot',
                 id="group-without-a-dot"),
    pytest.param(in_names(plural="checkers"), "metadata.name",
                 f'Invalid value: "{NAME}": must be spec.names.plural+"."+spec.group',
                 id="name-not-plural-dot-group"),
    pytest.param(in_spec(scope="Global"), "spec.scope",
                 'Unsupported value: "Global": supported values: "Cluster", "Namespaced"',
                 id="unknown-scope"),
    pytest.param(in_version(storage=False), "spec.versions",
                 "must have exactly one version marked as storage version",
                 id="no-storage-version"),
    pytest.param(in_version(name="V1alpha1"), "spec.versions[0].name",
                 'Invalid value: "V1alpha1": a DNS-1035 label', id="uppercase-version"),
    pytest.param(in_version(schema=None), "spec.versions[0].schema.openAPIV3Schema",
                 "Required value: schemas are required", id="no-schema"),
    pytest.param(in_names(shortNames=["SVCC"]), "spec.names.shortNames[0]",
                 'Invalid value: "SVCC": a DNS-1035 label', id="uppercase-short-name"),
    pytest.param(in_names(listKind="ServiceChecker"), "spec.names.listKind",
                 "kind and listKind may not be the same", id="list-kind-is-the-kind"),
    pytest.param(in_column(0, type="bool"), "spec.additionalPrinterColumns[0].type",
                 'Invalid value: "bool": must be one of boolean,date,integer,number,string',
                 id="printer-column-type"),
    pytest.param(in_column(1, jsonPath="status.maintenance.reason"),
                 "spec.additionalPrinterColumns[1].JSONPath",
                 "must be a simple json path starting with .", id="printer-column-relative-path"),
    pytest.param(lambda crd: crd["spec"]["versions"][0]["additionalPrinterColumns"][3].pop(
                     "jsonPath"),
                 "spec.additionalPrinterColumns[3].JSONPath", "Required value",
                 id="printer-column-without-jsonPath"),
    pytest.param(in_spec(preserveUnknownFields=True), "spec.preserveUnknownFields",
                 "cannot set to true", id="preserve-unknown-fields"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "field_path", "message"), BAD_CRDS)
async def test_known_bad_crds_are_refused_naming_the_field(
    fake_kube: FakeKubeAPI,
    crds: ApiextensionsV1Api,
    mutate: Callable[[JsonObject], None],
    field_path: str,
    message: str,
) -> None:
    body = crd_in(CRD_PATH)
    mutate(body)
    with pytest.raises(ApiException) as raised:
        await crds.create_custom_resource_definition(body)
    status = invalid_status(raised.value)
    causes = status["details"]["causes"]
    assert any(c["field"] == field_path and message in c["message"] for c in causes), causes
    prefix = (
        f'CustomResourceDefinition.apiextensions.k8s.io "{body["metadata"]["name"]}" is invalid: '
    )
    assert status["message"].startswith(prefix)
    assert f"{field_path}: " in status["message"]
    assert fake_kube.list_objects("customresourcedefinitions") == []


async def test_an_undecodable_crd_is_a_bad_request(crds: ApiextensionsV1Api) -> None:
    body = crd_in(CRD_PATH)
    body["spec"]["versions"][0]["subresources"]["status"] = True
    with pytest.raises(ApiException) as raised:
        await crds.create_custom_resource_definition(body)
    assert raised.value.status == 400
    status = json.loads(raised.value.body)
    assert status["reason"] == "BadRequest"
    assert (
        "cannot unmarshal bool into Go struct field CustomResourceSubresources" in status["message"]
    )


# -- the samples, once the CRD is in --------------------------------------------------------------

SAMPLES = sorted(p for p in (CONFIG / "samples").glob("*.yaml") if p.name != "kustomization.yaml")


def test_there_are_samples() -> None:
    assert [p.name for p in SAMPLES] == ["servicechecker_full.yaml", "servicechecker_seed.yaml"]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
async def test_every_sample_is_created_after_the_crd(
    fake_kube: FakeKubeAPI, kube_client: ApiClient, path: Path
) -> None:
    # `kubectl apply -k config/crd && kubectl apply -k config/samples -n shop`; the samples are
    # checked against the CRD's schema in tests/crd/test_crd.py (test_samples_are_accepted).
    crd = fake_kube.apply_crd(CRD_PATH)
    (version,) = crd["spec"]["versions"]
    objects = CustomObjectsApi(kube_client)
    for sample in load_documents(path):
        assert sample["apiVersion"] == f"{crd['spec']['group']}/{version['name']}"
        assert sample["kind"] == crd["spec"]["names"]["kind"]
        created = await objects.create_namespaced_custom_object(
            crd["spec"]["group"], version["name"], "shop", crd["spec"]["names"]["plural"], sample
        )
        assert created["metadata"]["namespace"] == "shop"
        stored = fake_kube.get("servicecheckers", "shop", sample["metadata"]["name"])
        assert stored is not None
        assert stored["spec"] == sample["spec"]


async def test_servicecheckers_are_checked_against_the_applied_crd(
    fake_kube: FakeKubeAPI,
) -> None:
    fake_kube.apply_crd(CRD_PATH)
    good = {
        "apiVersion": "maintenance.mamrezb.com/v1alpha1",
        "kind": "ServiceChecker",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": {"services": [{"name": "api", "critical": True}]},
    }
    fake_kube.create(good)
    bad = {"spec": {"services": [{"name": "Not_A_Name"}], "enterDelaySeconds": -1}}
    with pytest.raises(ApiError) as refused:
        fake_kube.patch("servicecheckers", "shop", "shop", bad)
    assert refused.value.code == 422
    assert refused.value.details is not None
    fields = [cause["field"] for cause in refused.value.details["causes"]]
    assert fields == ["spec.enterDelaySeconds", "spec.services[0].name"]
    # Nothing changed.
    stored = fake_kube.get("servicecheckers", "shop", "shop")
    assert stored is not None
    assert stored["spec"] == good["spec"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(-1, "-1 is less than the minimum of 0", id="negative"),
        pytest.param(2592001, "2592001 is greater than the maximum of 2592000", id="over-30-days"),
        pytest.param("3600", "integer", id="string"),
    ],
)
def test_a_bad_announce_seconds_is_refused_by_the_api_server(
    fake_kube: FakeKubeAPI, value: object, message: str
) -> None:
    fake_kube.apply_crd(CRD_PATH)
    window = {"start": "2030-05-08T09:00:00Z", "end": "2030-05-08T10:00:00Z"}
    good = {
        "apiVersion": "maintenance.mamrezb.com/v1alpha1",
        "kind": "ServiceChecker",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": {"windows": [{**window, "announceSeconds": 86400}]},
    }
    fake_kube.create(good)
    with pytest.raises(ApiError) as refused:
        fake_kube.patch(
            "servicecheckers",
            "shop",
            "shop",
            {"spec": {"windows": [{**window, "announceSeconds": value}]}},
        )
    assert refused.value.code == 422
    assert refused.value.details is not None
    (cause,) = refused.value.details["causes"]
    assert cause["field"] == "spec.windows[0].announceSeconds"
    assert message in cause["message"]
    stored = fake_kube.get("servicecheckers", "shop", "shop")
    assert stored is not None
    assert stored["spec"] == good["spec"]


SHOP = {
    "apiVersion": "maintenance.mamrezb.com/v1alpha1",
    "kind": "ServiceChecker",
    "metadata": {"name": "shop", "namespace": "shop"},
    "spec": {
        "services": [
            {
                "name": "payments",
                "critical": True,
                "routes": [{"pathPrefix": "/checkout", "methods": ["POST"]}],
                "holdSeconds": 20,
            },
            {"name": "db-primary", "critical": True, "mode": "readOnly"},
        ],
        "maintenance": {"enabled": False, "mode": "readOnly"},
        "windows": [
            {"start": "2030-05-08T09:00:00Z", "end": "2030-05-08T10:00:00Z", "mode": "readOnly"}
        ],
    },
}


@pytest.mark.parametrize(
    ("patch", "field", "message"),
    [
        pytest.param(
            {"windows": [{"start": "2030-05-08T10:00:00Z", "end": "2030-05-08T10:00:00Z"}]},
            "spec.windows[0]",
            "end must be after start",
            id="window-end-equals-start",
        ),
        pytest.param(
            {"windows": [{"start": "2030-05-08T12:00:00+02:00", "end": "2030-05-08T10:00:00Z"}]},
            "spec.windows[0]",
            "end must be after start",
            id="window-end-before-start-across-zones",
        ),
        pytest.param(
            {"services": [{"name": "payments", "routes": [{"pathPrefix": "checkout"}]}]},
            "spec.services[0].routes[0]",
            "pathPrefix must start with /",
            id="prefix-without-slash",
        ),
        pytest.param(
            {"services": [{"name": "payments", "routes": [{"pathPrefix": "/a/../admin"}]}]},
            "spec.services[0].routes[0]",
            "pathPrefix must not have a . or .. segment",
            id="prefix-dot-dot",
        ),
        pytest.param(
            {"services": [{"name": "payments", "mode": "readonly"}]},
            "spec.services[0].mode",
            "readOnly",
            id="service-mode",
        ),
        pytest.param(
            {"maintenance": {"enabled": True, "mode": "half"}},
            "spec.maintenance.mode",
            "readOnly",
            id="switch-mode",
        ),
        pytest.param(
            {"services": [{"name": "payments", "holdSeconds": 301}]},
            "spec.services[0].holdSeconds",
            "301 is greater than the maximum of 300",
            id="hold-seconds",
        ),
        pytest.param(
            {
                "services": [
                    {"name": "payments", "routes": [{"pathPrefix": "/a", "methods": ["post"]}]}
                ]
            },
            "spec.services[0].routes[0].methods[0]",
            "post",
            id="method-lower-case",
        ),
    ],
)
def test_scoped_fields_are_checked_by_the_api_server(
    fake_kube: FakeKubeAPI, patch: dict[str, object], field: str, message: str
) -> None:
    fake_kube.apply_crd(CRD_PATH)
    fake_kube.create(SHOP)
    with pytest.raises(ApiError) as refused:
        fake_kube.patch("servicecheckers", "shop", "shop", {"spec": patch})
    assert refused.value.code == 422
    assert refused.value.details is not None
    causes = [(c["field"], c["message"]) for c in refused.value.details["causes"]]
    assert any(f == field and message in m for f, m in causes), causes
    stored = fake_kube.get("servicecheckers", "shop", "shop")
    assert stored is not None
    assert stored["spec"] == SHOP["spec"]
