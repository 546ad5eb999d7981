"""The quick start behind ``./scripts/demo``: the demo app, and ``mwm`` in front of it.

Everything listens on 127.0.0.1: the app on ``DEMO_APP_PORT`` (8000), mwm on
``MWM_LISTEN__PUBLIC_PORT`` (8080) and ``MWM_LISTEN__MANAGEMENT_PORT`` (8081).

- Every port is checked before anything starts.  A taken one is named, with the process
  holding it when that can be found, and with the variables that choose other ports; the
  demo then exits 1 without starting anything.
- The app's port is bound here and the socket handed to the app (``demo/app.py --fd``), so
  from the check on no other process can take it: mwm only ever forwards to this app.
- The banner is printed only once the app and mwm both answer (a bounded number of
  attempts, each ending early when the process exits).
- Ctrl-C (or SIGTERM) stops both.  Nothing here ends with a traceback.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
STATE_FILE = "demo/mwm-local.yaml"
# Demo-only secrets: set your own in real deployments.
DEMO_BYPASS_TOKEN = "demo-bypass-token"  # noqa: S105
DEMO_ADMIN_TOKEN = "demo-admin-token"  # noqa: S105
DEFAULT_MANAGEMENT_PORT = 8081  # where the mwm on/off/status commands look by default
ATTEMPTS = 150
"""Readiness checks per process, at most ``ATTEMPT_WAIT_S`` apart: 30 s in all."""
ATTEMPT_WAIT_S = 0.2
"""Between two checks the process is waited for: its exit ends the wait at once."""
REQUEST_TIMEOUT_S = 2.0
STOP_TIMEOUT_S = 15.0
"""After SIGTERM, a process gets this long to exit before it is killed."""
READY = "mwm demo: ready"
"""The banner's first words (tests wait for them)."""


@dataclass(frozen=True)
class Port:
    variable: str
    default: int
    role: str


APP = Port("DEMO_APP_PORT", 8000, "the demo app")
PUBLIC = Port("MWM_LISTEN__PUBLIC_PORT", 8080, "mwm's public listener")
MANAGEMENT = Port("MWM_LISTEN__MANAGEMENT_PORT", 8081, "mwm's management listener")
PORTS = (APP, PUBLIC, MANAGEMENT)


class DemoError(Exception):
    """Ends the demo: the message is printed (one ``mwm demo:`` line per line), exit 1."""


class Stopped(Exception):
    """Ctrl-C or SIGTERM."""


def main() -> int:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stopped

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        run(os.environ)
    except DemoError as exc:
        for line in str(exc).splitlines():
            print(f"mwm demo: {line}", file=sys.stderr, flush=True)
        return 1
    except Stopped:
        print("mwm demo: stopped", file=sys.stderr, flush=True)
        return 0


def run(environ: Mapping[str, str]) -> NoReturn:
    ports = read_ports(environ)
    app_socket = claim_ports(ports)
    started: list[subprocess.Popen[bytes]] = []
    workdir = tempfile.mkdtemp(prefix="mwm-demo-")
    try:
        state_file = prepare_state_file(environ, ports[APP], Path(workdir))
        env = mwm_environment(environ, ports, state_file)
        print(
            f"mwm demo: starting the demo app on {HOST}:{ports[APP]} and mwm on "
            f"{HOST}:{ports[PUBLIC]} (management {HOST}:{ports[MANAGEMENT]})",
            flush=True,
        )
        with app_socket:
            app = subprocess.Popen(  # noqa: S603 (our own interpreter and script)
                [sys.executable, "demo/app.py", "--fd", str(app_socket.fileno())],
                cwd=ROOT,
                pass_fds=(app_socket.fileno(),),
            )
        started.append(app)
        wait_ready(app, "the demo app", lambda: answers(f"{base(ports[APP])}/healthz", 200))
        mwm = subprocess.Popen([sys.executable, "-m", "proxy.cli", "run"], cwd=ROOT, env=env)
        started.append(mwm)
        wait_ready(mwm, "mwm", lambda: is_mwm(f"{base(ports[MANAGEMENT])}/readyz"))
        wait_ready(mwm, "mwm", lambda: answers(f"{base(ports[PUBLIC])}/"))
        print(banner(env, ports, state_file), flush=True)
        supervise(app, mwm)
    finally:
        app_socket.close()  # the app has its own copy
        with _signals_ignored():
            for process in reversed(started):  # mwm first: it stops forwarding before the app goes
                stop_process(process)
            shutil.rmtree(workdir, ignore_errors=True)


def read_ports(environ: Mapping[str, str]) -> dict[Port, int]:
    ports: dict[Port, int] = {}
    problems = []
    for port in PORTS:
        text = environ.get(port.variable) or str(port.default)
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            problems.append(f"{port.variable}={text!r} is not a port number (1-65535)")
            continue
        for other, number in ports.items():
            if number == int(text):
                problems.append(
                    f"{other.variable} and {port.variable} are both {number}: "
                    "each needs a port of its own"
                )
        ports[port] = int(text)
    if problems:
        raise DemoError("\n".join(problems))
    return ports


