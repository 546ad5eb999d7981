"""The public listener's fast lane: the common request served without aiohttp's server.

aiohttp's server costs about as much per request as everything mwm does: a measured
37 µs of CPU for a pre-rendered page, where the page is one dict lookup and one write
(``bench/RESULTS.md``).  Nearly every request a maintenance proxy sees is the same
kind: an HTTP/1.1 ``GET`` or ``HEAD`` without a body, its head whole in one read,
forwarded or given the page (and the rest of such a client's requests, forms and API
calls with small bodies among them, should stay on the lane).  :class:`FastLane` is the
connection protocol of the public listener: it parses each read with the request parser
aiohttp's server uses (llhttp's C parser, or the pure-Python one:
:func:`~proxy.aiohttp_compat.server_request_parser`), with the same limits, so both read
a request the same way; it asks
:meth:`~proxy.public.PublicHandler.quick` for the answer, and

- writes the maintenance page at once, from ``data_received``: no task, no request
  object, one write;
- forwards a request from a task of its own, through the same
  :meth:`~proxy.forwarding.Forwarder.forward` (slots, resend, error pages, streaming and
  the send timeout included), with an aiohttp request built for it, and writes the answer
  as aiohttp's server does;
- answers a ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` with a body framed by its
  ``Content-Length`` (or none), at most ``max_header_bytes`` with its head, with the
  listener's handler (:meth:`~proxy.public.PublicHandler.handle`, everything it does included: the
  page, holds, limits, forwarding) from a task, with the aiohttp request the listener's
  request factory makes, and writes the answer as aiohttp's server does; the part of the
  body still to come (a client may write a head and its body apart) is read into that
  request as it comes, whatever the handler does meanwhile (its body timeout applies; a
  client that leaves fails the body's reader at once, as with aiohttp's server).  A form
  or an API call keeps its connection on the lane for the requests after it;
- hands everything else to aiohttp's server: a read that is not exactly one such request
  (a partial head, bytes of the next request, a chunked body, ``Expect``, an upgrade,
  another method, HTTP/1.0, a head the parser refuses, a read or a request with its body
  over ``max_header_bytes``), and every plain request ``quick`` does not
  answer (refusals, odd targets, the status and cookie paths, bypasses, holds).  The
  connection is then given, with the bytes just read, to a
  :class:`~proxy.connection.HardenedConnection` (``transport.set_protocol``) and stays
  with it: the answers, limits and timeouts are exactly the server's.  A hand-off happens
  only between requests, when nothing of the lane's is in flight, so the new protocol
  starts at a message boundary, as on a new connection.

A request with ``Connection: close`` is served too; the connection ends after its answer.

Timers: one per connection, re-armed only when it fires (or when a deadline comes
earlier).  A connection must complete its first head within ``header_timeout_s`` of its
start (a hand-off before then keeps that deadline; a silent connection is counted in
``mwm_header_timeouts_total``) and is closed after ``keepalive_timeout_s`` idle between
requests.  Bytes read while a forwarded request is in flight (a client pipelining) are
kept, reading pauses past 64 KiB of them, and they are served once its answer is
written; while the client does not read what was written (the transport asks to pause
writing), nothing more is served either.

Shutdown (:class:`Lane`, called by :class:`~proxy.connection.HardenedServer`): idle
connections are closed at once, a connection with a request in flight after its answer;
the answers in flight get up to the drain timeout, then their tasks are cancelled and
their connections closed.

Off when the access log is on (its lines are written by aiohttp's server) and with
``MWM_LISTEN__FAST_LANE=false``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, cast

from aiohttp import HttpVersion11, web
from aiohttp.http import RawRequestMessage, StreamWriter
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from multidict import CIMultiDictProxy

from proxy.aiohttp_compat import ServerProtocol, server_request_parser
from proxy.metrics import Metrics
from proxy.pages import RenderedPage
from proxy.prebuilt import CLOSE, one_write
from proxy.settings import LimitSettings

if TYPE_CHECKING:
    from proxy.connection import HardenedConnection
    from proxy.forwarding import Forwarder
    from proxy.public import Forward, PublicHandler, RequestFactory

log = logging.getLogger(__name__)

_PLAIN_METHODS: Final = frozenset({"GET", "HEAD"})
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Methods whose request with a body (within ``max_header_bytes`` with its head) the lane
answers through the listener's handler (:meth:`FastLane._handle_body`) instead of handing
the connection off."""
_HEAD_END: Final = b"\r\n\r\n"
_READ_BUFFER: Final = 2**16
"""The parser's buffer size for a body it reads; also the most a request with the part of
its body still to come may be (and at most ``max_header_bytes``) for the lane to wait for
that part."""
_MAX_PENDING: Final = 2**16
"""Bytes kept from a client pipelining behind a request in flight before reading pauses."""


