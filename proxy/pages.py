"""The 503 maintenance page and the error pages (502/504, 408/413/414/431), rendered ahead of time.

A page depends only on the state and the format, so it is rendered once per state
generation and format and kept; a blocked request costs a dict lookup.  Pages are plain
data (:class:`RenderedPage`); the server turns one into an aiohttp response.

Templates are Jinja2 with autoescaping for HTML and ``StrictUndefined``.  The built-in
ones live in ``templates/`` (see :func:`builtin_template_dir`).  Operators may override
any subset of them with ``PageSettings.template_dir`` (same file names, including
``base.html``).  An override can be wrong in many ways (a syntax error, an unknown
variable, an expression that raises, a missing include, JSON that does not parse); none
of them may turn the maintenance page into a 500, so a failing override falls back to the
built-in template for that page, and the problem is logged once, not per request.
:meth:`PageRenderer.check` reports every such problem at start-up, all at once.

Template context of ``maintenance.{html,json,txt}``:

``status``         503.
``title``          ``PageSettings.title``.
``message``        ``PageSettings.message``.
``contact``        ``PageSettings.contact`` or None.
``contact_url``    a link target for ``contact`` (its http(s) URL, or ``mailto:`` for an
                   e-mail address), or None when it is neither.
``reasons``        list of str, one per cause of the maintenance.
``reason``         the reasons joined with ``"; "`` ("" when there are none).
``until``          aware UTC datetime when maintenance is expected to end, or None.
``until_iso``      ``until`` as RFC 3339 (``2025-01-31T22:00:00Z``), or None.
``until_http``     ``until`` as an HTTP-date (IMF-fixdate), or None.
``until_text``     ``until`` for humans (``Friday 31 January 2025, 22:00 UTC``), or None.
``since_iso``      RFC 3339 start of the maintenance, or None when unknown.
``retry_after_s``  the ``Retry-After`` delay in seconds when the header carries seconds
                   (the end is unknown or already past), None when it carries ``until``.
``services``       list of affected service names; empty when ``show_services`` is off.
``show_services``  ``PageSettings.show_services``.
``refresh_s``      ``PageSettings.refresh_s`` or None.

Template context of ``error.{html,json,txt}``: ``status`` (502 or 504 when the upstream
failed; 408, 413, 414 or 431 when the request was refused), ``title`` (the status
phrase: "Bad Gateway", "Request Header Fields Too Large"), ``reason``, ``temporary``
(True when a retry may cure it: the 5xx and 408; False for a request that would be
refused again), ``contact``, ``contact_url``.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jinja2

from controller.snapshot import OFF, Cause, CauseKind, Maintenance, describe_down
from controller.store import State
from controller.timefmt import rfc3339_or_none as iso
from proxy.negotiation import PageFormat
from proxy.settings import PageSettings, env_name

log = logging.getLogger(__name__)

MAINTENANCE_STATUS = 503
ERROR_CACHE_SIZE = 64
"""Distinct (status, reason, format) error pages kept; reasons come from a short fixed list
in the forwarder, the bound only guards against a reason that embeds varying detail."""

_MAINTENANCE_TEMPLATES = {
    PageFormat.HTML: "maintenance.html",
    PageFormat.JSON: "maintenance.json",
    PageFormat.TEXT: "maintenance.txt",
}
_ERROR_TEMPLATES = {
    PageFormat.HTML: "error.html",
    PageFormat.JSON: "error.json",
    PageFormat.TEXT: "error.txt",
}
OVERRIDABLE_TEMPLATES = (
    *_MAINTENANCE_TEMPLATES.values(),
    *_ERROR_TEMPLATES.values(),
    "base.html",
    "dashboard.html",  # rendered by proxy.dashboard, not here
)
"""The template names an override directory (``PageSettings.template_dir``) may hold: the
built-in ones in ``templates/``.  Any other file there is used only if one of these includes it."""
_CONTENT_TYPES = {
    PageFormat.HTML: "text/html; charset=utf-8",
    # RFC 8259: JSON is UTF-8, and the media type defines no charset parameter.
    PageFormat.JSON: "application/problem+json",
    PageFormat.TEXT: "text/plain; charset=utf-8",
}
_LAST_RESORT = "{status} {title}\n"
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True, slots=True)
class RenderedPage:
    """A complete response, ready to be written as is."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    wire_head: bytes = field(init=False, repr=False, compare=False)
    """The HTTP/1.1 status line and header lines (with ``Content-Length``, without ``Date``
    and the closing blank line), serialized once for :mod:`proxy.prebuilt`."""

    def __post_init__(self) -> None:
        head = http_head(
            self.status,
            status_phrase(self.status),
            (*self.headers, ("Content-Length", str(len(self.body)))),
        )
        # Header values are ours (settings, fixed strings, dates): latin-1 like aiohttp's.
        object.__setattr__(self, "wire_head", head.encode("latin-1"))


