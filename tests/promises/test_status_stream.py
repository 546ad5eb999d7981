"""Promises of the status streams, over real sockets: ``GET /_mwm/status/stream`` on the public
listener and ``GET /status/stream`` on the management one (Server-Sent Events).

- every subscriber sees every settled state, in order of generation, never one twice; each
  event is exactly the document ``GET /_mwm/status`` (``/status``) answers, so the public
  stream shows nothing the public document would not;
- the first message says ``retry:``; heartbeats come at the set interval; the headers keep
  proxies from buffering or caching it;
- ``Last-Event-ID`` resumes: the current generation is not sent again;
- a client that never reads is dropped once its connection's buffer passes the bound,
  and what the broadcaster holds for a slow one is one event;
- the subscriber limit answers 503 with ``Retry-After``; ``/metrics`` counts the streams;
  0 switches the streams off;
- CORS only for the configured origins;
- SIGTERM with 100 open streams: every stream ends cleanly at once and the drain does not
  wait for them (a real ``mwm run`` process).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from controller.snapshot import ServiceReason, ServiceState, Snapshot
from proxy.statusstream import MAX_BUFFERED_BYTES
from tests.conftest import ProxyFactory, RunningProxy
from tests.mwmprocess import running_mwm
from tests.proxy.upstream import Upstream

PUBLIC = "/_mwm/status/stream"
MANAGEMENT = "/status/stream"
WAIT_S = 10.0


class Sse:
    """One open stream, read message by message (a message ends with an empty line)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.ids: list[int] = []
        self.data: list[bytes] = []

    async def message(self) -> bytes:
        raw = await asyncio.wait_for(self.response.content.readuntil(b"\n\n"), WAIT_S)
        if not raw.endswith(b"\n\n"):
            raise EOFError("the stream ended")
        for line in raw.splitlines():
            if line.startswith(b"id: "):
                self.ids.append(int(line[4:]))
            elif line.startswith(b"data: "):
                self.data.append(line[6:])
        return raw

    async def until_id(self, generation: int) -> None:
        while not self.ids or self.ids[-1] < generation:
            await self.message()


@dataclass
class Client:
    """A client session, and every stream it opened (closed after the test)."""

    http: aiohttp.ClientSession
    opened: list[aiohttp.ClientResponse] = field(default_factory=list)


@pytest.fixture
async def session() -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        client = Client(http)
        try:
            yield client
        finally:
            for response in client.opened:
                response.close()


async def open_stream(
    session: Client, url: str, **headers: str
) -> tuple[aiohttp.ClientResponse, Sse]:
    response = await session.http.get(url, headers=headers)
    session.opened.append(response)
    return response, Sse(response)


async def document(session: Client, url: str) -> bytes:
    async with session.http.get(url) as response:
        assert response.status == 200
        return await response.read()


async def test_every_subscriber_sees_every_settled_state_in_order(
    start_proxy: ProxyFactory, session: Client
) -> None:
    proxy = await start_proxy()
    streams = []
    for _ in range(4):
        response, sse = await open_stream(session, proxy.public_url + PUBLIC)
        assert response.status == 200
        first = await sse.message()
        assert first.startswith(b"retry: 5000\nid: ")  # the reconnection delay, first
        streams.append(sse)
    _, admin = await open_stream(session, proxy.management_url + MANAGEMENT)
    await admin.message()
    settled = [proxy.runtime.store.current.generation]
    for i in range(12):
        await proxy.switch(enabled=i % 2 == 0, reason=f"step {i}")
        generation = proxy.runtime.store.current.generation
        settled.append(generation)
        public_document = await document(session, proxy.public_url + "/_mwm/status")
        for sse in streams:
            await sse.until_id(generation)
            assert sse.data[-1] == public_document  # the same document, nothing more
        await admin.until_id(generation)
        assert admin.data[-1] == await document(session, proxy.management_url + "/status")
    for sse in [*streams, admin]:
        assert sse.ids == sorted(set(sse.ids))  # increasing, never twice
        assert set(settled) <= set(sse.ids)


async def test_the_headers_and_heartbeats(start_proxy: ProxyFactory, session: Client) -> None:
    interval = 0.2
    proxy = await start_proxy({"MWM_STATUS__HEARTBEAT_S": str(interval)})
    for url in (proxy.public_url + PUBLIC, proxy.management_url + MANAGEMENT):
        response, sse = await open_stream(session, url)
        headers = response.headers
        assert headers["Content-Type"] == "text/event-stream"
        assert headers["Cache-Control"] == "no-store"
        assert headers["X-Accel-Buffering"] == "no"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Server"] == "mwm"
        assert "Access-Control-Allow-Origin" not in headers  # no CORS unless configured
        await sse.message()
        loop = asyncio.get_running_loop()
        times = []
        for _ in range(3):
            assert await sse.message() == b": hb\n\n"
            times.append(loop.time())
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # Not more often than set; the upper bound only tells 0.2 s from the 15 s default
        # with room for a busy machine.
        assert all(interval * 0.8 <= gap <= 5.0 for gap in gaps), gaps
        response.close()


