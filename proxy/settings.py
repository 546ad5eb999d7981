"""All settings, read once at start-up from ``MWM_*`` environment variables.

Groups nest with ``__``: ``MWM_UPSTREAM__URL``, ``MWM_BYPASS__PATH_PREFIXES``.  Lists
accept JSON (``["/admin","/ops"]``) or a comma-separated string (``/admin,/ops``).
Every secret is a :class:`~pydantic.SecretStr` that may also be read from a file
(``..._FILE``, for Kubernetes Secret mounts).  Library code never reads the
environment: :func:`load_settings` is called by the CLI and the result passed down.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AnyHttpUrl,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from controller.settings import (
    OptionalPath,
    SettingsGroup,
    SourceSettings,
    StrList,
    empty_is_none,
    split_list,
)
from proxy.pathnorm import InvalidPath, normalize_path

ENV_PREFIX = "MWM_"
ENV_NESTED_DELIMITER = "__"
CLIENT_VARIABLES = frozenset({"MWM_MANAGEMENT_URL"})
"""Read by the ``mwm on/off/status`` client, not by the server: not settings."""
_SERVICE_LINK = re.compile(
    r"MWM_[A-Z0-9_]*?(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)"
)
"""Kubernetes injects ``<SERVICE>_SERVICE_HOST``, ``<SERVICE>_PORT...`` for every Service in
the namespace; a Service named ``mwm...`` makes them start with our prefix.  They are
never settings (ours always nest with ``__``), so they are skipped, not refused."""


Network = IPv4Network | IPv6Network


def _parse_networks(value: object) -> object:
    value = split_list(value)
    if isinstance(value, list):
        return [ip_network(v, strict=False) if isinstance(v, str) else v for v in value]
    return value


NetworkList = Annotated[list[Network], NoDecode, BeforeValidator(_parse_networks)]


OptionalSecret = Annotated[SecretStr | None, BeforeValidator(empty_is_none)]


def _read_secret_file(path: Path | None, field: str) -> SecretStr | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{field}: cannot read secret file {path}: {exc.strerror}") from exc
    if not text:
        raise ValueError(f"{field}: secret file {path} is empty")
    return SecretStr(text)


class ListenSettings(SettingsGroup):
    public_host: str = "0.0.0.0"
    """Address of the public listener (user traffic)."""
    public_port: int = Field(default=8080, ge=0, le=65535)
    management_host: str = "0.0.0.0"
    """Address of the management listener (probes, metrics, status, admin API)."""
    management_port: int = Field(default=8081, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    """Processes sharing the ports with SO_REUSEPORT, one per core the pod may use; each
    has its own watches (see proxy/workers.py)."""


class UpstreamSettings(SettingsGroup):
    url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8000")
    """The application every non-blocked request is forwarded to."""
    connect_timeout_s: float = Field(default=5.0, gt=0)
    """Time to open a TCP connection to the upstream before answering 504."""
    read_timeout_s: float = Field(default=60.0, gt=0)
    """Longest silence while waiting for the upstream's response head or body, then 504."""
    pool_size: int = Field(default=100, ge=0)
    """Connections to the upstream open at once, at most (0: no limit).  A request beyond
    the limit waits for one to come free, so size it above the number of long-lived
    requests the app serves (server-sent events, long polling, websockets, downloads)."""
    pool_timeout_s: float = Field(default=10.0, gt=0)
    """Longest wait for a free upstream connection when ``pool_size`` are in use; then 503
    (the app is saturated: a quick answer the client can retry beats an endless wait)."""
    keepalive_timeout_s: float = Field(default=4.0, gt=0)
    """Idle keep-alive connections to the upstream are closed after this.  Keep it below the
    upstream's own idle timeout (uvicorn and Node.js: 5 s) so a pooled connection is never
    reused just as the upstream closes it (that request would get a 502)."""
    websocket_max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Largest websocket message relayed in either direction."""

    def url_for_display(self) -> str:
        """``url`` for logs and messages: a password in it (sent to the upstream as Basic
        auth) is replaced by ``***``."""
        text = str(self.url)
        if self.url.password is None:
            return text
        parts = urlsplit(text)
        userinfo, _, host = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))

    @field_validator("url")
    @classmethod
    def _no_query(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if value.query or value.fragment:
            raise ValueError("must not contain a query string or fragment")
        return value


class LimitSettings(SettingsGroup):
    """What one client may send and for how long it may hold a connection.

    Bodies stream through in constant memory whatever their size, so ``max_body_bytes``
    protects the upstream, not the proxy.  The head limits and the two timeouts protect the
    proxy: a request head is held whole in memory while it is parsed, and every open
    connection costs a few KiB (README, *Limits and capacity*)."""

    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    """Largest request body forwarded, in bytes; 0: no limit.  A larger ``Content-Length``
    gets 413 before anything reaches the upstream; a chunked body is cut when it grows past
    the limit (the upstream request is aborted, never completed).  10 MiB is ten times
    nginx's ``client_max_body_size``: enough for forms and API payloads, raise it (or use
    0) in front of an app that takes large uploads."""
    max_request_line_bytes: int = Field(default=8190, ge=64)
    """Longest request target (the URL) in bytes; longer gets 414.  aiohttp's default, and
    nginx's 8 KiB line buffer; browsers and CDNs refuse URLs not much longer.  Set equal to
    ``max_header_field_bytes``, an over-long URL gets 431 instead (the parser's error names
    only the limit it hit)."""
    max_header_field_bytes: int = Field(default=16384, ge=64)
    """Longest header value (or name) in bytes; longer gets 431.  16 KiB leaves room for
    large cookies and tokens, twice nginx's default."""
    max_header_count: int = Field(default=128, ge=1)
    """Most header fields in a request; more gets 431.  Browsers send about 20.  With
    ``max_header_field_bytes`` this bounds the memory one request head can take."""
    body_timeout_s: float = Field(default=60.0, gt=0)
    """Longest silence while a request body is arriving; the request is then cut (408, and
    the upstream request aborted).  Bodies stream to the upstream as they arrive, so a
    stalled upload holds an upstream connection: without this, enough of them would take
    the whole pool.  nginx's ``client_body_timeout``."""
    header_timeout_s: float = Field(default=20.0, gt=0)
    """A request head must arrive complete within this time, counted from the connection's
    start or from the first byte of a later request; the connection is closed otherwise
    (against slowloris, clients that dribble headers to hold connections open).  nginx's
    ``client_header_timeout`` is 60 s; a real client sends its head in one packet."""
    keepalive_timeout_s: float = Field(default=75.0, gt=0)
    """An idle client connection (no request in progress) is closed after this.  nginx's
    default.  Keep it above the idle timeout of the load balancer in front (AWS ALB: 60 s;
    Google Cloud's needs more than 600 s) so the balancer never reuses a connection just as
    mwm closes it."""


