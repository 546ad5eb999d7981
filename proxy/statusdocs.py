"""The ``/services`` and ``/status`` JSON documents, built once per state generation.

``/services`` keeps the Go operator's shape exactly (``[{"name", "namespace", "ready",
"critical"}]``), but is ``[]`` rather than ``null`` when empty, lists each service
once and in a stable order.  ``/status`` is the aggregate: whether maintenance is on,
every cause, every service with endpoint counts and a reason, and the next scheduled
window (``nextWindow``: ``{start, end, reason, announced, announceFrom}`` or null, the
same object the public status document carries).

Scoped maintenance in ``/status``: each cause and each service has ``mode`` (``full`` or
``readOnly``) and ``routes`` (``[{pathPrefix, methods}]``, empty: the whole site;
``methods`` empty: every method); ``maintenance.scope`` says in one word what is stopped
(:func:`scope_name`: ``site``, ``readOnly``, ``routes``, ``readOnlyAndRoutes``, null when
off) and ``maintenance.affectedRoutes`` lists the routes stopped, ``[{pathPrefix, methods,
mode, services}]``.

``/status`` also lists (``windows``) every scheduled window the sources know,
``{start, end, reason}`` in the order they open, past ones included while a source still
lists them: the document changes per generation, not per second, so readers (the
dashboard) compare ``end`` with their clock.

Both carry a strong ``ETag`` derived from the body, so pollers can send
``If-None-Match`` and get a cheap 304.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from controller.snapshot import Cause, Maintenance, Mode, Route, ServiceState, Upcoming, Window
from controller.store import State
from controller.timefmt import rfc3339_or_none as iso


@dataclass(frozen=True, slots=True)
class JsonDocument:
    body: bytes
    etag: str

    def matches(self, if_none_match: str | None) -> bool:
        """True when an ``If-None-Match`` header names this document (RFC 9110 §13.1.2)."""
        if not if_none_match:
            return False
        if if_none_match.strip() == "*":
            return True
        candidates = (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
        return self.etag in candidates


def json_document(payload: Any) -> JsonDocument:
    """``payload`` as compact JSON with a strong ``ETag`` derived from the body."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    digest = hashlib.blake2b(body, digest_size=12).hexdigest()
    return JsonDocument(body=body, etag=f'"{digest}"')


def _service(state: ServiceState) -> dict[str, Any]:
    return {
        "name": state.name,
        "namespace": state.namespace,
        "critical": state.critical,
        "ready": state.ready,
        "readyEndpoints": state.ready_endpoints,
        "totalEndpoints": state.total_endpoints,
        "minReady": state.min_ready,
        "reason": str(state.reason),
        "lastTransitionTime": iso(state.last_transition),
        "stale": state.stale,
        "mode": str(state.mode),
        "routes": [route_document(r) for r in state.routes],
    }


def _cause(cause: Cause) -> dict[str, Any]:
    return {
        "kind": str(cause.kind),
        "reason": cause.reason,
        "since": iso(cause.since),
        "until": iso(cause.until),
        "services": list(cause.services),
        "mode": str(cause.mode),
        "routes": [route_document(r) for r in cause.routes],
    }


def route_document(route: Route) -> dict[str, Any]:
    """``{pathPrefix, methods}``: ``methods`` sorted, empty for every method."""
    return {"pathPrefix": route.path_prefix, "methods": sorted(route.methods)}


SCOPE_SITE = "site"
SCOPE_READ_ONLY = "readOnly"
SCOPE_ROUTES = "routes"
SCOPE_READ_ONLY_AND_ROUTES = "readOnlyAndRoutes"


def scope_name(maintenance: Maintenance) -> str | None:
    """What an active maintenance stops, in one word for frontends and ``mwm status``:

    - ``site``: every request (some cause is whole-site and full; routes and read-only
      causes then change nothing);
    - ``readOnly``: writes everywhere, reads pass;
    - ``routes``: only the requests ``affectedRoutes`` lists;
    - ``readOnlyAndRoutes``: writes everywhere and the listed routes;
    - None while maintenance is off."""
    if not maintenance.active:
        return None
    if maintenance.whole_site:
        return SCOPE_SITE
    read_only = any(not c.routes for c in maintenance.causes)
    routes = any(c.routes for c in maintenance.causes)
    if read_only and routes:
        return SCOPE_READ_ONLY_AND_ROUTES
    return SCOPE_READ_ONLY if read_only else SCOPE_ROUTES


