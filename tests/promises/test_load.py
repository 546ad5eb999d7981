"""Promises about load, checked on ``mwm`` running as a real process (uvloop, as deployed).

- 2,000 concurrent keep-alive connections, each making requests through the proxy to the
  upstream, plus 500 idle keep-alive connections, are all served: every answer is the
  upstream's.
- Memory stays bounded: the process grows by less than :data:`CONNECTION_BUDGET_BYTES`
  per open connection at its peak (the README's *Limits and capacity* gives the figure
  measured here).
- Nothing leaks: once the clients have gone, no socket of theirs is left open in the
  proxy, and its other file descriptors are back to what they were before the load.

The proxy's file descriptors are read and compared as in the upstream-fault promises
(:mod:`tests.promises.descriptors`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from proxy.filelimit import raise_open_file_limit
from tests.mwmprocess import start_mwm, stop_mwm
from tests.promises.descriptors import assert_nothing_leaked, read_descriptors

ACTIVE_CONNECTIONS = 2000
IDLE_CONNECTIONS = 500
REQUESTS_PER_CONNECTION = 5
CONNECTION_BUDGET_BYTES = 32 * 1024
"""Peak growth of the proxy's resident memory per open client connection (measured: see
the README; the bound leaves room for allocator noise, not for a leak)."""
CONNECTS_IN_FLIGHT = 200
"""Connection attempts at once: under the listen backlog, so no SYN is dropped and
retried a second later."""
POOL_SIZE = 100
"""``MWM_UPSTREAM__POOL_SIZE``'s default: idle upstream connections kept at rest."""
UPSTREAM_BODY = b"upstream says ok"
REQUEST = b"GET /load HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: load\r\n\r\n"


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


async def test_thousands_of_connections_are_served_in_bounded_memory_and_released(
    small_upstream: TestServer,
) -> None:
    # This process holds the clients' ends (and the upstream's), mwm the same number plus
    # its pool: as mwm does, raise the soft open-file limit (1,024 on many systems).
    needed = ACTIVE_CONNECTIONS + IDLE_CONNECTIONS + POOL_SIZE + 200
    assert raise_open_file_limit() >= needed, f"the test needs `ulimit -Hn` >= {needed}"
    extra = {
        "MWM_LIMITS__KEEPALIVE_TIMEOUT_S": "300",
        "MWM_LIMITS__HEADER_TIMEOUT_S": "300",
        "MWM_UPSTREAM__KEEPALIVE_TIMEOUT_S": "300",
    }
    upstream_port = small_upstream.port
    assert upstream_port is not None
    process = await start_mwm(str(small_upstream.make_url("")).rstrip("/"), extra)
    port = URL(process.public).port
    assert port is not None

    def open_client_connections() -> int:
        return sum(1 for c in read_descriptors(process.pid).connections if c.local_port == port)

    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    clients: list[Client] = []
    try:
        # Warm up (first-use allocations, the upstream pool), then take the baseline.
        warm = await asyncio.gather(*(connect(port, gate) for _ in range(300)))
        await asyncio.gather(*(c.request() for c in warm))
        baseline = read_descriptors(process.pid)
        for client in warm:
            client.writer.close()
        await assert_nothing_leaked(
            process, baseline, upstream_port=upstream_port, idle_upstream_max=POOL_SIZE
        )
        baseline = read_descriptors(process.pid)
        baseline_rss = memory(process.pid)["VmRSS"]

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

        under_load = open_client_connections()
        used = memory(process.pid)
        per_connection = (used["VmHWM"] - baseline_rss) / len(clients)
        print(
            f"\n{len(clients)} connections, "
            f"{ACTIVE_CONNECTIONS * REQUESTS_PER_CONNECTION + IDLE_CONNECTIONS} requests "
            f"in {elapsed:.1f} s; RSS {baseline_rss / 2**20:.1f} MiB -> "
            f"{used['VmRSS'] / 2**20:.1f} MiB (peak {used['VmHWM'] / 2**20:.1f} MiB): "
            f"{per_connection / 1024:.1f} KiB per connection at the peak"
        )
        assert under_load == len(clients)  # all open at once, none dropped
        assert per_connection < CONNECTION_BUDGET_BYTES

        for client in clients:
            client.writer.close()
        clients.clear()
        # No client socket left, the other descriptors as before, the pool within its size.
        await assert_nothing_leaked(
            process, baseline, upstream_port=upstream_port, idle_upstream_max=POOL_SIZE
        )
    finally:
        for client in clients:
            client.writer.close()
        await stop_mwm(process)
