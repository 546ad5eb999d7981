"""Connections to the upstream: a keep-alive pool, and one request and its answer on it.

The forwarder's hot path used to go through :class:`aiohttp.ClientSession`: per request a
``ClientRequest`` (URL handling, auto headers, auth, cookies, tracing hooks, a body
payload object), a connector lookup with its own bookkeeping, a ``ClientResponse`` and a
per-request parser.  A proxy needs none of that: the request's target, headers and body
are already known, there is one upstream, and no cookie, redirect or decompression may
happen.  ``python -m bench.profile --mode proxy`` put that machinery at about a fifth of
a proxied request's CPU.  Here the request head is serialized once, in one string, and
written with the body in one write when the whole body is already here; the answer is
read by aiohttp's own client connection protocol (:data:`~proxy.aiohttp_compat.UpstreamProtocol`,
``aiohttp.client_proto.ResponseHandler``), which keeps what matters from aiohttp's
client: its response parser (llhttp's C parser, strict about framing, or the pure-Python
one where the extension is missing or ``AIOHTTP_NO_EXTENSIONS`` is set), the read timeout
(``sock_read``: the longest silence while waiting for the head or a body chunk, paused
while the client holds the body back), flow control both ways, and the exceptions a
``ClientSession`` raises (so failures map to the same error pages).

The pool keeps idle connections last in, first out (the warmest socket first), closes
those idle for ``keepalive_timeout_s`` with one timer for the whole pool, and opens a new
connection when none is idle, within ``connect_timeout_s`` (name resolution included).
It sets no limit: the forwarder's slots do (``pool_size``, ``max_per_client``).  A
connection goes back to the pool only when its exchange ended cleanly: the whole request
sent, the whole answer read, no ``Connection: close``, no stray bytes after the answer; and
one that receives bytes while idle is closed at once (they answer nothing: read as the
answer to the next request, they would shift every later answer by one).

A request is sent again, once, on a new connection when the one it went out on broke
before any byte of the answer (closed or reset by the upstream), if the caller says it is
safe (an idempotent method without a body; see :mod:`proxy.forwarding`).  Failing to
connect is not retried (:class:`ConnectFailed`, ``aiohttp.ConnectionTimeoutError``).

A request body streams from its own task, so an upstream that answers before reading the
whole body (a 413, say) is heard at once; its connection is then never reused (the rest
of the body was not sent).  A body that fails (the client left, or :mod:`proxy.forwarding`
cut it: too large, too slow) fails the exchange with an ``aiohttp.ClientConnectionError``
whose ``__cause__`` is that failure, and the connection is closed, so the upstream sees an
incomplete request, never a complete one.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import operator
import re
import ssl
from collections.abc import AsyncIterable, Iterable
from typing import Any, Final, Protocol

import aiohttp
from aiohttp.http import RawResponseMessage
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader
from multidict import CIMultiDictProxy
from yarl import URL

from proxy.aiohttp_compat import UpstreamProtocol, drain

_NO_BODY_EXPECTED: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
"""Methods sent without ``Content-Length: 0`` when they have no body (aiohttp's
``ClientRequest.GET_METHODS``: the others tell the upstream their empty body's length)."""

_LAST_CHUNK: Final = b"0\r\n\r\n"
_ANSWER_START: Final = b"HTTP/"
_ANSWER_START_LENGTH: Final = len(_ANSWER_START)
_first = operator.itemgetter(0)
_NOT_A_TOKEN: Final = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
"""A character that may not be in a field name (RFC 9110 section 5.6.2, ``tchar``)."""

RequestBody = StreamReader | AsyncIterable[bytes]


class ConnectFailed(aiohttp.ClientConnectionError):
    """No connection to the upstream could be opened; :attr:`os_error` says why (refused,
    unreachable, a name that does not resolve, a TLS handshake that failed)."""

    def __init__(self, os_error: OSError) -> None:
        super().__init__("could not connect to the upstream")
        self.os_error = os_error


class InvalidResponse(aiohttp.ClientError):
    """The upstream's answer is not valid HTTP (garbage, a broken head, a bad framing)."""


class AnswerListener(Protocol):
    """Takes the answer to a request sent with :meth:`UpstreamPool.send_now`."""

    def answered(
        self, connection: Connection, message: RawResponseMessage, payload: StreamReader
    ) -> None:
        """The answer's head is here (from the connection's ``data_received``), and with it
        as much of the body as came in the same read (``payload.is_eof()``: all of it)."""

    def failed(self, connection: Connection, exc: BaseException) -> None:
        """No answer will come, or one unfit to relay: ``exc`` is what
        :meth:`UpstreamPool.request` would raise (before its resend).  Called soon after the
        failure, never from inside the connection's own callbacks."""


class Connection(UpstreamProtocol):
    """aiohttp's client protocol, with two refusals of its own before its parser sees a byte:

    - bytes that arrive while the connection sits idle in the pool close it at once:
      nothing was asked, so they can only be a broken upstream's stray answer, which must
      never be read as the answer to the next request sent on it;
    - an answer that does not begin with ``HTTP/`` fails the exchange at its first bytes
      (502 at once): llhttp refuses it there too, but the pure-Python parser waits for the
      end of a head that never comes (an SSH banner, a TLS server, binary), until the read
      timeout gives a 504 instead.
    """

    __slots__ = ("heard", "idle", "listener", "parsing_heads", "taken", "waker")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.idle = False
        self.heard = 0
        """Bytes of the answer's ``HTTP/`` checked so far (reset for each request)."""
        self.parsing_heads: bool | None = None
        """Whether the parser in place reads answers to ``HEAD`` (no body); None: none yet."""
        self.listener: AnswerListener | None = None
        """Who takes the answer to the request in flight (:meth:`UpstreamPool.send_now`);
        None: it is queued for ``read()``."""
        self.taken: tuple[RawResponseMessage, StreamReader] | None = None
        self.waker = loop.call_soon

    def data_received(self, data: bytes) -> None:
        if data:
            if self.idle:
                self.close()
                return
            heard = self.heard
            if heard < _ANSWER_START_LENGTH:
                start = data[: _ANSWER_START_LENGTH - heard]
                if start != _ANSWER_START[heard : heard + len(start)]:
                    self.set_exception(HttpProcessingError(message="not an HTTP answer"))
                    return
                self.heard = heard + len(start)
        super().data_received(data)
        taken = self.taken
        if taken is not None:
            # Handed over once aiohttp's protocol has finished with this read.
            listener = self.listener
            self.taken = self.listener = None
            assert listener is not None
            problem = _framing_problem(taken[0])
            if problem is not None:
                self.waker(listener.failed, self, InvalidResponse(problem))
            else:
                listener.answered(self, *taken)

    def answer_parsed(self, message: RawResponseMessage, payload: StreamReader) -> bool:
        if self.listener is None or self.taken is not None:
            return False  # for read(); a second answer in one read is queued: never reused
        if 100 <= message.code < 200 and message.code != 101:
            return True  # informational: not relayed (read()'s callers skip it too)
        self.taken = (message, payload)
        return True

    def set_exception(self, exc: BaseException, *args: Any) -> None:
        super().set_exception(exc, *args)
        listener = self.listener
        if listener is not None and self.taken is None:
            self.listener = None
            self.waker(listener.failed, self, _answer_error(exc))


class UpstreamResponse:
    """The upstream's answer: its head, and its body as a stream.

    Call :meth:`release` when done with it (the connection goes back to the pool when
    the exchange ended cleanly) or :meth:`close` to drop the connection."""

    __slots__ = (
        "_pool",
        "_protocol",
        "_sender",
        "content",
        "headers",
        "raw_headers",
        "reason",
        "status",
    )

    def __init__(
        self,
        pool: UpstreamPool,
        protocol: Connection,
        message: RawResponseMessage,
        content: StreamReader,
        sender: asyncio.Task[None] | None,
    ) -> None:
        self._pool = pool
        self._protocol: Connection | None = protocol
        self._sender = sender
        self.status: int = message.code
        self.reason: str = message.reason
        self.headers: CIMultiDictProxy[str] = message.headers
        self.raw_headers: tuple[tuple[bytes, bytes], ...] = message.raw_headers
        """The head's fields as the upstream sent them (the parser checked their syntax)."""
        self.content = content

    @property
    def content_length(self) -> int | None:
        """The answer's ``Content-Length``, when it has one (the parser checked it)."""
        length = self.headers.get("Content-Length")
        return None if length is None else int(length)

    async def read(self) -> bytes:
        """The whole body (raises as :attr:`content` does when the exchange fails)."""
        content = self.content
        if content.is_eof():  # all here already (most small answers): no wait, no loop
            return content.read_nowait()
        return await content.read()

    def release(self) -> None:
        """End the exchange: the connection goes back to the pool if it can carry another
        request, else it is closed."""
        protocol = self._protocol
        if protocol is None:
            return
        self._protocol = None
        sender = self._sender
        if sender is not None and not sender.done():
            # The upstream answered before the whole body was sent: never reused.
            self._pool.drop(protocol, sender)
            return
        self._pool.give_back(protocol)

    def close(self) -> None:
        """End the exchange and close its connection."""
        protocol = self._protocol
        if protocol is None:
            return
        self._protocol = None
        self._pool.drop(protocol, self._sender)


class UpstreamPool:
    """Keep-alive connections to one upstream, and requests sent on them."""

    __slots__ = (
        "_authorization",
        "_base_path",
        "_closed",
        "_connect_timeout_s",
        "_host",
        "_host_header",
        "_idle",
        "_keepalive_s",
        "_loop",
        "_open",
        "_port",
        "_read_timeout_s",
        "_server_hostname",
        "_ssl",
        "_sweep",
    )

    def __init__(
        self,
        url: URL,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        keepalive_timeout_s: float,
    ) -> None:
        """``url``: the upstream (``http`` or ``https``, with an optional base path and
        credentials, sent as Basic authorization in place of the client's)."""
        host = url.raw_host
        if host is None:
            raise ValueError("the upstream URL has no host")
        self._host = host
        port = url.port
        assert port is not None  # yarl knows the default port of http and https
        self._port = port
        secure = url.scheme == "https"
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if secure else None
        self._server_hostname = url.host if secure else None
        self._host_header = url.host_port_subcomponent or host
        self._base_path = url.raw_path.rstrip("/")
        self._authorization: str | None = None
        if url.raw_user or url.raw_password:
            credentials = f"{url.user or ''}:{url.password or ''}".encode()
            self._authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._keepalive_s = keepalive_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        # Idle connections with the time each became idle, oldest first; taken from the end.
        self._idle: list[tuple[float, Connection]] = []
        self._open: set[Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: RequestBody | None,
        *,
        resend: bool = False,
        fresh: bool = False,
    ) -> UpstreamResponse:
        """Send ``method target`` with ``headers`` (as they are to go out: hop-by-hop
        fields and the proxy's own already handled) and ``body``, and return the answer
        once its head has arrived.

        ``target`` is the path and query, already encoded, without the base path.  A
        ``Host`` is added when ``headers`` has none, ``Transfer-Encoding: chunked`` when a
        body has no ``Content-Length``.  ``resend``: send it once more on another
        connection if the first broke before the answer (only for a request without a
        body).  ``fresh``: on a new connection from the start (a resend of
        :meth:`send_now`'s).  Raises what a ``ClientSession`` request raises:
        ``TimeoutError`` (connect or read timeout), :class:`ConnectFailed` and other
        ``aiohttp.ClientError``.
        """
        head, chunked = self._head(method, target, headers, body is not None)
        skip_payload = method == "HEAD"
        resent = False
        while True:
            # A resend goes on a new connection: the other idle ones may have been closed
            # by the same upstream restart or idle timeout.
            protocol = await (self._connect() if resent or fresh else self._acquire())
            self._expect(protocol, head=skip_payload)
            sender: asyncio.Task[None] | None = None
            try:
                transport = protocol.transport
                assert transport is not None  # _acquire returns a connected protocol
                if body is None:
                    transport.write(head)
                    protocol.start_timeout()
                else:
                    sender = _send(protocol, transport, head, body, chunked=chunked)
                message, content = await protocol.read()
                while 100 <= message.code < 200 and message.code != 101:
                    message, content = await protocol.read()  # informational: not relayed
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                self.drop(protocol, sender)
                if not resend or resent:
                    raise
                resent = True  # once
                continue
            except HttpProcessingError as exc:
                self.drop(protocol, sender)
                raise _answer_error(exc) from exc
            except BaseException:
                self.drop(protocol, sender)
                raise
            problem = _framing_problem(message)
            if problem is not None:
                self.drop(protocol, sender)
                raise InvalidResponse(problem)
            return UpstreamResponse(self, protocol, message, content, sender)

    def give_back(self, protocol: Connection) -> None:
        """Pool ``protocol`` for another request, or close it if it cannot carry one."""
        if self._closed or protocol.should_close or not protocol.is_connected():
            self.drop(protocol)
            return
        loop = self._loop
        assert loop is not None
        now = loop.time()
        protocol.idle = True
        self._idle.append((now, protocol))
        if self._sweep is None:
            self._sweep = loop.call_at(now + self._keepalive_s, self._expire)

    def drop(self, protocol: Connection, sender: asyncio.Task[None] | None = None) -> None:
        """Close ``protocol`` (and stop sending its request's body, if ``sender`` still is)."""
        if sender is not None and not sender.done():
            sender.cancel()
        protocol.close()
        self._open.discard(protocol)

    async def close(self) -> None:
        """Close every connection, idle or not (requests still running fail)."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._idle.clear()
        waits = []
        for protocol in self._open:
            closed = protocol.closed
            protocol.close()
            if closed is not None:
                waits.append(closed)
        self._open.clear()
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)

    def send_now(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        listener: AnswerListener,
    ) -> Connection | None:
        """Send a request without a body on an idle connection, now, and return that
        connection (give it back, or drop it, when done with the answer); None when no
        connection is idle (nothing was sent: use :meth:`request`).  The answer goes to
        ``listener`` instead of a waiting task (see :class:`AnswerListener`); a request
        that fails is not resent here."""
        protocol = self._idle_connection()
        if protocol is None:
            return None
        head, _ = self._head(method, target, headers, False)
        self._expect(protocol, head=method == "HEAD")
        protocol.listener = listener
        transport = protocol.transport
        assert transport is not None  # _idle_connection returns a connected protocol
        transport.write(head)
        protocol.start_timeout()
        return protocol

    def _idle_connection(self) -> Connection | None:
        idle = self._idle
        while idle:
            _, protocol = idle.pop()
            if protocol.is_connected() and not protocol.should_close:
                protocol.idle = False
                return protocol
            self.drop(protocol)  # closed by the upstream while idle, or sent unasked-for bytes
        return None

    def _expect(self, protocol: Connection, *, head: bool) -> None:
        """Make ``protocol`` ready to read the answer to a request (``head``: to ``HEAD``)."""
        if protocol.parsing_heads is not head:
            # A parser per connection and kind of request, reused while the kind stays
            # the same (a parser is back at a message boundary after a clean exchange,
            # the only kind that leaves a connection in the pool).
            protocol.set_response_params(
                skip_payload=head,
                read_until_eof=True,
                auto_decompress=False,
                read_timeout=self._read_timeout_s,
            )
            protocol.parsing_heads = head
        protocol.heard = 0

    async def _acquire(self) -> Connection:
        protocol = self._idle_connection()  # (not `or`: a DataQueue is falsy when empty)
        return protocol if protocol is not None else await self._connect()

    async def _connect(self) -> Connection:
        if self._closed:
            raise aiohttp.ClientConnectionError("the upstream pool is closed")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, protocol = await loop.create_connection(
                    lambda: Connection(loop),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._server_hostname,
                )
        except TimeoutError as exc:
            raise aiohttp.ConnectionTimeoutError("no connection to the upstream in time") from exc
        except OSError as exc:
            raise ConnectFailed(exc) from exc
        self._open.add(protocol)
        return protocol

    def _expire(self) -> None:
        """Close the connections idle for ``keepalive_timeout_s``; re-arm for the rest."""
        self._sweep = None
        loop = self._loop
        assert loop is not None
        idle = self._idle
        deadline = loop.time() - self._keepalive_s
        expired = 0
        for since, protocol in idle:
            if since > deadline:
                break
            expired += 1
            self.drop(protocol)
        del idle[:expired]
        if idle:
            self._sweep = loop.call_at(idle[0][0] + self._keepalive_s, self._expire)

    def _head(
        self, method: str, target: str, headers: Iterable[tuple[str, str]], has_body: bool
    ) -> tuple[bytes, bool]:
        """The request head as it goes out, and whether the body is sent chunked."""
        authorization = self._authorization
        if authorization is not None:  # the upstream URL's credentials replace the client's
            headers = [(name, value) for name, value in headers if name.lower() != "authorization"]
        # One line per field, as they come; whether a Host and a Content-Length are among
        # them is read from the lines lowered at once (a field line starts after a CRLF with
        # its name and a colon: names have no spaces, values no CRLF).
        fields = "".join([f"{name}: {value}\r\n" for name, value in headers])
        lowered = "\r\n" + fields.lower()
        host = "\r\nhost:" in lowered
        length = "\r\ncontent-length:" in lowered
        chunked = has_body and not length
        head = [f"{method} {self._base_path}{target} HTTP/1.1\r\n", fields]
        if not host:
            head.append(f"Host: {self._host_header}\r\n")
        if authorization is not None:
            head.append(f"Authorization: {authorization}\r\n")
        if chunked:
            head.append("Transfer-Encoding: chunked\r\n")
        elif not has_body and not length and method not in _NO_BODY_EXPECTED:
            head.append("Content-Length: 0\r\n")
        head.append("\r\n")
        # The server's parser decoded the client's bytes with surrogateescape: this sends
        # them on exactly as they came (it refused control characters and line breaks).
        return "".join(head).encode("utf-8", "surrogateescape"), chunked


def _answer_error(exc: BaseException) -> BaseException:
    """What a failed exchange raises: a parser's refusal as :class:`InvalidResponse`
    (caused by it), anything else as it is."""
    if isinstance(exc, HttpProcessingError):
        error = InvalidResponse("the upstream's answer is not valid HTTP")
        error.__cause__ = exc
        return error
    return exc


def _framing_problem(message: RawResponseMessage) -> str | None:
    """What makes an answer's head unfit to relay, which a parser let through (None: fit).

    The head is relayed field by field, so what the parser tolerated reaches the client:
    llhttp keeps a field name with a space before its colon (``Content-Length : 5``), which
    a client or cache that trims it reads as a second length; the pure-Python parser keeps
    two different ``Content-Length`` values.  RFC 9112 section 6.3 makes both, and a length
    next to ``Transfer-Encoding``, errors a proxy must not pass on (502).  What the field
    names alone tell is worked out once per list of names (an upstream sends the same
    names answer after answer); the values are looked at only when a length is repeated."""
    problem, repeated_length = _names_problem(tuple(map(_first, message.raw_headers)))
    if problem is None and repeated_length:
        lengths = message.headers.getall("Content-Length")
        if len({length.strip() for length in lengths}) > 1:
            return "two different Content-Length values"
    return problem


@functools.lru_cache(maxsize=256)
def _names_problem(names: tuple[bytes, ...]) -> tuple[str | None, bool]:
    """:func:`_framing_problem`'s verdict from the field names alone, and whether a
    ``Content-Length`` is repeated (its values must then agree)."""
    if _NOT_A_TOKEN.search(b"".join(names)) is not None:
        return "a header field name that is not a token", False
    lowered = [name.lower() for name in names]
    lengths = lowered.count(b"content-length")
    if lengths and b"transfer-encoding" in lowered:
        return "both Content-Length and Transfer-Encoding", False
    return None, lengths > 1


def _send(
    protocol: Connection,
    transport: asyncio.Transport,
    head: bytes,
    body: RequestBody,
    *,
    chunked: bool,
) -> asyncio.Task[None] | None:
    """Send ``head`` and ``body``: in one write, now, when the whole body is already here
    (most request bodies); else from a task, returned, which sends the head with the
    body's first bytes (so a body that fails before its first byte sends nothing)."""
    if isinstance(body, StreamReader) and body.is_eof() and body.exception() is None:
        data = body.read_nowait()
        transport.write(_framed(head, data, chunked=chunked, last=True))
        protocol.start_timeout()
        return None
    return asyncio.get_running_loop().create_task(
        _stream_body(protocol, transport, head, body, chunked=chunked),
        name="upstream request body",
    )


def _framed(head: bytes, data: bytes, *, chunked: bool, last: bool) -> bytes:
    """``head`` (possibly empty) and ``data``, as a chunk when ``chunked``, then the last
    chunk when ``last``."""
    if not chunked:
        return head + data if head else data
    parts = [head]
    if data:
        parts += (b"%x\r\n" % len(data), data, b"\r\n")
    if last:
        parts.append(_LAST_CHUNK)
    return b"".join(parts)


async def _stream_body(
    protocol: Connection,
    transport: asyncio.Transport,
    head: bytes,
    body: RequestBody,
    *,
    chunked: bool,
) -> None:
    """Copy ``body`` to the upstream with backpressure; on failure, fail the exchange."""
    chunks = body.iter_any() if isinstance(body, StreamReader) else body
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            transport.write(_framed(head, chunk, chunked=chunked, last=False))
            head = b""
            if protocol.writing_paused:
                await drain(protocol)
        if head or chunked:
            transport.write(_framed(head, b"", chunked=chunked, last=True))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        failure: aiohttp.ClientError = (
            aiohttp.ClientOSError(exc.errno, "the request body could not be sent")
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError)
            else aiohttp.ClientConnectionError("the request body could not be sent")
        )
        failure.__cause__ = exc
        protocol.set_exception(failure, exc)
        protocol.close()
        return
    protocol.start_timeout()  # the upstream's silence counts from the end of the body
