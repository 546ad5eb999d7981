"""A fake Kubernetes API server speaking real HTTP, for the real ``kubernetes_asyncio`` client.

Why not a library: see ``TESTING.md`` ("Kubernetes API: a faithful fake").  What is faithful:
one global resourceVersion, 201 on create, list/watch with selectors, replays, 410 Expired
after compaction, bookmarks, ``timeoutSeconds``, the status subresource, the three patch
formats (strategic merge refused with 415 for custom resources), 409 on stale writes and on
duplicates, ``Status`` bodies for every error.  Tests break it on purpose through the hooks
(:meth:`~tests.kube.fake.server.ApiServer.fail_next`, ``drop_next``, ``hold``,
``end_watches``, ``abort_watches``, ``compact``, ``inject_watch_event``, ``go_offline``) and
observe it through ``requests`` and ``answers`` (with the loop time of each), ``wait_for_request``,
``wait_for_watch`` and ``wait_until``.

Typical use (or take the ``fake_kube`` and ``kube_client`` fixtures from the conftest)::

    async with FakeKubeAPI() as fake, fake.api_client() as api:
        fake.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
        items = (await CoreV1Api(api).list_namespaced_config_map("default")).items

The direct object API (:meth:`FakeKubeAPI.create`, ``update``, ``update_status``, ``patch``,
``delete``, ``get``, ``list_objects``) goes through the same write path as HTTP requests, so
open watches see test setup exactly as they would see another client's writes.

Known differences from a real API server (extend the fake when a test needs one of these):

- No defaulting (a Service gets no ``clusterIP``, ports no ``protocol``), no CRD schema
  validation or pruning, no admission, no managedFields, no server-side apply (``apply-patch``
  gets 415).  Field validation covers names and Events only.
- Namespaces need not exist before objects are created in them.
- core/v1 and events.k8s.io/v1 Events are stored apart (one storage on a real server).
- LIST ignores ``resourceVersion``/``resourceVersionMatch`` and serves the current state;
  ``continue`` pages read the current state too (not a snapshot at the first page's version).
- Watching from a future resourceVersion is accepted; history compaction is global, not per
  resource; ``timeoutSeconds`` also accepts fractions.
- PUT on a missing object is always 404 (some real kinds create on update).
- Graceful deletion is not modelled (finalizers are: DELETE marks, the last removal deletes).
- JSON only: no protobuf, YAML or CBOR; no authentication, authorization or rate limiting
  (inject a 429 with :meth:`~tests.kube.fake.server.ApiServer.fail_next`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from kubernetes_asyncio.client import ApiClient, Configuration

from tests.kube.fake.errors import ApiError, status_body
from tests.kube.fake.faults import Answer, Fault, Gate, Matcher, RecordedRequest
from tests.kube.fake.patching import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH
from tests.kube.fake.resources import DEFAULT_RESOURCES, ResourceType
from tests.kube.fake.server import ApiServer
from tests.kube.fake.watching import OpenWatch

__all__ = [
    "DEFAULT_RESOURCES",
    "Answer",
    "ApiError",
    "FakeKubeAPI",
    "Fault",
    "Gate",
    "Matcher",
    "OpenWatch",
    "RecordedRequest",
    "ResourceType",
    "status_body",
]

PATCH_TYPES = {
    "merge": MERGE_PATCH,
    "json": JSON_PATCH,
    "strategic": STRATEGIC_MERGE_PATCH,
}


class FakeKubeAPI(ApiServer):
    """The fake API server (see the module docstring); start it with ``async with``."""

    async def __aenter__(self) -> FakeKubeAPI:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def api_client(self) -> ApiClient:
        """A real client for this server (no auth); close it: ``async with fake.api_client()``."""
        configuration = Configuration(host=self.url)
        return ApiClient(configuration)

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion (the last write's)."""
        return self.store.resource_version

    # -- direct object API ---------------------------------------------------------------------

    def _resource_of(self, obj: Mapping[str, Any]) -> ResourceType:
        resource = self.table.by_kind(str(obj.get("apiVersion")), str(obj.get("kind")))
        if resource is None:
            raise ApiError(404, f"no resource for {obj.get('apiVersion')} {obj.get('kind')}")
        return resource

    @staticmethod
    def _namespace(resource: ResourceType, namespace: str | None) -> str:
        if not resource.namespaced:
            return ""
        return namespace or "default"

    def create(self, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """Create ``obj`` (``apiVersion`` and ``kind`` say what it is); ``default`` namespace."""
        resource = self._resource_of(obj)
        metadata = obj.get("metadata") or {}
        namespace = self._namespace(resource, namespace or metadata.get("namespace"))
        return copy.deepcopy(self.store.create(resource, namespace, obj))

    def update(self, obj: Mapping[str, Any], *, subresource: str | None = None) -> dict[str, Any]:
        """Replace ``obj`` like a PUT; without ``metadata.resourceVersion`` it is unconditional."""
        resource = self._resource_of(obj)
        metadata = obj.get("metadata") or {}
        replaced = self.store.replace(
            resource,
            self._namespace(resource, metadata.get("namespace")),
            str(metadata.get("name")),
            obj,
            subresource=subresource,
            require_resource_version=False,
        )
        return copy.deepcopy(replaced)

    def update_status(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Replace ``obj``'s status through the status subresource."""
        return self.update(obj, subresource="status")

    def patch(
        self,
        resource: str | ResourceType,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Patch like a PATCH request; ``patch_type`` is ``merge``, ``json`` or ``strategic``."""
        kind = self.table.resolve(resource)
        patched = self.store.patch(
            kind,
            self._namespace(kind, namespace),
            name,
            patch,
            content_type=PATCH_TYPES[patch_type],
            subresource=subresource,
        )
        return copy.deepcopy(patched)

    def delete(
        self, resource: str | ResourceType, namespace: str | None, name: str
    ) -> dict[str, Any]:
        """Delete (or, with finalizers, mark terminating); returns the object's last state."""
        kind = self.table.resolve(resource)
        obj, _ = self.store.delete(kind, self._namespace(kind, namespace), name)
        return copy.deepcopy(obj)

    def get(
        self, resource: str | ResourceType, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """The stored object, or None when there is none."""
        kind = self.table.resolve(resource)
        try:
            return copy.deepcopy(self.store.get(kind, self._namespace(kind, namespace), name))
        except ApiError:
            return None

    def list_objects(
        self,
        resource: str | ResourceType,
        namespace: str | None = None,
    ) -> list[dict[str, Any]]:
        """Stored objects of ``resource`` (every namespace when ``namespace`` is None)."""
        kind = self.table.resolve(resource)
        return copy.deepcopy(self.store.items(kind, namespace if kind.namespaced else None))

    def requests_to(
        self, method: str | None = None, path: str | None = None
    ) -> list[RecordedRequest]:
        """Logged requests matching ``method`` and the ``path`` regular expression."""
        matcher = Matcher(method, path)
        return [request for request in self.requests if matcher.matches(request)]
