"""Every private part of aiohttp that mwm relies on, in one place, checked at start-up.

aiohttp's public API cannot express what the listeners need (a parser driven read by
read, refusals of our own, one-write responses, a per-session retry switch, masked access
lines), so some of its private attributes and behaviours are used.  A minor aiohttp
release may rename or drop any of them without notice; here each one is

- reached through one small named function, class or alias, whose docstring says which
  aiohttp behaviour it relies on and why mwm needs it (no other module touches an aiohttp
  ``_name``: ``tests/test_aiohttp_compat.py`` parses ``proxy/`` and ``controller/`` and
  fails on one; an import-linter contract keeps aiohttp's private modules out too);
- listed in :data:`INTERNALS`, which :func:`check_aiohttp` verifies once, before
  ``mwm run`` listens: a missing one stops start-up with one line naming it and the
  installed aiohttp version, never an ``AttributeError`` in the middle of a request.

The internals, written against aiohttp 3.14.x (:data:`SUPPORTED`):

- ``RequestHandler`` slots ``_messages``, ``_request_count``, ``_waiter``, ``_upgraded``,
  ``_payload_parser``, ``_request_in_progress``, ``_loop`` (:class:`HandlerInternals`), and
  ``web_protocol._ErrInfo`` (:data:`ParserRefusal`): :mod:`proxy.connection` drives the
  parser itself;
- the parser's text for too many headers (:data:`TOO_MANY_HEADERS`) and the limit in
  ``LineTooLong.args[1]`` (:func:`line_limit`): 431 and 414 rather than 400;
- ``RawRequestMessage._replace`` (:func:`replace_message`): a request made the last of its
  connection, routing headers dropped;
- ``Server._kwargs`` and ``Server._loop`` (:func:`server_options`, :func:`server_loop`) and
  ``AppRunner._make_server`` (:class:`ServerMakingAppRunner`): servers of hardened
  connections;
- ``StreamResponse._keep_alive``, ``_eof_sent``, ``_body_length``
  (:func:`response_written`): :mod:`proxy.prebuilt`'s one-write answers;
- ``ClientSession._retry_connection`` (:func:`disable_connection_retry`): no resend of a
  websocket handshake;
- ``client_proto.ResponseHandler`` (:class:`UpstreamProtocol`), aiohttp's client connection
  protocol, driven without a ``ClientSession`` (``set_response_params``, ``start_timeout``,
  ``read``, ``should_close``, ``is_connected``, ``set_exception``, ``closed``; its
  ``data_received`` queueing each answer through ``feed_data``), and
  ``BaseProtocol._drain_helper`` (:func:`drain`): :mod:`proxy.upstreampool`'s connections;
  its read timer (``_reschedule_timeout``, ``_drop_timeout``, ``_on_read_timeout``) and
  ``BaseProtocol._reading_paused``, ``_buffer_paused``, replaced or read by
  :class:`UpstreamProtocol` to save per-read work;
- ``base_protocol.BaseProtocol`` with ``_pause_transport_reading`` and
  ``_resume_transport_reading`` (:class:`ServerProtocol`), and the server's parser class
  ``web_protocol.HttpRequestParser`` (:func:`server_request_parser`): :mod:`proxy.fastlane`'s
  connections;
- ``AccessLogger._format_line`` (:class:`AccessLogFieldHook`): secrets masked in the
  access log.

What is called per request costs what the inline access cost: the handler's slots are
aliased through aiohttp's own slot descriptors (the same C-level read), and the functions
are a few plain attribute accesses.  Behaviours that public attributes show (a request
whose client left has no ``transport``; ``request.writer`` is the response's writer) need
nothing here.
"""

from __future__ import annotations

import asyncio
import inspect
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from aiohttp import base_protocol, client_proto, http_parser, web, web_protocol
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.http_parser import HttpRequestParser
from aiohttp.web_log import AccessLogger

if TYPE_CHECKING:
    from collections import deque

    from aiohttp.http_parser import RawRequestMessage, RawResponseMessage
    from aiohttp.streams import StreamReader
    from aiohttp.web_protocol import _ErrInfo as ParserRefusal

__all__ = [
    "INTERNALS",
    "SUPPORTED",
    "TOO_MANY_HEADERS",
    "AccessLogFieldHook",
    "AiohttpIncompatible",
    "HandlerInternals",
    "ParserRefusal",
    "ServerMakingAppRunner",
    "ServerProtocol",
    "UpstreamProtocol",
    "check_aiohttp",
    "disable_connection_retry",
    "drain",
    "line_limit",
    "missing_internals",
    "replace_message",
    "response_written",
    "server_loop",
    "server_options",
    "server_request_parser",
]

