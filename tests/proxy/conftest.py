"""Fixtures for proxy tests: a real upstream server and a real proxy app in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from proxy.forwarding import Forwarder
from proxy.settings import UpstreamSettings
from tests.proxy.upstream import Upstream, start_upstream


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """A started upstream server (see :mod:`tests.proxy.upstream`)."""
    server = await start_upstream()
    yield server
    await server.close()


@dataclass
class ForwardingProxy:
    """A running app whose only handler forwards every request with a Forwarder."""

    server: TestServer
    forwarder: Forwarder
    errors: list[tuple[int, str]] = field(default_factory=list)
    """``(status, reason)`` for every call of the error responder."""


MakeForwardingProxy = Callable[..., Awaitable[ForwardingProxy]]


@pytest.fixture
def make_forwarding_proxy(upstream: Upstream, aiohttp_server: AiohttpServer) -> MakeForwardingProxy:
    """Start a proxy in front of ``upstream`` (or ``upstream_url``).

    Keyword arguments: ``trusted_hops`` (default 0), ``private`` (passed to every forward),
    ``upstream_url`` and any :class:`UpstreamSettings` field.
    """

    async def make(
        *,
        trusted_hops: int = 0,
        private: bool = False,
        upstream_url: str | None = None,
        **settings: Any,
    ) -> ForwardingProxy:
        upstream_settings = UpstreamSettings(url=upstream_url or upstream.url, **settings)
        errors: list[tuple[int, str]] = []

        def on_error(request: web.Request, status: int, reason: str) -> web.StreamResponse:
            errors.append((status, reason))
            return web.Response(status=status, text=f"proxy error {status}: {reason}")

        forwarder = Forwarder(upstream_settings, trusted_hops=trusted_hops, on_error=on_error)

        async def lifecycle(app: web.Application) -> AsyncIterator[None]:
            await forwarder.start()
            yield
            await forwarder.close()

        async def handler(request: web.Request) -> web.StreamResponse:
            path = request.raw_path.split("?")[0]
            return await forwarder.forward(request, path=path, private=private)

        app = web.Application()
        app.cleanup_ctx.append(lifecycle)
        app.router.add_route("*", "/{tail:.*}", handler)
        server = await aiohttp_server(app, shutdown_timeout=2.0)
        return ForwardingProxy(server=server, forwarder=forwarder, errors=errors)

    return make
