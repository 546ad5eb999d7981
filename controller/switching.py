"""Switching a ServiceChecker's maintenance from the command line (``mwm on/off``).

The switch is the resource's ``spec.maintenance``; every replica of every proxy that
honours the resource sees the change through its watch.  After patching, the caller
can wait until the controller has observed the new generation, so the status it then
prints is the result of the switch and not the state before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from datetime import datetime

from controller.kube import SERVICECHECKERS, JsonObject, KubeApi, KubeError
from controller.snapshot import Mode
from controller.timefmt import rfc3339_exact

RETRY_INITIAL_S = 0.25
"""The first pause after a failed (or ended) watch or a failed read, doubling after each."""
RETRY_MAX_S = 4.0
"""The longest pause between two attempts (a 429's ``Retry-After`` too is capped to it)."""
RETRY_JITTER = 0.5
"""Fraction of each pause that is random, so several ``mwm on`` runs do not retry in step."""


async def switch_checker(
    api: KubeApi,
    namespace: str,
    name: str,
    *,
    enabled: bool,
    reason: str | None = None,
    until: datetime | None = None,
    mode: Mode = Mode.FULL,
) -> JsonObject:
    """Merge-patch ``spec.maintenance``; returns the updated resource.  Switching off
    removes ``reason``, ``until`` and ``mode`` (back to the default, ``full``)."""
    maintenance: JsonObject = {
        "enabled": enabled,
        "reason": reason if enabled else None,
        "until": rfc3339_exact(until) if enabled and until else None,
        "mode": str(mode) if enabled and mode is not Mode.FULL else None,
    }
    return await api.patch(SERVICECHECKERS, namespace, name, {"spec": {"maintenance": maintenance}})


def _observed(obj: JsonObject, generation: int) -> bool:
    status = obj.get("status") or {}
    return int(status.get("observedGeneration") or 0) >= generation


def _version(obj: JsonObject) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def retry_delay_s(
    failures: int,
    retry_after_s: float | None = None,
    *,
    initial_s: float = RETRY_INITIAL_S,
    max_s: float = RETRY_MAX_S,
) -> float:
    """The pause before the next attempt after ``failures`` (>= 1) in a row: exponential,
    capped at ``max_s``, its last :data:`RETRY_JITTER` random; never shorter than a
    ``Retry-After`` (itself capped at ``max_s``)."""
    delay = min(max_s, initial_s * 2.0 ** min(failures - 1, 32))
    delay *= 1 - RETRY_JITTER + RETRY_JITTER * random.random()  # noqa: S311 -- not crypto
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max_s))
    return delay


async def wait_for_observed(
    api: KubeApi,
    namespace: str,
    name: str,
    *,
    generation: int,
    timeout_s: float,
    retry_initial_s: float = RETRY_INITIAL_S,
    retry_max_s: float = RETRY_MAX_S,
) -> JsonObject:
    """Return the resource once its status reports ``generation`` (or, after
    ``timeout_s``, as it was last read; the caller says the controller did not confirm).

    It reads the resource, then watches it from there; when the watch fails or ends, or a
    read fails, it pauses (:func:`retry_delay_s`, never past the deadline) and starts again
    with a read.  So an API that keeps failing -- or that allows ``get`` but not ``watch``
    -- is polled with growing pauses, not hammered; the pauses start again from the
    shortest once the watch delivers an event.  A read the API refuses for good (404, 403)
    raises :class:`KubeError`, as does reaching the deadline without a single answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    latest: JsonObject | None = None
    last_error: KubeError | None = None
    failures = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout_at(deadline):
            while True:
                retry_after_s: float | None = None
                try:
                    latest = await api.get(SERVICECHECKERS, namespace, name)
                except KubeError as exc:
                    if not exc.retryable:
                        raise
                    last_error, retry_after_s = exc, exc.retry_after_s
                else:
                    if _observed(latest, generation):
                        return latest
                    try:
                        async for event in api.watch(
                            SERVICECHECKERS,
                            namespace=namespace,
                            resource_version=_version(latest),
                            field_selector=f"metadata.name={name}",
                            timeout_s=max(math.ceil(deadline - loop.time()), 1),
                        ):
                            if event.type in ("ADDED", "MODIFIED"):
                                failures = 0
                                latest = event.object
                                if _observed(latest, generation):
                                    return latest
                    except KubeError as exc:  # WatchInterrupted, ResourceExpired, refused...
                        retry_after_s = exc.retry_after_s
                failures += 1
                delay = retry_delay_s(
                    failures, retry_after_s, initial_s=retry_initial_s, max_s=retry_max_s
                )
                await asyncio.sleep(min(delay, max(deadline - loop.time(), 0)))
    if latest is None:
        raise last_error or KubeError(
            f"the Kubernetes API did not answer within {timeout_s:g} s", status=0
        )
    return latest
