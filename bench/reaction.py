"""How fast an EndpointSlice change reaches users as a 503, and recovery as a 200.

The issue's target: "EndpointSlice change to first 503: p99 <= 50 ms".  This benchmark runs
the real proxy (:class:`proxy.runtime.Runtime`, the Kubernetes source, the status writer)
against the project's fake Kubernetes API server (``tests/kube/fakeapi.py``, real HTTP, real
watch streams) and a tiny real upstream, all in one event loop, which is the deployment's shape
for the proxy itself: its listeners, its watches and its status writer share one loop.

One *flip* is an outage and its end: the EndpointSlice of a critical service loses its last
ready endpoint (``enter``), then gets it back (``exit``).  For each change three instants are
taken with :func:`time.perf_counter`, all counted from the moment the fake's write returned
(committed, watch events queued to the open watches):

- ``verdict published``: the store swapped in a state with the new verdict (a store listener,
  called synchronously inside the swap, so this is the controller's own reaction time);
- ``waiter woke``: a task waiting on ``store.wait_for_change`` saw that state (adds the
  loop's scheduling delay);
- ``first response``: a client hammering ``GET /`` on the public port over one keep-alive
  connection received the first 503 (``enter``) or 200 (``exit``) -- the users' view.

Run from the repository root: ``.venv/bin/python -m bench.reaction --flips 100``.
See ``bench/README.md`` for what the numbers mean and the caveats.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from controller.store import SnapshotStore, State
from proxy.runtime import Runtime
from proxy.settings import load_settings
from tests.kube.fakeapi import FakeKubeAPI

NAMESPACE = "bench"
SERVICE = "api"
TARGET_TEXT = "EndpointSlice change to first 503: p99 <= 50 ms"
TARGET_P99_MS = 50.0
RESULTS_DIR = Path(__file__).resolve().parent / "results"
CHECKER_LIMIT = 100
"""Services one ServiceChecker may list (``maxItems`` in the CRD)."""
ACCEPT_JSON = {"Accept": "application/json"}


class BenchError(Exception):
    """The benchmark could not measure (a change never showed); the message says which."""


# -- the objects in the fake cluster ---------------------------------------------------------


def service_names(count: int) -> list[str]:
    """The measured service first, then ``count - 1`` others that stay ready throughout."""
    return [SERVICE, *(f"{SERVICE}-{i}" for i in range(1, count))]


def service_checkers(names: Sequence[str]) -> list[dict[str, Any]]:
    """Critical services, at most 100 per resource (the CRD's limit)."""
    return [
        service_checker(f"bench-{i // CHECKER_LIMIT}", names[i : i + CHECKER_LIMIT])
        for i in range(0, len(names), CHECKER_LIMIT)
    ]


def service_checker(name: str, names: Sequence[str]) -> dict[str, Any]:
    """No hysteresis: the enter/exit delays are a choice, not a reaction time."""
    return {
        "apiVersion": "maintenance.mamrezb.com/v1alpha1",
        "kind": "ServiceChecker",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "services": [{"name": service, "critical": True} for service in names],
            "enterDelaySeconds": 0,
            "exitDelaySeconds": 0,
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
    }


def endpoint_slice(*, ready: bool, name: str = SERVICE) -> dict[str, Any]:
    """The service's only slice with one endpoint, ready or not (the pod stays listed)."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-a",
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": ["10.0.0.1"],
                "conditions": {"ready": ready},
                "targetRef": {"kind": "Pod", "name": f"{name}-p1", "uid": f"uid-{name}-1"},
            }
        ],
    }


def upstream_app() -> web.Application:
    """The app behind the proxy: as small as possible, so forwarding costs little."""

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "path": request.raw_path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    return app


# -- the observers ---------------------------------------------------------------------------


class Hammer:
    """``GET /`` on the proxy, back to back, over one keep-alive connection: the users' view."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests = 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.connections = 0
        self._expected: tuple[int, asyncio.Future[tuple[float, int]]] | None = None

    def expect(self, status: int) -> asyncio.Future[tuple[float, int]]:
        """Resolves with (perf_counter, request number) of the next response with ``status``."""
        future: asyncio.Future[tuple[float, int]] = asyncio.get_running_loop().create_future()
        self._expected = (status, future)
        return future

    async def run(self) -> None:
        async def connected(*_: Any) -> None:
            self.connections += 1

        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(connected)
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session:
            try:
                while True:
                    await self._request(session)
            except (aiohttp.ClientError, OSError) as exc:
                # Tell whoever waits for a response why it will never come.
                if self._expected is not None and not self._expected[1].done():
                    self._expected[1].set_exception(BenchError(f"the client failed: {exc!r}"))
                raise

    async def _request(self, session: aiohttp.ClientSession) -> None:
        async with session.get(self.url, headers=ACCEPT_JSON) as response:
            await response.read()
        received = time.perf_counter()
        self.requests += 1
        self.statuses[response.status] += 1
        expected = self._expected
        if expected is not None and response.status == expected[0]:
            self._expected = None
            if not expected[1].done():
                expected[1].set_result((received, self.requests))


class VerdictProbe:
    """Notes the instant the store publishes a given verdict (its listeners run in the swap)."""

    def __init__(self, store: SnapshotStore) -> None:
        self._expected: tuple[bool, asyncio.Future[float]] | None = None
        store.add_listener(self._changed)

    def expect(self, active: bool) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._expected = (active, future)
        return future

    def _changed(self, state: State) -> None:
        expected = self._expected
        if expected is not None and state.maintenance.active == expected[0]:
            self._expected = None
            if not expected[1].done():
                expected[1].set_result(time.perf_counter())


async def wait_for_verdict(store: SnapshotStore, *, active: bool) -> State:
    state = store.current
    while not (state.snapshot.synced and state.maintenance.active == active):
        state = await store.wait_for_change(state.generation)
    return state


# -- one change ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One measured change; times in ms from the fake's write returning."""

    direction: str
    """``enter`` (last ready endpoint lost) or ``exit`` (ready again)."""
    verdict_published_ms: float
    verdict_woke_ms: float
    first_response_ms: float
    requests: int
    """Responses the client received from the change to the first one that showed it."""
    write_ms: float
    """How long the fake's write itself took (not part of the other figures)."""


@dataclass
class Bench:
    fake: FakeKubeAPI
    store: SnapshotStore
    hammer: Hammer
    probe: VerdictProbe
    flip_timeout_s: float

    async def change(self, *, ready: bool) -> Change:
        active = not ready
        published = self.probe.expect(active)
        observed = self.hammer.expect(200 if ready else 503)
        requests_before = self.hammer.requests
        started = time.perf_counter()
        self.fake.update(endpoint_slice(ready=ready))
        applied = time.perf_counter()
        direction = "exit" if ready else "enter"
        try:
            async with asyncio.timeout(self.flip_timeout_s):
                await wait_for_verdict(self.store, active=active)
                woke = time.perf_counter()
                published_at = await published
                received_at, request_number = await observed
        except TimeoutError:
            raise BenchError(
                f"{direction}: the change did not show within {self.flip_timeout_s:g} s "
                f"(verdict published: {published.done()}, response seen: {observed.done()})"
            ) from None
        return Change(
            direction=direction,
            verdict_published_ms=(published_at - applied) * 1000,
            verdict_woke_ms=(woke - applied) * 1000,
            first_response_ms=(received_at - applied) * 1000,
            requests=request_number - requests_before,
            write_ms=(applied - started) * 1000,
        )


# -- running ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    flips: int
    seconds: float
    warmup: int
    services: int
    gap_ms: float
    flip_timeout_s: float
    loop: str
    overrides: dict[str, str]


@dataclass
class Run:
    changes: list[Change]
    requests: int
    statuses: dict[int, int]
    connections: int
    measured_s: float
    settings: dict[str, str]
    capped: bool
    api_requests: dict[str, int]
    """Requests the proxy made to the API server while measuring (status writes, Events)."""


def proxy_environment(upstream_url: str, api_url: str, overrides: dict[str, str]) -> dict[str, str]:
    return {
        "MWM_UPSTREAM__URL": upstream_url,
        "MWM_LISTEN__PUBLIC_HOST": "127.0.0.1",
        "MWM_LISTEN__PUBLIC_PORT": "0",
        "MWM_LISTEN__MANAGEMENT_HOST": "127.0.0.1",
        "MWM_LISTEN__MANAGEMENT_PORT": "0",
        "MWM_SHUTDOWN__DRAIN_TIMEOUT_S": "1",
        "MWM_SOURCE__KIND": "kubernetes",
        "MWM_SOURCE__KUBERNETES__API_URL": api_url,
        "MWM_SOURCE__KUBERNETES__NAMESPACE": NAMESPACE,
        "MWM_SOURCE__LEADER_ELECTION__ENABLED": "false",
        "MWM_SOURCE__STATUS__COALESCE_S": "0",
        **overrides,
    }


async def measure(options: Options) -> Run:
    upstream = web.AppRunner(upstream_app(), access_log=None)
    await upstream.setup()
    site = web.TCPSite(upstream, "127.0.0.1", 0)
    await site.start()
    upstream_port = int(upstream.addresses[0][1])
    try:
        async with FakeKubeAPI() as fake:
            names = service_names(options.services)
            for checker in service_checkers(names):
                fake.create(checker)
            for name in names:
                fake.create(service(name))
                fake.create(endpoint_slice(ready=True, name=name))
            environment = proxy_environment(
                f"http://127.0.0.1:{upstream_port}", fake.url, options.overrides
            )
            runtime = Runtime(load_settings(environment))
            running = asyncio.create_task(runtime.run(), name="mwm")
            try:
                return await _flip_repeatedly(fake, runtime, running, options, environment)
            finally:
                runtime.request_stop()
                await asyncio.wait_for(running, 10)
    finally:
        await upstream.cleanup()


async def _flip_repeatedly(
    fake: FakeKubeAPI,
    runtime: Runtime,
    running: asyncio.Task[None],
    options: Options,
    environment: dict[str, str],
) -> Run:
    started = asyncio.create_task(runtime.started.wait())
    await asyncio.wait({started, running}, return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        started.cancel()
        running.result()  # raises the start-up error
        raise BenchError("the proxy stopped during start-up")
    assert runtime.ports is not None
    try:
        async with asyncio.timeout(options.flip_timeout_s):
            await wait_for_verdict(runtime.store, active=False)
    except TimeoutError:
        raise BenchError(
            f"the proxy did not sync with every service ready within {options.flip_timeout_s:g} s"
        ) from None

    hammer = Hammer(f"http://127.0.0.1:{runtime.ports.public}/")
    bench = Bench(
        fake=fake,
        store=runtime.store,
        hammer=hammer,
        probe=VerdictProbe(runtime.store),
        flip_timeout_s=options.flip_timeout_s,
    )
    hammering = asyncio.create_task(hammer.run(), name="hammer")
    try:
        try:
            async with asyncio.timeout(options.flip_timeout_s):
                await hammer.expect(200)
        except TimeoutError:
            raise BenchError("the proxy never answered 200 before the first change") from None

        async def pause() -> None:
            # Pacing, not waiting for something: lands each change at a random point of the
            # client's request cycle, and lets the status write of the last change finish.
            await asyncio.sleep(random.uniform(0, options.gap_ms / 1000))

        deadline = time.perf_counter() + options.seconds
        for _ in range(options.warmup):
            for ready in (False, True):
                await bench.change(ready=ready)
                await pause()

        changes: list[Change] = []
        api_requests_before = len(fake.requests)
        requests_before = hammer.requests
        statuses_before = collections.Counter(hammer.statuses)
        begin = time.perf_counter()
        capped = False
        for _ in range(options.flips):
            if time.perf_counter() >= deadline:
                capped = True
                break
            for ready in (False, True):
                changes.append(await bench.change(ready=ready))
                await pause()
        measured_s = time.perf_counter() - begin
        statuses = hammer.statuses - statuses_before
        api_requests = collections.Counter(
            f"{r.method} {r.path.rsplit('/', 1)[-1]}" for r in fake.requests[api_requests_before:]
        )
        return Run(
            changes=changes,
            requests=hammer.requests - requests_before,
            statuses=dict(sorted(statuses.items())),
            connections=hammer.connections,
            measured_s=measured_s,
            settings={k: v for k, v in environment.items() if "URL" not in k},
            capped=capped,
            api_requests=dict(sorted(api_requests.items())),
        )
    finally:
        hammering.cancel()
        await asyncio.wait({hammering})


# -- reporting -------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (p99 of 100 values: the 99th)."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "median": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
    }


METRICS: tuple[tuple[str, str, Callable[[Change], float]], ...] = (
    ("verdict_published", "change -> verdict published", lambda c: c.verdict_published_ms),
    ("verdict_woke", "change -> waiter woke", lambda c: c.verdict_woke_ms),
    ("first_response", "change -> first {status}", lambda c: c.first_response_ms),
    ("requests", "requests until seen (count)", lambda c: float(c.requests)),
)


def loop_name(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def results_document(options: Options, run: Run, started_at: datetime) -> dict[str, Any]:
    summary: dict[str, dict[str, Any]] = {}
    for direction in ("enter", "exit"):
        changes = [c for c in run.changes if c.direction == direction]
        summary[direction] = {key: summarize([get(c) for c in changes]) for key, _, get in METRICS}
        summary[direction]["write"] = summarize([c.write_ms for c in changes])
    measured = summary["enter"]["first_response"].get("p99")
    passed = measured is not None and measured <= TARGET_P99_MS
    return {
        "benchmark": "reaction",
        "started_at": started_at.isoformat(),
        "target": {
            "text": TARGET_TEXT,
            "metric": "enter.first_response.p99",
            "limit_ms": TARGET_P99_MS,
            "measured_ms": measured,
            "pass": passed,
        },
        "flips": {
            "requested": options.flips,
            "completed": sum(1 for c in run.changes if c.direction == "exit"),
            "warmup": options.warmup,
            "capped_by_seconds": run.capped,
        },
        "summary_ms": summary,
        "client": {
            "requests": run.requests,
            "requests_per_s": run.requests / run.measured_s if run.measured_s else None,
            "statuses": {str(k): v for k, v in run.statuses.items()},
            "connections_opened": run.connections,
        },
        "api_requests_by_proxy": run.api_requests,
        "measured_s": run.measured_s,
        "options": {
            "flips": options.flips,
            "seconds": options.seconds,
            "warmup": options.warmup,
            "services": options.services,
            "gap_ms": options.gap_ms,
            "flip_timeout_s": options.flip_timeout_s,
        },
        "environment": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loop": loop_name(options.loop),
            "aiohttp": aiohttp.__version__,
            "proxy_settings": run.settings,
            "layout": "one process, one event loop: fake API server, proxy, upstream, client",
        },
        "changes": [asdict(c) for c in run.changes],
    }


def table(document: dict[str, Any], path: Path | None) -> str:
    flips = document["flips"]
    env = document["environment"]
    client = document["client"]
    capped = " [capped by --seconds]" if flips["capped_by_seconds"] else ""
    lines = [
        f"mwm reaction benchmark: {flips['completed']} flips (+{flips['warmup']} warm-up){capped}"
        f", {document['options']['services']} critical service(s)"
        f", {env['cpus']} CPUs, Python {env['python']}, {env['loop']} loop",
        f"{'':40}{'n':>5}{'median':>9}{'p90':>9}{'p99':>9}{'max':>9}   (ms)",
    ]
    for direction, status in (("enter", 503), ("exit", 200)):
        for key, label, _ in METRICS:
            row = document["summary_ms"][direction][key]
            name = f"{direction:5} {label.format(status=status)}"
            if row["n"] == 0:
                lines.append(f"{name:40}{0:>5}")
                continue
            lines.append(
                f"{name:40}{row['n']:>5}{row['median']:>9.2f}{row['p90']:>9.2f}"
                f"{row['p99']:>9.2f}{row['max']:>9.2f}"
            )
    rate = client["requests_per_s"] or 0.0
    lines.append(
        f"client: {client['requests']} requests ({rate:.0f}/s) over "
        f"{client['connections_opened']} connection(s), statuses {client['statuses']}"
    )
    api = ", ".join(f"{n} {k}" for k, n in document["api_requests_by_proxy"].items())
    lines.append(f"proxy -> API server while measuring: {api or 'nothing'}")
    target = document["target"]
    verdict = "PASS" if target["pass"] else "FAIL"
    measured = target["measured_ms"]
    shown = f"{measured:.2f} ms" if measured is not None else "nothing measured"
    lines.append(f"target (issue): {target['text']}  ->  p99 {shown}: {verdict}")
    if path is not None:
        lines.append(f"results: {path}")
    return "\n".join(lines)


def write_results(document: dict[str, Any], directory: Path, started_at: datetime) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"reaction-{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def parse_options(argv: Sequence[str] | None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reaction",
        description="Time from an EndpointSlice change to the first 503 (and back to 200).",
    )
    parser.add_argument("--flips", type=int, default=200, help="outages to measure (200)")
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="stop flipping after N s, warm-up included (60)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured flips first (5)")
    parser.add_argument(
        "--services",
        type=int,
        default=1,
        help="critical services in the ServiceChecker; only the first flips (1)",
    )
    parser.add_argument(
        "--gap-ms", type=float, default=20.0, help="random pause 0..N ms between changes (20)"
    )
    parser.add_argument(
        "--flip-timeout-s", type=float, default=5.0, help="give up if a change never shows (5)"
    )
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="MWM_KEY=VALUE",
        help="override a proxy setting, e.g. --set MWM_SOURCE__STATUS__ENABLED=false",
    )
    parser.add_argument("--json", action="store_true", help="print the JSON results to stdout")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("MWM_"):
            parser.error(f"--set wants MWM_KEY=VALUE, got {item!r}")
        overrides[key] = value
    options = Options(
        flips=args.flips,
        seconds=args.seconds,
        warmup=args.warmup,
        services=max(1, args.services),
        gap_ms=args.gap_ms,
        flip_timeout_s=args.flip_timeout_s,
        loop=args.loop,
        overrides=overrides,
    )
    return options, args


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 when the target is met, 1 when it is not, 2 when nothing was measured."""
    options, args = parse_options(argv)
    loop_factory = None
    if loop_name(options.loop) == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    started_at = datetime.now(UTC)
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            run = runner.run(measure(options))
    except BenchError as exc:
        print(f"reaction benchmark failed: {exc}", file=sys.stderr)
        return 2
    document = results_document(options, run, started_at)
    path = write_results(document, args.results_dir, started_at)
    if args.json:
        print(table(document, path), file=sys.stderr)
        print(json.dumps(document, indent=2))
    else:
        print(table(document, path))
    return 0 if document["target"]["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
