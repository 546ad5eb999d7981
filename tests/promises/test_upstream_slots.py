"""Promises about the upstream pool: no client takes what others need from it.

Each of the ``MWM_UPSTREAM__POOL_SIZE`` connections to the app is a slot a request holds
while it is forwarded.  These tests show that none is held for a client that is gone or
that only pretends to be there, and that one address cannot take them all:

- a websocket upgrade is a ``GET`` without a body: one with a body or another method is
  forwarded as the plain request it also is (no 101, the app sees no ``Upgrade``), so
  fire-and-forget upgrades with a body never pin a slot (issue 11, item 2);
- a request whose client has gone gives its slot back as soon as another request needs it,
  whatever the request (a plain ``GET``, a ``POST`` with its body, a websocket handshake
  the app never answers), and the app's request is aborted;
- an upload trickling in slower than ``MWM_UPSTREAM__BODY_MIN_RATE_BYTES_S`` (over each
  ``MWM_LIMITS__BODY_TIMEOUT_S`` of waiting) is cut with 408 and its slot freed, while an
  upload above the minimum passes whole however long it takes;
- a client that stops reading a download is cut after
  ``MWM_UPSTREAM__CLIENT_SEND_TIMEOUT_S`` and the app's connection released, while a client
  that reads is never cut however long the app pauses;
- one client address holds at most ``MWM_UPSTREAM__MAX_PER_CLIENT`` slots (the 503 page
  with ``Retry-After`` beyond) while other addresses still get through; the address is the
  one the bypass rules see (after trusted hops), an IPv6 one counted by its /64.

The app is a raw TCP server that holds requests to ``/hold`` until told (or until the proxy
hangs up), streams ``/download`` without end, pauses ``/pause`` after its first chunk until
told, and answers anything else at once, so a held slot is visible on the wire.  Every
delay is a setting shrunk to a fraction of a second; tests wait on events (the app's
arrivals and hang-ups, answers, a management round trip as a turn of the proxy's event
loop, a cut request as a clock), never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

import pytest

from tests.conftest import ProxyFactory, RunningProxy
from tests.waiting import until_changed

SHORT_S = 0.5
"""Shrunk timeouts: long enough for a loaded machine to send a head in one go."""
SLACK_S = 10.0
"""How much later than its timeout a cut may come on a busy shared machine."""
POOL_TIMEOUT_S = 2.0
"""The wait for a free slot: a pinned pool shows as a 503 after this, not after 10 s."""
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
"""A valid ``Sec-WebSocket-Key`` (RFC 6455's example)."""
UPGRADE = (
    "Connection: Upgrade\r\nUpgrade: websocket\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
)
_CHUNK = b"d" * 65536


@dataclass(eq=False)
class Arrival:
    method: str
    path: str
    head: bytes
    body: bytes = b""


@dataclass(eq=False)
class SlotUpstream:
    """The app: holds ``/hold``, streams ``/download`` without end, pauses ``/pause``,
    answers the rest."""

    server: asyncio.Server | None = None
    arrivals: list[Arrival] = field(default_factory=list)
    """Every request head that arrived, in order (the body is filled in once read)."""
    hung_up: list[str] = field(default_factory=list)
    """The path of every request whose connection the proxy closed before the end."""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    """Set: held requests are answered."""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def paths(self, prefix: str) -> list[str]:
        return [a.path for a in self.arrivals if a.path.startswith(prefix)]

    async def until(self, predicate: Callable[[], bool], timeout_s: float = SLACK_S) -> None:
        """Wait (on changes, never by sleeping) until ``predicate`` holds."""
        await until_changed(self._changed, predicate, timeout_s)

    async def close(self) -> None:
        assert self.server is not None
        self.release.set()
        self.server.close()
        for writer in list(self._writers):
            writer.close()
        await self.server.wait_closed()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        path = ""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target = head.split(b" ", 2)[:2]
                arrival = Arrival(method.decode(), target.decode(), head)
                path = arrival.path
                self._note(arrival)
                arrival.body = await _read_body(reader, head)
                self._note(None)
                if path.startswith("/hold"):
                    await self._hold(reader)
                elif path.startswith("/download"):
                    await self._stream(writer)
                    return
                elif path.startswith("/pause"):
                    await self._pause(writer)
                    path = ""
                    continue
                body = f"{arrival.method} {path} {len(arrival.body)}".encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                path = ""
        except asyncio.IncompleteReadError as exc:
            if path or exc.partial:  # the proxy hung up inside a request
                self._note(None, hung_up=path or "?")
        except ConnectionError:
            self._note(None, hung_up=path or "?")
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _hold(self, reader: asyncio.StreamReader) -> None:
        """Until released, or until the proxy hangs up (then IncompleteReadError)."""
        released = asyncio.ensure_future(self.release.wait())
        closed = asyncio.ensure_future(reader.readexactly(1))
        try:
            await asyncio.wait({released, closed}, return_when=asyncio.FIRST_COMPLETED)
            if closed.done():
                closed.result()  # raises when the proxy closed the connection
        finally:
            released.cancel()
            closed.cancel()

    async def _pause(self, writer: asyncio.StreamWriter) -> None:
        """A chunked answer that stops after its first chunk until released."""
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await self.release.wait()
        writer.write(b"4\r\nlast\r\n0\r\n\r\n")
        await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"10000\r\n" + _CHUNK + b"\r\n")
            await writer.drain()

    def _note(self, arrival: Arrival | None, *, hung_up: str | None = None) -> None:
        if arrival is not None:
            self.arrivals.append(arrival)
        if hung_up is not None:
            self.hung_up.append(hung_up)
        self._changed.set()


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    headers = head.lower()
    if b"transfer-encoding: chunked" in headers:
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return bytes(body)
            body += (await reader.readexactly(size + 2))[:-2]
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name == b"content-length":
            return await reader.readexactly(int(value))
    return b""


