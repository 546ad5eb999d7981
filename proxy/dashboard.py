"""The operator dashboard at ``/`` on the management listener: one HTML page.

Server-rendered from the current state, so it is complete without JavaScript: the
maintenance state and its causes, every tracked service, the scheduled windows not yet
ended, the last transitions (:mod:`proxy.history`), the bypass counters and the admin
switch.  An inline script then keeps it live from ``/status/stream`` (polling ``/status``
when the stream is not there) and drives the admin switch with the token the operator
types, held in a variable of the tab only.

The page shows what ``/status`` shows and nothing more (it is on the management port
too); the admin token is never in it.  It is rendered per request (a management page,
not a hot path) and sent with a Content-Security-Policy that allows exactly the inline
``<script>`` and ``<style>`` elements of the rendered body, by their SHA-256 hashes
(:func:`proxy.csp.policy_for`), so an operator's override may change them freely.

Template: ``dashboard.html``, overridable in ``MWM_PAGE__TEMPLATE_DIR`` like the pages.
A failing override (syntax error, unknown variable...) never breaks the listener: the
built-in template is served and the problem logged once, as :mod:`proxy.pages` does.

Template context:

``state``        ``{active, reason, since, until, summary}`` (times are aware datetimes or
                 None; the ``iso`` and ``utc`` filters format them).
``causes``       ``[{kind, reason, since, until, services}]``.
``services``     ``[{namespace, name, critical, ready, ready_endpoints, total_endpoints,
                 min_ready, reason, since, stale}]``.
``windows``      ``[{start, end, reason, open}]``: not yet ended at render time.
``transitions``  :class:`proxy.history.Transition`, newest first.
``bypass``       :class:`proxy.metrics.BypassCounts`.
``synced``, ``draining``, ``generation``, ``errors`` (the sources' problems), ``now``.
``admin_enabled``   whether the admin API has a token (the token itself is never passed).
``admin_token_env`` the variable that enables it.
``poll_ms``, ``history_size``: for the live script.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from controller.snapshot import (
    Cause,
    CauseKind,
    Maintenance,
    Mode,
    ServiceReason,
    ServiceState,
    Snapshot,
    Window,
)
from controller.store import SnapshotStore, State
from controller.timefmt import as_utc, rfc3339_or_none
from proxy.csp import policy_for
from proxy.history import Transition, TransitionHistory, summarize
from proxy.metrics import BypassCounts
from proxy.settings import ManagementSettings, PageSettings, env_name
from proxy.templatecache import CompiledTemplates

log = logging.getLogger(__name__)

TEMPLATE = "dashboard.html"
WINDOW_REASON = "Scheduled maintenance window"
"""What a window without a reason is called (as the maintenance verdict calls it)."""
_LAST_RESORT = (
    "<!doctype html><html lang=en><title>mwm dashboard</title><main><h1>mwm dashboard</h1>"
    "<p>The dashboard template failed (see the logs). <a href=/status>/status</a> has the "
    "state.</p></main></html>\n"
)


@dataclass(frozen=True, slots=True)
class DashboardPage:
    body: bytes
    headers: tuple[tuple[str, str], ...]


class Dashboard:
    """The dashboard of one process: its template renderer and its transition history."""

    def __init__(
        self,
        management: ManagementSettings,
        page: PageSettings,
        store: SnapshotStore,
        *,
        builtin_dir: Path | None = None,
    ) -> None:
        self._management = management
        self._clock = store.clock
        self._templates = DashboardTemplates(page.template_dir, builtin_dir=builtin_dir)
        self.history = TransitionHistory(management.history_size, initial=store.current)
        store.add_listener(self.history.record)

    def check(self) -> list[str]:
        """Render the configured template with a sample state; every problem found."""
        return self._templates.check(sample_context(self._management))

    def page(self, state: State, *, draining: bool, bypass: BypassCounts) -> DashboardPage:
        context = dashboard_context(
            state,
            self._management,
            now=self._clock(),
            draining=draining,
            bypass=bypass,
            transitions=self.history.entries(),
        )
        body = self._templates.render(context)
        headers = (
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy", policy_for(body.decode(), form_action="'self'")),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("X-Frame-Options", "DENY"),
        )
        return DashboardPage(body=body, headers=headers)


def check_template(management: ManagementSettings, page: PageSettings) -> list[str]:
    """Every problem of the configured ``dashboard.html`` (for ``mwm check-config``)."""
    return DashboardTemplates(page.template_dir).check(sample_context(management))


def dashboard_context(
    state: State,
    management: ManagementSettings,
    *,
    now: datetime,
    draining: bool,
    bypass: BypassCounts,
    transitions: list[Transition],
) -> dict[str, Any]:
    """The template context (documented above) for ``state`` at ``now``."""
    now = as_utc(now)
    maintenance = state.maintenance
    return {
        "state": {
            "active": maintenance.active,
            "reason": maintenance.reason,
            "since": maintenance.since if maintenance.active else None,
            "until": maintenance.until,
            "summary": summarize(maintenance),
        },
        "causes": [_cause(c) for c in maintenance.causes],
        "services": [_service(s) for s in state.snapshot.services],
        "windows": upcoming_windows(state.snapshot.windows, now),
        "transitions": transitions,
        "bypass": bypass,
        "synced": state.snapshot.synced,
        "draining": draining,
        "generation": state.generation,
        "errors": list(state.snapshot.errors),
        "now": now,
        "admin_enabled": management.admin_token is not None,
        "admin_token_env": env_name(("management", "admin_token")),
        "poll_ms": round(management.dashboard_poll_s * 1000),
        "history_size": management.history_size,
    }


def sample_context(management: ManagementSettings) -> dict[str, Any]:
    """A context with every optional value set, as serving would build it."""
    state = _sample_state()
    transitions = [Transition(at=state.changed_at, active=True, summary="Manual: Upgrade")]
    bypass = BypassCounts(by_rule={"token": 3}, cookies_issued=1, all_workers=False)
    return dashboard_context(
        state,
        management,
        now=state.changed_at,
        draining=False,
        bypass=bypass,
        transitions=transitions,
    )


def upcoming_windows(windows: tuple[Window, ...], now: datetime) -> list[dict[str, Any]]:
    """The windows not yet ended at ``now``, in the order they open."""
    ahead = sorted((w for w in windows if w.end > now), key=lambda w: (w.start, w.end))
    return [
        {
            "start": w.start,
            "end": w.end,
            "reason": w.reason or WINDOW_REASON,
            "open": w.open_at(now),
        }
        for w in ahead
    ]


def _cause(cause: Cause) -> dict[str, Any]:
    return {
        "kind": str(cause.kind),
        "reason": cause.reason,
        "since": cause.since,
        "until": cause.until,
        "services": list(cause.services),
        "read_only": cause.mode is Mode.READ_ONLY,
        "routes": [route_text(r.path_prefix, sorted(r.methods)) for r in cause.routes],
    }


def route_text(prefix: str, methods: list[str]) -> str:
    """``/checkout (POST)``: a route as the dashboard shows it (its script writes the same)."""
    return f"{prefix} ({', '.join(methods)})" if methods else prefix


def _service(service: ServiceState) -> dict[str, Any]:
    return {
        "namespace": service.namespace,
        "name": service.name,
        "critical": service.critical,
        "ready": service.ready,
        "ready_endpoints": service.ready_endpoints,
        "total_endpoints": service.total_endpoints,
        "min_ready": service.min_ready,
        "reason": str(service.reason),
        "since": service.last_transition,
        "stale": service.stale,
    }


class DashboardTemplates:
    """``dashboard.html`` from the override directory if it renders, else the built-in."""

    def __init__(self, override_dir: Path | None, *, builtin_dir: Path | None = None) -> None:
        # Imported here: proxy.pages owns the built-in directory's location.
        from proxy.pages import builtin_template_dir

        builtin = (builtin_dir or builtin_template_dir()).resolve()
        self._builtin_env = _environment(jinja2.FileSystemLoader(builtin))
        self._user_env: jinja2.Environment | None = None
        self._override_dir = override_dir
        if override_dir is not None:
            self._user_env = _environment(
                jinja2.ChoiceLoader(
                    [jinja2.FileSystemLoader(override_dir), jinja2.FileSystemLoader(builtin)]
                )
            )
        self._reported: set[str] = set()

    def check(self, context: Mapping[str, Any]) -> list[str]:
        problems = []
        for env in (self._user_env, self._builtin_env):
            if env is not None:
                problem = self._try_render(env, context)[1]
                if problem is not None:
                    problems.append(problem)
                break
        self._reported.update(problems)
        return problems

    def render(self, context: Mapping[str, Any]) -> bytes:
        if self._user_env is not None:
            text, problem = self._try_render(self._user_env, context)
            if text is not None:
                return text.encode()
            assert problem is not None
            self._report(f"{problem}; serving the built-in dashboard instead", error=False)
        text, problem = self._try_render(self._builtin_env, context)
        if text is not None:
            return text.encode()
        assert problem is not None
        self._report(f"{problem}; serving a bare page instead", error=True)
        return _LAST_RESORT.encode()

    def _try_render(
        self, env: jinja2.Environment, context: Mapping[str, Any]
    ) -> tuple[str | None, str | None]:
        where = f"override dir {self._override_dir}" if env is self._user_env else "built-in"
        try:
            return env.get_template(TEMPLATE).render(context), None
        except jinja2.TemplateSyntaxError as exc:
            return None, f"template {TEMPLATE} ({where}): line {exc.lineno}: {exc.message}"
        except Exception as exc:  # any failure of an operator's template is survivable
            return None, f"template {TEMPLATE} ({where}): {type(exc).__name__}: {exc}"

    def _report(self, problem: str, *, error: bool) -> None:
        if problem in self._reported:
            return
        self._reported.add(problem)
        (log.error if error else log.warning)("%s", problem)


_COMPILED = CompiledTemplates()
"""The dashboard environments' compiled templates (:mod:`proxy.templatecache`): every
environment :func:`_environment` makes has the same options."""


def _environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=loader,
        bytecode_cache=_COMPILED,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters["iso"] = _iso
    env.filters["utc"] = utc_text
    return env


def _iso(moment: datetime | None) -> str:
    return rfc3339_or_none(as_utc(moment) if moment is not None else None) or ""


def utc_text(moment: datetime | None) -> str:
    """``2026-12-07 08:30:00 UTC``: what the live script writes for the same instant."""
    if moment is None:
        return ""
    return f"{as_utc(moment):%Y-%m-%d %H:%M:%S} UTC"


def _sample_state() -> State:
    """A state with every optional value set, for :meth:`Dashboard.check`."""
    now = datetime.now(UTC).replace(microsecond=0)
    service = ServiceState(
        name="checkout",
        namespace="shop",
        critical=True,
        ready_endpoints=0,
        total_endpoints=2,
        reason=ServiceReason.NO_READY_ENDPOINTS,
        last_transition=now,
        stale=True,
    )
    window = Window(start=now, end=now.replace(year=now.year + 1), reason="Upgrade")
    maintenance = Maintenance(
        active=True,
        causes=(
            Cause(kind=CauseKind.SERVICE_DOWN, reason="1 critical service down", since=now),
            Cause(kind=CauseKind.WINDOW, reason="Upgrade", since=now, until=window.end),
        ),
    )
    snapshot = Snapshot(services=(service,), windows=(window,), errors=("a problem",))
    return State(snapshot=snapshot, maintenance=maintenance, generation=1, changed_at=now)
