"""The per-request decision: forward while maintenance is off, block while it is on, and
let through whoever a bypass rule recognizes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address, ip_network

import pytest

from controller.snapshot import OFF, Cause, CauseKind, Maintenance
from proxy.bypass import BypassPolicy, BypassRule
from proxy.cookie import CookieSigner
from proxy.decision import FORWARD, Block, Bypass, Decision, RequestView, decide

NOW = 1_800_000_000.0
TOKEN = "bypass-token"
SIGNER = CookieSigner(b"k" * 32, lifetime_s=3600)
COOKIE = SIGNER.issue(now=NOW)
OFFICE = IPv4Address("10.0.0.1")
STRANGER = IPv4Address("203.0.113.9")

POLICY = BypassPolicy(
    path_prefixes=("/admin",),
    token=TOKEN.encode(),
    networks=(ip_network("10.0.0.0/8"),),
    cookie=SIGNER,
)
ON = Maintenance(
    active=True,
    causes=(
        Cause(
            kind=CauseKind.MANUAL,
            reason="Database upgrade",
            since=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
            until=datetime(2026, 11, 23, 13, 0, tzinfo=UTC),
        ),
    ),
)


def view(
    path: str = "/shop",
    *,
    method: str = "GET",
    client: IPv4Address | None = STRANGER,
    tokens: tuple[str, ...] = (),
    cookies: tuple[str, ...] = (),
) -> RequestView:
    return RequestView(
        method=method, path=path, client=client, bypass_tokens=tokens, bypass_cookies=cookies
    )


EVERY_CREDENTIAL = view("/admin/x", client=OFFICE, tokens=(TOKEN,), cookies=(COOKIE,))

CASES = [
    pytest.param(OFF, view(), FORWARD, id="off-forwards"),
    pytest.param(OFF, view(method="POST"), FORWARD, id="off-forwards-writes"),
    pytest.param(OFF, EVERY_CREDENTIAL, FORWARD, id="off-forwards-even-with-credentials"),
    pytest.param(OFF, view(client=None), FORWARD, id="off-forwards-unknown-client"),
    pytest.param(ON, view(), Block(ON), id="on-blocks"),
    pytest.param(ON, view("/"), Block(ON), id="on-blocks-root"),
    pytest.param(ON, view(client=None), Block(ON), id="on-blocks-unknown-client"),
    pytest.param(ON, view("/administrator"), Block(ON), id="on-blocks-near-miss-path"),
    pytest.param(ON, view(tokens=("wrong",)), Block(ON), id="on-blocks-wrong-token"),
    pytest.param(ON, view(tokens=(TOKEN, TOKEN)), Block(ON), id="on-blocks-duplicate-token"),
    pytest.param(ON, view(cookies=(COOKIE[:-1],)), Block(ON), id="on-blocks-truncated-cookie"),
    pytest.param(ON, view("/admin"), Bypass(BypassRule.PATH), id="on-path-passes"),
    pytest.param(ON, view(client=OFFICE), Bypass(BypassRule.CIDR), id="on-network-passes"),
    pytest.param(ON, view(tokens=(TOKEN,)), Bypass(BypassRule.TOKEN), id="on-token-passes"),
    pytest.param(ON, view(cookies=(COOKIE,)), Bypass(BypassRule.COOKIE), id="on-cookie-passes"),
    pytest.param(
        ON, view(method="DELETE", tokens=(TOKEN,)), Bypass(BypassRule.TOKEN), id="on-token-write"
    ),
    pytest.param(ON, EVERY_CREDENTIAL, Bypass(BypassRule.PATH), id="on-first-rule-named"),
]


@pytest.mark.parametrize(("maintenance", "request_view", "expected"), CASES)
def test_decision(maintenance: Maintenance, request_view: RequestView, expected: Decision) -> None:
    assert decide(request_view, maintenance, POLICY, now=NOW) == expected


def test_block_carries_the_verdict_the_page_is_rendered_from() -> None:
    decision = decide(view(), ON, POLICY, now=NOW)
    assert isinstance(decision, Block)
    assert decision.maintenance is ON
    assert decision.maintenance.reason == "Database upgrade"


def test_expired_cookie_no_longer_passes() -> None:
    assert decide(view(cookies=(COOKIE,)), ON, POLICY, now=NOW + 3600) == Block(ON)


def test_forward_and_bypass_decisions_are_shared_not_allocated_per_request() -> None:
    assert decide(view(), OFF, POLICY, now=NOW) is FORWARD
    first = decide(view(tokens=(TOKEN,)), ON, POLICY, now=NOW)
    second = decide(view(tokens=(TOKEN,)), ON, POLICY, now=NOW)
    assert first is second


@dataclass(frozen=True, slots=True)
class _WritesOnly:
    """A read-only maintenance: reads go through, writes get the page."""

    def block(self, view: RequestView) -> Block | None:
        return None if view.method in ("GET", "HEAD", "OPTIONS") else Block(ON)


@pytest.mark.parametrize(
    ("request_view", "expected"),
    [
        pytest.param(view(method="GET"), FORWARD, id="read-forwarded"),
        pytest.param(view(method="POST"), Block(ON), id="write-blocked"),
        pytest.param(
            view(method="POST", tokens=(TOKEN,)), Bypass(BypassRule.TOKEN), id="write-bypassed"
        ),
    ],
)
def test_a_scope_narrows_which_requests_maintenance_applies_to(
    request_view: RequestView, expected: Decision
) -> None:
    assert decide(request_view, ON, POLICY, now=NOW, scope=_WritesOnly()) == expected
