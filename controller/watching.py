"""Keeping a local copy of one Kubernetes query up to date: list, then watch.

The pattern is client-go's reflector, as kopf and sample-controller use it: list to get
every object and the collection's resourceVersion, then watch from that version; on a
clean end of the stream reconnect from the last version seen (bookmarks keep it fresh);
on 410 Gone list again; on any other failure wait with capped, jittered exponential
backoff and try again.  A re-list replaces the whole cache, so an object deleted while
the watch was down disappears too, and no transition is lost: the owner compares the
new cache with what it published before.

A watch that ends, or expires, at once without delivering anything is what a proxy that
closes every watch or a server answering 410 to everything looks like: the first such end
reconnects (or lists) at once, the next ones back off, so it never becomes a hot loop of
lists against the API server.

A failing reflector keeps its last cache: an API hiccup must never look like an outage.
The owner reads :attr:`Reflector.failing_since` to mark that state stale after a while.

The backoff starts again from its shortest delay as soon as the API answers again (a list
succeeds, or the server accepts a watch).  Without that, one outage would make every
disconnect of the following minutes wait the longest delay.  A server that accepts watches
only to cut them at once costs one reconnect per shortest delay, never a hot loop.

A list refused with 403 Forbidden or 404 Not Found before anything was ever listed is a
*completed* read with a problem (:attr:`Reflector.denied`): no RBAC binding in a namespace is
a configuration state, not a transient fault, and it must not hold readiness for ever.  The
reflector keeps trying (with backoff), so a binding created later is picked up.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from controller.kube import CONNECTED, JsonObject, KubeApi, KubeError, Resource, ResourceExpired

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WatchTimings:
    watch_timeout_s: float = 300.0
    """The server ends each watch after this; the reflector reconnects at once."""
    inactivity_timeout_s: float = 330.0
    """A stream silent this long (no event, no bookmark) is taken as dead."""
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_jitter: float = 0.5
    """Fraction of each backoff delay that is random, so replicas do not retry in step."""


def object_key(obj: JsonObject) -> str:
    metadata = obj.get("metadata") or {}
    return f"{metadata.get('namespace') or ''}/{metadata.get('name') or ''}"


class Reflector:
    """One list+watch loop over ``resource`` with the given scope; run as a task."""

    def __init__(
        self,
        api: KubeApi,
        resource: Resource,
        *,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timings: WatchTimings,
        on_change: Callable[[Reflector], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.timings = timings
        self._on_change = on_change
        self._clock = clock
        self.objects: dict[str, JsonObject] = {}
        self.synced = False
        """True once the first list succeeded; the cache is meaningful from then on."""
        self.failing_since: float | None = None
        """Monotonic time of the first failure in the current run of failures."""
        self.last_error: str | None = None
        self.denied: str | None = None
        """Why the API refuses to list this (403/404), while it does; None otherwise."""
        self.events = 0
        """How many watch events (bookmarks included) were received."""
        self._attempt = 0
        """Failures in a row since the API last answered (the backoff's exponent)."""

    @property
    def description(self) -> str:
        scope = self.namespace or "all namespaces"
        selectors = ", ".join(s for s in (self.label_selector, self.field_selector) if s)
        return f"{self.resource.plural} in {scope}" + (f" ({selectors})" if selectors else "")

    @property
    def completed(self) -> bool:
        """True once the first read is over: listed, or refused for good (:attr:`denied`)."""
        return self.synced or self.denied is not None

    async def run(self) -> None:
        idle = 0  # watches in a row that ended or expired at once, delivering nothing
        version: str | None = None
        while True:
            opened, events = self._clock(), self.events
            try:
                if version is None:
                    version = await self._list()
                version = await self._watch(version)
                self._attempt = 0
            except ResourceExpired:
                log.info("watch expired (410), listing again", extra={"watch": self.description})
                version = None
            except KubeError as exc:
                if version is None and exc.status in (403, 404):
                    self._denied(exc)
                self._failed(exc)
                if exc.status not in (0, 429) and exc.status < 500 and exc.status != 410:
                    # 4xx other than throttling (403 Forbidden, 404 for a missing CRD): the
                    # cache may be wrong in ways a watch cannot repair; list again.
                    version = None
                delay = self._backoff_s(self._attempt, exc.retry_after_s)
                self._attempt += 1
                await asyncio.sleep(delay)
                continue
            # Longer than the longest backoff, a watch cannot make a hot loop, events or not.
            if self.events > events or self._clock() - opened >= self.timings.backoff_max_s:
                idle = 0
            else:
                idle += 1
                if idle > 1:
                    await asyncio.sleep(self._backoff_s(idle - 2, None))

    async def _list(self) -> str:
        listing = await self.api.list(
            self.resource,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        self.objects = {object_key(obj): obj for obj in listing.items}
        self.synced = True
        self.denied = None
        self._attempt = 0  # the API answers again: the next failure starts from the shortest delay
        self._recovered()
        self._on_change(self)
        return listing.resource_version

    async def _watch(self, version: str) -> str:
        """Apply events until the stream ends cleanly; return the last version seen."""
        async for event in self.api.watch(
            self.resource,
            namespace=self.namespace,
            resource_version=version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_s=self.timings.watch_timeout_s,
            inactivity_timeout_s=self.timings.inactivity_timeout_s,
        ):
            self._recovered()
            version = event.resource_version or version
            if event.type == CONNECTED:
                self._attempt = 0  # the API answers again: a new failure starts afresh
                continue
            self.events += 1
            if event.type == "BOOKMARK":
                continue
            key = object_key(event.object)
            if event.type == "DELETED":
                if self.objects.pop(key, None) is None:
                    continue
            elif event.type in ("ADDED", "MODIFIED"):
                if self.objects.get(key) == event.object:
                    continue
                self.objects[key] = event.object
            else:
                continue
            self._on_change(self)
        return version

    def _denied(self, exc: KubeError) -> None:
        if self.denied is None:
            log.error(
                "the Kubernetes API refuses to list %s: %s",
                self.resource.plural,
                exc,
                extra={"watch": self.description},
            )
            if self.failing_since is not None:  # already failing: _failed will not tell
                self.denied = str(exc)
                self._on_change(self)
        self.denied = str(exc)

    def _failed(self, exc: KubeError) -> None:
        if self.failing_since is None:
            self.failing_since = self._clock()
            log.warning(
                "watch failing, keeping the last known state: %s",
                exc,
                extra={"watch": self.description},
            )
            self.last_error = str(exc)
            self._on_change(self)
        self.last_error = str(exc)

    def _recovered(self) -> None:
        if self.failing_since is not None:
            log.info("watch recovered", extra={"watch": self.description})
            self.failing_since = None
            self.last_error = None
            self._on_change(self)

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        t = self.timings
        delay: float = min(t.backoff_max_s, t.backoff_initial_s * 2.0**attempt)
        delay *= 1 - t.backoff_jitter + t.backoff_jitter * random.random()  # noqa: S311
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, t.backoff_max_s))
        return delay
