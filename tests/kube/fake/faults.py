"""Fault injection and the request log: what a test uses to break and observe the fake.

A rule matches on the HTTP method, a regular expression searched in the path, and optionally
any predicate over the recorded request; it fires a given number of times (``None``: forever).

Every request is logged when it arrives (:class:`RecordedRequest`) and again when it is over
(:class:`Answer`): the order of answers is the order in which the server accepted writes, and
a request whose client went away before the answer is logged as never answered.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: Mapping[str, str]
    content_type: str
    body: Any
    """The parsed JSON body, or None when empty or not JSON (see ``raw_body``)."""
    raw_body: bytes
    headers: Mapping[str, str]
    received_at: float = 0.0
    """The event loop's clock when the request arrived (to check waits without sleeping)."""

    @property
    def user_agent(self) -> str:
        return self.headers.get("User-Agent", "")

    @property
    def is_watch(self) -> bool:
        return self.query.get("watch", "").lower() in ("true", "1")


RequestPredicate = Callable[[RecordedRequest], bool]


@dataclass(frozen=True)
class Answer:
    """How one logged request ended."""

    request: RecordedRequest
    status: int | None
    """The HTTP status sent (0: the connection was dropped on purpose); None when the client
    went away first, so nothing was applied (a held write abandoned by its client, say)."""
    at: float
    """The event loop's clock when the request was over."""

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Matcher:
    method: str | None = None
    path: str | None = None
    """A regular expression, searched (``re.search``) in the request path."""
    when: RequestPredicate | None = None

    def matches(self, request: RecordedRequest) -> bool:
        if self.method is not None and self.method.upper() != request.method:
            return False
        if self.path is not None and re.search(self.path, request.path) is None:
            return False
        return self.when is None or self.when(request)


@dataclass(eq=False)
class Fault:
    """A rule the fake applies to matching requests; ``hits`` counts the times it fired."""

    matcher: Matcher
    times: int | None
    status: int = 500
    """The HTTP status to answer; 0 means drop the connection instead of answering."""
    reason: str | None = None
    message: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    hits: int = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def take(self, request: RecordedRequest) -> bool:
        if self.exhausted or not self.matcher.matches(request):
            return False
        self.hits += 1
        return True


class Gate(asyncio.Event):
    """Holds matching requests until the test calls :meth:`set`.

    ``arrived`` is set once a request is being held (``held`` lists them), so a test can wait
    for the request to be in flight, act, then release it.
    """

    def __init__(self, matcher: Matcher, times: int | None) -> None:
        super().__init__()
        self.matcher = matcher
        self.times = times
        self.arrived = asyncio.Event()
        self.held: list[RecordedRequest] = []

    def take(self, request: RecordedRequest) -> bool:
        if self.times is not None and len(self.held) >= self.times:
            return False
        if not self.matcher.matches(request):
            return False
        self.held.append(request)
        self.arrived.set()
        return True
