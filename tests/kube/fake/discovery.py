"""Discovery documents (``/version``, ``/api``, ``/apis``, ``/api/v1``, ``/apis/{g}/{v}``).

Built from the resource table, so a client that discovers before it lists finds exactly the
kinds the fake serves.
"""

from __future__ import annotations

from typing import Any

from tests.kube.fake.resources import ResourceTable

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def discovery_document(table: ResourceTable, path: str) -> dict[str, Any] | None:
    """The document served at ``path``, or None when ``path`` is not a discovery path."""
    parts = [part for part in path.split("/") if part]
    if parts == ["version"]:
        return {"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "fake"}
    if parts == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if parts == ["apis"]:
        return _groups(table)
    if parts[:1] == ["api"] and len(parts) == 2:
        return _resources(table, "", parts[1])
    if parts[:1] == ["apis"] and len(parts) == 3:
        return _resources(table, parts[1], parts[2])
    return None


def _groups(table: ResourceTable) -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for resource in table:
        if resource.group and resource.version not in groups.setdefault(resource.group, []):
            groups[resource.group].append(resource.version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                "preferredVersion": {
                    "groupVersion": f"{group}/{versions[0]}",
                    "version": versions[0],
                },
            }
            for group, versions in groups.items()
        ],
    }


def _resources(table: ResourceTable, group: str, version: str) -> dict[str, Any] | None:
    served = [r for r in table if (r.group, r.version) == (group, version)]
    if not served:
        return None
    listed: list[dict[str, Any]] = []
    for resource in served:
        common = {"namespaced": resource.namespaced, "kind": resource.kind}
        listed.append(
            {
                "name": resource.plural,
                "singularName": resource.kind.lower(),
                **common,
                "verbs": VERBS,
            }
        )
        if resource.has_status_subresource:
            listed.append(
                {
                    "name": f"{resource.plural}/status",
                    "singularName": "",
                    **common,
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": served[0].api_version,
        "resources": listed,
    }
