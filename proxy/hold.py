"""Hold-then-fail: a request that would get the page because a critical service has just
gone down waits for it to come back instead, for a bounded time.

A request is *holdable* when every cause blocking it is a
:attr:`~controller.snapshot.CauseKind.SERVICE_DOWN` one whose services are all within
their hold window: ``holdSeconds`` of the service (or ``MWM_HOLD__SECONDS`` when it has
none) counted from the moment it went down (its ``last_transition``).  A manual switch
or a window is never held, nor is a service with no hold time (or no known
``last_transition``).

A held request waits on the store's change event and its deadline (``asyncio.timeout``),
never polling.  On every new state the request is decided again: no longer blocked, it
is released to the upstream (the waiters wake in the order they began to wait, so
released requests go in their arrival order); blocked for a reason that is never held,
or past the deadline, it gets the page.  Its body is not read while it waits: it stays
in the connection and is forwarded after release as any other.

Bounded: at most ``MWM_HOLD__MAX_REQUESTS`` held at once per worker, and only requests
whose body is at most ``MWM_HOLD__MAX_BODY_BYTES`` (a ``Content-Length``; a chunked body,
of unknown length, is never held); any other gets the page at once.  A client that
disconnects while held frees its slot at once: the public listener does not cancel
handlers (``handler_cancellation`` is off), so its connection tells us
(:meth:`proxy.connection.HardenedConnection.when_lost`).

Outcomes are counted in ``mwm_hold_outcomes_total{outcome}`` (``released``, ``failed``,
``rejected``, ``gone``) and the held requests in the ``mwm_held_requests`` gauge.
"""

from __future__ import annotations

import asyncio
import enum
import functools
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Protocol

from aiohttp import web

from controller.snapshot import Cause, CauseKind, ServiceReason, ServiceState
from controller.store import SnapshotStore, State
from proxy.decision import Block, Decision
from proxy.metrics import Metrics
from proxy.settings import HoldSettings


class HoldOutcome(enum.StrEnum):
    """How a holdable request ended (the ``outcome`` label of ``mwm_hold_outcomes_total``)."""

    RELEASED = "released"
    """Held, then no longer blocked: forwarded."""
    FAILED = "failed"
    """Held, then the page: the deadline passed or a reason that is never held came up."""
    REJECTED = "rejected"
    """The page at once: the held limit reached, or a body too large (or chunked) to hold."""
    GONE = "gone"
    """The client disconnected while held; nothing is forwarded or answered."""


def hold_deadline(
    causes: Iterable[Cause], services: Iterable[ServiceState], default_s: float
) -> datetime | None:
    """Until when a request blocked by ``causes`` may be held, or None if it may not be.

    Every cause must be a ``ServiceDown`` one, and every service it names must be a
    down critical service (in ``services``) with a hold time (its own ``hold_seconds``,
    else ``default_s``) greater than zero and a known ``last_transition``; the deadline is
    the earliest of their ``last_transition + hold``.  Whether it has passed is for the
    caller to compare with its clock."""
    down: dict[str, list[ServiceState]] = {}
    for state in services:
        if state.critical and state.reason is not ServiceReason.UNKNOWN and not state.ready:
            down.setdefault(state.name, []).append(state)
    deadline: datetime | None = None
    held_any = False
    for cause in causes:
        if cause.kind is not CauseKind.SERVICE_DOWN or not cause.services:
            return None
        for name in cause.services:
            states = down.get(name)
            if not states:
                return None
            for state in states:
                hold_s = default_s if state.hold_seconds is None else state.hold_seconds
                if hold_s <= 0 or state.last_transition is None:
                    return None
                end = state.last_transition + timedelta(seconds=hold_s)
                deadline = end if deadline is None else min(deadline, end)
                held_any = True
    return deadline if held_any else None


class LostNotifier(Protocol):
    """A connection that calls back when it ends (:class:`proxy.connection.HardenedConnection`)."""

    def when_lost(self, callback: Callable[[], None]) -> None: ...


class _Held:
    """One held request: its timeout (moved to now when its client goes) and whether it has
    gone."""

    __slots__ = ("gone", "timeout")

    def __init__(self) -> None:
        self.timeout: asyncio.Timeout | None = None
        self.gone = False


Redecide = Callable[[State], Decision]
"""The decision for the held request on a new state."""


