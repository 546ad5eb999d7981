"""Fixtures for the Kubernetes tests: a started fake API server and a real client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio.client import ApiClient

from tests.kube.clusters import fake, start_cluster  # noqa: F401 (fixtures, shared)
from tests.kube.fakeapi import FakeKubeAPI


@pytest.fixture
async def fake_kube() -> AsyncIterator[FakeKubeAPI]:
    async with FakeKubeAPI() as server:
        yield server


@pytest.fixture
async def kube_client(fake_kube: FakeKubeAPI) -> AsyncIterator[ApiClient]:
    async with fake_kube.api_client() as client:
        yield client
