"""Promises found on a real cluster: what a real API server does that a lenient fake hid.

Each test runs the real ``mwm`` against the fake API server (real HTTP, the real
kubernetes-asyncio client) behaving as a real one does at the moments that matter:

- a namespace the controller may not read (no RBAC binding there) is a completed read with
  a problem: every replica becomes ready, the services there are ``Unknown`` (never a
  maintenance), and the problem shows in ``/status``, the ``Synced`` condition and an Event;
  a binding made later is picked up;
- a status write refused (a 403 while a restarted API server's authorizer warms up, say) is
  retried until it lands, and a resource whose writes keep failing holds up no other;
- after the API answers again, the watch backoff starts again from its shortest delay, so a
  later disconnect reconnects in moments, not after the longest delay;
- on shutdown a change still inside the coalesce window is written, not lost.
"""

from __future__ import annotations

import asyncio
from typing import Any

from controller.snapshot import ServiceReason
from controller.store import State
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
    wait_leading,
)
from tests.kube.fakeapi import FakeKubeAPI, Rbac, RecordedRequest

PAYMENTS = "payments"


def events(fake: FakeKubeAPI, name: str = "shop") -> list[dict[str, Any]]:
    return [e for e in fake.list_objects("events", NS) if e["involvedObject"]["name"] == name]


def event_reasons(fake: FakeKubeAPI, name: str = "shop") -> list[str]:
    return sorted(e["reason"] for e in events(fake, name))


def synced_condition(status: dict[str, Any]) -> dict[str, Any]:
    [condition] = [c for c in status.get("conditions") or [] if c["type"] == "Synced"]
    return condition


def payments_state(state: State) -> ServiceReason | None:
    found = state.snapshot.service(PAYMENTS, "payments")
    return None if found is None else found.reason


def create_shop_and_payments(fake: FakeKubeAPI) -> None:
    """A ServiceChecker naming a service of its own namespace and one in ``payments``."""
    fake.create(
        checker(
            services=[
                {"name": "api", "critical": True},
                {"name": "payments", "namespace": PAYMENTS, "critical": True},
            ]
        )
    )
    fake.create(service("api"))
    fake.create(endpoint_slice("api", ready=1))
    fake.create(service("payments", PAYMENTS))
    fake.create(endpoint_slice("payments", ready=1, namespace=PAYMENTS))


def in_payments(request: RecordedRequest) -> bool:
    return f"/namespaces/{PAYMENTS}/" in request.path


# -- a namespace the controller may not read ------------------------------------------------


