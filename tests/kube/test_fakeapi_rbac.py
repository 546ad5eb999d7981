"""The fake API server authorizes like a real one, seen through the real kubernetes-asyncio client.

With the project's own ``config/rbac`` applied in namespace ``full`` (as ``kubectl apply -k
config/rbac -n full`` applies it), the controller's ServiceAccount may do exactly what the
Role and the bindings say, and a refusal is the 403 a real API server sends, word for word
(``responsewriters.Forbidden`` in k8s.io/apiserver).  Also here: the mapping of requests to
RBAC verbs and resources, rule matching, a second user through a bearer token, the restart
during which the authorizer refuses everything, and 410 Expired after compaction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException

from tests.kube import clusters
from tests.kube.clusters import ClusterFactory, maintenance_off, maintenance_on
from tests.kube.fake.rbac import CONFIG_RBAC, Rbac, User, forbidden_status
from tests.kube.fakeapi import FakeKubeAPI

GROUP = "maintenance.mamrezb.com"
VERSION = "v1alpha1"
PLURAL = "servicecheckers"
NS = "full"
OTHER = "payments"
CONTROLLER = f"system:serviceaccount:{NS}:mwm-controller"
MERGE = "application/merge-patch+json"


def checker(name: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServiceChecker",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"services": [{"name": "api", "critical": True}]},
    }


def config_map(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS},
        "data": {"MAINTENANCE_MODE": "false"},
    }


def endpoint_slice(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "api-a",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": "api"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}],
    }


def lease(name: str, holder: str = "replica-1") -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15},
    }


def core_event() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "shop.", "namespace": NS},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ServiceChecker",
            "name": "shop",
            "namespace": NS,
        },
        "reason": "MaintenanceStarted",
        "message": "api is down",
        "type": "Warning",
        "source": {"component": "mwm"},
    }


def forbidden(message: str, *, kind: str, group: str = "", name: str = "") -> dict[str, Any]:
    """The exact 403 body a real API server sends (``apierrors.NewForbidden``)."""
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Forbidden",
        "details": details,
        "code": 403,
    }


async def refused(call: Awaitable[Any]) -> dict[str, Any]:
    """The 403 body of a call that must be refused."""
    with pytest.raises(ApiException) as info:
        await call
    assert info.value.status == 403, info.value.body
    return json.loads(info.value.body)  # type: ignore[no-any-return]


async def status_of(call: Awaitable[Any]) -> int:
    """The HTTP status a call ends with (2xx when it returns)."""
    try:
        await call
    except ApiException as error:
        return int(error.status)
    return 200


async def open_watch(api: ApiClient, path: str, **query: str) -> int:
    """Open a watch with the real client, return its HTTP status, and close it."""
    response = await api.call_api(
        path,
        "GET",
        query_params=[("watch", "true"), *query.items()],
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
        _preload_content=False,
    )
    try:
        return int(response.status)
    finally:
        response.close()


async def send(api: ApiClient, method: str, path: str, query: dict[str, str] | None = None) -> int:
    """Any request through the real client's ``call_api``; returns the status, body unread."""
    response = await api.call_api(
        path,
        method,
        query_params=list((query or {}).items()),
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body={} if method in ("POST", "PUT", "PATCH") else None,
        auth_settings=["BearerToken"],
        _preload_content=False,
    )
    try:
        return int(response.status)
    finally:
        response.close()


@pytest.fixture
def rbac(fake_kube: FakeKubeAPI) -> Rbac:
    """config/rbac applied in namespace ``full``; nothing bound in ``payments``."""
    enforced = fake_kube.enforce_rbac(Rbac.from_config(namespace=NS))
    assert enforced is not None
    return enforced


@pytest.fixture
def custom(kube_client: ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_client)


@pytest.fixture
def core(kube_client: ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_client)


@pytest.fixture
def leases(kube_client: ApiClient) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(kube_client)


@pytest.fixture
def discovery(kube_client: ApiClient) -> client.DiscoveryV1Api:
    return client.DiscoveryV1Api(kube_client)


# -- the controller's Role ---------------------------------------------------------------------


@pytest.mark.usefixtures("rbac")
async def test_controller_lists_and_watches_servicecheckers_in_its_own_namespace_only(
    fake_kube: FakeKubeAPI, kube_client: ApiClient, custom: client.CustomObjectsApi
) -> None:
    fake_kube.create(checker())

    listed = await custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
    watched = await open_watch(kube_client, f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}")
    elsewhere = await refused(custom.list_namespaced_custom_object(GROUP, VERSION, OTHER, PLURAL))

    assert [item["metadata"]["name"] for item in listed["items"]] == ["shop"]
    assert watched == 200
    assert elsewhere["message"] == (
        f'servicecheckers.{GROUP} is forbidden: User "{CONTROLLER}" cannot list resource '
        f'"servicecheckers" in API group "{GROUP}" in the namespace "{OTHER}"'
    )
    assert [d.attributes.verb for d in fake_kube.decisions] == ["list", "watch", "list"]


