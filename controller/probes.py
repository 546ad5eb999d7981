"""Health probes for the cluster-less source, and the hysteresis that smooths them.

One failed probe is not an outage: a garbage-collection pause or a dropped packet
would otherwise flip the whole site into maintenance and back.  A :class:`Prober`
therefore counts consecutive results the way Kubernetes readiness probes do: a ready
service turns not-ready only after ``failure_threshold`` failures in a row, and back
after ``success_threshold`` successes in a row.

The probe functions never raise for a failing target: refusal, timeouts and bad
statuses are ordinary :class:`ProbeResult` values with a short human ``detail`` for the
log.  Cancellation always propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str
    """What was seen, for people: ``HTTP 503``, ``connection refused``, ``timeout after 2.0s``."""


def _describe_connect_error(error: OSError) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return f"connection failed: {error.strerror or error}"


async def probe_http(
    session: aiohttp.ClientSession,
    url: str,
    *,
    expect_status: frozenset[int] | None,
    timeout_s: float,
) -> ProbeResult:
    """GET ``url`` once; healthy when the status is expected (default: any 2xx or 3xx).

    Redirects are not followed (a redirect to a login page is not health) and the body is
    never read: only the status line matters.
    """
    try:
        async with (
            asyncio.timeout(timeout_s),
            session.get(url, allow_redirects=False) as response,
        ):
            status = response.status
    except TimeoutError:
        return ProbeResult(ok=False, detail=f"timeout after {timeout_s}s")
    except aiohttp.ClientConnectorError as exc:
        return ProbeResult(ok=False, detail=_describe_connect_error(exc.os_error))
    except aiohttp.ServerDisconnectedError:
        return ProbeResult(ok=False, detail="server closed the connection without answering")
    except aiohttp.ClientError as exc:
        return ProbeResult(ok=False, detail=f"{type(exc).__name__}: {exc}")
    except OSError as exc:
        return ProbeResult(ok=False, detail=_describe_connect_error(exc))
    ok = status in expect_status if expect_status else 200 <= status < 400
    return ProbeResult(ok=ok, detail=f"HTTP {status}")


async def probe_tcp(host: str, port: int, *, timeout_s: float) -> ProbeResult:
    """Open a TCP connection to ``host:port`` and close it again; healthy if it opened."""
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return ProbeResult(ok=False, detail=f"timeout after {timeout_s}s")
    except OSError as exc:
        return ProbeResult(ok=False, detail=_describe_connect_error(exc))
    writer.close()
    # The connection already proved the point; a slow or failing close changes nothing.
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(timeout_s):
            await writer.wait_closed()
    return ProbeResult(ok=True, detail="TCP connection accepted")


ProbeCheck = Callable[[], Awaitable[ProbeResult]]


class Prober:
    """Runs one service's probe on an interval and decides its readiness with thresholds.

    ``ready`` is None until the first probe completes (the service is not yet known).
    The first result decides directly: at start there is no known-good state to protect
    from a blip, and waiting for ``failure_threshold`` probes would leave the service
    unknown for that many intervals.
    """

    def __init__(
        self,
        check: ProbeCheck,
        *,
        interval_s: float,
        failure_threshold: int,
        success_threshold: int,
    ) -> None:
        self._check = check
        self._interval_s = interval_s
        self._failure_threshold = failure_threshold
        self._success_threshold = success_threshold
        self._failures = 0
        self._successes = 0
        self.ready: bool | None = None
        self.last_result: ProbeResult | None = None

    def record(self, result: ProbeResult) -> bool:
        """Account for one probe result; return True when ``ready`` changed."""
        self.last_result = result
        if result.ok:
            self._successes += 1
            self._failures = 0
        else:
            self._failures += 1
            self._successes = 0
        before = self.ready
        if before is None:
            self.ready = result.ok
        elif before and self._failures >= self._failure_threshold:
            self.ready = False
        elif not before and self._successes >= self._success_threshold:
            self.ready = True
        return self.ready != before

    async def run(self, on_change: Callable[[Prober], None]) -> None:
        """Probe until cancelled; call ``on_change`` (synchronously) when readiness flips."""
        while True:
            try:
                result = await self._check()
            except Exception as exc:
                # A bug in a probe must not take the proxy down; it counts as a failure.
                log.exception("probe raised unexpectedly")
                result = ProbeResult(ok=False, detail=f"probe error: {type(exc).__name__}")
            if self.record(result):
                on_change(self)
            await asyncio.sleep(self._interval_s)
