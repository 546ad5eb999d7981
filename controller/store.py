"""The one place the current snapshot lives, and the clock that re-evaluates it.

Sources publish whole snapshots; the store stamps a version, evaluates the
maintenance verdict once, and wakes whoever waits for a change (the page cache,
the status writer, long-polling tests).  The verdict is also recomputed exactly at
the instants where time alone changes it (``until`` passing, a window opening or
closing, an announcement starting), so the per-request path only reads a precomputed
:class:`State`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from controller.snapshot import OFF, Maintenance, ManualSwitch, Snapshot, Upcoming, upcoming

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class State:
    """A snapshot together with its verdict; what request handlers read."""

    snapshot: Snapshot
    maintenance: Maintenance
    generation: int
    """Increases on every publish and on every time-driven verdict change."""
    changed_at: datetime
    """When ``maintenance.active`` last flipped (or the store started)."""
    upcoming: Upcoming | None = None
    """The next scheduled window and whether it is announced, as of this generation (an
    announcement starting is a new generation, so documents built once per generation
    are never stale)."""


class SnapshotStore:
    """Holds the current :class:`State`; swaps it, never edits it."""

    def __init__(self, *, clock: Clock = utc_now, initial: Snapshot | None = None) -> None:
        self._clock = clock
        now = clock()
        snapshot = initial or Snapshot()
        self._state = State(
            snapshot=snapshot,
            maintenance=snapshot.evaluate(now) if initial else OFF,
            generation=0,
            changed_at=now,
            upcoming=upcoming(snapshot.windows, now),
        )
        self._changed = asyncio.Event()
        self._listeners: list[Callable[[State], None]] = []

    @property
    def current(self) -> State:
        return self._state

    @property
    def clock(self) -> Clock:
        return self._clock

    def add_listener(self, listener: Callable[[State], None]) -> None:
        """Call ``listener`` synchronously after every change (it must not block)."""
        self._listeners.append(listener)

    def publish(self, snapshot: Snapshot) -> State:
        """Swap in ``snapshot`` (its version is assigned here) and re-evaluate."""
        previous = self._state
        versioned = dataclasses.replace(snapshot, version=previous.snapshot.version + 1)
        return self._swap(versioned)

    def update(self, change: Callable[[Snapshot], Snapshot]) -> State:
        """Publish ``change(current snapshot)``; the usual way a source writes its part."""
        return self.publish(change(self._state.snapshot))

    def set_switch(self, switch: ManualSwitch) -> State:
        """Replace the switch owned by ``switch.source`` (or add it)."""

        def change(snapshot: Snapshot) -> Snapshot:
            others = tuple(s for s in snapshot.switches if s.source != switch.source)
            return dataclasses.replace(snapshot, switches=(*others, switch))

        return self.update(change)

    def refresh(self) -> State:
        """Re-evaluate the current snapshot at the clock's now; a no-op if nothing changed
        (neither the verdict nor the next window or its announcement)."""
        now = self._clock()
        snapshot = self._state.snapshot
        maintenance = snapshot.evaluate(now)
        if maintenance == self._state.maintenance and self._state.upcoming == upcoming(
            snapshot.windows, now
        ):
            return self._state
        return self._swap(self._state.snapshot, now=now, maintenance=maintenance)

    async def wait_for_change(self, generation: int) -> State:
        """Return the first state whose generation is greater than ``generation``."""
        while self._state.generation <= generation:
            await self._changed.wait()
        return self._state

    async def run_clock(self) -> None:
        """Re-evaluate whenever time alone may change the verdict.  Runs until cancelled."""
        while True:
            now = self._clock()
            self.refresh()
            deadline = self._state.snapshot.next_change_after(now)
            generation = self._state.generation
            timeout = None if deadline is None else max((deadline - now).total_seconds(), 0.0)
            try:
                # asyncio.timeout, not wait_for: see KubernetesSource._timers.
                async with asyncio.timeout(timeout):
                    await self.wait_for_change(generation)
            except TimeoutError:
                continue

    def _swap(
        self,
        snapshot: Snapshot,
        *,
        now: datetime | None = None,
        maintenance: Maintenance | None = None,
    ) -> State:
        now = now or self._clock()
        verdict = maintenance if maintenance is not None else snapshot.evaluate(now)
        previous = self._state
        changed_at = previous.changed_at if verdict.active == previous.maintenance.active else now
        self._state = State(
            snapshot=snapshot,
            maintenance=verdict,
            generation=previous.generation + 1,
            changed_at=changed_at,
            upcoming=upcoming(snapshot.windows, now),
        )
        if verdict.active != previous.maintenance.active:
            log.info(
                "maintenance %s",
                "on" if verdict.active else "off",
                extra={"reason": verdict.reason},
            )
        # Wake waiters, then re-arm for the next change.
        self._changed.set()
        self._changed = asyncio.Event()
        for listener in self._listeners:
            listener(self._state)
        return self._state
