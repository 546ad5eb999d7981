"""An upstream whose every answer is derived from the request path, for exact checks.

``GET /anything`` answers 200 with :func:`body_for` of its path (about 1 KiB), so a
client that sends a different path on every request can tell the right body from
another request's, a truncated one or a page.  aiohttp's low-level server on uvloop
when installed, idle keep-alive connections kept 75 s (aiohttp's default): longer than
mwm's pool keeps them, as the README asks of an upstream.

    python -m bench.path_upstream --port 0     # prints "listening <port>" once serving
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

from aiohttp import web

from bench.naive_proxy import loop_factory, parser

BODY_BYTES = 1024


def body_for(path: str) -> bytes:
    """The body answered for ``path``: its line repeated to about ``BODY_BYTES``."""
    line = f"upstream answer for {path}\n".encode()
    return line * max(1, BODY_BYTES // len(line))


async def _answer(request: web.BaseRequest) -> web.Response:
    return web.Response(body=body_for(request.path), content_type="text/plain")


async def serve(*, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT; print the port once listening."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.ServerRunner(web.Server(_answer, access_log=None))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        print(f"listening {runner.addresses[0][1]}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    args = parser(__doc__.split("\n\n")[0] if __doc__ else None).parse_args(argv)
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(serve(host=args.host, port=args.port))


if __name__ == "__main__":
    main()
