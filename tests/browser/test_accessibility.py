"""axe-core finds nothing wrong on the pages people see, in light and dark colour schemes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Browser

from bench.servers import free_port
from tests.browser.conftest import axe_violations, describe, screenshot
from tests.conftest import ProxyFactory

SCHEMES = ("light", "dark")


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_the_maintenance_page_has_no_accessibility_violation(
    start_proxy: ProxyFactory, browser: Browser, scheme: str
) -> None:
    proxy = await start_proxy()
    until = (datetime.now(UTC) + timedelta(minutes=25)).isoformat(timespec="seconds")
    await proxy.switch(enabled=True, reason="Upgrading the database", until=until)
    context = await browser.new_context(color_scheme=scheme)  # type: ignore[arg-type]
    page = await context.new_page()
    response = await page.goto(f"{proxy.public_url}/checkout")
    assert response is not None
    assert response.status == 503
    assert "Upgrading the database" in await page.inner_text("main")
    violations = await axe_violations(page)
    await screenshot(page, f"maintenance-page-{scheme}")
    assert not violations, describe(violations)
    await context.close()


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_the_error_page_has_no_accessibility_violation(
    start_proxy: ProxyFactory, browser: Browser, scheme: str
) -> None:
    # An upstream that refuses connections: the visitor gets the 502 error page.
    proxy = await start_proxy({"MWM_UPSTREAM__URL": f"http://127.0.0.1:{free_port()}"})
    context = await browser.new_context(color_scheme=scheme)  # type: ignore[arg-type]
    page = await context.new_page()
    response = await page.goto(f"{proxy.public_url}/")
    assert response is not None
    assert response.status == 502
    violations = await axe_violations(page)
    await screenshot(page, f"error-page-{scheme}")
    assert not violations, describe(violations)
    await context.close()