async def test_last_event_id_resumes(start_proxy: ProxyFactory, session: Client) -> None:
    proxy = await start_proxy({"MWM_STATUS__HEARTBEAT_S": "0.1"})
    current = proxy.runtime.store.current.generation
    _, resumed = await open_stream(
        session, proxy.public_url + PUBLIC, **{"Last-Event-ID": str(current)}
    )
    assert await resumed.message() == b"retry: 5000\n\n"  # nothing missed: no event
    assert await resumed.message() == b": hb\n\n"
    _, behind = await open_stream(session, proxy.public_url + PUBLIC, **{"Last-Event-ID": "0"})
    await behind.message()
    assert behind.ids == [current]
    await proxy.switch(enabled=True, reason="resumed")
    await resumed.until_id(current + 1)
    assert resumed.ids == [current + 1]
    assert json.loads(resumed.data[-1])["reason"] == "resumed"


async def test_a_client_that_never_reads_is_dropped(
    start_proxy: ProxyFactory, session: Client
) -> None:
    proxy = await start_proxy()
    assert proxy.runtime.services is not None
    (stream,) = [s for s in proxy.runtime.services.streams if s.name == "management"]
    sleeper = socket.socket()
    sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sleeper.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sleeper, ("127.0.0.1", proxy.management_port))
    await loop.sock_sendall(sleeper, b"GET /status/stream HTTP/1.1\r\nHost: mwm\r\n\r\n")
    _, reader = await open_stream(session, proxy.management_url + MANAGEMENT)
    await reader.message()
    assert len(stream.subscribers) == 2
    big = "x" * 50_000
    try:
        for i in range(2000):
            state = proxy.runtime.store.publish(Snapshot(synced=True, errors=(f"{i} {big}",)))
            await reader.until_id(state.generation)
            # Whatever its backlog, the broadcaster holds at most one event for it.
            assert stream.pending_events() <= 1
            if len(stream.subscribers) == 1:
                break
        else:
            raise AssertionError("the client that never reads was never dropped")
        held = [s.transport for s in stream.subscribers]
        assert all(t is not None and t.get_write_buffer_size() <= MAX_BUFFERED_BYTES for t in held)
        # Its connection was aborted: the socket ends (after what the kernel holds).
        sleeper.setblocking(True)
        sleeper.settimeout(WAIT_S)
        while True:
            try:
                if not await asyncio.to_thread(sleeper.recv, 1 << 20):
                    break
            except ConnectionResetError:
                break
    finally:
        sleeper.close()


async def test_the_limit_the_gauge_and_the_switch_off(
    start_proxy: ProxyFactory, session: Client
) -> None:
    proxy = await start_proxy(
        {"MWM_STATUS__MAX_SUBSCRIBERS": "2", "MWM_STATUS__STREAM_RETRY_S": "7"}
    )
    opened = []
    for url in (proxy.public_url + PUBLIC, proxy.management_url + MANAGEMENT):
        for _ in range(2):
            response, sse = await open_stream(session, url)
            assert response.status == 200
            await sse.message()
            opened.append(response)
        async with session.http.get(url) as refused:
            assert refused.status == 503
            assert refused.headers["Retry-After"] == "7"
            assert refused.headers["Content-Type"] == "application/problem+json"
            assert (await refused.json())["status"] == 503
    assert await gauge(proxy) == {"public": 2, "management": 2}
    for response in opened:
        response.close()
    # The server learns at once that the clients have gone: wait on the gauge.
    async with asyncio.timeout(WAIT_S):
        while await gauge(proxy) != {"public": 0, "management": 0}:
            pass
    response, sse = await open_stream(session, proxy.public_url + PUBLIC)
    assert response.status == 200
    response.close()


async def test_zero_subscribers_switches_the_streams_off(
    start_proxy: ProxyFactory, session: Client
) -> None:
    proxy = await start_proxy({"MWM_STATUS__MAX_SUBSCRIBERS": "0"})
    async with session.http.get(proxy.public_url + PUBLIC) as response:
        assert response.status == 200  # forwarded to the application like any path
        assert (await response.json())["path"] == PUBLIC
    async with session.http.get(proxy.management_url + MANAGEMENT) as response:
        assert response.status == 404


async def gauge(proxy: RunningProxy) -> dict[str, int]:
    async with proxy.session.get(f"{proxy.management_url}/metrics") as response:
        text = await response.text()
    return {
        m[1]: int(float(m[2]))
        for m in re.finditer(r'^mwm_status_subscribers\{listener="(\w+)"\} (\S+)$', text, re.M)
    }


