"""Large bodies stream through the proxy: intact, and without the proxy holding them.

The upstream, the proxy and the client all run in this test process, so its resident
memory is sampled on every chunk (no timer, no sleeping) and the peak compared with a
baseline taken after a warm-up transfer.  Buffering a 200 MB body anywhere would blow
the budget by 150 MB.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from tests.proxy.conftest import MakeForwardingProxy
from tests.proxy.upstream import Upstream, pattern, pattern_sha256

LARGE_BYTES = 200 * 1024 * 1024
GROWTH_BUDGET_BYTES = 50 * 1024 * 1024
_STATUS = Path("/proc/self/status")


def resident_bytes() -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class PeakMemory:
    """Highest resident size seen by :meth:`sample` since the baseline."""

    def __init__(self) -> None:
        self.baseline = resident_bytes()
        self.peak = self.baseline

    def sample(self, _size: int = 0) -> None:
        self.peak = max(self.peak, resident_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


async def _download(
    client: Any, size: int, *, chunked: bool = False, memory: PeakMemory | None = None
) -> tuple[aiohttp.ClientResponse, int, str]:
    params = {"size": str(size)}
    if chunked:
        params["chunked"] = "1"
    digest = hashlib.sha256()
    received = 0
    async with client.get("/download", params=params) as response:
        async for chunk in response.content.iter_chunked(64 * 1024):
            digest.update(chunk)
            received += len(chunk)
            if memory is not None:
                memory.sample()
    return response, received, digest.hexdigest()


async def test_a_200_mb_download_streams_through(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    proxy = await make_forwarding_proxy()
    client: TestClient[Any, Any] = await aiohttp_client(proxy.server, auto_decompress=False)
    await _download(client, 4 * 1024 * 1024)  # warm-up: buffers and pools exist

    memory = PeakMemory()
    upstream.on_chunk = memory.sample
    response, received, sha256 = await _download(client, LARGE_BYTES, memory=memory)

    assert response.status == 200
    assert response.headers["Content-Length"] == str(LARGE_BYTES)
    assert "Transfer-Encoding" not in response.headers
    assert (received, sha256) == (LARGE_BYTES, pattern_sha256(LARGE_BYTES))
    assert memory.growth < GROWTH_BUDGET_BYTES, f"grew by {memory.growth / 2**20:.0f} MiB"


async def test_a_200_mb_chunked_upload_streams_through(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    proxy = await make_forwarding_proxy()
    client: TestClient[Any, Any] = await aiohttp_client(proxy.server)
    async with client.post("/upload", data=pattern(4 * 1024 * 1024)) as response:
        assert response.status == 200  # warm-up

    memory = PeakMemory()
    upstream.on_chunk = memory.sample
    async with client.post("/upload", data=pattern(LARGE_BYTES)) as response:
        assert response.status == 200
        result = await response.json()

    assert result == {"size": LARGE_BYTES, "sha256": pattern_sha256(LARGE_BYTES)}
    assert upstream.requests[-1].headers.get("Transfer-Encoding") == "chunked"
    assert memory.growth < GROWTH_BUDGET_BYTES, f"grew by {memory.growth / 2**20:.0f} MiB"


async def test_an_upload_with_a_length_keeps_it(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    proxy = await make_forwarding_proxy()
    client: TestClient[Any, Any] = await aiohttp_client(proxy.server)
    size = 3 * 1024 * 1024 + 17

    async with client.post(
        "/upload", data=pattern(size), headers={"Content-Length": str(size)}
    ) as response:
        result = await response.json()

    assert result == {"size": size, "sha256": pattern_sha256(size)}
    assert upstream.requests[-1].headers["Content-Length"] == str(size)
    assert "Transfer-Encoding" not in upstream.requests[-1].headers


async def test_a_chunked_download_arrives_whole_and_chunked(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client: TestClient[Any, Any] = await aiohttp_client(proxy.server, auto_decompress=False)
    size = 3 * 1024 * 1024 + 5

    response, received, sha256 = await _download(client, size, chunked=True)

    assert response.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.headers
    assert (received, sha256) == (size, pattern_sha256(size))


async def test_a_client_leaving_mid_download_stops_the_upstream_transfer(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    proxy = await make_forwarding_proxy()
    client: TestClient[Any, Any] = await aiohttp_client(proxy.server, auto_decompress=False)

    response = await client.get("/download", params={"size": str(LARGE_BYTES)})
    await response.content.readexactly(1024 * 1024)
    response.close()  # drops the connection with the body unread
    await asyncio.wait_for(upstream.download_done.wait(), timeout=10)

    assert len(upstream.downloads) == 1
    assert upstream.downloads[0] < LARGE_BYTES // 2
    async with client.get("/echo") as follow_up:  # the proxy and its pool still work
        assert follow_up.status == 200
