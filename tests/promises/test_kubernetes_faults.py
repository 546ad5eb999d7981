"""Promises: faults in Kubernetes never reach users as a false maintenance, a missed change
or a flapping status.

Each test runs the real ``mwm`` against the fake API server (real HTTP, the real
kubernetes-asyncio client) and breaks the server on purpose:

- the API unreachable at start: users get the configured fail-safe (``serve`` by default,
  or ``maintenance``) and readiness says the state is not read yet; once state was read,
  the last known state is kept through an outage, marked stale; when the API is back the
  state converges;
- watches dropped over and over: no false maintenance in any published state, and a change
  made while the watches were down is still seen;
- 410 Gone storms (as HTTP answers and as ``ERROR`` events): re-list, converge, no false
  maintenance, and re-lists in a row back off instead of hammering the API server;
- 429 with ``Retry-After`` on list, watch and status writes: the client waits at least that
  long (seen in the fake's request log), then succeeds;
- 5xx on status writes: retried until written, one accepted write per real change, and a
  retry writes what is true now, so the status never goes back and forth;
- the Lease lost while a status write is in flight: the old leader's write is abandoned
  before the new leader can start, and nothing from it lands afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from controller.store import State
from tests.kube.clusters import (
    FAST_ELECTION,
    NS,
    Cluster,
    ClusterFactory,
    checker,
    create_critical_api,
    endpoint_slice,
    maintenance_off,
    maintenance_on,
    service,
    wait_leading,
)
from tests.kube.fakeapi import Answer, FakeKubeAPI, RecordedRequest

STATUS_PATCH = r"/servicecheckers/shop/status$"


def record_states(cluster: Cluster) -> list[State]:
    """Every state the store publishes from now on (a listener sees each one, in order)."""
    states: list[State] = []
    cluster.proxy.runtime.store.add_listener(states.append)
    return states


def api_is_down(state: State) -> bool:
    """A false alarm if the ``api`` service really has ready endpoints."""
    service_state = state.snapshot.service(NS, "api")
    return state.maintenance.active or service_state is None or not service_state.ready


def answers_to(fake: FakeKubeAPI, method: str, path: str, *, user_agent: str = "") -> list[Answer]:
    return [
        answer
        for answer in fake.answers
        if answer.request in fake.requests_to(method, path)
        and user_agent in answer.request.user_agent
    ]


def accepted_statuses(fake: FakeKubeAPI) -> list[dict[str, Any]]:
    """The status bodies the server accepted, in the order it applied them."""
    return [
        answer.request.body["status"]
        for answer in answers_to(fake, "PATCH", STATUS_PATCH)
        if answer.accepted
    ]


def is_slice_watch(request: RecordedRequest) -> bool:
    return request.is_watch and request.path.endswith("/endpointslices")


# -- the API unreachable ---------------------------------------------------------------------


async def test_api_unreachable_at_start_serves_users_by_default_and_converges_when_it_is_back(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    # What the API would say: maintenance is switched on.  Nobody can read it yet.
    fake.create(checker(services=[], maintenance={"enabled": True, "reason": "Upgrade"}))
    await fake.go_offline()
    # Leader election on (the default): it must survive the unreachable API too.
    cluster = await start_cluster(FAST_ELECTION)
    await cluster.wait_for(lambda s: any("cannot reach" in e for e in s.snapshot.errors))

    response = await cluster.get()
    assert response.status == 200  # the documented default: serve
    assert response.headers["Content-Type"].startswith("application/json")  # the app's echo
    status, body = await cluster.management_json("/readyz")
    assert (status, body["problems"]) == (503, ["state not synced yet"])
    status, body = await cluster.management_json("/status")
    assert (body["synced"], body["maintenance"]["active"]) == (False, False)
    unreachable = [e for e in body["errors"] if "cannot reach the Kubernetes API" in e]
    assert unreachable
    assert not any("ConnectionKey" in e for e in unreachable)  # a message, not a repr

    await fake.go_online()
    state = await cluster.wait_for(maintenance_on)
    assert state.maintenance.reason == "Upgrade"
    assert (await cluster.get()).status == 503
    status, body = await cluster.management_json("/readyz")
    assert status == 200
    status_written = await cluster.wait_for_status(lambda s: s.get("maintenance"))
    assert status_written["maintenance"]["active"] is True


async def test_api_unreachable_at_start_with_fail_safe_maintenance_shows_the_page_until_read(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    await fake.go_offline()
    cluster = await start_cluster({"MWM_SOURCE__KUBERNETES__FAIL_SAFE": "maintenance"})
    # From the very first request, before any attempt to reach the API has failed.
    response = await cluster.get()
    assert response.status == 503
    assert response.headers["Content-Type"].startswith("application/problem+json")
    state = cluster.proxy.runtime.store.current
    assert state.maintenance.active
    assert not state.snapshot.synced

    await fake.go_online()
    await cluster.wait_for(maintenance_off)
    assert (await cluster.get()).status == 200


async def test_api_lost_after_start_keeps_the_last_known_state_marked_stale_then_converges(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    cluster = await start_cluster(
        {
            "MWM_SOURCE__KUBERNETES__FAIL_SAFE": "maintenance",
            "MWM_SOURCE__KUBERNETES__STALE_AFTER_S": "0.2",
        }
    )
    await cluster.wait_for(maintenance_off)

    await fake.go_offline()
    # The app really goes down while nobody can see it: the last known state holds.
    fake.update(endpoint_slice("api", ready=0, not_ready=1))
    state = await cluster.wait_for(lambda s: all(x.stale for x in s.snapshot.services))
    assert not state.maintenance.active  # neither the fail-safe nor a guess
    assert (await cluster.get()).status == 200
    status, body = await cluster.management_json("/status")
    assert body["services"][0]["stale"] is True
    assert body["services"][0]["ready"] is True
    assert body["synced"] is True
    status, _ = await cluster.management_json("/readyz")
    assert status == 200

    await fake.go_online()
    await cluster.wait_for(
        lambda s: maintenance_on(s) and not any(x.stale for x in s.snapshot.services)
    )
    assert (await cluster.get()).status == 503


# -- dropped watches and 410 storms ----------------------------------------------------------


async def drop_every_watch(
    fake: FakeKubeAPI, drops: list[int], *, resource: str = "endpointslices"
) -> None:
    """Cut each watch of ``resource`` as soon as it opens, alternately cleanly and abruptly."""
    while True:
        await fake.wait_for_watch(resource, timeout_s=30)
        if len(drops) % 2:
            drops.append(fake.abort_watches(resource))
        else:
            drops.append(fake.end_watches(resource))
        await fake.wait_until(lambda: not fake.hub.matching(fake.table.resolve(resource)))


async def test_watches_dropped_over_and_over_cause_no_false_maintenance_and_miss_no_change(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.create(checker(services=[{"name": "api", "critical": True}]))
    fake.create(service("api"))
    fake.create(endpoint_slice("api", ready=2))
    cluster = await start_cluster()
    await cluster.wait_for(maintenance_off)
    states = record_states(cluster)
    drops: list[int] = []
    dropper = asyncio.create_task(drop_every_watch(fake, drops))
    try:
        # Churn that keeps the service ready, each step made while watches come and go.
        for ready, not_ready in ((1, 1), (3, 0), (1, 2), (2, 0)):
            fake.update(endpoint_slice("api", ready=ready, not_ready=not_ready))
            await cluster.wait_for(
                lambda s, r=ready: s.snapshot.services[0].ready_endpoints == r  # type: ignore[misc]
            )
            dropped = len(drops)
            await fake.wait_until(lambda d=dropped: len(drops) >= d + 3)  # type: ignore[misc]
        assert not [s for s in states if api_is_down(s)]

        # The real outage happens while the watch is down, and the history it would resume
        # from is gone: only a re-list can see it.
        lists = len(slice_lists(fake))
        reconnecting = fake.hold("GET", r"/endpointslices$", when=is_slice_watch)
        await asyncio.wait_for(reconnecting.arrived.wait(), 5)
        fake.update(endpoint_slice("api", ready=0, not_ready=2))
        fake.compact()
        reconnecting.set()
        await cluster.wait_for(maintenance_on)
        assert len(slice_lists(fake)) > lists
        assert (await cluster.get()).status == 503
    finally:
        dropper.cancel()
    assert len(drops) >= 12
    fake.update(endpoint_slice("api", ready=1))
    await cluster.wait_for(maintenance_off)


def slice_lists(fake: FakeKubeAPI, *, since: int = 0) -> list[RecordedRequest]:
    """EndpointSlice lists (not watches) logged from request number ``since`` on."""
    return [
        r
        for r in fake.requests[since:]
        if r.method == "GET" and r.path.endswith("/endpointslices") and not r.is_watch
    ]


def expired_event() -> dict[str, Any]:
    return {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "too old resource version",
            "reason": "Expired",
            "code": 410,
        },
    }


async def test_410_storm_relists_converges_and_never_shows_false_maintenance(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    backoff_initial_s = 0.05
    cluster = await start_cluster(
        {
            "MWM_SOURCE__KUBERNETES__BACKOFF_INITIAL_S": str(backoff_initial_s),
            "MWM_SOURCE__KUBERNETES__BACKOFF_MAX_S": "0.2",
        }
    )
    await cluster.wait_for(maintenance_off)
    states = record_states(cluster)
    lists = len(slice_lists(fake))

    # 410s in a row as ERROR events on open watches (the history compacted each time)...
    for ready in (2, 3, 4):
        await fake.wait_for_watch("endpointslices")
        before = len(slice_lists(fake))
        fake.update(endpoint_slice("api", ready=ready))
        fake.compact()
        assert fake.inject_watch_event("endpointslices", expired_event()) >= 1
        await fake.wait_until(lambda b=before: len(slice_lists(fake)) > b)  # type: ignore[misc]
    # ...then as answers to the watch requests themselves.
    gone = fake.fail_next(
        "GET", r"/endpointslices$", status=410, reason="Expired", times=4, when=is_slice_watch
    )
    storm_starts = len(fake.requests)
    fake.end_watches("endpointslices")
    await fake.wait_until(lambda: len(slice_lists(fake, since=storm_starts)) >= 4)
    assert gone.exhausted
    # The first 410 re-lists at once; the ones that follow back off: no hot loop of lists.
    storm_lists = slice_lists(fake, since=storm_starts)
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(storm_lists)]
    assert len(gaps) >= 3
    assert min(gaps[1:]) >= backoff_initial_s / 2  # the backoff's jitter takes up to half
    fake.update(endpoint_slice("api", ready=5))
    await cluster.wait_for(lambda s: s.snapshot.services[0].ready_endpoints == 5)
    assert len(slice_lists(fake)) - lists >= 3 + 4  # one re-list per 410
    assert not [s for s in states if api_is_down(s)]

    # Converged: the next real change is seen as usual.
    fake.update(endpoint_slice("api", ready=0))
    await cluster.wait_for(maintenance_on)


# -- throttling ------------------------------------------------------------------------------


def waits_after(
    fake: FakeKubeAPI, first: Answer, follows: Callable[[RecordedRequest], bool]
) -> float:
    """Seconds between ``first``'s answer and the next request that ``follows`` it."""
    index = fake.requests.index(first.request)
    nxt = next(r for r in fake.requests[index + 1 :] if follows(r))
    return nxt.received_at - first.at


