"""Fuzzing what a request looks like to the bypass rules, with hypothesis.

Everything the public listener derives from a request before deciding on it is fuzzed
here as the listener chains it: the path through :func:`~proxy.pathnorm.normalize_path`,
``X-Forwarded-For`` through :func:`~proxy.forwarded.client_address`, ``Cookie`` headers
through the listener's cookie reader and :class:`~proxy.cookie.CookieSigner`, the token
header, and ``Host`` through :func:`~proxy.conformance.refusal`.  The unit-level
properties of each piece live beside it and are not repeated: the path's fixed point, its
dot and empty segments, the meaning under decoding (``tests/proxy/test_pathnorm.py``) and
the cookie's single-character changes and arbitrary text (``tests/proxy/test_cookie.py``).

Example counts are bounded (the ``promises-fuzz`` profile) so the file runs in seconds.

Promises:

- Random requests never pass without a credential: a bypass is only ever granted for a
  path that is ``/admin`` or below it, exactly one header equal to the token, a cookie
  value this key signed, or a client address at the trusted position in an allowed
  network; nothing raises.
- Folding Unicode compatibility forms (NFKC) never turns an accepted path into another
  path: an upstream that folds sees the same segments, no traversal, and a path allowed
  under ``/admin`` stays under ``/admin``.
- The client address is always the entry the farthest trusted proxy wrote, never one a
  client could forge, whatever the entries contain (empty, garbage, IPv6, ports).
- Random bytes never verify as a cookie, and any single bit flipped in a valid cookie
  makes it fail; the cookie reader never raises on any header.
- An accepted ``Host`` never carries userinfo, a path, a list or whitespace.
"""

from __future__ import annotations

import unicodedata
from ipaddress import ip_address, ip_network
from urllib.parse import unquote_to_bytes

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.bypass import BypassPolicy, BypassRule
from proxy.conformance import refusal
from proxy.cookie import CookieSigner, cookie_values
from proxy.decision import RequestView
from proxy.forwarded import client_address, parse_address
from proxy.pathnorm import InvalidPath, normalize_path

settings.register_profile(
    "promises-fuzz",
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)
FUZZ = settings.get_profile("promises-fuzz")

TOKEN = "bypass-token-for-fuzzing"
NOW = 1_900_000_000.0
SIGNER = CookieSigner(b"fuzzing-cookie-key", lifetime_s=3600)
VALID_COOKIE = SIGNER.issue(now=NOW)
ALLOWED = (ip_network("10.0.0.0/8"), ip_network("2001:db8::/32"))
POLICY = BypassPolicy(
    path_prefixes=("/admin",), token=TOKEN.encode(), networks=ALLOWED, cookie=SIGNER
)

COMPATIBILITY_FORMS = [
    chr(code)
    for code in range(0x80, 0x30000)
    if not 0xD800 <= code < 0xE000 and set(unicodedata.normalize("NFKC", chr(code))) & set("./\\%;")
]
"""Every character whose compatibility form contains a dot, a separator, ``%`` or ``;``."""


def _utf8_escaped(text: str) -> str:
    return "".join(f"%{byte:02X}" for byte in text.encode())


_path_piece = st.sampled_from(
    ["/", "//", ".", "..", "admin", "/admin", "x", ";", "%2e", "%20", "%61", "%C0%AE", "\\"]
) | st.sampled_from(COMPATIBILITY_FORMS).flatmap(
    lambda char: st.sampled_from([char, _utf8_escaped(char)])
)
paths = st.builds(
    lambda start, pieces: start + "".join(pieces),
    st.sampled_from(["/", "/admin/", "//", ""]),
    st.lists(_path_piece, max_size=16),
)
"""Paths built from traversal material, with compatibility forms raw and escaped."""

_entry = st.sampled_from(
    ["10.1.2.3", "10.9.9.9:443", "[2001:db8::1]:80", "2001:db8::2", "198.51.100.7", "", " "]
) | st.sampled_from(["unknown", "garbage", "::ffff:10.1.2.3", "203.0.113.1"])
"""What X-Forwarded-For entries hold: allowed and other addresses, ports, empties, junk."""

_header_text = st.text(max_size=60) | st.sampled_from(
    [TOKEN, TOKEN + " ", TOKEN[:-1], "", f"{TOKEN}, {TOKEN}"]
)
_cookie_header = st.text(max_size=120) | st.builds(
    lambda before, value, after: f"{before}mwm_bypass={value}{after}",
    st.sampled_from(["", "a=b; ", 'x="; ', "mwm_bypass=forged; "]),
    st.sampled_from([VALID_COOKIE, VALID_COOKIE[:-1], VALID_COOKIE + "A", "v1.1.x.y", '"q"']),
    st.sampled_from(["", "; c=d", ";", " ;mwm_bypass=other"]),
)


