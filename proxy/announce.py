"""``MWM_STATUS__ANNOUNCE_HEADER``: forwarded responses name the start of an announced window.

While the next scheduled window is announced (from its start minus ``announceSeconds``
until it opens), every response the proxy forwards from the application carries
``<header>: <start in RFC 3339>``, so the application's frontend can show a banner
("maintenance tonight at 22:00") without calling anything.  Bypassed requests get it too;
the maintenance and error pages do not (the page states what is going on itself), nor do
websocket handshakes.

The forwarding path is hot: with the setting off the handler checks one attribute; with
it on, the header is computed once per state generation (an announcement starting or
ending is a new generation, see :mod:`controller.store`) and a request costs a comparison.
"""

from __future__ import annotations

from controller.store import State
from controller.timefmt import rfc3339

Header = tuple[str, str]
NONE: tuple[Header, ...] = ()


class AnnounceHeader:
    """The extra response headers for the current generation: one while announced, none
    otherwise."""

    __slots__ = ("_generation", "_headers", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._generation = -1
        self._headers = NONE

    def headers(self, state: State) -> tuple[Header, ...]:
        if state.generation != self._generation:
            self._headers = headers_for(self.name, state)
            self._generation = state.generation
        return self._headers


def headers_for(name: str, state: State) -> tuple[Header, ...]:
    """``((name, start),)`` while ``state``'s next window is announced, else ``()`` (pure)."""
    upcoming = state.upcoming
    if upcoming is None or not upcoming.announced:
        return NONE
    return ((name, rfc3339(upcoming.window.start)),)
