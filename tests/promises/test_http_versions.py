"""Only HTTP/1.0 and HTTP/1.1 are spoken, and every refusal is written in HTTP/1.1.

aiohttp's two parsers disagree on versions: the pure-Python one passes any ``HTTP/d.d`` to
the proxy, which refuses it; llhttp (the C parser) passes ``HTTP/0.9`` and a lone
``HTTP/2.0`` and refuses ``HTTP/1.2`` or ``HTTP/3.0`` itself, as a malformed request line.
aiohttp writes the status line in the version of the request it answers, which for a head
its parser refused is a placeholder in HTTP/1.0.  Every request is sent over a raw socket,
with both parsers.

Promises:

- A well-formed version other than 1.0 and 1.1 (``HTTP/1.2``, ``HTTP/1.9``, ``HTTP/2.0``,
  ``HTTP/3.0``, ``HTTP/0.9``) gets 505 HTTP Version Not Supported, the same answer with
  either parser, and the connection closed; nothing reaches the upstream.
- A malformed version (``HTTP/10.0``, ``HTTP/1.10``, lower case) gets 400.
- Every refusal, the proxy's own (505, 501, 400, 405) and the answer to a head the parser
  refused (400, 414, 431), has the status line ``HTTP/1.1 <status> <phrase>``, whatever
  the request's version, with ``Connection: close``.
"""

from __future__ import annotations

import pytest

from tests.conftest import ProxyFactory, RunningProxy
from tests.promises.rawhttp import exchange
from tests.promises.rawupstream import RawUpstream

HOST = "Host: proxy.test"


def message(*lines: str, body: bytes = b"") -> bytes:
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


async def start(start_proxy: ProxyFactory, upstream: RawUpstream) -> RunningProxy:
    proxy = await start_proxy({"MWM_UPSTREAM__URL": upstream.url})
    await proxy.switch(enabled=True)
    return proxy


@pytest.mark.parametrize(
    "version", ["HTTP/1.2", "HTTP/1.9", "HTTP/2.0", "HTTP/2.1", "HTTP/3.0", "HTTP/0.9"], ids=str
)
async def test_an_unsupported_version_gets_505_in_http_1_1(
    http_parser: str,
    start_proxy: ProxyFactory,
    raw_upstream: RawUpstream,
    version: str,
) -> None:
    proxy = await start(start_proxy, raw_upstream)
    data = message(f"GET /admin/target {version}", HOST, "Connection: close")
    [answer] = await exchange(proxy.public_port, data)
    assert answer.status_line == "HTTP/1.1 505 HTTP Version Not Supported"
    assert answer.values("Connection") == ["close"]
    assert answer.header("Server") == "mwm"
    assert answer.body == b"HTTP Version Not Supported: only HTTP/1.0 and HTTP/1.1 are supported\n"
    assert raw_upstream.connections == 0


@pytest.mark.parametrize("version", ["HTTP/10.0", "HTTP/1.10", "HTTP/2", "http/1.1"], ids=str)
async def test_a_malformed_version_gets_400_in_http_1_1(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream, version: str
) -> None:
    proxy = await start(start_proxy, raw_upstream)
    data = message(f"GET /admin/target {version}", HOST, "Connection: close")
    [answer] = await exchange(proxy.public_port, data)
    assert answer.status_line == "HTTP/1.1 400 Bad Request"
    assert answer.values("Connection") == ["close"]
    assert raw_upstream.connections == 0


REFUSED = [
    pytest.param(message("GET /admin/target HTTP/1.1", HOST, "X-A : b"), 400, id="malformed-head"),
    pytest.param(message("GET /admin/target HTTP/1.0", "X-A : b"), 400, id="malformed-http-1.0"),
    pytest.param(message("GET /" + "a" * 9000 + " HTTP/1.1", HOST), 414, id="url-too-long"),
    pytest.param(
        message("GET /admin/target HTTP/1.1", HOST, "X-A: " + "b" * 17000),
        431,
        id="header-too-long",
    ),
    pytest.param(
        message(
            "POST /admin/target HTTP/1.0",
            HOST,
            "Transfer-Encoding: chunked",
            body=b"0\r\n\r\n",
        ),
        400,
        id="transfer-encoding-in-http-1.0",
    ),
    pytest.param(
        message(
            "POST /admin/target HTTP/1.1",
            HOST,
            "Transfer-Encoding: gzip, chunked",
            body=b"0\r\n\r\n",
        ),
        501,
        id="unimplemented-coding",
    ),
    pytest.param(message("GET /admin/target HTTP/1.0", "Host: a@b"), 400, id="bad-host-http-1.0"),
    pytest.param(message("CONNECT /admin HTTP/1.0", HOST), 405, id="connect-http-1.0"),
    pytest.param(message("GET /admin/target HTTP/2.0", HOST), 505, id="http-2.0"),
]


@pytest.mark.parametrize(("data", "status"), REFUSED)
async def test_every_refusal_is_written_in_http_1_1(
    http_parser: str,
    start_proxy: ProxyFactory,
    raw_upstream: RawUpstream,
    data: bytes,
    status: int,
) -> None:
    proxy = await start(start_proxy, raw_upstream)
    [answer] = await exchange(proxy.public_port, data, until_eof=False)
    assert answer.status == status
    assert answer.status_line.startswith("HTTP/1.1 ")
    assert answer.values("Connection") == ["close"]
    assert answer.header("Server") == "mwm"
    assert raw_upstream.connections == 0
