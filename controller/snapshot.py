"""The immutable picture of the world that every request decision reads.

Sources (the local file and probes now, Kubernetes watches later) never edit a
snapshot: they build a new one with :func:`dataclasses.replace` and hand it to the
:class:`~controller.store.SnapshotStore`, which swaps it in.  Readers take the
current snapshot once and use it for the whole request, so a request never sees
half an update.

Whether maintenance is on depends on the clock as well as on the snapshot
(``until`` ends a manual switch, windows open and close).  :meth:`Snapshot.evaluate`
is the one place that turns (snapshot, now) into a :class:`Maintenance` verdict,
:func:`upcoming` says which window opens next and whether it is being announced, and
:meth:`Snapshot.next_change_after` tells the store when either may next change so it
can re-evaluate exactly then instead of per request.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


class ServiceReason(enum.StrEnum):
    """Why a service is (not) ready; the same words the ServiceChecker status uses."""

    READY = "Ready"
    NO_READY_ENDPOINTS = "NoReadyEndpoints"
    SERVICE_NOT_FOUND = "ServiceNotFound"
    PROBE_FAILING = "ProbeFailing"
    UNKNOWN = "Unknown"


class CauseKind(enum.StrEnum):
    """What switched maintenance on."""

    SERVICE_DOWN = "ServiceDown"
    MANUAL = "Manual"
    WINDOW = "Window"


class Mode(enum.StrEnum):
    """How much of the traffic a maintenance stops (spelled as in the ServiceChecker)."""

    FULL = "full"
    """Every request it applies to gets the page."""
    READ_ONLY = "readOnly"
    """Only writes get the page: safe methods (:data:`SAFE_METHODS`) pass."""


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods a read-only maintenance lets through (RFC 9110 §9.2.1; ``TRACE`` is refused
everywhere anyway).  A websocket upgrade is a ``GET`` but counts as a write."""


@dataclass(frozen=True, slots=True)
class Route:
    """A part of the site that depends on a service: a segment-wise path prefix on the
    normalized path (``/checkout`` covers ``/checkout`` and ``/checkout/pay``, not
    ``/checkouts``), optionally only for some methods."""

    path_prefix: str
    methods: frozenset[str] = frozenset()
    """Upper-case method names; empty: every method."""


@dataclass(frozen=True, slots=True)
class ServiceState:
    """One watched service as the sources last saw it."""

    name: str
    namespace: str
    critical: bool
    ready_endpoints: int
    total_endpoints: int
    reason: ServiceReason
    min_ready: int = 1
    last_transition: datetime | None = None
    stale: bool = False
    """True when the source could not confirm this state recently (last known kept)."""
    routes: tuple[Route, ...] = ()
    """The routes that need this service: while it is not ready only they get the page.
    Empty: a critical service stops the whole site, a non-critical one nothing."""
    mode: Mode = Mode.FULL
    """What its outage stops: everything in its scope, or only writes (``readOnly``)."""
    hold_seconds: float | None = None
    """Hold requests that would get the page for at most this long after it went down
    (released if it recovers in time); None: the global setting decides."""

    @property
    def ready(self) -> bool:
        """Ready when at least ``min_ready`` endpoints are ready (the seed's ``ready`` flag)."""
        if self.reason is ServiceReason.UNKNOWN:
            # Never seen: not ready, but Unknown never triggers maintenance (see evaluate).
            return False
        return self.ready_endpoints >= self.min_ready

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class ManualSwitch:
    """A hand-operated maintenance switch from one source (file, admin API, CR, ConfigMap)."""

    source: str
    enabled: bool
    reason: str | None = None
    until: datetime | None = None
    since: datetime | None = None
    mode: Mode = Mode.FULL

    def active_at(self, now: datetime) -> bool:
        return self.enabled and (self.until is None or now < self.until)


