"""The local state file: a ServiceChecker-shaped YAML document, validated as a whole.

Outside a cluster the operator describes the watched services, the manual switch and
the windows in one file shaped like the ``ServiceChecker`` custom resource, so the same
text can later move into a cluster.  Field names are the camelCase ones Kubernetes uses
and unknown fields are errors, so a typo (``minready``) is reported instead of being
silently ignored.

:func:`parse_local_file` never lets a traceback escape: every problem it can find -- a
YAML syntax error with its line, a missing file, a naive time, a window ending before
it starts, a duplicate service -- comes back at once in one :class:`LocalConfigError`,
each problem as ``"<file>: <path.in.document>: <message>"``.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from controller.snapshot import Mode, Route
from controller.timefmt import EXPECTED, TimeFormatError, parse_rfc3339, rfc3339_exact

API_VERSION = "maintenance.mamrezb.com/v1alpha1"
KIND = "ServiceChecker"
DEFAULT_NAMESPACE = "default"
MAX_SERVICES = 100
MAX_WINDOWS = 100
MAX_ANNOUNCE_SECONDS = 30 * 24 * 3600
"""A window's ``announceSeconds`` is at most 30 days (the CRD's maximum too)."""
MAX_REASON_LENGTH = 500
MAX_ROUTES = 100
"""Routes per service: bounds the proxy's prefix structure and the CRD rules' cost."""
MAX_PATH_PREFIX_LENGTH = 512
MAX_METHODS = 16
MAX_METHOD_LENGTH = 32
MAX_HOLD_SECONDS = 300
"""A service's ``holdSeconds`` is at most 5 minutes: longer, clients time out anyway."""

DNS_LABEL_PATTERN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
PATH_PREFIX_PATTERN = r"^/$|^(/([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f][0-9A-Fa-f])+)+$"
"""A normalized absolute path: ``/`` or ``/segment/...``, each segment made of RFC 3986
path characters or percent-escapes; no empty segment (so no trailing ``/``), no ``?`` or
``#``.  Dot segments and an encoded slash are refused separately (RE2 has no look-ahead)."""
METHOD_PATTERN = "^[A-Z][A-Z0-9_-]*$"
"""An upper-case HTTP method token (``POST``, ``PATCH``, ``PROPFIND``); methods are
case-sensitive (RFC 9110 section 9.1), so ``post`` is not ``POST``."""

_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)
_PATH_PREFIX = re.compile(PATH_PREFIX_PATTERN)
_METHOD = re.compile(METHOD_PATTERN)


class LocalConfigError(Exception):
    """The state file cannot be used; ``problems`` lists every reason, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _rfc3339(value: object) -> object:
    """Accept only an RFC 3339 date-time with a time zone (:func:`controller.timefmt.
    parse_rfc3339`, strict: no date alone, no ISO week dates...): a naive time is
    ambiguous across hosts.  A ``datetime`` (built in Python) must be aware."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise PydanticCustomError(
                "naive_datetime",
                "time {value} has no time zone; add one, e.g. 2026-12-01T10:00:00Z",
                {"value": repr(str(value))},
            )
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "rfc3339",
            "expected {expected}, got {value}",
            {"expected": EXPECTED, "value": repr(value)},
        )
    try:
        return parse_rfc3339(value.strip())
    except TimeFormatError as exc:
        kind = "naive_datetime" if exc.naive else "rfc3339"
        raise PydanticCustomError(kind, "{problem}", {"problem": str(exc)}) from None


def dns_label(value: str, what: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise PydanticCustomError(
            "dns_label",
            "{what} {value} is not a DNS-1123 label (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)",
            {"what": what, "value": repr(value)},
        )
    return value


def _announce_seconds(value: object) -> object:
    """Whole seconds in ``[0, MAX_ANNOUNCE_SECONDS]``; ``"3600"``, ``1.5`` or ``true`` are
    errors (the CRD's integer type refuses them too), not quietly converted."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (0 <= value <= MAX_ANNOUNCE_SECONDS)
    ):
        raise PydanticCustomError(
            "announce_seconds",
            "expected whole seconds from 0 to {max} (30 days), got {value}",
            {"max": MAX_ANNOUNCE_SECONDS, "value": repr(value)},
        )
    return value


def _hold_seconds(value: object) -> object:
    """Whole seconds in ``[0, MAX_HOLD_SECONDS]``, strictly (as :func:`_announce_seconds`)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (0 <= value <= MAX_HOLD_SECONDS)
    ):
        raise PydanticCustomError(
            "hold_seconds",
            "expected whole seconds from 0 to {max}, got {value}",
            {"max": MAX_HOLD_SECONDS, "value": repr(value)},
        )
    return value


