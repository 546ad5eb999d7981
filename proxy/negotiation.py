"""Which page format a client gets (HTML, RFC 9457 problem JSON or plain text), and in which
language (:func:`negotiate_language`, from ``Accept-Language``).

API clients and mobile apps break on an HTML maintenance page, so the format follows the
``Accept`` header (RFC 9110 §12.5.1): each format counts as accepted with the weight of the
most specific media range that names it (``text/html`` beats ``text/*`` beats ``*/*``), a
weight of 0 refuses it, and the best weight wins.  Ties go to the more specific match, then
to HTML over JSON over text, so a browser's ``*/*`` still gets a page.  Anything that names
none of our formats, or that cannot be parsed, gets HTML: a page a human can read is a
better answer than 406 while the site is down.

Browsers send only a handful of distinct ``Accept`` and ``Accept-Language`` values, so
results are kept in bounded LRU caches keyed by the exact header string; a blocked request
normally costs two cache hits here.
"""

from __future__ import annotations

import enum
import functools
import re

CACHE_SIZE = 256
"""Distinct Accept strings remembered; a few per browser family, so 256 is plenty, and the
bound keeps a client sending random headers from growing memory."""


class PageFormat(enum.StrEnum):
    HTML = "html"
    JSON = "json"
    TEXT = "text"


# Tie-break order: earlier wins.
_ORDER = (PageFormat.HTML, PageFormat.JSON, PageFormat.TEXT)

# Specificity of a media range: exact type beats "type/*" beats "*/*".
_EXACT, _SUBTYPE_WILDCARD, _ANY = 3, 2, 1

_EXACT_TYPES = {
    "text/html": PageFormat.HTML,
    "application/xhtml+xml": PageFormat.HTML,
    "application/json": PageFormat.JSON,
    "application/problem+json": PageFormat.JSON,
    "text/plain": PageFormat.TEXT,
}
_WILDCARDS = {
    "text/*": (PageFormat.HTML, PageFormat.TEXT),
    "application/*": (PageFormat.HTML, PageFormat.JSON),  # application/xhtml+xml
    "*/*": _ORDER,
}

# A comma-separated element, keeping quoted parameter values (which may hold commas) whole.
_ELEMENT = re.compile(r'(?:[^,"]|"(?:\\.|[^"\\])*")+')
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+/[!#$%&'*+.^_`|~0-9a-z-]+$")


def negotiate(accept: str | None) -> PageFormat:
    """The format to answer a request carrying ``Accept: accept`` with."""
    if not accept:
        return PageFormat.HTML
    return _negotiate_cached(accept)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _negotiate_cached(accept: str) -> PageFormat:
    # format -> (specificity, weight) of the most specific range naming it so far
    best: dict[PageFormat, tuple[int, float]] = {}
    for element in _ELEMENT.findall(accept.lower()):
        parsed = _parse_range(element)
        if parsed is None:
            continue
        media_range, weight = parsed
        for fmt, specificity in _formats_named(media_range):
            seen = best.get(fmt)
            # The most specific range decides; equally specific ones: the kindest weight.
            if (
                seen is None
                or specificity > seen[0]
                or (specificity == seen[0] and weight > seen[1])
            ):
                best[fmt] = (specificity, weight)

    chosen = PageFormat.HTML
    chosen_key: tuple[float, int] = (0.0, 0)
    for fmt in _ORDER:  # strict ">" below keeps the earlier format on a tie
        seen = best.get(fmt)
        if seen is None or seen[1] <= 0.0:
            continue
        key = (seen[1], seen[0])
        if key > chosen_key:
            chosen, chosen_key = fmt, key
    return chosen


def _parse_range(element: str) -> tuple[str, float] | None:
    """``" text/html;level=1;q=0.8 "`` -> ``("text/html", 0.8)``; None when malformed."""
    media_range, *params = (part.strip() for part in element.split(";"))
    if not _TOKEN.match(media_range):
        return None
    weight = 1.0
    for param in params:
        name, sep, value = param.partition("=")
        if sep and name.strip() == "q":
            try:
                weight = float(value.strip())
            except ValueError:
                return None
            if not 0.0 <= weight <= 1.0:  # also refuses nan
                return None
            break  # parameters after q are accept-extensions, not media-type parameters
    return media_range, weight


def _formats_named(media_range: str) -> tuple[tuple[PageFormat, int], ...]:
    exact = _EXACT_TYPES.get(media_range)
    if exact is not None:
        return ((exact, _EXACT),)
    wildcard = _WILDCARDS.get(media_range)
    if wildcard is not None:
        specificity = _ANY if media_range == "*/*" else _SUBTYPE_WILDCARD
        return tuple((fmt, specificity) for fmt in wildcard)
    if media_range.startswith("application/") and media_range.endswith("+json"):
        # Any JSON-structured type (RFC 6839), e.g. application/vnd.api+json.
        return ((PageFormat.JSON, _EXACT),)
    return ()


# --- languages ---------------------------------------------------------------------------

_LANGUAGE_RANGE = re.compile(r"^(?:\*|[a-z]{1,8}(?:-[a-z0-9]{1,8})*)$")


def negotiate_language(
    accept_language: str | None, available: tuple[str, ...], default: str
) -> str:
    """The page language for ``Accept-Language: accept_language`` (RFC 9110 §12.5.4).

    ``available`` are lower-case language tags (``de``, ``pt-br``); the answer is one of them
    or ``default``.  Ranges are tried by weight (ties keep their order), each by RFC 4647
    §3.4 lookup: ``de-CH-1996`` tries ``de-ch-1996``, ``de-ch``, then ``de``.  ``*`` stands
    for the default language; a weight of 0 refuses a language.  A header that names
    nothing available, or cannot be parsed at all, gets ``default``: never an error.
    """
    if not accept_language:
        return default
    return _language_cached(accept_language, available, default)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _language_cached(accept_language: str, available: tuple[str, ...], default: str) -> str:
    ranges: list[tuple[float, int, str]] = []
    refused: set[str] = set()
    for position, element in enumerate(accept_language.lower().split(",")):
        parsed = _parse_language_range(element)
        if parsed is None:
            continue
        tag, weight = parsed
        if weight <= 0.0:
            refused.add(tag)
            continue
        ranges.append((-weight, position, tag))
    ranges.sort()
    offered = set(available) - refused
    for _, _, tag in ranges:
        if tag == "*":
            return default
        while tag:
            if tag in offered:
                return tag
            tag = _truncate(tag)
    return default


def _parse_language_range(element: str) -> tuple[str, float] | None:
    """``" de-CH;q=0.8 "`` -> ``("de-ch", 0.8)``; None when malformed."""
    tag, *params = (part.strip() for part in element.split(";"))
    if not _LANGUAGE_RANGE.match(tag):
        return None
    weight = 1.0
    for param in params:
        name, sep, value = param.partition("=")
        if not sep or name.strip() != "q":
            return None  # Accept-Language has no other parameters
        try:
            weight = float(value.strip())
        except ValueError:
            return None
        if not 0.0 <= weight <= 1.0:  # also refuses nan
            return None
    return tag, weight


def _truncate(tag: str) -> str:
    """RFC 4647 lookup's next range: drop the last subtag, and a single-letter one before it
    (``zh-hant-x-a`` -> ``zh-hant``)."""
    head, _, _ = tag.rpartition("-")
    if len(head) > 1 and head[-2] == "-":
        head = head[:-2]
    return head
