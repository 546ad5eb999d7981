"""RFC 9112 rules for requests that aiohttp's parsers leave to the application.

aiohttp's parsers (llhttp, or the pure-Python one where the C extension is missing)
already refuse the classic smuggling shapes with 400: Content-Length with
Transfer-Encoding, repeated or malformed Content-Length, ``chunked`` not last, obs-fold,
bare LF or CR, NUL, whitespace before a colon, invalid chunk sizes.  What they let through,
and :func:`refusal` refuses before anything is forwarded:

- a version other than HTTP/1.0 and HTTP/1.1: llhttp accepts ``HTTP/0.9`` (and
  ``HTTP/2.0`` when nothing follows it), the Python parser any ``HTTP/x.y``; we would
  answer in a version the client did not speak (505);
- ``Transfer-Encoding`` in an HTTP/1.0 request: section 6.1 says to treat its framing as
  faulty, because an HTTP/1.0 hop in front of us may have framed the body differently
  (400, as nginx does);
- a transfer coding other than ``chunked`` (``gzip, chunked``, the obsolete
  ``identity``): the parser strips the chunking but not the other codings, so the
  upstream would get still-encoded bytes as if they were the body (501, section 6.1);
- a ``Host`` that is not ``host[:port]`` (section 3.2 requires 400): userinfo, spaces,
  commas or slashes would reach an upstream that builds links from ``Host``.

A refused request also ends its connection: the client's idea of where the next request
starts cannot be trusted.  :func:`must_close` names the one accepted request after which
the connection must end as well (see there).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Refusal", "must_close", "refusal"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """The status to answer instead of forwarding, and why (shown to the client)."""

    status: int
    reason: str


_SUPPORTED_VERSIONS = frozenset({(1, 0), (1, 1)})
_HOST = re.compile(r"(?:\[[0-9A-Za-z._~:%-]+\]|[0-9A-Za-z._~%-]*)(?::[0-9]*)?")
"""``host [":" port]``: an IP literal in brackets or a name of unreserved characters and
percent-escapes, then an optional port; empty is allowed (section 3.2).  RFC 3986 also
lets a name hold sub-delims (``,;=!$&'()*+``): no real host name has them, and a
``Host: a,b`` is how a careless hop joins two Host headers, so they are refused."""

_UNSUPPORTED_VERSION = Refusal(505, "only HTTP/1.0 and HTTP/1.1 are supported")
_TRANSFER_ENCODING_IN_HTTP_1_0 = Refusal(400, "Transfer-Encoding in an HTTP/1.0 request")
_UNSUPPORTED_CODING = Refusal(501, "the only supported transfer coding is chunked")
_INVALID_HOST = Refusal(400, "invalid Host header")


def refusal(version: tuple[int, int], headers: Mapping[str, str]) -> Refusal | None:
    """Why a request of this ``version`` with these ``headers`` must not be forwarded, or
    None when it may be."""
    if version not in _SUPPORTED_VERSIONS:
        return _UNSUPPORTED_VERSION
    coding = headers.get("Transfer-Encoding")
    if coding is not None:
        if version == (1, 0):
            return _TRANSFER_ENCODING_IN_HTTP_1_0
        if coding.strip().lower() != "chunked":
            return _UNSUPPORTED_CODING
    host = headers.get("Host")
    if host is not None and _HOST.fullmatch(host) is None:
        return _INVALID_HOST
    return None


def must_close(method: str, headers: Mapping[str, str]) -> bool:
    """True when the connection must end after answering this request.

    - ``CONNECT``: the proxy opens no tunnels (the target is refused as a path), and a
      client may already have sent tunnel bytes after its request; llhttp would hand them
      back to be read as requests.
    - An ``Upgrade`` to anything but websocket (``h2c``, say): the proxy answers it as plain
      HTTP (``Upgrade`` is hop-by-hop), but llhttp stops reading the connection after such
      a request, silently dropping the bytes that follow; closing tells the client so
      instead of leaving it waiting for answers that will never come.
    """
    if method == "CONNECT":
        return True
    upgrade = headers.get("Upgrade")
    return upgrade is not None and upgrade.strip().lower() != "websocket"