@dataclass(frozen=True, slots=True)
class Window:
    """A scheduled maintenance window, open on ``[start, end)``, announced on
    ``[start - announce_seconds, start)``."""

    start: datetime
    end: datetime
    reason: str | None = None
    announce_seconds: int | None = None
    """How long before ``start`` the window is announced; None or 0: never."""
    mode: Mode = Mode.FULL

    def open_at(self, now: datetime) -> bool:
        return self.start <= now < self.end

    @property
    def announce_from(self) -> datetime | None:
        """When the announcement starts, or None when the window is never announced."""
        if not self.announce_seconds:
            return None
        return self.start - timedelta(seconds=self.announce_seconds)

    def announced_at(self, now: datetime) -> bool:
        """True during the announcement: ``start - announce_seconds <= now < start``."""
        announce_from = self.announce_from
        return announce_from is not None and announce_from <= now < self.start


@dataclass(frozen=True, slots=True)
class Upcoming:
    """The next scheduled window (not yet open) and whether it is being announced."""

    window: Window
    announced: bool


def upcoming(windows: Iterable[Window], now: datetime) -> Upcoming | None:
    """The window that opens next after ``now`` (an open one is not "next"; of two with the
    same start, the one that ends first), and whether it is announced at ``now``.

    Only the next window is reported: a later window with a longer announcement is
    announced once it is the next one."""
    ahead = [w for w in windows if w.start > now]
    if not ahead:
        return None
    window = min(ahead, key=lambda w: (w.start, w.end))
    return Upcoming(window=window, announced=window.announced_at(now))


@dataclass(frozen=True, slots=True)
class Cause:
    """One reason maintenance is on; the page and ``/status`` list them all."""

    kind: CauseKind
    reason: str
    since: datetime | None = None
    until: datetime | None = None
    services: tuple[str, ...] = ()
    mode: Mode = Mode.FULL
    """``readOnly``: this cause stops only writes."""
    routes: tuple[Route, ...] = ()
    """The routes this cause stops; empty: the whole site."""

    @property
    def whole_site(self) -> bool:
        """True when it stops every request (no routes, full mode)."""
        return not self.routes and self.mode is Mode.FULL