@pytest.mark.usefixtures("rbac")
async def test_controller_patches_the_status_subresource_but_not_the_servicechecker(
    fake_kube: FakeKubeAPI, custom: client.CustomObjectsApi
) -> None:
    fake_kube.create(checker())

    await custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        "shop",
        {"status": {"observedGeneration": 1}},
        _content_type=MERGE,
    )
    main = await refused(
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            "shop",
            {"spec": {"maintenance": {"enabled": True}}},
            _content_type=MERGE,
        )
    )
    get = await refused(custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "shop"))
    put_status = await refused(
        custom.replace_namespaced_custom_object_status(
            GROUP, VERSION, NS, PLURAL, "shop", fake_kube.get(PLURAL, NS, "shop") or {}
        )
    )

    stored = fake_kube.get(PLURAL, NS, "shop")
    assert stored is not None
    assert stored["status"] == {"observedGeneration": 1}
    assert stored["spec"] == checker()["spec"]
    assert main == forbidden(
        f'servicecheckers.{GROUP} "shop" is forbidden: User "{CONTROLLER}" cannot patch '
        f'resource "servicecheckers" in API group "{GROUP}" in the namespace "{NS}"',
        kind="servicecheckers",
        group=GROUP,
        name="shop",
    )
    assert get["message"].endswith(
        f'cannot get resource "servicecheckers" in API group "{GROUP}" in the namespace "{NS}"'
    )
    # The subresource is named in the sentence; the prefix and details name the resource.
    assert put_status == forbidden(
        f'servicecheckers.{GROUP} "shop" is forbidden: User "{CONTROLLER}" cannot update '
        f'resource "servicecheckers/status" in API group "{GROUP}" in the namespace "{NS}"',
        kind="servicecheckers",
        group=GROUP,
        name="shop",
    )


@pytest.mark.usefixtures("rbac")
async def test_the_switch_configmap_is_readable_only_through_its_field_selector(
    fake_kube: FakeKubeAPI, kube_client: ApiClient, core: client.CoreV1Api
) -> None:
    fake_kube.create(config_map("mwm-maintenance"))
    fake_kube.create(config_map("app-config"))

    selected = await core.list_namespaced_config_map(
        NS, field_selector="metadata.name=mwm-maintenance"
    )
    watched = await open_watch(
        kube_client,
        f"/api/v1/namespaces/{NS}/configmaps",
        fieldSelector="metadata.name=mwm-maintenance",
    )
    everything = await refused(core.list_namespaced_config_map(NS))
    another = await refused(
        core.list_namespaced_config_map(NS, field_selector="metadata.name=app-config")
    )
    get = await refused(core.read_namespaced_config_map("mwm-maintenance", NS))

    assert [item.metadata.name for item in selected.items] == ["mwm-maintenance"]
    assert watched == 200
    assert everything == forbidden(
        f'configmaps is forbidden: User "{CONTROLLER}" cannot list resource "configmaps" in '
        f'API group "" in the namespace "{NS}"',
        kind="configmaps",
    )
    # The field selector's name is the request's name, as resourceNames rules see it.
    assert another == forbidden(
        f'configmaps "app-config" is forbidden: User "{CONTROLLER}" cannot list resource '
        f'"configmaps" in API group "" in the namespace "{NS}"',
        kind="configmaps",
        name="app-config",
    )
    assert get["details"] == {"name": "mwm-maintenance", "kind": "configmaps"}
    assert "cannot get resource" in get["message"]


@pytest.mark.usefixtures("rbac")
async def test_controller_creates_core_events_only(
    fake_kube: FakeKubeAPI, kube_client: ApiClient, core: client.CoreV1Api
) -> None:
    created = await core.create_namespaced_event(NS, core_event())
    new_style = await refused(
        client.EventsV1Api(kube_client).create_namespaced_event(
            NS, {**core_event(), "apiVersion": "events.k8s.io/v1"}
        )
    )
    listing = await refused(core.list_namespaced_event(NS))

    assert created.metadata.name.startswith("shop.")
    assert [e["metadata"]["name"] for e in fake_kube.list_objects("events", NS)] == [
        created.metadata.name
    ]
    assert new_style["message"] == (
        f'events.events.k8s.io is forbidden: User "{CONTROLLER}" cannot create resource '
        f'"events" in API group "events.k8s.io" in the namespace "{NS}"'
    )
    assert listing["details"] == {"kind": "events"}


@pytest.mark.usefixtures("rbac")
async def test_controller_gets_and_updates_its_lease_and_may_create_leases(
    leases: client.CoordinationV1Api,
) -> None:
    missing = await status_of(leases.read_namespaced_lease("mwm-controller-leader", NS))
    created = await leases.create_namespaced_lease(NS, lease("mwm-controller-leader"))
    read = await leases.read_namespaced_lease("mwm-controller-leader", NS)
    read.spec.holder_identity = "replica-2"
    updated = await leases.replace_namespaced_lease("mwm-controller-leader", NS, read)
    # create cannot be restricted by name: any Lease may be created...
    other = await leases.create_namespaced_lease(NS, lease("other"))
    # ...but only the leader Lease read or written.
    get_other = await refused(leases.read_namespaced_lease("other", NS))
    patch_leader = await status_of(
        leases.patch_namespaced_lease("mwm-controller-leader", NS, {"spec": {}})
    )
    delete_leader = await status_of(leases.delete_namespaced_lease("mwm-controller-leader", NS))
    listing = await status_of(leases.list_namespaced_lease(NS))
    elsewhere = await status_of(leases.create_namespaced_lease(OTHER, lease("x")))

    assert missing == 404  # authorized, then not found: authorization comes first
    assert created.metadata.name == "mwm-controller-leader"
    assert updated.spec.holder_identity == "replica-2"
    assert other.metadata.name == "other"
    assert get_other == forbidden(
        f'leases.coordination.k8s.io "other" is forbidden: User "{CONTROLLER}" cannot get '
        f'resource "leases" in API group "coordination.k8s.io" in the namespace "{NS}"',
        kind="leases",
        group="coordination.k8s.io",
        name="other",
    )
    assert (patch_leader, delete_leader, listing, elsewhere) == (403, 403, 403, 403)