async def test_a_namespace_the_controller_may_not_read_leaves_its_services_unknown_and_is_ready(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_shop_and_payments(fake)
    # Exactly the project's RBAC (config/rbac) applied in the controller's namespace, and no
    # binding in payments.
    rbac = fake.enforce_rbac(Rbac.from_config(namespace=NS))
    assert rbac is not None
    cluster = await start_cluster()

    # Ready: the state is read, with a problem; the unreadable service never starts
    # maintenance, the readable one is served as usual.
    state = await cluster.wait_for(maintenance_off)
    assert payments_state(state) is ServiceReason.UNKNOWN
    assert state.snapshot.service(NS, "api") is not None
    status, body = await cluster.management_json("/readyz")
    assert status == 200, body
    assert (await cluster.get()).status == 200
    status, body = await cluster.management_json("/status")
    [problem] = [e for e in body["errors"] if e.startswith("cannot read endpointslices")]
    assert "cannot read endpointslices in namespace payments: " in problem
    assert "cannot list resource" in problem  # the API server's own words
    assert "mwm-endpoint-reader" in problem  # and what to do about it

    # The resource says so: Synced is False (AccessDenied), and an Event tells why.
    written = await cluster.wait_for_status(
        lambda s: s.get("conditions") and synced_condition(s)["status"] == "False"
    )
    condition = synced_condition(written)
    assert condition["reason"] == "AccessDenied"
    assert "namespace payments" in condition["message"]
    assert {s["name"]: s["reason"] for s in written["serviceStatuses"]} == {
        "api": "Ready",
        "payments": "Unknown",
    }
    assert written["maintenance"]["active"] is False
    await fake.wait_until(lambda: "AccessDenied" in event_reasons(fake))
    [denied] = [e for e in events(fake) if e["reason"] == "AccessDenied"]
    assert denied["type"] == "Warning"
    assert "payments" in denied["message"]

    refused = {(r.path.rsplit("/", 1)[-1]) for r in fake.denied}
    assert refused == {"endpointslices", "services"}  # and nothing else the controller does

    # The binding appears: the watches, still retrying, read the namespace.
    rbac.bind("ClusterRole", "mwm-endpoint-reader", namespace=PAYMENTS)
    state = await cluster.wait_for(lambda s: payments_state(s) is ServiceReason.READY)
    written = await cluster.wait_for_status(lambda s: synced_condition(s)["status"] == "True")
    assert {s["name"]: s["reason"] for s in written["serviceStatuses"]} == {
        "api": "Ready",
        "payments": "Ready",
    }
    await fake.wait_until(lambda: "AccessRestored" in event_reasons(fake))


async def test_an_unreadable_namespace_is_not_another_resources_problem(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_shop_and_payments(fake)
    fake.create(checker("other", services=[{"name": "api", "critical": True}]))
    fake.fail_next("GET", r"/namespaces/payments/", status=403, times=None)
    cluster = await start_cluster()
    await cluster.wait_for(maintenance_off)
    shop = await cluster.wait_for_status(
        lambda s: s.get("conditions") and synced_condition(s)["reason"] == "AccessDenied"
    )
    assert shop["maintenance"]["active"] is False
    other = await cluster.wait_for_status(lambda s: s.get("conditions"), name="other")
    assert synced_condition(other)["status"] == "True"
    assert event_reasons(fake, "other") == []


# -- status writes ---------------------------------------------------------------------------


STATUS_PATCH = r"/servicecheckers/shop/status$"


async def test_a_status_write_refused_once_is_retried_until_it_lands(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    cluster = await start_cluster()
    await cluster.wait_for_status(lambda s: s.get("maintenance"))
    refused = fake.fail_next("PATCH", STATUS_PATCH, status=403, reason="Forbidden", times=3)

    fake.update(endpoint_slice("api", ready=0, not_ready=1))
    await cluster.wait_for(maintenance_on)
    written = await cluster.wait_for_status(lambda s: s["maintenance"]["active"])
    assert refused.exhausted
    assert written["summary"] == {"readyCritical": "0/1"}
    await fake.wait_until(lambda: event_reasons(fake) == ["MaintenanceStarted"])


async def test_a_status_write_refused_while_rbac_is_missing_lands_once_it_is_back(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    # The reproducer: the controller's RoleBinding deleted, the service goes down, the binding
    # is back a moment later; the status must follow without anything else changing.
    create_critical_api(fake)
    rbac = fake.enforce_rbac(Rbac.from_config(namespace=NS))
    assert rbac is not None
    cluster = await start_cluster()
    await cluster.wait_for_status(lambda s: s.get("maintenance"))
    rbac.unbind("mwm-controller", namespace=NS)

    fake.update(endpoint_slice("api", ready=0, not_ready=1))
    await cluster.wait_for(maintenance_on)  # the open watches go on, as on a real server
    await fake.wait_until(lambda: any(r.method == "PATCH" for r in fake.denied))
    rbac.bind("Role", "mwm-controller", namespace=NS)
    written = await cluster.wait_for_status(lambda s: s["maintenance"]["active"])
    assert written["summary"] == {"readyCritical": "0/1"}
    await fake.wait_until(lambda: event_reasons(fake) == ["MaintenanceStarted"])


async def test_status_writes_ride_out_an_api_server_restart_and_its_authorizer_warm_up(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    fake.enforce_rbac(Rbac.from_config(namespace=NS))
    cluster = await start_cluster()
    await cluster.wait_for_status(lambda s: s.get("maintenance"))

    # The write of a change is in flight when the API server restarts: its connection is cut,
    # and its retries meet the warm-up's 403s.
    held = fake.hold("PATCH", STATUS_PATCH)
    fake.update(endpoint_slice("api", ready=0))
    await cluster.wait_for(maintenance_on)
    await held.arrived.wait()
    await fake.restart()  # every request refused until finish_warmup()
    await fake.wait_until(lambda: any(r.method == "PATCH" for r in fake.denied))
    fake.finish_warmup()
    written = await cluster.wait_for_status(lambda s: s["maintenance"]["active"])
    assert written["summary"] == {"readyCritical": "0/1"}
    await fake.wait_until(lambda: event_reasons(fake) == ["MaintenanceStarted"])


async def test_a_resource_whose_writes_keep_failing_does_not_hold_up_the_others(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    fake.create(checker("other", services=[{"name": "api", "critical": True}]))
    cluster = await start_cluster()
    await cluster.wait_for_status(lambda s: s.get("maintenance"), name="other")
    fake.fail_next("PATCH", STATUS_PATCH, status=500, times=None)

    fake.update(endpoint_slice("api", ready=0))
    await cluster.wait_for(maintenance_on)
    written = await cluster.wait_for_status(lambda s: s["maintenance"]["active"], name="other")
    assert written["summary"] == {"readyCritical": "0/1"}
    # ...and the failing one is still being retried, not given up.
    attempts = len(fake.requests_to("PATCH", STATUS_PATCH))
    await fake.wait_for_request(
        lambda r: r.method == "PATCH" and r.path.endswith("/shop/status"),
        since=len(fake.requests),
    )
    assert len(fake.requests_to("PATCH", STATUS_PATCH)) > attempts


# -- watch backoff ---------------------------------------------------------------------------


async def test_after_the_api_answers_again_a_disconnect_reconnects_without_the_long_backoff(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    # A long maximum, so an un-reset backoff is plain to see (and a short first delay, so
    # building it up costs the test little).
    cluster = await start_cluster(
        {
            "MWM_SOURCE__KUBERNETES__BACKOFF_INITIAL_S": "0.002",
            "MWM_SOURCE__KUBERNETES__BACKOFF_MAX_S": "4",
        }
    )
    await cluster.wait_for(maintenance_off)

    # An outage of the EndpointSlice lists: ten failures in a row, then the API answers.
    failures = fake.fail_next("GET", r"/namespaces/shop/endpointslices$", status=503, times=10)
    fake.abort_watches("endpointslices")
    await fake.wait_until(lambda: failures.exhausted, timeout_s=10)
    await fake.wait_for_watch("endpointslices")

    # A later disconnect: the reflector reconnects at once (it would wait about 1-2 s had
    # the ten failures still counted).
    cut_at = len(fake.requests)
    cut = asyncio.get_running_loop().time()
    fake.abort_watches("endpointslices")
    reconnect = await fake.wait_for_request(
        lambda r: "/endpointslices" in r.path, since=cut_at, timeout_s=10
    )
    assert reconnect.received_at - cut < 0.5
    fake.update(endpoint_slice("api", ready=0))
    await cluster.wait_for(maintenance_on)


# -- shutdown ----------------------------------------------------------------------------------


async def test_a_change_inside_the_coalesce_window_is_written_on_shutdown(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    cluster = await start_cluster({"MWM_SOURCE__STATUS__COALESCE_S": "60"})
    await cluster.wait_for(maintenance_off)
    fake.update(endpoint_slice("api", ready=0))
    await cluster.wait_for(maintenance_on)
    assert fake.requests_to("PATCH", STATUS_PATCH) == []  # still coalescing

    cluster.proxy.runtime.request_stop()
    written = await cluster.wait_for_status(lambda s: s.get("maintenance", {}).get("active"))
    assert written["summary"] == {"readyCritical": "0/1"}
    await fake.wait_until(lambda: event_reasons(fake) == ["MaintenanceStarted"])


async def test_a_leader_shutting_down_writes_what_is_pending_then_hands_the_lease_over(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    slow = {**FAST_ELECTION, "MWM_SOURCE__STATUS__COALESCE_S": "60"}
    first = await start_cluster({**slow, "MWM_SOURCE__LEADER_ELECTION__IDENTITY": "first"})
    await wait_leading(first)
    second = await start_cluster({**slow, "MWM_SOURCE__LEADER_ELECTION__IDENTITY": "second"})
    await second.wait_for(maintenance_off)
    fake.update(endpoint_slice("api", ready=0))
    await first.wait_for(maintenance_on)

    first.proxy.runtime.request_stop()
    written = await first.wait_for_status(lambda s: s.get("maintenance", {}).get("active"))
    assert written["summary"] == {"readyCritical": "0/1"}
    [flushed] = [a for a in fake.answers if a.accepted and a.request.method == "PATCH"][-1:]
    assert "(first)" in flushed.request.user_agent
    # The Lease is handed back (no holder), and the other replica takes it from there.
    release = await fake.wait_for_request(
        lambda r: (
            r.method == "PUT"
            and "/leases/" in r.path
            and not (r.body or {}).get("spec", {}).get("holderIdentity")
        )
    )
    assert "(first)" in release.user_agent
    await wait_leading(second)
    lease = fake.get("leases", NS, "mwm-controller-leader")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "second"
