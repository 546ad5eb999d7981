"""HTTP and TCP probes against real sockets, and the thresholds that smooth them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from controller.probes import Prober, ProbeResult, probe_http, probe_tcp
from tests.controller.conftest import Target


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        yield client


async def test_http_probe_passes_on_200(target: Target, session: aiohttp.ClientSession) -> None:
    result = await probe_http(session, target.url(), expect_status=None, timeout_s=2)
    assert result == ProbeResult(ok=True, detail="HTTP 200")
    assert target.paths == ["/healthz"]


async def test_http_probe_fails_on_503(target: Target, session: aiohttp.ClientSession) -> None:
    target.healthy = False
    result = await probe_http(session, target.url(), expect_status=None, timeout_s=2)
    assert result == ProbeResult(ok=False, detail="HTTP 503")


async def test_http_probe_fails_on_a_status_not_expected(
    target: Target, session: aiohttp.ClientSession
) -> None:
    result = await probe_http(session, target.url(), expect_status=frozenset({204}), timeout_s=2)
    assert result == ProbeResult(ok=False, detail="HTTP 200")


async def test_http_probe_accepts_a_listed_error_status(
    target: Target, session: aiohttp.ClientSession
) -> None:
    target.healthy = False
    result = await probe_http(
        session, target.url(), expect_status=frozenset({200, 503}), timeout_s=2
    )
    assert result == ProbeResult(ok=True, detail="HTTP 503")


async def test_http_probe_does_not_follow_redirects(
    target: Target, session: aiohttp.ClientSession
) -> None:
    result = await probe_http(session, target.url("/redirect"), expect_status=None, timeout_s=2)
    assert result == ProbeResult(ok=True, detail="HTTP 302")
    assert target.paths == ["/redirect"]
    strict = await probe_http(
        session, target.url("/redirect"), expect_status=frozenset({200}), timeout_s=2
    )
    assert strict == ProbeResult(ok=False, detail="HTTP 302")


async def test_http_probe_reports_connection_refused(
    session: aiohttp.ClientSession, closed_port: int
) -> None:
    result = await probe_http(
        session, f"http://127.0.0.1:{closed_port}/healthz", expect_status=None, timeout_s=2
    )
    assert result == ProbeResult(ok=False, detail="connection refused")


async def test_http_probe_times_out(target: Target, session: aiohttp.ClientSession) -> None:
    result = await probe_http(session, target.url("/slow"), expect_status=None, timeout_s=0.05)
    assert result == ProbeResult(ok=False, detail="timeout after 0.05s")


async def test_http_probe_propagates_cancellation(
    target: Target, session: aiohttp.ClientSession
) -> None:
    task = asyncio.create_task(
        probe_http(session, target.url("/slow"), expect_status=None, timeout_s=30)
    )
    await asyncio.wait_for(target.entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_tcp_probe_connects_and_closes() -> None:
    accepted = asyncio.Event()
    closed_by_peer = asyncio.Event()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        if await reader.read() == b"":  # EOF: the probe closed its side cleanly
            closed_by_peer.set()
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await probe_tcp("127.0.0.1", port, timeout_s=2)
        assert result.ok
        await asyncio.wait_for(closed_by_peer.wait(), 5)
    assert accepted.is_set()


async def test_tcp_probe_reports_connection_refused(closed_port: int) -> None:
    result = await probe_tcp("127.0.0.1", closed_port, timeout_s=2)
    assert result == ProbeResult(ok=False, detail="connection refused")


def http_prober(
    session: aiohttp.ClientSession,
    url: str,
    *,
    failure_threshold: int = 3,
    success_threshold: int = 1,
) -> Prober:
    async def check() -> ProbeResult:
        return await probe_http(session, url, expect_status=None, timeout_s=2)

    return Prober(
        check,
        interval_s=0.01,
        failure_threshold=failure_threshold,
        success_threshold=success_threshold,
    )


async def test_prober_needs_consecutive_failures_before_not_ready(
    target: Target, session: aiohttp.ClientSession
) -> None:
    prober = http_prober(session, target.url(), failure_threshold=3)
    assert prober.ready is None  # not known before the first probe

    assert prober.record(await probe_http(session, target.url(), expect_status=None, timeout_s=2))
    assert prober.ready is True

    target.healthy = False
    seen = []
    for _ in range(3):
        changed = prober.record(
            await probe_http(session, target.url(), expect_status=None, timeout_s=2)
        )
        seen.append((changed, prober.ready))
    assert seen == [(False, True), (False, True), (True, False)]
    assert prober.last_result == ProbeResult(ok=False, detail="HTTP 503")


async def test_a_success_resets_the_failure_count(
    target: Target, session: aiohttp.ClientSession
) -> None:
    prober = http_prober(session, target.url(), failure_threshold=2)

    async def probe_once() -> None:
        prober.record(await probe_http(session, target.url(), expect_status=None, timeout_s=2))

    await probe_once()
    for healthy in (False, True, False, True, False):
        target.healthy = healthy
        await probe_once()
        assert prober.ready is True  # never two failures in a row
    await probe_once()
    assert prober.ready is False


async def test_prober_needs_consecutive_successes_to_recover(
    target: Target, session: aiohttp.ClientSession
) -> None:
    prober = http_prober(session, target.url(), failure_threshold=1, success_threshold=2)
    target.healthy = False
    prober.record(await probe_http(session, target.url(), expect_status=None, timeout_s=2))
    assert prober.ready is False  # the first result decides

    target.healthy = True
    assert not prober.record(
        await probe_http(session, target.url(), expect_status=None, timeout_s=2)
    )
    assert prober.ready is False
    assert prober.record(await probe_http(session, target.url(), expect_status=None, timeout_s=2))
    assert prober.ready is True


async def test_prober_run_reports_only_flips(
    target: Target, session: aiohttp.ClientSession
) -> None:
    prober = http_prober(session, target.url(), failure_threshold=2)
    flips: asyncio.Queue[bool | None] = asyncio.Queue()
    task = asyncio.create_task(prober.run(lambda p: flips.put_nowait(p.ready)))
    try:
        assert await asyncio.wait_for(flips.get(), 5) is True
        target.healthy = False
        assert await asyncio.wait_for(flips.get(), 5) is False
        target.healthy = True
        assert await asyncio.wait_for(flips.get(), 5) is True
        assert flips.empty()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_prober_run_counts_a_crashing_probe_as_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def check() -> ProbeResult:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("bug in a probe")
        return ProbeResult(ok=True, detail="fine")

    prober = Prober(check, interval_s=0.01, failure_threshold=1, success_threshold=1)
    flips: asyncio.Queue[bool | None] = asyncio.Queue()
    task = asyncio.create_task(prober.run(lambda p: flips.put_nowait(p.ready)))
    try:
        assert await asyncio.wait_for(flips.get(), 5) is True
        assert await asyncio.wait_for(flips.get(), 5) is False
        assert prober.last_result == ProbeResult(ok=False, detail="probe error: RuntimeError")
        assert "probe raised unexpectedly" in caplog.text
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_prober_run_stops_when_cancelled_mid_probe(
    target: Target, session: aiohttp.ClientSession
) -> None:
    prober = http_prober(session, target.url("/slow"))
    task = asyncio.create_task(prober.run(lambda p: None))
    await asyncio.wait_for(target.entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert prober.ready is None