def path_prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot be a route's ``pathPrefix``, or None when it can.

    The prefix must already be in the form the proxy matches requests in (the proxy
    normalizes request paths the same way): written so, a prefix means what it says and
    the CRD's pattern and rules can check it too."""
    if len(prefix) > MAX_PATH_PREFIX_LENGTH:
        return f"is longer than {MAX_PATH_PREFIX_LENGTH} characters"
    if not prefix.startswith("/"):
        return f"{prefix!r} must start with '/'"
    if "?" in prefix or "#" in prefix:
        return f"{prefix!r} must be a path only, without '?' or '#'"
    if prefix != "/" and "" in prefix.split("/")[1:]:
        return f"{prefix!r} has an empty segment ('//' or a trailing '/')"
    if any(segment in (".", "..") for segment in prefix.split("/")):
        return f"{prefix!r} has a '.' or '..' segment"
    if "%2f" in prefix.lower() or "%5c" in prefix.lower():
        return f"{prefix!r} has an encoded slash or backslash (%2F, %5C)"
    if not _PATH_PREFIX.fullmatch(prefix):
        return (
            f"{prefix!r} has a character that cannot appear raw in a path "
            "(percent-encode it, e.g. %20 for a space)"
        )
    return None


def _path_prefix(value: str) -> str:
    problem = path_prefix_problem(value)
    if problem is not None:
        raise PydanticCustomError("path_prefix", "{problem}", {"problem": problem})
    return value


def _method(value: str) -> str:
    if len(value) > MAX_METHOD_LENGTH or not _METHOD.fullmatch(value):
        hint = f" (methods are case-sensitive: {value.upper()!r})" if value.isalpha() else ""
        raise PydanticCustomError(
            "http_method",
            "{value} is not an upper-case HTTP method such as 'POST'{hint}",
            {"value": repr(value), "hint": hint},
        )
    return value


Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339)]
AnnounceSeconds = Annotated[
    int, Field(ge=0, le=MAX_ANNOUNCE_SECONDS), BeforeValidator(_announce_seconds)
]
HoldSeconds = Annotated[int, Field(ge=0, le=MAX_HOLD_SECONDS), BeforeValidator(_hold_seconds)]
ServiceName = Annotated[
    str,
    AfterValidator(lambda value: dns_label(value, "name")),
    WithJsonSchema({"type": "string", "maxLength": 63, "pattern": DNS_LABEL_PATTERN}),
]
Namespace = Annotated[
    str,
    AfterValidator(lambda value: dns_label(value, "namespace")),
    WithJsonSchema({"type": "string", "maxLength": 63, "pattern": DNS_LABEL_PATTERN}),
]
NamespaceOrEmpty = Annotated[
    str,
    AfterValidator(lambda value: dns_label(value, "namespace") if value else value),
    WithJsonSchema(
        {"type": "string", "maxLength": 63, "pattern": f"^({DNS_LABEL_PATTERN[1:-1]})?$"}
    ),
]
PathPrefix = Annotated[
    str,
    AfterValidator(_path_prefix),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_PATH_PREFIX_LENGTH,
            "pattern": PATH_PREFIX_PATTERN,
        }
    ),
]
Method = Annotated[
    str,
    AfterValidator(_method),
    WithJsonSchema(
        {
            "type": "string",
            "description": "An HTTP method in upper case, e.g. POST.",
            "maxLength": MAX_METHOD_LENGTH,
            "pattern": METHOD_PATTERN,
        }
    ),
]
Reason = Annotated[str, Field(max_length=MAX_REASON_LENGTH)]


