"""``GET /_mwm/status`` on the public listener: the status document for frontends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from controller.timefmt import parse_rfc3339
from proxy.publicstatus import Cors
from proxy.settings import SettingsError, load_settings
from tests.conftest import BYPASS_TOKEN, ProxyFactory, RunningProxy, echo_app

STATUS = "/_mwm/status"
KEYS = {"active", "reason", "since", "until", "retryAfter", "nextWindow", "scope", "routes"}
CORS_HEADERS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Methods",
    "Access-Control-Max-Age",
    "Access-Control-Expose-Headers",
)


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    """The suite's echoing upstream (``start_proxy`` needs it; tests/proxy has another)."""
    server = TestServer(echo_app(), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def get(
    proxy: RunningProxy, path: str = STATUS, method: str = "GET", **headers: str
) -> tuple[int, CIMultiDict[str], bytes]:
    async with proxy.session.request(
        method, f"{proxy.public_url}{path}", headers=headers, allow_redirects=False
    ) as response:
        return response.status, CIMultiDict(response.headers), await response.read()


async def status(proxy: RunningProxy, **headers: str) -> dict[str, Any]:
    code, response_headers, body = await get(proxy, **headers)
    assert code == 200, body
    assert response_headers["Content-Type"] == "application/json"
    assert response_headers["Cache-Control"] == "no-cache"
    document: dict[str, Any] = yaml.safe_load(body)
    return document


def write_state(path: Path, spec: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump({"spec": spec}))


async def test_maintenance_off(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    assert await status(proxy) == {
        "active": False,
        "reason": None,
        "since": None,
        "until": None,
        "retryAfter": None,
        "nextWindow": None,
        "scope": None,
        "routes": [],
        "services": [],
    }


async def test_maintenance_on_is_answered_not_blocked(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"MWM_PAGE__RETRY_AFTER_S": "120"})
    await proxy.switch(enabled=True, reason="Upgrading the database")
    document = await status(proxy)
    assert document["active"] is True
    assert document["reason"] == "Upgrading the database"
    assert parse_rfc3339(document["since"])
    assert document["until"] is None
    assert document["retryAfter"] == 120
    code, _, _ = await get(proxy, method="HEAD")
    assert code == 200
    code, _, _ = await get(proxy, "/anything")
    assert code == 503


async def test_maintenance_with_until(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True, reason="Upgrade", until="2999-01-01T10:00:00Z")
    document = await status(proxy)
    assert document["active"] is True
    assert parse_rfc3339(document["until"]) == parse_rfc3339("2999-01-01T10:00:00Z")
    assert document["retryAfter"] is None  # the page sends the date then


async def test_a_window_ahead_is_announced(start_proxy: ProxyFactory, tmp_path: Path) -> None:
    state_file = tmp_path / "state.yaml"
    window = {"start": "2998-01-01T00:00:00Z", "end": "2998-01-01T02:00:00Z", "reason": "DB"}
    later = {"start": "2999-01-01T00:00:00Z", "end": "2999-01-01T02:00:00Z"}
    write_state(state_file, {"windows": [later, window]})
    proxy = await start_proxy({"MWM_SOURCE__LOCAL__FILE": str(state_file)})
    await proxy.wait_for(lambda state: bool(state.snapshot.windows))
    document = await status(proxy)
    assert document["active"] is False
    upcoming = document["nextWindow"]
    assert parse_rfc3339(upcoming["start"]) == parse_rfc3339(window["start"])
    assert parse_rfc3339(upcoming["end"]) == parse_rfc3339(window["end"])
    assert upcoming["reason"] == "DB"


async def test_the_same_with_a_bypass_token_or_under_the_admin_prefix(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True, reason="Upgrade")
    plain = await get(proxy)
    bypassed = await get(proxy, **{"X-Maintenance-Bypass": BYPASS_TOKEN})
    assert bypassed[0] == plain[0] == 200
    assert bypassed[2] == plain[2]
    # The admin prefix bypasses maintenance, but /_mwm/status is not under it: the same.
    code, _, body = await get(proxy, "/admin/x")
    assert code == 200
    assert yaml.safe_load(body)["path"] == "/admin/x"
    await proxy.switch(enabled=False)
    assert (await get(proxy, **{"X-Maintenance-Bypass": BYPASS_TOKEN}))[0] == 200


async def test_services_only_with_show_services_and_never_more_than_services(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    state_file = tmp_path / "state.yaml"
    down = {
        "name": "checkout",
        "namespace": "shop-internal",
        "critical": True,
        "probe": {
            "tcp": {"host": "127.0.0.1", "port": 1},
            "intervalSeconds": 0.05,
            "timeoutSeconds": 0.5,
            "failureThreshold": 1,
        },
    }
    write_state(state_file, {"services": [down, {"name": "catalog", "namespace": "secret-ns"}]})
    env = {"MWM_SOURCE__LOCAL__FILE": str(state_file)}
    proxy = await start_proxy(env)
    await proxy.wait_for(lambda state: state.maintenance.active, timeout_s=10)
    document = await status(proxy)
    assert set(document) == KEYS | {"services"}
    assert sorted(document["services"], key=lambda s: s["name"]) == [
        {"name": "catalog", "ready": True},
        {"name": "checkout", "ready": False},
    ]
    async with proxy.session.get(f"{proxy.public_url}/services") as response:
        listed = await response.json()
    assert {s["name"] for s in document["services"]} <= {s["name"] for s in listed}
    raw = (await get(proxy))[2].decode()
    for private in ("shop-internal", "secret-ns", "127.0.0.1", "Endpoints", "probe"):
        assert private not in raw

    hidden = await start_proxy({**env, "MWM_PAGE__SHOW_SERVICES": "false"})
    await hidden.wait_for(lambda state: state.maintenance.active, timeout_s=10)
    document = await status(hidden)
    assert set(document) == KEYS
    raw = (await get(hidden))[2].decode()
    assert "checkout" not in raw
    assert "catalog" not in raw

    # /services off: only the affected services the page names, never the others.
    private = await start_proxy({**env, "MWM_MANAGEMENT__PUBLIC_SERVICES_PATH": ""})
    await private.wait_for(lambda state: state.maintenance.active, timeout_s=10)
    assert (await status(private))["services"] == [{"name": "checkout", "ready": False}]


async def test_an_empty_prefix_switches_it_off(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"MWM_STATUS__PREFIX": ""})
    code, _, body = await get(proxy)
    assert code == 200
    assert yaml.safe_load(body)["path"] == STATUS
    await proxy.switch(enabled=True)
    assert (await get(proxy))[0] == 503  # a normal path: blocked like any other


async def test_another_prefix(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"MWM_STATUS__PREFIX": "/.well-known/mwm/"})
    code, _, body = await get(proxy, "/.well-known/mwm/status")
    assert code == 200
    assert yaml.safe_load(body)["active"] is False
    assert yaml.safe_load((await get(proxy))[2])["path"] == STATUS


