"""Where mwm's time goes: a sampling profile under load, GC pauses, syscalls per request.

    .venv/bin/python -m bench.profile                     # proxied and maintenance modes
    .venv/bin/python -m bench.profile --mode proxy --seconds 20

For each mode (``proxy``: forwarding to the upstream; ``maintenance``: the 503 page), on
127.0.0.1 with the harness's upstream, settings and request headers
(:mod:`bench.harness`), and the same pinning (servers on one core, clients on another):

1. **Syscalls per request.**  A separate ``mwm run`` under ``strace -f`` (from its start,
   so the upstream connection's creation is seen too) gets a marker request, N requests
   over one keep-alive connection, and a closing marker; every syscall between the
   markers is counted and divided by N.  It also says whether ``TCP_NODELAY`` is set on
   the client-facing and the upstream sockets, how many writes each response takes, and
   whether the upstream connection is reused (``connect`` calls between the markers).
2. **Profile under load.**  ``mwm run`` started through :mod:`bench.gcstats` (records
   every garbage collection) gets ``wrk -c32`` while ``py-spy record --native`` samples
   it; the stacks are summarized by self time (native frames: syscalls, the collector),
   by the nearest Python function, by package, and inclusively.  The GC pauses inside
   the load window are summarized next to wrk's latency.
3. **GC experiment** (proxy mode, ``--gc-experiment``): the same load without the
   profiler on mwm as it is, on mwm whose start-up heap the launcher froze
   (:func:`gc.freeze`, ``BENCH_GC_FREEZE=1``), and frozen with a larger youngest-generation
   threshold (``--gc-threshold``, ``BENCH_GC_THRESHOLD``).
4. **Latency at low load** (proxy mode): direct and mwm at concurrency 1 (back to back)
   and at a fixed 1,000 req/s with requests spread evenly or sent in bursts (h2load's
   default: every client's request at the same instant).

py-spy pauses the process for each sample, so throughput is lower while it samples and
the shares are what matter, not the rates.  Raw files (collapsed stacks, which
speedscope and flamegraph.pl read; the strace logs; the GC events) go to
``bench/results/profile-<time>/``.  Needs ``py-spy`` (pip) and ``strace`` (apt).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.gcstats import summarize
from bench.harness import (
    REQUEST_HEADERS,
    RESULTS_DIR,
    Pinning,
    choose_pinning,
    mwm_command,
    mwm_server,
    raise_interrupt,
)
from bench.loadgen import percentile, run_h2load, run_wrk
from bench.nginx import nginx_binary
from bench.servers import Server, free_port
from bench.upstream import upstream_server

STRACED = (
    "read,write,writev,readv,sendto,recvfrom,sendmsg,recvmsg,epoll_wait,epoll_pwait,"
    "epoll_ctl,accept4,connect,socket,setsockopt,getsockopt,getsockname,getpeername,"
    "getpid,close,futex,clock_gettime,eventfd2"
)
BEGIN, END = "/__bench_strace_begin", "/__bench_strace_end"
WRITES = ("write", "writev", "sendto", "sendmsg")
READS = ("read", "readv", "recvfrom", "recvmsg")


def _log(message: str) -> None:
    print(f"[profile {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- syscalls ----------------------------------------------------------------------------------

_CALL = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\((.*))")
_RESULT = re.compile(r"=\s+(-?\d+)")


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: str
    result: int | None


def parse_strace(path: Path) -> list[Call]:
    """One :class:`Call` per syscall made (an ``<unfinished ...>`` pair counts once)."""
    calls = []
    for line in path.read_text(errors="replace").splitlines():
        match = _CALL.match(line)
        if match is None or match.group(2):  # "resumed" halves were counted when they began
            continue
        result = _RESULT.search(line.rsplit(")", 1)[-1]) if "unfinished" not in line else None
        calls.append(Call(match.group(3), match.group(4), int(result.group(1)) if result else None))
    return calls


def _fd(call: Call) -> int | None:
    head = call.args.split(",", 1)[0]
    return int(head) if head.isdigit() else None


def syscalls_per_request(calls: list[Call], *, requests: int, upstream_port: int) -> dict[str, Any]:
    """Counts between the two marker requests, divided by ``requests``; socket facts."""
    begin = next(i for i, c in enumerate(calls) if c.name in READS and BEGIN in c.args)
    end = next(i for i, c in enumerate(calls) if c.name in READS and END in c.args)
    client_fd = _fd(calls[begin])
    upstream_fd = next(
        (_fd(c) for c in calls[begin:end] if c.name in WRITES and BEGIN in c.args), None
    )
    nodelay: set[int] = set()
    upstream_connects: dict[int, int] = {}
    for index, call in enumerate(calls[:end]):
        fd = _fd(call)
        if fd is None:
            continue
        if call.name in ("accept4", "socket") and call.result is not None:
            nodelay.discard(call.result)
        if call.name == "setsockopt" and "TCP_NODELAY, [1]" in call.args:
            nodelay.add(fd)
        if call.name == "connect" and f"htons({upstream_port})" in call.args:
            upstream_connects[fd] = index
    window = calls[begin + 1 : end + 1]
    counts = collections.Counter(c.name for c in window)

    def writes(fd: int | None) -> tuple[float, float]:
        sizes = [c.result or 0 for c in window if c.name in WRITES and _fd(c) == fd]
        return len(sizes) / requests, (sum(sizes) / len(sizes) if sizes else 0.0)

    client_writes, client_bytes = writes(client_fd)
    upstream_writes, upstream_bytes = writes(upstream_fd)
    return {
        "requests": requests,
        "per_request": {
            name: count / requests for name, count in sorted(counts.items(), key=lambda x: -x[1])
        },
        "total_per_request": len(window) / requests,
        "client_socket": {
            "fd": client_fd,
            "tcp_nodelay": client_fd in nodelay,
            "writes_per_request": client_writes,
            "bytes_per_write": client_bytes,
        },
        "upstream_socket": None
        if upstream_fd is None
        else {
            "fd": upstream_fd,
            "tcp_nodelay": upstream_fd in nodelay,
            "connected_in_trace": upstream_fd in upstream_connects,
            "writes_per_request": upstream_writes,
            "bytes_per_write": upstream_bytes,
        },
        "connects_during_requests": sum(1 for c in window if c.name == "connect"),
        "setsockopt_calls_before": sum(1 for c in calls[:begin] if c.name == "setsockopt"),
    }


def trace_requests(server: Server, *, requests: int) -> None:
    """The markers and ``requests`` requests in between, over one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for path in (BEGIN, *(["/"] * requests), END):
            connection.request("GET", path, headers=REQUEST_HEADERS)
            connection.getresponse().read()
    finally:
        connection.close()


