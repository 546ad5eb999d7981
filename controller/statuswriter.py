"""Writing ServiceChecker status and maintenance Events (run by the leader only).

The writer wakes on any change (a watch event or a new snapshot), waits ``coalesce_s`` so
a burst becomes one write, then hands every honoured resource to its own worker, which
computes the resource's desired status (:mod:`controller.statusdoc`) and sends a JSON merge
patch to the ``/status`` subresource when it differs from what was last written or read
back.  One worker per resource: a resource whose writes keep failing never holds up the
others.

Every failed write is retried with capped, jittered backoff until it lands or the state it
carried has passed, whatever the error (a 403 is what a real API server answers for a
moment after each restart while its authorizer warms up; a 409, 429, 5xx or an unreachable
API are as passing), never sooner than a 429's ``Retry-After`` (itself capped at
``retry_max_s``).  Every retry recomputes the status from the current state, so a retry
never writes a state that has already passed (the status would flap back and forth).  A
resource that has disappeared (404) is forgotten.  A failure is logged when it starts and
when it ends, not at every attempt.

Events: a resource's maintenance turning on or off (``MaintenanceStarted``,
``MaintenanceEnded``), and the API refusing to show a namespace it names
(``AccessDenied``, then ``AccessRestored``).

On shutdown (:meth:`StatusWriter.stop`) a change still waiting out the coalesce window or a
retry is written at once, one attempt per resource; the caller bounds how long that takes.

Under leader election every write is fenced by the lease (:class:`WriteLease`): it starts
only while the lease is held and is abandoned if still in flight at the fence's deadline,
so an old leader has stopped writing before a new one can start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from controller.checker import Checker
from controller.kube import EVENTS, SERVICECHECKERS, JsonObject, KubeApi, KubeError
from controller.kubesource import KubernetesSource
from controller.settings import StatusWriterSettings
from controller.snapshot import ManualSwitch
from controller.statusdoc import CONDITION_SYNCED, SYNCED_ACCESS_DENIED, desired_status, iso
from controller.store import SnapshotStore, utc_now

log = logging.getLogger(__name__)

EVENT_STARTED = "MaintenanceStarted"
EVENT_ENDED = "MaintenanceEnded"
EVENT_ACCESS_DENIED = "AccessDenied"
EVENT_ACCESS_RESTORED = "AccessRestored"

Key = tuple[str, str]


class WriteLease(Protocol):
    """The write fence of leader election (:class:`controller.leadership.Leadership`)."""

    async def hold(self) -> float:
        """Wait until this replica may write; return the event loop time by which a write
        must be over."""
        ...


class _WriteFailed(Exception):
    """One attempt at writing a resource's status failed; retry after a backoff."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class _Worker:
    """Keeps one resource's status written; ``wake`` says there may be something new."""

    task: asyncio.Task[None]
    wake: asyncio.Event


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
        self._written: dict[Key, JsonObject] = {}
        self._workers: dict[Key, _Worker] = {}
        self._stopping = asyncio.Event()
        self._running = False
        self._ended = asyncio.Event()
        self.writes = 0

    def stop(self) -> None:
        """Make :meth:`run` write what is pending now, once, and return."""
        self._stopping.set()

    async def wait_stopped(self) -> None:
        """Return once :meth:`run` is not running (at once if it is not)."""
        if self._running:
            await self._ended.wait()

    async def run(self) -> None:
        """Write until cancelled (leadership lost) or stopped (:meth:`stop`)."""
        self._running = True
        self._ended.clear()
        try:
            await self._run()
        finally:
            self._running = False
            self._ended.set()

    async def _run(self) -> None:
        log.info("writing ServiceChecker status as the leader")
        self._written.clear()
        # Before the first full sync every service is Unknown: writing that would only make
        # kubectl show a false alarm.
        if not await self._unless_stopping(self.source.synced.wait()):
            return
        generation, revision = -1, -1
        try:
            async with asyncio.TaskGroup() as workers:
                while not self._stopping.is_set():
                    await self._unless_stopping(self._wait_for_change(generation, revision))
                    if self.settings.coalesce_s > 0:
                        await self._unless_stopping(asyncio.sleep(self.settings.coalesce_s))
                    if self._stopping.is_set():
                        break
                    generation = self.store.current.generation
                    revision = self.source.revision
                    self._dispatch(workers)
                await self._flush()
        finally:
            for worker in self._workers.values():
                worker.task.cancel()
            self._workers.clear()

    async def _unless_stopping(self, awaitable: Awaitable[Any]) -> bool:
        """Await ``awaitable`` unless :meth:`stop` comes first; False if it did."""
        await _first_of(awaitable, self._stopping.wait())
        return not self._stopping.is_set()

    async def _wait_for_change(self, generation: int, revision: int) -> None:
        if self.store.current.generation > generation or self.source.revision > revision:
            return
        await _first_of(
            self.store.wait_for_change(generation), self.source.wait_for_revision(revision)
        )

    def _dispatch(self, workers: asyncio.TaskGroup) -> None:
        """Wake the worker of every honoured resource (starting it if needed); stop those of
        resources no longer honoured."""
        honoured = self.source.honoured_objects()
        for key in sorted(honoured):
            worker = self._workers.get(key)
            if worker is not None and not worker.task.done():
                worker.wake.set()
                continue
            wake = asyncio.Event()
            wake.set()
            task = workers.create_task(
                self._keep_written(key, wake), name=f"status-writer-{key[0]}/{key[1]}"
            )
            self._workers[key] = _Worker(task=task, wake=wake)
        for key in list(self._workers):
            if key not in honoured:
                self._workers.pop(key).task.cancel()
        for key in list(self._written):
            if key not in honoured:
                del self._written[key]

    async def _keep_written(self, key: Key, wake: asyncio.Event) -> None:
        """One resource's worker: write whenever woken, retrying each failure with backoff
        (not woken early by newer changes: the retry writes what is true by then)."""
        while True:
            await wake.wait()
            wake.clear()
            attempt = 0
            while True:
                try:
                    await self._write(key)
                except _WriteFailed as failure:
                    if attempt == 0:
                        log.warning(
                            "status write of ServiceChecker %s/%s failed, retrying with "
                            "backoff: %s",
                            *key,
                            failure,
                        )
                    await asyncio.sleep(self._backoff_s(attempt, failure.retry_after_s))
                    attempt += 1
                    continue
                break
            if attempt > 0:
                log.info(
                    "status of ServiceChecker %s/%s written after %d failed attempts",
                    *key,
                    attempt,
                )

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        delay = min(self.settings.retry_max_s, self.settings.retry_initial_s * 2.0**attempt)
        delay *= 0.5 + random.random() / 2  # noqa: S311
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.settings.retry_max_s))
        return delay

    async def _flush(self) -> None:
        """Shutting down: stop the workers, then one attempt per resource, all at once."""
        for worker in self._workers.values():
            worker.task.cancel()
        await asyncio.gather(*(w.task for w in self._workers.values()), return_exceptions=True)
        self._workers.clear()
        keys = sorted(self.source.honoured_objects())
        results = await asyncio.gather(*(self._write(k) for k in keys), return_exceptions=True)
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, _WriteFailed):
                log.warning(
                    "status of ServiceChecker %s/%s not written before shutdown: %s",
                    *key,
                    result,
                )
            elif isinstance(result, BaseException):
                raise result

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
        # Only the watches this resource depends on: another resource's unreadable namespace
        # is not this one's problem.
        namespaces = {ref.namespace for ref in checker.services} if checker else set()
        return desired_status(
            checker,
            generation=int(metadata.get("generation") or 0),
            problems=source.checker_problems.get(key, []),
            services=services,
            shared_switches=shared,
            switch=switch,
            watch_errors=source.watch_errors(namespaces),
            denied_namespaces=source.denied_namespaces(namespaces),
            synced=source.synced.is_set(),
            previous=obj.get("status") or {},
            now=self._clock(),
        )

    @contextlib.asynccontextmanager
    async def _fenced(self) -> AsyncIterator[None]:
        """One write inside the lease: it waits for the lease, and is cancelled (its
        connection closed; TimeoutError) if still in flight at the lease's deadline."""
        deadline = None if self.lease is None else await self.lease.hold()
        async with asyncio.timeout_at(deadline):
            yield

    async def _write(self, key: Key) -> None:
        """One attempt at bringing one resource's status up to date (raises
        :class:`_WriteFailed`); then the Events its change calls for."""
        namespace, name = key
        # Computed at every attempt: what is true now, not when the first one failed.
        obj = self.source.honoured_objects().get(key)
        if obj is None:
            return
        desired = self._desired(key, obj)
        stored = obj.get("status") or {}
        before = self._written.get(key) or stored
        if desired in (self._written.get(key), stored):
            self._written[key] = desired
            return
        try:
            async with self._fenced():
                await self.api.patch(
                    SERVICECHECKERS, namespace, name, {"status": desired}, subresource="status"
                )
        except TimeoutError as exc:
            raise _WriteFailed("abandoned: the lease was not renewed in time") from exc
        except KubeError as exc:
            if exc.status == 404:
                return  # deleted meanwhile: the watch will forget it
            raise _WriteFailed(str(exc), retry_after_s=exc.retry_after_s) from exc
        self.writes += 1
        self._written[key] = desired
        for reason, message, kind in _events(before, desired):
            await self._record_event(obj, reason=reason, message=message, kind=kind)

    async def _record_event(self, obj: JsonObject, *, reason: str, message: str, kind: str) -> None:
        metadata = obj.get("metadata") or {}
        namespace = str(metadata.get("namespace") or "")
        name = str(metadata.get("name") or "")
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
            "reason": reason,
            "message": message[:1024],
            "type": kind,
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