async def test_endpointslices_in_another_namespace_need_a_rolebinding_there(
    fake_kube: FakeKubeAPI, rbac: Rbac, discovery: client.DiscoveryV1Api, core: client.CoreV1Api
) -> None:
    fake_kube.create(endpoint_slice(OTHER))
    fake_kube.create(endpoint_slice(NS))

    own = await discovery.list_namespaced_endpoint_slice(NS)
    before = await refused(discovery.list_namespaced_endpoint_slice(OTHER))
    rbac.bind("ClusterRole", "mwm-endpoint-reader", namespace=OTHER)
    bound = await discovery.list_namespaced_endpoint_slice(OTHER)
    services = await core.list_namespaced_service(OTHER)
    rbac.unbind("mwm-endpoint-reader", namespace=OTHER)
    after = await refused(discovery.list_namespaced_endpoint_slice(OTHER))

    assert [item.metadata.namespace for item in own.items] == [NS]
    expected = forbidden(
        f'endpointslices.discovery.k8s.io is forbidden: User "{CONTROLLER}" cannot list '
        f'resource "endpointslices" in API group "discovery.k8s.io" in the namespace "{OTHER}"',
        kind="endpointslices",
        group="discovery.k8s.io",
    )
    assert before == expected
    assert [item.metadata.namespace for item in bound.items] == [OTHER]
    assert services.items == []
    assert after == expected
    assert len(fake_kube.denied) == 2
    assert all(request.path.endswith(f"/{OTHER}/endpointslices") for request in fake_kube.denied)


@pytest.mark.usefixtures("rbac")
async def test_a_list_across_namespaces_is_refused_at_the_cluster_scope(
    discovery: client.DiscoveryV1Api,
) -> None:
    body = await refused(discovery.list_endpoint_slice_for_all_namespaces())

    assert body["message"] == (
        f'endpointslices.discovery.k8s.io is forbidden: User "{CONTROLLER}" cannot list '
        'resource "endpointslices" in API group "discovery.k8s.io" at the cluster scope'
    )


async def test_a_binding_to_a_missing_role_adds_the_resolution_error_to_the_403(
    rbac: Rbac, discovery: client.DiscoveryV1Api
) -> None:
    rbac.bind("ClusterRole", "mwm-endpoint-raeder", namespace=OTHER)
    rbac.bind("Role", "mwm-controller", namespace=OTHER, name="copied-from-full")

    body = await refused(discovery.list_namespaced_endpoint_slice(OTHER))

    assert body["message"] == (
        f'endpointslices.discovery.k8s.io is forbidden: User "{CONTROLLER}" cannot list '
        f'resource "endpointslices" in API group "discovery.k8s.io" in the namespace "{OTHER}"'
        ': RBAC: [clusterrole.rbac.authorization.k8s.io "mwm-endpoint-raeder" not found, '
        'role.rbac.authorization.k8s.io "mwm-controller" not found]'
    )


@pytest.mark.usefixtures("rbac")
async def test_discovery_is_allowed_to_every_authenticated_user(kube_client: ApiClient) -> None:
    # (VersionApi.get_code would need the fake's /version to carry every VersionInfo field.)
    _, version_status, _ = await kube_client.call_api("/version", "GET")
    core_versions = await client.CoreApi(kube_client).get_api_versions()
    groups = await client.ApisApi(kube_client).get_api_versions()
    resources = await client.CoreV1Api(kube_client).get_api_resources()

    assert version_status == 200
    assert core_versions.versions == ["v1"]
    assert groups.groups
    assert resources.group_version == "v1"


async def test_without_the_bootstrap_policy_discovery_is_refused_too(
    fake_kube: FakeKubeAPI, kube_client: ApiClient
) -> None:
    fake_kube.enforce_rbac(Rbac.from_config(namespace=NS, bootstrap=False))

    body = await refused(kube_client.call_api("/version", "GET"))

    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'forbidden: User "{CONTROLLER}" cannot get path "/version"',
        "reason": "Forbidden",
        "details": {},
        "code": 403,
    }


# -- other users -------------------------------------------------------------------------------


@pytest.fixture
async def alice(fake_kube: FakeKubeAPI, rbac: Rbac) -> AsyncIterator[client.CustomObjectsApi]:
    """A person in group ``ops``, who sends the bearer token ``alice-token``."""
    rbac.tokens["alice-token"] = User("alice", ("ops",))
    configuration = Configuration(host=fake_kube.url)
    configuration.api_key = {"BearerToken": "alice-token"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    async with ApiClient(configuration) as api:
        yield client.CustomObjectsApi(api)


async def test_a_person_bound_to_mwm_switch_patches_the_spec_but_not_the_status(
    fake_kube: FakeKubeAPI,
    rbac: Rbac,
    alice: client.CustomObjectsApi,
    custom: client.CustomObjectsApi,
) -> None:
    fake_kube.create(checker())
    switch_on = {"spec": {"maintenance": {"enabled": True}}}

    unbound = await refused(
        alice.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, "shop", switch_on, _content_type=MERGE
        )
    )
    rbac.bind("ClusterRole", "mwm-switch", namespace=NS, subject={"kind": "Group", "name": "ops"})
    await alice.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "shop", switch_on, _content_type=MERGE
    )
    forged = await refused(
        alice.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            "shop",
            {"status": {"observedGeneration": 9}},
            _content_type=MERGE,
        )
    )
    controller = await status_of(
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, "shop", switch_on, _content_type=MERGE
        )
    )

    assert 'User "alice" cannot patch resource "servicecheckers"' in unbound["message"]
    stored = fake_kube.get(PLURAL, NS, "shop")
    assert stored is not None
    assert stored["spec"]["maintenance"] == {"enabled": True}
    assert "status" not in stored
    assert forged["message"] == (
        f'servicecheckers.{GROUP} "shop" is forbidden: User "alice" cannot patch resource '
        f'"servicecheckers/status" in API group "{GROUP}" in the namespace "{NS}"'
    )
    assert controller == 403
    assert [d.user.name for d in fake_kube.decisions] == [
        "alice",
        "alice",
        "alice",
        CONTROLLER,
    ]
    assert fake_kube.decisions[0].user.groups == ("ops", "system:authenticated")


