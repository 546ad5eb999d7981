"""The HTTP/1.1 rules the parser leaves to us: what is refused, with which status, and what
ends the connection.  (End to end, over raw sockets: ``tests/promises/test_smuggling.py``
and ``tests/promises/test_request_targets.py``.)"""

from __future__ import annotations

import pytest

from proxy.conformance import must_close, refusal

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
        pytest.param("GET", {"Upgrade": "websocket"}, False, id="websocket"),
        pytest.param("GET", {"Upgrade": "WebSocket"}, False, id="websocket-any-case"),
        pytest.param("GET", {"Upgrade": "h2c"}, True, id="h2c"),
        pytest.param("POST", {"Upgrade": "foo/2"}, True, id="other-protocol"),
        pytest.param("CONNECT", {}, True, id="connect"),
    ],
)
def test_must_close(method: str, headers: dict[str, str], expected: bool) -> None:
    assert must_close(method, headers) is expected
