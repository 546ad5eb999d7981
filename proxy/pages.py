"""The 503 maintenance page and the error pages (502/504, 408/413/414/431), rendered ahead of time.

A page depends only on the state, the format, the language and which of the verdict's
causes apply to the request (:attr:`proxy.decision.Block.causes`: a route or read-only
maintenance applies to some requests only, and the page names only what applies), so it is
rendered once per state generation, format, language and set of causes and kept (at most
:data:`PAGE_CACHE_SIZE` pages per generation); a blocked request costs a dict lookup.
Pages are plain data (:class:`RenderedPage`); the server turns one into an aiohttp response.

Languages (:mod:`proxy.catalogs`): the HTML and text pages are translated into the language
:func:`proxy.negotiation.negotiate_language` picks from ``Accept-Language``; they say so
in ``Content-Language`` and ``<html lang>``, and every page carries ``Vary: Accept,
Accept-Language``.  The problem+json documents are for programs and are not translated
(English, the operator's title and message as configured; no ``Content-Language``).  The
default title and message are translated; a title or message the operator set is shown
as written, in every language.  Known reason texts (``Scheduled maintenance``, ``A critical
service is unavailable``...) are translated, any other reason is shown as written.

The HTML pages carry a ``Content-Security-Policy`` allowing their inline script and style
by hash (:mod:`proxy.csp`).  With the public status prefix on, the maintenance page holds
the return script (``templates/return.js``): it follows the status stream and reloads the
page, spread over ``PageSettings.return_spread_s``, when maintenance ends.

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
``lang``           the page's language tag (``en``, ``de``).
``title``          ``PageSettings.title`` (translated when it is the default).
``message``        ``PageSettings.message`` (translated when it is the default).
``contact``        ``PageSettings.contact`` or None.
``contact_url``    a link target for ``contact`` (its http(s) URL, or ``mailto:`` for an
                   e-mail address), or None when it is neither.
``reasons``        list of str, one per cause of the maintenance (ours translated).
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
``mode``           ``readOnly`` when every cause on the page stops only writes, else ``full``.
``read_only``      ``mode == "readOnly"``: the page says reads still work.
``routes``         list of the path prefixes the causes on the page stop; empty when they
                   stop the whole site (a route cause names its service in ``services``).
``refresh_s``      ``PageSettings.refresh_s`` or None.
``live``           the return script's settings (``stream``, ``status``: URLs;
                   ``spread``, ``poll``, ``pollMax``: seconds), or None when the public
                   status prefix is off (then the page has no script).

Template context of ``error.{html,json,txt}``: ``status`` (502 or 504 when the upstream
failed; 408, 413, 414 or 431 when the request was refused), ``lang``, ``title`` (the
status phrase: "Bad Gateway", "Request Header Fields Too Large"; problem+json only by
default), ``heading`` (what happened, for people, translated), ``explanation`` (for a
failed upstream a translated sentence, for a refused request its reason, which is written
for people), ``reason`` (for a failed upstream the technical one, "upstream refused the
connection": problem+json and the logs only by default), ``temporary``
(True when a retry may cure it: the 5xx and 408; False for a request that would be
refused again), ``contact``, ``contact_url``.

Every template may call ``_("text")`` / ``gettext`` / ``ngettext`` (Jinja2's i18n
extension, new style: ``_("Error code: %(status)s", status=status)``).
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jinja2
from babel.core import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.support import NullTranslations

from controller.snapshot import (
    OFF,
    Cause,
    CauseKind,
    Maintenance,
    Mode,
    Route,
    describe_down,
    describe_route_down,
)
from controller.store import Clock, State
from controller.timefmt import as_utc
from controller.timefmt import rfc3339_or_none as iso
from proxy.catalogs import SOURCE_LANGUAGE, Catalogs, load_catalogs
from proxy.catalogs import builtin_template_dir as builtin_template_dir
from proxy.csp import policy_for
from proxy.negotiation import PageFormat, negotiate_language
from proxy.settings import PageSettings, env_name
from proxy.templatecache import CompiledTemplates

log = logging.getLogger(__name__)

MAINTENANCE_STATUS = 503
PAGE_CACHE_SIZE = 512
"""Maintenance pages kept per generation: formats x languages x distinct sets of applying
causes (:attr:`proxy.decision.Block.causes`); beyond, a page is rendered per request."""
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
RETURN_SCRIPT = "return.js"
OVERRIDABLE_TEMPLATES = (
    *_MAINTENANCE_TEMPLATES.values(),
    *_ERROR_TEMPLATES.values(),
    "base.html",
    "dashboard.html",  # rendered by proxy.dashboard, not here
    RETURN_SCRIPT,
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
_VARY = "Accept, Accept-Language"
POLL_S = 5
"""The return script's first poll interval when it cannot follow the stream; it doubles
while the status cannot be read, up to :data:`POLL_MAX_S`, with jitter (x0.5-1.5)."""
POLL_MAX_S = 60


def N_(text: str) -> str:  # gettext's conventional name for "mark only"
    """Marks ``text`` for translation where it is defined; it is translated where shown."""
    return text


DEFAULT_TITLE = N_("Down for maintenance")
DEFAULT_MESSAGE = N_("We are performing maintenance and will be back shortly.")
KNOWN_REASONS = (
    N_("Scheduled maintenance"),
    N_("Scheduled maintenance window"),
    N_(describe_down(1)),
    N_(describe_down(1, mode=Mode.READ_ONLY)),
    N_(describe_route_down(Mode.FULL)),
    N_(describe_route_down(Mode.READ_ONLY)),
    N_("Temporarily unavailable while the maintenance state is being read"),
)
"""Reason texts of our own making, translated on the pages; any other reason is shown as
written.  ``describe_down(n)`` for n > 1 is translated with :data:`SERVICES_DOWN` (and
:data:`WRITES_PAUSED` for read-only services)."""
SERVICES_DOWN = (
    N_("%(num)d critical service is unavailable"),
    N_("%(num)d critical services are unavailable"),
)
WRITES_PAUSED = (
    N_("Writes are paused because %(num)d critical service is unavailable"),
    N_("Writes are paused because %(num)d critical services are unavailable"),
)
_SERVICES_DOWN = re.compile(r"^(\d+) critical services are unavailable$")
_WRITES_PAUSED = re.compile(r"^Writes are paused because (\d+) critical services are unavailable$")
ERROR_HEADINGS = {
    502: N_("This site is not answering right now"),
    504: N_("This site is not answering right now"),
    408: N_("The request took too long"),
    413: N_("That was too much to send"),
    414: N_("That address is too long"),
    431: N_("Your browser sent too much data"),
    503: N_("This site is busy right now"),
}
"""The heading people read on an error page, by status (the status phrase stays in
problem+json)."""
UPSTREAM_EXPLANATIONS = {
    502: N_("We could not reach the application behind this page."),
    504: N_("The application behind this page took too long to answer."),
}
"""What people read when the upstream failed: its technical reason ("upstream refused the
connection") is for problem+json and the logs.  A refused request's reason is written for
people ("The request body is larger than the 4 KiB this site accepts.") and is shown."""
OTHER_ERROR = N_("Something went wrong")
TRANSLATED_TEXTS = (
    DEFAULT_TITLE,
    DEFAULT_MESSAGE,
    *KNOWN_REASONS,
    *SERVICES_DOWN,
    *WRITES_PAUSED,
    *ERROR_HEADINGS.values(),
    *UPSTREAM_EXPLANATIONS.values(),
    OTHER_ERROR,
)
"""The texts translated in code (not in the templates); every shipped catalog has them."""
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


class PageRenderer:
    """Renders and caches the pages; one per process, built from :class:`PageSettings`."""

    def __init__(
        self,
        settings: PageSettings,
        *,
        builtin_dir: Path | None = None,
        status_prefix: str | None = None,
    ) -> None:
        """``status_prefix``: ``StatusSettings.prefix``; None leaves the return script out."""
        self._settings = settings
        self._builtin_dir = (builtin_dir or builtin_template_dir()).resolve()
        self._override_dir = (
            settings.template_dir.resolve() if settings.template_dir is not None else None
        )
        self._catalogs: Catalogs = load_catalogs(self._builtin_dir, self._override_dir)
        self.languages: tuple[str, ...] = self._catalogs.languages
        """The languages pages can be rendered in (lower-case tags, English included)."""
        self.default_language = (
            settings.default_language
            if settings.default_language in self.languages
            else SOURCE_LANGUAGE
        )
        self._builtin_loader = jinja2.FileSystemLoader(self._builtin_dir)
        self._user_loader: jinja2.BaseLoader | None = None
        if self._override_dir is not None:
            self._user_loader = jinja2.ChoiceLoader(
                [jinja2.FileSystemLoader(self._override_dir), self._builtin_loader]
            )
        self._envs: dict[tuple[bool, str], jinja2.Environment] = {}
        self._reported: set[str] = set()
        self._pages: dict[tuple[int, PageFormat, str, tuple[int, ...] | None], RenderedPage] = {}
        self._pages_generation = -1
        self._errors: dict[tuple[int, str, PageFormat, str], RenderedPage] = {}
        contact = settings.contact
        self._contact_url = _contact_url(contact) if contact else None
        self._live: dict[str, Any] | None = None
        if status_prefix is not None:
            self._live = {
                "stream": f"{status_prefix}status/stream",
                "status": f"{status_prefix}status",
                "spread": settings.return_spread_s,
                "poll": POLL_S,
                "pollMax": POLL_MAX_S,
            }
        for problem in self._catalogs.problems:
            self._report(problem, "%s; the pages speak the other languages", log.warning)

    def language(self, accept_language: str | None) -> str:
        """The page language for a request's ``Accept-Language`` (cached per value)."""
        return negotiate_language(accept_language, self.languages, self.default_language)

    def _env(self, *, user: bool, lang: str) -> jinja2.Environment:
        """The Jinja environment of the override (``user``) or built-in templates speaking
        ``lang``: one per language, since the i18n extension's functions are its globals."""
        env = self._envs.get((user, lang))
        if env is None:
            loader = self._user_loader if user and self._user_loader else self._builtin_loader
            env = _environment(loader, self._catalogs.get(lang))
            self._envs[(user, lang)] = env
        return env

    def _lang(self, language: str | None, fmt: PageFormat) -> str:
        if fmt is PageFormat.JSON:
            return SOURCE_LANGUAGE  # for programs: never translated
        if language is None or language not in self.languages:
            return self.default_language
        return language

    def check(self) -> list[str]:
        """Render every template with realistic sample contexts; return every problem.

        An empty list means every page will render from the configured templates.  The
        problems returned count as reported: serving pages will not log them again.
        """
        problems: list[str] = list(self._catalogs.problems)
        if self._override_dir is not None and not self._override_dir.is_dir():
            problems.append(
                f"{env_name(('page', 'template_dir'))}: {self._override_dir} is not a directory"
            )
        for lang in self.languages:
            env = self._env(user=self._user_loader is not None, lang=lang)
            for name, context in self._sample_contexts(lang):
                problem = self._try_render(env, name, context)[1]
                if problem is not None and problem not in problems:
                    problems.append(problem)
        self._reported.update(problems)
        return problems

    def maintenance_page(
        self,
        state: State,
        fmt: PageFormat,
        *,
        now: datetime | Clock,
        language: str | None = None,
        causes: tuple[int, ...] | None = None,
    ) -> RenderedPage:
        """The 503 page for ``state`` in ``fmt`` and ``language`` (see :meth:`language`;
        None: the default language), naming only the causes at indexes ``causes`` of the
        verdict (:attr:`proxy.decision.Block.causes`; None: every cause); rendered on the
        first call per generation.  ``now`` may be the clock itself, read only to render
        (the request path then reads no clock for a page already rendered)."""
        lang = self._lang(language, fmt)
        key = (state.generation, fmt, lang, causes)
        page = self._pages.get(key)
        if page is not None:
            return page
        if callable(now):
            now = now()
        maintenance = state.maintenance
        if causes is not None:
            maintenance = maintenance.restricted(causes)
        page = self._render_maintenance(maintenance, fmt, now=now, lang=lang)
        if state.generation > self._pages_generation:
            self._pages.clear()
            self._pages_generation = state.generation
        if state.generation == self._pages_generation and len(self._pages) < PAGE_CACHE_SIZE:
            self._pages[key] = page
        return page  # an older generation (a late reader) is served but not kept

    def error_page(
        self, status: int, reason: str, fmt: PageFormat, language: str | None = None
    ) -> RenderedPage:
        """A 502/504 page when the upstream is unreachable or too slow, or a 408/413/414/431
        page for a refused request."""
        lang = self._lang(language, fmt)
        key = (status, reason, fmt, lang)
        page = self._errors.get(key)
        if page is not None:
            return page
        title = status_phrase(status)
        context = self._error_context(status, reason, lang)
        body = self._render(_ERROR_TEMPLATES[fmt], context, status=status, title=title, lang=lang)
        headers = [
            ("Content-Type", _CONTENT_TYPES[fmt]),
            ("Cache-Control", "no-store"),
            ("Vary", _VARY),
            ("X-Content-Type-Options", "nosniff"),
            ("Server", SERVER),
        ]
        headers.extend(_page_headers(fmt, body, lang))
        page = RenderedPage(status=status, body=body, headers=tuple(headers))
        if len(self._errors) >= ERROR_CACHE_SIZE:
            del self._errors[next(iter(self._errors))]  # oldest first
        self._errors[key] = page
        return page

    def _error_context(self, status: int, reason: str, lang: str) -> dict[str, Any]:
        gettext = self._catalogs.get(lang).gettext
        explanation = UPSTREAM_EXPLANATIONS.get(status)
        return {
            "status": status,
            "lang": lang,
            "title": status_phrase(status),
            "heading": gettext(ERROR_HEADINGS.get(status, OTHER_ERROR)),
            "explanation": gettext(explanation) if explanation is not None else reason,
            "reason": reason,
            "temporary": status >= 500 or status == 408,
            "contact": self._settings.contact,
            "contact_url": self._contact_url,
        }

    def _render_maintenance(
        self, maintenance: Maintenance, fmt: PageFormat, *, now: datetime, lang: str
    ) -> RenderedPage:
        settings = self._settings
        until = as_utc(maintenance.until) if maintenance.until is not None else None
        # The HTTP-date form is exact because the page is re-rendered when the state
        # changes; an end already past (a clock edge) falls back to the configured delay.
        retry_after, dated = str(settings.retry_after_s), False
        if until is not None and _ceil_to_second(until) > as_utc(now):
            retry_after, dated = format_datetime(_ceil_to_second(until), usegmt=True), True
        context = self._maintenance_context(maintenance, until=until, dated=dated, lang=lang)
        body = self._render(
            _MAINTENANCE_TEMPLATES[fmt],
            context,
            status=MAINTENANCE_STATUS,
            title=settings.title,
            lang=lang,
        )
        headers = [
            ("Content-Type", _CONTENT_TYPES[fmt]),
            ("Cache-Control", "no-store"),
            ("Vary", _VARY),
            ("X-Content-Type-Options", "nosniff"),  # a reason is text, never HTML
            ("Retry-After", retry_after),
            ("Server", SERVER),
        ]
        headers.extend(_page_headers(fmt, body, lang))
        if fmt is PageFormat.HTML and settings.refresh_s is not None:
            headers.append(("Refresh", str(settings.refresh_s)))
        return RenderedPage(status=MAINTENANCE_STATUS, body=body, headers=tuple(headers))

    def _maintenance_context(
        self,
        maintenance: Maintenance,
        *,
        until: datetime | None,
        dated: bool,
        lang: str,
        dates_lang: str | None = None,
    ) -> dict[str, Any]:
        """The template context of a maintenance page in ``lang``; its end for humans
        (``until_text``) in ``dates_lang``'s words when given."""
        settings = self._settings
        since = as_utc(maintenance.since) if maintenance.since is not None else None
        translations = self._catalogs.get(lang)
        gettext = translations.gettext
        reasons = [_reason(cause.reason, translations) for cause in maintenance.causes]
        causes = maintenance.causes
        read_only = bool(causes) and all(c.mode is Mode.READ_ONLY for c in causes)
        return {
            "status": MAINTENANCE_STATUS,
            "lang": lang,
            "title": gettext(settings.title) if settings.title == DEFAULT_TITLE else settings.title,
            "message": gettext(settings.message)
            if settings.message == DEFAULT_MESSAGE
            else settings.message,
            "contact": settings.contact,
            "contact_url": self._contact_url,
            "reasons": reasons,
            "reason": "; ".join(reasons),
            "until": until,
            "until_iso": iso(until),
            "until_http": format_datetime(_ceil_to_second(until), usegmt=True)
            if until is not None
            else None,
            "until_text": _human(until, dates_lang or lang) if until is not None else None,
            "since_iso": iso(since),
            "retry_after_s": None if dated else settings.retry_after_s,
            "services": list(maintenance.affected_services) if settings.show_services else [],
            "show_services": settings.show_services,
            "mode": str(Mode.READ_ONLY if read_only else Mode.FULL),
            "read_only": read_only,
            "routes": _route_prefixes(maintenance.affected_routes),
            "refresh_s": settings.refresh_s,
            "live": self._live,
        }

    def _render(
        self, name: str, context: Mapping[str, Any], *, status: int, title: str, lang: str
    ) -> bytes:
        """Render ``name``: the override if it works, else the built-in, else a bare line."""
        if self._user_loader is not None:
            text, problem = self._try_render(self._env(user=True, lang=lang), name, context)
            if text is not None:
                return text.encode()
            assert problem is not None
            self._report(problem, "%s; serving the built-in template instead", log.warning)
        text, problem = self._try_render(self._env(user=False, lang=lang), name, context)
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

    def _sample_contexts(self, lang: str) -> list[tuple[str, dict[str, Any]]]:
        """Contexts as serving would build them, covering the optional values both ways.

        A sample's end is written in the source language's words: to a template it is a
        string like any other, and writing it in another language's would load Babel's
        calendar data for that language (about 2.5 MiB and 40-110 ms each, kept for the
        process's life) at every start-up, where serving loads it only for a page with a
        window's end in that language."""
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
        # A read-only maintenance of one route: the page says reads still work.
        scoped = Maintenance(
            active=True,
            causes=(
                Cause(
                    kind=CauseKind.SERVICE_DOWN,
                    reason=describe_route_down(Mode.READ_ONLY),
                    since=now,
                    services=("payments",),
                    mode=Mode.READ_ONLY,
                    routes=(Route("/checkout", frozenset({"POST"})),),
                ),
            ),
        )
        samples: list[tuple[str, dict[str, Any]]] = []
        for name in _MAINTENANCE_TEMPLATES.values():
            for maintenance in (outage, window, scoped, OFF):  # OFF: no causes, no end, no start
                until = maintenance.until
                context = self._maintenance_context(
                    maintenance,
                    until=until,
                    dated=until is not None,
                    lang=lang,
                    dates_lang=SOURCE_LANGUAGE,
                )
                samples.append((name, context))
        for name in _ERROR_TEMPLATES.values():
            # One reason for all, so a problem that quotes the output is reported once.
            for status in (502, 504, 431):  # 431: ``temporary`` false
                reason = "The upstream application did not answer in time."
                samples.append((name, self._error_context(status, reason, lang)))
        return samples


_COMPILED = CompiledTemplates()
"""The page environments' compiled templates (:mod:`proxy.templatecache`): every environment
:func:`_environment` makes has the same options, whatever its renderer, language or loader."""


def _environment(loader: jinja2.BaseLoader, translations: NullTranslations) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=loader,
        bytecode_cache=_COMPILED,
        extensions=["jinja2.ext.i18n"],
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
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    return env


def _page_headers(fmt: PageFormat, body: bytes, lang: str) -> list[tuple[str, str]]:
    """``Content-Language`` for the pages people read, and the HTML page's CSP."""
    if fmt is PageFormat.JSON:
        return []
    headers = [("Content-Language", lang)]
    if fmt is PageFormat.HTML:
        headers.append(("Content-Security-Policy", policy_for(body.decode("utf-8"))))
    return headers


def _route_prefixes(routes: Iterable[Route]) -> list[str]:
    """The path prefixes of ``routes``, once each, in order."""
    return list(dict.fromkeys(route.path_prefix for route in routes))


def _reason(text: str, translations: NullTranslations) -> str:
    """A reason of our own making (:data:`KNOWN_REASONS`) in the page's language."""
    for pattern, texts in ((_SERVICES_DOWN, SERVICES_DOWN), (_WRITES_PAUSED, WRITES_PAUSED)):
        down = pattern.match(text)
        if down is not None:
            count = int(down.group(1))
            return translations.ngettext(*texts, count) % {"num": count}
    return translations.gettext(text) if text in KNOWN_REASONS else text


def _dumps_json(value: Any, **kwargs: Any) -> str:
    """``|tojson`` that names an undefined variable and writes datetimes as RFC 3339."""
    return json.dumps(value, default=_json_default, **kwargs)


def _json_default(value: object) -> object:
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the variable
    if isinstance(value, datetime):
        return iso(as_utc(value))
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


def _ceil_to_second(moment: datetime) -> datetime:
    """HTTP-dates have whole seconds: round up so clients never retry before the end."""
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def _human(moment: datetime, lang: str = SOURCE_LANGUAGE) -> str:
    """Unambiguous: ``Friday 31 January 2025, 22:00 UTC``; in another language the date as
    Babel writes it in full (``Freitag, 31. Januar 2025, 22:00 UTC``) when Babel knows it."""
    minute = moment.replace(second=0, microsecond=0)
    if minute != moment:
        minute += timedelta(minutes=1)  # round up: never promise an earlier end
    if lang != SOURCE_LANGUAGE:
        try:
            day = format_date(minute.date(), "full", locale=Locale.parse(lang, sep="-"))
        except (ValueError, UnknownLocaleError):
            pass
        else:
            return f"{day}, {minute:%H:%M} UTC"
    return (
        f"{_DAYS[minute.weekday()]} {minute.day} {_MONTHS[minute.month - 1]} {minute.year}, "
        f"{minute:%H:%M} UTC"
    )
