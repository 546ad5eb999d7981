"""Who the client is, given the peer address, X-Forwarded-For and the trusted-hop count.

Only the last ``trusted_hops`` entries of X-Forwarded-For were written by proxies we
trust; anything left of them was written by the client and may be forged.  So the
client is the entry just left of the trusted ones, and the chain passed upstream keeps
only the believed part plus the peer.  With ``trusted_hops == 0`` the peer is the client
and every incoming X-Forwarded-* header is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class ForwardedChain:
    client: IPAddress | None
    """The client address the bypass rules see; None if it cannot be parsed."""
    header: str
    """The X-Forwarded-For value to send upstream."""


def parse_address(text: str) -> IPAddress | None:
    """Parse one X-Forwarded-For entry (``1.2.3.4``, ``[::1]:80``, ``1.2.3.4:5``)."""
    value = text.strip()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.split(":", 1)[0]
    try:
        return ip_address(value)
    except ValueError:
        return None


def resolve_chain(
    peer: str | None, forwarded_for: Iterable[str], *, trusted_hops: int
) -> ForwardedChain:
    """Return the client address and the X-Forwarded-For header to send upstream."""
    peer_text = peer or ""
    if trusted_hops <= 0:
        return ForwardedChain(client=parse_address(peer_text), header=peer_text)
    entries = [e.strip() for value in forwarded_for for e in value.split(",") if e.strip()]
    believed = entries[-trusted_hops:]
    # The rightmost untrusted position is the client; with a short chain, the leftmost entry.
    chain = [*entries, peer_text]
    client_text = chain[-(trusted_hops + 1)] if len(chain) > trusted_hops else chain[0]
    header = ", ".join([*believed, peer_text]) if peer_text else ", ".join(believed)
    return ForwardedChain(client=parse_address(client_text), header=header)
