"""The management listener: probes, metrics, ``/services``, ``/status``, the admin API and
the operator dashboard at ``/`` (:mod:`proxy.dashboard`).

Nothing here is ever gated by maintenance: liveness must keep passing (a restart loop
would not end a maintenance), and readiness fails only while draining on SIGTERM or,
as an explicit opt-in, during maintenance (``MWM_MANAGEMENT__READINESS_DRAIN``).

The admin API switches the ``admin-api`` manual switch of this process:

- ``GET /api/maintenance``: the switch and the aggregate status;
- ``PUT /api/maintenance`` with ``{"enabled": true, "reason": "...", "until": "<RFC 3339>",
  "mode": "readOnly"}``: ``enabled`` is required and must be a JSON boolean; ``mode`` is
  ``"full"`` (the default: the whole site) or ``"readOnly"`` (only writes get the page);
  any other body (empty, partial, ``"enabled": "yes"``, ``"mode": "readonly"``, an unknown
  field) is refused with 422 and changes nothing;
- ``DELETE /api/maintenance``: switch it off.

It requires ``Authorization: Bearer <MWM_MANAGEMENT__ADMIN_TOKEN>``, compared in
constant time; a token in the query string is refused outright so it never lands in
access logs.  Only that header authenticates, never a cookie, so a cross-site form (which
cannot set it) cannot switch anything: no CSRF token is needed.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Annotated, Any

from aiohttp import hdrs, web
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from controller.snapshot import ManualSwitch, Mode
from controller.timefmt import EXPECTED as RFC3339_EXPECTED
from controller.timefmt import TimeFormatError, parse_rfc3339, rfc3339_or_none
from proxy.dashboard import Dashboard
from proxy.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from proxy.pages import SERVER
from proxy.public import SERVICES_KEY, Services, json_response
from proxy.statusstream import Broadcaster

log = logging.getLogger(__name__)

ADMIN_SWITCH_SOURCE = "admin-api"
DASHBOARD_KEY = web.AppKey("dashboard", Dashboard)
_TOKEN_QUERY_NAMES = frozenset({"token", "access_token", "admin_token", "auth"})


MAX_REASON_CHARS = 500


def _strict_time(value: object) -> object:
    """``until`` as strict RFC 3339 (:func:`controller.timefmt.parse_rfc3339`): pydantic's
    own datetime parsing also takes a date alone, a space for ``T``, ``+0100``..."""
    if not isinstance(value, str):
        return value  # None, or a wrong type the datetime validator then refuses
    try:
        return parse_rfc3339(value)
    except TimeFormatError as exc:
        raise PydanticCustomError("rfc3339", "{problem}", {"problem": str(exc)}) from None


class SwitchRequest(BaseModel):
    """Body of ``PUT /api/maintenance``: a switch changes only when the body says so.

    Strict: ``enabled`` is required and only ``true`` or ``false`` will do (no ``"yes"``,
    no ``1``), ``reason`` is a string, ``until`` an RFC 3339 string with a time zone, and
    an unknown field is an error rather than ignored (a typo must not switch anything)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS)
    until: Annotated[AwareDatetime | None, BeforeValidator(_strict_time)] = None
    mode: Mode = Mode.FULL
    """``full``: the whole site gets the page; ``readOnly``: only writes do."""


_EXPECTED = {
    "enabled": "true or false (a JSON boolean); required",
    "reason": f"a string of at most {MAX_REASON_CHARS} characters, or null",
    "until": f"{RFC3339_EXPECTED} in the future, or null",
    "mode": '"full" (the default) or "readOnly" (only writes get the page)',
}
"""What each field of :class:`SwitchRequest` takes, for the 422 answer."""
_EXPECTED_BODY = 'a JSON object such as {"enabled": true, "reason": "..."}'
_EXPECTED_NOTHING = "only the fields " + ", ".join(_EXPECTED)


