"""Signed bypass cookies: proof that the holder once knew the bypass token.

Visiting the secret URL sets a cookie so that a browser keeps passing during maintenance
without sending a header (like Laravel's ``artisan down --secret``).  The cookie carries
no secret and no server-side state: it is ``v1.<expires_unix>.<nonce>.<signature>``, where
the signature is HMAC-SHA256 over everything before it.  Any replica holding the same key
accepts it, and changing the key (or the token it is derived from) revokes every cookie.

:meth:`CookieSigner.verify` reads attacker-controlled input on every blocked request, so
it refuses anything unexpected (length, characters, shape) before computing an HMAC and
answers ``False`` rather than raising.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

__all__ = ["CookieSigner", "cookie_values", "derive_cookie_key", "without_cookie"]

_VERSION = "v1"
MAX_COOKIE_CHARS = 256
"""Longer values are refused unread; an issued cookie is about 80 characters."""
_NONCE_BYTES = 12
_KEY_LABEL = b"mwm bypass cookie key v1"
_SHAPE = re.compile(r"v1\.([0-9]{1,12})\.[A-Za-z0-9_-]{8,64}\.([A-Za-z0-9_-]{43})")
"""Version, expiry (unix seconds), nonce, unpadded base64url of a 32-byte HMAC."""


class CookieSigner:
    """Issues and verifies bypass cookie values with one key.

    ``max_clock_skew_s`` tolerates replicas whose clocks run behind the one that issued a
    cookie: a value whose expiry lies further ahead than ``now + lifetime_s`` plus this
    was not issued by a signer with this lifetime, and is refused.
    """

    __slots__ = ("_key", "_lifetime_s", "_max_expires_ahead_s")

    def __init__(self, key: bytes, *, lifetime_s: int, max_clock_skew_s: int = 60) -> None:
        if not key:
            raise ValueError("the cookie key must not be empty")
        if lifetime_s <= 0:
            raise ValueError("lifetime_s must be positive")
        if max_clock_skew_s < 0:
            raise ValueError("max_clock_skew_s must not be negative")
        self._key = key
        self._lifetime_s = lifetime_s
        self._max_expires_ahead_s = lifetime_s + max_clock_skew_s

    def __repr__(self) -> str:
        return f"CookieSigner(lifetime_s={self._lifetime_s})"  # never the key

    @property
    def lifetime_s(self) -> int:
        return self._lifetime_s

    def issue(self, *, now: float) -> str:
        """A new cookie value valid until ``now + lifetime_s``."""
        expires = int(now) + self._lifetime_s
        nonce = secrets.token_urlsafe(_NONCE_BYTES)
        payload = f"{_VERSION}.{expires}.{nonce}"
        return f"{payload}.{self._sign(payload)}"

    def verify(self, value: str, *, now: float) -> bool:
        """True only for an unexpired value this key signed; never raises."""
        if len(value) > MAX_COOKIE_CHARS or not value.isascii():
            return False
        shape = _SHAPE.fullmatch(value)
        if shape is None:
            return False
        payload, signature = value[: shape.start(2) - 1], shape.group(2)
        if not hmac.compare_digest(self._sign(payload), signature):
            return False
        expires = int(shape.group(1))
        return now < expires <= now + self._max_expires_ahead_s

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def derive_cookie_key(*, cookie_secret: str | None, token: str | None) -> bytes | None:
    """The key that signs bypass cookies, or None when cookies are off.

    An explicit ``cookie_secret`` wins.  Otherwise the key is derived from the bypass
    ``token`` (HMAC of a fixed label), so configuring a token alone is enough, the token
    itself never doubles as a key, and rotating the token revokes every issued cookie.
    Empty strings count as unset.
    """
    if cookie_secret:
        return cookie_secret.encode("utf-8", "surrogateescape")
    if token:
        return hmac.new(
            token.encode("utf-8", "surrogateescape"), _KEY_LABEL, hashlib.sha256
        ).digest()
    return None


def cookie_values(headers: Iterable[str], name: str) -> list[str]:
    """The values of the cookies named ``name``, read the way a browser sends them.

    A browser joins its cookies with ``"; "`` (RFC 6265 section 5.4) and sends a value
    exactly as it was set, so only a ``;``-separated pair whose name is exactly ``name``
    counts; each ``Cookie`` header is read on its own.  A pair glued to another with a
    space or a comma (``a=1 mwm_bypass=...``, ``a=1, mwm_bypass=...``) is not a cookie a
    browser sent, so it grants nothing, where a lenient parser such as ``SimpleCookie``
    would find one.  This is deliberately narrower than :func:`without_cookie`, which
    removes every pair any parser could read as ``name``: whatever can grant is removed.
    """
    values = []
    for header in headers:
        if name not in header:
            continue
        for pair in header.split(";"):
            pair_name, equals, value = pair.strip(" \t").partition("=")
            if equals and pair_name == name:
                values.append(value)
    return values


@functools.lru_cache(maxsize=8)
def _pairs_named(name: str) -> re.Pattern[str]:
    """``name=value`` where some parser sees a pair start, with the separators after it.

    A separator is what any cookie parser may take for the end of a pair: ``;``, ``,``
    or whitespace.  The value runs to the next separator; after ``= `` (a space), a word
    that is the next pair's name (``name= other=1``, ``name= other =1``) is not the value.
    """
    value = r"(?:\s*[^;,\s=]+(?![^;,\s])(?!\s*=)|[^;,\s]*)"
    return re.compile(rf"(?<![^;,\s]){re.escape(name)}\s*={value}[;,\s]*")


def without_cookie(header: str, name: str) -> str | None:
    """A ``Cookie`` header value without the pairs named ``name``; None when nothing is left.

    The bypass cookie is the proxy's business: forwarded, it would sit in the application's
    request logs and error reports, where anyone reading them could replay it until it
    expires.  Browsers separate pairs with ``"; "``, but other clients send spaces or
    ``", "``, and applications' parsers differ in what they split on, so a pair counts as
    named ``name`` wherever it starts the header or follows a ``;``, a ``,`` or whitespace
    (spaces around ``=`` allowed); it goes with the separators after it, up to the next
    pair.  Everything else is passed on exactly as sent.
    """
    if name not in header:
        return header
    kept = _pairs_named(name).sub("", header)
    end = len(kept)
    while end and (kept[end - 1] in ";," or kept[end - 1].isspace()):
        end -= 1  # what separated the last pair removed from the one before it
    return kept[:end] or None
