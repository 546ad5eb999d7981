"""Open watches: what each one sees, and the streams that carry it.

A real server filters events per watcher the way ``cacheWatcher.convertToWatchEvent`` does: an
object that stops matching the selector is sent as ``DELETED`` (its previous content, stamped
with the event's resourceVersion), one that starts matching as ``ADDED``.

Each open watch has a FIFO queue fed by the store.  Bookmarks, injected lines and the end of
the stream go through the same queue, so a bookmark's resourceVersion never runs ahead of an
event still waiting to be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.kube.fake import errors
from tests.kube.fake.errors import ApiError
from tests.kube.fake.resources import ResourceType
from tests.kube.fake.selectors import Selector
from tests.kube.fake.store import ObjectStore, StoredEvent, Subscription
from tests.kube.fake.wire import encode_json

TRUE_VALUES = ("true", "True", "1")


@dataclass(frozen=True)
class Bookmark:
    resource_version: int
    initial_events_end: bool = False


@dataclass(frozen=True)
class RawLine:
    """Bytes a test injected, written to the stream verbatim."""

    data: bytes


@dataclass(frozen=True)
class EndStream:
    abort: bool = False
    """True: cut the connection mid-stream (no terminating chunk) instead of ending cleanly."""


WatchItem = StoredEvent | Bookmark | RawLine | EndStream


def convert(event: StoredEvent, select: Selector) -> dict[str, Any] | None:
    """The watch event this watcher gets for a committed change, or None if it gets nothing."""
    if event.type == "DELETED":
        return {"type": "DELETED", "object": event.obj} if select(event.obj) else None
    was_in = event.previous is not None and select(event.previous)
    is_in = select(event.obj)
    if is_in:
        return {"type": "MODIFIED" if was_in else "ADDED", "object": event.obj}
    if was_in and event.previous is not None:
        gone = copy.deepcopy(event.previous)
        gone["metadata"]["resourceVersion"] = str(event.resource_version)
        return {"type": "DELETED", "object": gone}
    return None


def bookmark_object(resource: ResourceType, bookmark: Bookmark) -> dict[str, Any]:
    metadata: dict[str, Any] = {"resourceVersion": str(bookmark.resource_version)}
    if bookmark.initial_events_end:
        metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": metadata}


@dataclass(eq=False)
class OpenWatch:
    """An open watch stream, as the fake's hooks see it."""

    resource: ResourceType
    namespace: str | None
    query: Mapping[str, str]
    allow_bookmarks: bool
    start_version: int
    queue: asyncio.Queue[WatchItem] = field(default_factory=asyncio.Queue)
    events_sent: int = 0


