"""Content negotiation: browsers get HTML, API clients JSON, scripts asking for it text.

The Accept strings are the ones real clients send; the rest are the edge cases of
RFC 9110 §12.5.1 (weights, q=0, wildcards) and headers a client got wrong.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.negotiation import PageFormat, negotiate

HTML, JSON, TEXT = PageFormat.HTML, PageFormat.JSON, PageFormat.TEXT

CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
CHROME_IMAGE = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"

CASES = [
    pytest.param(CHROME, HTML, id="chrome-navigation"),
    pytest.param(FIREFOX, HTML, id="firefox-navigation"),
    pytest.param(CHROME_IMAGE, HTML, id="chrome-image-request-falls-to-html"),
    pytest.param("*/*", HTML, id="curl-default-any"),
    pytest.param("application/json", JSON, id="json"),
    pytest.param("application/problem+json", JSON, id="problem-json"),
    pytest.param("application/vnd.api+json", JSON, id="structured-suffix-json"),
    pytest.param("application/json, text/plain, */*", JSON, id="axios-default"),
    pytest.param("application/json, text/javascript, */*; q=0.01", JSON, id="jquery-getjson"),
    pytest.param("APPLICATION/JSON", JSON, id="media-type-case-insensitive"),
    pytest.param("text/plain", TEXT, id="text-plain"),
    pytest.param("text/*", HTML, id="text-wildcard-prefers-html"),
    pytest.param("text/*;q=0.5, text/plain", TEXT, id="exact-beats-wildcard"),
    pytest.param("text/plain;q=0.9, text/html;q=0.5", TEXT, id="higher-weight-wins"),
    pytest.param("application/json;q=0.5, text/html;q=0.5", HTML, id="weight-tie-html-first"),
    pytest.param("application/json;q=0.5, text/*;q=0.5", JSON, id="weight-tie-specific-first"),
    pytest.param("text/html;level=1;q=0.2, application/json;q=0.3", JSON, id="media-params"),
    pytest.param("text/html;q=0, */*", JSON, id="q0-excludes-html"),
    pytest.param("text/html;q=0, application/json;q=0, */*;q=0.5", TEXT, id="q0-excludes-two"),
    pytest.param("application/json;q=0", HTML, id="all-excluded-defaults-to-html"),
    pytest.param("*/*;q=0.1, application/json;q=0", HTML, id="specific-q0-beats-wildcard"),
    pytest.param("application/xml", HTML, id="unsupported-type-defaults-to-html"),
    pytest.param(None, HTML, id="missing"),
    pytest.param("", HTML, id="empty"),
    pytest.param("garbage", HTML, id="garbage"),
    pytest.param(";;;,,,;q=", HTML, id="separators-only"),
    pytest.param("application/json;q=abc, text/plain", TEXT, id="bad-weight-range-ignored"),
    pytest.param("application/json;q=2, text/plain;q=0.5", TEXT, id="weight-above-1-ignored"),
    pytest.param(
        'text/plain;x="a,application/json", text/html;q=0.1',
        TEXT,
        id="comma-inside-quoted-param",
    ),
]


@pytest.mark.parametrize(("accept", "expected"), CASES)
def test_negotiate_picks_format(accept: str | None, expected: PageFormat) -> None:
    assert negotiate(accept) is expected


@pytest.mark.parametrize(("accept", "expected"), CASES)
def test_repeated_header_gets_same_answer(accept: str | None, expected: PageFormat) -> None:
    """The answer for a header is cached; the cached answer must be the same one."""
    assert [negotiate(accept) for _ in range(3)] == [expected] * 3


@given(st.text(max_size=200))
def test_any_header_gets_a_format(accept: str) -> None:
    assert negotiate(accept) in set(PageFormat)
