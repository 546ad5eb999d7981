"""The operator dashboard at ``/`` on the management listener, in a real browser."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page

from tests.browser.conftest import (
    HEALTHY,
    axe_violations,
    describe,
    probed_state_file,
    screenshot,
)
from tests.conftest import ADMIN_TOKEN, ProxyFactory, RunningProxy

ROW = "tr[data-service$='/shop'] td.ready"


async def open_dashboard(proxy: RunningProxy, browser: Browser) -> Page:
    page = await (await browser.new_context()).new_page()
    response = await page.goto(f"{proxy.management_url}/")
    assert response is not None
    assert response.status == 200
    await page.wait_for_selector("html[data-mwm-live]", state="attached")
    return page


async def test_the_dashboard_follows_a_service_down_and_up_without_a_reload(
    start_proxy: ProxyFactory, browser: Browser, upstream: TestServer, tmp_path: Path
) -> None:
    proxy = await start_proxy(
        {"MWM_SOURCE__LOCAL__FILE": str(probed_state_file(tmp_path, upstream))}
    )
    await proxy.wait_for(lambda s: any(svc.ready for svc in s.snapshot.services), timeout_s=10)
    page = await open_dashboard(proxy, browser)
    await page.evaluate("window.sameDocument = true")
    await page.wait_for_selector(f"{ROW}:text-is('ready')")
    upstream.app[HEALTHY][0] = False
    await page.wait_for_selector(f"{ROW}:text-is('not ready')", timeout=10_000)
    await page.wait_for_selector("#state:has-text('Maintenance on')")
    await screenshot(page, "dashboard-service-down")
    upstream.app[HEALTHY][0] = True
    await page.wait_for_selector(f"{ROW}:text-is('ready')", timeout=10_000)
    await page.wait_for_selector("#state:has-text('Maintenance off')")
    assert await page.evaluate("window.sameDocument") is True  # never reloaded


async def test_the_dashboard_switch_needs_the_token(
    start_proxy: ProxyFactory, browser: Browser
) -> None:
    proxy = await start_proxy()
    page = await open_dashboard(proxy, browser)
    await page.fill("#token", "not-the-admin-token")
    await page.fill("#reason", "Upgrading the database")
    await page.click("#switch-on")
    await page.wait_for_selector("#switch-result:not(:empty)")
    assert not proxy.runtime.store.current.maintenance.active
    await page.fill("#token", ADMIN_TOKEN)
    await page.click("#switch-on")
    await proxy.wait_for(lambda s: s.maintenance.active)
    await page.wait_for_selector("#state:has-text('Maintenance on')")
    assert "Upgrading the database" in await page.inner_text("#causes")
    await screenshot(page, "dashboard-maintenance-on")
    await page.click("#switch-off")
    await proxy.wait_for(lambda s: not s.maintenance.active)
    await page.wait_for_selector("#state:has-text('Maintenance off')")
    assert ADMIN_TOKEN not in page.url


async def test_the_dashboard_has_no_accessibility_violation(
    start_proxy: ProxyFactory, browser: Browser, upstream: TestServer, tmp_path: Path
) -> None:
    proxy = await start_proxy(
        {"MWM_SOURCE__LOCAL__FILE": str(probed_state_file(tmp_path, upstream))}
    )
    await proxy.switch(enabled=True, reason="Upgrading the database")
    page = await open_dashboard(proxy, browser)
    violations = await axe_violations(page)
    await screenshot(page, "dashboard")
    assert not violations, describe(violations)
