"""A client connection on the public listener: request-head limits and timeouts.

aiohttp's :class:`~aiohttp.web.RequestHandler` (one per connection) parses request heads
with limits of its own and has one timer, ``keepalive_timeout``, which closes a
connection that sits between requests.  Two things are missing for a listener facing
the internet, and :class:`PublicConnection` adds them:

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
- Answers that say what went wrong.  A request line or header over the parser's limits
  is answered 400 by aiohttp, in plain text, with a logged traceback.  Here it gets the
  error page (as for a 502) with 414 URI Too Long or 431 Request Header Fields Too
  Large, and is logged at debug level: it is the client's doing, and logging each one
  at a higher level would let anyone fill the logs.

Once a head is complete the header timer stops; a slow body, a slow upstream or a
websocket are not its business (the upstream timeouts and the client's own patience
are).  Pipelined requests queued behind a busy one are covered by the keep-alive timer
that starts when the busy one has been answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong

from proxy.forwarding import ErrorResponder
from proxy.metrics import Metrics
from proxy.pages import SERVER
from proxy.settings import LimitSettings

log = logging.getLogger(__name__)

_TOO_MANY_HEADERS = "Too many headers received"
"""The message of aiohttp's parser (C and Python) for more than ``max_headers`` fields."""


class PublicConnection(web.RequestHandler):
    """aiohttp's request handler with a header timeout and 414/431 answers."""

    __slots__ = ("_header_timer", "_limits", "_metrics", "_refuse")

    def __init__(
        self,
        manager: web.Server,
        *,
        limits: LimitSettings,
        refuse: ErrorResponder,
        metrics: Metrics,
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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_header_timer()

    def data_received(self, data: bytes) -> None:
        # A head that arrives whole in one read (nearly every one) needs no timer: the
        # clock is armed only when a read leaves a new head incomplete.
        began = self._header_timer is None and self._waiting_for_a_request()
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:  # a head is complete (or refused): stop the clock
            self._stop_header_timer()
        elif began:
            self._start_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

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
        log.debug("request head refused", extra={"status": status, "client": request.remote})
        self._metrics.rejected[status] += 1
        response = self._refuse(request, status, reason)
        response.force_close()  # the parser stopped mid-head: nothing after it can be read
        return response

    def _refusal(self, exc: BaseException | None) -> tuple[int, str] | None:
        """``(status, reason)`` when ``exc`` is the parser's: a size limit, or malformed."""
        limits = self._limits
        if isinstance(exc, LineTooLong):
            # The exception carries the limit it hit; it names the request line only when
            # that limit is not also the header one (then 431 covers both).
            limit = exc.args[1] if len(exc.args) > 1 else None
            if limit == limits.max_request_line_bytes != limits.max_header_field_bytes:
                return 414, (f"The request URL is longer than the {limit} bytes this site accepts.")
            return 431, (
                "A request header is longer than the "
                f"{limits.max_header_field_bytes} bytes this site accepts. "
                "Clearing this site's cookies may help."
            )
        if isinstance(exc, BadHttpMessage) and exc.message == _TOO_MANY_HEADERS:
            return 431, (
                f"The request has more than the {limits.max_header_count} header fields "
                "this site accepts."
            )
        if isinstance(exc, HttpProcessingError) and exc.code == 400:
            # aiohttp's own answer quotes the offending bytes back (a header with a token
            # in it, say) and names its version; ours says only what is wrong.
            return 400, "The request is malformed; it was not forwarded."
        return None

    def _waiting_for_a_request(self) -> bool:
        """True between requests: the handler loop waits and nothing is queued."""
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self._messages

    def _start_header_timer(self) -> None:
        # The idle keep-alive timer stops: a request has begun (aiohttp restarts it after
        # the response).  keep_alive(True) is aiohttp's way to cancel it.
        self.keep_alive(True)
        self._header_timer = self._loop.call_later(
            self._limits.header_timeout_s, self._header_timed_out
        )

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._request_in_progress:  # cannot happen (a head stops the timer); never cut one
            return
        self._metrics.header_timeouts += 1
        log.debug("request head not complete in time: closing the connection")
        self.force_close()


class PublicServer(web.Server):
    """aiohttp's low-level server making :class:`PublicConnection` connections."""

    def __init__(
        self,
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        *,
        limits: LimitSettings,
        refuse: ErrorResponder,
        metrics: Metrics,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._limits = limits
        self._refuse = refuse
        self._metrics = metrics

    def __call__(self) -> PublicConnection:
        return PublicConnection(
            self,
            loop=self._loop,
            limits=self._limits,
            refuse=self._refuse,
            metrics=self._metrics,
            **self._kwargs,
        )
