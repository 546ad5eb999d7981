"""A tiny web app to put behind ``mwm`` in the quick start.

Pages: ``/`` (a shop front), ``/admin`` (the back office that stays reachable during
maintenance), ``/api/hello`` (JSON), ``/healthz`` (what mwm probes).  ``POST
/_demo/health/down`` and ``/_demo/health/up`` make the health check fail or pass, to
show automatic maintenance when a critical service goes down.
"""

from __future__ import annotations

import argparse
import html
import socket

from aiohttp import web

HEALTHY = web.AppKey("healthy", dict)

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}
</style></head><body><h1>{title}</h1><p>{text}</p></body></html>"""


def _page(title: str, text: str) -> web.Response:
    return web.Response(
        text=PAGE.format(title=html.escape(title), text=text), content_type="text/html"
    )


async def home(request: web.Request) -> web.Response:
    return _page("Demo shop", "Everything is running normally. This page comes from the app.")


async def admin(request: web.Request) -> web.Response:
    return _page("Back office", "Admins reach this page even while maintenance is on.")


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"message": "hello from the demo app"})


async def healthz(request: web.Request) -> web.Response:
    if request.app[HEALTHY]["ok"]:
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "failing"}, status=503)


async def set_health(request: web.Request) -> web.Response:
    request.app[HEALTHY]["ok"] = request.match_info["state"] == "up"
    return web.json_response({"healthy": request.app[HEALTHY]["ok"]})


def build_app() -> web.Application:
    app = web.Application()
    app[HEALTHY] = {"ok": True}
    app.router.add_get("/", home)
    app.router.add_get("/admin", admin)
    app.router.add_get("/admin/{tail:.*}", admin)
    app.router.add_get("/api/hello", hello)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/_demo/health/{state:up|down}", set_health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="mwm demo app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--fd",
        type=int,
        help="serve on this inherited listening socket instead of --host/--port "
        "(demo/run.py binds the port itself, so it is never lost to another process)",
    )
    args = parser.parse_args()
    if args.fd is not None:
        web.run_app(build_app(), sock=socket.socket(fileno=args.fd), print=None)
    else:
        web.run_app(build_app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
