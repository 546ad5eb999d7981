"""The maintenance verdict: every trigger, its end, and when the clock must look again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from controller.snapshot import (
    Cause,
    CauseKind,
    ManualSwitch,
    Mode,
    Route,
    ServiceReason,
    ServiceState,
    Snapshot,
    Upcoming,
    Window,
    merge_services,
    upcoming,
)
from controller.store import SnapshotStore

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def service(
    name: str = "api",
    *,
    critical: bool = True,
    ready: int = 1,
    total: int = 1,
    min_ready: int = 1,
    reason: ServiceReason | None = None,
    routes: tuple[Route, ...] = (),
    mode: Mode = Mode.FULL,
) -> ServiceState:
    if reason is None:
        reason = ServiceReason.READY if ready >= min_ready else ServiceReason.NO_READY_ENDPOINTS
    return ServiceState(
        name=name,
        namespace="shop",
        critical=critical,
        ready_endpoints=ready,
        total_endpoints=total,
        reason=reason,
        min_ready=min_ready,
        routes=routes,
        mode=mode,
        last_transition=NOW - HOUR,
    )


@pytest.mark.parametrize(
    ("snapshot", "active", "kinds"),
    [
        pytest.param(Snapshot(), False, [], id="empty"),
        pytest.param(Snapshot(services=(service(),)), False, [], id="critical-ready"),
        pytest.param(
            Snapshot(services=(service(ready=0),)), True, [CauseKind.SERVICE_DOWN], id="down"
        ),
        pytest.param(
            Snapshot(services=(service(ready=1, total=3, min_ready=2),)),
            True,
            [CauseKind.SERVICE_DOWN],
            id="below-min-ready",
        ),
        pytest.param(
            Snapshot(services=(service(critical=False, ready=0),)),
            False,
            [],
            id="non-critical-down",
        ),
        pytest.param(
            Snapshot(services=(service(ready=0, total=0, reason=ServiceReason.UNKNOWN),)),
            False,
            [],
            id="unknown-never-triggers",
        ),
        pytest.param(
            Snapshot(switches=(ManualSwitch(source="file", enabled=True),)),
            True,
            [CauseKind.MANUAL],
            id="manual-on",
        ),
        pytest.param(
            Snapshot(switches=(ManualSwitch(source="file", enabled=False),)),
            False,
            [],
            id="manual-off",
        ),
        pytest.param(
            Snapshot(switches=(ManualSwitch(source="f", enabled=True, until=NOW),)),
            False,
            [],
            id="manual-until-reached",
        ),
        pytest.param(
            Snapshot(switches=(ManualSwitch(source="f", enabled=True, until=NOW + HOUR),)),
            True,
            [CauseKind.MANUAL],
            id="manual-until-ahead",
        ),
        pytest.param(
            Snapshot(windows=(Window(start=NOW - HOUR, end=NOW + HOUR),)),
            True,
            [CauseKind.WINDOW],
            id="window-open",
        ),
        pytest.param(
            Snapshot(windows=(Window(start=NOW, end=NOW + HOUR),)),
            True,
            [CauseKind.WINDOW],
            id="window-opens-now",
        ),
        pytest.param(
            Snapshot(windows=(Window(start=NOW - HOUR, end=NOW),)),
            False,
            [],
            id="window-ended",
        ),
        pytest.param(
            Snapshot(
                services=(service(ready=0),),
                switches=(ManualSwitch(source="f", enabled=True),),
                windows=(Window(start=NOW - HOUR, end=NOW + HOUR),),
            ),
            True,
            [CauseKind.SERVICE_DOWN, CauseKind.MANUAL, CauseKind.WINDOW],
            id="all-causes",
        ),
    ],
)
def test_verdict(snapshot: Snapshot, active: bool, kinds: list[CauseKind]) -> None:
    maintenance = snapshot.evaluate(NOW)
    assert maintenance.active is active
    assert [cause.kind for cause in maintenance.causes] == kinds


def test_until_is_known_only_when_every_cause_ends() -> None:
    ends = Snapshot(
        switches=(ManualSwitch(source="f", enabled=True, until=NOW + HOUR),),
        windows=(Window(start=NOW - HOUR, end=NOW + 2 * HOUR, reason="DB upgrade"),),
    ).evaluate(NOW)
    assert ends.until == NOW + 2 * HOUR
    assert ends.reason == "Scheduled maintenance; DB upgrade"
    open_ended = Snapshot(
        services=(service(ready=0),),
        windows=(Window(start=NOW - HOUR, end=NOW + HOUR),),
    ).evaluate(NOW)
    assert open_ended.until is None
    assert open_ended.affected_services == ("api",)


def test_next_change_is_the_earliest_future_boundary() -> None:
    snapshot = Snapshot(
        switches=(ManualSwitch(source="f", enabled=True, until=NOW + 3 * HOUR),),
        windows=(
            Window(start=NOW + HOUR, end=NOW + 2 * HOUR),
            Window(start=NOW - HOUR, end=NOW - HOUR / 2),
        ),
    )
    assert snapshot.next_change_after(NOW) == NOW + HOUR
    assert snapshot.next_change_after(NOW + HOUR) == NOW + 2 * HOUR
    assert snapshot.next_change_after(NOW + 3 * HOUR) is None


def test_an_announcement_runs_from_start_minus_announce_seconds_until_start() -> None:
    window = Window(start=NOW + HOUR, end=NOW + 2 * HOUR, announce_seconds=600)
    assert window.announce_from == NOW + HOUR - timedelta(seconds=600)
    assert not window.announced_at(NOW + HOUR - timedelta(seconds=601))
    assert window.announced_at(NOW + HOUR - timedelta(seconds=600))
    assert window.announced_at(NOW + HOUR - timedelta(microseconds=1))
    assert not window.announced_at(NOW + HOUR)  # open now, no longer coming
    for never in (None, 0):
        quiet = Window(start=NOW + HOUR, end=NOW + 2 * HOUR, announce_seconds=never)
        assert quiet.announce_from is None
        assert not quiet.announced_at(NOW + HOUR - timedelta(seconds=1))


def test_upcoming_is_the_next_window_not_yet_open() -> None:
    past = Window(start=NOW - 2 * HOUR, end=NOW - HOUR)
    open_ = Window(start=NOW - HOUR, end=NOW + HOUR)
    later = Window(start=NOW + 3 * HOUR, end=NOW + 4 * HOUR, announce_seconds=5 * 3600)
    next_ = Window(start=NOW + 2 * HOUR, end=NOW + 3 * HOUR, reason="DB", announce_seconds=3600)
    shorter = Window(start=NOW + 2 * HOUR, end=NOW + 2 * HOUR + 60 * (HOUR / 3600))
    assert upcoming((past, open_), NOW) is None
    assert upcoming((), NOW) is None
    # ``later`` is announced already, but only the next window is reported.
    assert upcoming((later, past, next_, open_), NOW) == Upcoming(window=next_, announced=False)
    assert upcoming((later, next_), NOW + HOUR) == Upcoming(window=next_, announced=True)
    assert upcoming((later, next_), NOW + 2 * HOUR) == Upcoming(window=later, announced=True)
    assert upcoming((next_, shorter), NOW) == Upcoming(window=shorter, announced=False)


def test_next_change_includes_the_start_of_an_announcement() -> None:
    snapshot = Snapshot(
        windows=(Window(start=NOW + 2 * HOUR, end=NOW + 3 * HOUR, announce_seconds=3600),)
    )
    assert snapshot.next_change_after(NOW) == NOW + HOUR
    assert snapshot.next_change_after(NOW + HOUR) == NOW + 2 * HOUR
    quiet = Snapshot(
        windows=(Window(start=NOW + 2 * HOUR, end=NOW + 3 * HOUR, announce_seconds=0),)
    )
    assert quiet.next_change_after(NOW) == NOW + 2 * HOUR


def test_merge_lists_each_service_once_critical_if_any_says_so() -> None:
    merged = merge_services(
        [service("b", critical=False), service("a", critical=False), service("b", critical=True)]
    )
    assert [(s.name, s.critical) for s in merged] == [("a", False), ("b", True)]


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_store_swaps_and_versions_snapshots() -> None:
    store = SnapshotStore(clock=FakeClock(NOW))
    first = store.publish(Snapshot(services=(service(),)))
    second = store.publish(Snapshot(services=(service(ready=0),)))
    assert (first.snapshot.version, second.snapshot.version) == (1, 2)
    assert second.generation > first.generation
    assert not first.maintenance.active  # the old state is untouched
    assert second.maintenance.active
    assert store.current is second


def test_store_switches_are_owned_by_their_source() -> None:
    store = SnapshotStore(clock=FakeClock(NOW))
    store.set_switch(ManualSwitch(source="file", enabled=True, reason="file"))
    store.set_switch(ManualSwitch(source="admin-api", enabled=True, reason="admin"))
    store.set_switch(ManualSwitch(source="file", enabled=False))
    switches = {s.source: s.enabled for s in store.current.snapshot.switches}
    assert switches == {"file": False, "admin-api": True}
    assert store.current.maintenance.reason == "admin"


def test_refresh_flips_the_verdict_when_time_passes_and_only_then() -> None:
    clock = FakeClock(NOW)
    store = SnapshotStore(clock=clock)
    store.publish(Snapshot(windows=(Window(start=NOW + HOUR, end=NOW + 2 * HOUR),)))
    before = store.current
    assert store.refresh() is before  # nothing changed: same state, no new generation
    clock.now = NOW + HOUR
    opened = store.refresh()
    assert opened.maintenance.active
    assert opened.changed_at == NOW + HOUR
    clock.now = NOW + 2 * HOUR
    assert not store.refresh().maintenance.active


def test_refresh_makes_a_generation_when_an_announcement_starts() -> None:
    clock = FakeClock(NOW)
    store = SnapshotStore(clock=clock)
    window = Window(start=NOW + 2 * HOUR, end=NOW + 3 * HOUR, announce_seconds=3600)
    store.publish(Snapshot(windows=(window,)))
    before = store.current
    assert before.upcoming == Upcoming(window=window, announced=False)
    clock.now = NOW + HOUR - timedelta(seconds=1)
    assert store.refresh() is before
    clock.now = NOW + HOUR
    announced = store.refresh()
    assert announced.generation == before.generation + 1
    assert announced.upcoming == Upcoming(window=window, announced=True)
    assert not announced.maintenance.active
    assert announced.changed_at == before.changed_at  # maintenance itself did not flip
    assert store.refresh() is announced
    clock.now = NOW + 2 * HOUR
    opened = store.refresh()
    assert opened.maintenance.active
    assert opened.upcoming is None


async def test_clock_task_announces_a_window_on_time() -> None:
    store = SnapshotStore()
    clock_task = asyncio.create_task(store.run_clock())
    try:
        announce_from = datetime.now(UTC) + timedelta(milliseconds=100)
        window = Window(
            start=announce_from + HOUR, end=announce_from + 2 * HOUR, announce_seconds=3600
        )
        state = store.publish(Snapshot(windows=(window,)))
        assert state.upcoming == Upcoming(window=window, announced=False)
        while not (store.current.upcoming and store.current.upcoming.announced):
            await asyncio.wait_for(store.wait_for_change(store.current.generation), 5)
        assert datetime.now(UTC) >= announce_from
        assert not store.current.maintenance.active
    finally:
        clock_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await clock_task


async def test_clock_task_reevaluates_when_until_passes() -> None:
    store = SnapshotStore()
    clock_task = asyncio.create_task(store.run_clock())
    try:
        until = datetime.now(UTC) + timedelta(milliseconds=100)
        state = store.set_switch(ManualSwitch(source="admin-api", enabled=True, until=until))
        assert state.maintenance.active
        while store.current.maintenance.active:
            await asyncio.wait_for(store.wait_for_change(store.current.generation), 5)
        assert datetime.now(UTC) >= until
    finally:
        clock_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await clock_task


async def test_listeners_hear_every_change() -> None:
    store = SnapshotStore(clock=FakeClock(NOW))
    heard: list[int] = []
    store.add_listener(lambda state: heard.append(state.generation))
    store.publish(Snapshot())
    store.set_switch(ManualSwitch(source="x", enabled=True))
    assert heard == [1, 2]


# --- scoped maintenance ------------------------------------------------------------------

CHECKOUT = (Route("/checkout", frozenset({"POST"})),)


def test_critical_services_without_routes_are_one_cause_per_mode() -> None:
    snapshot = Snapshot(
        services=(
            service("db-primary", ready=0, mode=Mode.READ_ONLY),
            service("api", ready=0),
            service("auth", ready=0),
            service("db-replica"),
        )
    )
    verdict = snapshot.evaluate(NOW)

    assert verdict.active
    assert verdict.whole_site
    assert [(c.mode, c.services, c.routes) for c in verdict.causes] == [
        (Mode.FULL, ("api", "auth"), ()),
        (Mode.READ_ONLY, ("db-primary",), ()),
    ]
    assert verdict.causes[0].reason == "2 critical services are unavailable"
    assert verdict.causes[1].reason == (
        "Writes are paused because a critical service is unavailable"
    )


def test_only_read_only_services_down_is_not_whole_site() -> None:
    verdict = Snapshot(services=(service("db", ready=0, mode=Mode.READ_ONLY),)).evaluate(NOW)

    assert verdict.active
    assert not verdict.whole_site
    assert verdict.causes[0].mode is Mode.READ_ONLY


@pytest.mark.parametrize("critical", [True, False], ids=["critical", "non-critical"])
def test_a_service_with_routes_stops_only_its_routes(critical: bool) -> None:
    snapshot = Snapshot(
        services=(
            service("payments", critical=critical, ready=0, routes=CHECKOUT),
            service("search", critical=critical, ready=0, routes=(Route("/search"),)),
        )
    )
    verdict = snapshot.evaluate(NOW)

    assert verdict.active
    assert not verdict.whole_site
    assert verdict.causes == (
        Cause(
            kind=CauseKind.SERVICE_DOWN,
            reason="A service this part of the site needs is unavailable",
            since=NOW - HOUR,
            services=("payments",),
            routes=CHECKOUT,
        ),
        Cause(
            kind=CauseKind.SERVICE_DOWN,
            reason="A service this part of the site needs is unavailable",
            since=NOW - HOUR,
            services=("search",),
            routes=(Route("/search"),),
        ),
    )
    assert verdict.affected_routes == (*CHECKOUT, Route("/search"))


def test_a_read_only_service_with_routes_pauses_writes_there() -> None:
    down = service("cart-db", ready=0, routes=(Route("/cart"),), mode=Mode.READ_ONLY)
    (cause,) = Snapshot(services=(down,)).evaluate(NOW).causes

    assert (cause.mode, cause.routes, cause.services) == (
        Mode.READ_ONLY,
        (Route("/cart"),),
        ("cart-db",),
    )
    assert cause.reason.startswith("Writes to this part of the site are paused")


@pytest.mark.parametrize(
    "state",
    [
        service("payments", ready=0, reason=ServiceReason.UNKNOWN, routes=CHECKOUT),
        service("payments", routes=CHECKOUT),
        service("db", ready=0, reason=ServiceReason.UNKNOWN, mode=Mode.READ_ONLY),
        service("search", critical=False, ready=0),
    ],
    ids=["unknown-with-routes", "ready-with-routes", "unknown-read-only", "non-critical-no-routes"],
)
def test_what_never_triggers(state: ServiceState) -> None:
    assert not Snapshot(services=(state,)).evaluate(NOW).active


def test_switches_and_windows_carry_their_mode() -> None:
    snapshot = Snapshot(
        switches=(ManualSwitch(source="file", enabled=True, mode=Mode.READ_ONLY),),
        windows=(Window(start=NOW - HOUR, end=NOW + HOUR, mode=Mode.READ_ONLY),),
    )
    verdict = snapshot.evaluate(NOW)

    assert [(c.kind, c.mode) for c in verdict.causes] == [
        (CauseKind.MANUAL, Mode.READ_ONLY),
        (CauseKind.WINDOW, Mode.READ_ONLY),
    ]
    assert not verdict.whole_site


def test_restricted_keeps_the_causes_named() -> None:
    snapshot = Snapshot(
        services=(service("payments", ready=0, routes=CHECKOUT),),
        switches=(ManualSwitch(source="file", enabled=True, reason="Upgrade"),),
    )
    verdict = snapshot.evaluate(NOW)

    assert verdict.whole_site
    only = verdict.restricted((1,))
    assert only.active
    assert only.reason == "Upgrade"
    assert only.affected_services == ()
    assert not verdict.restricted(()).active
