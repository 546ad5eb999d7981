"""The object store: one global resourceVersion, the write path, and the event history.

Every write, whether it came over HTTP or from a test's direct call, goes through
:meth:`ObjectStore.create`, :meth:`~ObjectStore.replace`, :meth:`~ObjectStore.patch` or
:meth:`~ObjectStore.delete`, so watches see exactly what a real API server would emit.  The
methods are synchronous: with no ``await`` inside a write, stamping the resourceVersion,
appending to the history and feeding open watches happen atomically on the event loop, which is
what makes replays gap-free and duplicate-free.

Stored objects are never mutated once committed (every write builds a new dict); callers get
deep copies.
"""

from __future__ import annotations

import copy
import re
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.kube.fake import errors
from tests.kube.fake.errors import ApiError
from tests.kube.fake.patching import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from tests.kube.fake.resources import ResourceTable, ResourceType

Obj = dict[str, Any]

_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SERVER_METADATA = (
    "uid",
    "creationTimestamp",
    "generation",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class StoredEvent:
    """One committed change, as the history keeps it for watch replays."""

    type: str
    """``ADDED``, ``MODIFIED`` or ``DELETED``."""
    resource: ResourceType
    namespace: str
    obj: Obj
    """The object after the change; for ``DELETED`` its last state, stamped with the deletion rv."""
    previous: Obj | None
    resource_version: int


@dataclass(eq=False)
class Subscription:
    """An open watch's inbox: the store feeds it every event of its resource and namespace."""

    resource: ResourceType
    namespace: str | None
    deliver: Callable[[StoredEvent], None]

    def wants(self, event: StoredEvent) -> bool:
        same_type = (event.resource.group, event.resource.plural) == (
            self.resource.group,
            self.resource.plural,
        )
        return same_type and self.namespace in (None, event.namespace)


def _metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _without(obj: Mapping[str, Any], *top: str, meta: Iterable[str] = ()) -> Obj:
    """A comparable view of ``obj`` without the given top-level keys and metadata keys."""
    view = {key: value for key, value in obj.items() if key not in top}
    if "metadata" in view:
        view["metadata"] = {k: v for k, v in _metadata(obj).items() if k not in set(meta)}
    return view


@dataclass
class ObjectStore:
    table: ResourceTable
    history_limit: int | None = None
    """Events kept for replays; older ones are compacted away (``None``: keep all)."""
    resource_version: int = 1
    compacted_version: int = 1
    """Watching from a resourceVersion below this one answers 410 Expired."""
    _objects: dict[tuple[str, str, str, str], Obj] = field(default_factory=dict)
    _history: deque[StoredEvent] = field(default_factory=deque)
    _subscriptions: list[Subscription] = field(default_factory=list)
    listeners: list[Callable[[], None]] = field(default_factory=list)
    """Called after every committed write (the fake re-checks its waiters there)."""

    # -- reads ---------------------------------------------------------------------------------

    @staticmethod
    def _key(resource: ResourceType, namespace: str, name: str) -> tuple[str, str, str, str]:
        return (resource.group, resource.plural, namespace if resource.namespaced else "", name)

    def get(self, resource: ResourceType, namespace: str, name: str) -> Obj:
        stored = self._objects.get(self._key(resource, namespace, name))
        if stored is None:
            raise errors.not_found(resource.group, resource.plural, name)
        return stored

    def items(
        self,
        resource: ResourceType,
        namespace: str | None,
        select: Callable[[Mapping[str, Any]], bool] = lambda _: True,
    ) -> list[Obj]:
        """Matching objects in key order (namespace, name), as etcd lists them."""
        return [
            obj
            for (group, plural, ns, _), obj in sorted(self._objects.items())
            if (group, plural) == (resource.group, resource.plural)
            and (namespace is None or ns == namespace)
            and select(obj)
        ]

    def events_after(
        self, resource: ResourceType, namespace: str | None, resource_version: int
    ) -> list[StoredEvent]:
        """Retained events after ``resource_version``; 410 Expired if some were compacted."""
        if resource_version < self.compacted_version:
            raise errors.expired(
                f"too old resource version: {resource_version} ({self.compacted_version})"
            )
        probe = Subscription(resource, namespace, lambda _: None)
        return [
            event
            for event in self._history
            if event.resource_version > resource_version and probe.wants(event)
        ]

    def subscribe(self, subscription: Subscription) -> None:
        self._subscriptions.append(subscription)

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def compact(self, resource_version: int | None = None) -> None:
        """Forget history up to ``resource_version`` (default: all of it)."""
        target = self.resource_version if resource_version is None else resource_version
        while self._history and self._history[0].resource_version <= target:
            self._history.popleft()
        self.compacted_version = max(self.compacted_version, target)

    # -- writes --------------------------------------------------------------------------------

    def create(
        self, resource: ResourceType, namespace: str, body: Any, *, dry_run: bool = False
    ) -> Obj:
        obj = self._checked_body(resource, namespace, body)
        metadata = obj["metadata"]
        if metadata.get("resourceVersion"):
            raise ApiError(500, "resourceVersion should not be set on objects to be created")
        for server_field in _SERVER_METADATA:
            metadata.pop(server_field, None)
        if resource.has_status_subresource:
            obj.pop("status", None)  # create cannot set status (PrepareForCreate)
        name = metadata.get("name")
        if not name and metadata.get("generateName"):
            for _ in range(8):  # a real server retries generateName collisions too
                suffix = "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
                name = f"{metadata['generateName']}{suffix}"
                if self._key(resource, namespace, name) not in self._objects:
                    break
            metadata["name"] = name
        self._validate(resource, obj)
        if self._key(resource, namespace, name) in self._objects:
            raise errors.already_exists(resource.group, resource.plural, name)
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = now_rfc3339()
        if resource.tracks_generation:
            metadata["generation"] = 1
        if dry_run:
            return obj
        return self._commit("ADDED", resource, obj, None)

    def replace(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        require_resource_version: bool = True,
        dry_run: bool = False,
    ) -> Obj:
        """PUT: a stale ``metadata.resourceVersion`` is a 409; custom resources need one."""
        old = self.get(resource, namespace, name)
        obj = self._checked_body(resource, namespace, body, url_name=name)
        sent_version = obj["metadata"].get("resourceVersion")
        if sent_version:
            if sent_version != old["metadata"]["resourceVersion"]:
                raise errors.conflict(resource.group, resource.plural, name)
        elif require_resource_version and resource.is_custom:
            raise errors.invalid(
                resource.kind,
                resource.group,
                name,
                [
                    (
                        "metadata.resourceVersion",
                        "Invalid value: 0x0: must be specified for an update",
                    )
                ],
            )
        return self._update(resource, old, obj, subresource=subresource, dry_run=dry_run)

    def patch(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        patch: Any,
        *,
        content_type: str,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        old = self.get(resource, namespace, name)
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type == MERGE_PATCH:
            if not isinstance(patch, dict):
                raise errors.bad_request(
                    f"json: cannot unmarshal {type(patch).__name__} into Go value of type "
                    "map[string]interface {}"
                )
            patched = merge_patch(old, patch)
        elif media_type == JSON_PATCH:
            patched = json_patch(old, patch)
        elif media_type == STRATEGIC_MERGE_PATCH and not resource.is_custom:
            if not isinstance(patch, dict):
                raise errors.bad_request("strategic merge patch body must be a JSON object")
            patched = strategic_merge_patch(old, patch, merge_keys=dict(resource.merge_keys))
        else:
            accepted = [JSON_PATCH, MERGE_PATCH, "application/apply-patch+yaml"]
            if not resource.is_custom:
                accepted.insert(2, STRATEGIC_MERGE_PATCH)
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types "
                f"include: {', '.join(accepted)}",
            )
        if not isinstance(patched, dict):
            raise ApiError(422, "the patched object is not a JSON object")
        metadata = patched.get("metadata")
        if isinstance(metadata, dict) and not metadata.get("resourceVersion"):
            metadata["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self.replace(
            resource,
            namespace,
            name,
            patched,
            subresource=subresource,
            require_resource_version=False,
            dry_run=dry_run,
        )

    def delete(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        *,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """The object, and whether it is gone (False: finalizers keep it, now terminating)."""
        old = self.get(resource, namespace, name)
        metadata = old["metadata"]
        for field_name, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            wanted = (preconditions or {}).get(field_name)
            if wanted and wanted != metadata.get(field_name):
                raise ApiError(
                    409,
                    f"Precondition failed: {label} in precondition: {wanted}, "
                    f"{label} in object meta: {metadata.get(field_name)}",
                    reason="Conflict",
                )
        if metadata.get("finalizers"):
            if metadata.get("deletionTimestamp"):
                return old, False
            terminating = copy.deepcopy(old)
            terminating["metadata"]["deletionTimestamp"] = now_rfc3339()
            terminating["metadata"]["deletionGracePeriodSeconds"] = 0
            if resource.tracks_generation:
                terminating["metadata"]["generation"] = metadata.get("generation", 0) + 1
            if dry_run:
                return terminating, False
            return self._commit("MODIFIED", resource, terminating, old), False
        if dry_run:
            return old, True
        return self._commit("DELETED", resource, copy.deepcopy(old), old), True

    # -- internals -----------------------------------------------------------------------------

    def _checked_body(
        self, resource: ResourceType, namespace: str, body: Any, *, url_name: str | None = None
    ) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request(
                f"Object 'Kind' is missing in '{body!r}'"
                if body is not None
                else "the body of the request was empty"
            )
        api_version = body.get("apiVersion") or resource.api_version
        kind = body.get("kind") or resource.kind
        obj = {"apiVersion": api_version, "kind": kind, **copy.deepcopy(body)}
        if (api_version, kind) != (resource.api_version, resource.kind):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({resource.api_version})"
                if api_version != resource.api_version
                else f"the kind in the data ({kind}) does not match the expected kind "
                f"({resource.kind})"
            )
        metadata = obj.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise errors.bad_request("metadata must be an object")
        if resource.namespaced:
            if metadata.get("namespace") not in (None, "", namespace):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        if url_name is not None:
            if metadata.get("name") not in (None, "", url_name):
                raise errors.bad_request(
                    f"the name of the object ({metadata['name']}) does not match the name on the "
                    f"URL ({url_name})"
                )
            metadata["name"] = url_name
        return obj

    def _validate(self, resource: ResourceType, obj: Obj) -> None:
        metadata = obj["metadata"]
        for omitted_when_empty in ("labels", "annotations", "finalizers", "ownerReferences"):
            if metadata.get(omitted_when_empty) in ({}, []):  # Go's omitempty
                del metadata[omitted_when_empty]
        name = metadata.get("name") or ""
        causes: list[tuple[str, str]] = []
        if not name:
            causes.append(("metadata.name", "Required value: name or generateName is required"))
        elif len(name) > 253 or not _SUBDOMAIN.fullmatch(name):
            causes.append(
                (
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of '
                    "lower case alphanumeric characters, '-' or '.', and must start and end with "
                    "an alphanumeric character",
                )
            )
        if resource.validate is not None:
            causes += resource.validate(obj)
        if resource.is_custom:
            causes += self._schema_problems(resource, obj)
        if causes:
            raise errors.invalid(resource.kind, resource.group, name, causes)

    def _schema_problems(self, resource: ResourceType, obj: Obj) -> list[tuple[str, str]]:
        """A custom resource against the schema of its CRD, if one was created here (the
        schema in force is the one applied, as on a real server; none applied: none checked,
        like an old CRD without validation).  Types, patterns, bounds and CEL rules."""
        crd = self._objects.get(
            ("apiextensions.k8s.io", "customresourcedefinitions", "", resource.qualified_plural)
        )
        if crd is None:
            return []
        from tests.kube.fake.crschema import schema_problems

        return schema_problems(crd, resource.version, obj)

    def _update(
        self,
        resource: ResourceType,
        old: Obj,
        obj: Obj,
        *,
        subresource: str | None,
        dry_run: bool,
    ) -> Obj:
        if subresource == "status":
            new = copy.deepcopy(old)  # metadata and spec changes are ignored on /status
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
        else:
            new = obj
            if resource.has_status_subresource:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
            for server_field in _SERVER_METADATA:
                new["metadata"].pop(server_field, None)
                if server_field in old["metadata"]:
                    new["metadata"][server_field] = old["metadata"][server_field]
            ignored = ("status",) if resource.has_status_subresource else ()
            changed = _without(new, "metadata", *ignored) != _without(old, "metadata", *ignored)
            if changed and resource.tracks_generation:
                new["metadata"]["generation"] = old["metadata"].get("generation", 0) + 1
        self._validate(resource, new)
        if new == old:
            return old  # a no-op write: no new resourceVersion, no event
        if dry_run:
            return new
        metadata = new["metadata"]
        if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
            return self._commit("DELETED", resource, new, old)  # the last finalizer is gone
        return self._commit("MODIFIED", resource, new, old)

    def _commit(self, kind: str, resource: ResourceType, obj: Obj, previous: Obj | None) -> Obj:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        namespace = obj["metadata"].get("namespace", "")
        key = self._key(resource, namespace, obj["metadata"]["name"])
        if kind == "DELETED":
            self._objects.pop(key, None)
        else:
            self._objects[key] = obj
        event = StoredEvent(kind, resource, namespace, obj, previous, self.resource_version)
        self._history.append(event)
        while self.history_limit is not None and len(self._history) > self.history_limit:
            self.compacted_version = self._history.popleft().resource_version
        for subscription in list(self._subscriptions):
            if subscription.wants(event):
                subscription.deliver(event)
        for listener in list(self.listeners):
            listener()
        return obj
