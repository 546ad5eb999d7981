"""Cluster mode's footprint: one worker's RSS and its start-up to ready, kubernetes-asyncio
imported without its generated models (``controller.kubelib``) next to the whole import.

The issue's target: "Cluster mode (the fake API server is fine for this figure): RSS <= 50 MiB
per worker after start-up and after 1 M requests; start-up to ready <= 1 s".

Each round starts ``mwm run`` (one worker, cluster mode, leader election and status writes on)
twice, once as it is and once with ``MWM_KUBE_EAGER_IMPORT=1`` (``controller.kubelib``'s
diagnostic switch: the plain import of the whole library), then once in local mode (no
Kubernetes client; the floor, for reference), and for each:

- *start-up to ready*: from just before the process is spawned to the first 200 from
  ``/readyz`` (which needs the first state read from the API), polled every 2 ms;
- *RSS after start-up*: ``VmRSS`` at that moment;
- *RSS after N requests*: after ``--requests`` proxied ``GET /`` (default 20,000, over
  ``--concurrency`` keep-alive connections; the harness's soak does 1 M).

After the rounds, the *dependency floor* (:func:`dependency_floor`): the third-party modules
mwm's start-up imports (from site-packages; kubernetes-asyncio left out, which mwm loads only
in part), imported alone by a fresh interpreter, no code of mwm's; its RSS and private part
say how much of mwm's is its dependencies' (the issue's 50 MiB is below this floor).

``--variants lazy`` measures mwm as it is only (what the harness runs, for the issue's
targets); ``--json`` prints the results as JSON on stdout and everything else on stderr.

The fake Kubernetes API server (``tests/kube/fakeapi.py``, real HTTP and watches) and the
upstream run in this process; mwm reads a kubeconfig pointing at the fake, so the library's
configuration loading runs as it does outside a cluster.  A first start of each variant is
not counted (it warms the file cache).  Medians over ``--rounds``, the variants interleaved.

Run from the repository root: ``.venv/bin/python -m bench.footprint``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import aiohttp
from aiohttp import web

from bench.reaction import (
    NAMESPACE,
    SERVICE,
    endpoint_slice,
    service,
    service_checker,
    upstream_app,
)
from bench.report import CLUSTER_RSS_LIMIT_MIB, STARTUP_LIMIT_S
from bench.servers import private_bytes, rss_bytes
from tests.kube.fakeapi import FakeKubeAPI

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024
TARGET_RSS_MIB = CLUSTER_RSS_LIMIT_MIB
TARGET_STARTUP_S = STARTUP_LIMIT_S
READY_POLL_S = 0.002
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
EAGER_IMPORT_ENV = "MWM_KUBE_EAGER_IMPORT"
"""``controller.kubelib``'s diagnostic switch (not imported from there: that would run it
here)."""
VARIANTS: dict[str, dict[str, str]] = {
    "lazy": {},
    "whole": {EAGER_IMPORT_ENV: "1"},
    "local": {"MWM_SOURCE__KIND": "local"},
}
"""The two imports of kubernetes-asyncio, by the environment that selects them, and the local
mode (no Kubernetes client at all) for reference: the floor the cluster mode can reach."""


FLOOR_ENTRY_MODULES = ("proxy.cli", "proxy.runtime", "proxy.workers", "controller.kubesource")
"""What ``mwm run`` imports before it serves (:func:`dependency_floor` imports them to list
the third-party modules they load)."""
FLOOR_LEFT_OUT = ("kubernetes_asyncio",)
"""Left out of the floor: mwm loads only part of it (``controller.kubelib``); its plain import
loads all of its ~770 model modules (``whole`` above)."""
_LIST_DEPENDENCIES = """
import importlib, json, sys, sysconfig
for name in sys.argv[1:]:
    importlib.import_module(name)
purelib, platlib = sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]
found = sorted(
    name for name, module in list(sys.modules.items())
    if str(getattr(module, "__file__", None) or "").startswith((purelib, platlib))
)
print(json.dumps(found))
"""
_IMPORT_AND_WAIT = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print("imported", flush=True)
sys.stdin.read()  # measured from outside (bench.servers) until its input ends
"""


