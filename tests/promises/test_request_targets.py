"""Request targets and Host headers never steer traffic away from the configured upstream.

An open proxy relays to whatever a request names: an absolute-form target
(``GET http://evil/ HTTP/1.1``), a ``CONNECT`` tunnel or a ``Host`` header.  This proxy
has exactly one upstream.  Each request below is sent over a raw socket with maintenance
off (everything allowed is forwarded) while a second, "evil" server listens on another
port and is named by the request; each test runs with both of aiohttp's parsers.

Promises:

- Absolute-form, authority-form and asterisk-form targets and ``CONNECT`` are refused
  (400); nothing is forwarded anywhere.
- A request with an odd but valid ``Host`` (another host or port, an IP literal, very
  long, missing in HTTP/1.0) goes to the configured upstream and nowhere else.
- A ``Host`` that is not ``host[:port]`` (userinfo, spaces, commas, slashes), missing in
  HTTP/1.1 or repeated is refused (400) before anything is forwarded (RFC 9112 section 3.2).
- The evil server never receives a connection, and bytes sent behind a refused
  ``CONNECT`` are never read as requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from tests.conftest import ProxyFactory
from tests.promises.rawhttp import exchange, request
from tests.promises.rawupstream import RawUpstream, start_raw_upstream


@dataclass(frozen=True)
class Case:
    build: Callable[[str], bytes]
    """The request, given the evil server's ``host:port``."""
    forwarded: bool
    """True: reaches the configured upstream (200); False: refused with 400."""
    target: str = "/page"
    """The target the upstream sees when forwarded (``{evil}`` is filled in)."""


def get(target: str, *headers: tuple[str, str], host: str | None = "proxy.test") -> Case:
    return Case(lambda evil: request("GET", target.format(evil=evil), headers, host=host), False)


def with_host(host: str | None, *, forwarded: bool, version: str = "HTTP/1.1") -> Case:
    def build(evil: str) -> bytes:
        lines = [f"GET /page {version}"]
        if host is not None:
            lines.append(f"Host: {host.format(evil=evil)}")
        return ("\r\n".join([*lines, "Connection: close"]) + "\r\n\r\n").encode()

    return Case(build, forwarded)


CASES = [
    pytest.param(get("http://{evil}/page"), id="absolute-form"),
    pytest.param(get("http://{evil}/page", host="{evil}"), id="absolute-form-with-matching-host"),
    pytest.param(get("https://{evil}/page"), id="absolute-form-https"),
    pytest.param(get("http://user:pw@{evil}/page"), id="absolute-form-with-userinfo"),
    pytest.param(
        Case(lambda evil: request("GET", f"//{evil}/page"), True, target="/{evil}/page"),
        id="path-that-looks-like-a-network-path-reference",
    ),
    pytest.param(get("{evil}"), id="authority-form-get"),
    pytest.param(
        Case(lambda evil: request("CONNECT", evil, host=evil), False), id="connect-to-evil"
    ),
    pytest.param(Case(lambda evil: request("OPTIONS", "*"), False), id="asterisk-form-options"),
    pytest.param(with_host("{evil}", forwarded=True), id="host-names-the-evil-server"),
    pytest.param(with_host("proxy.test:1", forwarded=True), id="host-with-another-port"),
    pytest.param(with_host("[::1]:8080", forwarded=True), id="host-ipv6-literal"),
    pytest.param(with_host("a" * 63 + ("." + "b" * 63) * 60, forwarded=True), id="host-very-long"),
    pytest.param(with_host("", forwarded=True), id="host-empty"),
    pytest.param(with_host(None, forwarded=True, version="HTTP/1.0"), id="host-missing-http-1.0"),
    pytest.param(with_host(None, forwarded=False), id="host-missing-http-1.1"),
    pytest.param(with_host("user:pw@{evil}", forwarded=False), id="host-with-userinfo"),
    pytest.param(with_host("proxy.test@{evil}", forwarded=False), id="host-with-at-sign"),
    pytest.param(with_host("{evil}/page", forwarded=False), id="host-with-path"),
    pytest.param(with_host("proxy.test, {evil}", forwarded=False), id="host-list"),
    pytest.param(with_host("proxy.test {evil}", forwarded=False), id="host-with-space"),
    pytest.param(with_host("proxy.test:80:81", forwarded=False), id="host-two-ports"),
    pytest.param(with_host("proxy.test:http", forwarded=False), id="host-named-port"),
    pytest.param(
        Case(
            lambda evil: (
                b"GET /page HTTP/1.1\r\nHost: proxy.test\r\nHost: "
                + evil.encode()
                + b"\r\nConnection: close\r\n\r\n"
            ),
            False,
        ),
        id="host-repeated",
    ),
    pytest.param(
        Case(
            lambda evil: request(
                "GET", "/page", [("X-Forwarded-Host", evil), ("Forwarded", f"host={evil}")]
            ),
            True,
        ),
        id="forwarded-host-headers-name-the-evil-server",
    ),
]


@pytest.fixture
async def evil_server() -> AsyncIterator[RawUpstream]:
    server = await start_raw_upstream()
    yield server
    await server.close()


@pytest.mark.parametrize("case", CASES)
async def test_traffic_goes_to_the_configured_upstream_or_nowhere(
    http_parser: str,
    start_proxy: ProxyFactory,
    raw_upstream: RawUpstream,
    evil_server: RawUpstream,
    case: Case,
) -> None:
    proxy = await start_proxy({"MWM_UPSTREAM__URL": raw_upstream.url})
    evil = f"127.0.0.1:{evil_server.port}"
    # A refused request is answered before anything could be forwarded, so the answer
    # suffices; after a refused CONNECT aiohttp may keep draining the "tunnel" for a while.
    responses = await exchange(proxy.public_port, case.build(evil), until_eof=False)
    if case.forwarded:
        assert [r.status for r in responses] == [200]
        target = case.target.format(evil=evil)
        assert [(r.method, r.target) for r in raw_upstream.requests] == [("GET", target)]
    else:
        assert [r.status for r in responses] == [400]
        assert raw_upstream.connections == 0
    assert evil_server.connections == 0


async def test_bytes_after_a_refused_connect_are_never_read_as_requests(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    """A client may send tunnel bytes right behind its CONNECT.  llhttp (the parser in use)
    hands them back to be parsed as requests once the tunnel is refused, so the proxy ends
    the connection instead.  (The Python parser reads them as the CONNECT's body, which is
    discarded; it then lingers up to 10 s, so this case runs with llhttp only.)"""
    proxy = await start_proxy({"MWM_UPSTREAM__URL": raw_upstream.url})
    tunnel = request("GET", "/page")  # what a tunnel user sent, looking like a request
    responses = await exchange(
        proxy.public_port, request("CONNECT", "127.0.0.1:5", close=False) + tunnel
    )
    assert [(r.status, r.header("Connection")) for r in responses] == [(400, "close")]
    assert raw_upstream.connections == 0