@pytest.mark.usefixtures("rbac")
async def test_an_unknown_bearer_token_is_401_unauthorized(fake_kube: FakeKubeAPI) -> None:
    configuration = Configuration(host=fake_kube.url)
    configuration.api_key = {"BearerToken": "stolen"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    async with ApiClient(configuration) as api:
        with pytest.raises(ApiException) as info:
            await client.CoreV1Api(api).list_namespaced_config_map(NS)

    assert info.value.status == 401
    assert json.loads(info.value.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    assert len(fake_kube.denied) == 1


async def test_the_direct_object_api_is_the_cluster_admin(
    fake_kube: FakeKubeAPI, rbac: Rbac
) -> None:
    fake_kube.create(endpoint_slice(OTHER))
    fake_kube.create(checker())
    fake_kube.patch(PLURAL, NS, "shop", {"spec": {"maintenance": {"enabled": True}}})
    fake_kube.delete("endpointslices", OTHER, "api-a")

    assert fake_kube.get(PLURAL, NS, "shop") is not None
    assert fake_kube.decisions == []
    assert not rbac.allows("patch", f"servicecheckers.{GROUP}", namespace=NS)


async def test_enforcement_is_off_by_default_and_can_be_turned_off(
    fake_kube: FakeKubeAPI, discovery: client.DiscoveryV1Api
) -> None:
    fake_kube.create(endpoint_slice(OTHER))

    unenforced = await discovery.list_namespaced_endpoint_slice(OTHER)
    fake_kube.enforce_rbac(Rbac.from_config(namespace=NS))
    enforced = await status_of(discovery.list_namespaced_endpoint_slice(OTHER))
    fake_kube.enforce_rbac(None)
    again = await discovery.list_namespaced_endpoint_slice(OTHER)

    assert len(unenforced.items) == len(again.items) == 1
    assert enforced == 403
    assert len(fake_kube.decisions) == 1


# -- loading the manifests ---------------------------------------------------------------------


def test_from_config_reads_the_files_the_kustomization_lists() -> None:
    rbac = Rbac.from_config(namespace="shop")

    assert rbac.user == User.service_account("shop", "mwm-controller")
    assert {(b.kind, b.name, b.namespace) for b in rbac.bindings("shop")} == {
        ("RoleBinding", "mwm-controller", "shop"),
        ("RoleBinding", "mwm-endpoint-reader", "shop"),
    }
    role = rbac.role("Role", "mwm-controller", namespace="shop")
    assert role is not None
    assert rbac.role("ClusterRole", "mwm-switch") is not None
    assert rbac.role("ClusterRole", "mwm-endpoint-reader") is not None
    assert ("list", "watch") in {rule.verbs for rule in role.rules}


def test_rules_come_from_the_manifests_not_from_the_fake(tmp_path: Path) -> None:
    for path in CONFIG_RBAC.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        if path.name == "role.yaml":  # grant get on ServiceCheckers too
            text = text.replace('verbs: ["list", "watch"]', 'verbs: ["get", "list", "watch"]', 1)
        (tmp_path / path.name).write_text(text, encoding="utf-8")

    shipped = Rbac.from_config(namespace=NS)
    widened = Rbac.from_config(namespace=NS, directory=tmp_path)

    assert not shipped.allows("get", f"servicecheckers.{GROUP}", namespace=NS)
    assert widened.allows("get", f"servicecheckers.{GROUP}", namespace=NS)


def test_a_service_account_subject_without_namespace_is_its_rolebindings() -> None:
    rbac = Rbac.from_config(namespace=NS)
    rbac.bind(
        "ClusterRole",
        "mwm-endpoint-reader",
        namespace=OTHER,
        subject={"kind": "ServiceAccount", "name": "mwm-controller"},
    )
    rbac.bind_cluster("mwm-switch", subject={"kind": "ServiceAccount", "name": "mwm-controller"})

    # In payments the subject means payments' mwm-controller, not the controller in full.
    assert not rbac.allows("list", "endpointslices.discovery.k8s.io", namespace=OTHER)
    assert rbac.allows(
        "list",
        "endpointslices.discovery.k8s.io",
        namespace=OTHER,
        user=User.service_account(OTHER, "mwm-controller"),
    )
    # ...and in a ClusterRoleBinding it matches no one.
    assert not rbac.allows("patch", f"servicecheckers.{GROUP}", namespace=NS)


def test_a_manifest_in_another_namespace_is_refused_like_kubectl_refuses_it() -> None:
    role = {"kind": "Role", "metadata": {"name": "r", "namespace": "elsewhere"}, "rules": []}

    with pytest.raises(ValueError, match='namespace from the provided object "elsewhere"'):
        Rbac.from_manifests([role], namespace=NS)


# -- how requests map to verbs and resources ---------------------------------------------------

CM = f"/api/v1/namespaces/{NS}/configmaps"
SC = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"


def mapped(
    case_id: str,
    method: str,
    path: str,
    verb: str,
    *,
    query: dict[str, str] | None = None,
    namespace: str = NS,
    group: str = "",
    resource: str = "configmaps",
    subresource: str = "",
    name: str = "",
) -> Any:
    expected = (verb, namespace, group, resource, subresource, name)
    return pytest.param(method, path, query or {}, expected, id=case_id)


ATTRIBUTE_CASES = [
    mapped("GET-collection-is-list", "GET", CM, "list"),
    mapped("watch=true-is-watch", "GET", CM, "watch", query={"watch": "true"}),
    mapped("watch=1-is-watch", "GET", CM, "watch", query={"watch": "1"}),
    mapped("watch=false-is-list", "GET", CM, "list", query={"watch": "false"}),
    mapped("watch=0-is-list", "GET", CM, "list", query={"watch": "0"}),
    mapped(
        "list-by-name-selector-has-a-name",
        "GET",
        CM,
        "list",
        query={"fieldSelector": "metadata.name=sw"},
        name="sw",
    ),
    mapped(
        "watch-by-double-equals-selector-has-a-name",
        "GET",
        CM,
        "watch",
        query={"watch": "true", "fieldSelector": "metadata.name==sw"},
        name="sw",
    ),
    mapped(
        "name-in-a-compound-selector",
        "GET",
        CM,
        "list",
        query={"fieldSelector": "metadata.namespace=full,metadata.name=sw"},
        name="sw",
    ),
    mapped(
        "not-equal-selector-has-no-name",
        "GET",
        CM,
        "list",
        query={"fieldSelector": "metadata.name!=sw"},
    ),
    mapped(
        "unparsable-list-options-drop-the-name",
        "GET",
        CM,
        "list",
        query={"fieldSelector": "metadata.name=sw", "limit": "x"},
    ),
    mapped("GET-named-is-get", "GET", f"{CM}/sw", "get", name="sw"),
    mapped("HEAD-is-get", "HEAD", f"{CM}/sw", "get", name="sw"),
    mapped("POST-is-create", "POST", CM, "create"),
    mapped("PUT-is-update", "PUT", f"{CM}/sw", "update", name="sw"),
    mapped(
        "PATCH-status-is-a-subresource",
        "PATCH",
        f"{SC}/shop/status",
        "patch",
        group=GROUP,
        resource=PLURAL,
        subresource="status",
        name="shop",
    ),
    mapped("DELETE-named-is-delete", "DELETE", f"{CM}/sw", "delete", name="sw"),
    mapped("DELETE-collection-is-deletecollection", "DELETE", CM, "deletecollection"),
    mapped(
        "all-namespaces-is-cluster-scope",
        "GET",
        "/apis/discovery.k8s.io/v1/endpointslices",
        "list",
        namespace="",
        group="discovery.k8s.io",
        resource="endpointslices",
    ),
    mapped(
        "list-namespaces", "GET", "/api/v1/namespaces", "list", namespace="", resource="namespaces"
    ),
    mapped(
        "a-namespace-is-in-itself",
        "GET",
        f"/api/v1/namespaces/{NS}",
        "get",
        resource="namespaces",
        name=NS,
    ),
    mapped(
        "namespace-finalize-subresource",
        "PUT",
        f"/api/v1/namespaces/{NS}/finalize",
        "update",
        resource="namespaces",
        subresource="finalize",
        name=NS,
    ),
    mapped(
        "deprecated-watch-path-prefix",
        "GET",
        f"/api/v1/watch/namespaces/{NS}/configmaps",
        "watch",
    ),
]


@pytest.mark.parametrize(("method", "path", "query", "expected"), ATTRIBUTE_CASES)
async def test_requests_map_to_rbac_attributes(
    fake_kube: FakeKubeAPI,
    kube_client: ApiClient,
    method: str,
    path: str,
    query: dict[str, str],
    expected: tuple[str, str, str, str, str, str],
) -> None:
    fake_kube.enforce_rbac(Rbac.from_config(namespace=NS))

    await send(kube_client, method, path, query)

    [decision] = fake_kube.decisions
    attributes = decision.attributes
    assert attributes.is_resource_request
    assert (
        attributes.verb,
        attributes.namespace,
        attributes.api_group,
        attributes.resource,
        attributes.subresource,
        attributes.name,
    ) == expected


@pytest.mark.parametrize(
    ("method", "path", "verb"),
    [
        pytest.param("GET", "/api", "get", id="api"),
        pytest.param("GET", "/apis", "get", id="apis"),
        pytest.param("GET", "/api/v1", "get", id="core-group-version"),
        pytest.param("GET", "/apis/discovery.k8s.io/v1", "get", id="group-version"),
        pytest.param("GET", "/version", "get", id="version"),
        pytest.param("POST", "/apis", "post", id="non-resource-verb-is-the-method"),
    ],
)
async def test_discovery_paths_are_non_resource_urls(
    fake_kube: FakeKubeAPI, kube_client: ApiClient, method: str, path: str, verb: str
) -> None:
    fake_kube.enforce_rbac(Rbac.from_config(namespace=NS))

    status = await send(kube_client, method, path)

    [decision] = fake_kube.decisions
    assert not decision.attributes.is_resource_request
    assert (decision.attributes.verb, decision.attributes.path) == (verb, path)
    # system:discovery grants get only.
    assert decision.allowed == (verb == "get")
    assert (status == 403) == (verb != "get")


# -- how rules match ---------------------------------------------------------------------------


def rule_case(
    case_id: str,
    rule: dict[str, Any],
    method: str,
    path: str,
    allowed: bool,
    query: dict[str, str] | None = None,
) -> Any:
    return pytest.param(rule, method, path, query or {}, allowed, id=case_id)


def grant(group: str, resource: str, *verbs: str, names: tuple[str, ...] = ()) -> dict[str, Any]:
    rule: dict[str, Any] = {"apiGroups": [group], "resources": [resource], "verbs": list(verbs)}
    if names:
        rule["resourceNames"] = list(names)
    return rule


LEASE_A = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/a"

RULE_CASES = [
    rule_case("verb-star", grant("", "configmaps", "*"), "DELETE", f"{CM}/a", True),
    rule_case("group-star", grant("*", "leases", "get"), "GET", LEASE_A, True),
    rule_case("wrong-group", grant("", "leases", "get"), "GET", LEASE_A, False),
    rule_case(
        "resource-star-covers-subresources",
        grant(GROUP, "*", "patch"),
        "PATCH",
        f"{SC}/a/status",
        True,
    ),
    rule_case(
        "star-slash-status", grant(GROUP, "*/status", "patch"), "PATCH", f"{SC}/a/status", True
    ),
    rule_case(
        "star-slash-status-not-the-resource",
        grant(GROUP, "*/status", "patch"),
        "PATCH",
        f"{SC}/a",
        False,
    ),
    rule_case(
        "star-slash-other-subresource",
        grant(GROUP, "*/scale", "patch"),
        "PATCH",
        f"{SC}/a/status",
        False,
    ),
    rule_case(
        "resource-does-not-cover-its-status",
        grant(GROUP, PLURAL, "patch"),
        "PATCH",
        f"{SC}/a/status",
        False,
    ),
    rule_case(
        "status-does-not-cover-the-resource",
        grant(GROUP, f"{PLURAL}/status", "patch"),
        "PATCH",
        f"{SC}/a",
        False,
    ),
    rule_case(
        "resource-name-matches",
        grant("", "configmaps", "get", names=("a",)),
        "GET",
        f"{CM}/a",
        True,
    ),
    rule_case(
        "resource-name-differs",
        grant("", "configmaps", "get", names=("a",)),
        "GET",
        f"{CM}/b",
        False,
    ),
    rule_case(
        "resource-names-never-allow-create",
        grant("", "configmaps", "create", names=("a",)),
        "POST",
        CM,
        False,
    ),
    rule_case(
        "resource-names-never-allow-deletecollection",
        grant("", "configmaps", "deletecollection", names=("a",)),
        "DELETE",
        CM,
        False,
        {"fieldSelector": "metadata.name=a"},
    ),
    rule_case(
        "list-does-not-allow-watch",
        grant("", "configmaps", "list"),
        "GET",
        CM,
        False,
        {"watch": "true"},
    ),
    rule_case(
        "non-resource-prefix-star",
        {"nonResourceURLs": ["/version*"], "verbs": ["get"]},
        "GET",
        "/versions-of-nothing",
        True,
    ),
]


@pytest.mark.parametrize(("rule", "method", "path", "query", "allowed"), RULE_CASES)
async def test_rules_match_like_rule_allows(
    fake_kube: FakeKubeAPI,
    kube_client: ApiClient,
    rule: dict[str, Any],
    method: str,
    path: str,
    query: dict[str, str],
    allowed: bool,
) -> None:
    role = {"kind": "Role", "metadata": {"name": "probe"}, "rules": [rule]}
    binding = {
        "kind": "RoleBinding",
        "metadata": {"name": "probe"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "probe"},
        "subjects": [{"kind": "ServiceAccount", "name": "mwm-controller"}],
    }
    rbac = Rbac.from_manifests([role, binding], namespace=NS, bootstrap=False)
    if not path.startswith(("/api/", "/apis/")):  # a non-resource rule needs a ClusterRole
        rbac.apply({**role, "kind": "ClusterRole"})
        rbac.bind_cluster("probe")
    fake_kube.enforce_rbac(rbac)

    status = await send(kube_client, method, path, query)

    [decision] = fake_kube.decisions
    assert decision.allowed is allowed
    assert (status == 403) is not allowed


# -- the wording of a 403 ----------------------------------------------------------------------


WHO = f'User "{CONTROLLER}"'
IN_NS = f'in the namespace "{NS}"'

WORDING_CASES = [
    pytest.param(
        "GET",
        CM,
        f'configmaps is forbidden: {WHO} cannot list resource "configmaps" in API group "" {IN_NS}',
        {"kind": "configmaps"},
        id="core-group-collection",
    ),
    pytest.param(
        "GET",
        f"{CM}/a",
        f'configmaps "a" is forbidden: {WHO} cannot get resource "configmaps" in API group "" '
        f"{IN_NS}",
        {"name": "a", "kind": "configmaps"},
        id="named",
    ),
    pytest.param(
        "PUT",
        f"{SC}/a/status",
        f'servicecheckers.{GROUP} "a" is forbidden: {WHO} cannot update resource '
        f'"servicecheckers/status" in API group "{GROUP}" {IN_NS}',
        {"name": "a", "group": GROUP, "kind": PLURAL},
        id="subresource",
    ),
    pytest.param(
        "GET",
        "/api/v1/namespaces",
        f'namespaces is forbidden: {WHO} cannot list resource "namespaces" in API group "" at '
        "the cluster scope",
        {"kind": "namespaces"},
        id="cluster-scope",
    ),
    pytest.param(
        "GET",
        "/healthz/x<y>",
        f'forbidden: {WHO} cannot get path "/healthz/x&lt;y&gt;"',
        {},
        id="non-resource-url-sanitized",
    ),
]


@pytest.mark.parametrize(("method", "path", "message", "details"), WORDING_CASES)
async def test_a_403_says_what_a_real_server_says(
    fake_kube: FakeKubeAPI,
    kube_client: ApiClient,
    method: str,
    path: str,
    message: str,
    details: dict[str, str],
) -> None:
    fake_kube.enforce_rbac(Rbac.from_config(namespace=NS))

    response = await kube_client.call_api(
        path,
        method,
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body={} if method == "PUT" else None,
        _preload_content=False,
    )
    try:
        body = await response.json()
        headers = response.headers
    finally:
        response.release()

    assert response.status == 403
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Forbidden",
        "details": details,
        "code": 403,
    }
    assert headers["Content-Type"].startswith("application/json")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert body == forbidden_status(fake_kube.decisions[-1].attributes)


# -- restarts ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("rbac")
async def test_after_a_restart_everything_is_403_until_the_authorizer_has_warmed_up(
    fake_kube: FakeKubeAPI, kube_client: ApiClient, custom: client.CustomObjectsApi
) -> None:
    fake_kube.create(checker())
    await custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)

    await fake_kube.restart()
    cold = await refused(custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL))
    cold_discovery = await refused(kube_client.call_api("/version", "GET"))
    assert fake_kube.warming_up
    fake_kube.finish_warmup()
    warm = await custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)

    assert cold == forbidden(
        f'servicecheckers.{GROUP} is forbidden: User "{CONTROLLER}" cannot list resource '
        f'"servicecheckers" in API group "{GROUP}" in the namespace "{NS}"',
        kind="servicecheckers",
        group=GROUP,
    )
    assert cold_discovery["message"] == f'forbidden: User "{CONTROLLER}" cannot get path "/version"'
    assert [item["metadata"]["name"] for item in warm["items"]] == ["shop"]
    assert not fake_kube.warming_up
    assert [(d.allowed, d.warming_up) for d in fake_kube.decisions] == [
        (True, False),
        (False, True),
        (False, True),
        (True, False),
    ]


