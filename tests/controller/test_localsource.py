"""The local source end to end: a real file, real probe targets, the real store."""

from __future__ import annotations

import asyncio
import os
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from controller.localsource import LocalSource
from controller.localspec import LocalConfigError
from controller.settings import LocalSourceSettings
from controller.snapshot import (
    CauseKind,
    ManualSwitch,
    Mode,
    Route,
    ServiceReason,
    ServiceState,
)
from controller.store import SnapshotStore, State
from tests.controller.conftest import Target

FAST = {
    "reload_interval_s": 0.01,
    "probe_interval_s": 0.01,
    "probe_timeout_s": 2.0,
    "failure_threshold": 2,
    "success_threshold": 1,
}


async def wait_until(
    store: SnapshotStore, predicate: Callable[[State], bool], *, timeout_s: float = 5
) -> State:
    """Wait on store changes (never by sleeping) until ``predicate`` holds."""
    state = store.current
    while not predicate(state):
        state = await asyncio.wait_for(store.wait_for_change(state.generation), timeout_s)
    return state


def write_state(path: Path, text: str) -> None:
    """Replace the file atomically, as editors and ConfigMap mounts do."""
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(textwrap.dedent(text), encoding="utf-8")
    os.replace(staging, path)


def service(state: State, name: str) -> ServiceState:
    found = state.snapshot.service("default", name)
    assert found is not None, f"no service {name} in {state.snapshot.services}"
    return found


