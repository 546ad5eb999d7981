"""Forwarding a request to the upstream application and relaying its answer.

Plain requests go over :class:`~proxy.upstreampool.UpstreamPool`: keep-alive connections
to the upstream, kept warm, which is most of a reverse proxy's speed, each request's head
serialized once and written with its body in one write when it can be.  Nothing is added
that the client did not send (no cookie jar: an upstream ``Set-Cookie`` must never ride
along on another user's request; no decompression: bodies pass byte for byte with their
``Content-Encoding``; no redirect followed; no default headers) but ``Host`` when the client
sent none and the framing of the body.  Websockets go through an
:class:`aiohttp.ClientSession` made on the first one (its handshake and frame codec).

Bodies stream both ways with backpressure, so a large upload or download costs a few
buffers of memory, not its size.  Small bodies with a known length are read whole and
answered in one write, which saves syscalls on the common case.

How failures surface:

- Before the response head arrives, the client gets the error page from ``on_error``:
  502 when the upstream could not be reached or broke the exchange (refused, reset,
  DNS failure, garbage instead of HTTP, a websocket handshake it refused), 504 when it
  stayed silent past ``connect_timeout_s`` or ``read_timeout_s``.
- After the head was relayed, a failure cannot become an error page any more; the
  client connection is closed so the client sees an incomplete response instead of a
  clean but truncated one.
- The client going away stops the relay and releases the upstream connection.

A websocket upgrade is a ``GET`` without a body (RFC 6455 section 4.1); anything else that
asks for one (``POST`` with a body, say) is forwarded as the plain request it also is,
without its ``Upgrade``, as RFC 9110 section 7.8 allows and as a malformed handshake is:
the upstream's handshake carries no body, so a client's body and ``Content-Length`` would
leave the upstream waiting for bytes that never come.  It is relayed message by message:
the upstream socket is opened first (offering the client's subprotocols), the client's is
accepted with the one the upstream chose, then two pumps copy text, binary, ping and pong
frames until either side closes; its close code and reason are passed to the other side.
A side that vanishes without a close frame is reported as 1001 (client gone) or 1014 (bad
gateway) to the other.  On shutdown, :meth:`Forwarder.close_websockets` closes every
relayed websocket with 1001 (going away) both ways: a websocket never ends by itself, so
waiting for it would hold the drain until its timeout and then cut it without a close
frame.

A request body over ``max_body_bytes`` is refused with 413 (from ``on_error``): at once
when its ``Content-Length`` says so, before the upstream is contacted; a chunked one as
soon as it grows past the limit, by failing the upstream request mid-body, so the
upstream sees a truncated body and a closed connection, never a complete request.  A
body that stops arriving for ``body_timeout_s``, or arrives slower than
``body_min_rate_bytes_s`` over each ``body_timeout_s`` spent waiting for it, is cut the
same way, with 408: a stalled or trickling upload would otherwise hold one of the pool's
upstream connections for as long as it likes, and enough of them would leave every other
request waiting for one.  Only time spent waiting for the client counts (a body held back
by a slow upstream is not the client's doing); one timer per body, re-armed when it fires,
watches the silence, and the rate is checked as bytes arrive, so a chunk costs two clock
readings, not a timer.
``Expect: 100-continue`` is answered here, once the length is known to be acceptable (the
header is not forwarded: the upstream would otherwise wait for a body the client is
holding back until it hears 100).

A streamed response (one too large, or of unknown length, to read whole) holds its
upstream connection while the client reads it.  A write to the client that waits longer
than ``client_send_timeout_s`` for the client to read aborts the client connection and
releases the upstream one (nginx's ``send_timeout``); again one timer per response, and a
clock reading per write.

Upstream connections are slots: at most ``pool_size`` at once, at most ``max_per_client``
per client address (requests waiting for a slot count too), each over its limit answered
with the 503 "busy" page and ``Retry-After``.  A slot is never spent on a client that has
gone: a request whose client left before it got a slot is not forwarded (``499``, which
only the access log sees), and when the pool or a client's share is full, requests
holding a slot for a client that has left are cancelled then and there (aiohttp's
``handler_cancellation`` would do it on the disconnect; the public server does not turn it
on), which aborts their upstream requests and frees the slots at once.

A request is sent again, once, on a new connection when its connection broke before any
byte of the answer came back (reset, or closed by the upstream), but only when that is
safe and useful: an idempotent method (RFC 9110 section 9.2.2) and no body.  That is
the race every keep-alive pool meets: the upstream closes an idle connection just as it
is taken from the pool for the next request (nginx retries those too).  A request with
a body is never resent: the body has streamed away, and a non-idempotent one could act
twice.  Keep ``keepalive_timeout_s`` shorter than the upstream's own keep-alive timeout
so the race stays rare.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import operator
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from ipaddress import IPv6Network
from typing import Any, Final, Protocol

import aiohttp
from aiohttp import HttpVersion11, WSMsgType, web
from aiohttp.http import RawRequestMessage, RawResponseMessage
from aiohttp.http_websocket import WSMessage, WSMessageTextBytes
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from proxy.aiohttp_compat import disable_connection_retry
from proxy.cookie import without_cookie
from proxy.forwarded import client_address, forwarded_for_header
from proxy.hopbyhop import (
    CONNECTION_OPTIONS_RAW,
    HOP_BY_HOP_RAW,
    hop_by_hop_and,
    strip_hop_by_hop,
)
from proxy.pages import SERVER, status_phrase
from proxy.prebuilt import CLOSE, PrebuiltResponse, fits, one_write
from proxy.settings import UpstreamSettings
from proxy.upstreampool import (
    ConnectFailed,
    Connection,
    InvalidResponse,
    UpstreamPool,
    UpstreamResponse,
)

log = logging.getLogger(__name__)

ErrorResponder = Callable[[web.BaseRequest, int, str], web.StreamResponse]
"""Builds the page for a failed forward: ``(request, status, reason) -> response``, with
408 or 413 for a refused request body, 502 or 504 for an upstream failure."""

_RESENDABLE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""Idempotent methods (RFC 9110 section 9.2.2): sent again once, without a body, when
their connection broke before the answer (see the module docstring)."""

BUFFERED_BODY_MAX_BYTES: Final = 64 * 1024
"""Response bodies up to this size, with a known length, are read whole and sent in one
write; larger or unknown-length bodies are streamed."""

