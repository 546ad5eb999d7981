"""Who the client is, given the peer address, X-Forwarded-For and the trusted-hop count.

Only the last ``trusted_hops`` entries of X-Forwarded-For were written by proxies we
trust; anything left of them was written by the client and may be forged.  So the
client is the entry just left of the trusted ones, and the chain passed upstream keeps
only the believed part plus the peer.  With ``trusted_hops == 0`` the peer is the client
and every incoming X-Forwarded-* header is ignored.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, ip_address

IPAddress = IPv4Address | IPv6Address


@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> IPAddress | None:
    """Parse one X-Forwarded-For entry (``1.2.3.4``, ``[::1]:80``, ``1.2.3.4:5``).

    Remembered for the last 4,096 texts: parsing with :mod:`ipaddress` costs several
    microseconds, and the same clients come back request after request."""
    value = text.strip()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.split(":", 1)[0]
    try:
        return ip_address(value)
    except ValueError:
        return None


def _entries(forwarded_for: Iterable[str]) -> list[str]:
    """Every comma-separated entry, empty ones included: positions are what trust is
    counted in, and dropping an empty entry a trusted proxy wrote would shift a forged
    one into the client's position (``10.1.2.3, `` read as client ``10.1.2.3``)."""
    return [e.strip() for value in forwarded_for for e in value.split(",")]


def forwarded_for_header(
    peer: str | None, forwarded_for: Iterable[str], *, trusted_hops: int
) -> str:
    """The X-Forwarded-For value to send upstream: the believed part of the incoming chain
    plus the peer.  (The header alone, without parsing any address: the proxied hot path.)"""
    peer_text = peer or ""
    if trusted_hops <= 0:
        return peer_text
    believed = [e for e in _entries(forwarded_for)[-trusted_hops:] if e]
    return ", ".join([*believed, peer_text]) if peer_text else ", ".join(believed)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], *, trusted_hops: int
) -> IPAddress | None:
    """The client the bypass rules see: the rightmost entry no trusted proxy vouches for."""
    peer_text = peer or ""
    if trusted_hops <= 0:
        return parse_address(peer_text)
    chain = [*_entries(forwarded_for), peer_text]
    # The rightmost untrusted position is the client; with a short chain, the leftmost entry.
    return parse_address(chain[-(trusted_hops + 1)] if len(chain) > trusted_hops else chain[0])
