"""The pages speak the visitor's language: ``Accept-Language`` picks one of the catalogs.

Promises:

- Negotiation follows RFC 9110 §12.5.4 with RFC 4647 lookup: weights order the ranges, a
  region falls back to its language (``de-CH`` -> ``de``), ``*`` means the default, ``q=0``
  refuses, anything unknown or malformed gets the default (never an error).
- The German page says ``lang="de"``, ``Content-Language: de`` and German words; every page
  says ``Vary: Accept, Accept-Language``.  problem+json stays English, without
  ``Content-Language``.
- Every text the templates and ``proxy/pages.py`` translate has an entry in every shipped
  catalog (the drift test).
- An operator's ``<template_dir>/locale`` adds a language or rewords ours; the operator's
  own title and message are never translated, our defaults are.
- Pages are rendered once per (generation, format, language).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
from aiohttp.test_utils import TestServer

import proxy.pages
from proxy.catalogs import LOCALE_DIR, catalog_files, missing_translations
from proxy.negotiation import CACHE_SIZE, _language_cached, negotiate_language
from proxy.pages import TRANSLATED_TEXTS, PageRenderer, builtin_template_dir
from proxy.settings import PageSettings, SettingsError, load_settings
from tests.conftest import ProxyFactory, echo_app
from tests.proxy.test_pages import HTML, JSON, NOW, TEXT, down, header, state, text_of, window

AVAILABLE = ("de", "en", "fr")


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    """The suite's echoing upstream (``start_proxy`` needs it; tests/proxy has another)."""
    server = TestServer(echo_app(), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.mark.parametrize(
    ("accept_language", "expected"),
    [
        (None, "en"),
        ("", "en"),
        ("de", "de"),
        ("DE", "de"),
        ("de-CH", "de"),
        ("de-CH-1996", "de"),
        ("fr-CA, de;q=0.9", "fr"),
        ("en;q=0.5, de;q=0.8", "de"),
        ("en-US,en;q=0.9,de;q=0.8", "en"),
        ("es, it", "en"),  # nothing we have: the default
        ("es, fr;q=0.3", "fr"),
        ("*", "en"),
        ("es, *;q=0.5, de;q=0.4", "en"),  # '*' outweighs German: the default
        ("de;q=0, fr;q=0.1", "fr"),  # German refused
        ("de;q=0", "en"),
        ("de;q=2", "en"),  # out of range: ignored
        ("de;q=abc, fr", "fr"),
        ("de;level=1", "en"),  # Accept-Language has no other parameters
        (";;;,,,", "en"),
        ("d\x00e", "en"),
        ("x" * 5000, "en"),
        ("zh-Hant-x-private", "en"),
    ],
)
def test_language_negotiation(accept_language: str | None, expected: str) -> None:
    assert negotiate_language(accept_language, AVAILABLE, "en") == expected


def test_negotiation_remembers_a_bounded_number_of_headers() -> None:
    for n in range(CACHE_SIZE * 2):
        assert negotiate_language(f"de;q=0.{n % 9 + 1}, x-{n}", AVAILABLE, "en") == "de"

    info = _language_cached.cache_info()
    assert info.maxsize == CACHE_SIZE
    assert info.currsize <= CACHE_SIZE
    hits = info.hits
    last = CACHE_SIZE * 2 - 1
    negotiate_language(f"de;q=0.{last % 9 + 1}, x-{last}", AVAILABLE, "en")
    assert _language_cached.cache_info().hits == hits + 1


def test_the_default_language_is_the_fallback() -> None:
    assert negotiate_language("es", AVAILABLE, "de") == "de"
    assert negotiate_language("*", AVAILABLE, "fr") == "fr"


def test_german_page_is_german() -> None:
    pages = PageRenderer(PageSettings(contact="ops@example.com"))
    page = pages.maintenance_page(
        state(down("checkout"), window()), HTML, now=NOW, language=pages.language("de-DE,en;q=0.5")
    )

    html = text_of(page)
    assert '<html lang="de">' in html
    assert header(page, "Content-Language") == "de"
    assert header(page, "Vary") == "Accept, Accept-Language"
    assert "<title>Wartungsarbeiten</title>" in html
    assert "Wir führen gerade Wartungsarbeiten durch" in html
    assert "<li>Ein wichtiger Dienst ist nicht verfügbar</li>" in html
    assert "<li>Database upgrade</li>" in html  # an operator's reason is shown as written
    assert "Fragen?" in html


def test_the_end_is_written_in_the_pages_language_before_the_script_localizes_it() -> None:
    page = PageRenderer(PageSettings()).maintenance_page(
        state(window()), HTML, now=NOW, language="de"
    )

    assert (
        '<time id="mwm-until" datetime="2025-01-31T22:00:00Z">'
        "Freitag, 31. Januar 2025, 22:00 UTC</time>"
    ) in text_of(page)


def test_the_start_up_check_loads_no_calendar_of_another_language(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Babel's calendar data for a language is about 2.5 MiB, kept for the process's life:
    # the check at every start-up must not load it; a page with a window's end in that
    # language does, when it is served.
    calendars: list[str] = []
    real = proxy.pages.format_date

    def format_date(*args: Any, locale: Any, **kwargs: Any) -> str:
        calendars.append(str(locale))
        return real(*args, locale=locale, **kwargs)

    monkeypatch.setattr(proxy.pages, "format_date", format_date)
    pages = PageRenderer(PageSettings())

    assert pages.check() == []
    assert calendars == []

    page = pages.maintenance_page(state(window()), HTML, now=NOW, language="fr")
    assert calendars == ["fr"]
    assert "vendredi 31 janvier 2025, 22:00 UTC" in text_of(page)


def test_french_text_page_and_plural_reason() -> None:
    page = PageRenderer(PageSettings()).maintenance_page(
        state(down("a", "b", "c")), TEXT, now=NOW, language="fr"
    )

    text = text_of(page)
    assert header(page, "Content-Language") == "fr"
    assert text.startswith("En maintenance\n")
    assert "  - 3 services essentiels sont indisponibles\n" in text


def test_problem_json_stays_english_without_content_language() -> None:
    pages = PageRenderer(PageSettings())
    page = pages.maintenance_page(state(down("checkout")), JSON, now=NOW, language="de")

    document = json.loads(page.body)
    assert document["title"] == "Down for maintenance"
    assert document["reasons"] == ["A critical service is unavailable"]
    assert header(page, "Content-Language") is None
    assert header(page, "Vary") == "Accept, Accept-Language"
    assert pages.maintenance_page(state(down("checkout")), JSON, now=NOW, language="fr") is page


def test_german_error_page() -> None:
    page = PageRenderer(PageSettings()).error_page(
        502, "upstream refused the connection", HTML, "de"
    )

    html = text_of(page)
    assert '<html lang="de">' in html
    assert "<h1>Diese Website antwortet gerade nicht</h1>" in html
    assert "upstream refused the connection" not in html
    assert header(page, "Content-Language") == "de"


def test_operator_title_and_message_are_never_translated() -> None:
    pages = PageRenderer(PageSettings(title="Shop closed", message="Back at ten."))
    html = text_of(pages.maintenance_page(state(window()), HTML, now=NOW, language="de"))

    assert "<title>Shop closed</title>" in html
    assert "Back at ten." in html
    assert "Wann wir voraussichtlich zurück sind" in html  # the page's own words are still German


def test_the_default_language_setting_picks_the_page_without_accept_language() -> None:
    pages = PageRenderer(PageSettings(default_language="fr"))

    assert pages.language(None) == "fr"
    assert pages.language("es") == "fr"
    html = text_of(pages.maintenance_page(state(window()), HTML, now=NOW))
    assert '<html lang="fr">' in html


def test_a_default_language_without_a_catalog_is_refused_naming_the_setting() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"MWM_PAGE__DEFAULT_LANGUAGE": "xx"})

    assert "MWM_PAGE__DEFAULT_LANGUAGE" in str(raised.value)
    assert "no catalog for 'xx'" in str(raised.value)


