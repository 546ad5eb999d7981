"""The load generators: ``wrk`` for throughput, ``h2load`` for a fixed request rate.

**Throughput** (closed loop): ``wrk -t1 -c32 --latency``, every connection keep-alive,
each sending its next request as soon as the previous response arrived.  A small Lua
``done`` hook prints the summary as one JSON line, with wrk's exact percentiles (its
histogram has 1 µs buckets) rather than the rounded text table.

**Fixed rate** (open loop per client): ``h2load --h1 --rps`` sends requests on a timer
whatever the latency, and its ``--log-file`` has every request's duration, so the
percentiles are computed here exactly.  One catch, measured while writing this:
``h2load -c 10 --rps 100`` starts all ten clients' timers together, so the server gets
ten requests at once every 10 ms and the "low load" latency is mostly queueing behind
the other nine (about 4x the p50 of a spread schedule through the naive proxy).
Creating the clients one per ``period / clients`` (``-r 1 --rate-period``) spreads
their timers over the period, which is what a fixed 1,000 req/s should mean.  h2load
then needs ``-n`` (requests per client = n / c) instead of a duration.

Both are pinned to the load generator's core when asked (``taskset``).  The client's own
CPU time is reported too: a load generator near 100 % of its core is the bottleneck,
not the server.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""
_MARKER = "WRK_JSON "


class LoadError(Exception):
    """The load generator failed or printed nothing usable."""


def _pinned(command: Sequence[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus is not None else list(command)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    socket_errors: int
    """Connect, read and write errors and timeouts: should be 0."""
    non_2xx_3xx: int
    """Responses with status >= 400 (expected for the 503 targets, nowhere else)."""
    bytes_read: int
    client_cpu_s: float


def run_wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    cpus: str | None,
    headers: Mapping[str, str],
    workdir: Path,
) -> WrkResult:
    script = workdir / "wrk-report.lua"
    if not script.exists():
        script.write_text(WRK_REPORT)
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    cpu_before = _children_cpu_s()
    result = subprocess.run(
        _pinned(command, cpus), capture_output=True, text=True, check=False, timeout=seconds + 60
    )
    client_cpu_s = _children_cpu_s() - cpu_before
    line = next((x for x in result.stdout.splitlines() if x.startswith(_MARKER)), None)
    if result.returncode != 0 or line is None:
        raise LoadError(f"wrk {url} failed ({result.returncode}): {result.stderr or result.stdout}")
    data = json.loads(line.removeprefix(_MARKER))
    duration_s = data["duration_us"] / 1e6
    return WrkResult(
        requests=data["requests"],
        duration_s=duration_s,
        requests_per_s=data["requests"] / duration_s if duration_s else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        socket_errors=sum(
            data[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        non_2xx_3xx=data["status_errors"],
        bytes_read=data["bytes"],
        client_cpu_s=client_cpu_s,
    )


@dataclass(frozen=True, slots=True)
class RateResult:
    durations_us: list[int]
    """Every completed request's duration (h2load's log: request sent to response end)."""
    statuses: dict[int, int]
    elapsed_s: float
    """From the first request's start to the last request's start."""
    failed: int
    client_cpu_s: float

    @property
    def achieved_per_s(self) -> float:
        return (len(self.durations_us) - 1) / self.elapsed_s if self.elapsed_s > 0 else 0.0


def run_h2load(
    url: str,
    *,
    rate_per_s: int,
    seconds: float,
    clients: int,
    cpus: str | None,
    headers: Mapping[str, str],
    spread: bool = True,
) -> RateResult:
    """``rate_per_s`` requests per second for ``seconds`` over ``clients`` keep-alive
    connections whose timers are staggered over one period (see the module docstring);
    ``spread=False`` keeps h2load's default, every client's request at the same instant."""
    per_client = max(1, rate_per_s // clients)
    total = max(clients, math.ceil(rate_per_s * seconds))
    period_ms = max(1, round(1000 / per_client / clients))
    stagger = ["--rate=1", f"--rate-period={period_ms}ms"] if spread else []
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log:
        command = [
            "h2load",
            "--h1",
            f"--clients={clients}",
            *stagger,
            f"--rps={per_client}",
            f"--requests={total}",
            f"--log-file={log.name}",
        ]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        command.append(url)
        cpu_before = _children_cpu_s()
        result = subprocess.run(
            _pinned(command, cpus),
            capture_output=True,
            text=True,
            check=False,
            timeout=seconds * 3 + 60,
        )
        client_cpu_s = _children_cpu_s() - cpu_before
        if result.returncode != 0:
            raise LoadError(f"h2load {url} failed ({result.returncode}): {result.stderr}")
        rows = [line.split() for line in Path(log.name).read_text().splitlines() if line]
    starts = sorted(int(row[0]) for row in rows)
    statuses: dict[int, int] = {}
    for row in rows:
        statuses[int(row[1])] = statuses.get(int(row[1]), 0) + 1
    return RateResult(
        durations_us=[int(row[2]) for row in rows],
        statuses=dict(sorted(statuses.items())),
        elapsed_s=(starts[-1] - starts[0]) / 1e6 if len(starts) > 1 else 0.0,
        failed=total - len(rows),
        client_cpu_s=client_cpu_s,
    )


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted values (as ``bench.reaction`` computes them)."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]
