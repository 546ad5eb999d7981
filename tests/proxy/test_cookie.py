"""Signed bypass cookies: only an unexpired value signed with our key passes, and nothing
a client sends can make verification raise."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from http.cookies import CookieError, SimpleCookie

import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from proxy.cookie import (
    MAX_COOKIE_CHARS,
    CookieSigner,
    cookie_values,
    derive_cookie_key,
    without_cookie,
)
from tests.conftest import BYPASS_TOKEN, ProxyFactory, RunningProxy, echo_app
from tests.promises.rawhttp import Header, exchange, request

KEY = b"k" * 32
LIFETIME_S = 3600
NOW = 1_800_000_000.0
SIGNER = CookieSigner(KEY, lifetime_s=LIFETIME_S)
VALID = SIGNER.issue(now=NOW)


def test_issued_value_verifies_until_it_expires() -> None:
    assert SIGNER.verify(VALID, now=NOW)
    assert SIGNER.verify(VALID, now=NOW + LIFETIME_S - 1)
    assert not SIGNER.verify(VALID, now=NOW + LIFETIME_S)
    assert not SIGNER.verify(VALID, now=NOW + LIFETIME_S + 1)


def test_issued_value_has_the_documented_shape() -> None:
    version, expires, nonce, signature = VALID.split(".")
    assert version == "v1"
    assert int(expires) == NOW + LIFETIME_S
    assert re.fullmatch(r"[A-Za-z0-9_-]{16,}", nonce)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", signature)  # unpadded base64url of 32 bytes
    assert len(VALID) <= MAX_COOKIE_CHARS


def test_issued_value_survives_a_cookie_header_unquoted() -> None:
    """The listener reads cookies with SimpleCookie; a quoted value would not verify."""
    jar: SimpleCookie = SimpleCookie()
    jar.load(f"other=1; mwm_bypass={VALID}")
    assert jar["mwm_bypass"].value == VALID
    assert jar["mwm_bypass"].OutputString() == f"mwm_bypass={VALID}"


def test_every_issued_value_is_different() -> None:
    values = {SIGNER.issue(now=NOW) for _ in range(50)}
    assert len(values) == 50
    assert all(SIGNER.verify(value, now=NOW) for value in values)


def test_value_from_another_key_is_refused() -> None:
    other = CookieSigner(b"o" * 32, lifetime_s=LIFETIME_S).issue(now=NOW)
    assert not SIGNER.verify(other, now=NOW)


def test_value_from_a_longer_lived_signer_is_refused_as_far_future() -> None:
    """Same key, but an expiry beyond what this signer would ever issue."""
    longer = CookieSigner(KEY, lifetime_s=LIFETIME_S * 10).issue(now=NOW)
    assert not SIGNER.verify(longer, now=NOW)
    assert SIGNER.verify(longer, now=NOW + LIFETIME_S * 9)  # ... until it is no longer far


def test_a_replica_whose_clock_runs_behind_within_the_skew_accepts_the_value() -> None:
    signer = CookieSigner(KEY, lifetime_s=LIFETIME_S, max_clock_skew_s=60)
    value = signer.issue(now=NOW)
    assert signer.verify(value, now=NOW - 60)
    assert not signer.verify(value, now=NOW - 61)


def _flip(value: str, index: int) -> str:
    replacement = "A" if value[index] != "A" else "B"
    return value[:index] + replacement + value[index + 1 :]


FORGED = [
    pytest.param(_flip(VALID, len(VALID) - 1), id="last-signature-char-flipped"),
    pytest.param(_flip(VALID, VALID.rindex(".") + 1), id="first-signature-char-flipped"),
    pytest.param(_flip(VALID, VALID.index(".", 3) + 1), id="nonce-char-flipped"),
    pytest.param(
        VALID.replace(VALID.split(".")[1], str(int(VALID.split(".")[1]) + 60), 1),
        id="expiry-extended",
    ),
    pytest.param(
        VALID.replace(VALID.split(".")[1], "0" + VALID.split(".")[1], 1), id="expiry-zero-padded"
    ),
    pytest.param("v2" + VALID[2:], id="other-version"),
    pytest.param(VALID[:-1], id="signature-truncated-by-one"),
    pytest.param(VALID + "A", id="signature-extended-by-one"),
    pytest.param(VALID + "=", id="signature-padded"),
    pytest.param(VALID.rsplit(".", 1)[0], id="signature-missing"),
    pytest.param(VALID.rsplit(".", 1)[0] + ".", id="signature-empty"),
    pytest.param(VALID + ".x", id="extra-field"),
    pytest.param(" " + VALID, id="leading-space"),
    pytest.param(VALID + " ", id="trailing-space"),
    pytest.param(f'"{VALID}"', id="quoted"),
    pytest.param(VALID[:-1] + "é", id="non-ascii-char"),
    pytest.param(VALID + "A" * (MAX_COOKIE_CHARS - len(VALID) + 1), id="oversized"),
    pytest.param("", id="empty"),
    pytest.param(".", id="dot"),
    pytest.param("v1...", id="empty-fields"),
    pytest.param("v1.-5.abcdefghij." + "A" * 43, id="negative-expiry"),
    pytest.param("v1.9999999999999." + "A" * 16 + "." + "A" * 43, id="huge-expiry"),
    pytest.param("null", id="garbage-word"),
    pytest.param("\x00" * 10, id="nul-bytes"),
    pytest.param("v1.1.2.3", id="short-fields"),
]


@pytest.mark.parametrize("value", FORGED)
def test_tampered_or_malformed_value_is_refused(value: str) -> None:
    assert value != VALID
    assert not SIGNER.verify(value, now=NOW)


def test_every_truncation_is_refused() -> None:
    accepted = [VALID[:n] for n in range(len(VALID)) if SIGNER.verify(VALID[:n], now=NOW)]
    assert accepted == []


@given(st.integers(min_value=0, max_value=len(VALID) - 1), st.characters())
def test_any_single_character_change_is_refused(index: int, char: str) -> None:
    tampered = VALID[:index] + char + VALID[index + 1 :]
    if tampered != VALID:
        assert not SIGNER.verify(tampered, now=NOW)


@given(st.text(max_size=400), st.floats(allow_nan=False, allow_infinity=False))
def test_verify_never_raises_on_arbitrary_text(value: str, now: float) -> None:
    assert SIGNER.verify(value, now=now) is False


@given(
    st.from_regex(r"\Av1\.[0-9]{1,12}\.[A-Za-z0-9_-]{8,64}\.[A-Za-z0-9_-]{43}\Z", fullmatch=True)
)
def test_well_shaped_but_unsigned_values_are_refused(value: str) -> None:
    """Values that pass the cheap shape check still need the signature."""
    assert SIGNER.verify(value, now=NOW) is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"key": b"", "lifetime_s": 60}, "key", id="empty-key"),
        pytest.param({"key": KEY, "lifetime_s": 0}, "lifetime", id="zero-lifetime"),
        pytest.param(
            {"key": KEY, "lifetime_s": 60, "max_clock_skew_s": -1}, "skew", id="negative-skew"
        ),
    ],
)
def test_signer_refuses_unusable_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CookieSigner(**kwargs)  # type: ignore[arg-type]


def test_signer_repr_does_not_show_the_key() -> None:
    signer = CookieSigner(b"super-secret-key", lifetime_s=60)
    assert "super-secret-key" not in repr(signer)
    assert "super-secret-key" not in str(signer)


# --- Key derivation ---------------------------------------------------------------------


def test_explicit_cookie_secret_is_the_key() -> None:
    assert derive_cookie_key(cookie_secret="s3cret", token="tok") == b"s3cret"


def test_token_alone_derives_a_stable_key_that_is_not_the_token() -> None:
    key = derive_cookie_key(cookie_secret=None, token="tok")
    assert key is not None
    assert len(key) == 32
    assert b"tok" not in key
    assert derive_cookie_key(cookie_secret=None, token="tok") == key
    assert derive_cookie_key(cookie_secret=None, token="tok2") != key


def test_cookies_from_a_rotated_token_are_refused() -> None:
    old_key = derive_cookie_key(cookie_secret=None, token="old-token")
    new_key = derive_cookie_key(cookie_secret=None, token="new-token")
    assert old_key is not None
    assert new_key is not None
    value = CookieSigner(old_key, lifetime_s=60).issue(now=NOW)
    assert not CookieSigner(new_key, lifetime_s=60).verify(value, now=NOW)


@pytest.mark.parametrize(
    ("cookie_secret", "token"),
    [
        pytest.param(None, None, id="neither"),
        pytest.param("", "", id="both-empty"),
        pytest.param("", None, id="empty-secret"),
    ],
)
def test_no_secret_and_no_token_means_no_cookies(
    cookie_secret: str | None, token: str | None
) -> None:
    assert derive_cookie_key(cookie_secret=cookie_secret, token=token) is None


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        ("theme=dark", "theme=dark"),
        ("mwm_bypass=v1.x", None),
        ("a=1; mwm_bypass=v1.x; b=2", "a=1; b=2"),
        ("mwm_bypass=1;mwm_bypass=2", None),
        ("not_mwm_bypass=1; mwm_bypass_other=2", "not_mwm_bypass=1; mwm_bypass_other=2"),
        ("a=mwm_bypass", "a=mwm_bypass"),
        ("a=mwm_bypass=x", "a=mwm_bypass=x"),
        ("mwm_bypass", "mwm_bypass"),
        # Not what browsers send, but what other clients do: still never forwarded.
        ("foo=bar mwm_bypass=v1.x", "foo=bar"),
        ("foo=bar, mwm_bypass=v1.x", "foo=bar"),
        ("foo=bar,mwm_bypass=v1.x,baz=1", "foo=bar,baz=1"),
        ("foo=bar\tmwm_bypass=v1.x; baz=1", "foo=bar\tbaz=1"),
        ("mwm_bypass=v1.x foo=bar", "foo=bar"),
        ("mwm_bypass=v1.x, foo=bar", "foo=bar"),
        ("a=1; mwm_bypass=v1.x, b=2", "a=1; b=2"),
        ("a=1;  mwm_bypass=v1.x;b=2", "a=1;  b=2"),
        ("a=1 ; mwm_bypass = v1.x ; b=2", "a=1 ; b=2"),
        ("a=1;mwm_bypass=v1.x;", "a=1"),
        ('a="1 mwm_bypass=v1.x"', 'a="1'),
        ("a=1\u00a0mwm_bypass=v1.x", "a=1"),
        ("mwm_bypass=1 mwm_bypass=2,mwm_bypass=3;mwm_bypass=4", None),
        (" ; , mwm_bypass=v1.x ,; ", None),
    ],
)
def test_without_cookie_drops_only_the_named_pairs(header: str, kept: str | None) -> None:
    assert without_cookie(header, "mwm_bypass") == kept


def test_without_cookie_keeps_a_header_without_the_name_as_the_same_object() -> None:
    header = "theme=dark; lang=en"
    assert without_cookie(header, "mwm_bypass") is header


def test_without_cookie_takes_linear_time_on_a_hostile_header() -> None:
    """Long runs of separators around a removed pair: a quadratic scan takes seconds."""
    header = "mwm_bypass=x" + " ;," * 5000 + "a=1" + " ;," * 5000
    started = time.perf_counter()
    assert without_cookie(header, "mwm_bypass") == "a=1"
    assert time.perf_counter() - started < 0.25


_NAME = "mwm_bypass"
_SEPARATORS = st.sampled_from(["; ", ";", ", ", ",", " ", "  ", "\t", " ; ", " , ", ";  "])
_OTHER_PAIRS = st.builds(
    "{}={}".format,
    st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True).filter(lambda n: n != _NAME),
    st.from_regex(r"[A-Za-z0-9._=-]{0,12}", fullmatch=True),
)
_BYPASS_PAIRS = st.sampled_from(
    [f"{_NAME}=v1.x", f"{_NAME}=", f"{_NAME} = v1.x", f"{_NAME}=mwm_bypass=v1.x"]
)


@st.composite
def _cookie_headers(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A header of other pairs with bypass pairs anywhere, any separators; the others."""
    others = draw(st.lists(_OTHER_PAIRS, max_size=6))
    pairs = list(others)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        pairs.insert(draw(st.integers(min_value=0, max_value=len(pairs))), draw(_BYPASS_PAIRS))
    header = pairs[0]
    for pair in pairs[1:]:
        header += draw(_SEPARATORS) + pair
    return header, others


