"""What aiohttp's HTTP servers log for us: access lines and malformed requests.

Both can carry secrets that a client put on the wire, and both are written by aiohttp,
not by our code, so they are shaped here and handed to both listeners
(:func:`server_log_options`):

- The access log writes the request line as received, and header values (``Referer``,
  ``User-Agent``) as sent.  The bypass token is part of the cookie URL
  (``/_mwm/bypass/<token>``), an admin token may arrive in a query string (the admin API
  refuses it, but the line is written first), and a ``Referer`` repeats a URL that held
  either.  :class:`MaskingAccessLogger` replaces every configured secret (also
  percent-encoded), and the value of every query parameter named like a credential, with
  ``***`` in every field it logs, in the message and in the structured fields alike; a
  credential header (``Authorization``, ``Cookie``, the bypass header) is logged as
  ``***`` whole.
- aiohttp logs every malformed request with ``logger.exception``: an ERROR with a stack
  trace that anyone can trigger in bulk, whose message quotes the offending bytes (a
  header line with a token in it, say).  Such a request is the client's problem, so
  :data:`REQUEST_ERROR_LOG` turns it into one INFO line with the parser's reason and none
  of the bytes.  Every other record passes unchanged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from proxy.aiohttp_compat import AccessLogFieldHook
from proxy.settings import Settings

__all__ = [
    "REQUEST_ERROR_LOG",
    "MaskingAccessLogger",
    "masked_text",
    "masking_access_logger",
    "server_log_options",
]

MASK = "***"
CREDENTIAL_QUERY_NAMES = frozenset(
    {"token", "access_token", "admin_token", "auth", "password", "secret", "key", "api_key"}
)
"""Query parameters whose values are never written to the access log."""


CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-maintenance-bypass"}
)
"""Headers whose values are logged as ``***`` whole, whatever they hold."""

_QUERY_PARAMETER = re.compile(r"(?<=[?&;])([^=&;#?\s]+)=([^&;#\s\"']*)")
_DECODINGS = 3
"""Percent-decoding rounds tried in search of an encoded secret (double encoding and more)."""

LogField = tuple[str | tuple[str, str], Any]


class MaskingAccessLogger(AccessLogFieldHook):
    """aiohttp's access logger (same format), with secrets masked in every logged field.

    :func:`masking_access_logger` binds it to the configured secrets: aiohttp builds the
    logger itself from a class, so they travel as class attributes."""

    secrets: tuple[str, ...] = ()
    credential_headers: frozenset[str] = CREDENTIAL_HEADERS

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        target = request.rel_url
        masked = _masked(target, self.secrets)
        if masked is not target:
            request = request.clone(rel_url=masked)
        super().log(request, response, time)

    def logged_value(self, key: str | tuple[str, str], value: Any) -> Any:
        """Every field (request line, ``%{...}i`` and ``%{...}o`` headers, ...) masked;
        aiohttp builds both the message and the ``extra`` fields from them (see
        :class:`~proxy.aiohttp_compat.AccessLogFieldHook`)."""
        if not isinstance(value, str) or value == "-":
            return value
        if isinstance(key, tuple) and key[1].lower() in self.credential_headers:
            return MASK
        return masked_text(value, self.secrets)


def masking_access_logger(
    secrets: Iterable[str], *, credential_headers: Iterable[str] = ()
) -> type[MaskingAccessLogger]:
    """A :class:`MaskingAccessLogger` class that masks ``secrets`` (empty ones ignored), and
    logs the values of ``credential_headers`` (besides :data:`CREDENTIAL_HEADERS`) as ``***``."""
    kept = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
    headers = CREDENTIAL_HEADERS | {name.lower() for name in credential_headers}
    return type(
        "ConfiguredMaskingAccessLogger",
        (MaskingAccessLogger,),
        {"secrets": kept, "credential_headers": headers},
    )


def masked_text(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` (a logged field: a URL, a header value) with every secret and the value of
    every credential-like query parameter replaced by ``***``.

    A secret hidden by percent-encoding (``%62ypass-token``, also encoded twice) masks the
    decoded text: the field is then logged decoded.  ``secrets`` come longest first
    (:func:`masking_access_logger`), so a secret containing another is masked whole.
    """
    masked = _without_secrets(text, secrets)
    decoded = masked
    for _ in range(_DECODINGS):
        if "%" not in decoded:
            break
        decoded = unquote(decoded)
        if any(secret in decoded for secret in secrets):
            masked = _without_secrets(decoded, secrets)
            break
    if "=" in masked:
        masked = _QUERY_PARAMETER.sub(_masked_parameter, masked)
    return masked


def _without_secrets(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _masked_parameter(match: re.Match[str]) -> str:
    name = match.group(1)
    if unquote(name).lower() in CREDENTIAL_QUERY_NAMES:
        return f"{name}={MASK}"
    return match.group(0)


def _masked(target: URL, secrets: tuple[str, ...]) -> URL:
    """``target`` with secrets masked, or ``target`` itself when there is nothing to mask."""
    path, query = target.path, target.query
    if not any(secret in path for secret in secrets) and not any(
        _is_credential(name, value, secrets) for name, value in query.items()
    ):
        return target
    for secret in secrets:
        path = path.replace(secret, MASK)
    masked_query = [
        (name, MASK if _is_credential(name, value, secrets) else value)
        for name, value in query.items()
    ]
    return URL.build(path=path, query=masked_query)


def _is_credential(name: str, value: str, secrets: tuple[str, ...]) -> bool:
    return name.lower() in CREDENTIAL_QUERY_NAMES or any(
        secret in text for secret in secrets for text in (name, value)
    )


_REASON_END = re.compile(r"[:'\"\n]")


class _MalformedRequestFilter(logging.Filter):
    """Rewrites aiohttp's report of a malformed request into one line without its bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        reason = _REASON_END.split(error.message or "", maxsplit=1)[0].strip(" .")
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
        record.msg = "refused a malformed request from %s: %s (%d)"
        record.args = (remote or "unknown", reason or type(error).__name__, error.code)
        record.exc_info = None
        record.exc_text = None
        if record.levelno > logging.INFO:
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


REQUEST_ERROR_LOG = logging.getLogger("aiohttp.server.requests")
"""The logger both servers use for errors handling requests (see the module docstring)."""
REQUEST_ERROR_LOG.addFilter(_MalformedRequestFilter())


def server_log_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``web.Server`` / ``web.AppRunner``: the loggers above."""
    bypass, management = settings.bypass, settings.management
    secrets = [
        secret.get_secret_value()
        for secret in (bypass.token, bypass.cookie_secret, management.admin_token)
        if secret is not None
    ]
    access_log = logging.getLogger("aiohttp.access") if settings.log.access_log else None
    return {
        "access_log": access_log,
        "access_log_class": masking_access_logger(secrets, credential_headers=[bypass.header_name]),
        "logger": REQUEST_ERROR_LOG,
    }
