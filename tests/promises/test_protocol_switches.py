"""Protocol switches the proxy does not perform end their connection; CONNECT is refused.

The proxy relays websockets and nothing else: ``CONNECT`` opens no tunnel, and an
``Upgrade`` to ``h2c`` (or anything) is answered as plain HTTP.  What a client sends after
such a request on the same connection is not HTTP the proxy may serve: tunnel bytes after
a ``CONNECT``, HTTP/2 frames after an accepted ``h2c``.  aiohttp's C parser silently drops
what follows an upgrade request in the same read and parses what comes later; its Python
parser reads what follows a ``CONNECT`` as a body that never ends.  Every request here is
sent over a raw socket, with aiohttp's C parser and with its pure-Python one.

Promises:

- ``CONNECT`` is refused everywhere: maintenance on or off, any path, on a bypass prefix
  or not, HTTP/1.0 or 1.1.  An origin-form target (``CONNECT /admin``) gets 405 Method Not
  Allowed with the ``Allow`` header RFC 9110 section 15.5.6 requires, an authority-form
  one (``CONNECT host:port``) 400; the answer says ``HTTP/1.1`` and ``Connection: close``,
  and the upstream never gets a connection.
- After answering a request that asked for a switch the proxy does not perform (``h2c``,
  an unknown protocol, a websocket handshake answered with the maintenance page) or a
  ``CONNECT``, on every path (the maintenance page, a bypass, a forwarded answer, whole
  or streamed, an error page, ``/services``), the answer says ``Connection: close`` and
  the connection ends: a request sent in the same packet and one sent after the answer
  both get nothing, and neither reaches the upstream.
- A websocket the proxy relays still works, and a plain keep-alive request is not affected
  (the control cases: the requests behind it are answered).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from proxy.conformance import ALLOWED_METHODS
from tests.conftest import ProxyFactory, RunningProxy
from tests.promises.rawhttp import (
    EXCHANGE_TIMEOUT_S,
    RawResponse,
    exchange,
    parse_responses,
    request,
)
from tests.promises.rawupstream import RawUpstream
from tests.proxy.upstream import Upstream, free_port

HOST = "Host: proxy.test"
H2C = (
    "Connection: Upgrade, HTTP2-Settings",
    "Upgrade: h2c",
    "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
)
WEBSOCKET = (
    "Connection: Upgrade",
    "Upgrade: websocket",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
)


def message(*lines: str, body: bytes = b"") -> bytes:
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


def get(path: str) -> bytes:
    """A keep-alive request for ``path``: served if the connection is still read."""
    return message(f"GET {path} HTTP/1.1", HOST)


async def start(
    start_proxy: ProxyFactory, upstream_url: str, *, maintenance: bool, **env: str
) -> RunningProxy:
    proxy = await start_proxy(
        {"MWM_UPSTREAM__URL": upstream_url, "MWM_BYPASS__PATH_PREFIXES": "/admin", **env}
    )
    if maintenance:
        await proxy.switch(enabled=True)
    return proxy


def complete(data: bytes) -> bool:
    try:
        return bool(parse_responses(data))
    except AssertionError:  # the data ends inside a response
        return False


async def answer_then_send(port: int, first: bytes, later: bytes) -> tuple[RawResponse, bytes]:
    """Send ``first`` and read its one answer, then send ``later`` and read until the
    server closes: return the answer and whatever came after it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(first)
        received = b""
        async with asyncio.timeout(EXCHANGE_TIMEOUT_S):
            while not complete(received):
                chunk = await reader.read(65536)
                assert chunk, f"the connection ended inside the answer: {received[:200]!r}"
                received += chunk
        [answer] = parse_responses(received)
        after = b""
        # A connection the server has closed may refuse the write or reset the read.
        with contextlib.suppress(ConnectionError):
            writer.write(later)
            await writer.drain()
            async with asyncio.timeout(EXCHANGE_TIMEOUT_S):
                while chunk := await reader.read(65536):
                    after += chunk
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return answer, after


