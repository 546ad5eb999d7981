"""Announcements of scheduled windows (``announceSeconds``), as every status reader sees them.

A real ``mwm`` (the same runtime as ``mwm run``) reads windows from its local state file; the
tests read the public ``/_mwm/status``, the management ``/status`` and ``/metrics``, and the
headers of forwarded responses (``MWM_STATUS__ANNOUNCE_HEADER``), before and during an
announcement, and see the announcement start by itself when its time comes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from controller.timefmt import rfc3339
from proxy.settings import SettingsError, load_settings
from tests.conftest import BYPASS_TOKEN, ProxyFactory, RunningProxy
from tests.mwmprocess import run_cli

HEADER = "X-Maintenance-Announced"
HOUR = timedelta(hours=1)


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    """An app answering ``{"path": ...}``; ``/own-header`` also sends the announce header
    itself, and ``/large`` is a body too large to be relayed whole (it is streamed)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        path = request.raw_path
        if path == "/large":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(b'{"path": "/large", "padding": "' + b"x" * 100_000 + b'"}')
            await response.write_eof()
            return response
        own = {HEADER: "from the app"} if path == "/own-header" else {}
        return web.json_response({"path": path}, headers=own)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def whole_seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def state_file(tmp_path: Path, windows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "state.yaml"
    path.write_text(yaml.safe_dump({"spec": {"windows": windows}}))
    return path


def window(start: datetime, end: datetime, **fields: Any) -> dict[str, Any]:
    return {"start": rfc3339(start), "end": rfc3339(end), **fields}


async def start_with_windows(
    start_proxy: ProxyFactory,
    tmp_path: Path,
    windows: list[dict[str, Any]],
    env: dict[str, str] | None = None,
) -> RunningProxy:
    path = state_file(tmp_path, windows)
    proxy = await start_proxy({"MWM_SOURCE__LOCAL__FILE": str(path), **(env or {})})
    await proxy.wait_for(lambda state: len(state.snapshot.windows) == len(windows))
    return proxy


async def public_status(proxy: RunningProxy) -> dict[str, Any]:
    async with proxy.session.get(f"{proxy.public_url}/_mwm/status") as response:
        assert response.status == 200
        document: dict[str, Any] = await response.json()
        return document


async def management_status(proxy: RunningProxy) -> dict[str, Any]:
    async with proxy.session.get(f"{proxy.management_url}/status") as response:
        assert response.status == 200
        document: dict[str, Any] = await response.json()
        return document


async def gauges(proxy: RunningProxy) -> dict[str, list[float]]:
    """Every ``mwm_next_window_*`` family by name, with its samples' values (maybe none)."""
    async with proxy.session.get(f"{proxy.management_url}/metrics") as response:
        text = await response.text()
    return {
        family.name: [sample.value for sample in family.samples]
        for family in text_string_to_metric_families(text)
        if family.name.startswith("mwm_next_window_")
    }


async def forwarded_header(proxy: RunningProxy, path: str = "/shop", **headers: str) -> str | None:
    async with proxy.session.get(f"{proxy.public_url}{path}", headers=headers) as response:
        assert response.status == 200
        assert (await response.json())["path"] == path  # the app answered
        return response.headers.get(HEADER)


async def test_an_announced_window_is_in_every_status_document_and_forwarded_response(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    now = whole_seconds(datetime.now(UTC))
    start, end = now + HOUR, now + 2 * HOUR
    later = window(now + 5 * HOUR, now + 6 * HOUR, announceSeconds=10 * 3600)
    proxy = await start_with_windows(
        start_proxy,
        tmp_path,
        [later, window(start, end, reason="Database upgrade", announceSeconds=7200)],
        {"MWM_STATUS__ANNOUNCE_HEADER": HEADER, "MWM_PAGE__SHOW_SERVICES": "false"},
    )
    expected = {
        "start": rfc3339(start),
        "end": rfc3339(end),
        "reason": "Database upgrade",
        "announced": True,
        "announceFrom": rfc3339(start - 2 * HOUR),
    }
    public = await public_status(proxy)
    assert public["active"] is False
    assert public["nextWindow"] == expected
    assert (await management_status(proxy))["nextWindow"] == expected
    assert await gauges(proxy) == {
        "mwm_next_window_start_timestamp_seconds": [start.timestamp()],
        "mwm_next_window_announced": [1.0],
    }
    assert await forwarded_header(proxy) == rfc3339(start)
    assert await forwarded_header(proxy, "/large") == rfc3339(start)  # streamed
    assert await forwarded_header(proxy, "/own-header") == rfc3339(start)  # ours wins
    async with proxy.session.get(f"{proxy.public_url}/own-header") as response:
        assert response.headers.getall(HEADER) == [rfc3339(start)]

    # During maintenance: bypassed (forwarded) responses carry it, the page does not.
    await proxy.switch(enabled=True, reason="Emergency")
    assert await forwarded_header(proxy, **{"X-Maintenance-Bypass": BYPASS_TOKEN}) == rfc3339(start)
    async with proxy.session.get(f"{proxy.public_url}/shop") as response:
        assert response.status == 503
        assert HEADER not in response.headers
    assert (await public_status(proxy))["nextWindow"] == expected


async def test_a_window_before_its_announcement_is_next_but_not_announced(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    now = whole_seconds(datetime.now(UTC))
    start, end = now + 2 * HOUR, now + 3 * HOUR
    proxy = await start_with_windows(
        start_proxy,
        tmp_path,
        [window(start, end, announceSeconds=3600)],
        {"MWM_STATUS__ANNOUNCE_HEADER": HEADER},
    )
    expected = {
        "start": rfc3339(start),
        "end": rfc3339(end),
        "reason": "Scheduled maintenance window",
        "announced": False,
        "announceFrom": rfc3339(start - HOUR),
    }
    assert (await public_status(proxy))["nextWindow"] == expected
    assert (await management_status(proxy))["nextWindow"] == expected
    assert await gauges(proxy) == {
        "mwm_next_window_start_timestamp_seconds": [start.timestamp()],
        "mwm_next_window_announced": [0.0],
    }
    assert await forwarded_header(proxy) is None


async def test_a_window_without_announce_seconds_is_never_announced(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    now = whole_seconds(datetime.now(UTC))
    proxy = await start_with_windows(
        start_proxy,
        tmp_path,
        [window(now + timedelta(minutes=1), now + HOUR)],
        {"MWM_STATUS__ANNOUNCE_HEADER": HEADER},
    )
    next_window = (await management_status(proxy))["nextWindow"]
    assert (next_window["announced"], next_window["announceFrom"]) == (False, None)
    assert await forwarded_header(proxy) is None


async def test_no_window_ahead_no_start_gauge(start_proxy: ProxyFactory, tmp_path: Path) -> None:
    now = whole_seconds(datetime.now(UTC))
    # Open now: not "next"; the site is in maintenance.
    proxy = await start_with_windows(
        start_proxy, tmp_path, [window(now - HOUR, now + HOUR, announceSeconds=7200)]
    )
    assert (await management_status(proxy))["nextWindow"] is None
    assert (await public_status(proxy))["nextWindow"] is None
    # The family is announced (HELP, TYPE) but has no sample: no made-up date.
    assert await gauges(proxy) == {
        "mwm_next_window_start_timestamp_seconds": [],
        "mwm_next_window_announced": [0.0],
    }


async def test_without_the_setting_no_header(start_proxy: ProxyFactory, tmp_path: Path) -> None:
    now = whole_seconds(datetime.now(UTC))
    proxy = await start_with_windows(
        start_proxy, tmp_path, [window(now + HOUR, now + 2 * HOUR, announceSeconds=7200)]
    )
    assert (await public_status(proxy))["nextWindow"]["announced"] is True
    assert await forwarded_header(proxy) is None


async def test_the_announcement_starts_by_itself_when_its_time_comes(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    # announceFrom a moment from now: no edit of the file, the store's clock does it.
    announce_from = datetime.now(UTC) + timedelta(seconds=2)
    start = whole_seconds(announce_from) + HOUR + timedelta(seconds=1)
    seconds = int((start - announce_from).total_seconds())
    proxy = await start_with_windows(
        start_proxy,
        tmp_path,
        [window(start, start + HOUR, announceSeconds=seconds)],
        {"MWM_STATUS__ANNOUNCE_HEADER": HEADER},
    )
    before = proxy.runtime.store.current
    assert before.upcoming is not None
    assert not before.upcoming.announced, "the proxy took over 2 s to start"
    assert (await public_status(proxy))["nextWindow"]["announced"] is False
    assert await forwarded_header(proxy) is None

    during = await proxy.wait_for(lambda s: s.upcoming is not None and s.upcoming.announced)
    assert during.generation > before.generation
    assert datetime.now(UTC) >= start - timedelta(seconds=seconds)
    assert (await public_status(proxy))["nextWindow"]["announced"] is True
    assert (await management_status(proxy))["nextWindow"]["announced"] is True
    assert (await gauges(proxy))["mwm_next_window_announced"] == [1.0]
    assert await forwarded_header(proxy) == rfc3339(start)


async def test_mwm_status_shows_the_announced_window(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    now = whole_seconds(datetime.now(UTC))
    start = now + HOUR
    proxy = await start_with_windows(
        start_proxy,
        tmp_path,
        [window(start, start + HOUR, reason="Database upgrade", announceSeconds=7200)],
    )
    table = await asyncio.to_thread(run_cli, "status", "--url", proxy.management_url, env={})
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    index = lines.index(
        f"next window: {rfc3339(start)} to {rfc3339(start + HOUR)}: Database upgrade"
    )
    assert lines[index + 1] == f"  ANNOUNCED since {rfc3339(start - 2 * HOUR)}"
    as_json = await asyncio.to_thread(
        run_cli, "status", "--json", "--url", proxy.management_url, env={}
    )
    assert as_json.returncode == 0, as_json.stderr
    assert yaml.safe_load(as_json.stdout)["nextWindow"]["announced"] is True


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param("X Announced", "is not a header name", id="space"),
        pytest.param("X-Announced:", "is not a header name", id="colon"),
        pytest.param("Content-Length", "a header the proxy or HTTP itself manages", id="framing"),
        pytest.param("connection", "a header the proxy or HTTP itself manages", id="hop-by-hop"),
    ],
)
def test_a_bad_header_name_is_refused_naming_the_setting(value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"MWM_UPSTREAM__URL": "http://app", "MWM_STATUS__ANNOUNCE_HEADER": value})
    (message,) = caught.value.problems
    assert message.startswith("MWM_STATUS__ANNOUNCE_HEADER: ")
    assert problem in message


def test_an_empty_header_name_is_off() -> None:
    settings = load_settings({"MWM_UPSTREAM__URL": "http://app", "MWM_STATUS__ANNOUNCE_HEADER": ""})
    assert settings.status.announce_header is None
