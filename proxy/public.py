"""The public listener: every user request is forwarded, let through, or given the page.

Per request the work is: normalize the path once (the same string is checked and
forwarded), read the current state, and, only while maintenance is on, build a
:class:`~proxy.decision.RequestView` for the pure :func:`~proxy.decision.decide`.
Pages and JSON documents are pre-rendered per state generation, so a blocked request
costs a dict lookup and one write.

Before any of that, :func:`make_request` shapes what the handler sees: a request after
which the connection must end (:func:`~proxy.conformance.must_close`: ``CONNECT``, any
``Upgrade``) is marked as not keeping it, so that every answer, whichever path builds it,
says ``Connection: close`` and the connection ends after it; and the routing headers
(:data:`~proxy.hopbyhop.ROUTING_HEADERS`) are removed unless the settings keep them.

Most requests never reach aiohttp's server: :mod:`proxy.fastlane` parses them itself and
asks :meth:`PublicHandler.quick`, the same steps for the two common answers (forward, or
the page), and hands the rest, with the connection, to the server and :meth:`~PublicHandler.handle`.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, NamedTuple

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import RawRequestMessage
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy

from controller.snapshot import OFF
from controller.store import SnapshotStore, State
from proxy.aiohttp_compat import replace_message
from proxy.announce import NONE as NO_HEADERS
from proxy.announce import AnnounceHeader
from proxy.bypass import BypassPolicy
from proxy.conformance import UNSUPPORTED_VERSION, Refusal, must_close, refusal
from proxy.connection import HardenedServer
from proxy.cookie import cookie_values
from proxy.decision import Block, Bypass, Decision, RequestView, Scopes, decide
from proxy.fastlane import Lane
from proxy.forwarded import client_address
from proxy.forwarding import Forwarder
from proxy.hold import Holds
from proxy.hopbyhop import ROUTING_HEADERS
from proxy.metrics import Metrics
from proxy.negotiation import negotiate
from proxy.pages import SERVER, PageRenderer, RenderedPage, http_head, status_phrase
from proxy.pathnorm import InvalidPath, normalize_path
from proxy.prebuilt import PrebuiltResponse, fits
from proxy.publicstatus import METHODS as STATUS_METHODS
from proxy.publicstatus import PublicStatus
from proxy.settings import EncodedSlashes, Settings
from proxy.sharedswitch import SharedSwitch
from proxy.statusdocs import DocumentCache, JsonDocument
from proxy.statusstream import Broadcaster

log = logging.getLogger(__name__)

_JSON = "application/json"


@dataclass
class Lifecycle:
    """Process-wide flags the listeners read; set by the runtime."""

    draining: bool = False


@dataclass
class Services:
    """Everything the listeners share, built once by the runtime."""

    settings: Settings
    store: SnapshotStore
    renderer: PageRenderer
    policy: BypassPolicy
    forwarder: Forwarder
    metrics: Metrics = field(default_factory=Metrics)
    shared_switch: SharedSwitch | None = None
    """Set when several worker processes must all see the admin API's switch."""
    documents: DocumentCache = field(default_factory=DocumentCache)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    streams: list[Broadcaster] = field(default_factory=list)
    """The status streams of both listeners, closed by the runtime on shutdown."""
    holds: Holds | None = None
    """The held requests of the public listener (:mod:`proxy.hold`), ended by the runtime
    on shutdown; None when holding is off."""


SERVICES_KEY = web.AppKey("services", Services)


class Forward(NamedTuple):
    """:meth:`PublicHandler.quick`'s verdict for a request to forward: its message (without
    routing headers), its normalized path and the headers to add to the answer."""

    message: RawRequestMessage
    path: str
    announce: tuple[tuple[str, str], ...]


Quick = Forward | RenderedPage


def page_response(page: RenderedPage) -> web.Response:
    """An aiohttp response for a pre-rendered page (aiohttp drops the body for HEAD)."""
    return web.Response(status=page.status, body=page.body, headers=page.headers)


