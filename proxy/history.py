"""The last maintenance transitions (on -> off, off -> on), kept in memory for the dashboard.

A store listener (:meth:`TransitionHistory.record`) sees every new state and keeps one
:class:`Transition` each time ``maintenance.active`` flips, stamped with the state's
``changed_at`` (the ``lastChange`` of ``/status``), so the dashboard's live script, which
derives the same rows from successive ``/status`` documents, agrees with the server.

Bounded (``MWM_MANAGEMENT__HISTORY_SIZE``, oldest dropped first) and per process: it
starts empty with the process, and with several workers each remembers what it saw (every
worker reads the same sources, so they see the same flips).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime

from controller.snapshot import Maintenance
from controller.store import State


@dataclass(frozen=True, slots=True)
class Transition:
    at: datetime
    active: bool
    """The state after the transition: True for off -> on."""
    summary: str
    """The causes for people: ``Manual: Upgrading the database``, ``ended: ...``."""

    @property
    def before(self) -> str:
        return "off" if self.active else "on"

    @property
    def after(self) -> str:
        return "on" if self.active else "off"


def summarize(maintenance: Maintenance) -> str:
    """``Kind: reason`` for every cause, ``; ``-separated (what the dashboard script writes)."""
    return "; ".join(f"{cause.kind}: {cause.reason}" for cause in maintenance.causes)


class TransitionHistory:
    """The newest ``size`` transitions; :meth:`record` is the store listener."""

    def __init__(self, size: int, *, initial: State | None = None) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._entries: deque[Transition] = deque(maxlen=size)
        self._active = initial.maintenance.active if initial is not None else False
        self._summary = summarize(initial.maintenance) if initial is not None else ""

    def record(self, state: State) -> None:
        """Keep a transition if ``state`` flips maintenance; called on every store change."""
        maintenance = state.maintenance
        summary = summarize(maintenance)
        if maintenance.active != self._active:
            text = summary if maintenance.active else f"ended: {self._summary or 'no cause'}"
            self._entries.append(
                Transition(at=state.changed_at, active=maintenance.active, summary=text)
            )
            self._active = maintenance.active
        if maintenance.active:
            self._summary = summary

    def entries(self) -> list[Transition]:
        """Newest first."""
        return list(reversed(self._entries))
