"""The ServiceChecker status document: seed fields, per-resource verdict, stable conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from controller.checker import parse_checker
from controller.snapshot import ManualSwitch, Mode, ServiceReason, ServiceState
from controller.statusdoc import desired_status

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CHECKER = parse_checker(
    {
        "metadata": {"name": "shop", "namespace": "shop", "generation": 3},
        "spec": {"services": [{"name": "api", "critical": True}, {"name": "search"}]},
    }
)


def state(name: str, ready: int) -> ServiceState:
    return ServiceState(
        name=name,
        namespace="shop",
        critical=True,  # as merged across resources; this resource says otherwise for search
        ready_endpoints=ready,
        total_endpoints=2,
        reason=ServiceReason.READY if ready else ServiceReason.NO_READY_ENDPOINTS,
    )


def status(
    *, api_ready: int = 2, previous: dict[str, Any] | None = None, now: datetime = NOW
) -> dict[str, Any]:
    return desired_status(
        CHECKER,
        generation=3,
        problems=[],
        services={("shop", "api"): state("api", api_ready), ("shop", "search"): state("search", 0)},
        shared_switches=[],
        switch=ManualSwitch(source=CHECKER.switch_source, enabled=False),
        watch_errors=[],
        synced=True,
        previous=previous or {},
        now=now,
    )


def test_seed_fields_and_this_resources_own_criticality() -> None:
    doc = status()
    assert [(s["name"], s["ready"], s["critical"]) for s in doc["serviceStatuses"]] == [
        ("api", True, True),
        ("search", False, False),
    ]
    # search is down but not critical for this resource: no maintenance here.
    assert doc["maintenance"]["active"] is False
    assert doc["summary"] == {"readyCritical": "1/1", "affectedRoutes": None}
    assert doc["observedGeneration"] == 3


def test_condition_transition_time_moves_only_when_its_status_changes() -> None:
    first = status()
    later = NOW + timedelta(minutes=5)
    same = status(previous=first, now=later)
    assert same == first  # nothing changed: an identical document, so no write
    changed = status(api_ready=0, previous=first, now=later)
    maintenance = next(c for c in changed["conditions"] if c["type"] == "Maintenance")
    valid = next(c for c in changed["conditions"] if c["type"] == "Valid")
    assert (maintenance["status"], maintenance["lastTransitionTime"]) == (
        "True",
        "2026-11-23T12:05:00Z",
    )
    assert valid["lastTransitionTime"] == "2026-11-23T12:00:00Z"
    assert changed["maintenance"]["active"] is True


def synced(doc: dict[str, Any]) -> tuple[str, str]:
    [condition] = [c for c in doc["conditions"] if c["type"] == "Synced"]
    return condition["status"], condition["reason"]


def test_synced_condition_names_what_is_wrong_with_the_watches() -> None:
    def with_watches(
        *, synced_: bool = True, errors: list[str], denied: list[str]
    ) -> tuple[str, str]:
        return synced(
            desired_status(
                CHECKER,
                generation=3,
                problems=[],
                services={("shop", "api"): state("api", 2)},
                shared_switches=[],
                switch=None,
                watch_errors=errors,
                denied_namespaces=denied,
                synced=synced_,
                previous={},
                now=NOW,
            )
        )

    assert with_watches(errors=[], denied=[]) == ("True", "WatchesHealthy")
    assert with_watches(errors=["watching x: down"], denied=[]) == ("False", "WatchFailing")
    assert with_watches(errors=["cannot read x in namespace p"], denied=["p"]) == (
        "False",
        "AccessDenied",
    )
    assert with_watches(synced_=False, errors=[], denied=[]) == ("Unknown", "Syncing")


def test_times_are_written_in_utc_with_z_and_whole_seconds() -> None:
    """Even when the clock, a switch or a window gives an offset or microseconds."""
    plus_two = timezone(timedelta(hours=2))
    now = datetime(2026, 11, 23, 14, 0, 0, 987654, tzinfo=plus_two)
    doc = desired_status(
        CHECKER,
        generation=3,
        problems=[],
        services={("shop", "api"): state("api", 2), ("shop", "search"): state("search", 0)},
        shared_switches=[],
        switch=ManualSwitch(
            source=CHECKER.switch_source,
            enabled=True,
            reason="Upgrading",
            until=datetime(2026, 11, 23, 15, 30, 0, 500000, tzinfo=plus_two),
            since=datetime(2026, 11, 23, 13, 0, tzinfo=plus_two),
        ),
        watch_errors=[],
        synced=True,
        previous={},
        now=now,
    )
    assert doc["maintenance"]["until"] == "2026-11-23T13:30:00Z"
    assert doc["maintenance"]["since"] == "2026-11-23T11:00:00Z"
    assert {c["lastTransitionTime"] for c in doc["conditions"]} == {"2026-11-23T12:00:00Z"}


def test_the_proxys_status_document_writes_times_the_same_way() -> None:
    """``/status`` (``proxy.statusdocs``) and the resource's status agree on the format."""
    import json

    from controller.snapshot import Cause, CauseKind, Maintenance, Snapshot
    from controller.store import State
    from proxy.statusdocs import build_status

    plus_two = timezone(timedelta(hours=2))
    cause = Cause(
        kind=CauseKind.MANUAL,
        reason="Upgrading",
        since=datetime(2026, 11, 23, 13, 0, 0, 123456, tzinfo=plus_two),
        until=datetime(2026, 11, 23, 15, 30, tzinfo=plus_two),
    )
    service = ServiceState(
        name="api",
        namespace="shop",
        critical=True,
        ready_endpoints=0,
        total_endpoints=1,
        reason=ServiceReason.NO_READY_ENDPOINTS,
        last_transition=datetime(2026, 11, 23, 11, 59, 59, 999999, tzinfo=UTC),
    )
    doc = json.loads(
        build_status(
            State(
                snapshot=Snapshot(services=(service,)),
                maintenance=Maintenance(active=True, causes=(cause,)),
                generation=1,
                changed_at=datetime(2026, 11, 23, 14, 0, 0, 5, tzinfo=plus_two),
            )
        ).body
    )
    assert doc["lastChange"] == "2026-11-23T12:00:00Z"
    assert doc["maintenance"]["causes"][0]["since"] == "2026-11-23T11:00:00Z"
    assert doc["maintenance"]["causes"][0]["until"] == "2026-11-23T13:30:00Z"
    assert doc["services"][0]["lastTransitionTime"] == "2026-11-23T11:59:59Z"


