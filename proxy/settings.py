"""All settings, read once at start-up from ``MWM_*`` environment variables.

Groups nest with ``__``: ``MWM_UPSTREAM__URL``, ``MWM_BYPASS__PATH_PREFIXES``.  Lists
accept JSON (``["/admin","/ops"]``) or a comma-separated string (``/admin,/ops``).
Every secret is a :class:`~pydantic.SecretStr` that may also be read from a file
(``..._FILE``, for Kubernetes Secret mounts).  Library code never reads the
environment: :func:`load_settings` is called by the CLI and the result passed down.

The loader is pydantic-settings' (:class:`Settings` is its ``BaseSettings``, read through
two custom sources); what it would let pass is checked first by :class:`EnvironReading`:
unknown ``MWM_`` variables, and a secret given both directly and as a file.
"""

from __future__ import annotations

import contextvars
import difflib
import enum
import functools
import json
import os
import re
from collections.abc import Iterator, Mapping
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as SourceError

from controller.settings import (
    OptionalPath,
    SettingsGroup,
    SourceSettings,
    StrList,
    empty_is_none,
    split_list,
)
from proxy.catalogs import available_languages, builtin_template_dir, language_tag
from proxy.hopbyhop import HOP_BY_HOP
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
    """Every entry an address or a CIDR block; every bad entry is named, not just the first."""
    value = split_list(value)
    if not isinstance(value, list):
        return value
    networks: list[object] = []
    bad: list[str] = []
    for entry in value:
        if isinstance(entry, IPv4Network | IPv6Network):
            networks.append(entry)
            continue
        try:
            if not isinstance(entry, str):  # ip_network(1) would be 0.0.0.1/32
                raise TypeError(entry)
            networks.append(ip_network(entry, strict=False))
        except (TypeError, ValueError):
            bad.append(repr(entry))
    if bad:
        raise ValueError(
            f"not an address or CIDR block: {', '.join(bad)} "
            "(write them like 10.0.0.0/8, 192.168.1.7 or 2001:db8::/32)"
        )
    return networks


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


SECRET_FIELDS = (("bypass", "token"), ("bypass", "cookie_secret"), ("management", "admin_token"))
"""Secrets that may be given directly or as ``..._FILE`` (a path), never both."""
MIN_TOKEN_LENGTH = 16
"""Shorter bypass or admin tokens get a warning from ``mwm check-config``."""


def _both_set(group: str, field: str) -> str:
    """The problem of a secret given both directly and as a file (one wording everywhere)."""
    return (
        f"{env_name((group, field + '_file'))}: set together with {env_name((group, field))}; "
        "set only one of the two"
    )


