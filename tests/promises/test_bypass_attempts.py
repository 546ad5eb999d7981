"""Nobody gets through maintenance without a credential: a corpus of bypass attempts.

A proxy runs in maintenance with every bypass rule configured: the path prefix
``/admin``, the header token, signed cookies (with an explicit cookie secret) and a
client allow list (``10.0.0.0/8``, ``2001:db8::/32``), in front of a real upstream that
records every request it gets.  Each attempt is sent byte for byte over a raw socket
(no client library normalizes it first), asking for JSON.

Promises:

- Zero bypasses: every attempt in the corpus gets the 503 maintenance document, or 400
  for a path the proxy will not interpret, never a bypass cookie; the upstream sees no
  request at all.  The corpus covers path tricks in every encoding (case, dot segments
  raw, encoded, double-encoded and overlong, ``;`` parameters, ``//``, backslashes,
  encoded slashes, NUL, Unicode compatibility forms, longer segments, absolute-form and
  ``*`` targets), header tokens (near misses, prefixes, suffixes, other lengths, empty,
  repeated headers in any case, the token in the wrong place), cookies (forged, expired,
  replayed after expiry, signed with another key, tampered, repeated), client addresses
  (``X-Forwarded-For`` and friends naming an allowed network, with zero trusted hops
  and beyond the one trusted hop) and near misses of the cookie-issuing URL.
- The same proxy lets genuine credentials through (so the corpus is not vacuous), without
  ever forwarding the bypass token header, and a path that passes reaches the upstream as
  the normalized path under ``/admin``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from proxy.cookie import CookieSigner, derive_cookie_key
from tests.conftest import BYPASS_TOKEN, ProxyFactory, RunningProxy
from tests.promises.rawhttp import Header, RawResponse, exchange, request
from tests.proxy.upstream import Upstream

COOKIE_SECRET = "cookie-secret-for-tests"
COOKIE_NAME = "mwm_bypass"
LIFETIME_S = 12 * 3600
HEADER = "X-Maintenance-Bypass"
REAL_CLIENT = "198.51.100.7"
"""Outside the allow list: the address the trusted proxy in front saw and appended."""
ALLOWED = "10.1.2.3"

_NOW = time.time()
_SIGNER = CookieSigner(COOKIE_SECRET.encode(), lifetime_s=LIFETIME_S)
VALID_COOKIE = _SIGNER.issue(now=_NOW)


def _tamper(value: str, index: int) -> str:
    """``value`` with the character at ``index`` replaced by another allowed one."""
    replacement = "A" if value[index] != "A" else "B"
    return value[:index] + replacement + value[index + 1 :]


def _pushed_expiry(value: str) -> str:
    version, expires, nonce, signature = value.split(".")
    return f"{version}.{int(expires) + 86400}.{nonce}.{signature}"


@dataclass(frozen=True)
class Attempt:
    target: str | bytes = "/checkout"
    headers: tuple[Header, ...] = ()
    method: str = "GET"
    status: int = 503
    trusted_hops: int = 0


def path(target: str | bytes, *, status: int = 503) -> Attempt:
    return Attempt(target=target, status=status)


def header(*headers: Header, status: int = 503) -> Attempt:
    return Attempt(headers=headers, status=status)


def cookie(*values: str) -> Attempt:
    return Attempt(headers=tuple(("Cookie", value) for value in values))


def client(*headers: Header, trusted_hops: int) -> Attempt:
    return Attempt(headers=headers, trusted_hops=trusted_hops)


PATHS = [
    pytest.param(path("/ADMIN"), id="upper-case"),
    pytest.param(path("/Admin/users"), id="mixed-case"),
    pytest.param(path("/%41DMIN"), id="encoded-upper-case"),
    pytest.param(path("/administrator"), id="prefix-of-a-longer-segment"),
    pytest.param(path("/admin-panel"), id="prefix-with-a-dash"),
    pytest.param(path("/admin.php"), id="prefix-with-an-extension"),
    pytest.param(path("/admin%20"), id="prefix-with-encoded-space"),
    pytest.param(path("/adm"), id="shorter-than-the-prefix"),
    pytest.param(path("/shop/admin"), id="prefix-deeper-in-the-path"),
    pytest.param(path("/admin/../checkout"), id="dot-dot-out"),
    pytest.param(path("/admin/users/../../checkout"), id="dot-dot-out-twice"),
    pytest.param(path("/admin/./../checkout"), id="dot-then-dot-dot"),
    pytest.param(path("//admin/../checkout"), id="double-slash-then-dot-dot"),
    pytest.param(path("/admin/%2e%2e/checkout"), id="encoded-dot-dot"),
    pytest.param(path("/admin/%2E%2E/checkout"), id="encoded-dot-dot-upper"),
    pytest.param(path("/admin/.%2e/checkout"), id="half-encoded-dot-dot"),
    pytest.param(path("/%61dmin/../checkout"), id="encoded-prefix-then-dot-dot"),
    pytest.param(path("/admin/%252e%252e/checkout", status=400), id="double-encoded-dot-dot"),
    pytest.param(path("/admin%252f..%252fcheckout", status=400), id="double-encoded-slash"),
    pytest.param(path("/x/..%2fadmin", status=400), id="encoded-slash-dot-dot"),
    pytest.param(path("/admin%2f..%2fcheckout", status=400), id="encoded-slashes"),
    pytest.param(path("/admin/..%2Fcheckout", status=400), id="encoded-slash-upper"),
    pytest.param(path("/admin/%2e%2e%2fcheckout", status=400), id="encoded-dot-dot-slash"),
    pytest.param(path("/admin%00/../checkout", status=400), id="encoded-nul"),
    pytest.param(path("/admin/%00", status=400), id="encoded-nul-segment"),
    pytest.param(path("/admin;/../checkout"), id="semicolon-then-dot-dot"),
    pytest.param(path("/admin;jsessionid=x/../checkout"), id="path-parameter-then-dot-dot"),
    pytest.param(path("/admin;x"), id="path-parameter-on-the-prefix"),
    pytest.param(path("/admin/..;/checkout", status=400), id="dot-dot-semicolon"),
    pytest.param(path("/admin/%2e%2e;/checkout", status=400), id="encoded-dot-dot-semicolon"),
    pytest.param(path("/admin/..%3b/checkout", status=400), id="dot-dot-encoded-semicolon"),
    pytest.param(path("/admin/..%20/checkout", status=400), id="dot-dot-trailing-space"),
    pytest.param(path("/admin/.../checkout", status=400), id="three-dots"),
    pytest.param(path(b"/admin\\..\\checkout", status=400), id="backslashes"),
    pytest.param(path("/admin%5c..%5ccheckout", status=400), id="encoded-backslashes"),
    pytest.param(path("/admin/%u002e%u002e/checkout", status=400), id="iis-u-escape"),
    pytest.param(path("/admin/%%32%65%%32%65/checkout", status=400), id="nested-percent"),
    pytest.param(path("/admin/%2", status=400), id="truncated-escape"),
    pytest.param(path("/admin/%C0%AE%C0%AE/checkout", status=400), id="overlong-utf8-dots"),
    pytest.param(path("/admin%C0%AF..%C0%AFcheckout", status=400), id="overlong-utf8-slash"),
    pytest.param(path("/admin/%E0%80%AE%E0%80%AE/checkout", status=400), id="overlong-3-byte"),
    pytest.param(path("/admin/%F0%80%80%AE/checkout", status=400), id="overlong-4-byte"),
    pytest.param(path("/%C1%81dmin", status=400), id="overlong-letter"),
    pytest.param(path(b"/admin/\xc0\xae\xc0\xae/checkout", status=400), id="raw-overlong-bytes"),
    pytest.param(path("/%EF%BD%81dmin"), id="fullwidth-letter"),
    pytest.param(path(b"/\xef\xbd\x81dmin", status=400), id="raw-fullwidth-letter"),
    pytest.param(path("/%C9%91dmin"), id="latin-alpha-lookalike"),
    pytest.param(path("/admin/%EF%BC%8E%EF%BC%8E/checkout", status=400), id="fullwidth-dots"),
    pytest.param(path("/admin/%E2%80%A5/checkout", status=400), id="two-dot-leader"),
    pytest.param(path("/admin/%E2%80%A6/checkout", status=400), id="ellipsis"),
    pytest.param(path("/admin/..%EF%BC%8Fcheckout", status=400), id="fullwidth-slash"),
    pytest.param(path("/admin/..%EF%BC%BCcheckout", status=400), id="fullwidth-backslash"),
    pytest.param(path("/admin/%EF%B9%92%EF%B9%92/checkout", status=400), id="small-full-stops"),
    pytest.param(path("/admin#/../../checkout"), id="fragment-then-dot-dot"),
    pytest.param(path("/checkout?/admin"), id="prefix-in-the-query"),
    pytest.param(path("/checkout?x=/admin/"), id="prefix-in-a-query-value"),
    pytest.param(path("http://proxy.test/admin", status=400), id="absolute-form"),
    pytest.param(path("http://proxy.test/admin/../checkout", status=400), id="absolute-dot-dot"),
    pytest.param(path("*", status=400), id="asterisk"),
    pytest.param(path("admin", status=400), id="no-leading-slash"),
    pytest.param(path(b"/admin/\x00/../checkout", status=400), id="raw-nul"),
    pytest.param(path(b"/admin/\t/../checkout", status=400), id="raw-tab"),
]

TOKENS = [
    pytest.param(header((HEADER, "")), id="empty"),
    pytest.param(header((HEADER, BYPASS_TOKEN[:-1])), id="one-char-short"),
    pytest.param(header((HEADER, BYPASS_TOKEN[:8])), id="prefix"),
    pytest.param(header((HEADER, BYPASS_TOKEN + "x")), id="one-char-long"),
    pytest.param(header((HEADER, "x" + BYPASS_TOKEN)), id="char-before"),
    pytest.param(header((HEADER, BYPASS_TOKEN * 2)), id="twice-in-one-value"),
    pytest.param(header((HEADER, BYPASS_TOKEN.upper())), id="upper-case-token"),
    pytest.param(header((HEADER, _tamper(BYPASS_TOKEN, 0))), id="first-char-changed"),
    pytest.param(header((HEADER, _tamper(BYPASS_TOKEN, -1))), id="last-char-changed"),
    pytest.param(header((HEADER, BYPASS_TOKEN[:6] + " " + BYPASS_TOKEN[6:])), id="inner-space"),
    pytest.param(header((HEADER, "a" * 10_000)), id="very-long"),
    pytest.param(header((HEADER, "\uff42" + BYPASS_TOKEN[1:])), id="fullwidth-first-char"),
    pytest.param(header((HEADER, f"{BYPASS_TOKEN}, wrong")), id="list-right-first"),
    pytest.param(header((HEADER, f"wrong, {BYPASS_TOKEN}")), id="list-right-last"),
    pytest.param(header((HEADER, BYPASS_TOKEN), (HEADER, "wrong")), id="two-headers-right-first"),
    pytest.param(header((HEADER, "wrong"), (HEADER, BYPASS_TOKEN)), id="two-headers-right-last"),
    pytest.param(
        header((HEADER, BYPASS_TOKEN), (HEADER.lower(), "wrong")),
        id="two-headers-second-in-lower-case",
    ),
    pytest.param(
        header((HEADER.upper(), "wrong"), (HEADER, BYPASS_TOKEN)),
        id="two-headers-first-in-upper-case",
    ),
    pytest.param(header((HEADER, BYPASS_TOKEN), (HEADER, BYPASS_TOKEN)), id="same-token-twice"),
    pytest.param(header(("Authorization", f"Bearer {BYPASS_TOKEN}")), id="as-bearer-token"),
    pytest.param(header(("X-Maintenance-Bypas", BYPASS_TOKEN)), id="misspelt-header"),
    pytest.param(header(("X-Maintenance-Bypass-Token", BYPASS_TOKEN)), id="longer-header-name"),
    pytest.param(header(("Cookie", f"{HEADER}={BYPASS_TOKEN}")), id="as-a-cookie"),
    pytest.param(path(f"/checkout?{HEADER}={BYPASS_TOKEN}"), id="in-the-query"),
    pytest.param(path(f"/checkout?token={BYPASS_TOKEN}"), id="in-the-query-as-token"),
    pytest.param(header((HEADER, BYPASS_TOKEN + "\x00"), status=400), id="nul-appended"),
    pytest.param(header((HEADER, BYPASS_TOKEN + "\x0b"), status=400), id="vertical-tab-appended"),
]

_OTHER_KEY_SIGNER = CookieSigner(b"another-secret", lifetime_s=LIFETIME_S)
_TOKEN_KEY = derive_cookie_key(cookie_secret=None, token=BYPASS_TOKEN)
assert _TOKEN_KEY is not None
_TOKEN_KEY_SIGNER = CookieSigner(_TOKEN_KEY, lifetime_s=LIFETIME_S)

COOKIES = [
    pytest.param(cookie(f"{COOKIE_NAME}=1"), id="forged-true"),
    pytest.param(cookie(f"{COOKIE_NAME}=v1.9999999999.AAAAAAAAAAAA.{'A' * 43}"), id="forged-shape"),
    pytest.param(cookie(f"{COOKIE_NAME}={BYPASS_TOKEN}"), id="the-token-as-value"),
    pytest.param(cookie(f"{COOKIE_NAME}={COOKIE_SECRET}"), id="the-secret-as-value"),
    pytest.param(cookie(f"{COOKIE_NAME}="), id="empty"),
    pytest.param(
        cookie(f"{COOKIE_NAME}={_SIGNER.issue(now=_NOW - LIFETIME_S)}"), id="expired-just-now"
    ),
    pytest.param(
        cookie(f"{COOKIE_NAME}={_SIGNER.issue(now=_NOW - LIFETIME_S - 3600)}"),
        id="replayed-an-hour-after-expiry",
    ),
    pytest.param(
        cookie(
            f"{COOKIE_NAME}="
            + CookieSigner(COOKIE_SECRET.encode(), lifetime_s=10 * 365 * 86400).issue(now=_NOW)
        ),
        id="signed-with-this-key-for-ten-years",
    ),
    pytest.param(
        cookie(f"{COOKIE_NAME}={_OTHER_KEY_SIGNER.issue(now=_NOW)}"), id="signed-with-another-key"
    ),
    pytest.param(
        cookie(f"{COOKIE_NAME}={_TOKEN_KEY_SIGNER.issue(now=_NOW)}"),
        id="signed-with-the-token-derived-key",
    ),
    pytest.param(cookie(f"{COOKIE_NAME}={_pushed_expiry(VALID_COOKIE)}"), id="expiry-pushed"),
    pytest.param(cookie(f"{COOKIE_NAME}={_tamper(VALID_COOKIE, -1)}"), id="signature-changed"),
    pytest.param(cookie(f"{COOKIE_NAME}={_tamper(VALID_COOKIE, 16)}"), id="nonce-changed"),
    pytest.param(cookie(f"{COOKIE_NAME}={VALID_COOKIE[:-1]}"), id="signature-truncated"),
    pytest.param(cookie(f"{COOKIE_NAME}={VALID_COOKIE}A"), id="signature-extended"),
    pytest.param(cookie(f"{COOKIE_NAME}={VALID_COOKIE.replace('v1', 'v2', 1)}"), id="version"),
    pytest.param(
        cookie(f"{COOKIE_NAME}={VALID_COOKIE.rsplit('.', 1)[0]}.{'A' * 43}"), id="zero-signature"
    ),
    pytest.param(cookie(f"{COOKIE_NAME}=x; {COOKIE_NAME}=y"), id="repeated-in-one-header"),
    pytest.param(cookie(f"{COOKIE_NAME}=x", f"{COOKIE_NAME}=y"), id="repeated-in-two-headers"),
    pytest.param(cookie(f"{COOKIE_NAME.upper()}={VALID_COOKIE[:-2]}"), id="other-case-name"),
    pytest.param(
        header((HEADER, VALID_COOKIE)),
        id="cookie-value-as-header-token",
    ),
]

CLIENTS = [
    pytest.param(client(("X-Forwarded-For", ALLOWED), trusted_hops=0), id="xff-no-trusted-hops"),
    pytest.param(client(("X-Real-IP", ALLOWED), trusted_hops=0), id="x-real-ip-no-trusted-hops"),
    pytest.param(
        client(("Forwarded", f"for={ALLOWED}"), trusted_hops=0), id="forwarded-no-trusted-hops"
    ),
    pytest.param(
        client(("X-Forwarded-For", f"{ALLOWED}, {ALLOWED}"), trusted_hops=0),
        id="xff-list-no-trusted-hops",
    ),
    pytest.param(
        client(("X-Forwarded-For", f"{ALLOWED}, {REAL_CLIENT}"), trusted_hops=1),
        id="xff-entry-beyond-the-trusted-hop",
    ),
    pytest.param(
        client(("X-Forwarded-For", ALLOWED), ("X-Forwarded-For", REAL_CLIENT), trusted_hops=1),
        id="xff-line-beyond-the-trusted-hop",
    ),
    pytest.param(
        client(("X-Forwarded-For", f"{ALLOWED},{ALLOWED}, {REAL_CLIENT}"), trusted_hops=1),
        id="xff-entries-beyond-the-trusted-hop",
    ),
    pytest.param(
        client(("X-Forwarded-For", f"2001:db8::1, {REAL_CLIENT}"), trusted_hops=1),
        id="xff-ipv6-beyond-the-trusted-hop",
    ),
    pytest.param(
        client(("X-Forwarded-For", REAL_CLIENT), ("X-Real-IP", ALLOWED), trusted_hops=1),
        id="x-real-ip-beside-the-trusted-hop",
    ),
    pytest.param(
        client(("X-Forwarded-For", REAL_CLIENT), ("Forwarded", f"for={ALLOWED}"), trusted_hops=1),
        id="forwarded-beside-the-trusted-hop",
    ),
    pytest.param(
        client(("X-Forwarded-For", f"{ALLOWED}, not-an-address"), trusted_hops=1),
        id="xff-garbage-at-the-trusted-position",
    ),
    pytest.param(
        client(("X-Forwarded-For", f"{ALLOWED}, "), trusted_hops=1),
        id="xff-empty-trusted-position",
    ),
    pytest.param(client(trusted_hops=1), id="no-xff-with-a-trusted-hop"),
]

COOKIE_URL = [
    pytest.param(path(f"/_mwm/bypass/{BYPASS_TOKEN[:-1]}"), id="issuer-token-short"),
    pytest.param(path(f"/_mwm/bypass/{BYPASS_TOKEN}x"), id="issuer-token-long"),
    pytest.param(path(f"/_mwm/bypass/{BYPASS_TOKEN}/"), id="issuer-trailing-slash"),
    pytest.param(path(f"/_mwm/bypass/{BYPASS_TOKEN.upper()}"), id="issuer-token-upper"),
    pytest.param(path("/_mwm/bypass/"), id="issuer-empty-token"),
    pytest.param(path(f"/_mwm/bypass/{COOKIE_SECRET}"), id="issuer-cookie-secret"),
    pytest.param(path(f"/_mwm/bypass?{BYPASS_TOKEN}"), id="issuer-token-in-query"),
    pytest.param(Attempt(target=f"/_mwm/bypass/{BYPASS_TOKEN}", method="POST"), id="issuer-post"),
    pytest.param(Attempt(target=f"/_mwm/bypass/{BYPASS_TOKEN}", method="PUT"), id="issuer-put"),
]

StartGuarded = Callable[..., Awaitable[RunningProxy]]


@pytest.fixture
def start_guarded(start_proxy: ProxyFactory, recording_upstream: Upstream) -> StartGuarded:
    """Start a proxy in maintenance with every bypass rule configured."""

    async def start(*, trusted_hops: int = 0) -> RunningProxy:
        proxy = await start_proxy(
            {
                "MWM_UPSTREAM__URL": recording_upstream.url,
                "MWM_BYPASS__PATH_PREFIXES": "/admin",
                "MWM_BYPASS__ALLOW_CIDRS": "10.0.0.0/8,2001:db8::/32",
                "MWM_BYPASS__COOKIE_SECRET": COOKIE_SECRET,
                "MWM_BYPASS__COOKIE_LIFETIME_S": str(LIFETIME_S),
                "MWM_FORWARDED__TRUSTED_HOPS": str(trusted_hops),
            }
        )
        await proxy.switch(enabled=True, reason="Upgrading")
        return proxy

    return start


async def send(proxy: RunningProxy, attempt: Attempt) -> RawResponse:
    headers = (("Accept", "application/json"), *attempt.headers)
    [response] = await exchange(proxy.public_port, request(attempt.method, attempt.target, headers))
    return response


@pytest.mark.parametrize("attempt", PATHS + TOKENS + COOKIES + CLIENTS + COOKIE_URL)
async def test_bypass_attempt_gets_the_maintenance_answer_and_reaches_nothing(
    start_guarded: StartGuarded, recording_upstream: Upstream, attempt: Attempt
) -> None:
    proxy = await start_guarded(trusted_hops=attempt.trusted_hops)
    response = await send(proxy, attempt)
    assert response.status == attempt.status
    if attempt.status == 503:
        assert response.header("Content-Type") == "application/problem+json"
        assert response.json()["status"] == 503
    assert response.header("Set-Cookie") is None
    assert recording_upstream.requests == []


@pytest.mark.parametrize(
    ("target", "forwarded"),
    [
        pytest.param("/admin", "/admin", id="prefix"),
        pytest.param("/admin/users?page=2", "/admin/users", id="below-the-prefix"),
        pytest.param("//admin", "/admin", id="double-slash"),
        pytest.param("/%61dmin/", "/admin/", id="encoded-letter"),
        pytest.param("/./admin", "/admin", id="dot-segment"),
        pytest.param("/checkout/../admin/x", "/admin/x", id="dot-dot-into-the-prefix"),
        pytest.param("/%2e%2e/admin", "/admin", id="encoded-dot-dot-above-the-root"),
        pytest.param("/admin/users/../settings", "/admin/settings", id="dot-dot-within"),
        pytest.param("/admin/caf%c3%a9", "/admin/caf%C3%A9", id="non-ascii-segment"),
    ],
)
async def test_admin_path_passes_and_reaches_the_upstream_as_the_checked_path(
    start_guarded: StartGuarded, recording_upstream: Upstream, target: str, forwarded: str
) -> None:
    proxy = await start_guarded()
    response = await send(proxy, path(target))
    assert response.status == 200
    [arrived] = recording_upstream.requests
    assert arrived.path == forwarded
    assert arrived.path == "/admin" or arrived.path.startswith("/admin/")


@pytest.mark.parametrize(
    "attempt",
    [
        pytest.param(header((HEADER, BYPASS_TOKEN)), id="header-token"),
        pytest.param(header((HEADER.lower(), BYPASS_TOKEN)), id="header-name-in-lower-case"),
        pytest.param(header((HEADER, f" \t{BYPASS_TOKEN}\t ")), id="header-token-in-whitespace"),
        pytest.param(cookie(f"{COOKIE_NAME}={VALID_COOKIE}"), id="signed-cookie"),
        pytest.param(
            cookie(f"theme=dark; {COOKIE_NAME}={VALID_COOKIE}; lang=en"), id="among-other-cookies"
        ),
        pytest.param(
            client(("X-Forwarded-For", f"{REAL_CLIENT}, {ALLOWED}"), trusted_hops=1),
            id="allowed-client-appended-by-the-trusted-hop",
        ),
    ],
)
async def test_genuine_credentials_pass(
    start_guarded: StartGuarded,
    recording_upstream: Upstream,
    attempt: Attempt,
    request: pytest.FixtureRequest,
) -> None:
    attempt_id = request.node.callspec.id
    proxy = await start_guarded(trusted_hops=attempt.trusted_hops)
    response = await send(proxy, attempt)
    assert response.status == 200
    [arrived] = recording_upstream.requests
    assert arrived.path == "/checkout"
    # The credentials are the proxy's: never forwarded, other cookies passed as sent.
    assert HEADER not in arrived.headers
    assert COOKIE_NAME not in " ".join(arrived.headers.getall("Cookie", []))
    if "other-cookies" in attempt_id:
        assert arrived.headers.getall("Cookie") == ["theme=dark; lang=en"]
    assert response.header("Cache-Control") == "private, no-store"