# --- scope and affected routes (issue 14) -----------------------------------------------

SCOPED = parse_checker(
    {
        "metadata": {"name": "shop", "namespace": "shop", "generation": 4},
        "spec": {
            "services": [
                {
                    "name": "payments",
                    "critical": True,
                    "routes": [
                        {"pathPrefix": "/checkout", "methods": ["POST"]},
                        {"pathPrefix": "/api/payments"},
                    ],
                },
                {"name": "db-primary", "critical": True, "mode": "readOnly"},
                {"name": "api", "critical": True},
                {"name": "search", "routes": [{"pathPrefix": "/search"}]},
            ],
            "windows": [
                {
                    "start": "2026-11-23T11:00:00Z",
                    "end": "2026-11-23T13:00:00Z",
                    "mode": "readOnly",
                }
            ],
        },
    }
)


def scoped_status(
    *down: str, window_open: bool = False, switch: ManualSwitch | None = None
) -> dict[str, Any]:
    names = ("payments", "db-primary", "api", "search")
    return desired_status(
        SCOPED,
        generation=4,
        problems=[],
        services={("shop", n): state(n, 0 if n in down else 2) for n in names},
        shared_switches=[],
        switch=switch,
        watch_errors=[],
        synced=True,
        previous={},
        now=NOW if window_open else NOW - timedelta(hours=2),
    )


def affected(doc: dict[str, Any]) -> dict[str, list[str]]:
    return {s["name"]: s["affectedRoutes"] for s in doc["serviceStatuses"]}


def test_a_down_service_with_routes_stops_only_its_routes() -> None:
    doc = scoped_status("payments")
    assert doc["maintenance"]["active"] is True
    assert doc["maintenance"]["scope"] == "Routes"
    assert affected(doc) == {
        "payments": ["/checkout", "/api/payments"],
        "db-primary": [],
        "api": [],
        "search": [],
    }


def test_a_down_read_only_service_makes_the_site_read_only() -> None:
    doc = scoped_status("db-primary", "payments")
    assert doc["maintenance"]["scope"] == "ReadOnly"
    assert affected(doc)["payments"] == ["/checkout", "/api/payments"]
    assert affected(doc)["db-primary"] == []


def test_a_whole_site_cause_beats_the_others() -> None:
    assert scoped_status("db-primary", "payments", "api")["maintenance"]["scope"] == "Site"
    on = ManualSwitch(source=SCOPED.switch_source, enabled=True)
    assert scoped_status("payments", switch=on)["maintenance"]["scope"] == "Site"


def test_switch_and_window_modes() -> None:
    read_only = ManualSwitch(source=SCOPED.switch_source, enabled=True, mode=Mode.READ_ONLY)
    assert scoped_status(switch=read_only)["maintenance"]["scope"] == "ReadOnly"
    assert scoped_status(window_open=True)["maintenance"]["scope"] == "ReadOnly"


def test_a_non_critical_service_with_routes_stops_its_routes() -> None:
    # Naming routes is what counts (as the verdict has it): critical or not, they stop.
    doc = scoped_status("search")
    assert doc["maintenance"]["active"] is True
    assert doc["maintenance"]["scope"] == "Routes"
    assert affected(doc)["search"] == ["/search"]


def test_no_maintenance_no_scope() -> None:
    doc = scoped_status()
    assert doc["maintenance"]["scope"] is None
    assert all(routes == [] for routes in affected(doc).values())
