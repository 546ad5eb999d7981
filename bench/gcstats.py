"""``mwm run`` with the garbage collector's pauses recorded: where a latency tail comes from.

A CPython process stops the world for every cyclic garbage collection, and a full
(generation 2) collection walks every tracked object of the heap, so its pause grows with
everything the process ever imported.  This launcher runs the real ``mwm run`` (same
environment, same settings) with a :data:`gc.callbacks` hook that times each
collection, and writes a summary per generation as JSON when the process exits (SIGTERM
lets mwm shut down normally)::

    BENCH_GC_STATS=gc.json python -m bench.gcstats      # instead of: mwm run

``BENCH_GC_FREEZE=1`` also imports everything ``mwm run`` imports and then calls
:func:`gc.freeze`, which moves every object alive at that point out of the collector's
reach: it shows what freezing the start-up heap would buy, without changing the proxy.
``BENCH_GC_THRESHOLD=50000`` sets the youngest generation's threshold (default 700).
:mod:`bench.profile` uses both; the proxy itself is not changed.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

_events: list[tuple[float, int, float, int]] = []
"""(``time.monotonic()`` at the start, generation, pause in s, objects collected)."""
_started = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.monotonic()
        return
    pause_s = time.monotonic() - _started[0]
    _events.append((_started[0], int(info["generation"]), pause_s, int(info["collected"])))


def summarize(events: list[tuple[float, int, float, int]]) -> dict[str, Any]:
    """Per generation: collections, objects freed, pause total / median / p99 / max in ms."""
    result: dict[str, Any] = {}
    for generation in (0, 1, 2):
        ordered = sorted(e[2] for e in events if e[1] == generation)
        result[f"gen{generation}"] = {
            "collections": len(ordered),
            "collected": sum(e[3] for e in events if e[1] == generation),
            "total_ms": sum(ordered) * 1000,
            "median_ms": ordered[len(ordered) // 2] * 1000 if ordered else None,
            "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000 if ordered else None,
            "max_ms": ordered[-1] * 1000 if ordered else None,
        }
    return result


def summary() -> dict[str, Any]:
    """Everything, plus every event (so a caller can keep only a time window, as
    :mod:`bench.profile` does for the load phase; ``time.monotonic`` is system-wide)."""
    return {
        "tracked_objects": len(gc.get_objects()),
        "frozen_objects": gc.get_freeze_count(),
        "thresholds": gc.get_threshold(),
        "whole_life": summarize(_events),
        "events": _events,
    }


def _write(path: Path) -> None:
    path.write_text(json.dumps(summary(), indent=2) + "\n", encoding="utf-8")


def main() -> int:
    destination = os.environ.get("BENCH_GC_STATS")
    if destination:
        atexit.register(_write, Path(destination))
    gc.callbacks.append(_on_gc)
    from proxy.cli import main as mwm

    if os.environ.get("BENCH_GC_FREEZE") == "1":
        import proxy.runtime  # noqa: F401  (what ``mwm run`` imports once it starts)

        gc.collect()
        gc.freeze()
    threshold = os.environ.get("BENCH_GC_THRESHOLD")
    if threshold:
        gc.set_threshold(int(threshold), *gc.get_threshold()[1:])

    return mwm(["run"])


if __name__ == "__main__":
    sys.exit(main())
