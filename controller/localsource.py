"""The cluster-less state source: the local file plus HTTP/TCP probes, into the store.

It owns, in the snapshot, the ``services``, the ``windows``, the ``file`` manual switch,
``synced`` and ``errors``; switches from other sources (the admin API) are left exactly
as they are.  It publishes only when one of those really changed, so the generation
counter (and everything waiting on it) moves only for news.

Edits to the file apply live.  The file is polled (modification time, size, inode) every
``reload_interval_s`` instead of using inotify: no extra dependency, and it also sees the
symlink swap Kubernetes uses for mounted ConfigMaps.  A broken edit never throws away a
working picture: the last good state stays in force and the problems are published in
``errors`` (shown by ``/status``) until the file is fixed.  Probers are restarted only
for services whose probe changed, so an unrelated edit does not reset readiness.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp

from controller.localspec import (
    LocalConfigError,
    LocalSpec,
    MaintenanceSpec,
    ProbeSpec,
    ServiceSpec,
    parse_local_file,
    routes_of,
)
from controller.probes import ProbeCheck, Prober, probe_http, probe_tcp
from controller.settings import LocalSourceSettings
from controller.snapshot import ManualSwitch, ServiceReason, ServiceState, Window, merge_services
from controller.store import SnapshotStore

log = logging.getLogger(__name__)

FILE_SWITCH_SOURCE = "file"

ServiceKey = tuple[str, str]
FileIdentity = tuple[int, int, int]
SessionFactory = Callable[[], aiohttp.ClientSession]


def default_probe_session() -> aiohttp.ClientSession:
    """One session for every HTTP probe: pooled connections, no cookies carried between
    probes, no proxy taken from the environment."""
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": "mwm-probe"},
    )


def _file_identity(path: Path) -> FileIdentity | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


@dataclass(slots=True)
class _RunningProbe:
    spec: ProbeSpec
    prober: Prober
    task: asyncio.Task[None]


@dataclass(frozen=True, slots=True)
class _Readiness:
    ready: bool
    since: datetime


class LocalSource:
    """Feeds the store from the local file and probes; :meth:`run` until cancelled."""

    def __init__(
        self,
        settings: LocalSourceSettings,
        store: SnapshotStore,
        *,
        probe_session_factory: SessionFactory = default_probe_session,
    ) -> None:
        self._settings = settings
        self._store = store
        self._session_factory = probe_session_factory
        self._spec: LocalSpec | None = None
        """The last good spec; kept while the file is broken."""
        self._identity: FileIdentity | None = None
        self._errors: tuple[str, ...] = ()
        self._readiness: dict[ServiceKey, _Readiness] = {}
        self._probes: dict[ServiceKey, _RunningProbe] = {}
        self._switch_since: datetime | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self.synced = asyncio.Event()
        """Set once the first complete state is published (every probed service seen)."""

    def load(self) -> None:
        """Parse the file now; raise :class:`LocalConfigError` if it is unusable."""
        path = self._settings.file
        if path is None:
            return
        # Identity first: an edit racing this read is then seen by the next poll.
        identity = _file_identity(path)
        self._spec = parse_local_file(path)
        self._identity = identity

    async def run(self) -> None:
        """Publish the initial state, then follow the file and the probes until cancelled."""
        path = self._settings.file
        if path is None:
            self._publish()
            await asyncio.get_running_loop().create_future()  # nothing to watch: idle
            return
        if self._spec is None:
            self.load()
        try:
            async with self._session_factory() as session, asyncio.TaskGroup() as tasks:
                self._session = session
                self._tasks = tasks
                self._sync_probes()
                self._publish()
                tasks.create_task(self._watch_file(path), name="local-source-file-watch")
        finally:
            self._probes.clear()
            self._tasks = None
            self._session = None

    async def _watch_file(self, path: Path) -> None:
        while True:
            await asyncio.sleep(self._settings.reload_interval_s)
            identity = _file_identity(path)
            if identity == self._identity:
                continue
            self._identity = identity
            self._reload(path)

    def _reload(self, path: Path) -> None:
        try:
            spec = parse_local_file(path)
        except LocalConfigError as exc:
            self._errors = tuple(exc.problems)
            log.error(
                "the state file has %d problem(s); keeping the last good state: %s",
                len(exc.problems),
                "; ".join(exc.problems),
                extra={"file": str(path)},
            )
        else:
            if self._errors:
                log.info("the state file is valid again", extra={"file": str(path)})
            self._errors = ()
            if spec != self._spec:
                self._spec = spec
                self._sync_probes()
                log.info("state file reloaded", extra={"file": str(path)})
        self._publish()

    def _sync_probes(self) -> None:
        """Make the running probers match the spec, restarting only changed probes."""
        assert self._spec is not None
        wanted = {s.key: s for s in self._spec.spec.services}
        for key, running in list(self._probes.items()):
            service = wanted.get(key)
            if service is None or service.probe != running.spec:
                running.task.cancel()
                del self._probes[key]
        for key in list(self._readiness):
            service = wanted.get(key)
            # A changed probe keeps the old readiness until the new one reports, so an
            # edit does not briefly turn a down service "unknown" (and maintenance off).
            if service is None or service.probe is None:
                del self._readiness[key]
        for key, service in wanted.items():
            if service.probe is not None and key not in self._probes:
                self._probes[key] = self._start_probe(service, service.probe)

    def _start_probe(self, service: ServiceSpec, probe: ProbeSpec) -> _RunningProbe:
        assert self._tasks is not None
        settings = self._settings
        prober = Prober(
            self._check_for(probe),
            interval_s=probe.interval_seconds or settings.probe_interval_s,
            failure_threshold=probe.failure_threshold or settings.failure_threshold,
            success_threshold=probe.success_threshold or settings.success_threshold,
        )
        key = service.key
        task = self._tasks.create_task(
            prober.run(lambda p: self._on_readiness(key, p)),
            name=f"probe {service.namespace}/{service.name}",
        )
        return _RunningProbe(spec=probe, prober=prober, task=task)

    def _check_for(self, probe: ProbeSpec) -> ProbeCheck:
        timeout_s = probe.timeout_seconds or self._settings.probe_timeout_s
        if probe.http is not None:
            assert self._session is not None
            return functools.partial(
                probe_http,
                self._session,
                probe.http.url,
                expect_status=probe.http.expect_status,
                timeout_s=timeout_s,
            )
        assert probe.tcp is not None
        return functools.partial(probe_tcp, probe.tcp.host, probe.tcp.port, timeout_s=timeout_s)

    def _on_readiness(self, key: ServiceKey, prober: Prober) -> None:
        running = self._probes.get(key)
        if running is None or running.prober is not prober or prober.ready is None:
            return  # a replaced prober reporting late
        previous = self._readiness.get(key)
        if previous is None or previous.ready != prober.ready:
            self._readiness[key] = _Readiness(ready=prober.ready, since=self._store.clock())
        detail = prober.last_result.detail if prober.last_result else ""
        namespace, name = key
        if prober.ready:
            log.info("service %s/%s is ready (%s)", namespace, name, detail)
        else:
            log.warning("service %s/%s is not ready: %s", namespace, name, detail)
        self._publish()

    def _service_state(self, service: ServiceSpec) -> ServiceState:
        readiness = self._readiness.get(service.key)
        if service.probe is None:
            ready: bool | None = True
            reason = ServiceReason.READY
        elif readiness is None:
            ready, reason = None, ServiceReason.UNKNOWN
        elif readiness.ready:
            ready, reason = True, ServiceReason.READY
        else:
            ready, reason = False, ServiceReason.PROBE_FAILING
        return ServiceState(
            name=service.name,
            namespace=service.namespace,
            critical=service.critical,
            ready_endpoints=1 if ready else 0,
            total_endpoints=1,
            reason=reason,
            min_ready=service.min_ready,
            last_transition=readiness.since if readiness else None,
            routes=routes_of(service.routes),
            mode=service.mode,
            hold_seconds=None if service.hold_seconds is None else float(service.hold_seconds),
        )

    def _file_switch(self, maintenance: MaintenanceSpec) -> ManualSwitch:
        if not maintenance.enabled:
            self._switch_since = None
        elif self._switch_since is None:
            self._switch_since = self._store.clock()
        return ManualSwitch(
            source=FILE_SWITCH_SOURCE,
            enabled=maintenance.enabled,
            reason=maintenance.reason,
            until=maintenance.until,
            since=self._switch_since,
            mode=maintenance.mode,
        )

    def _publish(self) -> None:
        """Write this source's part of the snapshot, if any of it changed."""
        spec = self._spec
        switch: ManualSwitch | None = None
        if spec is None:
            services: tuple[ServiceState, ...] = ()
            windows: tuple[Window, ...] = ()
        else:
            services = merge_services(self._service_state(s) for s in spec.spec.services)
            windows = tuple(
                Window(w.start, w.end, w.reason, w.announce_seconds, w.mode)
                for w in spec.spec.windows
            )
            switch = self._file_switch(spec.spec.maintenance or MaintenanceSpec())
        # Synced once every probed service has a first result; a service added later does
        # not un-sync (readiness probes would flap the whole proxy on every edit).
        synced = self.synced.is_set() or all(
            s.reason is not ServiceReason.UNKNOWN for s in services
        )
        errors = self._errors

        current = self._store.current.snapshot
        unchanged = (
            current.services == services
            and current.windows == windows
            and _file_switch_of(current.switches) == switch
            and current.synced == synced
            and current.errors == errors
        )
        if not unchanged:
            self._store.update(
                lambda s: dataclasses.replace(
                    s,
                    services=services,
                    windows=windows,
                    switches=_with_file_switch(s.switches, switch),
                    synced=synced,
                    errors=errors,
                )
            )
        if synced:
            self.synced.set()


def _file_switch_of(switches: tuple[ManualSwitch, ...]) -> ManualSwitch | None:
    return next((s for s in switches if s.source == FILE_SWITCH_SOURCE), None)


def _with_file_switch(
    switches: tuple[ManualSwitch, ...], switch: ManualSwitch | None
) -> tuple[ManualSwitch, ...]:
    """Replace (in place) or add the file's switch; every other source's switch is kept."""
    others = [s for s in switches if s.source != FILE_SWITCH_SOURCE]
    if switch is None:
        return tuple(others)
    for index, existing in enumerate(switches):
        if existing.source == FILE_SWITCH_SOURCE:
            return (*switches[:index], switch, *switches[index + 1 :])
    return (*others, switch)
