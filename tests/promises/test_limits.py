"""Promises about what one client may send, and for how long it may hold a connection.

- A request body over ``MWM_LIMITS__MAX_BODY_BYTES`` gets 413 with the error page: at
  once when its ``Content-Length`` says so (nothing reaches the upstream, not even with
  ``Expect: 100-continue``); a chunked body is cut as it grows past the limit, and the
  upstream never sees a complete request.  Bodies at the limit pass whole.
- A body that stops arriving for ``BODY_TIMEOUT_S`` is cut with 408, and the upstream
  connection it held is freed (the upstream never sees a complete request).
- ``Expect: 100-continue`` is answered by the proxy, so such uploads do not hang.
- A compressed request body is forwarded byte for byte (never inflated), and the limit
  counts the bytes on the wire.
- A header field over ``MAX_HEADER_FIELD_BYTES`` or more than ``MAX_HEADER_COUNT`` fields
  get 431, a URL over ``MAX_REQUEST_LINE_BYTES`` 414, each with the error page, never
  reaching the upstream; a head just inside the limits passes.
- A client that dribbles its request head is cut after ``HEADER_TIMEOUT_S`` however
  steadily it dribbles, while other clients are served; a connection that sends nothing
  is cut after the same time; an idle keep-alive connection after ``KEEPALIVE_TIMEOUT_S``.
- Neither the header nor the keep-alive timeout cuts a request in progress: a slow body
  or a slow upstream outlasting both is served.

The upstream here is a raw TCP server that records every byte it receives, so "nothing
reached the upstream" and "the upstream never saw a complete body" are checked on the
wire.  Timeouts are shrunk to fractions of a second; tests wait on the connection being
closed, never by sleeping, and elapsed times are only checked against generous bounds.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import pytest

from tests.conftest import ProxyFactory, RunningProxy
from tests.promises.rawhttp import dribble_head

LIMIT_BYTES = 4096
"""The body limit in the body tests: small, so bodies over it are cheap."""
SHORT_S = 0.5
"""Shrunk timeouts: long enough for a loaded machine to send a head in one go."""
SLACK_S = 10.0
"""How much later than its timeout a cut may come on a busy shared machine."""
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


@dataclass
class RawUpstream:
    """A TCP server that records every byte per connection and answers complete requests.

    It understands just enough HTTP/1.1 to find where a request ends (``Content-Length``
    or the last chunk) and answers each with ``200 ok``, after ``release`` is set.
    """

    server: asyncio.Server
    connections: list[bytearray] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)
    """Every complete request (head and body) received, in order."""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a complete request head has arrived."""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a connection from the proxy has closed."""
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    @classmethod
    async def start(cls) -> RawUpstream:
        upstream: list[RawUpstream] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await upstream[0]._serve(reader, writer)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        upstream.append(cls(server))
        upstream[0].release.set()
        return upstream[0]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = bytearray()
        self.connections.append(received)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                received += head
                self.arrived.set()
                body = await self._read_body(reader, head, received)
                self.requests.append(head + body)
                await self.release.wait()
                writer.write(_OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.ended.set()

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, head: bytes, received: bytearray) -> bytes:
        headers = head.lower()
        if b"transfer-encoding: chunked" in headers:
            body = bytearray()
            while not (body == b"0\r\n\r\n" or body.endswith(b"\r\n0\r\n\r\n")):
                chunk = await reader.read(65536)
                if not chunk:
                    raise asyncio.IncompleteReadError(bytes(body), None)
                received += chunk
                body += chunk
            return bytes(body)
        for line in headers.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name == b"content-length":
                body = await reader.readexactly(int(value))
                received += body
                return body
        return b""

    async def close(self) -> None:
        self.release.set()
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[RawUpstream]:
    upstream = await RawUpstream.start()
    yield upstream
    await upstream.close()


async def start(
    start_proxy: ProxyFactory, upstream: RawUpstream, env: Mapping[str, str] | None = None
) -> RunningProxy:
    return await start_proxy({"MWM_UPSTREAM__URL": upstream.url, **(env or {})})


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """One response with a Content-Length (all of ours have one)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    return Answer(int(status_line.split()[1]), headers, body)


