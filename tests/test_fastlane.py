"""The public listener's fast lane (:mod:`proxy.fastlane`): the same answers as aiohttp's
server, byte for byte, and a connection that moves between the two without a seam.

Every test runs a real mwm (``start_proxy``) in front of a real upstream and speaks raw
HTTP/1.1 to it, as a client would.  The lane is on by default; ``MWM_LISTEN__FAST_LANE=false``
is the same proxy with every request going through aiohttp's server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from proxy.fastlane import FastLane
from proxy.forwarding import Forwarder
from proxy.public import PublicHandler
from tests.conftest import ProxyFactory, RunningProxy, echo_app
from tests.promises.rawhttp import RawResponse, exchange, parse_responses, request

LANE_OFF = {"MWM_LISTEN__FAST_LANE": "false"}
_FORM = "application/x-www-form-urlencoded"


HELD = web.AppKey("held", asyncio.Event)
"""Set to answer the requests waiting on ``/hold``."""
HOLDING = web.AppKey("holding", asyncio.Event)
"""Set when a request is waiting on ``/hold``."""
FLAKY_HITS = web.AppKey("flaky_hits", dict[str, int])
"""How often each ``/flaky/<key>`` was asked for."""


def _answers_app() -> web.Application:
    """The echo upstream, and answers of every shape a relay frames differently."""
    app = echo_app()

    async def status(request: web.Request) -> web.StreamResponse:
        code = int(request.match_info["code"])
        return web.Response(status=code, headers={"ETag": '"v1"', "X-Upstream": "yes"})

    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * 100_000, content_type="application/octet-stream")

    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        for part in (b"first ", b"second ", b"third"):
            await response.write(part)
        await response.write_eof()
        return response

    async def hop_by_hop(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="named", headers={"Connection": "X-Private", "X-Private": "dropped", "X-Kept": "1"}
        )

    async def dated(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="dated", headers={"Date": "Mon, 07 Dec 2026 10:00:00 GMT", "Server": "app/1"}
        )

    held = app[HELD] = asyncio.Event()
    holding = app[HOLDING] = asyncio.Event()

    async def hold(request: web.Request) -> web.StreamResponse:
        holding.set()
        await held.wait()
        return web.Response(text="released")

    hits: dict[str, int] = {}
    app[FLAKY_HITS] = hits

    async def flaky(request: web.Request) -> web.StreamResponse:
        """Closes the connection without an answer the first time a key is asked for."""
        key = request.match_info["key"]
        hits[key] = hits.get(key, 0) + 1
        if hits[key] == 1:
            assert request.transport is not None
            request.transport.close()
        return web.Response(text=f"{key}: answered on try {hits[key]}")

    app.router.add_get("/hold", hold)
    app.router.add_get("/flaky/{key}", flaky)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/big", big)
    app.router.add_get("/streamed", streamed)
    app.router.add_get("/hop-by-hop", hop_by_hop)
    app.router.add_get("/dated", dated)
    return app


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer) -> TestServer:
    return await aiohttp_server(_answers_app())


BROWSER = [
    ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("User-Agent", "Mozilla/5.0"),
]


def _comparable(response: RawResponse) -> tuple[object, ...]:
    """A response without what differs from one second to the next (``Date``)."""
    headers = tuple((n.lower(), v) for n, v in response.headers if n.lower() != "date")
    return response.status_line, headers, response.body


async def _both(start_proxy: ProxyFactory, env: dict[str, str] | None = None) -> list[RunningProxy]:
    """The same proxy twice: with the lane, and with aiohttp's server alone."""
    return [await start_proxy(env), await start_proxy({**(env or {}), **LANE_OFF})]


