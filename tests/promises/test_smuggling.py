"""HTTP request smuggling: the upstream gets exactly the requests the proxy decided on.

Smuggling works when two parsers frame the same bytes differently: the proxy sees one
request, the upstream two (the second never checked by the maintenance rules).  The proxy
re-frames every request it forwards (``Transfer-Encoding`` is hop-by-hop), so the attacks
that matter are those where the proxy's own reading is ambiguous.  Every attack is sent
over a raw socket to a proxy in maintenance (bypass prefix ``/admin``) and targets
``/admin/target``; the smuggled request asks for ``/checkout``, which is blocked; then a
final ``GET /admin/sentinel`` with ``Connection: close`` shows whether the connection
stayed in step.  The upstream is a strict raw-socket server that records the bytes that
arrive (:mod:`tests.promises.rawupstream`).  Each test runs with aiohttp's C parser and
with its pure-Python one.

Promises:

- A request with ambiguous framing (Content-Length with Transfer-Encoding, repeated or
  malformed Content-Length, a coding list other than ``chunked``, obs-fold, invalid chunk
  sizes, bare LF or CR, NUL, whitespace before a colon, Transfer-Encoding in HTTP/1.0) is
  refused (400, or 501 for a transfer coding the proxy does not implement) and the
  connection closed: the upstream gets no connection at all.
- A well-framed request arrives as exactly one well-formed HTTP/1.1 request carrying the
  body the client framed, and nothing the client sent after it is glued to it.  A chunked
  request is the last one read on its connection (answered with ``Connection: close``):
  aiohttp's C parser would add its last trailer field to the next request
  (:mod:`tests.promises.test_trailers`).
- Where the two parsers disagree on a corner (tolerated or refused), either outcome is
  safe: refused with nothing forwarded, or delivered as exactly one request.
- A request asking to switch to a protocol the proxy does not relay (``h2c``, anything
  but websocket) is answered as plain HTTP without its ``Upgrade`` headers, and the
  connection is then closed: what follows on it is never forwarded, and the client is
  not left hanging.
- Only HTTP/1.0 and HTTP/1.1 are spoken: other versions are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import ProxyFactory, RunningProxy
from tests.promises.rawhttp import RawResponse, exchange, request
from tests.promises.rawupstream import RawUpstream

SMUGGLED = b"GET /checkout HTTP/1.1\r\nHost: proxy.test\r\n\r\n"
"""Blocked during maintenance: if the upstream ever sees it, it was smuggled."""
SENTINEL = request("GET", "/admin/sentinel")


def message(*lines: str | bytes, body: bytes = b"") -> bytes:
    """A request head from ``lines`` (CRLF-joined, as given), a blank line, then ``body``."""
    raw = [line.encode() if isinstance(line, str) else line for line in lines]
    return b"\r\n".join(raw) + b"\r\n\r\n" + body


POST = "POST /admin/target HTTP/1.1"
HOST = "Host: proxy.test"
CHUNKED = "Transfer-Encoding: chunked"
# The body a TE reader sees as empty, and a CL reader as five bytes plus a smuggled request.
EMPTY_CHUNKED_THEN_SMUGGLED = b"0\r\n\r\n" + SMUGGLED


@dataclass(frozen=True)
class Attack:
    data: bytes
    status: int = 400


REFUSED = [
    pytest.param(
        Attack(message(POST, HOST, "Content-Length: 5", CHUNKED, body=EMPTY_CHUNKED_THEN_SMUGGLED)),
        id="CL.TE",
    ),
    pytest.param(
        Attack(message(POST, HOST, CHUNKED, "Content-Length: 5", body=EMPTY_CHUNKED_THEN_SMUGGLED)),
        id="TE.CL",
    ),
    pytest.param(
        Attack(
            message(
                POST,
                HOST,
                "Content-Length: 5",
                f"Content-Length: {5 + len(SMUGGLED)}",
                body=b"hello" + SMUGGLED,
            )
        ),
        id="duplicate-content-length-different",
    ),
    pytest.param(
        Attack(message(POST, HOST, "Content-Length: 5", "Content-Length: 5", body=b"hello")),
        id="duplicate-content-length-same",
    ),
    pytest.param(
        Attack(message(POST, HOST, "Content-Length: 5, 5", body=b"hello")),
        id="content-length-list",
    ),
    pytest.param(
        Attack(message(POST, HOST, "Content-Length: +5", body=b"hello")), id="content-length-plus"
    ),
    pytest.param(
        Attack(message(POST, HOST, "Content-Length: -5", body=b"hello")),
        id="content-length-negative",
    ),
    pytest.param(
        Attack(message(POST, HOST, "Content-Length: 0x5", body=b"hello")), id="content-length-hex"
    ),
    pytest.param(
        Attack(message(POST, HOST, "Content-Length:", body=b"hello")), id="content-length-empty"
    ),
    pytest.param(
        Attack(message(POST, HOST, "Content-Length : 5", body=b"hello")),
        id="content-length-space-before-colon",
    ),
    pytest.param(
        Attack(
            message(
                POST, HOST, "Transfer-Encoding: chunked, identity", body=EMPTY_CHUNKED_THEN_SMUGGLED
            )
        ),
        id="chunked-not-last",
    ),
    pytest.param(
        Attack(
            message(POST, HOST, "Transfer-Encoding: xchunked", body=EMPTY_CHUNKED_THEN_SMUGGLED)
        ),
        id="xchunked",
    ),
    pytest.param(
        Attack(message(POST, HOST, CHUNKED, CHUNKED, body=EMPTY_CHUNKED_THEN_SMUGGLED)),
        id="transfer-encoding-twice",
    ),
    pytest.param(
        Attack(
            message(
                POST, HOST, "Transfer-Encoding: gzip", CHUNKED, body=EMPTY_CHUNKED_THEN_SMUGGLED
            )
        ),
        id="transfer-encoding-split-over-two-lines",
    ),
    pytest.param(
        Attack(
            message(
                POST, HOST, "Transfer-Encoding: gzip, chunked", body=b"5\r\nhello\r\n0\r\n\r\n"
            ),
            status=501,
        ),
        id="unimplemented-coding-gzip",
    ),
    pytest.param(
        Attack(
            message(
                POST, HOST, "Transfer-Encoding: identity, chunked", body=b"5\r\nhello\r\n0\r\n\r\n"
            ),
            status=501,
        ),
        id="obsolete-coding-identity",
    ),
    pytest.param(
        Attack(message(POST, HOST, "Transfer-Encoding:", body=EMPTY_CHUNKED_THEN_SMUGGLED)),
        id="transfer-encoding-empty",
    ),
    pytest.param(
        Attack(
            message(POST, HOST, "Transfer-Encoding : chunked", body=EMPTY_CHUNKED_THEN_SMUGGLED)
        ),
        id="transfer-encoding-space-before-colon",
    ),
    pytest.param(
        Attack(
            message(POST, HOST, "Transfer-Encoding:\x0bchunked", body=EMPTY_CHUNKED_THEN_SMUGGLED)
        ),
        id="transfer-encoding-vertical-tab",
    ),
    pytest.param(
        Attack(
            message(
                POST,
                HOST,
                "Transfer-Encoding:",
                " chunked",
                "Content-Length: 5",
                body=EMPTY_CHUNKED_THEN_SMUGGLED,
            )
        ),
        id="transfer-encoding-obs-fold",
    ),
    pytest.param(
        Attack(message("GET /admin/target HTTP/1.1", HOST, "X-Note: first", " continued")),
        id="obs-fold",
    ),
    pytest.param(
        Attack(message(POST, HOST, CHUNKED, body=b"-5\r\nhello\r\n0\r\n\r\n")),
        id="chunk-size-negative",
    ),
    pytest.param(
        Attack(message(POST, HOST, CHUNKED, body=b"0x5\r\nhello\r\n0\r\n\r\n")),
        id="chunk-size-0x",
    ),
    pytest.param(
        Attack(message(POST, HOST, CHUNKED, body=b"+5\r\nhello\r\n0\r\n\r\n")),
        id="chunk-size-plus",
    ),
    pytest.param(
        Attack(message(POST, HOST, CHUNKED, body=b"5 \r\nhello\r\n0\r\n\r\n")),
        id="chunk-size-trailing-space",
    ),
    pytest.param(
        Attack(message(POST, HOST, CHUNKED, body=b"z\r\nhello\r\n0\r\n\r\n")),
        id="chunk-size-not-hex",
    ),
    pytest.param(
        Attack(message(POST, HOST, CHUNKED, body=b"5\r\nhelloXX0\r\n\r\n")),
        id="chunk-data-longer-than-its-size",
    ),
    pytest.param(
        Attack(message(POST, HOST, CHUNKED, body=b"5\nhello\n0\n\n" + SMUGGLED)),
        id="chunk-lines-bare-lf",
    ),
    pytest.param(
        Attack(b"GET /admin/target HTTP/1.1\nHost: proxy.test\n\n"), id="bare-lf-line-endings"
    ),
    pytest.param(
        Attack(b"GET /admin/target HTTP/1.1\r\nHost: proxy.test\nX-A: b\r\n\r\n"),
        id="bare-lf-after-one-header",
    ),
    pytest.param(
        Attack(b"GET /admin/target HTTP/1.1\r\nHost: proxy.test\rX-A: b\r\n\r\n"), id="bare-cr"
    ),
    pytest.param(
        Attack(message("GET /admin/target HTTP/1.1", HOST, b"X-A: b\x00c")), id="nul-in-value"
    ),
    pytest.param(
        Attack(message("GET /admin/target HTTP/1.1", HOST, b"X-\x00A: b")), id="nul-in-name"
    ),
    pytest.param(Attack(message(b"GET /admin/target\x00 HTTP/1.1", HOST)), id="nul-in-target"),
    pytest.param(
        Attack(message("GET /admin/target HTTP/1.1", HOST, "X-A : b")), id="space-before-colon"
    ),
    pytest.param(Attack(message("GET /admin/target HTTP/1.1", HOST, "X-A")), id="header-no-colon"),
    pytest.param(
        Attack(message("GET /admin/target HTTP/1.1", " Host: proxy.test")),
        id="first-header-indented",
    ),
    pytest.param(
        Attack(
            message(
                "POST /admin/target HTTP/1.0",
                HOST,
                "Connection: keep-alive",
                CHUNKED,
                body=EMPTY_CHUNKED_THEN_SMUGGLED,
            )
        ),
        id="http-1.0-with-transfer-encoding",
    ),
    pytest.param(
        Attack(
            message(
                "POST /admin/target HTTP/1.0",
                HOST,
                "Content-Length: 5",
                CHUNKED,
                body=EMPTY_CHUNKED_THEN_SMUGGLED,
            )
        ),
        id="http-1.0-with-transfer-encoding-and-content-length",
    ),
    pytest.param(Attack(message("GET /admin/target http/1.1", HOST)), id="lower-case-version"),
    pytest.param(Attack(message("GET /admin/target HTTP/1.1 ", HOST)), id="space-after-version"),
]


@dataclass(frozen=True)
class Delivery:
    data: bytes
    body: bytes
    method: str = "POST"

    @property
    def chunked(self) -> bool:
        """A chunked request is the last one read on its connection (see test_trailers)."""
        return b"\ntransfer-encoding:" in self.data.partition(b"\r\n\r\n")[0].lower()


DELIVERED = [
    pytest.param(
        Delivery(message(POST, HOST, f"Content-Length: {len(SMUGGLED)}", body=SMUGGLED), SMUGGLED),
        id="content-length-body-that-looks-like-a-request",
    ),
    pytest.param(
        Delivery(
            message(
                POST,
                HOST,
                CHUNKED,
                body=b"10\r\n"
                + SMUGGLED[:16]
                + b"\r\n"
                + f"{len(SMUGGLED) - 16:x}\r\n".encode()
                + SMUGGLED[16:]
                + b"\r\n0\r\n\r\n",
            ),
            SMUGGLED,
        ),
        id="chunked-body-that-looks-like-a-request",
    ),
    pytest.param(
        Delivery(
            message(POST, HOST, "Transfer-Encoding: CHUNKED", body=b"5\r\nhello\r\n0\r\n\r\n"),
            b"hello",
        ),
        id="chunked-in-upper-case",
    ),
    pytest.param(
        Delivery(
            message(POST, HOST, "Transfer-Encoding:\tchunked ", body=b"5\r\nhello\r\n0\r\n\r\n"),
            b"hello",
        ),
        id="chunked-with-tab-and-space-around",
    ),
    pytest.param(
        Delivery(
            message(POST, HOST, CHUNKED, body=b"5;name=value\r\nhello\r\n0\r\n\r\n"), b"hello"
        ),
        id="chunk-extension",
    ),
    pytest.param(
        Delivery(
            message(POST, HOST, CHUNKED, body=b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"), b"hello"
        ),
        id="chunked-with-trailer",
    ),
    pytest.param(
        Delivery(message(POST, HOST, CHUNKED, body=b"0005\r\nhello\r\n0\r\n\r\n"), b"hello"),
        id="chunk-size-leading-zeros",
    ),
    pytest.param(
        Delivery(
            message("GET /admin/target HTTP/1.1", HOST, "Content-Length: 5", body=b"hello"),
            b"hello",
            method="GET",
        ),
        id="get-with-a-body",
    ),
    pytest.param(
        Delivery(message("GET /admin/target HTTP/1.0", HOST, "Connection: keep-alive"), b"", "GET"),
        id="http-1.0-keep-alive",
    ),
]

EITHER = [
    pytest.param(
        Delivery(message("GET  /admin/target HTTP/1.1", HOST), b"", "GET"),
        id="request-line-double-space",
    ),
    pytest.param(
        Delivery(message(POST, HOST, CHUNKED, body=b"5;\x00\r\nhello\r\n0\r\n\r\n"), b"hello"),
        id="nul-in-chunk-extension",
    ),
    pytest.param(
        Delivery(
            message(POST, HOST, CHUNKED, body=b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n"),
            b"hello",
        ),
        id="content-length-in-trailer",
    ),
]

UPGRADES = [
    pytest.param(
        Delivery(
            message(
                "GET /admin/target HTTP/1.1",
                HOST,
                "Connection: Upgrade, HTTP2-Settings",
                "Upgrade: h2c",
                "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
            ),
            b"",
            "GET",
        ),
        id="h2c",
    ),
    pytest.param(
        Delivery(
            message(
                POST,
                HOST,
                "Connection: Upgrade",
                "Upgrade: foo/2",
                "Content-Length: 5",
                body=b"hello",
            ),
            b"hello",
        ),
        id="unknown-protocol-with-a-body",
    ),
]


async def start(start_proxy: ProxyFactory, upstream: RawUpstream) -> RunningProxy:
    proxy = await start_proxy(
        {"MWM_UPSTREAM__URL": upstream.url, "MWM_BYPASS__PATH_PREFIXES": "/admin"}
    )
    await proxy.switch(enabled=True)
    return proxy


def assert_answered_then_sentinel(
    responses: list[RawResponse], upstream: RawUpstream, delivery: Delivery
) -> None:
    """Both answered and delivered, or, after a chunked request, that one alone: answered
    with ``Connection: close`` and the sentinel behind it never read."""
    if delivery.chunked:
        assert [r.status for r in responses] == [200]
        assert responses[0].header("Connection") == "close"
        assert_delivered_once(upstream, delivery, then=[])
    else:
        assert [r.status for r in responses] == [200, 200]
        assert_delivered_once(upstream, delivery, then=["/admin/sentinel"])


def assert_delivered_once(upstream: RawUpstream, expected: Delivery, *, then: list[str]) -> None:
    assert upstream.malformed == []
    arrived = [(r.method, r.target) for r in upstream.requests]
    assert arrived == [(expected.method, "/admin/target"), *(("GET", path) for path in then)]
    first = upstream.requests[0]
    assert first.body == expected.body
    for name in ("Transfer-Encoding", "Content-Length"):
        assert len(first.values(name)) <= 1


@pytest.mark.parametrize("attack", REFUSED)
async def test_ambiguous_framing_is_refused_and_never_reaches_the_upstream(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream, attack: Attack
) -> None:
    proxy = await start(start_proxy, raw_upstream)
    responses = await exchange(proxy.public_port, attack.data + SENTINEL)
    # One answer, then the proxy closed: the sentinel behind the attack was never read.
    assert [r.status for r in responses] == [attack.status]
    assert raw_upstream.connections == 0
    # The answer is ours: it names no server version and quotes none of the bytes sent.
    [refusal] = responses
    assert refusal.header("Server") == "mwm"
    assert b"proxy.test" not in refusal.body
    assert b"checkout" not in refusal.body


@pytest.mark.parametrize("delivery", DELIVERED)
async def test_well_framed_request_arrives_as_exactly_one_request(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream, delivery: Delivery
) -> None:
    proxy = await start(start_proxy, raw_upstream)
    responses = await exchange(proxy.public_port, delivery.data + SENTINEL)
    assert_answered_then_sentinel(responses, raw_upstream, delivery)


@pytest.mark.parametrize("delivery", EITHER)
async def test_parser_corners_are_refused_or_delivered_intact(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream, delivery: Delivery
) -> None:
    proxy = await start(start_proxy, raw_upstream)
    responses = await exchange(proxy.public_port, delivery.data + SENTINEL)
    if [r.status for r in responses] == [400]:
        assert raw_upstream.connections == 0
    else:
        assert_answered_then_sentinel(responses, raw_upstream, delivery)


@pytest.mark.parametrize("delivery", UPGRADES)
async def test_upgrade_to_an_unrelayed_protocol_is_answered_then_the_connection_closed(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream, delivery: Delivery
) -> None:
    proxy = await start(start_proxy, raw_upstream)
    responses = await exchange(proxy.public_port, delivery.data + SMUGGLED + SENTINEL)
    assert [r.status for r in responses] == [200]
    assert (responses[0].header("Connection") or "").lower() == "close"
    assert_delivered_once(raw_upstream, delivery, then=[])
    forwarded = {name.lower() for name, _ in raw_upstream.requests[0].headers}
    assert forwarded.isdisjoint({"upgrade", "http2-settings", "connection"})


@pytest.mark.parametrize(
    "version", ["HTTP/0.9", "HTTP/1.2", "HTTP/2.0", "HTTP/3.0", "HTTP/9.9"], ids=str
)
async def test_only_http_1_0_and_1_1_are_spoken(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream, version: str
) -> None:
    proxy = await start(start_proxy, raw_upstream)
    data = message(f"GET /admin/target {version}", HOST, "Connection: close")
    responses = await exchange(proxy.public_port, data)
    assert [r.status for r in responses] in ([400], [505])
    assert raw_upstream.connections == 0


async def test_http_0_9_request_line_is_not_forwarded(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start(start_proxy, raw_upstream)
    responses = await exchange(proxy.public_port, b"GET /admin/target\r\n\r\n")
    assert [r.status for r in responses] in ([400], [505])
    assert raw_upstream.connections == 0


async def test_chunk_size_beyond_64_bits_is_refused(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    """llhttp (the parser in use) refuses the size as an overflow.  The Python parser has
    unbounded integers and reads it as one enormous chunk, so what follows stays body bytes
    of the same request: nothing to smuggle either way, but that reading never ends, so this
    case runs with llhttp only."""
    proxy = await start(start_proxy, raw_upstream)
    size = b"1" + b"0" * 16 + b"5"  # 2**64 + 5, with 2**64 wrapping to 0 in a 64-bit parser
    data = message(POST, HOST, CHUNKED, body=size + b"\r\nhello\r\n0\r\n\r\n" + SMUGGLED)
    responses = await exchange(proxy.public_port, data + SENTINEL)
    assert [r.status for r in responses] == [400]
    assert raw_upstream.connections == 0
