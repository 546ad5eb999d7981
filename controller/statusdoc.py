"""What a ServiceChecker's ``status`` should say: a pure function of what is known.

Kept apart from the writer so the document can be table-tested without an API.  The
shape keeps the seed's ``serviceStatuses[].{name, namespace, ready}`` and adds counts,
reasons, an aggregate ``maintenance`` block, a ``summary`` for the printer column,
standard ``conditions`` and ``observedGeneration``.

Each resource reports maintenance as *it* sees it: its own services (critical as it
marks them), its own switch and windows, plus the ConfigMap switch that applies to all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from controller.checker import Checker
from controller.snapshot import (
    Maintenance,
    ManualSwitch,
    ServiceReason,
    ServiceState,
    Snapshot,
    Window,
)
from controller.timefmt import rfc3339_or_none

JsonObject = dict[str, Any]

CONDITION_MAINTENANCE = "Maintenance"
CONDITION_VALID = "Valid"
CONDITION_SYNCED = "Synced"

SCOPE_SITE = "Site"
"""``status.maintenance.scope``: every request gets the page."""
SCOPE_READ_ONLY = "ReadOnly"
"""Writes anywhere get the page; reads are served (except on routes a down service stops)."""
SCOPE_ROUTES = "Routes"
"""Only the routes of down services (see ``serviceStatuses[].affectedRoutes``)."""


def iso(instant: datetime | None) -> str | None:
    """A time in the status (:func:`controller.timefmt.rfc3339_or_none`: UTC, ``Z``, whole
    seconds, as ``metav1.Time``), or None."""
    return rfc3339_or_none(instant)


def _stopping(state: ServiceState) -> bool:
    """Whether this service's outage stops traffic now, as :meth:`Snapshot.evaluate` has it:
    seen, not ready, and critical or naming the routes that need it."""
    if state.ready or state.reason is ServiceReason.UNKNOWN:
        return False
    return state.critical or bool(state.routes)


def affected_routes(state: ServiceState) -> list[str]:
    """The route prefixes this service's outage stops now, in spec order; empty when it
    stops nothing or, having no routes, the whole site."""
    if not _stopping(state):
        return []
    return list(dict.fromkeys(route.path_prefix for route in state.routes))


ROUTES_COLUMN_CHARS = 512
"""The schema's bound on ``summary.affectedRoutes``."""


def routes_column(states: Sequence[ServiceState]) -> str | None:
    """``/checkout, /api/payments``: every route prefix stopped now, once each, for kubectl's
    Routes column; cut with an ellipsis at the schema's bound; None (the merge patch removes
    the field) when no route is stopped."""
    prefixes = dict.fromkeys(p for state in states for p in affected_routes(state))
    text = ", ".join(prefixes)
    if len(text) > ROUTES_COLUMN_CHARS:
        text = text[: ROUTES_COLUMN_CHARS - 1] + "\u2026"
    return text or None


def maintenance_scope(verdict: Maintenance) -> str | None:
    """How much of the site the verdict stops: :data:`SCOPE_SITE` when a cause stops every
    request, else :data:`SCOPE_READ_ONLY` when one stops every write, else
    :data:`SCOPE_ROUTES` when only routes of down services are stopped; None when off."""
    if not verdict.active:
        return None
    if verdict.whole_site:
        return SCOPE_SITE
    if any(not cause.routes for cause in verdict.causes):
        return SCOPE_READ_ONLY
    return SCOPE_ROUTES


def _service_status(ref_critical: bool, state: ServiceState) -> JsonObject:
    return {
        "name": state.name,
        "namespace": state.namespace,
        "ready": state.ready,
        "critical": ref_critical,
        "readyEndpoints": state.ready_endpoints,
        "totalEndpoints": state.total_endpoints,
        "minReady": state.min_ready,
        "reason": str(state.reason),
        "lastTransitionTime": iso(state.last_transition),
        "stale": state.stale,
        "affectedRoutes": affected_routes(state),
    }


