"""The operator dashboard at ``/`` on the management listener (issue 13).

Served by a real running mwm; the page is read as a browser would see it without
JavaScript (parsed HTML, text content), and its headers as a browser would enforce them.
Browser tests of the live script and the switch are in the browser suite; the ids they
rely on are checked here too.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from multidict import CIMultiDict

from controller.snapshot import ManualSwitch, describe_down
from controller.store import SnapshotStore
from proxy.history import TransitionHistory
from tests.conftest import ADMIN_TOKEN, BYPASS_TOKEN, ProxyFactory, RunningProxy

VOID = frozenset({"meta", "input", "br", "hr", "img", "link", "source", "wbr"})


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    children: list[Element | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The text a reader sees, whitespace collapsed."""
        parts = [c if isinstance(c, str) else c.text for c in self.children]
        return " ".join("".join(parts).split())

    def iter(self) -> list[Element]:
        found = [self]
        for child in self.children:
            if isinstance(child, Element):
                found.extend(child.iter())
        return found

    def all(self, tag: str, **attrs: str) -> list[Element]:
        return [
            e
            for e in self.iter()
            if e.tag == tag and all(e.attrs.get(k.rstrip("_")) == v for k, v in attrs.items())
        ]

    def by_id(self, element_id: str) -> Element:
        [found] = [e for e in self.iter() if e.attrs.get("id") == element_id]
        return found

    def has_id(self, element_id: str) -> bool:
        return any(e.attrs.get("id") == element_id for e in self.iter())


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = Element("#document", {})
        self._stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self._stack[-1].children.append(element)
        if tag not in VOID:
            self._stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._stack) - 1, 0, -1):
            if self._stack[depth].tag == tag:
                del self._stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self._stack[-1].children.append(data)


def parse(html: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


@dataclass
class Page:
    status: int
    headers: CIMultiDict[str]
    html: str

    @property
    def dom(self) -> Element:
        return parse(self.html)


async def dashboard(proxy: RunningProxy, method: str = "GET") -> Page:
    async with proxy.session.request(method, f"{proxy.management_url}/") as response:
        return Page(response.status, CIMultiDict(response.headers), await response.text())


def write_state(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"spec": spec}))
    return path


def service_rows(dom: Element) -> dict[str, list[str]]:
    """``namespace/name`` -> the texts of its row's cells."""
    table = dom.by_id("services")
    return {
        str(row.attrs["data-service"]): [c.text for c in row.children if isinstance(c, Element)]
        for row in table.all("tr")
        if "data-service" in row.attrs
    }


def body_rows(dom: Element, table_id: str) -> list[list[str]]:
    [tbody] = dom.by_id(table_id).all("tbody")
    return [[c.text for c in row.children if isinstance(c, Element)] for row in tbody.all("tr")]


DOWN_SERVICE = {
    "name": "checkout",
    "namespace": "shop",
    "critical": True,
    "probe": {
        "tcp": {"host": "127.0.0.1", "port": 1},  # nothing listens: the probe fails
        "intervalSeconds": 0.05,
        "timeoutSeconds": 0.5,
        "failureThreshold": 1,
    },
}


