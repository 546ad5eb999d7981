"""The Kubernetes side end to end: the fake API server, the real client, the real proxy.

Each test starts ``mwm`` (the same ``Runtime`` as ``mwm run``) with the Kubernetes source
pointed at the fake API server, changes objects in the fake, and checks what a user of
the proxy sees and what the controller wrote back to the API.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from controller.snapshot import ServiceReason
from tests.kube.clusters import (
    FAST_ELECTION,
    NS,
    ClusterFactory,
    checker,
    create_critical_api,
    endpoint_slice,
    maintenance_off,
    maintenance_on,
    service,
    switch_configmap,
    without_schema,
)
from tests.kube.fakeapi import FakeKubeAPI
from tests.mwmprocess import run_cli


async def test_seed_servicechecker_is_accepted_and_its_status_keeps_the_seed_shape(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    seed = {
        "apiVersion": "maintenance.mamrezb.com/v1alpha1",
        "kind": "ServiceChecker",
        "metadata": {"name": "example-checker", "namespace": NS},
        "spec": {"services": [{"name": "my-service", "namespace": NS, "critical": True}]},
    }
    fake.create(seed)
    fake.create(service("my-service"))
    fake.create(endpoint_slice("my-service", ready=2))
    cluster = await start_cluster()
    await cluster.wait_for(maintenance_off)
    status = await cluster.wait_for_status(
        lambda s: s.get("serviceStatuses"), name="example-checker"
    )
    [entry] = status["serviceStatuses"]
    assert {k: entry[k] for k in ("name", "namespace", "ready")} == {
        "name": "my-service",
        "namespace": NS,
        "ready": True,
    }
    assert entry["critical"] is True
    assert (entry["readyEndpoints"], entry["totalEndpoints"], entry["reason"]) == (2, 2, "Ready")
    assert status["maintenance"]["active"] is False
    assert status["summary"] == {"readyCritical": "1/1"}
    assert status["observedGeneration"] == 1
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Maintenance": "False",
        "Valid": "True",
        "Synced": "True",
    }
    # The seed's spec was not changed by anyone.
    stored = fake.get("servicecheckers", NS, "example-checker")
    assert stored is not None
    assert stored["spec"] == seed["spec"]


async def test_last_ready_endpoint_lost_flips_users_to_maintenance_and_back(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    cluster = await start_cluster()
    await cluster.wait_for(maintenance_off)
    assert (await cluster.get()).status == 200

    fake.update(endpoint_slice("api", ready=0, not_ready=1))
    await cluster.wait_for(maintenance_on)
    response = await cluster.get()
    assert response.status == 503
    status = await cluster.wait_for_status(lambda s: s.get("maintenance", {}).get("active"))
    assert status["serviceStatuses"][0]["reason"] == "NoReadyEndpoints"
    assert status["summary"] == {"readyCritical": "0/1"}

    fake.update(endpoint_slice("api", ready=1))
    await cluster.wait_for(maintenance_off)
    assert (await cluster.get()).status == 200


async def test_terminating_endpoints_do_not_count_and_slices_are_deduplicated(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.create(checker(services=[{"name": "api", "critical": True, "minReady": 2}]))
    fake.create(service("api"))
    # The same pod (uid-0) in two slices counts once; a terminating one never counts.
    fake.create(endpoint_slice("api", ready=1, terminating=1, suffix="a"))
    fake.create(endpoint_slice("api", ready=1, suffix="b"))
    cluster = await start_cluster()
    state = await cluster.wait_for(lambda s: s.snapshot.synced)
    [api] = state.snapshot.services
    assert (api.ready_endpoints, api.total_endpoints) == (1, 2)
    assert state.maintenance.active  # 1 ready < minReady 2

    fake.update(endpoint_slice("api", ready=1, suffix="b", first_pod=5))
    state = await cluster.wait_for(maintenance_off)
    assert state.snapshot.services[0].ready_endpoints == 2


async def test_missing_service_and_empty_service_are_told_apart(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.create(
        checker(
            services=[
                {"name": "empty", "critical": False},
                {"name": "missing", "critical": False},
            ]
        )
    )
    fake.create(service("empty"))
    fake.create(endpoint_slice("empty", ready=0))
    cluster = await start_cluster()
    state = await cluster.wait_for(lambda s: s.snapshot.synced and len(s.snapshot.services) == 2)
    reasons = {s.name: s.reason for s in state.snapshot.services}
    assert reasons == {
        "empty": ServiceReason.NO_READY_ENDPOINTS,
        "missing": ServiceReason.SERVICE_NOT_FOUND,
    }
    assert not state.maintenance.active  # neither is critical


async def test_empty_namespace_means_the_resource_namespace_and_other_namespaces_are_watched(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.create(
        checker(
            services=[
                {"name": "api", "namespace": "", "critical": True},
                {"name": "db", "namespace": "data", "critical": True},
            ]
        )
    )
    fake.create(service("api"))
    fake.create(endpoint_slice("api", ready=1))
    fake.create(service("db", namespace="data"))
    fake.create(endpoint_slice("db", ready=1, namespace="data"))
    cluster = await start_cluster()
    state = await cluster.wait_for(maintenance_off)
    assert {(s.namespace, s.name) for s in state.snapshot.services} == {
        (NS, "api"),
        ("data", "db"),
    }
    # Watches are narrowed: EndpointSlices by the referenced names, per namespace.
    await fake.wait_for_watch("endpointslices", count=2)
    slice_watches = [
        r
        for r in fake.requests
        if r.is_watch and "/endpointslices" in r.path and r.path.startswith("/apis/discovery")
    ]
    assert {r.path for r in slice_watches} == {
        "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices",
        "/apis/discovery.k8s.io/v1/namespaces/data/endpointslices",
    }
    assert all("kubernetes.io/service-name" in r.query["labelSelector"] for r in slice_watches)

    fake.update(endpoint_slice("db", ready=0, namespace="data"))
    await cluster.wait_for(maintenance_on)


async def test_manual_switch_with_until_turns_itself_off(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    until = datetime.now(UTC) + timedelta(seconds=1)
    fake.create(
        checker(
            services=[],
            maintenance={"enabled": True, "reason": "DB upgrade", "until": until.isoformat()},
        )
    )
    cluster = await start_cluster()
    state = await cluster.wait_for(maintenance_on)
    assert state.maintenance.reason == "DB upgrade"
    response = await cluster.get()
    assert response.status == 503
    status = await cluster.wait_for_status(lambda s: s.get("maintenance", {}).get("active"))
    assert status["maintenance"]["reason"] == "DB upgrade"
    await cluster.wait_for(maintenance_off)
    await cluster.wait_for_status(lambda s: s.get("maintenance", {}).get("active") is False)


async def test_switching_the_resource_on_and_off_live(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.create(checker(services=[]))
    cluster = await start_cluster()
    await cluster.wait_for(maintenance_off)
    fake.patch("servicecheckers", NS, "shop", {"spec": {"maintenance": {"enabled": True}}})
    await cluster.wait_for(maintenance_on)
    fake.patch("servicecheckers", NS, "shop", {"spec": {"maintenance": {"enabled": False}}})
    await cluster.wait_for(maintenance_off)


async def test_open_window_means_maintenance_until_its_end(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    now = datetime.now(UTC)
    fake.create(
        checker(
            services=[],
            windows=[
                {
                    "start": (now - timedelta(hours=1)).isoformat(),
                    "end": (now + timedelta(seconds=1)).isoformat(),
                    "reason": "Planned upgrade",
                }
            ],
        )
    )
    cluster = await start_cluster()
    state = await cluster.wait_for(maintenance_on)
    assert state.maintenance.reason == "Planned upgrade"
    await cluster.wait_for(maintenance_off)


async def test_a_window_is_announced_before_it_opens_and_a_bad_edit_keeps_it(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    announced = {
        "start": start.isoformat(),
        "end": (start + timedelta(hours=1)).isoformat(),
        "reason": "Database upgrade",
        "announceSeconds": 7200,
    }
    fake.create(checker(services=[], windows=[announced]))
    cluster = await start_cluster()
    state = await cluster.wait_for(lambda s: s.upcoming is not None)
    assert state.upcoming is not None
    assert state.upcoming.announced
    assert state.upcoming.window.start == start
    assert state.upcoming.window.announce_seconds == 7200
    assert not state.maintenance.active
    # Past a CRD that would refuse it, the controller's own check names the field.
    without_schema(fake)
    fake.patch(
        "servicecheckers",
        NS,
        "shop",
        {"spec": {"windows": [{**announced, "announceSeconds": -5}]}},
    )
    state = await cluster.wait_for(lambda s: bool(s.snapshot.errors))
    assert "spec.windows[0].announceSeconds" in state.snapshot.errors[0]
    assert state.upcoming is not None
    assert state.upcoming.announced  # the last good spec is kept


async def test_configmap_switch_is_live_and_bad_values_keep_the_last_one(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.create(switch_configmap("false"))
    cluster = await start_cluster({"MWM_SOURCE__KUBERNETES__CONFIGMAP_NAME": "app-config"})
    await cluster.wait_for(maintenance_off)
    fake.update(switch_configmap("true"))
    await cluster.wait_for(maintenance_on)
    fake.update(switch_configmap("maybe"))
    state = await cluster.wait_for(lambda s: bool(s.snapshot.errors))
    assert state.maintenance.active  # the last valid value holds
    assert "MAINTENANCE_MODE" in state.snapshot.errors[0]
    fake.update(switch_configmap("false"))
    state = await cluster.wait_for(maintenance_off)
    assert state.snapshot.errors == ()


async def test_enter_and_exit_delays_smooth_a_blip(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.create(
        checker(
            services=[{"name": "api", "critical": True}],
            enterDelaySeconds=1,
            exitDelaySeconds=1,
        )
    )
    fake.create(service("api"))
    fake.create(endpoint_slice("api", ready=1))
    cluster = await start_cluster()
    await cluster.wait_for(maintenance_off)

    # A blip shorter than the enter delay never reaches users.
    source = cluster.proxy.runtime.cluster.source
    fake.update(endpoint_slice("api", ready=0, not_ready=1))
    revision = source.revision
    while (NS, "api") not in source.pending_changes():
        revision = await asyncio.wait_for(source.wait_for_revision(revision), 5)
    generation = cluster.proxy.runtime.store.current.generation
    fake.update(endpoint_slice("api", ready=1))
    while (NS, "api") in source.pending_changes():
        revision = await asyncio.wait_for(source.wait_for_revision(revision), 5)
    assert not cluster.proxy.runtime.store.current.maintenance.active

    # An outage longer than the delay does, once the delay has passed.
    fake.update(endpoint_slice("api", ready=0, not_ready=1))
    started = asyncio.get_running_loop().time()
    await cluster.wait_for(maintenance_on)
    assert asyncio.get_running_loop().time() - started >= 0.9
    assert cluster.proxy.runtime.store.current.generation > generation

    # Recovery waits for the exit delay too.
    fake.update(endpoint_slice("api", ready=1))
    started = asyncio.get_running_loop().time()
    await cluster.wait_for(maintenance_off)
    assert asyncio.get_running_loop().time() - started >= 0.9


@pytest.mark.parametrize("how", ["cleanly", "abruptly"])
async def test_dropped_watches_reconnect_and_miss_nothing(
    fake: FakeKubeAPI, start_cluster: ClusterFactory, how: str
) -> None:
    create_critical_api(fake)
    cluster = await start_cluster()
    await cluster.wait_for(maintenance_off)
    await fake.wait_for_watch("endpointslices")
    if how == "cleanly":
        fake.end_watches()
    else:
        fake.abort_watches()
    # The change happens while the watches are down; it must still arrive.
    fake.update(endpoint_slice("api", ready=0))
    await cluster.wait_for(maintenance_on)
    assert (await cluster.get()).status == 503


async def test_410_gone_relists_and_loses_no_transition(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    cluster = await start_cluster()
    await cluster.wait_for(maintenance_off)
    await fake.wait_for_watch("endpointslices")
    lists_before = len([r for r in fake.requests if "/endpointslices" in r.path and not r.is_watch])
    fake.end_watches()
    fake.update(endpoint_slice("api", ready=0))
    fake.compact()  # the version the watch would resume from is gone: 410, then a re-list
    await cluster.wait_for(maintenance_on)
    lists_after = len([r for r in fake.requests if "/endpointslices" in r.path and not r.is_watch])
    assert lists_after > lists_before


async def test_api_errors_never_look_like_an_outage(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    cluster = await start_cluster({"MWM_SOURCE__KUBERNETES__STALE_AFTER_S": "0.2"})
    await cluster.wait_for(maintenance_off)
    fake.fail_next(path=r".*/endpointslices.*", status=500, times=None)
    fake.abort_watches("endpointslices")
    state = await cluster.wait_for(lambda s: any(x.stale for x in s.snapshot.services))
    assert not state.maintenance.active
    assert state.snapshot.services[0].ready
    status = await cluster.wait_for_status(
        lambda s: s.get("serviceStatuses") and s["serviceStatuses"][0]["stale"]
    )
    synced = next(c for c in status["conditions"] if c["type"] == "Synced")
    assert (synced["status"], synced["reason"]) == ("False", "WatchFailing")
    assert status["serviceStatuses"][0]["ready"] is True
    fake.clear_faults()
    await cluster.wait_for(lambda s: not any(x.stale for x in s.snapshot.services))


async def test_invalid_edit_keeps_the_last_good_spec_and_says_why(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.create(checker(services=[], maintenance={"enabled": True}))
    cluster = await start_cluster()
    await cluster.wait_for(maintenance_on)
    # The CRD's schema would refuse this; a controller must not rely on it.
    without_schema(fake)
    fake.patch(
        "servicecheckers",
        NS,
        "shop",
        {"spec": {"services": [{"name": "Not_A_Name"}], "maintenance": {"enabled": False}}},
    )
    state = await cluster.wait_for(lambda s: bool(s.snapshot.errors))
    assert state.maintenance.active
    assert "spec.services[0].name" in state.snapshot.errors[0]
    status = await cluster.wait_for_status(
        lambda s: any(
            c["type"] == "Valid" and c["status"] == "False" for c in s.get("conditions", [])
        )
    )
    assert status["observedGeneration"] == 2


async def test_status_writes_use_merge_patch_and_retry_500_and_409(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.create(checker(services=[], maintenance={"enabled": True}))
    fake.fail_next("PATCH", r".*/status$", status=500, times=2)
    fake.fail_next("PATCH", r".*/status$", status=409, times=1)
    cluster = await start_cluster()
    status = await cluster.wait_for_status(lambda s: s.get("maintenance", {}).get("active"))
    assert status["maintenance"]["active"] is True
    patches = fake.requests_to("PATCH", r".*/servicecheckers/shop/status$")
    assert len(patches) == 4  # two 500s, one 409, then the write that landed
    assert {p.content_type for p in patches} == {"application/merge-patch+json"}
    assert not fake.requests_to("PATCH", r".*/servicecheckers/shop$")  # never the spec


async def test_status_is_written_only_when_something_changed(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.create(checker(services=[{"name": "api", "critical": False}]))
    fake.create(service("api"))
    fake.create(endpoint_slice("api", ready=1))
    cluster = await start_cluster()
    await cluster.wait_for_status(lambda s: s.get("serviceStatuses"))
    writes = len(fake.requests_to("PATCH", r".*/status$"))
    # Unrelated churn (a label on the Service) changes nothing in the status.
    fake.patch("services", NS, "api", {"metadata": {"labels": {"x": "y"}}})
    fake.update(endpoint_slice("api", ready=2))
    await cluster.wait_for_status(lambda s: s["serviceStatuses"][0]["readyEndpoints"] == 2)
    assert len(fake.requests_to("PATCH", r".*/status$")) == writes + 1


async def test_events_are_recorded_on_each_transition(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.create(checker(services=[]))
    cluster = await start_cluster()
    await cluster.wait_for_status(lambda s: "maintenance" in s)
    fake.patch(
        "servicecheckers",
        NS,
        "shop",
        {"spec": {"maintenance": {"enabled": True, "reason": "Upgrade"}}},
    )
    await fake.wait_until(lambda: len(fake.list_objects("events", NS)) == 1)
    fake.patch("servicecheckers", NS, "shop", {"spec": {"maintenance": {"enabled": False}}})
    await fake.wait_until(lambda: len(fake.list_objects("events", NS)) == 2)
    events = sorted(fake.list_objects("events", NS), key=lambda e: e["metadata"]["name"])
    reasons = sorted(e["reason"] for e in events)
    assert reasons == ["MaintenanceEnded", "MaintenanceStarted"]
    started = next(e for e in events if e["reason"] == "MaintenanceStarted")
    assert started["involvedObject"]["kind"] == "ServiceChecker"
    assert started["involvedObject"]["name"] == "shop"
    assert "Upgrade" in started["message"]


async def test_several_checkers_any_one_switches_and_services_listed_once(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.create(checker("a", services=[{"name": "api", "critical": False}]))
    fake.create(checker("b", services=[{"name": "api", "critical": True}], maintenance={}))
    fake.create(service("api"))
    fake.create(endpoint_slice("api", ready=1))
    cluster = await start_cluster()
    await cluster.wait_for(maintenance_off)
    async with cluster.proxy.session.get(f"{cluster.proxy.public_url}/services") as response:
        assert await response.json() == [
            {"name": "api", "namespace": NS, "ready": True, "critical": True}
        ]
    fake.patch("servicecheckers", NS, "a", {"spec": {"maintenance": {"enabled": True}}})
    await cluster.wait_for(maintenance_on)


async def test_cli_switches_a_servicechecker_and_shows_the_confirmed_result(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    cluster = await start_cluster()
    await cluster.wait_for(maintenance_off)
    await cluster.wait_for_status(lambda s: s.get("serviceStatuses"))
    target = ["--checker", "shop", "-n", NS, "--api-url", fake.url]

    on = await asyncio.to_thread(
        run_cli, "on", "--reason", "Database upgrade", "--until", "1h", *target, env={}
    )
    assert on.returncode == 0, on.stderr
    assert "maintenance: ON" in on.stdout
    assert "Database upgrade" in on.stdout
    assert "not confirmed" not in on.stdout
    assert (await cluster.get()).status == 503
    stored = fake.get("servicecheckers", NS, "shop")
    assert stored is not None
    assert stored["spec"]["maintenance"]["enabled"] is True
    assert stored["spec"]["services"] == [{"name": "api", "critical": True}]  # untouched

    off = await asyncio.to_thread(run_cli, "off", *target, env={})
    assert off.returncode == 0, off.stderr
    assert "maintenance: off" in off.stdout
    assert "shop/api (critical): ready 1/1 Ready" in off.stdout
    assert (await cluster.get()).status == 200

    missing = await asyncio.to_thread(
        run_cli, "on", "--checker", "nope", "-n", NS, "--api-url", fake.url, env={}
    )
    assert missing.returncode == 1
    assert "ServiceChecker shop/nope" in missing.stderr
    assert "Traceback" not in missing.stderr


async def test_only_the_leader_writes_and_a_follower_takes_over(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.create(checker(services=[], maintenance={"enabled": False}))
    election = FAST_ELECTION
    first = await start_cluster({**election, "MWM_SOURCE__LEADER_ELECTION__IDENTITY": "first"})
    first_cluster = first.proxy.runtime.cluster
    assert first_cluster is not None
    await first.wait_for(maintenance_off)
    await fake.wait_until(lambda: first_cluster.leadership is not None)
    assert first_cluster.leadership is not None
    while not first_cluster.leadership.leading:
        await asyncio.wait_for(first_cluster.leadership.changed.wait(), 10)
    second = await start_cluster({**election, "MWM_SOURCE__LEADER_ELECTION__IDENTITY": "second"})
    second_cluster = second.proxy.runtime.cluster
    assert second_cluster is not None
    await second.wait_for(maintenance_off)

    # Both replicas serve from their own watches; only the leader writes.
    fake.patch("servicecheckers", NS, "shop", {"spec": {"maintenance": {"enabled": True}}})
    await first.wait_for(maintenance_on)
    await second.wait_for(maintenance_on)
    await first.wait_for_status(lambda s: s.get("maintenance", {}).get("active"))
    assert first_cluster.writer is not None
    assert second_cluster.writer is not None
    assert first_cluster.writer.writes > 0
    assert second_cluster.writer.writes == 0
    lease = fake.get("leases", NS, "mwm-controller-leader")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "first"

    # The leader goes away; the follower takes the lease and writes from then on.
    first.proxy.runtime.request_stop()
    assert second_cluster.leadership is not None
    while not second_cluster.leadership.leading:
        await asyncio.wait_for(second_cluster.leadership.changed.wait(), 10)
    fake.patch("servicecheckers", NS, "shop", {"spec": {"maintenance": {"enabled": False}}})
    await second.wait_for(maintenance_off)
    await second.wait_for_status(lambda s: s.get("maintenance", {}).get("active") is False)
    [last] = [
        a
        for a in fake.answers
        if a.request.method == "PATCH" and a.request.path.endswith("/status")
    ][-1:]
    assert last.accepted
    assert "(second)" in last.request.user_agent
