"""Counting endpoints across EndpointSlices, as the API documents their conditions."""

from __future__ import annotations

from typing import Any

import pytest

from controller.endpoints import EndpointCount, count_endpoints, service_of


def endpoint(address: str, uid: str | None = None, **conditions: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"addresses": [address], "conditions": conditions}
    if uid is not None:
        result["targetRef"] = {"kind": "Pod", "uid": uid}
    return result


@pytest.mark.parametrize(
    ("slices", "expected"),
    [
        pytest.param([], EndpointCount(0, 0), id="no-slices"),
        pytest.param([{"endpoints": None}], EndpointCount(0, 0), id="empty-slice"),
        pytest.param(
            [{"endpoints": [endpoint("10.0.0.1", ready=True)]}], EndpointCount(1, 1), id="ready"
        ),
        pytest.param(
            [{"endpoints": [endpoint("10.0.0.1")]}], EndpointCount(1, 1), id="unset-ready-is-ready"
        ),
        pytest.param(
            [{"endpoints": [endpoint("10.0.0.1", ready=False)]}],
            EndpointCount(0, 1),
            id="not-ready",
        ),
        pytest.param(
            [{"endpoints": [endpoint("10.0.0.1", ready=True, terminating=True)]}],
            EndpointCount(0, 1),
            id="terminating-never-ready",
        ),
        pytest.param(
            [
                {"endpoints": [endpoint("10.0.0.1", "pod-a", ready=True)]},
                {"endpoints": [endpoint("fd00::1", "pod-a", ready=True)]},
            ],
            EndpointCount(1, 1),
            id="dual-stack-same-pod-once",
        ),
        pytest.param(
            [
                {"endpoints": [endpoint("10.0.0.1", ready=False)]},
                {"endpoints": [endpoint("10.0.0.1", ready=True)]},
            ],
            EndpointCount(1, 1),
            id="moving-between-slices-ready-in-one",
        ),
        pytest.param(
            [{"endpoints": [endpoint("10.0.0.1", "a"), endpoint("10.0.0.2", "b", ready=False)]}],
            EndpointCount(1, 2),
            id="mixed",
        ),
    ],
)
def test_count_endpoints(slices: list[dict[str, Any]], expected: EndpointCount) -> None:
    assert count_endpoints(slices) == expected


def test_service_of_reads_the_well_known_label() -> None:
    labelled = {
        "metadata": {
            "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "api"},
        }
    }
    assert service_of(labelled) == ("shop", "api")
    assert service_of({"metadata": {"namespace": "shop"}}) is None
