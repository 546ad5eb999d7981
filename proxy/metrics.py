"""Prometheus metrics through ``prometheus_client``, correct with several workers.

The counters are ``prometheus_client`` counters with their labelled children bound once
per label value (the first time it is counted: a series appears once it has happened, as
before) and kept in a dict: ``metrics.requests.inc("forward")``.  With one process the hot
path adds to a plain integer, handed to the child whenever the registry is read (see
``_Children``).

With ``MWM_LISTEN__WORKERS>1`` (:mod:`proxy.workers`) the parent gives every worker the
same fresh ``PROMETHEUS_MULTIPROC_DIR`` inside its own temporary directory (``/tmp``, the
one writable place in the image, whose root is read-only).  ``prometheus_client`` then
keeps each worker's values in a memory-mapped file of its own, and whichever worker
answers ``/metrics`` sums every worker's files (``MultiProcessCollector``): a counter is
the pod's total and never decreases, whichever worker takes the scrape, and a worker that
dies and is restarted leaves its file behind, so its counts stay in the sum.

Chosen over a port (or a label) per worker: the management port is shared by every
worker (probes, admin API), so a port each would mean N scrape targets per pod and a
chart that knows the worker count, and a label alone does not help, since one scrape
still reaches one worker.  The price is on the hot path: a lock and a write into the
mapped file, about 1 µs per increment against 0.1-0.2 µs for the plain integers this
replaced (``python -m bench.metrics_cost``), next to 34-92 µs of CPU per request.

The state gauges (maintenance, services, generation, next window) are read from the
answering worker's state at scrape time, as before: every worker reads the same source.
``mwm_next_window_start_timestamp_seconds`` is there only while a window is ahead (a
collector yields it or not; a plain gauge could not disappear, and a placeholder value
would read as a date); ``mwm_next_window_announced`` is always there, 0 or 1.  The open
status streams (``mwm_status_subscribers{listener}``) are each worker's own, so that gauge is
kept in the files like the counters, in ``livesum`` mode: the live workers' streams summed
(the parent removes the file of a worker that died, :mod:`proxy.workers`); so are the held
requests (``mwm_held_requests``, :mod:`proxy.hold`).  The
process metrics (``process_*``) are the answering process's own with one worker, and
every live worker's, labelled ``worker="<index>"``, with several.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from controller.store import State

# No ``*_created`` series: the exposition stays as it was.
disable_created_metrics()  # type: ignore[no-untyped-call]

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Read by ``prometheus_client`` when it is first imported: set by the parent for workers."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_HELP = {
    "mwm_requests_total": "Requests on the public listener, by outcome.",
    "mwm_bypass_total": "Requests let through during maintenance, by bypass rule.",
    "mwm_upstream_errors_total": "Upstream failures answered with 502/504.",
    "mwm_requests_rejected_total": (
        "Requests refused for exceeding a limit: 408 stalled body, 413 body, 414 URL, 431 headers."
    ),
    "mwm_header_timeouts_total": (
        "Connections closed because a request head did not arrive in time."
    ),
    "mwm_bypass_cookies_issued_total": "Bypass cookies issued by the secret URL.",
    "mwm_maintenance_active": "1 while maintenance is on.",
    "mwm_service_ready": "1 while the service has enough ready endpoints.",
    "mwm_snapshot_generation": "Generation of the current state; rises on change.",
    "mwm_next_window_start_timestamp_seconds": (
        "Start of the next scheduled window (unix seconds); absent when none is ahead."
    ),
    "mwm_next_window_announced": "1 while the next scheduled window is being announced.",
    "mwm_status_subscribers": "Open status streams (Server-Sent Events), by listener.",
    "mwm_held_requests": "Requests held now, waiting for a critical service to come back.",
    "mwm_hold_outcomes_total": (
        "Held or holdable requests, by outcome: released to the upstream, failed (the page "
        "at the deadline), rejected (the page at once: over the limit or a large body), "
        "gone (the client left)."
    ),
}

K = TypeVar("K")


class _Children(Generic[K]):
    """A labelled counter's children by label value, bound on first use (no label lookup
    per request).

    With one process (``pending``), a count is added to a plain integer and handed to the
    ``prometheus_client`` child when the counters are read (:meth:`flush`, before every
    exposition): a lock and three calls less per request (~0.9 µs against 0.1), the same
    figures whenever anyone looks.  With several workers every count goes to the child at
    once: another worker's scrape reads it from the shared files, which this one cannot
    flush."""

    __slots__ = ("_bind", "_children", "_pending")

    def __init__(self, counter: Counter, *, pending: bool) -> None:
        self._bind = counter.labels
        self._children: dict[K, Counter] = {}
        self._pending: dict[K, int] | None = {} if pending else None

    def inc(self, key: K) -> None:
        pending = self._pending
        if pending is not None:
            count = pending.get(key)
            if count is not None:
                pending[key] = count + 1
                return
            self._child(key)  # the series appears once it has happened, as before
            pending[key] = 1
            return
        self._child(key).inc()

    def _child(self, key: K) -> Counter:
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._bind(f"{key}")
        return child

    def flush(self) -> None:
        """Hand the counts kept since the last flush to the children."""
        pending = self._pending
        if pending:
            for key, count in pending.items():
                if count:
                    self._children[key].inc(count)
                    pending[key] = 0


def multiprocess_dir() -> Path | None:
    """The shared directory of the workers' metric files, or None with one process."""
    value = os.environ.get(MULTIPROC_DIR_ENV)
    return Path(value) if value else None


