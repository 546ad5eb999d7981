"""Browser tests: Debian's Chromium, headless, driven by Playwright for Python.

Chromium is the system's (``apt-get install chromium``; ``.ci/run`` installs it), started
through ``executable_path``; Playwright's own browser download is never used.  A missing
Chromium fails these tests, it does not skip them.  axe-core (bundled by
``axe-playwright-python``) checks accessibility.  Screenshots for people to look at go to
``tests/artifacts/`` (ignored by git).

mwm runs in the test's event loop (``start_proxy``) in front of ``upstream``, which here is
a small HTML app, so a page that returns to the app lands on something a browser renders.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = Path(os.environ.get("MWM_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
APP_TITLE = "The shop"
APP_HEADING = "Welcome back to the shop"

# As the machine's own probe starts it: no sandbox as root, nothing that calls home (the
# network here is closed; background connections would be refused many at a time).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


HEALTHY = web.AppKey("healthy", list[bool])
"""``app[HEALTHY][0]``: whether the app's ``/healthz`` answers 200 (else 503)."""


def app() -> web.Application:
    """The app behind mwm: an HTML page on every path, and ``/healthz`` for a probe."""

    async def healthz(request: web.Request) -> web.Response:
        healthy = request.app[HEALTHY][0]
        return web.Response(status=200 if healthy else 503, text="ok" if healthy else "down")

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text=f"<!doctype html><html lang='en'><title>{APP_TITLE}</title>"
            f"<main><h1>{APP_HEADING}</h1><p>{request.path}</p></main></html>",
            content_type="text/html",
        )

    application = web.Application()
    application[HEALTHY] = [True]
    application.router.add_get("/healthz", healthz)
    application.router.add_route("*", "/{tail:.*}", page)
    return application


def probed_state_file(tmp_path: Path, upstream: TestServer) -> Path:
    """A local state file with one critical service, ``shop``, probed at the app's
    ``/healthz`` every second: it turns not ready (and maintenance on) at the first failure."""
    path = tmp_path / "state.yaml"
    path.write_text(
        "spec:\n"
        "  services:\n"
        "    - name: shop\n"
        "      critical: true\n"
        "      probe:\n"
        f"        http: {{url: '{upstream.make_url('/healthz')}', expectStatus: [200]}}\n"
        "        intervalSeconds: 1\n"
        "        timeoutSeconds: 1\n"
        "        failureThreshold: 1\n"
        "        successThreshold: 1\n"
    )
    return path


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    server = TestServer(app(), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: apt-get install chromium "
            "(or set MWM_TEST_CHROMIUM to its path)"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (every rule axe runs by default)."""
    results = await Axe().run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    return violations


def describe(violations: list[dict[str, Any]]) -> str:
    """One line per violation and node, for an assertion message."""
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {node['target']}: {node.get('failureSummary')}"
        for v in violations
        for node in v["nodes"]
    )


async def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG under tests/artifacts/ for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