def is_list(request: RecordedRequest) -> bool:
    return request.path.endswith("/servicecheckers") and not request.is_watch


THROTTLED = {
    # Backoff far below Retry-After: only honouring the header makes the wait long enough.
    "MWM_SOURCE__KUBERNETES__BACKOFF_MAX_S": "2",
    "MWM_SOURCE__STATUS__RETRY_MAX_S": "2",
}


async def test_429_on_list_and_watch_is_waited_out_for_retry_after_then_succeeds(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    fake.fail_next("GET", r"/servicecheckers$", status=429, retry_after_s=1, when=is_list)
    cluster = await start_cluster(THROTTLED)
    await cluster.wait_for(maintenance_off)
    [throttled] = [a for a in fake.answers if a.status == 429]
    assert waits_after(fake, throttled, is_list) >= 1.0

    throttle = fake.fail_next(
        "GET", r"/endpointslices$", status=429, retry_after_s=1, when=is_slice_watch
    )
    fake.end_watches("endpointslices")
    await fake.wait_until(lambda: throttle.exhausted)
    fake.update(endpoint_slice("api", ready=0))
    await cluster.wait_for(maintenance_on)
    [throttled] = [a for a in fake.answers if a.status == 429 and is_slice_watch(a.request)]
    assert waits_after(fake, throttled, is_slice_watch) >= 1.0


async def test_429_on_status_writes_is_waited_out_for_retry_after_then_written(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    cluster = await start_cluster(THROTTLED)
    await cluster.wait_for_status(lambda s: s.get("maintenance"))
    fake.fail_next("PATCH", STATUS_PATCH, status=429, retry_after_s=1)
    fake.update(endpoint_slice("api", ready=0))
    status = await cluster.wait_for_status(lambda s: s["maintenance"]["active"])
    assert status["serviceStatuses"][0]["ready"] is False
    [throttled] = [a for a in fake.answers if a.status == 429]
    assert waits_after(fake, throttled, lambda r: r.method == "PATCH") >= 1.0


# -- status writes ---------------------------------------------------------------------------


async def test_5xx_on_status_writes_is_retried_until_written_once_per_real_change(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    cluster = await start_cluster()
    await cluster.wait_for_status(lambda s: s.get("maintenance"))
    written = len(accepted_statuses(fake))
    attempts = len(fake.requests_to("PATCH", STATUS_PATCH))
    fake.fail_next("PATCH", STATUS_PATCH, status=500, times=2)
    fake.fail_next("PATCH", STATUS_PATCH, status=503, times=1)

    fake.update(endpoint_slice("api", ready=0))
    await cluster.wait_for_status(lambda s: s["maintenance"]["active"])
    fake.update(endpoint_slice("api", ready=1))
    await cluster.wait_for_status(lambda s: not s["maintenance"]["active"])

    # Two real changes, three failures: five attempts, two accepted, in order.
    assert len(fake.requests_to("PATCH", STATUS_PATCH)) - attempts == 2 + 3
    assert [s["maintenance"]["active"] for s in accepted_statuses(fake)[written:]] == [True, False]
    await fake.wait_until(lambda: len(fake.list_objects("events", NS)) == 2)
    events = sorted(e["reason"] for e in fake.list_objects("events", NS))
    assert events == ["MaintenanceEnded", "MaintenanceStarted"]


async def test_a_status_write_retried_after_5xx_writes_what_is_true_now_so_status_never_flaps(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    cluster = await start_cluster()
    await cluster.wait_for_status(lambda s: s.get("maintenance"))
    written = len(accepted_statuses(fake))
    attempts = len(fake.requests_to("PATCH", STATUS_PATCH))
    # The write of the outage is held in flight, then fails once the outage is over.
    held = fake.hold("PATCH", STATUS_PATCH)
    fake.fail_next("PATCH", STATUS_PATCH, status=503)
    fake.update(endpoint_slice("api", ready=0))
    await cluster.wait_for(maintenance_on)
    await held.arrived.wait()
    assert held.held[0].body["status"]["maintenance"]["active"] is True
    fake.update(endpoint_slice("api", ready=1))
    await cluster.wait_for(maintenance_off)
    held.set()

    # The next real change is written; the outage that ended before it could be written
    # never is: the status did not go to "active" and back.
    fake.update(endpoint_slice("api", ready=2))
    await cluster.wait_for_status(lambda s: s["serviceStatuses"][0]["readyEndpoints"] == 2)
    assert [s["maintenance"]["active"] for s in accepted_statuses(fake)[written:]] == [False]
    assert len(fake.requests_to("PATCH", STATUS_PATCH)) - attempts == 1 + 1
    assert fake.list_objects("events", NS) == []


# -- leadership ------------------------------------------------------------------------------


async def test_a_leader_losing_its_lease_mid_write_stops_writing_before_the_new_leader_starts(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    fake.create(checker(services=[], maintenance={"enabled": False}))
    first = await start_cluster({**FAST_ELECTION, "MWM_SOURCE__LEADER_ELECTION__IDENTITY": "first"})
    await wait_leading(first)
    await first.wait_for_status(lambda s: s.get("maintenance"))
    second = await start_cluster(
        {**FAST_ELECTION, "MWM_SOURCE__LEADER_ELECTION__IDENTITY": "second"}
    )
    await second.wait_for(maintenance_off)

    # The leader sends a status write; the server holds it in flight...
    in_flight = fake.hold("PATCH", STATUS_PATCH, when=lambda r: "(first)" in r.user_agent)
    fake.patch("servicecheckers", NS, "shop", {"spec": {"maintenance": {"enabled": True}}})
    await asyncio.wait_for(in_flight.arrived.wait(), 5)
    # ...and from now on the leader's renewals hang: it loses the lease to the follower.
    fake.hold(path=r"/leases/", when=lambda r: "(first)" in r.user_agent, times=None)
    await wait_leading(second)
    await second.wait_for_status(lambda s: s["maintenance"]["active"])
    lease = fake.get("leases", NS, "mwm-controller-leader")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "second"

    # Whatever the server does with the old leader's request now, it must not land.
    fake.clear_faults()
    await fake.wait_until(lambda: any(a.request is in_flight.held[0] for a in fake.answers))
    [old_write] = [a for a in fake.answers if a.request is in_flight.held[0]]
    taken_over = next(
        a
        for a in answers_to(fake, "PUT", r"/leases/", user_agent="(second)")
        if a.accepted and a.request.body["spec"]["holderIdentity"] == "second"
    )
    assert old_write.status is None  # abandoned by the old leader, never applied
    assert old_write.at < taken_over.at  # ...before the new leader took the lease
    new_first_write = next(
        a for a in answers_to(fake, "PATCH", STATUS_PATCH, user_agent="(second)") if a.accepted
    )
    late = [
        a
        for a in answers_to(fake, "PATCH", STATUS_PATCH, user_agent="(first)")
        if a.accepted and a.at > taken_over.at
    ]
    assert late == []
    assert new_first_write.at > taken_over.at
    status = await second.status_of()
    assert status["maintenance"]["active"] is True
