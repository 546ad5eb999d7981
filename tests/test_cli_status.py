"""``mwm status``: the readable table and ``--json``, against a running ``mwm`` process."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.cli import _status_lines
from tests.kube.clusters import (
    NS,
    ClusterFactory,
    create_critical_api,
    fake,  # noqa: F401 (fixture)
    maintenance_off,
    start_cluster,  # noqa: F401 (fixture)
)
from tests.kube.fakeapi import FakeKubeAPI
from tests.mwmprocess import ADMIN_TOKEN, run_cli, running_mwm


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_get("/", _ok)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spec(upstream: TestServer, tmp_path: Path) -> Path:
    path = tmp_path / "mwm.yaml"
    path.write_text(
        f"""\
apiVersion: maintenance.mamrezb.com/v1alpha1
kind: ServiceChecker
metadata: {{name: local, namespace: shop}}
spec:
  services:
    - name: api
      critical: true
      probe: {{tcp: {{host: 127.0.0.1, port: {upstream.port}}}}}
    - name: search
      critical: false
      probe: {{tcp: {{host: 127.0.0.1, port: {_closed_port()}}}}}
  maintenance: {{enabled: false}}
""",
        encoding="utf-8",
    )
    return path


async def test_status_prints_the_state_the_causes_and_the_services(
    upstream: TestServer, tmp_path: Path
) -> None:
    extra = {"MWM_SOURCE__LOCAL__FILE": str(_spec(upstream, tmp_path))}
    async with running_mwm(str(upstream.make_url("/")).rstrip("/"), extra) as process:

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return run_cli(*args, "--url", process.management, env={})

        deadline = time.monotonic() + 10
        while True:  # until both services have been probed
            shown = await asyncio.to_thread(cli, "status", "--json")
            assert shown.returncode == 0, shown.stderr
            document: dict[str, Any] = json.loads(shown.stdout)
            services = {s["name"]: s for s in document["services"]}
            if services.get("api", {}).get("ready") and "search" in services:
                break
            assert time.monotonic() < deadline, document
            await asyncio.sleep(0.1)

        off = await asyncio.to_thread(cli, "status")
        assert off.returncode == 0, off.stderr
        lines = off.stdout.splitlines()
        assert lines[0] == "maintenance: off"
        assert lines[1].startswith("  last change: ")
        assert "services: 1/2 ready, critical 1/1 ready" in lines
        assert "  shop/api (critical): ready 1/1 Ready" in lines
        (search,) = [line for line in lines if line.startswith("  shop/search:")]
        assert search.startswith("  shop/search: NOT READY 0/1 ")

        on = await asyncio.to_thread(
            run_cli,
            "on",
            "--reason",
            "Database upgrade",
            "--until",
            "30m",
            "--url",
            process.management,
            env={"MWM_MANAGEMENT__ADMIN_TOKEN": ADMIN_TOKEN},
        )
        assert on.returncode == 0, on.stderr
        shown = await asyncio.to_thread(cli, "status")
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0] == "maintenance: ON"
        assert lines[1].startswith("  since: 20")
        assert lines[2].startswith("  until: 20")
        assert lines[3] == "  reason: Database upgrade"
        assert lines[4].startswith("  - Manual: Database upgrade until ")
        assert lines[5] == "services: 1/2 ready, critical 1/1 ready"

        as_json = await asyncio.to_thread(cli, "status", "--json")
        assert as_json.returncode == 0, as_json.stderr
        document = json.loads(as_json.stdout)
        assert document["maintenance"]["active"] is True
        assert document["maintenance"]["reason"] == "Database upgrade"
        assert {s["name"] for s in document["services"]} == {"api", "search"}


async def test_status_of_a_servicechecker_as_a_table_and_as_json(
    fake: FakeKubeAPI,  # noqa: F811 (the fixture)
    start_cluster: ClusterFactory,  # noqa: F811 (the fixture)
) -> None:
    create_critical_api(fake)
    cluster = await start_cluster()
    await cluster.wait_for(maintenance_off)
    await cluster.wait_for_status(lambda s: s.get("serviceStatuses"))
    target = ["--checker", "shop", "-n", NS, "--api-url", fake.url]

    table = await asyncio.to_thread(run_cli, "status", *target, env={})
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[:2] == [f"ServiceChecker {NS}/shop", "maintenance: off"]
    assert "services: 1/1 ready, critical 1/1 ready" in lines
    assert "  shop/api (critical): ready 1/1 Ready" in lines

    as_json = await asyncio.to_thread(run_cli, "status", "--json", *target, env={})
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["kind"] == "ServiceChecker"
    assert document["metadata"]["name"] == "shop"
    assert document["status"]["maintenance"]["active"] is False


def test_the_table_shows_stale_services_the_next_window_and_errors() -> None:
    lines = _status_lines(
        {
            "maintenance": {
                "active": False,
                "reason": None,
                "since": None,
                "until": None,
                "causes": [],
            },
            "synced": False,
            "lastChange": "2026-12-01T09:00:00Z",
            "services": [
                {
                    "name": "api",
                    "namespace": "shop",
                    "critical": True,
                    "ready": False,
                    "readyEndpoints": 0,
                    "totalEndpoints": 2,
                    "reason": "NoReadyEndpoints",
                    "stale": True,
                }
            ],
            "nextWindow": {
                "start": "2026-12-02T08:00:00Z",
                "end": "2026-12-02T10:00:00Z",
                "reason": "Database upgrade",
            },
            "errors": ["watch failed"],
        }
    )
    assert lines == [
        "maintenance: off",
        "  last change: 2026-12-01T09:00:00Z",
        "  (not synced yet: the services below may be incomplete)",
        "services: 0/1 ready, critical 0/1 ready",
        "  shop/api (critical): NOT READY 0/2 NoReadyEndpoints (stale)",
        "next window: 2026-12-02T08:00:00Z to 2026-12-02T10:00:00Z: Database upgrade",
        "  error: watch failed",
    ]


def test_an_empty_service_list_says_so() -> None:
    lines = _status_lines(
        {"maintenance": {"active": False, "causes": []}, "services": [], "errors": []}
    )
    assert lines == ["maintenance: off", "services: none"]


@pytest.mark.parametrize(
    ("fields", "shown"),
    [
        pytest.param(
            {"announced": True, "announceFrom": "2026-12-01T08:00:00Z"},
            ["  ANNOUNCED since 2026-12-01T08:00:00Z"],
            id="announced",
        ),
        pytest.param(
            {"announced": False, "announceFrom": "2026-12-01T08:00:00Z"},
            ["  announced from 2026-12-01T08:00:00Z"],
            id="before-its-announcement",
        ),
        pytest.param({"announced": False, "announceFrom": None}, [], id="never-announced"),
        pytest.param({}, [], id="an-older-server"),
    ],
)
def test_the_table_says_whether_the_next_window_is_announced(
    fields: dict[str, Any], shown: list[str]
) -> None:
    window = {"start": "2026-12-02T08:00:00Z", "end": "2026-12-02T10:00:00Z", "reason": "DB"}
    lines = _status_lines(
        {
            "maintenance": {"active": False, "causes": []},
            "services": [],
            "nextWindow": {**window, **fields},
            "errors": [],
        }
    )
    assert lines == [
        "maintenance: off",
        "services: none",
        "next window: 2026-12-02T08:00:00Z to 2026-12-02T10:00:00Z: DB",
        *shown,
    ]


def test_the_table_shows_the_scope_the_routes_and_read_only() -> None:
    route = {"pathPrefix": "/checkout", "methods": ["POST"]}
    lines = _status_lines(
        {
            "maintenance": {
                "active": True,
                "reason": "A service this part of the site needs is unavailable",
                "since": "2026-12-01T09:00:00Z",
                "until": None,
                "scope": "readOnlyAndRoutes",
                "affectedRoutes": [{**route, "mode": "full", "services": ["payments"]}],
                "causes": [
                    {
                        "kind": "ServiceDown",
                        "reason": "A service this part of the site needs is unavailable",
                        "mode": "full",
                        "routes": [route],
                    },
                    {"kind": "Manual", "reason": "Replica swap", "mode": "readOnly", "routes": []},
                ],
            },
            "services": [
                {
                    "name": "payments",
                    "namespace": "shop",
                    "critical": False,
                    "ready": False,
                    "readyEndpoints": 0,
                    "totalEndpoints": 1,
                    "reason": "NoReadyEndpoints",
                    "mode": "full",
                    "routes": [route],
                }
            ],
        }
    )
    assert lines == [
        "maintenance: ON",
        "  since: 2026-12-01T09:00:00Z",
        "  reason: A service this part of the site needs is unavailable",
        "  scope: writes everywhere and these routes: /checkout (POST)",
        "  - ServiceDown: A service this part of the site needs is unavailable on /checkout (POST)",
        "  - Manual: Replica swap [read-only]",
        "services: 0/1 ready, critical 0/0 ready",
        "  shop/payments: NOT READY 0/1 NoReadyEndpoints on /checkout (POST)",
    ]
