"""``GET <MWM_STATUS__PREFIX>status`` on the public listener: a status document for frontends.

A banner or a status widget polls it to learn whether maintenance is on, why, until when,
and when the next scheduled window opens.  It is answered whether maintenance is on or not,
bypassed or not, and shows nothing the maintenance page or ``/services`` would not:

- ``active``, ``reason`` (the page's reason text), ``since``, ``until``: as on the page;
- ``retryAfter``: the page's ``Retry-After`` in seconds while maintenance is on and its end
  is unknown; ``null`` otherwise (when ``until`` is known the page sends that date instead);
- ``nextWindow``: the next scheduled window not yet open, ``{start, end, reason, announced,
  announceFrom}``, or null: ``announced`` is true from ``announceFrom`` (its start minus its
  ``announceSeconds``; null when it has none) until it opens;
- ``scope``: what maintenance stops, ``site`` (everything), ``readOnly`` (writes),
  ``routes`` (only ``routes``), ``readOnlyAndRoutes``, or null while it is off;
- ``routes``: the routes stopped, ``[{pathPrefix, methods, mode}]`` (``methods`` empty:
  every method; ``mode`` ``readOnly``: writes only); paths of the public site, so public;
  with ``MWM_PAGE__SHOW_SERVICES`` each names its ``services`` too;
- ``services`` (only with ``MWM_PAGE__SHOW_SERVICES``): ``[{name, ready}]``, every service
  when ``/services`` is public anyway, otherwise only the affected ones the page names.
  Never namespaces, endpoint counts, errors or probe details.

The document is built once per state generation (a window opening or closing and an
announcement starting are new generations, so ``nextWindow`` is never stale) and carries a
strong ``ETag``;
``Cache-Control: no-cache`` lets browsers and CDNs keep it but revalidate every time, a
cheap 304, so a change is seen on the next poll.

CORS (``MWM_STATUS__CORS_ORIGINS``): nothing unless configured; ``*`` answers
``Access-Control-Allow-Origin: *``, a list echoes a listed ``Origin`` exactly, with
``Vary: Origin`` on every answer.  No credentials are ever allowed: the document is the
same for everyone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import hdrs, web
from multidict import CIMultiDict

from controller.store import State
from controller.timefmt import rfc3339_or_none as iso
from proxy.pages import SERVER
from proxy.settings import Settings
from proxy.statusdocs import (
    JsonDocument,
    affected_routes,
    json_document,
    next_window,
    scope_name,
)

METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods answered at the status path; any other falls through like any path."""
PREFLIGHT_MAX_AGE_S = 600
_ALLOWED_METHODS = "GET, HEAD"


def build_public_status(state: State, *, now: datetime, settings: Settings) -> JsonDocument:
    """The public-safe status document for ``state`` at ``now`` (pure)."""
    maintenance = state.maintenance
    page = settings.page
    active = maintenance.active
    until = maintenance.until if active else None
    payload: dict[str, Any] = {
        "active": active,
        "reason": maintenance.reason if active else None,
        "since": iso(maintenance.since if active else None),
        "until": iso(until),
        "retryAfter": page.retry_after_s if active and (until is None or until <= now) else None,
        "nextWindow": next_window(state.upcoming),
        "scope": scope_name(maintenance),
        "routes": affected_routes(maintenance, services=page.show_services),
    }
    if page.show_services:
        payload["services"] = _services(state, every=settings.management.public_services_path)
    return json_document(payload)


def _services(state: State, *, every: str | None) -> list[dict[str, Any]]:
    """``[{name, ready}]``, one entry per name (ready only if every service of that name
    is).  Every service only when ``/services`` already lists them publicly (``every``);
    otherwise the affected services the page names."""
    if every is None:
        return [{"name": n, "ready": False} for n in state.maintenance.affected_services]
    ready: dict[str, bool] = {}
    for service in state.snapshot.services:
        ready[service.name] = ready.get(service.name, True) and service.ready
    return [{"name": name, "ready": value} for name, value in ready.items()]