@pytest.fixture
async def app() -> AsyncIterator[SlotUpstream]:
    upstream = SlotUpstream()
    upstream.server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
    yield upstream
    await upstream.close()


async def start(
    start_proxy: ProxyFactory, app: SlotUpstream, env: Mapping[str, str]
) -> RunningProxy:
    return await start_proxy({"MWM_UPSTREAM__URL": app.url, **env})


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def read_answer(reader: asyncio.StreamReader, timeout_s: float = SLACK_S) -> Answer:
    """One response with a Content-Length (all the ones read here have one)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
    status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout_s)
    return Answer(int(status_line.split()[1]), headers, body)


async def connect(
    proxy: RunningProxy, *, source: str = "127.0.0.1", receive_buffer: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client connection from ``source`` (any 127.x address is local on Linux)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.bind((source, 0))
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", proxy.public_port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


async def request(
    proxy: RunningProxy, data: bytes, *, source: str = "127.0.0.1"
) -> tuple[Answer, float]:
    """Send ``data`` on a new connection from ``source``; the answer and how long it took."""
    reader, writer = await connect(proxy, source=source)
    started = time.monotonic()
    try:
        writer.write(data)
        answer = await read_answer(reader)
    finally:
        writer.close()
    return answer, time.monotonic() - started


def get(path: str, *headers: str) -> bytes:
    lines = "".join(f"{header}\r\n" for header in headers)
    return f"GET {path} HTTP/1.1\r\nHost: shop\r\n{lines}Connection: close\r\n\r\n".encode()


async def served_at_once(proxy: RunningProxy, *, source: str = "127.0.0.1") -> None:
    """A normal request is forwarded without waiting for a slot."""
    answer, elapsed = await request(proxy, get("/normal"), source=source)
    assert answer.status == 200, answer
    assert answer.body == b"GET /normal 0"
    assert elapsed < POOL_TIMEOUT_S


async def turn(proxy: RunningProxy) -> None:
    """One management round trip: the proxy's event loop has seen what came before."""
    async with proxy.session.get(f"{proxy.management_url}/healthz") as response:
        assert response.status == 200


