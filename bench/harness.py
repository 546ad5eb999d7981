"""The performance harness: mwm next to nginx, a naive aiohttp proxy and the floor, on 127.0.0.1.

``./scripts/bench`` (or ``.venv/bin/python -m bench.harness``) starts, each on a free
port of 127.0.0.1 and each in its own process:

- ``direct``: the upstream, nginx serving a 1 KiB page (:mod:`bench.upstream`);
- ``nginx-proxy``: nginx as reverse proxy in front of it (:mod:`bench.nginx`);
- ``naive-proxy``: the minimal aiohttp proxy (:mod:`bench.naive_proxy`);
- ``floor-proxy``: the floor, a protocol-level proxy on aiohttp's C parsers and uvloop and
  nothing else (:mod:`bench.floor_proxy`): issue 15's targets are ratios to nginx, and this
  says what a Python proxy on mwm's parts costs on the same machine;
- ``mwm-proxy``: ``mwm run`` with its features on: bypass rules (prefixes, token, CIDRs),
  a state file with a critical service, trusted forwarded hops, metrics (always on);
- ``mwm-proxy-2w``: the same with two workers (``MWM_LISTEN__WORKERS=2``), only on a
  machine with 4 CPUs or more (a core per worker, one for the upstream, one for the load
  generator); on fewer the report says so instead of a verdict;
- ``nginx-503``: nginx answering a static 503 page;
- ``aiohttp-503``: aiohttp answering a pre-rendered 503 page (:mod:`bench.naive_page`);
- ``floor-503``: the floor for the page: the floor proxy's client protocol answering the same
  pre-rendered 503 (:mod:`bench.floor_proxy` ``--page``);
- ``mwm-503``: ``mwm run`` whose state file switches maintenance on.

Then, in order: throughput rounds (wrk, every target once per round, interleaved),
a fixed-rate latency run (h2load at 1,000 req/s: direct, nginx, naive, mwm), a soak
(N requests through a fresh mwm, RSS sampled half-way and at the end), the cluster-mode
footprint (:mod:`bench.footprint`, its own process) and the controller's reaction
benchmark (:mod:`bench.reaction`, its own process).

With two or more CPUs the servers share the first and the load generator gets the
second (``taskset``), so the client never takes CPU from the server it measures; the
upstream shares the servers' core, as it would share a node.  With four or more,
``mwm-proxy-2w`` gets the first two, the upstream the third and the load generator the
fourth (see :func:`plan_pinning`).  ``--no-pin`` leaves scheduling to the kernel.

Every process and the temporary directory are removed on exit, on Ctrl-C and on SIGTERM.
See ``bench/README.md`` for what each number means.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import report
from bench.loadgen import LoadError, WrkResult, percentile, run_h2load, run_wrk
from bench.nginx import nginx_binary, nginx_server, proxy_block, static_503_block
from bench.servers import Server, ServerError, busy_cpu_seconds, fetch, free_port
from bench.upstream import page, upstream_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"

THROUGHPUT_TARGETS = (
    "direct",
    "nginx-proxy",
    "naive-proxy",
    "floor-proxy",
    "mwm-proxy",
    "mwm-proxy-2w",
    "nginx-503",
    "aiohttp-503",
    "floor-503",
    "mwm-503",
)
RATE_TARGETS = ("direct", "nginx-proxy", "naive-proxy", "floor-proxy", "mwm-proxy")

REQUEST_HEADERS = {
    # What a browser behind one ingress sends: mwm negotiates the page format on Accept
    # (HTML here) and believes one X-Forwarded-For hop (MWM_FORWARDED__TRUSTED_HOPS=1).
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "X-Forwarded-For": "203.0.113.7",
}

MWM_FEATURES = {
    "MWM_LOG__ACCESS_LOG": "false",
    "MWM_LOG__LEVEL": "WARNING",
    "MWM_SOURCE__KIND": "local",
    "MWM_FORWARDED__TRUSTED_HOPS": "1",
    "MWM_BYPASS__PATH_PREFIXES": "/admin,/ops",
    "MWM_BYPASS__TOKEN": "bench-bypass-token",
    # Never the benchmark's own address: every request is checked and none matches.
    "MWM_BYPASS__ALLOW_CIDRS": "10.0.0.0/8,192.168.0.0/16,fd00::/8",
    "MWM_MANAGEMENT__ADMIN_TOKEN": "bench-admin-token",
}
TWO_WORKERS = {"MWM_LISTEN__WORKERS": "2"}
"""``mwm-proxy-2w``'s settings on top of ``MWM_FEATURES`` (``ListenSettings.workers``)."""