def _pick_secret(
    value: SecretStr | None, path: Path | None, group: str, field: str
) -> SecretStr | None:
    """The secret from ``field`` or from the file ``field_file``; both set is an error (which
    one should win is a guess, and a wrong guess locks admins out or lets others in)."""
    if value is not None and path is not None:
        message = _both_set(group, field)
        raise ValueError(f"{field}_file: {message.partition(': ')[2]}")
    from_file = _read_secret_file(path, f"{field}_file")
    return from_file if from_file is not None else value


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
    fast_lane: bool = True
    """Serve the common request (a keep-alive HTTP/1.1 GET or HEAD without a body, forwarded
    or given the page; a small form or API call, its body framed by its length) on the
    public listener's own connection protocol rather than aiohttp's server: the same
    answers at a fraction of the CPU (see proxy/fastlane.py).
    Off when the access log is on; ``false`` sends every request through aiohttp's server."""


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
    max_per_client: int = Field(default=0, ge=0)
    """Most upstream connections one client address may hold or wait for at once (0: no
    cap).  Over it a request gets the 503 "busy" page with ``Retry-After`` at once, so one
    client cannot take the pool from everyone else.  The address is the one the bypass rules
    see (after ``MWM_FORWARDED__TRUSTED_HOPS``); an IPv6 client counts by its /64, what one
    subscriber is given.  Counted per worker process, like ``pool_size``.  Off by default:
    until the trusted hops are right every client behind a load balancer shares its address,
    and a NAT or office proxy is one address for many people; set it then to a fraction of
    ``pool_size`` (a browser opens at most 6 connections per site over HTTP/1.1).  503
    rather than 429 because mwm cannot tell one client from many behind one address, and a
    retry later does help (nginx's ``limit_conn`` answers 503 too)."""
    body_min_rate_bytes_s: int = Field(default=500, ge=0)
    """Slowest a request body may arrive, in bytes per second, averaged over each
    ``MWM_LIMITS__BODY_TIMEOUT_S`` spent waiting for it (0: no minimum); slower is cut like
    a silent body (408, and the upstream request aborted).  Bodies stream to the upstream,
    so an upload holds an upstream connection while it lasts: without a minimum, a client
    sending a byte just inside every silence timeout holds one for as long as it likes.  A
    rate, unlike a deadline for the whole body, never cuts a large upload on a slow link;
    only time spent waiting for the client counts, so a body held back by a slow upstream is
    never cut.  500 bytes/s is Apache's ``mod_reqtimeout`` ``MinRate``, 4 kbit/s: below any
    real link.  Set 0 in front of an app that takes slow streaming request bodies."""
    client_send_timeout_s: float = Field(default=60.0, ge=0)
    """Longest time a write of a streamed response may wait for the client to read, in
    seconds (0: no limit); the client connection is then aborted and the upstream connection
    released.  A response streams with backpressure, so a client that stops reading holds an
    upstream connection while it waits: without a bound, a few clients that never read a
    large download take the pool.  It bounds each write, not the whole response, so a slow
    but reading client is never cut.  nginx's ``send_timeout`` (also 60 s)."""

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
    """Most header fields in a request; more gets 431.  Browsers send about 20."""
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    """Most bytes in a whole request head (request line and every header field); more gets
    431 and the connection is closed.  The two limits above alone let one unfinished head
    hold 128 fields of 16 KiB (the parser keeps them two or three times over: about 4 MiB
    per connection); with this bound, and the head held as sent until it is complete, one
    costs its size.  32 KiB is nginx's default total (``large_client_header_buffers``, 4 x
    8 KiB): one field at ``max_header_field_bytes`` and room for the rest; 1,000
    connections each holding an unfinished head just under it take about 35 MiB."""
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
    keep_routing_headers: bool = False
    """Pass ``X-Original-URL``, ``X-Rewrite-URL``, ``X-Original-URI`` and ``X-Forwarded-Uri``
    on to the upstream.  Off: they are removed from every request, because an application
    that routes by them would serve another path than the one the bypass rules checked
    (``GET /admin`` with ``X-Original-URL: /checkout``).  Turn it on only when a proxy in
    front of mwm sets them itself (replacing any a client sent) and the application needs
    them."""


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
    """Visiting ``<cookie_path>/<token>`` sets the bypass cookie and redirects to
    ``redirect_to``; ``GET <cookie_path>/off`` (or ``DELETE <cookie_path>``) clears it."""
    redirect_to: str = "/"
    """Where both bypass URLs redirect: a path on this site (``/``, ``/shop/?preview=1``).
    Absolute URLs, ``//host`` and backslashes are refused, so the URLs cannot redirect
    off-site."""
    encoded_slashes: EncodedSlashes = EncodedSlashes.REJECT
    """``reject``: paths with ``%2F`` get 400, because an upstream that decodes it before
    routing could see a different path than the bypass rules checked.  ``keep``: ``%2F`` is
    forwarded as is (upper-case hex) and is part of its segment for the bypass rules (a prefix
    never matches across it); a path is still refused when decoding its ``%2F`` would make a
    dot segment (``.``/``..``, also with ``;params``) or ``//``.  Encoded backslash, NUL and
    control characters are refused either way."""

    @field_validator("path_prefixes")
    @classmethod
    def _usable_prefixes(cls, value: list[str]) -> list[str]:
        bad = []
        for prefix in value:
            try:
                normalize_path(prefix)
            except InvalidPath as exc:
                bad.append(f"{prefix!r} is not a usable path: {exc}")
        if bad:  # every bad entry at once
            raise ValueError("path_prefixes: " + "; ".join(bad))
        return value

    @field_validator("redirect_to")
    @classmethod
    def _same_site_target(cls, value: str) -> str:
        if not value.startswith("/") or value.startswith("//"):
            raise ValueError(f"{value!r} must be a path on this site starting with a single '/'")
        if "\\" in value or any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError(
                f"{value!r} must not contain backslashes, spaces or control characters"
            )
        return value

    @model_validator(mode="after")
    def _read_files(self) -> Self:
        self.token = _pick_secret(self.token, self.token_file, "bypass", "token")
        self.cookie_secret = _pick_secret(
            self.cookie_secret, self.cookie_secret_file, "bypass", "cookie_secret"
        )
        if not self.cookie_path.startswith("/"):
            raise ValueError("cookie_path: must start with '/'")
        if self.cookie_path.strip("/") == "":
            # <cookie_path>/off and DELETE <cookie_path> would be taken from the app: its
            # "/off" page and every DELETE of "/" would end bypass sessions instead.
            raise ValueError(
                "cookie_path: '/' would take the app's /off and DELETE / for ending bypass "
                "sessions; use a path of its own such as /_mwm/bypass"
            )
        if self.token is not None and self.token.get_secret_value() == "off":
            raise ValueError(
                "token: 'off' is taken: <cookie_path>/off ends a bypass session, so that bypass "
                "URL could never set the cookie; choose another token"
            )
        return self