@dataclass(frozen=True)
class Case:
    data: bytes
    status: int
    maintenance: bool = False
    forwarded: tuple[str, ...] = ()
    """The targets the upstream receives (only the first request's, if any)."""
    env: Mapping[str, str] = field(default_factory=dict)


SWITCHES = [
    pytest.param(
        Case(message("GET /checkout HTTP/1.1", HOST, *H2C), 503, maintenance=True),
        id="h2c-maintenance-page",
    ),
    pytest.param(
        Case(message("GET /admin/x HTTP/1.1", HOST, *H2C), 200, True, ("/admin/x",)),
        id="h2c-bypass",
    ),
    pytest.param(
        Case(message("GET /page HTTP/1.1", HOST, *H2C), 200, forwarded=("/page",)),
        id="h2c-forwarded",
    ),
    pytest.param(
        Case(message("GET /services HTTP/1.1", HOST, *H2C), 200, maintenance=True),
        id="h2c-services",
    ),
    pytest.param(
        Case(
            message(
                "POST /page HTTP/1.1",
                HOST,
                "Connection: Upgrade",
                "Upgrade: foo/2",
                "Content-Length: 5",
                body=b"hello",
            ),
            200,
            forwarded=("/page",),
        ),
        id="unknown-protocol-forwarded",
    ),
    pytest.param(
        Case(message("GET /checkout HTTP/1.1", HOST, *WEBSOCKET), 503, maintenance=True),
        id="websocket-answered-with-the-page",
    ),
    pytest.param(
        Case(message("CONNECT /admin HTTP/1.1", HOST), 405, maintenance=True), id="connect-bypass"
    ),
    pytest.param(Case(message("CONNECT /admin HTTP/1.1", HOST), 405), id="connect-maintenance-off"),
    pytest.param(
        Case(message("CONNECT /checkout HTTP/1.1", HOST), 405, maintenance=True),
        id="connect-maintenance-page",
    ),
    pytest.param(
        Case(message("CONNECT 127.0.0.1:443 HTTP/1.1", HOST), 400), id="connect-authority-form"
    ),
]


@pytest.mark.parametrize("case", SWITCHES)
async def test_a_request_sent_behind_a_declined_switch_gets_nothing(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream, case: Case
) -> None:
    proxy = await start(start_proxy, raw_upstream.url, maintenance=case.maintenance)
    responses = await exchange(proxy.public_port, case.data + get("/admin/smuggled"))
    assert [r.status for r in responses] == [case.status]
    [answer] = responses
    assert answer.status_line.startswith("HTTP/1.1 ")
    assert answer.values("Connection") == ["close"]
    assert [r.target for r in raw_upstream.requests] == list(case.forwarded)
    assert raw_upstream.malformed == []


@pytest.mark.parametrize("case", SWITCHES)
async def test_a_request_sent_after_the_answer_to_a_declined_switch_gets_nothing(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream, case: Case
) -> None:
    proxy = await start(start_proxy, raw_upstream.url, maintenance=case.maintenance)
    answer, after = await answer_then_send(proxy.public_port, case.data, get("/admin/later"))
    assert answer.status == case.status
    assert answer.values("Connection") == ["close"]
    assert after == b""
    assert [r.target for r in raw_upstream.requests] == list(case.forwarded)


async def test_a_streamed_answer_to_a_declined_switch_says_close_before_its_body(
    http_parser: str, start_proxy: ProxyFactory, recording_upstream: Upstream
) -> None:
    """A large answer is streamed: its head is written by the forwarder before the body,
    so the connection's end must be known before forwarding, not after."""
    proxy = await start(start_proxy, recording_upstream.url, maintenance=False)
    size = 256 * 1024
    data = message(f"GET /download?size={size}&chunked=1 HTTP/1.1", HOST, *H2C)
    responses = await exchange(proxy.public_port, data + get("/smuggled"))
    assert [(r.status, len(r.body)) for r in responses] == [(200, size)]
    assert responses[0].values("Connection") == ["close"]
    assert [r.path for r in recording_upstream.requests] == ["/download"]


