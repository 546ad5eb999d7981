"""Switching a ServiceChecker's maintenance from the command line (``mwm on/off``).

The switch is the resource's ``spec.maintenance``; every replica of every proxy that
honours the resource sees the change through its watch.  After patching, the caller
can wait until the controller has observed the new generation, so the status it then
prints is the result of the switch and not the state before it.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

from controller.kube import SERVICECHECKERS, JsonObject, KubeApi, KubeError, WatchInterrupted


async def switch_checker(
    api: KubeApi,
    namespace: str,
    name: str,
    *,
    enabled: bool,
    reason: str | None = None,
    until: datetime | None = None,
) -> JsonObject:
    """Merge-patch ``spec.maintenance``; returns the updated resource."""
    maintenance: JsonObject = {
        "enabled": enabled,
        "reason": reason if enabled else None,
        "until": until.isoformat().replace("+00:00", "Z") if enabled and until else None,
    }
    return await api.patch(SERVICECHECKERS, namespace, name, {"spec": {"maintenance": maintenance}})


def _observed(obj: JsonObject, generation: int) -> bool:
    status = obj.get("status") or {}
    return int(status.get("observedGeneration") or 0) >= generation


async def wait_for_observed(
    api: KubeApi, namespace: str, name: str, *, generation: int, timeout_s: float
) -> JsonObject:
    """Return the resource once its status reports ``generation`` (or, after
    ``timeout_s``, as it is then; the caller says the controller did not confirm)."""
    latest = await api.get(SERVICECHECKERS, namespace, name)
    if _observed(latest, generation):
        return latest
    version = str((latest.get("metadata") or {}).get("resourceVersion") or "")
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    async for event in api.watch(
                        SERVICECHECKERS,
                        namespace=namespace,
                        resource_version=version,
                        field_selector=f"metadata.name={name}",
                        timeout_s=max(timeout_s, 1),
                    ):
                        if event.type in ("ADDED", "MODIFIED"):
                            latest = event.object
                            if _observed(latest, generation):
                                return latest
                        version = event.resource_version or version
                except (WatchInterrupted, KubeError):
                    latest = await api.get(SERVICECHECKERS, namespace, name)
                    if _observed(latest, generation):
                        return latest
                    version = str((latest.get("metadata") or {}).get("resourceVersion") or "")
    return latest