class ForwardedSettings(SettingsGroup):
    trusted_hops: int = Field(default=0, ge=0, le=32)
    """How many proxies in front of this one append to X-Forwarded-For.  0: the peer is the
    client and incoming X-Forwarded-* headers are not believed."""


class EncodedSlashes(enum.StrEnum):
    """What the public listener does with ``%2F`` (an encoded ``/``) in a request path."""

    REJECT = "reject"
    KEEP = "keep"


class BypassSettings(SettingsGroup):
    path_prefixes: StrList = Field(default_factory=lambda: ["/admin"])
    """Requests whose normalized path is under one of these prefixes pass during maintenance."""
    header_name: str = "X-Maintenance-Bypass"
    """Header carrying the bypass token."""
    token: OptionalSecret = None
    """Bypass token for the header and for the cookie-issuing URL; unset disables both."""
    token_file: OptionalPath = None
    allow_cidrs: NetworkList = Field(default_factory=list)
    """Client addresses (after trusted hops) that always pass."""
    cookie_name: str = "mwm_bypass"
    cookie_secret: OptionalSecret = None
    """Key that signs bypass cookies; defaults to one derived from the token."""
    cookie_secret_file: OptionalPath = None
    cookie_lifetime_s: int = Field(default=12 * 3600, ge=60)
    """How long a bypass cookie is honoured after it is issued."""
    cookie_path: str = "/_mwm/bypass"
    """Visiting ``<cookie_path>/<token>`` sets the bypass cookie and redirects to ``/``."""
    encoded_slashes: EncodedSlashes = EncodedSlashes.REJECT
    """``reject``: paths with ``%2F`` get 400, because an upstream that decodes it before
    routing could see a different path than the bypass rules checked.  ``keep``: ``%2F`` is
    forwarded as is (upper-case hex) and is part of its segment for the bypass rules (a prefix
    never matches across it); a path is still refused when decoding its ``%2F`` would make a
    dot segment (``.``/``..``, also with ``;params``) or ``//``.  Encoded backslash, NUL and
    control characters are refused either way."""

    @model_validator(mode="after")
    def _read_files(self) -> Self:
        token = _read_secret_file(self.token_file, "token_file")
        if token is not None:
            self.token = token
        secret = _read_secret_file(self.cookie_secret_file, "cookie_secret_file")
        if secret is not None:
            self.cookie_secret = secret
        for prefix in self.path_prefixes:
            try:
                normalize_path(prefix)
            except InvalidPath as exc:
                raise ValueError(f"path_prefixes: {prefix!r} is not a usable path: {exc}") from exc
        if not self.cookie_path.startswith("/"):
            raise ValueError("cookie_path: must start with '/'")
        return self