def _zero_is_off(value: object) -> object:
    """``0`` or empty switches an optional delay off (None)."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "0")):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return None
    return value


class PageSettings(SettingsGroup):
    template_dir: OptionalPath = None
    """Directory whose templates override the built-in ones (same file names)."""
    title: str = "Down for maintenance"
    message: str = "We are performing maintenance and will be back shortly."
    contact: str | None = None
    """Shown on the page, e.g. a status-page URL or an e-mail address."""
    retry_after_s: int = Field(default=300, ge=0)
    """Retry-After seconds when the end of maintenance is not known."""
    refresh_s: Annotated[int | None, BeforeValidator(_zero_is_off)] = Field(default=60, ge=0)
    """Adds a ``Refresh`` header to the HTML page so browsers retry by themselves (pages
    without JavaScript come back too); 0 or empty: no header."""
    show_services: bool = True
    """List affected service names on the page; switch off to keep them private."""
    return_spread_s: float = Field(default=5.0, ge=0)
    """When maintenance ends, each open page reloads after a random delay up to this, so
    that thousands of pages do not all come back in the same second."""
    default_language: str = "en"
    """The page language when ``Accept-Language`` names none we have; ``en`` or a language
    with a catalog (built-in: de, fr; or one in ``<template_dir>/locale``)."""

    @field_validator("default_language")
    @classmethod
    def _known_language(cls, value: str, info: ValidationInfo) -> str:
        tag = language_tag(value)
        available = available_languages(builtin_template_dir(), info.data.get("template_dir"))
        if tag is None or tag not in available:
            raise ValueError(
                f"no catalog for {value!r} (available: {', '.join(sorted(available))})"
            )
        return tag


class ManagementSettings(SettingsGroup):
    admin_token: OptionalSecret = None
    """Token for the admin API (``Authorization: Bearer``); unset disables the admin API."""
    admin_token_file: OptionalPath = None
    readiness_drain: bool = False
    """Fail /readyz during maintenance.  Off by default: a not-ready proxy is removed from
    the Service and users see the load balancer's generic error instead of our page."""
    public_services_path: Annotated[str | None, BeforeValidator(empty_is_none)] = "/services"
    """Also answer /services on the public listener here; empty disables it."""
    history_size: int = Field(default=50, ge=1, le=10_000)
    """Maintenance transitions (on/off) the dashboard at ``/`` remembers, newest first."""
    dashboard_poll_s: float = Field(default=5.0, ge=0.5, le=3600)
    """How often the dashboard polls ``/status`` when its live stream is not available."""

    @model_validator(mode="after")
    def _read_files(self) -> Self:
        self.admin_token = _pick_secret(
            self.admin_token, self.admin_token_file, "management", "admin_token"
        )
        return self


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP token (RFC 9110 section 5.6.2): what a header name is made of."""
_RESERVED_HEADERS = HOP_BY_HOP | {
    "content-length",
    "content-type",
    "content-encoding",
    "content-range",
    "cache-control",
    "date",
    "etag",
    "location",
    "server",
    "set-cookie",
    "vary",
}
"""Header names an announcement must not take: framing, caching and the proxy's own."""
_ORIGIN = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")
"""A browser's ``Origin``: scheme, host and optional port, nothing else."""


