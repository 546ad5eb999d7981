"""Headers some applications route by never make the upstream serve another path.

Symfony, Laminas and others have honoured ``X-Original-URL`` and ``X-Rewrite-URL`` (set by
IIS) over the request line; ``X-Original-URI`` and ``X-Forwarded-Uri`` play the same part
behind nginx and Traefik.  The bypass rules check the request line's path, so a client
asking for ``/admin/x`` (a bypass prefix) with ``X-Original-URL: /checkout`` would reach
``/checkout`` through such an application during maintenance.  Each request is sent over a
raw socket, with aiohttp's C parser and with its pure-Python one, to a strict upstream that
records the exact headers that arrive.

Promises:

- By default these headers are removed from every forwarded request (bypassed during
  maintenance, or forwarded with maintenance off), in any letter case and however many
  times they are repeated; the other headers pass in their order.
- ``MWM_FORWARDED__KEEP_ROUTING_HEADERS=true`` passes them on unchanged (for a proxy in
  front that sets them itself).
"""

from __future__ import annotations

import pytest

from tests.conftest import ProxyFactory
from tests.promises.rawhttp import exchange, request
from tests.promises.rawupstream import RawUpstream

ROUTING = [
    ("X-Original-URL", "/checkout"),
    ("x-rewrite-url", "/checkout"),
    ("X-ORIGINAL-URI", "/checkout"),
    ("X-Forwarded-Uri", "/checkout"),
    ("X-Original-URL", "/checkout?again=1"),
]
OTHERS = [("X-Before", "1"), ("X-After", "2")]


SET_BY_THE_PROXY = ("X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto")


def arrived_headers(upstream: RawUpstream) -> list[tuple[str, str]]:
    """The ``X-`` headers of the one request that arrived, less the proxy's own."""
    [arrived] = upstream.requests
    assert [name for name, _ in arrived.headers if name in SET_BY_THE_PROXY] == list(
        SET_BY_THE_PROXY
    )
    return [
        (name, value)
        for name, value in arrived.headers
        if name.lower().startswith("x-") and name not in SET_BY_THE_PROXY
    ]


@pytest.mark.parametrize(
    ("maintenance", "path"),
    [(True, "/admin/x"), (False, "/admin/x"), (False, "/page")],
    ids=["bypass", "forwarded-admin", "forwarded"],
)
async def test_routing_headers_are_not_forwarded(
    http_parser: str,
    start_proxy: ProxyFactory,
    raw_upstream: RawUpstream,
    maintenance: bool,
    path: str,
) -> None:
    proxy = await start_proxy({"MWM_UPSTREAM__URL": raw_upstream.url})
    if maintenance:
        await proxy.switch(enabled=True)
    headers = [OTHERS[0], *ROUTING, OTHERS[1]]
    responses = await exchange(proxy.public_port, request("GET", path, headers))
    assert [r.status for r in responses] == [200]
    assert [r.target for r in raw_upstream.requests] == [path]
    assert arrived_headers(raw_upstream) == OTHERS


async def test_a_setting_keeps_the_routing_headers(
    http_parser: str, start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    proxy = await start_proxy(
        {"MWM_UPSTREAM__URL": raw_upstream.url, "MWM_FORWARDED__KEEP_ROUTING_HEADERS": "true"}
    )
    await proxy.switch(enabled=True)
    responses = await exchange(proxy.public_port, request("GET", "/admin/x", ROUTING))
    assert [r.status for r in responses] == [200]
    assert arrived_headers(raw_upstream) == ROUTING
