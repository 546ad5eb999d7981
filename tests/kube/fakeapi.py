"""A fake Kubernetes API server speaking real HTTP, for the real ``kubernetes_asyncio`` client.

Why not a library: see ``TESTING.md`` ("Kubernetes API: a faithful fake").  What is faithful:
one global resourceVersion, 201 on create, list/watch with selectors, replays, 410 Expired
after compaction, bookmarks, ``timeoutSeconds``, the status subresource, the three patch
formats (strategic merge refused with 415 for custom resources), 409 on stale writes and on
duplicates, ``Status`` bodies for every error.  Tests break it on purpose through the hooks
(:meth:`~tests.kube.fake.server.ApiServer.fail_next`, ``drop_next``, ``hold``,
``end_watches``, ``abort_watches``, ``compact``, ``inject_watch_event``, ``go_offline``,
``restart``) and observe it through ``requests`` and ``answers`` (with the loop time of each),
``wait_for_request``, ``wait_for_watch`` and ``wait_until``.

Authorization is off unless a test turns it on: ``fake.enforce_rbac(Rbac.from_config(namespace=
"shop"))`` applies the project's ``config/rbac`` as ``kubectl apply -k config/rbac -n shop``
would, and from then on every HTTP request is authorized like kube-apiserver's RBAC authorizer
does it (:mod:`tests.kube.fake.rbac`), as the controller's ServiceAccount unless it sends a
bearer token from ``fake.rbac.tokens``.  A refusal is the real 403 ``Status`` word for word;
``fake.decisions`` logs every decision and ``fake.denied`` the refused requests;
``fake.rbac.bind(...)``/``unbind(...)`` change the bindings at run time.
:meth:`~tests.kube.fake.server.ApiServer.restart` cuts every connection and then answers 403 to
everything, RBAC or not, until the authorizer has "warmed up" (``finish_warmup()``, a number of
requests, or loop time).

Typical use (or take the ``fake_kube`` and ``kube_client`` fixtures from the conftest)::

    async with FakeKubeAPI() as fake, fake.api_client() as api:
        fake.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
        items = (await CoreV1Api(api).list_namespaced_config_map("default")).items

The direct object API (:meth:`FakeKubeAPI.create`, ``update``, ``update_status``, ``patch``,
``delete``, ``get``, ``list_objects``) goes through the same write path as HTTP requests, so
open watches see test setup exactly as they would see another client's writes.

Known differences from a real API server (extend the fake when a test needs one of these):

- No defaulting (a Service gets no ``clusterIP``, ports no ``protocol``), no admission, no
  managedFields, no server-side apply (``apply-patch`` gets 415).  Field validation covers
  names, Events and CustomResourceDefinitions only.
- CustomResourceDefinitions are validated as strictly as kube-apiserver validates them, on
  create and on every update (422 with the real causes and message; see
  :mod:`tests.kube.fake.crdvalidation` for the rules and the few it leaves out: CEL is not
  compiled, defaults are not checked against their schema).  :meth:`FakeKubeAPI.apply_crd`
  applies a manifest's CRD through that path.  A created CRD is only stored, though: it
  registers nothing (the ServiceChecker resource is always served, CRD or not), its status
  stays empty (no ``Established`` condition, no ``storedVersions``) and custom resources are
  neither validated against its schema nor pruned nor defaulted (``tests/crd`` checks the
  schema offline).
- Namespaces need not exist before objects are created in them.
- core/v1 and events.k8s.io/v1 Events are stored apart (one storage on a real server).
- LIST ignores ``resourceVersion``/``resourceVersionMatch`` and serves the current state;
  ``continue`` pages read the current state too (not a snapshot at the first page's version).
- Watching from a future resourceVersion is accepted; history compaction is global, not per
  resource; ``timeoutSeconds`` also accepts fractions.
- PUT on a missing object is always 404 (some real kinds create on update).
- Graceful deletion is not modelled (finalizers are: DELETE marks, the last removal deletes).
- JSON only: no protobuf, YAML or CBOR; no rate limiting (inject a 429 with
  :meth:`~tests.kube.fake.server.ApiServer.fail_next`).
- Authentication is a stand-in: a request without a token is from one configured user (the
  controller's ServiceAccount by default), a bearer token maps to a user, an unknown one is
  401; no client certificates, token review, anonymous requests or impersonation.
- Authorization models RBAC only, and only when enforced: Roles, ClusterRoles, their bindings
  and the default discovery roles, with the real request-to-verb mapping and 403 wording.  Not
  modelled: ClusterRole aggregation, the Node and webhook authorizers, selector-based
  authorization (1.31+ ``AuthorizeWithSelectors``), escalation checks on RBAC writes, the RBAC
  objects as API resources (change them through ``fake.rbac``), and the informer delay before a
  binding change takes effect (immediate here; the only delay modelled is the restart warm-up).
  A ``watch`` value other than true/1/false/0 is a watch to the authorizer (as on a real
  server) but served as a list.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from kubernetes_asyncio.client import ApiClient, Configuration

from tests.kube.fake.errors import ApiError, status_body
from tests.kube.fake.faults import Answer, Fault, Gate, Matcher, RecordedRequest
from tests.kube.fake.patching import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH
from tests.kube.fake.rbac import Decision, Rbac, User
from tests.kube.fake.resources import DEFAULT_RESOURCES, ResourceType
from tests.kube.fake.server import ApiServer
from tests.kube.fake.watching import OpenWatch

__all__ = [
    "DEFAULT_RESOURCES",
    "Answer",
    "ApiError",
    "Decision",
    "FakeKubeAPI",
    "Fault",
    "Gate",
    "Matcher",
    "OpenWatch",
    "Rbac",
    "RecordedRequest",
    "ResourceType",
    "User",
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

    def apply_crd(self, source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
        """Create the one CustomResourceDefinition of ``source`` (a manifest file, which may hold
        other kinds, e.g. ``deploy/install.yaml``, or a parsed CRD) through the validating write
        path: :class:`ApiError` 422 where a real API server would refuse it."""
        if isinstance(source, Mapping):
            documents: list[Any] = [source]
        else:
            with Path(source).open(encoding="utf-8") as stream:
                documents = list(yaml.safe_load_all(stream))
        crds = [
            doc
            for doc in documents
            if isinstance(doc, Mapping) and doc.get("kind") == "CustomResourceDefinition"
        ]
        if len(crds) != 1:
            raise ValueError(f"{source}: expected one CustomResourceDefinition, found {len(crds)}")
        return self.create(crds[0])

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