def _field_error(loc: tuple[int | str, ...], message: str, expected: str) -> dict[str, str]:
    """One entry of the 422 answer's ``errors``: the field as a dotted path and as a JSON
    pointer (RFC 6901, as a URI fragment like RFC 9457's example), what the field takes
    and what was wrong."""
    parts = [str(part) for part in loc]
    pointer = "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)
    return {
        "field": ".".join(parts) or "body",
        "pointer": "#" + pointer,
        "expected": expected,
        "message": message,
    }


def _invalid_body(errors: list[dict[str, str]]) -> web.Response:
    return _problem(
        422,
        "Invalid request",
        "The request body is not valid; nothing was changed. "
        + "; ".join(f"{e['field']}: expected {e['expected']}" for e in errors)
        + ".",
        errors=errors,
    )


def _validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    errors = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = tuple(error["loc"])
        if not loc:
            expected = _EXPECTED_BODY
        elif error["type"] == "extra_forbidden":
            expected = _EXPECTED_NOTHING
        else:
            expected = _EXPECTED.get(str(loc[0]), "a valid value")
        errors.append(_field_error(loc, error["msg"], expected))
    return errors


def _problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/problem+json",
        headers={hdrs.CACHE_CONTROL: "no-store"},
    )


def _services(request: web.Request) -> Services:
    return request.app[SERVICES_KEY]


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, headers={hdrs.CACHE_CONTROL: "no-store"})


async def readyz(request: web.Request) -> web.Response:
    s = _services(request)
    state = s.store.current
    problems = []
    if s.lifecycle.draining:
        problems.append("shutting down")
    if not state.snapshot.synced:
        problems.append("state not synced yet")
    # Only a whole-site maintenance: a read-only or per-route one still serves most
    # requests, which a pod taken out of the Service could not.
    if s.settings.management.readiness_drain and state.maintenance.whole_site:
        problems.append("maintenance is on and readiness drain mode is enabled")
    status = 503 if problems else 200
    body = {"status": "ready" if not problems else "not ready", "problems": problems}
    return web.json_response(body, status=status, headers={hdrs.CACHE_CONTROL: "no-store"})


async def services_doc(request: web.Request) -> web.Response:
    s = _services(request)
    return json_response(request, s.documents.services(s.store.current))


async def status_doc(request: web.Request) -> web.Response:
    s = _services(request)
    return json_response(
        request, s.documents.status(s.store.current, draining=s.lifecycle.draining)
    )


STREAM_KEY = web.AppKey("status-stream", Broadcaster)


async def status_stream(request: web.Request) -> web.StreamResponse:
    """``/status`` as Server-Sent Events (:mod:`proxy.statusstream`); like ``/status``, no
    token is needed."""
    return await request.app[STREAM_KEY].respond(request)


async def metrics(request: web.Request) -> web.Response:
    s = _services(request)
    # With several workers this sums every worker's counter files (proxy.metrics).
    return web.Response(
        body=s.metrics.exposition(s.store.current),
        headers={hdrs.CONTENT_TYPE: METRICS_CONTENT_TYPE, hdrs.CACHE_CONTROL: "no-store"},
    )


async def dashboard(request: web.Request) -> web.Response:
    s = _services(request)
    page = request.app[DASHBOARD_KEY].page(
        s.store.current, draining=s.lifecycle.draining, bypass=s.metrics.bypass_counts()
    )
    return web.Response(body=page.body, headers=page.headers)


def _authorize(request: web.Request) -> web.Response | None:
    """None when the request carries the admin token, else the refusal to send."""
    if _TOKEN_QUERY_NAMES.intersection(k.lower() for k in request.query):
        return _problem(
            400,
            "Token in URL",
            "Send the admin token in the Authorization header, never in the query string.",
        )
    token = _services(request).settings.management.admin_token
    if token is None:
        return _problem(
            403,
            "Admin API disabled",
            "Set MWM_MANAGEMENT__ADMIN_TOKEN (or ..._FILE) to enable the admin API.",
        )
    scheme, _, presented = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected):
        response = _problem(401, "Unauthorized", "A valid 'Authorization: Bearer' token is needed.")
        response.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="mwm"'
        return response
    return None