async def _first_of(*awaitables: Awaitable[Any]) -> None:
    """Return once any of ``awaitables`` is done; the others are cancelled."""
    waiters = {asyncio.ensure_future(awaitable) for awaitable in awaitables}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _events(before: JsonObject, after: JsonObject) -> list[tuple[str, str, str]]:
    """The Events a status change calls for: (reason, message, type)."""
    events = []
    was_active, now_active = _active(before), _active(after)
    if (was_active is not None and was_active != now_active) or (was_active is None and now_active):
        if now_active:
            reason_text = after["maintenance"].get("reason") or ""
            events.append((EVENT_STARTED, f"Maintenance started: {reason_text}", "Warning"))
        else:
            events.append((EVENT_ENDED, "Maintenance ended", "Normal"))
    was_denied, now_denied = _synced(before), _synced(after)
    if now_denied is not None and now_denied.get("reason") == SYNCED_ACCESS_DENIED:
        if was_denied is None or was_denied.get("reason") != SYNCED_ACCESS_DENIED:
            events.append((EVENT_ACCESS_DENIED, str(now_denied.get("message") or ""), "Warning"))
    elif was_denied is not None and was_denied.get("reason") == SYNCED_ACCESS_DENIED:
        events.append(
            (EVENT_ACCESS_RESTORED, "Every namespace this resource names can be read.", "Normal")
        )
    return events


def _synced(status: JsonObject) -> JsonObject | None:
    for condition in status.get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == CONDITION_SYNCED:
            return condition
    return None


def _active(status: JsonObject) -> bool | None:
    maintenance = status.get("maintenance")
    if not isinstance(maintenance, dict) or "active" not in maintenance:
        return None
    return bool(maintenance["active"])