class Lane:
    """What the fast lane's connections share: one per public listener."""

    def __init__(
        self,
        handler: PublicHandler,
        forwarder: Forwarder,
        *,
        limits: LimitSettings,
        metrics: Metrics,
        error_page: Callable[[CIMultiDictProxy[str], int, str], RenderedPage],
        request_factory: RequestFactory,
    ) -> None:
        self.handler = handler
        self.request_factory = request_factory
        """Makes the aiohttp request a whole request with a body is handled as (the one
        aiohttp's server of this listener uses)."""
        self.forwarder = forwarder
        self.metrics = metrics
        self.error_page = error_page
        self.max_head_bytes = limits.max_header_bytes
        self.header_timeout_s = limits.header_timeout_s
        self.keepalive_timeout_s = limits.keepalive_timeout_s
        self.parser_class = server_request_parser()
        self.parser_options: dict[str, Any] = {
            "max_line_size": limits.max_request_line_bytes,
            "max_field_size": limits.max_header_field_bytes,
            "max_headers": limits.max_header_count,
            "auto_decompress": False,
        }
        self.connections: set[FastLane] = set()
        self.hand_off: Callable[[], HardenedConnection] | None = None
        """Makes the connection a hand-off continues on (set by the server)."""

    def pre_shutdown(self) -> None:
        """Close the idle connections; the others after the answer in flight."""
        for connection in list(self.connections):
            connection.close()

    async def shutdown(self, drain_s: float | None) -> None:
        """Wait up to ``drain_s`` for the answers in flight, then cut what is left."""
        waits = [c.finished() for c in self.connections if c.busy]
        if waits:
            await asyncio.wait(waits, timeout=drain_s)
        for connection in list(self.connections):
            connection.abort()


