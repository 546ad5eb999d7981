"""The app behind every proxy in the benchmark: nginx serving one ~1 KiB static page.

The upstream must never be the bottleneck, and it must cost the same whoever calls it, so
it is not Python: one nginx worker serves a static file (``sendfile``, no logging) at
several times the rate any of the proxies can forward, and its CPU is measured apart
from theirs.  ``direct`` in the results is this server without a proxy in front.
"""

from __future__ import annotations

from pathlib import Path

from bench.nginx import nginx_server, static_file_block
from bench.servers import Server

BODY_BYTES = 1024
INDEX = "index.html"


def page(size_bytes: int, *, title: str) -> str:
    """An HTML page of exactly ``size_bytes`` bytes (ASCII), padded with a comment."""
    head = f"<!doctype html>\n<html><head><title>{title}</title></head><body><p>{title}</p>"
    tail = "</body></html>\n"
    padding = size_bytes - len(head) - len(tail) - len("<!--  -->")
    return f"{head}<!-- {'x' * max(padding, 0)} -->{tail}"


def upstream_server(*, binary: str, workdir: Path, port: int, cpus: str | None) -> Server:
    root = workdir / "upstream-root"
    root.mkdir(parents=True, exist_ok=True)
    (root / INDEX).write_text(page(BODY_BYTES, title="upstream"), encoding="ascii")
    return nginx_server(
        "upstream",
        binary=binary,
        workdir=workdir,
        port=port,
        server_block=static_file_block(port=port, root=root, index=INDEX),
        cpus=cpus,
    )