async def test_the_public_stream_leaks_nothing_the_document_would_not(
    start_proxy: ProxyFactory, session: Client
) -> None:
    proxy = await start_proxy({"MWM_PAGE__SHOW_SERVICES": "true"})
    _, sse = await open_stream(session, proxy.public_url + PUBLIC)
    await sse.message()
    service = ServiceState(
        name="checkout",
        namespace="secret-namespace",
        critical=True,
        ready_endpoints=0,
        total_endpoints=17,
        reason=ServiceReason.NO_READY_ENDPOINTS,
    )
    state = proxy.runtime.store.publish(
        Snapshot(services=(service,), synced=True, errors=("kube token expired",))
    )
    await sse.until_id(state.generation)
    assert sse.data[-1] == await document(session, proxy.public_url + "/_mwm/status")
    sent = json.loads(sse.data[-1])
    assert sent["active"] is True
    assert sent["services"] == [{"name": "checkout", "ready": False}]
    for secret in (b"secret-namespace", b"17", b"kube token", b"generation"):
        assert secret not in sse.data[-1]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [("https://shop.example", True), ("https://evil.example", False), (None, False)],
)
async def test_cors_only_for_configured_origins(
    start_proxy: ProxyFactory,
    session: Client,
    origin: str | None,
    allowed: bool,
) -> None:
    proxy = await start_proxy({"MWM_STATUS__CORS_ORIGINS": "https://shop.example"})
    headers = {"Origin": origin} if origin else {}
    response, _sse = await open_stream(session, proxy.public_url + PUBLIC, **headers)
    assert response.status == 200
    assert response.headers.get("Access-Control-Allow-Origin") == (origin if allowed else None)
    assert response.headers["Vary"] == "Origin"
    response.close()
    preflight = {**headers, "Access-Control-Request-Method": "GET"}
    async with session.http.options(proxy.public_url + PUBLIC, headers=preflight) as answer:
        assert answer.status == 204
        assert answer.headers.get("Access-Control-Allow-Origin") == (origin if allowed else None)
        if allowed:
            assert answer.headers["Access-Control-Allow-Headers"] == "Last-Event-ID"
            assert answer.headers["Access-Control-Allow-Methods"] == "GET, HEAD"


def _logged_at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["time"])


async def test_sigterm_ends_100_streams_without_holding_the_drain(
    recording_upstream: Upstream, session: Client
) -> None:
    settings = {"MWM_SHUTDOWN__DRAIN_TIMEOUT_S": "30", "MWM_STATUS__HEARTBEAT_S": "60"}
    async with running_mwm(recording_upstream.url, settings) as mwm:
        streams = []
        for _ in range(100):
            response, sse = await open_stream(session, mwm.public + PUBLIC)
            assert response.status == 200
            await sse.message()
            streams.append(sse)
        mwm.terminate()
        draining = await mwm.logged("shutting down: draining in-flight requests")
        for sse in streams:
            # The last chunk arrives and the stream ends cleanly (no reset, no error).
            rest = await asyncio.wait_for(sse.response.content.read(), WAIT_S)
            assert rest == b""
            assert sse.response.content.at_eof()
        stopped = await mwm.logged("stopped")
        assert await mwm.wait() == 0
    # Far from the 30 s drain timeout: the streams did not hold it.
    assert (_logged_at(stopped) - _logged_at(draining)).total_seconds() < 15


async def test_the_connection_timeouts_do_not_cut_a_stream(
    start_proxy: ProxyFactory, session: Client
) -> None:
    # The header and keep-alive timers are for requests not yet sent and idle connections;
    # a stream outlives both (here ten times over) on both listeners.
    proxy = await start_proxy(
        {
            "MWM_LIMITS__HEADER_TIMEOUT_S": "0.1",
            "MWM_LIMITS__KEEPALIVE_TIMEOUT_S": "0.1",
            "MWM_STATUS__HEARTBEAT_S": "0.1",
        }
    )
    for url in (proxy.public_url + PUBLIC, proxy.management_url + MANAGEMENT):
        _, sse = await open_stream(session, url)
        await sse.message()
        for _ in range(10):
            assert await sse.message() == b": hb\n\n"


async def test_a_reader_that_falls_behind_catches_up_with_the_latest(
    start_proxy: ProxyFactory, session: Client
) -> None:
    proxy = await start_proxy()
    _, slow = await open_stream(session, proxy.public_url + PUBLIC)
    _, fast = await open_stream(session, proxy.public_url + PUBLIC)
    await fast.message()
    for i in range(40):  # the slow one reads nothing meanwhile
        await proxy.switch(enabled=i % 2 == 0, reason=f"step {i}")
        await fast.until_id(proxy.runtime.store.current.generation)
    latest = proxy.runtime.store.current.generation
    await slow.until_id(latest)
    assert slow.ids == sorted(set(slow.ids))  # what it got is in order, never twice
    assert slow.ids[-1] == latest
    assert slow.data[-1] == fast.data[-1]
