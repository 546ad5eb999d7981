"""Websockets through the proxy: frames both ways, subprotocols, close codes, refusals."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from tests.proxy.conftest import ForwardingProxy, MakeForwardingProxy
from tests.proxy.upstream import Upstream

CLOSE_TIMEOUT_S = 10


async def _client(aiohttp_client: AiohttpClient, proxy: ForwardingProxy) -> TestClient[Any, Any]:
    return await aiohttp_client(proxy.server)


async def test_text_and_binary_frames_flow_both_ways_with_the_negotiated_protocol(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.ws_connect(
        "/ws", protocols=("unknown", "chat.v2"), origin="https://shop.example.com"
    ) as ws:
        assert ws.protocol == "chat.v2"
        await ws.send_str("héllo")
        assert await ws.receive_str() == "héllo"
        await ws.send_bytes(b"\x00\x01\xfe\xff")
        assert await ws.receive_bytes() == b"\x00\x01\xfe\xff"
        big = bytes(range(256)) * 1024
        await ws.send_bytes(big)
        assert await ws.receive_bytes() == big

    assert proxy.errors == []
    handshake = upstream.requests[-1].headers
    assert handshake["Origin"] == "https://shop.example.com"
    assert handshake["X-Forwarded-For"] == "127.0.0.1"
    assert handshake["Sec-WebSocket-Protocol"] == "unknown,chat.v2"


async def test_no_protocol_is_claimed_when_the_upstream_picks_none(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.ws_connect("/ws", protocols=("other",)) as ws:
        assert ws.protocol is None
        await ws.send_str("still works")
        assert await ws.receive_str() == "still works"


async def test_pings_reach_the_upstream_and_its_pongs_come_back(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.ws_connect("/ws", autoping=False) as ws:
        await ws.ping(b"are you there")
        message = await ws.receive()

    assert (message.type, message.data) == (WSMsgType.PONG, b"are you there")


async def test_a_client_close_code_reaches_the_upstream(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    ws = await client.ws_connect("/ws")
    await ws.send_str("ping")
    assert await ws.receive_str() == "ping"
    await ws.close(code=4001, message=b"client bye")
    await asyncio.wait_for(upstream.ws_closed.wait(), CLOSE_TIMEOUT_S)

    assert upstream.ws_close_codes == [4001]
    assert ws.closed


async def test_an_upstream_close_code_reaches_the_client(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.ws_connect("/ws") as ws:
        await ws.send_str("close:4002")
        message = await ws.receive()

        assert (message.type, message.data, message.extra) == (
            WSMsgType.CLOSE,
            4002,
            "upstream bye",
        )
    assert ws.close_code == 4002
    await asyncio.wait_for(upstream.ws_closed.wait(), CLOSE_TIMEOUT_S)  # got the reply


async def test_an_upstream_vanishing_closes_the_client_with_bad_gateway(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.ws_connect("/ws") as ws:
        await ws.send_str("drop")
        message = await ws.receive()

    assert (message.type, message.data) == (WSMsgType.CLOSE, aiohttp.WSCloseCode.BAD_GATEWAY)


async def test_a_message_over_the_limit_closes_both_sides(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    proxy = await make_forwarding_proxy(websocket_max_message_bytes=4096)
    client = await _client(aiohttp_client, proxy)

    async with client.ws_connect("/ws") as ws:
        await ws.send_bytes(b"x" * 5000)
        message = await ws.receive()

    assert (message.type, message.data) == (WSMsgType.CLOSE, aiohttp.WSCloseCode.MESSAGE_TOO_BIG)
    await asyncio.wait_for(upstream.ws_closed.wait(), CLOSE_TIMEOUT_S)
    assert upstream.ws_close_codes == [aiohttp.WSCloseCode.GOING_AWAY]


async def test_closing_websockets_on_shutdown_sends_going_away_both_ways_now_and_later(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.ws_connect("/ws") as open_before:
        await open_before.send_str("ping")
        assert await open_before.receive_str() == "ping"
        proxy.forwarder.close_websockets()
        before = await open_before.receive()
    async with client.ws_connect("/ws") as opened_after:
        after = await opened_after.receive()

    async def both_upstream_sockets_closed() -> None:
        while len(upstream.ws_close_codes) < 2:
            upstream.ws_closed.clear()
            await upstream.ws_closed.wait()

    await asyncio.wait_for(both_upstream_sockets_closed(), CLOSE_TIMEOUT_S)

    for message in (before, after):
        assert (message.type, message.data, message.extra) == (
            WSMsgType.CLOSE,
            aiohttp.WSCloseCode.GOING_AWAY,
            "proxy shutting down",
        )
    assert upstream.ws_close_codes == [aiohttp.WSCloseCode.GOING_AWAY] * 2


async def test_an_upstream_refusing_the_websocket_gives_502(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/status/403")

    assert refused.value.status == 502
    assert proxy.errors == [(502, "upstream refused the websocket handshake (status 403)")]
