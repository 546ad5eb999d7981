"""What the metrics cost per request: the old plain counters next to ``prometheus_client``.

One run measures, in nanoseconds per increment (best of ``--repeat`` loops, the cost of
an empty loop taken off):

- ``old``: what proxy/metrics.py did before, ``collections.Counter()[key] += 1`` and an
  ``int`` attribute ``+= 1``;
- ``one process``: ``prometheus_client`` counters in memory (a lock and a float), which is
  also what each worker would pay if it exposed its own registry on its own port;
- ``several workers``: the same counters in multiprocess mode (a lock and a write into the
  worker's memory-mapped file), measured in a child process started with
  ``PROMETHEUS_MULTIPROC_DIR`` set, as the workers are (the variable is read on import).

For each: the call sites' spelling (``metrics.requests.inc("forward")``, a labelled child
bound once) and an unlabelled counter's ``inc()``; then the cost per request (one
increment on the forwarded and 503 paths, two on a bypass) and the ratios new/old, and
what one scrape of ``/metrics`` costs.

    python -m bench.metrics_cost [--loops 100000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import Any


def _best_ns(loop: Callable[[int], None], loops: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        loop(loops)
        best = min(best, (time.perf_counter_ns() - start) / loops)
    return best


def _measure(loops: int, repeat: int) -> dict[str, float]:
    """ns per operation in this process (the multiprocess mode is decided on import)."""
    from controller.store import SnapshotStore
    from proxy.metrics import Metrics

    def empty(n: int) -> None:
        for _ in range(n):
            pass

    base = _best_ns(empty, loops, repeat)
    results: dict[str, float] = {"empty loop": base}

    def timed(name: str, loop: Callable[[int], None]) -> None:
        results[name] = max(0.0, _best_ns(loop, loops, repeat) - base)

    old_requests: Counter[str] = Counter()

    class Old:
        header_timeouts = 0

    old = Old()

    def old_keyed(n: int) -> None:
        for _ in range(n):
            old_requests["forward"] += 1

    def old_attribute(n: int) -> None:
        for _ in range(n):
            old.header_timeouts += 1

    metrics = Metrics()
    requests = metrics.requests

    def new_keyed(n: int) -> None:
        for _ in range(n):
            requests.inc("forward")

    def new_attribute(n: int) -> None:
        for _ in range(n):
            metrics.header_timeouts.inc()

    timed("old keyed", old_keyed)
    timed("old attribute", old_attribute)
    timed("new keyed", new_keyed)
    timed("new attribute", new_attribute)

    state = SnapshotStore().current
    scrapes = max(1, loops // 1000)
    start = time.perf_counter_ns()
    for _ in range(scrapes):
        metrics.exposition(state)
    results["scrape"] = (time.perf_counter_ns() - start) / scrapes
    return results


def _child_main(loops: int, repeat: int) -> None:
    print(json.dumps(_measure(loops, repeat)))


def _in_multiprocess_mode(loops: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mwm-bench-metrics-") as shared:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": shared}
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.metrics_cost",
                "--child",
                "--loops",
                str(loops),
                "--repeat",
                str(repeat),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--loops", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child_main(args.loops, args.repeat)
        return 0
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        print("unset PROMETHEUS_MULTIPROC_DIR: this process measures the one-process mode")
        return 2

    single = _measure(args.loops, args.repeat)
    multi = _in_multiprocess_mode(args.loops, args.repeat)
    # Each ratio within one process: the old counters are measured in both.
    old = single["old keyed"]
    old_attr = single["old attribute"]
    multi_old = multi["old keyed"]

    def row(name: str, *values: Any) -> None:
        print(f"{name:<44}" + "".join(f"{v:>14}" for v in values))

    print(f"ns per increment (best of {args.repeat} x {args.loops:,}; empty loop taken off)\n")
    row("", "old", "one process", "workers(mmap)")
    row(
        'requests.inc("forward")  (call sites)',
        f"{old:.1f}",
        f"{single['new keyed']:.1f}",
        f"{multi['new keyed']:.1f}",
    )
    row(
        "header_timeouts.inc()",
        f"{old_attr:.1f}",
        f"{single['new attribute']:.1f}",
        f"{multi['new attribute']:.1f}",
    )
    print()
    print("per request (forwarded or 503: one increment; bypass: two)")
    for label, n in (("forwarded / 503", 1), ("bypass", 2)):
        one, several = n * single["new keyed"], n * multi["new keyed"]
        row(
            f"  {label}",
            f"{n * old:.0f} ns",
            f"{one:.0f} ns",
            f"{several:.0f} ns",
        )
    print()
    print(
        "ratio new/old per increment: "
        f"one process {single['new keyed'] / old:.1f}x, "
        f"workers (mmap) {multi['new keyed'] / multi_old:.1f}x; "
        f"extra per increment with workers: {multi['new keyed'] - multi_old:.0f} ns"
    )
    print(
        "one /metrics scrape (this process's counters; with workers every worker's file is "
        f"read): one process {single['scrape'] / 1000:.0f} us, "
        f"workers (mmap) {multi['scrape'] / 1000:.0f} us"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
