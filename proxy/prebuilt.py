"""Responses written to the client's transport as one pre-serialized block of bytes.

aiohttp builds a response per request: a header multidict, defaults filled in, the head
serialized, then head and body written.  For the two answers the proxy gives most (the
maintenance page, the same bytes for every request of a state, and a small upstream
answer read whole), that machinery was about a third of the cost of a request under load.
A :class:`PrebuiltResponse` is the finished bytes: the head, a ``Date`` line formatted
once per second, and the body, handed to the transport in a single write.

It only answers keep-alive HTTP/1.1 requests (:func:`fits`): those need no ``Connection``
header and no version juggling.  Everything else takes aiohttp's ordinary response.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Final

from aiohttp import HttpVersion11, web

WRITE_BUFFER_LIMIT: Final = 64 * 1024
"""Past this many unsent bytes, wait for the client to read (as aiohttp's writer does)."""


def fits(request: web.BaseRequest) -> bool:
    """Whether ``request`` may be answered with a :class:`PrebuiltResponse`."""
    return request.version == HttpVersion11 and request.keep_alive


class PrebuiltResponse(web.StreamResponse):
    """``head`` (status line and header lines, each ending in CRLF, without ``Date`` and the
    blank line), then a ``Date`` header unless ``dated``, then ``body``: one write."""

    def __init__(self, *, status: int, head: bytes, body: bytes, dated: bool = False) -> None:
        super().__init__(status=status)
        self._wire = head + (b"\r\n" if dated else date_line()) + body
        self._body_length = len(body)

    @property
    def keep_alive(self) -> bool:
        return True

    async def prepare(self, request: web.BaseRequest) -> None:
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client went away")
        self._eof_sent = True
        transport.write(self._wire)
        if transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            # A client pipelining requests without reading the answers: wait for it
            # instead of buffering answers without bound.
            await request._payload_writer.drain()

    async def write_eof(self, data: bytes = b"") -> None:
        return None


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