def _condition(
    kind: str,
    status: str,
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime,
    previous: Sequence[Mapping[str, Any]],
) -> JsonObject:
    """A metav1.Condition; ``lastTransitionTime`` moves only when ``status`` changes."""
    transition = iso(now)
    for old in previous:
        if old.get("type") == kind and old.get("status") == status:
            transition = old.get("lastTransitionTime") or transition
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message[:32768],
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    }


def desired_status(
    checker: Checker | None,
    *,
    generation: int,
    problems: Sequence[str],
    services: Mapping[tuple[str, str], ServiceState],
    shared_switches: Sequence[ManualSwitch],
    switch: ManualSwitch | None,
    watch_errors: Sequence[str],
    synced: bool,
    previous: Mapping[str, Any],
    now: datetime,
    denied_namespaces: Sequence[str] = (),
) -> JsonObject:
    """The full ``status`` for one resource.  ``checker`` is its last good parse (None if
    it never parsed); ``previous`` is the status currently stored (for transition times);
    ``watch_errors`` and ``denied_namespaces`` are those that concern this resource."""
    previous_conditions = previous.get("conditions") or []
    statuses: list[JsonObject] = []
    own_states: list[ServiceState] = []
    windows: tuple[Window, ...] = ()
    if checker is not None:
        for ref in checker.services:
            state = services.get(ref.key)
            if state is None:
                continue
            own = ServiceState(
                name=state.name,
                namespace=state.namespace,
                critical=ref.critical,
                ready_endpoints=state.ready_endpoints,
                total_endpoints=state.total_endpoints,
                reason=state.reason,
                min_ready=ref.min_ready,
                last_transition=state.last_transition,
                stale=state.stale,
                routes=ref.routes,
                mode=ref.mode,
                hold_seconds=ref.hold_seconds,
            )
            own_states.append(own)
            statuses.append(_service_status(ref.critical, own))
        windows = tuple(
            Window(start=w.start, end=w.end, reason=w.reason, mode=w.mode) for w in checker.windows
        )
    switches = (*shared_switches, *((switch,) if switch else ()))
    verdict = Snapshot(services=tuple(own_states), switches=switches, windows=windows).evaluate(now)
    critical = [s for s in own_states if s.critical]
    ready_critical = sum(1 for s in critical if s.ready)

    def condition(kind: str, status: str, reason: str, message: str) -> JsonObject:
        return _condition(
            kind,
            status,
            reason,
            message,
            generation=generation,
            now=now,
            previous=previous_conditions,
        )

    conditions = [
        condition(
            CONDITION_MAINTENANCE,
            "True" if verdict.active else "False",
            str(verdict.causes[0].kind) if verdict.causes else "NoMaintenance",
            verdict.reason or "No maintenance: every critical service is ready.",
        ),
        condition(
            CONDITION_VALID,
            "False" if problems else "True",
            "InvalidSpec" if problems else "SpecValid",
            "; ".join(problems)
            + ("; the last valid spec is in force" if problems and checker else "")
            if problems
            else "The spec is valid.",
        ),
        condition(
            CONDITION_SYNCED,
            ("False" if watch_errors else "True") if synced else "Unknown",
            _synced_reason(synced=synced, errors=watch_errors, denied=denied_namespaces),
            "; ".join(watch_errors)
            if watch_errors
            else ("Watches are healthy." if synced else "Waiting for the first list."),
        ),
    ]
    return {
        "observedGeneration": generation,
        "serviceStatuses": statuses,
        "maintenance": {
            "active": verdict.active,
            "reason": verdict.reason,
            "since": iso(verdict.since) if verdict.active else None,
            "until": iso(verdict.until),
            "scope": (maintenance_scope(verdict)),
        },
        "summary": {
            "readyCritical": f"{ready_critical}/{len(critical)}",
            "affectedRoutes": routes_column(own_states),
        },
        "conditions": conditions,
    }


SYNCED_ACCESS_DENIED = "AccessDenied"
"""The ``Synced`` reason when the API refuses to show a namespace this resource names."""


def _synced_reason(*, synced: bool, errors: Sequence[str], denied: Sequence[str]) -> str:
    if not synced:
        return "Syncing"
    if denied:
        return SYNCED_ACCESS_DENIED
    return "WatchFailing" if errors else "WatchesHealthy"
