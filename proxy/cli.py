"""The ``mwm`` command line.

``mwm run`` serves; ``mwm check-config`` reports every configuration problem at once (and
warnings, such as an override template no page uses, which do not fail it);
``mwm status``, ``mwm on`` and ``mwm off`` talk to a running proxy's management API.
Configuration errors are printed as ``VARIABLE: problem`` lines with exit status 2,
never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import http.client
import json
import math
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import jinja2
from jinja2 import meta

from controller.localspec import LocalConfigError, parse_local_file
from controller.settings import SourceKind
from controller.timefmt import EXPECTED as RFC3339_EXPECTED
from controller.timefmt import TimeFormatError, parse_rfc3339, rfc3339, rfc3339_exact
from proxy.catalogs import LOCALE_DIR, catalog_files
from proxy.dashboard import check_template as check_dashboard_template
from proxy.filelimit import raise_open_file_limit
from proxy.logs import configure_logging
from proxy.pages import OVERRIDABLE_TEMPLATES, PageRenderer
from proxy.settings import (
    Settings,
    SettingsError,
    env_name,
    load_settings,
    weak_secret_warnings,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:8081"


def collect_problems(environ: dict[str, str]) -> tuple[Settings | None, list[str]]:
    """Load settings and check everything they point at; return every problem found."""
    try:
        settings = load_settings(environ)
    except SettingsError as exc:
        return None, exc.problems
    problems: list[str] = []
    if settings.source.kind is not SourceKind.KUBERNETES and settings.source.local.file:
        try:
            parse_local_file(settings.source.local.file)
        except LocalConfigError as exc:
            problems.extend(exc.problems)
    problems.extend(PageRenderer(settings.page, status_prefix=settings.status.prefix).check())
    problems.extend(check_dashboard_template(settings.management, settings.page))
    return settings, problems


def _run_async(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run on uvloop when it is installed (the ``speed`` extra), else asyncio's loop."""
    loop_factory = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())


def _workers_tmp_problem(workers: int) -> str | None:
    """Why ``workers`` processes cannot start, or None: they share files (the admin API's
    switch, metrics) in a directory the parent creates in the temporary directory
    (``proxy.workers``), which a read-only root filesystem without a tmpfs on /tmp lacks."""
    import tempfile

    try:
        tempfile.gettempdir()  # tries /tmp, /var/tmp, /usr/tmp, the cwd (or $TMPDIR) for writing
    except OSError:
        return (
            f"{env_name(('listen', 'workers'))}={workers} needs a writable temporary directory"
            " (/tmp, or $TMPDIR) for the files the workers share: mount one (docker run --tmpfs"
            " /tmp; in Kubernetes an emptyDir on /tmp), or run a single worker"
        )
    return None


