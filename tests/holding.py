"""Test helpers shared by the hold-then-fail and scoped-maintenance tests: an app that records
what reaches it and whose health the test switches, and a watch on the held-request gauge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from tests.conftest import RunningProxy

AT_ONCE_S = 5.0
"""How long "at once" may take on a loaded machine (a hold or a page that should not wait)."""


class App:
    """The app behind mwm: answers every path, records what reached it, in order, and has a
    ``/healthz/<service>`` per service whose answer the test switches."""

    def __init__(self) -> None:
        self.healthy: dict[str, bool] = {}
        self.seen: list[tuple[str, str]] = []

    def application(self) -> web.Application:
        async def healthz(request: web.Request) -> web.Response:
            healthy = self.healthy.get(request.match_info["name"], True)
            return web.Response(status=200 if healthy else 503)

        async def page(request: web.Request) -> web.Response:
            await request.read()
            self.seen.append((request.method, request.path))
            return web.Response(text=f"app: {request.method} {request.path}")

        application = web.Application()
        application.router.add_get("/healthz/{name}", healthz)
        application.router.add_route("*", "/{tail:.*}", page)
        return application


class HeldCount:
    """The values written to the ``mwm_held_requests`` gauge, passed on to it."""

    def __init__(self, proxy: RunningProxy) -> None:
        services = proxy.runtime.services
        assert services is not None
        metrics = services.metrics
        self._gauge: Callable[[float], None] = metrics.held_requests
        self.value = 0
        self.highest = 0
        self._changed = asyncio.Event()
        metrics.held_requests = self._set  # type: ignore[method-assign]

    def _set(self, value: float) -> None:
        self._gauge(value)
        self.value = int(value)
        self.highest = max(self.highest, self.value)
        self._changed.set()
        self._changed = asyncio.Event()

    async def until(self, value: int, *, timeout_s: float = AT_ONCE_S) -> None:
        async with asyncio.timeout(timeout_s):
            while self.value != value:
                await self._changed.wait()
