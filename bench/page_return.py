"""The cost of the maintenance page's return: N open pages reloading when maintenance ends.

When maintenance ends, every open maintenance page reloads (its return script hears
``active: false`` on the status stream).  Each reloads after a random delay within
``MWM_PAGE__RETURN_SPREAD_S``, so that N pages do not hit the site in the same instant.
This benchmark measures what that spread buys, in one run, against the same reloads all at
once (spread 0):

1. start the upstream (nginx, :mod:`bench.upstream`) and ``mwm run`` in front of it with
   maintenance on (the local state file's switch), pinned like the harness does;
2. per round: switch maintenance off by rewriting the state file, as an operator would,
   and wait until ``GET /_mwm/status`` says ``active: false`` (the pages' signal);
3. then each of N simulated pages sends its reload (``GET /``, as a browser does, on a
   connection of its own) at a uniformly random instant within the spread;
4. switch maintenance back on (and wait for it) before the next round.

Printed per round: the peak request rate the site sees (requests started per 100 ms
window, as req/s), the latency p50/p99 of the reloads (from the instant the page decided to
reload to the last byte of the answer: queueing in the client's and the server's accept
backlog counts), how many reloads got a 503 (must be 0: the switch has settled before any
page reloads) and how many failed to connect.  The client is one asyncio process; with 2+
CPUs it runs on its own CPU and the servers share the other, as in :mod:`bench.harness`.

Run from the repository root: ``.venv/bin/python -m bench.page_return`` (``--pages``,
``--spread``; see ``--help``).  Results: ``bench/RESULTS.md`` (section "Page return").
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.harness import ROOT, STATE_FILE, mwm_server
from bench.loadgen import percentile
from bench.nginx import nginx_binary
from bench.servers import Server, ServerError, free_port
from bench.upstream import upstream_server

STATUS_PATH = "/_mwm/status"
WINDOW_S = 0.1
"""Width of the windows the request rate is counted in."""
SETTLE_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 60.0
BROWSER_HEADERS = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "de-DE,de;q=0.9,en;q=0.8",
}


class BenchError(Exception):
    """The benchmark could not measure; the message says why."""


@dataclass(frozen=True)
class Round:
    spread_s: float
    pages: int
    peak_rps: float
    mean_rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    status_counts: dict[int, int]
    failures: int
    duration_s: float

    @property
    def unavailable(self) -> int:
        return self.status_counts.get(503, 0)

    def line(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.status_counts.items()))
        return (
            f"spread {self.spread_s:>4g} s  {self.pages} reloads in {self.duration_s:6.2f} s  "
            f"peak {self.peak_rps:>8,.0f} req/s  mean {self.mean_rps:>7,.0f} req/s  "
            f"latency p50 {self.p50_ms:7.1f} ms  p99 {self.p99_ms:7.1f} ms  "
            f"max {self.max_ms:7.1f} ms  statuses {{{statuses}}}  503s {self.unavailable}  "
            f"failed {self.failures}"
        )


def write_state(path: Path, *, enabled: bool) -> None:
    """What ``mwm on``/``mwm off`` would do to a local state file: rewrite it whole."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(STATE_FILE.format(enabled="true" if enabled else "false"))
    temporary.replace(path)


async def wait_for_active(
    session: aiohttp.ClientSession, base: str, *, active: bool, timeout_s: float
) -> float:
    """Poll the public status document until it says ``active``; return the time it took.

    Polling here stands in for the status stream the pages follow (a benchmark client, not
    a test: it waits on the server's answer, a few ms apart)."""
    started = time.perf_counter()
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        async with session.get(base + STATUS_PATH) as response:
            document = json.loads(await response.read())
        if document["active"] is active:
            return time.perf_counter() - started
        await asyncio.sleep(0.005)
    raise BenchError(f"maintenance did not become active={active} within {timeout_s:g} s")


