"""The fake API server behaves like a real one, as seen through the real kubernetes-asyncio client.

These tests pin the semantics the controller's tests rely on: if the fake drifts from a real
API server here, a controller bug could hide behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from tests.kube.fakeapi import FakeKubeAPI

GROUP = "maintenance.mamrezb.com"
VERSION = "v1alpha1"
PLURAL = "servicecheckers"


def service(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }


def checker(name: str, *, target: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ServiceChecker",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"service": target},
    }


def status_of(error: ApiException) -> dict[str, Any]:
    body = json.loads(error.body)
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == error.status
    return body  # type: ignore[no-any-return]


class WatchFeed:
    """A real ``watch.Watch`` running in a task; its events (or its error) come out of a queue."""

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._stream = (func, args, kwargs)
        self._queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        func, args, kwargs = self._stream
        try:
            async with watch.Watch() as stream:
                async for event in stream.stream(func, *args, **kwargs):
                    self._queue.put_nowait(event)
        except Exception as error:
            self._queue.put_nowait(error)
        else:
            self._queue.put_nowait(None)

    async def __aenter__(self) -> WatchFeed:
        self._task = asyncio.create_task(self._run(), name="watch-feed")
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def next(self, *, timeout_s: float = 5.0) -> dict[str, Any]:
        """The next event; raises what the client raised, StopAsyncIteration at a clean end."""
        item = await asyncio.wait_for(self._queue.get(), timeout_s)
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item

    async def outcome(self, *, timeout_s: float = 5.0) -> BaseException | None:
        """Skip events until the stream ends: its error, or None for a clean end."""
        while True:
            item = await asyncio.wait_for(self._queue.get(), timeout_s)
            if item is None or isinstance(item, BaseException):
                return item


@pytest.fixture
def core(kube_client: ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_client)


@pytest.fixture
def custom(kube_client: ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_client)


# -- writes ------------------------------------------------------------------------------------


async def test_create_answers_201_and_fills_server_metadata(
    fake_kube: FakeKubeAPI, custom: client.CustomObjectsApi
) -> None:
    before = fake_kube.resource_version

    created, status, _ = await custom.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, "default", PLURAL, checker("web")
    )

    assert status == 201
    metadata = created["metadata"]
    assert metadata["uid"]
    assert metadata["creationTimestamp"].endswith("Z")
    assert metadata["generation"] == 1
    assert int(metadata["resourceVersion"]) == before + 1
    assert created["spec"] == {"service": "web"}
    with pytest.raises(ApiException) as duplicate:
        await custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, checker("web")
        )
    assert duplicate.value.status == 409
    assert status_of(duplicate.value)["reason"] == "AlreadyExists"


async def test_config_maps_have_no_generation_like_on_a_real_cluster(
    core: client.CoreV1Api,
) -> None:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"k": "v"})

    created = await core.create_namespaced_config_map("default", body)
    created.data = {"k": "changed"}
    replaced = await core.replace_namespaced_config_map("settings", "default", created)

    assert created.metadata.uid
    assert created.metadata.generation is None
    assert replaced.metadata.generation is None
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)


async def test_every_write_gets_a_new_global_resource_version(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    first = await core.create_namespaced_service("default", service("a"))
    second = await custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, checker("b")
    )
    third = await core.patch_namespaced_service(
        "a", "default", {"metadata": {"labels": {"x": "1"}}}
    )

    versions = [
        int(first.metadata.resource_version),
        int(second["metadata"]["resourceVersion"]),
        int(third.metadata.resource_version),
    ]
    assert versions == sorted(set(versions))
    assert versions[-1] == fake_kube.resource_version


async def test_missing_objects_answer_404_with_a_status(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as missing:
        await core.read_namespaced_service("nope", "default")

    assert missing.value.status == 404
    body = status_of(missing.value)
    assert body["reason"] == "NotFound"
    assert body["message"] == 'services "nope" not found'
    assert body["details"] == {"name": "nope", "kind": "services"}


async def test_events_can_be_created_with_generate_name(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="web."),
        involved_object=client.V1ObjectReference(kind="Service", name="web", namespace="default"),
        reason="MaintenanceStarted",
        message="window opened",
        type="Normal",
    )

    first = await core.create_namespaced_event("default", event)
    second = await core.create_namespaced_event("default", event)

    assert first.metadata.name.startswith("web.")
    assert first.metadata.name != second.metadata.name
    assert len(fake_kube.list_objects("events", "default")) == 2


async def test_events_api_validates_new_style_events(kube_client: ApiClient) -> None:
    events = client.EventsV1Api(kube_client)
    body = {
        "metadata": {"generateName": "web."},
        "regarding": {"kind": "Service", "name": "web", "namespace": "default"},
        "reason": "MaintenanceStarted",
        "note": "window opened",
        "type": "Normal",
        "action": "Switch",
        "reportingController": "mamrezb.com/mwm",
        "reportingInstance": "mwm-0",
    }
    with pytest.raises(ApiException) as invalid:
        await events.create_namespaced_event("default", body)
    assert invalid.value.status == 422
    assert "eventTime: Required value" in status_of(invalid.value)["message"]

    created = await events.create_namespaced_event(
        "default", {**body, "eventTime": "2024-05-01T10:00:00.000000Z"}
    )

    assert created.regarding.name == "web"


async def test_a_no_op_write_bumps_nothing_and_emits_no_event(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    created = await core.create_namespaced_service("default", service("web", app="web"))
    async with WatchFeed(core.list_namespaced_service, "default") as feed:
        assert (await feed.next())["type"] == "ADDED"

        same = await core.replace_namespaced_service("web", "default", created)
        patched = await core.patch_namespaced_service(
            "web", "default", {"metadata": {"labels": {"app": "web"}}}
        )
        changed = await core.patch_namespaced_service(
            "web", "default", {"metadata": {"labels": {"app": "shop"}}}
        )

        assert same.metadata.resource_version == created.metadata.resource_version
        assert patched.metadata.resource_version == created.metadata.resource_version
        assert int(changed.metadata.resource_version) == int(created.metadata.resource_version) + 1
        # The next event is the real change: the no-op writes emitted nothing.
        event = await feed.next()
        assert (event["type"], event["object"].metadata.labels) == ("MODIFIED", {"app": "shop"})


async def test_replace_with_a_stale_resource_version_is_a_conflict(
    core: client.CoreV1Api,
) -> None:
    created = await core.create_namespaced_service("default", service("web"))
    await core.patch_namespaced_service("web", "default", {"metadata": {"labels": {"v": "2"}}})

    created.metadata.labels = {"v": "stale"}
    with pytest.raises(ApiException) as stale:
        await core.replace_namespaced_service("web", "default", created)

    assert stale.value.status == 409
    body = status_of(stale.value)
    assert body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]
    current = await core.read_namespaced_service("web", "default")
    assert current.metadata.labels == {"v": "2"}


async def test_custom_objects_need_a_resource_version_to_be_replaced(
    fake_kube: FakeKubeAPI, custom: client.CustomObjectsApi
) -> None:
    fake_kube.create(checker("web"))

    with pytest.raises(ApiException) as unconditional:
        await custom.replace_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "web", checker("web", target="shop")
        )

    assert unconditional.value.status == 422
    assert "must be specified for an update" in status_of(unconditional.value)["message"]


async def test_delete_emits_deleted_and_answers_like_the_real_server(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    fake_kube.create(service("web"))
    fake_kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}})
    async with WatchFeed(core.list_namespaced_service, "default") as feed:
        assert (await feed.next())["type"] == "ADDED"

        deleted_service = await core.delete_namespaced_service("web", "default")
        deleted_config = await core.delete_namespaced_config_map("cfg", "default")

        event = await feed.next()
        assert event["type"] == "DELETED"
        assert event["object"].metadata.name == "web"
    # Services answer the deleted object, config maps a Status (as on a real cluster).
    assert deleted_service.metadata.name == "web"
    assert deleted_config.status == "Success"
    assert fake_kube.get("services", "default", "web") is None


async def test_finalizers_keep_a_deleted_object_until_they_are_removed(
    fake_kube: FakeKubeAPI, custom: client.CustomObjectsApi
) -> None:
    body = checker("web")
    body["metadata"]["finalizers"] = ["maintenance.mamrezb.com/cleanup"]
    fake_kube.create(body)

    terminating = await custom.delete_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "web"
    )

    assert terminating["metadata"]["deletionTimestamp"]
    assert fake_kube.get(PLURAL, "default", "web") is not None
    await custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "web",
        {"metadata": {"finalizers": None}},
        _content_type="application/merge-patch+json",
    )
    assert fake_kube.get(PLURAL, "default", "web") is None


# -- list and selectors ------------------------------------------------------------------------


@pytest.fixture
def labelled_services(fake_kube: FakeKubeAPI) -> None:
    fake_kube.create(service("web", tier="front", env="prod"))
    fake_kube.create(service("api", tier="back", env="prod"))
    fake_kube.create(service("db", tier="data"))
    fake_kube.create(service("web", namespace="staging", tier="front", env="stage"))


@pytest.mark.usefixtures("labelled_services")
@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param("tier=front", ["web"], id="equals"),
        pytest.param("tier==front", ["web"], id="double-equals"),
        pytest.param("tier!=front", ["api", "db"], id="not-equals"),
        pytest.param("env!=prod", ["db"], id="not-equals-matches-missing-label"),
        pytest.param("tier in (front,back)", ["api", "web"], id="in"),
        pytest.param("tier notin (front, back)", ["db"], id="notin"),
        pytest.param("env", ["api", "web"], id="exists"),
        pytest.param("!env", ["db"], id="does-not-exist"),
        pytest.param("env=prod,tier!=back", ["web"], id="and"),
        pytest.param("", ["api", "db", "web"], id="empty"),
    ],
)
async def test_list_filters_by_label_selector(
    core: client.CoreV1Api, selector: str, expected: list[str]
) -> None:
    listed = await core.list_namespaced_service("default", label_selector=selector)

    assert sorted(item.metadata.name for item in listed.items) == expected


@pytest.mark.usefixtures("labelled_services")
@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param("metadata.name=web", [("default", "web"), ("staging", "web")], id="name"),
        pytest.param("metadata.namespace==staging", [("staging", "web")], id="namespace"),
        pytest.param(
            "metadata.namespace!=staging,metadata.name!=db",
            [("default", "api"), ("default", "web")],
            id="not-equals",
        ),
    ],
)
async def test_list_filters_by_field_selector_across_namespaces(
    core: client.CoreV1Api, selector: str, expected: list[tuple[str, str]]
) -> None:
    listed = await core.list_service_for_all_namespaces(field_selector=selector)

    assert [(i.metadata.namespace, i.metadata.name) for i in listed.items] == expected


async def test_list_carries_the_current_resource_version(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api, labelled_services: None
) -> None:
    listed = await core.list_namespaced_service("default")

    assert listed.metadata.resource_version == str(fake_kube.resource_version)
    raw = await fake_kube.wait_for_request(lambda r: r.method == "GET")
    assert raw.path == "/api/v1/namespaces/default/services"


@pytest.mark.parametrize(
    ("label_selector", "field_selector"),
    [
        pytest.param("tier in (front", None, id="unclosed-set"),
        pytest.param("tier>=3", None, id="bad-operator"),
        pytest.param(None, "spec.selector=x", id="unsupported-field"),
    ],
)
async def test_bad_selectors_are_refused_with_400(
    core: client.CoreV1Api, label_selector: str | None, field_selector: str | None
) -> None:
    with pytest.raises(ApiException) as refused:
        await core.list_namespaced_service(
            "default", label_selector=label_selector, field_selector=field_selector
        )

    assert refused.value.status == 400
    assert status_of(refused.value)["reason"] == "BadRequest"


async def test_list_pages_with_limit_and_continue(
    core: client.CoreV1Api, labelled_services: None
) -> None:
    first = await core.list_namespaced_service("default", limit=2)
    second = await core.list_namespaced_service(
        "default", limit=2, _continue=first.metadata._continue
    )

    assert [i.metadata.name for i in first.items] == ["api", "db"]
    assert first.metadata.remaining_item_count == 1
    assert [i.metadata.name for i in second.items] == ["web"]
    assert second.metadata._continue is None


async def test_endpoint_slices_are_listed_by_service_name(
    fake_kube: FakeKubeAPI, kube_client: ApiClient
) -> None:
    for name, owner in (("web-abc", "web"), ("web-def", "web"), ("api-xyz", "api")):
        fake_kube.create(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"name": name, "labels": {"kubernetes.io/service-name": owner}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}],
            }
        )

    listed = await client.DiscoveryV1Api(kube_client).list_namespaced_endpoint_slice(
        "default", label_selector="kubernetes.io/service-name=web"
    )

    assert [item.metadata.name for item in listed.items] == ["web-abc", "web-def"]
    assert listed.items[0].endpoints[0].conditions.ready is True


# -- watch -------------------------------------------------------------------------------------


async def test_watch_without_version_sends_existing_objects_then_live_changes(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    fake_kube.create(service("web"))
    fake_kube.create(service("api"))

    async with WatchFeed(core.list_namespaced_service, "default") as feed:
        initial = [await feed.next(), await feed.next()]
        await fake_kube.wait_for_watch("services")
        fake_kube.patch("services", "default", "web", {"metadata": {"labels": {"x": "1"}}})
        live = await feed.next()
    # The client hung up: the server's handler is cancelled and the watch unsubscribed.
    await fake_kube.wait_until(lambda: not fake_kube.watches)

    assert [(e["type"], e["object"].metadata.name) for e in initial] == [
        ("ADDED", "api"),
        ("ADDED", "web"),
    ]
    assert (live["type"], live["object"].metadata.name) == ("MODIFIED", "web")
    assert live["object"].metadata.resource_version == str(fake_kube.resource_version)
    watch_request = fake_kube.requests_to("GET", r"/services$")[0]
    assert watch_request.query["watch"] == "True"


async def test_watch_from_a_version_replays_what_came_after_it(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    fake_kube.create(service("web"))
    listed = await core.list_namespaced_service("default")
    fake_kube.create(service("api"))
    fake_kube.delete("services", "default", "web")

    async with WatchFeed(
        core.list_namespaced_service, "default", resource_version=listed.metadata.resource_version
    ) as feed:
        replayed = [await feed.next(), await feed.next()]

    assert [(e["type"], e["object"].metadata.name) for e in replayed] == [
        ("ADDED", "api"),
        ("DELETED", "web"),
    ]


async def test_watch_from_a_compacted_version_raises_410_after_one_retry(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    fake_kube.create(service("web"))
    listed = await core.list_namespaced_service("default")
    fake_kube.patch("services", "default", "web", {"metadata": {"labels": {"x": "1"}}})
    fake_kube.compact()
    old_version = listed.metadata.resource_version

    async with WatchFeed(
        core.list_namespaced_service, "default", resource_version=old_version
    ) as feed:
        error = await feed.outcome()

    assert isinstance(error, ApiException)
    assert error.status == 410
    assert "Expired" in str(error.reason)
    attempts = [r for r in fake_kube.requests if r.is_watch]
    assert [r.query.get("resourceVersion") for r in attempts] == [old_version, old_version]


async def test_the_expired_error_event_is_a_v1_status(
    fake_kube: FakeKubeAPI, kube_client: ApiClient
) -> None:
    fake_kube.create(service("web"))
    fake_kube.patch("services", "default", "web", {"metadata": {"labels": {"x": "1"}}})
    fake_kube.compact()
    url = f"{fake_kube.url}/api/v1/namespaces/default/services?watch=1&resourceVersion=1"

    async with aiohttp.ClientSession() as session, session.get(url) as response:
        lines = (await response.read()).splitlines()

    assert response.status == 200
    assert [json.loads(line) for line in lines] == [
        {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: 1 ({fake_kube.resource_version})",
                "reason": "Expired",
                "code": 410,
            },
        }
    ]


async def test_bookmarks_arrive_on_demand_and_periodically(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    fake_kube.create(service("web"))

    async with WatchFeed(
        core.list_namespaced_service, "default", allow_watch_bookmarks=True
    ) as feed:
        assert (await feed.next())["type"] == "ADDED"
        await fake_kube.wait_for_watch("services")
        fake_kube.create(service("api"))
        assert fake_kube.send_bookmarks() == 1
        added = await feed.next()
        on_demand = await feed.next()
        fake_kube.bookmark_interval_s = 0.01
        fake_kube.create(service("db"))  # wakes the stream so the new interval applies
        assert (await feed.next())["type"] == "ADDED"
        periodic = await feed.next()

    assert added["type"] == "ADDED"
    assert on_demand["type"] == "BOOKMARK"
    assert on_demand["raw_object"] == {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": added["object"].metadata.resource_version},
    }
    assert periodic["type"] == "BOOKMARK"
    assert periodic["raw_object"]["metadata"]["resourceVersion"] == str(fake_kube.resource_version)


async def test_watch_without_bookmarks_allowed_gets_none(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    async with WatchFeed(core.list_namespaced_service, "default") as feed:
        await fake_kube.wait_for_watch("services")
        assert fake_kube.send_bookmarks() == 0
        fake_kube.create(service("web"))
        assert (await feed.next())["type"] == "ADDED"


async def test_selector_watch_sees_objects_leave_and_enter(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    fake_kube.create(service("web", maintenance="on"))

    async with WatchFeed(
        core.list_namespaced_service, "default", label_selector="maintenance=on"
    ) as feed:
        assert (await feed.next())["type"] == "ADDED"
        await fake_kube.wait_for_watch("services")
        fake_kube.patch(
            "services", "default", "web", {"metadata": {"labels": {"maintenance": "off"}}}
        )
        left = await feed.next()
        fake_kube.create(service("api", maintenance="off"))  # never matches: no event
        fake_kube.patch(
            "services", "default", "web", {"metadata": {"labels": {"maintenance": "on"}}}
        )
        entered = await feed.next()

    assert left["type"] == "DELETED"
    assert left["object"].metadata.name == "web"
    # Like the real watch cache: the old content, stamped with the change's version.
    assert left["object"].metadata.labels == {"maintenance": "on"}
    assert (
        int(left["object"].metadata.resource_version)
        == int(entered["object"].metadata.resource_version) - 2
    )
    assert (entered["type"], entered["object"].metadata.name) == ("ADDED", "web")


async def test_watch_with_timeout_seconds_ends_cleanly(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    fake_kube.create(service("web"))

    async with WatchFeed(core.list_namespaced_service, "default", timeout_seconds=1) as feed:
        outcome = await feed.outcome()

    assert outcome is None
    assert fake_kube.watches == []


async def test_ended_watch_is_resumed_by_the_client_but_aborted_one_is_an_error(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    fake_kube.create(service("web"))

    async with WatchFeed(core.list_namespaced_service, "default") as feed:
        added = await feed.next()
        await fake_kube.wait_for_watch("services")
        assert fake_kube.end_watches() == 1
        resumed = await fake_kube.wait_for_request(
            lambda r: r.is_watch and "resourceVersion" in r.query
        )
        assert resumed.query["resourceVersion"] == added["object"].metadata.resource_version
        await fake_kube.wait_for_watch("services")
        assert fake_kube.abort_watches() == 1
        error = await feed.outcome()

    assert isinstance(error, aiohttp.ClientPayloadError)


async def test_injected_events_reach_open_watches_verbatim(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    async with WatchFeed(core.list_namespaced_service, "default") as feed:
        await fake_kube.wait_for_watch("services")
        fake_kube.inject_watch_event(
            "services",
            {
                "type": "ERROR",
                "object": {
                    "kind": "Status",
                    "code": 500,
                    "reason": "InternalError",
                    "message": "boom",
                },
            },
        )
        error = await feed.outcome()

    assert isinstance(error, ApiException)
    assert error.status == 500


# -- status subresource ------------------------------------------------------------------------


async def test_status_subresource_is_isolated_from_the_main_endpoint(
    fake_kube: FakeKubeAPI, custom: client.CustomObjectsApi
) -> None:
    body = checker("web")
    body["status"] = {"phase": "ignored on create"}
    created = await custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    assert "status" not in created

    with_status = await custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "web",
        {"status": {"phase": "Healthy"}, "spec": {"service": "ignored"}},
        _content_type="application/merge-patch+json",
    )
    assert with_status["status"] == {"phase": "Healthy"}
    assert with_status["spec"] == {"service": "web"}
    assert with_status["metadata"]["generation"] == 1
    assert int(with_status["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )

    replacement = {**with_status, "spec": {"service": "shop"}, "status": {"phase": "Lost"}}
    replaced = await custom.replace_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "web", replacement
    )
    assert replaced["spec"] == {"service": "shop"}
    assert replaced["status"] == {"phase": "Healthy"}
    assert replaced["metadata"]["generation"] == 2


async def test_custom_object_patch_needs_an_explicit_merge_patch_content_type(
    fake_kube: FakeKubeAPI, custom: client.CustomObjectsApi
) -> None:
    fake_kube.create(checker("web"))
    patch = {"status": {"phase": "Healthy"}}

    with pytest.raises(ApiException) as default_type:
        await custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, "default", PLURAL, "web", patch
        )
    assert default_type.value.status == 400
    sent = fake_kube.requests_to("PATCH", r"/status$")[0]
    assert sent.content_type == "application/json-patch+json"

    patched = await custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "web",
        patch,
        _content_type="application/merge-patch+json",
    )
    assert patched["status"] == {"phase": "Healthy"}


async def test_strategic_merge_patch_is_refused_for_custom_resources(
    fake_kube: FakeKubeAPI, custom: client.CustomObjectsApi
) -> None:
    fake_kube.create(checker("web"))

    with pytest.raises(ApiException) as refused:
        await custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            "web",
            {"spec": {"service": "shop"}},
            _content_type="application/strategic-merge-patch+json",
        )

    assert refused.value.status == 415
    assert status_of(refused.value)["reason"] == "UnsupportedMediaType"


@pytest.mark.parametrize(
    ("patch", "ports", "finalizers"),
    [
        pytest.param(
            {"spec": {"ports": [{"port": 443, "name": "https"}]}},
            [("http", 80), ("https", 443)],
            ["a"],
            id="ports-merge-by-port",
        ),
        pytest.param(
            {"spec": {"ports": [{"port": 80, "name": "web"}]}},
            [("web", 80)],
            ["a"],
            id="same-port-is-updated-in-place",
        ),
        pytest.param(
            {"spec": {"ports": [{"port": 80, "$patch": "delete"}, {"port": 81, "name": "x"}]}},
            [("x", 81)],
            ["a"],
            id="patch-delete-directive",
        ),
        pytest.param(
            {"metadata": {"finalizers": ["b", "a"]}},
            [("http", 80)],
            ["a", "b"],
            id="finalizers-merge-as-a-set",
        ),
        pytest.param(
            {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
            [("http", 80)],
            None,
            id="delete-from-primitive-list",
        ),
    ],
)
async def test_strategic_merge_patch_on_a_service(
    fake_kube: FakeKubeAPI,
    core: client.CoreV1Api,
    patch: dict[str, Any],
    ports: list[tuple[str, int]],
    finalizers: list[str] | None,
) -> None:
    body = service("web")
    body["metadata"]["finalizers"] = ["a"]
    fake_kube.create(body)

    patched = await core.patch_namespaced_service("web", "default", patch)

    sent = fake_kube.requests_to("PATCH")[0]
    assert sent.content_type == "application/strategic-merge-patch+json"
    assert [(p.name, p.port) for p in patched.spec.ports] == ports
    assert patched.metadata.finalizers == finalizers


async def test_json_patch_applies_operations_and_a_failed_test_is_422(
    fake_kube: FakeKubeAPI, custom: client.CustomObjectsApi
) -> None:
    fake_kube.create(checker("web"))
    operations = [
        {"op": "test", "path": "/spec/service", "value": "web"},
        {"op": "replace", "path": "/spec/service", "value": "shop"},
        {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
    ]

    patched = await custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "web", operations
    )
    with pytest.raises(ApiException) as failed:
        await custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "web", operations
        )

    assert patched["spec"] == {"service": "shop"}
    assert patched["metadata"]["labels"] == {"a": "b"}
    assert failed.value.status == 422
    assert fake_kube.get(PLURAL, "default", "web")["spec"] == {"service": "shop"}  # type: ignore[index]


# -- fault hooks -------------------------------------------------------------------------------


async def test_fail_next_fails_the_given_number_of_times(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    fake_kube.create(service("web"))
    fault = fake_kube.fail_next(method="GET", path=r"/services/web$", status=500, times=2)

    for _ in range(2):
        with pytest.raises(ApiException) as failed:
            await core.read_namespaced_service("web", "default")
        assert failed.value.status == 500
        assert status_of(failed.value)["reason"] == "InternalError"
    read = await core.read_namespaced_service("web", "default")

    assert read.metadata.name == "web"
    assert fault.hits == 2


async def test_throttling_carries_retry_after(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    fake_kube.fail_next(method="POST", status=429, retry_after_s=3)

    with pytest.raises(ApiException) as throttled:
        await core.create_namespaced_service("default", service("web"))

    assert throttled.value.status == 429
    assert throttled.value.headers["Retry-After"] == "3"
    assert status_of(throttled.value)["reason"] == "TooManyRequests"
    assert fake_kube.get("services", "default", "web") is None


async def test_held_request_waits_for_its_gate(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    gate = fake_kube.hold(method="POST", path=r"/services$")
    create = asyncio.create_task(core.create_namespaced_service("default", service("web")))

    await gate.arrived.wait()
    assert not create.done()
    assert fake_kube.get("services", "default", "web") is None
    gate.set()
    created = await create

    assert created.metadata.name == "web"


async def test_dropped_connection_surfaces_as_a_client_error(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    fake_kube.drop_next(method="POST")

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await core.create_namespaced_service("default", service("web"))

    created = await core.create_namespaced_service("default", service("web"))
    assert created.metadata.name == "web"


async def test_answers_log_what_was_sent_and_what_the_client_abandoned(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    fake_kube.fail_next(method="POST", status=503)
    with pytest.raises(ApiException):
        await core.create_namespaced_service("default", service("web"))
    gate = fake_kube.hold(method="POST", path=r"/services$")
    create = asyncio.create_task(core.create_namespaced_service("default", service("web")))
    await gate.arrived.wait()
    create.cancel()  # the client gives up: its connection closes while the request is held
    await fake_kube.wait_until(lambda: len(fake_kube.answers) == 2)
    gate.set()

    failed, abandoned = fake_kube.answers
    assert (failed.status, failed.accepted) == (503, False)
    assert (abandoned.status, abandoned.accepted) == (None, False)
    assert abandoned.request is gate.held[0]
    assert failed.request.received_at <= failed.at <= abandoned.request.received_at
    assert fake_kube.get("services", "default", "web") is None


async def test_offline_server_refuses_connections_until_it_is_back_on_the_same_url(
    fake_kube: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    fake_kube.create(service("web"))
    await core.read_namespaced_service("web", "default")  # a kept-alive connection exists
    await fake_kube.go_offline()

    for _ in range(2):  # the kept-alive connection is cut, then new ones are refused
        with pytest.raises(aiohttp.ClientConnectionError):
            await core.read_namespaced_service("web", "default")
    await fake_kube.go_online()

    read = await core.read_namespaced_service("web", "default")
    assert read.metadata.name == "web"


# -- leader election ---------------------------------------------------------------------------


async def test_lease_leader_election_elects_one_candidate(
    fake_kube: FakeKubeAPI, kube_client: ApiClient
) -> None:
    leaders: asyncio.Queue[str] = asyncio.Queue()

    def candidate(identity: str) -> leaderelection.LeaderElection:
        async def lead() -> None:
            leaders.put_nowait(identity)

        async def follow() -> None:
            return None

        lock = LeaseLock("mwm-controller", "default", identity, kube_client)
        config = electionconfig.Config(
            lock,
            lease_duration=3,
            renew_deadline=2,
            retry_period=1,
            onstarted_leading=lead,
            onstopped_leading=follow,
        )
        return leaderelection.LeaderElection(config)

    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(candidate(name).run(), name=f"elect-{name}")
            for name in ("mwm-a", "mwm-b")
        ]
        leader = await asyncio.wait_for(leaders.get(), 5)
        renewal = await fake_kube.wait_for_request(
            lambda r: r.method == "PUT" and "/leases/" in r.path, timeout_s=5
        )
        assert leaders.empty()
        lease = await client.CoordinationV1Api(kube_client).read_namespaced_lease(
            "mwm-controller", "default"
        )
        for task in tasks:
            task.cancel()

    assert lease.spec.holder_identity == leader
    assert renewal.body["spec"]["holderIdentity"] == leader
    assert len(fake_kube.requests_to("POST", r"/leases$")) >= 1
