"""A client connection on either listener: request-head limits, timeouts and framing.

aiohttp's :class:`~aiohttp.web.RequestHandler` (one per connection) parses request heads
with limits of its own and has one timer, ``keepalive_timeout``, which closes a
connection that sits between requests.  :class:`HardenedConnection` adds what a listener
facing hostile clients needs; both listeners use it (the public one through
:class:`HardenedServer`, the management one through :class:`HardenedAppRunner`):

- A *header timeout*.  aiohttp's one timer runs from the connection's start or the end
  of the previous response, is not reset by incoming bytes, and closes the connection if
  no complete head has arrived by then; so a client dribbling its head one byte at a
  time is held for the whole keep-alive timeout.  One timer cannot do both jobs: behind a
  load balancer idle connections must live longer than the balancer's own idle timeout
  (a minute or more), while a head should take a real client a fraction of a second.
  Here a head must be complete within ``header_timeout_s`` of the connection's start, or
  of the first bytes of a later request (the keep-alive timer stops then: the connection
  is no longer idle).  When it is not, the connection is closed without an answer, as
  nginx does: there is no request to answer yet.  The clock is armed only when a read
  leaves a head incomplete, so a head that arrives whole costs no timer; a partial head
  that arrives in the same read as a complete one before it is bounded by the keep-alive
  timer instead, like any idle connection.
- A bound on the bytes of a whole head (``max_header_bytes``, like nginx's
  ``large_client_header_buffers``), and an unfinished head held at its size.  The
  parser's own limits are per field and per count, and it keeps every field of an
  unfinished head two or three times over (as sent, decoded, and the objects around
  them): 120 fields of 16 KB, each within the limits, cost 3.8 MiB per connection.  So a
  read that begins a head without ending it is not given to the parser: its bytes are
  held here, as they came, until the empty line that ends the head arrives (then the
  parser gets them all at once) or they pass the bound (431, and the connection closed).
  A read that ends with a whole head, nearly every one, goes straight to the parser and
  costs a few comparisons; a head that completes in a read longer than the bound is
  measured from its parsed fields.  A head that begins in the read that ends a request
  body reaches the parser with it; its bytes from the next read on are counted against
  the same bound (so what a connection holds is bounded by the limit plus that one
  read).  Bytes that cannot begin a request (a TLS handshake, say) and a request line
  already past its limit go to the parser at once, to be refused at once (400, 414).
- One request framing reading.  aiohttp's C parser (llhttp) reports the trailer fields
  of a chunked body through the callbacks it uses for header fields, and keeps the last
  one pending: it is added to the *next* request's headers (a bypass header, a cookie,
  ``Authorization``), whether that request arrived with the body or later.  Nothing it
  exposes tells whether a body had trailers, so a chunked request is the last one read on
  its connection: it is answered with ``Connection: close``, any request parsed after it
  is dropped unanswered, and nothing more is read.  Clients retry an unanswered request on
  a new connection; chunked request bodies are rare (browsers never send them).  A
  request switching protocols (a websocket handshake) is the last one too: aiohttp parses
  what follows it only when the switch is declined, outside ``data_received``.
- Answers that say what went wrong, and nothing else.  A request line or header over the
  parser's limits is answered 400 by aiohttp, in plain text, with a logged traceback; a
  malformed one gets a 400 quoting the offending bytes (a header with a token in it, say)
  and ``Server: Python/... aiohttp/...``.  Here it gets the listener's own answer (the
  error page on the public listener, a short text on the management one), 400, 414 URI
  Too Long or 431 Request Header Fields Too Large, ``Server: mwm``, and is logged at debug
  level: it is the client's doing, and logging each one at a higher level would let anyone
  fill the logs.

Once a head is complete the header timer stops; a slow body, a slow upstream or a
websocket are not its business (the upstream timeouts and the client's own patience
are).  Pipelined requests queued behind a busy one are covered by the keep-alive timer
that starts when the busy one has been answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http import RawRequestMessage
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader

from proxy.aiohttp_compat import (
    TOO_MANY_HEADERS,
    HandlerInternals,
    ParserRefusal,
    ServerMakingAppRunner,
    line_limit,
    replace_message,
    server_loop,
    server_options,
)
from proxy.conformance import parser_refusal
from proxy.fastlane import FastLane, Lane
from proxy.forwarding import ErrorResponder
from proxy.metrics import Metrics
from proxy.pages import SERVER
from proxy.settings import LimitSettings

log = logging.getLogger(__name__)


class HeadTooLarge(HttpProcessingError):
    """A request head over ``max_header_bytes`` in all: raised by no parser, queued here."""

    code = 431
    message = "Request head too large"


def text_refusal(request: web.BaseRequest, status: int, reason: str) -> web.Response:
    """A short plain-text refusal, for a listener whose clients are programs (probes,
    Prometheus, ``mwm`` itself) rather than browsers."""
    return web.Response(
        status=status,
        text=f"{HTTPStatus(status).phrase}: {reason}\n",
        headers={hdrs.SERVER: SERVER, hdrs.CACHE_CONTROL: "no-store"},
    )


class HardenedConnection(HandlerInternals):
    """aiohttp's request handler with a header timeout, a bound on a whole head, one
    chunked request per connection and answers of our own to bad heads.

    The handler's own state (its queue of parsed requests, the count, the waiter, the
    upgrade flag) is reached under the ``aiohttp_`` names of
    :class:`~proxy.aiohttp_compat.HandlerInternals`."""

    __slots__ = (
        "_body",
        "_body_is_chunked",
        "_ended",
        "_head_bytes",
        "_header_timer",
        "_held",
        "_idle",
        "_limits",
        "_lost_callbacks",
        "_max_head_bytes",
        "_max_line_bytes",
        "_metrics",
        "_refuse",
    )

    def __init__(
        self,
        manager: web.Server,
        *,
        limits: LimitSettings,
        refuse: ErrorResponder,
        metrics: Metrics | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            manager,
            keepalive_timeout=limits.keepalive_timeout_s,
            max_line_size=limits.max_request_line_bytes,
            max_field_size=limits.max_header_field_bytes,
            max_headers=limits.max_header_count,
            **kwargs,
        )
        self._limits = limits
        self._refuse = refuse
        self._metrics = metrics
        self._header_timer: asyncio.TimerHandle | None = None
        self._held: bytearray | None = None
        """The beginning of a head whose end has not arrived (the parser has not seen it)."""
        self._head_bytes: int | None = None
        """Bytes of the beginning of a head that the parser holds, as far as counted; None
        when it holds none (between requests, or when the head is held here)."""
        self._body: StreamReader | None = None
        """The body of the last request parsed while it is still arriving."""
        self._body_is_chunked = False
        self._ended = False
        """Nothing more is read on this connection (after a chunked request or a refusal)."""
        self._idle = True
        """Between requests, with none of the states above: the next read takes the short
        way through :meth:`data_received`."""
        self._max_head_bytes = limits.max_header_bytes
        self._max_line_bytes = limits.max_request_line_bytes
        self._lost_callbacks: list[Callable[[], None]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_header_timer()

    def take_over(
        self, transport: asyncio.Transport, data: bytes, *, header_timeout_s: float | None
    ) -> None:
        """Continue a connection :mod:`proxy.fastlane` began, between two requests: ``data``
        is what it read and did not serve.  ``header_timeout_s``: what is left of the
        first head's time when no request was served yet (None: a later request, whose
        head gets the whole header timeout from its first bytes)."""
        super().connection_made(transport)
        self._start_header_timer(header_timeout_s)
        self.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self._idle and data.endswith(b"\r\n\r\n"):
            # The usual read: a whole head, between requests.  What it costs beyond
            # aiohttp's own parsing is these few checks.
            parsed = self.aiohttp_request_count
            super().data_received(data)
            if self.aiohttp_request_count - parsed == 1 and len(data) <= self._max_head_bytes:
                payload = self.aiohttp_messages[-1][1]
                if payload is EMPTY_PAYLOAD and not self.aiohttp_upgraded:
                    self._stop_header_timer()
                    return
            self._parsed(parsed, data)
        elif self._ended:
            pass
        elif (held := self._held) is not None and data:
            seen = len(held)
            held += data
            if _ends_a_head(held, seen):
                self._held = None
                self._split(bytes(held))
            else:
                self._check_held(held)
        elif (
            self._head_bytes is not None  # the parser holds the beginning of a head
            or self._body is not None
            or self.aiohttp_upgraded
            or self.aiohttp_payload_parser is not None  # a websocket's frames
            or not data
            or data.endswith(b"\r\n\r\n")
        ):
            self._parse(data)
        else:
            self._split(data)

    def _split(self, data: bytes) -> None:
        """``data`` begins a head and does not end with a complete one: the parser gets
        what ends a head, and an unfinished head is held here until its end arrives."""
        end = data.rfind(b"\r\n\r\n")
        if end < 0:
            if b"\n\n" in data or not data[:1].isupper():
                self._parse(data)  # no head the parser would wait for: it says so
            else:
                self._hold(data)
            return
        rest = data[end + 4 :]
        self._parse(data[: end + 4])
        if not rest or self._ended:
            return
        if (
            self._idle
            and not self.aiohttp_upgraded
            and rest[:1].isupper()
            and not _ends_a_head(rest, 0)
        ):
            self._hold(rest)  # timed by the keep-alive timer, as before
        else:
            self._parse(rest)

    def _hold(self, data: bytes) -> None:
        """Keep the beginning of a head until its end arrives (the parser is not given it)."""
        self._start_header_timer_if_idle()
        self._held = held = bytearray(data)
        self._idle = False
        self._check_held(held)

    def _check_held(self, held: bytearray) -> None:
        """Refuse a held head past the bound; a request line past its own limit goes to the
        parser, whose refusal (414) says what is wrong."""
        if len(held) > self._max_head_bytes:
            self._refuse_head()
        elif len(held) > self._max_line_bytes and held.find(b"\n", 0, self._max_line_bytes) < 0:
            self._held = None
            self._parse(bytes(held))

    def _parse(self, data: bytes) -> None:
        """Hand ``data`` to aiohttp's parser, then :meth:`_parsed`."""
        parsed = self.aiohttp_request_count
        super().data_received(data)
        self._parsed(parsed, data)

    def _parsed(self, parsed: int, data: bytes) -> None:
        """Look at what the parser made of ``data``; ``parsed`` requests were queued before."""
        # A head is complete (or refused): stop the clock.
        if self.aiohttp_request_count != parsed:
            self._stop_header_timer()
            self._read_heads(self.aiohttp_request_count - parsed, data)
        else:
            # No head completed: the parser changed nothing of the handler's state.
            self._start_header_timer_if_idle()
            body = self._body
            if body is not None:
                if body.is_eof():
                    # Bytes after the body's end begin the next head, in the parser: not
                    # counted (at most this read); or nothing more is read, after a chunked one.
                    self._body = None
                    self._head_bytes = 0
                    self._ended = self._body_is_chunked
            elif not self.aiohttp_upgraded and self.aiohttp_payload_parser is None and data:
                # No head completed, no body: the parser holds these bytes as part of a head.
                self._head_bytes = (self._head_bytes or 0) + len(data)
                if self._head_bytes > self._max_head_bytes:
                    self._refuse_head()
        self._idle = (
            self._head_bytes is None
            and self._body is None
            and self._held is None
            and not self._ended
            and not self._body_is_chunked
        )

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)
        callbacks, self._lost_callbacks = self._lost_callbacks, None
        for callback in callbacks or ():
            callback()

    def when_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the connection ends: a long-lived answer (a status
        stream) learns at once that its client has gone, which aiohttp tells a handler
        only by cancelling it (``handler_cancellation``, off here)."""
        if self._lost_callbacks is None:
            self._lost_callbacks = []
        self._lost_callbacks.append(callback)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        refusal = self._refusal(exc)
        if refusal is None:
            response = super().handle_error(request, status, exc, message)
            response.headers[hdrs.SERVER] = SERVER  # not aiohttp's, with its version
            return response
        status, reason = refusal
        self._ended, self._idle = True, False  # nothing after a refused head is read
        log.debug("request head refused", extra={"status": status, "client": request.remote})
        if self._metrics is not None:
            self._metrics.rejected.inc(status)
        response = self._refuse(request, status, reason)
        response.force_close()  # the parser stopped mid-head: nothing after it can be read
        return response

    def _read_heads(self, count: int, data: bytes) -> None:
        """Look at the ``count`` requests the last read completed (the last ones queued)."""
        messages = self.aiohttp_messages
        first = len(messages) - count
        if self._body_is_chunked:
            # The chunked body ended in this read and more requests came after it: they
            # are not served (the last trailer field may be in the first one's headers).
            self._drop_after(first - 1)
            self._ended = True
            return
        limit = self._max_head_bytes
        # Every head completed here began in this read or in the bytes the parser held.
        measure = (self._head_bytes or 0) + len(data) > limit  # else all are within it
        for index in range(first, len(messages)):
            message, payload = messages[index]
            if isinstance(message, ParserRefusal):  # the parser's refusal: nothing after it is read
                self._ended = True
                return
            if measure and _head_size(message) > limit:
                messages[index] = (self._too_large(), EMPTY_PAYLOAD)
                self._drop_after(index)
                self._ended = True
                return
            if payload is not EMPTY_PAYLOAD and (message.chunked or message.upgrade):
                # The last request of its connection (an upgrade: see below).
                messages[index] = (replace_message(message, should_close=True), payload)
                if message.chunked:
                    # Requests after it in this read came after its last chunk: dropped.
                    self._drop_after(index)
                    self._body, self._body_is_chunked = payload, True
                    self._ended = payload.is_eof()  # else once its body has arrived
                    return
        message, payload = messages[-1]
        if payload is not EMPTY_PAYLOAD:
            if not payload.is_eof():
                self._body, self._head_bytes = payload, None
            else:  # a body ended in this read: what follows it is not counted
                self._body, self._head_bytes = None, 0
            return
        self._body = None
        if self.aiohttp_upgraded and not isinstance(message, ParserRefusal):
            # An upgrade without a body (a websocket handshake): the last request of its
            # connection.  aiohttp parses what follows only if the upgrade is declined,
            # outside data_received, where nothing here would look at it.
            messages[-1] = (replace_message(message, should_close=True), payload)
        elif data.endswith(b"\r\n\r\n"):
            self._head_bytes = None  # the read ended with the head: between requests
        else:
            # What follows the last head begins the next one (held here unless bytes after
            # a head reached the parser with it: pipelined, or after a body).
            self._head_bytes = len(data) - data.rfind(b"\r\n\r\n") - 4
            if self._head_bytes > limit:
                self._refuse_head()

    def _drop_after(self, index: int) -> None:
        """Unqueue every request after the one at ``index``: they will not be answered."""
        messages = self.aiohttp_messages
        while len(messages) > index + 1:
            messages.pop()

    def _refuse_head(self) -> None:
        """Queue the 431 answer to the head being received, and read nothing more."""
        self._stop_header_timer()
        self._ended = True
        self._idle = False
        self._held = None
        self.aiohttp_messages.append((self._too_large(), EMPTY_PAYLOAD))
        self.aiohttp_request_count += 1
        waiter = self.aiohttp_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _too_large(self) -> ParserRefusal:
        exc = HeadTooLarge(message=HeadTooLarge.message)
        return ParserRefusal(status=exc.code, exc=exc, message=exc.message)

    def _refusal(self, exc: BaseException | None) -> tuple[int, str] | None:
        """``(status, reason)`` when ``exc`` is the parser's: a size limit, or malformed."""
        limits = self._limits
        if isinstance(exc, LineTooLong):
            # The exception carries the limit it hit; it names the request line only when
            # that limit is not also the header one (then 431 covers both).
            limit = line_limit(exc)
            if limit == limits.max_request_line_bytes != limits.max_header_field_bytes:
                return 414, (f"The request URL is longer than the {limit} bytes this site accepts.")
            return 431, (
                "A request header is longer than the "
                f"{limits.max_header_field_bytes} bytes this site accepts. "
                "Clearing this site's cookies may help."
            )
        if isinstance(exc, BadHttpMessage) and exc.message == TOO_MANY_HEADERS:
            return 431, (
                f"The request has more than the {limits.max_header_count} header fields "
                "this site accepts."
            )
        if isinstance(exc, HeadTooLarge):
            return 431, (
                f"The request's headers are larger than the {limits.max_header_bytes} bytes "
                "this site accepts in all. Clearing this site's cookies may help."
            )
        if isinstance(exc, HttpProcessingError):
            # llhttp refuses an HTTP version it does not know as a malformed line; the
            # Python parser passes it on; both must answer 505.
            refused = parser_refusal(exc.message)
            if refused is not None:
                return refused.status, refused.reason
        if isinstance(exc, HttpProcessingError) and exc.code == 400:
            # aiohttp's own answer quotes the offending bytes back (a header with a token
            # in it, say) and names its version; ours says only what is wrong.
            return 400, "The request is malformed; it was not forwarded."
        return None

    def _waiting_for_a_request(self) -> bool:
        """True between requests: the handler loop waits and nothing is queued."""
        waiter = self.aiohttp_waiter
        return waiter is not None and not waiter.done() and not self.aiohttp_messages

    def _start_header_timer_if_idle(self) -> None:
        """Arm the header clock when a read leaves a new head incomplete between requests.
        A head that arrives whole in one read (nearly every one) needs no timer; a head
        begun behind a request in progress is timed by the keep-alive timer that starts
        when that request has been answered."""
        if self._header_timer is None and self._waiting_for_a_request():
            self._start_header_timer()

    def _start_header_timer(self, timeout_s: float | None = None) -> None:
        # The idle keep-alive timer stops: a request has begun (aiohttp restarts it after
        # the response).  keep_alive(True) is aiohttp's way to cancel it.
        self.keep_alive(True)
        self._header_timer = self.aiohttp_loop.call_later(
            self._limits.header_timeout_s if timeout_s is None else timeout_s,
            self._header_timed_out,
        )

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        # A request in progress cannot happen (a head stops the timer); never cut one.
        if self.aiohttp_request_in_progress:
            return
        if self._metrics is not None:
            self._metrics.header_timeouts.inc()
        log.debug("request head not complete in time: closing the connection")
        self.force_close()


