"""Hop-by-hop headers: the ones that describe one connection and must not be forwarded.

RFC 9110 section 7.6.1: a proxy removes ``Connection`` and every header that a
``Connection`` header names, plus the fields known to be connection-specific even when
not named (``Keep-Alive``, ``Proxy-Connection``, ``TE``, ``Transfer-Encoding``,
``Upgrade``, the ``Proxy-*`` authentication pair and ``Trailer``).  Forwarding them would
let a client steer the upstream connection (smuggle ``Transfer-Encoding``, hold it
open with ``Keep-Alive``) or leak proxy credentials to the application.

Headers are handled as a sequence of ``(name, value)`` pairs so that order and repeated
headers (several ``Set-Cookie``, several ``X-Forwarded-For``) survive.  This runs twice on
every proxied request, so the common case is one pass over the pairs with a set lookup.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""Lower-case names that are never forwarded, in either direction."""

ROUTING_HEADERS: Final = frozenset(
    {"x-original-url", "x-rewrite-url", "x-original-uri", "x-forwarded-uri"}
)
"""Lower-case names of request headers some applications route by instead of the request
line (Symfony and Laminas honoured ``X-Original-URL`` and ``X-Rewrite-URL``, set by IIS;
``X-Original-URI`` and ``X-Forwarded-Uri`` are set by nginx ``auth_request`` and Traefik
setups).  Not hop-by-hop, but the public listener removes them from every request unless
``MWM_FORWARDED__KEEP_ROUTING_HEADERS`` is set: the bypass rules check the path of the
request line, and a client sending ``GET /admin`` with ``X-Original-URL: /checkout``
would otherwise reach ``/checkout`` through the ``/admin`` bypass."""

# Connection options that are not header names; naming them costs nothing extra.
_CONNECTION_OPTIONS: Final = frozenset({"", "close", "keep-alive", "upgrade"})

HOP_BY_HOP_RAW: Final = frozenset(name.encode() for name in HOP_BY_HOP)
""":data:`HOP_BY_HOP` as bytes, for a head relayed as the bytes that came."""
CONNECTION_OPTIONS_RAW: Final = frozenset(option.encode() for option in _CONNECTION_OPTIONS)
"""``Connection`` values that name no other field, as bytes."""

Header = tuple[str, str]


def hop_by_hop_and(*names: str) -> frozenset[str]:
    """Return :data:`HOP_BY_HOP` plus ``names``, to pass as ``drop`` to the filter.

    Build it once (at import or construction time), not per request.
    """
    return HOP_BY_HOP | {name.lower() for name in names}


def strip_hop_by_hop(
    headers: Iterable[Header], *, drop: frozenset[str] = HOP_BY_HOP
) -> list[Header]:
    """Return ``headers`` without hop-by-hop ones, keeping order and repeats.

    ``drop`` is the set of lower-case names removed unconditionally; it must contain
    :data:`HOP_BY_HOP` (build it with :func:`hop_by_hop_and`).  Headers named in any
    ``Connection`` value (comma separated, case-insensitive) are removed as well.
    """
    kept: list[Header] = []
    named: list[str] | None = None
    for name, value in headers:
        lower = name.lower()
        if lower in drop:
            if lower == "connection":
                if named is None:
                    named = []
                named.append(value)
            continue
        kept.append((name, value))
    if named is None:
        return kept
    listed = {token.strip().lower() for value in named for token in value.split(",")}
    listed -= _CONNECTION_OPTIONS
    listed -= drop
    if not listed:
        return kept
    return [(name, value) for name, value in kept if name.lower() not in listed]
