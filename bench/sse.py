"""The status stream under 10,000 subscribers: memory per subscriber and fan-out latency.

One run:

1. starts one ``mwm run`` worker (local-file mode, its state file with maintenance off, no
   reachable upstream: only the stream is measured), heartbeats every 15 s (the default);
2. opens ``--subscribers`` (10,000) concurrent ``GET /_mwm/status/stream`` connections from
   this process (raw asyncio protocols, on uvloop when installed; the open-file limit raised
   to its hard ceiling), and waits until every one has its first event;
3. prints mwm's RSS before and after, and the delta per subscriber;
4. flips maintenance ``--flips`` times through the admin API and, for each flip, measures the
   time from sending the request to the moment the LAST subscriber has received the event of
   the new generation; prints p50 / p99 / max over the flips;
5. for the aiohttp-sse question (a ping task per response): starts a child process that
   creates ``--subscribers`` idle tasks like ``EventSourceResponse._ping`` (a loop around
   ``asyncio.sleep(15)``) and prints their RSS per task: what that design would add to every
   subscriber, on top of what this one costs.

The client shares the machine (and, with two CPUs, a core) with mwm, so the latency is an
upper bound.  Results also go to ``bench/results/sse-<time>.json``.

    python -m bench.sse [--subscribers 10000] [--flips 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from bench.servers import Server, free_port
from proxy.filelimit import raise_open_file_limit

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-admin-token"  # noqa: S105 (a throwaway for the child mwm)
PATH = "/_mwm/status/stream"
CONNECT_BATCH = 500
"""Connections opened at once (the listen backlog is 1,024)."""
MiB = 1024 * 1024


class Subscribers:
    """Every open stream, and which generation each has received last."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.latest = [-1] * count
        self.reached = 0
        self.target = -1
        self.done = asyncio.Event()
        self.closed = 0

    def seen(self, index: int, generation: int) -> None:
        before = self.latest[index]
        self.latest[index] = generation
        if before < self.target <= generation:
            self.reached += 1
            if self.reached == self.count:
                self.done.set()

    def expect(self, target: int) -> None:
        """Wait (through :attr:`done`) until every subscriber has ``target`` or later."""
        self.target = target
        self.reached = sum(1 for g in self.latest if g >= target)
        self.done = asyncio.Event()
        if self.reached == self.count:
            self.done.set()


class Stream(asyncio.Protocol):
    """One subscriber: sends the request, picks the last ``id:`` out of what arrives."""

    def __init__(self, subscribers: Subscribers, index: int, request: bytes) -> None:
        self._subscribers = subscribers
        self._index = index
        self._request = request
        self._tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        data = self._tail + data
        at = data.rfind(b"id: ")
        if at >= 0:
            end = data.find(b"\n", at)
            if end >= 0:
                self._subscribers.seen(self._index, int(data[at + 4 : end]))
        self._tail = data[-32:]

    def connection_lost(self, exc: Exception | None) -> None:
        self._subscribers.closed += 1


