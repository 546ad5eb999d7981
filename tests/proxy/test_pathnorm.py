"""Path normalization: what the bypass rules check is exactly what the upstream receives.

The attacks here are the classic ways to make a proxy and an application disagree about
which resource a path names; each one must either normalize to the path the application
will really serve, or be refused.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from proxy.bypass import BypassPolicy, BypassRule
from proxy.decision import RequestView
from proxy.pathnorm import InvalidPath, _normalize, normalize_path

NORMALIZED = [
    pytest.param("/", "/", id="root"),
    pytest.param("/shop/cart", "/shop/cart", id="plain-path-unchanged"),
    pytest.param("/shop/cart/", "/shop/cart/", id="trailing-slash-kept"),
    pytest.param("/admin/../checkout", "/checkout", id="dotdot-leaves-admin"),
    pytest.param("/%61dmin", "/admin", id="encoded-unreserved-letter-decoded"),
    pytest.param("/%41DMIN", "/ADMIN", id="encoded-upper-letter-decoded-case-kept"),
    pytest.param("//admin", "/admin", id="leading-double-slash"),
    pytest.param("/admin//x///y", "/admin/x/y", id="repeated-slashes-collapse"),
    pytest.param("/ADMIN", "/ADMIN", id="case-preserved"),
    pytest.param("/%2e%2e/admin", "/admin", id="encoded-dotdot-at-root-stays-at-root"),
    pytest.param("/admin/%2e%2e/checkout", "/checkout", id="encoded-dotdot-resolved"),
    pytest.param("/admin/%2E%2E/checkout", "/checkout", id="encoded-upper-dotdot-resolved"),
    pytest.param("/.%2e/x", "/x", id="half-encoded-dotdot"),
    pytest.param("/admin/.%2E/", "/", id="half-encoded-dotdot-trailing"),
    pytest.param("/a/./b", "/a/b", id="dot-segment-removed"),
    pytest.param("/a/%2e/b", "/a/b", id="encoded-dot-segment-removed"),
    pytest.param("/..", "/", id="dotdot-never-above-root"),
    pytest.param("/../../../etc/passwd", "/etc/passwd", id="many-dotdots-clamped-at-root"),
    pytest.param("/a/b/..", "/a/", id="trailing-dotdot-leaves-slash"),
    pytest.param("/a/b/.", "/a/b/", id="trailing-dot-leaves-slash"),
    pytest.param("/a/b/../", "/a/", id="dotdot-then-slash"),
    pytest.param("/a//", "/a/", id="trailing-double-slash"),
    pytest.param("/.", "/", id="root-dot"),
    pytest.param("/caf%C3%A9", "/caf%C3%A9", id="utf8-escapes-kept"),
    pytest.param("/caf%c3%a9", "/caf%C3%A9", id="utf8-escapes-hex-uppercased"),
    pytest.param("/café", "/caf%C3%A9", id="raw-non-ascii-encoded-as-utf8"),
    pytest.param("/a b", "/a%20b", id="raw-space-encoded"),
    pytest.param('/a"<>{}|^`', "/a%22%3C%3E%7B%7D%7C%5E%60", id="raw-unsafe-ascii-encoded"),
    pytest.param("/a%20b", "/a%20b", id="encoded-space-kept"),
    pytest.param("/%7euser", "/~user", id="encoded-tilde-decoded"),
    pytest.param("/a%3Bb", "/a%3Bb", id="encoded-semicolon-kept"),
    pytest.param("/a%3fb", "/a%3Fb", id="encoded-question-mark-kept-uppercased"),
    pytest.param("/%25zz", "/%25zz", id="encoded-percent-not-followed-by-hex-kept"),
    pytest.param("/admin;jsessionid=1/x", "/admin;jsessionid=1/x", id="params-kept"),
    pytest.param("/a/;/x", "/a/;/x", id="params-only-segment-kept"),
    pytest.param("/.well-known/acme", "/.well-known/acme", id="dot-prefixed-name-kept"),
    pytest.param("/a/b.", "/a/b.", id="trailing-dot-in-name-kept"),
    pytest.param("/x/a..b", "/x/a..b", id="dots-inside-name-kept"),
    pytest.param("/\udc80", "/%80", id="undecodable-request-byte-encoded"),
    pytest.param("/%EF%BD%81dmin", "/%EF%BD%81dmin", id="fullwidth-letter-is-just-a-letter"),
    pytest.param("/a/%E2%80%A6b", "/a/%E2%80%A6b", id="ellipsis-inside-a-name-kept"),
]

REFUSED = [
    pytest.param("", id="empty"),
    pytest.param("*", id="asterisk-form"),
    pytest.param("http://evil/admin", id="absolute-form"),
    pytest.param("admin", id="relative"),
    pytest.param("/admin/..;/checkout", id="tomcat-dotdot-semicolon"),
    pytest.param("/admin/..;jsessionid=1/checkout", id="tomcat-dotdot-params"),
    pytest.param("/admin/.;/x", id="tomcat-dot-semicolon"),
    pytest.param("/admin/..%3b/checkout", id="encoded-semicolon-after-dotdot"),
    pytest.param("/admin/%2e%2e;/checkout", id="encoded-dotdot-semicolon"),
    pytest.param("/admin/...", id="three-dots"),
    pytest.param("/admin/..%20/checkout", id="dotdot-trailing-space"),
    pytest.param("/admin/%20../checkout", id="dotdot-leading-space"),
    pytest.param("/admin%2f..%2fcheckout", id="encoded-slash-traversal"),
    pytest.param("/admin%2F..%2Fcheckout", id="encoded-upper-slash-traversal"),
    pytest.param("/a%2fb", id="encoded-slash-strict"),
    pytest.param("/admin%5c..%5ccheckout", id="encoded-backslash-traversal"),
    pytest.param("/admin\\..\\checkout", id="raw-backslash"),
    pytest.param("/a%00b", id="encoded-nul"),
    pytest.param("/a\x00b", id="raw-nul"),
    pytest.param("/a%0d%0aX-Injected:1", id="encoded-crlf"),
    pytest.param("/a\tb", id="raw-tab"),
    pytest.param("/a%7f", id="encoded-del"),
    pytest.param("/a\x7f", id="raw-del"),
    pytest.param("/a%zz", id="malformed-escape"),
    pytest.param("/a%4", id="truncated-escape"),
    pytest.param("/a%", id="lone-percent"),
    pytest.param("/a%u002e", id="iis-unicode-escape"),
    pytest.param("/admin/%252e%252e/checkout", id="double-encoded-dotdot"),
    pytest.param("/admin%252fx", id="double-encoded-slash"),
    pytest.param("/%25%32%66", id="double-encoded-via-decoded-digits"),
    pytest.param("/admin/%c0%ae%c0%ae/checkout", id="overlong-utf8-dot"),
    pytest.param("/admin%c0%afx", id="overlong-utf8-slash"),
    pytest.param("/admin%e0%80%afx", id="overlong-3-byte-slash"),
    pytest.param("/\ud800", id="lone-surrogate"),
    pytest.param("/admin/%EF%BC%8E%EF%BC%8E/checkout", id="fullwidth-dotdot-folds-to-dotdot"),
    pytest.param("/admin/%E2%80%A5/checkout", id="two-dot-leader-folds-to-dotdot"),
    pytest.param("/admin/..%EF%BC%8Fcheckout", id="fullwidth-solidus-folds-to-slash"),
    pytest.param("/admin/%EF%B9%A8x", id="small-reverse-solidus-folds-to-backslash"),
    pytest.param("/admin/\uff0e\uff0e/x", id="raw-fullwidth-dotdot"),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALIZED)
def test_path_is_normalized(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), NORMALIZED)
def test_normalizing_twice_changes_nothing(raw: str, expected: str) -> None:
    assert normalize_path(normalize_path(raw)) == expected


@pytest.mark.parametrize("raw", REFUSED)
def test_ambiguous_or_malformed_path_is_refused(raw: str) -> None:
    with pytest.raises(InvalidPath):
        normalize_path(raw)


KEPT_SLASHES = [
    pytest.param("/api/projects/group%2Fname", "/api/projects/group%2Fname", id="gitlab-project"),
    pytest.param("/a%2fb", "/a%2Fb", id="hex-uppercased"),
    pytest.param("/a%2F", "/a%2F", id="trailing-encoded-slash"),
    pytest.param("/x/../a%2Fb", "/a%2Fb", id="raw-dotdot-resolved-before"),
    pytest.param("/%61%2F%62", "/a%2Fb", id="unreserved-around-it-decoded"),
    pytest.param("/admin%2Fx", "/admin%2Fx", id="one-segment"),
    pytest.param("/a/b", "/a/b", id="plain-path-unchanged"),
]

KEPT_SLASHES_REFUSED = [
    pytest.param("/admin/..%2Fcheckout", id="decodes-to-dotdot"),
    pytest.param("/admin/%2e%2e%2fcheckout", id="encoded-dots-decode-to-dotdot"),
    pytest.param("/a%2F..%2Fb", id="dotdot-between-encoded-slashes"),
    pytest.param("/a%2F%2Fb", id="decodes-to-double-slash"),
    pytest.param("/a%2F/b", id="encoded-then-raw-slash"),
    pytest.param("/%2Fa", id="decodes-to-leading-double-slash"),
    pytest.param("/a%2F.%2Fb", id="decodes-to-dot"),
    pytest.param("/a%2F..", id="decodes-to-trailing-dotdot"),
    pytest.param("/x/..%2F..;%2Fy", id="decodes-to-tomcat-dotdot-semicolon"),
    pytest.param("/a%5Cb", id="encoded-backslash"),
    pytest.param("/a\\b", id="raw-backslash"),
    pytest.param("/a%00%2Fb", id="encoded-nul"),
    pytest.param("/a%2F%0Ab", id="encoded-control"),
    pytest.param("/a%252Fb", id="double-encoded-slash"),
]


@pytest.mark.parametrize(("raw", "expected"), KEPT_SLASHES)
def test_keep_mode_keeps_encoded_slash_in_its_segment(raw: str, expected: str) -> None:
    path = normalize_path(raw, keep_encoded_slashes=True)
    assert path == expected
    assert normalize_path(path, keep_encoded_slashes=True) == path


@pytest.mark.parametrize("raw", KEPT_SLASHES_REFUSED)
def test_keep_mode_refuses_what_decodes_to_a_different_path(raw: str) -> None:
    with pytest.raises(InvalidPath):
        normalize_path(raw, keep_encoded_slashes=True)


def test_prefix_never_matches_across_an_encoded_slash() -> None:
    """``/admin%2Fx`` is one segment: not under ``/admin``, so it is blocked, the safe side."""
    path = normalize_path("/admin%2Fx", keep_encoded_slashes=True)
    assert ADMIN_ONLY.match(RequestView("GET", path, None), now=0) is None
    path = normalize_path("/admin/a%2Fb", keep_encoded_slashes=True)
    assert ADMIN_ONLY.match(RequestView("GET", path, None), now=0) is BypassRule.PATH


def test_invalid_path_is_a_value_error() -> None:
    """Callers that validate configuration (bypass prefixes) catch ``ValueError``."""
    with pytest.raises(ValueError, match="encoded slash"):
        normalize_path("/a%2Fb")


# --- Properties -------------------------------------------------------------------------

ADMIN_ONLY = BypassPolicy(path_prefixes=("/admin",), token=None, networks=(), cookie=None)

_FRAGMENTS = [
    *"/.%2eEfF5cC;admin\\ ?~",
    "//",
    "..",
    "admin",
    "/admin",
    "ADMIN",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "%3b",
    "%3B",
    "%25",
    "%20",
    "%61",
    "%00",
    "%C0%AE",
    "é",
]
_escape = st.integers(0, 255).flatmap(
    lambda byte: st.sampled_from([f"%{byte:02x}", f"%{byte:02X}"])
)
adversarial_paths = st.builds(
    lambda start, body: start + "".join(body),
    st.sampled_from(["/", "", "/admin", "/admin/", "//"]),
    st.lists(st.sampled_from(_FRAGMENTS) | _escape, max_size=24),
)


def _reads_as_dot_segment(segment: bytes) -> bool:
    """Whether a lenient server could take a decoded segment for ``.`` or ``..``: once its
    ``;params`` are dropped (Tomcat) and dots and spaces trimmed (Windows), nothing is left."""
    base = segment.split(b";", 1)[0]
    return b"." in base and not base.strip(b". ")


@given(adversarial_paths)
@example("/admin/..;/checkout")
@example("/admin%2f..%2fcheckout")
@example("/admin/%2e%2e/checkout")
@example("/%2e%2e/admin")
@example("/admin/%252e%252e/x")
def test_normalized_path_means_the_same_to_the_upstream(raw: str) -> None:
    """The key safety property: if a path normalizes, what we checked is what any upstream
    sees, even one that decodes escapes, strips ``;params`` or trims trailing dots."""
    try:
        path = normalize_path(raw)
    except InvalidPath:
        return

    # A fixed point, with no dot segment, empty segment or backslash left to reinterpret.
    assert normalize_path(path) == path
    assert path.startswith("/")
    assert path.isascii()
    for fragment in ("/./", "/../", "//", "\\"):
        assert fragment not in path
    assert not path.endswith(("/.", "/.."))

    # A /admin path bypass only ever lets /admin and what is below it through.
    if ADMIN_ONLY.match(RequestView("GET", path, None), now=0) is BypassRule.PATH:
        assert path == "/admin" or path.startswith("/admin/")

    # An upstream that percent-decodes sees the same segments: none split, none turned into
    # a traversal, and decoding twice changes nothing more.
    decoded = unquote_to_bytes(path)
    assert unquote_to_bytes(decoded) == decoded
    segments = decoded.split(b"/")
    assert len(segments) == len(path.split("/"))
    assert not any(_reads_as_dot_segment(segment) for segment in segments)
    assert b"" not in segments[1:-1]
    assert b"\\" not in decoded
    assert not any(byte < 0x20 or byte == 0x7F for byte in decoded)


@given(adversarial_paths)
@example("/admin/..%2Fcheckout")
@example("/admin%2F..%2Fcheckout")
@example("/admin/x%2F..%2F..%2Fcheckout")
@example("/admin%2Fx")
@example("/x/..%2F..;%2Fy")
def test_keep_mode_path_means_the_same_under_both_readings(raw: str) -> None:
    """With encoded slashes kept, an upstream may keep ``%2F`` or decode it to ``/``: the
    path must be normal and the ``/admin`` bypass sound under both readings."""
    try:
        path = normalize_path(raw, keep_encoded_slashes=True)
    except InvalidPath:
        return

    assert normalize_path(path, keep_encoded_slashes=True) == path
    assert path.startswith("/")
    assert path.isascii()
    assert "%2f" not in path

    slashes_decoded = path.replace("%2F", "/")
    assert normalize_path(slashes_decoded) == slashes_decoded
    for reading in (path, slashes_decoded):
        for fragment in ("/./", "/../", "//", "\\"):
            assert fragment not in reading
        assert not reading.endswith(("/.", "/.."))

    if ADMIN_ONLY.match(RequestView("GET", path, None), now=0) is BypassRule.PATH:
        for reading in (path, slashes_decoded):
            assert reading == "/admin" or reading.startswith("/admin/")

    # Fully percent-decoded, no segment reads as a traversal and nothing is left to decode.
    decoded = unquote_to_bytes(path)
    assert unquote_to_bytes(decoded) == decoded
    segments = decoded.split(b"/")
    assert len(segments) == len(slashes_decoded.split("/"))
    assert not any(_reads_as_dot_segment(segment) for segment in segments)
    assert b"" not in segments[1:-1]
    assert b"\\" not in decoded
    assert not any(byte < 0x20 or byte == 0x7F for byte in decoded)


@given(st.text(max_size=64) | adversarial_paths)
def test_fast_path_agrees_with_the_general_algorithm_in_keep_mode(raw: str) -> None:
    try:
        expected: str | type[InvalidPath] = _normalize(raw, keep_encoded_slashes=True)
    except InvalidPath:
        expected = InvalidPath
    try:
        actual: str | type[InvalidPath] = normalize_path(raw, keep_encoded_slashes=True)
    except InvalidPath:
        actual = InvalidPath
    assert actual == expected


@given(st.text(max_size=64) | adversarial_paths)
def test_fast_path_agrees_with_the_general_algorithm(raw: str) -> None:
    """Plain paths skip the work; that shortcut must never change an answer."""
    try:
        expected: str | type[InvalidPath] = _normalize(raw)
    except InvalidPath:
        expected = InvalidPath
    try:
        actual: str | type[InvalidPath] = normalize_path(raw)
    except InvalidPath:
        actual = InvalidPath
    assert actual == expected


@given(st.text())
def test_any_text_either_normalizes_to_an_ascii_path_or_is_refused(raw: str) -> None:
    try:
        path = normalize_path(raw)
    except InvalidPath:
        return
    assert path.startswith("/")
    assert path.isascii()
    assert normalize_path(path) == path
