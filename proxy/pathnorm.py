"""One canonical form of the request path: what the bypass rules check is what is forwarded.

Path-prefix bypass is only sound if the proxy and the upstream agree on which resource a
path names.  They disagree whenever the upstream decodes or resolves something the proxy
matched literally: ``/admin/../checkout``, ``/%61dmin``, ``/admin/..;/checkout`` (Tomcat
strips ``;params`` before resolving dot segments), ``/admin%2F..%2Fcheckout`` (servers that
decode ``%2F`` before routing), ``/admin%5C..%5Ccheckout`` (servers that treat ``\\`` as a
separator).  So :func:`normalize_path` rewrites the raw path into the RFC 3986 section 6
normal form, the server matches *and forwards* that one string, and anything that an
upstream might still read as a separator or a traversal that we cannot see is refused with
:class:`InvalidPath` (the listener answers 400) rather than guessed at.

Case is preserved: paths are case-sensitive (RFC 3986 section 6.2.2.1), so ``/ADMIN`` is
not ``/admin`` and is not let through by a ``/admin`` prefix.  Blocking is the safe outcome
of any disagreement: a bypass that fails shows the maintenance page, a bypass that
over-matches leaks the application.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote_to_bytes

__all__ = ["InvalidPath", "normalize_path"]


class InvalidPath(ValueError):
    """The raw path is malformed or ambiguous; the request must be refused, not forwarded."""


# RFC 3986 pchar without pct-encoded, plus "/": the characters a path may carry raw.
_PLAIN = r"A-Za-z0-9\-._~!$&'()*+,;=:@/"
_NOT_PLAIN = re.compile(rf"[^{_PLAIN}]")
"""A path without any match, ``//`` or ``/.`` is already normal: returned as is (the
common case; a character class plus two substring tests is about twice as fast as one
regex with alternatives).  Every dot segment, ``..;`` included, starts with ``/.``."""

_PIECE = re.compile(rf"%(?:[0-9A-Fa-f]{{2}})?|[^{_PLAIN}]")
"""One percent-escape (or a lone ``%``), or one character that cannot appear raw."""

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

_REFUSED_BYTES = frozenset((*range(0x20), 0x7F, ord("/"), ord("\\")))
"""Refused when percent-encoded: control characters (NUL truncates paths in C code),
and the separators ``/`` and ``\\``.  Encoded slash is refused rather than kept: strict by
default, because much of the stack decodes it before routing (WSGI's ``PATH_INFO`` and
ASGI's ``path`` are decoded, as is nginx's ``$uri``), which turns ``/admin%2F..%2Fx`` into
a traversal we cannot see.  Applications that put ``%2F`` inside a segment get 400 unless
they opt in to ``keep_encoded_slashes`` (see :func:`normalize_path`)."""

_REFUSED_REASONS = {ord("/"): "encoded slash (%2F)", ord("\\"): "encoded backslash (%5C)"}

_SUSPICIOUS_OUTPUT = re.compile(r"%25[0-9A-Fa-f]{2}|%C[01]%[89AB]|%E0%[89]|%F0%8")
"""Refused in the normalized path: a double-encoded escape (``%252F``; an upstream that
decodes twice would see a character we did not) and overlong UTF-8 lead sequences
(``%C0%AE`` is "." to decoders that accept overlong forms, as old IIS did)."""

_PARAMS = re.compile(r";|%3B")
_NON_ASCII_ESCAPE = re.compile(r"%[89A-F]")
_DOTS_AND_SPACES = re.compile(r"(?:\.|%20)+")


def normalize_path(raw_path: str, *, keep_encoded_slashes: bool = False) -> str:
    """Return the normal form of ``raw_path`` (the request target without its query).

    - It must start with ``/``: absolute-form (``http://host/x``), ``*`` and empty targets
      are refused.
    - Percent-escapes of unreserved characters (``ALPHA / DIGIT / - . _ ~``) are decoded
      (``%61`` -> ``a``, ``%2e`` -> ``.``); other escapes are kept with upper-case hex
      (``%c3%a9`` -> ``%C3%A9``); a malformed escape (``%zz``, ``%4``) is refused.
    - Characters that may not appear raw in a path are percent-encoded (non-ASCII as
      UTF-8, RFC 3987 section 3.1), so the result is always plain ASCII.
    - Repeated slashes collapse; ``.`` and ``..`` segments are resolved after decoding,
      never above the root; a trailing dot segment leaves a trailing slash.
    - Refused (:class:`InvalidPath`): ``\\`` raw or as ``%5C``; ``%2F`` (strict by
      default, see ``_REFUSED_BYTES``); ASCII control characters raw or encoded;
      segments that are dots once ``;params`` or trailing spaces are stripped
      (``/admin/..;/checkout``); double-encoded escapes; overlong UTF-8; segments whose
      Unicode compatibility form (NFKC) adds a separator or makes a dot segment
      (``%EF%BC%8E%EF%BC%8E``, fullwidth ``..``).

    With ``keep_encoded_slashes`` (for applications that put ``%2F`` inside a segment, like
    GitLab's ``/api/v4/projects/group%2Fname``), ``%2F`` is kept with upper-case hex and is
    part of its segment, for the normalization and for the bypass rules alike.  The path must
    then be safe under both readings: it is refused if decoding its ``%2F`` to ``/`` would
    make a dot segment (``.``, ``..``, also with ``;params``) or an empty one (``//``), so
    an upstream that decodes sees the same path with only ``%2F`` turned into ``/``.  A
    bypass prefix never matches across an encoded slash: ``/admin%2Fx`` is one segment, not
    under ``/admin``, and is blocked (the safe outcome) though a decoding upstream reads
    ``/admin/x``.  Prefixes themselves cannot contain ``%2F``.

    The result is a fixed point: ``normalize_path(normalize_path(p)) == normalize_path(p)``
    (with the same ``keep_encoded_slashes``).
    """
    if not raw_path.startswith("/"):
        raise InvalidPath("the path must start with '/'")
    if _NOT_PLAIN.search(raw_path) is None and "//" not in raw_path and "/." not in raw_path:
        return raw_path
    return _normalize(raw_path, keep_encoded_slashes=keep_encoded_slashes)


def _normalize(raw_path: str, *, keep_encoded_slashes: bool = False) -> str:
    """The general case of :func:`normalize_path`, without the fast path."""
    if not raw_path.startswith("/"):
        raise InvalidPath("the path must start with '/'")
    if keep_encoded_slashes:
        path = _resolve(_PIECE.sub(_canonical_piece_keeping_slashes, raw_path))
        if "%2F" in path:
            # What an upstream that decodes %2F before routing would see: it must already be
            # normal, i.e. decoding adds no dot segment, empty segment or ambiguity.
            decoded = path.replace("%2F", "/")
            try:
                unambiguous = _normalize(decoded) == decoded
            except InvalidPath:
                unambiguous = False
            if not unambiguous:
                raise InvalidPath("encoded slash (%2F) that decodes to a different path")
        return path
    return _resolve(_PIECE.sub(_canonical_piece, raw_path))


def _resolve(text: str) -> str:
    """Resolve dot segments and collapse slashes in ``text``, whose escapes are canonical."""
    if _SUSPICIOUS_OUTPUT.search(text) is not None:
        raise InvalidPath("double-encoded escape or overlong UTF-8")

    kept: list[str] = []
    segments = text.split("/")
    last = len(segments) - 1
    trailing_slash = False
    for index, segment in enumerate(segments):
        if segment in ("", "."):
            pass
        elif segment == "..":
            if kept:
                kept.pop()
        elif "." in segment and _is_dot_segment_in_disguise(segment):
            raise InvalidPath("ambiguous dot segment")
        elif "%" in segment and _is_disguised_by_compatibility_form(segment):
            raise InvalidPath("character whose compatibility form is a separator or a dot")
        else:
            kept.append(segment)
            continue
        trailing_slash = index == last
    if not kept:
        return "/"
    return "/" + "/".join(kept) + ("/" if trailing_slash else "")


def _canonical_piece_keeping_slashes(match: re.Match[str]) -> str:
    piece = match.group()
    if piece in ("%2F", "%2f"):
        return "%2F"
    return _canonical_piece(match)


def _canonical_piece(match: re.Match[str]) -> str:
    piece = match.group()
    if piece[0] == "%":
        if len(piece) != 3:
            raise InvalidPath("malformed percent-escape")
        byte = int(piece[1:], 16)
        if byte in _UNRESERVED:
            return chr(byte)
        if byte in _REFUSED_BYTES:
            raise InvalidPath(_REFUSED_REASONS.get(byte, "encoded control character"))
        return piece.upper()
    if piece == "\\":
        raise InvalidPath("backslash in path")
    code = ord(piece)
    if code < 0x20 or code == 0x7F:
        raise InvalidPath("control character in path")
    try:
        # surrogateescape recovers the bytes of a request line that was not valid UTF-8.
        data = piece.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise InvalidPath("unencodable character in path") from exc
    return "".join(f"%{byte:02X}" for byte in data)


def _is_disguised_by_compatibility_form(segment: str) -> bool:
    """True for a segment that becomes a separator or a dot segment once Unicode
    compatibility forms are folded (NFKC): ``%EF%BC%8F`` (fullwidth solidus) is ``/``,
    ``%E2%80%A5`` (two dot leader) is ``..``.  Frameworks that normalize decoded paths,
    and Windows' "best fit" mappings, fold them; the bypass rules must not see one segment
    where such an upstream sees a traversal.  Only segments with non-ASCII escapes can."""
    if _NON_ASCII_ESCAPE.search(segment) is None:
        return False
    try:
        text = unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        return False  # not UTF-8: there are no compatibility forms to fold
    folded = unicodedata.normalize("NFKC", text)
    if folded == text:
        return False
    if any(folded.count(char) > text.count(char) for char in "/\\%"):
        return True
    base = folded.split(";", 1)[0]
    return "." in base and not base.strip(". ")


def _is_dot_segment_in_disguise(segment: str) -> bool:
    """True for a segment that some server reads as ``.`` or ``..``: once ``;params`` are
    stripped (Tomcat, Jetty: ``..;x``, ``.%3B``) or trailing dots and spaces are trimmed
    (Windows: ``...``, ``..%20``).  Plain ``.`` and ``..`` are resolved, never asked here."""
    base = _PARAMS.split(segment, maxsplit=1)[0]
    return "." in base and _DOTS_AND_SPACES.fullmatch(base) is not None
