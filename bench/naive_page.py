"""The Python floor for a maintenance page: aiohttp answering a pre-rendered 503.

The issue's reference: "a pre-rendered 503 from aiohttp: ~21k req/s with uvloop
(0.45-0.49x nginx returning a static 503)".  One catch-all route returns bytes rendered
once at start-up, with the headers mwm sends; no negotiation, no decision.  Next to
``mwm-503`` it shows what mwm's own work costs; next to ``nginx-503`` what aiohttp's
``web`` server costs.  Same loop choice as :mod:`bench.naive_proxy`.

    python -m bench.naive_page --port 8091
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import web

from bench.naive_proxy import loop_factory, parser, serve
from bench.upstream import page

BODY = page(1024, title="Down for maintenance").encode("ascii")
HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Retry-After": "300",
    "Cache-Control": "no-store",
}


async def maintenance(request: web.Request) -> web.Response:
    return web.Response(status=503, body=BODY, headers=HEADERS)


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", maintenance)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    args = parser(__doc__.split("\n\n")[0] if __doc__ else None).parse_args(argv)
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(serve(build_app(), host=args.host, port=args.port))


if __name__ == "__main__":
    main()
