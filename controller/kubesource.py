"""The in-cluster state source: ServiceCheckers and the endpoints of what they name.

What is watched, and nothing more:

- the ServiceCheckers this proxy honours (its namespace; optionally only some names or a
  label selector);
- for every namespace those resources reference, the EndpointSlices of exactly the
  named services (label selector ``kubernetes.io/service-name in (...)``) and the
  Services themselves (to tell a missing service from an empty one; one name: a field
  selector, several: the namespace's services);
- optionally one ConfigMap whose ``MAINTENANCE_MODE`` key switches maintenance.

Every watch is a :class:`~controller.watching.Reflector`.  Whenever one of them changes,
the whole picture is rebuilt (it is small: at most a few hundred services) and published
as one snapshot.  Watches of referenced namespaces are opened, narrowed or closed as
ServiceCheckers change.

Rules that keep traffic safe:

- until everything has been listed once there is no state to keep: the ``fail_safe``
  setting decides (``serve``, the default, or ``maintenance``, see :func:`fail_safe_switch`);
- a service is ``Unknown`` until its namespace's watches have listed once; ``Unknown``
  never starts maintenance;
- a namespace the API refuses to list (403, 404: no RBAC binding there) counts as read for
  readiness: its services stay ``Unknown``, the problem is reported (``/status``, the
  ``Synced`` condition, an Event), and the watches keep retrying until the binding exists;
- a failing watch keeps its last state; after ``stale_after_s`` the services it covers
  are marked stale (shown in ``/status`` and the resource's conditions), never not-ready;
- a ServiceChecker that does not parse keeps its last good version, and its problem is
  reported; a new one that never parsed contributes nothing;
- readiness changes pass through the resource's enter/exit delays (hysteresis) before
  they count, except for the first observation after start-up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from controller.checker import Checker, CheckerError, ServiceRef, parse_checker
from controller.endpoints import SERVICE_NAME_LABEL, count_endpoints, service_of
from controller.kube import (
    CONFIGMAPS,
    ENDPOINTSLICES,
    SERVICECHECKERS,
    SERVICES,
    JsonObject,
    KubeApi,
)
from controller.settings import FailSafe, KubernetesSourceSettings
from controller.snapshot import (
    ManualSwitch,
    Mode,
    ServiceReason,
    ServiceState,
    Window,
)
from controller.store import SnapshotStore, utc_now
from controller.watching import Reflector, WatchTimings

log = logging.getLogger(__name__)

SWITCH_PREFIXES = ("servicechecker/", "configmap/", "failsafe/")
"""Switch sources this module owns in the snapshot (others, e.g. the admin API, are kept)."""

FAIL_SAFE_SOURCE = "failsafe/kubernetes"
FAIL_SAFE_REASON = "Temporarily unavailable while the maintenance state is being read"


def fail_safe_switch(settings: KubernetesSourceSettings) -> ManualSwitch | None:
    """The switch holding maintenance on while no state was ever read, if the settings ask for
    it (``fail_safe=maintenance``); it goes with the first complete sync, never to return."""
    if settings.fail_safe is not FailSafe.MAINTENANCE:
        return None
    return ManualSwitch(source=FAIL_SAFE_SOURCE, enabled=True, reason=FAIL_SAFE_REASON)


@dataclass
class _NamespaceWatch:
    names: frozenset[str]
    slices: Reflector
    services: Reflector
    tasks: list[asyncio.Task[None]]


@dataclass
class _Debounced:
    """The published state of one service and a pending readiness change, if any."""

    state: ServiceState
    pending_since: float | None = None


class KubernetesSource:
    """Feeds the store from the Kubernetes API; run :meth:`run` as a task."""

    def __init__(
        self,
        settings: KubernetesSourceSettings,
        store: SnapshotStore,
        api: KubeApi,
        *,
        namespace: str,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.store = store
        self.api = api
        self.namespace = namespace
        self._monotonic = monotonic
        self._clock = clock
        self.synced = asyncio.Event()
        self.timings = WatchTimings(
            watch_timeout_s=settings.watch_timeout_s,
            inactivity_timeout_s=settings.inactivity_timeout_s,
            backoff_initial_s=settings.backoff_initial_s,
            backoff_max_s=settings.backoff_max_s,
        )
        names = settings.checker_names
        self.checker_reflector = Reflector(
            api,
            SERVICECHECKERS,
            namespace=namespace,
            label_selector=settings.checker_label_selector,
            field_selector=f"metadata.name={names[0]}" if len(names) == 1 else None,
            timings=self.timings,
            on_change=self._changed,
        )
        self.configmap_reflector: Reflector | None = None
        if settings.configmap_name:
            self.configmap_reflector = Reflector(
                api,
                CONFIGMAPS,
                namespace=namespace,
                field_selector=f"metadata.name={settings.configmap_name}",
                timings=self.timings,
                on_change=self._changed,
            )
        self.checkers: dict[tuple[str, str], Checker] = {}
        """Last good parse of every honoured ServiceChecker."""
        self.checker_problems: dict[tuple[str, str], list[str]] = {}
        self._namespaces: dict[str, _NamespaceWatch] = {}
        self._debounced: dict[tuple[str, str], _Debounced] = {}
        self._switch_since: dict[str, datetime] = {}
        self._configmap_switch: ManualSwitch | None = None
        self._configmap_problem: str | None = None
        self._wake = asyncio.Event()
        self._task_group: asyncio.TaskGroup | None = None
        self._checkers_seen: tuple[object, ...] | None = None
        self._slices_by_service: dict[tuple[str, str], list[JsonObject]] = {}
        self.revision = 0
        """Increases whenever anything watched changed (the status writer waits on it)."""
        self._revised = asyncio.Event()

    # -- running -------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._task_group = group
                group.create_task(self.checker_reflector.run(), name="watch-servicecheckers")
                if self.configmap_reflector is not None:
                    group.create_task(self.configmap_reflector.run(), name="watch-configmap")
                group.create_task(self._timers(), name="kubernetes-source-timers")
        finally:
            self._task_group = None
            for watch in self._namespaces.values():
                for task in watch.tasks:
                    task.cancel()

    async def _timers(self) -> None:
        """Rebuild when a hysteresis delay or the stale deadline passes."""
        while True:
            deadline = self._next_deadline()
            self._wake.clear()
            timeout = None if deadline is None else max(deadline - self._monotonic(), 0.0)
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that arrives as the wait completes, and this loop would then
                # never stop (seen as a shutdown that hangs under load).
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                self._rebuild()

    def _next_deadline(self) -> float | None:
        deadlines = []
        for key, entry in self._debounced.items():
            if entry.pending_since is not None:
                enter_s, exit_s = self._delays(key)
                delay = exit_s if not entry.state.ready else enter_s
                deadlines.append(entry.pending_since + delay)
        for reflector in self._reflectors():
            if reflector.failing_since is not None:
                stale_at = reflector.failing_since + self.settings.stale_after_s
                if stale_at > self._monotonic():
                    deadlines.append(stale_at)
        return min(deadlines) if deadlines else None

    def _reflectors(self, namespaces: Iterable[str] | None = None) -> Iterable[Reflector]:
        """Every watch, or the shared ones and those of ``namespaces``."""
        yield self.checker_reflector
        if self.configmap_reflector is not None:
            yield self.configmap_reflector
        wanted = None if namespaces is None else set(namespaces)
        for namespace, watch in sorted(self._namespaces.items()):
            if wanted is None or namespace in wanted:
                yield watch.slices
                yield watch.services

    def _changed(self, reflector: Reflector) -> None:
        if reflector is self.checker_reflector:
            fingerprint = self._checker_fingerprint()
            if fingerprint == self._checkers_seen:
                # Only status or metadata changed (our own status writes come back this
                # way): nothing to re-read, but the writer may want to compare again.
                self._bump_revision()
                return
            self._checkers_seen = fingerprint
            self._read_checkers()
            self._reconcile_namespaces()
        elif reflector is self.configmap_reflector:
            self._read_configmap()
        self._rebuild()
        self._wake.set()

    def _checker_fingerprint(self) -> tuple[object, ...]:
        """What a ServiceChecker change must alter to matter here: which objects are
        honoured, their spec's generation (status writes leave both alone), and the
        watch's health."""
        reflector = self.checker_reflector
        objects = frozenset(
            (key, (obj.get("metadata") or {}).get("uid"), _generation(obj))
            for key, obj in self.honoured_objects().items()
        )
        return (objects, reflector.synced, reflector.failing_since)

    async def wait_for_revision(self, revision: int) -> int:
        while self.revision <= revision:
            await self._revised.wait()
        return self.revision

    def honoured_objects(self) -> dict[tuple[str, str], JsonObject]:
        """The raw ServiceChecker objects this proxy honours, by (namespace, name)."""
        wanted = set(self.settings.checker_names)
        objects = {}
        for obj in self.checker_reflector.objects.values():
            metadata = obj.get("metadata") or {}
            key = (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
            if not wanted or key[1] in wanted:
                objects[key] = obj
        return objects

    def pending_changes(self) -> dict[tuple[str, str], float]:
        """Services whose readiness changed but waits out its delay: seconds waited so far."""
        now = self._monotonic()
        return {
            key: now - entry.pending_since
            for key, entry in self._debounced.items()
            if entry.pending_since is not None
        }

    def watch_errors(self, namespaces: Iterable[str] | None = None) -> list[str]:
        """What is wrong with the watches, for ``/status`` and the ``Synced`` condition: all
        of them, or (``namespaces``) the ServiceChecker and ConfigMap watches and those of
        the given namespaces only."""
        errors = []
        for reflector in self._reflectors(namespaces):
            if reflector.denied is not None and not reflector.synced:
                errors.append(
                    f"cannot read {reflector.resource.plural} in namespace "
                    f"{reflector.namespace}: {reflector.denied}; its services stay Unknown "
                    "until the controller may list and watch there (bind the "
                    "mwm-endpoint-reader ClusterRole in that namespace)"
                )
            elif reflector.failing_since is not None and reflector.last_error:
                errors.append(f"watching {reflector.description}: {reflector.last_error}")
        return errors

    def denied_namespaces(self, namespaces: Iterable[str] | None = None) -> list[str]:
        """Referenced namespaces the API refuses to let this controller read."""
        wanted = None if namespaces is None else set(namespaces)
        return sorted(
            namespace
            for namespace, watch in self._namespaces.items()
            if (wanted is None or namespace in wanted)
            and any(r.denied is not None and not r.synced for r in (watch.slices, watch.services))
        )

    # -- reading the watched objects -----------------------------------------------------

    def _read_checkers(self) -> None:
        seen: set[tuple[str, str]] = set()
        for key, obj in self.honoured_objects().items():
            seen.add(key)
            try:
                checker = parse_checker(obj)
            except CheckerError as exc:
                if self.checker_problems.get(key) != exc.problems:
                    log.error("invalid ServiceChecker, keeping its last good version: %s", exc)
                self.checker_problems[key] = exc.problems
                continue
            self.checker_problems.pop(key, None)
            self.checkers[key] = checker
        for key in list(self.checkers):
            if key not in seen:
                del self.checkers[key]
        for key in list(self.checker_problems):
            if key not in seen:
                del self.checker_problems[key]

    def _read_configmap(self) -> None:
        assert self.configmap_reflector is not None
        name = self.settings.configmap_name
        source = f"configmap/{self.namespace}/{name}"
        objects = list(self.configmap_reflector.objects.values())
        data = (objects[0].get("data") or {}) if objects else {}
        raw = data.get(self.settings.configmap_key)
        value = str(raw).strip().lower() if raw is not None else "false"
        if value not in ("true", "false", "readonly"):
            problem = (
                f"ConfigMap {self.namespace}/{name}: {self.settings.configmap_key} must be "
                f'"true", "false" or "readOnly", got {raw!r}; keeping the last valid value'
            )
            if problem != self._configmap_problem:
                log.error(problem)
            self._configmap_problem = problem
            return
        self._configmap_problem = None
        enabled = value != "false"
        reason = data.get("MAINTENANCE_REASON") or f"Switched on in ConfigMap {name}"
        self._configmap_switch = ManualSwitch(
            source=source,
            enabled=enabled,
            reason=str(reason) if enabled else None,
            since=self._since(source, enabled),
            mode=Mode.READ_ONLY if value == "readonly" else Mode.FULL,
        )

    def _since(self, source: str, enabled: bool) -> datetime | None:
        if not enabled:
            self._switch_since.pop(source, None)
            return None
        return self._switch_since.setdefault(source, self._clock())

    def _referenced(self) -> dict[str, frozenset[str]]:
        names: dict[str, set[str]] = {}
        for checker in self.checkers.values():
            for ref in checker.services:
                names.setdefault(ref.namespace, set()).add(ref.name)
        return {namespace: frozenset(n) for namespace, n in names.items()}

    def _reconcile_namespaces(self) -> None:
        """Open, narrow or close the per-namespace watches to match the references."""
        wanted = self._referenced()
        for namespace in list(self._namespaces):
            watch = self._namespaces[namespace]
            if wanted.get(namespace) != watch.names:
                for task in watch.tasks:
                    task.cancel()
                del self._namespaces[namespace]
        for namespace, names in wanted.items():
            if namespace not in self._namespaces:
                self._namespaces[namespace] = self._open_namespace(namespace, names)

    def _open_namespace(self, namespace: str, names: frozenset[str]) -> _NamespaceWatch:
        ordered = sorted(names)
        slices = Reflector(
            self.api,
            ENDPOINTSLICES,
            namespace=namespace,
            label_selector=f"{SERVICE_NAME_LABEL} in ({','.join(ordered)})",
            timings=self.timings,
            on_change=self._changed,
        )
        services = Reflector(
            self.api,
            SERVICES,
            namespace=namespace,
            field_selector=f"metadata.name={ordered[0]}" if len(ordered) == 1 else None,
            timings=self.timings,
            on_change=self._changed,
        )
        tasks = []
        if self._task_group is not None:
            tasks = [
                self._task_group.create_task(
                    slices.run(), name=f"watch-endpointslices-{namespace}"
                ),
                self._task_group.create_task(services.run(), name=f"watch-services-{namespace}"),
            ]
        return _NamespaceWatch(names=names, slices=slices, services=services, tasks=tasks)

    # -- building the snapshot -----------------------------------------------------------

    def _delays(self, key: tuple[str, str]) -> tuple[float, float]:
        """(enter, exit) delays of a service: the quickest enter and the slowest exit among
        the resources that name it critical (or all that name it, if none does)."""
        enters, exits = [], []
        for checker in self.checkers.values():
            for ref in checker.services:
                if ref.key == key:
                    enters.append(checker.enter_delay_s)
                    exits.append(checker.exit_delay_s)
        if not enters:
            return (0.0, 0.0)
        return (min(enters), max(exits))

    def _observe(
        self, namespace: str, name: str, *, critical: bool, min_ready: int
    ) -> ServiceState:
        """What the watches say about one service right now (before hysteresis)."""
        watch = self._namespaces.get(namespace)
        if watch is None or not (watch.slices.synced and watch.services.synced):
            return ServiceState(
                name=name,
                namespace=namespace,
                critical=critical,
                ready_endpoints=0,
                total_endpoints=0,
                reason=ServiceReason.UNKNOWN,
                min_ready=min_ready,
            )
        stale = self._is_stale(watch.slices) or self._is_stale(watch.services)
        slices = self._slices_by_service.get((namespace, name), [])
        exists = f"{namespace}/{name}" in watch.services.objects
        count = count_endpoints(slices)
        if not exists and not slices:
            reason = ServiceReason.SERVICE_NOT_FOUND
        elif count.ready >= min_ready:
            reason = ServiceReason.READY
        else:
            reason = ServiceReason.NO_READY_ENDPOINTS
        return ServiceState(
            name=name,
            namespace=namespace,
            critical=critical,
            ready_endpoints=count.ready,
            total_endpoints=count.total,
            reason=reason,
            min_ready=min_ready,
            stale=stale,
        )

    def _is_stale(self, reflector: Reflector) -> bool:
        since = reflector.failing_since
        return since is not None and self._monotonic() - since >= self.settings.stale_after_s

    def _debounce(self, observed: ServiceState) -> ServiceState:
        key = observed.key
        now = self._monotonic()
        entry = self._debounced.get(key)
        if entry is None or entry.state.reason is ServiceReason.UNKNOWN:
            # First sight (or first real sight): nothing to smooth yet.
            state = dataclasses.replace(observed, last_transition=self._clock())
            self._debounced[key] = _Debounced(state=state)
            return state
        published = entry.state
        if observed.reason is ServiceReason.UNKNOWN:
            # Lost sight (its namespace's watches are being reopened): keep the last view.
            entry.pending_since = None
            entry.state = dataclasses.replace(
                published, critical=observed.critical, min_ready=observed.min_ready
            )
            return entry.state
        if observed.ready == published.ready:
            entry.pending_since = None
            entry.state = dataclasses.replace(observed, last_transition=published.last_transition)
            return entry.state
        enter_s, exit_s = self._delays(key)
        delay = exit_s if observed.ready else enter_s
        if entry.pending_since is None:
            entry.pending_since = now
        if now - entry.pending_since < delay:
            return dataclasses.replace(
                published, critical=observed.critical, min_ready=observed.min_ready
            )
        entry.pending_since = None
        entry.state = dataclasses.replace(observed, last_transition=self._clock())
        return entry.state

    def build_services(self) -> tuple[ServiceState, ...]:
        # Group every slice by its service once, so each service's lookup is O(1).
        by_service: dict[tuple[str, str], list[JsonObject]] = {}
        for watch in self._namespaces.values():
            for endpoint_slice in watch.slices.objects.values():
                owner = service_of(endpoint_slice)
                if owner is not None:
                    by_service.setdefault(owner, []).append(endpoint_slice)
        self._slices_by_service = by_service
        refs: dict[tuple[str, str], ServiceRef] = {}
        for checker in sorted(self.checkers.values(), key=lambda c: c.key):
            for ref in checker.services:
                previous = refs.get(ref.key)
                refs[ref.key] = ref if previous is None else previous.merged(ref)
        states = []
        for (namespace, name), ref in sorted(refs.items()):
            observed = self._observe(
                namespace, name, critical=ref.critical, min_ready=ref.min_ready
            )
            # What its outage stops is the spec's, never smoothed: only readiness is.
            states.append(
                dataclasses.replace(
                    self._debounce(observed),
                    routes=ref.routes,
                    mode=ref.mode,
                    hold_seconds=ref.hold_seconds,
                )
            )
        for key in list(self._debounced):
            if key not in refs:
                del self._debounced[key]
        return tuple(states)

    def _switches(self) -> list[ManualSwitch]:
        switches = []
        for checker in sorted(self.checkers.values(), key=lambda c: c.key):
            spec = checker.maintenance
            enabled = bool(spec and spec.enabled)
            switches.append(
                ManualSwitch(
                    source=checker.switch_source,
                    enabled=enabled,
                    reason=spec.reason if spec else None,
                    until=spec.until if spec else None,
                    since=self._since(checker.switch_source, enabled),
                    mode=spec.mode if spec else Mode.FULL,
                )
            )
        if self._configmap_switch is not None:
            switches.append(self._configmap_switch)
        return switches

    def _errors(self) -> list[str]:
        errors: list[str] = []
        for (namespace, name), problems in sorted(self.checker_problems.items()):
            errors.extend(f"ServiceChecker {namespace}/{name}: {p}" for p in problems)
        if self._configmap_problem:
            errors.append(self._configmap_problem)
        errors.extend(self.watch_errors())
        return errors

    def _is_synced(self) -> bool:
        if not self.checker_reflector.synced:
            return False
        if self.configmap_reflector is not None and not self.configmap_reflector.synced:
            return False
        # A namespace the API refuses to show (no RBAC binding there) counts as read: its
        # services are Unknown, which never starts maintenance, and readiness must not wait
        # for an operator to fix a binding.
        return all(w.slices.completed and w.services.completed for w in self._namespaces.values())

    def _rebuild(self) -> None:
        services = self.build_services()
        windows = tuple(
            Window(
                start=w.start,
                end=w.end,
                reason=w.reason,
                announce_seconds=w.announce_seconds,
                mode=w.mode,
            )
            for checker in sorted(self.checkers.values(), key=lambda c: c.key)
            for w in checker.windows
        )
        switches = self._switches()
        errors = tuple(self._errors())
        synced = self._is_synced()
        current = self.store.current.snapshot
        others = tuple(s for s in current.switches if not s.source.startswith(SWITCH_PREFIXES))
        fail_safe = None if current.synced or synced else fail_safe_switch(self.settings)
        candidate = dataclasses.replace(
            current,
            services=services,
            windows=windows,
            switches=(*others, *switches, *([fail_safe] if fail_safe else [])),
            errors=errors,
            synced=current.synced or synced,
        )
        if candidate != current:
            self.store.publish(candidate)
        if synced and not self.synced.is_set():
            self.synced.set()
        self._bump_revision()

    def _bump_revision(self) -> None:
        self.revision += 1
        self._revised.set()
        self._revised = asyncio.Event()


def _generation(obj: JsonObject) -> object:
    metadata = obj.get("metadata") or {}
    # Without a status subresource every write bumps generation; fall back to the spec.
    return metadata.get("generation") or repr(obj.get("spec"))
