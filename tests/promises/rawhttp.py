"""HTTP/1.1 spoken byte for byte over a raw socket, for requests no HTTP client would send.

Real clients normalize what hostile ones do not: they resolve ``..``, re-encode paths,
merge header names that differ only in case and refuse control characters.  The promise
tests need the exact bytes on the wire, so they build requests with :func:`request` (or
by hand) and read every response the proxy sends back with :func:`exchange`::

    [response] = await exchange(port, request("GET", "/admin/../checkout"))
    assert response.status == 503

:func:`exchange` reads until the server closes the connection, so the last request sent
must carry ``Connection: close`` (:func:`request` adds it unless told otherwise), or the
server must close by itself, as it does after answering 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

Header = tuple[str, str]

EXCHANGE_TIMEOUT_S = 10.0
"""A server that neither answers nor closes within this fails the test instead of hanging."""


def request(
    method: str,
    target: str | bytes,
    headers: Sequence[Header] = (),
    *,
    body: bytes = b"",
    host: str | None = "proxy.test",
    close: bool = True,
) -> bytes:
    """The bytes of one request: ``target`` and ``headers`` exactly as given (a ``str``
    target is sent as UTF-8), plus ``Host`` (unless None), ``Content-Length`` when there
    is a body, and ``Connection: close`` unless ``close`` is false."""
    raw_target = target.encode() if isinstance(target, str) else target
    lines = [method.encode() + b" " + raw_target + b" HTTP/1.1"]
    if host is not None:
        lines.append(b"Host: " + host.encode())
    lines += [name.encode("latin-1") + b": " + value.encode() for name, value in headers]
    if body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: tuple[Header, ...]
    body: bytes
    status_line: str = ""
    """As sent: ``HTTP/1.1 503 Service Unavailable``."""

    def header(self, name: str) -> str | None:
        """The first value of ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    def values(self, name: str) -> list[str]:
        """Every value of ``name`` (case-insensitive), in order."""
        wanted = name.lower()
        return [v for k, v in self.headers if k.lower() == wanted]

    def json(self) -> Any:
        return json.loads(self.body)


async def exchange(
    port: int, data: bytes, *, host: str = "127.0.0.1", until_eof: bool = True
) -> list[RawResponse]:
    """Send ``data`` to ``host:port``, read until the server closes, return every response.

    With ``until_eof=False`` reading also stops at a complete response that announces
    ``Connection: close``: the server promised to send nothing more, but may keep reading
    for a while (aiohttp lingers up to 10 s draining a request body its handler did not
    read, such as the tunnel bytes of a refused ``CONNECT``).
    """
    reader, writer = await asyncio.open_connection(host, port)
    received = b""
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(EXCHANGE_TIMEOUT_S):
            while chunk := await reader.read(65536):
                received += chunk
                if not until_eof and _announces_close(received):
                    break
    finally:
        writer.close()
        # A server that reset the connection: what was read is what counts.
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return parse_responses(received)


def _announces_close(data: bytes) -> bool:
    try:
        responses = parse_responses(data)
    except _Incomplete:
        return False
    return bool(responses) and (responses[-1].header("Connection") or "").lower() == "close"


class _Incomplete(AssertionError):
    """The data ends inside a response."""


def parse_responses(data: bytes) -> list[RawResponse]:
    """Split ``data`` (everything a server sent on one connection) into responses."""
    responses = []
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        if not separator:
            raise _Incomplete(f"incomplete response head: {data[:200]!r}")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = tuple(
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in header_lines)
        )
        response = RawResponse(int(status_line.split(" ", 2)[1]), headers, b"")
        length = response.header("Content-Length")
        if length is not None:
            if len(rest) < int(length):
                raise _Incomplete(f"response body shorter than its Content-Length {length}")
            body, data = rest[: int(length)], rest[int(length) :]
        elif (response.header("Transfer-Encoding") or "").lower() == "chunked":
            body, data = _dechunk(rest)
        else:
            body, data = rest, b""
        responses.append(RawResponse(response.status, headers, body, status_line))
    return responses


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    body = b""
    while True:
        size_line, found, data = data.partition(b"\r\n")
        if not found:
            raise _Incomplete("chunked response body cut short")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            _, _, data = data.partition(b"\r\n")  # no trailers in our responses
            return body, data
        body, data = body + data[:size], data[size + 2 :]


@dataclass(frozen=True)
class Dribble:
    """How a dribbled head ended: after how long, and how many other requests were served
    meanwhile."""

    elapsed_s: float
    served: int


async def dribble_head(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    start: bytes,
    *,
    between: Callable[[], Awaitable[None]],
    give_up_s: float,
) -> Dribble:
    """Send ``start``, then one more byte of a head that never ends after each ``between()``
    (a healthy request on another connection), until the proxy closes the connection or
    ``give_up_s`` passes.  The connection must be closed without an answer: an end of stream,
    or a reset when the proxy closed with a dribbled byte still unread (the kernel answers
    with RST)."""
    closed = asyncio.create_task(reader.read())  # b"" when the proxy closes the connection
    writer.write(start)
    started = time.monotonic()
    served = 0
    try:
        while not closed.done() and time.monotonic() - started < give_up_s:
            await between()
            served += 1
            writer.write(b"z")
            await writer.drain()
    except ConnectionError:
        pass  # the proxy closed the connection under the write: the cut, seen first here
    finally:
        writer.close()
    elapsed = time.monotonic() - started
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(closed, 10) == b""  # no answer: nothing to answer
    return Dribble(elapsed_s=elapsed, served=served)