class WatchHub:
    """Serves watch requests and lets tests end, abort, bookmark or feed the open ones."""

    def __init__(
        self, store: ObjectStore, *, notify: Callable[[], None], bookmark_interval_s: float
    ) -> None:
        self.store = store
        self.notify = notify
        """Called when a watch opens, closes or sends an event (the fake re-checks waiters)."""
        self.bookmark_interval_s = bookmark_interval_s
        self.watches: list[OpenWatch] = []

    def matching(self, resource: ResourceType | None) -> list[OpenWatch]:
        if resource is None:
            return list(self.watches)
        return [
            watch
            for watch in self.watches
            if (watch.resource.group, watch.resource.plural) == (resource.group, resource.plural)
        ]

    def end(self, resource: ResourceType | None, *, abort: bool) -> int:
        watches = self.matching(resource)
        for watch in watches:
            watch.queue.put_nowait(EndStream(abort=abort))
        return len(watches)

    def send_bookmarks(self, resource: ResourceType | None) -> int:
        watches = [watch for watch in self.matching(resource) if watch.allow_bookmarks]
        for watch in watches:
            watch.queue.put_nowait(self._bookmark(watch))
        return len(watches)

    def inject(self, resource: ResourceType, data: bytes, *, namespace: str | None) -> int:
        watches = [
            watch
            for watch in self.matching(resource)
            if namespace is None or watch.namespace in (None, namespace)
        ]
        for watch in watches:
            watch.queue.put_nowait(RawLine(data))
        return len(watches)

    def _bookmark(self, watch: OpenWatch) -> Bookmark:
        return Bookmark(max(self.store.resource_version, watch.start_version))

    async def serve(
        self,
        request: web.Request,
        resource: ResourceType,
        namespace: str | None,
        select: Selector,
        query: Mapping[str, str],
    ) -> web.StreamResponse:
        requested = query.get("resourceVersion", "")
        allow_bookmarks = query.get("allowWatchBookmarks", "") in TRUE_VALUES
        send_initial = query.get("sendInitialEvents", "") in TRUE_VALUES
        # Like the real server, 0 (or nothing) means the server's own long default: no end here.
        timeout_s = float(query.get("timeoutSeconds") or 0) or None
        opening: list[dict[str, Any] | Bookmark] = []
        expired: ApiError | None = None
        # Everything up to ``subscribe`` runs without an await: no event can slip between the
        # replay and the live feed, and none can be sent twice.
        if requested in ("", "0") or send_initial:
            start_version = self.store.resource_version
            opening += [
                {"type": "ADDED", "object": obj}
                for obj in self.store.items(resource, namespace, select)
            ]
            if send_initial and allow_bookmarks:
                opening.append(Bookmark(start_version, initial_events_end=True))
        else:
            try:
                start_version = int(requested)
            except ValueError:
                raise errors.bad_request(f'invalid resource version "{requested}"') from None
            try:
                replay = self.store.events_after(resource, namespace, start_version)
            except ApiError as error:
                expired = error
            else:
                opening += [e for e in (convert(event, select) for event in replay) if e]
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        if expired is not None:
            await response.prepare(request)
            await response.write(encode_json({"type": "ERROR", "object": expired.status()}))
            await response.write_eof()
            return response
        watch = OpenWatch(resource, namespace, query, allow_bookmarks, start_version)
        subscription = Subscription(resource, namespace, watch.queue.put_nowait)
        self.store.subscribe(subscription)
        self.watches.append(watch)
        self.notify()
        try:
            await response.prepare(request)
            for item in opening:
                await self._write(response, watch, item, select)
            aborted = await self._stream(response, watch, select, timeout_s=timeout_s)
        except ConnectionError:
            return response  # the client went away
        finally:
            self.store.unsubscribe(subscription)
            self.watches.remove(watch)
            self.notify()
        if aborted:
            if request.transport is not None:
                request.transport.abort()
            return response
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    async def _stream(
        self,
        response: web.StreamResponse,
        watch: OpenWatch,
        select: Selector,
        *,
        timeout_s: float | None,
    ) -> bool:
        """Feed the watch until it ends; returns True when it must be aborted."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        last_bookmark = loop.time()
        while True:
            now = loop.time()
            next_bookmark = last_bookmark + self.bookmark_interval_s  # a test may shrink it
            waits = [] if deadline is None else [deadline - now]
            if watch.allow_bookmarks:
                waits.append(next_bookmark - now)
            try:
                async with asyncio.timeout(max(0.0, min(waits)) if waits else None):
                    item = await watch.queue.get()
            except TimeoutError:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    return False
                if watch.allow_bookmarks and now >= next_bookmark:
                    # Queued, not written: events already queued must go out first.
                    watch.queue.put_nowait(self._bookmark(watch))
                    last_bookmark = now
                continue
            if isinstance(item, EndStream):
                return item.abort
            await self._write(response, watch, item, select)

    async def _write(
        self,
        response: web.StreamResponse,
        watch: OpenWatch,
        item: WatchItem | dict[str, Any],
        select: Selector,
    ) -> None:
        if isinstance(item, RawLine):
            await response.write(item.data)
            return
        if isinstance(item, Bookmark):
            if watch.allow_bookmarks:
                event = {"type": "BOOKMARK", "object": bookmark_object(watch.resource, item)}
                await response.write(encode_json(event))
            return
        if isinstance(item, EndStream):
            return
        event_dict = item if isinstance(item, dict) else convert(item, select)
        if event_dict is not None:
            await response.write(encode_json(event_dict))
            watch.events_sent += 1
            self.notify()
