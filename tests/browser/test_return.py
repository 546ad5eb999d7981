"""An open maintenance page brings its visitor back by itself, in the visitor's time zone and
language."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page

from tests.browser.conftest import APP_HEADING, HEALTHY, probed_state_file, screenshot
from tests.conftest import ProxyFactory, RunningProxy

SPREAD_S = 1.0
LIVE = "html[data-mwm-live='stream'], html[data-mwm-live='poll']"


async def open_maintenance_page(proxy: RunningProxy, browser: Browser, **context: object) -> Page:
    page = await (await browser.new_context(**context)).new_page()  # type: ignore[arg-type]
    response = await page.goto(f"{proxy.public_url}/checkout")
    assert response is not None
    assert response.status == 503
    await page.wait_for_selector(LIVE, state="attached")
    return page


async def back_at_the_app(page: Page) -> None:
    """The page shows the app within the spread + 2 s (from now: maintenance just ended)."""
    await page.wait_for_selector(f"h1:has-text('{APP_HEADING}')", timeout=(SPREAD_S + 2) * 1000)


async def test_an_open_page_returns_to_the_app_after_mwm_off(
    start_proxy: ProxyFactory, browser: Browser
) -> None:
    proxy = await start_proxy({"MWM_PAGE__RETURN_SPREAD_S": str(SPREAD_S)})
    await proxy.switch(enabled=True, reason="Upgrading the database")
    page = await open_maintenance_page(proxy, browser)
    assert await page.get_attribute("html", "data-mwm-live") == "stream"
    await proxy.switch(enabled=False)
    await proxy.wait_for(lambda state: not state.maintenance.active)
    await back_at_the_app(page)
    assert page.url.endswith("/checkout")


async def test_an_open_page_returns_when_a_probe_recovers(
    start_proxy: ProxyFactory, browser: Browser, upstream: TestServer, tmp_path: Path
) -> None:
    state_file = probed_state_file(tmp_path, upstream)
    upstream.app[HEALTHY][0] = False
    proxy = await start_proxy(
        {"MWM_PAGE__RETURN_SPREAD_S": str(SPREAD_S), "MWM_SOURCE__LOCAL__FILE": str(state_file)}
    )
    await proxy.wait_for(lambda state: state.maintenance.active, timeout_s=10)
    page = await open_maintenance_page(proxy, browser)
    upstream.app[HEALTHY][0] = True
    await proxy.wait_for(lambda state: not state.maintenance.active, timeout_s=10)
    await back_at_the_app(page)


async def test_the_end_is_shown_in_the_visitors_time_zone(
    start_proxy: ProxyFactory, browser: Browser
) -> None:
    proxy = await start_proxy()
    until = (datetime.now(UTC) + timedelta(minutes=25)).replace(second=0, microsecond=0)
    await proxy.switch(enabled=True, reason="Upgrading", until=until.isoformat())
    for zone, locale in (("America/New_York", "en-US"), ("Asia/Tokyo", "en-GB")):
        page = await open_maintenance_page(proxy, browser, timezone_id=zone, locale=locale)
        text = await page.inner_text("#mwm-until")
        local = until.astimezone(ZoneInfo(zone))
        hour = local.hour % 12 or 12 if locale == "en-US" else local.hour
        assert f"{hour}:{local.minute:02d}" in text, (zone, text)
        assert "UTC" not in text, text
        assert "25 minutes" in text or "24 minutes" in text, text
        await screenshot(page, f"maintenance-page-{zone.replace('/', '-')}")


async def test_accept_language_de_gives_the_german_page(
    start_proxy: ProxyFactory, browser: Browser
) -> None:
    proxy = await start_proxy()
    until = (datetime.now(UTC) + timedelta(minutes=25)).isoformat(timespec="seconds")
    await proxy.switch(enabled=True, until=until)
    page = await open_maintenance_page(proxy, browser, locale="de-DE", timezone_id="Europe/Berlin")
    assert await page.get_attribute("html", "lang") == "de"
    text = await page.inner_text("main")
    assert "Wartung" in text, text
    assert "in 25 Minuten" in text or "in 24 Minuten" in text, text
    await screenshot(page, "maintenance-page-de")