def test_pages_are_rendered_once_per_generation_format_and_language() -> None:
    pages = PageRenderer(PageSettings())
    current = state(window(), generation=1)

    german = pages.maintenance_page(current, HTML, now=NOW, language="de")
    french = pages.maintenance_page(current, HTML, now=NOW, language="fr")

    assert german is not french
    assert pages.maintenance_page(current, HTML, now=NOW, language="de") is german
    assert pages.maintenance_page(current, HTML, now=NOW, language="xx") is (
        pages.maintenance_page(current, HTML, now=NOW, language="en")
    )
    later = state(window(), generation=2)
    assert pages.maintenance_page(later, HTML, now=NOW, language="de") is not german


# --- catalogs ------------------------------------------------------------------------------


def _template_texts() -> set[str]:
    """Every text the built-in templates pass to ``_``/``gettext``/``ngettext``."""
    env = jinja2.Environment(autoescape=True, extensions=["jinja2.ext.i18n"])
    texts: set[str] = set()
    for path in builtin_template_dir().iterdir():
        if not path.is_file():
            continue
        for _, _, message in env.extract_translations(path.read_text(encoding="utf-8")):
            parts = message if isinstance(message, tuple) else (message,)
            texts.update(part for part in parts if part)
    return texts


def test_every_translatable_text_is_in_every_shipped_catalog() -> None:
    wanted = _template_texts() | set(TRANSLATED_TEXTS)
    catalogs = catalog_files(builtin_template_dir())

    assert set(catalogs) == {"de", "fr"}
    assert {"Why", "Down for maintenance"} <= wanted  # the extraction works
    for tag, po in catalogs.items():
        assert missing_translations(po, wanted) == [], f"{tag}: {po} lacks these"


