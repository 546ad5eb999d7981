"""The harness's floor proxy (``bench.floor_proxy``) relays what a reverse proxy must: a
measuring stick that answered differently from mwm would measure something else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.floor_proxy import start
from bench.naive_page import BODY as PAGE_BODY


async def test_the_floor_proxy_relays_requests_on_kept_alive_connections(
    aiohttp_server: Callable[..., Any],
) -> None:
    seen: list[dict[str, str]] = []

    async def page(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text=f"path {request.path_qs}", headers={"X-Upstream": "yes"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    upstream: TestServer = await aiohttp_server(app)
    server = await start(host="127.0.0.1", port=0, upstream=str(upstream.make_url("/")))
    port = server.sockets[0].getsockname()[1]
    try:
        connector = aiohttp.TCPConnector(limit=1)  # one client connection, kept alive
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(
                f"http://127.0.0.1:{port}/a?b=1",
                headers={"Keep-Alive": "timeout=5", "X-Forwarded-For": "203.0.113.9"},
            ) as response:
                assert response.status == 200
                assert response.headers["X-Upstream"] == "yes"
                assert await response.text() == "path /a?b=1"
            async with session.get(f"http://127.0.0.1:{port}/second") as response:
                assert await response.text() == "path /second"
    finally:
        server.close()
        await server.wait_closed()
    relayed = seen[0]
    assert relayed["X-Forwarded-For"] == "127.0.0.1"  # the peer; the client's forged one dropped
    assert relayed["X-Forwarded-Proto"] == "http"
    assert "Keep-Alive" not in relayed  # hop-by-hop
    assert relayed["Host"] == f"127.0.0.1:{port}"
    assert len(seen) == 2


async def test_the_page_floor_answers_every_request_with_the_503_page() -> None:
    server = await start(host="127.0.0.1", port=0, upstream=None)
    port = server.sockets[0].getsockname()[1]
    try:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            for path in ("/", "/checkout?x=1"):
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    assert response.status == 503
                    assert await response.read() == PAGE_BODY
                    assert response.headers["Retry-After"] == "300"
                    assert response.headers["Cache-Control"] == "no-store"
                    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
                    assert response.headers["Date"].endswith(" GMT")
    finally:
        server.close()
        await server.wait_closed()
