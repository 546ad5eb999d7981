"""The HTTP/1.1 rules the parser leaves to us: what is refused, with which status, and what
ends the connection.  (End to end, over raw sockets: ``tests/promises/test_smuggling.py``
and ``tests/promises/test_request_targets.py``.)"""

from __future__ import annotations

import pytest

from proxy.conformance import ALLOWED_METHODS, must_close, parser_refusal, refusal

HTTP_1_1, HTTP_1_0 = (1, 1), (1, 0)


@pytest.mark.parametrize(
    ("version", "headers", "status"),
    [
        pytest.param(HTTP_1_1, {"Host": "shop.example"}, None, id="plain"),
        pytest.param(HTTP_1_0, {}, None, id="http-1.0-without-host"),
        pytest.param(HTTP_1_1, {"Host": "shop.example:8443"}, None, id="host-with-port"),
        pytest.param(HTTP_1_1, {"Host": "[2001:db8::1]:80"}, None, id="ipv6-literal"),
        pytest.param(HTTP_1_1, {"Host": "xn--caf-dma.example"}, None, id="punycode"),
        pytest.param(HTTP_1_1, {"Host": ""}, None, id="empty-host"),
        pytest.param(HTTP_1_1, {"Transfer-Encoding": "chunked"}, None, id="chunked"),
        pytest.param(HTTP_1_1, {"Transfer-Encoding": " Chunked "}, None, id="chunked-any-case"),
        pytest.param((0, 9), {}, 505, id="http-0.9"),
        pytest.param((2, 0), {}, 505, id="http-2.0-text"),
        pytest.param((1, 2), {}, 505, id="http-1.2"),
        pytest.param((1, 9), {}, 505, id="http-1.9"),
        pytest.param((3, 0), {}, 505, id="http-3.0"),
        pytest.param(HTTP_1_0, {"Transfer-Encoding": "chunked"}, 400, id="http-1.0-chunked"),
        pytest.param(HTTP_1_1, {"Transfer-Encoding": "gzip, chunked"}, 501, id="gzip-chunked"),
        pytest.param(HTTP_1_1, {"Transfer-Encoding": "identity"}, 501, id="identity"),
        pytest.param(HTTP_1_1, {"Transfer-Encoding": ""}, 501, id="empty-coding"),
        pytest.param(HTTP_1_1, {"Host": "user:pw@shop.example"}, 400, id="userinfo"),
        pytest.param(HTTP_1_1, {"Host": "shop.example/x"}, 400, id="path"),
        pytest.param(HTTP_1_1, {"Host": "a.example,b.example"}, 400, id="list"),
        pytest.param(HTTP_1_1, {"Host": "shop.example:80:81"}, 400, id="two-ports"),
        pytest.param(HTTP_1_1, {"Host": "shop example"}, 400, id="space"),
    ],
)
def test_refusal(version: tuple[int, int], headers: dict[str, str], status: int | None) -> None:
    refused = refusal(version, headers)
    assert (refused.status if refused else None) == status


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        pytest.param("GET", {}, False, id="plain"),
        # A websocket that is relayed ends with its connection; one that is not (the page,
        # the upstream refusing the handshake) is a declined switch like any other.
        pytest.param("GET", {"Upgrade": "websocket"}, True, id="websocket"),
        pytest.param("POST", {"Content-Length": "5"}, False, id="body"),
        pytest.param("GET", {"Connection": "close"}, False, id="asks-to-close"),
        pytest.param("GET", {"Upgrade": "h2c"}, True, id="h2c"),
        pytest.param("POST", {"Upgrade": "foo/2"}, True, id="other-protocol"),
        pytest.param("CONNECT", {}, True, id="connect"),
    ],
)
def test_must_close(method: str, headers: dict[str, str], expected: bool) -> None:
    assert must_close(method, headers) is expected


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        pytest.param("CONNECT", "/admin", 405, id="origin-form"),
        pytest.param("CONNECT", "/", 405, id="root"),
        pytest.param("CONNECT", "/admin?x=1", 405, id="origin-form-with-query"),
        pytest.param("CONNECT", "shop.example:443", 400, id="authority-form"),
        pytest.param("CONNECT", "127.0.0.1:5", 400, id="authority-form-ip"),
        pytest.param("CONNECT", "http://shop.example/", 400, id="absolute-form"),
        pytest.param("CONNECT", "*", 400, id="asterisk"),
        pytest.param("GET", "/admin", None, id="get"),
        pytest.param("OPTIONS", "/", None, id="options"),
    ],
)
def test_connect_is_refused_whatever_its_target(
    method: str, target: str, status: int | None
) -> None:
    refused = refusal(HTTP_1_1, {"Host": "shop.example"}, method=method, target=target)
    assert (refused.status if refused else None) == status
    if status == 405:
        assert refused is not None
        assert refused.allow == ALLOWED_METHODS  # RFC 9110 section 15.5.6: a 405 names them
        assert "CONNECT" not in refused.allow.split(", ")


def test_the_version_is_refused_before_the_method() -> None:
    refused = refusal((2, 0), {}, method="CONNECT", target="/admin")
    assert refused is not None
    assert refused.status == 505


@pytest.mark.parametrize(
    ("message", "status"),
    [
        # llhttp's words for HTTP/1.2, HTTP/2.1, HTTP/3.0 (the Python parser lets them through)
        pytest.param(
            "Bad status line:\n  Invalid HTTP version:\n\n  b'GET / HTTP/1.2'",
            505,
            id="llhttp-version",
        ),
        pytest.param(
            "Bad status line:\n  Expected dot:\n\n  b'GET / HTTP/10.0'", None, id="not-a-version"
        ),
        pytest.param("Data after `Connection: close`", None, id="other-error"),
        pytest.param("Invalid header value char", None, id="header"),
    ],
)
def test_parser_refusal(message: str, status: int | None) -> None:
    refused = parser_refusal(message)
    assert (refused.status if refused else None) == status
