"""The floors: the least a Python reverse proxy, and a Python 503 page, on mwm's own parts
can cost per request.

Issue 15 measured "a bare protocol-level proxy in Python" and put its targets against it: an
:class:`asyncio.Protocol` per client connection, a pool of keep-alive upstream connections
each an :class:`asyncio.Protocol`, the request head serialized once (hop-by-hop fields
dropped, ``X-Forwarded-For``/``-Proto`` set), the answer's head and body written to the
client in one write, on uvloop; with aiohttp's own C parsers (the ones mwm uses), it cost
1.80x nginx's CPU per request there.  This is that design, so every harness run measures it
on its own machine next to mwm: what is left between the floor and mwm is mwm's features and
structure; what is left between nginx and the floor, Python's.

Nothing else: no decision, no limits or timeouts, no error pages (an upstream that fails
closes the client's connection), no streaming (the answer is relayed once its body is whole,
which the harness's 1 KiB page always is), no pipelining, no request bodies.  It is a
measuring stick, not a proxy to deploy.

With ``--page`` it is the floor for the maintenance page instead: the same client protocol
answering every request with a 503 rendered once (the 1 KiB page and headers of
:mod:`bench.naive_page`), in one write, with its ``Date``; no negotiation, no decision.

    python -m bench.floor_proxy --port 8091 --upstream http://127.0.0.1:8000
    python -m bench.floor_proxy --port 8092 --page
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

from aiohttp.base_protocol import BaseProtocol
from aiohttp.http import HttpRequestParser, HttpResponseParser

from bench.naive_page import BODY as PAGE_BODY
from bench.naive_page import HEADERS as PAGE_HEADERS
from bench.naive_proxy import loop_factory, parser
from proxy.hopbyhop import HOP_BY_HOP_RAW

_DROPPED_RAW = HOP_BY_HOP_RAW | {b"x-forwarded-for", b"x-forwarded-proto"}
"""mwm's hop-by-hop fields (RFC 9110 section 7.6.1) and the forwarding ones the floor sets."""
_LIMIT = 2**16


class Upstream(BaseProtocol):
    """One keep-alive connection to the upstream; answers one request at a time."""

    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._pool = pool
        self._parser: Any = HttpResponseParser(self, loop, _LIMIT)
        self.client: Client | None = None
        self._answer: tuple[Any, Any] | None = None

    def data_received(self, data: bytes) -> None:
        messages, _, _ = self._parser.feed_data(data)
        if messages:
            self._answer = messages[0]
        answer = self._answer
        if answer is None or not answer[1].is_eof():
            return  # the body is still coming
        self._answer = None
        message, payload = answer
        client, self.client = self.client, None
        lines = [b"HTTP/1.1 %d %s\r\n" % (message.code, message.reason.encode())]
        lines += [
            b"%s: %s\r\n" % field
            for field in message.raw_headers
            if field[0].lower() not in _DROPPED_RAW
        ]
        lines += [b"\r\n", payload.read_nowait()]
        if client is not None:
            client.answer(b"".join(lines))
        self._pool.idle.append(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        if self in self._pool.idle:
            self._pool.idle.remove(self)
        if self.client is not None:
            self.client.close()


class Pool:
    """Idle upstream connections, last used first; a new one when none is idle."""

    def __init__(self, host: str, port: int, loop: asyncio.AbstractEventLoop) -> None:
        self.host, self.port, self._loop = host, port, loop
        self.idle: list[Upstream] = []

    def send(self, client: Client, head: bytes) -> None:
        if self.idle:
            upstream = self.idle.pop()
            assert upstream.transport is not None
            upstream.client = client
            upstream.transport.write(head)
            return
        self._loop.create_task(self._connect_and_send(client, head))

    async def _connect_and_send(self, client: Client, head: bytes) -> None:
        try:
            transport, upstream = await self._loop.create_connection(
                lambda: Upstream(self, self._loop), self.host, self.port
            )
        except OSError:
            client.close()
            return
        upstream.client = client
        transport.write(head)


class Page(BaseProtocol):
    """One client connection answered with the page, request after request."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._parser: Any = HttpRequestParser(self, loop, _LIMIT)

    def data_received(self, data: bytes) -> None:
        try:
            messages, _, _ = self._parser.feed_data(data)
        except Exception:
            if self.transport is not None:
                self.transport.close()
            return
        if messages and self.transport is not None:
            self.transport.write(
                b"".join([_PAGE_HEAD, _date_at(int(time.time())), _PAGE_REST] * len(messages))
            )


@functools.lru_cache(maxsize=1)
def _date_at(second: int) -> bytes:
    """The ``Date`` value for ``second``: formatted once a second (as mwm and nginx do)."""
    return formatdate(second, usegmt=True).encode()


def _page_parts() -> tuple[bytes, bytes]:
    fields = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in PAGE_HEADERS.items())
    head = b"HTTP/1.1 503 Service Unavailable\r\nServer: floor\r\n" + fields + b"Date: "
    rest = b"\r\nContent-Length: %d\r\n\r\n%s" % (len(PAGE_BODY), PAGE_BODY)
    return head, rest


_PAGE_HEAD, _PAGE_REST = _page_parts()


class Client(BaseProtocol):
    """One client connection: a request, its answer, the next request."""

    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._pool = pool
        self._parser: Any = HttpRequestParser(self, loop, _LIMIT)
        self._peer = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if peer else ""

    def data_received(self, data: bytes) -> None:
        try:
            messages, _, _ = self._parser.feed_data(data)
        except Exception:
            self.close()
            return
        for message, _ in messages:
            lines = [b"%s %s HTTP/1.1\r\n" % (message.method.encode(), message.path.encode())]
            lines += [
                b"%s: %s\r\n" % field
                for field in message.raw_headers
                if field[0].lower() not in _DROPPED_RAW
            ]
            lines.append(
                b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: http\r\n\r\n" % self._peer.encode()
            )
            self._pool.send(self, b"".join(lines))

    def answer(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def start(*, host: str, port: int, upstream: str | None) -> asyncio.Server:
    """Listen on ``host``:``port`` (0: a free port), relaying to ``upstream`` (None: the
    page floor, answering every request with the 503 page)."""
    loop = asyncio.get_running_loop()
    if upstream is None:
        return await loop.create_server(lambda: Page(loop), host, port, backlog=1024)
    target = urlsplit(upstream)
    pool = Pool(target.hostname or "127.0.0.1", target.port or 80, loop)
    return await loop.create_server(lambda: Client(pool, loop), host, port, backlog=1024)


async def serve(*, host: str, port: int, upstream: str | None) -> None:
    """Serve until cancelled (SIGTERM or SIGINT end the process)."""
    server = await start(host=host, port=port, upstream=upstream)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser(__doc__.split("\n\n")[0] if __doc__ else None)
    which = arguments.add_mutually_exclusive_group(required=True)
    which.add_argument("--upstream", help="relay to it, e.g. http://127.0.0.1:8000")
    which.add_argument("--page", action="store_true", help="answer the 503 page instead")
    args = arguments.parse_args(argv)
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(serve(host=args.host, port=args.port, upstream=args.upstream))


if __name__ == "__main__":
    main()
