"""Hold-then-fail through a running proxy: a request that would get the page because a
critical service has just gone down waits for it, and reaches the app if it comes back in
time, else gets the page.

The state is published into the runtime's store (the source boundary); the held count is
read from the ``mwm_held_requests`` gauge's writes (every write still reaches the gauge),
so a test waits on the moment a request is held instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from controller.snapshot import ManualSwitch, ServiceReason, ServiceState, Snapshot
from proxy.hold import hold_deadline
from tests.conftest import BYPASS_TOKEN, ProxyFactory, RunningProxy
from tests.holding import AT_ONCE_S, HeldCount

LONG_HOLD_S = 60.0


class App:
    """What the upstream app received, in order."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.bodies: list[bytes] = []


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
async def upstream(app: App) -> AsyncIterator[TestServer]:
    async def answer(request: web.Request) -> web.Response:
        app.paths.append(request.path)
        body = await request.read()
        app.bodies.append(body)
        return web.json_response({"path": request.path, "size": len(body)})

    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", answer)
    server = TestServer(application, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def service(
    *,
    ready: bool,
    since: datetime | None = None,
    hold_s: float | None = None,
    name: str = "db",
) -> ServiceState:
    return ServiceState(
        name=name,
        namespace="shop",
        critical=True,
        ready_endpoints=1 if ready else 0,
        total_endpoints=1,
        reason=ServiceReason.READY if ready else ServiceReason.NO_READY_ENDPOINTS,
        last_transition=since or datetime.now(UTC),
        hold_seconds=hold_s,
    )


def publish(proxy: RunningProxy, *services: ServiceState) -> None:
    proxy.runtime.store.publish(Snapshot(services=services, synced=True))


def went_down(proxy: RunningProxy, *, hold_s: float | None = LONG_HOLD_S, ago_s: float = 0) -> None:
    since = datetime.now(UTC) - timedelta(seconds=ago_s)
    publish(proxy, service(ready=False, since=since, hold_s=hold_s))


def came_back(proxy: RunningProxy) -> None:
    publish(proxy, service(ready=True))


async def started(
    start_proxy: ProxyFactory, env: dict[str, str] | None = None
) -> tuple[RunningProxy, HeldCount]:
    proxy = await start_proxy(env)
    return proxy, HeldCount(proxy)


async def fetch(proxy: RunningProxy, path: str, **options: Any) -> tuple[int, bytes]:
    method = options.pop("method", "GET")
    async with proxy.session.request(method, proxy.public_url + path, **options) as response:
        return response.status, await response.read()


async def at_once(proxy: RunningProxy, path: str, **options: Any) -> tuple[int, bytes]:
    async with asyncio.timeout(AT_ONCE_S):
        return await fetch(proxy, path, **options)


async def outcomes(proxy: RunningProxy) -> dict[str, float]:
    async with proxy.session.get(proxy.management_url + "/metrics") as response:
        text = await response.text()
    counted: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mwm_hold_outcomes_total":
                counted[sample.labels["outcome"]] = sample.value
            elif sample.name == "mwm_held_requests":
                counted["held"] = sample.value
    return counted


async def test_held_requests_reach_the_app_in_arrival_order_when_it_comes_back(
    start_proxy: ProxyFactory, app: App
) -> None:
    # No holdSeconds on the service: the global setting decides.
    proxy, held = await started(start_proxy, {"MWM_HOLD__SECONDS": "60"})
    went_down(proxy, hold_s=None)
    requests = []
    for i in range(5):
        requests.append(asyncio.create_task(fetch(proxy, f"/order/{i}")))
        await held.until(i + 1)
    assert app.paths == []
    came_back(proxy)
    async with asyncio.timeout(AT_ONCE_S):
        answers = await asyncio.gather(*requests)
    assert [status for status, _ in answers] == [200] * 5
    assert app.paths == [f"/order/{i}" for i in range(5)]
    await held.until(0)
    counted = await outcomes(proxy)
    assert counted["released"] == 5
    assert counted["held"] == 0


async def test_a_held_request_keeps_its_body_and_gets_it_forwarded(
    start_proxy: ProxyFactory, app: App
) -> None:
    proxy, held = await started(start_proxy)
    went_down(proxy)
    posted = asyncio.create_task(fetch(proxy, "/save", method="POST", data=b"x" * 1000))
    await held.until(1)
    came_back(proxy)
    status, _ = await posted
    assert status == 200
    assert app.bodies == [b"x" * 1000]


async def test_the_page_comes_at_the_deadline_counted_from_when_the_service_went_down(
    start_proxy: ProxyFactory, app: App
) -> None:
    proxy, held = await started(start_proxy)
    # Down for 3 s already, held for 4 s: 1 s left (4 s if counted from the request).
    went_down(proxy, hold_s=4, ago_s=3)
    began = time.monotonic()
    status, _ = await fetch(proxy, "/late")
    waited = time.monotonic() - began
    assert status == 503
    assert 0.7 <= waited < 3.0
    assert app.paths == []
    assert held.highest == 1
    assert held.value == 0
    counted = await outcomes(proxy)
    assert counted["failed"] == 1
    # Past its hold window, the page comes at once.
    status, _ = await at_once(proxy, "/later")
    assert status == 503


async def test_no_hold_configured_means_the_page_at_once(start_proxy: ProxyFactory) -> None:
    proxy, held = await started(start_proxy)  # MWM_HOLD__SECONDS defaults to 0
    went_down(proxy, hold_s=None)
    status, _ = await at_once(proxy, "/")
    assert status == 503
    assert held.highest == 0
    went_down(proxy, hold_s=0)
    status, _ = await at_once(proxy, "/")
    assert status == 503
    assert held.highest == 0


async def test_the_held_count_never_passes_the_limit_under_a_burst(
    start_proxy: ProxyFactory, app: App
) -> None:
    limit, burst = 50, 2000
    proxy, held = await started(start_proxy, {"MWM_HOLD__MAX_REQUESTS": str(limit)})
    went_down(proxy)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def one(i: int) -> int:
            async with client.get(f"{proxy.public_url}/burst/{i}") as response:
                await response.read()
                return response.status

        tasks = [asyncio.create_task(one(i)) for i in range(burst)]
        await held.until(limit, timeout_s=30)
        # The overflow gets the page at once, while the held ones still wait.
        async with asyncio.timeout(30):
            while sum(t.done() for t in tasks) < burst - limit:
                await asyncio.wait(
                    [t for t in tasks if not t.done()], return_when="FIRST_COMPLETED"
                )
        assert [t.result() for t in tasks if t.done()] == [503] * (burst - limit)
        assert held.value == limit
        assert app.paths == []
        came_back(proxy)
        async with asyncio.timeout(30):
            statuses = await asyncio.gather(*tasks)
    assert statuses.count(200) == limit
    assert statuses.count(503) == burst - limit
    assert len(app.paths) == limit
    assert held.highest == limit
    counted = await outcomes(proxy)
    assert counted["rejected"] == burst - limit
    assert counted["released"] == limit


async def test_a_client_that_gives_up_while_held_costs_nothing_after(
    start_proxy: ProxyFactory, app: App
) -> None:
    proxy, held = await started(start_proxy, {"MWM_HOLD__MAX_REQUESTS": "1"})
    went_down(proxy)
    _, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    writer.write(b"GET /gone HTTP/1.1\r\nHost: shop.example\r\n\r\n")
    await held.until(1)
    writer.close()
    await writer.wait_closed()
    await held.until(0)  # its slot is free at once, not at the deadline
    assert (await outcomes(proxy))["gone"] == 1
    # The one slot is taken again by the next request, which is held, not refused.
    following = asyncio.create_task(fetch(proxy, "/next"))
    await held.until(1)
    came_back(proxy)
    status, _ = await following
    assert status == 200
    assert app.paths == ["/next"]  # nothing was forwarded for the client that left
    counted = await outcomes(proxy)
    assert counted["gone"] == 1
    assert counted["released"] == 1
    assert "rejected" not in counted


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_large_or_chunked_body_gets_the_page_at_once(
    start_proxy: ProxyFactory, app: App, chunked: bool
) -> None:
    proxy, held = await started(start_proxy, {"MWM_HOLD__MAX_BODY_BYTES": "1000"})
    went_down(proxy)
    if chunked:

        async def body() -> AsyncIterator[bytes]:
            yield b"x" * 10

        data: Any = body()
    else:
        data = b"x" * 1001
    status, _ = await at_once(proxy, "/upload", method="POST", data=data)
    assert status == 503
    assert held.highest == 0
    assert app.paths == []
    assert (await outcomes(proxy))["rejected"] == 1


async def test_a_manual_switch_is_never_held(start_proxy: ProxyFactory, app: App) -> None:
    proxy, held = await started(start_proxy)
    store = proxy.runtime.store
    store.set_switch(ManualSwitch(source="admin", enabled=True, reason="Upgrade"))
    status, _ = await at_once(proxy, "/")
    assert status == 503
    # A service down within its hold time does not hold a request the switch blocks too.
    store.update(
        lambda s: Snapshot(services=(service(ready=False, hold_s=60),), switches=s.switches)
    )
    status, _ = await at_once(proxy, "/")
    assert status == 503
    assert held.highest == 0
    assert app.paths == []


async def test_a_held_request_gets_the_page_when_a_switch_comes_on(
    start_proxy: ProxyFactory, app: App
) -> None:
    proxy, held = await started(start_proxy)
    went_down(proxy)
    waiting = asyncio.create_task(fetch(proxy, "/"))
    await held.until(1)
    proxy.runtime.store.set_switch(ManualSwitch(source="admin", enabled=True))
    async with asyncio.timeout(AT_ONCE_S):
        status, _ = await waiting
    assert status == 503
    assert app.paths == []
    assert (await outcomes(proxy))["failed"] == 1


async def test_bypass_is_not_held(start_proxy: ProxyFactory, app: App) -> None:
    proxy, held = await started(start_proxy)
    went_down(proxy)
    status, _ = await at_once(proxy, "/", headers={"X-Maintenance-Bypass": BYPASS_TOKEN})
    assert status == 200
    status, _ = await at_once(proxy, "/admin/users")
    assert status == 200
    assert held.highest == 0
    assert app.paths == ["/", "/admin/users"]


def test_hold_deadline_is_the_earliest_of_the_down_services() -> None:
    from controller.snapshot import Cause, CauseKind

    now = datetime(2026, 1, 1, tzinfo=UTC)
    db = service(ready=False, since=now, hold_s=10, name="db")
    cache = service(ready=False, since=now + timedelta(seconds=2), hold_s=5, name="cache")
    down = Cause(kind=CauseKind.SERVICE_DOWN, reason="down", services=("db", "cache"))
    assert hold_deadline([down], [db, cache], default_s=0) == now + timedelta(seconds=7)
    manual = Cause(kind=CauseKind.MANUAL, reason="on")
    assert hold_deadline([down, manual], [db, cache], default_s=0) is None
    unheld = service(ready=False, since=now, hold_s=None, name="cache")
    assert hold_deadline([down], [db, unheld], default_s=0) is None
    assert hold_deadline([down], [db, unheld], default_s=1) == now + timedelta(seconds=1)
    unknown_since = ServiceState(
        name="cache",
        namespace="shop",
        critical=True,
        ready_endpoints=0,
        total_endpoints=1,
        reason=ServiceReason.NO_READY_ENDPOINTS,
        hold_seconds=30,
    )
    assert hold_deadline([down], [db, unknown_since], default_s=0) is None


async def test_held_requests_get_the_page_at_once_on_shutdown(
    start_proxy: ProxyFactory, app: App
) -> None:
    proxy, held = await started(start_proxy)
    went_down(proxy)
    waiting = asyncio.create_task(fetch(proxy, "/"))
    await held.until(1)
    proxy.runtime.request_stop()
    async with asyncio.timeout(AT_ONCE_S):  # not at the end of its 60 s hold
        status, _ = await waiting
    assert status == 503
    assert app.paths == []
