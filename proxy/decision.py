"""The per-request maintenance decision: forward, let through, or block.

A pure function of what the request looks like (:class:`RequestView`, built by the public
listener), the current :class:`~controller.snapshot.Maintenance` verdict and the
:class:`~proxy.bypass.BypassPolicy`.  No aiohttp, no I/O, no clock of its own: ``now`` is
passed in.  Maintenance is a normal outcome, not an exception: :class:`Block` carries the
verdict the page is rendered from.

The decision runs in three steps::

    is maintenance active?  --no-->  Forward
    does it apply to this request (its scope)?  --no-->  Forward
    does a bypass rule match?  --yes-->  Bypass(rule)   --no-->  Block(maintenance)

The middle step is where scoping rules plug in (a read-only mode that blocks only writes,
a maintenance of ``/checkout`` only): a :class:`Scope` decides from the view alone.  Today
every maintenance applies to every request (:data:`EVERYTHING`); a future scope would
most likely travel with the :class:`~controller.snapshot.Maintenance` verdict and be
passed as ``scope=``, without touching the bypass rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final, Protocol

from controller.snapshot import Maintenance
from proxy.bypass import BypassPolicy, BypassRule

__all__ = [
    "EVERYTHING",
    "FORWARD",
    "Block",
    "Bypass",
    "Decision",
    "Everything",
    "Forward",
    "RequestView",
    "Scope",
    "decide",
]


@dataclass(frozen=True, slots=True)
class RequestView:
    """What the decision sees of a request; built by the server from aiohttp's request."""

    method: str
    path: str
    """Normalized by :func:`~proxy.pathnorm.normalize_path`: the same string is forwarded."""
    client: IPv4Address | IPv6Address | None
    """The client after trusted hops (:mod:`proxy.forwarded`); None if unparsable."""
    bypass_tokens: tuple[str, ...] = ()
    """Every value of the bypass header, in order (duplicates are a non-match)."""
    bypass_cookies: tuple[str, ...] = ()
    """Every value of the bypass cookie (a client may send several)."""


@dataclass(frozen=True, slots=True)
class Forward:
    """Maintenance is off, or does not apply to this request: forward it."""


@dataclass(frozen=True, slots=True)
class Bypass:
    """Maintenance is on, but this request passes (forwarded, marked private)."""

    rule: BypassRule


@dataclass(frozen=True, slots=True)
class Block:
    """Maintenance is on for this request: answer with the page for this verdict."""

    maintenance: Maintenance


Decision = Forward | Bypass | Block

FORWARD: Final = Forward()
_BYPASSES: Final = {rule: Bypass(rule) for rule in BypassRule}
"""One preallocated decision per rule: the decision runs per request."""


class Scope(Protocol):
    """Which requests a maintenance applies to."""

    def applies(self, view: RequestView) -> bool: ...


@dataclass(frozen=True, slots=True)
class Everything:
    """The default scope: maintenance applies to every request."""

    def applies(self, view: RequestView) -> bool:
        return True


EVERYTHING: Final = Everything()


def decide(
    view: RequestView,
    maintenance: Maintenance,
    policy: BypassPolicy,
    *,
    now: float,
    scope: Scope = EVERYTHING,
) -> Decision:
    """Forward, let through or block ``view``; ``now`` is unix seconds (cookie expiry)."""
    if not maintenance.active or not scope.applies(view):
        return FORWARD
    rule = policy.match(view, now=now)
    if rule is not None:
        return _BYPASSES[rule]
    return Block(maintenance)