async def _flip(management_port: int, enabled: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", management_port)
    body = json.dumps({"enabled": enabled, "reason": "bench"}).encode()
    writer.write(
        b"PUT /api/maintenance HTTP/1.1\r\nHost: mwm\r\nConnection: close\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    status = await reader.readline()
    writer.close()
    if b" 200 " not in status:
        raise SystemExit(f"admin API answered {status!r}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(server: Server, management_port: int, count: int, flips: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    subscribers = Subscribers(count)
    request = f"GET {PATH} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
    rss_before = server.rss_bytes()
    streams: list[Stream] = []
    started = time.perf_counter()
    subscribers.expect(0)
    for first in range(0, count, CONNECT_BATCH):
        batch = range(first, min(first + CONNECT_BATCH, count))
        connected = await asyncio.gather(
            *(
                loop.create_connection(
                    lambda i=i: Stream(subscribers, i, request),  # type: ignore[misc]
                    "127.0.0.1",
                    server.port,
                )
                for i in batch
            )
        )
        streams.extend(protocol for _, protocol in connected)
    await asyncio.wait_for(subscribers.done.wait(), 120)
    connect_s = time.perf_counter() - started
    rss_after = server.rss_bytes()
    latencies: list[float] = []
    for flip in range(flips):
        target = max(subscribers.latest) + 1
        subscribers.expect(target)
        sent = time.perf_counter()
        await _flip(management_port, flip % 2 == 0)
        await asyncio.wait_for(subscribers.done.wait(), 60)
        latencies.append(time.perf_counter() - sent)
    rss_end = server.rss_bytes()
    for stream in streams:
        if stream.transport is not None:
            stream.transport.close()
    return {
        "subscribers": count,
        "dropped_during_run": subscribers.closed,
        "connect_all_s": connect_s,
        "rss_before_mib": rss_before / MiB,
        "rss_with_subscribers_mib": rss_after / MiB,
        "rss_after_flips_mib": rss_end / MiB,
        "rss_per_subscriber_kib": (rss_after - rss_before) / count / 1024,
        "flips": flips,
        "to_last_subscriber_ms": {
            "p50": _percentile(latencies, 0.5) * 1000,
            "p99": _percentile(latencies, 0.99) * 1000,
            "max": max(latencies) * 1000,
            "mean": statistics.fmean(latencies) * 1000,
        },
    }


PING_TASKS = """
import asyncio, sys
from pathlib import Path

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

async def ping():
    while True:
        await asyncio.sleep(15)

async def main(count):
    before = rss()
    tasks = [asyncio.create_task(ping()) for _ in range(count)]
    await asyncio.sleep(0.1)
    print((rss() - before) / count)
    for task in tasks:
        task.cancel()

asyncio.run(main(int(sys.argv[1])))
"""


def ping_task_bytes(count: int) -> float:
    """RSS per idle ping task (aiohttp-sse's design), in a fresh process."""
    output = subprocess.run(
        [sys.executable, "-c", PING_TASKS, str(count)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return float(output.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--flips", type=int, default=20)
    options = parser.parse_args(argv)
    limit = raise_open_file_limit()
    if limit < options.subscribers + 100:
        print(f"open-file limit {limit}: too low for {options.subscribers} subscribers")
        return 2
    try:
        import uvloop

        uvloop.install()
        loop_name = "uvloop"
    except ImportError:
        loop_name = "asyncio"
    with tempfile.TemporaryDirectory(prefix="mwm-bench-sse-") as scratch:
        workdir = Path(scratch)
        state = workdir / "state.yaml"
        state.write_text("spec:\n  maintenance:\n    enabled: false\n")
        management_port = free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("MWM_")}
        environ.pop("KUBERNETES_SERVICE_HOST", None)
        environ.update(
            {
                "MWM_UPSTREAM__URL": f"http://127.0.0.1:{free_port()}",  # nothing listens
                "MWM_LISTEN__PUBLIC_HOST": "127.0.0.1",
                "MWM_LISTEN__MANAGEMENT_HOST": "127.0.0.1",
                "MWM_LISTEN__MANAGEMENT_PORT": str(management_port),
                "MWM_SOURCE__LOCAL__FILE": str(state),
                "MWM_MANAGEMENT__ADMIN_TOKEN": TOKEN,
                "PYTHONPATH": str(ROOT),
            }
        )
        port = free_port()
        environ["MWM_LISTEN__PUBLIC_PORT"] = str(port)
        server = Server(
            name="mwm",
            command=[sys.executable, "-m", "proxy.cli", "run"],
            port=port,
            log_path=workdir / "mwm.log",
            environ=environ,
            ready_status=502,  # the upstream is down: mwm answers, which is all we need
        )
        server.start()
        try:
            results = asyncio.run(
                measure(server, management_port, options.subscribers, options.flips)
            )
        finally:
            server.stop()
    results["ping_task_rss_bytes"] = ping_task_bytes(options.subscribers)
    results["client_loop"] = loop_name
    results["open_file_limit"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    latency = results["to_last_subscriber_ms"]
    print(
        f"status stream: {results['subscribers']:,} subscribers on one worker ({loop_name} client)"
    )
    print(
        f"  connected, first event everywhere: {results['connect_all_s']:.1f} s; "
        f"dropped during the run: {results['dropped_during_run']}"
    )
    print(
        f"  mwm RSS: {results['rss_before_mib']:.1f} MiB idle -> "
        f"{results['rss_with_subscribers_mib']:.1f} MiB with subscribers -> "
        f"{results['rss_after_flips_mib']:.1f} MiB after the flips; "
        f"{results['rss_per_subscriber_kib']:.1f} KiB per subscriber"
    )
    print(
        f"  state change to the last subscriber's event, {results['flips']} flips: "
        f"p50 {latency['p50']:.0f} ms, p99 {latency['p99']:.0f} ms, max {latency['max']:.0f} ms"
    )
    print(
        f"  aiohttp-sse's design, one idle ping task per subscriber: "
        f"+{results['ping_task_rss_bytes'] / 1024:.2f} KiB RSS each "
        f"(+{results['ping_task_rss_bytes'] * results['subscribers'] / MiB:.1f} MiB for all)"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"sse-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"  written to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