class StatusSettings(SettingsGroup):
    """``GET <prefix>status`` on the public listener: a public-safe JSON summary for
    frontends (a banner, a status widget), answered whether maintenance is on or not; and
    its Server-Sent Events stream, ``<prefix>status/stream`` (with ``/status/stream`` on
    the management listener)."""

    prefix: Annotated[str | None, BeforeValidator(empty_is_none)] = "/_mwm/"
    """Path prefix of the public status document (``<prefix>status``); empty disables it."""
    cors_origins: StrList = Field(default_factory=list)
    """Origins (``https://shop.example``) allowed to read the status document from a
    browser, or ``*`` for any; empty: no CORS headers."""
    announce_header: Annotated[str | None, BeforeValidator(empty_is_none)] = None
    """Name of a response header (``X-Maintenance-Announced``, say) that forwarded responses
    carry while the next scheduled window is announced (its ``announceSeconds``), with the
    window's start in RFC 3339, so a frontend can show a banner without calling anything.
    Unset: off.  Never on the maintenance and error pages (the page says it already)."""
    heartbeat_s: float = Field(default=15.0, gt=0)
    """Seconds between heartbeat comments on every open status stream (one timer for all),
    which keep idle connections open through proxies and drop clients that have gone."""
    max_subscribers: int = Field(default=10000, ge=0)
    """Open status streams allowed per listener (public, management); over it a new one
    gets 503 with ``Retry-After``.  0 switches the streams off."""
    stream_retry_s: float = Field(default=5.0, gt=0)
    """The reconnection delay a status stream tells its clients (SSE ``retry:``), seconds."""

    @field_validator("prefix")
    @classmethod
    def _usable_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("/") or not value.endswith("/"):
            raise ValueError("must start and end with '/' (like /_mwm/)")
        try:
            if normalize_path(value + "status") != value + "status":
                raise InvalidPath("not in normal form")
        except InvalidPath as exc:
            raise ValueError(f"{value!r} is not a usable path: {exc}") from exc
        return value

    @field_validator("announce_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _TOKEN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a header name (letters, digits and !#$%&'*+.^_`|~-, "
                "e.g. X-Maintenance-Announced)"
            )
        if value.lower() in _RESERVED_HEADERS:
            raise ValueError(
                f"{value!r} is a header the proxy or HTTP itself manages; pick another name "
                "(e.g. X-Maintenance-Announced)"
            )
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        bad = [repr(o) for o in value if o != "*" and not _ORIGIN.fullmatch(o)]
        if bad:
            raise ValueError(
                f"not an origin: {', '.join(bad)} (write scheme://host[:port], no path, or *)"
            )
        return value


class HoldSettings(SettingsGroup):
    """Hold-then-fail: while a critical service has just become not ready, requests that
    would get the page wait (held, up to its ``holdSeconds`` or ``seconds`` here, counted
    from the moment it went down) and go to the upstream if it recovers in time, else get
    the page.  A manual switch or a window is never held."""

    seconds: float = Field(default=0.0, ge=0)
    """How long to hold requests after a critical service without a ``holdSeconds`` of its
    own goes down, in seconds; 0: not held."""
    max_requests: int = Field(default=1000, ge=0)
    """Requests held at once per worker process; beyond it a request gets the page at once.
    0 switches holding off (a service's ``holdSeconds`` too)."""
    max_body_bytes: int = Field(default=65536, ge=0)
    """A request is held only if its body is at most this long (its ``Content-Length``;
    a chunked body of unknown length is never held): the page at once otherwise.  The
    body is not read while held: it waits in the connection, so this bounds what a held
    request can make the proxy keep."""


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
    """The root of all settings; see the README's table for every variable.

    Read by pydantic-settings from two sources (:meth:`settings_customise_sources`):
    :class:`EnvironSource` for the ``MWM_*`` variables and :class:`SecretFileSource` for
    the ``MWM_*_FILE`` ones, both over one :class:`EnvironReading` of a mapping (the
    process environment unless :func:`load_settings` is given another).  Keyword
    arguments (``load_settings``'s overrides) win over both.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,  # MWM_UPSTREAM__URL names the field upstream.url
        env_ignore_empty=False,  # an empty secret or path means "not set" (empty_is_none)
        env_parse_none_str=None,  # "null" is a string, as it always was
        env_parse_enums=False,  # enum values, not member names (``keep``, not ``KEEP``)
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
    status: StatusSettings = Field(default_factory=StatusSettings)
    hold: HoldSettings = Field(default_factory=HoldSettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    source: SourceSettings = Field(default_factory=SourceSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the ``MWM_`` variables, then the ``MWM_*_FILE`` secrets;
        no ``.env`` file and no secrets directory.  The variables come from the reading
        :func:`load_settings` is making; built directly (``Settings()``), from the process
        environment, and any problem with them is raised at once."""
        reading = _READING.get()
        if reading is None:
            reading = EnvironReading(os.environ, raise_problems=True)
        return (
            init_settings,
            EnvironSource(settings_cls, reading),
            SecretFileSource(settings_cls, reading),
        )


