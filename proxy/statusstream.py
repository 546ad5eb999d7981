"""The status stream: one Server-Sent Events answer per subscriber, fed by the store.

A :class:`Broadcaster` per listener (the public one streams the ``/_mwm/status`` document,
the management one the ``/status`` document) listens to the snapshot store.  After a change
it renders ONE event for the state then current (a burst of publishes in one turn of the
event loop is one settled state), as bytes, and hands the same bytes to every subscriber:

    id: <generation>
    event: status
    data: <the document, compact JSON on one line>

Each subscriber has a one-slot mailbox: a new event replaces one its connection has not
written yet, so a slow subscriber skips intermediate states and gets the latest, and what
the broadcaster holds for it never grows with its backlog.  A subscriber sees generations
in increasing order, never one twice.  The first message carries ``retry: <ms>`` (the
reconnection delay).  ``Last-Event-ID`` equal to the current generation (a reconnection that
missed nothing) sends no event until the next change; any other value gets the current
state at once.

Heartbeats (``: hb``, a comment every ``MWM_STATUS__HEARTBEAT_S``) keep idle connections
open through proxies: one timer for all subscribers, which also drops every subscriber whose
client has gone or does not read (more than :data:`MAX_BUFFERED_BYTES` waiting in its
connection's write buffer: the connection is aborted, the client reconnects).  Subscribers
are bounded per listener (``MWM_STATUS__MAX_SUBSCRIBERS``; over it: 503 with
``Retry-After``), counted in ``mwm_status_subscribers``, and all closed at once by
:meth:`Broadcaster.close` on shutdown (the last chunk written, the connection closed), so
they never hold the drain.

Why not aiohttp-sse (``EventSourceResponse``): it formats and encodes every event once per
subscriber (``send(data, id=..., event=...)`` splits and joins the text for each response),
and starts a ping task per response (``_ping_task``), so 10,000 subscribers are 10,000 timers
waking separately and 10,000 renderings per change.  ``python -m bench.sse`` measured an idle
ping task at 1.4 KiB of RSS, about 12 % on top of the 12.4 KiB a subscriber costs here (almost
all of it aiohttp's connection and request), and 14 MiB for 10,000 (bench/RESULTS.md).  The
wire format is the few lines below (the WHATWG HTML "server-sent events" grammar).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Iterable
from typing import Protocol

from aiohttp import hdrs, web
from multidict import CIMultiDict

from controller.store import SnapshotStore, State
from proxy.pages import SERVER

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/event-stream"
HEARTBEAT = b": hb\n\n"
MAX_BUFFERED_BYTES = 64 * 1024
"""A subscriber whose connection holds more than this, unsent, is dropped (its client does
not read); it holds at most this plus one event."""

Render = Callable[[State], bytes]
"""The document of a state as compact JSON (one line)."""


class LostNotifier(Protocol):
    """A connection that calls back when it ends (:class:`proxy.connection.HardenedConnection`)."""

    def when_lost(self, callback: Callable[[], None]) -> None: ...


def event(generation: int, data: bytes) -> bytes:
    """One ``status`` event; ``data`` must be one line (compact JSON is)."""
    return b"id: %d\nevent: status\ndata: %s\n\n" % (generation, data)


class Subscriber:
    """One open stream: its one-slot mailbox and what wakes its writer."""

    __slots__ = ("beat", "closed", "generation", "pending", "transport", "wake")

    def __init__(self, transport: asyncio.Transport | None, generation: int) -> None:
        self.transport = transport
        self.generation = generation
        """The last generation handed to this subscriber (pending or written)."""
        self.pending: bytes | None = None
        """The latest event not yet written: never more than one."""
        self.beat = False
        self.closed = False
        self.wake = asyncio.Event()

    def offer(self, generation: int, data: bytes) -> None:
        if generation > self.generation:
            self.generation = generation
            self.pending = data
            self.wake.set()

    def take(self) -> bytes:
        """What to write now: the pending event, else a heartbeat if one is due, else nothing."""
        chunk = self.pending or (HEARTBEAT if self.beat else b"")
        self.pending = None
        self.beat = False
        return chunk

    def end(self) -> None:
        self.closed = True
        self.wake.set()

    def stalled(self) -> bool:
        """The client has gone, or does not read (its connection's buffer past the bound).
        A subscriber without a connection (``transport`` None) never stalls."""
        transport = self.transport
        if transport is None:
            return False
        return transport.is_closing() or transport.get_write_buffer_size() > MAX_BUFFERED_BYTES


class Broadcaster:
    """The status stream of one listener: subscribers, their events and heartbeats."""

    def __init__(
        self,
        store: SnapshotStore,
        render: Render,
        *,
        name: str,
        heartbeat_s: float,
        retry_s: float,
        max_subscribers: int,
        counted: Callable[[int], None] = lambda count: None,
    ) -> None:
        self.name = name
        """The listener it streams on: ``public`` or ``management``."""
        self._store = store
        self._render = render
        self._heartbeat_s = heartbeat_s
        self._retry = b"retry: %d\n" % round(retry_s * 1000)
        self._retry_after = str(max(1, math.ceil(retry_s)))
        self.max_subscribers = max_subscribers
        self._counted = counted
        self._subscribers: set[Subscriber] = set()
        self._cached: tuple[int, bytes] | None = None
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False
        counted(0)
        store.add_listener(self._changed)

    @property
    def subscribers(self) -> frozenset[Subscriber]:
        return frozenset(self._subscribers)

    def pending_events(self) -> int:
        """Events held and not yet written, over every subscriber (at most one each)."""
        return sum(1 for s in self._subscribers if s.pending is not None)

    # -- subscribers -----------------------------------------------------------------------

    def subscribe(
        self, last_event_id: str | None = None, transport: asyncio.Transport | None = None
    ) -> Subscriber | None:
        """A new subscriber with the current state pending (unless ``last_event_id`` names
        it); None when the limit is reached or the stream is closed."""
        if self.closed:
            return None
        if len(self._subscribers) >= self.max_subscribers:
            self._sweep()  # gone clients first: the count must be right when it refuses
            if len(self._subscribers) >= self.max_subscribers:
                return None
        generation, data = self._current()
        subscriber = Subscriber(transport, -1)
        if _parse_id(last_event_id) == generation:
            subscriber.generation = generation
        else:
            subscriber.offer(generation, data)
        self._subscribers.add(subscriber)
        self._counted(len(self._subscribers))
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._heartbeat_s, self._beat)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.discard(subscriber)
            self._counted(len(self._subscribers))
        subscriber.end()
        if not self._subscribers and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """End every stream now and refuse new ones (shutdown)."""
        self.closed = True
        for subscriber in list(self._subscribers):
            if subscriber.stalled():
                self._drop(subscriber)  # a writer waiting for its client to read ends now too
            else:
                subscriber.end()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- events ----------------------------------------------------------------------------

    def _current(self) -> tuple[int, bytes]:
        """The event of the store's current state, rendered once per generation."""
        state = self._store.current
        cached = self._cached
        if cached is None or cached[0] != state.generation:
            cached = self._cached = (state.generation, event(state.generation, self._render(state)))
        return cached

    def _changed(self, state: State) -> None:
        # The store calls this synchronously on every publish: the event is rendered once,
        # after the burst, for whatever state is current then.
        if not self._subscribers or self._flush_scheduled:
            return
        self._flush_scheduled = True
        asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._subscribers:
            return
        generation, data = self._current()
        for subscriber in list(self._subscribers):
            if subscriber.stalled():
                self._drop(subscriber)
            else:
                subscriber.offer(generation, data)

    def _beat(self) -> None:
        self._timer = None
        for subscriber in list(self._subscribers):
            if subscriber.stalled():
                self._drop(subscriber)
            else:
                subscriber.beat = True
                subscriber.wake.set()
        if self._subscribers and not self.closed:
            self._timer = asyncio.get_running_loop().call_later(self._heartbeat_s, self._beat)

    def _sweep(self) -> None:
        for subscriber in list(self._subscribers):
            if subscriber.stalled():
                self._drop(subscriber)

    def _drop(self, subscriber: Subscriber) -> None:
        transport = subscriber.transport
        if transport is not None and not transport.is_closing():
            log.debug("status stream subscriber does not read: dropped")
            transport.abort()
        self.unsubscribe(subscriber)

    # -- HTTP ------------------------------------------------------------------------------

    def busy(self, extra: Iterable[tuple[str, str]] = ()) -> web.Response:
        """503 for a subscriber over the limit, or one arriving while shutting down."""
        detail = (
            "The server is shutting down; reconnect to another."
            if self.closed
            else "Too many open status streams; retry later or poll the status document."
        )
        body = {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": detail,
        }
        headers = CIMultiDict(
            [
                (hdrs.CONTENT_TYPE, "application/problem+json"),
                (hdrs.RETRY_AFTER, self._retry_after),
                (hdrs.CACHE_CONTROL, "no-store"),
                (hdrs.SERVER, SERVER),
                *extra,
            ]
        )
        return web.Response(status=503, body=json.dumps(body).encode(), headers=headers)

    async def respond(
        self, request: web.BaseRequest, extra: Iterable[tuple[str, str]] = ()
    ) -> web.StreamResponse:
        """The stream for ``request`` (``GET``; ``HEAD`` gets the headers alone), headers
        ``extra`` added (CORS); 503 over the limit.  Returns when the stream ends."""
        extra = list(extra)
        headers = CIMultiDict(
            [
                (hdrs.CONTENT_TYPE, CONTENT_TYPE),
                (hdrs.CACHE_CONTROL, "no-store"),
                ("X-Accel-Buffering", "no"),
                ("X-Content-Type-Options", "nosniff"),
                (hdrs.SERVER, SERVER),
                *extra,
            ]
        )
        if request.method == "HEAD":
            return web.Response(headers=headers)
        transport = request.transport
        if transport is None:  # the client has gone already
            return web.Response(status=499, reason="Client Closed Request")
        subscriber = self.subscribe(request.headers.get("Last-Event-ID"), transport)
        if subscriber is None:
            return self.busy(extra)
        protocol = request.protocol
        if hasattr(protocol, "when_lost"):
            notifier: LostNotifier = protocol
            notifier.when_lost(lambda: self.unsubscribe(subscriber))
        response = web.StreamResponse(headers=headers)
        response.force_close()  # the connection ends with the stream
        try:
            await response.prepare(request)
            await response.write(self._retry + (subscriber.take() or b"\n"))
            while not subscriber.closed:
                await subscriber.wake.wait()
                subscriber.wake.clear()
                chunk = subscriber.take()
                if chunk and not subscriber.closed:
                    await response.write(chunk)
        except ConnectionError:
            pass  # the client went away (aiohttp's ClientConnectionResetError is one)
        finally:
            self.unsubscribe(subscriber)
        return response


def _parse_id(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() and len(value) < 20 else None
