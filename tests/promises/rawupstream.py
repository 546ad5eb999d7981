"""A strict upstream on a raw socket that records every byte the proxy sends it.

An aiohttp upstream would parse leniently and hide what actually crossed the wire.  This
one keeps the exact bytes of each connection and parses them the way a careful HTTP/1.1
server must (RFC 9112): CRLF line endings only, no obs-fold, no whitespace before a
colon, one ``Host``, at most one ``Content-Length`` (digits only) or one
``Transfer-Encoding: chunked`` and never both, strict chunk sizes.  Each well-formed
request is appended to :attr:`RawUpstream.requests` and answered ``200`` (keep-alive);
anything else is appended to :attr:`RawUpstream.malformed` and answered ``400`` with the
connection closed.  A smuggled request therefore shows up as an extra entry in
``requests``, a desynchronized stream as an entry in ``malformed``.

It also serves as the "evil" server of the request-target tests: :attr:`connections`
counts every connection ever accepted.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

Header = tuple[str, str]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/1\.1")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;[\x20-\x7e]*)?")
_HEAD_LIMIT_BYTES = 256 * 1024


class Malformed(Exception):
    """What the proxy sent is not one well-formed HTTP/1.1 request."""


@dataclass(frozen=True)
class ArrivedRequest:
    method: str
    target: str
    headers: tuple[Header, ...]
    body: bytes

    def values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [v for k, v in self.headers if k.lower() == wanted]


@dataclass(eq=False)
class RawUpstream:
    server: asyncio.Server | None = None
    port: int = 0
    connections: int = 0
    """Connections accepted so far."""
    raw: list[bytearray] = field(default_factory=list)
    """Every byte received, one entry per connection."""
    requests: list[ArrivedRequest] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    """One problem per malformed message (each ends its connection)."""
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self._writers:
            writer.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        received = bytearray()
        self.raw.append(received)
        try:
            while True:
                try:
                    arrived = await _read_request(reader, received)
                except Malformed as exc:
                    self.malformed.append(str(exc))
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    break
                if arrived is None:
                    break
                self.requests.append(arrived)
                body = f"upstream saw {arrived.method} {arrived.target}".encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


async def start_raw_upstream() -> RawUpstream:
    upstream = RawUpstream()
    upstream.server = await asyncio.start_server(
        upstream._serve, "127.0.0.1", 0, limit=_HEAD_LIMIT_BYTES
    )
    upstream.port = upstream.server.sockets[0].getsockname()[1]
    return upstream


async def _read_request(reader: asyncio.StreamReader, received: bytearray) -> ArrivedRequest | None:
    """The next request on the connection; None at a clean end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        received += exc.partial
        if exc.partial:
            raise Malformed(f"connection closed inside a request head: {exc.partial!r}") from None
        return None
    except asyncio.LimitOverrunError:
        raise Malformed("request head too long") from None
    received += head
    method, target, headers = _parse_head(head)
    lengths = [v for k, v in headers if k.lower() == "content-length"]
    codings = [v for k, v in headers if k.lower() == "transfer-encoding"]
    if lengths and codings:
        raise Malformed("both Content-Length and Transfer-Encoding")
    if len(lengths) > 1 or len(codings) > 1:
        raise Malformed("repeated framing header")
    if codings:
        if codings[0] != "chunked":
            raise Malformed(f"unexpected Transfer-Encoding {codings[0]!r}")
        body = await _read_chunked(reader, received)
    elif lengths:
        if not lengths[0].isdigit():
            raise Malformed(f"invalid Content-Length {lengths[0]!r}")
        body = await _read_exactly(reader, received, int(lengths[0]))
    else:
        body = b""
    return ArrivedRequest(method, target, headers, body)


def _parse_head(head: bytes) -> tuple[str, str, tuple[Header, ...]]:
    if head.count(b"\n") != head.count(b"\r\n") or head.count(b"\r") != head.count(b"\r\n"):
        raise Malformed(f"bare CR or LF in the head: {head!r}")
    request_line, *lines = head[:-4].split(b"\r\n")
    line = _REQUEST_LINE.fullmatch(request_line)
    if line is None:
        raise Malformed(f"invalid request line {request_line!r}")
    headers: list[Header] = []
    for raw in lines:
        name, colon, value = raw.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise Malformed(f"invalid header line {raw!r} (obs-fold, or space before ':')")
        value = value.strip(b" \t")
        if any((byte < 0x20 and byte != 0x09) or byte == 0x7F for byte in value):
            raise Malformed(f"control character in header {raw!r}")
        headers.append((name.decode(), value.decode("latin-1")))
    if sum(1 for k, _ in headers if k.lower() == "host") != 1:
        raise Malformed("not exactly one Host header")
    return line[1].decode(), line[2].decode(), tuple(headers)


async def _read_chunked(reader: asyncio.StreamReader, received: bytearray) -> bytes:
    body = bytearray()
    while True:
        size_line = await _read_line(reader, received)
        size = _CHUNK_SIZE.fullmatch(size_line)
        if size is None:
            raise Malformed(f"invalid chunk size line {size_line!r}")
        length = int(size[1], 16)
        if length == 0:
            while await _read_line(reader, received):
                pass  # trailer fields, up to the empty line
            return bytes(body)
        chunk = await _read_exactly(reader, received, length + 2)
        if not chunk.endswith(b"\r\n"):
            raise Malformed("chunk data not followed by CRLF")
        body += chunk[:-2]


async def _read_line(reader: asyncio.StreamReader, received: bytearray) -> bytes:
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.IncompleteReadError as exc:
        received += exc.partial
        raise Malformed("connection closed inside a chunked body") from None
    received += line
    if b"\n" in line[:-2] or b"\r" in line[:-2]:
        raise Malformed(f"bare CR or LF in {line!r}")
    return line[:-2]


async def _read_exactly(reader: asyncio.StreamReader, received: bytearray, size: int) -> bytes:
    try:
        data = await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        received += exc.partial
        raise Malformed(
            f"connection closed after {len(exc.partial)} of {size} body bytes"
        ) from None
    received += data
    return data
