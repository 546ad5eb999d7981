"""The access log: one line per request, with secrets that travel in URLs taken out.

aiohttp's default access log prints the request line as received, and two of our secrets
can be in it: the bypass token in the cookie URL (``/_mwm/bypass/<token>``, which a browser
must be able to visit) and an admin token someone put in a query string (refused, but the
refusal is logged too).  This logger prints method, target and status as the message and the rest
of aiohttp's default format (peer, size, duration, user agent, referer) as structured
fields, with the path after the cookie prefix and the values of secret-looking query
parameters replaced by ``<redacted>``.
"""

from __future__ import annotations

import re
from typing import ClassVar

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

REDACTED = "<redacted>"
_SECRET_PARAMETER = re.compile(r"(?i)([^&=]*(?:token|secret|key|password)[^&=]*=)[^&]*")


class AccessLogger(AbstractAccessLogger):
    """Configured per runtime with :func:`access_logger_for` (aiohttp instantiates it)."""

    secret_prefixes: ClassVar[tuple[str, ...]] = ()

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        target = redact(request.raw_path, secret_prefixes=self.secret_prefixes)
        headers = request.headers
        self.logger.info(
            "%s %s %d",
            request.method,
            target,
            response.status,
            extra={
                "remote": request.remote,
                "version": f"{request.version.major}.{request.version.minor}",
                "bytes": response.body_length,
                "duration_s": round(time, 6),
                "user_agent": headers.get("User-Agent"),
                "referer": headers.get("Referer"),
            },
        )


def access_logger_for(*, secret_prefixes: tuple[str, ...]) -> type[AccessLogger]:
    """An :class:`AccessLogger` class that redacts paths under ``secret_prefixes``."""
    return type("AccessLogger", (AccessLogger,), {"secret_prefixes": secret_prefixes})


def redact(target: str, *, secret_prefixes: tuple[str, ...]) -> str:
    """``target`` (path and query, as received) without the secrets it may carry."""
    path, question, query = target.partition("?")
    for prefix in secret_prefixes:
        if path.startswith(prefix):
            path = prefix + REDACTED
            break
    if question:
        query = _SECRET_PARAMETER.sub(lambda match: match.group(1) + REDACTED, query)
    return path + question + query
