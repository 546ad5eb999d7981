"""Leader election at shutdown and under an outage, against the fake API server.

- A leader that resigns hands the Lease back (client-go's ``ReleaseOnCancel``): a follower
  takes over at its next attempt, not a lease duration later; a Lease another replica took
  in the meantime is left alone; the whole resignation keeps to its time and never raises.
- Every client names itself ``mwm/<version> (...)`` and every write ``fieldManager=mwm``.
- An unreachable Lease is logged when the trouble starts, now and then while it lasts, and
  when it ends, not at every attempt.

Waits are on events (``Leadership.changed``, the fake's request log), never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from controller.kube import KubeApi, user_agent, version
from controller.leadership import LEASE_TROUBLE_REPEAT_S, Leadership
from controller.settings import LeaderElectionSettings
from tests.kube.clusters import (
    FAST_ELECTION,
    NS,
    ClusterFactory,
    create_critical_api,
)
from tests.kube.fakeapi import FakeKubeAPI, RecordedRequest
from tests.mwmprocess import run_cli

LEASE_NAME = "mwm-controller-leader"
LEASE_PATH = rf"/leases/{LEASE_NAME}$"

SETTINGS = LeaderElectionSettings(lease_duration_s=10, renew_deadline_s=1.5, retry_period_s=1)
"""The shortest retry and renewal the settings allow, and a lease duration long enough that
taking over by expiry cannot pass for taking over after a release."""


@dataclass
class Replica:
    leadership: Leadership
    task: asyncio.Task[None]
    stop: asyncio.Event
    """The caller's request that the work stop (the work returns when it is set)."""
    fence_at_stop: list[float | None] = field(default_factory=list)
    """``write_deadline()`` as the work saw it when asked to stop."""
    work_cancelled: bool = False