async def reload_pages(base: str, *, pages: int, spread_s: float, seed: int) -> Round:
    """``pages`` reloads, each at a uniformly random instant within ``spread_s``."""
    rng = random.Random(seed)
    delays = sorted(rng.uniform(0.0, spread_s) for _ in range(pages))
    starts: list[float] = []
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    failures = 0
    # One connection per page, as separate browsers have; no pool limit.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        origin = time.perf_counter()

        async def one(delay: float) -> None:
            nonlocal failures
            due = origin + delay
            pause = due - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            starts.append(time.perf_counter() - origin)
            try:
                async with session.get(base + "/", headers=BROWSER_HEADERS) as response:
                    await response.read()
                    statuses[response.status] += 1
            except (aiohttp.ClientError, TimeoutError, OSError):
                failures += 1
                return
            latencies.append(time.perf_counter() - due)

        await asyncio.gather(*(one(delay) for delay in delays))
        duration = time.perf_counter() - origin
    windows = collections.Counter(int(start / WINDOW_S) for start in starts)
    peak = max(windows.values()) / WINDOW_S if windows else 0.0
    ordered = sorted(latencies)
    return Round(
        spread_s=spread_s,
        pages=pages,
        peak_rps=peak,
        mean_rps=len(starts) / max(duration, 1e-9),
        p50_ms=percentile(ordered, 50) * 1000 if ordered else float("nan"),
        p99_ms=percentile(ordered, 99) * 1000 if ordered else float("nan"),
        max_ms=ordered[-1] * 1000 if ordered else float("nan"),
        status_counts=dict(statuses),
        failures=failures,
        duration_s=duration,
    )


async def run_rounds(
    base: str, state_file: Path, *, pages: int, spreads: Sequence[float], seed: int
) -> list[Round]:
    rounds = []
    async with aiohttp.ClientSession() as control:
        for index, spread in enumerate(spreads):
            await wait_for_active(control, base, active=True, timeout_s=SETTLE_TIMEOUT_S)
            write_state(state_file, enabled=False)
            settled = await wait_for_active(control, base, active=False, timeout_s=SETTLE_TIMEOUT_S)
            print(f"  maintenance off seen after {settled * 1000:.0f} ms; {pages} pages reload")
            rounds.append(await reload_pages(base, pages=pages, spread_s=spread, seed=seed + index))
            print("  " + rounds[-1].line(), flush=True)
            write_state(state_file, enabled=True)
    return rounds


def pin(cpus: int) -> tuple[str | None, str]:
    """Servers on CPU 0 and this client on CPU 1 when there are two CPUs or more."""
    if cpus >= 2 and shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
        return "0", "servers on CPU 0, client on CPU 1"
    return None, "no pinning (one CPU or no taskset)"


def raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=5000, help="open pages (default 5000)")
    parser.add_argument(
        "--spread", type=float, default=5.0, help="MWM_PAGE__RETURN_SPREAD_S (default 5)"
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--no-pin", action="store_true", help="leave scheduling to the kernel")
    options = parser.parse_args(argv)
    nginx = nginx_binary()
    if nginx is None:
        print("page_return: nginx is required (the upstream)", file=sys.stderr)
        return 2
    raise_file_limit(options.pages + 256)
    cpus, pinning = (None, "no pinning (--no-pin)") if options.no_pin else pin(os.cpu_count() or 1)
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="mwm-page-return-") as scratch:
        workdir = Path(scratch)
        try:
            upstream = upstream_server(binary=nginx, workdir=workdir, port=free_port(), cpus=cpus)
            upstream.start()
            servers.append(upstream)
            mwm = mwm_server(
                "mwm-return",
                workdir=workdir,
                upstream_port=upstream.port,
                maintenance=True,
                cpus=cpus,
                extra_environ={
                    "MWM_PAGE__RETURN_SPREAD_S": str(options.spread),
                    "MWM_SOURCE__LOCAL__RELOAD_INTERVAL_S": "0.1",
                    # The checkout first, then whatever this process was given.
                    "PYTHONPATH": os.pathsep.join(
                        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
                    ),
                },
            )
            mwm.start()
            servers.append(mwm)
            base = mwm.url.rstrip("/")
            print(
                f"page return: {options.pages} pages, spread {options.spread:g} s vs 0 s; "
                f"{os.cpu_count()} CPUs, {pinning}; Python {sys.version.split()[0]}"
            )
            rounds = asyncio.run(
                run_rounds(
                    base,
                    workdir / "mwm-return-state.yaml",
                    pages=options.pages,
                    spreads=(options.spread, 0.0),
                    seed=options.seed,
                )
            )
        except (BenchError, ServerError) as exc:
            print(f"page_return: {exc}", file=sys.stderr)
            return 1
        finally:
            for server in reversed(servers):
                with contextlib.suppress(Exception):
                    server.stop()
    spread, burst = rounds
    print(
        f"peak rate: {spread.peak_rps:,.0f} req/s with a {spread.spread_s:g} s spread vs "
        f"{burst.peak_rps:,.0f} req/s at once ({burst.peak_rps / max(spread.peak_rps, 1):.1f}x); "
        f"p99 {spread.p99_ms:.1f} ms vs {burst.p99_ms:.1f} ms; 503s after the switch: "
        f"{spread.unavailable} and {burst.unavailable}"
    )
    return 0 if spread.unavailable == burst.unavailable == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
