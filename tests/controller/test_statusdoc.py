"""The ServiceChecker status document: seed fields, per-resource verdict, stable conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controller.checker import parse_checker
from controller.snapshot import ManualSwitch, ServiceReason, ServiceState
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
    assert doc["summary"] == {"readyCritical": "1/1"}
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
