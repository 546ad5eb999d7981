"""Scoped maintenance from the Kubernetes source (issue 14): a ServiceChecker's routes,
modes and holdSeconds reach the published snapshot, its status says the scope and the
affected routes, the ConfigMap and ``mwm on --read-only`` switch read-only maintenance."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controller.snapshot import Mode, Route
from controller.store import State
from proxy.cli import main as cli_main
from tests.kube.clusters import (
    NS,
    ClusterFactory,
    checker,
    endpoint_slice,
    maintenance_off,
    maintenance_on,
    service,
    switch_configmap,
    without_schema,
)
from tests.kube.fakeapi import FakeKubeAPI

PAYMENTS = {
    "name": "payments",
    "critical": True,
    "routes": [{"pathPrefix": "/checkout", "methods": ["POST"]}, {"pathPrefix": "/api/payments"}],
    "holdSeconds": 20,
}
DB = {"name": "db-primary", "critical": True, "mode": "readOnly"}


def create_shop(fake: FakeKubeAPI, **spec: Any) -> None:
    fake.create(checker(services=[PAYMENTS, DB], **spec))
    for name in ("payments", "db-primary"):
        fake.create(service(name))
        fake.create(endpoint_slice(name, ready=1))


def scoped(state: State) -> bool:
    payments = state.snapshot.service(NS, "payments")
    return state.snapshot.synced and payments is not None and bool(payments.routes)


async def test_routes_modes_and_hold_reach_the_snapshot(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_shop(
        fake,
        maintenance={"enabled": True, "mode": "readOnly"},
        windows=[
            {"start": "2030-05-08T09:00:00Z", "end": "2030-05-08T10:00:00Z", "mode": "readOnly"}
        ],
    )
    cluster = await start_cluster()
    state = await cluster.wait_for(lambda s: scoped(s) and s.maintenance.active)
    payments = state.snapshot.service(NS, "payments")
    db = state.snapshot.service(NS, "db-primary")
    assert payments is not None
    assert db is not None
    assert payments.routes == (
        Route("/checkout", frozenset({"POST"})),
        Route("/api/payments"),
    )
    assert (payments.mode, payments.hold_seconds) == (Mode.FULL, 20.0)
    assert (db.routes, db.mode, db.hold_seconds) == ((), Mode.READ_ONLY, None)
    (switch,) = [s for s in state.snapshot.switches if s.source.startswith("servicechecker/")]
    assert (switch.enabled, switch.mode) == (True, Mode.READ_ONLY)
    (window,) = state.snapshot.windows
    assert window.mode is Mode.READ_ONLY
    status = await cluster.wait_for_status(lambda s: (s.get("maintenance") or {}).get("active"))
    assert status["maintenance"]["scope"] == "ReadOnly"


async def test_the_status_names_the_scope_and_the_affected_routes(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_shop(fake)
    cluster = await start_cluster()
    await cluster.wait_for(lambda s: scoped(s) and not s.maintenance.active)
    fake.update(endpoint_slice("payments", ready=0, not_ready=1))
    status = await cluster.wait_for_status(lambda s: (s.get("maintenance") or {}).get("active"))
    assert status["maintenance"]["scope"] == "Routes"
    assert {s["name"]: s["affectedRoutes"] for s in status["serviceStatuses"]} == {
        "payments": ["/checkout", "/api/payments"],
        "db-primary": [],
    }
    fake.update(endpoint_slice("db-primary", ready=0, not_ready=1))
    status = await cluster.wait_for_status(
        lambda s: (s.get("maintenance") or {}).get("scope") == "ReadOnly"
    )
    fake.update(endpoint_slice("payments", ready=1))
    fake.update(endpoint_slice("db-primary", ready=1))
    status = await cluster.wait_for_status(
        lambda s: (s.get("maintenance") or {}).get("active") is False
    )
    assert "scope" not in status["maintenance"]
    assert all(s["affectedRoutes"] == [] for s in status["serviceStatuses"])


async def test_a_service_named_twice_takes_the_stricter_reading(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.create(checker("a", services=[{**PAYMENTS, "holdSeconds": 30}]))
    fake.create(
        checker(
            "b",
            services=[
                {"name": "payments", "routes": [{"pathPrefix": "/refunds"}], "holdSeconds": 5},
                {**DB, "mode": "full"},
            ],
        )
    )
    fake.create(checker("c", services=[DB]))
    cluster = await start_cluster()
    state = await cluster.wait_for(lambda s: scoped(s) and s.snapshot.service(NS, "db-primary"))
    payments = state.snapshot.service(NS, "payments")
    db = state.snapshot.service(NS, "db-primary")
    assert payments is not None
    assert db is not None
    assert [r.path_prefix for r in payments.routes] == ["/checkout", "/api/payments", "/refunds"]
    assert (payments.critical, payments.hold_seconds) == (True, 5.0)
    assert db.mode is Mode.FULL


async def test_a_bad_route_edit_keeps_the_last_good_spec_and_names_the_field(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_shop(fake)
    cluster = await start_cluster()
    await cluster.wait_for(scoped)
    without_schema(fake)  # an API server without the CRD's rules: the controller still checks
    bad = {**PAYMENTS, "routes": [{"pathPrefix": "/checkout"}, {"pathPrefix": "/a/../admin"}]}
    fake.patch("servicecheckers", NS, "shop", {"spec": {"services": [bad, DB]}})
    state = await cluster.wait_for(lambda s: bool(s.snapshot.errors))
    assert "spec.services[0].routes[1].pathPrefix" in state.snapshot.errors[0]
    assert "'/a/../admin' has a '.' or '..' segment" in state.snapshot.errors[0]
    payments = state.snapshot.service(NS, "payments")
    assert payments is not None
    assert len(payments.routes) == 2  # the last good spec holds
    status = await cluster.wait_for_status(
        lambda s: any(
            c["type"] == "Valid" and c["status"] == "False" for c in s.get("conditions", [])
        )
    )
    (valid,) = [c for c in status["conditions"] if c["type"] == "Valid"]
    assert "spec.services[0].routes[1].pathPrefix" in valid["message"]


async def test_configmap_read_only(fake: FakeKubeAPI, start_cluster: ClusterFactory) -> None:
    fake.create(switch_configmap("readOnly"))
    cluster = await start_cluster({"MWM_SOURCE__KUBERNETES__CONFIGMAP_NAME": "app-config"})
    state = await cluster.wait_for(maintenance_on)
    (switch,) = [s for s in state.snapshot.switches if s.source.startswith("configmap/")]
    assert switch.mode is Mode.READ_ONLY
    fake.update(switch_configmap("true"))
    state = await cluster.wait_for(
        lambda s: any(
            w.source.startswith("configmap/") and w.mode is Mode.FULL for w in s.snapshot.switches
        )
    )
    fake.update(switch_configmap("false"))
    await cluster.wait_for(maintenance_off)


def _cli(*args: str) -> int:
    return cli_main(list(args))


async def test_mwm_on_read_only_switches_a_servicechecker_and_off_resets_the_mode(
    fake: FakeKubeAPI, start_cluster: ClusterFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    create_shop(fake)
    cluster = await start_cluster()
    await cluster.wait_for(lambda s: scoped(s) and not s.maintenance.active)
    target = ["--checker", "shop", "-n", NS, "--api-url", fake.url]
    assert await asyncio.to_thread(_cli, "on", "--read-only", "--reason", "Upgrade", *target) == 0
    stored = fake.get("servicecheckers", NS, "shop")
    assert stored is not None
    assert stored["spec"]["maintenance"] == {
        "enabled": True,
        "reason": "Upgrade",
        "mode": "readOnly",
    }
    state = await cluster.wait_for(maintenance_on)
    (switch,) = [s for s in state.snapshot.switches if s.source.startswith("servicechecker/")]
    assert switch.mode is Mode.READ_ONLY
    assert "maintenance: ON" in capsys.readouterr().out

    assert await asyncio.to_thread(_cli, "off", *target) == 0
    stored = fake.get("servicecheckers", NS, "shop")
    assert stored is not None
    assert stored["spec"]["maintenance"] == {"enabled": False}
    await cluster.wait_for(maintenance_off)
