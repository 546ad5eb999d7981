"""Hostile text is shown, never run; the admin API needs its token; secrets stay secret.

Reasons reach the public page from people who may hold less power than the site's owner
(whoever can edit the state file, the ServiceChecker or call the admin API), so markup in
them must not become script on the site's origin.  Service names are DNS labels at every
source, so markup cannot get in at all; the renderer escapes them anyway
(``tests/proxy/test_pages.py`` checks names and reasons at the renderer, including a
property test over any text).

Promises:

- A reason with HTML, JavaScript, quotes, ``</title>`` and Jinja syntax, set through the
  local state file (switch or window) or the admin API, is escaped in the HTML page (no
  element of its own, Jinja syntax shown literally, never evaluated), survives exactly in
  the problem+json, ``/status`` and admin API documents (all valid JSON), and the text page
  is marked ``nosniff`` so no browser reads it as HTML.
- A service name with markup in the state file is refused at the source; the page never
  sees it.
- The admin API refuses every method without the token, with a wrong one, with a prefix
  or an extension of it, with another scheme, and with any token in the query string
  (even the right one).  (``tests/test_listeners.py`` has the basic refusals for PUT.)
- The public listener answers only user traffic, ``/services`` and the cookie URL: the
  management documents (``/status``, ``/metrics``, the admin API, probes) are never
  served there; with ``show_services`` off and the public ``/services`` switched off, no
  service name appears on it in any format (``/status`` still lists them for operators).
- No token, cookie secret or upstream credential appears in any response or any log line
  (access log on, level DEBUG), nor in ``mwm check-config``'s output, whatever the
  traffic: the cookie URL, tokens in headers and in query strings, blocked and bypassed
  requests, the admin API.
"""

from __future__ import annotations

import json
import logging
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestServer
from markupsafe import escape

from proxy.logs import JsonFormatter, TextFormatter
from tests.conftest import ADMIN_TOKEN, BYPASS_TOKEN, ProxyFactory, RunningProxy
from tests.promises.rawhttp import RawResponse, exchange, request
from tests.proxy.upstream import Upstream
from tests.test_process import run_cli