# -- stacks ------------------------------------------------------------------------------------

_LOCATION = re.compile(r":\d+\)$")
_SYSCALL_WRAPPERS = {
    "read",
    "write",
    "writev",
    "epoll_wait",
    "epoll_pwait",
    "getpid",
    "sendmsg",
    "recvmsg",
    "__libc_recv",
    "__libc_send",
}


GC = "garbage collector"


def _function(frame: str) -> str:
    return _LOCATION.sub(")", frame)


def _is_python(frame: str) -> bool:
    return ".py" in frame or "(<string>)" in frame or "(<frozen" in frame


def _category(frame: str) -> str:
    name = frame.split(" (", 1)[0]
    if "(libc.so" in frame and name in _SYSCALL_WRAPPERS:
        return f"syscall {name}"
    if name.startswith(("gc_collect", "gc_", "collect_with_callback")) or "gcmodule" in frame:
        return GC
    match = re.search(r"\(([^)]+?)(?::\d+)?\)$", frame)
    where = match.group(1) if match else frame
    if "site-packages/" in where:
        where = where.split("site-packages/", 1)[1]
    if where.endswith(".py"):
        parts = where.split("/")
        return f"python {parts[0] if len(parts) > 1 else 'stdlib ' + parts[0]}"
    return f"native {where}"


def summarize_stacks(path: Path, *, top: int) -> dict[str, Any]:
    """Self time (native and nearest-Python), by category, and inclusive Python time."""
    native: collections.Counter[str] = collections.Counter()
    python: collections.Counter[str] = collections.Counter()
    categories: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        native[_function(frames[-1])] += count
        category = _category(frames[-1])
        categories[category] += count
        if category == GC:
            # Not the cost of whichever allocation happened to trigger the collection.
            python[f"({GC})"] += count
        else:
            nearest = next((f for f in reversed(frames) if _is_python(f)), frames[-1])
            python[_function(nearest)] += count
        for name in {_function(f) for f in frames if _is_python(f)}:
            inclusive[name] += count

    def shares(counter: collections.Counter[str], limit: int) -> list[tuple[str, float]]:
        return [(name, count / total * 100) for name, count in counter.most_common(limit)]

    return {
        "samples": total,
        "self_native": shares(native, top),
        "self_python": shares(python, top),
        "categories": shares(categories, 20),
        "inclusive_python": shares(inclusive, top + 15),
    }