STATE_FILE = """apiVersion: maintenance.mamrezb.com/v1alpha1
kind: ServiceChecker
metadata: {{name: bench, namespace: default}}
spec:
  services:
    - name: app
      critical: true
  maintenance:
    enabled: {enabled}
    reason: Benchmarking the maintenance page
"""


class HarnessError(Exception):
    """A prerequisite is missing or a phase could not measure; the message says which."""


# -- options ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    rounds: int
    seconds: int
    warmup_seconds: int
    connections: int
    rate: int
    rate_seconds: float
    rate_clients: int
    soak_requests: int
    footprint_rounds: int
    footprint_requests: int
    reaction_flips: int
    targets: tuple[str, ...]
    pin: bool
    results_dir: Path
    keep_temp: bool
    check: bool
    quick: bool


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="mwm next to nginx and a naive aiohttp proxy: throughput, CPU per "
        "request, RSS, fixed-rate latency, a soak and the reaction benchmark.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--seconds", type=int, default=5, help="wrk seconds per target (5)")
    parser.add_argument(
        "--warmup-seconds", type=int, default=1, help="unmeasured wrk run per target first (1)"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--rate", type=int, default=1000, help="fixed rate, req/s (1000)")
    parser.add_argument(
        "--rate-seconds", type=float, default=4.0, help="fixed-rate seconds per target (4)"
    )
    parser.add_argument("--rate-clients", type=int, default=10, help="h2load clients (10)")
    parser.add_argument(
        "--soak-requests",
        type=int,
        default=1_000_000,
        help="requests through a fresh mwm for the RSS soak, 0 to skip (1000000)",
    )
    parser.add_argument(
        "--footprint-rounds",
        type=int,
        default=3,
        help="bench.footprint rounds (cluster mode's RSS and start-up), 0 to skip (3)",
    )
    parser.add_argument(
        "--footprint-requests",
        type=int,
        default=20_000,
        help="bench.footprint's proxied requests per round before its second RSS (20000)",
    )
    parser.add_argument(
        "--reaction-flips", type=int, default=100, help="bench.reaction flips, 0 to skip (100)"
    )
    parser.add_argument(
        "--targets",
        default=",".join(THROUGHPUT_TARGETS),
        help=f"comma-separated subset of {','.join(THROUGHPUT_TARGETS)}",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--keep-temp", action="store_true", help="keep configs and logs (path printed)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when a target fails or is not measured (n/a does not count; default: 0)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run for CI: 1 round x 1 s, 1 s fixed rate, 20k soak, 1 footprint round "
        "of 2k requests, 10 flips",
    )
    args = parser.parse_args(argv)
    targets = tuple(t for t in args.targets.split(",") if t)
    unknown = sorted(set(targets) - set(THROUGHPUT_TARGETS))
    if unknown:
        parser.error(f"--targets: unknown {', '.join(unknown)}")
    if args.quick:
        args.rounds, args.seconds, args.warmup_seconds = 1, 1, 0
        args.rate_seconds, args.soak_requests, args.reaction_flips = 1.0, 20_000, 10
        args.footprint_rounds, args.footprint_requests = 1, 2_000
    return Options(
        rounds=max(1, args.rounds),
        seconds=max(1, args.seconds),
        warmup_seconds=max(0, args.warmup_seconds),
        connections=args.connections,
        rate=args.rate,
        rate_seconds=args.rate_seconds,
        rate_clients=args.rate_clients,
        soak_requests=max(0, args.soak_requests),
        footprint_rounds=max(0, args.footprint_rounds),
        footprint_requests=max(0, args.footprint_requests),
        reaction_flips=max(0, args.reaction_flips),
        targets=tuple(t for t in THROUGHPUT_TARGETS if t in targets),
        pin=not args.no_pin,
        results_dir=args.results_dir,
        keep_temp=args.keep_temp,
        check=args.check,
        quick=args.quick,
    )


# -- the machine -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pinning:
    """``taskset`` CPU lists, None for unpinned."""

    servers: str | None
    client: str | None
    text: str
    upstream: str | None = None
    two_workers: str | None = None
    """``mwm-proxy-2w``'s CPUs: set only when there is a core for each worker."""


def plan_pinning(cpus: Sequence[int], *, enabled: bool, taskset: bool) -> Pinning:
    """Where each process runs, given the CPUs this process may use (a pure function).

    Fewer than 4 CPUs: every server, upstream included, on the first, the load generator on
    the second.  4 or more: the servers on the first, ``mwm-proxy-2w``'s workers on the
    first two, the upstream on the third, the load generator on the fourth, so that the one-
    and two-worker figures both have the upstream and the client off the workers' cores.
    """
    if not enabled:
        return Pinning(None, None, "off (--no-pin)")
    if len(cpus) < 2 or not taskset:
        return Pinning(None, None, "off (fewer than 2 CPUs or no taskset)")
    first, second = str(cpus[0]), str(cpus[1])
    if report.two_workers_shortfall(len(cpus)) is not None:
        return Pinning(
            first, second, f"servers on CPU {first}, load generator on CPU {second}", first
        )
    upstream, client = str(cpus[2]), str(cpus[3])
    return Pinning(
        servers=first,
        client=client,
        text=f"servers on CPU {first} (mwm-proxy-2w on CPUs {first},{second}), upstream on "
        f"CPU {upstream}, load generator on CPU {client}",
        upstream=upstream,
        two_workers=f"{first},{second}",
    )


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def choose_pinning(enabled: bool) -> Pinning:
    return plan_pinning(usable_cpus(), enabled=enabled, taskset=shutil.which("taskset") is not None)


def _command_output(command: Sequence[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=10)
    except OSError:
        return "missing"
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[0] if lines else "missing"


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        import aiohttp

        aiohttp_version = aiohttp.__version__
    except ImportError:
        aiohttp_version = "missing"
    try:
        uvloop_version: str | None = importlib.metadata.version("uvloop")
        loop = "uvloop"
    except importlib.metadata.PackageNotFoundError:
        loop, uvloop_version = "asyncio", None
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "aiohttp": aiohttp_version,
        "uvloop": uvloop_version,
        "loop": loop,
        "nginx": _command_output([nginx_binary() or "nginx", "-v"]),
        "wrk": _command_output(["wrk", "-v"]),
        "h2load": _command_output(["h2load", "--version"]),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return result.stdout

    status = git("status", "--porcelain", "--untracked-files=no").splitlines()
    changed = [line[3:] for line in status if len(line) > 3]
    return {
        "commit": git("rev-parse", "HEAD").strip() or "unknown",
        "dirty": bool(changed),
        "changed_files": changed,
    }


def check_tools(options: Options) -> str:
    missing = [tool for tool in ("wrk", "h2load") if shutil.which(tool) is None]
    binary = nginx_binary()
    if binary is None:
        missing.append("nginx")
    if missing:
        raise HarnessError(
            f"missing: {', '.join(missing)}; ./scripts/bench installs them (apt-get install "
            "wrk nginx-light nghttp2-client)"
        )
    assert binary is not None
    return binary


# -- the servers -----------------------------------------------------------------------------


def python_mwm_command(*args: str) -> list[str]:
    """``mwm args`` through this interpreter, from the tree on ``PYTHONPATH``: ``-P`` keeps
    the working directory off ``sys.path`` (``-m`` would put it first, and a benchmark of
    another revision would run this checkout's code)."""
    return [sys.executable, "-P", "-m", "proxy.cli", *args]


def mwm_command() -> list[str]:
    script = Path(sys.executable).parent / "mwm"
    if script.exists():
        return [str(script), "run"]
    return python_mwm_command("run")


def mwm_server(
    name: str,
    *,
    workdir: Path,
    upstream_port: int,
    maintenance: bool,
    cpus: str | None,
    command: Sequence[str] | None = None,
    extra_environ: Mapping[str, str] | None = None,
) -> Server:
    """``mwm run`` (or ``command``, e.g. under strace) with the benchmark's features on."""
    state = workdir / f"{name}-state.yaml"
    state.write_text(STATE_FILE.format(enabled="true" if maintenance else "false"))
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MWM_")}
    environ.pop("KUBERNETES_SERVICE_HOST", None)
    environ.update(MWM_FEATURES)
    environ.update(
        {
            "MWM_UPSTREAM__URL": f"http://127.0.0.1:{upstream_port}",
            "MWM_LISTEN__PUBLIC_HOST": "127.0.0.1",
            "MWM_LISTEN__PUBLIC_PORT": str(port),
            "MWM_LISTEN__MANAGEMENT_HOST": "127.0.0.1",
            "MWM_LISTEN__MANAGEMENT_PORT": str(free_port()),
            "MWM_SOURCE__LOCAL__FILE": str(state),
            "PYTHONPATH": str(ROOT),
            **(extra_environ or {}),
        }
    )
    return Server(
        name=name,
        command=command or mwm_command(),
        port=port,
        log_path=workdir / f"{name}.log",
        environ=environ,
        cpus=cpus,
        ready_status=503 if maintenance else 200,
    )


def python_server(name: str, module: str, *extra: str, workdir: Path, cpus: str | None) -> Server:
    port = free_port()
    return Server(
        name=name,
        command=[sys.executable, "-m", module, "--port", str(port), *extra],
        port=port,
        log_path=workdir / f"{name}.log",
        environ={**os.environ, "PYTHONPATH": str(ROOT)},
        cpus=cpus,
    )


class Lab:
    """Every server, started on demand, all stopped by :meth:`close`."""

    def __init__(self, *, workdir: Path, nginx: str, pinning: Pinning) -> None:
        self.workdir = workdir
        self.nginx = nginx
        self.pinning = pinning
        self.cpus = pinning.servers
        self.servers: dict[str, Server] = {}
        self._extra: list[Server] = []
        self.upstream = self._start(
            upstream_server(binary=nginx, workdir=workdir, port=free_port(), cpus=pinning.upstream)
        )

    def _start(self, server: Server) -> Server:
        self._extra.append(server)
        server.start()
        return server

    def start(self, name: str) -> Server:
        if name == "direct":
            server = self.upstream
        else:
            server = self.build(name)
            server.ready_status = 503 if name.endswith("-503") else 200
            self._start(server)
        self.servers[name] = server
        return server

    def build(self, name: str) -> Server:
        workdir, cpus, up = self.workdir, self.cpus, self.upstream.port
        if name == "nginx-proxy":
            port = free_port()
            block = proxy_block(port=port, upstream_port=up)
        elif name == "nginx-503":
            port = free_port()
            block = static_503_block(port=port, body=page(1024, title="Down for maintenance"))
        elif name in ("naive-proxy", "floor-proxy"):
            return python_server(
                name,
                f"bench.{name.replace('-', '_')}",
                "--upstream",
                f"http://127.0.0.1:{up}",
                workdir=workdir,
                cpus=cpus,
            )
        elif name == "aiohttp-503":
            return python_server(name, "bench.naive_page", workdir=workdir, cpus=cpus)
        elif name == "floor-503":
            return python_server(name, "bench.floor_proxy", "--page", workdir=workdir, cpus=cpus)
        elif name in ("mwm-proxy", "mwm-503", "mwm-soak"):
            return mwm_server(
                name, workdir=workdir, upstream_port=up, maintenance=name == "mwm-503", cpus=cpus
            )
        elif name == "mwm-proxy-2w":
            # Unpinned (None) under --no-pin or without taskset: the kernel spreads them.
            return mwm_server(
                name,
                workdir=workdir,
                upstream_port=up,
                maintenance=False,
                cpus=self.pinning.two_workers,
                extra_environ=TWO_WORKERS,
            )
        else:
            raise ValueError(name)
        return nginx_server(
            name, binary=self.nginx, workdir=workdir, port=port, server_block=block, cpus=cpus
        )

    def add(self, name: str, server: Server) -> Server:
        """Start a server built elsewhere and measure it as the target ``name``."""
        self.servers[name] = self._start(server)
        return server

    def start_extra(self, name: str) -> Server:
        """A server outside ``servers`` (the soak's fresh mwm)."""
        return self._start(self.build(name))

    def close(self) -> None:
        for server in reversed(self._extra):
            server.stop()


# -- the phases ------------------------------------------------------------------------------


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def throughput(lab: Lab, options: Options, pinning: Pinning) -> dict[str, Any]:
    """wrk against every target, ``rounds`` times, interleaved; medians per target."""
    names = list(lab.servers)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for name in names:
        if options.warmup_seconds:
            _log(f"warm-up {name}")
            _wrk(lab, lab.servers[name], options, pinning, seconds=options.warmup_seconds)
    for number in range(options.rounds):
        # Rotate the order so no target always runs right after the same neighbour.
        order = names[number % len(names) :] + names[: number % len(names)]
        for name in order:
            server = lab.servers[name]
            upstream_cpu_before = lab.upstream.cpu_seconds()
            user_before, system_before = server.cpu_times()
            busy_before = busy_cpu_seconds()
            result = _wrk(lab, server, options, pinning, seconds=options.seconds)
            busy_s = busy_cpu_seconds() - busy_before
            user_after, system_after = server.cpu_times()
            user_s, system_s = user_after - user_before, system_after - system_before
            cpu_s = user_s + system_s
            upstream_cpu_s = lab.upstream.cpu_seconds() - upstream_cpu_before
            requests = max(result.requests, 1)
            ours = cpu_s + result.client_cpu_s + (0 if server is lab.upstream else upstream_cpu_s)
            row = {
                "round": number + 1,
                "rps": result.requests_per_s,
                "p50_ms": result.p50_ms,
                "p90_ms": result.p90_ms,
                "p99_ms": result.p99_ms,
                "max_ms": result.max_ms,
                "cpu_us_per_request": cpu_s * 1e6 / requests,
                "user_us_per_request": user_s * 1e6 / requests,
                "system_us_per_request": system_s * 1e6 / requests,
                "server_cpu_pct": cpu_s / result.duration_s * 100,
                "upstream_cpu_us_per_request": (
                    None if server is lab.upstream else upstream_cpu_s * 1e6 / requests
                ),
                "client_cpu_pct": result.client_cpu_s / result.duration_s * 100,
                "other_cpu_pct": max(0.0, busy_s - ours) / result.duration_s * 100,
                "rss_mib": server.rss_bytes() / report.MIB,
                "requests": result.requests,
                "socket_errors": result.socket_errors,
                "non_2xx_3xx": result.non_2xx_3xx,
            }
            rounds[name].append(row)
            _log(
                f"round {number + 1}/{options.rounds} {name}: {row['rps']:.0f} req/s, "
                f"p50 {row['p50_ms']:.2f} ms, {row['cpu_us_per_request']:.1f} µs CPU/req"
            )
    summary: dict[str, Any] = {}
    for name in names:
        rows = rounds[name]
        response = fetch(lab.servers[name].url, headers=REQUEST_HEADERS)
        expected_error = name.endswith("-503")
        summary[name] = {
            "median": {
                key: _median([r[key] for r in rows])
                for key in rows[0]
                if key not in ("round", "socket_errors", "non_2xx_3xx")
            },
            "rounds": rows,
            "socket_errors": sum(r["socket_errors"] for r in rows),
            "unexpected_statuses": 0 if expected_error else sum(r["non_2xx_3xx"] for r in rows),
            "response": {
                "status": response.status,
                "body_bytes": response.body_bytes,
                "content_type": response.headers.get("Content-Type"),
            },
        }
    return summary


def _wrk(
    lab: Lab, server: Server, options: Options, pinning: Pinning, *, seconds: int
) -> WrkResult:
    return run_wrk(
        server.url,
        seconds=seconds,
        connections=options.connections,
        cpus=pinning.client,
        headers=REQUEST_HEADERS,
        workdir=lab.workdir,
    )


def fixed_rate(lab: Lab, options: Options, pinning: Pinning) -> dict[str, Any]:
    """h2load at ``rate`` req/s, interleaved rounds; percentiles over every request, and
    each round's own (:func:`paired_added`)."""
    names = [n for n in RATE_TARGETS if n in lab.servers]
    samples: dict[str, list[int]] = {name: [] for name in names}
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    achieved: dict[str, list[float]] = {name: [] for name in names}
    statuses: dict[str, dict[int, int]] = {name: {} for name in names}
    failed = dict.fromkeys(names, 0)
    for number in range(options.rounds):
        for name in names:
            result = run_h2load(
                lab.servers[name].url,
                rate_per_s=options.rate,
                seconds=options.rate_seconds,
                clients=options.rate_clients,
                cpus=pinning.client,
                headers=REQUEST_HEADERS,
            )
            samples[name] += result.durations_us
            achieved[name].append(result.achieved_per_s)
            failed[name] += result.failed
            for status, count in result.statuses.items():
                statuses[name][status] = statuses[name].get(status, 0) + count
            ordered = sorted(result.durations_us)
            this_round = {
                "p50_ms": percentile(ordered, 50) / 1000,
                "p99_ms": percentile(ordered, 99) / 1000,
            }
            rounds[name].append(this_round)
            _log(
                f"fixed rate round {number + 1}/{options.rounds} {name}: "
                f"{result.achieved_per_s:.0f} req/s, p50 {this_round['p50_ms']:.3f} ms"
                f", p99 {this_round['p99_ms']:.3f} ms"
            )
    summary: dict[str, Any] = {}
    for name in names:
        ordered = sorted(samples[name])
        summary[name] = {
            "requests": len(ordered),
            "failed": failed[name],
            "statuses": {str(k): v for k, v in statuses[name].items()},
            "achieved_per_s": _median(achieved[name]),
            "p50_ms": percentile(ordered, 50) / 1000,
            "p90_ms": percentile(ordered, 90) / 1000,
            "p99_ms": percentile(ordered, 99) / 1000,
            "max_ms": ordered[-1] / 1000,
            "rounds": rounds[name],
        }
    direct = summary.get("direct")
    if direct is not None:
        for name, row in summary.items():
            row["added_p50_ms"] = row["p50_ms"] - direct["p50_ms"]
            row["added_p99_ms"] = row["p99_ms"] - direct["p99_ms"]
            row.update(paired_added(rounds[name], rounds["direct"]))
    return summary


def paired_added(
    target: Sequence[Mapping[str, float]], direct: Sequence[Mapping[str, float]]
) -> dict[str, Any]:
    """What a target adds to direct's latency round by round: each round's percentile minus
    direct's in the same round (the rounds are interleaved: each pair ran close in time),
    and their median.  The pooled figures (``added_p99_ms``) let one disturbed round of
    either decide the whole run's tail; these show every round's, and where most agree."""
    paired: dict[str, Any] = {}
    for metric in ("p50", "p99"):
        key = f"{metric}_ms"
        added = [t[key] - d[key] for t, d in zip(target, direct, strict=True)]
        paired[f"added_{metric}_rounds_ms"] = added
        paired[f"added_{metric}_round_median_ms"] = _median(added)
    return paired


def soak(lab: Lab, options: Options, pinning: Pinning, *, rate_hint: float) -> dict[str, Any]:
    """``soak_requests`` through a fresh mwm in wrk runs of at most 20 s; RSS after each."""
    server = lab.start_extra("mwm-soak")
    started = time.monotonic()
    samples = [{"requests": 0, "rss_mib": server.rss_bytes() / report.MIB}]
    done = 0
    rate = max(rate_hint, 100.0)
    marks: dict[str, float] = {}
    half = options.soak_requests // 2
    for label, goal in (("half", half), ("end", options.soak_requests)):
        while done < goal:
            seconds = int(min(20, max(1, -(-(goal - done) // rate))))
            result = _wrk(lab, server, options, pinning, seconds=seconds)
            if result.requests == 0:
                raise HarnessError("the soak's mwm stopped answering")
            done += result.requests
            rate = result.requests_per_s
            samples.append({"requests": done, "rss_mib": server.rss_bytes() / report.MIB})
            _log(f"soak: {done} requests, RSS {samples[-1]['rss_mib']:.1f} MiB")
        marks[label] = samples[-1]["rss_mib"]
        marks[f"{label}_requests"] = done
    elapsed = time.monotonic() - started
    server.stop()
    return {
        "requests": done,
        "seconds": elapsed,
        "requests_per_s": done / elapsed if elapsed else 0.0,
        "rss_start_mib": samples[0]["rss_mib"],
        "rss_half_mib": marks["half"],
        "rss_half_requests": marks["half_requests"],
        "rss_end_mib": marks["end"],
        "growth_second_half_mib": marks["end"] - marks["half"],
        "samples": samples,
    }


def _bench_json(
    module: str, *args: str, options: Options, timeout_s: float, exit_ok: tuple[int, ...] = (0,)
) -> dict[str, Any] | str:
    """``python -m module args --json --results-dir ...`` in its own process: its JSON
    document, or what went wrong."""
    command = [
        sys.executable,
        "-m",
        module,
        *args,
        "--json",
        "--results-dir",
        str(options.results_dir),
    ]
    result = subprocess.run(
        command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False, timeout=timeout_s
    )
    if result.returncode not in exit_ok:
        return f"{module} exited with {result.returncode}"
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def footprint(options: Options) -> dict[str, Any]:
    """``python -m bench.footprint --variants lazy --json`` in its own process: cluster
    mode as it is (kubernetes-asyncio without its models), one worker, against the fake API
    server; its medians."""
    document = _bench_json(
        "bench.footprint",
        "--variants",
        "lazy",
        "--rounds",
        str(options.footprint_rounds),
        "--requests",
        str(options.footprint_requests),
        options=options,
        timeout_s=900,
    )
    if isinstance(document, str):
        return {"error": document}
    figures = document["figures"]
    return {
        "rounds": document["rounds"],
        "requests": document["requests"],
        "errors": document["errors"],
        "startup_s": figures["lazy_startup_s"],
        "rss_ready_mib": figures["lazy_rss_ready_mib"],
        "rss_after_mib": figures["lazy_rss_after_mib"],
        "private_ready_mib": figures.get("lazy_private_ready_mib"),
        "floor": document.get("floor"),
    }


def reaction(options: Options) -> dict[str, Any]:
    """``python -m bench.reaction --flips N --json`` in its own process; its p99."""
    document = _bench_json(
        "bench.reaction",
        "--flips",
        str(options.reaction_flips),
        options=options,
        timeout_s=300,
        exit_ok=(0, 1),
    )
    if isinstance(document, str):
        return {"error": document}
    enter = document["summary_ms"]["enter"]["first_response"]
    return {
        "flips": document["flips"]["completed"],
        "median_ms": enter["median"],
        "p90_ms": enter["p90"],
        "p99_ms": enter["p99"],
        "max_ms": enter["max"],
        "pass": document["target"]["pass"],
        "loop": document["environment"]["loop"],
    }


# -- running ---------------------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mwm-bench-"))
    try:
        yield path
    finally:
        if keep:
            _log(f"configs and logs kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def measure(options: Options) -> dict[str, Any]:
    nginx = check_tools(options)
    pinning = choose_pinning(options.pin)
    cpus = len(usable_cpus())
    two_workers = report.two_workers_shortfall(cpus)
    started_at = datetime.now(UTC)
    results: dict[str, Any] = {
        "benchmark": "harness",
        "started_at": started_at.isoformat(),
        "git": git_info(),
        "machine": machine_info(),
        "pinning": asdict(pinning),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "request_headers": REQUEST_HEADERS,
        "mwm_settings": MWM_FEATURES,
        "two_workers": {"cpus": cpus, "settings": TWO_WORKERS, "not_measured": two_workers},
    }
    _log(f"pinning: {pinning.text}")
    with workspace(options.keep_temp) as workdir:
        lab = Lab(workdir=workdir, nginx=nginx, pinning=pinning)
        try:
            for name in options.targets:
                if name == "mwm-proxy-2w" and two_workers is not None:
                    _log(f"{name}: {two_workers}")
                    continue
                _log(f"starting {name}")
                lab.start(name)
            results["throughput"] = throughput(lab, options, pinning)
            if options.rate > 0 and options.rate_seconds > 0 and "direct" in lab.servers:
                results["fixed_rate"] = fixed_rate(lab, options, pinning)
            if options.soak_requests:
                hint = results["throughput"].get("mwm-proxy", {}).get("median", {}).get("rps")
                results["soak"] = soak(lab, options, pinning, rate_hint=hint or 1000.0)
        finally:
            lab.close()
    if options.footprint_rounds:
        _log(
            f"bench.footprint --variants lazy --rounds {options.footprint_rounds} "
            f"--requests {options.footprint_requests}"
        )
        results["footprint"] = footprint(options)
    if options.reaction_flips:
        _log(f"bench.reaction --flips {options.reaction_flips}")
        results["reaction"] = reaction(options)
    results["finished_at"] = datetime.now(UTC).isoformat()
    results["verdicts"] = report.verdicts(results)
    results["references"] = report.references(results)
    return results


def write_results(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(results["started_at"]).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"harness-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 measured (with ``--check``: and every target met), 1 a target failed
    or was not measured under ``--check`` (n/a, which this machine cannot measure, does not
    count), 2 nothing usable was measured (a missing tool, a server that did not start),
    130 interrupted."""
    options = parse_options(argv)
    # SIGINT too: a shell starting us in the background hands it down ignored.
    signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGINT, raise_interrupt)
    try:
        results = measure(options)
    except (HarnessError, ServerError, LoadError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; every server stopped", file=sys.stderr)
        return 130
    path = write_results(results, options.results_dir)
    print(report.render(results))
    print(f"\nresults: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    problems = [
        f"{name}: {row['socket_errors']} socket errors, {row['unexpected_statuses']} "
        "unexpected statuses"
        for name, row in results["throughput"].items()
        if row["socket_errors"] or row["unexpected_statuses"]
    ]
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 1 if options.check and report.failed(results["verdicts"]) else 0


if __name__ == "__main__":
    sys.exit(main())