class Replicas:
    """Leadership instances, each with its own client (User-Agent ``mwm/... (<identity>)``)."""

    def __init__(self, fake: FakeKubeAPI, stack: contextlib.AsyncExitStack) -> None:
        self.fake = fake
        self.stack = stack
        self.started: list[Replica] = []

    async def start(
        self,
        identity: str,
        *,
        stops_when_asked: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> Replica:
        api = await self.stack.enter_async_context(
            KubeApi.connect(host=self.fake.url, user_agent=user_agent(identity))
        )
        extra: dict[str, Any] = {} if clock is None else {"clock": clock}
        leadership = Leadership(api, SETTINGS, namespace=NS, identity=identity, **extra)
        stop = asyncio.Event()
        replica: Replica

        async def work() -> None:
            try:
                await stop.wait()
                replica.fence_at_stop.append(leadership.write_deadline())
                if not stops_when_asked:
                    await asyncio.Event().wait()
            except asyncio.CancelledError:
                replica.work_cancelled = True
                raise

        task = asyncio.create_task(run_leadership(leadership, work))
        replica = Replica(leadership, task, stop)
        self.started.append(replica)
        return replica

    async def close(self) -> None:
        for replica in self.started:
            replica.task.cancel()
        await asyncio.gather(*(r.task for r in self.started), return_exceptions=True)


async def run_leadership(
    leadership: Leadership, work: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    await leadership.run(work)


@pytest.fixture
async def replicas(fake: FakeKubeAPI) -> AsyncIterator[Replicas]:
    async with contextlib.AsyncExitStack() as stack:
        started = Replicas(fake, stack)
        try:
            yield started
        finally:
            await started.close()


async def wait_leading(leadership: Leadership, *, timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        while not leadership.leading:
            await leadership.changed.wait()


async def returned(replica: Replica) -> None:
    """``run()`` returns by itself once resigned (not cancelled, no error)."""
    await asyncio.wait_for(replica.task, 1)
    assert not replica.task.cancelled()


def by(identity: str) -> Callable[[RecordedRequest], bool]:
    return lambda request: f"({identity})" in request.user_agent


def is_release(request: RecordedRequest) -> bool:
    spec = request.body.get("spec") if isinstance(request.body, dict) else None
    return isinstance(spec, dict) and spec.get("holderIdentity") == ""


def releases(fake: FakeKubeAPI) -> list[RecordedRequest]:
    return [r for r in fake.requests_to("PUT", LEASE_PATH) if is_release(r)]


def lease_holder(fake: FakeKubeAPI) -> str | None:
    lease = fake.get("leases", NS, LEASE_NAME)
    assert lease is not None
    holder = lease["spec"].get("holderIdentity")
    return holder if isinstance(holder, str) else None


# -- resigning ---------------------------------------------------------------------------------


async def test_a_resigning_leader_releases_the_lease_and_a_follower_takes_over_at_once(
    fake: FakeKubeAPI, replicas: Replicas
) -> None:
    loop = asyncio.get_running_loop()
    a = await replicas.start("a")
    await wait_leading(a.leadership)
    # A transition count to keep (kubernetes-asyncio itself never sets one).
    fake.patch("leases", NS, LEASE_NAME, {"spec": {"leaseTransitions": 3}})
    b = await replicas.start("b")
    # The follower has seen the Lease held: without a release it would wait lease_duration_s.
    await fake.wait_for_request(lambda r: r.method == "GET" and by("b")(r))
    assert not b.leadership.leading

    a.stop.set()
    await a.leadership.resign(timeout_s=5)
    resigned_at = loop.time()

    assert a.fence_at_stop == [None]  # no write may start once resigning
    assert a.leadership.write_deadline() is None
    assert not a.leadership.leading
    assert not a.work_cancelled  # it stopped by itself, in time
    await returned(a)  # run() returned, not cancelled
    [release] = releases(fake)
    assert by("a")(release)
    assert release.query.get("fieldManager") == "mwm"
    spec = release.body["spec"]
    assert spec["holderIdentity"] == ""
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 3
    assert spec["acquireTime"] == spec["renewTime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", spec["renewTime"])
    assert release.body["metadata"]["resourceVersion"]  # conditional on what was read
    [answer] = [x for x in fake.answers if x.request is release]
    assert answer.status == 200

    await wait_leading(b.leadership)
    took = loop.time() - resigned_at
    assert took < SETTINGS.retry_period_s + 0.5 < SETTINGS.lease_duration_s
    assert lease_holder(fake) == "b"
    # The old leader competes no more.
    assert not any(by("a")(r) for r in fake.requests[fake.requests.index(release) + 1 :])


async def test_resign_leaves_alone_a_lease_another_replica_holds(
    fake: FakeKubeAPI, replicas: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="controller.leadership")
    a = await replicas.start("a")
    await wait_leading(a.leadership)
    fake.patch("leases", NS, LEASE_NAME, {"spec": {"holderIdentity": "other"}})

    a.stop.set()
    await a.leadership.resign(timeout_s=5)

    assert releases(fake) == []
    assert lease_holder(fake) == "other"
    assert "not releasing the Lease: other holds it now" in caplog.messages
    await returned(a)


async def test_resign_does_not_release_a_lease_taken_over_between_its_read_and_its_write(
    fake: FakeKubeAPI, replicas: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    a = await replicas.start("a")
    await wait_leading(a.leadership)
    held = fake.hold("PUT", LEASE_PATH, when=is_release)

    a.stop.set()
    resigning = asyncio.create_task(a.leadership.resign(timeout_s=5))
    await asyncio.wait_for(held.arrived.wait(), 5)
    fake.patch("leases", NS, LEASE_NAME, {"spec": {"holderIdentity": "other"}})  # a takeover
    held.set()
    await resigning  # no exception

    [release] = held.held
    await fake.wait_until(lambda: any(x.request is release for x in fake.answers))
    [answer] = [x for x in fake.answers if x.request is release]
    assert answer.status == 409
    assert lease_holder(fake) == "other"
    assert any(
        r.levelno == logging.WARNING and "did not release the Lease" in r.getMessage()
        for r in caplog.records
    )


async def test_resign_cancels_a_work_that_does_not_stop_and_keeps_to_its_time(
    fake: FakeKubeAPI, replicas: Replicas
) -> None:
    loop = asyncio.get_running_loop()
    a = await replicas.start("a", stops_when_asked=False)
    await wait_leading(a.leadership)

    a.stop.set()
    started = loop.time()
    await a.leadership.resign(timeout_s=1)

    assert loop.time() - started < 1 + 0.25
    assert a.work_cancelled
    await returned(a)
    assert lease_holder(fake) == ""  # stopped (by cancellation) in time: released


async def test_resign_with_the_api_unreachable_keeps_to_its_time_and_does_not_raise(
    fake: FakeKubeAPI, replicas: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    a = await replicas.start("a")
    await wait_leading(a.leadership)
    await fake.go_offline()

    a.stop.set()
    started = loop.time()
    await a.leadership.resign(timeout_s=1)

    assert loop.time() - started < 1 + 0.25
    await returned(a)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("cannot release the Lease") for m in warnings), warnings
    assert lease_holder(fake) == "a"  # left to expire


async def test_a_follower_that_resigns_stops_competing_and_writes_nothing(
    fake: FakeKubeAPI, replicas: Replicas
) -> None:
    a = await replicas.start("a")
    await wait_leading(a.leadership)
    b = await replicas.start("b")
    await fake.wait_for_request(lambda r: r.method == "GET" and by("b")(r))

    await b.leadership.resign(timeout_s=1)

    assert b.task.done()
    await returned(b)
    assert b.leadership.write_deadline() is None
    assert not [r for r in fake.requests if by("b")(r) and r.method != "GET"]
    assert lease_holder(fake) == "a"


# -- identifying ourselves -----------------------------------------------------------------------


async def test_the_cli_and_the_controller_name_themselves_mwm_and_write_as_field_manager_mwm(
    fake: FakeKubeAPI, start_cluster: ClusterFactory
) -> None:
    create_critical_api(fake)
    cluster = await start_cluster(
        {**FAST_ELECTION, "MWM_SOURCE__LEADER_ELECTION__IDENTITY": "solo"}
    )
    await cluster.wait_for_status(lambda s: s.get("serviceStatuses"))
    target = ["--checker", "shop", "-n", NS, "--api-url", fake.url]
    on = await asyncio.to_thread(run_cli, "on", *target, env={})
    assert on.returncode == 0, on.stderr

    assert version()  # "0" when not installed
    assert all(r.user_agent.startswith(f"mwm/{version()} (") for r in fake.requests), {
        r.user_agent for r in fake.requests
    }
    status_writes = fake.requests_to("PATCH", r"/servicecheckers/shop/status$")
    assert status_writes
    for write in status_writes:
        assert write.user_agent == f"mwm/{version()} (solo)"
        assert write.query.get("fieldManager") == "mwm"
    assert fake.requests_to("PUT", LEASE_PATH)  # the election's own client, too
    assert all(r.user_agent.endswith("(solo)") for r in fake.requests_to(path="/leases/"))
    [switch] = fake.requests_to("PATCH", r"/servicecheckers/shop$")
    assert switch.user_agent == f"mwm/{version()} (cli)"
    assert switch.query.get("fieldManager") == "mwm"


# -- an unreachable Lease in the logs ------------------------------------------------------------


async def test_an_unreachable_lease_is_logged_when_it_starts_now_and_then_and_when_it_ends(
    fake: FakeKubeAPI, replicas: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="controller.leadership")
    await fake.go_offline()
    # The injected clock: one reading per failed attempt (and one when it is over).
    readings = [0.0, 10.0, LEASE_TROUBLE_REPEAT_S + 100, LEASE_TROUBLE_REPEAT_S + 150]
    read = 0
    third_failure = asyncio.Event()

    def clock() -> float:
        nonlocal read
        value = readings[min(read, len(readings) - 1)]
        read += 1
        if read == 3:
            third_failure.set()
        return value

    a = await replicas.start("a", clock=clock)
    await asyncio.wait_for(third_failure.wait(), 10)
    await fake.go_online()
    await wait_leading(a.leadership)

    logged = [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == "controller.leadership"
    ]
    warnings = [m for level, m in logged if level == logging.WARNING]
    assert len(warnings) == 2, logged  # not one per attempt
    first, repeated = warnings
    assert first.startswith("cannot acquire the Lease: Cannot connect to host 127.0.0.1:")
    assert repeated.startswith(
        f"still cannot acquire the Lease after {LEASE_TROUBLE_REPEAT_S + 100:.0f} s "
        "(3 failed attempts): Cannot connect to host"
    )
    assert not any("ConnectionKey" in m or "Error(" in m for m in warnings)
    recovered = [m for level, m in logged if level == logging.INFO and "reachable" in m]
    assert len(recovered) == 1
    assert recovered[0].startswith(
        f"Lease reachable again after {LEASE_TROUBLE_REPEAT_S + 150:.0f} s"
    )