# -- one mode ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Context:
    workdir: Path
    output: Path
    upstream: Server
    pinning: Pinning
    seconds: int
    top: int
    trace_requests: int


def _mwm(
    context: Context,
    name: str,
    *,
    maintenance: bool,
    command: Sequence[str] | None = None,
    environ: dict[str, str] | None = None,
) -> Server:
    return mwm_server(
        name,
        workdir=context.workdir,
        upstream_port=context.upstream.port,
        maintenance=maintenance,
        cpus=context.pinning.servers,
        command=command,
        extra_environ=environ,
    )


def strace_mode(context: Context, mode: str, *, maintenance: bool) -> dict[str, Any]:
    trace = context.output / f"strace-{mode}.txt"
    command = ["strace", "-f", "-qq", "-s", "96", "-e", f"trace={STRACED}", "-o", str(trace)]
    server = _mwm(
        context, f"strace-{mode}", maintenance=maintenance, command=[*command, *mwm_command()]
    )
    server.start(timeout_s=60)
    try:
        trace_requests(server, requests=context.trace_requests)
    finally:
        server.stop()
    return syscalls_per_request(
        parse_strace(trace), requests=context.trace_requests, upstream_port=context.upstream.port
    )


def load_mode(
    context: Context,
    mode: str,
    *,
    maintenance: bool,
    spy: bool = True,
    gc_environ: dict[str, str] | None = None,
) -> dict[str, Any]:
    gc_file = context.output / f"gc-{mode}.json"
    environ = {"BENCH_GC_STATS": str(gc_file), **(gc_environ or {})}
    server = _mwm(
        context,
        f"profiled-{mode}",
        maintenance=maintenance,
        command=[sys.executable, "-m", "bench.gcstats"],
        environ=environ,
    )
    server.start(timeout_s=30)
    stacks = context.output / f"pyspy-{mode}.txt"
    try:
        _wrk(context, server, seconds=2)  # warm-up: pool filled, caches populated
        window_start = time.monotonic()
        user_before, system_before = server.cpu_times()
        spy_process = None
        if spy:
            spy_process = subprocess.Popen(
                _pinned(
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--native",
                        "--rate",
                        "250",
                        "--duration",
                        str(context.seconds),
                        "--pid",
                        str(server.pid),
                        "--format",
                        "raw",
                        "--output",
                        str(stacks),
                    ],
                    context.pinning.client,
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        result = _wrk(context, server, seconds=context.seconds)
        user_after, system_after = server.cpu_times()
        window_end = time.monotonic()
        if spy_process is not None:
            spy_process.wait(60)
    finally:
        server.stop()
    gc_data = json.loads(gc_file.read_text())
    events = [
        (float(e[0]), int(e[1]), float(e[2]), int(e[3]))
        for e in gc_data["events"]
        if window_start <= e[0] <= window_end
    ]
    window_s = window_end - window_start
    gc_window = summarize(events)
    gc_total_ms = sum(g["total_ms"] for g in gc_window.values())
    requests = max(result.requests, 1)
    document: dict[str, Any] = {
        "wrk": {
            "requests_per_s": result.requests_per_s,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "max_ms": result.max_ms,
            "profiler_attached": spy,
        },
        "cpu_us_per_request": {
            "user": (user_after - user_before) * 1e6 / requests,
            "system": (system_after - system_before) * 1e6 / requests,
        },
        "gc": {
            "tracked_objects_at_exit": gc_data["tracked_objects"],
            "frozen_objects": gc_data["frozen_objects"],
            "thresholds": gc_data["thresholds"],
            "load_window_s": window_s,
            "share_of_wall_time_pct": gc_total_ms / 1000 / window_s * 100,
            "per_generation": gc_window,
        },
    }
    if spy and stacks.exists():
        document["stacks"] = summarize_stacks(stacks, top=context.top)
        document["stacks_file"] = str(stacks)
    return document


def _pinned(command: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus is not None else command


def _wrk(context: Context, server: Server, *, seconds: int) -> Any:
    return run_wrk(
        server.url,
        seconds=seconds,
        connections=32,
        cpus=context.pinning.client,
        headers=REQUEST_HEADERS,
        workdir=context.workdir,
    )


def low_load(context: Context) -> dict[str, Any]:
    """Direct vs mwm: back to back on one connection, and 1,000 req/s spread or in bursts."""
    server = _mwm(context, "low-load", maintenance=False)
    server.start()
    rows: dict[str, Any] = {}
    try:
        _wrk(context, server, seconds=1)
        for label, target in (("direct", context.upstream), ("mwm", server)):
            for pattern, spread, clients, rate in (
                ("concurrency 1, back to back", None, 1, 0),
                ("1000 req/s spread", True, 10, 1000),
                ("1000 req/s in bursts of 10", False, 10, 1000),
            ):
                if spread is None:
                    durations = _back_to_back(context, target.url, requests=3000)
                else:
                    durations = run_h2load(
                        target.url,
                        rate_per_s=rate,
                        seconds=3,
                        clients=clients,
                        cpus=context.pinning.client,
                        headers=REQUEST_HEADERS,
                        spread=spread,
                    ).durations_us
                ordered = sorted(durations)
                rows.setdefault(pattern, {})[label] = {
                    "p50_ms": percentile(ordered, 50) / 1000,
                    "p99_ms": percentile(ordered, 99) / 1000,
                }
    finally:
        server.stop()
    for row in rows.values():
        row["added_p50_ms"] = row["mwm"]["p50_ms"] - row["direct"]["p50_ms"]
        row["added_p99_ms"] = row["mwm"]["p99_ms"] - row["direct"]["p99_ms"]
    return rows


def _back_to_back(context: Context, url: str, *, requests: int) -> list[int]:
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log:
        command = ["h2load", "--h1", "-c1", f"-n{requests}", f"--log-file={log.name}"]
        for name, value in REQUEST_HEADERS.items():
            command += ["-H", f"{name}: {value}"]
        subprocess.run(
            _pinned([*command, url], context.pinning.client),
            capture_output=True,
            check=True,
            timeout=120,
        )
        return [int(line.split()[2]) for line in Path(log.name).read_text().splitlines() if line]


# -- report ------------------------------------------------------------------------------------


def _table(rows: Iterable[tuple[str, float]], indent: str = "    ") -> list[str]:
    return [f"{indent}{share:5.1f}%  {name}" for name, share in rows]


def render(results: dict[str, Any]) -> str:
    lines = [f"mwm profile @ {results['commit'][:12]}, output in {results['output']}"]
    for mode, data in results["modes"].items():
        lines += ["", f"=== {mode}"]
        syscalls = data.get("syscalls")
        if syscalls:
            client, upstream = syscalls["client_socket"], syscalls["upstream_socket"]
            per = ", ".join(f"{n} {c:.2f}" for n, c in syscalls["per_request"].items())
            lines += [
                f"syscalls per request (strace, {syscalls['requests']} keep-alive requests): "
                f"{syscalls['total_per_request']:.2f}: {per}",
                f"  client socket: TCP_NODELAY {'on' if client['tcp_nodelay'] else 'OFF'}, "
                f"{client['writes_per_request']:.2f} writes/request of "
                f"{client['bytes_per_write']:.0f} B",
            ]
            if upstream:
                lines.append(
                    f"  upstream socket: TCP_NODELAY {'on' if upstream['tcp_nodelay'] else 'OFF'}"
                    f" (connection seen opening: {upstream['connected_in_trace']}), "
                    f"{upstream['writes_per_request']:.2f} writes/request of "
                    f"{upstream['bytes_per_write']:.0f} B; connect() during the requests: "
                    f"{syscalls['connects_during_requests']}"
                )
        load = data["load"]
        wrk, cpu, gcd = load["wrk"], load["cpu_us_per_request"], load["gc"]
        lines.append(
            f"under wrk -c32 with py-spy attached: {wrk['requests_per_s']:.0f} req/s, p50 "
            f"{wrk['p50_ms']:.2f} ms, p99 {wrk['p99_ms']:.2f} ms, max {wrk['max_ms']:.2f} ms; "
            f"CPU/request {cpu['user']:.0f} µs user + {cpu['system']:.0f} µs system"
        )
        lines.append(
            f"GC in the load window: {gcd['share_of_wall_time_pct']:.1f}% of wall time, "
            f"{gcd['tracked_objects_at_exit']} tracked objects, thresholds {gcd['thresholds']}"
        )
        for generation, row in gcd["per_generation"].items():
            if row["collections"]:
                lines.append(
                    f"  {generation}: {row['collections']} collections, total "
                    f"{row['total_ms']:.0f} ms, median {row['median_ms']:.3f} ms, "
                    f"max {row['max_ms']:.2f} ms"
                )
        stacks = load.get("stacks")
        if stacks:
            lines += [f"py-spy --native, {stacks['samples']} samples; self time by kind:"]
            lines += _table(stacks["categories"][:12])
            lines += ["self time, innermost frame (native included):"]
            lines += _table(stacks["self_native"])
            lines += ["self time, charged to the nearest Python function:"]
            lines += _table(stacks["self_python"])
            lines += ["inclusive time, Python functions:"]
            lines += _table(stacks["inclusive_python"])
        for label, variant in data.get("gc_experiment", {}).items():
            vw, vg, vc = variant["wrk"], variant["gc"], variant["cpu_us_per_request"]
            gen2 = vg["per_generation"]["gen2"]
            lines.append(
                f"  GC experiment, {label:<34} {vw['requests_per_s']:6.0f} req/s, "
                f"{vc['user'] + vc['system']:5.1f} µs CPU/req, p99 {vw['p99_ms']:6.2f} ms, "
                f"max {vw['max_ms']:6.2f} ms, GC {vg['share_of_wall_time_pct']:4.1f}% of wall "
                f"time, gen2 max {(gen2['max_ms'] or 0):.2f} ms"
            )
    low = results.get("low_load")
    if low:
        lines += ["", "=== latency at low load (proxy mode): direct vs mwm"]
        for pattern, row in low.items():
            lines.append(
                f"  {pattern:<30} direct p50 {row['direct']['p50_ms']:.3f} p99 "
                f"{row['direct']['p99_ms']:.3f} | mwm p50 {row['mwm']['p50_ms']:.3f} p99 "
                f"{row['mwm']['p99_ms']:.3f} | added p50 {row['added_p50_ms']:.3f} p99 "
                f"{row['added_p99_ms']:.3f} ms"
            )
    return "\n".join(lines)


# -- running -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--mode", choices=("proxy", "maintenance", "both"), default="both")
    parser.add_argument("--seconds", type=int, default=10, help="profiled load, s (10)")
    parser.add_argument("--top", type=int, default=25, help="rows per ranking (25)")
    parser.add_argument("--trace-requests", type=int, default=200, help="strace'd requests")
    parser.add_argument(
        "--gc-experiment", action="store_true", help="proxy mode: as is / frozen / threshold"
    )
    parser.add_argument("--gc-threshold", type=int, default=50_000, help="for --gc-experiment")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGINT, raise_interrupt)
    missing = [t for t in ("wrk", "h2load", "strace") if shutil.which(t) is None]
    if not (Path(sys.executable).parent / "py-spy").exists():
        missing.append("py-spy (.venv/bin/pip install py-spy)")
    nginx = nginx_binary()
    if nginx is None:
        missing.append("nginx")
    if missing:
        print(f"profile: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    assert nginx is not None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = args.results_dir / f"profile-{stamp}"
    output.mkdir(parents=True, exist_ok=True)
    pinning = choose_pinning(not args.no_pin)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    results: dict[str, Any] = {"commit": commit or "unknown", "output": str(output), "modes": {}}
    workdir = Path(tempfile.mkdtemp(prefix="mwm-profile-"))
    upstream = upstream_server(
        binary=nginx, workdir=workdir, port=free_port(), cpus=pinning.servers
    )
    try:
        upstream.start()
        context = Context(
            workdir=workdir,
            output=output,
            upstream=upstream,
            pinning=pinning,
            seconds=args.seconds,
            top=args.top,
            trace_requests=args.trace_requests,
        )
        modes = ("proxy", "maintenance") if args.mode == "both" else (args.mode,)
        for mode in modes:
            maintenance = mode == "maintenance"
            _log(f"{mode}: strace")
            data: dict[str, Any] = {"syscalls": strace_mode(context, mode, maintenance=maintenance)}
            _log(f"{mode}: py-spy under load")
            data["load"] = load_mode(context, mode, maintenance=maintenance)
            if mode == "proxy" and args.gc_experiment:
                _log(f"{mode}: GC experiment")
                variants = {
                    "as it is": {},
                    "gc.freeze() by the launcher": {"BENCH_GC_FREEZE": "1"},
                    f"frozen + gen0 threshold {args.gc_threshold}": {
                        "BENCH_GC_FREEZE": "1",
                        "BENCH_GC_THRESHOLD": str(args.gc_threshold),
                    },
                }
                data["gc_experiment"] = {
                    label: load_mode(
                        context,
                        f"{mode}-gc{index}",
                        maintenance=maintenance,
                        spy=False,
                        gc_environ=environ,
                    )
                    for index, (label, environ) in enumerate(variants.items())
                }
            results["modes"][mode] = data
        if "proxy" in modes:
            _log("latency at low load")
            results["low_load"] = low_load(context)
    except KeyboardInterrupt:
        print("profile: interrupted", file=sys.stderr)
        return 130
    finally:
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    (output / "profile.json").write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