class SettingsError(Exception):
    """Settings could not be loaded; ``problems`` lists every one, as ``VARIABLE: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class EnvironReading:
    """One reading of an environment: which ``MWM_`` variables are settings, which name
    secret files, and the problems no model validation can see.

    Skipped: variables without the ``MWM_`` prefix (case-sensitive, as it always was), the
    client's ``MWM_MANAGEMENT_URL`` and Kubernetes service links.  Problems, in the order
    they are reported: unknown variables (with a suggestion), then secrets given both
    directly and as a file.
    """

    def __init__(self, environ: Mapping[str, str], *, raise_problems: bool = False) -> None:
        self.variables: dict[str, str] = {}
        """The settings variables, ``MWM_*_FILE`` excluded (:class:`EnvironSource`)."""
        self.secret_files: dict[str, str] = {}
        """The ``MWM_*_FILE`` variables (:class:`SecretFileSource`)."""
        self.problems: list[str] = []
        self.raise_problems = raise_problems
        known = setting_names()
        files = {env_name((group, field + "_file")) for group, field in SECRET_FIELDS}
        for key, value in environ.items():
            if not key.startswith(ENV_PREFIX) or key in CLIENT_VARIABLES:
                continue
            if ENV_NESTED_DELIMITER not in key and _SERVICE_LINK.fullmatch(key):
                continue
            if key.upper() not in known:
                self.problems.append(f"{key}: unknown setting{did_you_mean(key)}")
            elif key.upper() in files:
                self.secret_files[key.upper()] = value
            else:
                self.variables[key] = value
        given = {key.upper() for key, value in self.variables.items() if value}
        for group, field in SECRET_FIELDS:
            if env_name((group, field)) in given and self.secret_files.get(
                env_name((group, field + "_file"))
            ):
                self.problems.append(_both_set(group, field))

    def check(self) -> None:
        """Raise the problems now, for a reading nobody will collect them from."""
        if self.raise_problems and self.problems:
            raise SettingsError(self.problems)


_READING: contextvars.ContextVar[EnvironReading | None] = contextvars.ContextVar(
    "mwm_settings_reading", default=None
)
"""The reading :func:`load_settings` is making, for :meth:`Settings.settings_customise_sources`
(a class method: the mapping cannot reach it as an argument)."""


class EnvironSource(EnvSettingsSource):
    """pydantic-settings' own environment source (prefix, ``__`` nesting, ``NoDecode`` lists),
    reading the settings variables of one :class:`EnvironReading` instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], reading: EnvironReading) -> None:
        self.reading = reading  # before super().__init__, which loads the variables
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            key if self.case_sensitive else key.lower(): value
            for key, value in self.reading.variables.items()
        }

    def __call__(self) -> dict[str, Any]:
        self.reading.check()
        return super().__call__()