class SpecModel(BaseModel):
    """Kubernetes spelling (camelCase), no unknown fields, immutable once parsed."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
        use_attribute_docstrings=True,
    )


class HttpProbeSpec(SpecModel):
    url: str
    expect_status: frozenset[int] | None = None
    """Statuses that count as healthy; None means any 2xx or 3xx (as Kubernetes does)."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PydanticCustomError(
                "http_url",
                "expected an http:// or https:// URL with a host, got {url}",
                {"url": repr(url)},
            )
        return url

    @field_validator("expect_status")
    @classmethod
    def _check_statuses(cls, statuses: frozenset[int] | None) -> frozenset[int] | None:
        if statuses is None:
            return None
        if not statuses:
            raise PydanticCustomError(
                "expect_status", "must list at least one status (or be left out for 2xx/3xx)"
            )
        bad = sorted(s for s in statuses if not 100 <= s <= 599)
        if bad:
            raise PydanticCustomError(
                "expect_status", "not HTTP statuses (100-599): {bad}", {"bad": bad}
            )
        return statuses


class TcpProbeSpec(SpecModel):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)


class ProbeSpec(SpecModel):
    """How to check one service; unset timings take the source's defaults."""

    http: HttpProbeSpec | None = None
    tcp: TcpProbeSpec | None = None
    interval_seconds: float | None = Field(default=None, gt=0)
    timeout_seconds: float | None = Field(default=None, gt=0)
    failure_threshold: int | None = Field(default=None, ge=1)
    success_threshold: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> ProbeSpec:
        if (self.http is None) == (self.tcp is None):
            raise PydanticCustomError("probe_kind", "set exactly one of 'http' or 'tcp'")
        return self


class RouteSpec(SpecModel):
    """A part of the site that needs the service: while the service is not ready, requests
    to it get the maintenance page (naming the service) and the rest of the site is
    served."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.pathPrefix.startsWith('/')",
                    "message": "pathPrefix must start with /",
                },
                {
                    "rule": "!self.pathPrefix.matches('(^|/)[.][.]?(/|$)')",
                    "message": "pathPrefix must not have a . or .. segment",
                },
                {
                    "rule": "!self.pathPrefix.matches('%(2[fF]|5[cC])')",
                    "message": "pathPrefix must not have an encoded slash or backslash",
                },
            ]
        }
    )

    path_prefix: PathPrefix
    """A path prefix, matched segment by segment on the normalized request path: /checkout
    covers /checkout and /checkout/pay, not /checkouts. Starts with /; no empty, . or ..
    segment, no ? or #, no encoded slash; at most 512 characters."""
    methods: tuple[Method, ...] = Field(default=(), max_length=MAX_METHODS)
    """Only these methods (upper case, e.g. POST); empty or missing: every method."""


def routes_of(specs: tuple[RouteSpec, ...]) -> tuple[Route, ...]:
    """The snapshot's routes for a service entry's ``routes``."""
    return tuple(Route(path_prefix=r.path_prefix, methods=frozenset(r.methods)) for r in specs)


class ServiceScopeSpec(SpecModel):
    """What a service's outage stops: the fields the local file and the ServiceChecker share."""

    routes: tuple[RouteSpec, ...] = Field(default=(), max_length=MAX_ROUTES)
    """The routes that depend on this service. While it is not ready only these get the
    maintenance page, naming the service. Empty or missing: a critical service puts the
    whole site in maintenance."""
    mode: Mode = Mode.FULL
    """What its outage stops: full (the default) stops every request in its scope; readOnly
    stops only writes, so GET, HEAD and OPTIONS are still served (e.g. a primary database
    down while its replicas serve reads)."""
    hold_seconds: HoldSeconds | None = None
    """When the service has just gone down, hold requests that would get the page for at
    most this many seconds (0 to 300) and release them to the site if it recovers in time.
    Missing: the proxy's global hold setting decides; 0: never hold."""