SERVER = "mwm"
"""Our ``Server`` header: aiohttp's default would announce the Python and aiohttp versions."""


def builtin_template_dir() -> Path:
    """The built-in templates: ``proxy/templates`` in a wheel, ``templates/`` in a checkout."""
    here = Path(__file__).resolve().parent
    installed, checkout = here / "templates", here.parent / "templates"
    if installed.is_dir():
        return installed
    if checkout.is_dir():
        return checkout
    return installed  # missing: check() says so, and pages use the last-resort body


class PageRenderer:
    """Renders and caches the pages; one per process, built from :class:`PageSettings`."""

    def __init__(self, settings: PageSettings, *, builtin_dir: Path | None = None) -> None:
        self._settings = settings
        self._builtin_dir = (builtin_dir or builtin_template_dir()).resolve()
        self._override_dir = (
            settings.template_dir.resolve() if settings.template_dir is not None else None
        )
        self._builtin_env = _environment(jinja2.FileSystemLoader(self._builtin_dir))
        self._user_env: jinja2.Environment | None = None
        if self._override_dir is not None:
            self._user_env = _environment(
                jinja2.ChoiceLoader(
                    [
                        jinja2.FileSystemLoader(self._override_dir),
                        jinja2.FileSystemLoader(self._builtin_dir),
                    ]
                )
            )
        self._reported: set[str] = set()
        self._pages: dict[tuple[int, PageFormat], RenderedPage] = {}
        self._pages_generation = -1
        self._errors: dict[tuple[int, str, PageFormat], RenderedPage] = {}
        contact = settings.contact
        self._contact_url = _contact_url(contact) if contact else None

    def check(self) -> list[str]:
        """Render every template with realistic sample contexts; return every problem.

        An empty list means every page will render from the configured templates.  The
        problems returned count as reported: serving pages will not log them again.
        """
        problems: list[str] = []
        if self._override_dir is not None and not self._override_dir.is_dir():
            problems.append(
                f"{env_name(('page', 'template_dir'))}: {self._override_dir} is not a directory"
            )
        env = self._user_env or self._builtin_env
        for name, context in self._sample_contexts():
            problem = self._try_render(env, name, context)[1]
            if problem is not None and problem not in problems:
                problems.append(problem)
        self._reported.update(problems)
        return problems

    def maintenance_page(self, state: State, fmt: PageFormat, *, now: datetime) -> RenderedPage:
        """The 503 page for ``state`` in ``fmt``; rendered on the first call per generation."""
        key = (state.generation, fmt)
        page = self._pages.get(key)
        if page is not None:
            return page
        page = self._render_maintenance(state.maintenance, fmt, now=now)
        if state.generation > self._pages_generation:
            self._pages.clear()
            self._pages_generation = state.generation
        if state.generation == self._pages_generation:
            self._pages[key] = page
        return page  # an older generation (a late reader) is served but not kept

    def error_page(self, status: int, reason: str, fmt: PageFormat) -> RenderedPage:
        """A 502/504 page when the upstream is unreachable or too slow, or a 408/413/414/431
        page for a refused request."""
        key = (status, reason, fmt)
        page = self._errors.get(key)
        if page is not None:
            return page
        title = status_phrase(status)
        context = self._error_context(status, reason)
        body = self._render(_ERROR_TEMPLATES[fmt], context, status=status, title=title)
        headers = (
            ("Content-Type", _CONTENT_TYPES[fmt]),
            ("Cache-Control", "no-store"),
            ("Vary", "Accept"),
            ("X-Content-Type-Options", "nosniff"),
            ("Server", SERVER),
        )
        page = RenderedPage(status=status, body=body, headers=headers)
        if len(self._errors) >= ERROR_CACHE_SIZE:
            del self._errors[next(iter(self._errors))]  # oldest first
        self._errors[key] = page
        return page

    def _error_context(self, status: int, reason: str) -> dict[str, Any]:
        return {
            "status": status,
            "title": status_phrase(status),
            "reason": reason,
            "temporary": status >= 500 or status == 408,
            "contact": self._settings.contact,
            "contact_url": self._contact_url,
        }

    def _render_maintenance(
        self, maintenance: Maintenance, fmt: PageFormat, *, now: datetime
    ) -> RenderedPage:
        settings = self._settings
        until = _utc(maintenance.until) if maintenance.until is not None else None
        # The HTTP-date form is exact because the page is re-rendered when the state
        # changes; an end already past (a clock edge) falls back to the configured delay.
        retry_after, dated = str(settings.retry_after_s), False
        if until is not None and _ceil_to_second(until) > _utc(now):
            retry_after, dated = format_datetime(_ceil_to_second(until), usegmt=True), True
        context = self._maintenance_context(maintenance, until=until, dated=dated)
        body = self._render(
            _MAINTENANCE_TEMPLATES[fmt], context, status=MAINTENANCE_STATUS, title=settings.title
        )
        headers = [
            ("Content-Type", _CONTENT_TYPES[fmt]),
            ("Cache-Control", "no-store"),
            ("Vary", "Accept"),
            ("X-Content-Type-Options", "nosniff"),  # a reason is text, never HTML
            ("Retry-After", retry_after),
            ("Server", SERVER),
        ]
        if fmt is PageFormat.HTML and settings.refresh_s is not None:
            headers.append(("Refresh", str(settings.refresh_s)))
        return RenderedPage(status=MAINTENANCE_STATUS, body=body, headers=tuple(headers))

    def _maintenance_context(
        self, maintenance: Maintenance, *, until: datetime | None, dated: bool
    ) -> dict[str, Any]:
        settings = self._settings
        since = _utc(maintenance.since) if maintenance.since is not None else None
        return {
            "status": MAINTENANCE_STATUS,
            "title": settings.title,
            "message": settings.message,
            "contact": settings.contact,
            "contact_url": self._contact_url,
            "reasons": [cause.reason for cause in maintenance.causes],
            "reason": maintenance.reason or "",
            "until": until,
            "until_iso": iso(until),
            "until_http": format_datetime(_ceil_to_second(until), usegmt=True)
            if until is not None
            else None,
            "until_text": _human(until) if until is not None else None,
            "since_iso": iso(since),
            "retry_after_s": None if dated else settings.retry_after_s,
            "services": list(maintenance.affected_services) if settings.show_services else [],
            "show_services": settings.show_services,
            "refresh_s": settings.refresh_s,
        }

    def _render(self, name: str, context: Mapping[str, Any], *, status: int, title: str) -> bytes:
        """Render ``name``: the override if it works, else the built-in, else a bare line."""
        if self._user_env is not None:
            text, problem = self._try_render(self._user_env, name, context)
            if text is not None:
                return text.encode()
            assert problem is not None
            self._report(problem, "%s; serving the built-in template instead", log.warning)
        text, problem = self._try_render(self._builtin_env, name, context)
        if text is not None:
            return text.encode()
        assert problem is not None
        self._report(problem, "%s; serving a bare status line instead", log.error)
        return _LAST_RESORT.format(status=status, title=title).encode()

    def _try_render(
        self, env: jinja2.Environment, name: str, context: Mapping[str, Any]
    ) -> tuple[str | None, str | None]:
        """``(text, None)`` on success, ``(None, problem)`` on any failure."""
        try:
            text = env.get_template(name).render(context)
            if name.endswith(".json"):
                json.loads(text)
        except json.JSONDecodeError as exc:
            label = self._label(env.get_template(name).filename or name)
            return None, f"template {label}: output is not valid JSON: {exc}"
        except Exception as exc:  # any failure of an operator's template is survivable
            return None, self._describe(name, exc)
        return text, None

    def _describe(self, name: str, exc: Exception) -> str:
        """``template maintenance.html (override dir /x): line 3: unexpected '}'``."""
        if isinstance(exc, jinja2.TemplateSyntaxError):
            where: tuple[str, int | None] | None = None
            if exc.filename is not None:
                where = (exc.filename, exc.lineno)
            message = exc.message or str(exc)
        else:
            where = self._innermost_template_frame(exc)
            if isinstance(exc, jinja2.TemplateNotFound):
                if where is None:  # the page's own template, missing everywhere
                    dirs = (self._override_dir, self._builtin_dir)
                    searched = " or ".join(str(d) for d in dirs if d is not None)
                    return f"template {name}: not found in {searched}"
                message = f"template not found: {exc.name}"
            elif isinstance(exc, jinja2.TemplateError):
                message = exc.message or type(exc).__name__
            else:
                message = f"{type(exc).__name__}: {exc}"
        if where is None:
            return f"template {name}: {message}"
        filename, line = where
        located = f"line {line}: " if line is not None else ""
        return f"template {self._label(filename)}: {located}{message}"

    def _innermost_template_frame(self, exc: BaseException) -> tuple[str, int] | None:
        """Jinja rewrites tracebacks so template code appears as frames of the file."""
        found = None
        for frame, line in traceback.walk_tb(exc.__traceback__):
            filename = frame.f_code.co_filename
            if self._is_template_file(filename):
                found = (filename, line)
        return found

    def _is_template_file(self, filename: str) -> bool:
        path = Path(filename)
        return any(
            base is not None and path.is_relative_to(base)
            for base in (self._override_dir, self._builtin_dir)
        )

    def _label(self, filename: str) -> str:
        """``maintenance.html (override dir /x)`` or ``base.html (built-in)``."""
        path = Path(filename)
        if self._override_dir is not None and path.is_relative_to(self._override_dir):
            return f"{path.relative_to(self._override_dir)} (override dir {self._override_dir})"
        if path.is_relative_to(self._builtin_dir):
            return f"{path.relative_to(self._builtin_dir)} (built-in)"
        return filename

    def _report(self, problem: str, template: str, emit: Callable[..., None]) -> None:
        if problem in self._reported:
            return
        self._reported.add(problem)
        emit(template, problem)

    def _sample_contexts(self) -> list[tuple[str, dict[str, Any]]]:
        """Contexts as serving would build them, covering the optional values both ways."""
        now = datetime.now(UTC).replace(microsecond=0)
        # An outage has services but no end; a window has an end but no services.
        outage = Maintenance(
            active=True,
            causes=(
                Cause(
                    kind=CauseKind.SERVICE_DOWN,
                    reason=describe_down(1),
                    since=now,
                    services=("checkout",),
                ),
                Cause(kind=CauseKind.MANUAL, reason="Scheduled maintenance"),
            ),
        )
        window = Maintenance(
            active=True,
            causes=(
                Cause(
                    kind=CauseKind.WINDOW,
                    reason="Database upgrade",
                    since=now,
                    until=now + timedelta(hours=1),
                ),
            ),
        )
        samples: list[tuple[str, dict[str, Any]]] = []
        for name in _MAINTENANCE_TEMPLATES.values():
            for maintenance in (outage, window, OFF):  # OFF: no causes, no end, no start
                until = maintenance.until
                context = self._maintenance_context(
                    maintenance, until=until, dated=until is not None
                )
                samples.append((name, context))
        for name in _ERROR_TEMPLATES.values():
            # One reason for all, so a problem that quotes the output is reported once.
            for status in (502, 504, 431):  # 431: ``temporary`` false
                reason = "The upstream application did not answer in time."
                samples.append((name, self._error_context(status, reason)))
        return samples