@dataclass(frozen=True, slots=True)
class Maintenance:
    """The verdict for one instant: on or off, and every cause when on."""

    active: bool
    causes: tuple[Cause, ...] = ()

    @property
    def reason(self) -> str | None:
        return "; ".join(c.reason for c in self.causes) if self.causes else None

    @property
    def until(self) -> datetime | None:
        """When maintenance is expected to end: known only when every cause has an end."""
        if not self.causes or any(c.until is None for c in self.causes):
            return None
        return max(c.until for c in self.causes if c.until is not None)

    @property
    def since(self) -> datetime | None:
        starts = [c.since for c in self.causes if c.since is not None]
        return min(starts) if starts else None

    @property
    def whole_site(self) -> bool:
        """True when some cause stops every request (no routes, full mode): routes and
        read-only causes then change nothing about which requests get the page."""
        return any(c.whole_site for c in self.causes)

    @property
    def affected_routes(self) -> tuple[Route, ...]:
        """Every route some cause stops, once each, in the order the causes name them."""
        seen: dict[Route, None] = {}
        for cause in self.causes:
            for route in cause.routes:
                seen[route] = None
        return tuple(seen)

    def restricted(self, indexes: Iterable[int]) -> Maintenance:
        """The verdict made of the causes at ``indexes`` only (the ones that apply to one
        request); the page of a request names only those."""
        causes = tuple(self.causes[i] for i in indexes)
        return Maintenance(active=bool(causes), causes=causes)

    @property
    def affected_services(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for cause in self.causes:
            for name in cause.services:
                seen[name] = None
        return tuple(seen)


OFF = Maintenance(active=False)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the proxy needs to decide, as of one instant.  Never mutated."""

    services: tuple[ServiceState, ...] = ()
    switches: tuple[ManualSwitch, ...] = ()
    windows: tuple[Window, ...] = ()
    synced: bool = False
    """True once every source has delivered its first complete state."""
    errors: tuple[str, ...] = ()
    """Problems the sources report (a bad file edit, say); the last good state is kept."""
    version: int = 0
    """Set by the store on publish; increases by one per swap."""

    def evaluate(self, now: datetime) -> Maintenance:
        """Return whether maintenance is on at ``now``, and why."""
        causes: list[Cause] = []
        down = [
            s
            for s in self.services
            if s.reason is not ServiceReason.UNKNOWN and not s.ready and (s.critical or s.routes)
        ]
        for mode in (Mode.FULL, Mode.READ_ONLY):
            site = [s for s in down if not s.routes and s.mode is mode]
            if site:
                causes.append(
                    Cause(
                        kind=CauseKind.SERVICE_DOWN,
                        reason=describe_down(len(site), mode=mode),
                        since=_latest(s.last_transition for s in site),
                        services=tuple(s.name for s in site),
                        mode=mode,
                    )
                )
        for service in down:
            if service.routes:
                causes.append(
                    Cause(
                        kind=CauseKind.SERVICE_DOWN,
                        reason=describe_route_down(service.mode),
                        since=service.last_transition,
                        services=(service.name,),
                        mode=service.mode,
                        routes=service.routes,
                    )
                )
        for switch in self.switches:
            if switch.active_at(now):
                causes.append(
                    Cause(
                        kind=CauseKind.MANUAL,
                        reason=switch.reason or "Scheduled maintenance",
                        since=switch.since,
                        until=switch.until,
                        mode=switch.mode,
                    )
                )
        for window in self.windows:
            if window.open_at(now):
                causes.append(
                    Cause(
                        kind=CauseKind.WINDOW,
                        reason=window.reason or "Scheduled maintenance window",
                        since=window.start,
                        until=window.end,
                        mode=window.mode,
                    )
                )
        if not causes:
            return OFF
        return Maintenance(active=True, causes=tuple(causes))

    def next_change_after(self, now: datetime) -> datetime | None:
        """The earliest instant after ``now`` at which :meth:`evaluate` or :func:`upcoming`
        may change: a switch's ``until``, a window's start, end or announcement start."""
        instants: list[datetime] = []
        for switch in self.switches:
            if switch.enabled and switch.until is not None and switch.until > now:
                instants.append(switch.until)
        for window in self.windows:
            edges = (window.announce_from, window.start, window.end)
            instants.extend(t for t in edges if t is not None and t > now)
        return min(instants) if instants else None

    def service(self, namespace: str, name: str) -> ServiceState | None:
        for state in self.services:
            if state.namespace == namespace and state.name == name:
                return state
        return None


def merge_services(states: Iterable[ServiceState]) -> tuple[ServiceState, ...]:
    """One entry per (namespace, name), stable order; critical if any entry is critical."""
    merged: dict[tuple[str, str], ServiceState] = {}
    for state in states:
        previous = merged.get(state.key)
        if previous is None:
            merged[state.key] = state
        elif state.critical and not previous.critical:
            merged[state.key] = dataclasses.replace(
                previous, critical=True, min_ready=max(previous.min_ready, state.min_ready)
            )
    return tuple(merged[key] for key in sorted(merged))


def describe_down(count: int, *, mode: Mode = Mode.FULL) -> str:
    """The reason text for critical services (without routes) being down.  It names no
    service: names go in ``Cause.services``, which the page shows only when the operator
    allows it.  ``readOnly`` services: the text says writes are paused."""
    if mode is Mode.READ_ONLY:
        if count == 1:
            return "Writes are paused because a critical service is unavailable"
        return f"Writes are paused because {count} critical services are unavailable"
    if count == 1:
        return "A critical service is unavailable"
    return f"{count} critical services are unavailable"


def describe_route_down(mode: Mode = Mode.FULL) -> str:
    """The reason text for a service with routes being down (one cause per service)."""
    if mode is Mode.READ_ONLY:
        return (
            "Writes to this part of the site are paused because a service it needs is unavailable"
        )
    return "A service this part of the site needs is unavailable"


def _latest(instants: Iterable[datetime | None]) -> datetime | None:
    known = [t for t in instants if t is not None]
    return max(known) if known else None