def affected_routes(maintenance: Maintenance, *, services: bool) -> list[dict[str, Any]]:
    """``[{pathPrefix, methods, mode}]``, one entry per route and mode the causes stop (a
    ``full`` entry covers the reads of a ``readOnly`` one), in the order the causes name
    them; with ``services``, each also names the services whose outage stops it."""
    entries: dict[tuple[Route, Mode], list[str]] = {}
    for cause in maintenance.causes:
        for route in cause.routes:
            names = entries.setdefault((route, cause.mode), [])
            names.extend(n for n in cause.services if n not in names)
    documents = []
    for (route, mode), names in entries.items():
        document = route_document(route)
        document["mode"] = str(mode)
        if services:
            document["services"] = names
        documents.append(document)
    return documents


def next_window(upcoming: Upcoming | None) -> dict[str, Any] | None:
    """``nextWindow`` of the status documents: the next window not yet open, or None.

    ``announced`` is true from ``announceFrom`` (its start minus ``announceSeconds``) until
    it opens; ``announceFrom`` is null for a window that is never announced."""
    if upcoming is None:
        return None
    window = upcoming.window
    return {
        "start": iso(window.start),
        "end": iso(window.end),
        "reason": window.reason or DEFAULT_WINDOW_REASON,
        "announced": upcoming.announced,
        "announceFrom": iso(window.announce_from),
    }


DEFAULT_WINDOW_REASON = "Scheduled maintenance window"
"""A window's reason when it has none (the page says the same while it is open)."""


def sorted_windows(windows: Iterable[Window]) -> list[Window]:
    """Scheduled windows in the order they open."""
    return sorted(windows, key=lambda w: (w.start, w.end))


def _window(window: Window) -> dict[str, Any]:
    return {
        "start": iso(window.start),
        "end": iso(window.end),
        "reason": window.reason,
        "announceFrom": iso(window.announce_from),
    }


def build_services(state: State) -> JsonDocument:
    return json_document(
        [
            {"name": s.name, "namespace": s.namespace, "ready": s.ready, "critical": s.critical}
            for s in state.snapshot.services
        ]
    )


def build_status(state: State, *, draining: bool = False) -> JsonDocument:
    maintenance = state.maintenance
    return json_document(
        {
            "maintenance": {
                "active": maintenance.active,
                "reason": maintenance.reason,
                "since": iso(maintenance.since if maintenance.active else None),
                "until": iso(maintenance.until),
                "causes": [_cause(c) for c in maintenance.causes],
                "scope": scope_name(maintenance),
                "affectedRoutes": affected_routes(maintenance, services=True),
            },
            "synced": state.snapshot.synced,
            "draining": draining,
            "generation": state.generation,
            "lastChange": iso(state.changed_at),
            "services": [_service(s) for s in state.snapshot.services],
            "nextWindow": next_window(state.upcoming),
            "errors": list(state.snapshot.errors),
            "windows": [_window(w) for w in sorted_windows(state.snapshot.windows)],
        }
    )


class DocumentCache:
    """Keeps the documents of the latest generation; rebuilt only when it changes."""

    def __init__(self) -> None:
        self._generation = -1
        self._services: JsonDocument | None = None
        self._status: dict[bool, JsonDocument] = {}

    def services(self, state: State) -> JsonDocument:
        self._roll(state)
        if self._services is None:
            self._services = build_services(state)
        return self._services

    def status(self, state: State, *, draining: bool) -> JsonDocument:
        self._roll(state)
        document = self._status.get(draining)
        if document is None:
            document = self._status[draining] = build_status(state, draining=draining)
        return document

    def _roll(self, state: State) -> None:
        if state.generation != self._generation:
            self._generation = state.generation
            self._services = None
            self._status = {}
