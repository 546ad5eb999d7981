"""``./scripts/demo``, the quick start every new user runs, when its ports are not free.

Promises:

- A taken port (the app's, or one of mwm's) stops the demo before anything starts: exit 1,
  one line naming the port, its variable and (on Linux) the process holding it, one line
  with the variables that choose other ports, no traceback, no banner, and nothing
  connects to the process holding the port (mwm never forwards to a stranger).
- The banner is printed only once the app and mwm both answer; a second demo on the same
  ports is refused the same way; Ctrl-C stops both processes and frees every port.
- mwm failing to start means no banner, exit 1, the app stopped.

Each demo runs in its own session and the whole group is killed if it outlives the test,
so a regression cannot leave servers behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import aiohttp
import pytest

from tests.mwmprocess import ROOT, clean_env

TIMEOUT_S = 60.0
READY = "mwm demo: ready"
VARIABLES = ("DEMO_APP_PORT", "MWM_LISTEN__PUBLIC_PORT", "MWM_LISTEN__MANAGEMENT_PORT")


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now (all held until all are picked: distinct)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def demo_env(ports: Mapping[str, int | str], **extra: str) -> dict[str, str]:
    """This environment without MWM_ settings or demo ports, plus ``ports`` and ``extra``."""
    env = clean_env({})
    for variable in VARIABLES:
        env.pop(variable, None)
    env.update({variable: str(port) for variable, port in ports.items()}, **extra)
    return env


def run_demo(command: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a demo that is expected to exit by itself; kill its whole group if it does not."""
    process = subprocess.Popen(
        command,
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"the demo kept running:\n{stdout}\n{stderr}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # anything it left behind
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture
def scripts_demo(tmp_path: Path) -> Path:
    """``scripts/demo`` itself, in a tree where ``scripts/bootstrap`` does nothing (the real
    one may reinstall ``.venv``); ``.venv`` and ``demo/`` are the checkout's."""
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "demo"
    shutil.copy2(ROOT / "scripts" / "demo", script)
    bootstrap = tmp_path / "scripts" / "bootstrap"
    bootstrap.write_text("#!/bin/sh\n", encoding="utf-8")
    bootstrap.chmod(0o755)
    for name in (".venv", "demo"):
        (tmp_path / name).symlink_to(ROOT / name)
    return script


@pytest.fixture
def held_port() -> Iterator[socket.socket]:
    """A port some other program listens on (this test process, here)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def assert_refused(
    result: subprocess.CompletedProcess[str], port: int, variable: str, role: str
) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert READY not in result.stdout
    lines = result.stderr.splitlines()
    [line] = [line for line in lines if f"port {port} " in line]
    expected = f"mwm demo: port {port} ({role}, {variable}) is already in use"
    if sys.platform == "linux":  # the holder is found in /proc
        expected += f" by pid {os.getpid()} ("
    assert line.startswith(expected), line
    assert lines[-1].startswith("mwm demo: to use other ports: "), lines
    assert f" {variable}=" in lines[-1]
    assert lines[-1].endswith(" ./scripts/demo")


def test_scripts_demo_refuses_a_taken_app_port(
    scripts_demo: Path, held_port: socket.socket
) -> None:
    port = int(held_port.getsockname()[1])
    public, management = free_ports(2)
    env = demo_env(
        {
            "DEMO_APP_PORT": port,
            "MWM_LISTEN__PUBLIC_PORT": public,
            "MWM_LISTEN__MANAGEMENT_PORT": management,
        }
    )
    result = run_demo([str(scripts_demo)], env)
    assert_refused(result, port, "DEMO_APP_PORT", "the demo app")
    with pytest.raises(BlockingIOError):
        held_port.accept()  # nobody came: no probe, no forwarded request


@pytest.mark.parametrize(
    ("variable", "role"),
    [
        ("MWM_LISTEN__PUBLIC_PORT", "mwm's public listener"),
        ("MWM_LISTEN__MANAGEMENT_PORT", "mwm's management listener"),
    ],
)
def test_demo_refuses_a_taken_mwm_port(held_port: socket.socket, variable: str, role: str) -> None:
    port = int(held_port.getsockname()[1])
    ports = dict(zip(VARIABLES, free_ports(3), strict=True))
    ports[variable] = port
    result = run_demo([sys.executable, "demo/run.py"], demo_env(ports))
    assert_refused(result, port, variable, role)
    with pytest.raises(BlockingIOError):
        held_port.accept()
    assert is_free(ports["DEMO_APP_PORT"])  # the app's port, claimed first, was let go


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        (
            {"DEMO_APP_PORT": "http"},
            "mwm demo: DEMO_APP_PORT='http' is not a port number (1-65535)",
        ),
        ({"MWM_LISTEN__PUBLIC_PORT": "0"}, "mwm demo: MWM_LISTEN__PUBLIC_PORT='0' is not a port"),
        (
            {"MWM_LISTEN__PUBLIC_PORT": "8000"},
            "mwm demo: DEMO_APP_PORT and MWM_LISTEN__PUBLIC_PORT are both 8000: each needs a port",
        ),
    ],
)
def test_demo_says_which_port_variable_is_wrong(ports: dict[str, str], message: str) -> None:
    result = run_demo([sys.executable, "demo/run.py"], demo_env(ports))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(message), result.stderr


def test_no_banner_when_mwm_does_not_start() -> None:
    ports = dict(zip(VARIABLES, free_ports(3), strict=True))
    result = run_demo([sys.executable, "demo/run.py"], demo_env(ports, MWM_LOG__LEVEL="chatty"))
    assert result.returncode == 1
    assert READY not in result.stdout
    assert "MWM_LOG__LEVEL" in result.stderr  # mwm's own message
    assert result.stderr.splitlines()[-1] == (
        "mwm demo: mwm exited (status 2) before it answered; its messages are above"
    )
    assert "Traceback" not in result.stderr
    assert all(is_free(port) for port in ports.values())  # the app was stopped too


async def test_banner_once_both_serve_a_second_demo_is_refused_and_ctrl_c_stops_both() -> None:
    ports = dict(zip(VARIABLES, free_ports(3), strict=True))
    env = demo_env(ports)
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "demo/run.py",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert demo.stdout is not None
    assert demo.stderr is not None
    stderr = asyncio.ensure_future(demo.stderr.read())
    try:

        async def banner() -> list[str]:
            assert demo.stdout is not None
            seen = []
            while not seen or not seen[-1].startswith(READY):
                line = await demo.stdout.readline()
                assert line, f"the demo ended before its banner: {seen}"
                seen.append(line.decode().rstrip("\n"))
            return seen

        public = f"http://127.0.0.1:{ports['MWM_LISTEN__PUBLIC_PORT']}/"
        seen = await asyncio.wait_for(banner(), TIMEOUT_S)
        assert seen[-1] == f"{READY}: the app is behind the proxy at {public}"
        # The banner came after both serve: the page through the proxy is the app's.
        async with aiohttp.ClientSession() as session, session.get(public) as response:
            assert response.status == 200
            assert "Demo shop" in await response.text()

        second = await asyncio.to_thread(run_demo, [sys.executable, "demo/run.py"], env)
        assert second.returncode == 1
        assert "Traceback" not in second.stderr
        in_use = [line for line in second.stderr.splitlines() if "is already in use" in line]
        assert [line.split(" (")[0] for line in in_use] == [
            f"mwm demo: port {port}" for port in ports.values()
        ]
        assert "another ./scripts/demo (or mwm) seems to be running" in second.stderr

        demo.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(demo.wait(), TIMEOUT_S) == 0
        assert (await stderr).decode().splitlines()[-1] == "mwm demo: stopped"
        assert all(is_free(port) for port in ports.values())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGKILL)
        await demo.wait()
        await stderr