# Headers a client could forge to pose as another address, host or scheme.  Dropped
# when no proxy in front is trusted; when one is, the X-Forwarded trio is rewritten.
_CLIENT_FORWARDING: Final = (
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
)
_REWRITTEN: Final = ("x-forwarded-for", "x-forwarded-host", "x-forwarded-proto")
# The server already answered ``Expect: 100-continue`` before the handler ran.
_ANSWERED_HERE: Final = ("expect",)
# The websocket handshake is per connection: aiohttp makes its own toward the upstream,
# and it has no body (a client's Content-Length would leave the upstream waiting for one).
_HANDSHAKE: Final = (
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "sec-websocket-accept",
    "content-length",
)
_REQUEST_DROP_UNTRUSTED: Final = hop_by_hop_and(*_CLIENT_FORWARDING, *_ANSWERED_HERE)
_REQUEST_DROP_TRUSTED: Final = hop_by_hop_and(*_REWRITTEN, *_ANSWERED_HERE)
_HANDSHAKE_DROP: Final = frozenset(_HANDSHAKE)

# aiohttp adds these when absent; a proxy passes only what the client sent.
_SKIPPED_AUTO_HEADERS: Final = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
# Shared caches (and CDNs, which obey these over Cache-Control) must not keep them.
_SHARED_CACHE_CONTROLS: Final = ("CDN-Cache-Control", "Surrogate-Control")

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_SERVER_LINE: Final = f"Server: {SERVER}\r\n".encode()

_CLIENT_GONE: Final = 499
"""nginx's status for a request whose client closed the connection before the answer: no
one receives it, the access log shows it."""
_UNCAPPED: Final[Hashable] = object()
"""The client key of a request that no per-client cap counts."""

_RELAYED_FRAMES: Final = frozenset(
    {WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG}
)
# Close codes that describe a missing or broken close frame and may not be sent (RFC 6455
# section 7.4.1); 0 is what aiohttp reports for a close frame without a code.
_UNSENDABLE_CLOSE_CODES: Final = frozenset({0, 1005, 1006, 1015})
_GOING_AWAY: Final = int(aiohttp.WSCloseCode.GOING_AWAY)
_SHUTTING_DOWN: Final = b"proxy shutting down"
_CLIENT_LOST: Final = _GOING_AWAY
_UPSTREAM_LOST: Final = int(aiohttp.WSCloseCode.BAD_GATEWAY)


