"""A running ``mwm`` against the fake API server, and the objects its tests create.

Shared by the Kubernetes tests (``tests/kube``) and the Kubernetes fault promises
(``tests/promises``): each test starts ``mwm`` (the same ``Runtime`` as ``mwm run``) with the
Kubernetes source pointed at the fake, with every delay shrunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from controller.store import State
from tests.conftest import ProxyFactory, RunningProxy
from tests.crd.schema import CRD_PATH
from tests.kube.fakeapi import FakeKubeAPI

NS = "shop"
CRD_NAME = "servicecheckers.maintenance.mamrezb.com"


def checker(name: str = "shop", *, services: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    spec.setdefault("enterDelaySeconds", 0)
    spec.setdefault("exitDelaySeconds", 0)
    return {
        "apiVersion": "maintenance.mamrezb.com/v1alpha1",
        "kind": "ServiceChecker",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"services": services, **spec},
    }


def service(name: str, namespace: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
    }


def switch_configmap(value: str, name: str = "app-config") -> dict[str, Any]:
    """The ConfigMap switch (``MAINTENANCE_MODE``) named ``name``, holding ``value``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS},
        "data": {"MAINTENANCE_MODE": value},
    }


def endpoint_slice(
    service_name: str,
    *,
    ready: int,
    not_ready: int = 0,
    terminating: int = 0,
    namespace: str = NS,
    suffix: str = "a",
    first_pod: int = 0,
) -> dict[str, Any]:
    endpoints = []
    pod = first_pod
    for count, conditions in (
        (ready, {"ready": True}),
        (not_ready, {"ready": False}),
        (terminating, {"ready": True, "terminating": True}),
    ):
        for _ in range(count):
            endpoints.append(
                {
                    "addresses": [f"10.0.0.{pod}"],
                    "conditions": conditions,
                    "targetRef": {"kind": "Pod", "name": f"p{pod}", "uid": f"uid-{pod}"},
                }
            )
            pod += 1
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name}-{suffix}",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
    }


def without_schema(fake: FakeKubeAPI) -> None:
    """Delete the CRD, so nothing checks a ServiceChecker's spec any more: a cluster with an
    older or hand-edited CRD, where the controller's own checks are all there is."""
    fake.delete("customresourcedefinitions", None, CRD_NAME)


def create_critical_api(fake: FakeKubeAPI) -> None:
    """The usual picture: one ServiceChecker naming one critical service, ready 1/1."""
    fake.create(checker(services=[{"name": "api", "critical": True}]))
    fake.create(service("api"))
    fake.create(endpoint_slice("api", ready=1))


@dataclass
class Cluster:
    fake: FakeKubeAPI
    proxy: RunningProxy

    async def wait_for(self, predicate: Any, *, timeout_s: float = 5) -> State:
        return await self.proxy.wait_for(predicate, timeout_s=timeout_s)

    async def status_of(self, name: str = "shop") -> dict[str, Any]:
        obj = self.fake.get("servicecheckers", NS, name)
        assert obj is not None
        return dict(obj.get("status") or {})

    async def wait_for_status(self, predicate: Any, name: str = "shop") -> dict[str, Any]:
        def check() -> bool:
            obj = self.fake.get("servicecheckers", NS, name)
            return obj is not None and bool(predicate(obj.get("status") or {}))

        await self.fake.wait_until(check)
        return await self.status_of(name)

    async def management_json(self, path: str) -> tuple[int, Any]:
        """GET ``path`` on the management listener: (status, parsed JSON body)."""
        url = f"{self.proxy.management_url}{path}"
        async with self.proxy.session.get(url) as response:
            return response.status, await response.json()

    async def get(self, path: str = "/") -> aiohttp.ClientResponse:
        response = await self.proxy.session.get(
            f"{self.proxy.public_url}{path}", headers={"Accept": "application/json"}
        )
        await response.read()
        return response


def maintenance_on(state: State) -> bool:
    return state.maintenance.active


def maintenance_off(state: State) -> bool:
    return state.snapshot.synced and not state.maintenance.active


async def wait_leading(cluster: Cluster, *, leading: bool = True) -> None:
    """Wait (on leadership change events) until this replica leads, or (``leading=False``)
    does not."""
    parts = cluster.proxy.runtime.cluster
    assert parts is not None
    await cluster.fake.wait_until(lambda: parts.leadership is not None)
    assert parts.leadership is not None
    while parts.leadership.leading != leading:
        await asyncio.wait_for(parts.leadership.changed.wait(), 10)


ClusterFactory = Callable[..., Awaitable[Cluster]]

FAST = {
    "MWM_SOURCE__KIND": "kubernetes",
    "MWM_SOURCE__KUBERNETES__NAMESPACE": NS,
    "MWM_SOURCE__KUBERNETES__BACKOFF_INITIAL_S": "0.01",
    "MWM_SOURCE__KUBERNETES__BACKOFF_MAX_S": "0.05",
    "MWM_SOURCE__LEADER_ELECTION__ENABLED": "false",
    "MWM_SOURCE__STATUS__COALESCE_S": "0",
    "MWM_SOURCE__STATUS__RETRY_INITIAL_S": "0.01",
    "MWM_SOURCE__STATUS__RETRY_MAX_S": "0.05",
}
"""Settings for a test: every delay shrunk, one replica without leader election."""

FAST_ELECTION = {
    "MWM_SOURCE__LEADER_ELECTION__ENABLED": "true",
    "MWM_SOURCE__LEADER_ELECTION__LEASE_DURATION_S": "2",
    "MWM_SOURCE__LEADER_ELECTION__RENEW_DEADLINE_S": "1.5",
    "MWM_SOURCE__LEADER_ELECTION__RETRY_PERIOD_S": "1",
}
"""Leader election with the shortest timings the settings allow."""


def cluster_factory(fake: FakeKubeAPI, start_proxy: ProxyFactory) -> ClusterFactory:
    """``start(env)`` starts one more ``mwm`` replica against ``fake``."""

    async def start(env: Mapping[str, str] | None = None) -> Cluster:
        proxy = await start_proxy(
            {**FAST, "MWM_SOURCE__KUBERNETES__API_URL": fake.url, **(env or {})}
        )
        return Cluster(fake=fake, proxy=proxy)

    return start


@pytest.fixture
async def fake() -> AsyncIterator[FakeKubeAPI]:
    """The fake API server, started (import this fixture into a conftest to use it)."""
    async with FakeKubeAPI() as server:
        # The project's CRD, so every ServiceChecker and status write is checked against its
        # schema, as a real API server checks them.
        server.apply_crd(CRD_PATH)
        yield server


@pytest.fixture
async def start_cluster(
    fake: FakeKubeAPI, start_proxy: ProxyFactory, upstream: TestServer
) -> ClusterFactory:
    """Starts ``mwm`` replicas against ``fake`` in front of ``upstream``."""
    return cluster_factory(fake, start_proxy)
