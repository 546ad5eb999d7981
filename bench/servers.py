"""The processes a benchmark runs, and what they cost: CPU time and resident memory.

Every server is a child process in its own process group, so stopping it also stops
whatever it started (nginx's workers, mwm's workers).  CPU time is read from
``/proc/<pid>/stat`` (``utime + stime``, every thread included) summed over the process
and all its living descendants, so nginx's master and worker count together, as do mwm's
parent and workers; RSS is ``VmRSS`` from ``/proc/<pid>/status``, summed the same way.
Reading ``/proc`` costs nothing measurable and needs no privileges, which ``perf`` or
``psutil`` would (or an extra package).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
"""Unit of ``utime``/``stime`` in ``/proc/<pid>/stat`` (100 on Linux: 10 ms resolution)."""


class ServerError(Exception):
    """A server did not start or answer as expected; the message says which and why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every living process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found = [pid]
    for parent in found:
        found.extend(children.get(parent, ()))
    return found


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` and its living descendants.

    System time is the kernel working for the process: syscalls, and on loopback most of
    the TCP stack of both ends of a connection (a write delivers into the peer's socket).
    """
    user = system = 0
    for member in descendants(pid):
        fields = _stat_fields(member)
        if fields is not None:
            # Fields 14 and 15 of stat (utime, stime); the slice starts at field 3.
            user += int(fields[11])
            system += int(fields[12])
    return user / CLOCK_TICKS_PER_S, system / CLOCK_TICKS_PER_S


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its living descendants, in seconds."""
    return sum(cpu_times(pid))


def busy_cpu_seconds() -> float:
    """CPU time every core spent running processes since boot (``/proc/stat``, plus the
    hypervisor's steal): with the CPU of the processes under test subtracted, what
    something else on the machine took meanwhile.  Interrupt and softirq time are left
    out: loopback traffic is partly processed there, and it is the benchmark's own."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + steal) / CLOCK_TICKS_PER_S


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its living descendants (``VmRSS``), in bytes."""
    return _status_total(pid, "VmRSS:")


def private_bytes(pid: int) -> int:
    """The private part of :func:`rss_bytes` (``RssAnon``: heap, stacks, anonymous maps),
    in bytes; the rest (``RssFile``) is pages of files (the interpreter, the extension
    modules), which the kernel shares between every process that maps the same files."""
    return _status_total(pid, "RssAnon:")


def _status_total(pid: int, field: str) -> int:
    total = 0
    for member in descendants(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1]) * 1024
                    break
    return total


@dataclass
class Server:
    """One server under test: a command, its port, and the process once started."""

    name: str
    command: Sequence[str]
    port: int
    log_path: Path
    environ: Mapping[str, str] | None = None
    cpus: str | None = None
    """``taskset`` CPU list (``"0"``) to pin the server to, or ``None`` to leave it free."""
    ready_status: int = 200
    """Status that ``GET /`` answers once the server is up (503 for the maintenance pages)."""
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    def start(self, *, timeout_s: float = 20.0) -> None:
        """Start the process and wait until ``GET /`` answers ``ready_status``."""
        command = list(self.command)
        if self.cpus is not None:
            command = ["taskset", "-c", self.cpus, *command]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.environ) if self.environ is not None else None,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        last_problem = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self.process.returncode} while starting; "
                    f"its log: {self.log_path}\n{self._log_tail()}"
                )
            status, last_problem = probe(self.url)
            if status == self.ready_status:
                return
            # Polling a port that is not open yet: nothing to wait on but time.
            time.sleep(0.05)
        raise ServerError(
            f"{self.name} did not answer {self.ready_status} on {self.url} within "
            f"{timeout_s:g} s ({last_problem}); its log: {self.log_path}\n{self._log_tail()}"
        )

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def cpu_times(self) -> tuple[float, float]:
        return cpu_times(self.pid)

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``timeout_s``."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def probe(url: str, *, timeout_s: float = 2.0) -> tuple[int | None, str]:
    """``GET url``: (status, "") or (None, why not)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            response.read()
            return response.status, ""
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code, ""
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))


@dataclass(frozen=True, slots=True)
class Response:
    """One response, to show what a target sends (size, type) next to its numbers."""

    status: int
    headers: dict[str, str]
    body_bytes: int


def fetch(url: str, *, headers: Mapping[str, str] | None = None) -> Response:
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return Response(response.status, dict(response.headers), len(response.read()))
    except urllib.error.HTTPError as exc:
        return Response(exc.code, dict(exc.headers), len(exc.read()))
