"""nginx configurations for the benchmark: the upstream, the reference proxy, the static 503.

Each role is its own nginx (its own master, one worker, its own temporary prefix) so the
CPU time of each can be told apart from the others'.  Everything nginx writes (pid file,
error log, temporary files) goes into that prefix, so it runs as any user; when it runs
as root the worker stays root (``user root;``) because the temporary prefix belongs to
root.  ``access_log off`` matches mwm's default (``MWM_LOG__ACCESS_LOG=false``).

The reference proxy is configured as a production nginx in front of one app would be:
HTTP/1.1 to the upstream with a keep-alive pool (without ``keepalive`` nginx opens a new
upstream connection per request, which would make it look slower than it is), the
``X-Forwarded-*`` headers mwm also sets, ``Host`` passed on.  ``keepalive_requests`` is
raised everywhere so neither side closes a benchmark connection every 1,000 requests.

The static 503 is ``return 503 "<body>"``: the page lives in the configuration, the
nginx equivalent of mwm's pre-rendered page, and the cheapest way nginx can answer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

from bench.servers import Server

KEEPALIVE_REQUESTS = 100_000_000
_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> str | None:
    """nginx on PATH or in /usr/sbin (not on every user's PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@cache
def _built_without(binary: str) -> frozenset[str]:
    """Modules compiled out (their ``*_temp_path`` directives would be unknown)."""
    result = subprocess.run([binary, "-V"], capture_output=True, text=True, check=False)
    flags = (result.stdout + result.stderr).split()
    return frozenset(
        flag.removeprefix("--without-http_").removesuffix("_module")
        for flag in flags
        if flag.startswith("--without-http_")
    )


def configuration(*, prefix: Path, binary: str, server_block: str) -> str:
    """A whole nginx.conf around one ``server { ... }`` block, everything under ``prefix``."""
    without = _built_without(binary)
    temp_paths = "\n".join(
        f"    {name}_temp_path {prefix / name};"
        for name in _TEMP_PATHS
        if name == "client_body" or name not in without
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
daemon off;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests {KEEPALIVE_REQUESTS};
    keepalive_timeout 75s;
{temp_paths}
{server_block}
}}
"""


def proxy_block(*, port: int, upstream_port: int) -> str:
    return f"""    upstream app {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests {KEEPALIVE_REQUESTS};
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }}
    }}"""


def static_503_block(*, port: int, body: str) -> str:
    quoted = body.replace("\\", "\\\\").replace('"', '\\"')
    return f"""    server {{
        listen 127.0.0.1:{port};
        default_type text/html;
        location / {{
            add_header Retry-After 300 always;
            add_header Cache-Control no-store always;
            return 503 "{quoted}";
        }}
    }}"""


def static_file_block(*, port: int, root: Path, index: str) -> str:
    return f"""    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{
            try_files /{index} =404;
        }}
    }}"""


def nginx_server(
    name: str, *, binary: str, workdir: Path, port: int, server_block: str, cpus: str | None
) -> Server:
    """A :class:`Server` running nginx with ``server_block``, all its files in ``workdir/name``."""
    prefix = workdir / name
    prefix.mkdir(parents=True, exist_ok=True)
    for temp in _TEMP_PATHS:
        (prefix / temp).mkdir(exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(configuration(prefix=prefix, binary=binary, server_block=server_block))
    return Server(
        name=name,
        # -e: the error log before the configuration is read (else /var/log/nginx).
        command=[binary, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")],
        port=port,
        log_path=prefix / "stdout.log",
        cpus=cpus,
    )