SUPPORTED: Final = "aiohttp 3.14.x"
"""The aiohttp line these internals were read from (``pyproject.toml`` allows more)."""


class AiohttpIncompatible(SystemExit):
    """The installed aiohttp lacks an internal mwm relies on.

    A :class:`SystemExit`: raised before anything listens, it ends ``mwm run`` with its one
    line on stderr and status 1, without a traceback."""


class _Missing:
    """Stands for an internal that the installed aiohttp lacks, so that importing mwm never
    fails; :func:`check_aiohttp` refuses to start before anything could use it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        raise AiohttpIncompatible(_message([self.name]))

    def __set__(self, instance: object, value: object) -> None:
        raise AiohttpIncompatible(_message([self.name]))

    def __call__(self, *args: object, **kwargs: object) -> Any:
        raise AiohttpIncompatible(_message([self.name]))


def _slot(cls: type, name: str) -> Any:
    """``cls``'s slot descriptor for ``name`` (a placeholder when it has none)."""
    return inspect.getattr_static(cls, name, None) or _Missing(f"{cls.__name__}.{name}")


# --- The connection (proxy.connection) --------------------------------------------------


class HandlerInternals(web.RequestHandler):
    """:class:`aiohttp.web.RequestHandler` with the state :mod:`proxy.connection` reads and
    changes under public names.

    ``HardenedConnection`` runs aiohttp's parser itself, read by read (to hold an
    unfinished head, bound a whole head and stop after a chunked request), and so must see
    and change the handler's queue of parsed requests.  Each attribute is aiohttp's own slot
    descriptor under a second name: reading it is the same C-level slot read as aiohttp's.
    Relied on (aiohttp 3.10 to 3.14): ``RequestHandler`` and ``BaseProtocol`` use
    ``__slots__``, and ``data_received`` appends ``(message, payload)`` to ``_messages``,
    counts it in ``_request_count`` and wakes ``_waiter``, the future the handler loop
    awaits while the queue is empty.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        aiohttp_messages: deque[tuple[RawRequestMessage | ParserRefusal, StreamReader]]

        @property
        def aiohttp_request_count(self) -> int: ...
        @aiohttp_request_count.setter
        def aiohttp_request_count(self, count: int) -> None: ...

        aiohttp_waiter: asyncio.Future[None] | None
        aiohttp_upgraded: bool
        aiohttp_payload_parser: Any
        aiohttp_request_in_progress: bool
        aiohttp_loop: asyncio.AbstractEventLoop
    else:
        aiohttp_messages = _slot(web.RequestHandler, "_messages")
        """The parsed requests the handler loop has not taken yet: ``(message, payload)``,
        or ``(ParserRefusal, EMPTY_PAYLOAD)`` for a head the parser refused."""
        aiohttp_request_count = _slot(web.RequestHandler, "_request_count")
        """Requests parsed on this connection: a change tells a read completed a head."""
        aiohttp_waiter = _slot(web.RequestHandler, "_waiter")
        """The future the handler loop awaits between requests; set to queue one."""
        aiohttp_upgraded = _slot(web.RequestHandler, "_upgraded")
        """The parser saw an ``Upgrade`` (or ``CONNECT``): what follows is not parsed by it."""
        aiohttp_payload_parser = _slot(web.RequestHandler, "_payload_parser")
        """Set while a websocket's frames are read (the switch was accepted)."""
        aiohttp_request_in_progress = _slot(web.RequestHandler, "_request_in_progress")
        """A request is being handled (its handler runs)."""
        aiohttp_loop = _slot(web.RequestHandler, "_loop")
        """The connection's event loop."""


if not TYPE_CHECKING:
    ParserRefusal = getattr(web_protocol, "_ErrInfo", None) or _Missing("web_protocol._ErrInfo")
"""aiohttp's ``_ErrInfo(status, exc, message)``: what the handler queues in place of a
request whose head the parser refused; the handler loop answers it with
``handle_error(request, status, exc, message)``.  :mod:`proxy.connection` recognizes it
(to read nothing after a refusal) and queues one of its own (431 for a whole head too
large).  A frozen attrs class ``(status, exc, message)`` in aiohttp 3.10 to 3.14."""

