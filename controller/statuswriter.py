"""Writing ServiceChecker status and maintenance Events (run by the leader only).

The writer wakes on any change (a watch event or a new snapshot), waits
``coalesce_s`` so a burst becomes one write, then computes every honoured resource's
desired status (:mod:`controller.statusdoc`) and sends a JSON merge patch to the
``/status`` subresource of those whose status differs from what was last written or
read back.  Failed writes (409 conflicts, 429, 5xx, the API unreachable) are retried
with capped backoff, never sooner than a 429's ``Retry-After`` (itself capped at
``retry_max_s``); every retry recomputes the status from the current state, so a retry
never writes a state that has already passed (the status would flap back and forth).  A
resource that has disappeared (404) is forgotten.  When a resource's maintenance turns on
or off, a Kubernetes Event is recorded on it.

Under leader election every write is fenced by the lease (:class:`WriteLease`): it starts
only while the lease is held and is abandoned if still in flight at the fence's deadline,
so an old leader has stopped writing before a new one can start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, Protocol

from controller.checker import Checker
from controller.kube import EVENTS, SERVICECHECKERS, JsonObject, KubeApi, KubeError
from controller.kubesource import KubernetesSource
from controller.settings import StatusWriterSettings
from controller.snapshot import ManualSwitch
from controller.statusdoc import desired_status, iso
from controller.store import SnapshotStore, utc_now

log = logging.getLogger(__name__)

EVENT_STARTED = "MaintenanceStarted"
EVENT_ENDED = "MaintenanceEnded"


class WriteLease(Protocol):
    """The write fence of leader election (:class:`controller.leadership.Leadership`)."""

    async def hold(self) -> float:
        """Wait until this replica may write; return the event loop time by which a write
        must be over."""
        ...


class StatusWriter:
    def __init__(
        self,
        settings: StatusWriterSettings,
        source: KubernetesSource,
        store: SnapshotStore,
        api: KubeApi,
        *,
        identity: str,
        lease: WriteLease | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.source = source
        self.store = store
        self.api = api
        self.identity = identity
        self.lease = lease
        """None without leader election (one replica): writes are not fenced."""
        self._clock = clock
        self._written: dict[tuple[str, str], JsonObject] = {}
        self.writes = 0

    async def run(self) -> None:
        """Write until cancelled (when leadership is lost)."""
        log.info("writing ServiceChecker status as the leader")
        self._written.clear()
        # Before the first full sync every service is Unknown: writing that would only make
        # kubectl show a false alarm.
        await self.source.synced.wait()
        generation, revision = -1, -1
        while True:
            await self._wait_for_change(generation, revision)
            if self.settings.coalesce_s > 0:
                await asyncio.sleep(self.settings.coalesce_s)
            generation = self.store.current.generation
            revision = self.source.revision
            await self.write_all()

    async def _wait_for_change(self, generation: int, revision: int) -> None:
        if self.store.current.generation > generation or self.source.revision > revision:
            return
        waiters = {
            asyncio.ensure_future(self.store.wait_for_change(generation)),
            asyncio.ensure_future(self.source.wait_for_revision(revision)),
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _desired(self, key: tuple[str, str], obj: JsonObject) -> JsonObject:
        source = self.source
        checker: Checker | None = source.checkers.get(key)
        snapshot = self.store.current.snapshot
        services = {s.key: s for s in snapshot.services}
        shared: list[ManualSwitch] = [
            s for s in snapshot.switches if s.source.startswith("configmap/")
        ]
        switch = None
        if checker is not None:
            switch = next((s for s in snapshot.switches if s.source == checker.switch_source), None)
        metadata = obj.get("metadata") or {}
        return desired_status(
            checker,
            generation=int(metadata.get("generation") or 0),
            problems=source.checker_problems.get(key, []),
            services=services,
            shared_switches=shared,
            switch=switch,
            watch_errors=source.watch_errors(),
            synced=source.synced.is_set(),
            previous=obj.get("status") or {},
            now=self._clock(),
        )

    async def write_all(self) -> None:
        for key in sorted(self.source.honoured_objects()):
            await self._write(key)
        honoured = self.source.honoured_objects()
        for key in list(self._written):
            if key not in honoured:
                del self._written[key]

    @contextlib.asynccontextmanager
    async def _fenced(self) -> AsyncIterator[None]:
        """One write inside the lease: it waits for the lease, and is cancelled (its
        connection closed; TimeoutError) if still in flight at the lease's deadline."""
        deadline = None if self.lease is None else await self.lease.hold()
        async with asyncio.timeout_at(deadline):
            yield

    async def _write(self, key: tuple[str, str]) -> None:
        """Bring one resource's status up to date, retrying until it is written."""
        namespace, name = key
        attempt = 0
        while True:
            # Recomputed on every attempt: what is true now, not when the first one failed.
            obj = self.source.honoured_objects().get(key)
            if obj is None:
                return
            desired = self._desired(key, obj)
            before = self._written.get(key) or obj.get("status") or {}
            if desired == self._written.get(key) or desired == (obj.get("status") or {}):
                self._written[key] = desired
                return
            try:
                async with self._fenced():
                    await self.api.patch(
                        SERVICECHECKERS, namespace, name, {"status": desired}, subresource="status"
                    )
                break
            except TimeoutError:
                log.warning(
                    "status write of ServiceChecker %s/%s abandoned: the lease was not renewed "
                    "in time",
                    *key,
                )
            except KubeError as exc:
                if exc.status == 404:
                    return
                if not exc.retryable:
                    log.error("cannot write status of ServiceChecker %s/%s: %s", *key, exc)
                    return
                delay = min(self.settings.retry_max_s, self.settings.retry_initial_s * 2.0**attempt)
                delay *= 0.5 + random.random() / 2  # noqa: S311
                if exc.retry_after_s is not None:
                    delay = max(delay, min(exc.retry_after_s, self.settings.retry_max_s))
                attempt += 1
                log.warning("status write of ServiceChecker %s/%s failed, retrying: %s", *key, exc)
                await asyncio.sleep(delay)
        self.writes += 1
        self._written[key] = desired
        was_active = _active(before)
        now_active = _active(desired)
        if was_active is not None and was_active != now_active:
            await self._record_event(obj, desired, started=bool(now_active))
        elif was_active is None and now_active:
            await self._record_event(obj, desired, started=True)

    async def _record_event(self, obj: JsonObject, status: JsonObject, *, started: bool) -> None:
        metadata = obj.get("metadata") or {}
        namespace = str(metadata.get("namespace") or "")
        name = str(metadata.get("name") or "")
        reason_text = status["maintenance"].get("reason") or ""
        now = iso(self._clock())
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": SERVICECHECKERS.api_version,
                "kind": SERVICECHECKERS.kind,
                "name": name,
                "namespace": namespace,
                "uid": metadata.get("uid"),
            },
            "reason": EVENT_STARTED if started else EVENT_ENDED,
            "message": (f"Maintenance started: {reason_text}" if started else "Maintenance ended"),
            "type": "Warning" if started else "Normal",
            "source": {"component": "mwm"},
            "reportingComponent": "maintenance.mamrezb.com/mwm",
            "reportingInstance": self.identity,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            async with self._fenced():
                await self.api.create(EVENTS, namespace, event)
        except TimeoutError:
            log.warning(
                "Event on ServiceChecker %s/%s abandoned: lease not renewed", namespace, name
            )
        except KubeError as exc:  # an Event is informational: never block status on it
            log.warning("cannot record an Event on ServiceChecker %s/%s: %s", namespace, name, exc)


def _active(status: JsonObject) -> bool | None:
    maintenance = status.get("maintenance")
    if not isinstance(maintenance, dict) or "active" not in maintenance:
        return None
    return bool(maintenance["active"])