async def exchange(proxy: RunningProxy, data: bytes) -> Answer:
    """Send raw bytes on a new connection and read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    try:
        writer.write(data)
        return await read_answer(reader)
    finally:
        writer.close()


async def metrics(proxy: RunningProxy) -> str:
    async with proxy.session.get(f"{proxy.management_url}/metrics") as response:
        return await response.text()


async def _blocks(total: int, *, size: int = 1000) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        block = b"b" * min(size, total - sent)
        sent += len(block)
        yield block


# --- bodies ---------------------------------------------------------------------------


async def test_a_body_over_the_limit_by_its_length_gets_413_and_never_reaches_the_upstream(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(start_proxy, raw_upstream, {"MWM_LIMITS__MAX_BODY_BYTES": "4096"})

    async with proxy.session.post(
        f"{proxy.public_url}/upload",
        data=b"x" * (LIMIT_BYTES + 1),
        headers={"Accept": "application/json"},
    ) as response:
        problem = await response.json(content_type=None)
        assert response.status == 413
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.headers["Connection"] == "close"
        assert response.headers["Server"] == "mwm"

    assert problem["status"] == 413
    assert problem["title"] == "Content Too Large"
    assert "4 KiB" in problem["detail"]
    assert raw_upstream.connections == []
    assert 'mwm_requests_rejected_total{status="413"} 1' in await metrics(proxy)


async def test_the_413_page_says_that_retrying_will_not_help(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(start_proxy, raw_upstream, {"MWM_LIMITS__MAX_BODY_BYTES": "4096"})

    async with proxy.session.post(
        f"{proxy.public_url}/", data=b"x" * (LIMIT_BYTES + 1), headers={"Accept": "text/html"}
    ) as html:
        page = await html.text()
    async with proxy.session.post(
        f"{proxy.public_url}/", data=b"x" * (LIMIT_BYTES + 1), headers={"Accept": "text/plain"}
    ) as text:
        line = await text.text()

    assert html.status == text.status == 413
    assert "<h1>That was too much to send</h1>" in page  # words for people
    assert "The request body is larger than the 4 KiB this site accepts." in page
    for body in (page, line):
        assert "will not help" in body
        assert "temporary" not in body


async def test_a_chunked_body_growing_past_the_limit_is_cut_and_the_upstream_never_sees_it_whole(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(start_proxy, raw_upstream, {"MWM_LIMITS__MAX_BODY_BYTES": "4096"})
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    try:
        writer.write(b"POST /upload HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"800\r\n" + b"b" * 2048 + b"\r\n")
        await asyncio.wait_for(raw_upstream.arrived.wait(), 10)  # forwarding has begun
        for _ in range(3):
            writer.write(b"800\r\n" + b"b" * 2048 + b"\r\n")
        writer.write(b"0\r\n\r\n")
        answer = await read_answer(reader)
    finally:
        writer.close()

    assert answer.status == 413
    assert "will not help" in answer.body.decode()
    await asyncio.wait_for(raw_upstream.ended.wait(), 10)  # the upstream request was aborted
    [received] = raw_upstream.connections
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert 0 < body.count(b"b") <= LIMIT_BYTES
    assert not body.endswith(b"0\r\n\r\n")  # the last chunk never came
    assert raw_upstream.requests == []
    assert 'mwm_requests_rejected_total{status="413"} 1' in await metrics(proxy)


@pytest.mark.parametrize("chunked", [False, True], ids=["with-length", "chunked"])
async def test_a_body_exactly_at_the_limit_passes_whole(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream, chunked: bool
) -> None:
    proxy = await start(start_proxy, raw_upstream, {"MWM_LIMITS__MAX_BODY_BYTES": "4096"})
    body = _blocks(LIMIT_BYTES) if chunked else b"b" * LIMIT_BYTES

    async with proxy.session.post(f"{proxy.public_url}/upload", data=body) as response:
        assert response.status == 200
        assert await response.read() == b"ok"

    [request] = raw_upstream.requests
    received = request.partition(b"\r\n\r\n")[2]
    if chunked:
        assert received.count(b"b") == LIMIT_BYTES
        assert received.endswith(b"0\r\n\r\n")
    else:
        assert received == b"b" * LIMIT_BYTES


async def test_a_body_that_stops_arriving_is_cut_with_408_and_frees_the_upstream_connection(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    # One upstream connection in the pool: a stalled upload holding it would starve everyone.
    proxy = await start(
        start_proxy,
        raw_upstream,
        {"MWM_LIMITS__BODY_TIMEOUT_S": str(SHORT_S), "MWM_UPSTREAM__POOL_SIZE": "1"},
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    try:
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: shop\r\nContent-Length: 100\r\n\r\n" + b"b" * 10
        )
        await asyncio.wait_for(raw_upstream.arrived.wait(), 10)
        started = time.monotonic()
        answer = await read_answer(reader)  # and then nothing more is sent
        elapsed = time.monotonic() - started
    finally:
        writer.close()

    assert answer.status == 408
    assert "stopped arriving" in answer.body.decode()
    assert answer.headers["connection"] == "close"
    assert SHORT_S <= elapsed < SHORT_S + SLACK_S
    await asyncio.wait_for(raw_upstream.ended.wait(), 10)  # the upstream request was aborted
    assert raw_upstream.requests == []
    await _healthy_request(proxy)  # the pool's one connection is free again
    assert 'mwm_requests_rejected_total{status="408"} 1' in await metrics(proxy)


async def test_a_client_that_leaves_in_the_middle_of_its_body_aborts_the_upstream_request_at_once(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    """Not after the body timeout: the upstream sees its request end as soon as the client
    has gone, and nothing of it is taken for a whole request."""
    proxy = await start(start_proxy, raw_upstream, {"MWM_LIMITS__BODY_TIMEOUT_S": "60"})
    _, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: shop\r\nContent-Length: 100\r\n\r\n" + b"b" * 10)
    await asyncio.wait_for(raw_upstream.arrived.wait(), 10)
    writer.close()
    await asyncio.wait_for(raw_upstream.ended.wait(), 10)  # the body timeout would be 60 s
    assert raw_upstream.requests == []
    await _healthy_request(proxy)


async def test_expect_100_continue_over_the_limit_gets_413_before_the_body_is_sent(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(start_proxy, raw_upstream, {"MWM_LIMITS__MAX_BODY_BYTES": "4096"})

    # The client holds its body back, waiting for 100 Continue: the answer must not wait.
    answer = await exchange(
        proxy,
        b"PUT /big HTTP/1.1\r\nHost: shop\r\nContent-Length: 1000000000\r\n"
        b"Expect: 100-continue\r\n\r\n",
    )

    assert answer.status == 413
    assert raw_upstream.connections == []


async def test_expect_100_continue_within_the_limit_is_answered_and_the_body_forwarded(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(start_proxy, raw_upstream)

    async with (
        asyncio.timeout(10),  # a client waiting for 100 Continue that never comes would hang
        proxy.session.put(
            f"{proxy.public_url}/doc", data=b"after continue", expect100=True
        ) as response,
    ):
        assert response.status == 200

    [request] = raw_upstream.requests
    head, _, body = request.partition(b"\r\n\r\n")
    assert body == b"after continue"
    assert b"expect:" not in head.lower()  # answered here: the upstream never waits for it


async def test_a_compressed_body_is_forwarded_as_sent_and_counted_as_sent(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(start_proxy, raw_upstream, {"MWM_LIMITS__MAX_BODY_BYTES": "4096"})
    inflated = os.urandom(32).hex().encode() * 2000  # 128 KB, compresses to well under 4 KiB
    compressed = gzip.compress(inflated, mtime=0)
    assert len(compressed) < LIMIT_BYTES < len(inflated)

    async with proxy.session.post(
        f"{proxy.public_url}/upload", data=compressed, headers={"Content-Encoding": "gzip"}
    ) as response:
        assert response.status == 200

    [request] = raw_upstream.requests
    head, _, body = request.partition(b"\r\n\r\n")
    assert body == compressed
    assert f"content-length: {len(compressed)}".encode() in head.lower()


# --- request heads --------------------------------------------------------------------


async def test_a_header_field_over_the_limit_gets_431_and_never_reaches_the_upstream(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(start_proxy, raw_upstream, {"MWM_LIMITS__MAX_HEADER_FIELD_BYTES": "1000"})
    # aiohttp's C parser limits the value (and the name); its Python one the whole line.
    inside, over = "c" * 900, "c" * 1001

    fits = await exchange(
        proxy,
        f"GET / HTTP/1.1\r\nHost: shop\r\nCookie: {inside}\r\nConnection: close\r\n\r\n".encode(),
    )
    refused = await exchange(
        proxy, f"GET / HTTP/1.1\r\nHost: shop\r\nCookie: {over}\r\n\r\n".encode()
    )

    assert fits.status == 200
    assert refused.status == 431
    assert refused.headers["server"] == "mwm"
    page = refused.body.decode()
    assert "<h1>Your browser sent too much data</h1>" in page  # words for people
    assert "1000 bytes" in page
    assert "cookies" in page
    assert "temporary" not in page
    assert len(raw_upstream.requests) == 1  # only the one that fit
    assert 'mwm_requests_rejected_total{status="431"} 1' in await metrics(proxy)


async def test_more_header_fields_than_the_limit_get_431(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(start_proxy, raw_upstream, {"MWM_LIMITS__MAX_HEADER_COUNT": "20"})

    def head(count: int) -> bytes:
        fields = "".join(f"X-Field-{i}: {i}\r\n" for i in range(count - 2))
        return f"GET / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n{fields}\r\n".encode()

    fits, refused = await exchange(proxy, head(20)), await exchange(proxy, head(21))

    assert fits.status == 200
    assert refused.status == 431
    assert "more than the 20 header fields" in refused.body.decode()
    assert len(raw_upstream.requests) == 1


async def test_a_url_over_the_limit_gets_414(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(start_proxy, raw_upstream, {"MWM_LIMITS__MAX_REQUEST_LINE_BYTES": "2000"})

    # aiohttp's C parser limits the URL; its Python one the whole request line.
    fits = await exchange(
        proxy, b"GET /" + b"u" * 1900 + b" HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"
    )
    refused = await exchange(proxy, b"GET /" + b"u" * 2000 + b" HTTP/1.1\r\nHost: shop\r\n\r\n")

    assert fits.status == 200
    assert refused.status == 414
    assert "<h1>That address is too long</h1>" in refused.body.decode()
    assert len(raw_upstream.requests) == 1
    assert 'mwm_requests_rejected_total{status="414"} 1' in await metrics(proxy)


# --- timeouts -------------------------------------------------------------------------


async def _healthy_request(proxy: RunningProxy) -> None:
    async with proxy.session.get(f"{proxy.public_url}/healthy") as response:
        assert response.status == 200
        assert await response.read() == b"ok"


@pytest.mark.parametrize("first", [True, False], ids=["first-request", "after-a-request"])
async def test_a_client_dribbling_its_head_is_cut_after_the_header_timeout_while_others_are_served(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream, first: bool
) -> None:
    proxy = await start(start_proxy, raw_upstream, {"MWM_LIMITS__HEADER_TIMEOUT_S": str(SHORT_S)})
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    if not first:  # a keep-alive connection: one whole request answered, then the dribble
        writer.write(b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        assert await reader.readexactly(2) == b"ok"
    dribble = await dribble_head(
        reader,
        writer,
        b"GET / HTTP/1.1\r\nHost: shop\r\nX-Slow: ",
        between=lambda: _healthy_request(proxy),
        give_up_s=SHORT_S + SLACK_S,
    )
    assert SHORT_S <= dribble.elapsed_s < SHORT_S + SLACK_S
    assert dribble.served > 0
    assert "mwm_header_timeouts_total 1" in await metrics(proxy)


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(start_proxy, raw_upstream, {"MWM_LIMITS__HEADER_TIMEOUT_S": str(SHORT_S)})
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    try:
        assert await asyncio.wait_for(reader.read(), SHORT_S + SLACK_S) == b""
    finally:
        writer.close()
    assert time.monotonic() - started >= SHORT_S


async def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(
        start_proxy,
        raw_upstream,
        {"MWM_LIMITS__KEEPALIVE_TIMEOUT_S": str(SHORT_S), "MWM_LIMITS__HEADER_TIMEOUT_S": "60"},
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        assert await reader.readexactly(2) == b"ok"
        answered = time.monotonic()

        assert await asyncio.wait_for(reader.read(), SHORT_S + SLACK_S) == b""
    finally:
        writer.close()
    assert time.monotonic() - answered >= SHORT_S


async def test_an_idle_management_connection_is_closed_after_the_keepalive_timeout(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(
        start_proxy, raw_upstream, {"MWM_LIMITS__KEEPALIVE_TIMEOUT_S": str(SHORT_S)}
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.management_port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: mwm\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        answered = time.monotonic()

        assert await asyncio.wait_for(reader.read(), SHORT_S + SLACK_S) == b""
    finally:
        writer.close()
    assert time.monotonic() - answered >= SHORT_S


async def _outlast_the_header_timeout(proxy: RunningProxy) -> None:
    """Return once a silent connection has been cut: the header timeout has passed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    try:
        assert await asyncio.wait_for(reader.read(), SHORT_S + SLACK_S) == b""
    finally:
        writer.close()