class SecretFileSource(PydanticBaseSettingsSource):
    """The ``MWM_<GROUP>__<SECRET>_FILE`` variables, as ``<group>.<secret>_file`` paths.

    The group's validator reads the file (so a model built in code reads it too) and
    refuses a secret given both ways; a clash in the environment is already one of the
    reading's problems, and such a file is left out so it is reported once.
    """

    def __init__(self, settings_cls: type[BaseSettings], reading: EnvironReading) -> None:
        super().__init__(settings_cls)
        self.reading = reading

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # every value comes from __call__

    def __call__(self) -> dict[str, Any]:
        values: dict[str, dict[str, str]] = {}
        for group, field in SECRET_FIELDS:
            path = self.reading.secret_files.get(env_name((group, field + "_file")))
            if path is None or _both_set(group, field) in self.reading.problems:
                continue
            values.setdefault(group, {})[field + "_file"] = path
        return values


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from ``environ`` (default: the process environment) and
    ``overrides`` (``upstream={"url": ...}``, winning over the variables).

    Only ``environ`` is read, never ``os.environ`` besides.  Raises :class:`SettingsError`
    with every problem found (unknown variables, secrets given twice, every value that does
    not validate), never a traceback.
    """
    reading = EnvironReading(os.environ if environ is None else environ)
    problems = reading.problems
    token = _READING.set(reading)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems.extend(p for p in describe_validation_error(exc) if p not in problems)
    except (SourceError, ValueError) as exc:  # a value the source could not decode
        problems.append(str(exc))
    else:
        if not problems:
            return settings
    finally:
        _READING.reset(token)
    raise SettingsError(problems)


def _leaf_names(model: type[BaseModel], path: tuple[str, ...]) -> Iterator[str]:
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _leaf_names(annotation, (*path, name))
        else:
            yield env_name((*path, name))


@functools.cache
def setting_names() -> frozenset[str]:
    """Every settings variable, ``MWM_LISTEN__PUBLIC_HOST`` and so on."""
    return frozenset(_leaf_names(Settings, ()))


def did_you_mean(variable: str) -> str:
    """`` (did you mean MWM_X__Y?)`` for a misspelt variable, or ``""`` when nothing is close."""
    names = sorted(setting_names())
    bare = {name.removeprefix(ENV_PREFIX): name for name in names}
    typed = variable.upper().removeprefix(ENV_PREFIX)
    squeezed = re.sub("_+", "_", typed)
    # One underscore where two belong (MWM_UPSTREAM_URL), or the other way round.
    guesses = [name for name in names if re.sub("_+", "_", name) == ENV_PREFIX + squeezed]
    if not guesses:
        guesses = [bare[b] for b in difflib.get_close_matches(typed, bare, n=1, cutoff=0.6)]
    if not guesses:  # the group left out: MWM_TOKEN for MWM_BYPASS__TOKEN
        last = typed.rsplit(ENV_NESTED_DELIMITER, 1)[-1]
        guesses = [n for n in names if n.rsplit(ENV_NESTED_DELIMITER, 1)[-1] == last][:3]
    return f" (did you mean {' or '.join(guesses)}?)" if guesses else ""


def env_name(loc: tuple[str | int, ...]) -> str:
    """``("upstream", "url")`` -> ``MWM_UPSTREAM__URL``."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(parts).upper()


def describe_validation_error(exc: ValidationError) -> list[str]:
    """One ``VARIABLE: problem`` line per variable and problem, in plain words.

    A list's bad entries are gathered on the line of their variable, each named; a list
    that looks like JSON but does not parse is explained without the parser's jargon.
    """
    problems: list[str] = []
    entries: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        cause = (error.get("ctx") or {}).get("error")
        if error["type"] == "extra_forbidden":
            message = "unknown setting" + did_you_mean(env_name(loc))
        elif isinstance(cause, json.JSONDecodeError):
            message = _bad_json_list(cause)
        field, sep, rest = message.partition(": ")
        if sep and field.isidentifier() and field.islower():
            # A validator names the field it rejected: point at that variable.
            if not loc or loc[-1] != field:
                loc = (*loc, field)
            message = rest
        name = env_name(loc) if loc else "settings"
        if loc and isinstance(loc[-1], int):
            # One entry of a list (its value is shown: lists hold no secrets).
            entry = f"entry {loc[-1] + 1} ({error['input']!r}): {message}"
            if name not in entries:
                entries[name] = []
                problems.append(name)  # a placeholder, filled in below
            entries[name].append(entry)
            continue
        problems.append(f"{name}: {message}")
    return [f"{p}: {'; '.join(entries[p])}" if p in entries else p for p in problems]


def weak_secret_warnings(settings: Settings) -> list[str]:
    """Warnings (for ``mwm check-config``) about bypass and admin tokens shorter than
    :data:`MIN_TOKEN_LENGTH`; they name the variable, never the token."""
    bypass, management = settings.bypass, settings.management
    checks = (
        ("bypass", "token", bypass.token, bypass.token_file, "gets past the maintenance page"),
        (
            "management",
            "admin_token",
            management.admin_token,
            management.admin_token_file,
            "can switch maintenance on and off",
        ),
    )
    warnings = []
    for group, field, secret, path, risk in checks:
        if secret is None or len(secret.get_secret_value()) >= MIN_TOKEN_LENGTH:
            continue
        where = (
            f"{env_name((group, field + '_file'))}: the token in {path}"
            if path is not None
            else f"{env_name((group, field))}: the token"
        )
        warnings.append(
            f"{where} is shorter than {MIN_TOKEN_LENGTH} characters, and whoever guesses it "
            f"{risk}; use a long random one "
            "(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    return warnings


def _bad_json_list(exc: json.JSONDecodeError) -> str:
    return (
        f"starts with '[' but is not a JSON list (it breaks at character {exc.pos + 1}); "
        'write ["a","b"] with double quotes, or a,b without brackets'
    )
