"""Promise: scoped maintenance and hold-then-fail work end to end through the local file.

The proxy reads ``MWM_SOURCE__LOCAL__FILE`` and probes each service over HTTP against the app's
``/healthz/<name>``, whose answer the test switches; nothing is published into the store by
hand. What a user of the public listener sees:

- ``maintenance: {enabled: true, mode: readOnly}``: reads reach the app, writes and websocket
  upgrades get the 503 page saying writes are paused; editing the file to ``mode: full`` blocks
  the reads too, live;
- a service with ``routes`` whose probe fails: only its routes get the page, naming it; the rest
  is served; when the probe passes again the routes are served;
- a ``mode: readOnly`` service down: writes get the page, reads pass;
- ``holdSeconds``: requests sent while a critical service has just gone down are held and reach
  the app, in order, when its probe passes again in time; past the hold they get the page;
- ``/status``, ``/_mwm/status`` and ``mwm status`` say which routes are affected.

Tests wait on store changes and on the ``mwm_held_requests`` gauge's writes, never by sleeping;
probes run every 20 ms.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from controller.store import State
from proxy.cli import main as cli_main
from tests.conftest import ProxyFactory, RunningProxy
from tests.holding import AT_ONCE_S, App, HeldCount

PROBE = "intervalSeconds: 0.02, timeoutSeconds: 1, failureThreshold: 1, successThreshold: 1"


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
async def upstream(app: App) -> AsyncIterator[TestServer]:
    server = TestServer(app.application(), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def probed(upstream: TestServer, name: str, fields: str = "") -> str:
    """One service entry of the state file, probed at the app's ``/healthz/<name>``."""
    url = upstream.make_url(f"/healthz/{name}")
    return (
        f"    - name: {name}\n"
        f"      probe: {{http: {{url: '{url}', expectStatus: [200]}}, {PROBE}}}\n"
        + "".join(f"      {line}\n" for line in fields.splitlines() if line)
    )


async def started(
    start_proxy: ProxyFactory, tmp_path: Path, body: str, **env: str
) -> tuple[RunningProxy, Path]:
    path = tmp_path / "mwm.yaml"
    path.write_text(body)
    proxy = await start_proxy(
        {
            "MWM_SOURCE__LOCAL__FILE": str(path),
            "MWM_SOURCE__LOCAL__RELOAD_INTERVAL_S": "0.02",
            "MWM_PAGE__SHOW_SERVICES": "true",
            **env,
        }
    )
    await proxy.wait_for(lambda state: state.snapshot.synced)
    return proxy, path


def ready(name: str, expected: bool) -> Any:
    """A predicate on the state: the service ``name`` is (not) ready."""

    def check(state: State) -> bool:
        found = [s for s in state.snapshot.services if s.name == name]
        return bool(found) and found[0].ready is expected

    return check


async def call(proxy: RunningProxy, method: str, path: str, **headers: str) -> tuple[int, str]:
    """(status, body) of a public request."""
    async with proxy.session.request(
        method, f"{proxy.public_url}{path}", headers=headers, allow_redirects=False
    ) as response:
        return response.status, await response.text()


async def json_of(proxy: RunningProxy, url: str) -> dict[str, Any]:
    async with proxy.session.get(url) as response:
        assert response.status == 200
        document: dict[str, Any] = await response.json()
        return document


def _cli(*args: str) -> int:
    return cli_main(list(args))


async def test_read_only_switch_from_the_file_and_an_edit_to_full(
    start_proxy: ProxyFactory, app: App, tmp_path: Path
) -> None:
    proxy, path = await started(
        start_proxy,
        tmp_path,
        "spec:\n  maintenance: {enabled: true, mode: readOnly, reason: Promoting the replica}\n",
    )
    await proxy.wait_for(lambda state: state.maintenance.active)

    for method in ("GET", "HEAD", "OPTIONS"):
        assert (await call(proxy, method, "/account"))[0] == 200, method
    assert app.seen == [("GET", "/account"), ("HEAD", "/account"), ("OPTIONS", "/account")]
    for method in ("POST", "PUT", "DELETE"):
        status, body = await call(proxy, method, "/account", Accept="text/plain")
        assert status == 503, method
        assert "only saving changes is paused" in body
        assert "Promoting the replica" in body
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await proxy.session.ws_connect(f"{proxy.public_url}/live")
    assert refused.value.status == 503
    assert len(app.seen) == 3  # no write, no upgrade reached the app

    path.write_text("spec:\n  maintenance: {enabled: true, mode: full, reason: Upgrade}\n")
    await proxy.wait_for(lambda state: state.maintenance.whole_site)
    status, body = await call(proxy, "GET", "/account", Accept="text/plain")
    assert status == 503
    assert "only saving changes is paused" not in body
    assert len(app.seen) == 3