async def test_the_page_shows_state_causes_services_windows_and_transitions(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    ahead = {"start": "2998-01-01T00:00:00Z", "end": "2998-01-01T02:00:00Z", "reason": "DB move"}
    unnamed = {"start": "2999-01-01T00:00:00Z", "end": "2999-01-01T02:00:00Z"}
    past = {"start": "2001-01-01T00:00:00Z", "end": "2001-01-01T02:00:00Z", "reason": "Old"}
    state_file = write_state(
        tmp_path / "state.yaml",
        {
            "services": [DOWN_SERVICE, {"name": "catalog", "namespace": "shop", "critical": False}],
            "windows": [unnamed, past, ahead],
        },
    )
    proxy = await start_proxy({"MWM_SOURCE__LOCAL__FILE": str(state_file)})
    await proxy.wait_for(lambda state: state.maintenance.active, timeout_s=10)
    await proxy.switch(enabled=True, reason="Upgrading the database", until="2997-01-01T10:00:00Z")

    page = await dashboard(proxy)
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    dom = page.dom
    assert dom.by_id("state").text == "Maintenance on"
    causes = [li.text for li in dom.by_id("causes").all("li")]
    assert causes[0].startswith(f"ServiceDown: {describe_down(1)}; since ")
    assert causes[0].endswith("services: checkout")
    assert causes[1].startswith("Manual: Upgrading the database; since ")
    assert causes[1].endswith("; until 2997-01-01 10:00:00 UTC")

    rows = service_rows(dom)
    assert set(rows) == {"shop/checkout", "shop/catalog"}
    name, critical, ready, endpoints, reason, _since, stale = rows["shop/checkout"]
    assert (name, critical, ready, reason, stale) == (
        "shop/checkout",
        "yes",
        "not ready",
        "ProbeFailing",
        "no",
    )
    assert endpoints == "0 / 1 (1)"
    assert rows["shop/catalog"][1:3] == ["no", "ready"]
    [row] = [
        r for r in dom.by_id("services").all("tr") if r.attrs.get("data-service") == "shop/checkout"
    ]
    [ready_cell] = [td for td in row.all("td") if "ready" in str(td.attrs.get("class")).split()]
    assert ready_cell.text == "not ready"

    assert body_rows(dom, "windows") == [
        ["2998-01-01 00:00:00 UTC", "2998-01-01 02:00:00 UTC", "DB move", "upcoming"],
        [
            "2999-01-01 00:00:00 UTC",
            "2999-01-01 02:00:00 UTC",
            "Scheduled maintenance window",
            "upcoming",
        ],
    ]
    [(when, change, summary)] = body_rows(dom, "transitions")
    assert change == "off → on"
    assert summary == f"ServiceDown: {describe_down(1)}"
    assert when.endswith(" UTC")

    await proxy.switch(enabled=False)
    async with proxy.session.get(f"{proxy.management_url}/status") as response:
        windows = (await response.json())["windows"]
    assert [w["reason"] for w in windows] == ["Old", "DB move", None]  # every one, in order


async def test_transitions_are_recorded_in_order_and_bounded(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"MWM_MANAGEMENT__HISTORY_SIZE": "3"})
    page = await dashboard(proxy)
    assert body_rows(page.dom, "transitions") == [["No transition since this process started."]]
    for reason in ("first", "second"):
        await proxy.switch(enabled=True, reason=reason)
        await proxy.switch(enabled=True, reason=reason + " again")  # on -> on: no transition
        await proxy.switch(enabled=False)
    rows = body_rows((await dashboard(proxy)).dom, "transitions")
    assert [(change, summary) for _, change, summary in rows] == [
        ("on → off", "ended: Manual: second again"),
        ("off → on", "Manual: second"),
        ("on → off", "ended: Manual: first again"),
    ]


def test_the_history_keeps_the_newest_transitions_newest_first() -> None:
    store = SnapshotStore()
    history = TransitionHistory(2, initial=store.current)
    store.add_listener(history.record)
    for index in range(3):
        store.set_switch(ManualSwitch(source="t", enabled=True, reason=f"r{index}"))
        store.set_switch(ManualSwitch(source="t", enabled=False))
    entries = history.entries()
    assert [(e.before, e.after, e.summary) for e in entries] == [
        ("on", "off", "ended: Manual: r2"),
        ("off", "on", "Manual: r2"),
    ]
    assert entries[0].at >= entries[1].at
    with pytest.raises(ValueError, match="size"):
        TransitionHistory(0)


