"""Promises of the graceful shutdown, on SIGTERM to a real ``mwm run`` process:

- under steady load, no request fails: neither those in flight at the signal nor those
  sent until the load balancer, seeing the proxy not ready, stops sending;
- the readiness endpoint reports not-ready for the whole pre-stop delay while new
  connections are still served, and only then are new connections refused;
- requests in flight finish within the drain timeout; one that would outlast it is cut
  (the client sees an aborted response, not a clean one) and the process still exits;
- websockets open through the proxy are closed with a close frame, 1001 (going away), to
  the client and to the upstream, without waiting for the drain timeout.

The tests wait on the proxy's own log lines for each step (``shutting down: reporting
not ready``, ``shutting down: draining in-flight requests``, ``stopped``), never on time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from tests.mwmprocess import MwmProcess, running_mwm
from tests.proxy.upstream import Upstream, start_upstream

NOT_READY = "shutting down: reporting not ready"
DRAINING = "shutting down: draining in-flight requests"
STOPPED = "stopped"
WAIT_S = 20.0


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = await start_upstream()
    yield server
    await server.close()


def _logged_at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["time"])


async def _readiness(mwm: MwmProcess) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{mwm.management}/readyz") as r:
        body: dict[str, Any] = await r.json()
        return r.status, body


async def _new_connection_refused(mwm: MwmProcess) -> bool:
    """Whether a brand-new connection to the public listener is refused (or else served)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            async with session.get(f"{mwm.public}/echo") as response:
                assert response.status == 200
                await response.read()
        except aiohttp.ClientConnectorError:
            return True
    return False


async def test_sigterm_under_steady_load_fails_no_request(upstream: Upstream) -> None:
    settings = {"MWM_SHUTDOWN__PRESTOP_DELAY_S": "2", "MWM_SHUTDOWN__DRAIN_TIMEOUT_S": "20"}
    clients, warm_up_requests = 6, 5
    failures: list[str] = []
    answered: Counter[str] = Counter()
    warm = asyncio.Event()
    load_balancer_removed_us = asyncio.Event()
    signalled = False

    async with running_mwm(upstream.url, settings) as mwm:

        async def user(index: int) -> None:
            """Sends back to back on one keep-alive connection until the load balancer
            stops routing to this proxy, checking every answer."""
            async with aiohttp.ClientSession() as session:
                n = 0
                while not load_balancer_removed_us.is_set():
                    path = f"/user{index}/request{n}"
                    try:
                        async with session.get(f"{mwm.public}{path}") as response:
                            echo = await response.json()
                            if response.status != 200 or echo["path"] != path:
                                failures.append(f"{path}: {response.status} {echo}")
                    except (aiohttp.ClientError, ValueError) as exc:
                        failures.append(f"{path}: {exc!r}")
                    answered["after the signal" if signalled else "before the signal"] += 1
                    n += 1
                    if sum(answered.values()) >= clients * warm_up_requests:
                        warm.set()

        async with aiohttp.ClientSession() as slow_session:
            users = [asyncio.create_task(user(i)) for i in range(clients)]
            slow = asyncio.create_task(slow_session.get(f"{mwm.public}/slow"))
            await asyncio.wait_for(upstream.slow_arrived.wait(), WAIT_S)
            await asyncio.wait_for(warm.wait(), WAIT_S)

            mwm.terminate()
            signalled = True
            # The load balancer probes readiness and stops routing here when it fails.
            await mwm.logged(NOT_READY, timeout_s=WAIT_S)
            assert (await _readiness(mwm))[0] == 503
            load_balancer_removed_us.set()
            await asyncio.wait_for(asyncio.gather(*users), WAIT_S)

            await mwm.logged(DRAINING, timeout_s=WAIT_S)
            upstream.slow_release.set()
            async with await asyncio.wait_for(slow, WAIT_S) as response:
                assert response.status == 200
                assert await response.text() == "finally"
        assert await mwm.wait() == 0

    assert failures == []
    assert answered["after the signal"] > 0  # the load did not pause for the signal
    await mwm.logged(STOPPED)