@dataclass
class Running:
    source: LocalSource
    store: SnapshotStore
    task: asyncio.Task[None]
    sessions: list[aiohttp.ClientSession]


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Load and run a LocalSource on a file (or none); stopped by cancellation afterwards."""
    started: list[Running] = []

    async def start_source(
        text: str | None, *, store: SnapshotStore | None = None, wait_synced: bool = True
    ) -> Running:
        path = None
        if text is not None:
            path = tmp_path / "mwm-local.yaml"
            write_state(path, text)
        settings = LocalSourceSettings(file=path, **FAST)
        store = store or SnapshotStore()
        sessions: list[aiohttp.ClientSession] = []

        def session_factory() -> aiohttp.ClientSession:
            session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
            sessions.append(session)
            return session

        source = LocalSource(settings, store, probe_session_factory=session_factory)
        source.load()
        task = asyncio.create_task(source.run(), name="local-source-under-test")
        running = Running(source=source, store=store, task=task, sessions=sessions)
        started.append(running)
        if wait_synced:
            await asyncio.wait_for(source.synced.wait(), 5)
        return running

    yield start_source
    for running in started:
        if running.task.done():
            continue
        running.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running.task


def one_service(url: str, *, critical: bool = True, extra: str = "") -> str:
    return f"""
        spec:
          services:
            - name: api
              critical: {str(critical).lower()}
              probe:
                http: {{url: "{url}"}}
        {extra}
        """


async def test_critical_service_down_turns_maintenance_on_and_back_off(
    start: Start, target: Target
) -> None:
    running = await start(one_service(target.url()))
    store = running.store
    state = store.current
    assert state.snapshot.synced
    assert not state.maintenance.active
    api = service(state, "api")
    assert (api.ready_endpoints, api.total_endpoints, api.reason) == (1, 1, ServiceReason.READY)

    target.healthy = False
    state = await wait_until(store, lambda s: s.maintenance.active)
    (cause,) = state.maintenance.causes
    assert cause.kind is CauseKind.SERVICE_DOWN
    assert cause.services == ("api",)
    api = service(state, "api")
    assert (api.ready_endpoints, api.reason) == (0, ServiceReason.PROBE_FAILING)
    assert api.last_transition is not None
    assert cause.since == api.last_transition

    target.healthy = True
    state = await wait_until(store, lambda s: not s.maintenance.active)
    assert service(state, "api").reason is ServiceReason.READY


async def test_non_critical_service_down_does_not_trigger_maintenance(
    start: Start, closed_port: int
) -> None:
    running = await start(
        f"""
        spec:
          services:
            - name: search
              probe: {{tcp: {{host: 127.0.0.1, port: {closed_port}}}}}
        """
    )
    state = running.store.current
    search = service(state, "search")
    assert (search.ready_endpoints, search.reason) == (0, ServiceReason.PROBE_FAILING)
    assert not state.maintenance.active


async def test_tcp_probed_critical_service_is_ready_when_the_port_accepts(start: Start) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        running = await start(
            f"""
            spec:
              services:
                - name: db
                  critical: true
                  probe: {{tcp: {{host: 127.0.0.1, port: {port}}}}}
            """
        )
        state = running.store.current
        assert service(state, "db").reason is ServiceReason.READY
        assert not state.maintenance.active


async def test_service_without_probe_is_ready(start: Start) -> None:
    running = await start("spec: {services: [{name: api, critical: true}]}")
    state = running.store.current
    api = service(state, "api")
    assert (api.ready_endpoints, api.total_endpoints, api.reason) == (1, 1, ServiceReason.READY)
    assert state.snapshot.synced
    assert not state.maintenance.active


async def test_synced_only_after_every_probe_has_a_first_result(
    start: Start, target: Target
) -> None:
    running = await start(one_service(target.url("/slow")), wait_synced=False)
    state = await wait_until(running.store, lambda s: bool(s.snapshot.services))
    assert not state.snapshot.synced
    assert not running.source.synced.is_set()
    assert service(state, "api").reason is ServiceReason.UNKNOWN
    assert not state.maintenance.active  # unknown never triggers maintenance

    target.gate.set()
    await asyncio.wait_for(running.source.synced.wait(), 5)
    state = running.store.current
    assert state.snapshot.synced
    assert service(state, "api").reason is ServiceReason.READY


async def test_manual_switch_from_the_file(start: Start) -> None:
    before = datetime.now(UTC)
    running = await start(
        """
        spec:
          maintenance: {enabled: true, reason: "Upgrading the database"}
        """
    )
    state = running.store.current
    assert state.maintenance.active
    (cause,) = state.maintenance.causes
    assert cause.kind is CauseKind.MANUAL
    assert cause.reason == "Upgrading the database"
    assert cause.since is not None
    assert cause.since >= before
    (switch,) = state.snapshot.switches
    assert switch.source == "file"


async def test_manual_switch_until_in_the_past_is_off(start: Start) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    running = await start(f'spec: {{maintenance: {{enabled: true, until: "{past}"}}}}')
    assert not running.store.current.maintenance.active


async def test_window_open_now_turns_maintenance_on(start: Start) -> None:
    now = datetime.now(UTC)
    start_at, end_at = (
        (now - timedelta(hours=1)).isoformat(),
        (now + timedelta(hours=1)).isoformat(),
    )
    running = await start(
        f"""
        spec:
          windows:
            - {{start: "{start_at}", end: "{end_at}", reason: "DB upgrade"}}
        """
    )
    maintenance = running.store.current.maintenance
    assert maintenance.active
    (cause,) = maintenance.causes
    assert (cause.kind, cause.reason) == (CauseKind.WINDOW, "DB upgrade")
    assert cause.until == datetime.fromisoformat(end_at)


async def test_editing_the_file_applies_live(start: Start, target: Target, tmp_path: Path) -> None:
    running = await start(one_service(target.url()))
    store = running.store
    transition = service(store.current, "api").last_transition
    assert not store.current.maintenance.active

    write_state(
        tmp_path / "mwm-local.yaml",
        one_service(
            target.url(),
            extra="""  maintenance: {enabled: true, reason: "Switched on in the file"}""",
        ),
    )
    state = await wait_until(store, lambda s: s.maintenance.active)
    assert state.maintenance.reason == "Switched on in the file"
    # The probe did not change, so its readiness was kept, not re-learnt.
    assert service(state, "api").last_transition == transition

    write_state(
        tmp_path / "mwm-local.yaml",
        """
        spec:
          services: [{name: web}]
          maintenance: {enabled: false}
        """,
    )
    state = await wait_until(store, lambda s: not s.maintenance.active)
    assert [s.name for s in state.snapshot.services] == ["web"]


async def test_changed_probe_is_restarted_unchanged_one_kept(
    start: Start, target: Target, tmp_path: Path
) -> None:
    # Huge failure thresholds: once ready, a running prober holds on to "ready" while the
    # target fails, but a restarted one is decided by its first (failing) result.
    def two(b_path: str) -> str:
        return f"""
            spec:
              services:
                - name: a
                  probe: {{http: {{url: "{target.url()}"}}, failureThreshold: 1000}}
                - name: b
                  probe: {{http: {{url: "{target.url(b_path)}"}}, failureThreshold: 1000}}
            """

    running = await start(two("/healthz"))
    store = running.store
    a_before = service(store.current, "a")
    assert a_before.reason is ServiceReason.READY
    target.healthy = False

    write_state(tmp_path / "mwm-local.yaml", two("/failing"))
    await wait_until(store, lambda s: service(s, "b").reason is ServiceReason.PROBE_FAILING)
    await target.wait_for_hits(target.hits + 3)  # "a" has probed the failing target since
    assert service(store.current, "a") == a_before


async def test_broken_edit_keeps_the_last_good_state_until_fixed(
    start: Start, target: Target, tmp_path: Path
) -> None:
    path = tmp_path / "mwm-local.yaml"
    good = one_service(target.url(), extra="  maintenance: {enabled: true, reason: Upgrading}")
    running = await start(good)
    store = running.store
    before = store.current.snapshot

    write_state(path, "spec:\n  services:\n    - name: api\n      critical: [oops\n")
    state = await wait_until(store, lambda s: bool(s.snapshot.errors))
    (error,) = state.snapshot.errors
    assert error.startswith(f"{path}: line ")
    assert state.snapshot.services == before.services
    assert state.snapshot.switches == before.switches
    assert state.maintenance.active

    write_state(path, good.replace("Upgrading", "Upgrading again"))
    state = await wait_until(store, lambda s: not s.snapshot.errors)
    assert state.maintenance.reason == "Upgrading again"


async def test_deleted_file_is_an_error_and_keeps_the_last_good_state(
    start: Start, tmp_path: Path
) -> None:
    path = tmp_path / "mwm-local.yaml"
    running = await start("spec: {maintenance: {enabled: true}}")
    store = running.store
    path.unlink()
    state = await wait_until(store, lambda s: bool(s.snapshot.errors))
    assert state.snapshot.errors == (f"{path}: file not found",)
    assert state.maintenance.active

    write_state(path, "spec: {maintenance: {enabled: false}}")
    state = await wait_until(store, lambda s: not s.snapshot.errors)
    assert not state.maintenance.active


async def test_admin_switch_survives_a_file_reload(start: Start, tmp_path: Path) -> None:
    running = await start("spec: {services: [{name: api}]}")
    store = running.store
    store.set_switch(ManualSwitch(source="admin-api", enabled=True, reason="From the CLI"))

    write_state(tmp_path / "mwm-local.yaml", "spec: {services: [{name: api}, {name: web}]}")
    state = await wait_until(store, lambda s: len(s.snapshot.services) == 2)
    assert [s.source for s in state.snapshot.switches] == ["file", "admin-api"]
    assert state.maintenance.active
    assert state.maintenance.reason == "From the CLI"


async def test_no_file_gives_a_synced_empty_snapshot(start: Start) -> None:
    store = SnapshotStore()
    store.set_switch(ManualSwitch(source="admin-api", enabled=False))
    running = await start(None, store=store)
    snapshot = running.store.current.snapshot
    assert snapshot.synced
    assert (snapshot.services, snapshot.windows, snapshot.errors) == ((), (), ())
    assert snapshot.switches == (ManualSwitch(source="admin-api", enabled=False),)
    assert not running.store.current.maintenance.active
    assert running.sessions == []


async def test_nothing_is_published_when_nothing_changed(
    start: Start, target: Target, tmp_path: Path
) -> None:
    text = one_service(target.url())
    running = await start(text)
    generation = running.store.current.generation
    await target.wait_for_hits(target.hits + 5)  # several probes and file checks later
    assert running.store.current.generation == generation

    write_state(tmp_path / "mwm-local.yaml", text)  # a new file, the same content
    await target.wait_for_hits(target.hits + 5)
    assert running.store.current.generation == generation


async def test_load_reports_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "mwm-local.yaml"
    write_state(path, "spec: {services: [{name: API}]}")
    source = LocalSource(LocalSourceSettings(file=path, **FAST), SnapshotStore())
    with pytest.raises(LocalConfigError) as caught:
        source.load()
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}: spec.services[0].name: ")


async def test_cancelling_run_stops_probes_and_closes_the_session(
    start: Start, target: Target
) -> None:
    running = await start(one_service(target.url()))
    assert any(t.get_name() == "probe default/api" for t in asyncio.all_tasks())
    running.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running.task
    assert not any(t.get_name().startswith("probe ") for t in asyncio.all_tasks())
    (session,) = running.sessions
    assert session.closed


async def test_routes_mode_and_hold_reach_the_snapshot_and_follow_edits(
    start: Start, tmp_path: Path
) -> None:
    running = await start(
        """
        spec:
          services:
            - name: payments
              critical: true
              routes:
                - {pathPrefix: /checkout, methods: [POST]}
                - {pathPrefix: /api/payments}
              holdSeconds: 20
            - name: db-primary
              critical: true
              mode: readOnly
          maintenance: {enabled: false, mode: readOnly}
          windows:
            - {start: "2030-12-01T10:00:00Z", end: "2030-12-01T12:00:00Z", mode: readOnly}
        """
    )
    snapshot = running.store.current.snapshot
    payments = service(running.store.current, "payments")
    assert payments.routes == (
        Route("/checkout", frozenset({"POST"})),
        Route("/api/payments", frozenset()),
    )
    assert (payments.mode, payments.hold_seconds) == (Mode.FULL, 20.0)
    db = service(running.store.current, "db-primary")
    assert (db.routes, db.mode, db.hold_seconds) == ((), Mode.READ_ONLY, None)
    (switch,) = snapshot.switches
    assert switch.mode is Mode.READ_ONLY
    (window,) = snapshot.windows
    assert window.mode is Mode.READ_ONLY

    path = tmp_path / "mwm-local.yaml"
    write_state(path, "spec: {services: [{name: payments, critical: true}]}")
    state = await wait_until(
        running.store,
        lambda s: not s.snapshot.windows and not s.snapshot.service("default", "db-primary"),
    )
    payments = service(state, "payments")
    assert (payments.routes, payments.mode, payments.hold_seconds) == ((), Mode.FULL, None)
    assert state.snapshot.switches[0].mode is Mode.FULL


async def test_a_bad_route_edit_keeps_the_last_good_routes_and_names_the_field(
    start: Start, tmp_path: Path
) -> None:
    running = await start(
        "spec: {services: [{name: payments, critical: true, routes: [{pathPrefix: /checkout}]}]}"
    )
    path = tmp_path / "mwm-local.yaml"
    write_state(
        path,
        "spec: {services: [{name: payments, critical: true, routes: [{pathPrefix: checkout}]}]}",
    )
    state = await wait_until(running.store, lambda s: bool(s.snapshot.errors))
    assert any(
        "spec.services[0].routes[0].pathPrefix: 'checkout' must start with '/'" in e
        for e in state.snapshot.errors
    )
    assert service(state, "payments").routes == (Route("/checkout"),)