@dataclass(frozen=True, slots=True)
class BypassCounts:
    """Requests let through during maintenance, for the dashboard."""

    by_rule: dict[str, int]
    cookies_issued: int
    all_workers: bool
    """True when the counts are every worker's summed (``MWM_LISTEN__WORKERS>1``)."""


class Metrics:
    """The counters of one proxy process, and the ``/metrics`` exposition."""

    def __init__(self) -> None:
        shared = multiprocess_dir()
        # With several workers the counters are kept in the shared files and the exposition
        # reads those; one process registers them directly.
        own = CollectorRegistry()
        counters = None if shared is not None else own

        def counter(name: str, labels: tuple[str, ...] = ()) -> Counter:
            # prometheus_client adds ``_total`` back to a counter's samples.
            return Counter(name.removesuffix("_total"), _HELP[name], labels, registry=counters)

        pending = shared is None  # see _Children
        self.requests: _Children[str] = _Children(
            counter("mwm_requests_total", ("outcome",)), pending=pending
        )
        """Keyed by outcome: forward, bypass, block, invalid, services, status."""
        self.bypasses: _Children[str] = _Children(
            counter("mwm_bypass_total", ("rule",)), pending=pending
        )
        self.upstream_errors: _Children[int] = _Children(
            counter("mwm_upstream_errors_total", ("status",)), pending=pending
        )
        self.rejected: _Children[int] = _Children(
            counter("mwm_requests_rejected_total", ("status",)), pending=pending
        )
        """Keyed by status: 408, 413, 414, 431."""
        self.header_timeouts = counter("mwm_header_timeouts_total")
        self.cookies_issued = counter("mwm_bypass_cookies_issued_total")
        self.hold_outcomes: _Children[str] = _Children(
            counter("mwm_hold_outcomes_total", ("outcome",)), pending=pending
        )
        """Keyed by outcome: released, failed, rejected, gone."""
        subscribers = Gauge(
            "mwm_status_subscribers",
            _HELP["mwm_status_subscribers"],
            ("listener",),
            registry=counters,
            multiprocess_mode="livesum",  # the live workers' streams summed
        )
        self.status_subscribers: dict[str, Callable[[int], None]] = {
            listener: subscribers.labels(listener).set for listener in ("public", "management")
        }
        """The ``set`` of the gauge's series per listener, ``public`` and ``management``."""
        self.held_requests: Callable[[float], None] = Gauge(
            "mwm_held_requests",
            _HELP["mwm_held_requests"],
            registry=counters,
            multiprocess_mode="livesum",  # the live workers' held requests summed
        ).set
        """Set to the number of requests held now (:mod:`proxy.hold`)."""
        self._state: State | None = None
        if shared is not None:
            own.register(_SharedCounters(shared))
            WorkerProcessCollector(shared, registry=own)
        else:
            ProcessCollector(registry=own)
        own.register(_StateCollector(lambda: self._state))
        self._registry = own
        self._labelled = (
            self.requests,
            self.bypasses,
            self.upstream_errors,
            self.rejected,
            self.hold_outcomes,
        )

    @property
    def registry(self) -> CollectorRegistry:
        """The registry the exposition reads, every count in it (see :class:`_Children`)."""
        for children in self._labelled:
            children.flush()
        return self._registry

    def bypass_counts(self) -> BypassCounts:
        """The bypass counters as the exposition has them: this process's own with one
        worker, every worker's summed with several (read from the shared files)."""
        by_rule: dict[str, int] = {}
        cookies = 0
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name == "mwm_bypass_total":
                    rule = sample.labels.get("rule", "")
                    by_rule[rule] = by_rule.get(rule, 0) + int(sample.value)
                elif sample.name == "mwm_bypass_cookies_issued_total":
                    cookies += int(sample.value)
        return BypassCounts(
            by_rule=dict(sorted(by_rule.items())),
            cookies_issued=cookies,
            all_workers=multiprocess_dir() is not None,
        )

    def render(self, state: State) -> str:
        return self.exposition(state).decode()

    def exposition(self, state: State) -> bytes:
        """The text exposition format (0.0.4), the state gauges read from ``state``."""
        self._state = state
        try:
            return generate_latest(self.registry)
        finally:
            self._state = None


