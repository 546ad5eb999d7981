"""Counting a Service's endpoints from its EndpointSlices (``discovery.k8s.io/v1``).

A Service's endpoints may be spread over several slices (one per address family, and
more when there are many pods); the same pod can appear in more than one (dual stack,
or briefly while the EndpointSlice controller moves it).  Each endpoint is counted once,
by its ``targetRef`` uid when it has one, else by its addresses.

Readiness follows the API's documented meaning: ``conditions.ready`` unset means ready,
but an endpoint that is ``terminating`` is never counted ready, whatever ``ready`` says:
it is on its way out and new requests should not count on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class EndpointCount:
    ready: int
    total: int


def _identity(endpoint: Mapping[str, Any]) -> tuple[str, ...]:
    target = endpoint.get("targetRef") or {}
    uid = target.get("uid")
    if uid:
        return ("uid", str(uid))
    return ("addresses", *sorted(str(a) for a in endpoint.get("addresses") or ()))


def _is_ready(endpoint: Mapping[str, Any]) -> bool:
    conditions = endpoint.get("conditions") or {}
    if conditions.get("terminating") is True:
        return False
    return conditions.get("ready") is not False


def count_endpoints(slices: Iterable[Mapping[str, Any]]) -> EndpointCount:
    ready: dict[tuple[str, ...], bool] = {}
    for endpoint_slice in slices:
        for endpoint in endpoint_slice.get("endpoints") or ():
            if not isinstance(endpoint, Mapping):
                continue
            identity = _identity(endpoint)
            ready[identity] = ready.get(identity, False) or _is_ready(endpoint)
    return EndpointCount(ready=sum(ready.values()), total=len(ready))


def service_of(endpoint_slice: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (namespace, service name) a slice belongs to, from its well-known label."""
    metadata = endpoint_slice.get("metadata") or {}
    name = (metadata.get("labels") or {}).get(SERVICE_NAME_LABEL)
    namespace = metadata.get("namespace")
    if not name or not namespace:
        return None
    return (str(namespace), str(name))
