"""Who passes during maintenance: the four bypass rules and the order they are tried in.

A :class:`BypassPolicy` is built once from :class:`~proxy.settings.BypassSettings` and
asked per blocked request.  Rules are tried cheapest first (path, client network, header
token, signed cookie) and the first that matches is returned, so metrics can say which
rule let a request through.  Every near miss is a plain non-match: a wrong, duplicated or
truncated credential simply leaves the request blocked.  Nothing here logs, so no secret
can leak through a log line.
"""

from __future__ import annotations

import enum
import functools
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TYPE_CHECKING

from proxy.cookie import CookieSigner, derive_cookie_key
from proxy.pathnorm import normalize_path

if TYPE_CHECKING:
    from proxy.decision import RequestView
    from proxy.settings import BypassSettings

__all__ = ["BypassPolicy", "BypassRule", "normalize_prefix"]


class BypassRule(enum.StrEnum):
    """The rule that let a request through (a metrics label)."""

    PATH = "path"
    TOKEN = "token"  # noqa: S105 (a rule name, not a secret)
    CIDR = "cidr"
    COOKIE = "cookie"


def normalize_prefix(prefix: str) -> str:
    """The stored form of a configured path prefix: normalized like a request path, without
    a trailing slash, so ``/admin/`` and ``/%61dmin`` both mean ``/admin``.  The root ``/``
    becomes ``""``, which matches every path.  Raises
    :class:`~proxy.pathnorm.InvalidPath` (a ``ValueError``) for a prefix no request
    path could ever match."""
    return normalize_path(prefix).rstrip("/")


@dataclass(frozen=True, slots=True)
class BypassPolicy:
    """The bypass rules in force; empty fields disable their rule."""

    path_prefixes: tuple[str, ...]
    """Normalized, without trailing slash (``"/admin"``; ``""`` is the root), see
    :func:`normalize_prefix`.  Matched segment-wise against the normalized path."""
    token: bytes | None = field(repr=False)
    """The header token (UTF-8 bytes); None disables the header rule.  Kept out of repr."""
    networks: tuple[IPv4Network | IPv6Network, ...]
    """Client networks that always pass."""
    cookie: CookieSigner | None
    """Verifies bypass cookies; None disables the cookie rule."""
    _segment_prefixes: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """Each prefix plus ``/``: ``path + "/"`` starting with one of them is a segment-wise
    match, in a single ``str.startswith`` call."""
    _allowed: Callable[[IPv4Address | IPv6Address], bool] = field(
        init=False, repr=False, compare=False
    )
    """Whether an address is in :attr:`networks`, remembered for the last 4,096 addresses
    (each network's ``in`` is a few microseconds of Python)."""

    def __post_init__(self) -> None:
        for prefix in self.path_prefixes:
            if normalize_prefix(prefix or "/") != prefix:
                raise ValueError(f"path prefix {prefix!r} is not normalized")
        if self.token == b"":
            raise ValueError("token must not be empty (None disables the header rule)")
        object.__setattr__(self, "_segment_prefixes", tuple(p + "/" for p in self.path_prefixes))
        networks = self.networks
        object.__setattr__(
            self,
            "_allowed",
            functools.lru_cache(maxsize=4096)(
                lambda address: any(address in network for network in networks)
            ),
        )

    @classmethod
    def from_settings(cls, settings: BypassSettings) -> BypassPolicy:
        token = settings.token.get_secret_value() if settings.token is not None else None
        secret = settings.cookie_secret
        key = derive_cookie_key(
            cookie_secret=secret.get_secret_value() if secret is not None else None,
            token=token,
        )
        return cls(
            path_prefixes=tuple(dict.fromkeys(normalize_prefix(p) for p in settings.path_prefixes)),
            token=token.encode("utf-8", "surrogateescape") if token else None,
            networks=tuple(settings.allow_cidrs),
            cookie=CookieSigner(key, lifetime_s=settings.cookie_lifetime_s) if key else None,
        )

    def match(self, view: RequestView, *, now: float) -> BypassRule | None:
        """The first rule that lets ``view`` through, or None.  ``now`` (unix seconds) is
        for cookie expiry."""
        if self._segment_prefixes and (view.path + "/").startswith(self._segment_prefixes):
            return BypassRule.PATH
        if self.networks and view.client is not None and self._client_allowed(view):
            return BypassRule.CIDR
        if self.token is not None and self._token_presented(view.bypass_tokens):
            return BypassRule.TOKEN
        if self.cookie is not None and view.bypass_cookies:
            verify = self.cookie.verify
            if any(verify(value, now=now) for value in view.bypass_cookies):
                return BypassRule.COOKIE
        return None

    def _client_allowed(self, view: RequestView) -> bool:
        client = view.client
        assert client is not None
        # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; they belong to IPv4 rules.
        address: IPv4Address | IPv6Address = client
        if isinstance(client, IPv6Address) and client.ipv4_mapped is not None:
            address = client.ipv4_mapped
        # An IPv4 address is never "in" an IPv6 network and vice versa (no exception).
        return self._allowed(address)

    def _token_presented(self, values: tuple[str, ...]) -> bool:
        # Exactly one value: two headers might be read differently by two layers, and
        # accepting "any of them" would let a client try several tokens per request.
        if len(values) != 1 or not values[0]:
            return False
        try:
            presented = values[0].encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return False
        assert self.token is not None
        return hmac.compare_digest(presented, self.token)
