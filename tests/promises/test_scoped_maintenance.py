"""Promise: scoped maintenance never lets a request through that a whole-site one would block.

Random verdicts (whole-site, read-only and route causes, routes limited to methods, prefixes
one to three segments deep, some with a trailing slash) and random requests (paths near the
prefixes, every kind of method, websocket upgrades) against the compiled decision:

- with a whole-site full cause, every request without a bypass rule gets the page;
- adding causes never lets a blocked request through;
- the causes a block names are exactly those a plain reading of the rules says apply
  (segment-wise prefix, method, mode), so the page names what stops this request;
- nothing passes as a bypass without a rule that matches.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.snapshot import SAFE_METHODS, Cause, CauseKind, Maintenance, Mode, Route
from proxy.bypass import BypassPolicy
from proxy.decision import FORWARD, Block, Bypass, RequestView, decide

NO_RULES = BypassPolicy(path_prefixes=(), token=None, networks=(), cookie=None)
ADMIN = BypassPolicy(path_prefixes=("/admin",), token=None, networks=(), cookie=None)
SEGMENTS = st.sampled_from(["checkout", "checkouts", "cart", "api", "v1", "admin", "x"])
METHODS = st.sampled_from(["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH", "FOO"])

prefixes = st.builds(
    lambda parts, slash: "/" + "/".join(parts) + ("/" if slash else ""),
    st.lists(SEGMENTS, min_size=0, max_size=3),
    st.booleans(),
)
routes = st.builds(Route, prefixes, st.frozensets(METHODS, max_size=2))
causes = st.builds(
    lambda routes, mode: Cause(kind=CauseKind.SERVICE_DOWN, reason="r", mode=mode, routes=routes),
    st.lists(routes, max_size=2).map(tuple),
    st.sampled_from(list(Mode)),
)
requests = st.builds(
    lambda parts, slash, method, upgrade: RequestView(
        method=method,
        path="/" + "/".join(parts) + ("/" if slash and parts else ""),
        client=None,
        upgrade=upgrade,
    ),
    st.lists(SEGMENTS, max_size=4),
    st.booleans(),
    METHODS,
    st.booleans(),
)
WHOLE_SITE = Cause(kind=CauseKind.MANUAL, reason="Upgrade")


def applies(cause: Cause, view: RequestView) -> bool:
    """The rules as the README states them, written plainly."""
    write = view.upgrade or view.method not in SAFE_METHODS
    if cause.mode is Mode.READ_ONLY and not write:
        return False
    if not cause.routes:
        return True
    for route in cause.routes:
        prefix = route.path_prefix.rstrip("/")
        covered = prefix == "" or view.path == prefix or view.path.startswith(prefix + "/")
        methods = route.methods | ({"HEAD"} if "GET" in route.methods else set())
        if covered and (not route.methods or view.method in methods):
            return True
    return False


@settings(max_examples=400, deadline=None)
@given(st.lists(causes, max_size=4), requests, st.integers(min_value=0, max_value=4))
def test_a_whole_site_cause_blocks_everything_whatever_else_is_on(
    others: list[Cause], view: RequestView, at: int
) -> None:
    listed = [*others]
    listed.insert(min(at, len(listed)), WHOLE_SITE)
    decision = decide(view, Maintenance(active=True, causes=tuple(listed)), NO_RULES, now=0.0)

    assert isinstance(decision, Block)
    assert WHOLE_SITE in decision.maintenance.causes


@settings(max_examples=400, deadline=None)
@given(st.lists(causes, min_size=1, max_size=5), causes, requests)
def test_a_block_names_exactly_the_causes_that_apply_and_more_causes_never_unblock(
    listed: list[Cause], extra: Cause, view: RequestView
) -> None:
    maintenance = Maintenance(active=True, causes=tuple(listed))
    decision = decide(view, maintenance, NO_RULES, now=0.0)
    expected = tuple(c for c in listed if applies(c, view))

    if expected:
        assert isinstance(decision, Block)
        assert decision.maintenance.causes == expected
        more = Maintenance(active=True, causes=(*listed, extra))
        assert isinstance(decide(view, more, NO_RULES, now=0.0), Block)
    else:
        assert decision is FORWARD


@settings(max_examples=200, deadline=None)
@given(st.lists(causes, min_size=1, max_size=4), requests)
def test_nothing_passes_as_a_bypass_without_a_matching_rule(
    listed: list[Cause], view: RequestView
) -> None:
    decision = decide(view, Maintenance(active=True, causes=tuple(listed)), ADMIN, now=0.0)
    admin = view.path == "/admin" or view.path.startswith("/admin/")

    assert isinstance(decision, Bypass) == (admin and any(applies(c, view) for c in listed))