def cmd_run(args: argparse.Namespace) -> int:
    settings, problems = collect_problems(dict(os.environ))
    if settings is None or any(not p.startswith("template ") for p in problems):
        _print_problems(problems)
        return EXIT_CONFIG
    configure_logging(settings.log)
    raise_open_file_limit()  # before the workers start: they inherit it
    from proxy.aiohttp_compat import check_aiohttp
    from proxy.runtime import Runtime, StartupError
    from proxy.workers import run_workers, switch_dir, worker_index

    check_aiohttp()  # one line on stderr, status 1, when an aiohttp internal is missing

    index = worker_index(os.environ)
    if settings.listen.workers > 1 and index is None:
        problem = _workers_tmp_problem(settings.listen.workers)
        if problem:
            print(f"mwm: {problem}", file=sys.stderr)
            return EXIT_FAILED
        return run_workers(settings.listen.workers, environ=os.environ)
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))

    async def main() -> None:
        runtime = Runtime(
            settings,
            in_cluster=in_cluster,
            worker_index=index,
            switch_dir=switch_dir(os.environ),
        )
        await runtime.run(handle_signals=True)

    try:
        _run_async(main)
    except (StartupError, LocalConfigError) as exc:
        print(f"mwm: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def template_overrides(template_dir: Path | None) -> tuple[list[str], list[str]]:
    """``(overridden, warnings)``: the templates ``template_dir`` overrides, and warnings
    about files in it that no page uses (a misspelt name, say) or about an empty directory.

    Hidden entries are skipped (a Kubernetes ConfigMap volume adds ``..data``), and so is
    ``locale/`` (message catalogs, see :mod:`proxy.catalogs`).  A file any override includes,
    extends or imports is in use, whatever its name.
    """
    if template_dir is None or not template_dir.is_dir():
        return [], []  # unset, or PageRenderer.check() reports it as an error
    variable = env_name(("page", "template_dir"))
    files = {f for f in _template_files(template_dir) if not f.startswith(f"{LOCALE_DIR}/")}
    if not files and catalog_files(template_dir):
        return [], []  # only catalogs: texts, no templates
    if not files:
        return [], [f"{variable}: {template_dir} is empty, so every page is the built-in one"]
    overridden = [name for name in OVERRIDABLE_TEMPLATES if name in files]
    used = _templates_in_use(template_dir, overridden, files)
    if used is None:  # a name computed at render time: any file may be in use
        return overridden, []
    warnings = []
    for name in sorted(files - used):
        close = difflib.get_close_matches(name, OVERRIDABLE_TEMPLATES, n=1, cutoff=0.6)
        hint = (
            f"did you mean {close[0]}?" if close else "mwm uses " + ", ".join(OVERRIDABLE_TEMPLATES)
        )
        warnings.append(f"{variable}: {name} is not a template mwm uses, so it is ignored ({hint})")
    return overridden, warnings


def _template_files(directory: Path) -> set[str]:
    """Every file under ``directory`` as a template name (``partials/x.html``), hidden ones not."""
    found: set[str] = set()
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(root).relative_to(directory)
        found.update((base / f).as_posix() for f in files if not f.startswith("."))
    return found


def _templates_in_use(directory: Path, roots: list[str], files: set[str]) -> set[str] | None:
    """``roots`` and every file of ``files`` they reach; None if a reference is dynamic."""
    env = jinja2.Environment(autoescape=True, extensions=["jinja2.ext.i18n"])
    used, pending = set(roots), list(roots)
    while pending:
        name = pending.pop()
        try:
            ast = env.parse((directory / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, jinja2.TemplateSyntaxError):
            continue  # PageRenderer.check() reports it
        for reference in meta.find_referenced_templates(ast):
            if reference is None:
                return None
            if reference in files and reference not in used:
                used.add(reference)
                pending.append(reference)
    return used


def cmd_check_config(args: argparse.Namespace) -> int:
    """Every problem (exit 2) and every warning (not fatal) at once, then a summary."""
    environ = dict(os.environ)
    settings, problems = collect_problems(environ)
    if settings is not None:
        overridden, warnings = template_overrides(settings.page.template_dir)
        warnings.extend(weak_secret_warnings(settings))
    else:  # other settings are wrong: the template directory can still be looked at
        raw_dir = environ.get(env_name(("page", "template_dir")))
        overridden, warnings = template_overrides(Path(raw_dir) if raw_dir else None)
    if problems:
        _print_problems(problems)
        _print_warnings(warnings)
        return EXIT_CONFIG
    assert settings is not None
    print("configuration OK" + (f", {_count(len(warnings), 'warning')}" if warnings else ""))
    print(f"  upstream:   {settings.upstream.url_for_display()}")
    print(f"  public:     {settings.listen.public_host}:{settings.listen.public_port}")
    print(f"  management: {settings.listen.management_host}:{settings.listen.management_port}")
    print(f"  state file: {settings.source.local.file or '(none)'}")
    template_dir = settings.page.template_dir
    if template_dir is None:
        print("  templates:  built-in")
    elif len(overridden) == len(OVERRIDABLE_TEMPLATES):
        print(f"  templates:  all from {template_dir}")
    elif overridden:
        print(f"  templates:  {', '.join(overridden)} from {template_dir}, the others built-in")
    else:
        print(f"  templates:  built-in (nothing in {template_dir} overrides them)")
    sys.stdout.flush()  # the summary before the warnings, also when both go to a terminal
    _print_warnings(warnings)
    return EXIT_OK


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _print_problems(problems: list[str]) -> None:
    print(f"mwm: {len(problems)} configuration problem(s):", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)


def _print_warnings(warnings: list[str]) -> None:
    if warnings:
        print(f"mwm: {_count(len(warnings), 'warning')}:", file=sys.stderr)
    for warning in warnings:
        print(f"  - {warning}", file=sys.stderr)


_DURATION = re.compile(r"([0-9]{1,9})([smhd])", re.ASCII)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_until(text: str, *, now: datetime) -> datetime:
    """``--until``: a duration from ``now``, a whole number of seconds, minutes, hours or
    days (``90s``, ``30m``, ``2h``, ``1d``), or a strict RFC 3339 time
    (``2026-12-01T10:00:00Z``; exactly what :func:`controller.timefmt.parse_rfc3339` takes).
    Anything else raises :class:`ValueError` naming ``--until`` and what it takes."""
    duration = _DURATION.fullmatch(text)
    try:
        if duration:
            return now + timedelta(seconds=int(duration[1]) * _DURATION_UNITS[duration[2]])
        return parse_rfc3339(text)
    except OverflowError:
        raise ValueError(f"--until: {text!r} is too far in the future") from None
    except TimeFormatError as exc:
        if exc.naive:
            raise ValueError(f"--until: {exc}") from None
        raise ValueError(
            f"--until: expected a duration such as 30m (a whole number of s, m, h or d) or "
            f"{RFC3339_EXPECTED}, got {text!r}" + (f": {exc.detail}" if exc.detail else "")
        ) from None


def _shown_time(value: Any) -> str:
    """A time from the management or Kubernetes API as this project writes times (an older
    server may write ``+00:00`` or microseconds); anything else is shown as it came."""
    try:
        return rfc3339(parse_rfc3339(value)) if isinstance(value, str) else str(value)
    except TimeFormatError:
        return str(value)


class CliError(Exception):
    """A failure the user can act on: one line on stderr for each of ``lines``, no
    traceback."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class ApiError(CliError):
    """The management API (or the Kubernetes API) is unreachable or refused: exit status 1."""


class UsageError(CliError):
    """An option or variable that cannot work: exit status 2, argparse's convention."""


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line: what is wrong, and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _seconds(text: str) -> float:
    """``--timeout``: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _url_problem(text: str) -> str | None:
    """Why ``text`` is no management API base URL, or None when it is one."""
    if any(c.isspace() or not c.isprintable() or not c.isascii() for c in text):
        return "spaces, control and non-ASCII characters are not allowed"
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError as exc:
        return str(exc)
    if parts.scheme.lower() not in ("http", "https"):
        return f"the scheme is {parts.scheme}" if parts.scheme else "there is no scheme"
    if not parts.hostname:
        return "there is no host"
    if parts.username is not None:
        return "the admin token goes in --token, not in the URL"
    if parts.query or parts.fragment:
        return "a query or fragment is not allowed"
    return None


def _management_url(args: argparse.Namespace) -> str:
    """The base URL from ``--url``, ``$MWM_MANAGEMENT_URL`` or the default, checked: urllib
    would raise on some (``not-a-url``) and fetch others (``ftp://``, ``file://``)."""
    if args.url is not None:
        text, source = args.url, "argument --url"
    elif os.environ.get("MWM_MANAGEMENT_URL"):
        text, source = os.environ["MWM_MANAGEMENT_URL"], "MWM_MANAGEMENT_URL"
    else:
        return DEFAULT_MANAGEMENT_URL
    problem = _url_problem(text)
    if problem is not None:
        shown = re.sub(r"//[^/@]*@", "//***@", text)  # never echo a password
        raise UsageError(
            f"{source}: expected an http:// or https:// URL such as {DEFAULT_MANAGEMENT_URL}, "
            f"got {shown!r} ({problem})"
        )
    return str(text).rstrip("/")


def _admin_token(args: argparse.Namespace) -> str | None:
    """``--token``, else ``$MWM_MANAGEMENT__ADMIN_TOKEN``, else the file
    ``$MWM_MANAGEMENT__ADMIN_TOKEN_FILE`` names; empty counts as unset."""
    file_variable = "MWM_MANAGEMENT__ADMIN_TOKEN_FILE"
    if args.token:
        token, source = args.token, "argument --token"
    elif os.environ.get("MWM_MANAGEMENT__ADMIN_TOKEN"):
        token, source = os.environ["MWM_MANAGEMENT__ADMIN_TOKEN"], "MWM_MANAGEMENT__ADMIN_TOKEN"
    elif path := os.environ.get(file_variable):
        source = file_variable
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise UsageError(
                f"{file_variable}: expected a readable UTF-8 file holding the admin token, "
                f"got {path!r} ({reason})"
            ) from exc
    else:
        return None
    if not all("!" <= c <= "~" for c in token):
        raise UsageError(
            f"{source}: expected a token of visible ASCII characters "
            "(no spaces, control or non-ASCII characters)"
        )
    return token or None


_OPTIONS = {"reason": "--reason", "until": "--until"}
"""The option behind each field of the admin API's body."""


def _refusal(exc: urllib.error.HTTPError, method: str, url: str) -> CliError:
    """The API's answer as lines: its field errors when it lists some (a usage error when
    each names a field an option sets), else its ``detail``."""
    try:
        problem = json.loads(exc.read())
    except (ValueError, OSError):
        problem = None
    if not isinstance(problem, dict):
        problem = {}
    where = f"{method} {url}: HTTP {exc.code}"
    listed = problem.get("errors")
    errors = [e for e in listed if isinstance(e, dict)] if isinstance(listed, list) else []
    if not errors:
        return ApiError(f"{where}: {problem.get('detail') or exc.reason}")
    lines, options = [], []
    for error in errors:
        field = str(error.get("field") or "body")
        option = _OPTIONS.get(field)
        options.append(option)
        line = f"{f'argument {option}' if option else f'field {field}'}: "
        line += str(error.get("message") or "not valid")
        if error.get("expected"):
            line += f" (expected {error['expected']})"
        lines.append(line)
    if all(options):
        return UsageError(*lines)
    return ApiError(*(f"{where}: {line}" for line in lines))


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason) or type(reason).__name__


def _call(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    base = _management_url(args)
    url = base + path
    headers = {"Accept": "application/json"}
    if path.startswith("/api/"):
        token = _admin_token(args)
        if token:
            headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:  # noqa: S310
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise _refusal(exc, method, url) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise ApiError(f"cannot reach the management API at {url}: {_reason(exc)}") from exc
    try:
        payload = json.loads(raw or b"{}")
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise ApiError(
            f"{method} {url}: the answer is not a JSON object: is {base} mwm's management API?"
        )
    return payload


def _status(args: argparse.Namespace) -> dict[str, Any]:
    """``GET /status``, refused unless it is shaped like mwm's."""
    status = _call(args, "GET", "/status")
    try:
        _status_lines(status)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ApiError(
            f"GET {_management_url(args)}/status: not mwm's status document (no {exc}): "
            "is --url mwm's management API?"
        ) from exc
    return status


def _print_status(status: dict[str, Any]) -> None:
    print("\n".join(_status_lines(status)))


def _status_lines(status: dict[str, Any]) -> list[str]:
    """``mwm status`` for the management API's ``/status`` document: the state (on/off,
    since, until, reason) and its causes, every service, the next window when the document
    has one, and the errors.  A line is printed only for a field the document has."""
    lines = []
    m = status["maintenance"]
    lines.append(f"maintenance: {'ON' if m['active'] else 'off'}")
    lines.extend(_state_lines(m, last_change=status.get("lastChange")))
    if m["active"]:
        if m.get("scope") not in (None, "site"):  # the whole site goes without saying
            lines.append(f"  scope: {_scope_text(m['scope'], m.get('affectedRoutes') or [])}")
        for cause in m["causes"]:
            until = f" until {_shown_time(cause['until'])}" if cause.get("until") else ""
            where = _where(cause)
            lines.append(f"  - {cause['kind']}: {cause['reason']}{until}{where}")
    if status.get("synced") is False:
        lines.append("  (not synced yet: the services below may be incomplete)")
    if status.get("draining"):
        lines.append("  (draining: this process is shutting down)")
    lines.extend(_service_lines(status.get("services")))
    lines.extend(_next_window_lines(status.get("nextWindow")))
    for error in status.get("errors", []):
        lines.append(f"  error: {error}")
    return lines


_SCOPES = {
    "readOnly": "writes everywhere (reads pass)",
    "routes": "only these routes",
    "readOnlyAndRoutes": "writes everywhere and these routes",
}


def _scope_text(scope: Any, routes: list[dict[str, Any]]) -> str:
    """``maintenance.scope`` for people, with the affected routes when only some are."""
    text = _SCOPES.get(str(scope), str(scope))
    if routes:
        shown = ", ".join(_route_text(r) + _mode_mark(r) for r in routes)
        text += f": {shown}"
    return text


def _route_text(route: dict[str, Any]) -> str:
    """``/checkout`` or ``/checkout (POST, PUT)``."""
    methods = route.get("methods") or []
    return str(route.get("pathPrefix")) + (f" ({', '.join(methods)})" if methods else "")


def _mode_mark(item: dict[str, Any]) -> str:
    return " [read-only]" if item.get("mode") == "readOnly" else ""


def _where(item: dict[str, Any]) -> str:
    """`` [read-only]``, `` on /checkout (POST)``: the scope of a cause or a service."""
    routes = item.get("routes") or []
    on = f" on {', '.join(_route_text(r) for r in routes)}" if routes else ""
    return _mode_mark(item) + on


def _state_lines(maintenance: dict[str, Any], *, last_change: Any = None) -> list[str]:
    """``since``, ``until`` and ``reason`` of the state, each when it is set."""
    lines = []
    if maintenance.get("since"):
        lines.append(f"  since: {_shown_time(maintenance['since'])}")
    elif not maintenance.get("active") and last_change:
        lines.append(f"  last change: {_shown_time(last_change)}")
    if maintenance.get("until"):
        lines.append(f"  until: {_shown_time(maintenance['until'])}")
    if maintenance.get("active") and maintenance.get("reason"):
        lines.append(f"  reason: {maintenance['reason']}")
    return lines


def _service_lines(services: Any) -> list[str]:
    """A heading with the counts, then one line per service:
    ``namespace/name (critical): ready 1/1 Reason``, ``(stale)`` when its data is stale."""
    if services is None:
        return []
    ready = sum(1 for service in services if service.get("ready"))
    critical = [service for service in services if service.get("critical")]
    ready_critical = sum(1 for service in critical if service.get("ready"))
    lines = [
        f"services: {ready}/{len(services)} ready, critical {ready_critical}/{len(critical)} ready"
        if services
        else "services: none"
    ]
    for service in services:
        flag = "ready" if service.get("ready") else "NOT READY"
        marks = " (critical)" if service.get("critical") else ""
        counts = f"{service.get('readyEndpoints', '?')}/{service.get('totalEndpoints', '?')}"
        stale = " (stale)" if service.get("stale") else ""
        lines.append(
            f"  {service['namespace']}/{service['name']}{marks}: {flag} {counts} "
            f"{service.get('reason', '')}{stale}{_where(service)}"
        )
    return lines


def _next_window_lines(window: Any) -> list[str]:
    """``next window: <start> to <end>: <reason>``, then whether it is announced: ``ANNOUNCED
    since <announceFrom>`` while it is, ``announced from <announceFrom>`` before (nothing for
    a window never announced, or a document without the fields)."""
    if not isinstance(window, dict):
        return []
    reason = f": {window['reason']}" if window.get("reason") else ""
    lines = [
        f"next window: {_shown_time(window.get('start'))} to "
        f"{_shown_time(window.get('end'))}{reason}"
    ]
    announce_from = window.get("announceFrom")
    if window.get("announced"):
        since = f" since {_shown_time(announce_from)}" if announce_from else ""
        lines.append(f"  ANNOUNCED{since}")
    elif announce_from:
        lines.append(f"  announced from {_shown_time(announce_from)}")
    return lines


def _print_checker(obj: dict[str, Any], *, confirmed: bool) -> None:
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    m = status.get("maintenance") or {}
    print(f"ServiceChecker {metadata.get('namespace')}/{metadata.get('name')}")
    if not confirmed:
        print("  (the controller has not confirmed this change yet: is mwm running?)")
    print(f"maintenance: {'ON' if m.get('active') else 'off'}")
    for line in _state_lines(m):
        print(line)
    conditions = status.get("conditions") or []
    if m.get("active") and m.get("reason"):
        until = f" until {_shown_time(m['until'])}" if m.get("until") else ""
        print(f"  - {m['reason']}{until}")
        for condition in conditions:
            if condition.get("type") == "Maintenance" and condition.get("reason"):
                print(f"  cause: {condition['reason']}")
    for line in _service_lines(status.get("serviceStatuses") or []):
        print(line)
    for line in _next_window_lines(status.get("nextWindow")):
        print(line)
    for condition in conditions:
        if condition.get("type") in ("Valid", "Synced") and condition.get("status") != "True":
            print(f"  {condition['type']}: {condition.get('message')}")


def _cluster(
    args: argparse.Namespace,
    enabled: bool | None,
    until: datetime | None = None,
    *,
    as_json: bool = False,
    read_only: bool = False,
) -> int:
    """``--checker``: switch (or show) a ServiceChecker through the Kubernetes API."""
    from controller.kube import SERVICECHECKERS, KubeApi, KubeError, user_agent
    from controller.snapshot import Mode
    from controller.switching import switch_checker, wait_for_observed

    async def main() -> None:
        async with KubeApi.connect(
            host=args.api_url,
            kubeconfig=args.kubeconfig,
            context=args.context,
            user_agent=user_agent("cli"),
        ) as api:
            if enabled is None:
                obj = await api.get(SERVICECHECKERS, args.namespace, args.checker)
                if as_json:
                    print(json.dumps(obj, indent=2))
                else:
                    _print_checker(obj, confirmed=True)
                return
            patched = await switch_checker(
                api,
                args.namespace,
                args.checker,
                enabled=enabled,
                reason=getattr(args, "reason", None),
                until=until,
                mode=Mode.READ_ONLY if read_only else Mode.FULL,
            )
            generation = int((patched.get("metadata") or {}).get("generation") or 0)
            obj = await wait_for_observed(
                api, args.namespace, args.checker, generation=generation, timeout_s=args.timeout
            )
            status = obj.get("status") or {}
            _print_checker(obj, confirmed=int(status.get("observedGeneration") or 0) >= generation)

    try:
        asyncio.run(main())
    except KubeError as exc:
        raise ApiError(f"ServiceChecker {args.namespace}/{args.checker}: {exc}") from exc
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    if args.checker:
        return _cluster(args, None, as_json=args.json)
    status = _status(args)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        _print_status(status)
    return EXIT_OK


def cmd_on(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"enabled": True}
    until = None
    if args.reason:
        body["reason"] = args.reason
    if args.until:
        try:
            until = parse_until(args.until, now=datetime.now(UTC))
        except ValueError as exc:
            raise UsageError(f"argument {exc}") from exc
        body["until"] = rfc3339_exact(until)
    if args.read_only:
        body["mode"] = "readOnly"
    if args.checker:
        return _cluster(args, True, until, read_only=args.read_only)
    _call(args, "PUT", "/api/maintenance", body)
    _print_status(_status(args))
    return EXIT_OK


def cmd_off(args: argparse.Namespace) -> int:
    if args.checker:
        return _cluster(args, False)
    _call(args, "DELETE", "/api/maintenance")
    _print_status(_status(args))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mwm",
        description="Maintenance-mode reverse proxy. Settings come from MWM_* variables.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="serve the proxy").set_defaults(func=cmd_run)
    commands.add_parser(
        "check-config", help="report every configuration problem and exit"
    ).set_defaults(func=cmd_check_config)

    def client(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--url",
            help="management API base URL, http:// or https:// (default: $MWM_MANAGEMENT_URL, "
            f"else {DEFAULT_MANAGEMENT_URL})",
        )
        sub.add_argument(
            "--token", help="admin token (default: $MWM_MANAGEMENT__ADMIN_TOKEN or ..._FILE)"
        )
        sub.add_argument("--timeout", type=_seconds, default=10.0, help="seconds (default 10)")
        cluster = sub.add_argument_group(
            "cluster mode", "act on a ServiceChecker through the Kubernetes API instead"
        )
        cluster.add_argument("--checker", help="name of the ServiceChecker")
        cluster.add_argument("-n", "--namespace", default="default", help="its namespace")
        cluster.add_argument("--kubeconfig", type=Path, help="kubeconfig (default ~/.kube/config)")
        cluster.add_argument("--context", help="kubeconfig context")
        cluster.add_argument("--api-url", help="API server URL without auth (kubectl proxy)")
        return sub

    status = client("status", "show whether maintenance is on, why, and every service")
    status.add_argument(
        "--json",
        action="store_true",
        help="print the machine document as is: /status, or the ServiceChecker with --checker",
    )
    status.set_defaults(func=cmd_status)
    on = client("on", "switch maintenance on (live, every request from now)")
    on.add_argument("--reason", help="shown on the page and in /status")
    on.add_argument(
        "--until",
        help="RFC 3339 time (2026-12-01T10:00:00Z) or duration (90s, 30m, 2h, 1d): "
        "switches itself off then",
    )
    on.add_argument(
        "--read-only",
        action="store_true",
        help="only writes get the maintenance page; GET, HEAD and OPTIONS are still served",
    )
    on.set_defaults(func=cmd_on)
    client("off", "switch the admin maintenance switch off").set_defaults(func=cmd_off)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Every error is one line on stderr per problem, never a traceback: exit status 2 for
    a usage error, 1 for a failure.  A reader that goes away (``mwm status | head -1``)
    ends the command quietly."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's flush at exit
    except CliError as exc:
        usage = isinstance(exc, UsageError)
        prefix = f"mwm {args.command}: error: " if usage else "mwm: "
        for line in exc.lines:
            print(prefix + line, file=sys.stderr)
        return EXIT_CONFIG if usage else EXIT_FAILED
    except BrokenPipeError:
        if args.func is cmd_run:
            raise  # not stdout's: the server writes nothing there
        _discard_stdout()
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    return code


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit cannot fail again (the
    recipe in the documentation of :mod:`signal`, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is no file (replaced, closed): nothing will flush to the pipe


if __name__ == "__main__":
    sys.exit(main())