async def test_a_service_with_routes_stops_only_its_routes_while_its_probe_fails(
    start_proxy: ProxyFactory,
    upstream: TestServer,
    app: App,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy, _ = await started(
        start_proxy,
        tmp_path,
        "spec:\n  services:\n"
        + probed(
            upstream,
            "payments",
            "critical: true\nroutes: [{pathPrefix: /checkout, methods: [POST]}]",
        ),
    )
    await proxy.wait_for(ready("payments", True))
    assert (await call(proxy, "POST", "/checkout/pay"))[0] == 200

    app.healthy["payments"] = False
    await proxy.wait_for(ready("payments", False))
    status, body = await call(proxy, "POST", "/checkout/pay", Accept="text/plain")
    assert status == 503
    assert "payments" in body
    assert (await call(proxy, "GET", "/checkout"))[0] == 200
    assert (await call(proxy, "POST", "/cart"))[0] == 200
    assert (await call(proxy, "POST", "/checkouts"))[0] == 200  # segment-wise, not a prefix
    assert app.seen[-3:] == [("GET", "/checkout"), ("POST", "/cart"), ("POST", "/checkouts")]

    # Every status document says which routes are affected.
    maintenance = (await json_of(proxy, f"{proxy.management_url}/status"))["maintenance"]
    assert maintenance["scope"] == "routes"
    assert maintenance["affectedRoutes"] == [
        {"pathPrefix": "/checkout", "methods": ["POST"], "mode": "full", "services": ["payments"]}
    ]
    public = await json_of(proxy, f"{proxy.public_url}/_mwm/status")
    assert public["active"] is True
    assert public["scope"] == "routes"
    assert public["routes"] == [
        {"pathPrefix": "/checkout", "methods": ["POST"], "mode": "full", "services": ["payments"]}
    ]
    capsys.readouterr()
    assert await asyncio.to_thread(_cli, "status", "--url", proxy.management_url) == 0
    printed = capsys.readouterr().out
    assert "maintenance: ON" in printed
    assert "scope: only these routes: /checkout (POST)" in printed

    app.healthy["payments"] = True
    await proxy.wait_for(ready("payments", True))
    assert (await call(proxy, "POST", "/checkout"))[0] == 200
    assert app.seen[-1] == ("POST", "/checkout")
    assert (await json_of(proxy, f"{proxy.public_url}/_mwm/status"))["active"] is False


async def test_a_read_only_service_down_stops_writes_only(
    start_proxy: ProxyFactory, upstream: TestServer, app: App, tmp_path: Path
) -> None:
    proxy, _ = await started(
        start_proxy,
        tmp_path,
        "spec:\n  services:\n" + probed(upstream, "db-primary", "critical: true\nmode: readOnly"),
    )
    await proxy.wait_for(ready("db-primary", True))
    app.healthy["db-primary"] = False
    await proxy.wait_for(ready("db-primary", False))

    for method in ("GET", "HEAD", "OPTIONS"):
        assert (await call(proxy, method, "/orders"))[0] == 200, method
    for method in ("POST", "PUT", "DELETE"):
        status, body = await call(proxy, method, "/orders", Accept="text/plain")
        assert status == 503, method
        assert "only saving changes is paused" in body
        assert "db-primary" in body
    assert app.seen == [("GET", "/orders"), ("HEAD", "/orders"), ("OPTIONS", "/orders")]
    maintenance = (await json_of(proxy, f"{proxy.management_url}/status"))["maintenance"]
    assert maintenance["scope"] == "readOnly"

    app.healthy["db-primary"] = True
    await proxy.wait_for(lambda state: not state.maintenance.active)
    assert (await call(proxy, "POST", "/orders"))[0] == 200


async def taken_down(
    start_proxy: ProxyFactory,
    upstream: TestServer,
    app: App,
    tmp_path: Path,
    name: str,
    fields: str,
) -> tuple[RunningProxy, HeldCount]:
    """mwm probing the one service ``name`` (``fields`` added to its entry), seen ready, then
    its probe failing and the service seen down; with a watch on the held count."""
    proxy, _ = await started(
        start_proxy, tmp_path, "spec:\n  services:\n" + probed(upstream, name, fields)
    )
    held = HeldCount(proxy)
    await proxy.wait_for(ready(name, True))
    app.healthy[name] = False
    await proxy.wait_for(ready(name, False))
    return proxy, held


async def held_ones(
    proxy: RunningProxy, held: HeldCount, paths: list[str]
) -> list[asyncio.Task[tuple[int, str]]]:
    """Send a request to each of ``paths``, one after the other once the previous is held."""
    sent = []
    for i, path in enumerate(paths):
        sent.append(asyncio.create_task(call(proxy, "POST", path, Accept="text/plain")))
        await held.until(i + 1)
    return sent


async def test_held_requests_reach_the_app_in_order_when_the_probe_passes_in_time(
    start_proxy: ProxyFactory, upstream: TestServer, app: App, tmp_path: Path
) -> None:
    proxy, held = await taken_down(
        start_proxy, upstream, app, tmp_path, "db", "critical: true\nholdSeconds: 60"
    )

    paths = [f"/orders/{i}" for i in range(5)]
    sent = await held_ones(proxy, held, paths)
    assert app.seen == []  # nothing reached the app while held
    app.healthy["db"] = True
    async with asyncio.timeout(AT_ONCE_S):
        answers = await asyncio.gather(*sent)
    assert [status for status, _ in answers] == [200] * 5
    assert app.seen == [("POST", p) for p in paths]
    assert held.value == 0


async def test_held_requests_get_the_page_when_the_probe_still_fails_at_the_deadline(
    start_proxy: ProxyFactory, upstream: TestServer, app: App, tmp_path: Path
) -> None:
    proxy, held = await taken_down(
        start_proxy, upstream, app, tmp_path, "db", "critical: true\nholdSeconds: 1"
    )

    sent = await held_ones(proxy, held, ["/orders/1", "/orders/2"])
    async with asyncio.timeout(AT_ONCE_S):
        answers = await asyncio.gather(*sent)
    assert [status for status, _ in answers] == [503, 503]
    assert all("db" in body for _, body in answers)
    assert app.seen == []
    assert (held.highest, held.value) == (2, 0)
    # Past the hold, a new request gets the page at once.
    async with asyncio.timeout(AT_ONCE_S):
        assert (await call(proxy, "POST", "/orders/3"))[0] == 503
    assert held.highest == 2


async def test_a_service_with_routes_holds_only_its_routes(
    start_proxy: ProxyFactory, upstream: TestServer, app: App, tmp_path: Path
) -> None:
    proxy, held = await taken_down(
        start_proxy,
        upstream,
        app,
        tmp_path,
        "payments",
        "critical: true\nroutes: [{pathPrefix: /checkout, methods: [POST]}]\nholdSeconds: 60",
    )

    (paying,) = await held_ones(proxy, held, ["/checkout/pay"])
    async with asyncio.timeout(AT_ONCE_S):  # the rest of the site is not held
        assert (await call(proxy, "GET", "/checkout"))[0] == 200
        assert (await call(proxy, "POST", "/cart"))[0] == 200
    assert held.value == 1
    app.healthy["payments"] = True
    async with asyncio.timeout(AT_ONCE_S):
        assert (await paying)[0] == 200
    assert app.seen == [("GET", "/checkout"), ("POST", "/cart"), ("POST", "/checkout/pay")]