async def test_hostile_reasons_are_shown_as_text(start_proxy: ProxyFactory, tmp_path: Path) -> None:
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    window = {"start": "2998-01-01T00:00:00Z", "end": "2998-01-01T02:00:00Z", "reason": hostile}
    state_file = write_state(tmp_path / "state.yaml", {"windows": [window]})
    proxy = await start_proxy({"MWM_SOURCE__LOCAL__FILE": str(state_file)})
    await proxy.wait_for(lambda state: bool(state.snapshot.windows))
    await proxy.switch(enabled=True, reason=hostile)
    page = await dashboard(proxy)
    assert "<script>alert" not in page.html
    assert "<img" not in page.html
    dom = page.dom
    assert len(dom.all("script")) == 1  # the dashboard's own
    assert dom.all("img") == []
    assert dom.by_id("causes").text.startswith(f"Manual: {hostile}")
    assert body_rows(dom, "windows")[0][2] == hostile
    assert hostile in body_rows(dom, "transitions")[0][2]


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _directives(csp: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in csp.split(";")) if d}


async def test_headers_no_store_and_a_csp_that_allows_exactly_the_inline_code(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    page = await dashboard(proxy)
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Server"] == "mwm"
    csp = _directives(page.headers["Content-Security-Policy"])
    scripts = re.findall(r"<script>(.*?)</script>", page.html, re.DOTALL)
    styles = re.findall(r"<style>(.*?)</style>", page.html, re.DOTALL)
    assert len(scripts) == len(styles) == 1
    assert csp["script-src"] == [_hash(scripts[0])]
    assert csp["style-src"] == [_hash(styles[0])]
    assert csp["default-src"] == ["'none'"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["form-action"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    # No inline event handlers or style attributes, which the policy would block.
    assert not re.search(r"\s(on[a-z]+|style)=", page.html)
    head = await dashboard(proxy, "HEAD")
    assert head.status == 200
    assert head.html == ""
    assert head.headers["Content-Security-Policy"] == page.headers["Content-Security-Policy"]


async def test_the_hooks_and_the_switch_form_without_javascript(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    page = await dashboard(proxy)
    dom = page.dom
    for hook in ("state", "causes", "services", "windows", "transitions", "switch-result"):
        assert dom.has_id(hook), hook
    assert ADMIN_TOKEN not in page.html
    form = dom.by_id("switch")
    assert form.tag == "form"
    assert form.attrs.get("method") == "post"
    assert "action" not in form.attrs  # a submission without the script goes to / (405)
    assert "hidden" in form.attrs  # shown by the script; without it the page is read-only
    [noscript] = dom.all("noscript")
    assert "read-only" in noscript.text
    token = dom.by_id("token")
    assert (token.attrs["type"], token.attrs["autocomplete"]) == ("password", "off")
    assert dom.by_id("until").attrs["type"] == "datetime-local"
    assert dom.by_id("switch-result").attrs["role"] == "status"
    for control in form.all("input"):
        assert "name" not in control.attrs  # a form post would carry nothing
        [label] = dom.all("label", for_=str(control.attrs["id"]))
        assert label.text
    assert {b.attrs["id"] for b in form.all("button")} == {"switch-on", "switch-off"}
    assert all(b.attrs["type"] == "button" for b in form.all("button"))
    async with proxy.session.post(f"{proxy.management_url}/", data={"x": "1"}) as response:
        assert response.status == 405


async def test_without_an_admin_token_the_page_says_the_admin_api_is_disabled(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy({"MWM_MANAGEMENT__ADMIN_TOKEN": ""})
    dom = (await dashboard(proxy)).dom
    assert not dom.has_id("switch")
    assert not dom.has_id("token")
    text = dom.by_id("switch-disabled").text
    assert "admin API is disabled" in text
    assert "MWM_MANAGEMENT__ADMIN_TOKEN" in text


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"enabled=true&reason=pwned", id="form-urlencoded"),
        pytest.param(b'{"enabled": true}', id="json-text-plain"),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_a_cross_site_request_without_the_header_cannot_switch(
    start_proxy: ProxyFactory, method: str, body: bytes
) -> None:
    """What a hostile page can send: a form or ``fetch`` with cookies but no Authorization."""
    proxy = await start_proxy()
    headers = {
        "Origin": "https://evil.example",
        "Referer": "https://evil.example/x",
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"token={ADMIN_TOKEN}; admin_token={ADMIN_TOKEN}; Authorization=Bearer",
    }
    async with proxy.session.request(
        method, f"{proxy.management_url}/api/maintenance", data=body, headers=headers
    ) as response:
        assert response.status == 401
    assert proxy.runtime.store.current.maintenance.active is False


async def test_bypass_counts_are_shown(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True)
    for _ in range(2):
        async with proxy.session.get(
            f"{proxy.public_url}/", headers={"X-Maintenance-Bypass": BYPASS_TOKEN}
        ) as response:
            assert response.status == 200
    dom = (await dashboard(proxy)).dom
    assert body_rows(dom, "bypass") == [["token", "2"], ["bypass cookies issued", "0"]]
    assert "counted by this process" in dom.by_id("bypass").text
    assert BYPASS_TOKEN not in (await dashboard(proxy)).html


BROKEN_TEMPLATES = [
    pytest.param("{% if %}", id="syntax-error"),
    pytest.param("{{ no_such_variable }}", id="unknown-variable"),
    pytest.param("{{ 1 / 0 }}", id="raises"),
    pytest.param('{% include "missing.html" %}', id="missing-include"),
]


@pytest.mark.parametrize("template", BROKEN_TEMPLATES)
async def test_a_broken_override_falls_back_to_the_built_in_dashboard(
    start_proxy: ProxyFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    template: str,
) -> None:
    (tmp_path / "dashboard.html").write_text(template, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="proxy"):
        proxy = await start_proxy({"MWM_PAGE__TEMPLATE_DIR": str(tmp_path)})
        for _ in range(2):
            page = await dashboard(proxy)
            assert page.status == 200
            assert page.dom.by_id("state").text == "Maintenance off"
    problems = [r.getMessage() for r in caplog.records if "dashboard.html" in r.getMessage()]
    assert len(problems) == 2, problems  # at start-up, and once when first served
    assert all(f"(override dir {tmp_path})" in p for p in problems)


async def test_a_working_override_is_served_with_its_own_hashes(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    (tmp_path / "dashboard.html").write_text(
        "<!doctype html><title>ops</title><style>p{color:red}</style>"
        '<p id="state">{{ "on" if state.active else "off" }} #{{ generation }}</p>'
        "<script>document.title = 'x';</script><script>void 0;</script>\n",
        encoding="utf-8",
    )
    proxy = await start_proxy({"MWM_PAGE__TEMPLATE_DIR": str(tmp_path)})
    page = await dashboard(proxy)
    assert page.dom.by_id("state").text.startswith("off #")
    csp = _directives(page.headers["Content-Security-Policy"])
    assert csp["script-src"] == [_hash("document.title = 'x';"), _hash("void 0;")]
    assert csp["style-src"] == [_hash("p{color:red}")]


async def test_the_admin_token_never_appears_in_the_page_or_the_logs(
    start_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    with caplog.at_level(logging.DEBUG):
        proxy = await start_proxy({"MWM_LOG__ACCESS_LOG": "true"})
        await proxy.switch(enabled=True, reason="r", until=until)
        page = await dashboard(proxy)
    assert ADMIN_TOKEN not in page.html
    assert ADMIN_TOKEN not in caplog.text


async def test_a_cause_shows_its_scope(start_proxy: ProxyFactory, tmp_path: Path) -> None:
    payments = {
        **DOWN_SERVICE,
        "name": "payments",
        "mode": "readOnly",
        "routes": [{"pathPrefix": "/checkout", "methods": ["POST"]}, {"pathPrefix": "/api/pay"}],
    }
    state_file = write_state(tmp_path / "state.yaml", {"services": [payments]})
    proxy = await start_proxy({"MWM_SOURCE__LOCAL__FILE": str(state_file)})
    await proxy.wait_for(lambda state: state.maintenance.active, timeout_s=10)
    page = await dashboard(proxy)
    (cause,) = [li.text for li in page.dom.by_id("causes").all("li")]
    assert cause.endswith("; writes only; routes: /checkout (POST), /api/pay"), cause
