"""Scoped maintenance and hold-then-fail end to end through the fake Kubernetes API server.

Each test starts ``mwm`` with the Kubernetes source pointed at the fake, changes a
ServiceChecker or an EndpointSlice there, and checks what a user of the public listener sees
(which requests reach the app, which get the page and what it names) and what the controller
wrote to the ServiceChecker's status. Tests wait on store changes, the fake's objects and the
``mwm_held_requests`` gauge's writes, never by sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestServer

from controller.checker import DEFAULT_ENTER_DELAY_S
from controller.store import State
from tests.conftest import RunningProxy
from tests.crd.schema import CONFIG
from tests.holding import App, HeldCount
from tests.kube.clusters import (
    NS,
    Cluster,
    ClusterFactory,
    checker,
    endpoint_slice,
    maintenance_off,
    maintenance_on,
    service,
)
from tests.kube.fakeapi import FakeKubeAPI

SEED = CONFIG / "samples" / "servicechecker_seed.yaml"
AT_ONCE_S = 5.0
"""An answer "at once" comes well before the long hold (60 s) ends."""


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
async def upstream(app: App) -> AsyncIterator[TestServer]:
    """The app behind mwm, recording what reached it (``start_cluster`` starts mwm in front)."""
    server = TestServer(app.application(), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def call(proxy: RunningProxy, method: str, path: str) -> tuple[int, str]:
    """(status, body as text/plain) of a public request."""
    async with proxy.session.request(
        method, f"{proxy.public_url}{path}", headers={"Accept": "text/plain"}
    ) as response:
        return response.status, await response.text()


def ready(name: str, expected: bool) -> Any:
    """A predicate on the state: the service ``name`` has (no) ready endpoints."""

    def check(state: State) -> bool:
        found = state.snapshot.service(NS, name)
        return state.snapshot.synced and found is not None and found.ready is expected

    return check


def scope_is(scope: str) -> Any:
    return lambda status: (status.get("maintenance") or {}).get("scope") == scope


async def started(
    fake: FakeKubeAPI, start_cluster: ClusterFactory, services: list[dict[str, Any]], **spec: Any
) -> Cluster:
    fake.create(checker(services=services, **spec))
    for entry in services:
        fake.create(service(entry["name"]))
        fake.create(endpoint_slice(entry["name"], ready=1))
    cluster = await start_cluster({"MWM_PAGE__SHOW_SERVICES": "true"})
    for entry in services:
        await cluster.wait_for(ready(entry["name"], True))
    return cluster


async def test_a_service_with_routes_losing_its_endpoints_stops_only_its_routes(
    fake: FakeKubeAPI, start_cluster: ClusterFactory, app: App
) -> None:
    payments = {  # not critical: naming routes is what makes it stop them
        "name": "payments",
        "critical": False,
        "routes": [{"pathPrefix": "/checkout", "methods": ["POST"]}],
    }
    cluster = await started(fake, start_cluster, [payments])
    proxy = cluster.proxy

    fake.update(endpoint_slice("payments", ready=0, not_ready=1))
    await cluster.wait_for(ready("payments", False))
    status, body = await call(proxy, "POST", "/checkout/pay")
    assert status == 503
    assert "payments" in body
    assert (await call(proxy, "GET", "/checkout"))[0] == 200
    assert (await call(proxy, "POST", "/cart"))[0] == 200
    assert app.seen == [("GET", "/checkout"), ("POST", "/cart")]

    written = await cluster.wait_for_status(scope_is("Routes"))
    assert written["maintenance"]["active"] is True
    (entry,) = written["serviceStatuses"]
    assert (entry["name"], entry["ready"], entry["affectedRoutes"]) == (
        "payments",
        False,
        ["/checkout"],
    )
    assert written["summary"]["affectedRoutes"] == "/checkout"  # kubectl get -o wide's Routes

    fake.update(endpoint_slice("payments", ready=1))
    await cluster.wait_for(maintenance_off)
    assert (await call(proxy, "POST", "/checkout/pay"))[0] == 200
    assert app.seen[-1] == ("POST", "/checkout/pay")
    written = await cluster.wait_for_status(
        lambda s: (s.get("maintenance") or {}).get("active") is False
    )
    assert written["serviceStatuses"][0]["affectedRoutes"] == []
    assert "affectedRoutes" not in written["summary"]  # the merge patch's null removed it


async def test_read_only_maintenance_on_the_servicechecker(
    fake: FakeKubeAPI, start_cluster: ClusterFactory, app: App
) -> None:
    cluster = await started(fake, start_cluster, [{"name": "api", "critical": True}])
    proxy = cluster.proxy
    fake.patch(
        "servicecheckers",
        NS,
        "shop",
        {"spec": {"maintenance": {"enabled": True, "mode": "readOnly", "reason": "Upgrade"}}},
    )
    await cluster.wait_for(maintenance_on)

    for method in ("GET", "HEAD", "OPTIONS"):
        assert (await call(proxy, method, "/orders"))[0] == 200, method
    for method in ("POST", "PUT", "DELETE"):
        status, body = await call(proxy, method, "/orders")
        assert status == 503, method
        assert "only saving changes is paused" in body
    assert app.seen == [("GET", "/orders"), ("HEAD", "/orders"), ("OPTIONS", "/orders")]
    written = await cluster.wait_for_status(scope_is("ReadOnly"))
    assert written["maintenance"]["active"] is True

    fake.patch("servicecheckers", NS, "shop", {"spec": {"maintenance": {"enabled": False}}})
    await cluster.wait_for(maintenance_off)
    assert (await call(proxy, "POST", "/orders"))[0] == 200


async def test_held_requests_are_released_when_the_endpoints_come_back_in_time(
    fake: FakeKubeAPI, start_cluster: ClusterFactory, app: App
) -> None:
    cluster = await started(
        fake, start_cluster, [{"name": "db", "critical": True, "holdSeconds": 60}]
    )
    proxy = cluster.proxy
    held = HeldCount(proxy)
    fake.update(endpoint_slice("db", ready=0, not_ready=1))
    await cluster.wait_for(ready("db", False))

    paths = [f"/orders/{i}" for i in range(3)]
    sent = []
    for i, path in enumerate(paths):
        sent.append(asyncio.create_task(call(proxy, "POST", path)))
        await held.until(i + 1)
    assert app.seen == []
    fake.update(endpoint_slice("db", ready=1))
    async with asyncio.timeout(AT_ONCE_S):
        answers = await asyncio.gather(*sent)
    assert [status for status, _ in answers] == [200, 200, 200]
    assert app.seen == [("POST", p) for p in paths]
    assert held.value == 0


async def test_the_seed_servicechecker_still_means_whole_site_maintenance(
    fake: FakeKubeAPI, start_cluster: ClusterFactory, app: App
) -> None:
    (seed,) = yaml.safe_load_all(SEED.read_text(encoding="utf-8"))
    seed["metadata"]["namespace"] = NS  # `kubectl apply -n shop`
    (entry,) = seed["spec"]["services"]
    fake.create(seed)
    fake.create(service(entry["name"], entry["namespace"]))
    fake.create(endpoint_slice(entry["name"], ready=1, namespace=entry["namespace"]))
    cluster = await start_cluster()
    await cluster.wait_for(maintenance_off)

    fake.update(endpoint_slice(entry["name"], ready=0, not_ready=1, namespace=entry["namespace"]))
    # The seed sets no enterDelaySeconds: the default (5 s) applies, as it always did.
    state = await cluster.wait_for(maintenance_on, timeout_s=DEFAULT_ENTER_DELAY_S + 5)
    assert state.maintenance.whole_site
    for method, path in (("GET", "/"), ("HEAD", "/about"), ("POST", "/checkout")):
        assert (await call(cluster.proxy, method, path))[0] == 503, (method, path)
    assert app.seen == []
    written = await cluster.wait_for_status(scope_is("Site"), name=seed["metadata"]["name"])
    assert written["serviceStatuses"][0]["affectedRoutes"] == []
    stored = fake.get("servicecheckers", NS, seed["metadata"]["name"])
    assert stored is not None
    assert stored["spec"] == seed["spec"]  # applied unchanged
