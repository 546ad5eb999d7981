"""RFC 9112 rules for requests that aiohttp's parsers leave to the application.

aiohttp's parsers (llhttp, or the pure-Python one where the C extension is missing)
already refuse the classic smuggling shapes with 400: Content-Length with
Transfer-Encoding, repeated or malformed Content-Length, ``chunked`` not last, obs-fold,
bare LF or CR, NUL, whitespace before a colon, invalid chunk sizes.  What they let through,
and :func:`refusal` refuses before anything is forwarded:

- a version other than HTTP/1.0 and HTTP/1.1: llhttp accepts ``HTTP/0.9`` (and
  ``HTTP/2.0`` when nothing follows it), the Python parser any ``HTTP/x.y``; we would
  answer in a version the client did not speak (505).  llhttp refuses the others
  (``HTTP/1.2``, ``HTTP/3.0``) itself, as a malformed request line; :func:`parser_refusal`
  recognizes its error so that both parsers answer 505;
- ``CONNECT``: the proxy opens no tunnels, whatever the path and whether maintenance is
  on.  With an origin-form target (``CONNECT /admin``, which would otherwise pass the
  ``/admin`` bypass and reach the upstream as ``CONNECT upstream:port``) the answer is 405
  with the ``Allow`` header RFC 9110 section 15.5.6 requires; with an authority-form
  target (``CONNECT host:443``, a tunnel to another host) it is 400, like any request
  naming another host (section 9.3.6 lets a server refuse a tunnel it does not offer);
- ``Transfer-Encoding`` in an HTTP/1.0 request: section 6.1 says to treat its framing as
  faulty, because an HTTP/1.0 hop in front of us may have framed the body differently
  (400, as nginx does);
- a transfer coding other than ``chunked`` (``gzip, chunked``, the obsolete
  ``identity``): the parser strips the chunking but not the other codings, so the
  upstream would get still-encoded bytes as if they were the body (501, section 6.1);
- a ``Host`` that is not ``host[:port]`` (section 3.2 requires 400): userinfo, spaces,
  commas or slashes would reach an upstream that builds links from ``Host``.

A refused request also ends its connection: the client's idea of where the next request
starts cannot be trusted.  :func:`must_close` names the requests after which the
connection must end whatever the answer (see there).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ALLOWED_METHODS",
    "UNSUPPORTED_VERSION",
    "Refusal",
    "must_close",
    "parser_refusal",
    "refusal",
]


@dataclass(frozen=True, slots=True)
class Refusal:
    """The status to answer instead of forwarding, and why (shown to the client)."""

    status: int
    reason: str
    allow: str | None = None
    """The ``Allow`` header of a 405: the methods that are allowed (RFC 9110 section
    15.5.6 requires it)."""


ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
"""The ``Allow`` of a refused ``CONNECT``.  Every method but ``CONNECT`` is passed to the
application, which answers for itself; these are the ones applications serve."""

_SUPPORTED_VERSIONS = frozenset({(1, 0), (1, 1)})
_HOST = re.compile(r"(?:\[[0-9A-Za-z._~:%-]+\]|[0-9A-Za-z._~%-]*)(?::[0-9]*)?")
"""``host [":" port]``: an IP literal in brackets or a name of unreserved characters and
percent-escapes, then an optional port; empty is allowed (section 3.2).  RFC 3986 also
lets a name hold sub-delims (``,;=!$&'()*+``): no real host name has them, and a
``Host: a,b`` is how a careless hop joins two Host headers, so they are refused."""

UNSUPPORTED_VERSION = Refusal(505, "only HTTP/1.0 and HTTP/1.1 are supported")
_CONNECT = Refusal(405, "this server opens no tunnels (CONNECT)", allow=ALLOWED_METHODS)
_CONNECT_ELSEWHERE = Refusal(400, "this server opens no tunnels to other hosts (CONNECT)")
_TRANSFER_ENCODING_IN_HTTP_1_0 = Refusal(400, "Transfer-Encoding in an HTTP/1.0 request")
_UNSUPPORTED_CODING = Refusal(501, "the only supported transfer coding is chunked")
_INVALID_HOST = Refusal(400, "invalid Host header")


_LLHTTP_VERSION_ERROR = "Invalid HTTP version"
"""Part of the message of the error llhttp raises for a version it does not know."""


def refusal(
    version: tuple[int, int],
    headers: Mapping[str, str],
    *,
    method: str = "GET",
    target: str = "/",
) -> Refusal | None:
    """Why a request of this ``version``, ``method`` and raw ``target`` with these
    ``headers`` must not be forwarded, or None when it may be."""
    if version not in _SUPPORTED_VERSIONS:
        return UNSUPPORTED_VERSION
    if method == "CONNECT":
        return _CONNECT if target.startswith("/") else _CONNECT_ELSEWHERE
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


def parser_refusal(message: str) -> Refusal | None:
    """The refusal for a request head the HTTP parser refused with error ``message``, when
    it is one of ours rather than a malformed head (400): llhttp refuses a version it does
    not know (``HTTP/1.2``, ``HTTP/3.0``) as a bad request line, where the Python parser
    passes it on to :func:`refusal`; both must answer 505."""
    if _LLHTTP_VERSION_ERROR in message:
        return UNSUPPORTED_VERSION
    return None


def must_close(method: str, headers: Mapping[str, str]) -> bool:
    """True when the connection must end after answering this request, whatever the answer
    (the maintenance page, a forwarded answer, an error page).

    - ``CONNECT``: the proxy opens no tunnels, and a client may already have sent tunnel
      bytes after its request; llhttp would hand them back to be read as requests, and
      the Python parser reads them as a body that never ends.
    - Any ``Upgrade`` (``h2c``, say): the proxy answers as plain HTTP, since ``Upgrade`` is
      hop-by-hop and it performs no switch but a websocket it relays, and llhttp stops
      reading the connection after such a request, silently dropping the bytes that
      follow; closing tells the client so instead of leaving it waiting for answers that
      will never come.  A websocket request is no exception: one relayed keeps the
      connection until the websocket ends, and one answered otherwise (the maintenance
      page, the upstream refusing the handshake) is a switch declined like any other.
    """
    return method == "CONNECT" or "Upgrade" in headers
