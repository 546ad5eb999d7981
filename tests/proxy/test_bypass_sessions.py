"""Ending a bypass session (``<cookie_path>/off``) and the bypass URLs' redirect target."""

from __future__ import annotations

from collections.abc import AsyncIterator
from http.cookies import SimpleCookie

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy.settings import SettingsError, load_settings
from tests.conftest import BYPASS_TOKEN, ProxyFactory, RunningProxy, echo_app

BYPASS_URL = f"/_mwm/bypass/{BYPASS_TOKEN}"


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    """The suite's echo application, in front of which ``start_proxy`` starts mwm (this
    directory's ``upstream`` is another application)."""
    server = TestServer(echo_app(), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def _set_cookie(response: aiohttp.ClientResponse) -> SimpleCookie:
    headers = response.headers.getall("Set-Cookie")
    assert len(headers) == 1
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(headers[0])
    assert list(cookie) == ["mwm_bypass"]
    return cookie


def _attributes(cookie: SimpleCookie) -> dict[str, str | bool]:
    morsel = cookie["mwm_bypass"]
    return {k: morsel[k] for k in ("path", "domain", "httponly", "secure", "samesite")}


async def _browser(proxy: RunningProxy) -> aiohttp.ClientSession:
    # unsafe=True: the jar must keep cookies for 127.0.0.1, as a browser would.
    return aiohttp.ClientSession(proxy.public_url, cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_the_off_url_clears_the_cookie_and_the_page_comes_back(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True, reason="Upgrading")
    async with await _browser(proxy) as browser:
        async with browser.get(BYPASS_URL, allow_redirects=False) as response:
            assert response.status == 303
            issued = _set_cookie(response)
        async with browser.get("/page") as response:
            assert response.status == 200  # the bypass session works
        async with browser.get("/_mwm/bypass/off", allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/"
            assert response.headers["Cache-Control"] == "no-store"
            cleared = _set_cookie(response)
            text = await response.text()
        assert BYPASS_TOKEN not in text
        morsel = cleared["mwm_bypass"]
        assert morsel.value == ""
        assert morsel["max-age"] == "0"
        assert "1970" in morsel["expires"]
        assert _attributes(cleared) == _attributes(issued)
        assert not browser.cookie_jar.filter_cookies(proxy.public_url)  # type: ignore[arg-type]
        async with browser.get("/page") as response:
            assert response.status == 503  # the maintenance page again


async def test_delete_on_the_bypass_path_clears_the_cookie(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy()
    await proxy.switch(enabled=True, reason="Upgrading")
    async with await _browser(proxy) as browser:
        async with browser.get(BYPASS_URL, allow_redirects=False) as response:
            issued = _set_cookie(response)
        async with browser.delete("/_mwm/bypass", allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Cache-Control"] == "no-store"
            cleared = _set_cookie(response)
        assert cleared["mwm_bypass"]["max-age"] == "0"
        assert _attributes(cleared) == _attributes(issued)
        async with browser.get("/page") as response:
            assert response.status == 503


async def test_the_off_url_needs_no_cookie_and_no_token(start_proxy: ProxyFactory) -> None:
    """Anyone may drop their own cookie; the answer is the same with or without one."""
    proxy = await start_proxy()
    await proxy.switch(enabled=True, reason="Upgrading")
    url = f"{proxy.public_url}/_mwm/bypass/off"
    async with proxy.session.get(url, allow_redirects=False) as response:
        assert response.status == 303
        assert _set_cookie(response)["mwm_bypass"]["max-age"] == "0"
    async with proxy.session.post(url, allow_redirects=False) as response:
        assert response.status == 503  # only GET: anything else is an ordinary request


async def test_the_redirect_target_is_used_by_both_urls(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"MWM_BYPASS__REDIRECT_TO": "/shop/?preview=1"})
    for method, path in (
        ("GET", BYPASS_URL),
        ("GET", "/_mwm/bypass/off"),
        ("DELETE", "/_mwm/bypass"),
    ):
        async with proxy.session.request(
            method, f"{proxy.public_url}{path}", allow_redirects=False
        ) as response:
            assert response.status == 303, (method, path)
            assert response.headers["Location"] == "/shop/?preview=1"


def test_the_redirect_target_defaults_to_the_root() -> None:
    settings = load_settings({"MWM_UPSTREAM__URL": "http://app:8080"})
    assert settings.bypass.redirect_to == "/"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        "evil.example",
        "javascript:alert(1)",
        "/a b",
        "/a\r\nSet-Cookie: x=1",
        "",
    ],
)
def test_an_off_site_redirect_target_is_refused_at_load(target: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"MWM_UPSTREAM__URL": "http://app:8080", "MWM_BYPASS__REDIRECT_TO": target})
    assert any(p.startswith("MWM_BYPASS__REDIRECT_TO: ") for p in raised.value.problems)


@pytest.mark.parametrize("path", ["/", "//"])
def test_a_cookie_path_of_the_root_is_refused_at_load(path: str) -> None:
    # <path>/off and DELETE <path> would take the app's /off and DELETE / away from it.
    with pytest.raises(SettingsError) as raised:
        load_settings({"MWM_UPSTREAM__URL": "http://app:8080", "MWM_BYPASS__COOKIE_PATH": path})
    assert any(
        p.startswith("MWM_BYPASS__COOKIE_PATH: ") and "/_mwm/bypass" in p
        for p in raised.value.problems
    ), raised.value.problems


def test_a_bypass_token_of_off_is_refused_at_load() -> None:
    # <cookie_path>/off ends a session: the bypass URL of the token "off" could never work.
    with pytest.raises(SettingsError) as raised:
        load_settings({"MWM_UPSTREAM__URL": "http://app:8080", "MWM_BYPASS__TOKEN": "off"})
    assert any(
        p.startswith("MWM_BYPASS__TOKEN: ") and "choose another token" in p
        for p in raised.value.problems
    ), raised.value.problems