class PageSettings(SettingsGroup):
    template_dir: OptionalPath = None
    """Directory whose templates override the built-in ones (same file names)."""
    title: str = "Down for maintenance"
    message: str = "We are performing maintenance and will be back shortly."
    contact: str | None = None
    """Shown on the page, e.g. a status-page URL or an e-mail address."""
    retry_after_s: int = Field(default=300, ge=0)
    """Retry-After seconds when the end of maintenance is not known."""
    refresh_s: int | None = Field(default=None, ge=1)
    """Adds a ``Refresh`` header to the HTML page so browsers retry by themselves."""
    show_services: bool = True
    """List affected service names on the page; switch off to keep them private."""


class ManagementSettings(SettingsGroup):
    admin_token: OptionalSecret = None
    """Token for the admin API (``Authorization: Bearer``); unset disables the admin API."""
    admin_token_file: OptionalPath = None
    readiness_drain: bool = False
    """Fail /readyz during maintenance.  Off by default: a not-ready proxy is removed from
    the Service and users see the load balancer's generic error instead of our page."""
    public_services_path: Annotated[str | None, BeforeValidator(empty_is_none)] = "/services"
    """Also answer /services on the public listener here; empty disables it."""

    @model_validator(mode="after")
    def _read_files(self) -> Self:
        token = _read_secret_file(self.admin_token_file, "admin_token_file")
        if token is not None:
            self.admin_token = token
        return self


class ShutdownSettings(SettingsGroup):
    prestop_delay_s: float = Field(default=0.0, ge=0)
    """After SIGTERM, report not-ready this long before refusing new connections."""
    drain_timeout_s: float = Field(default=30.0, gt=0)
    """In-flight requests get this long to finish before connections are closed."""


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


class LogSettings(SettingsGroup):
    level: str = "INFO"
    format: LogFormat = LogFormat.TEXT
    access_log: bool = False
    """One line per request; off by default because it costs throughput."""

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level


class Settings(BaseSettings):
    """The root of all settings; see the README's table for every variable."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        validate_default=True,
    )

    listen: ListenSettings = Field(default_factory=ListenSettings)
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)
    forwarded: ForwardedSettings = Field(default_factory=ForwardedSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    bypass: BypassSettings = Field(default_factory=BypassSettings)
    page: PageSettings = Field(default_factory=PageSettings)
    management: ManagementSettings = Field(default_factory=ManagementSettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    source: SourceSettings = Field(default_factory=SourceSettings)


class SettingsError(Exception):
    """Settings could not be loaded; ``problems`` lists every one, as ``VARIABLE: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from ``environ`` (default: the process environment).

    Raises :class:`SettingsError` with every problem found, never a traceback.
    """
    try:
        if environ is None:
            return Settings(**overrides)
        return _settings_from_mapping(environ, overrides)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from exc
    except ValueError as exc:  # malformed JSON in a list variable, say
        raise SettingsError([str(exc)]) from exc


def _settings_from_mapping(environ: Mapping[str, str], overrides: dict[str, Any]) -> Settings:
    """Build settings from an explicit mapping instead of ``os.environ`` (for tests, CLI)."""
    tree: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key in CLIENT_VARIABLES:
            continue
        if ENV_NESTED_DELIMITER not in key and _SERVICE_LINK.fullmatch(key):
            continue
        parts = key[len(ENV_PREFIX) :].lower().split(ENV_NESTED_DELIMITER)
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                unknown.append(key)
                break
            node = child
        else:
            node[parts[-1]] = value
    if unknown:
        raise SettingsError([f"{key}: conflicts with another variable" for key in unknown])
    tree.update(overrides)
    return Settings.model_validate(tree)


def env_name(loc: tuple[str | int, ...]) -> str:
    """``("upstream", "url")`` -> ``MWM_UPSTREAM__URL``."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(parts).upper()


def describe_validation_error(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        field, sep, rest = message.partition(": ")
        if sep and field.isidentifier() and field.islower():
            # A group validator names the field it rejected: point at that variable.
            loc, message = (*loc, field), rest
        name = env_name(loc) if loc else "settings"
        problems.append(f"{name}: {message}")
    return problems