SEQUENCES = {
    "one GET": [request("GET", "/a?b=c", BROWSER)],
    "HEAD": [request("HEAD", "/a", BROWSER)],
    "keep-alive GETs": [
        request("GET", "/one", BROWSER, close=False),
        request("GET", "/two?x=%2F", close=False),
        request("HEAD", "/three"),
    ],
    "dot segments and encoded characters": [request("GET", "/a/./b/../c%7E?q=%20", BROWSER)],
    "routing and forwarding headers from the client": [
        request(
            "GET",
            "/r",
            [
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-Host", "evil.test"),
                ("Forwarded", "for=1.2.3.4"),
                ("X-Maintenance-Bypass", "guess"),
            ],
        )
    ],
    "a GET, then a POST with a body, then a GET": [
        request("GET", "/before", close=False),
        request("POST", "/post", body=b"hello", close=False),
        request("GET", "/after"),
    ],
    "a form POST with its body, then a GET on the same connection": [
        request("POST", "/form", [("Content-Type", _FORM)], body=b"name=x&y=1", close=False),
        request("GET", "/after"),
    ],
    "PUT, PATCH and DELETE with bodies, then a DELETE and a POST without one": [
        request(
            "PUT", "/item/1", [("Content-Type", "application/json")], body=b'{"a":1}', close=False
        ),
        request("PATCH", "/item/1", body=b'{"b":2}', close=False),
        request("DELETE", "/item/1", body=b"why", close=False),
        request("DELETE", "/item/2", close=False),
        request("POST", "/empty", [("Content-Length", "0")]),
    ],
    "a POST asking for 100-continue (handed off)": [
        request("POST", "/expect", [("Expect", "100-continue")], body=b"data")
    ],
    "a chunked POST (handed off)": [
        b"POST /chunked HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ],
    "an OPTIONS with a body (handed off)": [request("OPTIONS", "/o", body=b"x")],
    "an absolute-form target": [request("GET", "http://proxy.test/abs")],
    "an Upgrade without Connection: upgrade (answered, then the connection ends)": [
        request("GET", "/up", [("Upgrade", "h2c")], close=False)
    ],
    "HTTP/1.0": [b"GET /ten HTTP/1.0\r\nHost: proxy.test\r\n\r\n"],
    "a status path": [request("GET", "/services")],
    "answers framed otherwise (304, 204, 404, a large body, a streamed one)": [
        request("GET", "/status/304", [("If-None-Match", '"v1"')], close=False),
        request("GET", "/status/204", close=False),
        request("HEAD", "/status/404", close=False),
        request("GET", "/big", close=False),
        request("GET", "/streamed", close=False),
        request("GET", "/one-more"),
    ],
    "an answer naming its own hop-by-hop fields, then one with its Date and Server": [
        request("GET", "/hop-by-hop", close=False),
        request("GET", "/dated"),
    ],
    "an upstream answer with Connection: close asked for": [request("GET", "/big")],
    "an invalid path": [request("GET", "/a/%2e%2e/%2e%2e/etc")],
}


@pytest.mark.parametrize("sequence", SEQUENCES.values(), ids=SEQUENCES.keys())
async def test_the_lane_answers_what_aiohttps_server_answers(
    start_proxy: ProxyFactory, sequence: list[bytes]
) -> None:
    """Each request sequence, on one connection, gets the same bytes (but ``Date``) with the
    lane as without it: status lines, headers in order, bodies (the upstream's echo of what
    it was sent included)."""
    answers = []
    for proxy in await _both(start_proxy):
        answers.append(await _exchange_each(proxy.public_port, sequence))
    with_lane, without = answers
    assert len(with_lane) == len(sequence)
    assert [_comparable(r) for r in with_lane] == [_comparable(r) for r in without]


async def _exchange_each(port: int, sequence: list[bytes]) -> list[RawResponse]:
    """Send each request of ``sequence`` once the previous one is answered; read to the end."""
    heads = [data.startswith(b"HEAD ") for data in sequence]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        async with asyncio.timeout(10):
            for index, data in enumerate(sequence):
                writer.write(data)
                await writer.drain()
                if index < len(sequence) - 1:
                    while len(_responses(received, heads)) <= index:
                        received += await reader.read(65536)
            while chunk := await reader.read(65536):
                received += chunk
    finally:
        writer.close()
    return _responses(received, heads)


def _responses(data: bytes, heads: list[bool]) -> list[RawResponse]:
    """The complete responses at the start of ``data``, answers to requests that were
    ``HEAD`` or not (``heads``): an answer to ``HEAD``, a 204 and a 304 have no body; the
    others here have a ``Content-Length``, are chunked (compared as sent) or end with the
    connection.  An interim answer (``100 Continue``) has no body either: its status line
    is kept in front of its request's final answer's (``HTTP/1.1 100 Continue`` then a
    ``\r\n`` then ``HTTP/1.1 200 OK``)."""
    responses = []
    interim = ""
    for head in heads:
        end = data.find(b"\r\n\r\n")
        while end >= 0 and _INTERIM.match(data):
            interim += data[: data.index(b"\r\n")].decode("latin-1") + "\r\n"
            data = data[end + 4 :]
            end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        status_line, *lines = data[:end].decode("latin-1").split("\r\n")
        headers = tuple((n.strip(), v.strip()) for n, _, v in (x.partition(":") for x in lines))
        length = next((int(v) for n, v in headers if n.lower() == "content-length"), None)
        rest = data[end + 4 :]
        chunked = any(n.lower() == "transfer-encoding" for n, _ in headers)
        if chunked and not head:
            last = rest.find(b"\r\n0\r\n\r\n")
            if last < 0:
                break
            length = last + 7  # the chunks as sent: compared as they are
        status = int(status_line.split(" ", 2)[1])
        if head or status in (204, 304):
            length = 0
        elif length is None:
            length = len(rest)
        elif len(rest) < length:
            break
        responses.append(RawResponse(status, headers, rest[:length], interim + status_line))
        data, interim = rest[length:], ""
    return responses


_INTERIM = re.compile(rb"HTTP/1\.[01] 1(?!01)\d\d[ \r]")
"""The status line of an interim answer (1xx but ``101 Switching Protocols``, whose
connection then speaks another protocol)."""


PAGE_SEQUENCES = {
    "HTML": [request("GET", "/shop", BROWSER)],
    "a form POST, then a GET": [
        request("POST", "/shop", [*BROWSER, ("Content-Type", _FORM)], body=b"q=1", close=False),
        request("GET", "/shop", BROWSER),
    ],
    "JSON": [request("GET", "/api", [("Accept", "application/json")])],
    "HEAD": [request("HEAD", "/shop", BROWSER)],
    "keep-alive": [request("GET", "/a", close=False), request("GET", "/b", BROWSER)],
    "German": [request("GET", "/", [("Accept-Language", "de")])],
    "a wrong bypass token": [request("GET", "/shop", [("X-Maintenance-Bypass", "wrong")])],
    "a bypass path, then the page (a bypass is handed off)": [
        request("GET", "/admin/users", close=False),
        request("GET", "/shop"),
    ],
}


@pytest.mark.parametrize("sequence", PAGE_SEQUENCES.values(), ids=PAGE_SEQUENCES.keys())
async def test_the_page_is_the_same_with_and_without_the_lane(
    start_proxy: ProxyFactory, sequence: list[bytes]
) -> None:
    answers = []
    for proxy in await _both(start_proxy):
        await proxy.switch(enabled=True, reason="Database upgrade")
        await proxy.wait_for(lambda state: state.maintenance.active)
        answers.append(await _exchange_each(proxy.public_port, sequence))
    with_lane, without = answers
    assert with_lane[-1].status == 503
    assert [_comparable(r) for r in with_lane] == [_comparable(r) for r in without]


async def test_a_post_and_the_request_behind_it_in_one_write_are_answered_in_order(
    start_proxy: ProxyFactory,
) -> None:
    """A request with its body and the next one in the same read (handed to aiohttp's
    server): both answered, the same with the lane as without."""
    pipelined = request("POST", "/first", body=b"one", close=False) + request("GET", "/second")
    answers = []
    for proxy in await _both(start_proxy):
        answers.append(await exchange(proxy.public_port, pipelined))
    with_lane, without = answers
    assert [(r.json()["method"], r.json()["body"]) for r in with_lane] == [
        ("POST", "one"),
        ("GET", ""),
    ]
    assert [_comparable(r) for r in with_lane] == [_comparable(r) for r in without]


@pytest.fixture
def hand_offs(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bytes each connection was handed to aiohttp's server with, recorded."""
    handed_off: list[bytes] = []
    original = FastLane._hand_off

    def spy(self: FastLane, data: bytes) -> None:
        handed_off.append(data)
        original(self, data)

    monkeypatch.setattr(FastLane, "_hand_off", spy)
    return handed_off


async def test_a_connection_that_sent_a_body_stays_on_the_lane(
    start_proxy: ProxyFactory, hand_offs: list[bytes]
) -> None:
    """A form, an API call: a request whose whole body came with its head is answered on
    the lane's connection, and the requests after it are served there too (no hand-off to
    aiohttp's server)."""
    proxy = await start_proxy()
    responses = await _exchange_each(
        proxy.public_port,
        [
            request("POST", "/form", [("Content-Type", _FORM)], body=b"a=1", close=False),
            request("GET", "/page", close=False),
            request("DELETE", "/item/7", close=False),
            request("PUT", "/item/7", body=b"{}"),
        ],
    )
    assert [(r.status, r.json()["method"], r.json()["body"]) for r in responses] == [
        (200, "POST", "a=1"),
        (200, "GET", ""),
        (200, "DELETE", ""),
        (200, "PUT", "{}"),
    ]
    assert hand_offs == []


async def _round_trip(proxy: RunningProxy) -> None:
    """One answer from the proxy's event loop: what was sent to it before has been read."""
    async with proxy.session.get(f"{proxy.management_url}/healthz") as response:
        assert response.status == 200


async def test_a_body_written_apart_from_its_head_is_read_into_its_request_on_the_lane(
    start_proxy: ProxyFactory, hand_offs: list[bytes]
) -> None:
    """Many clients write a head, then its body: the lane reads the rest of the body into
    the request it is answering as it comes, and the connection stays on the lane."""
    proxy = await start_proxy()
    post = request("POST", "/form", [("Content-Type", _FORM)], body=b"name=x&y=1", close=False)
    head, _, body = post.partition(b"\r\n\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    try:
        writer.write(head + b"\r\n\r\n")
        await writer.drain()
        await _round_trip(proxy)  # the head has been read alone
        writer.write(body[:4])
        await writer.drain()
        await _round_trip(proxy)
        writer.write(body[4:] + request("GET", "/after"))
        async with asyncio.timeout(10):
            received = await reader.read()  # until the proxy closes (the GET asked for it)
    finally:
        writer.close()
    responses = parse_responses(received)
    assert [(r.status, r.json()["method"], r.json()["body"]) for r in responses] == [
        (200, "POST", "name=x&y=1"),
        (200, "GET", ""),
    ]
    assert hand_offs == []


async def test_a_body_over_the_limit_gets_413_on_the_lane_too(start_proxy: ProxyFactory) -> None:
    """``MWM_LIMITS__MAX_BODY_BYTES`` holds for a whole body the lane answers: the same
    413 as aiohttp's server gives, and the upstream never sees the request."""
    limit = {"MWM_LIMITS__MAX_BODY_BYTES": "4"}
    answers = []
    for proxy in await _both(start_proxy, limit):
        answers.append(
            await _exchange_each(proxy.public_port, [request("POST", "/big", body=b"12345")])
        )
    with_lane, without = answers
    assert [r.status for r in with_lane] == [413]
    assert [_comparable(r) for r in with_lane] == [_comparable(r) for r in without]


async def test_pipelined_requests_are_answered_in_order(start_proxy: ProxyFactory) -> None:
    """Two requests in one write (handed to aiohttp's server), then more on the same
    connection."""
    proxy = await start_proxy()
    responses = await exchange(
        proxy.public_port,
        request("GET", "/first", close=False)
        + request("GET", "/second", close=False)
        + request("GET", "/third"),
    )
    assert [r.json()["path"] for r in responses] == ["/first", "/second", "/third"]


async def test_a_request_sent_while_one_is_in_flight_is_answered_after_it(
    start_proxy: ProxyFactory,
) -> None:
    """A client that sends its next request before the answer to the first (the second
    arrives while the first is being forwarded) gets both answers, in order."""
    proxy = await start_proxy()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    try:
        for path in ("/one", "/two", "/three"):
            writer.write(request("GET", path, close=path == "/three"))
            await writer.drain()
        async with asyncio.timeout(10):
            received = await reader.read()
    finally:
        writer.close()
    assert [r.json()["path"] for r in parse_responses(received)] == ["/one", "/two", "/three"]


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({"MWM_LIMITS__KEEPALIVE_TIMEOUT_S": "0.2"})
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    try:
        writer.write(request("GET", "/kept", close=False))
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            rest = await reader.read()  # everything until the proxy closes
    finally:
        writer.close()
    [response] = parse_responses(head + rest)
    assert response.json()["path"] == "/kept"


async def test_a_silent_connection_is_closed_at_the_header_timeout_and_counted(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({"MWM_LIMITS__HEADER_TIMEOUT_S": "0.2"})
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    try:
        async with asyncio.timeout(10):
            assert await reader.read() == b""  # closed without an answer
    finally:
        writer.close()
    async with proxy.session.get(f"{proxy.management_url}/metrics") as response:
        metrics = await response.text()
    assert "mwm_header_timeouts_total 1.0" in metrics


@pytest.fixture
async def held_upstream_proxy(
    start_proxy: ProxyFactory, monkeypatch: pytest.MonkeyPatch
) -> tuple[RunningProxy, asyncio.Event, asyncio.Event]:
    """A proxy whose forwards wait, once started, until ``release`` is set; ``started`` is
    set when one is waiting."""
    started, release = asyncio.Event(), asyncio.Event()
    forward = PublicHandler.forward

    async def held(self: PublicHandler, *args: object, **kwargs: object) -> object:
        started.set()
        await release.wait()
        return await forward(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(PublicHandler, "forward", held)
    return await start_proxy(), started, release


async def test_shutdown_lets_a_forward_in_flight_finish(
    held_upstream_proxy: tuple[RunningProxy, asyncio.Event, asyncio.Event],
) -> None:
    proxy, started, release = held_upstream_proxy
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    try:
        writer.write(request("GET", "/in-flight", close=False))
        async with asyncio.timeout(10):
            await started.wait()
            proxy.runtime.request_stop()
            assert await idle_reader.read() == b""  # an idle connection: closed at once
            release.set()
            received = await reader.read()  # the answer, then the close
    finally:
        writer.close()
        idle_writer.close()
    [response] = parse_responses(received)
    assert response.status == 200
    assert response.json()["path"] == "/in-flight"


async def test_a_failure_inside_the_proxy_is_a_500_page_and_the_connection_ends(
    start_proxy: ProxyFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(self: PublicHandler, *args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr(PublicHandler, "forward", broken)
    proxy = await start_proxy()
    with caplog.at_level(logging.ERROR, logger="proxy.fastlane"):
        [response] = await exchange(proxy.public_port, request("GET", "/x", BROWSER, close=False))
    assert response.status == 500
    assert response.header("Connection") == "close"
    assert b"a bug" not in response.body
    assert b"<html" in response.body.lower()
    assert "error while forwarding a request" in caplog.text


async def test_the_lane_reads_requests_with_the_parser_aiohttps_server_uses(
    start_proxy: ProxyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the pure-Python parser in aiohttp's server (as where the C extension is
    missing), the lane parses with it too: both read a request the same way."""
    from aiohttp import http_parser, web_protocol

    monkeypatch.setattr(web_protocol, "HttpRequestParser", http_parser.HttpRequestParserPy)
    created: list[object] = []
    original = http_parser.HttpRequestParserPy.__init__

    def counting(self: object, *args: object, **kwargs: object) -> None:
        created.append(self)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(http_parser.HttpRequestParserPy, "__init__", counting)
    proxy = await start_proxy()
    [response] = await exchange(proxy.public_port, request("GET", "/py"))
    assert response.json()["path"] == "/py"
    assert created  # the lane's connection made one


async def test_a_client_leaving_a_quick_exchange_gives_its_slot_up_when_the_pool_is_full(
    start_proxy: ProxyFactory, upstream: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request forwarded without a task (an idle pooled connection was there) whose
    client leaves before the answer holds its slot only until another request needs it:
    with a pool of one, the next request is served long before the pool's timeout."""
    abandoned: list[object] = []
    original = Forwarder.quick_abandoned

    def spy(self: Forwarder, exchange: object, connection: object) -> None:
        abandoned.append(exchange)
        original(self, exchange, connection)  # type: ignore[arg-type]

    monkeypatch.setattr(Forwarder, "quick_abandoned", spy)
    proxy = await start_proxy(
        {"MWM_UPSTREAM__POOL_SIZE": "1", "MWM_UPSTREAM__POOL_TIMEOUT_S": "60"}
    )
    [warm] = await exchange(proxy.public_port, request("GET", "/warm"))  # one idle connection
    assert warm.status == 200
    _, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    writer.write(request("GET", "/hold", close=False))
    await writer.drain()
    async with asyncio.timeout(10):
        await upstream.app[HOLDING].wait()  # forwarded: the pool's one slot is taken
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    await _round_trip(proxy)  # the proxy has seen the client leave
    async with asyncio.timeout(10):  # the pool's own wait would be 60 s
        [served] = await exchange(proxy.public_port, request("GET", "/after"))
    assert served.status == 200
    assert served.json()["path"] == "/after"
    assert len(abandoned) == 1
    upstream.app[HELD].set()


@pytest.fixture
def quick_failures(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """The failures of quick exchanges (``Forwarder.quick_failed``), recorded."""
    failures: list[BaseException] = []
    original = Forwarder.quick_failed

    def spy(self: Forwarder, exchange: object, connection: object, exc: BaseException) -> None:
        failures.append(exc)
        original(self, exchange, connection, exc)  # type: ignore[arg-type]

    monkeypatch.setattr(Forwarder, "quick_failed", spy)
    return failures


async def _warm(proxy: RunningProxy) -> None:
    """One request answered: the pool has an idle connection, so the next request is
    forwarded without a task (``Forwarder.forward_now``)."""
    [warm] = await exchange(proxy.public_port, request("GET", "/warm"))
    assert warm.status == 200


async def test_a_quick_exchange_whose_connection_breaks_before_the_answer_is_sent_again(
    start_proxy: ProxyFactory, upstream: TestServer, quick_failures: list[BaseException]
) -> None:
    """The keep-alive race on the quick path: the pooled connection closes without an
    answer, and the request goes once more, on a new connection, as ``forward`` does."""
    proxy = await start_proxy()
    await _warm(proxy)
    [response] = await exchange(proxy.public_port, request("GET", "/flaky/a", BROWSER))
    assert response.status == 200
    assert response.body == b"a: answered on try 2"
    assert upstream.app[FLAKY_HITS] == {"a": 2}
    assert [type(exc).__name__ for exc in quick_failures] == ["ServerDisconnectedError"]


async def test_a_quick_exchange_the_upstream_does_not_answer_in_time_gets_the_504_page(
    start_proxy: ProxyFactory, upstream: TestServer, quick_failures: list[BaseException]
) -> None:
    proxy = await start_proxy({"MWM_UPSTREAM__READ_TIMEOUT_S": "0.2"})
    await _warm(proxy)
    answers = []
    for path in ("/hold", "/after"):  # the connection stays usable after the 504
        [response] = await exchange(proxy.public_port, request("GET", path, BROWSER))
        answers.append(response)
    upstream.app[HELD].set()
    assert answers[0].status == 504
    assert b"Error code: 504" in answers[0].body
    assert (answers[0].header("Content-Type") or "").startswith("text/html")
    assert answers[1].json()["path"] == "/after"
    assert [isinstance(exc, TimeoutError) for exc in quick_failures] == [True]