async def test_an_error_page_after_a_declined_switch_ends_the_connection(
    http_parser: str, start_proxy: ProxyFactory
) -> None:
    proxy = await start(start_proxy, f"http://127.0.0.1:{free_port()}", maintenance=False)
    data = message("GET /page HTTP/1.1", HOST, *H2C)
    responses = await exchange(proxy.public_port, data + get("/smuggled"))
    assert [r.status for r in responses] == [502]
    assert responses[0].values("Connection") == ["close"]
    answer, after = await answer_then_send(proxy.public_port, data, get("/later"))
    assert (answer.status, answer.values("Connection"), after) == (502, ["close"], b"")


async def test_a_relayed_websocket_still_works(
    http_parser: str, start_proxy: ProxyFactory, recording_upstream: Upstream
) -> None:
    """The one switch the proxy makes: the websocket is relayed (until it ends)."""
    proxy = await start(start_proxy, recording_upstream.url, maintenance=False)
    async with proxy.session.ws_connect(f"{proxy.public_url}/ws") as ws:
        await ws.send_str("hello")
        assert await ws.receive_str() == "hello"


async def test_a_plain_request_keeps_its_connection(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    """The control case: the same exchanges without a switch are all answered."""
    proxy = await start(start_proxy, raw_upstream.url, maintenance=False)
    responses = await exchange(proxy.public_port, get("/page") + request("GET", "/same-packet"))
    assert [r.status for r in responses] == [200, 200]
    answer, after = await answer_then_send(
        proxy.public_port, get("/first"), request("GET", "/later")
    )
    assert answer.status == 200
    assert answer.values("Connection") == []
    assert [r.status for r in parse_responses(after)] == [200]
    assert [r.target for r in raw_upstream.requests] == [
        "/page",
        "/same-packet",
        "/first",
        "/later",
    ]


@pytest.mark.parametrize(
    ("target", "version"),
    [
        ("/admin", "HTTP/1.1"),
        ("/admin/x", "HTTP/1.1"),
        ("/admin", "HTTP/1.0"),
        ("/", "HTTP/1.1"),
        ("/checkout?x=1", "HTTP/1.1"),
        ("/services", "HTTP/1.1"),
    ],
    ids=str,
)
@pytest.mark.parametrize("maintenance", [True, False], ids=["maintenance", "no-maintenance"])
async def test_connect_is_refused_with_405_and_the_allowed_methods(
    http_parser: str,
    start_proxy: ProxyFactory,
    raw_upstream: RawUpstream,
    target: str,
    version: str,
    maintenance: bool,
) -> None:
    proxy = await start(start_proxy, raw_upstream.url, maintenance=maintenance)
    responses = await exchange(proxy.public_port, message(f"CONNECT {target} {version}", HOST))
    [answer] = responses
    assert answer.status_line == "HTTP/1.1 405 Method Not Allowed"
    assert answer.values("Allow") == [ALLOWED_METHODS]  # RFC 9110 section 15.5.6
    assert answer.values("Connection") == ["close"]
    assert answer.header("Server") == "mwm"
    assert raw_upstream.connections == 0


async def test_connect_to_the_upstream_itself_is_refused_with_400(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(start_proxy, raw_upstream.url, maintenance=True)
    authority = f"127.0.0.1:{raw_upstream.port}"
    data = message(f"CONNECT {authority} HTTP/1.1", f"Host: {authority}")
    [answer] = await exchange(proxy.public_port, data)
    assert answer.status_line == "HTTP/1.1 400 Bad Request"
    assert answer.values("Connection") == ["close"]
    assert raw_upstream.connections == 0
