"""The ``mwm`` command line.

``mwm run`` serves; ``mwm check-config`` reports every configuration problem at once;
``mwm status``, ``mwm on`` and ``mwm off`` talk to a running proxy's management API.
Configuration errors are printed as ``VARIABLE: problem`` lines with exit status 2,
never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.localspec import LocalConfigError, parse_local_file
from controller.settings import SourceKind
from proxy.filelimit import raise_open_file_limit
from proxy.logs import configure_logging
from proxy.pages import PageRenderer
from proxy.settings import Settings, SettingsError, load_settings

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
    problems.extend(PageRenderer(settings.page).check())
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


def cmd_run(args: argparse.Namespace) -> int:
    settings, problems = collect_problems(dict(os.environ))
    if settings is None or any(not p.startswith("template ") for p in problems):
        _print_problems(problems)
        return EXIT_CONFIG
    configure_logging(settings.log)
    raise_open_file_limit()  # before the workers start: they inherit it
    from proxy.runtime import Runtime, StartupError
    from proxy.workers import run_workers, switch_dir, worker_index

    index = worker_index(os.environ)
    if settings.listen.workers > 1 and index is None:
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


def cmd_check_config(args: argparse.Namespace) -> int:
    settings, problems = collect_problems(dict(os.environ))
    if problems:
        _print_problems(problems)
        return EXIT_CONFIG
    assert settings is not None
    print("configuration OK")
    print(f"  upstream:   {settings.upstream.url_for_display()}")
    print(f"  public:     {settings.listen.public_host}:{settings.listen.public_port}")
    print(f"  management: {settings.listen.management_host}:{settings.listen.management_port}")
    print(f"  state file: {settings.source.local.file or '(none)'}")
    return EXIT_OK


def _print_problems(problems: list[str]) -> None:
    print(f"mwm: {len(problems)} configuration problem(s):", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)


def parse_until(text: str, *, now: datetime) -> datetime:
    """``--until``: RFC 3339 (``2026-12-01T10:00:00Z``) or a duration (``90s``, ``30m``, ``2h``)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) > 1 and text[-1] in units and text[:-1].isdigit():
        return now + timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(
            f"--until: expected RFC 3339 time or a duration like 30m, got {text!r}"
        ) from exc
    if parsed.tzinfo is None:
        raise ValueError("--until: needs a time zone, e.g. 2026-12-01T10:00:00Z")
    return parsed


class ApiError(Exception):
    pass


def _call(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    url = args.url.rstrip("/") + path
    headers = {"Accept": "application/json"}
    token = args.token or os.environ.get("MWM_MANAGEMENT__ADMIN_TOKEN")
    if token is None and os.environ.get("MWM_MANAGEMENT__ADMIN_TOKEN_FILE"):
        with open(os.environ["MWM_MANAGEMENT__ADMIN_TOKEN_FILE"], encoding="utf-8") as f:
            token = f.read().strip()
    if token and path.startswith("/api/"):
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:  # noqa: S310
            payload: dict[str, Any] = json.loads(response.read() or b"{}")
            return payload
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail", exc.reason)
        except ValueError:
            detail = exc.reason
        raise ApiError(f"{method} {url}: HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(f"cannot reach the management API at {url}: {reason}") from exc


def _print_status(status: dict[str, Any]) -> None:
    m = status["maintenance"]
    print(f"maintenance: {'ON' if m['active'] else 'off'}")
    if m["active"]:
        for cause in m["causes"]:
            until = f" until {cause['until']}" if cause.get("until") else ""
            print(f"  - {cause['kind']}: {cause['reason']}{until}")
    for service in status.get("services", []):
        flag = "ready" if service["ready"] else "NOT READY"
        critical = " (critical)" if service["critical"] else ""
        print(
            f"  {service['namespace']}/{service['name']}{critical}: {flag} "
            f"{service['readyEndpoints']}/{service['totalEndpoints']} {service['reason']}"
        )
    for error in status.get("errors", []):
        print(f"  error: {error}")


def _print_checker(obj: dict[str, Any], *, confirmed: bool) -> None:
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    m = status.get("maintenance") or {}
    print(f"ServiceChecker {metadata.get('namespace')}/{metadata.get('name')}")
    if not confirmed:
        print("  (the controller has not confirmed this change yet: is mwm running?)")
    print(f"maintenance: {'ON' if m.get('active') else 'off'}")
    if m.get("active") and m.get("reason"):
        until = f" until {m['until']}" if m.get("until") else ""
        print(f"  - {m['reason']}{until}")
    for service in status.get("serviceStatuses") or []:
        flag = "ready" if service.get("ready") else "NOT READY"
        critical = " (critical)" if service.get("critical") else ""
        counts = f"{service.get('readyEndpoints', '?')}/{service.get('totalEndpoints', '?')}"
        print(
            f"  {service['namespace']}/{service['name']}{critical}: {flag} {counts} "
            f"{service.get('reason', '')}"
        )
    for condition in status.get("conditions") or []:
        if condition.get("type") in ("Valid", "Synced") and condition.get("status") != "True":
            print(f"  {condition['type']}: {condition.get('message')}")


def _cluster(args: argparse.Namespace, enabled: bool | None, until: datetime | None = None) -> int:
    """``--checker``: switch (or show) a ServiceChecker through the Kubernetes API."""
    from controller.kube import SERVICECHECKERS, KubeApi, KubeError, user_agent
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
                _print_checker(obj, confirmed=True)
                return
            patched = await switch_checker(
                api,
                args.namespace,
                args.checker,
                enabled=enabled,
                reason=getattr(args, "reason", None),
                until=until,
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
        return _cluster(args, None)
    status = _call(args, "GET", "/status")
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
            print(f"mwm: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        body["until"] = until.isoformat()
    if args.checker:
        return _cluster(args, True, until)
    _call(args, "PUT", "/api/maintenance", body)
    _print_status(_call(args, "GET", "/status"))
    return EXIT_OK


def cmd_off(args: argparse.Namespace) -> int:
    if args.checker:
        return _cluster(args, False)
    _call(args, "DELETE", "/api/maintenance")
    _print_status(_call(args, "GET", "/status"))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
            default=os.environ.get("MWM_MANAGEMENT_URL", DEFAULT_MANAGEMENT_URL),
            help="management API base URL (env MWM_MANAGEMENT_URL; default %(default)s)",
        )
        sub.add_argument(
            "--token", help="admin token (default: $MWM_MANAGEMENT__ADMIN_TOKEN or ..._FILE)"
        )
        sub.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
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
    status.add_argument("--json", action="store_true", help="print the raw /status document")
    status.set_defaults(func=cmd_status)
    on = client("on", "switch maintenance on (live, every request from now)")
    on.add_argument("--reason", help="shown on the page and in /status")
    on.add_argument("--until", help="RFC 3339 time or duration (30m, 2h): switches itself off")
    on.set_defaults(func=cmd_on)
    client("off", "switch the admin maintenance switch off").set_defaults(func=cmd_off)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ApiError as exc:
        print(f"mwm: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