def claim_ports(ports: Mapping[Port, int]) -> socket.socket:
    """Bind every port (or say which are taken); the app's stays bound and listening."""
    app_socket = None
    taken: list[tuple[Port, OSError]] = []
    for port in PORTS:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Like the servers themselves: a connection of an earlier run still in TIME_WAIT
        # does not make a port taken (a listening socket does, with or without it).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, ports[port]))
            if port is APP:
                sock.listen(128)
        except OSError as exc:
            sock.close()
            taken.append((port, exc))
            continue
        if port is APP:
            app_socket = sock
        else:
            sock.close()  # mwm binds it itself in a moment; if it lost it, it says so
    if taken:
        if app_socket is not None:
            app_socket.close()
        raise DemoError(describe_taken(taken, ports))
    assert app_socket is not None
    return app_socket


def describe_taken(taken: list[tuple[Port, OSError]], ports: Mapping[Port, int]) -> str:
    lines = []
    another_demo = False
    for port, exc in taken:
        number = ports[port]
        what = f"port {number} ({port.role}, {port.variable})"
        if exc.errno == errno.EADDRINUSE:
            holder = port_holder(number)
            another_demo |= holder is not None and any(
                mark in holder for mark in ("demo/app.py", "proxy.cli", "mwm run")
            )
            lines.append(f"{what} is already in use" + (f" by {holder}" if holder else ""))
        elif exc.errno == errno.EACCES:
            lines.append(f"{what} cannot be used: permission denied (ports below 1024 need root)")
        else:
            lines.append(f"{what} cannot be used: {exc.strerror or exc}")
    if another_demo:
        lines.append(
            "another ./scripts/demo (or mwm) seems to be running: Ctrl-C in its terminal stops it"
        )
    lines.append("to use other ports: " + " ".join(suggest_ports(taken, ports)) + " ./scripts/demo")
    return "\n".join(lines)


def suggest_ports(taken: list[tuple[Port, OSError]], ports: Mapping[Port, int]) -> list[str]:
    """``VARIABLE=port`` for each taken port: the first offset of 1000 free for all of them."""
    wanted = [port for port, _ in taken]
    for offset in range(1000, 10000, 1000):
        choice = {port: ports[port] + offset for port in wanted}
        if all(number <= 65535 and is_free(number) for number in choice.values()):
            return [f"{port.variable}={number}" for port, number in choice.items()]
    return [f"{port.variable}=<a free port>" for port in wanted]


def is_free(number: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, number))
        except OSError:
            return False
    return True


