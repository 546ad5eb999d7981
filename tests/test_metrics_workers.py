"""Metrics through ``prometheus_client``: the exposition kept stable, and with several
workers (``MWM_LISTEN__WORKERS=2``) counters that are the pod's totals, whichever worker
answers the scrape, so they never decrease."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from controller.store import SnapshotStore
from proxy.metrics import Metrics
from tests.mwmprocess import ROOT, MwmProcess, running_mwm

FORWARD = ("mwm_requests_total", (("outcome", "forward"),))

# The exposition as dashboards and alerts know it: name, type, HELP.
FAMILIES = {
    "mwm_requests_total": ("counter", "Requests on the public listener, by outcome."),
    "mwm_bypass_total": ("counter", "Requests let through during maintenance, by bypass rule."),
    "mwm_upstream_errors_total": ("counter", "Upstream failures answered with 502/504."),
    "mwm_requests_rejected_total": (
        "counter",
        "Requests refused for exceeding a limit: 408 stalled body, 413 body, 414 URL, 431 headers.",
    ),
    "mwm_header_timeouts_total": (
        "counter",
        "Connections closed because a request head did not arrive in time.",
    ),
    "mwm_bypass_cookies_issued_total": ("counter", "Bypass cookies issued by the secret URL."),
    "mwm_maintenance_active": ("gauge", "1 while maintenance is on."),
    "mwm_service_ready": ("gauge", "1 while the service has enough ready endpoints."),
    "mwm_snapshot_generation": ("gauge", "Generation of the current state; rises on change."),
    "mwm_status_subscribers": (
        "gauge",
        "Open status streams (Server-Sent Events), by listener.",
    ),
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_names_types_help_and_labels_are_kept() -> None:
    metrics = Metrics()
    metrics.requests.inc("forward")
    metrics.requests.inc("forward")
    metrics.bypasses.inc("token")
    metrics.upstream_errors.inc(502)
    metrics.rejected.inc(431)
    metrics.header_timeouts.inc()
    metrics.cookies_issued.inc()
    text = metrics.render(SnapshotStore().current)

    for name, (kind, help_text) in FAMILIES.items():
        assert f"# HELP {name} {help_text}\n" in text
        assert f"# TYPE {name} {kind}\n" in text
    assert "_created" not in text
    values = samples(text)
    assert values[FORWARD] == 2
    assert values["mwm_bypass_total", (("rule", "token"),)] == 1
    assert values["mwm_upstream_errors_total", (("status", "502"),)] == 1
    assert values["mwm_requests_rejected_total", (("status", "431"),)] == 1
    assert values["mwm_header_timeouts_total", ()] == 1
    assert values["mwm_bypass_cookies_issued_total", ()] == 1
    assert values["mwm_maintenance_active", ()] == 0
    # A series appears once it has been counted, as before (no zero for every status).
    assert ("mwm_requests_rejected_total", (("status", "413"),)) not in values
    # The process collector: this process's own with one worker.
    assert values["process_cpu_seconds_total", ()] > 0
    assert ("process_start_time_seconds", ()) in values


def test_with_one_process_every_read_has_every_count() -> None:
    # One process counts in plain integers, handed to prometheus_client when read: each
    # exposition and the dashboard's bypass counts have every count made before them.
    metrics = Metrics()
    state = SnapshotStore().current
    metrics.requests.inc("forward")
    assert samples(metrics.render(state))[FORWARD] == 1
    for _ in range(3):
        metrics.requests.inc("forward")
    metrics.bypasses.inc("cidr")
    assert samples(metrics.render(state))[FORWARD] == 4
    assert samples(metrics.render(state))[FORWARD] == 4  # a read counts nothing twice
    metrics.bypasses.inc("cidr")
    assert metrics.bypass_counts().by_rule == {"cidr": 2}
    assert samples(metrics.render(state))["mwm_bypass_total", (("rule", "cidr"),)] == 2


def test_each_proxy_in_one_process_counts_on_its_own() -> None:
    first, second = Metrics(), Metrics()
    first.requests.inc("block")
    state = SnapshotStore().current
    assert samples(first.render(state))["mwm_requests_total", (("outcome", "block"),)] == 1
    assert ("mwm_requests_total", (("outcome", "block"),)) not in samples(second.render(state))


_RENDER = """
from controller.store import SnapshotStore
from proxy.metrics import Metrics
m = Metrics()
m.requests.inc("forward")
m.requests.inc("block")
m.rejected.inc(431)
m.header_timeouts.inc()
text = m.render(SnapshotStore().current)
print("".join(line + "\\n" for line in text.splitlines() if "process_" not in line), end="")
"""


def _render_in_a_process(env: dict[str, str]) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run(
        [sys.executable, "-c", _RENDER],
        env={**environ, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return result.stdout


def test_the_multiprocess_exposition_is_the_one_process_one(tmp_path: Path) -> None:
    # Same families, HELP and TYPE lines and series: only where the values live differs.
    one = _render_in_a_process({})
    several = _render_in_a_process({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert "# TYPE mwm_bypass_total counter" in one
    # The same families in the same order; within a family the series may come in another.
    assert [x for x in several.splitlines() if x.startswith("#")] == [
        x for x in one.splitlines() if x.startswith("#")
    ]
    assert sorted(several.splitlines()) == sorted(one.splitlines())
    # The counters' file, and the open status streams' gauge (summed over live workers).
    files = sorted(p.name.rsplit("_", 1)[0] for p in tmp_path.glob("*.db"))
    assert files == ["counter", "gauge_livesum"]


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    async def fast(request: web.Request) -> web.Response:
        return web.Response(text="fast")

    app = web.Application()
    app.router.add_get("/fast", fast)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _workers(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children]


async def _scrape(mwm: MwmProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    # A new connection each time: the kernel hands it to either worker.
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"{mwm.management}/metrics") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return samples(await response.text())


async def _load(url: str, stop: asyncio.Event, done: list[int], *, clients: int = 8) -> None:
    """``clients`` loops of GETs on new connections until ``stop`` (at most 20 s)."""
    deadline = time.monotonic() + 20

    async def client() -> None:
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            while not stop.is_set() and time.monotonic() < deadline:
                async with session.get(url) as response:
                    assert response.status == 200
                    await response.read()
                done[0] += 1

    await asyncio.gather(*(client() for _ in range(clients)))


async def test_with_two_workers_a_counter_scraped_under_load_never_decreases(
    upstream: TestServer,
) -> None:
    extra = {
        "MWM_LISTEN__PUBLIC_PORT": str(_free_port()),
        "MWM_LISTEN__MANAGEMENT_PORT": str(_free_port()),
        "MWM_LISTEN__WORKERS": "2",
    }
    async with running_mwm(str(upstream.make_url("/")).rstrip("/"), extra) as mwm:
        await mwm.logged("listening", times=2)
        stop, done = asyncio.Event(), [0]
        load = asyncio.create_task(_load(f"{mwm.public}/fast", stop, done))
        seen: list[float] = []
        workers_seen: set[str] = set()
        try:
            for _ in range(20):
                values = await _scrape(mwm)
                seen.append(values.get(FORWARD, 0.0))
                workers_seen |= {
                    dict(labels).get("worker", "none")
                    for (name, labels) in values
                    if name == "process_cpu_seconds_total"
                }
        finally:
            stop.set()
            await load
        assert seen == sorted(seen), f"a counter went down between scrapes: {seen}"
        assert seen[-1] > seen[0], f"no traffic counted under load: {seen}"
        assert workers_seen == {"0", "1"}  # process_* of each worker, labelled

        # Load over: every scrape, whichever worker answers, gives the pod's total.  (With
        # per-process counters and an even load both workers' counts rise alike, so the check
        # above can pass by luck; this one cannot: it saw about half.)
        for _ in range(6):
            assert (await _scrape(mwm))[FORWARD] == done[0]

        # A worker that dies is restarted; what it had counted stays in the total.
        os.kill(_workers(mwm.pid)[0], signal.SIGKILL)
        await mwm.logged("listening", times=3, timeout_s=30)
        for _ in range(6):
            assert (await _scrape(mwm))[FORWARD] == done[0]


SUBSCRIBERS = "mwm_status_subscribers"


async def test_with_two_workers_the_open_streams_are_summed(upstream: TestServer) -> None:
    extra = {
        "MWM_LISTEN__PUBLIC_PORT": str(_free_port()),
        "MWM_LISTEN__MANAGEMENT_PORT": str(_free_port()),
        "MWM_LISTEN__WORKERS": "2",
    }
    async with running_mwm(str(upstream.make_url("/")).rstrip("/"), extra) as mwm:
        await mwm.logged("listening", times=2)
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            streams = [await session.get(f"{mwm.public}/_mwm/status/stream") for _ in range(8)]
            try:
                for stream in streams:
                    await stream.content.readuntil(b"\n\n")  # open, first event read
                # Whichever worker answers, the gauge is every live worker's streams.
                for _ in range(6):
                    values = await _scrape(mwm)
                    assert values[SUBSCRIBERS, (("listener", "public"),)] == 8
                    assert values[SUBSCRIBERS, (("listener", "management"),)] == 0
            finally:
                for stream in streams:
                    stream.close()
        # Closed: the count falls back to 0, whichever worker answers.
        async with asyncio.timeout(20):
            while (await _scrape(mwm))[SUBSCRIBERS, (("listener", "public"),)] != 0:
                pass
