"""Signed bypass cookies: only an unexpired value signed with our key passes, and nothing
a client sends can make verification raise."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.cookie import MAX_COOKIE_CHARS, CookieSigner, derive_cookie_key, without_cookie

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
    ],
)
def test_without_cookie_drops_only_the_named_pairs(header: str, kept: str | None) -> None:
    assert without_cookie(header, "mwm_bypass") == kept
