"""``mwm`` as a real process: configuration errors, SIGTERM drain, the CLI client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "process-admin-token"


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MWM_")}
    env.update(extra)
    return env


def run_cli(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args],
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


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


@dataclass
class SlowUpstream:
    server: TestServer
    arrived: asyncio.Event
    release: asyncio.Event


@pytest.fixture
async def slow_upstream() -> AsyncIterator[SlowUpstream]:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await release.wait()
        return web.Response(body=b"x" * 100_000)

    async def fast(request: web.Request) -> web.Response:
        return web.Response(text="fast")

    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_get("/fast", fast)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield SlowUpstream(server, arrived, release)
    release.set()
    await server.close()


@dataclass
class Process:
    proc: asyncio.subprocess.Process
    public: str
    management: str


async def start_process(upstream: TestServer, extra: Mapping[str, str]) -> Process:
    env = _env(
        {
            "MWM_UPSTREAM__URL": str(upstream.make_url("/")).rstrip("/"),
            "MWM_LISTEN__PUBLIC_HOST": "127.0.0.1",
            "MWM_LISTEN__PUBLIC_PORT": "0",
            "MWM_LISTEN__MANAGEMENT_HOST": "127.0.0.1",
            "MWM_LISTEN__MANAGEMENT_PORT": "0",
            "MWM_LOG__FORMAT": "json",
            "MWM_MANAGEMENT__ADMIN_TOKEN": ADMIN_TOKEN,
            **extra,
        }
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy.cli",
        "run",
        env=env,
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert line, "mwm exited before listening"
        entry = json.loads(line)
        if entry["message"] == "listening":
            return Process(
                proc,
                public=f"http://127.0.0.1:{entry['public_port']}",
                management=f"http://127.0.0.1:{entry['management_port']}",
            )


async def _drain_stderr(proc: asyncio.subprocess.Process) -> list[str]:
    assert proc.stderr is not None
    return [line.decode() async for line in proc.stderr]


async def test_sigterm_lets_in_flight_requests_finish_then_refuses_new_ones(
    slow_upstream: SlowUpstream,
) -> None:
    process = await start_process(slow_upstream.server, {"MWM_SHUTDOWN__DRAIN_TIMEOUT_S": "20"})
    logs = asyncio.create_task(_drain_stderr(process.proc))
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.create_task(session.get(f"{process.public}/slow"))
        await asyncio.wait_for(slow_upstream.arrived.wait(), 10)
        process.proc.send_signal(signal.SIGTERM)

        # New connections are refused once the listener has closed...
        async with aiohttp.ClientSession() as fresh:
            for _ in range(1000):
                try:
                    async with fresh.get(f"{process.public}/fast") as response:
                        await response.read()
                except aiohttp.ClientConnectionError:
                    break
            else:
                pytest.fail("the public listener kept accepting after SIGTERM")
        # ...while the request that was in flight completes in full.
        assert process.proc.returncode is None
        slow_upstream.release.set()
        response = await asyncio.wait_for(in_flight, 10)
        assert response.status == 200
        assert len(await response.read()) == 100_000
        response.release()
    assert await asyncio.wait_for(process.proc.wait(), 20) == 0
    assert any('"stopped"' in line for line in await logs)


async def test_sigterm_reports_not_ready_before_refusing_traffic(
    slow_upstream: SlowUpstream,
) -> None:
    process = await start_process(slow_upstream.server, {"MWM_SHUTDOWN__PRESTOP_DELAY_S": "3"})
    logs = asyncio.create_task(_drain_stderr(process.proc))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{process.management}/readyz") as response:
            assert response.status == 200
        process.proc.send_signal(signal.SIGTERM)
        for _ in range(1000):
            async with session.get(f"{process.management}/readyz") as response:
                if response.status == 503:
                    break
        else:
            pytest.fail("readiness never failed after SIGTERM")
        # Still serving users during the pre-stop delay.
        async with session.get(f"{process.public}/fast") as response:
            assert response.status == 200
            assert await response.text() == "fast"
    assert await asyncio.wait_for(process.proc.wait(), 20) == 0
    await logs


async def test_cli_switches_maintenance_on_and_off(slow_upstream: SlowUpstream) -> None:
    process = await start_process(slow_upstream.server, {})
    logs = asyncio.create_task(_drain_stderr(process.proc))
    env = {"MWM_MANAGEMENT__ADMIN_TOKEN": ADMIN_TOKEN}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--url", process.management, env=env)

    try:
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
    finally:
        process.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.proc.wait(), 20)
        await logs


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_workers_share_the_ports_and_the_admin_switch(slow_upstream: SlowUpstream) -> None:
    public, management = _free_port(), _free_port()
    env = _env(
        {
            "MWM_UPSTREAM__URL": str(slow_upstream.server.make_url("/")).rstrip("/"),
            "MWM_LISTEN__PUBLIC_HOST": "127.0.0.1",
            "MWM_LISTEN__PUBLIC_PORT": str(public),
            "MWM_LISTEN__MANAGEMENT_HOST": "127.0.0.1",
            "MWM_LISTEN__MANAGEMENT_PORT": str(management),
            "MWM_LISTEN__WORKERS": "2",
            "MWM_SOURCE__LOCAL__RELOAD_INTERVAL_S": "0.05",
            "MWM_LOG__FORMAT": "json",
            "MWM_MANAGEMENT__ADMIN_TOKEN": ADMIN_TOKEN,
        }
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy.cli", "run", env=env, cwd=ROOT, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    listening = 0
    while listening < 2:
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert line, "mwm exited before its workers listened"
        if json.loads(line).get("message") == "listening":
            listening += 1
    logs = asyncio.create_task(_drain_stderr(proc))
    try:
        base = f"http://127.0.0.1:{public}"
        async with (
            aiohttp.ClientSession() as admin,
            admin.put(
                f"http://127.0.0.1:{management}/api/maintenance",
                json={"enabled": True, "reason": "all workers"},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ) as response,
        ):
            assert response.status == 200
        # Fresh connections land on either worker; every one must soon say 503.
        for _ in range(2000):
            statuses = set()
            for _ in range(10):
                async with (
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s,
                    s.get(f"{base}/fast") as response,
                ):
                    statuses.add(response.status)
            if statuses == {503}:
                break
        else:
            pytest.fail("some worker never saw the admin switch")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        await logs


def test_the_clients_url_variable_does_not_stop_the_server() -> None:
    result = run_cli("check-config", env={"MWM_MANAGEMENT_URL": "http://127.0.0.1:8081"})
    assert result.returncode == 0, result.stderr


def test_the_cluster_less_mode_does_not_load_the_kubernetes_client() -> None:
    # kubernetes_asyncio's models cost ~40 MiB per process; the local mode never needs them.
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