@FUZZ
@given(
    raw_path=paths,
    tokens=st.lists(_header_text, max_size=3),
    cookies=st.lists(_cookie_header, max_size=3),
    forwarded_for=st.lists(st.lists(_entry, max_size=4).map(", ".join), max_size=3),
    trusted_hops=st.integers(0, 3),
)
def test_random_requests_never_pass_without_a_credential(
    raw_path: str,
    tokens: list[str],
    cookies: list[str],
    forwarded_for: list[str],
    trusted_hops: int,
) -> None:
    try:
        path = normalize_path(raw_path)
    except InvalidPath:
        return  # answered 400
    client = client_address("127.0.0.1", forwarded_for, trusted_hops=trusted_hops)
    values = cookie_values(cookies, "mwm_bypass")
    view = RequestView("GET", path, client, tuple(tokens), tuple(values))
    rule = POLICY.match(view, now=NOW)

    if rule is BypassRule.PATH:
        assert path == "/admin" or path.startswith("/admin/")
    elif rule is BypassRule.CIDR:
        assert client is not None
        assert any(client in network for network in ALLOWED) or (
            client.version == 6
            and client.ipv4_mapped is not None
            and any(client.ipv4_mapped in network for network in ALLOWED)
        )
    elif rule is BypassRule.TOKEN:
        assert tokens == [TOKEN]
    elif rule is BypassRule.COOKIE:
        assert VALID_COOKIE in values
        assert any(VALID_COOKIE in header for header in cookies)


def _folded_segments(path: str) -> list[str]:
    decoded = unquote_to_bytes(path).decode("utf-8", "surrogateescape")
    return unicodedata.normalize("NFKC", decoded).split("/")


@FUZZ
@given(paths)
def test_an_upstream_that_folds_unicode_sees_the_same_path(raw: str) -> None:
    try:
        path = normalize_path(raw)
    except InvalidPath:
        return
    folded = _folded_segments(path)
    assert len(folded) == len(path.split("/"))
    for segment in folded:
        base = segment.split(";", 1)[0]
        assert not ("." in base and not base.strip(". ")), f"{path!r} folds to a dot segment"
        assert "\\" not in segment
    if POLICY.match(RequestView("GET", path, None), now=NOW) is BypassRule.PATH:
        assert folded[1] == "admin"


@FUZZ
@given(
    forged=st.lists(st.text(max_size=20) | _entry, max_size=4),
    trusted=st.lists(_entry, min_size=0, max_size=3),
    split_lines=st.booleans(),
)
def test_client_is_the_entry_the_farthest_trusted_proxy_wrote(
    forged: list[str], trusted: list[str], split_lines: bool
) -> None:
    """``trusted`` are the entries the ``len(trusted)`` proxies in front appended (the
    nearest one is the peer, which appended the last); ``forged`` is whatever the client
    sent before them, commas included."""
    hops = len(trusted)
    lines = (
        [", ".join(forged), ", ".join(trusted)] if split_lines else [", ".join(forged + trusted)]
    )
    if not forged:
        lines = [", ".join(trusted)]
    client = client_address("192.0.2.1", lines, trusted_hops=hops)
    expected = parse_address(trusted[0]) if hops else ip_address("192.0.2.1")
    assert client == expected


@FUZZ
@given(st.binary(max_size=200), st.sampled_from(["latin-1", "surrogateescape"]))
def test_random_bytes_never_verify_as_a_cookie(data: bytes, decoding: str) -> None:
    value = data.decode("latin-1") if decoding == "latin-1" else data.decode("utf-8", decoding)
    assert SIGNER.verify(value, now=NOW) is False
    cookie_values([f"mwm_bypass={value}", value], "mwm_bypass")  # never raises


@FUZZ
@given(st.integers(0, len(VALID_COOKIE) * 8 - 1))
def test_any_bit_flipped_in_a_valid_cookie_fails(bit: int) -> None:
    data = bytearray(VALID_COOKIE.encode())
    data[bit // 8] ^= 1 << (bit % 8)
    assert SIGNER.verify(data.decode("latin-1"), now=NOW) is False


@FUZZ
@given(st.text(max_size=80) | st.from_regex(r"[a-z0-9.@:\[\]/, -]{0,40}", fullmatch=True))
def test_accepted_host_names_a_host_and_nothing_else(host: str) -> None:
    if refusal((1, 1), {"Host": host}) is None:
        assert not set(host) & set("@/\\?#, \t\r\n")
