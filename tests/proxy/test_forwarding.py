"""Forwarding through a real proxy app to a real upstream: what each side sees."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from yarl import URL

from proxy.hopbyhop import hop_by_hop_and, strip_hop_by_hop
from tests.proxy.conftest import ForwardingProxy, MakeForwardingProxy
from tests.proxy.upstream import GZIP_TEXT, Upstream, free_port


async def _client(
    aiohttp_client: AiohttpClient, proxy: ForwardingProxy, **kwargs: Any
) -> TestClient[Any, Any]:
    return await aiohttp_client(proxy.server, auto_decompress=False, **kwargs)


async def _echo(response: aiohttp.ClientResponse) -> dict[str, Any]:
    assert response.status == 200, await response.text()
    data: dict[str, Any] = await response.json()
    return data


def _header_values(echo: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in echo["headers"] if key.lower() == name.lower()]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_method_path_raw_query_and_body_reach_upstream_unchanged(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, method: str
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)
    body = b"" if method in ("GET", "OPTIONS") else b"payload \x00\xff bytes"

    # encoded=True: the test client must not normalize the query (%2F -> /) either.
    target = URL("/some/p%20ath/x?a=1&a=2&b=%2F&c=%20", encoded=True)
    async with client.request(method, target, data=body or None) as response:
        echo = await _echo(response)

    assert echo["method"] == method
    assert echo["path"] == "/some/p%20ath/x"
    assert echo["query"] == "a=1&a=2&b=%2F&c=%20"
    assert echo["body"].encode("latin-1") == body


async def test_upstream_base_path_is_prefixed(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    proxy = await make_forwarding_proxy(upstream_url=f"{upstream.url}/base/")
    client = await _client(aiohttp_client, proxy)

    async with client.get("/x/y?q=1") as response:
        echo = await _echo(response)

    assert (echo["path"], echo["query"]) == ("/base/x/y", "q=1")


@pytest.mark.parametrize("client_authorization", [None, "Bearer the-users-own"])
async def test_credentials_in_the_upstream_url_are_sent_as_basic_auth_in_place_of_the_clients(
    make_forwarding_proxy: MakeForwardingProxy,
    aiohttp_client: AiohttpClient,
    upstream: Upstream,
    client_authorization: str | None,
) -> None:
    with_credentials = upstream.url.replace("http://", "http://app%20user:s%3Acret@")
    proxy = await make_forwarding_proxy(upstream_url=with_credentials)
    client = await _client(aiohttp_client, proxy)
    headers = {"Authorization": client_authorization} if client_authorization else {}

    async with client.get("/private", headers=headers) as response:
        echo = await _echo(response)

    # base64 of "app user:s:cret": the URL's percent-encoding undone, as a browser would.
    assert _header_values(echo, "Authorization") == ["Basic YXBwIHVzZXI6czpjcmV0"]


async def test_repeated_request_headers_keep_their_order(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    headers = [("X-Repeated", "one"), ("X-Other", "x"), ("X-Repeated", "two")]
    async with client.get("/echo", headers=headers) as response:
        echo = await _echo(response)

    assert _header_values(echo, "X-Repeated") == ["one", "two"]
    assert _header_values(echo, "X-Other") == ["x"]


async def test_client_host_header_is_kept(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.get("/echo", headers={"Host": "shop.example.com"}) as response:
        echo = await _echo(response)

    assert _header_values(echo, "Host") == ["shop.example.com"]
    assert _header_values(echo, "X-Forwarded-Host") == ["shop.example.com"]


async def test_no_headers_are_added_that_the_client_did_not_send(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    skipped = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
    client = await _client(aiohttp_client, proxy, skip_auto_headers=skipped)

    async with client.post("/echo", data=b"raw") as response:
        echo = await _echo(response)

    sent = {name.lower() for name, _ in echo["headers"]}
    assert not sent & {name.lower() for name in skipped}
    assert echo["body"] == "raw"


async def test_expect_100_continue_is_answered_by_the_proxy_not_forwarded(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.post("/echo", data=b"after continue", expect100=True) as response:
        echo = await _echo(response)

    assert echo["body"] == "after continue"
    assert _header_values(echo, "Expect") == []


async def test_repeated_response_headers_and_both_set_cookies_reach_the_client(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.get("/cookies") as response:
        cookies = response.headers.getall("Set-Cookie")
    async with client.get("/response-headers") as response:
        multi = response.headers.getall("X-Multi")

    assert cookies == ["session=abc123; Path=/; HttpOnly", "theme=dark; Path=/; Max-Age=3600"]
    assert multi == ["one", "two"]


@pytest.mark.parametrize(
    ("status", "reason", "body"),
    [
        (201, "Made It", b"status 201"),
        (204, "Nothing Here", b""),
        (304, "Still Fresh", b""),
        (404, "Gone Fishing", b"status 404"),
        (500, "Upstream Broke", b"status 500"),
    ],
)
async def test_status_reason_and_body_are_relayed(
    make_forwarding_proxy: MakeForwardingProxy,
    aiohttp_client: AiohttpClient,
    status: int,
    reason: str,
    body: bytes,
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.get(f"/status/{status}", params={"reason": reason}) as response:
        assert (response.status, response.reason) == (status, reason)
        assert await response.read() == body
    assert proxy.errors == []


async def test_redirects_are_relayed_not_followed(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.get(
        "/status/302", params={"location": "/elsewhere"}, allow_redirects=False
    ) as response:
        assert response.status == 302
        assert response.headers["Location"] == "/elsewhere"

    assert [r.path for r in upstream.requests] == ["/status/302"]


async def test_head_keeps_the_upstream_content_length(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.head("/download", params={"size": "123456"}) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == "123456"
        assert await response.read() == b""


async def test_a_cookie_set_for_one_user_never_reaches_another(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    # By name: a cookie jar would refuse cookies from an IP address and hide the bug.
    proxy = await make_forwarding_proxy(upstream_url=f"http://localhost:{upstream.port}")
    user_a = await _client(aiohttp_client, proxy)
    user_b = await _client(aiohttp_client, proxy, cookie_jar=aiohttp.DummyCookieJar())

    async with user_a.get("/cookies") as response:
        assert len(response.headers.getall("Set-Cookie")) == 2
    async with user_b.get("/echo") as response:
        echo = await _echo(response)

    assert _header_values(echo, "Cookie") == []
    assert "Cookie" not in upstream.requests[-1].headers


async def test_compressed_bodies_pass_byte_for_byte(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.get("/gzip", headers={"Accept-Encoding": "gzip"}) as response:
        body = await response.read()
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Content-Length"] == str(len(body))

    assert body == gzip.compress(GZIP_TEXT, mtime=0)


async def test_hop_by_hop_request_headers_are_dropped(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    headers = {
        "Connection": "keep-alive, X-Foo",
        "X-Foo": "connection-specific",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic c2VjcmV0OnNlY3JldA==",
        "Proxy-Connection": "keep-alive",
        "X-Kept": "yes",
    }
    async with client.get("/echo", headers=headers) as response:
        echo = await _echo(response)

    sent = {name.lower() for name, _ in echo["headers"]}
    dropped = {"connection", "x-foo", "keep-alive", "te", "proxy-authorization", "proxy-connection"}
    assert not sent & dropped
    assert _header_values(echo, "X-Kept") == ["yes"]


async def test_hop_by_hop_response_headers_are_dropped(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.get("/response-headers") as response:
        headers = response.headers
        assert await response.text() == "headers"

    assert "X-Upstream-Secret" not in headers
    assert "Keep-Alive" not in headers
    assert "Proxy-Authenticate" not in headers
    assert "X-Upstream-Secret" not in headers.get("Connection", "")
    assert headers["Cache-Control"] == "public, max-age=600"


async def test_forwarded_headers_describe_the_peer_and_ignore_spoofing_without_trusted_hops(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy(trusted_hops=0)
    client = await _client(aiohttp_client, proxy)

    spoofed = {
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "Forwarded": "for=6.6.6.6",
        "X-Real-IP": "6.6.6.6",
    }
    async with client.get("/echo", headers=spoofed) as response:
        echo = await _echo(response)

    assert _header_values(echo, "X-Forwarded-For") == ["127.0.0.1"]
    assert _header_values(echo, "X-Forwarded-Proto") == ["http"]
    assert _header_values(echo, "X-Forwarded-Host") == [f"127.0.0.1:{proxy.server.port}"]
    assert _header_values(echo, "Forwarded") == []
    assert _header_values(echo, "X-Real-IP") == []


async def test_forwarded_headers_keep_the_believed_part_with_one_trusted_hop(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy(trusted_hops=1)
    client = await _client(aiohttp_client, proxy)

    headers = {
        "X-Forwarded-For": "6.6.6.6, 10.0.0.1",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "shop.example.com",
    }
    async with client.get("/echo", headers=headers) as response:
        echo = await _echo(response)

    assert _header_values(echo, "X-Forwarded-For") == ["10.0.0.1, 127.0.0.1"]
    assert _header_values(echo, "X-Forwarded-Proto") == ["https"]
    assert _header_values(echo, "X-Forwarded-Host") == ["shop.example.com"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/response-headers", {}),  # small body, answered in one write
        ("/download", {"size": str(300 * 1024)}),  # streamed
    ],
    ids=["buffered", "streamed"],
)
async def test_private_responses_are_kept_out_of_shared_caches(
    make_forwarding_proxy: MakeForwardingProxy,
    aiohttp_client: AiohttpClient,
    path: str,
    params: dict[str, str],
) -> None:
    proxy = await make_forwarding_proxy(private=True)
    client = await _client(aiohttp_client, proxy)

    async with client.get(path, params=params) as response:
        assert response.status == 200
        await response.read()

    assert response.headers["Cache-Control"] == "private, no-store"
    assert "CDN-Cache-Control" not in response.headers
    assert "Cookie" in response.headers.getall("Vary")


async def test_refused_connection_gives_502(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy(upstream_url=f"http://127.0.0.1:{free_port()}")
    client = await _client(aiohttp_client, proxy)

    async with client.get("/anything") as response:
        assert response.status == 502
        assert "refused" in await response.text()

    assert proxy.errors == [(502, "upstream refused the connection")]


async def test_connection_reset_before_the_head_gives_502_after_one_resend_if_safe(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.get("/reset") as response:
        assert response.status == 502
    # An idempotent request without a body is sent once more on a new connection...
    assert [r.path for r in upstream.requests] == ["/reset", "/reset"]
    assert len(proxy.errors) == 1
    status, reason = proxy.errors[0]
    assert status == 502
    assert "upstream" in reason
    # (A request with a body is never resent: see the pooled-connection test below.)


class OneRequestPerConnection:
    """A raw upstream that answers the first request on each connection (keep-alive) and
    closes the connection, unanswered, when a second one arrives on it: the race of an
    idle pooled connection closed by the upstream just as the proxy reuses it."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for answered in (True, False):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.lower().split(b"\r\n")
                        if line.startswith(b"content-length:")
                    ),
                    0,
                )
                self.received.append(head.split(b" ", 2)[0] + b" " + head.split(b" ", 2)[1])
                await reader.readexactly(length)
                if answered:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_a_pooled_connection_closed_by_the_upstream_is_transparent_for_safe_requests(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    upstream = OneRequestPerConnection()
    proxy = await make_forwarding_proxy(upstream_url=await upstream.start(), pool_size=1)
    client = await _client(aiohttp_client, proxy)
    try:
        for path in ("/a", "/b", "/c"):
            async with client.get(path) as response:
                assert response.status == 200
                assert await response.read() == b"ok"
        assert proxy.errors == []
        # /b and /c were each sent on the reused connection, lost, and sent again.
        assert upstream.received == [b"GET /a", b"GET /b", b"GET /b", b"GET /c", b"GET /c"]

        async with client.post("/order", data=b"x=1") as response:
            assert response.status == 502  # never resent
        assert upstream.received[-1] == b"POST /order"
        assert upstream.received.count(b"POST /order") == 1
    finally:
        await upstream.close()


async def test_silent_upstream_gives_504_after_the_read_timeout(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    proxy = await make_forwarding_proxy(read_timeout_s=0.2)
    client = await _client(aiohttp_client, proxy)

    async with client.get("/slow") as response:
        assert response.status == 504
        assert "did not respond within 0.2 s" in await response.text()

    assert upstream.slow_arrived.is_set()
    assert proxy.errors == [(504, "upstream did not respond within 0.2 s")]


async def test_upstream_stalling_inside_a_streamed_body_breaks_the_client_response(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy(read_timeout_s=0.2)
    client = await _client(aiohttp_client, proxy)

    async with client.get("/slow", params={"head_bytes": str(256 * 1024)}) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()

    assert proxy.errors == []


async def test_upstream_dying_inside_a_small_body_gives_502(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.get("/die-mid-body", params={"size": "1000", "sent": "100"}) as response:
        assert response.status == 502

    assert proxy.errors == [(502, "upstream sent an incomplete response body")]


async def test_upstream_dying_inside_a_streamed_body_breaks_the_client_response(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)
    size, sent = 1024 * 1024, 256 * 1024

    async with client.get(
        "/die-mid-body", params={"size": str(size), "sent": str(sent)}
    ) as response:
        assert response.status == 200
        assert response.content_length == size
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()

    assert proxy.errors == []


async def test_the_pool_keeps_working_after_failures(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient
) -> None:
    proxy = await make_forwarding_proxy()
    client = await _client(aiohttp_client, proxy)

    async with client.get("/reset") as response:
        assert response.status == 502
    async with client.get(
        "/die-mid-body", params={"size": "1000000", "sent": "100000"}
    ) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    for _ in range(3):
        async with client.get("/echo") as response:
            assert response.status == 200


@pytest.mark.parametrize(
    ("headers", "kept"),
    [
        pytest.param(
            [("A", "1"), ("Connection", "keep-alive"), ("B", "2"), ("A", "3")],
            [("A", "1"), ("B", "2"), ("A", "3")],
            id="order-and-repeats-kept",
        ),
        pytest.param(
            [("connection", "X-One, x-TWO"), ("x-one", "a"), ("X-Two", "b"), ("X-Three", "c")],
            [("X-Three", "c")],
            id="named-headers-any-case",
        ),
        pytest.param(
            [("Connection", "x-one"), ("Connection", "X-Two"), ("X-One", "a"), ("X-Two", "b")],
            [],
            id="several-connection-headers",
        ),
        pytest.param(
            [(name, "v") for name in ("TE", "Trailer", "Transfer-Encoding", "Upgrade")]
            + [(name, "v") for name in ("Keep-Alive", "Proxy-Connection")]
            + [(name, "v") for name in ("Proxy-Authenticate", "Proxy-Authorization")],
            [],
            id="always-hop-by-hop",
        ),
        pytest.param(
            [("Connection", "close, , Upgrade"), ("Close", "kept"), ("Host", "h")],
            [("Close", "kept"), ("Host", "h")],
            id="options-that-are-not-headers",
        ),
    ],
)
def test_strip_hop_by_hop(headers: list[tuple[str, str]], kept: list[tuple[str, str]]) -> None:
    assert strip_hop_by_hop(headers) == kept


def test_strip_hop_by_hop_with_extra_names() -> None:
    drop = hop_by_hop_and("X-Forwarded-For")
    headers = [("x-forwarded-for", "6.6.6.6"), ("TE", "trailers"), ("Accept", "*/*")]

    assert strip_hop_by_hop(headers, drop=drop) == [("Accept", "*/*")]


async def test_a_pool_size_of_zero_sets_no_limit_on_concurrent_upstream_requests(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    proxy = await make_forwarding_proxy(pool_size=0)
    client = await _client(aiohttp_client, proxy)
    parked = [asyncio.create_task(client.get("/slow")) for _ in range(3)]

    async def all_parked() -> None:
        while sum(r.path == "/slow" for r in upstream.requests) < 3:
            upstream.slow_arrived.clear()
            await upstream.slow_arrived.wait()

    await asyncio.wait_for(all_parked(), 5)  # all three reached the app at once
    upstream.slow_release.set()
    for response in await asyncio.gather(*parked):
        assert response.status == 200
        response.release()


async def test_no_free_upstream_connection_within_the_pool_timeout_gives_503(
    make_forwarding_proxy: MakeForwardingProxy, aiohttp_client: AiohttpClient, upstream: Upstream
) -> None:
    proxy = await make_forwarding_proxy(pool_size=1, pool_timeout_s=0.3)
    client = await _client(aiohttp_client, proxy)
    parked = asyncio.create_task(client.get("/slow"))  # holds the one connection
    await asyncio.wait_for(upstream.slow_arrived.wait(), 5)

    async with client.get("/echo") as response:  # no connection comes free in time
        assert response.status == 503
    assert proxy.errors == [
        (503, "all 1 connections to the upstream stayed busy for 0.3 s"),
    ]
    assert [r.path for r in upstream.requests] == ["/slow"]  # it never reached the app

    upstream.slow_release.set()
    async with await parked as response:
        assert response.status == 200
    async with client.get("/echo") as response:  # the connection is free again
        assert response.status == 200
    assert [r.path for r in upstream.requests] == ["/slow", "/echo"]