@dataclass(frozen=True, slots=True)
class Cors:
    """Which browser origins may read the document (pure)."""

    origins: frozenset[str] = frozenset()
    any_origin: bool = False

    @classmethod
    def from_settings(cls, origins: Iterable[str]) -> Cors:
        listed = frozenset(o.lower() for o in origins)
        return cls(origins=listed - {"*"}, any_origin="*" in listed)

    def headers(self, origin: str | None) -> list[tuple[str, str]]:
        """The CORS headers of an answer to a request from ``origin``; none when unset."""
        if self.any_origin:
            return [("Access-Control-Allow-Origin", "*")]
        if not self.origins:
            return []
        headers: list[tuple[str, str]] = [("Vary", "Origin")]
        if origin is not None and origin.lower() in self.origins:
            headers.append(("Access-Control-Allow-Origin", origin))
        return headers

    def preflight(
        self, origin: str | None, method: str | None, *, allow_headers: str = "If-None-Match"
    ) -> list[tuple[str, str]]:
        """The headers of a preflight answer (``OPTIONS`` with
        ``Access-Control-Request-Method``): the method, ``GET`` or ``HEAD``, and the one
        request header a poller adds (``If-None-Match``; ``Last-Event-ID`` for the stream)
        are allowed for a listed origin."""
        headers = self.headers(origin)
        allowed = any(name == "Access-Control-Allow-Origin" for name, _ in headers)
        if allowed and method is not None and method.strip() in ("GET", "HEAD"):
            headers += [
                ("Access-Control-Allow-Methods", _ALLOWED_METHODS),
                ("Access-Control-Allow-Headers", allow_headers),
                ("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE_S)),
            ]
        return headers


class PublicStatus:
    """Answers the status path; keeps the document of the latest generation."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        prefix = settings.status.prefix
        self.path: str | None = None if prefix is None else prefix + "status"
        self._cors = Cors.from_settings(settings.status.cors_origins)
        self._generation = -1
        self._document: JsonDocument | None = None

    def document(self, state: State, now: datetime) -> JsonDocument:
        if state.generation != self._generation or self._document is None:
            self._document = build_public_status(state, now=now, settings=self._settings)
            self._generation = state.generation
        return self._document

    def options(
        self, request: web.BaseRequest, *, allow_headers: str = "If-None-Match"
    ) -> web.Response:
        """The answer to ``OPTIONS`` (a CORS preflight when it names a method)."""
        origin = request.headers.get(hdrs.ORIGIN)
        method = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD)
        headers: list[tuple[str, str]] = [
            (hdrs.ALLOW, "GET, HEAD, OPTIONS"),
            (hdrs.SERVER, SERVER),
        ]
        if method is not None:
            headers += self._cors.preflight(origin, method, allow_headers=allow_headers)
        else:
            headers += self._cors.headers(origin)
        return web.Response(status=204, headers=_multi(headers))

    def cors_headers(self, request: web.BaseRequest) -> list[tuple[str, str]]:
        """The CORS headers of a ``GET`` or ``HEAD`` answer to ``request``."""
        return self._cors.headers(request.headers.get(hdrs.ORIGIN))

    def respond(self, request: web.BaseRequest, state: State, now: datetime) -> web.Response:
        """The answer to ``GET``, ``HEAD`` or ``OPTIONS`` at :attr:`path`."""
        origin = request.headers.get(hdrs.ORIGIN)
        if request.method == "OPTIONS":
            return self.options(request)
        document = self.document(state, now)
        headers = [
            (str(hdrs.ETAG), document.etag),
            (hdrs.CACHE_CONTROL, "no-cache"),
            (hdrs.CONTENT_TYPE, "application/json"),
            ("X-Content-Type-Options", "nosniff"),
            (hdrs.SERVER, SERVER),
        ]
        cors = self._cors.headers(origin)
        if any(name == "Access-Control-Allow-Origin" for name, _ in cors):
            cors.append(("Access-Control-Expose-Headers", "ETag"))
        headers += cors
        if document.matches(request.headers.get(hdrs.IF_NONE_MATCH)):
            return web.Response(status=304, headers=_multi(headers))
        return web.Response(body=document.body, headers=_multi(headers))


def _multi(headers: list[tuple[str, str]]) -> CIMultiDict[str]:
    return CIMultiDict(headers)
