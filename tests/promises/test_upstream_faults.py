"""Promises when the upstream fails: an error page in time, never a hang, never a leak.

Each test runs ``mwm run`` as a real process in front of an upstream that misbehaves in
one way, and counts the proxy's file descriptors before and after (``/proc``, see
:mod:`tests.promises.descriptors`):

- upstream down at start: the proxy starts anyway, answers its 502 page, and forwards as
  soon as the upstream listens on that port, without a restart;
- upstream killed mid-response: the client sees an aborted response (an error page when
  nothing was sent yet), never a 200 that ends cleanly with half the body, whether the
  body had a Content-Length or was chunked; the next upstream on the port is used;
- upstream slow to connect (its accept queue is full, so the handshake never completes):
  504 within the connect timeout, and traffic as soon as it accepts again;
- upstream slow to answer: 504 within the read timeout;
- upstream answering garbage instead of HTTP: 502 at once, not after a timeout;
- upstream closing keep-alive connections at random: every response is the right body or
  the 502 page, never another request's body, a truncated body or a hang.

Finer points of the forwarding itself (which error in which phase) are in
``tests/proxy/test_forwarding.py``; these are the promises, end to end.
"""

from __future__ import annotations

import asyncio
import random
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.mwmprocess import ROOT, MwmProcess, running_mwm
from tests.promises.descriptors import Descriptors, assert_nothing_leaked, read_descriptors
from tests.proxy.upstream import Upstream, free_port, start_upstream

PROBLEM_JSON = {"Accept": "application/problem+json"}
ERROR_TIMEOUT_S = 10.0
"""Longest wait for an error page where the proxy must not wait for a timeout at all."""
TIMEOUT_SLACK_S = 5.0
"""Allowance on top of a configured timeout (a shared 2-core machine)."""