def error_page(
    renderer: PageRenderer, headers: CIMultiDictProxy[str], status: int, reason: str
) -> RenderedPage:
    """The error page (502, 504, 413, 431...) for a request with ``headers``, in the format
    and language it accepts."""
    fmt = negotiate(headers.get(hdrs.ACCEPT))
    return renderer.error_page(
        status, reason, fmt, renderer.language(headers.get(hdrs.ACCEPT_LANGUAGE))
    )


def error_response(
    renderer: PageRenderer, request: web.BaseRequest, status: int, reason: str
) -> web.Response:
    """The error page (502, 504, 413, 431...) for ``request``, in the format it accepts."""
    return page_response(error_page(renderer, request.headers, status, reason))


def refusal_response(refused: Refusal, request: web.BaseRequest) -> web.StreamResponse:
    """The answer to a request that breaks the HTTP/1.1 rules; it ends the connection.

    Its status line says ``HTTP/1.1`` whatever version the request named.  After a
    ``CONNECT`` the connection ends at once: what follows is tunnel bytes, which the
    pure-Python parser reads as a body that never ends (see
    :meth:`~proxy.prebuilt.PrebuiltResponse.hang_up`)."""
    body = f"{HTTPStatus(refused.status).phrase}: {refused.reason}\n".encode()
    headers = [(hdrs.SERVER, SERVER), (hdrs.CONTENT_TYPE, "text/plain; charset=utf-8")]
    if refused.allow is not None:
        headers.append((hdrs.ALLOW, refused.allow))
    headers.append((hdrs.CONTENT_LENGTH, str(len(body))))
    head = http_head(refused.status, status_phrase(refused.status), headers).encode("latin-1")
    response = PrebuiltResponse(
        status=refused.status, head=head, body=b"" if request.method == "HEAD" else body
    )
    if request.method == "CONNECT":
        response.hang_up()
    else:
        response.force_close()
    return response


def head_refused_response(
    renderer: PageRenderer, request: web.BaseRequest, status: int, reason: str
) -> web.StreamResponse:
    """The answer to a request head the HTTP parser refused (400, 414, 431; 505 for a
    version llhttp does not know, the same answer as :func:`refusal_response` gives when the
    Python parser lets that version through).  It says ``HTTP/1.1``: aiohttp would answer
    in HTTP/1.0, the version of the placeholder request it makes for a head it could not
    read."""
    if status == UNSUPPORTED_VERSION.status:
        return refusal_response(UNSUPPORTED_VERSION, request)
    page = error_page(renderer, request.headers, status, reason)
    response = PrebuiltResponse(status=page.status, head=page.wire_head, body=page.body)
    response.force_close()
    return response


def json_response(request: web.BaseRequest, document: JsonDocument) -> web.Response:
    headers = {
        hdrs.ETAG: document.etag,
        hdrs.CACHE_CONTROL: "no-cache",
        hdrs.CONTENT_TYPE: _JSON,
        hdrs.SERVER: SERVER,
    }
    if document.matches(request.headers.get(hdrs.IF_NONE_MATCH)):
        return web.Response(status=304, headers=headers)
    return web.Response(body=document.body, headers=headers)


