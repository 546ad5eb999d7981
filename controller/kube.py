"""The one module that talks to Kubernetes (through kubernetes-asyncio's ``ApiClient``).

Everything else in ``controller/`` sees plain JSON objects (``dict``), :class:`Resource`
descriptions and the errors below; nothing else uses ``kubernetes_asyncio`` but
:mod:`controller.leadership`, and both get it from :mod:`controller.kubelib`, which imports
it without its generated model modules.

Requests go through ``ApiClient.call_api`` with ``_preload_content=False``: the client
still does configuration, authentication (in-cluster token, kubeconfig, exec plugins)
and TLS, but responses are read here as raw JSON.  That skips building typed models
for every watch event, and lets a watch be read line by line with an inactivity
timeout, which ``kubernetes_asyncio.watch.Watch`` cannot do.

Every client identifies itself as ``mwm/<version> (<detail>)`` (:func:`user_agent`): the
API server names a field manager after the User-Agent up to its first ``/``, and the audit
log shows the detail (which replica, or the command line).  Writes through :class:`KubeApi`
also name their field manager explicitly (``fieldManager=mwm``, :data:`FIELD_MANAGER`).

Errors:

- :class:`KubeError` -- the API answered with an error ``Status`` (``status`` is the HTTP
  code) or could not be reached (``status`` 0); ``retry_after_s`` carries a 429's advice;
- :class:`ResourceExpired` -- 410 Gone: the resourceVersion a watch started from is no
  longer in the server's history; the caller must list again;
- :class:`WatchInterrupted` -- a watch stream broke off or went silent past its
  inactivity timeout; the caller reconnects from the last resourceVersion it saw.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from controller.kubelib import ApiClient, ApiException, ConfigException, Configuration, kube_config

JsonObject = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
_AUTH = ["BearerToken"]

DISTRIBUTION = "maintenance-window-manager"
FIELD_MANAGER = "mwm"
"""The ``fieldManager`` of every write (the server wants at most 128 printable characters)."""
_WRITE_QUERY = {"fieldManager": FIELD_MANAGER}


@functools.cache
def version() -> str:
    """This project's installed version, or ``0`` when it is not installed (a source tree)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0"


def user_agent(detail: str | None = None) -> str:
    """``mwm/<version> (<detail>)``, the User-Agent of every client this project creates.

    ``detail`` tells clients apart in the audit log (a replica's identity, ``cli``); it is
    kept to printable ASCII, as a header value must be."""
    agent = f"mwm/{version()}"
    if detail:
        agent += " (" + "".join(c if " " <= c <= "~" else "?" for c in detail) + ")"
    return agent


_default_user_agent = user_agent  # KubeApi.connect's parameter shadows the name


@dataclass(frozen=True, slots=True)
class Resource:
    """Where a kind lives in the API."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


SERVICECHECKERS = Resource(
    "maintenance.mamrezb.com", "v1alpha1", "servicecheckers", "ServiceChecker"
)
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
SERVICES = Resource("", "v1", "services", "Service")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
EVENTS = Resource("", "v1", "events", "Event")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")


class KubeError(Exception):
    """The API refused a request or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        reason: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        return self.status in (0, 409, 429) or self.status >= 500


class ResourceExpired(KubeError):
    """410 Gone: list again, the watch's resourceVersion is too old."""


class WatchInterrupted(KubeError):
    """The stream ended abnormally or went silent; reconnect from the last version seen."""


@dataclass(frozen=True, slots=True)
class ObjectList:
    items: list[JsonObject]
    resource_version: str


def describe_error(exc: BaseException) -> str:
    """An exception for ``/status`` and the logs: its message (aiohttp's say which host and
    why, without the connection key's internals a repr carries), or its type."""
    return str(exc) or type(exc).__name__


UNREACHABLE_ERRORS: tuple[type[Exception], ...] = (aiohttp.ClientError, OSError, TimeoutError)
"""What a request through the typed client raises when the API cannot be reached (for
:mod:`controller.leadership`, whose library call does not go through :class:`KubeApi`)."""