def test_known_reasons_are_the_controllers_words() -> None:
    from controller.kubesource import FAIL_SAFE_REASON

    assert FAIL_SAFE_REASON in TRANSLATED_TEXTS


def _catalog(directory: Path, tag: str, entries: dict[str, str]) -> None:
    folder = directory / LOCALE_DIR / tag / "LC_MESSAGES"
    folder.mkdir(parents=True)
    lines = ['msgid ""', 'msgstr ""', '"Content-Type: text/plain; charset=utf-8\\n"', ""]
    for msgid, msgstr in entries.items():
        lines += [f"msgid {json.dumps(msgid)}", f"msgstr {json.dumps(msgstr)}", ""]
    (folder / "messages.po").write_text("\n".join(lines), encoding="utf-8")


def test_an_operator_catalog_adds_a_language_and_rewords_ours(tmp_path: Path) -> None:
    _catalog(tmp_path, "nl", {"Down for maintenance": "Onderhoud", "Why": "Waarom"})
    _catalog(tmp_path, "de", {"Why": "Weshalb"})
    pages = PageRenderer(PageSettings(template_dir=tmp_path, default_language="nl"))

    assert pages.languages == ("de", "en", "fr", "nl")
    assert pages.check() == []
    assert pages.language("nl-BE") == "nl"
    dutch = text_of(pages.maintenance_page(state(window()), HTML, now=NOW, language="nl"))
    assert '<html lang="nl">' in dutch
    assert "<title>Onderhoud</title>" in dutch
    assert "<h2>Waarom</h2>" in dutch
    assert "When we expect to be back" in dutch  # not in the catalog: English
    german = text_of(pages.maintenance_page(state(window()), HTML, now=NOW, language="de"))
    assert "<h2>Weshalb</h2>" in german
    assert "Wann wir voraussichtlich zurück sind" in german  # ours, kept


def test_a_broken_operator_catalog_is_reported_and_the_others_still_work(tmp_path: Path) -> None:
    folder = tmp_path / LOCALE_DIR / "nl" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "messages.po").write_text("not a catalog\n", encoding="utf-8")
    pages = PageRenderer(PageSettings(template_dir=tmp_path))

    [problem] = pages.check()
    assert problem.startswith(f"catalog {folder / 'messages.po'}: ")
    html = text_of(pages.maintenance_page(state(window()), HTML, now=NOW, language="nl"))
    assert '<html lang="en">' in html  # nl could not be read: the default
    assert "nl" not in pages.languages


def test_a_translation_that_would_not_format_is_left_out_not_a_broken_page(
    tmp_path: Path,
) -> None:
    _catalog(
        tmp_path,
        "de",
        {
            "Error code: %(status)s": "Fehler %(code)s",
            "Why": "Sicher zu 100 %",
            "Questions?": "Na?",
        },
    )
    pages = PageRenderer(PageSettings(template_dir=tmp_path, contact="ops@example.com"))

    problems = pages.check()
    assert len(problems) == 2
    assert all("does not format" in p for p in problems)
    error = text_of(pages.error_page(502, "refused", HTML, "de"))
    assert "Fehlercode: 502" in error  # our translation instead of the broken one
    page = text_of(pages.maintenance_page(state(down("x")), HTML, now=NOW, language="de"))
    assert "<h2>Warum</h2>" in page
    assert "Na?" in page  # the good entry of the same catalog is used


# --- through the public listener -----------------------------------------------------------


async def _page(proxy: Any, **headers: str) -> tuple[int, Any, str]:
    async with proxy.session.get(f"{proxy.public_url}/", headers=headers) as response:
        return response.status, response.headers, await response.text()


async def test_accept_language_picks_the_page_on_the_public_listener(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True)

    code, headers, body = await _page(proxy, **{"Accept-Language": "de-AT, en;q=0.5"})
    assert code == 503
    assert headers["Content-Language"] == "de"
    assert headers["Vary"] == "Accept, Accept-Language"
    assert '<html lang="de">' in body
    assert "Geplante Wartung" in body  # the switch's default reason, translated

    for hostile in ("*;q=nan", "de;q=-1", "\u00e9", ",,", "a" * 9000):
        code, headers, body = await _page(proxy, **{"Accept-Language": hostile})
        assert code == 503, hostile
        assert headers["Content-Language"] == "en"