HOSTILE = (
    '</title></li><script>alert("mwm")</script><img src=x onerror=alert(1)> '
    "'single' \"double\" & {{ 7*7 }} {% if true %}jinja{% endif %} ${7*7} \u2028end"
)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.scripts: list[list[tuple[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "script":
            self.scripts.append(attrs)


def element_names(html: str) -> set[str]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


OWN_SCRIPTS = [[("type", "application/json"), ("id", "mwm-config")], []]
"""The maintenance page's own script elements: the return script's settings, then the
script (``templates/return.js``)."""


def script_elements(html: str) -> list[list[tuple[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.scripts


async def fetch(proxy: RunningProxy, accept: str, path: str = "/") -> RawResponse:
    [response] = await exchange(proxy.public_port, request("GET", path, [("Accept", accept)]))
    return response


async def management_json(proxy: RunningProxy, path: str) -> Any:
    async with proxy.session.get(
        f"{proxy.management_url}{path}", headers=proxy.admin_headers
    ) as response:
        assert response.status == 200
        return json.loads(await response.read())


async def assert_shown_but_never_run(proxy: RunningProxy, reason: str) -> None:
    html = await fetch(proxy, "text/html")
    assert html.status == 503
    page = html.body.decode()
    assert str(escape(reason)) in page
    assert "img" not in element_names(page)
    assert script_elements(page) == OWN_SCRIPTS  # none from the reason
    assert "{{ 7*7 }}" not in reason or "49" not in page.replace(str(escape(reason)), "")

    problem = await fetch(proxy, "application/json")
    assert problem.header("Content-Type") == "application/problem+json"
    document = problem.json()
    assert reason in document["reasons"]
    assert reason in document["detail"]

    text = await fetch(proxy, "text/plain")
    assert reason in text.body.decode()
    for response in (html, problem, text):
        assert response.header("X-Content-Type-Options") == "nosniff"

    status = await management_json(proxy, "/status")
    assert reason in [cause["reason"] for cause in status["maintenance"]["causes"]]


def write_state(path: Path, spec: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump({"spec": spec}))


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"maintenance": {"enabled": True, "reason": HOSTILE}}, id="file-switch"),
        pytest.param(
            {
                "windows": [
                    {
                        "start": "2000-01-01T00:00:00Z",
                        "end": "2999-01-01T00:00:00Z",
                        "reason": HOSTILE,
                    }
                ]
            },
            id="window",
        ),
    ],
)
async def test_reason_from_the_state_file_is_shown_but_never_run(
    start_proxy: ProxyFactory, tmp_path: Path, spec: dict[str, Any]
) -> None:
    state_file = tmp_path / "state.yaml"
    write_state(state_file, spec)
    proxy = await start_proxy({"MWM_SOURCE__LOCAL__FILE": str(state_file)})
    await proxy.wait_for(lambda state: state.maintenance.active)
    await assert_shown_but_never_run(proxy, HOSTILE)


async def test_reason_from_the_admin_api_is_shown_but_never_run(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True, reason=HOSTILE)
    await assert_shown_but_never_run(proxy, HOSTILE)
    assert (await management_json(proxy, "/api/maintenance"))["switch"]["reason"] == HOSTILE


async def test_service_name_with_markup_is_refused_by_the_state_file(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    state_file = tmp_path / "state.yaml"
    write_state(state_file, {"services": [{"name": "api"}]})
    proxy = await start_proxy(
        {"MWM_SOURCE__LOCAL__FILE": str(state_file), "MWM_SOURCE__LOCAL__RELOAD_INTERVAL_S": "0.01"}
    )
    write_state(state_file, {"services": [{"name": "<script>alert(1)</script>"}]})
    state = await proxy.wait_for(lambda state: bool(state.snapshot.errors))
    assert "spec.services[0].name" in state.snapshot.errors[0]
    assert [s.name for s in state.snapshot.services] == ["api"]
    services = await management_json(proxy, "/services")
    assert [s["name"] for s in services] == ["api"]


METHODS = ["GET", "PUT", "POST", "DELETE"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        pytest.param({}, "", 401, id="no-token"),
        pytest.param({"Authorization": "Bearer"}, "", 401, id="scheme-without-token"),
        pytest.param({"Authorization": "Bearer "}, "", 401, id="empty-token"),
        pytest.param({"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}, "", 401, id="prefix"),
        pytest.param({"Authorization": f"Bearer {ADMIN_TOKEN[:4]}"}, "", 401, id="short-prefix"),
        pytest.param({"Authorization": f"Bearer {ADMIN_TOKEN}0"}, "", 401, id="extended"),
        pytest.param({"Authorization": f"Bearer {ADMIN_TOKEN.upper()}"}, "", 401, id="upper"),
        pytest.param({"Authorization": f"Bearer {BYPASS_TOKEN}"}, "", 401, id="bypass-token"),
        pytest.param({"Authorization": f"Basic {ADMIN_TOKEN}"}, "", 401, id="basic-scheme"),
        pytest.param({"Authorization": ADMIN_TOKEN}, "", 401, id="no-scheme"),
        pytest.param({"X-Admin-Token": ADMIN_TOKEN}, "", 401, id="other-header"),
        pytest.param({}, f"token={ADMIN_TOKEN}", 400, id="query-token"),
        pytest.param({}, f"access_token={ADMIN_TOKEN}", 400, id="query-access-token"),
        pytest.param({}, f"ACCESS_TOKEN={ADMIN_TOKEN}", 400, id="query-access-token-upper"),
        pytest.param(
            {"Authorization": f"Bearer {ADMIN_TOKEN}"},
            f"token={ADMIN_TOKEN}",
            400,
            id="query-token-besides-a-valid-header",
        ),
    ],
)
async def test_admin_api_refuses_without_the_token_in_its_header(
    start_proxy: ProxyFactory, method: str, headers: dict[str, str], query: str, status: int
) -> None:
    proxy = await start_proxy()
    url = f"{proxy.management_url}/api/maintenance" + (f"?{query}" if query else "")
    async with proxy.session.request(
        method, url, headers=headers, json={"enabled": True, "reason": "hijacked"}
    ) as response:
        assert response.status == status
        assert response.content_type == "application/problem+json"
        body = await response.text()
    assert ADMIN_TOKEN not in body
    assert "hijacked" not in body
    assert proxy.runtime.store.current.snapshot.switches == ()


@pytest.mark.parametrize(
    "path", ["/status", "/metrics", "/api/maintenance", "/healthz", "/readyz"], ids=str
)
async def test_public_listener_never_serves_management_documents(
    start_proxy: ProxyFactory, recording_upstream: Upstream, path: str
) -> None:
    proxy = await start_proxy({"MWM_UPSTREAM__URL": recording_upstream.url})
    headers = [("Accept", "application/json"), ("Authorization", f"Bearer {ADMIN_TOKEN}")]
    port = proxy.public_port
    [forwarded] = await exchange(port, request("GET", path, headers))
    assert forwarded.status == 200  # the application's own path, forwarded
    assert [r.path for r in recording_upstream.requests] == [path]

    await proxy.switch(enabled=True)
    [blocked] = await exchange(port, request("GET", path, headers))
    assert blocked.status == 503
    assert blocked.header("Content-Type") == "application/problem+json"


async def test_hidden_service_names_appear_nowhere_on_the_public_listener(
    start_proxy: ProxyFactory, recording_upstream: Upstream, upstream: TestServer, tmp_path: Path
) -> None:
    state_file = tmp_path / "state.yaml"
    # A probe that always fails: the echo server answers 200, the probe expects 204.
    probe = {"http": {"url": str(upstream.make_url("/health")), "expectStatus": [204]}}
    write_state(
        state_file, {"services": [{"name": "billing-db", "critical": True, "probe": probe}]}
    )
    proxy = await start_proxy(
        {
            "MWM_UPSTREAM__URL": recording_upstream.url,
            "MWM_SOURCE__LOCAL__FILE": str(state_file),
            "MWM_PAGE__SHOW_SERVICES": "false",
            "MWM_MANAGEMENT__PUBLIC_SERVICES_PATH": "",
        }
    )
    await proxy.wait_for(lambda state: state.maintenance.active)
    for accept in ("text/html", "application/json", "text/plain"):
        for path in ("/", "/services", "/status"):
            response = await fetch(proxy, accept, path)
            assert response.status == 503
            assert "billing-db" not in response.body.decode()
    assert recording_upstream.requests == []
    status = await management_json(proxy, "/status")  # operators still see it
    assert [s["name"] for s in status["services"]] == ["billing-db"]


SECRET_COOKIE = "cookie-secret-that-must-never-show"
UPSTREAM_PASSWORD = "upstream-password-that-must-never-show"
SECRETS = (ADMIN_TOKEN, BYPASS_TOKEN, SECRET_COOKIE, UPSTREAM_PASSWORD)


def _formatted(records: list[logging.LogRecord]) -> list[str]:
    """Every record as each of our formatters writes it (extras included)."""
    lines = []
    for record in records:
        for formatter in (TextFormatter(), JsonFormatter()):
            lines.append(formatter.format(record))
    return lines


async def test_no_secret_appears_in_any_response_or_log_line(
    start_proxy: ProxyFactory,
    recording_upstream: Upstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream_url = recording_upstream.url.replace("http://", f"http://app:{UPSTREAM_PASSWORD}@")
    proxy = await start_proxy(
        {
            "MWM_UPSTREAM__URL": upstream_url,
            "MWM_BYPASS__COOKIE_SECRET": SECRET_COOKIE,
            "MWM_LOG__ACCESS_LOG": "true",
            "MWM_LOG__LEVEL": "DEBUG",
        }
    )
    public, management = proxy.public_port, proxy.management_port
    admin = ("Authorization", f"Bearer {ADMIN_TOKEN}")
    wire = [
        (public, request("GET", "/shop?q=1", [("Accept", "text/html")])),
        (public, request("GET", f"/_mwm/bypass/{BYPASS_TOKEN}")),
        (management, request("GET", "/status")),
        (management, request("GET", "/services")),
        (management, request("GET", "/metrics")),
        (management, request("GET", "/readyz")),
        (management, request("GET", "/api/maintenance", [admin])),
        (management, request("GET", f"/api/maintenance?token={ADMIN_TOKEN}")),
        (management, request("GET", f"/api/maintenance?access_token={ADMIN_TOKEN}")),
        (management, request("PUT", "/api/maintenance", [admin], body=b'{"enabled": true}')),
        (management, request("GET", "/api/maintenance", [("Authorization", "Bearer wrong")])),
        (public, request("GET", "/shop", [("Accept", "application/json")])),
        (public, request("GET", "/shop", [("Accept", "text/plain")])),
        (public, request("GET", "/shop", [("X-Maintenance-Bypass", BYPASS_TOKEN)])),
        (public, request("GET", f"/shop?token={BYPASS_TOKEN}")),
        (public, request("GET", f"/_mwm/bypass/{BYPASS_TOKEN}")),
        (public, request("GET", "/shop", [("X-Maintenance-Bypass", BYPASS_TOKEN + "\x00")])),
        (management, request("GET", "/status")),
    ]
    exchanges = [(data, await exchange(port, data)) for port, data in wire]
    assert [len(responses) for _, responses in exchanges] == [1] * len(wire)
    answers = [response for _, [response] in exchanges]
    assert {200, 503} <= {a.status for a in answers}
    upstream_saw = [r.headers.get("Authorization") for r in recording_upstream.requests]
    assert all(upstream_saw)  # the upstream credential was used...
    assert upstream_saw

    log_lines = _formatted(caplog.records)
    assert any("GET /shop" in line for line in log_lines)  # the access log ran
    for secret in SECRETS:
        leaks = [line for line in log_lines if secret in line]
        assert leaks == [], f"{secret!r} logged in:\n" + "\n".join(leaks)  # ...never shown
        # A response may only ever echo what its own request carried.
        for data, [response] in exchanges:
            text = f"{response.headers} {response.body.decode('utf-8', 'replace')}"
            assert secret not in text or secret.encode() in data, f"{secret!r} in {text}"


def test_check_config_output_shows_no_upstream_credential() -> None:
    result = run_cli(
        "check-config",
        env={
            "MWM_UPSTREAM__URL": f"http://app:{UPSTREAM_PASSWORD}@127.0.0.1:8000",
            "MWM_BYPASS__TOKEN": BYPASS_TOKEN,
            "MWM_MANAGEMENT__ADMIN_TOKEN": ADMIN_TOKEN,
            "MWM_BYPASS__COOKIE_SECRET": SECRET_COOKIE,
        },
    )
    assert result.returncode == 0, result.stderr
    assert "127.0.0.1:8000" in result.stdout
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
