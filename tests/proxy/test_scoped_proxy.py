"""Scoped maintenance end to end through the running proxy: read-only mode lets reads through
and answers writes with the 503 page; a service with routes stops only its routes, and the
page, ``/status`` and the public status document say which.

Snapshots are published into the proxy's store directly: that is the sources' boundary (the
local file and the ServiceChecker parse into these same snapshots)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from controller.snapshot import ManualSwitch, Mode, Route, ServiceReason, ServiceState, Snapshot
from tests.conftest import ProxyFactory, RunningProxy, echo_app

SINCE = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def service(
    name: str,
    *,
    ready: bool,
    critical: bool = False,
    routes: tuple[Route, ...] = (),
    mode: Mode = Mode.FULL,
) -> ServiceState:
    return ServiceState(
        name=name,
        namespace="shop-internal",
        critical=critical,
        ready_endpoints=3 if ready else 0,
        total_endpoints=3,
        reason=ServiceReason.READY if ready else ServiceReason.NO_READY_ENDPOINTS,
        routes=routes,
        mode=mode,
        last_transition=SINCE,
    )


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    """The suite's echoing upstream (``start_proxy`` needs it; tests/proxy has another)."""
    server = TestServer(echo_app(), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


PAYMENTS_DOWN = service(
    "payments", ready=False, routes=(Route("/checkout", frozenset({"POST", "GET"})),)
)
CART_DB_DOWN = service("cart-db", ready=False, routes=(Route("/cart"),), mode=Mode.READ_ONLY)


async def publish(proxy: RunningProxy, snapshot: Snapshot) -> None:
    generation = proxy.runtime.store.current.generation
    proxy.runtime.store.update(
        lambda current: dataclasses.replace(
            snapshot, synced=True, switches=(*current.switches, *snapshot.switches)
        )
    )
    await proxy.wait_for(lambda state: state.generation > generation)


async def call(proxy: RunningProxy, method: str, path: str, **headers: str) -> tuple[int, str, str]:
    """(status, content type, body) of a public request."""
    async with proxy.session.request(
        method, f"{proxy.public_url}{path}", headers=headers, allow_redirects=False
    ) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def management_status(proxy: RunningProxy) -> dict[str, Any]:
    async with proxy.session.get(f"{proxy.management_url}/status") as response:
        assert response.status == 200
        document: dict[str, Any] = await response.json()
        return document


async def public_status(proxy: RunningProxy) -> dict[str, Any]:
    async with proxy.session.get(f"{proxy.public_url}/_mwm/status") as response:
        assert response.status == 200
        document: dict[str, Any] = await response.json()
        return document


async def test_read_only_switch_lets_reads_pass_and_writes_get_the_page(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    await publish(
        proxy,
        Snapshot(
            switches=(
                ManualSwitch(
                    source="test", enabled=True, reason="Replica swap", mode=Mode.READ_ONLY
                ),
            )
        ),
    )

    for method in ("GET", "HEAD", "OPTIONS"):
        status, _, _ = await call(proxy, method, "/account")
        assert status == 200, method
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        status, content_type, body = await call(proxy, method, "/account", Accept="text/html")
        assert status == 503, method
        assert content_type.startswith("text/html")
        if method != "HEAD":
            assert "only saving changes is paused" in body
    status, content_type, body = await call(
        proxy, "POST", "/account", Accept="application/problem+json"
    )
    assert status == 503
    assert content_type == "application/problem+json"
    assert '"mode": "readOnly"' in body

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await proxy.session.ws_connect(f"{proxy.public_url}/ws")
    assert refused.value.status == 503

    document = await management_status(proxy)
    assert document["maintenance"]["scope"] == "readOnly"
    assert document["maintenance"]["causes"][0]["mode"] == "readOnly"
    assert (await public_status(proxy))["scope"] == "readOnly"


async def test_a_service_with_routes_stops_only_its_routes_and_the_page_names_it(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    await publish(proxy, Snapshot(services=(PAYMENTS_DOWN, CART_DB_DOWN)))

    assert (await call(proxy, "GET", "/"))[0] == 200
    assert (await call(proxy, "GET", "/checkouts"))[0] == 200
    assert (await call(proxy, "DELETE", "/checkout/1"))[0] == 200  # not a listed method
    assert (await call(proxy, "GET", "/cart"))[0] == 200  # the cart is read-only
    status, _, body = await call(proxy, "GET", "/checkout/pay", Accept="text/plain")
    assert status == 503
    assert "A service this part of the site needs is unavailable" in body
    assert "payments" in body
    assert "cart-db" not in body  # the cart's cause does not apply here
    status, _, body = await call(proxy, "POST", "/cart/items", Accept="text/plain")
    assert status == 503
    assert "cart-db" in body
    assert "payments" not in body
    assert "only saving changes is paused" in body

    maintenance = (await management_status(proxy))["maintenance"]
    assert maintenance["scope"] == "routes"
    assert maintenance["affectedRoutes"] == [
        {"pathPrefix": "/checkout", "methods": ["GET", "POST"], "mode": "full",
         "services": ["payments"]},
        {"pathPrefix": "/cart", "methods": [], "mode": "readOnly", "services": ["cart-db"]},
    ]  # fmt: skip
    public = await public_status(proxy)
    assert public["scope"] == "routes"
    assert [r["pathPrefix"] for r in public["routes"]] == ["/checkout", "/cart"]
    assert public["routes"][0]["services"] == ["payments"]  # MWM_PAGE__SHOW_SERVICES is on


async def test_a_whole_site_outage_beats_the_routes(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    await publish(
        proxy, Snapshot(services=(PAYMENTS_DOWN, service("db", ready=False, critical=True)))
    )

    assert (await call(proxy, "GET", "/"))[0] == 503
    status, _, body = await call(proxy, "GET", "/checkout", Accept="text/plain")
    assert status == 503
    assert "payments" in body
    assert "db" in body
    assert (await management_status(proxy))["maintenance"]["scope"] == "site"


async def test_nothing_private_leaks_in_the_public_scope_without_show_services(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({"MWM_PAGE__SHOW_SERVICES": "false"})
    await publish(proxy, Snapshot(services=(PAYMENTS_DOWN, CART_DB_DOWN)))

    async with proxy.session.get(f"{proxy.public_url}/_mwm/status") as response:
        raw = await response.text()
    for private in ("payments", "cart-db", "shop-internal", "NoReadyEndpoints", '"3"'):
        assert private not in raw
    assert "/checkout" in raw  # paths of the public site are public
    _, _, page = await call(proxy, "GET", "/checkout", Accept="application/problem+json")
    assert "payments" not in page
    assert "shop-internal" not in page


async def test_with_show_services_only_names_and_paths_are_public(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({"MWM_PAGE__SHOW_SERVICES": "true"})
    await publish(proxy, Snapshot(services=(PAYMENTS_DOWN,)))

    async with proxy.session.get(f"{proxy.public_url}/_mwm/status") as response:
        raw = await response.text()
    assert "payments" in raw
    for private in ("shop-internal", "NoReadyEndpoints", "readyEndpoints", "totalEndpoints"):
        assert private not in raw