async def _problem(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    """The proxy's own error page, as problem+json, for ``status``."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    assert response.headers["Cache-Control"] == "no-store"
    problem: dict[str, Any] = await response.json(content_type=None)
    assert problem["status"] == status
    return problem


async def _echo_path(response: aiohttp.ClientResponse) -> str:
    assert response.status == 200, await response.text()
    echo: dict[str, Any] = await response.json()
    path: str = echo["path"]
    return path


@dataclass
class UpstreamProcess:
    """``tests/proxy/upstream.py`` in a process of its own, to be killed for real."""

    proc: asyncio.subprocess.Process
    port: int

    async def parked(self) -> None:
        """Wait until a ``/slow`` request is parked in the upstream."""
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), ERROR_TIMEOUT_S)
        assert line == b"slow arrived\n", line

    async def kill(self) -> None:
        self.proc.kill()
        await self.proc.wait()


@pytest.fixture
async def upstream_processes() -> AsyncIterator[list[UpstreamProcess]]:
    """Upstream processes started by a test (with :func:`_start_upstream_process`)."""
    started: list[UpstreamProcess] = []
    yield started
    for upstream in started:
        if upstream.proc.returncode is None:
            await upstream.kill()


async def _start_upstream_process(started: list[UpstreamProcess], port: int) -> UpstreamProcess:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.proxy.upstream",
        "--port",
        str(port),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    upstream = UpstreamProcess(proc, port)
    started.append(upstream)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line == f"listening {port}\n".encode(), line
    return upstream


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = await start_upstream()
    yield server
    await server.close()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A user's browser: one keep-alive session (the test closes it to end its connections)."""
    session = aiohttp.ClientSession()
    yield session
    await session.close()


async def _settle(
    mwm: MwmProcess,
    baseline: Descriptors,
    client: aiohttp.ClientSession,
    *,
    upstream_port: int,
    idle_upstream_max: int = 0,
) -> None:
    """The user leaves; then the proxy holds what it held at start (and its pool)."""
    await client.close()
    await assert_nothing_leaked(
        mwm, baseline, upstream_port=upstream_port, idle_upstream_max=idle_upstream_max
    )


async def test_upstream_down_at_start_gets_the_502_page_then_traffic_as_soon_as_it_listens(
    client: aiohttp.ClientSession,
) -> None:
    port = free_port()
    async with running_mwm(f"http://127.0.0.1:{port}") as mwm:
        baseline = read_descriptors(mwm.pid)
        for _ in range(3):
            async with client.get(f"{mwm.public}/shop", headers=PROBLEM_JSON) as response:
                problem = await _problem(response, 502)
            assert problem["detail"] == "upstream refused the connection"

        upstream = await start_upstream(port=port)
        try:
            async with client.get(f"{mwm.public}/shop") as response:
                assert await _echo_path(response) == "/shop"
            await _settle(mwm, baseline, client, upstream_port=port, idle_upstream_max=1)
        finally:
            await upstream.close()


@pytest.mark.parametrize(
    ("query", "streamed"),
    [
        pytest.param({"head_bytes": "1000"}, False, id="content-length-small-body"),
        pytest.param({"head_bytes": str(256 * 1024)}, True, id="content-length-large-body"),
        pytest.param({"head_bytes": "1000", "chunked": "1"}, True, id="chunked-body"),
    ],
)
async def test_upstream_killed_mid_response_gives_an_aborted_response_never_a_clean_half_body(
    client: aiohttp.ClientSession,
    upstream_processes: list[UpstreamProcess],
    query: Mapping[str, str],
    streamed: bool,
) -> None:
    port = free_port()
    upstream = await _start_upstream_process(upstream_processes, port)
    sent = int(query["head_bytes"])
    async with running_mwm(f"http://127.0.0.1:{port}") as mwm:
        baseline = read_descriptors(mwm.pid)
        if streamed:
            url = f"{mwm.public}/slow"
            async with client.get(url, params=query, headers=PROBLEM_JSON) as response:
                # The head and what the upstream sent are relayed at once...
                assert response.status == 200
                assert len(await response.content.readexactly(sent)) == sent
                await upstream.kill()
                # ...and its death aborts the response: no clean end after half a body.
                with pytest.raises(aiohttp.ClientPayloadError):
                    await asyncio.wait_for(response.content.read(), ERROR_TIMEOUT_S)
        else:
            # A small body is read whole before anything is sent: still time for the page.
            request = asyncio.create_task(
                client.get(f"{mwm.public}/slow", params=query, headers=PROBLEM_JSON)
            )
            await upstream.parked()
            await upstream.kill()
            async with await asyncio.wait_for(request, ERROR_TIMEOUT_S) as response:
                problem = await _problem(response, 502)
            assert problem["detail"] == "upstream sent an incomplete response body"

        await _start_upstream_process(upstream_processes, port)
        async with client.get(f"{mwm.public}/after") as response:
            assert await _echo_path(response) == "/after"
        await _settle(mwm, baseline, client, upstream_port=port, idle_upstream_max=1)


async def test_upstream_slow_to_connect_gets_504_within_the_connect_timeout(
    client: aiohttp.ClientSession,
) -> None:
    # A listener with an accept queue of one, filled: the kernel drops further SYNs, so
    # a connection attempt hangs as it does to an overloaded or black-holed host.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = socket.create_connection(("127.0.0.1", port))
    connect_timeout_s = 0.5
    settings = {
        "MWM_UPSTREAM__CONNECT_TIMEOUT_S": str(connect_timeout_s),
        "MWM_UPSTREAM__READ_TIMEOUT_S": "60",
    }
    runner = web.AppRunner(_echo_app())
    try:
        async with running_mwm(f"http://127.0.0.1:{port}", settings) as mwm:
            baseline = read_descriptors(mwm.pid)
            started = time.monotonic()
            async with client.get(f"{mwm.public}/shop", headers=PROBLEM_JSON) as response:
                problem = await _problem(response, 504)
            elapsed_s = time.monotonic() - started
            assert problem["detail"] == "upstream did not accept a connection within 0.5 s"
            assert connect_timeout_s <= elapsed_s < connect_timeout_s + TIMEOUT_SLACK_S

            # The upstream starts accepting: served at once, by the same proxy.
            listener.accept()[0].close()
            await runner.setup()
            await web.SockSite(runner, listener).start()
            async with client.get(f"{mwm.public}/shop") as response:
                assert await response.text() == "echo /shop"
            await _settle(mwm, baseline, client, upstream_port=port, idle_upstream_max=1)
    finally:
        queued.close()
        await runner.cleanup()
        listener.close()


def _echo_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=f"echo {request.path}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", echo)
    return app


async def test_upstream_slow_to_answer_gets_504_within_the_read_timeout(
    client: aiohttp.ClientSession, upstream: Upstream
) -> None:
    read_timeout_s = 0.5
    settings = {"MWM_UPSTREAM__READ_TIMEOUT_S": str(read_timeout_s)}
    async with running_mwm(upstream.url, settings) as mwm:
        baseline = read_descriptors(mwm.pid)
        started = time.monotonic()
        async with (
            aiohttp.ClientSession() as user,
            user.get(f"{mwm.public}/slow", headers=PROBLEM_JSON) as response,
        ):
            problem = await _problem(response, 504)
        elapsed_s = time.monotonic() - started
        assert upstream.slow_arrived.is_set()
        assert problem["detail"] == "upstream did not respond within 0.5 s"
        assert read_timeout_s <= elapsed_s < read_timeout_s + TIMEOUT_SLACK_S
        # The silent connection is given up, not kept in the pool.
        await assert_nothing_leaked(mwm, baseline, upstream_port=upstream.port)

        async with client.get(f"{mwm.public}/after") as response:
            assert await _echo_path(response) == "/after"
        await _settle(mwm, baseline, client, upstream_port=upstream.port, idle_upstream_max=1)