def _split(header: str) -> list[str]:
    """Pairs split at every separator a cookie parser may use."""
    return [pair for pair in re.split(r"[;,\s]+", header) if pair]


def _names_the_cookie(header: str) -> bool:
    """Whether some parser (splitting anywhere, trimming around ``=``) sees the cookie."""
    return re.search(rf"(?<![^;,\s]){_NAME}\s*=", header) is not None


@given(_cookie_headers())
def test_without_cookie_leaves_no_bypass_pair_for_any_parser(case: tuple[str, list[str]]) -> None:
    header, others = case
    kept = without_cookie(header, _NAME)
    assert _split(kept or "") == others  # the rest, in order, as sent
    if kept is None:
        return
    assert not _names_the_cookie(kept)
    assert cookie_values([kept], _NAME) == []
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(kept)
    except CookieError:
        return
    assert _NAME not in jar


@given(st.text(alphabet=st.sampled_from(list('mwm_bypass=v1. ;,\t"xa')), max_size=60))
def test_without_cookie_leaves_no_pair_named_like_the_cookie_in_any_text(header: str) -> None:
    kept = without_cookie(header, _NAME) or ""
    assert not _names_the_cookie(kept)
    assert cookie_values([kept], _NAME) == []
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(kept)
    except CookieError:
        return
    assert _NAME not in jar


