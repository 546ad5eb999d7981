"""The soak: high-rate traffic through ``mwm run`` while maintenance toggles, for minutes.

The promise it checks: with maintenance switched on and off every second through the
admin API, at a high request rate, nothing is lost: every response is either the
upstream's (its exact body) or the 503 maintenance page (its exact body), never a 502, a
reset or a truncated body; and mwm's resident memory stays flat.

What runs, on 127.0.0.1:

- the upstream, :mod:`bench.path_upstream` in its own process: every path gets a body
  derived from it, so another request's body is told from the right one;
- ``mwm run`` in its own process (:mod:`tests.mwmprocess`), default settings;
- in this process: ``--connections`` keep-alive connections sending back to back (or at
  ``--rate`` requests per second in all), each request to a path of its own; a toggler
  switching maintenance on and off every ``--toggle-interval-s``; a sampler reading mwm's
  RSS (``/proc/<pid>/status``) every ``--rss-interval-s``.

Memory is flat when the RSS at the end exceeds the RSS half-way through by at most
``--rss-tolerance-mib`` (2 MiB by default: a leak of a few hundred bytes per request
or per toggle would show as tens of MiB over the full run, while allocator noise stays
well under 2 MiB; the first half absorbs the warm-up).

    python -m bench.soak                                # the full soak: 600 s
    python -m bench.soak --duration-s 60 --rate 2000 --toggle-interval-s 0.5

Exit status 0 when the promise held, 1 when it did not; a JSON copy of the result goes to
``bench/results/soak-<time>.json``.  ``tests/promises/test_soak.py`` runs a 12-second
version of the same code in CI.  The sleeps here are the soak's schedule (the rate, the
toggle interval, the sampling interval), not waits for something to happen.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench.naive_proxy import loop_factory
from bench.path_upstream import body_for
from bench.servers import rss_bytes
from tests.mwmprocess import ADMIN_TOKEN, ROOT, running_mwm

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024
HTML = {"Accept": "text/html"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REASON = "Soak test: maintenance toggled on and off"
EXAMPLES_KEPT = 20
"""Unexpected responses described in the result (all are counted)."""


@dataclass(frozen=True, slots=True)
class SoakOptions:
    duration_s: float = 600.0
    rate_per_s: float = 0.0
    """Requests per second over all connections; 0: each connection sends back to back."""
    connections: int = 8
    toggle_interval_s: float = 1.0
    rss_interval_s: float = 1.0
    rss_tolerance_mib: float = 2.0


@dataclass
class SoakResult:
    options: SoakOptions
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    """``upstream``, ``maintenance page`` and ``unexpected`` responses."""
    unexpected: list[str] = field(default_factory=list)
    """The first :data:`EXAMPLES_KEPT` unexpected responses, described."""
    toggles: int = 0
    rss_samples: list[tuple[float, int]] = field(default_factory=list)
    """``(seconds since the start, RSS bytes)``."""

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    @property
    def rss_half_mib(self) -> float:
        half = self.seconds / 2
        return min(self.rss_samples, key=lambda s: abs(s[0] - half))[1] / MIB

    @property
    def rss_end_mib(self) -> float:
        return self.rss_samples[-1][1] / MIB

    @property
    def rss_growth_mib(self) -> float:
        return self.rss_end_mib - self.rss_half_mib

    def problems(self) -> list[str]:
        """Why the promise did not hold; empty when it did."""
        found = []
        if self.outcomes["unexpected"]:
            found.append(
                f"{self.outcomes['unexpected']} responses were neither the upstream's nor the "
                f"maintenance page; first: {self.unexpected[:3]}"
            )
        for outcome in ("upstream", "maintenance page"):
            if not self.outcomes[outcome]:
                found.append(f"no {outcome} response at all: the toggling was not seen")
        if self.rss_growth_mib > self.options.rss_tolerance_mib:
            found.append(
                f"RSS grew {self.rss_growth_mib:.1f} MiB in the second half "
                f"({self.rss_half_mib:.1f} -> {self.rss_end_mib:.1f} MiB; "
                f"tolerance {self.options.rss_tolerance_mib:g} MiB)"
            )
        return found

    def report(self) -> str:
        rate = self.requests / self.seconds if self.seconds else 0.0
        lines = [
            f"soak: {self.seconds:.0f} s, {self.requests} requests ({rate:.0f}/s over "
            f"{self.options.connections} connections), {self.toggles} toggles every "
            f"{self.options.toggle_interval_s:g} s",
            f"  upstream answers:  {self.outcomes['upstream']}",
            f"  maintenance pages: {self.outcomes['maintenance page']}",
            f"  anything else:     {self.outcomes['unexpected']}",
            f"  RSS: half-way {self.rss_half_mib:.1f} MiB, end {self.rss_end_mib:.1f} MiB, "
            f"growth {self.rss_growth_mib:+.1f} MiB (tolerance {self.options.rss_tolerance_mib:g})",
        ]
        lines += [f"  unexpected: {example}" for example in self.unexpected[:5]]
        problems = self.problems()
        lines.append("  PASS" if not problems else "  FAIL: " + "; ".join(problems))
        return "\n".join(lines)


@contextlib.asynccontextmanager
async def _upstream() -> AsyncIterator[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.path_upstream",
        "--port",
        "0",
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        if not line.startswith("listening "):
            raise RuntimeError(f"the soak's upstream did not start: {line!r}")
        yield f"http://127.0.0.1:{line.split()[1]}"
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def _switch(session: aiohttp.ClientSession, management: str, *, on: bool) -> None:
    url = f"{management}/api/maintenance"
    body = {"enabled": on, "reason": REASON}
    async with session.put(url, json=body, headers=ADMIN) as response:
        if response.status != 200:
            raise RuntimeError(f"the admin API refused a switch: {response.status}")


async def soak(options: SoakOptions) -> SoakResult:
    """Run the soak; see the module docstring."""
    result = SoakResult(options)
    async with _upstream() as upstream_url, running_mwm(upstream_url) as mwm:
        connector = aiohttp.TCPConnector(limit=options.connections + 1)
        async with aiohttp.ClientSession(connector=connector) as session:
            # The page is the same for every toggle (same reason, no end time): take it once.
            await _switch(session, mwm.management, on=True)
            async with session.get(f"{mwm.public}/", headers=HTML) as response:
                page = await response.read()
                if response.status != 503:
                    raise RuntimeError(f"maintenance on, but / answered {response.status}")
            await _switch(session, mwm.management, on=False)

            started = time.monotonic()
            deadline = started + options.duration_s
            stop = asyncio.Event()

            def elapsed() -> float:
                return time.monotonic() - started

            def record(outcome: str, description: str = "") -> None:
                result.outcomes[outcome] += 1
                if description and len(result.unexpected) < EXAMPLES_KEPT:
                    result.unexpected.append(f"{elapsed():.2f} s: {description}")

            async def user(index: int) -> None:
                interval = options.connections / options.rate_per_s if options.rate_per_s else 0
                for n in itertools.count():
                    if stop.is_set():
                        return
                    if interval:
                        await asyncio.sleep(max(0.0, started + n * interval - time.monotonic()))
                    path = f"/soak/{index}/{n}"
                    try:
                        async with session.get(f"{mwm.public}{path}", headers=HTML) as response:
                            body = await response.read()
                    except (aiohttp.ClientError, OSError) as exc:
                        record("unexpected", f"{path}: {exc!r}")
                        continue
                    if response.status == 200 and body == body_for(path):
                        record("upstream")
                    elif response.status == 503 and body == page:
                        record("maintenance page")
                    else:
                        record("unexpected", f"{path}: {response.status} {body[:80]!r}")

            async def toggler() -> None:
                on = False
                while True:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(options.toggle_interval_s):
                            await stop.wait()
                            return
                    on = not on
                    await _switch(session, mwm.management, on=on)
                    result.toggles += 1

            async def sampler() -> None:
                while True:
                    result.rss_samples.append((elapsed(), rss_bytes(mwm.pid)))
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        stop.set()
                        return
                    await asyncio.sleep(min(options.rss_interval_s, remaining))

            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(sampler(), name="soak-rss-sampler")
                tasks.create_task(toggler(), name="soak-toggler")
                for index in range(options.connections):
                    tasks.create_task(user(index), name=f"soak-user-{index}")
            result.seconds = elapsed()
    return result


def _parse(argv: Sequence[str] | None) -> SoakOptions:
    defaults = SoakOptions()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration-s", type=float, default=defaults.duration_s)
    parser.add_argument(
        "--rate", type=float, default=defaults.rate_per_s, help="requests/s in all; 0: unpaced"
    )
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument("--toggle-interval-s", type=float, default=defaults.toggle_interval_s)
    parser.add_argument("--rss-interval-s", type=float, default=defaults.rss_interval_s)
    parser.add_argument("--rss-tolerance-mib", type=float, default=defaults.rss_tolerance_mib)
    args = parser.parse_args(argv)
    return SoakOptions(
        duration_s=args.duration_s,
        rate_per_s=args.rate,
        connections=args.connections,
        toggle_interval_s=args.toggle_interval_s,
        rss_interval_s=args.rss_interval_s,
        rss_tolerance_mib=args.rss_tolerance_mib,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = _parse(argv)
    with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:
        result = runner.run(soak(options))
    print(result.report())
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"soak-{stamp}.json"
    document = {
        "options": asdict(options),
        "seconds": result.seconds,
        "outcomes": dict(result.outcomes),
        "unexpected": result.unexpected,
        "toggles": result.toggles,
        "rss_samples": result.rss_samples,
        "requests": result.requests,
        "rss_half_mib": result.rss_half_mib,
        "rss_end_mib": result.rss_end_mib,
        "rss_growth_mib": result.rss_growth_mib,
        "problems": result.problems(),
    }
    path.write_text(json.dumps(document, indent=2))
    print(f"  result: {path}")
    return 1 if result.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
