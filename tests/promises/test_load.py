"""Promises about load, checked on ``mwm`` running as a real process (uvloop, as deployed).

- 2,000 concurrent keep-alive connections, each making requests through the proxy to the
  upstream, plus 500 idle keep-alive connections, are all served: every answer is the
  upstream's.
- Memory stays bounded: the process grows by less than :data:`CONNECTION_BUDGET_BYTES`
  per open connection at its peak (the README's *Limits and capacity* gives the figure
  measured here).
- Nothing leaks: once the clients have gone, no socket of theirs is left open in the
  proxy, and its other file descriptors are back to what they were before the load.

The proxy's file descriptors are read from ``/proc/<pid>/fd`` and classified by the TCP
port each socket is bound to (``/proc/<pid>/net/tcp``).  Waiting for the proxy to notice
closed connections is done by round trips to its management listener, never by
sleeping: each one is a pass of its event loop.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.test_process import Process, _drain_stderr, start_process

ACTIVE_CONNECTIONS = 2000
IDLE_CONNECTIONS = 500
REQUESTS_PER_CONNECTION = 5
CONNECTION_BUDGET_BYTES = 32 * 1024
"""Peak growth of the proxy's resident memory per open client connection (measured: see
the README; the bound leaves room for allocator noise, not for a leak)."""
CONNECTS_IN_FLIGHT = 200
"""Connection attempts at once: under the listen backlog, so no SYN is dropped and
retried a second later."""
UPSTREAM_BODY = b"upstream says ok"
REQUEST = b"GET /load HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: load\r\n\r\n"


@dataclass
class Sockets:
    """The proxy's file descriptors, by what they are."""

    public: int
    """Client connections on the public listener (not the listener itself)."""
    upstream: int
    """Pooled connections to the upstream."""
    other: int
    """Everything else: listeners, the event loop's, pipes, files."""


def _ports_by_inode(pid: int) -> dict[str, tuple[int, int, str]]:
    """Socket inode -> (local port, remote port, TCP state) for the process's namespace."""
    found = {}
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            found[inode] = (
                int(local.rsplit(":", 1)[1], 16),
                int(remote.rsplit(":", 1)[1], 16),
                state,
            )
    return found


def sockets(pid: int, *, public_port: int, upstream_port: int) -> Sockets:
    ports = _ports_by_inode(pid)
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue  # closed while we looked
        inode = target[len("socket:[") : -1] if target.startswith("socket:[") else None
        local, remote, state = ports.get(inode, (0, 0, "")) if inode else (0, 0, "")
        if local == public_port and state != "0A":  # 0A: LISTEN
            kinds["public"] += 1
        elif remote == upstream_port:
            kinds["upstream"] += 1
        else:
            kinds["other"] += 1
    return Sockets(public=kinds["public"], upstream=kinds["upstream"], other=kinds["other"])


def memory(pid: int) -> dict[str, int]:
    """``VmRSS`` (now) and ``VmHWM`` (peak) in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024
    return values


@pytest.fixture
async def small_upstream() -> AsyncIterator[TestServer]:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=UPSTREAM_BODY)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def request(self) -> None:
        self.writer.write(REQUEST)
        head = await self.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        assert await self.reader.readexactly(length) == UPSTREAM_BODY


async def connect(port: int, gate: asyncio.Semaphore) -> Client:
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return Client(reader, writer)


async def wait_until(
    predicate: object, session: aiohttp.ClientSession, management: str, *, rounds: int = 5000
) -> None:
    """Poll ``predicate`` between round trips to the proxy's management listener."""
    assert callable(predicate)
    for _ in range(rounds):
        if predicate():
            return
        async with session.get(f"{management}/healthz") as response:
            await response.read()
    pytest.fail("the proxy did not get there")


async def test_thousands_of_connections_are_served_in_bounded_memory_and_released(
    small_upstream: TestServer,
) -> None:
    process: Process = await start_process(
        small_upstream,
        {
            "MWM_LIMITS__KEEPALIVE_TIMEOUT_S": "300",
            "MWM_LIMITS__HEADER_TIMEOUT_S": "300",
            "MWM_UPSTREAM__KEEPALIVE_TIMEOUT_S": "300",
        },
    )
    logs = asyncio.create_task(_drain_stderr(process.proc))
    pid = process.proc.pid
    port = int(process.public.rsplit(":", 1)[1])
    upstream_port = small_upstream.port
    assert upstream_port is not None

    def count() -> Sockets:
        return sockets(pid, public_port=port, upstream_port=upstream_port)

    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    clients: list[Client] = []
    try:
        async with aiohttp.ClientSession() as session:
            # Warm up (first-use allocations, the upstream pool), then take the baseline.
            warm = await asyncio.gather(*(connect(port, gate) for _ in range(300)))
            await asyncio.gather(*(c.request() for c in warm))
            for client in warm:
                client.writer.close()
            await wait_until(lambda: count().public == 0, session, process.management)
            baseline_sockets = count()
            baseline = memory(pid)["VmRSS"]

            started = time.monotonic()
            idle = await asyncio.gather(*(connect(port, gate) for _ in range(IDLE_CONNECTIONS)))
            clients.extend(idle)
            await asyncio.gather(*(c.request() for c in idle))  # then they stay idle
            active = await asyncio.gather(*(connect(port, gate) for _ in range(ACTIVE_CONNECTIONS)))
            clients.extend(active)
            # All 2,500 are open now; the active ones make their requests concurrently.
            for _ in range(REQUESTS_PER_CONNECTION):
                await asyncio.gather(*(c.request() for c in active))
            elapsed = time.monotonic() - started

            under_load = count()
            used = memory(pid)
            per_connection = (used["VmHWM"] - baseline) / len(clients)
            print(
                f"\n{len(clients)} connections, "
                f"{ACTIVE_CONNECTIONS * REQUESTS_PER_CONNECTION + IDLE_CONNECTIONS} requests "
                f"in {elapsed:.1f} s; RSS {baseline / 2**20:.1f} MiB -> "
                f"{used['VmRSS'] / 2**20:.1f} MiB (peak {used['VmHWM'] / 2**20:.1f} MiB): "
                f"{per_connection / 1024:.1f} KiB per connection at the peak"
            )
            assert under_load.public == len(clients)  # all open at once, none dropped
            assert per_connection < CONNECTION_BUDGET_BYTES

            for client in clients:
                client.writer.close()
            clients.clear()
            await wait_until(lambda: count().public == 0, session, process.management)
            after = count()
            assert after.other == baseline_sockets.other
            assert after.upstream <= 100  # the pool's size, whatever the load was
    finally:
        for client in clients:
            client.writer.close()
        process.proc.terminate()
        await asyncio.wait_for(process.proc.wait(), 20)
        await logs