CONNECTED = "CONNECTED"
"""A synthetic first event of every watch: the server accepted it."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str
    """``ADDED``, ``MODIFIED``, ``DELETED``, ``BOOKMARK``, or :data:`CONNECTED` (ours)."""
    object: JsonObject

    @property
    def resource_version(self) -> str | None:
        metadata = self.object.get("metadata") or {}
        value = metadata.get("resourceVersion")
        return value if isinstance(value, str) else None


def _status_error(status: int, body: bytes, *, retry_after: str | None = None) -> KubeError:
    message, reason = f"HTTP {status}", ""
    with contextlib.suppress(ValueError, AttributeError):
        parsed = json.loads(body)
        message = str(parsed.get("message") or message)
        reason = str(parsed.get("reason") or "")
    retry_after_s = None
    if retry_after is not None:
        with contextlib.suppress(ValueError):
            retry_after_s = float(retry_after)
    error_type = ResourceExpired if status == 410 else KubeError
    return error_type(
        f"{message} (HTTP {status})", status=status, reason=reason, retry_after_s=retry_after_s
    )


class KubeApi:
    """A thin JSON client over one ``ApiClient``; use :meth:`connect` to make one."""

    def __init__(self, client: ApiClient, *, request_timeout_s: float = 30.0) -> None:
        self._client = client
        self._request_timeout_s = request_timeout_s

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        *,
        host: str | None = None,
        kubeconfig: Path | None = None,
        context: str | None = None,
        in_cluster: bool = False,
        request_timeout_s: float = 30.0,
        user_agent: str | None = None,
    ) -> AsyncIterator[KubeApi]:
        """Configure a client: an explicit ``host`` (no auth; tests), the in-cluster
        service account, or a kubeconfig file (default location when None).  Replicas share
        one service account: a ``user_agent`` naming the replica (``user_agent(identity)``)
        tells them apart in the API server's audit log; by default it is ``mwm/<version>``,
        never kubernetes-asyncio's ``OpenAPI-Generator/...``."""
        configuration = Configuration()
        try:
            if host is not None:
                configuration.host = host
            elif in_cluster:
                kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                await kube_config.load_kube_config(
                    config_file=str(kubeconfig) if kubeconfig else None,
                    context=context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (ConfigException, OSError) as exc:
            raise KubeError(f"cannot configure the Kubernetes client: {exc}") from exc
        async with ApiClient(configuration=configuration) as client:
            client.user_agent = user_agent if user_agent is not None else _default_user_agent()
            yield cls(client, request_timeout_s=request_timeout_s)

    @property
    def api_client(self) -> ApiClient:
        """For ``kubernetes_asyncio.leaderelection``, which needs the typed client."""
        return self._client

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        client_timeout: aiohttp.ClientTimeout | None = None,
    ) -> aiohttp.ClientResponse:
        try:
            response: aiohttp.ClientResponse = await self._client.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=_AUTH,
                _preload_content=False,
                _request_timeout=client_timeout
                or aiohttp.ClientTimeout(total=self._request_timeout_s),
            )
        except TimeoutError as exc:
            # Before OSError and ClientError: TimeoutError is an OSError, and aiohttp's
            # ServerTimeoutError (a read or connect timeout) is both.
            detail = f" ({exc})" if str(exc) else ""
            raise KubeError(f"the Kubernetes API did not answer in time{detail}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise KubeError(f"cannot reach the Kubernetes API: {describe_error(exc)}") from exc
        except ApiException as exc:
            raise KubeError(
                f"Kubernetes client error: {exc.reason}", status=exc.status or 0
            ) from exc
        if not 200 <= response.status < 300:
            try:
                body_bytes = await response.read()
            except aiohttp.ClientError:
                body_bytes = b""
            finally:
                response.release()
            raise _status_error(
                response.status, body_bytes, retry_after=response.headers.get("Retry-After")
            )
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> JsonObject:
        response = await self._request(method, path, **kwargs)
        try:
            data = await response.json(content_type=None)
        except (aiohttp.ClientError, ValueError, TimeoutError) as exc:
            raise KubeError(
                f"unreadable answer from the Kubernetes API: {describe_error(exc)}"
            ) from exc
        finally:
            response.release()
        if not isinstance(data, dict):
            raise KubeError("unexpected answer from the Kubernetes API: not an object")
        return data

    async def get(self, resource: Resource, namespace: str | None, name: str) -> JsonObject:
        return await self._json("GET", resource.path(namespace, name))

    async def list(
        self,
        resource: Resource,
        *,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ObjectList:
        query = _selectors(label_selector, field_selector)
        data = await self._json("GET", resource.path(namespace), query=query)
        items = data.get("items") or []
        version = str((data.get("metadata") or {}).get("resourceVersion") or "")
        for item in items:  # list items carry no kind; add it so objects look the same
            item.setdefault("kind", resource.kind)
            item.setdefault("apiVersion", resource.api_version)
        return ObjectList(items=list(items), resource_version=version)

    async def watch(
        self,
        resource: Resource,
        *,
        namespace: str | None,
        resource_version: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_s: float = 300.0,
        inactivity_timeout_s: float = 330.0,
    ) -> AsyncIterator[WatchEvent]:
        """Yield events after ``resource_version`` until the server ends the stream.

        Raises :class:`ResourceExpired` on 410, :class:`WatchInterrupted` when the stream
        breaks or stays silent for ``inactivity_timeout_s`` (bookmarks count as activity).
        """
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(int(timeout_s), 1)),
            **_selectors(label_selector, field_selector),
        }
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._request_timeout_s, sock_read=inactivity_timeout_s
        )
        response = await self._request(
            "GET", resource.path(namespace), query=query, client_timeout=timeout
        )
        try:
            # The server accepted the watch: tell the caller now, not at the first event, so
            # a quiet but healthy stream is not mistaken for a failing one.
            yield WatchEvent(type=CONNECTED, object={})
            while True:
                try:
                    line = await response.content.readline()
                except TimeoutError as exc:
                    raise WatchInterrupted(
                        f"no watch event for {inactivity_timeout_s:g} s"
                    ) from exc
                except aiohttp.ClientError as exc:
                    raise WatchInterrupted(f"watch stream broken: {exc!r}") from exc
                if not line:
                    return  # the server ended the stream (timeoutSeconds): reconnect
                if not line.strip():
                    continue
                event = _parse_event(line)
                if event.type == "ERROR":
                    status = event.object
                    code = int(status.get("code") or 0)
                    raise _status_error(code, json.dumps(status).encode())
                yield event
        finally:
            response.release()
            response.close()

    async def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: JsonObject,
        *,
        subresource: str | None = None,
    ) -> JsonObject:
        """A JSON merge patch (RFC 7386), the content type custom resources accept."""
        return await self._json(
            "PATCH",
            resource.path(namespace, name, subresource),
            query=_WRITE_QUERY,
            body=body,
            content_type=MERGE_PATCH,
        )

    async def replace(
        self, resource: Resource, namespace: str | None, name: str, body: JsonObject
    ) -> JsonObject:
        """PUT the whole object.  With ``metadata.resourceVersion`` in ``body`` the write is
        conditional: a :class:`KubeError` with status 409 when the object changed since."""
        return await self._json(
            "PUT", resource.path(namespace, name), query=_WRITE_QUERY, body=body
        )

    async def create(
        self, resource: Resource, namespace: str | None, body: JsonObject
    ) -> JsonObject:
        return await self._json("POST", resource.path(namespace), query=_WRITE_QUERY, body=body)


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    query = {}
    if label_selector:
        query["labelSelector"] = label_selector
    if field_selector:
        query["fieldSelector"] = field_selector
    return query


def _parse_event(line: bytes) -> WatchEvent:
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise WatchInterrupted(f"unreadable watch event: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise WatchInterrupted("malformed watch event")
    return WatchEvent(type=str(data.get("type")), object=data["object"])
