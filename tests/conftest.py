"""Fixtures shared by the whole suite: a real upstream app and a running mwm."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from controller.store import State

if TYPE_CHECKING:
    from proxy.runtime import Runtime
from proxy.settings import Settings, load_settings

ADMIN_TOKEN = "admin-token-for-tests"
BYPASS_TOKEN = "bypass-token-for-tests"


@dataclass
class RunningProxy:
    runtime: Runtime
    public_url: str
    management_url: str
    session: aiohttp.ClientSession

    @property
    def public_port(self) -> int:
        """The public listener's port, for raw-socket clients."""
        assert self.runtime.ports is not None
        return self.runtime.ports.public

    @property
    def management_port(self) -> int:
        assert self.runtime.ports is not None
        return self.runtime.ports.management

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def switch(self, **body: Any) -> None:
        async with self.session.put(
            f"{self.management_url}/api/maintenance", json=body, headers=self.admin_headers
        ) as response:
            assert response.status == 200, await response.text()

    async def wait_for(self, predicate: Callable[[State], bool], *, timeout_s: float = 5) -> State:
        """Wait (on store change events, never by sleeping) until ``predicate`` holds."""
        store = self.runtime.store

        async def until() -> State:
            state = store.current
            while not predicate(state):
                state = await store.wait_for_change(state.generation)
            return state

        return await asyncio.wait_for(until(), timeout_s)


def echo_app() -> web.Application:
    """A small real upstream: echoes what it received as JSON."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.raw_path,
                "headers": [[k, v] for k, v in request.headers.items()],
                "body": body.decode(errors="replace"),
            },
            headers={"Cache-Control": "public, max-age=60"},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


ProxyFactory = Callable[..., Awaitable[RunningProxy]]


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    server = TestServer(echo_app(), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def proxy_settings(upstream_url: str, env: Mapping[str, str] | None = None) -> Settings:
    base = {
        "MWM_UPSTREAM__URL": upstream_url,
        "MWM_LISTEN__PUBLIC_HOST": "127.0.0.1",
        "MWM_LISTEN__PUBLIC_PORT": "0",
        "MWM_LISTEN__MANAGEMENT_HOST": "127.0.0.1",
        "MWM_LISTEN__MANAGEMENT_PORT": "0",
        "MWM_MANAGEMENT__ADMIN_TOKEN": ADMIN_TOKEN,
        "MWM_BYPASS__TOKEN": BYPASS_TOKEN,
        "MWM_SHUTDOWN__DRAIN_TIMEOUT_S": "5",
    }
    base.update(env or {})
    return load_settings(base)


@pytest.fixture
def public_server() -> str:
    """What serves the public listener's requests in ``start_proxy``'s mwm: ``fast-lane``
    (the default: :mod:`proxy.fastlane`, handing what it does not serve to aiohttp's
    server) or ``aiohttp-server`` (``MWM_LISTEN__FAST_LANE=false``, as with the access log
    on).  The promise tests run with both."""
    return "fast-lane"


@pytest.fixture
async def start_proxy(upstream: TestServer, public_server: str) -> AsyncIterator[ProxyFactory]:
    """Start mwm in this event loop in front of ``upstream``; stopped after the test."""
    from proxy.runtime import Runtime

    started: list[tuple[Runtime, asyncio.Task[None]]] = []
    session = aiohttp.ClientSession(auto_decompress=False)
    server_env = {"MWM_LISTEN__FAST_LANE": "false"} if public_server == "aiohttp-server" else {}

    async def start(env: Mapping[str, str] | None = None) -> RunningProxy:
        env = {**server_env, **(env or {})}
        settings = proxy_settings(str(upstream.make_url("/")).rstrip("/"), env)
        runtime = Runtime(settings)
        task = asyncio.create_task(runtime.run(), name="mwm-under-test")
        started.append((runtime, task))
        ready = asyncio.create_task(runtime.started.wait())
        done, _ = await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            task.result()  # raises the start-up error
        assert runtime.ports is not None
        return RunningProxy(
            runtime=runtime,
            public_url=f"http://127.0.0.1:{runtime.ports.public}",
            management_url=f"http://127.0.0.1:{runtime.ports.management}",
            session=session,
        )

    yield start
    for runtime, task in started:
        runtime.request_stop()
        await asyncio.wait_for(task, 10)
    await session.close()