def _ends_a_head(data: bytes | bytearray, seen: int) -> bool:
    """Whether ``data``, of which the first ``seen`` bytes were looked at before, holds the
    end of a head (an empty line; with bare LFs too, which the parser refuses)."""
    return (
        data.find(b"\r\n\r\n", max(seen - 3, 0)) >= 0 or data.find(b"\n\n", max(seen - 1, 0)) >= 0
    )


def _head_size(message: RawRequestMessage) -> int:
    """The bytes of ``message``'s head as sent, or a little fewer: the request line and
    every field line, less the whitespace around values (the parser strips it)."""
    # "METHOD target HTTP/1.1\r\n", then "name:value\r\n" per field, then "\r\n".
    size = len(message.method) + len(message.path) + 14
    for name, value in message.raw_headers:
        size += len(name) + len(value) + 3
    return size


class HardenedServer(web.Server):
    """aiohttp's low-level server making :class:`HardenedConnection` connections, or, with
    a ``lane``, :class:`~proxy.fastlane.FastLane` ones that hand what they do not serve to
    a :class:`HardenedConnection`.

    ``metrics`` counts refusals and header timeouts (the public listener's); None counts
    nothing."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        *,
        limits: LimitSettings,
        refuse: ErrorResponder,
        metrics: Metrics | None,
        lane: Lane | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._limits = limits
        self._refuse = refuse
        self._metrics = metrics
        self._lane = lane
        if lane is not None:
            lane.hand_off = self.hardened

    def __call__(self) -> HardenedConnection | FastLane:  # type: ignore[override]
        # The event loop's protocol factory: any asyncio protocol will do.
        if self._lane is not None:
            return FastLane(self._lane, server_loop(self))
        return self.hardened()

    def pre_shutdown(self) -> None:
        super().pre_shutdown()
        if self._lane is not None:
            self._lane.pre_shutdown()

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (aiohttp's)
        if self._lane is None:
            await super().shutdown(timeout)
        else:
            await asyncio.gather(super().shutdown(timeout), self._lane.shutdown(timeout))

    def hardened(self) -> HardenedConnection:
        """A new :class:`HardenedConnection` of this server."""
        return HardenedConnection(
            self,
            loop=server_loop(self),
            limits=self._limits,
            refuse=self._refuse,
            metrics=self._metrics,
            **server_options(self),
        )


class HardenedAppRunner(ServerMakingAppRunner):
    """aiohttp's runner for an :class:`~aiohttp.web.Application` whose connections are
    :class:`HardenedConnection` ones (aiohttp's would answer bad heads itself)."""

    def __init__(
        self,
        app: web.Application,
        *,
        limits: LimitSettings,
        refuse: ErrorResponder = text_refusal,
        metrics: Metrics | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits
        self._refuse = refuse
        self._metrics = metrics

    def make_server(self, plain: web.Server, options: dict[str, Any]) -> web.Server:
        # aiohttp's own steps (the application started and frozen, its server's options
        # gathered), then the same server with hardened connections.
        return HardenedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            limits=self._limits,
            refuse=self._refuse,
            metrics=self._metrics,
            **options,
        )