async def test_etag_and_304(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    _, headers, _ = await get(proxy)
    etag = headers["ETag"]
    code, again, body = await get(proxy, **{"If-None-Match": etag})
    assert code == 304
    assert body == b""
    assert again["ETag"] == etag
    await proxy.switch(enabled=True, reason="Now")
    code, changed, _ = await get(proxy, **{"If-None-Match": etag})
    assert code == 200
    assert changed["ETag"] != etag


async def test_no_cors_headers_by_default(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    _, headers, _ = await get(proxy, Origin="https://shop.example")
    assert not any(name in headers for name in CORS_HEADERS)
    assert "Origin" not in headers.get("Vary", "")
    code, headers, _ = await get(
        proxy,
        method="OPTIONS",
        Origin="https://shop.example",
        **{"Access-Control-Request-Method": "GET"},
    )
    assert code == 204
    assert not any(name in headers for name in CORS_HEADERS)


CORS_ENV = {"MWM_STATUS__CORS_ORIGINS": "https://shop.example,https://www.shop.example"}


async def test_a_listed_origin_is_echoed_exactly(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(CORS_ENV)
    _, headers, _ = await get(proxy, Origin="https://www.shop.example")
    assert headers["Access-Control-Allow-Origin"] == "https://www.shop.example"
    assert headers["Vary"] == "Origin"
    assert headers["Access-Control-Expose-Headers"] == "ETag"


async def test_an_unlisted_origin_gets_no_cors_headers(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(CORS_ENV)
    for origin in ("https://evil.example", "https://shop.example.evil.example", "null"):
        _, headers, _ = await get(proxy, Origin=origin)
        assert not any(name in headers for name in CORS_HEADERS)
        assert headers["Vary"] == "Origin"
    _, headers, _ = await get(proxy)
    assert "Access-Control-Allow-Origin" not in headers


async def test_preflight(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(CORS_ENV)
    await proxy.switch(enabled=True)  # never gated
    code, headers, body = await get(
        proxy,
        method="OPTIONS",
        Origin="https://shop.example",
        **{"Access-Control-Request-Method": "GET"},
    )
    assert code == 204
    assert body == b""
    assert headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert headers["Vary"] == "Origin"
    assert headers["Access-Control-Allow-Methods"] == "GET, HEAD"
    assert int(headers["Access-Control-Max-Age"]) > 0
    code, headers, _ = await get(
        proxy,
        method="OPTIONS",
        Origin="https://evil.example",
        **{"Access-Control-Request-Method": "GET"},
    )
    assert code == 204
    assert "Access-Control-Allow-Origin" not in headers
    code, headers, _ = await get(
        proxy,
        method="OPTIONS",
        Origin="https://shop.example",
        **{"Access-Control-Request-Method": "DELETE"},
    )
    assert "Access-Control-Allow-Methods" not in headers


def test_any_origin() -> None:
    cors = Cors.from_settings(["*"])
    assert cors.headers("https://a.example") == [("Access-Control-Allow-Origin", "*")]
    assert Cors.from_settings([]).headers("https://a.example") == []


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_other_methods_are_a_normal_path(start_proxy: ProxyFactory, method: str) -> None:
    proxy = await start_proxy()
    code, _, body = await get(proxy, method=method)
    assert code == 200
    assert yaml.safe_load(body)["method"] == method


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MWM_STATUS__PREFIX", "_mwm/"),
        ("MWM_STATUS__PREFIX", "/_mwm"),
        ("MWM_STATUS__PREFIX", "/a/../b/"),
        ("MWM_STATUS__CORS_ORIGINS", "https://shop.example/"),
        ("MWM_STATUS__CORS_ORIGINS", "shop.example"),
    ],
)
def test_bad_settings_are_refused(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({variable: value})
    assert refused.value.problems[0].startswith(variable)