class ServiceSpec(ServiceScopeSpec):
    """One service, found by name and namespace."""

    name: ServiceName
    """Name of the service (a DNS-1123 label)."""
    namespace: Namespace = DEFAULT_NAMESPACE
    """Filled from ``metadata.namespace`` (then ``default``) when empty or missing."""
    critical: bool = False
    """Whether the site goes into maintenance when this service is not ready."""
    min_ready: int = Field(default=1, ge=1)
    """Must be 1 in the local file: a probe sees the service as one endpoint."""
    probe: ProbeSpec | None = None
    """Without a probe the service is taken as ready."""

    @field_validator("min_ready")
    @classmethod
    def _check_min_ready(cls, min_ready: int) -> int:
        # A probe sees the service as one endpoint, so a larger minimum could never be met
        # and the service would hold the site in maintenance for ever.
        if min_ready > 1:
            raise PydanticCustomError(
                "min_ready",
                "must be 1 in the local file: a probe sees the service as one endpoint",
            )
        return min_ready

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


class MaintenanceSpec(SpecModel):
    """The manual switch, for planned work (`mwm on` / `mwm off` patch it)."""

    enabled: bool = False
    """Puts the site in maintenance while true (and before until, if set)."""
    reason: Reason | None = None
    """Shown to users on the maintenance page and in /status; at most 500 characters."""
    until: Rfc3339 | None = None
    """When the switch turns itself off (RFC 3339 with a time zone, e.g.
    2026-12-01T10:00:00Z). Also sent to clients as Retry-After."""
    mode: Mode = Mode.FULL
    """full (the default): the whole site gets the maintenance page; readOnly: only writes
    do, while GET, HEAD and OPTIONS are still served."""


class WindowSpec(SpecModel):
    """One scheduled window, open from start (inclusive) to end (exclusive)."""

    # timestamp() on both sides: the API server already types a date-time string as a
    # timestamp (timestamp() is then the identity), and other CEL evaluators that see
    # plain strings still compare instants, not text.
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "timestamp(self.end) > timestamp(self.start)",
                    "message": "end must be after start",
                }
            ]
        }
    )

    start: Rfc3339
    """When the window opens (RFC 3339 with a time zone)."""
    end: Rfc3339
    """When the window closes (RFC 3339 with a time zone); must be after start."""
    reason: Reason | None = None
    """Shown to users on the maintenance page while the window is open; at most 500
    characters."""
    announce_seconds: AnnounceSeconds | None = None
    """How long before start the window is announced: from start minus this many seconds
    until start, /status, /_mwm/status, `mwm status` and /metrics report it as announced
    (and, when MWM_STATUS__ANNOUNCE_HEADER is set, proxied responses carry its start).
    Missing or 0: never announced (it is still listed as the next window). At most 30
    days."""
    mode: Mode = Mode.FULL
    """full (the default): the whole site gets the maintenance page while the window is
    open; readOnly: only writes do."""

    @model_validator(mode="after")
    def _end_after_start(self) -> WindowSpec:
        if self.end <= self.start:
            raise PydanticCustomError(
                "window_order",
                "end {end} must be after start {start}",
                {"end": rfc3339_exact(self.end), "start": rfc3339_exact(self.start)},
            )
        return self


class Metadata(SpecModel):
    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, namespace: str | None) -> str | None:
        return dns_label(namespace, "namespace") if namespace else None


class CheckerSpec(SpecModel):
    services: tuple[ServiceSpec, ...] = Field(default=(), max_length=MAX_SERVICES)
    """The services the site depends on."""
    maintenance: MaintenanceSpec | None = None
    """The manual switch."""
    windows: tuple[WindowSpec, ...] = Field(default=(), max_length=MAX_WINDOWS)
    """Scheduled maintenance windows."""


class LocalSpec(SpecModel):
    """The whole file.  Services' namespaces are resolved, duplicates rejected."""

    api_version: Literal["maintenance.mamrezb.com/v1alpha1"] | None = None
    kind: Literal["ServiceChecker"] | None = None
    metadata: Metadata = Field(default_factory=Metadata)
    spec: CheckerSpec

    @model_validator(mode="before")
    @classmethod
    def _resolve_namespaces(cls, data: Any) -> Any:
        return _with_default_namespaces(data)

    @model_validator(mode="after")
    def _unique_services(self) -> LocalSpec:
        problems = _duplicate_services([s.key for s in self.spec.services])
        if problems:
            raise PydanticCustomError("duplicate_service", "; ".join(problems))
        return self