@pytest.mark.parametrize(
    ("headers", "values"),
    [
        pytest.param(["mwm_bypass=v1.x"], ["v1.x"], id="alone"),
        pytest.param(["a=1; mwm_bypass=v1.x; b=2"], ["v1.x"], id="among-others"),
        pytest.param(["a=1;mwm_bypass=v1.x"], ["v1.x"], id="no-space"),
        pytest.param(["a=1", "mwm_bypass=v1.x"], ["v1.x"], id="own-header"),
        pytest.param(["mwm_bypass=1; mwm_bypass=2", "mwm_bypass=3"], ["1", "2", "3"], id="all"),
        pytest.param(["foo=bar mwm_bypass=v1.x"], [], id="after-a-space"),
        pytest.param(["foo=bar\tmwm_bypass=v1.x"], [], id="after-a-tab"),
        pytest.param(["foo=bar, mwm_bypass=v1.x"], [], id="after-a-comma"),
        pytest.param(["foo=bar,mwm_bypass=v1.x"], [], id="after-a-bare-comma"),
        pytest.param(["mwm_bypass = v1.x"], [], id="spaces-around-equals"),
        pytest.param(["MWM_BYPASS=v1.x"], [], id="other-case"),
        pytest.param(['a="x; mwm_bypass=v1.x"'], ['v1.x"'], id="inside-quotes-still-split"),
        pytest.param(["mwm_bypass"], [], id="no-equals"),
        pytest.param(["theme=dark"], [], id="none"),
    ],
)
def test_cookie_values_reads_only_what_a_browser_sends(
    headers: list[str], values: list[str]
) -> None:
    assert cookie_values(headers, "mwm_bypass") == values