async def hang_up(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


# --- upgrades that are not websocket handshakes -------------------------------------------


BODIED_UPGRADES = {
    "post-with-body": b"POST /chat HTTP/1.1\r\nHost: shop\r\n"
    + UPGRADE.encode()
    + b"Content-Length: 5\r\n\r\nhello",
    "get-with-body": b"GET /chat HTTP/1.1\r\nHost: shop\r\n"
    + UPGRADE.encode()
    + b"Content-Length: 5\r\n\r\nhello",
    "post-chunked": b"POST /chat HTTP/1.1\r\nHost: shop\r\n"
    + UPGRADE.encode()
    + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "post-without-body": b"POST /chat HTTP/1.1\r\nHost: shop\r\n" + UPGRADE.encode() + b"\r\n",
}


@pytest.mark.parametrize("data", BODIED_UPGRADES.values(), ids=BODIED_UPGRADES.keys())
async def test_an_upgrade_that_is_not_a_get_without_a_body_is_forwarded_as_a_plain_request(
    start_proxy: ProxyFactory, app: SlotUpstream, data: bytes, http_parser: str
) -> None:
    proxy = await start(start_proxy, app, {"MWM_UPSTREAM__READ_TIMEOUT_S": str(POOL_TIMEOUT_S)})

    answer, _ = await request(proxy, data)

    # Answered by the app as the request it also is: never a 101, never a handshake toward
    # the app with the client's Content-Length and no body (the app would wait for it).
    [arrival] = app.arrivals
    method = data.split(b" ", 1)[0].decode()
    body = b"hello" if b"hello" in data else b""
    assert answer.status == 200, answer
    assert answer.body == f"{method} /chat {len(body)}".encode()
    assert (arrival.method, arrival.body) == (method, body)
    assert b"upgrade" not in arrival.head.lower()


async def test_fire_and_forget_upgrades_with_a_body_never_pin_the_upstream_pool(
    start_proxy: ProxyFactory, app: SlotUpstream, http_parser: str
) -> None:
    pool = 2
    proxy = await start(
        start_proxy,
        app,
        {"MWM_UPSTREAM__POOL_SIZE": str(pool), "MWM_UPSTREAM__POOL_TIMEOUT_S": str(POOL_TIMEOUT_S)},
    )

    # Three times the pool, each sent whole and the socket closed at once.
    for _ in range(3 * pool):
        _, writer = await connect(proxy)
        writer.write(BODIED_UPGRADES["post-with-body"])
        await hang_up(writer)
    await turn(proxy)

    for _ in range(3):
        await served_at_once(proxy)
    # Never a handshake toward the app: at most plain POSTs (when the proxy read the request
    # before the hang-up), each answered.
    assert {(a.method, a.body) for a in app.arrivals if a.path == "/chat"} <= {("POST", b"hello")}


# --- clients that leave -------------------------------------------------------------------


HELD_REQUESTS = {
    "get": get("/hold"),
    "post-with-body": b"POST /hold HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\n\r\nhello",
    "websocket-handshake": get("/hold", *UPGRADE.rstrip("\r\n").split("\r\n")).replace(
        b"Connection: close\r\n", b""
    ),
}


@pytest.mark.parametrize("data", HELD_REQUESTS.values(), ids=HELD_REQUESTS.keys())
async def test_a_client_that_leaves_gives_its_slot_back_at_once_and_the_app_request_is_aborted(
    start_proxy: ProxyFactory, app: SlotUpstream, data: bytes
) -> None:
    pool = 2
    proxy = await start(
        start_proxy,
        app,
        {"MWM_UPSTREAM__POOL_SIZE": str(pool), "MWM_UPSTREAM__POOL_TIMEOUT_S": str(POOL_TIMEOUT_S)},
    )
    clients = [await connect(proxy) for _ in range(pool)]
    for _, writer in clients:
        writer.write(data)
    await app.until(lambda: len(app.paths("/hold")) == pool)  # every slot is held

    for _, writer in clients:
        await hang_up(writer)
    await turn(proxy)

    await served_at_once(proxy)
    await app.until(lambda: app.hung_up.count("/hold") == pool)  # the app's requests aborted
    await served_at_once(proxy)


# --- slow uploads -------------------------------------------------------------------------


async def test_uploads_trickling_in_below_the_minimum_rate_are_cut_with_408_and_free_their_slots(
    start_proxy: ProxyFactory, app: SlotUpstream
) -> None:
    pool, window_s = 2, 1.0
    proxy = await start(
        start_proxy,
        app,
        {
            "MWM_UPSTREAM__POOL_SIZE": str(pool),
            "MWM_UPSTREAM__POOL_TIMEOUT_S": str(POOL_TIMEOUT_S),
            "MWM_LIMITS__BODY_TIMEOUT_S": str(window_s),
            # 100 kB in every second spent waiting; a byte per round trip is far below.
            "MWM_UPSTREAM__BODY_MIN_RATE_BYTES_S": "100000",
        },
    )
    clients = [await connect(proxy) for _ in range(pool)]
    for _, writer in clients:
        writer.write(b"POST /upload HTTP/1.1\r\nHost: shop\r\nContent-Length: 100000\r\n\r\nb")
    await app.until(lambda: len(app.paths("/upload")) == pool)
    answers = [asyncio.create_task(read_answer(reader, SHORT_S + SLACK_S)) for reader, _ in clients]
    started = time.monotonic()
    trickled = 0
    try:
        # A byte on each connection per management round trip: never silent for the body
        # timeout, far below the minimum rate.
        while not all(a.done() for a in answers) and time.monotonic() - started < SLACK_S:
            await turn(proxy)
            for _, writer in clients:
                with contextlib.suppress(ConnectionError):
                    writer.write(b"b")
            trickled += 1
        elapsed = time.monotonic() - started
        cut = [await answer for answer in answers]
    finally:
        for _, writer in clients:
            await hang_up(writer)

    assert trickled > 10  # it did trickle: many bytes, each well inside the silence timeout
    for answer in cut:
        assert answer.status == 408, answer
        assert "slower than 100000 bytes per second" in answer.body.decode()
        assert answer.headers["connection"] == "close"
    assert window_s <= elapsed < window_s + SLACK_S
    await app.until(lambda: app.hung_up.count("/upload") == pool)  # aborted, never complete
    await served_at_once(proxy)


async def test_an_upload_above_the_minimum_rate_passes_whole_however_many_windows_it_lasts(
    start_proxy: ProxyFactory, app: SlotUpstream
) -> None:
    window_s = 0.5
    proxy = await start(
        start_proxy,
        app,
        {
            "MWM_LIMITS__BODY_TIMEOUT_S": str(window_s),
            "MWM_LIMITS__MAX_BODY_BYTES": "0",
            "MWM_UPSTREAM__BODY_MIN_RATE_BYTES_S": "1000",
        },
    )
    reader, writer = await connect(proxy)
    block = b"u" * 4096  # per round trip: over the minimum even at one round trip a second
    sent = 0
    try:
        writer.write(b"POST /upload HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n")
        started = time.monotonic()
        while time.monotonic() - started < 4 * window_s:  # outlasts several windows
            await turn(proxy)
            writer.write(b"1000\r\n" + block + b"\r\n")
            await writer.drain()
            sent += len(block)
        writer.write(b"0\r\n\r\n")
        answer = await read_answer(reader)
    finally:
        await hang_up(writer)

    assert answer.status == 200, answer
    assert answer.body == f"POST /upload {sent}".encode()


# --- slow readers -------------------------------------------------------------------------


async def test_a_client_that_never_reads_a_download_is_cut_after_the_send_timeout(
    start_proxy: ProxyFactory, app: SlotUpstream
) -> None:
    proxy = await start(
        start_proxy,
        app,
        {
            "MWM_UPSTREAM__POOL_SIZE": "1",
            "MWM_UPSTREAM__POOL_TIMEOUT_S": str(POOL_TIMEOUT_S),
            "MWM_UPSTREAM__CLIENT_SEND_TIMEOUT_S": str(SHORT_S),
        },
    )
    # A small receive buffer: the proxy's writes stall after a few hundred KiB.
    reader, writer = await connect(proxy, receive_buffer=4096)
    try:
        writer.write(get("/download"))
        started = time.monotonic()
        # The app streams without end and the client reads nothing: once the buffers are
        # full, the proxy's write waits for the client, and then it gives up.
        await app.until(lambda: app.hung_up == ["/download"], SHORT_S + SLACK_S)
        elapsed = time.monotonic() - started

        await served_at_once(proxy)  # the pool's one slot is free again
        received = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await asyncio.wait_for(reader.read(1 << 20), SLACK_S):
                received += chunk
    finally:
        await hang_up(writer)

    assert SHORT_S <= elapsed < SHORT_S + SLACK_S
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert not received.endswith(b"0\r\n\r\n")  # cut, never a clean end


async def test_a_reading_client_is_never_cut_however_long_the_app_pauses_its_answer(
    start_proxy: ProxyFactory, app: SlotUpstream
) -> None:
    proxy = await start(
        start_proxy,
        app,
        {
            "MWM_UPSTREAM__CLIENT_SEND_TIMEOUT_S": str(SHORT_S),
            "MWM_LIMITS__BODY_TIMEOUT_S": str(2 * SHORT_S),
        },
    )
    app.release.clear()
    reader, writer = await connect(proxy)
    try:
        writer.write(get("/pause"))
        head = await asyncio.wait_for(reader.readuntil(b"5\r\nfirst\r\n"), SLACK_S)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")

        # A silent upload cut after twice the send timeout: that much time has passed.
        stalled, _ = await request(
            proxy, b"POST /upload HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nb"
        )
        assert stalled.status == 408
        app.release.set()

        rest = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), SLACK_S)
    finally:
        await hang_up(writer)
    assert rest == b"4\r\nlast\r\n0\r\n\r\n"