class Forwarder:
    """Forwards requests to the one upstream over a shared connection pool.

    Create it once per app, :meth:`start` it on startup and :meth:`close` it on cleanup
    (an ``aiohttp`` ``cleanup_ctx`` does both).
    """

    __slots__ = (
        "_base",
        "_body_min_rate",
        "_body_timeout_s",
        "_clients",
        "_going_away",
        "_holding",
        "_max_body_bytes",
        "_max_message_bytes",
        "_max_per_client",
        "_on_error",
        "_pool",
        "_private_cookie",
        "_request_drop",
        "_retry_after",
        "_send_timeout_s",
        "_settings",
        "_slots",
        "_trusted_hops",
        "_upstream",
        "_websocket_drop",
        "_websocket_session",
    )

    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        trusted_hops: int,
        on_error: ErrorResponder,
        max_body_bytes: int = 0,
        body_timeout_s: float | None = None,
        private_headers: Iterable[str] = (),
        private_cookie: str | None = None,
    ) -> None:
        """``private_headers`` are request headers meant for the proxy alone (the bypass
        token's) and ``private_cookie`` the name of its cookie: never forwarded, so neither
        can end up in the application's logs."""
        self._settings = settings
        self._trusted_hops = trusted_hops
        self._on_error = on_error
        self._max_body_bytes = max_body_bytes  # 0: no limit
        self._body_timeout_s = body_timeout_s  # None: no limit, and no minimum rate either
        self._body_min_rate = settings.body_min_rate_bytes_s  # 0: no minimum
        self._send_timeout_s = settings.client_send_timeout_s  # 0: no limit
        self._max_message_bytes = settings.websocket_max_message_bytes
        upstream = self._upstream = URL(str(settings.url))
        # Scheme, authority and base path, without the trailing slash pydantic adds.
        self._base = str(upstream.with_path("")).rstrip("/") + upstream.raw_path.rstrip("/")
        self._request_drop = (
            _REQUEST_DROP_TRUSTED if trusted_hops else _REQUEST_DROP_UNTRUSTED
        ) | {name.lower() for name in private_headers}
        self._websocket_drop = self._request_drop | _HANDSHAKE_DROP
        self._private_cookie = private_cookie
        # The pool's limit is kept here rather than by aiohttp's connector, so that waiting
        # for a free connection has a bound of its own (aiohttp counts it in the connect
        # timeout, and its error cannot tell a saturated pool from an unreachable app).
        self._slots = _Slots(settings.pool_size) if settings.pool_size else None
        # Requests holding one of the pool's slots, and (with a per-client cap) every request
        # holding or waiting for one, by client: whose slots to take back from clients gone.
        # Keyed by id(): a request is a mapping, so not hashable.
        self._holding: dict[int, web.BaseRequest | _Exchange] = {}
        self._max_per_client = settings.max_per_client  # 0: no cap
        self._clients: dict[Hashable, dict[int, web.BaseRequest]] = {}
        self._retry_after = str(max(1, math.ceil(settings.pool_timeout_s)))
        self._pool: UpstreamPool | None = None
        self._websocket_session: aiohttp.ClientSession | None = None
        self._going_away = asyncio.Event()

    async def start(self) -> None:
        """Open the pool; call from a running event loop."""
        settings = self._settings
        self._pool = UpstreamPool(
            self._upstream,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            keepalive_timeout_s=settings.keepalive_timeout_s,
        )

    def _websockets(self) -> aiohttp.ClientSession:
        """The session websockets are opened with, made on the first one."""
        session = self._websocket_session
        if session is None:
            settings = self._settings
            session = self._websocket_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=0, keepalive_timeout=settings.keepalive_timeout_s
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=_SKIPPED_AUTO_HEADERS,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=settings.connect_timeout_s,
                    sock_read=settings.read_timeout_s,
                ),
                trust_env=False,
            )
            disable_connection_retry(session)  # a handshake is never sent twice
        return session

    def close_websockets(self) -> None:
        """Close every relayed websocket, and any opened from now on, with 1001 (going
        away) to both the client and the upstream; their handlers then end by themselves."""
        self._going_away.set()

    async def close(self) -> None:
        """Close the pool; in-flight forwards fail, so drain requests first."""
        if self._websocket_session is not None:
            await self._websocket_session.close()
            self._websocket_session = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def forward(
        self,
        request: web.BaseRequest,
        *,
        path: str,
        private: bool = False,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> web.StreamResponse:
        """Send ``request`` to the upstream at ``path`` and relay the answer.

        ``path`` is the already-normalized, still percent-encoded path chosen by the
        caller; it is sent as is (after the upstream's base path), with the request's raw
        query string.  ``private`` marks a request let through by a maintenance bypass:
        its response is made uncacheable by shared caches (see :func:`_make_private`).
        ``extra_headers`` are added to the relayed response (replacing the upstream's of
        the same names; see :mod:`proxy.announce`), not to error pages or websockets.
        """
        pool = self._pool
        assert pool is not None, "Forwarder.start() was not awaited"
        query = request.rel_url.raw_query_string
        target = f"{path}?{query}" if query else path
        upgrade = request.headers.get("Upgrade")
        if (
            upgrade is not None
            and upgrade.lower() == "websocket"
            and request.method == "GET"
            and not request.body_exists
        ):
            offered = _offered_protocols(request)
            # A malformed handshake is forwarded as plain HTTP, without its Upgrade; so is
            # one that is not a GET without a body (see the module docstring).
            if web.WebSocketResponse(protocols=offered).can_prepare(request).ok:
                busy, client = await self._take_slot(request)
                if busy is not None:
                    return busy
                url = URL(f"{self._base}{target}", encoded=True)
                try:
                    return await self._forward_websocket(request, url, offered)
                finally:
                    self._give_slot(request, client)
        body: aiohttp.StreamReader | AsyncIterator[bytes] | None = None
        if request.body_exists:
            body = request.content
            limit, silence_s = self._max_body_bytes, self._body_timeout_s
            length = request.content_length
            if limit and length is not None and length > limit:
                return self._body_too_large(request)
            if silence_s is not None or (limit and length is None):
                body = _guarded(
                    body, limit=limit, silence_s=silence_s, min_rate=self._body_min_rate
                )
            if request.version >= HttpVersion11 and _expects_continue(request):
                await request.writer.write(_CONTINUE)
        headers = self._upstream_headers(request, self._request_drop)
        busy, client = await self._take_slot(request)
        if busy is not None:
            return busy
        try:
            return await self._exchange(
                request,
                target,
                headers,
                body,
                resend=body is None and request.method in _RESENDABLE_METHODS,
                private=private,
                extra_headers=extra_headers,
            )
        finally:
            self._give_slot(request, client)

    async def _exchange(
        self,
        request: web.BaseRequest,
        target: str,
        headers: list[tuple[str, str]],
        body: aiohttp.StreamReader | AsyncIterator[bytes] | None,
        *,
        resend: bool,
        fresh: bool = False,
        private: bool = False,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> web.StreamResponse:
        """Send the request on the pool and relay the answer (an error page on failure)."""
        pool = self._pool
        assert pool is not None, "Forwarder.start() was not awaited"
        try:
            upstream = await pool.request(
                request.method, target, headers, body, resend=resend, fresh=fresh
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            return self._failure_page(request, exc)
        try:
            return await self._relay_response(
                request, upstream, private=private, extra_headers=extra_headers
            )
        finally:
            upstream.release()

    def forward_now(
        self,
        client: QuickClient,
        message: RawRequestMessage,
        *,
        path: str,
        remote: str | None,
        scheme: str,
        extra_headers: tuple[tuple[str, str], ...],
    ) -> bool:
        """Begin forwarding a plain request (an HTTP/1.1 ``GET`` or ``HEAD`` without a body
        or ``Upgrade``, from :mod:`proxy.fastlane`) without a task: sent at once on an idle
        pooled connection, its answer written from that connection's ``data_received``
        when it is whole, small and relayable as it is (:func:`_prebuilt`), else relayed
        by :meth:`_relay_response` from a task ``client`` starts with an aiohttp request
        (streamed bodies, ``204``/``304``, failures and their error pages, the resend).
        The same bytes reach the upstream and the client as through :meth:`forward`.

        False, having done nothing, when that cannot begin at once: every slot of the pool
        taken, a per-client cap (its bookkeeping is :meth:`forward`'s), or no idle
        connection; then :meth:`forward` serves the request."""
        if self._max_per_client:
            return False
        slots = self._slots
        if slots is not None and not slots.free():
            return False
        pool = self._pool
        assert pool is not None, "Forwarder.start() was not awaited"
        raw_path = message.path
        query_at = raw_path.find("?")
        target = path if query_at < 0 else path + raw_path[query_at:]
        headers = self._headers_for(message.headers, remote, scheme, self._request_drop)
        exchange = _Exchange(self, client, message, target, headers, extra_headers)
        connection = pool.send_now(message.method, target, headers, exchange)
        if connection is None:
            return False
        exchange.connection = connection
        if slots is not None:
            slots.take_free()
            self._holding[id(exchange)] = exchange
        return True

    def quick_answered(
        self,
        exchange: _Exchange,
        connection: Connection,
        message: RawResponseMessage,
        payload: aiohttp.StreamReader,
    ) -> None:
        """The answer to a quick exchange: written at once when it is whole, small and
        relayable as it is (the path :meth:`_relay_response` takes with
        :func:`_prebuilt`), else relayed from a task."""
        pool = self._pool
        assert pool is not None
        request = exchange.message
        length = message.headers.get("Content-Length")
        if (
            payload.is_eof()
            and payload.exception() is None
            and _read_whole(request.method, message.code, None if length is None else int(length))
        ):
            body = payload.read_nowait()
            built = _prebuilt(
                message.code, message.reason, message.raw_headers, body, exchange.extra
            )
            if built is not None:
                head, dated = built
                pool.give_back(connection)
                self._slot_passes(exchange, None)
                close = request.should_close
                exchange.client.quick_answer(
                    one_write(
                        head,
                        b"" if request.method == "HEAD" else body,
                        connection=CLOSE if close else b"",
                        dated=dated,
                    ),
                    close=close,
                )
                return
        upstream = UpstreamResponse(pool, connection, message, payload, None)
        self._quick_continue(
            exchange, functools.partial(self._relay_taken, upstream, exchange.extra)
        )

    def quick_failed(self, exchange: _Exchange, connection: Connection, exc: BaseException) -> None:
        """A quick exchange failed before its answer: sent once more when its connection
        broke (the keep-alive race; ``GET`` and ``HEAD`` are idempotent and bodiless), as
        :meth:`forward` would, else its error page."""
        pool = self._pool
        assert pool is not None
        pool.drop(connection)
        respond: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
        if isinstance(exc, aiohttp.ClientOSError | aiohttp.ServerDisconnectedError):
            respond = functools.partial(
                self._exchange,
                target=exchange.target,
                headers=exchange.headers,
                body=None,
                resend=False,
                fresh=True,
                extra_headers=exchange.extra,
            )
        else:
            respond = functools.partial(self._answer_failure, exc=exc)
        self._quick_continue(exchange, respond)

    def quick_abandoned(self, exchange: _Exchange, connection: Connection) -> None:
        """A quick exchange whose client has gone gives its connection and slot up."""
        assert self._pool is not None
        self._pool.drop(connection)
        if id(exchange) in self._holding:
            self._slot_passes(exchange, None)
        exchange.client.quick_abandoned()

    def _quick_continue(
        self,
        exchange: _Exchange,
        respond: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
    ) -> None:
        """Go on from a task, with an aiohttp request, which holds the slot from then on
        (nothing to go on with when the client has gone)."""
        if exchange.client.transport is None:
            self._slot_passes(exchange, None)
            exchange.client.quick_abandoned()
            return

        async def run(request: web.BaseRequest) -> web.StreamResponse:
            self._slot_passes(exchange, request)
            try:
                return await respond(request)
            finally:
                self._give_slot(request, _UNCAPPED)

        exchange.client.quick_continue(run)

    async def _relay_taken(
        self,
        upstream: UpstreamResponse,
        extra_headers: tuple[tuple[str, str], ...],
        request: web.BaseRequest,
    ) -> web.StreamResponse:
        try:
            return await self._relay_response(
                request, upstream, private=False, extra_headers=extra_headers
            )
        finally:
            upstream.release()

    def _slot_passes(self, exchange: _Exchange, request: web.BaseRequest | None) -> None:
        """``exchange``'s slot is held by ``request`` from now on (None: given back)."""
        if self._slots is None:
            return
        del self._holding[id(exchange)]
        if request is None:
            self._slots.release()
        else:
            self._holding[id(request)] = request

    def _failure_page(
        self, request: web.BaseRequest, exc: TimeoutError | aiohttp.ClientError
    ) -> web.StreamResponse:
        """The error page for an exchange that failed: 504 for a timeout, else 502 (or the
        body's 413/408, see :meth:`_failed`)."""
        if isinstance(exc, TimeoutError):
            return self._on_error(request, 504, self._timeout_reason(exc))
        return self._failed(request, exc)

    async def _answer_failure(
        self, request: web.BaseRequest, exc: BaseException
    ) -> web.StreamResponse:
        """:meth:`_failure_page` for a quick exchange (anything else is a bug: raised)."""
        if isinstance(exc, TimeoutError | aiohttp.ClientError):
            return self._failure_page(request, exc)
        raise exc

    async def _take_slot(
        self, request: web.BaseRequest
    ) -> tuple[web.StreamResponse | None, Hashable]:
        """Take an upstream slot for ``request``: ``(None, client)``, to be given back with
        :meth:`_give_slot`; or ``(response, _)`` to answer instead.

        The response is the 503 page when the client already holds or waits for
        ``max_per_client`` slots (at once), or when none of the ``pool_size`` came free
        within ``pool_timeout_s`` (the app is saturated: better a quick answer the client
        can retry than a wait with no end); the 499 nobody reads when the client has left.
        Without a pool limit or a per-client cap, ``(None, _UNCAPPED)`` at once."""
        slots, cap = self._slots, self._max_per_client
        if slots is None and not cap:
            return None, _UNCAPPED
        if request.transport is None:  # the client left before its request was forwarded
            return _client_gone(), _UNCAPPED
        client = _UNCAPPED
        if cap:
            client = self._client_key(request)
            mine = self._clients.get(client)
            if mine is None:
                mine = self._clients[client] = {}
            elif len(mine) >= cap and len(mine) - _reclaim(mine.values()) >= cap:
                return self._busy(
                    request,
                    f"{cap} requests from your address are already in progress, "
                    "the most this site serves at once",
                ), _UNCAPPED
            mine[id(request)] = request
        if slots is None:
            return None, client
        if slots.locked():
            _reclaim(self._holding.values())  # the slots of clients gone come free at once
            settings = self._settings
            try:
                async with asyncio.timeout(settings.pool_timeout_s):
                    await slots.acquire()
            except TimeoutError:
                self._leave(request, client)
                return self._busy(
                    request,
                    f"all {settings.pool_size} connections to the upstream stayed busy for "
                    f"{settings.pool_timeout_s:g} s",
                ), _UNCAPPED
            except BaseException:  # cancelled (its client left while it waited, say)
                self._leave(request, client)
                raise
            if request.transport is None:  # the client left while it waited
                slots.release()
                self._leave(request, client)
                return _client_gone(), _UNCAPPED
        else:
            await slots.acquire()  # returns at once
        self._holding[id(request)] = request
        return None, client

    def _give_slot(self, request: web.BaseRequest, client: Hashable) -> None:
        if self._slots is not None:
            del self._holding[id(request)]
            self._slots.release()
        self._leave(request, client)

    def _leave(self, request: web.BaseRequest, client: Hashable) -> None:
        """Stop counting ``request`` against its client's cap."""
        if client is _UNCAPPED:
            return
        mine = self._clients.get(client)
        if mine is not None:
            mine.pop(id(request), None)
            if not mine:
                del self._clients[client]

    def _client_key(self, request: web.BaseRequest) -> Hashable:
        """What the per-client cap counts by: the client address the bypass rules see, an
        IPv6 one by its /64 (one subscriber's share; an IPv4-mapped one as IPv4)."""
        trusted_hops = self._trusted_hops
        forwarded_for = request.headers.getall("X-Forwarded-For", ()) if trusted_hops else ()
        address = client_address(request.remote, forwarded_for, trusted_hops=trusted_hops)
        if address is None:
            return request.remote  # not an IP address (a Unix socket): its text, or None
        if address.version == 6:
            mapped = address.ipv4_mapped
            if mapped is not None:
                return mapped
            return IPv6Network((int(address) >> 64 << 64, 64))
        return address

    def _busy(self, request: web.BaseRequest, reason: str) -> web.StreamResponse:
        """The 503 page for no free slot; retrying after about the pool's wait may help."""
        response = self._on_error(request, 503, reason)
        response.headers["Retry-After"] = self._retry_after
        return response

    def _upstream_headers(
        self, request: web.BaseRequest, drop: frozenset[str]
    ) -> list[tuple[str, str]]:
        """The request's headers as they go to the upstream: without hop-by-hop ones, the
        proxy's own and forged forwarding ones, with the ``X-Forwarded`` trio appended (the
        client's are dropped or, from a trusted hop, rewritten here)."""
        return self._headers_for(request.headers, request.remote, request.scheme, drop)

    def _headers_for(
        self,
        incoming: CIMultiDictProxy[str],
        remote: str | None,
        scheme: str,
        drop: frozenset[str],
    ) -> list[tuple[str, str]]:
        headers = strip_hop_by_hop(incoming.items(), drop=drop)
        if self._private_cookie is not None and "Cookie" in incoming:
            headers = _without_cookie(headers, self._private_cookie)
        host = incoming.get("Host")
        if self._trusted_hops:
            forwarded_for = forwarded_for_header(
                remote,
                incoming.getall("X-Forwarded-For", ()),
                trusted_hops=self._trusted_hops,
            )
            proto = _last_value(incoming, "X-Forwarded-Proto") or scheme
            forwarded_host = _last_value(incoming, "X-Forwarded-Host") or host
        else:
            # What forwarded_for_header answers for zero trusted hops, without a call.
            forwarded_for = remote or ""
            proto = scheme
            forwarded_host = host
        if forwarded_for:
            headers.append(("X-Forwarded-For", forwarded_for))
        if forwarded_host:
            headers.append(("X-Forwarded-Host", forwarded_host))
        headers.append(("X-Forwarded-Proto", proto))
        return headers

    async def _relay_response(
        self,
        request: web.BaseRequest,
        upstream: UpstreamResponse,
        *,
        private: bool,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> web.StreamResponse:
        if _read_whole(request.method, upstream.status, upstream.content_length):
            try:
                body = await upstream.read()
            except TimeoutError as exc:
                return self._on_error(request, 504, self._timeout_reason(exc))
            except aiohttp.ClientError as exc:
                return self._failed(request, exc)
            if not private and fits(request):
                built = _prebuilt(
                    upstream.status, upstream.reason, upstream.raw_headers, body, extra_headers
                )
                if built is not None:
                    head, dated = built
                    return PrebuiltResponse(
                        status=upstream.status, head=head, body=body, dated=dated
                    )
            whole = web.Response(
                status=upstream.status,
                reason=upstream.reason,
                headers=_relayed_headers(upstream, extra_headers),
                body=body,
            )
            if private:
                _make_private(whole.headers)
            return whole
        response = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=_relayed_headers(upstream, extra_headers),
        )
        if private:
            _make_private(response.headers)
        watch = _SendWatch(request, self._send_timeout_s) if self._send_timeout_s else None
        try:
            if watch is None:
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            else:
                # The same, each write stamped for the watch (a clock reading, no timer); a
                # write it cut returns (the abort wakes it), and the relay stops there.
                clock = watch.clock
                watch.since = clock()
                await response.prepare(request)
                watch.since = None
                async for chunk in upstream.content.iter_any():
                    watch.since = clock()
                    await response.write(chunk)
                    watch.since = None  # waiting for the upstream is not the client's doing
                    if watch.expired:
                        raise ConnectionResetError
                watch.since = clock()
                await response.write_eof()
                if watch.expired:
                    raise ConnectionResetError
        except (aiohttp.ClientError, OSError, TimeoutError):
            # Upstream died or went silent mid-body, the client left, or it stopped reading
            # for client_send_timeout_s: neither side can be told with a status any more.
            # Closing the client connection (rather than ending the body) makes the client
            # see an incomplete response.
            upstream.close()
            response.force_close()
            transport = request.transport
            if transport is not None:
                transport.close()
        finally:
            if watch is not None:
                watch.stop()
        return response

    def _failed(self, request: web.BaseRequest, exc: aiohttp.ClientError) -> web.StreamResponse:
        """502 for a broken exchange, unless it broke because the body was cut (413, 408)."""
        if isinstance(exc.__cause__, BodyTooLarge):
            return self._body_too_large(request)
        if isinstance(exc.__cause__, BodyStalled):
            return self._body_too_slow(
                request, f"The request body stopped arriving for {self._body_timeout_s:g} s."
            )
        if isinstance(exc.__cause__, BodyTooSlow):
            return self._body_too_slow(
                request,
                f"The request body arrived slower than {self._body_min_rate} bytes per second.",
            )
        return self._on_error(request, 502, _failure_reason(exc))

    def _body_too_slow(self, request: web.BaseRequest, reason: str) -> web.StreamResponse:
        response = self._on_error(request, 408, reason)
        response.force_close()
        return response

    def _body_too_large(self, request: web.BaseRequest) -> web.StreamResponse:
        response = self._on_error(
            request,
            413,
            f"The request body is larger than the {_size(self._max_body_bytes)} this site accepts.",
        )
        # The rest of the body is read and dropped for a while (aiohttp's lingering close,
        # so the client sees this answer rather than a reset); the connection is not reused.
        response.force_close()
        return response

    def _timeout_reason(self, exc: TimeoutError) -> str:
        settings = self._settings
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return f"upstream did not accept a connection within {settings.connect_timeout_s:g} s"
        return f"upstream did not respond within {settings.read_timeout_s:g} s"

    async def _forward_websocket(
        self, request: web.BaseRequest, url: URL, offered: list[str]
    ) -> web.StreamResponse:
        """Open the upstream websocket first, then accept the client's with the
        subprotocol the upstream chose from those the client ``offered``."""
        headers = self._upstream_headers(request, self._websocket_drop)
        try:
            upstream = await self._websockets().ws_connect(
                url,
                headers=headers,
                protocols=offered,
                autoclose=False,
                autoping=False,
                max_msg_size=self._max_message_bytes,
                decode_text=False,
            )
        except aiohttp.WSServerHandshakeError as exc:
            return self._on_error(
                request, 502, f"upstream refused the websocket handshake (status {exc.status})"
            )
        except TimeoutError as exc:
            return self._on_error(request, 504, self._timeout_reason(exc))
        except aiohttp.ClientError as exc:
            return self._on_error(request, 502, _failure_reason(exc))
        client = web.WebSocketResponse(
            protocols=(upstream.protocol,) if upstream.protocol else (),
            autoclose=False,
            autoping=False,
            max_msg_size=self._max_message_bytes,
            decode_text=False,
        )
        try:
            try:
                await client.prepare(request)
            except ConnectionError:
                return client  # the client left during the handshake
            relay = _WebSocketRelay()
            async with asyncio.TaskGroup() as group:
                pumps = (
                    group.create_task(
                        relay.pump(
                            client, upstream, source_lost=_CLIENT_LOST, sink_lost=_UPSTREAM_LOST
                        ),
                        name="websocket client->upstream",
                    ),
                    group.create_task(
                        relay.pump(
                            upstream, client, source_lost=_UPSTREAM_LOST, sink_lost=_CLIENT_LOST
                        ),
                        name="websocket upstream->client",
                    ),
                )
                going_away = group.create_task(self._going_away.wait(), name="websocket shutdown")
                await asyncio.wait((*pumps, going_away), return_when=asyncio.FIRST_COMPLETED)
                if going_away.done():
                    await relay.go_away(client, upstream)
                else:
                    going_away.cancel()
        finally:
            if not upstream.closed:
                await upstream.close(code=_CLIENT_LOST)
        return client


class _Socket(Protocol):
    """What the relay needs from either side of a websocket (server or client end)."""

    @property
    def close_code(self) -> int | None: ...

    async def receive(self) -> WSMessage | WSMessageTextBytes: ...

    async def send_frame(
        self, message: bytes, opcode: WSMsgType, compress: int | None = None
    ) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


class _WebSocketRelay:
    """Two pumps that copy frames each way until one side closes.

    Whichever side closes first decides: its close code and reason go to the other side,
    and the other side's reply code goes back.  ``closing`` stops the second pump from
    starting a close of its own when the first pump's close wakes it up.
    """

    __slots__ = ("closing",)

    def __init__(self) -> None:
        self.closing = False

    async def go_away(self, client: _Socket, upstream: _Socket) -> None:
        """Close both sides with 1001 (the proxy is shutting down), unless a close has
        begun; the pumps, woken by the closes, then return."""
        if self.closing:
            return
        self.closing = True
        await asyncio.gather(
            client.close(code=_GOING_AWAY, message=_SHUTTING_DOWN),
            upstream.close(code=_GOING_AWAY, message=_SHUTTING_DOWN),
        )

    async def pump(
        self, source: _Socket, sink: _Socket, *, source_lost: int, sink_lost: int
    ) -> None:
        """Copy frames from ``source`` to ``sink`` until a close.

        ``source_lost`` is the code ``sink`` gets when ``source`` vanishes without a close
        frame; ``sink_lost`` the code ``source`` gets when ``sink`` breaks under a write.
        """
        while True:
            message = await source.receive()
            kind = message.type
            if kind in _RELAYED_FRAMES:
                try:
                    await sink.send_frame(message.data, kind)
                except ConnectionError:
                    if not self.closing:
                        self.closing = True
                        await source.close(code=sink_lost)
                    return
                continue
            if self.closing:
                return
            self.closing = True
            if kind is WSMsgType.CLOSE:
                code = _sendable(message.data)
                await sink.close(code=code, message=(message.extra or "").encode())
                reply = sink.close_code
                await source.close(code=_sendable(reply) if reply else code)
            else:  # CLOSED or ERROR: the source connection is gone
                await sink.close(code=source_lost)
            return


class _Slots(asyncio.Semaphore):
    """The pool's slots: an asyncio semaphore whose free slot can also be taken without
    awaiting (:mod:`proxy.fastlane`'s quick exchanges have no task to await in)."""

    def free(self) -> bool:
        """Whether a slot can be taken at once: ``not locked()`` (one is free and no task
        waits for one), read from the semaphore's counter and queue of waiters (``_value``,
        ``_waiters``) without the generator ``locked()`` runs on every call."""
        if self._value <= 0:
            return False
        waiters = self._waiters
        return not waiters or all(waiter.cancelled() for waiter in waiters)

    def take_free(self) -> None:
        """Take a slot, which :meth:`free` said is: what ``acquire()`` does without
        suspending when one is."""
        self._value -= 1


class QuickClient(Protocol):
    """The client side of a quick exchange (:meth:`Forwarder.forward_now`): the fast
    lane's connection."""

    @property
    def transport(self) -> asyncio.Transport | None:
        """None once the client has gone."""

    def quick_answer(self, data: bytes, *, close: bool) -> None:
        """Write ``data``, the whole answer; then end the connection when ``close``."""

    def quick_continue(
        self, respond: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
    ) -> None:
        """Answer with what ``respond`` returns for an aiohttp request, from a task."""

    def quick_abandoned(self) -> None:
        """The exchange ended without an answer (its client has gone)."""


class _Exchange:
    """One plain request forwarded by :meth:`Forwarder.forward_now`: what it was, and the
    pooled connection's :class:`~proxy.upstreampool.AnswerListener`, which hands the
    answer or the failure to the forwarder."""

    __slots__ = ("client", "connection", "extra", "forwarder", "headers", "message", "target")

    def __init__(
        self,
        forwarder: Forwarder,
        client: QuickClient,
        message: RawRequestMessage,
        target: str,
        headers: list[tuple[str, str]],
        extra: tuple[tuple[str, str], ...],
    ) -> None:
        self.forwarder = forwarder
        self.client = client
        self.message = message
        self.target = target
        self.headers = headers
        self.extra = extra
        self.connection: Connection | None = None
        """The pooled connection while the answer is awaited."""

    @property
    def transport(self) -> asyncio.Transport | None:
        """The client's (None once it has gone): what :func:`_reclaim` looks at."""
        return self.client.transport

    def answered(
        self, connection: Connection, message: RawResponseMessage, payload: aiohttp.StreamReader
    ) -> None:
        self.connection = None
        try:
            self.forwarder.quick_answered(self, connection, message, payload)
        except Exception:
            # A bug here must not reach the upstream connection's data_received (asyncio
            # would close it and the client would wait for nothing): the client's
            # connection ends, as after a failure mid-answer.
            log.exception("error while relaying an answer")
            self.forwarder.quick_abandoned(self, connection)

    def failed(self, connection: Connection, exc: BaseException) -> None:
        self.connection = None
        self.forwarder.quick_failed(self, connection, exc)

    def abandon(self) -> None:
        """Its client has gone and its slot is wanted: stop waiting for the answer."""
        connection = self.connection
        if connection is not None:
            self.connection = None
            connection.listener = None
            self.forwarder.quick_abandoned(self, connection)


class BodyTooLarge(Exception):
    """A chunked request body grew past ``max_body_bytes`` while being forwarded."""


class BodyStalled(Exception):
    """No byte of the request body came for ``body_timeout_s``.

    Not a :class:`TimeoutError`: aiohttp would report that as the upstream's timeout."""


class BodyTooSlow(Exception):
    """Less than ``body_min_rate_bytes_s`` times ``body_timeout_s`` bytes of the request
    body came in a ``body_timeout_s`` spent waiting for it."""


async def _guarded(
    content: aiohttp.StreamReader, *, limit: int, silence_s: float | None, min_rate: int = 0
) -> AsyncIterator[bytes]:
    """``content`` as it arrives, failing once more than ``limit`` bytes have come (0: no
    limit), when nothing has come for ``silence_s`` (None: no limit), or when less than
    ``min_rate`` bytes per second came over a ``silence_s`` of waiting (0: no minimum).

    Raising inside the body makes aiohttp abandon the upstream request without sending the
    rest (for a chunked body, the final empty chunk) and close that connection."""
    received = 0
    clock: _BodyClock | None = None
    try:
        while True:
            if silence_s is None or content.is_eof():  # no limit, or every byte is here
                chunk = await content.readany()
            else:
                if clock is None:
                    clock = _BodyClock(silence_s, min_rate)
                clock.waiting()
                try:
                    chunk = await content.readany()
                except asyncio.CancelledError:
                    if clock.cut():
                        raise BodyStalled from None
                    raise
                clock.arrived(len(chunk))
            if not chunk:
                return
            received += len(chunk)
            if limit and received > limit:
                raise BodyTooLarge
            yield chunk
    finally:
        if clock is not None:
            clock.stop()


class _BodyClock:
    """Watches the waits for a request body's bytes with one timer, re-armed when it fires.

    A wait longer than ``silence_s`` expires it: the timer cancels the waiting task, as
    :func:`asyncio.timeout` does, and :meth:`cut` turns that cancellation into
    :class:`BodyStalled`.  Time spent waiting is also added up, in windows of ``silence_s``:
    when bytes arrive after a window that brought fewer than ``min_rate * silence_s``,
    :meth:`arrived` raises :class:`BodyTooSlow` (so a trickle is cut at its first byte past
    a short window, at most ``silence_s`` late; a body that stops is cut as stalled).  Only
    waits count: while the upstream is slow to take the body, the client is held back by
    backpressure, which is not its doing.

    Each wait reads the clock and arms the timer only when none is pending: a later wait's
    deadline is never earlier, so the pending timer fires no later than it should and
    re-arms itself at the current deadline.
    """

    __slots__ = (
        "_bytes",
        "_cancelling",
        "_handle",
        "_loop",
        "_need",
        "_silence_s",
        "_task",
        "_wait_start",
        "_waited_s",
        "_window_end",
        "expired",
    )

    def __init__(self, silence_s: float, min_rate: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._silence_s = silence_s
        self._need = min_rate * silence_s  # bytes a window must bring; 0: any number
        self._waited_s = 0.0  # time spent waiting for the client, up to the current wait
        self._window_end = silence_s  # in waited time
        self._bytes = 0  # arrived in the current window
        self._wait_start = 0.0
        self._task: asyncio.Task[Any] | None = None  # the waiting task, during a wait
        self._cancelling = 0
        self._handle: asyncio.TimerHandle | None = None
        self.expired = False

    def waiting(self) -> None:
        """A wait for the client begins (in the current task)."""
        task = asyncio.current_task()
        assert task is not None
        self._wait_start = now = self._loop.time()
        self._task = task
        self._cancelling = task.cancelling()
        if self._handle is None:
            self._handle = self._loop.call_at(now + self._silence_s, self._check)

    def arrived(self, size: int) -> None:
        """The wait ended with ``size`` bytes; raises :class:`BodyTooSlow` when a window
        closed short of its bytes."""
        self._task = None
        waited_s = self._waited_s = self._waited_s + self._loop.time() - self._wait_start
        self._bytes += size
        if not self._need:
            return
        while waited_s >= self._window_end:
            if self._bytes < self._need:
                raise BodyTooSlow
            self._bytes = 0
            self._window_end += self._silence_s

    def cut(self) -> bool:
        """After a wait was cancelled: True when this clock cancelled it (and nothing else
        did), so the body is to be cut as stalled rather than the task cancelled."""
        task = self._task
        self._task = None
        return task is not None and self.expired and task.uncancel() <= self._cancelling

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        task = self._task
        if task is None:  # not waiting: the next wait arms the timer again
            return
        deadline = self._wait_start + self._silence_s
        if self._loop.time() < deadline:  # a later wait than the one that armed it
            self._handle = self._loop.call_at(deadline, self._check)
            return
        self.expired = True
        task.cancel()


class _SendWatch:
    """Aborts the client connection when one write of a streamed response has waited
    ``timeout_s`` for the client to read.

    The relay stamps :attr:`since` before each write and clears it after; one timer checks
    the stamp and re-arms itself at ``since + timeout_s`` (or ``timeout_s`` from now between
    writes, while the relay waits for the upstream), so a write costs a clock reading, not a
    timer.  The abort wakes the write, and the relay sees :attr:`expired`."""

    __slots__ = ("_handle", "_loop", "_request", "_timeout_s", "clock", "expired", "since")

    def __init__(self, request: web.BaseRequest, timeout_s: float) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._request = request
        self._timeout_s = timeout_s
        self.clock = loop.time
        self.since: float | None = None
        self.expired = False
        self._handle: asyncio.TimerHandle | None = loop.call_at(
            loop.time() + timeout_s, self._check
        )

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        now = self._loop.time()
        since = self.since
        if since is not None and now - since >= self._timeout_s:
            self.expired = True
            transport = self._request.transport
            if transport is not None:
                transport.abort()
            return
        start = now if since is None else since
        self._handle = self._loop.call_at(start + self._timeout_s, self._check)


def _reclaim(requests: Iterable[web.BaseRequest | _Exchange]) -> int:
    """Cancel the handling of each of ``requests`` whose client has gone (what aiohttp's
    ``handler_cancellation`` does on the disconnect), so its slot comes free; return how
    many have gone."""
    gone = 0
    abandoned = []
    for request in requests:
        if request.transport is None:
            gone += 1
            if isinstance(request, _Exchange):
                abandoned.append(request)  # (it leaves the collection being iterated)
                continue
            task = request.task
            if not task.done() and not task.cancelling():
                task.cancel()
    for exchange in abandoned:
        exchange.abandon()
    return gone


def _client_gone() -> web.Response:
    return web.Response(status=_CLIENT_GONE, reason="Client Closed Request")


def _expects_continue(request: web.BaseRequest) -> bool:
    expect = request.headers.get("Expect")
    return expect is not None and expect.lower() == "100-continue"


def _size(count: int) -> str:
    """``10 MiB``, ``64 KiB`` or ``1000 bytes``: the unit that states ``count`` exactly."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} bytes"


def _offered_protocols(request: web.BaseRequest) -> list[str]:
    return [
        token.strip()
        for value in request.headers.getall("Sec-WebSocket-Protocol", ())
        for token in value.split(",")
        if token.strip()
    ]


def _sendable(code: object) -> int:
    if isinstance(code, int) and code not in _UNSENDABLE_CLOSE_CODES:
        return code
    return aiohttp.WSCloseCode.OK


def _last_value(headers: CIMultiDictProxy[str], name: str) -> str | None:
    """The entry the nearest (trusted) proxy appended: last line, last comma item."""
    values = headers.getall(name, ())
    if not values:
        return None
    return values[-1].rpartition(",")[2].strip() or None


def _relayed_headers(
    upstream: UpstreamResponse, extra: tuple[tuple[str, str], ...]
) -> list[tuple[str, str]]:
    """The answer's headers as relayed: without hop-by-hop ones, with ``Server: mwm`` when
    it has none (like nginx: never aiohttp's and Python's versions), ``extra`` last."""
    headers = strip_hop_by_hop(upstream.headers.items())
    if "Server" not in upstream.headers:
        headers.append(("Server", SERVER))
    if extra:
        headers = _with_headers(headers, extra)
    return headers


def _prebuilt(
    status: int,
    reason_phrase: str,
    raw_headers: tuple[tuple[bytes, bytes], ...],
    body: bytes,
    extra: tuple[tuple[str, str], ...],
) -> tuple[bytes, bool] | None:
    """The head of the upstream's answer for a one-write relay, copied from the bytes the
    upstream sent (what :func:`_relayed_headers` keeps, without decoding and encoding
    them again: about a third of the cost), and whether it has its own ``Date``; None
    when aiohttp must frame it (no ``Content-Length`` to pass on, a status whose framing
    rules differ), when a ``Connection`` header names other fields to drop (rare: the
    general path handles it) or when a field would not serialize cleanly.

    Which fields are kept depends on their names only (and the ``Connection`` options):
    an upstream sends the same names answer after answer, so that is worked out once per
    list of names (:func:`_plan`)."""
    if status < 200 or status in (204, 304):
        return None
    try:
        status_line = _status_line(status, reason_phrase)
        extra_lines = [f"{name}: {value}\r\n".encode() for name, value in extra] if extra else []
    except UnicodeEncodeError:
        return None
    plan = _plan(tuple(map(_first, raw_headers)), extra)
    for index in plan.connections:
        if not _connection_options_ok(raw_headers[index][1]):
            return None
    if not plan.framed and body:
        return None
    parts = [status_line]
    parts += [b"%s: %s\r\n" % raw_headers[index] for index in plan.kept]
    if not plan.server:
        parts.append(_SERVER_LINE)
    parts += extra_lines
    head = b"".join(parts)
    if head.count(b"\n") != len(parts):
        return None  # a line break inside a name or value: never relay it as is
    return head, plan.dated


_first = operator.itemgetter(0)


@functools.lru_cache(maxsize=64)
def _status_line(status: int, reason_phrase: str) -> bytes:
    """``HTTP/1.1 <status> <reason>`` and CRLF, the upstream's reason as it sent it."""
    reason = (reason_phrase or status_phrase(status)).encode("utf-8", "surrogateescape")
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What :func:`_prebuilt` does with an answer's fields, from their names."""

    kept: tuple[int, ...]
    """The fields relayed, by index: not hop-by-hop, not replaced by an extra header."""
    connections: tuple[int, ...]
    """The ``Connection`` fields, whose options must all be hop-by-hop names."""
    server: bool
    dated: bool
    framed: bool
    """Has a ``Content-Length``."""


@functools.lru_cache(maxsize=256)  # an upstream sends a handful of different lists of names
def _plan(names: tuple[bytes, ...], extra: tuple[tuple[str, str], ...]) -> _Plan:
    replaced = {name.lower().encode() for name, _ in extra}
    kept: list[int] = []
    connections: list[int] = []
    server = dated = framed = False
    for index, name in enumerate(names):
        lower = name.lower()
        if lower in HOP_BY_HOP_RAW:
            if lower == b"connection":
                connections.append(index)
            continue
        if lower in replaced:
            continue
        if lower == b"server":
            server = True
        elif lower == b"date":
            dated = True
        elif lower == b"content-length":
            framed = True
        kept.append(index)
    return _Plan(tuple(kept), tuple(connections), server, dated, framed)


@functools.lru_cache(maxsize=64)
def _connection_options_ok(value: bytes) -> bool:
    """Whether a ``Connection`` field names only fields the relay drops anyway."""
    return CONNECTION_OPTIONS_RAW.issuperset(token.strip().lower() for token in value.split(b","))


def _with_headers(
    headers: list[tuple[str, str]], extra: tuple[tuple[str, str], ...]
) -> list[tuple[str, str]]:
    """``headers`` without any of ``extra``'s names, then ``extra``: the proxy's value wins
    over an upstream header of the same name."""
    names = {name.lower() for name, _ in extra}
    return [(n, v) for n, v in headers if n.lower() not in names] + list(extra)


def _without_cookie(headers: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    """``headers`` with cookie ``name`` taken out of every ``Cookie`` field (a field left
    empty goes), in place; the same list when no field names it (the common case)."""
    if not any(n.lower() == "cookie" and name in value for n, value in headers):
        return headers
    kept: list[tuple[str, str]] = []
    for field, value in headers:
        if field.lower() == "cookie":
            rest = without_cookie(value, name)
            if rest is not None:
                kept.append((field, rest))
        else:
            kept.append((field, value))
    return kept


def _read_whole(method: str, status: int, length: int | None) -> bool:
    """Whether an answer is read whole before it is relayed (then relayed in one write
    when it can be): a known length up to :data:`BUFFERED_BODY_MAX_BYTES`, or no body."""
    return (length is not None and length <= BUFFERED_BODY_MAX_BYTES) or (
        method == "HEAD" or status in (204, 304) or 100 <= status < 200
    )


def _make_private(headers: CIMultiDict[str]) -> None:
    """Keep a bypassed response out of shared caches.

    A request let through during maintenance (admin cookie, token, address) may see
    content others must not see, and a CDN holding it would serve the app to everyone
    while the 503 is due.  Replacing ``Cache-Control`` outright is simpler and safer than
    merging with the upstream's directives; ``private`` still lets the admin's own
    browser cache, ``no-store`` covers caches that ignore ``private``, and ``Vary:
    Cookie`` keeps even a cache that disregards both from serving the response to a
    client without the same cookie.  ``CDN-Cache-Control`` and ``Surrogate-Control``
    go too: CDNs obey them over ``Cache-Control``.
    """
    headers["Cache-Control"] = "private, no-store"
    for name in _SHARED_CACHE_CONTROLS:
        headers.popall(name, None)
    headers.add("Vary", "Cookie")


def _failure_reason(exc: aiohttp.ClientError) -> str:
    """A reason for the error page: what went wrong, without internal host names."""
    if isinstance(exc, ConnectFailed):
        if isinstance(exc.os_error, socket.gaierror):
            return "upstream host name could not be resolved"
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "upstream refused the connection"
        return "could not connect to the upstream"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "upstream host name could not be resolved"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "upstream refused the connection"
        return "could not connect to the upstream"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "upstream closed the connection without a complete response"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "upstream sent an incomplete response body"
    if isinstance(exc, InvalidResponse | aiohttp.ClientResponseError):
        return "upstream sent an invalid HTTP response"
    if isinstance(exc, aiohttp.ClientOSError):
        return "connection to the upstream failed"
    return "upstream request failed"