TOO_MANY_HEADERS: Final = "Too many headers received"
"""The message of aiohttp's parsers (llhttp's wrapper and the Python one) for more than
``max_headers`` fields: a :class:`BadHttpMessage` like any malformed head, told apart only
by this text, so that it gets 431 rather than 400.  Checked against both parsers."""


def line_limit(exc: LineTooLong) -> object:
    """The limit a :class:`LineTooLong` hit: its second argument (aiohttp 3.x sets
    ``args = (line, limit, actual_size)``).  It tells the request line's limit (414) from
    a header's (431).  Called only for a refused head."""
    return exc.args[1] if len(exc.args) > 1 else None


def replace_message(message: RawRequestMessage, **changes: Any) -> RawRequestMessage:
    """``message`` with ``changes``: ``RawRequestMessage._replace``.

    The parsed request is a NamedTuple from the Python parser and a Cython class with a
    ``_replace`` of its own from the C one (aiohttp 3.x); it is replaced to make a request
    the last of its connection (``should_close``) or to drop routing headers.  Called only
    for such requests."""
    return message._replace(**changes)


def server_options(server: web.Server) -> dict[str, Any]:
    """The keyword arguments a :class:`web.Server` passes to each connection's
    ``RequestHandler`` (``Server._kwargs``, aiohttp 3.x): a server making connections of
    its own class passes them on the same way.  Called once per connection."""
    options: dict[str, Any] = server._kwargs
    return options


def server_loop(server: web.Server) -> asyncio.AbstractEventLoop:
    """The loop a :class:`web.Server` gives its connections (``Server._loop``, aiohttp
    3.x).  Called once per connection."""
    loop: asyncio.AbstractEventLoop = server._loop
    return loop


class ServerMakingAppRunner(web.AppRunner):
    """:class:`web.AppRunner` whose server is made by :meth:`make_server` from the options
    aiohttp gathered.

    ``AppRunner.setup`` calls the private ``_make_server`` (aiohttp 3.x), which starts and
    freezes the application and builds a :class:`web.Server` with the runner's options; the
    management listener needs a server making hardened connections instead.  Called once."""

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return self.make_server(plain, server_options(plain))

    def make_server(self, plain: web.Server, options: dict[str, Any]) -> web.Server:
        """The server to run, given aiohttp's ``plain`` one and its connection ``options``."""
        return plain


# --- Responses (proxy.prebuilt) ------------------------------------------------------


def response_written(
    response: web.StreamResponse, request: web.BaseRequest, body_length: int
) -> bool:
    """Mark ``response`` as written whole (a :class:`~proxy.prebuilt.PrebuiltResponse` writes
    its own bytes to the transport) and return whether the connection stays open.

    aiohttp 3.x keeps this state in private attributes: ``_keep_alive`` (None until
    prepared; the handler loop closes the connection unless it is true), ``_eof_sent`` (the
    answer is complete: nothing more is written, ``prepared`` is true) and ``_body_length``
    (the access log's ``%b``).  Called once per prebuilt answer: plain attribute accesses."""
    keep_alive = response._keep_alive
    if keep_alive is None:
        keep_alive = response._keep_alive = request.keep_alive
    response._eof_sent = True
    response._body_length = body_length
    return bool(keep_alive)


# --- The upstream session (proxy.forwarding) -------------------------------------------


def disable_connection_retry(session: aiohttp.ClientSession) -> None:
    """Turn off ``session``'s one resend of an idempotent request whose pooled connection
    broke before the answer (``ClientSession._retry_connection``, aiohttp 3.10 to 3.14, a
    per-session switch read in ``_request``).  The forwarder keeps it on only in a second
    session for requests without a body.  Called once."""
    session._retry_connection = False


# --- The upstream connections (proxy.upstreampool) --------------------------------------


