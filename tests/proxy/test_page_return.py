"""The maintenance page brings users back, under a strict Content-Security-Policy.

Promises:

- With the public status prefix on, the HTML maintenance page carries the return script
  and its settings (``#mwm-config``: stream and status URLs under the prefix, the spread);
  with the prefix off, no script at all.  Without JavaScript the ``Refresh`` header (on by
  default) brings the page back.
- Every HTML page (maintenance and error) says ``Content-Security-Policy``, whose script
  and style hashes are exactly those of the page's inline elements (recomputed here with
  Python's HTML parser, not with the code under test), also for an operator's template
  with inline code of its own.
- The return script (run by node against fake browser boundaries) reloads once, after a
  random delay within the spread, when a status document says ``active: false``; never on
  a transient stream error; falls back to polling with ``If-None-Match`` and backoff when
  the stream is refused, fails repeatedly or EventSource is missing; marks
  ``data-mwm-live``; and writes the end in the page's language, relative to now.
- People read words, not jargon: no "503" badge, no upstream error text on the pages.

The same behaviour in a real browser is tested with Chromium by the browser tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from controller.snapshot import Cause, CauseKind, Maintenance, Mode, Snapshot
from controller.store import State
from proxy.pages import PageRenderer, RenderedPage
from proxy.settings import PageSettings
from tests.conftest import ProxyFactory, echo_app
from tests.proxy.test_pages import HTML, JSON, NOW, TEXT, down, header, state, text_of, window

HARNESS = Path(__file__).with_name("return_harness.js")
PREFIX = "/_mwm/"


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    """The suite's echoing upstream (``start_proxy`` needs it; tests/proxy has another)."""
    server = TestServer(echo_app(), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def live_renderer(**settings: Any) -> PageRenderer:
    return PageRenderer(PageSettings(**settings), status_prefix=PREFIX)


class _Inline(HTMLParser):
    """The text of every inline <script> and <style>, as a browser's tokenizer reads it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.open: str | None = None
        self.attrs: dict[str, str | None] = {}
        self.found: list[tuple[str, dict[str, str | None], str]] = []
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.open, self.attrs, self._text = tag, dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self.open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self.open == tag:
            self.found.append((tag, self.attrs, "".join(self._text)))
            self.open = None


def inline_elements(html: str) -> list[tuple[str, dict[str, str | None], str]]:
    parser = _Inline()
    parser.feed(html)
    parser.close()
    return parser.found


def sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def csp_directives(page: RenderedPage) -> dict[str, list[str]]:
    value = header(page, "Content-Security-Policy")
    assert value is not None
    directives: dict[str, list[str]] = {}
    for part in value.split(";"):
        name, *sources = part.split()
        assert name not in directives
        directives[name] = sources
    return directives


def assert_csp_allows_exactly_the_inline_code(page: RenderedPage) -> None:
    html = text_of(page)
    elements = inline_elements(html)
    directives = csp_directives(page)
    # A script with src= has no inline text to allow: default-src 'none' refuses it.
    scripts = {
        sha256_source(text)
        for tag, attrs, text in elements
        if tag == "script" and "src" not in attrs
    }
    styles = {sha256_source(text) for tag, _, text in elements if tag == "style"}
    assert set(directives["script-src"]) == (scripts or {"'none'"})
    assert set(directives["style-src"]) == (styles or {"'none'"})
    assert directives["default-src"] == ["'none'"]
    assert directives["connect-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert directives["form-action"] == ["'none'"]


# --- the script and its settings ---------------------------------------------------------


def test_the_page_carries_the_return_script_and_its_settings() -> None:
    page = live_renderer(return_spread_s=7.5).maintenance_page(state(window()), HTML, now=NOW)

    elements = inline_elements(text_of(page))
    scripts = [(attrs, text) for tag, attrs, text in elements if tag == "script"]
    assert [attrs for attrs, _ in scripts] == [
        {"type": "application/json", "id": "mwm-config"},
        {},
    ]
    config = json.loads(scripts[0][1])
    assert config == {
        "stream": "/_mwm/status/stream",
        "status": "/_mwm/status",
        "spread": 7.5,
        "poll": 5,
        "pollMax": 60,
    }
    assert "EventSource" in scripts[1][1]


def test_no_script_when_the_status_prefix_is_off() -> None:
    page = PageRenderer(PageSettings(), status_prefix=None).maintenance_page(
        state(window()), HTML, now=NOW
    )

    assert "<script" not in text_of(page)
    assert csp_directives(page)["script-src"] == ["'none'"]
    assert header(page, "Refresh") == "60"  # pages still come back, without JavaScript


@pytest.mark.parametrize("fmt", [JSON, TEXT], ids=str)
def test_only_the_html_page_has_a_script_and_a_policy(fmt: Any) -> None:
    page = live_renderer().maintenance_page(state(window()), fmt, now=NOW)

    assert b"<script" not in page.body
    assert header(page, "Content-Security-Policy") is None


async def test_the_served_page_follows_the_status_prefix(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"MWM_STATUS__PREFIX": "/.well-known/shop/"})
    await proxy.switch(enabled=True)
    async with proxy.session.get(f"{proxy.public_url}/") as response:
        body = await response.text()
        assert response.status == 503
        assert response.headers["Refresh"] == "60"
    [config] = [text for tag, attrs, text in inline_elements(body) if attrs.get("id")]
    assert json.loads(config)["stream"] == "/.well-known/shop/status/stream"

    off = await start_proxy({"MWM_STATUS__PREFIX": "", "MWM_PAGE__REFRESH_S": "0"})
    await off.switch(enabled=True)
    async with off.session.get(f"{off.public_url}/") as response:
        assert "<script" not in await response.text()
        assert "Refresh" not in response.headers


# --- Content-Security-Policy ----------------------------------------------------------------


@pytest.mark.parametrize("prefix", [PREFIX, None])
@pytest.mark.parametrize("language", ["en", "de"])
def test_csp_hashes_are_those_of_the_maintenance_pages_inline_code(
    prefix: str | None, language: str
) -> None:
    pages = PageRenderer(PageSettings(contact="ops@example.com"), status_prefix=prefix)

    for current in (state(window()), state(down("checkout"))):
        page = pages.maintenance_page(current, HTML, now=NOW, language=language)
        assert_csp_allows_exactly_the_inline_code(page)


@pytest.mark.parametrize("status", [502, 504, 408, 413, 414, 431, 503])
def test_csp_on_error_pages(status: int) -> None:
    page = live_renderer().error_page(status, "upstream refused the connection", HTML, "fr")

    assert_csp_allows_exactly_the_inline_code(page)
    assert csp_directives(page)["script-src"] == ["'none'"]


def test_an_operators_inline_script_and_style_are_allowed_by_hash(tmp_path: Path) -> None:
    (tmp_path / "maintenance.html").write_text(
        "<!doctype html><html><head><style>p { color: red }</style>\n"
        "<STYLE media=print>p { color: black }</STYLE></head><body>\n"
        "<script>document.title = 'x < y';</script><p>{{ title }}</p>\n"
        '<script src="/app.js"></script></body></html>\n',
        encoding="utf-8",
    )
    page = live_renderer(template_dir=tmp_path).maintenance_page(state(window()), HTML, now=NOW)

    assert_csp_allows_exactly_the_inline_code(page)
    directives = csp_directives(page)
    assert sha256_source("document.title = 'x < y';") in directives["script-src"]
    assert len(directives["style-src"]) == 2


# --- words for people ------------------------------------------------------------------------


def test_no_jargon_on_the_maintenance_page() -> None:
    html = text_of(live_renderer().maintenance_page(state(window()), HTML, now=NOW))
    visible = html
    for _, _, code in inline_elements(html):
        visible = visible.replace(code, "")

    assert "503" not in visible
    assert "&middot;" not in html
    assert "This page reloads by itself when we are back." in html


@pytest.mark.parametrize("fmt", [HTML, TEXT], ids=str)
def test_no_upstream_error_text_on_the_error_pages(fmt: Any) -> None:
    page = live_renderer().error_page(502, "upstream refused the connection", fmt)

    assert b"upstream" not in page.body
    assert b"Bad Gateway" not in page.body
    assert b"We could not reach the application behind this page." in page.body


# --- the script itself, run by node -----------------------------------------------------------


def run_script(tmp_path: Path, page: RenderedPage, scenario: str) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the return script, but node is not installed")
        pytest.skip("node is not installed")
    html = tmp_path / "page.html"
    html.write_bytes(page.body)
    done = subprocess.run(
        [node, str(HARNESS), str(html), scenario],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def returning_page(language: str = "en") -> RenderedPage:
    return live_renderer(return_spread_s=5).maintenance_page(
        state(window()), HTML, now=NOW, language=language
    )


def test_the_script_follows_the_stream_and_reloads_once_within_the_spread(
    tmp_path: Path,
) -> None:
    result = run_script(tmp_path, returning_page(), "stream")

    assert result["streamUrl"] == "/_mwm/status/stream"
    assert result["liveAfterOpen"] == "stream"
    assert result["reloadsWhileOn"] == 0
    assert result["closedAfterTransientError"] is False
    assert result["returnMark"] == "pending"
    assert result["reloadDelays"] == [2500]  # Math.random() = 0.5 of a 5 s spread
    assert result["reloads"] == 1  # two "active: false" documents, one reload
    assert result["requests"] == 0


@pytest.mark.parametrize("scenario", ["stream-refused", "no-eventsource"])
def test_the_script_polls_with_etag_and_backoff_without_a_stream(
    tmp_path: Path, scenario: str
) -> None:
    result = run_script(tmp_path, returning_page(), scenario)

    assert result["pollUrl"] == "/_mwm/status"
    assert result["liveAfterPoll"] == "poll"
    assert result["ifNoneMatch"] == '"g7"'
    # 200, 304: the base interval; 503, then a network failure: doubling (jitter x1 here).
    assert result["delays"] == [5000, 5000, 10000, 20000]
    assert result["reloadDelays"] == [2500]
    assert result["reloads"] == 1
    assert result["requests"] == 5


def test_repeated_stream_failures_switch_to_polling(tmp_path: Path) -> None:
    result = run_script(tmp_path, returning_page(), "stream-flaps")

    assert result["closed"] is True
    assert result["polling"] is True
    assert result["reloads"] == 0


def test_without_eventsource_and_xhr_the_page_says_off(tmp_path: Path) -> None:
    result = run_script(tmp_path, returning_page(), "nothing")

    assert result["live"] == "off"


def test_the_end_is_shown_relative_and_in_the_pages_language(tmp_path: Path) -> None:
    german = run_script(tmp_path, returning_page("de"), "nothing")["untilText"]
    english = run_script(tmp_path, returning_page("en"), "nothing")["untilText"]

    # The harness's clock is 21:35 UTC; the window ends at 22:00 UTC.
    assert german.startswith("Freitag, 31. Januar 2025")
    assert german.endswith("(in 25 Minuten)")
    assert english.startswith("Friday, January 31, 2025")
    assert english.endswith("(in 25 minutes)")


def test_the_script_comes_back_when_the_maintenance_no_longer_covers_this_page(
    tmp_path: Path,
) -> None:
    result = run_script(tmp_path, returning_page(), "scoped")

    assert result["reloadsAfter"] == {
        "site": None,
        "route": None,  # /checkout/pay now is under /checkout
        "route-for-get": None,
        "older-document": None,  # no scope: only "active": false counts
        "other-route": "pending",  # /checkouts is another route
    }
    assert result["reloads"] == 1


def test_the_script_comes_back_when_only_writes_remain_stopped(tmp_path: Path) -> None:
    result = run_script(tmp_path, returning_page(), "scoped-writes-only")

    assert result["reloads"] == 1


def test_a_read_only_page_waits_for_the_end(tmp_path: Path) -> None:
    scoped = Maintenance(
        active=True,
        causes=(Cause(kind=CauseKind.MANUAL, reason="Replica swap", mode=Mode.READ_ONLY),),
    )
    page = live_renderer(return_spread_s=5).maintenance_page(
        State(snapshot=Snapshot(), maintenance=scoped, generation=1, changed_at=NOW),
        HTML,
        now=NOW,
    )
    assert b'id="mwm-read-only"' in page.body

    result = run_script(tmp_path, page, "scoped-writes-only")

    assert result["reloads"] == 0