@dataclass(frozen=True)
class Garbage:
    """What a broken upstream sends on every connection, and whether it then hangs up."""

    data: bytes
    hang_up: bool


GARBAGE = {
    "ssh-banner-kept-open": Garbage(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", hang_up=False),
    "binary-then-close": Garbage(bytes(range(256)) * 16, hang_up=True),
    "bad-status-line-kept-open": Garbage(b"HTTP/1.1 2OO OK\r\n\r\n", hang_up=False),
    "header-without-colon-kept-open": Garbage(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nnot a header\r\n\r\nok", hang_up=False
    ),
    "negative-content-length-kept-open": Garbage(
        b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok", hang_up=False
    ),
    "nothing-then-close": Garbage(b"", hang_up=True),
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
async def test_upstream_answering_garbage_gets_502_at_once(
    client: aiohttp.ClientSession, garbage: Garbage
) -> None:
    connections: list[asyncio.StreamWriter] = []
    fixed = False

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        if fixed:  # speaks HTTP again
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfixed")
            writer.close()
            return
        writer.write(garbage.data)
        if garbage.hang_up:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with running_mwm(f"http://127.0.0.1:{port}") as mwm:  # read timeout: 60 s
            baseline = read_descriptors(mwm.pid)
            for _ in range(2):
                request = client.get(f"{mwm.public}/shop", headers=PROBLEM_JSON)
                async with await asyncio.wait_for(request, ERROR_TIMEOUT_S) as response:
                    problem = await _problem(response, 502)
                assert "upstream" in problem["detail"]
            # A broken connection is closed, never pooled, even when the upstream keeps it.
            await client.close()
            await assert_nothing_leaked(mwm, baseline, upstream_port=port)

            fixed = True
            async with (
                aiohttp.ClientSession() as user,
                user.get(f"{mwm.public}/shop") as response,
            ):
                assert (response.status, await response.text()) == (200, "fixed")
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


class _ClosingAtRandom(asyncio.Protocol):
    """A minimal HTTP/1.1 upstream that answers GETs with their path, and after each
    answer may close the connection at once or a moment later (like an idle timeout
    firing while the proxy reuses the connection), never saying so in a header."""

    def __init__(self, rng: random.Random, closes: Counter[str]) -> None:
        self._rng = rng
        self._closes = closes
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        self._buffer += data
        while b"\r\n\r\n" in self._buffer:
            head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            body = b"upstream answer for " + path
            transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            draw = self._rng.random()
            if draw < 0.25:
                self._closes["at once"] += 1
                transport.close()
                return
            if draw < 0.5:
                self._closes["a moment later"] += 1
                delay_s = self._rng.uniform(0, 0.003)
                asyncio.get_running_loop().call_later(delay_s, transport.close)


async def test_upstream_closing_keepalive_connections_at_random_never_gives_a_wrong_body(
    client: aiohttp.ClientSession,
) -> None:
    clients, requests_each = 8, 40
    rng = random.Random(6)  # a fixed seed: the same storm on every run
    closes: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _ClosingAtRandom(rng, closes), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    outcomes: Counter[str] = Counter()
    try:
        async with running_mwm(f"http://127.0.0.1:{port}") as mwm:
            baseline = read_descriptors(mwm.pid)

            async def user(index: int) -> None:
                async with aiohttp.ClientSession() as session:
                    for n in range(requests_each):
                        path = f"/user{index}/request{n}"
                        async with session.get(
                            f"{mwm.public}{path}", headers=PROBLEM_JSON
                        ) as response:
                            if response.status == 502:
                                await _problem(response, 502)
                                outcomes["502 page"] += 1
                                continue
                            assert response.status == 200
                            assert await response.read() == f"upstream answer for {path}".encode()
                            outcomes["right body"] += 1

            async with asyncio.timeout(60):  # a hang fails here, not at the suite's timeout
                await asyncio.gather(*(user(i) for i in range(clients)))
            await _settle(mwm, baseline, client, upstream_port=port, idle_upstream_max=clients)
    finally:
        server.close()
        await server.wait_closed()

    assert sum(outcomes.values()) == clients * requests_each
    assert outcomes["right body"] > clients * requests_each // 2, outcomes
    assert closes["at once"] > 0, closes  # the storm happened
    assert closes["a moment later"] > 0, closes