def _environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml"), default_for_string=True, default=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Templates are read once; pages are rendered per state change, not per request.
        auto_reload=False,
    )
    env.policies["json.dumps_function"] = _dumps_json
    return env


def _dumps_json(value: Any, **kwargs: Any) -> str:
    """``|tojson`` that names an undefined variable and writes datetimes as RFC 3339."""
    return json.dumps(value, default=_json_default, **kwargs)


def _json_default(value: object) -> object:
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the variable
    if isinstance(value, datetime):
        return iso(_utc(value))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def http_head(status: int, reason: str, headers: Iterable[tuple[str, str]]) -> str:
    """An HTTP/1.1 status line and header lines, each ending in CRLF (no blank line)."""
    lines = [f"HTTP/1.1 {status} {reason}\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers)
    return "".join(lines)


_RFC9110_PHRASES = {413: "Content Too Large", 414: "URI Too Long"}
"""RFC 9110's names, which Python's ``HTTPStatus`` has only from 3.13 on."""


def status_phrase(status: int) -> str:
    if status in _RFC9110_PHRASES:
        return _RFC9110_PHRASES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _contact_url(contact: str) -> str | None:
    """Only http(s) URLs and plain e-mail addresses become links (never ``javascript:``)."""
    text = contact.strip()
    if text.lower().startswith(("https://", "http://")) and not any(c.isspace() for c in text):
        return text
    local, at, domain = text.partition("@")
    if at and local and "." in domain and not any(c.isspace() or c in ":/?" for c in text):
        return f"mailto:{text}"
    return None


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)  # the sources produce UTC; be lenient with naive
    return moment.astimezone(UTC)


def _ceil_to_second(moment: datetime) -> datetime:
    """HTTP-dates have whole seconds: round up so clients never retry before the end."""
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def _human(moment: datetime) -> str:
    """Locale-independent, unambiguous: ``Friday 31 January 2025, 22:00 UTC``."""
    minute = moment.replace(second=0, microsecond=0)
    if minute != moment:
        minute += timedelta(minutes=1)  # round up: never promise an earlier end
    return (
        f"{_DAYS[minute.weekday()]} {minute.day} {_MONTHS[minute.month - 1]} {minute.year}, "
        f"{minute:%H:%M} UTC"
    )
