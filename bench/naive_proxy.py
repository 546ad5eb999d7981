"""The Python baseline: the smallest reasonable aiohttp reverse proxy.

What the issue calls "a minimal aiohttp reverse proxy (one shared ClientSession,
streaming, nothing else)": one :class:`aiohttp.ClientSession` for the process (its pool
keeps upstream connections alive), the request's headers copied to the upstream, the
response's headers copied back, the body streamed with ``StreamResponse`` and
``iter_chunked``.  No path normalization, no decision, no forwarded headers, no metrics,
no error pages: whatever mwm does on top of this is what the ``mwm / naive`` ratio prices.

It runs on uvloop when uvloop is installed, as ``mwm run`` does, so the comparison is
between the two programs and not between two event loops (``--loop asyncio`` to compare
with the standard loop).

    python -m bench.naive_proxy --port 8090 --upstream http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Sequence

import aiohttp
from aiohttp import web

# The server frames its own response (length or chunked); these describe the upstream's.
_NOT_COPIED = frozenset({"transfer-encoding", "connection", "keep-alive"})
SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def forward(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION]
    async with session.request(
        request.method,
        request.app[UPSTREAM] + request.path_qs,
        headers=request.headers,
        data=request.content if request.body_exists else None,
        allow_redirects=False,
    ) as upstream:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            if name.lower() not in _NOT_COPIED:
                response.headers.add(name, value)
        await response.prepare(request)
        async for chunk in upstream.content.iter_chunked(64 * 1024):
            await response.write(chunk)
        await response.write_eof()
        return response


def build_app(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")

    async def session(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession()
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory when asked for (``auto``: when installed), else ``None``."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


async def serve(app: web.Application, *, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=1024).start()
        await stop.wait()
    finally:
        await runner.cleanup()


def parser(description: str | None) -> argparse.ArgumentParser:
    """The options every baseline server takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser(__doc__.split("\n\n")[0] if __doc__ else None)
    arguments.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8000")
    args = arguments.parse_args(argv)
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(serve(build_app(args.upstream), host=args.host, port=args.port))


if __name__ == "__main__":
    main()
