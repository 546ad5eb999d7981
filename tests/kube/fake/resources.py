"""The resource table: which kinds the fake serves and how each behaves.

Data, not code paths: adding a kind is one :class:`ResourceType` row.  The flags mirror what
the real API server decides per resource (status subresource, custom resource or built-in,
what DELETE answers, which fields a ``fieldSelector`` may name, strategic-merge keys, field
validation) so that handlers stay generic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.kube.fake.crdvalidation import check_crd
from tests.kube.fake.errors import ApiError

Validator = Callable[[Mapping[str, Any]], Sequence[tuple[str, str]]]
"""Returns ``(field path, message)`` for every invalid field; empty when the object is valid.
The message starts with the cause's type, as a real server's does (``Required value: ...``,
``Forbidden: ...``); it may also raise an :class:`ApiError` (400 for an undecodable body)."""


@dataclass(frozen=True)
class ResourceType:
    group: str
    """API group; ``""`` for the core (``/api/v1``) group."""
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    has_status_subresource: bool = False
    """Main-endpoint writes keep ``.status``; ``/status`` writes change only ``.status``."""
    tracks_generation: bool = True
    """Whether the server keeps ``metadata.generation`` (CRs and most workloads do; Services,
    ConfigMaps, Events, Leases and Namespaces do not: kubernetes/kubernetes#113961)."""
    is_custom: bool = False
    """A CRD-served kind: strategic merge patch gets 415, PUT needs a resourceVersion."""
    delete_returns_object: bool = False
    """DELETE answers the deleted object (services, custom resources) instead of a Status."""
    field_selectors: tuple[str, ...] = ()
    """Fields a fieldSelector may name besides ``metadata.name`` and ``metadata.namespace``."""
    merge_keys: tuple[tuple[tuple[str, ...], str], ...] = ()
    """Strategic merge: ``(list path, merge key)`` pairs; other lists are replaced whole."""
    validate: Validator | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def qualified_plural(self) -> str:
        """``plural.group`` (just ``plural`` in the core group), as error messages name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path_prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


def _lookup(obj: Mapping[str, Any], dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _required(obj: Mapping[str, Any], fields: Iterable[str]) -> list[tuple[str, str]]:
    return [(name, "Required value") for name in fields if not _lookup(obj, name)]


def _namespace_matches(
    obj: Mapping[str, Any], reference: str, *, allow_default: bool
) -> list[tuple[str, str]]:
    namespace = _lookup(obj, "metadata.namespace") or ""
    referenced = _lookup(obj, f"{reference}.namespace") or ""
    if referenced == namespace or (not referenced and allow_default and namespace == "default"):
        return []
    return [
        (f"{reference}.namespace", f'Invalid value: "{referenced}": does not match event.namespace')
    ]


def validate_core_event(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """core/v1 Event: the legacy rules (``ValidateEventCreate`` for the v1 request version)."""
    if not obj.get("eventTime"):
        return _namespace_matches(obj, "involvedObject", allow_default=True)
    return _required(obj, ("reportingComponent", "reportingInstance", "action", "reason"))


def validate_events_event(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """events.k8s.io/v1 Event: the strict rules new-style events must pass."""
    errors = _required(obj, ("eventTime", "reportingController", "reportingInstance", "action"))
    errors += _required(obj, ("reason",))
    if obj.get("type") not in ("Normal", "Warning"):
        errors.append(("type", f'Invalid value: "{obj.get("type") or ""}": has invalid value'))
    for unset in ("deprecatedFirstTimestamp", "deprecatedLastTimestamp", "deprecatedSource"):
        if obj.get(unset):
            errors.append((unset, "Invalid value: needs to be unset"))
    if obj.get("deprecatedCount"):
        errors.append(("deprecatedCount", "Invalid value: needs to be unset"))
    if obj.get("regarding"):
        errors += _namespace_matches(obj, "regarding", allow_default=True)
    return errors


_CORE_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "type",
)

DEFAULT_RESOURCES: tuple[ResourceType, ...] = (
    ResourceType(
        "", "v1", "namespaces", "Namespace", namespaced=False, has_status_subresource=True
    ),
    ResourceType(
        "",
        "v1",
        "services",
        "Service",
        has_status_subresource=True,
        tracks_generation=False,
        delete_returns_object=True,
        field_selectors=("spec.clusterIP", "spec.type"),
        merge_keys=((("spec", "ports"), "port"),),
    ),
    ResourceType("", "v1", "configmaps", "ConfigMap", tracks_generation=False),
    ResourceType(
        "",
        "v1",
        "events",
        "Event",
        tracks_generation=False,
        field_selectors=_CORE_EVENT_FIELDS,
        validate=validate_core_event,
    ),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", tracks_generation=False),
    ResourceType(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        tracks_generation=False,
        field_selectors=(
            "reason",
            "reportingController",
            "type",
            "regarding.kind",
            "regarding.name",
        ),
        validate=validate_events_event,
    ),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        has_status_subresource=True,
        validate=check_crd,  # what kube-apiserver refuses, see crdvalidation
    ),
    # Served from the start, whether or not its CRD was created (no dynamic registration).
    ResourceType(
        "maintenance.mamrezb.com",
        "v1alpha1",
        "servicecheckers",
        "ServiceChecker",
        has_status_subresource=True,
        is_custom=True,
        delete_returns_object=True,
    ),
)


class ResourceTable:
    """Finds a :class:`ResourceType` by URL parts, by ``apiVersion``/``kind`` or by a short name."""

    def __init__(self, resources: Iterable[ResourceType] = DEFAULT_RESOURCES) -> None:
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        self._by_kind: dict[tuple[str, str], ResourceType] = {}
        self.add(*resources)

    def add(self, *resources: ResourceType) -> None:
        for resource in resources:
            self._by_path[resource.group, resource.version, resource.plural] = resource
            self._by_kind[resource.api_version, resource.kind] = resource

    def __iter__(self) -> Any:
        return iter(self._by_path.values())

    def by_path(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        return self._by_kind.get((api_version, kind))

    def resolve(self, name: str | ResourceType) -> ResourceType:
        """``"services"``, ``"Service"``, ``"events.events.k8s.io"``: the core group wins ties."""
        if isinstance(name, ResourceType):
            return name
        found = [
            resource
            for resource in self._by_path.values()
            if name in (resource.plural, resource.kind, resource.qualified_plural)
            or name == f"{resource.kind}.{resource.group}"
        ]
        if len(found) > 1:
            found = [resource for resource in found if not resource.group] or found
        if len(found) != 1:
            raise ApiError(404, f"no single resource type is named {name!r}: {found}")
        return found[0]
