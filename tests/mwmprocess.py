"""``mwm run`` as a real child process, for what only a process shows: signals, exit
status, its own file descriptors and memory.

The process logs JSON lines on stderr; every line is kept, and a test waits for one with
:meth:`MwmProcess.logged` (an event, not a poll): the shutdown steps, ``listening``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "process-admin-token"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any ``MWM_`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MWM_")}
    env.update(extra)
    return env


def run_cli(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``mwm <args>`` to completion (a client command, or a server that refuses to start)."""
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


@dataclass(eq=False)
class MwmProcess:
    """A started ``mwm run`` and everything it has logged so far."""

    proc: asyncio.subprocess.Process
    public: str = ""
    management: str = ""
    logs: list[dict[str, Any]] = field(default_factory=list)
    """Every line logged, parsed (a line that is not JSON is kept as ``{"message": line}``)."""
    _new_line: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def logged(
        self, message: str, *, times: int = 1, timeout_s: float = START_TIMEOUT_S
    ) -> dict[str, Any]:
        """The ``times``-th line logged with this ``message`` (the first by default; with
        several workers each logs its own), waiting for it if need be."""

        async def first() -> dict[str, Any]:
            seen = found = 0
            while True:
                for entry in self.logs[seen:]:
                    if entry.get("message") == message:
                        found += 1
                        if found == times:
                            return entry
                seen = len(self.logs)
                if self._reader is not None and self._reader.done():
                    raise AssertionError(
                        f"mwm exited without logging {message!r}; it logged:\n{self.log_text()}"
                    )
                self._new_line.clear()
                await self._new_line.wait()

        return await asyncio.wait_for(first(), timeout_s)

    def log_text(self) -> str:
        return "\n".join(json.dumps(entry) for entry in self.logs)

    def terminate(self) -> None:
        """SIGTERM: the orchestrator's way of asking for a graceful shutdown."""
        self.proc.send_signal(signal.SIGTERM)

    async def wait(self, *, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Wait for the process to exit and its log to be read to the end."""
        code = await asyncio.wait_for(self.proc.wait(), timeout_s)
        if self._reader is not None:
            await self._reader
        return code

    async def _read_logs(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        try:
            async for raw in stream:
                line = raw.decode(errors="replace").rstrip("\n")
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = {"message": line}
                self.logs.append(entry if isinstance(entry, dict) else {"message": line})
                self._new_line.set()
        finally:
            self._new_line.set()  # wake waiters: they report the exit


async def start_mwm(upstream_url: str, extra: Mapping[str, str] | None = None) -> MwmProcess:
    """Start ``mwm run`` in front of ``upstream_url``, listening on free ports of 127.0.0.1.

    Returns once it logged ``listening``; ``extra`` sets or overrides ``MWM_*`` variables.
    """
    env = clean_env(
        {
            "MWM_UPSTREAM__URL": upstream_url,
            "MWM_LISTEN__PUBLIC_HOST": "127.0.0.1",
            "MWM_LISTEN__PUBLIC_PORT": "0",
            "MWM_LISTEN__MANAGEMENT_HOST": "127.0.0.1",
            "MWM_LISTEN__MANAGEMENT_PORT": "0",
            "MWM_LOG__FORMAT": "json",
            "MWM_MANAGEMENT__ADMIN_TOKEN": ADMIN_TOKEN,
            **(extra or {}),
        }
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy.cli",
        "run",
        env=env,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    process = MwmProcess(proc)
    process._reader = asyncio.create_task(process._read_logs(), name="mwm-log-reader")
    try:
        entry = await process.logged("listening")
    except BaseException:
        await stop_mwm(process)
        raise
    process.public = f"http://127.0.0.1:{entry['public_port']}"
    process.management = f"http://127.0.0.1:{entry['management_port']}"
    return process


async def stop_mwm(process: MwmProcess) -> None:
    """SIGTERM if still running, SIGKILL if it does not exit in time; never raises."""
    if process.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.proc.kill()
            await process.proc.wait()
    if process._reader is not None:
        await process._reader


@contextlib.asynccontextmanager
async def running_mwm(
    upstream_url: str, extra: Mapping[str, str] | None = None
) -> AsyncIterator[MwmProcess]:
    """:func:`start_mwm`, stopped (if the test did not) when the block ends."""
    process = await start_mwm(upstream_url, extra)
    try:
        yield process
    finally:
        await stop_mwm(process)
