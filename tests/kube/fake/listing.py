"""LIST responses: the typed list envelope, ``limit``/``continue`` paging, delete-collection.

Continue tokens carry the first page's resourceVersion; a token older than the compacted
history is a 410, as on a real server.  Later pages read the current state, not a snapshot
at that version (a real server reads etcd at the token's revision).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from tests.kube.fake import errors
from tests.kube.fake.errors import ApiError
from tests.kube.fake.resources import ResourceType
from tests.kube.fake.selectors import Selector
from tests.kube.fake.store import ObjectStore


def list_response(
    store: ObjectStore,
    resource: ResourceType,
    namespace: str | None,
    select: Selector,
    query: Mapping[str, str],
) -> dict[str, Any]:
    items = store.items(resource, namespace, select)
    list_version = store.resource_version
    if query.get("continue"):
        list_version, after = _decode_continue(query["continue"])
        if list_version < store.compacted_version:
            raise ApiError(
                410,
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter.",
            )
        items = [item for item in items if _item_key(item) > after]
    metadata: dict[str, Any] = {"resourceVersion": str(list_version)}
    limit = int(query.get("limit") or 0)
    if 0 < limit < len(items):
        metadata["continue"] = _encode_continue(list_version, _item_key(items[limit - 1]))
        metadata["remainingItemCount"] = len(items) - limit
        items = items[:limit]
    if not resource.is_custom:
        # Typed lists of built-in kinds carry no kind/apiVersion per item.
        items = [
            {key: value for key, value in item.items() if key not in ("kind", "apiVersion")}
            for item in items
        ]
    return {
        "kind": resource.list_kind,
        "apiVersion": resource.api_version,
        "metadata": metadata,
        "items": items,
    }


def delete_collection(
    store: ObjectStore,
    resource: ResourceType,
    namespace: str | None,
    select: Selector,
    *,
    dry_run: bool,
) -> dict[str, Any]:
    deleted = []
    for item in store.items(resource, namespace, select):
        metadata = item["metadata"]
        obj, _ = store.delete(
            resource, metadata.get("namespace", ""), metadata["name"], dry_run=dry_run
        )
        deleted.append(obj)
    return {
        "kind": resource.list_kind,
        "apiVersion": resource.api_version,
        "metadata": {"resourceVersion": str(store.resource_version)},
        "items": deleted,
    }


def _item_key(item: Mapping[str, Any]) -> tuple[str, str]:
    metadata = item.get("metadata") or {}
    return (metadata.get("namespace") or "", metadata.get("name") or "")


def _encode_continue(resource_version: int, key: tuple[str, str]) -> str:
    token = json.dumps({"rv": resource_version, "start": list(key)}).encode()
    return base64.urlsafe_b64encode(token).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(decoded["rv"]), (str(decoded["start"][0]), str(decoded["start"][1]))
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
        raise errors.bad_request("continue key is not valid") from None