# --- one address, one share ---------------------------------------------------------------


async def test_one_address_cannot_take_more_than_its_share_while_another_gets_through(
    start_proxy: ProxyFactory, app: SlotUpstream
) -> None:
    proxy = await start(
        start_proxy,
        app,
        {
            "MWM_UPSTREAM__POOL_SIZE": "4",
            "MWM_UPSTREAM__POOL_TIMEOUT_S": str(POOL_TIMEOUT_S),
            "MWM_UPSTREAM__MAX_PER_CLIENT": "2",
        },
    )
    holders = [await connect(proxy, source="127.0.0.1") for _ in range(2)]
    for _, writer in holders:
        writer.write(get("/hold"))
    await app.until(lambda: len(app.paths("/hold")) == 2)

    refused, elapsed = await request(proxy, get("/normal"), source="127.0.0.1")
    assert refused.status == 503, refused
    assert elapsed < POOL_TIMEOUT_S  # at once, not after a wait for the pool
    assert int(refused.headers["retry-after"]) >= 1
    assert "2 requests from your address are already in progress" in refused.body.decode()
    await served_at_once(proxy, source="127.0.0.2")  # another address: served

    # The share comes back as the address's requests end, or its client leaves.
    for _, writer in holders:
        await hang_up(writer)
    await turn(proxy)
    await served_at_once(proxy, source="127.0.0.1")
    assert app.paths("/normal") == ["/normal", "/normal"]


