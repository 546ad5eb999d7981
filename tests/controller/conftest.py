"""A real HTTP server standing in for a probed app, shared by the probe and source tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Target:
    """A real HTTP server whose health the test flips."""

    server: TestServer
    healthy: bool = True
    hits: int = 0
    """Requests to ``/healthz`` so far."""
    hit: asyncio.Condition = field(default_factory=asyncio.Condition)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    """``/slow`` answers only once this is set."""
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a request reaches ``/slow``."""
    paths: list[str] = field(default_factory=list)

    def url(self, path: str = "/healthz") -> str:
        return str(self.server.make_url(path))

    async def wait_for_hits(self, count: int) -> None:
        async with self.hit:
            await asyncio.wait_for(self.hit.wait_for(lambda: self.hits >= count), 5)


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    holder: list[Target] = []

    async def health(request: web.Request) -> web.Response:
        t = holder[0]
        t.paths.append(request.path)
        async with t.hit:
            t.hits += 1
            t.hit.notify_all()
        return web.Response(text="ok" if t.healthy else "failing", status=200 if t.healthy else 503)

    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=500)

    async def slow(request: web.Request) -> web.Response:
        holder[0].entered.set()
        await holder[0].gate.wait()
        return web.Response(text="late")

    async def redirect(request: web.Request) -> web.Response:
        holder[0].paths.append(request.path)
        raise web.HTTPFound("/login")

    async def login(request: web.Request) -> web.Response:
        holder[0].paths.append(request.path)
        return web.Response(text="login page")

    app = web.Application()
    app.router.add_get("/healthz", health)
    app.router.add_get("/failing", failing)
    app.router.add_get("/slow", slow)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/login", login)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    holder.append(Target(server=server))
    yield holder[0]
    holder[0].gate.set()  # let a parked handler finish so the server closes cleanly
    await server.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """Bound (so nothing else takes it) but not listening: connections are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()