class PublicHandler:
    """The single catch-all handler of the public listener."""

    def __init__(self, services: Services) -> None:
        self._s = services
        settings = services.settings
        self._services_path = settings.management.public_services_path
        self._public_status = PublicStatus(settings)
        self._status_path = self._public_status.path
        self._stream: Broadcaster | None = None
        self._stream_path: str | None = None
        status = settings.status
        if self._status_path is not None and status.max_subscribers > 0:
            public_status, store = self._public_status, services.store
            self._stream = Broadcaster(
                store,
                lambda state: public_status.document(state, store.clock()).body,
                name="public",
                heartbeat_s=status.heartbeat_s,
                retry_s=status.stream_retry_s,
                max_subscribers=status.max_subscribers,
                counted=services.metrics.status_subscribers["public"],
            )
            services.streams.append(self._stream)
            self._stream_path = self._status_path + "/stream"
        self._cookie_prefix = settings.bypass.cookie_path.rstrip("/") + "/"
        self._cookie_off = (self._cookie_prefix + "off", self._cookie_prefix.rstrip("/") or "/")
        self._redirect_to = settings.bypass.redirect_to
        self._cookie_name = settings.bypass.cookie_name
        self._bypass_header = settings.bypass.header_name
        self._trusted_hops = settings.forwarded.trusted_hops
        self._keep_encoded_slashes = settings.bypass.encoded_slashes is EncodedSlashes.KEEP
        token = settings.bypass.token
        self._cookie_token = token.get_secret_value().encode() if token else None
        header = settings.status.announce_header
        self._announce = AnnounceHeader(header) if header is not None else None
        self._holds = services.holds = (
            Holds(settings.hold, services.store, services.metrics)
            if settings.hold.max_requests > 0
            else None
        )
        self._scopes = Scopes(OFF)
        self._scopes_generation = -1
        self._keep_routing_headers = settings.forwarded.keep_routing_headers
        self._own_paths = frozenset(
            p for p in (self._services_path, self._status_path, self._stream_path) if p
        )
        """The listener's own paths, which the fast lane never answers (any method)."""

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        refused = refusal(
            request.version, request.headers, method=request.method, target=request.raw_path
        )
        if refused is not None:
            self._s.metrics.requests.inc("invalid")
            return refusal_response(refused, request)
        return await self._answer(request)

    def quick(self, message: RawRequestMessage, remote: str | None) -> Quick | None:
        """The fast lane's answer (:mod:`proxy.fastlane`) to a plain request: a keep-alive
        HTTP/1.1 ``GET`` or ``HEAD`` without a body or ``Upgrade``, its head whole in one read.

        The same steps as :meth:`handle`, for the two answers nearly every request gets:
        :class:`Forward` (maintenance off, or a request no cause applies to) or the page
        (blocked, not held), counted the same.  None for everything else (a refusal, an
        invalid or absolute path, the status and cookie paths, a bypass, a hold), which
        the lane hands to aiohttp's server and :meth:`handle`: this method then has
        counted nothing and changed nothing."""
        raw_path = message.path
        if raw_path[:1] != "/" or "#" in raw_path:
            return None
        if not self._keep_routing_headers:
            message = _without_routing_headers(message)
        headers = message.headers
        method = message.method
        if refusal(message.version, headers, method=method, target=raw_path) is not None:
            return None
        try:
            path = self._path(raw_path)
        except InvalidPath:
            return None
        if path in self._own_paths or (
            self._cookie_token is not None and path.startswith(self._cookie_off[1])
        ):
            return None
        s = self._s
        state = s.store.current
        announce = NO_HEADERS if self._announce is None else self._announce.headers(state)
        if not state.maintenance.active:
            s.metrics.requests.inc("forward")
            return Forward(message, path, announce)
        decision = self._decide(self._view_of(method, headers, remote, path), state)
        if isinstance(decision, Block):
            if self._holds is not None and self._holds.deadline(decision, state) is not None:
                return None
            s.metrics.requests.inc("block")
            return self._page(state, headers, decision.causes)
        if isinstance(decision, Bypass):
            return None
        s.metrics.requests.inc("forward")
        return Forward(message, path, announce)

    def _path(self, raw_path: str) -> str:
        """The normalized path of a request target (raises :class:`InvalidPath`)."""
        query_at = raw_path.find("?")
        return normalize_path(
            raw_path if query_at < 0 else raw_path[:query_at],
            keep_encoded_slashes=self._keep_encoded_slashes,
        )

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        s = self._s
        try:
            path = self._path(request.raw_path)
        except InvalidPath:
            s.metrics.requests.inc("invalid")
            return web.Response(
                status=400,
                text="Bad Request: invalid request path\n",
                headers={hdrs.SERVER: SERVER},
            )

        if path == self._services_path and request.method in ("GET", "HEAD"):
            s.metrics.requests.inc("services")
            return json_response(request, s.documents.services(s.store.current))
        if path == self._status_path and request.method in STATUS_METHODS:
            s.metrics.requests.inc("status")
            return self._public_status.respond(request, s.store.current, s.store.clock())
        if path == self._stream_path and request.method in STATUS_METHODS:
            s.metrics.requests.inc("status")
            return await self._status_stream(request)
        if self._cookie_token is not None and path.startswith(self._cookie_off[1]):
            cleared = self._clear_cookie(request, path)
            if cleared is not None:
                return cleared
        if self._cookie_token is not None and path.startswith(self._cookie_prefix):
            issued = self._issue_cookie(request, path)
            if issued is not None:
                return issued

        state = s.store.current
        # MWM_STATUS__ANNOUNCE_HEADER: off, one attribute check; on, one per generation.
        announce = NO_HEADERS if self._announce is None else self._announce.headers(state)
        if not state.maintenance.active:
            s.metrics.requests.inc("forward")
            return await s.forwarder.forward(request, path=path, extra_headers=announce)

        view = self._view(request, path)
        decision = self._decide(view, state)
        if isinstance(decision, Block) and self._holds is not None:
            # Hold-then-fail (proxy.hold): wait for a service that has just gone down. The
            # deadline (cached per generation) says whether this block is holdable at all,
            # so the page path pays for no coroutine while nothing is.
            deadline = self._holds.deadline(decision, state)
            if deadline is not None:
                held = await self._holds.hold(
                    request,
                    state,
                    decision,
                    deadline,
                    lambda new: self._decide(view, new),
                )
                if held is None:  # the client has gone
                    return web.Response(status=499, reason="Client Closed Request")
                state, decision = held
        if isinstance(decision, Block):
            s.metrics.requests.inc("block")
            page = self._page(state, request.headers, decision.causes)
            if fits(request):
                body = b"" if request.method == "HEAD" else page.body
                return PrebuiltResponse(status=page.status, head=page.wire_head, body=body)
            return page_response(page)
        if isinstance(decision, Bypass):
            s.metrics.requests.inc("bypass")
            s.metrics.bypasses.inc(decision.rule)
            log.info("maintenance bypass", extra={"rule": str(decision.rule), "path": path})
            return await s.forwarder.forward(
                request, path=path, private=True, extra_headers=announce
            )
        s.metrics.requests.inc("forward")
        return await s.forwarder.forward(request, path=path, extra_headers=announce)

    def _page(
        self, state: State, headers: CIMultiDictProxy[str], causes: tuple[int, ...] | None
    ) -> RenderedPage:
        """The maintenance page for a request with ``headers`` blocked by ``causes``."""
        renderer = self._s.renderer
        return renderer.maintenance_page(
            state,
            negotiate(headers.get(hdrs.ACCEPT)),
            now=self._s.store.clock,  # read only when the page is rendered
            language=renderer.language(headers.get(hdrs.ACCEPT_LANGUAGE)),
            causes=causes,
        )

    async def forward(self, request: web.BaseRequest, forward: Forward) -> web.StreamResponse:
        """Forward a request :meth:`quick` let through (the fast lane's ``request``)."""
        return await self._s.forwarder.forward(
            request, path=forward.path, extra_headers=forward.announce
        )

    async def _status_stream(self, request: web.BaseRequest) -> web.StreamResponse:
        """The public status document as Server-Sent Events (:mod:`proxy.statusstream`),
        with the document's CORS rules; a preflight may ask for ``Last-Event-ID``."""
        assert self._stream is not None
        if request.method == "OPTIONS":
            return self._public_status.options(request, allow_headers="Last-Event-ID")
        return await self._stream.respond(request, self._public_status.cors_headers(request))

    def _decide(self, view: RequestView, state: State) -> Decision:
        """:func:`~proxy.decision.decide` for ``view`` under ``state``, now."""
        return decide(
            view, state.maintenance, self._s.policy, now=time.time(), scope=self._scopes_for(state)
        )

    def _scopes_for(self, state: State) -> Scopes:
        """The scopes of ``state``'s verdict, compiled once per generation."""
        if self._scopes_generation != state.generation:
            self._scopes, self._scopes_generation = Scopes(state.maintenance), state.generation
        return self._scopes

    def _view(self, request: web.BaseRequest, path: str) -> RequestView:
        return self._view_of(request.method, request.headers, request.remote, path)

    def _view_of(
        self, method: str, headers: CIMultiDictProxy[str], remote: str | None, path: str
    ) -> RequestView:
        client = None
        if self._s.policy.networks:  # only the CIDR rule needs the client's address
            client = client_address(
                remote,
                headers.getall(hdrs.X_FORWARDED_FOR, ()),
                trusted_hops=self._trusted_hops,
            )
        cookies: tuple[str, ...] = ()
        if hdrs.COOKIE in headers:
            cookies = tuple(cookie_values(headers.getall(hdrs.COOKIE), self._cookie_name))
        return RequestView(
            method=method,
            path=path,
            client=client,
            bypass_tokens=tuple(headers.getall(self._bypass_header, ())),
            bypass_cookies=cookies,
            upgrade=_websocket(headers.get(hdrs.UPGRADE)),
        )

    def _issue_cookie(self, request: web.BaseRequest, path: str) -> web.Response | None:
        """``GET <cookie_path>/<token>`` sets a signed bypass cookie, like ``artisan down
        --secret``, and redirects to ``redirect_to``.  A wrong token falls through to the
        normal decision, so the URL's existence is not revealed."""
        presented = path[len(self._cookie_prefix) :].encode()
        signer = self._s.policy.cookie
        if (
            request.method != "GET"
            or signer is None
            or self._cookie_token is None
            or not hmac.compare_digest(presented, self._cookie_token)
        ):
            return None
        self._s.metrics.cookies_issued.inc()
        log.info("bypass cookie issued")
        response = web.Response(
            status=303,
            headers=self._redirect_headers(),
            text="Bypass cookie set\n",
        )
        response.set_cookie(
            self._cookie_name,
            signer.issue(now=time.time()),
            max_age=self._s.settings.bypass.cookie_lifetime_s,
            **self._cookie_attributes(request),
        )
        return response

    def _clear_cookie(self, request: web.BaseRequest, path: str) -> web.Response | None:
        """``GET <cookie_path>/off`` or ``DELETE <cookie_path>`` ends a bypass session: the
        cookie is overwritten with an empty, already expired one with the same attributes.
        It needs no token (anyone may drop their own cookie) and answers the same whether
        or not a cookie was sent."""
        off_path, delete_path = self._cookie_off
        if not (
            (request.method == "GET" and path == off_path)
            or (request.method == "DELETE" and path == delete_path)
        ):
            return None
        log.info("bypass cookie cleared")
        response = web.Response(
            status=303, headers=self._redirect_headers(), text="Bypass cookie cleared\n"
        )
        response.set_cookie(
            self._cookie_name,
            "",
            max_age=0,
            expires="Thu, 01 Jan 1970 00:00:00 GMT",
            **self._cookie_attributes(request),
        )
        return response

    def _redirect_headers(self) -> dict[str, str]:
        return {
            hdrs.LOCATION: self._redirect_to,
            hdrs.CACHE_CONTROL: "no-store",
            hdrs.SERVER: SERVER,
        }

    def _cookie_attributes(self, request: web.BaseRequest) -> dict[str, Any]:
        """The attributes of the bypass cookie, the same when it is issued and cleared."""
        return {
            "path": "/",
            "httponly": True,
            "secure": _behind_tls(request, trusted_hops=self._trusted_hops),
            "samesite": "Lax",
        }


