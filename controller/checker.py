"""ServiceChecker custom resources, read from the API into typed, validated values.

The API server has already applied the CRD's schema (and pruned unknown fields), but a
controller must not trust that: the CRD may be older or newer than this code, or
installed without validation.  So every object is parsed again here; one that does not
parse is reported (in the log, the ``/status`` errors and the resource's own status
condition) and its last good version is kept, so a bad edit never changes traffic.

Seed resources (``spec.services[]`` with ``name``, ``namespace``, ``critical``) parse
unchanged; an empty or missing service namespace means the resource's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from controller.localspec import (
    MAX_SERVICES,
    MAX_WINDOWS,
    MaintenanceSpec,
    NamespaceOrEmpty,
    ServiceName,
    ServiceScopeSpec,
    SpecModel,
    WindowSpec,
    describe_problems,
    routes_of,
)
from controller.snapshot import Mode, Route
from controller.timefmt import TimeFormatError, parse_rfc3339

DEFAULT_ENTER_DELAY_S = 5
"""A critical service must stay without enough ready endpoints this long before
maintenance starts: a rolling restart's blip should not flip the site."""
DEFAULT_EXIT_DELAY_S = 10
"""It must stay ready this long before maintenance ends: a flapping service should not
flap the site."""


class _Lenient(SpecModel):
    # Fields a newer CRD adds must not break an older controller: ignore, don't reject.
    model_config = ConfigDict(extra="ignore")


class CheckedService(ServiceScopeSpec):
    """One service, found by name and namespace."""

    # Fields a newer CRD adds must not break an older controller: ignore, don't reject.
    model_config = ConfigDict(extra="ignore")

    name: ServiceName
    """Name of the Service (a DNS-1123 label)."""
    namespace: NamespaceOrEmpty = ""
    """Namespace of the Service. Empty or missing means this ServiceChecker's own namespace.
    A service in another namespace needs the controller's endpoint-reader ClusterRole bound
    in that namespace."""
    critical: bool = False
    """Whether the site goes into maintenance when this service has fewer than minReady
    ready endpoints (the whole site, or only its routes when it lists some). A non-critical
    service is only reported."""
    min_ready: int = Field(default=1, ge=1)
    """Ready endpoints (pods) the service needs to count as ready. The default, 1, is the
    seed's rule: any ready endpoint will do."""


class CheckerSpecModel(_Lenient):
    """What to watch and when to be in maintenance. Written by people; never by the
    controller."""

    services: tuple[CheckedService, ...] = Field(default=(), max_length=MAX_SERVICES)
    """The services the site depends on. An empty list watches nothing: only the manual
    switch and the windows can then put the site in maintenance. A service listed twice
    (or by several ServiceCheckers) is watched once, with the stricter reading of each
    field."""
    maintenance: MaintenanceSpec | None = None
    """The manual switch, for planned work (`mwm on` / `mwm off` patch it)."""
    windows: tuple[WindowSpec, ...] = Field(default=(), max_length=MAX_WINDOWS)
    """Scheduled maintenance windows; each is open from start (inclusive) to end
    (exclusive)."""
    enter_delay_seconds: int = Field(default=DEFAULT_ENTER_DELAY_S, ge=0, le=3600)
    """How long a critical service must stay without enough ready endpoints before
    maintenance starts, so the short gap of a rolling restart does not flip the site into
    maintenance. 0 reacts at once."""
    exit_delay_seconds: int = Field(default=DEFAULT_EXIT_DELAY_S, ge=0, le=3600)
    """How long every critical service must stay ready before maintenance ends, so a
    flapping service does not flap the site in and out of maintenance. 0 reacts at once."""


@dataclass(frozen=True, slots=True)
class ServiceRef:
    namespace: str
    name: str
    critical: bool
    min_ready: int
    routes: tuple[Route, ...] = ()
    """Empty: the whole site."""
    mode: Mode = Mode.FULL
    hold_seconds: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def merged(self, other: ServiceRef) -> ServiceRef:
        """The same service named twice: the stricter reading of each field wins -- critical
        if either is, the larger minReady, the whole site if either has no routes (else
        every route of both), full if either is, the shorter hold."""
        if not self.routes or not other.routes:
            routes: tuple[Route, ...] = ()
        else:
            routes = tuple(dict.fromkeys((*self.routes, *other.routes)))
        holds = [h for h in (self.hold_seconds, other.hold_seconds) if h is not None]
        return ServiceRef(
            namespace=self.namespace,
            name=self.name,
            critical=self.critical or other.critical,
            min_ready=max(self.min_ready, other.min_ready),
            routes=routes,
            mode=Mode.FULL if Mode.FULL in (self.mode, other.mode) else Mode.READ_ONLY,
            hold_seconds=min(holds) if holds else None,
        )


@dataclass(frozen=True, slots=True)
class Checker:
    """One parsed ServiceChecker."""

    namespace: str
    name: str
    uid: str
    generation: int
    services: tuple[ServiceRef, ...]
    maintenance: MaintenanceSpec | None
    windows: tuple[WindowSpec, ...]
    enter_delay_s: float
    exit_delay_s: float
    created: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def switch_source(self) -> str:
        """The name of this resource's manual switch in the snapshot."""
        return f"servicechecker/{self.namespace}/{self.name}"


class CheckerError(Exception):
    """A ServiceChecker that cannot be used; ``problems`` says why, field by field."""

    def __init__(self, namespace: str, name: str, problems: list[str]) -> None:
        super().__init__(f"ServiceChecker {namespace}/{name}: " + "; ".join(problems))
        self.problems = problems


def parse_checker(obj: Mapping[str, Any]) -> Checker:
    """Parse a ServiceChecker object as the API returns it; raise :class:`CheckerError`."""
    metadata = obj.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    name = str(metadata.get("name") or "")
    try:
        spec = CheckerSpecModel.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        problems = [f"spec.{p}" for p in describe_problems(exc)]
        raise CheckerError(namespace, name, problems) from None
    services: dict[tuple[str, str], ServiceRef] = {}
    for service in spec.services:
        ref = ServiceRef(
            namespace=service.namespace or namespace,
            name=service.name,
            critical=service.critical,
            min_ready=service.min_ready,
            routes=routes_of(service.routes),
            mode=service.mode,
            hold_seconds=None if service.hold_seconds is None else float(service.hold_seconds),
        )
        previous = services.get(ref.key)
        if previous is not None:  # listed twice: the stricter reading wins
            ref = previous.merged(ref)
        services[ref.key] = ref
    created: datetime | None = None
    with contextlib.suppress(TimeFormatError):  # the API server's own, always RFC 3339
        created = parse_rfc3339(str(metadata.get("creationTimestamp") or ""))
    return Checker(
        namespace=namespace,
        name=name,
        uid=str(metadata.get("uid") or ""),
        generation=int(metadata.get("generation") or 0),
        services=tuple(services[key] for key in sorted(services)),
        maintenance=spec.maintenance,
        windows=spec.windows,
        enter_delay_s=float(spec.enter_delay_seconds),
        exit_delay_s=float(spec.exit_delay_seconds),
        created=created,
    )
