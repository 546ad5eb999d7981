"""Scoped maintenance in the decision: read-only causes stop only writes, route causes only
their routes, a whole-site cause everything, and bypass rules always win."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.snapshot import Cause, CauseKind, Maintenance, Mode, Route
from proxy.bypass import BypassPolicy, BypassRule
from proxy.decision import FORWARD, MAX_COMBINATIONS, Block, Bypass, RequestView, Scopes, decide

NOW = 1_800_000_000.0
TOKEN = "bypass-token"
POLICY = BypassPolicy(path_prefixes=("/admin",), token=TOKEN.encode(), networks=(), cookie=None)
SINCE = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

SITE = Cause(kind=CauseKind.MANUAL, reason="Database upgrade", since=SINCE)
READ_ONLY = Cause(kind=CauseKind.WINDOW, reason="Replica promotion", mode=Mode.READ_ONLY)
CHECKOUT = Cause(
    kind=CauseKind.SERVICE_DOWN,
    reason="A service this part of the site needs is unavailable",
    services=("payments",),
    routes=(Route("/checkout"),),
)
CHECKOUT_POSTS = Cause(
    kind=CauseKind.SERVICE_DOWN,
    reason="A service this part of the site needs is unavailable",
    services=("payments",),
    routes=(Route("/checkout", frozenset({"POST"})),),
)
SEARCH_READS = Cause(
    kind=CauseKind.SERVICE_DOWN,
    reason="A service this part of the site needs is unavailable",
    services=("search",),
    routes=(Route("/search/", frozenset({"GET"})),),
)
CART_WRITES = Cause(
    kind=CauseKind.SERVICE_DOWN,
    reason="Writes to this part of the site are paused because a service it needs is unavailable",
    services=("cart-db",),
    mode=Mode.READ_ONLY,
    routes=(Route("/cart"),),
)
DEEP = Cause(
    kind=CauseKind.SERVICE_DOWN,
    reason="A service this part of the site needs is unavailable",
    services=("reports",),
    routes=(Route("/api/v1/reports"),),
)
ROOT = Cause(
    kind=CauseKind.SERVICE_DOWN,
    reason="A service this part of the site needs is unavailable",
    services=("frontend",),
    routes=(Route("/", frozenset({"PUT"})),),
)


def on(*causes: Cause) -> Maintenance:
    return Maintenance(active=True, causes=causes)


def view(
    path: str = "/shop",
    method: str = "GET",
    *,
    upgrade: bool = False,
    tokens: tuple[str, ...] = (),
) -> RequestView:
    return RequestView(method=method, path=path, client=None, bypass_tokens=tokens, upgrade=upgrade)


def blocked_by(maintenance: Maintenance, request: RequestView) -> tuple[Cause, ...] | None:
    """The causes the page of ``request`` names, or None when it is not blocked."""
    decision = decide(request, maintenance, POLICY, now=NOW)
    if decision is FORWARD:
        return None
    assert isinstance(decision, Block), decision
    return decision.maintenance.causes


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_read_only_lets_safe_methods_through(method: str) -> None:
    assert blocked_by(on(READ_ONLY), view(method=method)) is None


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "PROPFIND"])
def test_read_only_blocks_writes(method: str) -> None:
    assert blocked_by(on(READ_ONLY), view(method=method)) == (READ_ONLY,)


def test_read_only_blocks_a_websocket_upgrade() -> None:
    assert blocked_by(on(READ_ONLY), view(upgrade=True)) == (READ_ONLY,)


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        pytest.param("/checkout", "GET", (CHECKOUT,), id="the-prefix-itself"),
        pytest.param("/checkout/", "GET", (CHECKOUT,), id="trailing-slash"),
        pytest.param("/checkout/pay/3", "POST", (CHECKOUT,), id="below-the-prefix"),
        pytest.param("/checkouts", "GET", None, id="a-longer-segment-is-another-route"),
        pytest.param("/check", "GET", None, id="a-shorter-segment-too"),
        pytest.param("/shop/checkout", "GET", None, id="not-a-prefix"),
        pytest.param("/", "GET", None, id="the-root"),
    ],
)
def test_a_route_blocks_segment_wise_prefixes_only(
    path: str, method: str, expected: tuple[Cause, ...] | None
) -> None:
    assert blocked_by(on(CHECKOUT), view(path, method)) == expected


@pytest.mark.parametrize(
    ("cause", "path", "method", "expected"),
    [
        pytest.param(CHECKOUT_POSTS, "/checkout/pay", "POST", True, id="listed-method"),
        pytest.param(CHECKOUT_POSTS, "/checkout/pay", "GET", False, id="other-method"),
        pytest.param(SEARCH_READS, "/search", "GET", True, id="configured-with-slash"),
        pytest.param(SEARCH_READS, "/search/q", "HEAD", True, id="get-covers-head"),
        pytest.param(SEARCH_READS, "/search", "POST", False, id="get-only-lets-post-pass"),
        pytest.param(DEEP, "/api/v1/reports/7", "GET", True, id="deep-prefix"),
        pytest.param(DEEP, "/api/v1", "GET", False, id="above-deep-prefix"),
        pytest.param(DEEP, "/api/v1/reportsx", "GET", False, id="deep-near-miss"),
        pytest.param(ROOT, "/anything/at/all", "PUT", True, id="root-route-covers-all"),
        pytest.param(ROOT, "/", "PUT", True, id="root-route-covers-root"),
        pytest.param(ROOT, "/anything", "GET", False, id="root-route-other-method"),
    ],
)
def test_routes_limited_to_methods_and_deep_prefixes(
    cause: Cause, path: str, method: str, expected: bool
) -> None:
    assert blocked_by(on(cause), view(path, method)) == ((cause,) if expected else None)


def test_read_only_route_blocks_only_writes_on_its_route() -> None:
    maintenance = on(CART_WRITES)
    assert blocked_by(maintenance, view("/cart/items", "GET")) is None
    assert blocked_by(maintenance, view("/cart/items", "POST")) == (CART_WRITES,)
    assert blocked_by(maintenance, view("/cart", "GET", upgrade=True)) == (CART_WRITES,)
    assert blocked_by(maintenance, view("/shop", "POST")) is None


def test_whole_site_beats_a_route_and_the_page_names_what_applies() -> None:
    maintenance = on(CHECKOUT, SITE)
    assert blocked_by(maintenance, view("/shop")) == (SITE,)
    decision = decide(view("/checkout"), maintenance, POLICY, now=NOW)
    assert decision == Block(maintenance)  # every cause applies: the whole verdict


def test_read_only_and_a_route_block_a_request_if_either_blocks_it() -> None:
    maintenance = on(READ_ONLY, CHECKOUT)
    assert blocked_by(maintenance, view("/shop", "GET")) is None
    assert blocked_by(maintenance, view("/shop", "POST")) == (READ_ONLY,)
    assert blocked_by(maintenance, view("/checkout", "GET")) == (CHECKOUT,)
    assert blocked_by(maintenance, view("/checkout", "POST")) == (READ_ONLY, CHECKOUT)


def test_several_routes_each_name_only_their_own_cause() -> None:
    maintenance = on(CHECKOUT, DEEP, CART_WRITES)
    assert blocked_by(maintenance, view("/api/v1/reports")) == (DEEP,)
    assert blocked_by(maintenance, view("/checkout")) == (CHECKOUT,)
    assert blocked_by(maintenance, view("/cart", "DELETE")) == (CART_WRITES,)
    assert blocked_by(maintenance, view("/api/v2/reports")) is None


@pytest.mark.parametrize(
    "maintenance",
    [on(SITE), on(READ_ONLY), on(CHECKOUT), on(CHECKOUT, READ_ONLY, SITE)],
    ids=["site", "read-only", "route", "all"],
)
@pytest.mark.parametrize(
    ("request_view", "rule"),
    [
        pytest.param(view("/admin/checkout", "POST"), BypassRule.PATH, id="path"),
        pytest.param(view("/checkout", "POST", tokens=(TOKEN,)), BypassRule.TOKEN, id="token"),
    ],
)
def test_bypass_always_wins(
    maintenance: Maintenance, request_view: RequestView, rule: BypassRule
) -> None:
    expected = Bypass(rule)
    if maintenance == on(CHECKOUT) and rule is BypassRule.PATH:
        expected = FORWARD  # /admin/checkout is not in the route: nothing to bypass
    assert decide(request_view, maintenance, POLICY, now=NOW) == expected


def test_a_plain_maintenance_answers_with_one_preallocated_block() -> None:
    maintenance = on(SITE)
    scopes = Scopes(maintenance)
    first = decide(view("/a", "POST"), maintenance, POLICY, now=NOW, scope=scopes)
    second = decide(view("/b", upgrade=True), maintenance, POLICY, now=NOW, scope=scopes)
    assert first is second
    assert isinstance(first, Block)
    assert first.causes is None
    assert first.maintenance is maintenance


def test_blocks_are_kept_per_set_of_causes_and_the_page_cache_key_names_them() -> None:
    maintenance = on(READ_ONLY, CHECKOUT, DEEP)
    scopes = Scopes(maintenance)
    first = scopes.block(view("/checkout/x", "POST"))
    again = scopes.block(view("/checkout", "PUT"))
    assert first is again
    assert first is not None
    assert first.causes == (0, 1)
    assert first.maintenance.causes == (READ_ONLY, CHECKOUT)


def test_the_kept_blocks_are_bounded() -> None:
    causes = tuple(
        Cause(kind=CauseKind.SERVICE_DOWN, reason="r", routes=(Route(f"/r{i}"),))
        for i in range(MAX_COMBINATIONS + 10)
    )
    scopes = Scopes(on(*causes))
    for i in range(len(causes)):
        block = scopes.block(view(f"/r{i}/x"))
        assert block is not None
        assert block.maintenance.causes == (causes[i],)
    assert scopes.block(view("/elsewhere")) is None


def test_without_routes_the_answers_are_preallocated_per_read_and_write() -> None:
    maintenance = on(READ_ONLY, SITE)
    scopes = Scopes(maintenance)
    assert scopes.block(view("/a", "POST")) is scopes.block(view("/b", upgrade=True))
    read = scopes.block(view("/a"))
    assert read is not None
    assert read.maintenance.causes == (SITE,)
    assert Scopes(on(READ_ONLY)).block(view("/a", "HEAD")) is None