@given(st.lists(st.text(max_size=80), max_size=3))
def test_whatever_could_grant_is_never_forwarded(headers: list[str]) -> None:
    """Every value :func:`cookie_values` (or SimpleCookie, the older reader) finds is a
    pair :func:`without_cookie` removes: a cookie that counts never reaches the app."""
    for header in headers:
        kept = without_cookie(header, _NAME)
        if kept is None:
            continue
        assert cookie_values([kept], _NAME) == []
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(kept)
        except CookieError:
            continue
        assert _NAME not in jar


# --- Over a real proxy and an upstream that echoes what it got ---------------------------


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    """The suite's echo application (``tests/conftest.py``), in front of which
    ``start_proxy`` starts mwm (this directory's ``upstream`` is another application)."""
    server = TestServer(echo_app(), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def _issued() -> str:
    key = derive_cookie_key(cookie_secret=None, token=BYPASS_TOKEN)
    assert key is not None
    return CookieSigner(key, lifetime_s=3600).issue(now=time.time())


COOKIE = _issued()
"""Signed with the key the proxy derives from the suite's bypass token: it grants."""


async def _echoed_cookies(proxy: RunningProxy, *cookies: str) -> tuple[int, list[str], bytes]:
    """Status, the ``Cookie`` headers the upstream received, the whole answer's body."""
    headers: list[Header] = [("Accept", "application/json")]
    headers += [("Cookie", value) for value in cookies]
    [response] = await exchange(proxy.public_port, request("GET", "/shop", headers))
    if response.status != 200:
        return response.status, [], response.body
    received = [value for name, value in response.json()["headers"] if name.lower() == "cookie"]
    return response.status, received, response.body


SEPARATOR_CASES = [
    pytest.param([f"foo=bar mwm_bypass={COOKIE}"], ["foo=bar"], id="space"),
    pytest.param([f"foo=bar, mwm_bypass={COOKIE}"], ["foo=bar"], id="comma-space"),
    pytest.param([f"foo=bar,mwm_bypass={COOKIE},baz=1"], ["foo=bar,baz=1"], id="bare-commas"),
    pytest.param([f"foo=bar\tmwm_bypass={COOKIE}; baz=1"], ["foo=bar\tbaz=1"], id="tab"),
    pytest.param([f"mwm_bypass={COOKIE} foo=bar"], ["foo=bar"], id="first-then-space"),
    pytest.param([f"a=1 ;  mwm_bypass = {COOKIE} ;b=2"], ["a=1 ;  b=2"], id="odd-spacing"),
    pytest.param([f"theme=dark;mwm_bypass={COOKIE};lang=en"], ["theme=dark;lang=en"], id="tight"),
    pytest.param(
        ["theme=dark", f"mwm_bypass={COOKIE} lang=en"], ["theme=dark", "lang=en"], id="two-headers"
    ),
    pytest.param(
        [f"a=1, mwm_bypass={COOKIE}", f"mwm_bypass={COOKIE}", f"b=2 mwm_bypass={COOKIE}"],
        ["a=1", "b=2"],
        id="three-headers",
    ),
    pytest.param([f"mwm_bypass={COOKIE}, mwm_bypass={COOKIE}"], [], id="nothing-else"),
]


@pytest.mark.parametrize(("cookies", "forwarded"), SEPARATOR_CASES)
async def test_the_bypass_cookie_never_reaches_the_app_whatever_the_separators(
    start_proxy: ProxyFactory, cookies: list[str], forwarded: list[str]
) -> None:
    proxy = await start_proxy()  # maintenance off: every request is forwarded
    status, received, body = await _echoed_cookies(proxy, *cookies)
    assert status == 200
    assert received == forwarded  # the app's other cookies byte for byte
    assert COOKIE.encode() not in body
    assert b"mwm_bypass" not in body


async def test_a_bypass_by_cookie_forwards_no_copy_of_it(start_proxy: ProxyFactory) -> None:
    """The browser-shaped header grants; copies glued on elsewhere do not reach the app."""
    proxy = await start_proxy()
    await proxy.switch(enabled=True, reason="Upgrading")
    status, received, body = await _echoed_cookies(
        proxy, f"theme=dark; mwm_bypass={COOKIE}", f"lang=en mwm_bypass={COOKIE}"
    )
    assert status == 200
    assert received == ["theme=dark", "lang=en"]
    assert COOKIE.encode() not in body


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(f"foo=bar mwm_bypass={COOKIE}", id="space"),
        pytest.param(f"foo=bar, mwm_bypass={COOKIE}", id="comma-space"),
        pytest.param(f"foo=bar\tmwm_bypass={COOKIE}", id="tab"),
        pytest.param(f"mwm_bypass = {COOKIE}", id="spaces-around-equals"),
        pytest.param(f'mwm_bypass="{COOKIE}"', id="quoted"),
    ],
)
async def test_a_cookie_no_browser_would_send_grants_no_bypass(
    start_proxy: ProxyFactory, header: str
) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True, reason="Upgrading")
    status, _, body = await _echoed_cookies(proxy, header)
    assert status == 503
    assert COOKIE.encode() not in body