class _SharedCounters(Collector):
    """Every worker's counters summed (``MultiProcessCollector``), in the one-process layout:
    our families in their order, each announced (HELP, TYPE) even before its first count."""

    def __init__(self, shared: Path) -> None:
        self._files = MultiProcessCollector(None, path=str(shared))  # type: ignore[no-untyped-call]

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        files = self._files.collect()  # type: ignore[no-untyped-call]
        merged: dict[str, Metric] = {m.name: m for m in files}
        for name, help_text in _HELP.items():
            if name.endswith("_total"):
                family = merged.pop(name.removesuffix("_total"), None)
                if family is not None:
                    family.samples.sort(key=lambda sample: sorted(sample.labels.items()))
                yield family or CounterMetricFamily(name, help_text)
        yield from merged.values()


class _StateCollector(Collector):
    """The gauges that describe the state: computed on scrape from the current state."""

    def __init__(self, state: Callable[[], State | None]) -> None:
        self._state = state

    def describe(self) -> Iterable[Metric]:
        return []  # no names reserved: the state is only known at scrape time

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        if state is None:
            return
        active = GaugeMetricFamily("mwm_maintenance_active", _HELP["mwm_maintenance_active"])
        active.add_metric([], int(state.maintenance.active))
        yield active
        ready = GaugeMetricFamily(
            "mwm_service_ready",
            _HELP["mwm_service_ready"],
            labels=["namespace", "name", "critical"],
        )
        for s in state.snapshot.services:
            ready.add_metric([s.namespace, s.name, str(s.critical).lower()], int(s.ready))
        yield ready
        generation = GaugeMetricFamily("mwm_snapshot_generation", _HELP["mwm_snapshot_generation"])
        generation.add_metric([], state.generation)
        yield generation
        upcoming = state.upcoming
        start = GaugeMetricFamily(
            "mwm_next_window_start_timestamp_seconds",
            _HELP["mwm_next_window_start_timestamp_seconds"],
        )
        if upcoming is not None:
            start.add_metric([], upcoming.window.start.timestamp())
        yield start
        announced = GaugeMetricFamily(
            "mwm_next_window_announced", _HELP["mwm_next_window_announced"]
        )
        announced.add_metric([], int(upcoming is not None and upcoming.announced))
        yield announced


WORKER_PID_PREFIX = "worker-"
"""``<dir>/worker-<index>.pid`` holds the pid of the live worker of that index."""


def register_worker(shared: Path, index: int) -> None:
    """Record this process as worker ``index`` for the per-worker process metrics."""
    path = shared / f"{WORKER_PID_PREFIX}{index}.pid"
    scratch = path.with_suffix(".tmp")
    scratch.write_text(str(os.getpid()))
    scratch.replace(path)  # atomic: a scrape never reads half a pid


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


class WorkerProcessCollector(Collector):
    """``process_*`` of every live worker, labelled with its index (``worker="0"``...).

    A restarted worker has a new pid and start time: its ``process_cpu_seconds_total``
    starts again from 0, which Prometheus takes as a counter reset."""

    def __init__(self, shared: Path, *, registry: CollectorRegistry | None = None) -> None:
        self._shared = shared
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for path in sorted(self._shared.glob(f"{WORKER_PID_PREFIX}*.pid")):
            index = path.stem.removeprefix(WORKER_PID_PREFIX)
            try:
                pid = int(path.read_text())
            except (OSError, ValueError):
                continue
            for family in ProcessCollector(pid=_constant(pid), registry=None).collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(
                        family.name, family.documentation, family.type
                    )
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "worker": index}, sample.value)
        yield from families.values()
