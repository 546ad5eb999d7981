"""Trailer fields of a chunked request never become header fields of another request.

aiohttp's C parser (llhttp) reports the trailer section of a chunked body through the
callbacks it uses for header fields, and keeps the last trailer field pending: it is
added to the headers of the *next* request parsed on the connection, whether that request
came in the same packet or later (issue 11, item 1; the write-up for aiohttp is in the
report of that item).  ``POST /x`` with a trailer ``X-Maintenance-Bypass: <token>``
followed by ``GET /checkout`` got the page and then the application during maintenance.
Nothing aiohttp exposes tells whether a body had trailers, so mwm makes a chunked request
the last one read on its connection (:mod:`proxy.connection`).

Promises, with aiohttp's C parser and with its pure-Python one, on both listeners:

- A chunked request is answered with ``Connection: close``, and no request after it is
  answered or forwarded, whether it came in the same packet or later.
- Requests pipelined before a chunked one are answered as usual.
- No request reaching the upstream carries a field that was sent as a trailer.
- Requests queued behind an upgrade request that was declined (answered with the page)
  are not read either: aiohttp parses those outside the connection's ``data_received``.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.conftest import ADMIN_TOKEN, BYPASS_TOKEN, ProxyFactory, RunningProxy
from tests.promises.rawhttp import EXCHANGE_TIMEOUT_S, RawResponse, exchange, parse_responses
from tests.promises.rawupstream import RawUpstream

TRAILERS = [
    pytest.param(("X-Maintenance-Bypass", BYPASS_TOKEN), id="bypass-header"),
    pytest.param(("Cookie", "session=attacker"), id="cookie"),
    pytest.param(("Authorization", "Bearer attacker"), id="authorization"),
]
NEXT = b"GET /checkout HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n"
"""The request after the chunked one: blocked during maintenance."""


def chunked(target: str, trailer: tuple[str, str], *, method: str = "POST") -> bytes:
    name, value = trailer
    return (
        f"{method} {target} HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n"
        f"5\r\nhello\r\n0\r\n{name}: {value}\r\n\r\n"
    ).encode()


async def start(
    start_proxy: ProxyFactory, upstream: RawUpstream, *, maintenance: bool
) -> RunningProxy:
    proxy = await start_proxy({"MWM_UPSTREAM__URL": upstream.url})
    if maintenance:
        await proxy.switch(enabled=True)
    return proxy


async def send_in_two_packets(port: int, first: bytes, second: bytes) -> list[RawResponse]:
    """``first``, then, once its answer has arrived, ``second`` on the same connection;
    every response until the proxy closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(first)
        async with asyncio.timeout(EXCHANGE_TIMEOUT_S):
            while not _complete(received):
                chunk = await reader.read(65536)
                assert chunk, f"closed before the first answer: {received!r}"
                received += chunk
            with contextlib.suppress(ConnectionError):  # the proxy may have closed already
                writer.write(second)
                await writer.drain()
                while chunk := await reader.read(65536):
                    received += chunk
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return parse_responses(received)


def _complete(data: bytes) -> bool:
    try:
        return bool(parse_responses(data))
    except AssertionError:  # a response cut short
        return False


def assert_last_on_its_connection(responses: list[RawResponse], status: int) -> None:
    """One answer, announcing the close: nothing after the chunked request was answered."""
    assert [r.status for r in responses] == [status]
    assert responses[0].header("Connection") == "close"


@pytest.mark.parametrize("packets", ["one-packet", "two-packets"])
async def test_a_trailer_cannot_carry_a_bypass_token_into_the_next_request(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream, packets: str
) -> None:
    """The report's reproduction: 503 then 200 on aiohttp's C parser."""
    proxy = await start(start_proxy, raw_upstream, maintenance=True)
    attack = chunked("/x", ("X-Maintenance-Bypass", BYPASS_TOKEN))
    if packets == "one-packet":
        responses = await exchange(proxy.public_port, attack + NEXT)
    else:
        responses = await send_in_two_packets(proxy.public_port, attack, NEXT)
    assert_last_on_its_connection(responses, 503)
    assert raw_upstream.connections == 0


@pytest.mark.parametrize("trailer", TRAILERS)
@pytest.mark.parametrize("packets", ["one-packet", "two-packets"])
async def test_no_trailer_field_reaches_the_upstream_in_a_later_request(
    http_parser: str,
    start_proxy: ProxyFactory,
    raw_upstream: RawUpstream,
    trailer: tuple[str, str],
    packets: str,
) -> None:
    proxy = await start(start_proxy, raw_upstream, maintenance=False)
    attack = chunked("/x", trailer)
    if packets == "one-packet":
        responses = await exchange(proxy.public_port, attack + NEXT)
    else:
        responses = await send_in_two_packets(proxy.public_port, attack, NEXT)

    name, value = trailer
    for arrived in raw_upstream.requests:
        assert value not in arrived.values(name), f"{arrived.method} {arrived.target}"
    assert_last_on_its_connection(responses, 200)
    assert raw_upstream.malformed == []
    assert [(r.method, r.target, r.body) for r in raw_upstream.requests] == [
        ("POST", "/x", b"hello")
    ]


async def test_requests_before_a_chunked_one_are_answered_and_none_after_it(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(start_proxy, raw_upstream, maintenance=False)
    before = b"GET /before HTTP/1.1\r\nHost: shop.example\r\n\r\n"
    attack = chunked("/x", ("Cookie", "session=attacker"))

    responses = await exchange(proxy.public_port, before + attack + NEXT)

    assert [r.status for r in responses] == [200, 200]
    assert responses[0].header("Connection") != "close"
    assert responses[1].header("Connection") == "close"
    assert [(r.method, r.target) for r in raw_upstream.requests] == [
        ("GET", "/before"),
        ("POST", "/x"),
    ]


async def test_requests_behind_a_declined_upgrade_are_not_read(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    """A websocket handshake answered with the page: aiohttp parses the bytes queued behind
    it only then, outside ``data_received`` (where mwm looks at each request)."""
    proxy = await start(start_proxy, raw_upstream, maintenance=True)
    upgrade = (
        b"GET /chat HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    attack = chunked("/x", ("X-Maintenance-Bypass", BYPASS_TOKEN))

    responses = await exchange(proxy.public_port, upgrade + attack + NEXT)

    assert_last_on_its_connection(responses, 503)
    assert raw_upstream.connections == 0


async def test_a_trailer_cannot_authenticate_the_next_admin_request(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    """The management listener reads requests the same way."""
    proxy = await start(start_proxy, raw_upstream, maintenance=False)
    probe = chunked("/healthz", ("Authorization", f"Bearer {ADMIN_TOKEN}"), method="GET")
    body = b'{"enabled": true}'
    switch_on = (
        b"PUT /api/maintenance HTTP/1.1\r\nHost: mwm\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )

    responses = await exchange(proxy.management_port, probe + switch_on)

    assert_last_on_its_connection(responses, 200)
    assert not proxy.runtime.store.current.maintenance.active
