"""The per-request maintenance decision: forward, let through, or block.

A pure function of what the request looks like (:class:`RequestView`, built by the public
listener), the current :class:`~controller.snapshot.Maintenance` verdict and the
:class:`~proxy.bypass.BypassPolicy`.  No aiohttp, no I/O, no clock of its own: ``now`` is
passed in.  Maintenance is a normal outcome, not an exception: :class:`Block` carries the
causes that apply to this request, which the page is rendered from.

The decision runs in three steps::

    is maintenance active?  --no-->  Forward
    does some cause apply to this request (its scope)?  --no-->  Forward
    does a bypass rule match?  --yes-->  Bypass(rule)   --no-->  Block(causes that apply)

A cause applies to a request when its routes are empty or one of them matches (a
segment-wise prefix of the normalized path, and the route's methods empty or naming the
request's method; a route limited to ``GET`` covers ``HEAD`` too), and its mode is
``full`` or the request is a write: a method outside
:data:`~controller.snapshot.SAFE_METHODS`, or a websocket upgrade.  So a whole-site
maintenance beats a route one, read-only and per-route causes block a request if either
does, and bypass rules always win.

:class:`Scopes` is the middle step compiled once per verdict (the public listener keeps one
per state generation): whole-site causes in two lists, route prefixes in a dict probed once
per path segment, so matching costs a few dict lookups however many routes there are.  When
every cause is a whole-site full one (a plain maintenance) it answers with one
preallocated :class:`Block` and looks at nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final, NamedTuple, Protocol

from controller.snapshot import SAFE_METHODS, Maintenance, Mode
from proxy.bypass import BypassPolicy, BypassRule

__all__ = [
    "FORWARD",
    "MAX_COMBINATIONS",
    "Block",
    "Bypass",
    "Decision",
    "Forward",
    "RequestView",
    "Scope",
    "Scopes",
    "decide",
]


class RequestView(NamedTuple):
    """What the decision sees of a request; built by the server from aiohttp's request
    (a named tuple: made per request, at a fraction of a frozen dataclass's cost)."""

    method: str
    path: str
    """Normalized by :func:`~proxy.pathnorm.normalize_path`: the same string is forwarded."""
    client: IPv4Address | IPv6Address | None
    """The client after trusted hops (:mod:`proxy.forwarded`); None if unparsable."""
    bypass_tokens: tuple[str, ...] = ()
    """Every value of the bypass header, in order (duplicates are a non-match)."""
    bypass_cookies: tuple[str, ...] = ()
    """Every value of the bypass cookie (a client may send several)."""
    upgrade: bool = False
    """A websocket upgrade (``Upgrade: websocket``): a write for read-only maintenance."""


@dataclass(frozen=True, slots=True)
class Forward:
    """Maintenance is off, or does not apply to this request: forward it."""


@dataclass(frozen=True, slots=True)
class Bypass:
    """Maintenance is on, but this request passes (forwarded, marked private)."""

    rule: BypassRule


@dataclass(frozen=True, slots=True)
class Block:
    """Maintenance is on for this request: answer with the page for these causes."""

    maintenance: Maintenance
    """The verdict restricted to the causes that apply to this request."""
    causes: tuple[int, ...] | None = None
    """Their indexes in the whole verdict's causes; None: every cause applies (the page
    cache keys on this)."""


Decision = Forward | Bypass | Block

FORWARD: Final = Forward()
_BYPASSES: Final = {rule: Bypass(rule) for rule in BypassRule}
"""One preallocated decision per rule: the decision runs per request."""


class Scope(Protocol):
    """Which causes of a maintenance apply to a request."""

    def block(self, view: RequestView) -> Block | None:
        """The block for ``view`` (before bypass rules), or None when no cause applies."""
        ...


MAX_COMBINATIONS = 256
"""Distinct sets of applying causes a :class:`Scopes` keeps a :class:`Block` for; beyond,
a block is built per request (correct, a little slower)."""

_Entry = tuple[int, frozenset[str], bool]
"""A compiled route: (cause index, methods or empty for all, read-only)."""


class Scopes:
    """The scopes of one verdict, compiled for matching (see the module docstring)."""

    __slots__ = (
        "_all",
        "_blocks",
        "_count",
        "_depth",
        "_maintenance",
        "_read_only",
        "_root",
        "_routes",
        "_simple",
        "_site",
        "_siteonly",
    )

    def __init__(self, maintenance: Maintenance) -> None:
        causes = maintenance.causes
        self._maintenance = maintenance
        self._count = len(causes)
        self._all = Block(maintenance)
        self._site = tuple(i for i, c in enumerate(causes) if not c.routes and c.mode is Mode.FULL)
        self._simple = maintenance.active and len(self._site) == len(causes)
        self._read_only = tuple(
            i for i, c in enumerate(causes) if not c.routes and c.mode is Mode.READ_ONLY
        )
        routes: dict[str, list[_Entry]] = {}
        for index, cause in enumerate(causes):
            read_only = cause.mode is Mode.READ_ONLY
            for route in cause.routes:
                methods = route.methods
                if "GET" in methods:
                    methods = methods | {"HEAD"}
                entry = (index, methods, read_only)
                routes.setdefault(route.path_prefix.rstrip("/"), []).append(entry)
        self._root: tuple[_Entry, ...] = tuple(routes.pop("", ()))
        self._routes = {prefix: tuple(entries) for prefix, entries in routes.items()}
        self._depth = max((p.count("/") for p in self._routes), default=0)
        self._blocks: dict[tuple[int, ...], Block] = {}
        self._siteonly: tuple[Block | None, Block | None] | None = None
        """Without routes the answer depends on the method alone: (for reads, for writes)."""
        if not self._routes and not self._root:
            self._siteonly = (
                self._for(set(self._site)),
                self._for({*self._site, *self._read_only}),
            )

    def block(self, view: RequestView) -> Block | None:
        if self._simple:
            return self._all
        method = view.method
        write = view.upgrade or method not in SAFE_METHODS
        if self._siteonly is not None:
            return self._siteonly[write]
        hits = set(self._site)
        if write:
            hits.update(self._read_only)
        if self._root:
            _collect(self._root, method, write, hits)
        if self._routes:
            routes, path = self._routes, view.path
            start = 0
            for _ in range(self._depth):
                end = path.find("/", start + 1)
                entries = routes.get(path if end < 0 else path[:end])
                if entries is not None:
                    _collect(entries, method, write, hits)
                if end < 0:
                    break
                start = end
        return self._for(hits)

    def _for(self, hits: set[int]) -> Block | None:
        """The block naming the causes at ``hits`` (kept per set, up to a bound)."""
        if not hits:
            return None
        if len(hits) == self._count:
            return self._all
        key = tuple(sorted(hits))
        found = self._blocks.get(key)
        if found is None:
            found = Block(self._maintenance.restricted(key), key)
            if len(self._blocks) < MAX_COMBINATIONS:
                self._blocks[key] = found
        return found


def _collect(entries: tuple[_Entry, ...], method: str, write: bool, hits: set[int]) -> None:
    for index, methods, read_only in entries:
        if (not methods or method in methods) and (write or not read_only):
            hits.add(index)


def decide(
    view: RequestView,
    maintenance: Maintenance,
    policy: BypassPolicy,
    *,
    now: float,
    scope: Scope | None = None,
) -> Decision:
    """Forward, let through or block ``view``; ``now`` is unix seconds (cookie expiry).

    ``scope``: ``Scopes(maintenance)``, compiled once per verdict by the caller; compiled
    here when not given."""
    if not maintenance.active:
        return FORWARD
    block = (scope if scope is not None else Scopes(maintenance)).block(view)
    if block is None:
        return FORWARD
    rule = policy.match(view, now=now)
    if rule is not None:
        return _BYPASSES[rule]
    return block