async def test_a_restart_warms_up_even_without_rbac_and_can_end_after_some_requests(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    await fake_kube.restart(warmup_requests=2)

    first = await refused(core.list_namespaced_config_map(NS))
    second = await status_of(core.list_namespaced_config_map(NS))
    third = await core.list_namespaced_config_map(NS)

    assert first["message"] == (
        'configmaps is forbidden: User "system:serviceaccount:default:mwm-controller" cannot '
        f'list resource "configmaps" in API group "" in the namespace "{NS}"'
    )
    assert second == 403
    assert third.items == []
    assert not fake_kube.warming_up
    assert len(fake_kube.denied) == 2


async def test_a_timed_warmup_ends_on_the_loop_clock(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    await fake_kube.restart(warmup_s=0.05)

    cold = await status_of(core.list_namespaced_config_map(NS))
    await fake_kube.wait_until(lambda: not fake_kube.warming_up, timeout_s=2)
    warm = await status_of(core.list_namespaced_config_map(NS))

    assert (cold, warm) == (403, 200)


async def test_a_restart_cuts_open_watches(fake_kube: FakeKubeAPI, kube_client: ApiClient) -> None:
    response = await kube_client.call_api(
        f"/api/v1/namespaces/{NS}/configmaps",
        "GET",
        query_params=[("watch", "true")],
        _preload_content=False,
    )
    try:
        await fake_kube.wait_for_watch("configmaps")
        await fake_kube.restart(warmup_requests=0)
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.content.read()
    finally:
        response.close()

    assert fake_kube.watches == []
    assert not fake_kube.warming_up


async def test_a_restart_cuts_requests_in_flight(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    gate = fake_kube.hold("POST", "/configmaps")
    create = asyncio.create_task(core.create_namespaced_config_map(NS, config_map("a")))
    await gate.arrived.wait()

    await fake_kube.restart(warmup_requests=0)

    with pytest.raises(aiohttp.ClientError):
        await create
    await fake_kube.wait_until(lambda: len(fake_kube.answers) == 1)
    assert fake_kube.answers[0].status is None  # never answered: nothing was written
    assert fake_kube.list_objects("configmaps", NS) == []


# -- compaction --------------------------------------------------------------------------------


@pytest.mark.usefixtures("rbac")
async def test_a_watch_from_a_compacted_version_is_authorized_then_expired(
    fake_kube: FakeKubeAPI, kube_client: ApiClient, core: client.CoreV1Api
) -> None:
    fake_kube.create(config_map("mwm-maintenance"))
    listed = await core.list_namespaced_config_map(
        NS, field_selector="metadata.name=mwm-maintenance"
    )
    fake_kube.patch("configmaps", NS, "mwm-maintenance", {"data": {"MAINTENANCE_MODE": "true"}})
    fake_kube.compact()

    response = await kube_client.call_api(
        f"/api/v1/namespaces/{NS}/configmaps",
        "GET",
        query_params=[
            ("watch", "true"),
            ("fieldSelector", "metadata.name=mwm-maintenance"),
            ("resourceVersion", listed.metadata.resource_version),
        ],
        _preload_content=False,
    )
    try:
        lines = (await response.read()).splitlines()
    finally:
        response.release()

    # Like a real server's watch cache: 200, then one ERROR event carrying 410 Expired.
    assert response.status == 200
    [event] = [json.loads(line) for line in lines]
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
    assert event["object"]["message"].startswith("too old resource version: ")
    assert fake_kube.decisions[-1].allowed


async def test_a_continue_token_older_than_the_compaction_is_410(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    for name in ("a", "b", "c"):
        fake_kube.create(config_map(name))
    first = await core.list_namespaced_config_map(NS, limit=2)
    fake_kube.patch("configmaps", NS, "a", {"data": {"x": "1"}})
    fake_kube.compact()

    with pytest.raises(ApiException) as info:
        await core.list_namespaced_config_map(NS, limit=2, _continue=first.metadata._continue)

    assert info.value.status == 410
    assert json.loads(info.value.body)["reason"] == "Expired"


async def test_a_restart_may_forget_history_like_a_fresh_watch_cache(
    fake_kube: FakeKubeAPI, kube_client: ApiClient, core: client.CoreV1Api
) -> None:
    fake_kube.create(config_map("a"))
    listed = await core.list_namespaced_config_map(NS)
    fake_kube.patch("configmaps", NS, "a", {"data": {"x": "1"}})

    await fake_kube.restart(warmup_requests=0, compact=True)
    response = await kube_client.call_api(
        f"/api/v1/namespaces/{NS}/configmaps",
        "GET",
        query_params=[("watch", "true"), ("resourceVersion", listed.metadata.resource_version)],
        _preload_content=False,
    )
    try:
        [event] = [json.loads(line) for line in (await response.read()).splitlines()]
    finally:
        response.release()

    assert event["object"]["code"] == 410


# -- the controller itself on config/rbac ------------------------------------------------------


async def test_the_controller_needs_nothing_beyond_config_rbac(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.enforce_rbac(Rbac.from_config(namespace=clusters.NS))
    clusters.create_critical_api(fake)
    fake.create(clusters.switch_configmap("false", name="mwm-maintenance"))

    cluster = await start_cluster(
        {**clusters.FAST_ELECTION, "MWM_SOURCE__KUBERNETES__CONFIGMAP_NAME": "mwm-maintenance"}
    )
    await cluster.wait_for(maintenance_off)
    fake.update(clusters.switch_configmap("true", name="mwm-maintenance"))
    await cluster.wait_for(maintenance_on)
    await fake.wait_until(lambda: bool(fake.list_objects("events", clusters.NS)))
    # The leader renews its lease one retry period after taking it: wait for that renewal
    # instead of assuming it came before the event.
    await fake.wait_until(lambda: ("update", "leases") in used_verbs(fake))

    assert fake.denied == []
    assert {
        ("update", "leases"),
        ("watch", "configmaps"),
        ("patch", "servicecheckers/status"),
        ("create", "events"),
    } <= used_verbs(fake)


def used_verbs(fake: FakeKubeAPI) -> set[tuple[str, str]]:
    """Every (verb, resource) the fake has decided on so far."""
    return {(d.attributes.verb, d.attributes.combined_resource) for d in fake.decisions}


async def test_a_service_in_an_unbound_namespace_is_unknown_until_bound(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    rbac = fake.enforce_rbac(Rbac.from_config(namespace=clusters.NS))
    assert rbac is not None
    fake.create(
        clusters.checker(
            services=[{"name": "api", "critical": True}, {"name": "billing", "namespace": OTHER}]
        )
    )
    fake.create(clusters.service("api"))
    fake.create(clusters.endpoint_slice("api", ready=1))
    fake.create(clusters.service("billing", OTHER))
    fake.create(clusters.endpoint_slice("billing", ready=1, namespace=OTHER))

    def billing(status: dict[str, Any]) -> dict[str, Any]:
        entries = [s for s in status.get("serviceStatuses") or [] if s["name"] == "billing"]
        return entries[0] if entries else {}

    cluster = await start_cluster()
    unbound = billing(await cluster.wait_for_status(lambda s: billing(s).get("reason")))
    rbac.bind("ClusterRole", "mwm-endpoint-reader", namespace=OTHER)
    bound = billing(await cluster.wait_for_status(lambda s: billing(s).get("ready")))

    assert (unbound["reason"], unbound["ready"]) == ("Unknown", False)
    assert (bound["reason"], bound["readyEndpoints"]) == ("Ready", 1)
    assert {d.attributes.namespace for d in fake.decisions if not d.allowed} == {OTHER}


async def test_the_controller_rides_out_an_api_server_restart(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.enforce_rbac(Rbac.from_config(namespace=clusters.NS))
    clusters.create_critical_api(fake)
    cluster = await start_cluster()
    await cluster.wait_for(maintenance_off)
    since = len(fake.answers)

    await fake.restart(warmup_requests=4)
    await fake.wait_until(lambda: not fake.warming_up)
    await fake.wait_for_watch("servicecheckers")
    await fake.wait_for_watch("endpointslices")
    after_restart = await cluster.wait_for(lambda _: True)
    until = len(fake.answers)
    fake.update(clusters.endpoint_slice("api", ready=0, not_ready=1))
    await cluster.wait_for(maintenance_on)

    assert len([d for d in fake.decisions if d.warming_up]) == 4
    # 403s while the authorizer warms up are no outage: maintenance stayed off throughout.
    assert maintenance_off(after_restart)
    written = [
        answer.request.body["status"]
        for answer in fake.answers[since:until]
        if answer.accepted and answer.request.path.endswith("/status")
    ]
    assert all(not (status.get("maintenance") or {}).get("active") for status in written)