def _websocket(upgrade: str | None) -> bool:
    """True for ``Upgrade: websocket`` (among other protocols, in any case)."""
    return upgrade is not None and any(p.strip().lower() == "websocket" for p in upgrade.split(","))


def _behind_tls(request: web.BaseRequest, *, trusted_hops: int) -> bool:
    if request.secure:
        return True
    if trusted_hops > 0:
        proto: list[str] = request.headers.getall(hdrs.X_FORWARDED_PROTO, [])
        return bool(proto) and proto[-1].split(",")[-1].strip().lower() == "https"
    return False


RequestFactory = Callable[
    [
        RawRequestMessage,
        StreamReader,
        web.RequestHandler,
        AbstractStreamWriter,
        "asyncio.Task[None]",
    ],
    web.BaseRequest,
]


def make_request(*, keep_routing_headers: bool) -> RequestFactory:
    """aiohttp's request factory for the public listener (see the module docstring).

    aiohttp builds every answer's ``Connection`` header, and decides whether to read the
    next request, from the request's keep-alive flag; marking the request here is what
    makes an answer built anywhere (the page, a forwarded answer streamed by the
    forwarder, an error page) end the connection."""

    def make(
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: web.RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        headers = message.headers
        if not message.should_close and must_close(message.method, headers):
            message = replace_message(message, should_close=True)
        if not keep_routing_headers:
            message = _without_routing_headers(message)
        return web.BaseRequest(message, payload, protocol, writer, task, task.get_loop())

    return make


def _without_routing_headers(message: RawRequestMessage) -> RawRequestMessage:
    """``message`` without the routing headers (:data:`~proxy.hopbyhop.ROUTING_HEADERS`);
    the same message when it has none (nearly always)."""
    headers = message.headers
    for name in ROUTING_HEADERS:  # a loop, not any(): this runs for every request
        if name in headers:
            return _drop_routing_headers(message)
    return message


def _drop_routing_headers(message: RawRequestMessage) -> RawRequestMessage:
    headers = CIMultiDict(
        (name, value)
        for name, value in message.headers.items()
        if name.lower() not in ROUTING_HEADERS
    )
    raw_headers = tuple(
        (name, value)
        for name, value in message.raw_headers
        if name.decode("latin-1").lower() not in ROUTING_HEADERS
    )
    return replace_message(message, headers=CIMultiDictProxy(headers), raw_headers=raw_headers)


def build_public_server(services: Services, **log_options: Any) -> web.Server:
    """aiohttp's low-level server: every request goes straight to the one handler, with no
    router, no middleware chain and no ``Application`` per request (a measured ~15-30 %
    more throughput than a catch-all route).  ``log_options``: see
    :func:`proxy.serverlog.server_log_options`.

    Request bodies are not decompressed: they are forwarded byte for byte with their
    ``Content-Encoding`` (aiohttp would inflate them and forward the inflated bytes
    under the compressed length), and the body limit counts the bytes on the wire."""
    handler = PublicHandler(services)
    settings = services.settings
    request_factory = make_request(keep_routing_headers=settings.forwarded.keep_routing_headers)
    lane = None
    if settings.listen.fast_lane and log_options.get("access_log") is None:
        lane = Lane(
            handler,
            services.forwarder,
            limits=settings.limits,
            metrics=services.metrics,
            error_page=functools.partial(error_page, services.renderer),
            request_factory=request_factory,
        )
    return HardenedServer(
        handler.handle,
        limits=settings.limits,
        refuse=functools.partial(head_refused_response, services.renderer),
        metrics=services.metrics,
        lane=lane,
        request_factory=request_factory,
        auto_decompress=False,
        **log_options,
    )