def _with_default_namespaces(data: Any) -> Any:
    """Return ``data`` with each service's empty namespace filled in (input left untouched)."""
    if not isinstance(data, Mapping):
        return data
    metadata = data.get("metadata")
    default = DEFAULT_NAMESPACE
    if isinstance(metadata, Mapping):
        namespace = metadata.get("namespace")
        if isinstance(namespace, str) and namespace.strip():
            default = namespace.strip()
    spec = data.get("spec")
    if not isinstance(spec, Mapping):
        return data
    services = spec.get("services")
    if not isinstance(services, list):
        return data
    resolved = [
        {**s, "namespace": default} if isinstance(s, Mapping) and not s.get("namespace") else s
        for s in services
    ]
    return {**data, "spec": {**spec, "services": resolved}}


def _duplicate_services(keys: Sequence[tuple[str, str] | None]) -> list[str]:
    """One message per repeated (namespace, name); ``None`` entries are skipped."""
    first_seen: dict[tuple[str, str], int] = {}
    problems = []
    for index, key in enumerate(keys):
        if key is None:
            continue
        if key in first_seen:
            namespace, name = key
            problems.append(
                f"spec.services[{index}]: duplicate service {namespace}/{name} "
                f"(already listed at spec.services[{first_seen[key]}])"
            )
        else:
            first_seen[key] = index
    return problems


def _raw_service_keys(data: Any) -> list[tuple[str, str] | None]:
    """Best-effort (namespace, name) keys from unvalidated data, to report duplicates even
    when other parts of the file are invalid (pydantic skips whole-model checks then)."""
    resolved = _with_default_namespaces(data)
    spec = resolved.get("spec") if isinstance(resolved, Mapping) else None
    services = spec.get("services") if isinstance(spec, Mapping) else None
    if not isinstance(services, list):
        return []
    keys: list[tuple[str, str] | None] = []
    for service in services:
        name = service.get("name") if isinstance(service, Mapping) else None
        namespace = service.get("namespace") if isinstance(service, Mapping) else None
        if isinstance(name, str) and isinstance(namespace, str):
            keys.append((namespace.strip(), name.strip()))
        else:
            keys.append(None)
    return keys


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """Safe YAML without timestamp magic (times are validated as RFC 3339 text) and
    with duplicate keys rejected (YAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # merge keys (<<) may legitimately be overridden
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _format_loc(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


_MESSAGES = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field (field names are camelCase, e.g. minReady)",
}


def describe_problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = _format_loc(error["loc"])
        message = _MESSAGES.get(error["type"], error["msg"])
        if error["type"] == "duplicate_service":
            problems.extend(message.split("; "))
            continue
        problems.append(f"{loc}: {message}" if loc else message)
    return problems


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = ": ".join(p for p in (exc.context, exc.problem) if p)
        return f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {what}"
    return f"invalid YAML: {exc}"


def parse_local_file(path: Path) -> LocalSpec:
    """Read and validate the state file; raise :class:`LocalConfigError` with every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LocalConfigError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LocalConfigError([f"{path}: cannot read the file: {exc}"]) from exc
    return parse_local_text(text, source=str(path))


def parse_local_text(text: str, *, source: str) -> LocalSpec:
    """Validate the text of a state file; ``source`` names it in every problem."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise LocalConfigError([f"{source}: {_describe_yaml_error(exc)}"]) from exc
    if data is None:
        raise LocalConfigError(
            [f"{source}: the file is empty; expected a mapping with at least 'spec'"]
        )
    if not isinstance(data, dict):
        raise LocalConfigError(
            [
                f"{source}: the top level must be a mapping (apiVersion, kind, metadata, spec), "
                f"not a {type(data).__name__}"
            ]
        )
    try:
        return LocalSpec.model_validate(data)
    except ValidationError as exc:
        problems = describe_problems(exc)
        if not any(e["type"] == "duplicate_service" for e in exc.errors()):
            problems.extend(_duplicate_services(_raw_service_keys(data)))
        raise LocalConfigError([f"{source}: {p}" for p in problems]) from None