async def test_readiness_fails_for_the_prestop_delay_before_new_connections_are_refused(
    upstream: Upstream,
) -> None:
    prestop_delay_s = 2.0
    settings = {"MWM_SHUTDOWN__PRESTOP_DELAY_S": str(prestop_delay_s)}
    async with running_mwm(upstream.url, settings) as mwm:
        assert (await _readiness(mwm))[0] == 200
        mwm.terminate()

        not_ready = await mwm.logged(NOT_READY, timeout_s=WAIT_S)
        status, body = await _readiness(mwm)
        assert (status, body["problems"]) == (503, ["shutting down"])
        assert not await _new_connection_refused(mwm)  # the Service may still send some

        draining = await mwm.logged(DRAINING, timeout_s=WAIT_S)
        assert await _new_connection_refused(mwm)
        assert (_logged_at(draining) - _logged_at(not_ready)).total_seconds() >= prestop_delay_s
        assert await mwm.wait() == 0


async def test_in_flight_requests_finish_within_the_drain_timeout(upstream: Upstream) -> None:
    async with (
        running_mwm(upstream.url, {"MWM_SHUTDOWN__DRAIN_TIMEOUT_S": "20"}) as mwm,
        aiohttp.ClientSession() as session,
    ):
        size = 2 * 256 * 1024
        in_flight = asyncio.create_task(
            session.get(f"{mwm.public}/slow", params={"head_bytes": str(size // 2)})
        )
        await asyncio.wait_for(upstream.slow_arrived.wait(), WAIT_S)
        mwm.terminate()

        await mwm.logged(DRAINING, timeout_s=WAIT_S)
        assert await _new_connection_refused(mwm)
        assert mwm.proc.returncode is None  # still draining
        upstream.slow_release.set()
        async with await asyncio.wait_for(in_flight, WAIT_S) as response:
            assert response.status == 200
            assert len(await response.read()) == size
        assert await mwm.wait() == 0


async def test_a_request_outlasting_the_drain_timeout_is_cut_and_the_process_exits(
    upstream: Upstream,
) -> None:
    async with (
        running_mwm(upstream.url, {"MWM_SHUTDOWN__DRAIN_TIMEOUT_S": "0.5"}) as mwm,
        aiohttp.ClientSession() as session,
    ):
        head_bytes = 256 * 1024
        async with session.get(
            f"{mwm.public}/slow", params={"head_bytes": str(head_bytes)}
        ) as response:
            assert len(await response.content.readexactly(head_bytes)) == head_bytes
            mwm.terminate()
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(response.read(), WAIT_S)
        assert await mwm.wait() == 0
    await mwm.logged(STOPPED)


async def test_open_websockets_are_closed_with_going_away_to_both_sides(
    upstream: Upstream,
) -> None:
    settings = {"MWM_SHUTDOWN__PRESTOP_DELAY_S": "0.2", "MWM_SHUTDOWN__DRAIN_TIMEOUT_S": "60"}
    async with running_mwm(upstream.url, settings) as mwm, aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(f"{mwm.public}/ws") for _ in range(2)]
        mwm.terminate()
        await mwm.logged(NOT_READY, timeout_s=WAIT_S)
        for ws in sockets:  # still relayed during the pre-stop delay
            await ws.send_str("still there?")
            assert await ws.receive_str() == "still there?"

        closes = [await asyncio.wait_for(ws.receive(), WAIT_S) for ws in sockets]
        # Well before the 60 s drain timeout: websockets do not hold the shutdown.
        assert await mwm.wait(timeout_s=WAIT_S) == 0
        for ws in sockets:
            await ws.close()

    async def upstream_sockets_closed() -> None:
        while len(upstream.ws_close_codes) < len(sockets):
            upstream.ws_closed.clear()
            await upstream.ws_closed.wait()

    await asyncio.wait_for(upstream_sockets_closed(), WAIT_S)
    assert [(m.type, m.data) for m in closes] == [(WSMsgType.CLOSE, 1001)] * 2
    assert upstream.ws_close_codes == [1001, 1001]
