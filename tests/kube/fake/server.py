"""The fake API server's HTTP side: lifecycle, request handling, fault hooks, waiting.

One catch-all route parses Kubernetes paths itself (:mod:`~tests.kube.fake.routing`), so the
resource table alone decides what exists.  Every request is logged, then authorized when a
test turned authorization on (:meth:`ApiServer.enforce_rbac`, :mod:`~tests.kube.fake.rbac`;
a denial is a 403 before anything else, as a real server refuses before it routes, and is
logged in :attr:`ApiServer.decisions`), then may be held by a
:class:`~tests.kube.fake.faults.Gate`, failed or dropped by a
:class:`~tests.kube.fake.faults.Fault`, and only then served; how it ended is logged too
(:attr:`ApiServer.answers`).  :meth:`ApiServer.go_offline` makes the server unreachable (new
connections refused, open ones cut) until :meth:`ApiServer.go_online`;
:meth:`ApiServer.restart` does both and then refuses every request with a 403 while the
authorizer warms up, until :meth:`ApiServer.finish_warmup` (or a count or a time).

The server runs with ``handler_cancellation=True``: a client that goes away cancels its watch
handler, which unsubscribes it, as a real server's watch ends with its connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from tests.kube.fake import errors
from tests.kube.fake.discovery import discovery_document
from tests.kube.fake.errors import ApiError
from tests.kube.fake.faults import (
    Answer,
    Fault,
    Gate,
    Matcher,
    RecordedRequest,
    RequestPredicate,
)
from tests.kube.fake.listing import delete_collection, list_response
from tests.kube.fake.rbac import Decision, Rbac, Warmup, authorize_request
from tests.kube.fake.resources import DEFAULT_RESOURCES, ResourceTable, ResourceType
from tests.kube.fake.routing import parse_route
from tests.kube.fake.selectors import selector_from_query
from tests.kube.fake.store import ObjectStore
from tests.kube.fake.watching import TRUE_VALUES, OpenWatch, WatchHub
from tests.kube.fake.wire import encode_json, error_response, json_response


class ApiServer:
    """The HTTP server and its hooks; ``tests.kube.fakeapi.FakeKubeAPI`` adds the object API."""

    def __init__(
        self,
        resources: Iterable[ResourceType] = DEFAULT_RESOURCES,
        *,
        bookmark_interval_s: float = 60.0,
        history_limit: int | None = None,
    ) -> None:
        self.table = ResourceTable(resources)
        self.store = ObjectStore(self.table, history_limit=history_limit)
        self.hub = WatchHub(
            self.store, notify=self._notify, bookmark_interval_s=bookmark_interval_s
        )
        self.requests: list[RecordedRequest] = []
        """Every request received, in order (logged before faults apply)."""
        self.answers: list[Answer] = []
        """How each request ended, in the order they ended (writes: the order applied)."""
        self.rbac: Rbac | None = None
        """The authorizer in force (:meth:`enforce_rbac`); None: every request is allowed."""
        self.decisions: list[Decision] = []
        """Every authorization decision (only while RBAC is enforced or warming up)."""
        self._warmup: Warmup | None = None
        self._warmup_timer: asyncio.TimerHandle | None = None
        self._offline = False
        self._site: web.TCPSite | None = None
        self._port = 0
        self._held_port: socket.socket | None = None
        self._faults: list[Fault] = []
        self._gates: list[Gate] = []
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self.store.listeners.append(self._notify)

    @property
    def bookmark_interval_s(self) -> float:
        """How often watches that allow bookmarks get one (real servers: about a minute)."""
        return self.hub.bookmark_interval_s

    @bookmark_interval_s.setter
    def bookmark_interval_s(self, value: float) -> None:
        self.hub.bookmark_interval_s = value

    @property
    def watches(self) -> list[OpenWatch]:
        """Watches currently streaming (registered before their first event is written)."""
        return list(self.hub.watches)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the fake API server is not started")
        return self._url

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, reuse_port=True)
        await site.start()
        self._site = site
        host, port = self._runner.addresses[0][:2]
        self._port = int(port)
        self._url = f"http://{host}:{port}"

    async def close(self) -> None:
        self.finish_warmup()
        for gate in self._gates:
            gate.set()
        self.hub.end(None, abort=False)
        self._release_port()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for _, future in self._waiters:
            future.cancel()

    # -- fault hooks ---------------------------------------------------------------------------

    def fail_next(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        status: int = 500,
        times: int | None = 1,
        reason: str | None = None,
        message: str | None = None,
        retry_after_s: int | None = None,
        when: RequestPredicate | None = None,
    ) -> Fault:
        """Answer the next ``times`` matching requests with a ``Status`` of ``status``.

        ``path`` is a regular expression searched in the request path; ``times=None`` fails
        forever.  A 429 gets a ``Retry-After`` header (``retry_after_s``, default 1) like a
        real server's priority-and-fairness rejection.
        """
        headers: dict[str, str] = {}
        if retry_after_s is not None or status == 429:
            headers["Retry-After"] = str(1 if retry_after_s is None else retry_after_s)
        fault = Fault(
            Matcher(method, path, when),
            times,
            status=status,
            reason=reason,
            message=message or f"injected failure ({status})",
            headers=headers,
        )
        self._faults.append(fault)
        return fault

    def drop_next(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        times: int | None = 1,
        when: RequestPredicate | None = None,
    ) -> Fault:
        """Close the connection instead of answering the next ``times`` matching requests.

        aiohttp's client retries an idempotent request once when a *reused* connection drops,
        so one drop of a GET may be invisible to the caller: use ``times=2`` to be sure.
        """
        fault = Fault(Matcher(method, path, when), times, status=0)
        self._faults.append(fault)
        return fault

    def hold(
        self,
        method: str | None = None,
        path: str | None = None,
        *,
        times: int | None = 1,
        when: RequestPredicate | None = None,
    ) -> Gate:
        """Hold matching requests until the returned gate is set (its ``arrived`` says when)."""
        gate = Gate(Matcher(method, path, when), times)
        self._gates.append(gate)
        return gate

    def clear_faults(self) -> None:
        """Forget every fault rule and release every held request."""
        self._faults.clear()
        for gate in self._gates:
            gate.set()
        self._gates.clear()

    async def go_offline(self) -> None:
        """Become unreachable: stop listening (connections are refused), cut open watches, and
        drop whatever arrives on connections that were already open."""
        self._offline = True
        if self._site is not None:
            self._hold_port()
            await self._site.stop()
            self._site = None
        self.hub.end(None, abort=True)

    async def go_online(self) -> None:
        """Listen again, on the same port, and serve as before."""
        assert self._runner is not None, "the fake API server is not started"
        self._offline = False
        if self._site is None:
            site = web.TCPSite(self._runner, "127.0.0.1", self._port, reuse_port=True)
            await site.start()
            self._site = site
        self._release_port()
        self._notify()

    def _hold_port(self) -> None:
        """Keep the port while offline with a bound socket that does not listen: connections
        are refused as by a closed port, and no other socket can take the port meanwhile (a
        freed port can be handed to any outgoing connection as its local port, and listening
        again would then fail with "address already in use")."""
        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("127.0.0.1", self._port))
        self._held_port = held

    def _release_port(self) -> None:
        if self._held_port is not None:
            self._held_port.close()
            self._held_port = None

    # -- authorization -------------------------------------------------------------------------

    def enforce_rbac(self, rbac: Rbac | None) -> Rbac | None:
        """Authorize every HTTP request with ``rbac`` from now on (None: stop); returns it.

        The direct object API (``create``, ``patch``, ...) is the cluster admin: never checked.
        """
        self.rbac = rbac
        return rbac

    @property
    def denied(self) -> list[RecordedRequest]:
        """Requests refused by authorization (403, or 401 for an unknown token), in order."""
        return [d.request for d in self.decisions if not d.allowed and d.request is not None]

    @property
    def warming_up(self) -> bool:
        """Whether the authorizer still refuses everything after :meth:`restart`."""
        return self._warmup is not None and not self._warmup.ended

    async def restart(
        self,
        *,
        warmup_requests: int | None = None,
        warmup_s: float | None = None,
        compact: bool = False,
    ) -> None:
        """Restart like a real API server: connections are cut, then every request is answered
        403 Forbidden (the usual wording) while the RBAC authorizer's informers fill.

        The warm-up ends after ``warmup_requests`` refused requests, after ``warmup_s`` seconds
        of loop time, or at :meth:`finish_warmup`, whichever comes first; with neither given
        only :meth:`finish_warmup` ends it, and ``warmup_requests=0`` means no warm-up.  It
        applies whether or not RBAC is enforced.  ``compact=True`` also forgets the history,
        as a restarted server's watch cache starts at the current resourceVersion: a watch
        from an older one gets 410 Expired.
        """
        await self.go_offline()
        if self._runner is not None and self._runner.server is not None:
            for connection in self._runner.server.connections:
                connection.force_close()  # idle keep-alive connections die with the process
        self.finish_warmup()
        if compact:
            self.compact()
        if warmup_requests != 0:
            self._warmup = Warmup(warmup_requests)
            if warmup_s is not None:
                loop = asyncio.get_running_loop()
                self._warmup_timer = loop.call_later(warmup_s, self.finish_warmup)
        await self.go_online()

    def finish_warmup(self) -> None:
        """End the authorizer's warm-up now (no-op when there is none)."""
        if self._warmup_timer is not None:
            self._warmup_timer.cancel()
            self._warmup_timer = None
        if self._warmup is not None:
            self._warmup.end()
            self._warmup = None
            self._notify()

    def _authorize(self, request: web.Request, record: RecordedRequest) -> web.Response | None:
        """None when the request may go on; else the 403 (or 401) to answer."""
        decision = authorize_request(
            self.rbac,
            self._warmup,
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
        )
        if decision is None:
            return None
        self.decisions.append(dataclasses.replace(decision, request=record))
        if self._warmup is not None and self._warmup.ended:
            self.finish_warmup()
        if decision.allowed:
            return None
        return json_response(
            decision.status(),
            status=decision.code,
            headers={"X-Content-Type-Options": "nosniff"},
        )

    def _resource(self, resource: str | ResourceType | None) -> ResourceType | None:
        return None if resource is None else self.table.resolve(resource)

    def end_watches(self, resource: str | ResourceType | None = None) -> int:
        """End open watches cleanly (terminating chunk sent); returns how many."""
        return self.hub.end(self._resource(resource), abort=False)

    def abort_watches(self, resource: str | ResourceType | None = None) -> int:
        """Cut open watches' connections mid-stream; the client sees ``ClientPayloadError``."""
        return self.hub.end(self._resource(resource), abort=True)

    def send_bookmarks(self, resource: str | ResourceType | None = None) -> int:
        """Send a BOOKMARK now to every open watch that allowed bookmarks; returns how many."""
        return self.hub.send_bookmarks(self._resource(resource))

    def inject_watch_event(
        self,
        resource: str | ResourceType,
        event: Mapping[str, Any] | str | bytes,
        *,
        namespace: str | None = None,
    ) -> int:
        """Write ``event`` to open watches of ``resource`` as is (a dict as one JSON line).

        Bypasses the store: for what a real server might send but the fake would not produce
        by itself (malformed lines, stray ERROR events, out-of-order versions).
        """
        data = encode_json(event) if isinstance(event, Mapping) else event
        raw = data.encode() if isinstance(data, str) else data
        return self.hub.inject(self.table.resolve(resource), raw, namespace=namespace)

    def compact(self, resource_version: int | None = None) -> None:
        """Forget history: watching from an older resourceVersion now answers 410 Expired."""
        self.store.compact(resource_version)

    # -- waiting -------------------------------------------------------------------------------

    def _notify(self) -> None:
        for entry in list(self._waiters):
            predicate, future = entry
            if future.done():
                self._waiters.remove(entry)
            elif predicate():
                self._waiters.remove(entry)
                future.set_result(None)

    async def wait_until(self, predicate: Callable[[], bool], *, timeout_s: float = 5.0) -> None:
        """Wait until ``predicate()`` holds; re-checked after every request, write and watch."""
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                await future
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def wait_for_request(
        self,
        predicate: RequestPredicate = lambda _: True,
        *,
        since: int = 0,
        timeout_s: float = 5.0,
    ) -> RecordedRequest:
        """The first logged request from index ``since`` on that satisfies ``predicate``."""
        found: list[RecordedRequest] = []

        def check() -> bool:
            found[:] = [request for request in self.requests[since:] if predicate(request)][:1]
            return bool(found)

        await self.wait_until(check, timeout_s=timeout_s)
        return found[0]

    async def wait_for_watch(
        self,
        resource: str | ResourceType | None = None,
        *,
        count: int = 1,
        timeout_s: float = 5.0,
    ) -> list[OpenWatch]:
        """Wait until at least ``count`` watches of ``resource`` are open and subscribed."""
        wanted = self._resource(resource)
        await self.wait_until(lambda: len(self.hub.matching(wanted)) >= count, timeout_s=timeout_s)
        return self.hub.matching(wanted)

    # -- HTTP ----------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_body = await request.read()
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query={key: request.query.getall(key)[-1] for key in request.query},
            content_type=request.headers.get("Content-Type", ""),
            body=_parse_json(raw_body),
            raw_body=raw_body,
            headers=dict(request.headers),
            received_at=asyncio.get_running_loop().time(),
        )
        self.requests.append(record)
        self._notify()
        try:
            response = await self._respond(request, record)
        except asyncio.CancelledError:  # the client went away (handler_cancellation)
            self._answered(record, None)
            raise
        self._answered(record, response.status)
        return response

    def _answered(self, record: RecordedRequest, status: int | None) -> None:
        self.answers.append(Answer(record, status, asyncio.get_running_loop().time()))
        self._notify()

    async def _respond(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        if self._offline:
            return self._drop(request)
        refused = self._authorize(request, record)
        if refused is not None:
            return refused
        for gate in list(self._gates):
            if gate.take(record):
                await gate.wait()
                break
        for fault in list(self._faults):
            if fault.take(record):
                if fault.status == 0:
                    return self._drop(request)
                error = ApiError(fault.status, fault.message or "", reason=fault.reason)
                return error_response(error, headers=fault.headers)
        try:
            return await self._serve(request, record)
        except ApiError as error:
            return error_response(error)

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        # Never reaches the client (the connection is gone); logged as status 0.
        return web.Response(status=0)

    async def _serve(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        discovery = discovery_document(self.table, request.path)
        if discovery is not None:
            return json_response(discovery)
        route = parse_route(self.table, request.path)
        query, method = record.query, request.method
        dry_run = query.get("dryRun") == "All"
        resource, namespace, name = route.resource, route.namespace or "", route.name
        if name is None:
            select = selector_from_query(query, supported=resource.field_selectors)
            if method == "GET" and query.get("watch", "") in TRUE_VALUES:
                return await self.hub.serve(request, resource, route.namespace, select, query)
            if method == "GET":
                return json_response(
                    list_response(self.store, resource, route.namespace, select, query)
                )
            if method == "POST" and (namespace or not resource.namespaced):
                created = self.store.create(resource, namespace, record.body, dry_run=dry_run)
                return json_response(created, status=201)
            if method == "DELETE":
                return json_response(
                    delete_collection(
                        self.store, resource, route.namespace, select, dry_run=dry_run
                    )
                )
            raise ApiError(405, "the server does not allow this method on the requested resource")
        if route.subresource is not None and (
            route.subresource != "status" or not resource.has_status_subresource
        ):
            raise errors.unknown_resource()
        if method == "GET":
            return json_response(self.store.get(resource, namespace, name))
        if method == "PUT":
            body = _require_json(record)
            return json_response(
                self.store.replace(
                    resource, namespace, name, body, subresource=route.subresource, dry_run=dry_run
                )
            )
        if method == "PATCH":
            patched = self.store.patch(
                resource,
                namespace,
                name,
                _require_json(record),
                content_type=record.content_type,
                subresource=route.subresource,
                dry_run=dry_run,
            )
            return json_response(patched)
        if method == "DELETE" and route.subresource is None:
            options = record.body if isinstance(record.body, dict) else {}
            obj, gone = self.store.delete(
                resource,
                namespace,
                name,
                preconditions=options.get("preconditions"),
                dry_run=dry_run,
            )
            if gone and not resource.delete_returns_object:
                return json_response(_success(resource, obj))
            return json_response(obj)
        raise ApiError(405, "the server does not allow this method on the requested resource")


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _require_json(record: RecordedRequest) -> Any:
    if record.body is None:
        if not record.raw_body:
            raise errors.bad_request("the body of the request was empty")
        raise errors.bad_request("couldn't get version/kind; json parse error")
    return record.body


def _success(resource: ResourceType, obj: Mapping[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata") or {}
    details: dict[str, Any] = {"name": metadata.get("name"), "kind": resource.plural}
    if resource.group:
        details["group"] = resource.group
    details["uid"] = metadata.get("uid")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }
