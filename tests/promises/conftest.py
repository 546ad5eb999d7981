"""Fixtures for the promise tests: recording upstreams the proxy is pointed at, both of
aiohttp's request parsers, and (from the Kubernetes tests) ``fake`` (the fake API server)
with ``start_cluster`` (a proxy watching it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import http_parser as parsers
from aiohttp import web_protocol

from tests.kube.clusters import fake, start_cluster  # noqa: F401 (fixtures, shared)
from tests.promises.rawupstream import RawUpstream, start_raw_upstream
from tests.proxy.upstream import Upstream, start_upstream


@pytest.fixture
async def recording_upstream() -> AsyncIterator[Upstream]:
    """A real aiohttp application that records every request it gets (``.requests``)."""
    server = await start_upstream()
    yield server
    await server.close()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[RawUpstream]:
    """A strict raw-socket upstream recording the exact bytes that arrive."""
    server = await start_raw_upstream()
    yield server
    await server.close()


@pytest.fixture(params=["fast-lane", "aiohttp-server"])
def public_server(request: pytest.FixtureRequest) -> str:
    """Every promise that starts mwm in the test's loop holds with the fast lane serving
    what it serves (the default) and with aiohttp's server serving everything (as with
    the access log on): see ``tests/conftest.py``."""
    return str(request.param)


@pytest.fixture(params=["c-parser", "py-parser"])
def http_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with aiohttp's C request parser (llhttp, the default) and again with its
    pure-Python one (used where the extension is unavailable, or with AIOHTTP_NO_EXTENSIONS):
    they differ in what they tolerate, and the promises must hold for both."""
    if request.param == "py-parser":
        monkeypatch.setattr(web_protocol, "HttpRequestParser", parsers.HttpRequestParserPy)
    else:
        assert web_protocol.HttpRequestParser is not parsers.HttpRequestParserPy
    return str(request.param)