def _switch_body(switch: ManualSwitch | None) -> dict[str, Any]:
    if switch is None:
        return {"enabled": False, "reason": None, "until": None, "since": None, "mode": "full"}
    return {
        "enabled": switch.enabled,
        "reason": switch.reason,
        "until": rfc3339_or_none(switch.until),
        "since": rfc3339_or_none(switch.since),
        "mode": str(switch.mode),
    }


def _admin_switch(s: Services) -> ManualSwitch | None:
    for switch in s.store.current.snapshot.switches:
        if switch.source == ADMIN_SWITCH_SOURCE:
            return switch
    return None


def _admin_state(s: Services) -> web.Response:
    state = s.store.current
    body = {
        "switch": _switch_body(_admin_switch(s)),
        "maintenance": {"active": state.maintenance.active, "reason": state.maintenance.reason},
    }
    return web.json_response(body, headers={hdrs.CACHE_CONTROL: "no-store"})


def _apply(s: Services, switch: ManualSwitch) -> None:
    s.store.set_switch(switch)
    if s.shared_switch is not None:
        s.shared_switch.write(switch)  # the other worker processes pick it up


async def get_maintenance(request: web.Request) -> web.Response:
    return _authorize(request) or _admin_state(_services(request))


async def put_maintenance(request: web.Request) -> web.Response:
    refusal = _authorize(request)
    if refusal is not None:
        return refusal
    s = _services(request)
    try:
        # An empty body is an empty object: the answer then names the required field.
        body = SwitchRequest.model_validate_json(await request.read() or b"{}")
    except ValidationError as exc:
        return _invalid_body(_validation_errors(exc))
    now = s.store.clock()
    if body.until is not None and body.until <= now:
        return _invalid_body(
            [_field_error(("until",), "Input should be in the future", _EXPECTED["until"])]
        )
    previous = _admin_switch(s)
    since = previous.since if previous and previous.enabled and body.enabled else now
    switch = ManualSwitch(
        source=ADMIN_SWITCH_SOURCE,
        enabled=body.enabled,
        reason=body.reason,
        until=body.until,
        since=since if body.enabled else None,
        mode=body.mode,
    )
    _apply(s, switch)
    log.info(
        "maintenance switched %s through the admin API",
        "on" if body.enabled else "off",
        extra={
            "reason": body.reason,
            "until": rfc3339_or_none(body.until),
            "mode": str(body.mode),
        },
    )
    return _admin_state(s)


async def delete_maintenance(request: web.Request) -> web.Response:
    refusal = _authorize(request)
    if refusal is not None:
        return refusal
    s = _services(request)
    _apply(s, ManualSwitch(source=ADMIN_SWITCH_SOURCE, enabled=False))
    log.info("maintenance switched off through the admin API")
    return _admin_state(s)


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[hdrs.SERVER] = SERVER


def build_management_app(services: Services) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app.on_response_prepare.append(_server_header)
    app[SERVICES_KEY] = services
    settings = services.settings
    app[DASHBOARD_KEY] = board = Dashboard(settings.management, settings.page, services.store)
    for problem in board.check():
        log.warning("dashboard template problem, the built-in one will be used: %s", problem)
    app.router.add_get("/", dashboard)
    for path in ("/healthz", "/health"):
        app.router.add_get(path, healthz)
    for path in ("/readyz", "/ready"):
        app.router.add_get(path, readyz)
    app.router.add_get("/services", services_doc)
    app.router.add_get("/status", status_doc)
    status = services.settings.status
    if status.max_subscribers > 0:
        documents, lifecycle = services.documents, services.lifecycle
        stream = app[STREAM_KEY] = Broadcaster(
            services.store,
            lambda state: documents.status(state, draining=lifecycle.draining).body,
            name="management",
            heartbeat_s=status.heartbeat_s,
            retry_s=status.stream_retry_s,
            max_subscribers=status.max_subscribers,
            counted=services.metrics.status_subscribers["management"],
        )
        services.streams.append(stream)
        app.router.add_get("/status/stream", status_stream)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/maintenance", get_maintenance)
    app.router.add_put("/api/maintenance", put_maintenance)
    app.router.add_post("/api/maintenance", put_maintenance)
    app.router.add_delete("/api/maintenance", delete_maintenance)
    return app