async def test_the_header_and_keepalive_timeouts_never_cut_a_slow_body_or_a_slow_upstream(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(
        start_proxy,
        raw_upstream,
        {
            "MWM_LIMITS__HEADER_TIMEOUT_S": str(SHORT_S),
            "MWM_LIMITS__KEEPALIVE_TIMEOUT_S": str(SHORT_S),
        },
    )
    # Both timeouts are equal, so outlasting the header timeout outlasts both.
    raw_upstream.release.clear()  # the upstream answers only when told
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    try:
        writer.write(
            b"POST /slow HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"
        )
        await asyncio.wait_for(raw_upstream.arrived.wait(), 10)
        await _outlast_the_header_timeout(proxy)  # the body is slow...
        writer.write(b"4\r\nlast\r\n0\r\n\r\n")
        await _outlast_the_header_timeout(proxy)  # ...and so is the upstream
        raw_upstream.release.set()

        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200")
        assert await reader.readexactly(2) == b"ok"
    finally:
        writer.close()
    [request] = raw_upstream.requests
    assert b"first" in request
    assert b"last" in request


async def test_the_header_timeout_never_cuts_a_keep_alive_connection_between_requests(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(
        start_proxy,
        raw_upstream,
        {"MWM_LIMITS__HEADER_TIMEOUT_S": str(SHORT_S), "MWM_LIMITS__KEEPALIVE_TIMEOUT_S": "60"},
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.public_port)
    try:
        # A body arriving in two parts: bytes that come while a request is in progress
        # must not start a header clock.  (With a length: a chunked request would be the
        # last one on its connection.)
        writer.write(b"POST /a HTTP/1.1\r\nHost: shop\r\nContent-Length: 9\r\n\r\nfirst")
        await asyncio.wait_for(raw_upstream.arrived.wait(), 10)
        writer.write(b"last")
        assert (await read_answer(reader)).status == 200

        await _outlast_the_header_timeout(proxy)

        writer.write(b"GET /b HTTP/1.1\r\nHost: shop\r\n\r\n")
        assert (await read_answer(reader)).status == 200
    finally:
        writer.close()
    assert len(raw_upstream.requests) == 2
