"""A real upstream application for proxy tests: an aiohttp server on 127.0.0.1:0.

Plain helpers, no fixtures, so any test module can use it::

    upstream = await start_upstream()
    ...  # point the proxy at upstream.url
    await upstream.close()

Endpoints (anything not listed echoes the request):

- ``/echo`` and every other path: JSON with ``method``, ``path`` (raw, no query),
  ``query`` (raw), ``headers`` (list of ``[name, value]`` pairs, repeats kept) and
  ``body`` (latin-1 text).
- ``/status/{code}``: answers that status; ``?reason=...`` sets the reason phrase,
  ``?location=...`` a Location header.
- ``/cookies``: two ``Set-Cookie`` headers.
- ``/response-headers``: repeated and hop-by-hop response headers (see the handler).
- ``/gzip``: a gzip body with ``Content-Encoding: gzip`` (:data:`GZIP_TEXT` compressed).
- ``/download?size=N[&chunked=1]``: N bytes of :func:`pattern`, streamed, with a
  Content-Length unless ``chunked=1``; the bytes sent are appended to ``downloads`` and
  ``download_done`` is set when the handler ends (complete or cut off).
- ``/upload``: counts and hashes the streamed request body: ``{"size", "sha256"}``.
- ``/slow``: sets ``slow_arrived``, then answers only once ``slow_release`` is set;
  with ``?head_bytes=N`` it first sends the head and N of its 2N body bytes (with a
  Content-Length, or chunked with ``&chunked=1``).
- ``/reset``: sends half a status line, then drops the connection.
- ``/die-mid-body?size=N&sent=M``: promises N bytes, sends M, then drops the connection.
- ``/ws``: websocket echo (protocols ``chat.v1``, ``chat.v2``); the text ``close:CODE``
  makes the server close with that code and reason ``upstream bye``; ``drop`` makes it
  drop the connection without a close frame.  When the socket
  ends, the code of the peer's close frame (the one that started the close, or the reply
  to the server's own) is appended to ``ws_close_codes`` and ``ws_closed`` is set.

Every request is appended to ``requests`` (method, raw path, headers) for assertions.
Hooks such as :attr:`Upstream.on_chunk` let a test observe a transfer without polling.

``python -m tests.proxy.upstream [--port N]`` runs it as a process of its own (to kill it
for real): it prints ``listening <port>`` once serving, then ``slow arrived`` each time a
``/slow`` request is parked (where it stays: nothing releases it).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from multidict import CIMultiDictProxy

GZIP_TEXT = b"hello, compressed world\n" * 100
BLOCK_BYTES = 64 * 1024
_BLOCK = bytes(range(256)) * (BLOCK_BYTES // 256)


def pattern(size: int) -> AsyncIterator[bytes]:
    """The bytes ``/download`` sends, as an async stream of blocks (also for uploads)."""

    async def blocks() -> AsyncIterator[bytes]:
        remaining = size
        while remaining > 0:
            chunk = _BLOCK if remaining >= BLOCK_BYTES else _BLOCK[:remaining]
            remaining -= len(chunk)
            yield chunk

    return blocks()


def pattern_sha256(size: int) -> str:
    """The SHA-256 of ``size`` bytes of :func:`pattern`, computed without holding them."""
    digest = hashlib.sha256()
    full, rest = divmod(size, BLOCK_BYTES)
    for _ in range(full):
        digest.update(_BLOCK)
    digest.update(_BLOCK[:rest])
    return digest.hexdigest()


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: CIMultiDictProxy[str]


@dataclass(eq=False)
class Upstream:
    """A running upstream server and what it has seen."""

    runner: web.AppRunner
    url: str
    requests: list[RecordedRequest] = field(default_factory=list)
    slow_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    slow_release: asyncio.Event = field(default_factory=asyncio.Event)
    ws_close_codes: list[int | None] = field(default_factory=list)
    ws_closed: asyncio.Event = field(default_factory=asyncio.Event)
    downloads: list[int] = field(default_factory=list)
    """Bytes each finished ``/download`` handler managed to send (short if cut off)."""
    download_done: asyncio.Event = field(default_factory=asyncio.Event)
    on_chunk: Callable[[int], None] | None = None
    """Called with each chunk's size while ``/download`` sends and ``/upload`` receives."""

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    async def close(self) -> None:
        self.slow_release.set()  # let parked handlers finish so shutdown does not wait
        await self.runner.cleanup()