class FastLane(ServerProtocol):
    """A public-listener connection served by the fast lane until it is handed off."""

    __slots__ = (
        "_body",
        "_body_missing",
        "_closing",
        "_deadline",
        "_event_loop",
        "_finished",
        "_first",
        "_lane",
        "_message",
        "_pending",
        "_remote",
        "_request_parser",
        "_scheme",
        "_timer",
        "busy",
        "peername",
        "sockname",
        "ssl_context",
        "task",
    )

    def __init__(self, lane: Lane, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._event_loop = loop
        self._lane = lane
        self._request_parser = lane.parser_class(self, loop, _READ_BUFFER, **lane.parser_options)
        self.busy = False
        """A request is being answered (forwarded: see :meth:`_forward`)."""
        self.task: asyncio.Task[None] | None = None
        """The task answering it, when it needs one."""
        self._message: RawRequestMessage | None = None
        """The request being forwarded."""
        self._finished: asyncio.Future[None] | None = None
        """Set when the answer in flight is done (made for a shutdown waiting for it)."""
        self._pending: bytes | None = None
        """Bytes read while a request was in flight or writing was paused."""
        self._body: StreamReader | None = None
        """The body of the request being answered while some of it is still to come..."""
        self._body_missing = 0
        """...and how many bytes of it (read into it by the parser as they come)."""
        self._closing = False
        """Close once the answer in flight is written (shutdown)."""
        self._first = True
        """No request served yet: the idle deadline is the header timeout's."""
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        # What aiohttp's request reads of its connection, as aiohttp's connection has them.
        self.peername: Any = None
        self.sockname: Any = None
        self.ssl_context: Any = None
        self._remote: str | None = None
        """The client's address as ``request.remote`` says it."""
        self._scheme = "http"

    # --- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.peername = peer = transport.get_extra_info("peername")
        self.sockname = transport.get_extra_info("sockname")
        self.ssl_context = transport.get_extra_info("sslcontext")
        if self.ssl_context is not None:
            self._scheme = "https"
        if peer is not None:
            self._remote = str(peer[0]) if isinstance(peer, list | tuple) else str(peer)
        lane = self._lane
        lane.connections.add(self)
        self._deadline = deadline = self._event_loop.time() + lane.header_timeout_s
        self._timer = self._event_loop.call_at(deadline, self._idle_check)

    def data_received(self, data: bytes) -> None:
        missing = self._body_missing
        if missing:  # the rest of a body: to its request, whatever else is going on
            body = data[:missing]
            self._body_missing = missing = missing - len(body)
            self._request_parser.feed_data(body)  # framed by its length: nothing to refuse
            if not missing:
                self._body = None
            data = data[len(body) :]
            if not data:
                return
        if self.busy or self.writing_paused or self._pending is not None:
            self._keep(data)
            return
        self._serve(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self._lane.connections.discard(self)
        self._stop_timer()
        self._pending = None
        body = self._body
        if body is not None:  # as aiohttp's server does: the handler reading it learns now
            self._body = None
            self._body_missing = 0
            body.set_exception(exc if exc is not None else ConnectionResetError("Connection lost"))

    def pause_reading(self) -> None:
        """Called by a body's buffer in the parser past twice its limit (``_READ_BUFFER``):
        a body the lane waits for is at most that limit (aiohttp's server takes the larger
        ones), so the transport is never paused for it."""

    def resume_reading(self, resume_parser: bool = True) -> None:
        """See :meth:`pause_reading`."""

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self.busy:
            self._serve_pending()

    # --- serving ------------------------------------------------------------------

    def _serve(self, data: bytes) -> None:
        lane = self._lane
        # The read must hold one whole request and nothing after it: a head, then (a body
        # method) exactly the body its Content-Length announces, or part of it.  Anything
        # else (a partial head, bytes of the next request) is handed off with every byte
        # read, and this parser, which may have taken some of them, is not used again.
        whole_head = data.endswith(_HEAD_END)  # a plain request's read ends with its head
        if len(data) > lane.max_head_bytes or not (whole_head or _HEAD_END in data):
            self._hand_off(data)  # (a partial head is never parsed here: aiohttp's bounds it)
            return
        try:
            messages, upgraded, tail = self._request_parser.feed_data(data)
        except HttpProcessingError:
            self._hand_off(data)
            return
        if len(messages) != 1 or upgraded or tail:
            self._hand_off(data)
            return
        message, payload = messages[0]
        headers = message.headers
        method = message.method
        if (
            message.version != HttpVersion11
            or message.upgrade
            or "Upgrade" in headers  # the last request of its connection (conformance)
        ):
            self._hand_off(data)
            return
        if method not in _PLAIN_METHODS:
            if method in _BODY_METHODS and "Transfer-Encoding" not in headers:
                self._serve_body(data, message, payload)
            else:
                self._hand_off(data)
            return
        if payload is not EMPTY_PAYLOAD or not whole_head:
            self._hand_off(data)
            return
        answer = lane.handler.quick(message, self._remote)
        if answer is None:
            self._hand_off(data)
        elif isinstance(answer, RenderedPage):
            transport = self.transport
            assert transport is not None
            body = b"" if method == "HEAD" else answer.body
            if message.should_close or self._closing:
                transport.write(one_write(answer.wire_head, body, connection=CLOSE))
                transport.close()
                return
            transport.write(one_write(answer.wire_head, body))
            self._answered()
        else:
            self._forward(answer)

    def _serve_body(self, data: bytes, message: RawRequestMessage, payload: StreamReader) -> None:
        """A request with a body, its head whole in ``data`` (parsed: ``message``)."""
        headers = message.headers
        length = headers.get("Content-Length") if payload is not EMPTY_PAYLOAD else "0"
        if length is None or payload.exception() is not None or "Expect" in headers:
            self._hand_off(data)
            return
        total = data.index(_HEAD_END) + len(_HEAD_END) + int(length)
        if len(data) == total and payload.is_eof():
            self._handle_body(message, payload, 0)
        elif len(data) < total <= min(self._lane.max_head_bytes, _READ_BUFFER):
            self._handle_body(message, payload, total - len(data))
        else:
            self._hand_off(data)

    def _forward(self, forward: Forward) -> None:
        """Forward a request: without a task when the forwarder can (an idle pooled
        connection, a free slot), else from one, through :meth:`Forwarder.forward`."""
        self.busy = True
        self._message = forward.message
        if not self._lane.forwarder.forward_now(
            self,
            forward.message,
            path=forward.path,
            remote=self._remote,
            scheme=self._scheme,
            extra_headers=forward.announce,
        ):
            self.quick_continue(functools.partial(self._lane.handler.forward, forward=forward))

    def _handle_body(self, message: RawRequestMessage, payload: StreamReader, missing: int) -> None:
        """Answer a request with a body (a form, an API call) with the listener's handler,
        from a task, as aiohttp's server would; ``missing`` bytes of the body are still to
        come (a client may write a head and its body apart), read into ``payload`` as they
        do, whatever the handler does meanwhile.  The connection stays on the lane."""
        self.busy = True
        self._message = message
        if missing:
            self._body = payload
            self._body_missing = missing
        self._respond_from_task(self._lane.handler.handle, payload)

    # --- the forwarder's QuickClient ------------------------------------------------

    def quick_answer(self, data: bytes, *, close: bool) -> None:
        transport = self.transport
        if transport is not None:
            transport.write(data)
        self._done(keep=not close)

    def quick_continue(
        self, respond: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
    ) -> None:
        self._respond_from_task(respond)

    def _respond_from_task(
        self,
        respond: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        payload: StreamReader | None = None,
    ) -> None:
        """Answer the request in flight with :meth:`_respond`, from a task of its own."""
        self.task = self._event_loop.create_task(self._respond(respond, payload), name="fast lane")

    def quick_abandoned(self) -> None:
        self._done(keep=False)

    async def _respond(
        self,
        respond: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        payload: StreamReader | None = None,
    ) -> None:
        """Answer with ``respond``'s response to an aiohttp request for the request being
        answered, written as aiohttp's server writes it: a request :meth:`quick` let through
        (its message already as the request factory makes it), or, with its ``payload``, a
        whole request with a body, made by the listener's request factory."""
        loop = self._event_loop
        task = self.task  # set before this coroutine's first step (current_task() would
        message = self._message  # cost a getpid() per call on Python 3.11)
        assert task is not None
        assert message is not None
        keep = False
        try:
            # aiohttp's request reads its protocol's transport and the attributes above
            # (and hands the protocol to who asks: see force_close).
            protocol = cast(web.RequestHandler, self)
            writer = StreamWriter(self, loop)
            if payload is None:
                request = web.BaseRequest(message, EMPTY_PAYLOAD, protocol, writer, task, loop)
            else:
                request = self._lane.request_factory(message, payload, protocol, writer, task)
            response = await respond(request)
            await response.prepare(request)
            await response.write_eof()
            keep = bool(response.keep_alive)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client left (or its slot was taken back): nothing to answer
        except Exception:
            log.exception("error while forwarding a request")
            self._write_error(message)
        finally:
            self.task = None
            self._done(keep=keep)

    def _done(self, *, keep: bool) -> None:
        """The answer in flight is written (or will never be): idle again, or closed."""
        self.busy = False
        self._message = None
        finished = self._finished
        if finished is not None:
            self._finished = None
            if not finished.done():
                finished.set_result(None)
        if keep and not self._closing and self.transport is not None:
            self._answered()
            self._serve_pending()
        else:
            self._close_transport()

    def finished(self) -> asyncio.Future[None]:
        """Done when the answer in flight is (for a shutdown waiting for it)."""
        finished = self._finished
        if finished is None:
            finished = self._finished = self._event_loop.create_future()
            if not self.busy:
                finished.set_result(None)
        return finished

    def _write_error(self, message: RawRequestMessage) -> None:
        """A 500 page, then the connection ends (what aiohttp's server does)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        page = self._lane.error_page(
            message.headers, 500, "The proxy failed to handle the request."
        )
        body = b"" if message.method == "HEAD" else page.body
        transport.write(one_write(page.wire_head, body, connection=CLOSE))

    def _answered(self) -> None:
        """An answer was written and the connection stays: idle from now."""
        self._first = False
        self._deadline = deadline = self._event_loop.time() + self._lane.keepalive_timeout_s
        timer = self._timer
        # Re-armed only when none is pending or the pending one is later (a keep-alive
        # timeout shorter than the header timeout).
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self._event_loop.call_at(deadline, self._idle_check)

    def _keep(self, data: bytes) -> None:
        pending = self._pending = data if self._pending is None else self._pending + data
        if len(pending) > _MAX_PENDING:
            self.pause_transport_reading()

    def _serve_pending(self) -> None:
        pending = self._pending
        if pending is None or self.writing_paused or self.transport is None:
            return
        self._pending = None
        self.resume_transport_reading()
        self._serve(pending)

    def _hand_off(self, data: bytes) -> None:
        """Continue this connection on aiohttp's server, with ``data`` its first bytes."""
        lane = self._lane
        transport = self.transport
        assert transport is not None
        assert lane.hand_off is not None
        lane.connections.discard(self)
        self._stop_timer()
        header_timeout_s = None
        if self._first:  # the first head's deadline runs from the connection's start
            header_timeout_s = max(self._deadline - self._event_loop.time(), 0.0)
        # Reading resumes first (the lane may have paused it for pipelined bytes): the new
        # protocol pauses it again itself if what it is given is too much.
        self.resume_transport_reading()
        connection = lane.hand_off()
        transport.set_protocol(connection)
        connection.take_over(transport, data, header_timeout_s=header_timeout_s)

    # --- timers and shutdown ------------------------------------------------------

    def _idle_check(self) -> None:
        self._timer = None
        if self.transport is None:
            return
        if self.busy:  # the answer re-arms it
            return
        now = self._event_loop.time()
        if now < self._deadline:
            self._timer = self._event_loop.call_at(self._deadline, self._idle_check)
            return
        if self._first:
            self._lane.metrics.header_timeouts.inc()
            log.debug("request head not complete in time: closing the connection")
        self._close_transport()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close_transport(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def close(self) -> None:
        """End the connection: now when idle, else once the answer in flight is written."""
        self._closing = True
        if not self.busy:
            self._close_transport()

    def force_close(self) -> None:
        """End the connection once the answer in flight is written (what a response asks
        of aiohttp's connection when it must be the last)."""
        self.close()

    def abort(self) -> None:
        """End the connection now, cancelling the answer in flight."""
        task = self.task
        if task is not None and not task.done():
            task.cancel()
        transport = self.transport
        if transport is not None:
            transport.abort()