class BenchError(Exception):
    """The benchmark could not measure; the message says why."""


@dataclass
class Sample:
    variant: str
    startup_s: float
    rss_ready_mib: float
    rss_after_mib: float
    requests: int
    errors: int
    private_ready_mib: float = 0.0
    """The private part of ``rss_ready_mib`` (``RssAnon``): what each further pod adds on a
    node whose pods run the same image (the file-backed rest is shared between them)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "mwm", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "mwm"}}],
        "current-context": "fake",
    }
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def _environment(
    variant: str, upstream: str, kubeconfig: Path, ports: tuple[int, int]
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MWM_")}
    env.pop(EAGER_IMPORT_ENV, None)
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
            "MWM_UPSTREAM__URL": upstream,
            "MWM_LISTEN__PUBLIC_HOST": "127.0.0.1",
            "MWM_LISTEN__PUBLIC_PORT": str(ports[0]),
            "MWM_LISTEN__MANAGEMENT_HOST": "127.0.0.1",
            "MWM_LISTEN__MANAGEMENT_PORT": str(ports[1]),
            "MWM_SHUTDOWN__DRAIN_TIMEOUT_S": "1",
            "MWM_SHUTDOWN__PRESTOP_DELAY_S": "0",
            "MWM_SOURCE__KIND": "kubernetes",
            "MWM_SOURCE__KUBERNETES__KUBECONFIG": str(kubeconfig),
            "MWM_SOURCE__KUBERNETES__NAMESPACE": NAMESPACE,
            **VARIANTS[variant],  # last: the local mode's source kind wins
        }
    )
    return env


def _tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-2000:]


async def _wait_ready(
    session: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process, log: Path
) -> None:
    deadline = time.perf_counter() + START_TIMEOUT_S
    while time.perf_counter() < deadline:
        if proc.returncode is not None:
            raise BenchError(f"mwm exited with {proc.returncode}: {_tail(log)}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(url) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(READY_POLL_S)
    raise BenchError(f"mwm not ready after {START_TIMEOUT_S:g} s: {_tail(log)}")


async def _load(url: str, requests: int, concurrency: int) -> int:
    """``requests`` GETs over ``concurrency`` keep-alive connections; the non-200 count."""
    remaining = requests
    errors = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            try:
                async with session.get(url) as response:
                    await response.read()
                    errors += response.status != 200
            except aiohttp.ClientError:
                errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return errors


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def measure_one(
    variant: str, upstream: str, kubeconfig: Path, workdir: Path, requests: int, concurrency: int
) -> Sample:
    ports = (_free_port(), _free_port())
    env = _environment(variant, upstream, kubeconfig, ports)
    log = workdir / f"mwm-{variant}.log"
    async with aiohttp.ClientSession() as probe:
        with log.open("wb") as log_file:
            started = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "proxy.cli",
                "run",
                env=env,
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        try:
            await _wait_ready(probe, f"http://127.0.0.1:{ports[1]}/readyz", proc, log)
            startup_s = time.perf_counter() - started
            rss_ready = rss_bytes(proc.pid) / MIB
            private_ready = private_bytes(proc.pid) / MIB
            errors = await _load(f"http://127.0.0.1:{ports[0]}/", requests, concurrency)
            rss_after = rss_bytes(proc.pid) / MIB
        finally:
            await _stop(proc)
    return Sample(variant, startup_s, rss_ready, rss_after, requests, errors, private_ready)


@dataclass
class Floor:
    """The third-party modules mwm imports at start-up, imported alone in a fresh interpreter
    (no code of mwm's): the memory mwm's own code and data add to is measured from here."""

    rss_mib: float
    private_mib: float
    modules: int


_FRESH_ENVIRONMENT = {**os.environ, "PYTHONPATH": str(ROOT)}


def floor_modules() -> list[str]:
    """The modules ``FLOOR_ENTRY_MODULES`` load from site-packages (listed by a fresh
    interpreter that imports them), except ``FLOOR_LEFT_OUT``'s."""
    result = subprocess.run(
        [sys.executable, "-c", _LIST_DEPENDENCIES, *FLOOR_ENTRY_MODULES],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_FRESH_ENVIRONMENT,
        check=False,
        timeout=START_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise BenchError(f"dependency floor: {result.stderr.strip()[-2000:]}")
    listed: list[str] = json.loads(result.stdout)
    return [m for m in listed if m.split(".")[0] not in FLOOR_LEFT_OUT]


def dependency_floor() -> Floor:
    """:class:`Floor`: :func:`floor_modules` imported by a fresh interpreter, whose RSS and
    private part are read once it has imported them (as every server's here)."""
    modules = floor_modules()
    with subprocess.Popen(
        [sys.executable, "-c", _IMPORT_AND_WAIT, *modules],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_FRESH_ENVIRONMENT,
    ) as child:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "imported":  # blocks until it has, or exited
            _, errors = child.communicate(timeout=START_TIMEOUT_S)
            raise BenchError(f"dependency floor: {errors.strip()[-2000:]}")
        rss, private = rss_bytes(child.pid), private_bytes(child.pid)
        child.communicate(timeout=START_TIMEOUT_S)  # ends its input: it exits
    return Floor(rss / MIB, private / MIB, len(modules))


async def measure(
    rounds: int,
    requests: int,
    concurrency: int,
    variants: tuple[str, ...] = tuple(VARIANTS),
    out: TextIO = sys.stdout,
) -> list[Sample]:
    runner = web.AppRunner(upstream_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    upstream = f"http://127.0.0.1:{runner.addresses[0][1]}"
    samples: list[Sample] = []
    try:
        async with FakeKubeAPI() as fake:
            fake.create(service_checker("bench-0", [SERVICE]))
            fake.create(service(SERVICE))
            fake.create(endpoint_slice(ready=True))
            with tempfile.TemporaryDirectory(prefix="mwm-footprint-") as tmp:
                workdir = Path(tmp)
                kubeconfig = _kubeconfig(workdir / "kubeconfig", fake.url)
                for variant in variants:  # warm-up, not counted
                    await measure_one(variant, upstream, kubeconfig, workdir, 0, 1)
                for _ in range(rounds):
                    for variant in variants:
                        sample = await measure_one(
                            variant, upstream, kubeconfig, workdir, requests, concurrency
                        )
                        print(
                            f"  {variant:5}  ready in {sample.startup_s:.3f} s, "
                            f"RSS {sample.rss_ready_mib:.1f} MiB at ready "
                            f"({sample.private_ready_mib:.1f} MiB private), "
                            f"{sample.rss_after_mib:.1f} MiB after {requests:,} requests"
                            f" ({sample.errors} errors)",
                            file=out,
                            flush=True,
                        )
                        samples.append(sample)
    finally:
        await runner.cleanup()
    return samples


def _median(samples: list[Sample], variant: str, field: str) -> float:
    return float(statistics.median(getattr(s, field) for s in samples if s.variant == variant))


def _cells(values: dict[str, float], unit: str, target: float | None) -> list[tuple[str, str]]:
    """One row's (column title, cell): a column per variant measured, each comparison when
    both its variants were, the target and verdict when ``lazy`` (mwm as it is) was."""
    digits = 3 if unit == "s" else 1
    cells = []
    if "lazy" in values:
        cells.append(("cluster, lazy (kubelib)", f"{values['lazy']:.{digits}f} {unit}"))
    if "whole" in values:
        cells.append(("cluster, whole import", f"{values['whole']:.{digits}f} {unit}"))
        if "lazy" in values:
            whole = values["whole"]
            cells.append(("lazy / whole", f"{values['lazy'] / whole:.2f}x" if whole else "-"))
    if "local" in values:
        cells.append(("local mode", f"{values['local']:.{digits}f} {unit}"))
        if "lazy" in values:
            difference = values["lazy"] - values["local"]
            cells.append(("lazy - local", f"{difference:+.{digits}f} {unit}"))
    if "lazy" in values:
        if target is None:  # information, no target
            cells += [("target", "-"), ("lazy", "-")]
        else:
            cells.append(("target", f"<= {target:g} {unit}"))
            cells.append(("lazy", "PASS" if values["lazy"] <= target else "FAIL"))
    return cells


def report(samples: list[Sample], requests: int) -> tuple[str, dict[str, float]]:
    """The table and the medians, keyed ``<variant>_<field>``."""
    rows = [
        ("start-up to ready", "startup_s", "s", TARGET_STARTUP_S),
        ("RSS after start-up", "rss_ready_mib", "MiB", TARGET_RSS_MIB),
        (f"RSS after {requests:,} requests", "rss_after_mib", "MiB", TARGET_RSS_MIB),
        ("of which private at start-up (RssAnon)", "private_ready_mib", "MiB", None),
    ]
    measured = [v for v in VARIANTS if any(s.variant == v for s in samples)]
    lines: list[str] = []
    figures: dict[str, float] = {}
    for title, field, unit, target in rows:
        values = {v: _median(samples, v, field) for v in measured}
        for variant, value in values.items():
            figures[f"{variant}_{field}"] = value
        cells = _cells(values, unit, target)
        if not lines:
            lines += [
                f"| figure (median of {len(samples) // max(len(measured), 1)}) "
                f"| {' | '.join(name for name, _ in cells)} |",
                "|---" * (len(cells) + 1) + "|",
            ]
        lines.append(f"| {title} | {' | '.join(cell for _, cell in cells)} |")
    errors = sum(s.errors for s in samples)
    lines.append(f"\n{errors} non-200 answers over {len(samples) * requests:,} proxied requests.")
    return "\n".join(lines), figures


def floor_line(floor: Floor) -> str:
    return (
        f"The {floor.modules} modules mwm imports from its dependencies "
        f"({', '.join(FLOOR_LEFT_OUT)} left out), imported alone: RSS {floor.rss_mib:.1f} MiB "
        f"({floor.private_mib:.1f} MiB private)."
    )


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated subset of {','.join(VARIANTS)} (all)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the JSON results to stdout, the rest to stderr"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.requests < 0 or args.concurrency < 1:
        parser.error("--rounds and --concurrency must be at least 1, --requests at least 0")
    chosen = {v for v in args.variants.split(",") if v}
    if not chosen or chosen - set(VARIANTS):
        parser.error(f"--variants: a subset of {','.join(VARIANTS)}")
    variants = tuple(v for v in VARIANTS if v in chosen)
    out = sys.stderr if args.json else sys.stdout
    print(
        f"cluster-mode footprint: 1 worker, fake API server, {platform.python_implementation()} "
        f"{platform.python_version()}, {args.rounds} rounds, {args.requests:,} requests each",
        file=out,
        flush=True,
    )
    signal.signal(signal.SIGTERM, _interrupted)  # stop mwm too, as on Ctrl-C
    try:
        samples = asyncio.run(measure(args.rounds, args.requests, args.concurrency, variants, out))
    except BenchError as exc:
        print(f"footprint: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    table, figures = report(samples, args.requests)
    print(table, file=out)
    try:
        floor = dependency_floor()
    except (BenchError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"footprint: {exc}", file=sys.stderr)
        return 2
    print(floor_line(floor), file=out)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {
        "benchmark": "footprint",
        "at": stamp,
        "rounds": args.rounds,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "variants": list(variants),
        "errors": sum(s.errors for s in samples),
        "figures": figures,
        "floor": asdict(floor),
        "samples": [asdict(s) for s in samples],
    }
    (args.results_dir / f"footprint-{stamp}.json").write_text(
        json.dumps(document, indent=2) + "\n", encoding="utf-8"
    )
    if args.json:
        print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