async def start_upstream(*, host: str = "127.0.0.1", port: int = 0) -> Upstream:
    """Start the upstream on ``port`` of ``host`` (0: a free one)."""
    app = web.Application()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    upstream_box: list[Upstream] = []

    def current() -> Upstream:
        return upstream_box[0]

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        current().requests.append(
            RecordedRequest(request.method, request.raw_path.split("?")[0], request.headers)
        )
        response: web.StreamResponse = await handler(request)
        return response

    app.middlewares.append(record)

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        raw = request.raw_path
        return web.json_response(
            {
                "method": request.method,
                "path": raw.split("?", 1)[0],
                "query": raw.split("?", 1)[1] if "?" in raw else "",
                "headers": [[name, value] for name, value in request.headers.items()],
                "body": body.decode("latin-1"),
            }
        )

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        response = web.Response(
            status=code,
            reason=request.query.get("reason"),
            body=None if code in (204, 304) else f"status {code}".encode(),
        )
        if "location" in request.query:
            response.headers["Location"] = request.query["location"]
        return response

    async def cookies(request: web.Request) -> web.Response:
        response = web.Response(text="cookies")
        response.headers.add("Set-Cookie", "session=abc123; Path=/; HttpOnly")
        response.headers.add("Set-Cookie", "theme=dark; Path=/; Max-Age=3600")
        return response

    async def response_headers(request: web.Request) -> web.Response:
        response = web.Response(text="headers")
        response.headers.add("X-Multi", "one")
        response.headers.add("X-Multi", "two")
        response.headers["Connection"] = "X-Upstream-Secret"
        response.headers["X-Upstream-Secret"] = "must not leak"
        response.headers["Keep-Alive"] = "timeout=5"
        response.headers["Proxy-Authenticate"] = "Basic"
        response.headers["Cache-Control"] = "public, max-age=600"
        response.headers["CDN-Cache-Control"] = "max-age=3600"
        return response

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(
            body=gzip.compress(GZIP_TEXT, mtime=0),
            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
        )

    async def download(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        response = web.StreamResponse()
        response.content_type = "application/octet-stream"
        if request.query.get("chunked") == "1":
            response.enable_chunked_encoding()
        else:
            response.content_length = size
        await response.prepare(request)
        if request.method == "HEAD":  # aiohttp would send what we write, even for HEAD
            await response.write_eof()
            return response
        sent = 0
        try:
            async for chunk in pattern(size):
                _notify(current().on_chunk, len(chunk))
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
        except ConnectionError:
            pass  # the proxy went away: recorded below, which is what tests look at
        finally:
            current().downloads.append(sent)
            current().download_done.set()
        return response

    async def upload(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
            _notify(current().on_chunk, len(chunk))
        return web.json_response({"size": size, "sha256": digest.hexdigest()})

    async def slow(request: web.Request) -> web.StreamResponse:
        head_bytes = int(request.query.get("head_bytes", "0"))
        if head_bytes:  # send the head and part of the body first, then stall
            response = web.StreamResponse()
            if request.query.get("chunked") == "1":
                response.enable_chunked_encoding()
            else:
                response.content_length = 2 * head_bytes
            await response.prepare(request)
            await response.write(b"x" * head_bytes)
        current().slow_arrived.set()
        await current().slow_release.wait()
        if head_bytes:
            with contextlib.suppress(ConnectionError):
                await response.write(b"x" * head_bytes)
            return response
        return web.Response(text="finally")

    async def reset(request: web.Request) -> web.Response:
        transport = request.transport
        assert transport is not None
        transport.write(b"HTTP/1.1 200 O")
        transport.abort()
        return web.Response()  # never sent: the connection is gone

    async def die_mid_body(request: web.Request) -> web.StreamResponse:
        size, sent = int(request.query["size"]), int(request.query["sent"])
        response = web.StreamResponse()
        response.content_length = size
        await response.prepare(request)
        await response.write(b"x" * sent)
        transport = request.transport
        assert transport is not None
        transport.close()
        return response

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("chat.v1", "chat.v2"))
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                text: str = message.data
                if text == "drop":  # vanish without a close frame
                    transport = request.transport
                    assert transport is not None
                    transport.abort()
                    break
                if text.startswith("close:"):
                    await ws.close(code=int(text[6:]), message=b"upstream bye")
                    break
                await ws.send_str(text)
            elif message.type is WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        current().ws_close_codes.append(ws.close_code)
        current().ws_closed.set()
        return ws

    app.router.add_get("/ws", websocket)
    app.router.add_route("*", "/status/{code:\\d+}", status)
    app.router.add_get("/cookies", cookies)
    app.router.add_get("/response-headers", response_headers)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/download", download)
    app.router.add_post("/upload", upload)
    app.router.add_get("/slow", slow)
    app.router.add_get("/reset", reset)
    app.router.add_get("/die-mid-body", die_mid_body)
    app.router.add_route("*", "/{tail:.*}", echo)

    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    port = runner.addresses[0][1]
    upstream = Upstream(runner=runner, url=f"http://{host}:{port}")
    upstream_box.append(upstream)
    return upstream


def _notify(hook: Callable[[int], None] | None, size: int) -> None:
    if hook is not None:
        hook(size)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (bound, then released), for connection-refused tests."""
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def _serve(port: int) -> None:
    upstream = await start_upstream(port=port)
    print(f"listening {upstream.port}", flush=True)
    while True:
        await upstream.slow_arrived.wait()
        upstream.slow_arrived.clear()
        print("slow arrived", flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="The proxy tests' upstream, as a process.")
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(_serve(parser.parse_args().port))