def port_holder(number: int) -> str | None:
    """``pid 123 (python3 -m http.server 8000)`` for the process listening on ``number``,
    when this user may see it: from /proc on Linux, else from lsof if it is installed."""
    try:
        return _holder_from_proc(number)
    except OSError:
        pass
    lsof = shutil.which("lsof")
    if lsof is None:
        return None
    try:
        result = subprocess.run(  # noqa: S603 (lsof, found on PATH)
            [lsof, "-nP", f"-iTCP:{number}", "-sTCP:LISTEN", "-Fpc"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields = {line[0]: line[1:] for line in result.stdout.splitlines() if line}
    if "p" not in fields:
        return None
    return f"pid {fields['p']}" + (f" ({fields['c']})" if "c" in fields else "")


def _holder_from_proc(number: int) -> str | None:
    inodes = set()
    tables = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        tables += 1
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == number:  # 0A: LISTEN
                inodes.add(f"socket:[{inode}]")
    if not tables:
        raise OSError("no /proc/net/tcp")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not inodes:
            continue
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue  # another user's process, or gone
        if inodes.intersection(links):
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                return f"pid {entry.name}"
            command = " ".join(a.decode(errors="replace") for a in argv if a)
            if len(command) > 80:
                command = command[:77] + "..."
            return f"pid {entry.name} ({command})"
    return None


def prepare_state_file(environ: Mapping[str, str], app_port: int, workdir: Path) -> str:
    """The state file mwm reads: yours if ``MWM_SOURCE__LOCAL__FILE`` is set, the bundled one
    on the default port, else a copy of it whose probes point at ``app_port``."""
    if environ.get("MWM_SOURCE__LOCAL__FILE"):
        return environ["MWM_SOURCE__LOCAL__FILE"]
    if app_port == APP.default:
        return STATE_FILE
    copy = workdir / "mwm-local.yaml"
    text = (ROOT / STATE_FILE).read_text(encoding="utf-8")
    copy.write_text(re.sub(rf"\b{APP.default}\b", str(app_port), text), encoding="utf-8")
    return str(copy)


def mwm_environment(
    environ: Mapping[str, str], ports: Mapping[Port, int], state_file: str
) -> dict[str, str]:
    env = dict(environ)
    if env.get("MWM_UPSTREAM__URL"):
        print("mwm demo: ignoring MWM_UPSTREAM__URL: the demo puts its own app behind mwm")
    env["MWM_UPSTREAM__URL"] = f"{base(ports[APP])}"
    env.setdefault("MWM_SOURCE__KIND", "local")
    env["MWM_SOURCE__LOCAL__FILE"] = state_file
    env.setdefault("MWM_SOURCE__LOCAL__PROBE_INTERVAL_S", "1")
    env["MWM_LISTEN__PUBLIC_HOST"] = env["MWM_LISTEN__MANAGEMENT_HOST"] = HOST
    env[PUBLIC.variable] = str(ports[PUBLIC])
    env[MANAGEMENT.variable] = str(ports[MANAGEMENT])
    for variable, demo_value in (
        ("MWM_BYPASS__TOKEN", DEMO_BYPASS_TOKEN),
        ("MWM_MANAGEMENT__ADMIN_TOKEN", DEMO_ADMIN_TOKEN),
    ):
        if not env.get(variable) and not env.get(variable + "_FILE"):
            env[variable] = demo_value
    return env


def base(port: int) -> str:
    return f"http://{HOST}:{port}"


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def answers(url: str, status: int | None = None) -> bool:
    """Whether ``url`` gives an HTTP answer (with ``status``, if given)."""
    try:
        with _OPENER.open(url, timeout=REQUEST_TIMEOUT_S) as response:
            return status is None or response.status == status
    except urllib.error.HTTPError as exc:
        exc.close()
        return status is None
    except (urllib.error.URLError, OSError):
        return False


def is_mwm(url: str) -> bool:
    """Whether ``url`` answers 200 with mwm's ``Server`` header (mwm's /readyz, not another's)."""
    try:
        with _OPENER.open(url, timeout=REQUEST_TIMEOUT_S) as response:
            return bool(response.status == 200 and response.headers.get("Server") == "mwm")
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(process: subprocess.Popen[bytes], name: str, ready: Callable[[], bool]) -> None:
    for _ in range(ATTEMPTS):
        if ready():
            return
        try:
            code = process.wait(timeout=ATTEMPT_WAIT_S)
        except subprocess.TimeoutExpired:
            continue
        raise DemoError(f"{name} exited (status {code}) before it answered; its messages are above")
    raise DemoError(f"{name} did not answer within {ATTEMPTS * ATTEMPT_WAIT_S:.0f} s")


def supervise(app: subprocess.Popen[bytes], mwm: subprocess.Popen[bytes]) -> NoReturn:
    """Wait until either process exits (Ctrl-C raises :class:`Stopped` meanwhile)."""
    exited = threading.Event()
    for process in (app, mwm):
        threading.Thread(target=lambda p=process: (p.wait(), exited.set()), daemon=True).start()
    exited.wait()
    name, code = ("mwm", mwm.returncode) if mwm.poll() is not None else ("the demo app", app.poll())
    raise DemoError(f"{name} exited (status {code}); stopping the demo")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class _signals_ignored:
    """Ctrl-C while the processes are being stopped does not interrupt the stopping."""

    def __enter__(self) -> None:
        self._saved = [
            (s, signal.signal(s, signal.SIG_IGN)) for s in (signal.SIGINT, signal.SIGTERM)
        ]

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._saved:
            signal.signal(signum, handler)


def banner(env: Mapping[str, str], ports: Mapping[Port, int], state_file: str) -> str:
    public, app, management = base(ports[PUBLIC]), base(ports[APP]), ports[MANAGEMENT]
    admin = env.get("MWM_MANAGEMENT__ADMIN_TOKEN")
    bypass = env.get("MWM_BYPASS__TOKEN") or "<your bypass token>"
    lines = [
        "",
        f"{READY}: the app is behind the proxy at {public}/",
        f"  the app itself: {app}/   management API: {base(management)}/",
        f"  state file (edits apply live): {state_file}",
        f"  ports: {APP.variable}={ports[APP]} {PUBLIC.variable}={ports[PUBLIC]} "
        f"{MANAGEMENT.variable}={management} (set these to choose others)",
        "Try, in another terminal:",
    ]
    if admin == DEMO_ADMIN_TOKEN:
        lines.append(f"  export MWM_MANAGEMENT__ADMIN_TOKEN={admin}   # for mwm on/off/status")
    if management != DEFAULT_MANAGEMENT_PORT:
        lines.append(f"  export MWM_MANAGEMENT_URL={base(management)}")
    lines += [
        f"  curl -i {public}/                        # the app's page",
        '  .venv/bin/mwm on --reason "Upgrading the database" --until 30m',
        f"  curl -i {public}/                        # 503 page, Retry-After",
        f"  curl -i -H 'Accept: application/json' {public}/   # problem+json",
        f"  curl -i {public}/admin                   # admin path passes",
        f"  curl -i -H 'X-Maintenance-Bypass: {bypass}' {public}/",
        f"  open {public}/_mwm/bypass/{bypass}   # sets a bypass cookie",
        f"  curl {public}/services                   # what is ready",
        "  .venv/bin/mwm status",
        "  .venv/bin/mwm off",
        f"  curl -X POST {app}/_demo/health/down  # critical service fails: automatic 503",
        f"  curl -X POST {app}/_demo/health/up",
        "Ctrl-C stops both.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