async def test_the_share_is_per_client_address_after_the_trusted_hops(
    start_proxy: ProxyFactory, app: SlotUpstream
) -> None:
    proxy = await start(
        start_proxy,
        app,
        {
            "MWM_FORWARDED__TRUSTED_HOPS": "1",
            "MWM_UPSTREAM__MAX_PER_CLIENT": "1",
            "MWM_UPSTREAM__POOL_TIMEOUT_S": str(POOL_TIMEOUT_S),
        },
    )
    holders = []
    for client in ("203.0.113.7", "2001:db8::1"):
        holders.append(await connect(proxy))
        holders[-1][1].write(get("/hold", f"X-Forwarded-For: {client}"))
    await app.until(lambda: len(app.paths("/hold")) == 2)

    # The same clients as the trusted hop names them (whatever is forged to their left, and
    # anywhere in the same IPv6 /64) are over their share; others pass.
    for client, status in [
        ("203.0.113.7", 503),
        ("198.51.100.1, 203.0.113.7", 503),
        ("2001:db8::2", 503),
        ("203.0.113.7, 203.0.113.8", 200),
        ("2001:db8:0:1::1", 200),
    ]:
        answer, _ = await request(proxy, get("/normal", f"X-Forwarded-For: {client}"))
        assert answer.status == status, (client, answer)
    for _, writer in holders:
        await hang_up(writer)
