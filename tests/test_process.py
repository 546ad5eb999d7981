"""``mwm`` as a real process: configuration errors, the CLI client, workers.

The graceful shutdown on SIGTERM is in ``tests/promises/test_shutdown.py``.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.mwmprocess import ADMIN_TOKEN, ROOT, run_cli, running_mwm, start_mwm, stop_mwm


def test_check_config_reports_every_problem_at_once(tmp_path: Path) -> None:
    broken_file = tmp_path / "state.yaml"
    broken_file.write_text("spec:\n  services:\n    - {critical: true}\n")
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "maintenance.html").write_text("{% if %}")
    result = run_cli(
        "check-config",
        env={
            "MWM_UPSTREAM__URL": "ftp://nope",
            "MWM_LISTEN__PUBLIC_PORT": "eighty",
            "MWM_UPSTRAEM__URL": "http://typo",
            "MWM_BYPASS__PATH_PREFIXES": "admin",
        },
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for variable in (
        "MWM_UPSTREAM__URL",
        "MWM_LISTEN__PUBLIC_PORT",
        "MWM_UPSTRAEM",
        "MWM_BYPASS__PATH_PREFIXES",
    ):
        assert variable in result.stderr, result.stderr

    # Settings valid, but the file and the override template are broken: both reported.
    result = run_cli(
        "check-config",
        env={
            "MWM_SOURCE__LOCAL__FILE": str(broken_file),
            "MWM_PAGE__TEMPLATE_DIR": str(templates),
        },
    )
    assert result.returncode == 2
    assert "spec.services[0].name" in result.stderr
    assert "maintenance.html" in result.stderr


def test_check_config_accepts_the_demo_configuration() -> None:
    result = run_cli(
        "check-config", env={"MWM_SOURCE__LOCAL__FILE": str(ROOT / "demo" / "mwm-local.yaml")}
    )
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


def test_run_refuses_to_start_with_bad_settings() -> None:
    result = run_cli("run", env={"MWM_UPSTREAM__URL": "not a url"})
    assert result.returncode == 2
    assert "MWM_UPSTREAM__URL" in result.stderr
    assert "Traceback" not in result.stderr


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


def _url(server: TestServer) -> str:
    return str(server.make_url("/")).rstrip("/")


async def test_cli_switches_maintenance_on_and_off(upstream: TestServer) -> None:
    env = {"MWM_MANAGEMENT__ADMIN_TOKEN": ADMIN_TOKEN}
    async with running_mwm(_url(upstream)) as process:

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return run_cli(*args, "--url", process.management, env=env)

        on = await asyncio.to_thread(cli, "on", "--reason", "Database upgrade", "--until", "30m")
        assert on.returncode == 0, on.stderr
        assert "maintenance: ON" in on.stdout
        assert "Database upgrade" in on.stdout
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{process.public}/fast") as response,
        ):
            assert response.status == 503
        off = await asyncio.to_thread(cli, "off")
        assert off.returncode == 0, off.stderr
        assert "maintenance: off" in off.stdout
        status = await asyncio.to_thread(cli, "status", "--json")
        assert json.loads(status.stdout)["maintenance"]["active"] is False
        wrong = await asyncio.to_thread(
            run_cli, "on", "--url", process.management, env={"MWM_MANAGEMENT__ADMIN_TOKEN": "bad"}
        )
        assert wrong.returncode == 1
        assert "HTTP 401" in wrong.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_workers_share_the_ports_and_the_admin_switch(upstream: TestServer) -> None:
    public, management = _free_port(), _free_port()
    extra = {
        "MWM_LISTEN__PUBLIC_PORT": str(public),
        "MWM_LISTEN__MANAGEMENT_PORT": str(management),
        "MWM_LISTEN__WORKERS": "2",
        "MWM_SOURCE__LOCAL__RELOAD_INTERVAL_S": "0.05",
    }
    async with running_mwm(_url(upstream), extra) as mwm:
        await mwm.logged("listening", times=2)  # both workers serve the same ports
        async with (
            aiohttp.ClientSession() as admin,
            admin.put(
                f"{mwm.management}/api/maintenance",
                json={"enabled": True, "reason": "all workers"},
                headers=mwm.admin_headers,
            ) as response,
        ):
            assert response.status == 200
        # The worker that took the call, and the other one through the shared switch.
        await mwm.logged("maintenance on", times=2, timeout_s=10)
        # Fresh connections land on either worker: every one says 503.
        for _ in range(20):
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s,
                s.get(f"{mwm.public}/fast") as response,
            ):
                assert response.status == 503
        mwm.terminate()
        assert await mwm.wait() == 0


def test_the_clients_url_variable_does_not_stop_the_server() -> None:
    result = run_cli("check-config", env={"MWM_MANAGEMENT_URL": "http://127.0.0.1:8081"})
    assert result.returncode == 0, result.stderr


def test_the_cluster_less_mode_does_not_load_the_kubernetes_client() -> None:
    # The Kubernetes client costs memory per process; the local mode never needs it.
    code = (
        "import sys, proxy.cli, proxy.runtime; "
        "from proxy.runtime import Runtime; from proxy.settings import load_settings; "
        "Runtime(load_settings({}), in_cluster=False); "
        "print('kubernetes_asyncio' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "False"


def _open_file_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc")


async def test_run_raises_its_open_file_limit_to_the_hard_ceiling(upstream: TestServer) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard > 256, "this test needs a hard open-file limit above 256"
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # inherited by the child
    try:
        mwm = await start_mwm(_url(upstream))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        expected = hard if hard != resource.RLIM_INFINITY else 1_048_576
        assert _open_file_limit(mwm.pid) == expected  # thousands of connections, not 256
    finally:
        await stop_mwm(mwm)
