"""The 503 and 502/504 pages: what users, API clients, caches and operators see.

Operators write override templates; every way one can be wrong must still give users the
built-in 503 (never a 500), and must be logged once, not once per request.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import jinja2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import escape

from controller.snapshot import (
    Cause,
    CauseKind,
    Maintenance,
    ManualSwitch,
    ServiceReason,
    ServiceState,
    Snapshot,
    describe_down,
)
from controller.store import SnapshotStore, State
from proxy.dashboard import check_template as check_dashboard_template
from proxy.negotiation import PageFormat
from proxy.pages import PageRenderer, RenderedPage, builtin_template_dir
from proxy.settings import ManagementSettings, PageSettings

NOW = datetime(2025, 1, 31, 21, 0, tzinfo=UTC)
UNTIL = datetime(2025, 1, 31, 22, 0, tzinfo=UTC)
HTML, JSON, TEXT = PageFormat.HTML, PageFormat.JSON, PageFormat.TEXT


def down(*services: str, reason: str | None = None) -> Cause:
    return Cause(
        kind=CauseKind.SERVICE_DOWN,
        reason=reason or describe_down(len(services)),
        since=NOW - timedelta(minutes=5),
        services=services,
    )


def window(reason: str = "Database upgrade", *, until: datetime = UNTIL) -> Cause:
    return Cause(kind=CauseKind.WINDOW, reason=reason, since=NOW, until=until)


def state(*causes: Cause, generation: int = 1) -> State:
    return State(
        snapshot=Snapshot(),
        maintenance=Maintenance(active=True, causes=causes),
        generation=generation,
        changed_at=NOW,
    )


def renderer(**settings: Any) -> PageRenderer:
    return PageRenderer(PageSettings(**settings))


def header(page: RenderedPage, name: str) -> str | None:
    values = [v for k, v in page.headers if k.lower() == name.lower()]
    assert len(values) <= 1, f"{name} sent {len(values)} times"
    return values[0] if values else None


def text_of(page: RenderedPage) -> str:
    return page.body.decode("utf-8")


def problem_of(page: RenderedPage) -> dict[str, Any]:
    assert header(page, "Content-Type") == "application/problem+json"
    document = json.loads(page.body)
    assert isinstance(document, dict)
    return document


def page_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "proxy.pages" and r.levelno >= logging.WARNING
    ]


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


# --- what users and clients get -------------------------------------------------------


def test_html_page_is_a_noindex_503_with_reasons_services_end_and_contact() -> None:
    page = renderer(contact="ops@example.com").maintenance_page(
        state(down("checkout"), window()), HTML, now=NOW
    )

    html = text_of(page)
    assert page.status == 503
    assert header(page, "Content-Type") == "text/html; charset=utf-8"
    assert '<meta name="robots" content="noindex">' in html
    assert '<meta charset="utf-8">' in html
    assert '<meta name="viewport"' in html
    assert "<title>Down for maintenance</title>" in html
    assert "We are performing maintenance and will be back shortly." in html
    assert "A critical service is unavailable" in html
    assert "Database upgrade" in html
    assert "<li>checkout</li>" in html
    assert '<a href="mailto:ops@example.com">ops@example.com</a>' in html
    assert "<script" not in html  # works without scripts (no status prefix given here)
    assert "prefers-color-scheme: dark" in html


def test_html_page_shows_a_known_end_as_machine_and_human_time() -> None:
    page = renderer().maintenance_page(state(window()), HTML, now=NOW)

    assert (
        '<time id="mwm-until" datetime="2025-01-31T22:00:00Z">'
        "Friday 31 January 2025, 22:00 UTC</time>" in text_of(page)
    )


def test_html_page_without_contact_has_no_contact_line() -> None:
    html = text_of(renderer().maintenance_page(state(window()), HTML, now=NOW))

    assert "<footer>" not in html


@pytest.mark.parametrize("fmt", list(PageFormat), ids=str)
def test_services_are_hidden_when_show_services_is_off(fmt: PageFormat) -> None:
    page = renderer(show_services=False).maintenance_page(
        state(down("billing-db", reason="Critical systems unavailable")), fmt, now=NOW
    )

    assert "billing-db" not in text_of(page)
    if fmt is JSON:
        assert "services" not in problem_of(page)


def test_json_is_rfc9457_problem_details() -> None:
    page = renderer(contact="https://status.example.com").maintenance_page(
        state(down("checkout", "search"), window()), JSON, now=NOW
    )

    assert page.status == 503
    assert problem_of(page) == {
        "type": "urn:mwm:maintenance",
        "title": "Down for maintenance",
        "status": 503,
        "detail": "2 critical services are unavailable; Database upgrade",
        "retryAfter": 300,
        "until": None,  # the outage has no known end, so neither has the maintenance
        "since": "2025-01-31T20:55:00Z",
        "contact": "https://status.example.com",
        "services": ["checkout", "search"],
        "mode": "full",
        "routes": [],
        "reasons": ["2 critical services are unavailable", "Database upgrade"],
    }


def test_json_with_known_end_gives_until_and_no_retry_seconds() -> None:
    document = problem_of(renderer().maintenance_page(state(window()), JSON, now=NOW))

    assert document["until"] == "2025-01-31T22:00:00Z"
    assert document["retryAfter"] is None
    assert document["services"] == []


def test_text_page() -> None:
    page = renderer(contact="ops@example.com").maintenance_page(
        state(down("checkout"), window()), TEXT, now=NOW
    )

    text = text_of(page)
    assert page.status == 503
    assert header(page, "Content-Type") == "text/plain; charset=utf-8"
    assert text.startswith("Down for maintenance\n")  # words for people, no status code
    assert "  - A critical service is unavailable\n" in text
    assert "  - checkout\n" in text
    assert "Contact: ops@example.com" in text
    assert "<" not in text


# --- headers ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(PageFormat), ids=str)
def test_retry_after_is_the_end_as_imf_fixdate_when_known(fmt: PageFormat) -> None:
    page = renderer().maintenance_page(state(window()), fmt, now=NOW)

    retry_after = header(page, "Retry-After")
    assert retry_after == "Fri, 31 Jan 2025 22:00:00 GMT"
    assert parsedate_to_datetime(retry_after) == UNTIL


def test_retry_after_date_rounds_a_fractional_end_up() -> None:
    until = UNTIL + timedelta(microseconds=250_000)
    page = renderer().maintenance_page(state(window(until=until)), HTML, now=NOW)

    retry_after = header(page, "Retry-After")
    assert retry_after is not None
    assert parsedate_to_datetime(retry_after) == UNTIL + timedelta(seconds=1)


@pytest.mark.parametrize("fmt", list(PageFormat), ids=str)
def test_retry_after_is_configured_seconds_when_end_unknown(fmt: PageFormat) -> None:
    page = renderer(retry_after_s=120).maintenance_page(state(down("checkout")), fmt, now=NOW)

    assert header(page, "Retry-After") == "120"


def test_retry_after_is_seconds_when_the_end_has_already_passed() -> None:
    late = UNTIL + timedelta(seconds=1)
    page = renderer(retry_after_s=60).maintenance_page(state(window()), JSON, now=late)

    assert header(page, "Retry-After") == "60"
    assert problem_of(page)["retryAfter"] == 60


@pytest.mark.parametrize("fmt", list(PageFormat), ids=str)
def test_maintenance_page_is_never_stored_and_varies_on_accept(fmt: PageFormat) -> None:
    page = renderer().maintenance_page(state(window()), fmt, now=NOW)

    assert header(page, "Cache-Control") == "no-store"
    assert header(page, "Vary") == "Accept, Accept-Language"


@pytest.mark.parametrize(("fmt", "expected"), [(HTML, "30"), (JSON, None), (TEXT, None)], ids=str)
def test_refresh_header_only_on_html_when_configured(fmt: PageFormat, expected: str | None) -> None:
    page = renderer(refresh_s=30).maintenance_page(state(window()), fmt, now=NOW)

    assert header(page, "Refresh") == expected


def test_refresh_header_is_on_by_default() -> None:
    page = renderer().maintenance_page(state(window()), HTML, now=NOW)

    assert header(page, "Refresh") == "60"


@pytest.mark.parametrize("off", [0, "0", "", None])
def test_zero_or_empty_refresh_sends_no_refresh_header(off: object) -> None:
    page = renderer(refresh_s=off).maintenance_page(state(window()), HTML, now=NOW)

    assert header(page, "Refresh") is None


# --- escaping -----------------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"
NASTY_SERVICE = 'pay"ments</script><b>'


def test_reason_and_service_names_are_escaped_in_html() -> None:
    page = renderer().maintenance_page(state(down(NASTY_SERVICE, reason=SCRIPT)), HTML, now=NOW)

    html = text_of(page)
    assert SCRIPT not in html
    assert NASTY_SERVICE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "pay&#34;ments&lt;/script&gt;&lt;b&gt;" in html


def test_reason_and_service_names_survive_exactly_in_json() -> None:
    document = problem_of(
        renderer().maintenance_page(state(down(NASTY_SERVICE, reason=SCRIPT)), JSON, now=NOW)
    )

    assert document["detail"] == SCRIPT
    assert document["reasons"] == [SCRIPT]
    assert document["services"] == [NASTY_SERVICE]


def test_configured_texts_are_escaped_and_javascript_contact_is_not_a_link() -> None:
    page = renderer(
        title="<b>Down</b>", message="a & b", contact="javascript:alert(1)"
    ).maintenance_page(state(window()), HTML, now=NOW)

    html = text_of(page)
    assert "<title>&lt;b&gt;Down&lt;/b&gt;</title>" in html
    assert "a &amp; b" in html
    assert 'href="javascript:' not in html


@given(
    reason=st.text(min_size=1, max_size=50),
    service=st.text(min_size=1, max_size=30),
)
def test_any_reason_and_service_name_is_valid_json_and_escaped_html(
    reason: str, service: str
) -> None:
    maintenance = state(down(service, reason=reason))
    pages = renderer()

    document = problem_of(pages.maintenance_page(maintenance, JSON, now=NOW))
    assert document["detail"] == reason
    assert document["services"] == [service]
    html = text_of(pages.maintenance_page(maintenance, HTML, now=NOW))
    assert f"<li>{escape(reason)}</li>" in html
    assert f"<li>{escape(service)}</li>" in html


# --- rendering once -----------------------------------------------------------------


def test_same_generation_returns_the_same_page_object() -> None:
    pages = renderer()
    current = state(window(), generation=7)

    first = pages.maintenance_page(current, HTML, now=NOW)

    assert pages.maintenance_page(current, HTML, now=NOW + timedelta(seconds=5)) is first
    assert pages.maintenance_page(current, JSON, now=NOW) is not first


def test_new_generation_renders_again() -> None:
    pages = renderer()
    first = pages.maintenance_page(state(window("Old reason"), generation=1), HTML, now=NOW)

    second = pages.maintenance_page(state(window("New reason"), generation=2), HTML, now=NOW)

    assert second is not first
    assert "New reason" in text_of(second)
    assert "Old reason" not in text_of(second)


def test_page_follows_the_store() -> None:
    """The real path: a source publishes a snapshot, the store evaluates it, we render."""
    store = SnapshotStore(clock=lambda: NOW)
    pages = renderer()
    current = store.publish(
        Snapshot(
            switches=(ManualSwitch(source="file", enabled=True, reason="Upgrade", until=UNTIL),)
        )
    )

    page = pages.maintenance_page(current, JSON, now=NOW)

    assert problem_of(page)["reasons"] == ["Upgrade"]
    assert header(page, "Retry-After") == "Fri, 31 Jan 2025 22:00:00 GMT"
    after = store.publish(Snapshot(switches=(ManualSwitch(source="file", enabled=True),)))
    assert problem_of(pages.maintenance_page(after, JSON, now=NOW))["reasons"] == [
        "Scheduled maintenance"
    ]


# --- upstream error pages -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "title", "heading"),
    [
        (502, "Bad Gateway", "This site is not answering right now"),
        (504, "Gateway Timeout", "This site is not answering right now"),
    ],
)
def test_error_pages(status: int, title: str, heading: str) -> None:
    pages = renderer()
    reason = "upstream refused the connection"

    html = pages.error_page(status, reason, HTML)
    problem = pages.error_page(status, reason, JSON)
    text = pages.error_page(status, reason, TEXT)

    for page in (html, problem, text):
        assert page.status == status
        assert header(page, "Cache-Control") == "no-store"
        assert header(page, "Vary") == "Accept, Accept-Language"
    # People read what happened in words; the technical reason is for programs and logs.
    assert f"<title>{heading}</title>" in text_of(html)
    assert f"<h1>{heading}</h1>" in text_of(html)
    assert '<meta name="robots" content="noindex">' in text_of(html)
    assert reason not in text_of(html)
    assert title not in text_of(html)
    assert f"Error code: {status}" in text_of(html)
    assert problem_of(problem) == {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": reason,
    }
    assert header(text, "Content-Type") == "text/plain; charset=utf-8"
    assert text_of(text).startswith(f"{heading}\n\n")
    assert reason not in text_of(text)
    assert f"Error code: {status}\n" in text_of(text)


def test_error_page_is_rendered_once() -> None:
    pages = renderer()

    first = pages.error_page(502, "Connection refused", JSON)

    assert pages.error_page(502, "Connection refused", JSON) is first
    assert pages.error_page(502, "Connection reset", JSON) is not first


def test_error_page_escapes_reason() -> None:
    page = renderer().error_page(502, SCRIPT, HTML)

    assert SCRIPT not in text_of(page)
    assert problem_of(renderer().error_page(502, SCRIPT, JSON))["detail"] == SCRIPT


# --- override templates ---------------------------------------------------------------


def test_builtin_templates_are_found_and_pass_check() -> None:
    directory = builtin_template_dir()

    assert (directory / "maintenance.html").is_file()
    assert renderer().check() == []


def test_a_later_check_compiles_no_template_an_earlier_one_compiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``mwm run`` checks the templates in the CLI, then again in the server it starts, in
    # one process: the second check reuses the first's code; a changed file is compiled again.
    overrides = write(tmp_path / "tpl", {"maintenance.txt": "{{ title }}\n"})
    management, page_settings = ManagementSettings(), PageSettings(template_dir=overrides)
    assert renderer(template_dir=overrides).check() == []
    assert check_dashboard_template(management, page_settings) == []
    compiled: list[str] = []
    real = jinja2.Environment.compile

    def compile(env: jinja2.Environment, source: str, name: str, *args: Any) -> Any:
        compiled.append(name)
        return real(env, source, name, *args)

    monkeypatch.setattr(jinja2.Environment, "compile", compile)

    assert renderer(template_dir=overrides).check() == []
    assert check_dashboard_template(management, page_settings) == []
    assert compiled == []

    (overrides / "maintenance.txt").write_text("{{ title }}, again\n")
    pages = renderer(template_dir=overrides)
    assert pages.check() == []
    assert compiled == ["maintenance.txt"]
    assert (
        text_of(pages.maintenance_page(state(), TEXT, now=NOW)) == "Down for maintenance, again\n"
    )


def test_working_override_is_used(tmp_path: Path) -> None:
    overrides = write(
        tmp_path / "tpl",
        {
            "maintenance.html": "<p>Custom: {{ reason }} until {{ until_iso }}</p>\n",
            "maintenance.json": '{"end": {{ until|tojson }}, "services": {{ services|tojson }}}',
        },
    )
    pages = renderer(template_dir=overrides)

    page = pages.maintenance_page(state(window("a <b>")), HTML, now=NOW)

    assert pages.check() == []
    assert text_of(page) == "<p>Custom: a &lt;b&gt; until 2025-01-31T22:00:00Z</p>\n"
    assert problem_of(pages.maintenance_page(state(window()), JSON, now=NOW)) == {
        "end": "2025-01-31T22:00:00Z",
        "services": [],
    }
    assert text_of(pages.maintenance_page(state(window()), TEXT, now=NOW)).startswith(
        "Down for maintenance\n"
    )


def test_overriding_only_the_layout_restyles_builtin_pages(tmp_path: Path) -> None:
    overrides = write(
        tmp_path / "tpl",
        {"base.html": "<html><body class=brand>{% block content %}{% endblock %}</body></html>"},
    )
    pages = renderer(template_dir=overrides)

    html = text_of(pages.maintenance_page(state(window()), HTML, now=NOW))
    error = text_of(pages.error_page(504, "slow", HTML))

    assert html.startswith("<html><body class=brand>")
    assert "Database upgrade" in html
    assert error.startswith("<html><body class=brand>")


BROKEN = [
    pytest.param("<p>\n{% if reason %}\n{{ reason }\n", id="syntax-error"),
    pytest.param("<p>{{ reason }}</p>\n<p>{{ no_such_variable }}</p>\n", id="undefined-variable"),
    pytest.param("<p>{{ status // 0 }}</p>\n", id="raises-while-rendering"),
    pytest.param('{% include "missing-partial.html" %}\n', id="missing-include"),
    pytest.param('{% extends "missing-layout.html" %}\n', id="missing-layout"),
]


@pytest.mark.parametrize("template", BROKEN)
def test_broken_override_serves_builtin_503_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, template: str
) -> None:
    overrides = write(tmp_path / "tpl", {"maintenance.html": template})
    pages = renderer(template_dir=overrides)
    builtin = renderer()
    caplog.set_level(logging.WARNING, logger="proxy.pages")

    served = [
        pages.maintenance_page(state(window(), generation=g), HTML, now=NOW) for g in (1, 1, 2, 3)
    ]

    expected = builtin.maintenance_page(state(window()), HTML, now=NOW)
    for page in served:
        assert page.status == 503
        assert page.body == expected.body
        assert page.headers == expected.headers
    warnings = page_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "maintenance.html" in warnings[0]
    assert "built-in" in warnings[0]


def test_broken_html_override_does_not_affect_working_json_override(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overrides = write(
        tmp_path / "tpl",
        {
            "maintenance.html": "{{ reason }\n",
            "maintenance.json": '{"custom": true, "detail": {{ reason|tojson }}}\n',
        },
    )
    pages = renderer(template_dir=overrides)
    caplog.set_level(logging.WARNING, logger="proxy.pages")

    html = pages.maintenance_page(state(window()), HTML, now=NOW)
    problem = pages.maintenance_page(state(window()), JSON, now=NOW)

    assert html.status == 503
    assert html.body == renderer().maintenance_page(state(window()), HTML, now=NOW).body
    assert problem_of(problem) == {"custom": True, "detail": "Database upgrade"}
    assert len(page_warnings(caplog)) == 1


def test_override_producing_invalid_json_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overrides = write(tmp_path / "tpl", {"maintenance.json": '{"detail": "{{ reason }}"}\n'})
    pages = renderer(template_dir=overrides)
    caplog.set_level(logging.WARNING, logger="proxy.pages")

    page = pages.maintenance_page(state(window('say "hi"')), JSON, now=NOW)

    assert problem_of(page)["detail"] == 'say "hi"'
    assert problem_of(page)["type"] == "urn:mwm:maintenance"
    [warning] = page_warnings(caplog)
    assert "not valid JSON" in warning


def test_broken_error_override_still_serves_the_error_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overrides = write(tmp_path / "tpl", {"error.txt": "{{ nope }}\n"})
    pages = renderer(template_dir=overrides)
    caplog.set_level(logging.WARNING, logger="proxy.pages")

    page = pages.error_page(504, "too slow", TEXT)

    assert page.status == 504
    assert text_of(page).startswith("This site is not answering right now\n")
    assert len(page_warnings(caplog)) == 1


def test_check_reports_every_broken_override_with_file_and_line(tmp_path: Path) -> None:
    overrides = write(
        tmp_path / "tpl",
        {
            "maintenance.html": "<h1>{{ title }}</h1>\n<p>\n{{ reason }\n",
            "maintenance.json": '{\n  "x": {{ undefined_thing|tojson }}\n}\n',
            "maintenance.txt": "{{ title }}\n{% if until %}{{ until.nope }}{% endif %}\n",
            "error.txt": "ok\n\n\n{{ status // 0 }}\n",
            "error.json": '{"detail": "{{ reason }}", }\n',
        },
    )

    problems = renderer(template_dir=overrides).check()

    origin = f"(override dir {overrides.resolve()})"
    assert len(problems) == 5, problems
    html, json_, txt, error_json, error_txt = sorted(problems, key=_template_order)
    assert html.startswith(f"template maintenance.html {origin}: line 3: ")
    assert json_.startswith(f"template maintenance.json {origin}: line 2: ")
    assert "undefined_thing" in json_
    # only fails when an end is known: check() renders that case too
    assert txt.startswith(f"template maintenance.txt {origin}: line 2: ")
    assert error_json.startswith(f"template error.json {origin}: output is not valid JSON")
    assert error_txt.startswith(f"template error.txt {origin}: line 4: ZeroDivisionError")


def _template_order(problem: str) -> int:
    order = ["maintenance.html", "maintenance.json", "maintenance.txt", "error.json", "error.txt"]
    return next(i for i, name in enumerate(order) if f"template {name} " in problem)


def test_check_names_the_broken_layout_not_the_page(tmp_path: Path) -> None:
    overrides = write(tmp_path / "tpl", {"base.html": "<html>\n{% block content %}\n"})

    problems = renderer(template_dir=overrides).check()

    assert len(problems) == 1, problems
    assert problems[0].startswith(
        f"template base.html (override dir {overrides.resolve()}): line 2: "
    )


def test_check_reports_a_missing_override_dir(tmp_path: Path) -> None:
    problems = renderer(template_dir=tmp_path / "nope").check()

    assert problems == [
        f"MWM_PAGE__TEMPLATE_DIR: {(tmp_path / 'nope').resolve()} is not a directory"
    ]


def test_problems_found_by_check_are_not_logged_again_when_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overrides = write(tmp_path / "tpl", {"maintenance.html": "{{ oops }}"})
    pages = renderer(template_dir=overrides)
    caplog.set_level(logging.WARNING, logger="proxy.pages")

    assert len(pages.check()) == 1
    page = pages.maintenance_page(state(window()), HTML, now=NOW)

    assert page.status == 503
    assert page_warnings(caplog) == []


def test_missing_builtin_templates_still_give_a_503(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pages = PageRenderer(PageSettings(), builtin_dir=tmp_path)
    caplog.set_level(logging.WARNING, logger="proxy.pages")

    first = pages.maintenance_page(state(window(), generation=1), HTML, now=NOW)
    pages.maintenance_page(state(window(), generation=2), HTML, now=NOW)

    assert first.status == 503
    assert text_of(first) == "503 Down for maintenance\n"
    assert header(first, "Retry-After") == "Fri, 31 Jan 2025 22:00:00 GMT"
    assert len(page_warnings(caplog)) == 1
    assert pages.check()[0] == f"template maintenance.html: not found in {tmp_path.resolve()}"


@pytest.mark.parametrize("fmt", [HTML, JSON, TEXT])
def test_hidden_service_names_do_not_leak_through_the_reason(fmt: PageFormat) -> None:
    snapshot = Snapshot(
        services=(
            ServiceState(
                name="secret-db",
                namespace="prod",
                critical=True,
                ready_endpoints=0,
                total_endpoints=2,
                reason=ServiceReason.NO_READY_ENDPOINTS,
            ),
        )
    )
    store = SnapshotStore(clock=lambda: NOW)
    published = store.publish(snapshot)
    assert published.maintenance.active
    page = renderer(show_services=False).maintenance_page(published, fmt, now=NOW)
    assert page.status == 503
    assert b"secret-db" not in page.body
    assert b"prod" not in page.body


def test_json_page_times_are_utc_with_z_and_whole_seconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    until = datetime(2025, 2, 1, 0, 0, 0, 250_000, tzinfo=plus_two)
    document = problem_of(renderer().maintenance_page(state(window(until=until)), JSON, now=NOW))
    assert document["until"] == "2025-01-31T22:00:00Z"
