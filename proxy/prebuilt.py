"""Responses written to the client's transport as one pre-serialized block of bytes.

aiohttp builds a response per request: a header multidict, defaults filled in, the head
serialized, then head and body written.  For the two answers the proxy gives most (the
maintenance page, the same bytes for every request of a state, and a small upstream
answer read whole), that machinery was about a third of the cost of a request under load.
A :class:`PrebuiltResponse` is the finished bytes: the head, a ``Date`` line formatted
once per second, and the body, handed to the transport in a single write.

The status line always says ``HTTP/1.1``.  The fast paths use a prebuilt answer for
keep-alive HTTP/1.1 requests only (:func:`fits`); the others take aiohttp's ordinary
response, which answers an HTTP/1.0 request in HTTP/1.0.  The proxy's refusals use it for
any request, because they must never echo a version the proxy does not speak (a request
line ending in ``HTTP/2.0`` gets ``HTTP/1.1 505``).  An answer after which the connection
ends (:meth:`~aiohttp.web.StreamResponse.force_close` was called, or the request did not
keep the connection alive) says ``Connection: close``; :meth:`PrebuiltResponse.hang_up`
also skips aiohttp's lingering read of what the client is still sending.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Final

from aiohttp import HttpVersion11, web

from proxy.aiohttp_compat import response_written

WRITE_BUFFER_LIMIT: Final = 64 * 1024
"""Past this many unsent bytes, wait for the client to read (as aiohttp's writer does)."""


def fits(request: web.BaseRequest) -> bool:
    """Whether a fast path may answer ``request`` with a :class:`PrebuiltResponse`: a
    keep-alive HTTP/1.1 request, which needs no ``Connection`` header and no other framing."""
    return request.version == HttpVersion11 and request.keep_alive


class PrebuiltResponse(web.StreamResponse):
    """``head`` (status line and header lines, each ending in CRLF, without ``Date`` and the
    blank line), then a ``Date`` header unless ``dated``, then ``body``: one write.

    Between the header lines and ``Date`` comes ``Connection: close`` when the connection
    ends after this answer (or ``Connection: keep-alive`` for an HTTP/1.0 client keeping it).
    """

    def __init__(self, *, status: int, head: bytes, body: bytes, dated: bool = False) -> None:
        super().__init__(status=status)
        self._head = head
        self._content = body
        self._dated = dated
        self._hang_up = False

    def hang_up(self) -> None:
        """End the connection as soon as the answer is written, without reading on.

        aiohttp otherwise keeps reading (and dropping) a request body its handler did not
        read for up to 10 s, so that a client still sending sees the answer rather than a
        reset.  For a body that never ends (what follows a ``CONNECT``, which the pure-Python
        parser reads as one endless body) that would hold the connection open for nothing.
        """
        self._hang_up = True
        self.force_close()

    async def prepare(self, request: web.BaseRequest) -> None:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client went away")
        content = self._content
        if not response_written(self, request, len(content)):
            connection = CLOSE
        elif request.version != HttpVersion11:
            connection = _KEEP_ALIVE  # an HTTP/1.0 client that asked to keep it
        else:
            connection = b""
        transport.write(one_write(self._head, content, connection=connection, dated=self._dated))
        if self._hang_up:
            request.protocol.force_close()  # the write above is flushed before the close
            return
        if transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            # A client pipelining requests without reading the answers: wait for it
            # instead of buffering answers without bound.
            await request.writer.drain()

    async def write_eof(self, data: bytes = b"") -> None:
        return None


CLOSE: Final = b"Connection: close\r\n"
_KEEP_ALIVE: Final = b"Connection: keep-alive\r\n"


def one_write(head: bytes, body: bytes, *, connection: bytes = b"", dated: bool = False) -> bytes:
    """A whole answer as one block: ``head`` (status line and header lines, without
    ``Date`` and the blank line), a ``connection`` line (:data:`CLOSE`, say), a ``Date``
    line unless the head is ``dated``, the blank line, then ``body``."""
    return b"".join((head, connection, b"\r\n" if dated else date_line(), body))


class _DateLine:
    """``Date: <IMF-fixdate>`` and the blank line ending the head, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._line = f"Date: {formatdate(now, usegmt=True)}\r\n\r\n".encode("ascii")
            self._second = now
        return self._line


date_line = _DateLine()