class Holds:
    """The held requests of one worker process."""

    def __init__(self, settings: HoldSettings, store: SnapshotStore, metrics: Metrics) -> None:
        self._default_s = settings.seconds
        self._max_requests = settings.max_requests
        self._max_body_bytes = settings.max_body_bytes
        self._store = store
        self._metrics = metrics
        self._held: set[_Held] = set()
        self._connections: dict[object, set[_Held]] = {}
        """The held requests per connection that has held one, until the connection ends."""
        self._closed = False
        self._last: tuple[int, tuple[Cause, ...], datetime | None] | None = None
        """The deadline last computed: (generation, causes, deadline)."""

    def close(self) -> None:
        """On shutdown: every held request gets the page now, and no request is held any
        more (they would hold the drain)."""
        self._closed = True
        for held in self._held:
            _end_now(held)

    async def hold(
        self,
        request: web.BaseRequest,
        state: State,
        blocked: Block,
        deadline: float,
        redecide: Redecide,
    ) -> tuple[State, Decision] | None:
        """Hold ``request`` (holdable until ``deadline``, from :meth:`deadline`) if there is
        room; return the state and the decision to act on (the page for a :class:`Block`,
        else forward), or None when the client has gone while held (answer nothing)."""
        if self._closed:
            return state, blocked
        length = request.content_length
        if (
            len(self._held) >= self._max_requests
            or (length is None and request.body_exists)
            or (length is not None and length > self._max_body_bytes)
        ):
            self._metrics.hold_outcomes.inc(HoldOutcome.REJECTED)
            return state, blocked
        transport = request.transport
        if transport is None or transport.is_closing():
            self._metrics.hold_outcomes.inc(HoldOutcome.GONE)
            return None
        held = _Held()
        connection: object = request.protocol
        holding = self._watch(connection)
        holding.add(held)
        self._held.add(held)
        self._metrics.held_requests(len(self._held))
        outcome = HoldOutcome.FAILED
        decision: Decision = blocked
        try:
            async with asyncio.timeout_at(deadline) as timeout:
                held.timeout = timeout
                while True:
                    state = await self._store.wait_for_change(state.generation)
                    if held.gone:  # lost as the change arrived: its timeout has not fired yet
                        outcome = HoldOutcome.GONE
                        break
                    decision = redecide(state)
                    if not isinstance(decision, Block):
                        outcome = HoldOutcome.RELEASED
                        break
                    later = self.deadline(decision, state)
                    if later is None:
                        break  # blocked for a reason that is never held, or past its time
                    timeout.reschedule(later)
        except TimeoutError:
            if held.gone:
                outcome = HoldOutcome.GONE
        finally:
            holding.discard(held)
            self._held.discard(held)
            self._metrics.held_requests(len(self._held))
        self._metrics.hold_outcomes.inc(outcome)
        if outcome is HoldOutcome.GONE:
            return None
        return state, decision

    def deadline(self, blocked: Block, state: State) -> float | None:
        """The loop time until which the request may be held, or None if it may not be."""
        causes = blocked.maintenance.causes
        cached = self._last
        if cached is not None and cached[0] == state.generation and cached[1] == causes:
            end = cached[2]  # the page path stays a few comparisons per request
        else:
            end = hold_deadline(causes, state.snapshot.services, default_s=self._default_s)
            self._last = (state.generation, causes, end)
        if end is None:
            return None
        remaining = (end - self._store.clock()).total_seconds()
        if remaining <= 0:
            return None
        return asyncio.get_running_loop().time() + remaining

    def _watch(self, connection: object) -> set[_Held]:
        """The held requests of ``connection``, told when it ends (a callback registered
        once per connection, however many requests it holds in its life)."""
        holding = self._connections.get(connection)
        if holding is None:
            holding = set()
            if hasattr(connection, "when_lost"):
                notifier: LostNotifier = connection
                notifier.when_lost(functools.partial(self._lost, connection))
                self._connections[connection] = holding
        return holding

    def _lost(self, connection: object) -> None:
        for held in self._connections.pop(connection, ()):
            held.gone = True
            _end_now(held)


def _end_now(held: _Held) -> None:
    """End the wait of ``held`` now (its timeout fires at once)."""
    timeout = held.timeout
    if timeout is not None and not timeout.expired():
        timeout.reschedule(asyncio.get_running_loop().time())