class UpstreamProtocol(client_proto.ResponseHandler):
    """aiohttp's client connection protocol (``aiohttp.client_proto.ResponseHandler``, 3.x): it
    parses answers with ``aiohttp.http.HttpResponseParser`` (looked up when
    ``set_response_params`` makes the parser for an exchange), keeps the read timeout
    (``start_timeout``, re-armed by each read), pauses reading when a body's buffer is full,
    and queues ``(message, payload)`` for ``read()``; a broken connection raises the
    exceptions a ``ClientSession`` raises.

    :meth:`answer_parsed` sees each answer as the parser completes its head, before it is
    queued, and may take it instead: ``ResponseHandler.data_received`` hands every parsed
    ``(message, payload)`` to ``self.feed_data`` (``DataQueue``'s), overridden here.  So an
    answer can be used from ``data_received`` itself, without a task waiting in ``read()``.

    Two per-read costs of aiohttp's are cut (``bench.instructions``, see bench/RESULTS.md):
    its read timer (``_reschedule_timeout``, ``_drop_timeout``; kept as one deadline,
    ``_on_read_timeout`` called when it passes) and ``resume_reading`` when nothing is
    paused (``BaseProtocol._reading_paused``, ``_buffer_paused``)."""

    __slots__ = ("_deadline", "_deadline_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._deadline: float | None = None
        """When the read timeout fires (None: not running)."""
        self._deadline_timer: asyncio.TimerHandle | None = None

    def feed_data(self, data: tuple[RawResponseMessage, StreamReader], size: int = 0) -> None:
        if not self.answer_parsed(*data):
            super().feed_data(data, size)

    # The read timeout, as a deadline.  aiohttp cancels its timer and schedules a new one on
    # every read and at the start of every exchange (``_reschedule_timeout``), and cancels it
    # at the end of every body (``_drop_timeout``): two timers made and two cancelled per
    # answer.  Here those move a deadline, and one timer per connection, when it fires,
    # either re-arms itself for the deadline (it moved) or calls aiohttp's
    # ``_on_read_timeout`` (it passed).  Same timeouts, same exceptions.

    def _reschedule_timeout(self) -> None:
        timeout = self._read_timeout
        if not timeout:
            self._deadline = None
            return
        loop = self._loop
        self._deadline = deadline = loop.time() + timeout
        if self._deadline_timer is None:
            self._deadline_timer = loop.call_at(deadline, self._deadline_reached)

    def _drop_timeout(self) -> None:
        self._deadline = None

    def _deadline_reached(self) -> None:
        self._deadline_timer = None
        deadline = self._deadline
        if deadline is None:
            return
        loop = self._loop
        if loop.time() < deadline:
            self._deadline_timer = loop.call_at(deadline, self._deadline_reached)
            return
        self._deadline = None
        self._on_read_timeout()

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        timer = self._deadline_timer
        if timer is not None:
            self._deadline_timer = None
            timer.cancel()

    def resume_reading(self, resume_parser: bool = True) -> None:
        # aiohttp's feeds the parser an empty read (to go on with bytes it held back while
        # paused) and resumes the transport, and the end of a body and its read each call
        # it, paused or not.  The parser holds bytes back only while reading is paused.
        if self._reading_paused or self._buffer_paused:
            super().resume_reading(resume_parser)

    def answer_parsed(self, message: RawResponseMessage, payload: StreamReader) -> bool:
        """Whether this answer was taken (else it is queued for ``read()``)."""
        return False


_RESPONSE_PARAMETERS: Final = ("skip_payload", "read_until_eof", "auto_decompress", "read_timeout")
_PROTOCOL_METHODS: Final = (
    "set_response_params",
    "start_timeout",
    "read",
    "set_exception",
    "is_connected",
    "close",
)
_PROTOCOL_PROPERTIES: Final = ("should_close", "closed", "writing_paused")


async def drain(protocol: UpstreamProtocol) -> None:
    """Wait until ``protocol``'s transport takes writes again (``BaseProtocol._drain_helper``,
    aiohttp 3.x, what aiohttp's own writers await): a request body's backpressure.  Raises
    ``ConnectionResetError`` when the connection is gone."""
    await protocol._drain_helper()


def _read_timer() -> bool:
    """Whether aiohttp's client protocol still starts, re-arms and stops its read timeout
    through ``_reschedule_timeout`` and ``_drop_timeout``, times out with
    ``_on_read_timeout`` and keeps the timeout in ``_read_timeout`` (what
    :class:`UpstreamProtocol` overrides, calls and reads)."""
    cls = client_proto.ResponseHandler
    start = getattr(cls, "start_timeout", None)  # (missing: "client_proto.ResponseHandler")
    return (
        (start is None or _reads(start, "_reschedule_timeout"))
        and _reads(cls.data_received, "_reschedule_timeout")
        and _reads(cls.data_received, "_drop_timeout")
        and _reads(cls._reschedule_timeout, "_on_read_timeout")
        and _reads(getattr(cls.read_timeout, "fget", None), "_read_timeout")
    )


def _upstream_protocol() -> bool:
    cls = client_proto.ResponseHandler
    if not all(callable(getattr(cls, name, None)) for name in _PROTOCOL_METHODS):
        return False
    if not all(isinstance(getattr(cls, name, None), property) for name in _PROTOCOL_PROPERTIES):
        return False
    parameters = inspect.signature(cls.set_response_params).parameters
    return all(name in parameters for name in _RESPONSE_PARAMETERS)


# --- The public listener's fast lane (proxy.fastlane) ----------------------------------


def server_request_parser() -> type[HttpRequestParser]:
    """The request parser class aiohttp's server makes for each connection
    (``web_protocol.HttpRequestParser``: llhttp's C parser, or the pure-Python one where the
    extension is missing), looked up when called: the fast lane parses with the very
    class aiohttp's connections use, so both read a request the same way."""
    parser: type[HttpRequestParser] = vars(web_protocol)["HttpRequestParser"]
    return parser


class ServerProtocol(base_protocol.BaseProtocol):
    """aiohttp's base connection protocol (``aiohttp.base_protocol.BaseProtocol``, 3.x) for
    a server connection of our own that aiohttp's writer (``StreamWriter``, so every
    ``web`` response) can write to: it sets ``TCP_NODELAY``, keeps ``pause_writing`` /
    ``resume_writing`` and the waiter ``StreamWriter.drain`` awaits (``_drain_helper``).
    The transport's reading is paused and resumed through ``_pause_transport_reading`` and
    ``_resume_transport_reading``, which ignore a transport without flow control.  Called
    only when a client pipelines requests or stops reading."""

    __slots__ = ()

    def pause_transport_reading(self) -> None:
        self._pause_transport_reading()

    def resume_transport_reading(self) -> None:
        self._resume_transport_reading()


# --- The access log (proxy.serverlog) --------------------------------------------------

_format_line: Callable[..., list[tuple[Any, Any]]] = getattr(
    AccessLogger, "_format_line", None
) or _Missing("AccessLogger._format_line")


class AccessLogFieldHook(AccessLogger):
    """aiohttp's access logger, with every logged field passed through :meth:`logged_value`.

    ``AccessLogger.log`` (aiohttp 3.8 to 3.14) builds both the message and the ``extra``
    fields from the private ``_format_line``, a list of ``(key, value)``: one hook masks
    secrets in both.  Called per logged request: one list comprehension, as before."""

    def _format_line(
        self, request: web.BaseRequest, response: web.StreamResponse, time: float
    ) -> list[tuple[Any, Any]]:
        value = self.logged_value
        return [
            (key, value(key, field)) for key, field in _format_line(self, request, response, time)
        ]

    def logged_value(self, key: str | tuple[str, str], value: Any) -> Any:
        """What is logged for field ``key`` (``value`` unchanged here)."""
        return value


# --- The check ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Internal:
    """One aiohttp internal: ``name`` as the start-up error shows it, and a check."""

    name: str
    present: Callable[[], bool]


def _is_slot(cls: type, name: str) -> bool:
    """Whether ``name`` is a ``__slots__`` attribute of ``cls`` (or of a base)."""
    return isinstance(inspect.getattr_static(cls, name, None), types.MemberDescriptorType)


def _attribute_read(cls: type, name: str, reader: object) -> bool:
    """Whether ``cls`` has a class-level default for ``name`` and ``reader`` (a property
    of it) reads that attribute."""
    return name in cls.__dict__ and _reads(getattr(reader, "fget", None), name)


def _reads(function: object, name: str) -> bool:
    """Whether ``function``'s code names attribute ``name`` (it reads or sets it)."""
    code = getattr(function, "__code__", None)
    return code is not None and name in code.co_names


def _parser_message(head: bytes, *, max_line_size: int = 8190, max_headers: int = 128) -> Any:
    """What aiohttp's default parser raises for ``head`` (None when it raises nothing)."""
    parser = HttpRequestParser(
        None,  # the protocol and the loop: used only for a body, and these heads have none
        None,
        2**16,
        max_line_size=max_line_size,
        max_field_size=8190,
        max_headers=max_headers,
    )
    try:
        parser.feed_data(head)
    except BadHttpMessage as exc:
        return exc
    return None


def _too_many_headers_text() -> bool:
    exc = _parser_message(b"GET / HTTP/1.1\r\nA: b\r\nC: d\r\n\r\n", max_headers=1)
    return isinstance(exc, BadHttpMessage) and exc.message == TOO_MANY_HEADERS


def _line_limit_argument() -> bool:
    exc = _parser_message(b"GET /" + b"a" * 40 + b" HTTP/1.1\r\n\r\n", max_line_size=20)
    return isinstance(exc, LineTooLong) and line_limit(exc) == 20


def _err_info() -> bool:
    err_info = getattr(web_protocol, "_ErrInfo", None)
    if err_info is None:
        return False
    return tuple(inspect.signature(err_info).parameters) == ("status", "exc", "message")


def _handler_slot(name: str) -> Internal:
    return Internal(f"RequestHandler.{name}", lambda: _is_slot(web.RequestHandler, name))


def _protocol_slot(name: str) -> Internal:
    return Internal(f"BaseProtocol.{name}", lambda: _is_slot(base_protocol.BaseProtocol, name))


INTERNALS: Final[tuple[Internal, ...]] = (
    *(
        _handler_slot(name)
        for name in (
            "_messages",
            "_request_count",
            "_waiter",
            "_upgraded",
            "_payload_parser",
            "_request_in_progress",
            "_loop",
        )
    ),
    Internal("web_protocol._ErrInfo", _err_info),
    Internal("parser message 'Too many headers received'", _too_many_headers_text),
    Internal("LineTooLong.args[1] (the limit)", _line_limit_argument),
    Internal(
        "RawRequestMessage._replace",
        lambda: all(
            callable(getattr(getattr(http_parser, name, None), "_replace", None))
            for name in ("RawRequestMessage", "RawRequestMessagePy")  # the C one, the Python one
        ),
    ),
    Internal("Server._kwargs", lambda: _reads(web.Server.__init__, "_kwargs")),
    Internal("Server._loop", lambda: _reads(web.Server.__init__, "_loop")),
    Internal("AppRunner._make_server", lambda: _reads(web.BaseRunner.setup, "_make_server")),
    Internal(
        "StreamResponse._keep_alive",
        lambda: _attribute_read(web.StreamResponse, "_keep_alive", web.StreamResponse.keep_alive),
    ),
    Internal(
        "StreamResponse._eof_sent",
        lambda: _attribute_read(web.StreamResponse, "_eof_sent", web.StreamResponse.prepared),
    ),
    Internal(
        "StreamResponse._body_length",
        lambda: _attribute_read(web.StreamResponse, "_body_length", web.StreamResponse.body_length),
    ),
    Internal(
        "ClientSession._retry_connection",
        lambda: (
            "_retry_connection" in aiohttp.ClientSession.ATTRS
            and _reads(aiohttp.ClientSession._request, "_retry_connection")
        ),
    ),
    Internal("AccessLogger._format_line", lambda: _reads(AccessLogger.log, "_format_line")),
    Internal("client_proto.ResponseHandler", _upstream_protocol),
    Internal(
        "ResponseHandler.data_received queueing answers with feed_data",
        lambda: _reads(client_proto.ResponseHandler.data_received, "feed_data"),
    ),
    Internal(
        "BaseProtocol._drain_helper",
        lambda: callable(getattr(base_protocol.BaseProtocol, "_drain_helper", None)),
    ),
    Internal(
        "web_protocol.HttpRequestParser",
        lambda: callable(getattr(web_protocol, "HttpRequestParser", None)),
    ),
    *(
        Internal(
            f"BaseProtocol.{name}",
            lambda name=name: callable(getattr(base_protocol.BaseProtocol, name, None)),  # type: ignore[misc]
        )
        for name in ("_pause_transport_reading", "_resume_transport_reading")
    ),
    *(_protocol_slot(name) for name in ("_reading_paused", "_buffer_paused")),
    Internal("ResponseHandler read timer", _read_timer),
)
"""Every internal above, as :func:`check_aiohttp` verifies it."""


def missing_internals() -> list[str]:
    """The names of the internals the installed aiohttp lacks (none: compatible)."""
    missing = []
    for internal in INTERNALS:
        try:
            present = internal.present()
        except Exception:
            present = False
        if not present:
            missing.append(internal.name)
    return missing


def _message(missing: list[str]) -> str:
    names = ", ".join(missing)
    return f"mwm needs aiohttp's {names} ({SUPPORTED}); installed: {aiohttp.__version__}"


def check_aiohttp() -> None:
    """Refuse to start, with one line, when the installed aiohttp lacks an internal mwm
    relies on (:class:`AiohttpIncompatible`); call before listening."""
    missing = missing_internals()
    if missing:
        raise AiohttpIncompatible(_message(missing))
