"""Kubernetes URL paths to a resource, namespace, name and subresource.

``/api/v1/...`` is the core group, ``/apis/{group}/{version}/...`` the others; a namespaced
path is ``.../namespaces/{ns}/{plural}[/{name}[/{subresource}]]`` and a cluster-wide one
``.../{plural}[/{name}[/{subresource}]]`` (for namespaced kinds only the collection, to list
or watch across namespaces).  ``/api/v1/namespaces/{name}`` is the Namespace itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.kube.fake import errors
from tests.kube.fake.resources import ResourceTable, ResourceType


@dataclass(frozen=True)
class Route:
    resource: ResourceType
    namespace: str | None
    """None: every namespace (or a cluster-scoped resource)."""
    name: str | None
    subresource: str | None


def parse_route(table: ResourceTable, path: str) -> Route:
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise errors.unknown_resource()
    if len(rest) >= 3 and rest[0] == "namespaces":
        resource = table.by_path(group, version, rest[2])
        if resource is not None and resource.namespaced and len(rest) <= 5:
            name = rest[3] if len(rest) > 3 else None
            subresource = rest[4] if len(rest) > 4 else None
            return Route(resource, rest[1], name, subresource)
    resource = table.by_path(group, version, rest[0])
    if resource is None or len(rest) > 3 or (resource.namespaced and len(rest) > 1):
        raise errors.unknown_resource()
    return Route(
        resource,
        None,
        rest[1] if len(rest) > 1 else None,
        rest[2] if len(rest) > 2 else None,
    )
