"""Bypass rules: every kind of credential lets its holder through, and every near miss
leaves the request blocked."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from pydantic import SecretStr, ValidationError

from proxy.bypass import BypassPolicy, BypassRule, normalize_prefix
from proxy.cookie import CookieSigner, derive_cookie_key
from proxy.decision import RequestView
from proxy.pathnorm import normalize_path
from proxy.settings import BypassSettings

TOKEN = "correct-horse-battery-staple"
NOW = 1_800_000_000.0
SIGNER = CookieSigner(b"k" * 32, lifetime_s=3600)
COOKIE = SIGNER.issue(now=NOW)
OUTSIDE = IPv4Address("203.0.113.9")

POLICY = BypassPolicy(
    path_prefixes=("/admin", "/ops/tools"),
    token=TOKEN.encode(),
    networks=(ip_network("10.0.0.0/8"), ip_network("2001:db8::/32"), ip_network("192.0.2.7/32")),
    cookie=SIGNER,
)
NOTHING = BypassPolicy(path_prefixes=(), token=None, networks=(), cookie=None)


def view(
    path: str = "/shop",
    *,
    client: IPv4Address | IPv6Address | None = OUTSIDE,
    tokens: tuple[str, ...] = (),
    cookies: tuple[str, ...] = (),
    method: str = "GET",
) -> RequestView:
    return RequestView(
        method=method, path=path, client=client, bypass_tokens=tokens, bypass_cookies=cookies
    )


def _flip_last(value: str) -> str:
    return value[:-1] + ("A" if value[-1] != "A" else "B")


# --- Path -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/admin", BypassRule.PATH, id="prefix-itself"),
        pytest.param("/admin/", BypassRule.PATH, id="prefix-with-slash"),
        pytest.param("/admin/users/1", BypassRule.PATH, id="below-prefix"),
        pytest.param("/ops/tools", BypassRule.PATH, id="second-prefix"),
        pytest.param("/ops/tools/x", BypassRule.PATH, id="below-second-prefix"),
        pytest.param("/administrator", None, id="longer-segment"),
        pytest.param("/admin.php", None, id="extension-on-segment"),
        pytest.param("/admin;x/users", None, id="params-on-segment"),
        pytest.param("/admin%2F..", None, id="encoded-slash-is-not-a-segment-boundary"),
        pytest.param("/ADMIN", None, id="other-case"),
        pytest.param("/Admin/x", None, id="mixed-case"),
        pytest.param("/adm", None, id="shorter"),
        pytest.param("/", None, id="root"),
        pytest.param("/shop/admin", None, id="prefix-deeper-in-path"),
        pytest.param("/ops", None, id="parent-of-prefix"),
        pytest.param("/ops/toolsx", None, id="second-prefix-longer-segment"),
    ],
)
def test_path_prefix_matches_whole_segments(path: str, expected: BypassRule | None) -> None:
    assert POLICY.match(view(path), now=NOW) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("/%61dmin/x", BypassRule.PATH, id="encoded-admin-is-admin"),
        pytest.param("//admin", BypassRule.PATH, id="double-slash-admin-is-admin"),
        pytest.param("/x/../admin", BypassRule.PATH, id="traversal-into-admin"),
        pytest.param("/admin/../checkout", None, id="traversal-out-of-admin"),
        pytest.param("/admin/%2e%2e/checkout", None, id="encoded-traversal-out-of-admin"),
        pytest.param("/admin/./../checkout", None, id="dot-then-traversal-out"),
    ],
)
def test_path_rule_sees_the_normalized_path(raw: str, expected: BypassRule | None) -> None:
    assert POLICY.match(view(normalize_path(raw)), now=NOW) is expected


@pytest.mark.parametrize(
    ("configured", "stored"),
    [
        pytest.param("/admin", "/admin", id="plain"),
        pytest.param("/admin/", "/admin", id="trailing-slash-dropped"),
        pytest.param("/admin//", "/admin", id="trailing-slashes-dropped"),
        pytest.param("/%61dmin", "/admin", id="normalized-like-a-request"),
        pytest.param("/", "", id="root-matches-everything"),
    ],
)
def test_prefix_is_stored_normalized(configured: str, stored: str) -> None:
    assert normalize_prefix(configured) == stored


def test_prefix_given_with_a_trailing_slash_still_matches_the_bare_path() -> None:
    policy = BypassPolicy.from_settings(BypassSettings(path_prefixes=["/admin/"]))
    assert policy.match(view("/admin"), now=NOW) is BypassRule.PATH
    assert policy.match(view("/admin/x"), now=NOW) is BypassRule.PATH
    assert policy.match(view("/administrator"), now=NOW) is None


@pytest.mark.parametrize("path", ["/", "/shop", "/a/b/c/"])
def test_root_prefix_matches_every_path(path: str) -> None:
    policy = BypassPolicy.from_settings(BypassSettings(path_prefixes=["/"]))
    assert policy.match(view(path), now=NOW) is BypassRule.PATH


def test_no_prefixes_match_no_path() -> None:
    policy = BypassPolicy.from_settings(BypassSettings(path_prefixes=[]))
    assert policy.match(view("/admin"), now=NOW) is None


@pytest.mark.parametrize("prefix", ["/admin/", "admin", "/a/../b", "/x//y"])
def test_policy_refuses_prefixes_that_are_not_normalized(prefix: str) -> None:
    with pytest.raises(ValueError, match=r"not normalized|must start"):
        BypassPolicy(path_prefixes=(prefix,), token=None, networks=(), cookie=None)


def test_settings_prefix_that_no_request_could_match_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"path_prefixes: '/a%2Fb' is not a usable path"):
        BypassSettings(path_prefixes=["/a%2Fb"])


# --- Token -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        pytest.param((TOKEN,), BypassRule.TOKEN, id="exact-token"),
        pytest.param(("wrong",), None, id="wrong-token"),
        pytest.param((TOKEN[:-1],), None, id="token-prefix"),
        pytest.param((TOKEN[:1],), None, id="token-first-char"),
        pytest.param((TOKEN + "x",), None, id="token-with-suffix"),
        pytest.param(("x" + TOKEN,), None, id="token-with-prefix"),
        pytest.param((TOKEN.upper(),), None, id="token-other-case"),
        pytest.param((f" {TOKEN}",), None, id="token-padded"),
        pytest.param((f"{TOKEN}, {TOKEN}",), None, id="token-listed-twice-in-one-header"),
        pytest.param(("",), None, id="empty-header"),
        pytest.param((), None, id="no-header"),
        pytest.param((TOKEN, TOKEN), None, id="duplicate-headers-both-right"),
        pytest.param((TOKEN, "wrong"), None, id="duplicate-headers-first-right"),
        pytest.param(("wrong", TOKEN), None, id="duplicate-headers-second-right"),
        pytest.param(("\ud800",), None, id="unencodable-header"),
    ],
)
def test_header_token(tokens: tuple[str, ...], expected: BypassRule | None) -> None:
    assert POLICY.match(view(tokens=tokens), now=NOW) is expected


@pytest.mark.parametrize("tokens", [("",), ("anything",), ("", ""), ()])
def test_without_a_configured_token_no_header_matches(tokens: tuple[str, ...]) -> None:
    policy = BypassPolicy.from_settings(BypassSettings(path_prefixes=[], token=None))
    assert policy.token is None
    assert policy.match(view(tokens=tokens), now=NOW) is None


def test_non_ascii_token_matches_its_utf8_header() -> None:
    policy = BypassPolicy.from_settings(
        BypassSettings(path_prefixes=[], token=SecretStr("pässwört"))
    )
    assert policy.match(view(tokens=("pässwört",)), now=NOW) is BypassRule.TOKEN
    assert policy.match(view(tokens=("passwort",)), now=NOW) is None


def test_empty_token_is_refused_rather_than_silently_disabling_the_rule() -> None:
    with pytest.raises(ValueError, match="token"):
        BypassPolicy(path_prefixes=(), token=b"", networks=(), cookie=None)


# --- Client network --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        pytest.param("10.1.2.3", BypassRule.CIDR, id="ipv4-inside"),
        pytest.param("10.0.0.0", BypassRule.CIDR, id="ipv4-network-address"),
        pytest.param("10.255.255.255", BypassRule.CIDR, id="ipv4-last-address"),
        pytest.param("11.0.0.0", None, id="ipv4-just-outside"),
        pytest.param("9.255.255.255", None, id="ipv4-just-below"),
        pytest.param("192.0.2.7", BypassRule.CIDR, id="ipv4-single-host"),
        pytest.param("192.0.2.8", None, id="ipv4-next-to-single-host"),
        pytest.param("203.0.113.9", None, id="ipv4-outside"),
        pytest.param("2001:db8::1", BypassRule.CIDR, id="ipv6-inside"),
        pytest.param("2001:db9::1", None, id="ipv6-outside"),
        pytest.param("::ffff:10.0.0.1", BypassRule.CIDR, id="mapped-ipv4-inside"),
        pytest.param("::ffff:203.0.113.9", None, id="mapped-ipv4-outside"),
        pytest.param("::a00:1", None, id="ipv4-compatible-is-not-mapped"),
        pytest.param("::1", None, id="ipv6-loopback"),
    ],
)
def test_client_network(client: str, expected: BypassRule | None) -> None:
    assert POLICY.match(view(client=ip_address(client)), now=NOW) is expected


def test_unknown_client_matches_no_network() -> None:
    policy = BypassPolicy(
        path_prefixes=(), token=None, networks=(ip_network("0.0.0.0/0"),), cookie=None
    )
    assert policy.match(view(client=None), now=NOW) is None
    assert policy.match(view(client=OUTSIDE), now=NOW) is BypassRule.CIDR


def test_ipv4_client_is_not_in_an_ipv6_only_allow_list() -> None:
    policy = BypassPolicy(path_prefixes=(), token=None, networks=(ip_network("::/0"),), cookie=None)
    assert policy.match(view(client=IPv4Address("10.0.0.1")), now=NOW) is None
    assert policy.match(view(client=IPv6Address("2001:db8::1")), now=NOW) is BypassRule.CIDR


# --- Cookie ----------------------------------------------------------------------------


OTHER_KEY_COOKIE = CookieSigner(b"o" * 32, lifetime_s=3600).issue(now=NOW)
FAR_FUTURE_COOKIE = CookieSigner(b"k" * 32, lifetime_s=36000).issue(now=NOW)


@pytest.mark.parametrize(
    ("cookies", "now", "expected"),
    [
        pytest.param((COOKIE,), NOW, BypassRule.COOKIE, id="valid"),
        pytest.param((COOKIE,), NOW + 3599, BypassRule.COOKIE, id="valid-until-last-second"),
        pytest.param(("garbage", COOKIE), NOW, BypassRule.COOKIE, id="one-of-several-valid"),
        pytest.param((COOKIE,), NOW + 3600, None, id="expired"),
        pytest.param((_flip_last(COOKIE),), NOW, None, id="forged-signature"),
        pytest.param((OTHER_KEY_COOKIE,), NOW, None, id="other-key"),
        pytest.param((FAR_FUTURE_COOKIE,), NOW, None, id="far-future"),
        pytest.param((COOKIE[:-5],), NOW, None, id="truncated"),
        pytest.param((COOKIE[: COOKIE.rindex(".")],), NOW, None, id="signature-dropped"),
        pytest.param(("",), NOW, None, id="empty"),
        pytest.param(("garbage", "v1.x.y.z", "%00"), NOW, None, id="garbage"),
        pytest.param(("é" * 300,), NOW, None, id="oversized-non-ascii"),
        pytest.param((), NOW, None, id="no-cookie"),
    ],
)
def test_cookie(cookies: tuple[str, ...], now: float, expected: BypassRule | None) -> None:
    assert POLICY.match(view(cookies=cookies), now=now) is expected


def test_without_a_cookie_key_a_valid_cookie_does_not_match() -> None:
    policy = BypassPolicy(path_prefixes=(), token=None, networks=(), cookie=None)
    assert policy.match(view(cookies=(COOKIE,)), now=NOW) is None


# --- Order and settings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_view", "expected"),
    [
        pytest.param(
            view("/admin", client=IPv4Address("10.0.0.1"), tokens=(TOKEN,), cookies=(COOKIE,)),
            BypassRule.PATH,
            id="path-first",
        ),
        pytest.param(
            view(client=IPv4Address("10.0.0.1"), tokens=(TOKEN,), cookies=(COOKIE,)),
            BypassRule.CIDR,
            id="then-network",
        ),
        pytest.param(view(tokens=(TOKEN,), cookies=(COOKIE,)), BypassRule.TOKEN, id="then-token"),
        pytest.param(view(cookies=(COOKIE,)), BypassRule.COOKIE, id="then-cookie"),
        pytest.param(view(), None, id="nothing"),
    ],
)
def test_rules_are_tried_cheapest_first(request_view: RequestView, expected: BypassRule) -> None:
    assert POLICY.match(request_view, now=NOW) is expected


def test_empty_policy_matches_nothing() -> None:
    everything = view(
        "/admin", client=IPv4Address("10.0.0.1"), tokens=(TOKEN, ""), cookies=(COOKIE,)
    )
    assert NOTHING.match(everything, now=NOW) is None


def test_policy_from_settings() -> None:
    settings = BypassSettings(
        path_prefixes=["/admin/", "/ops", "/%61dmin"],
        token=SecretStr(TOKEN),
        allow_cidrs="10.0.0.0/8,2001:db8::/32",
        cookie_lifetime_s=600,
    )
    policy = BypassPolicy.from_settings(settings)
    assert policy.path_prefixes == ("/admin", "/ops")
    assert policy.token == TOKEN.encode()
    assert policy.networks == (ip_network("10.0.0.0/8"), ip_network("2001:db8::/32"))
    assert policy.cookie is not None
    assert policy.cookie.lifetime_s == 600
    # With a token alone, cookies are signed with the key derived from it.
    key = derive_cookie_key(cookie_secret=None, token=TOKEN)
    assert key is not None
    issued = CookieSigner(key, lifetime_s=600).issue(now=NOW)
    assert policy.match(view(cookies=(issued,)), now=NOW) is BypassRule.COOKIE


def test_explicit_cookie_secret_signs_cookies_even_without_a_token() -> None:
    settings = BypassSettings(path_prefixes=[], cookie_secret=SecretStr("cookie-secret"))
    policy = BypassPolicy.from_settings(settings)
    assert policy.token is None
    issued = CookieSigner(b"cookie-secret", lifetime_s=60).issue(now=NOW)
    assert policy.match(view(cookies=(issued,)), now=NOW) is BypassRule.COOKIE
    assert policy.match(view(cookies=(COOKIE,)), now=NOW) is None


def test_without_token_or_cookie_secret_cookies_are_off() -> None:
    policy = BypassPolicy.from_settings(BypassSettings())
    assert policy.cookie is None
    assert policy.token is None
    assert policy.path_prefixes == ("/admin",)


def test_policy_repr_shows_no_secret() -> None:
    policy = BypassPolicy.from_settings(BypassSettings(token=SecretStr(TOKEN)))
    assert TOKEN not in repr(policy)
