"""The admin API's switch, shared by the worker processes of one pod through a file.

The worker that receives ``PUT /api/maintenance`` applies the switch at once and writes
it to ``<dir>/admin-switch.json`` (atomically: a temporary file, then a rename); the other
workers notice the change within ``poll_interval_s`` and apply it too.  With a single
process nothing of this runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from datetime import datetime
from pathlib import Path

from controller.snapshot import ManualSwitch, Mode
from controller.store import SnapshotStore

log = logging.getLogger(__name__)

FILE_NAME = "admin-switch.json"


def _encode(switch: ManualSwitch) -> bytes:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return json.dumps(
        {
            "source": switch.source,
            "enabled": switch.enabled,
            "reason": switch.reason,
            "until": iso(switch.until),
            "since": iso(switch.since),
            "mode": str(switch.mode),
        }
    ).encode()


def _decode(data: bytes) -> ManualSwitch:
    raw = json.loads(data)

    def when(value: object) -> datetime | None:
        return datetime.fromisoformat(value) if isinstance(value, str) else None

    return ManualSwitch(
        source=str(raw["source"]),
        enabled=bool(raw["enabled"]),
        reason=raw.get("reason"),
        until=when(raw.get("until")),
        since=when(raw.get("since")),
        # Written by an older worker (during a rolling upgrade of the image): full.
        mode=Mode(raw.get("mode") or Mode.FULL),
    )


class SharedSwitch:
    def __init__(self, directory: Path, store: SnapshotStore, *, poll_interval_s: float) -> None:
        self.path = directory / FILE_NAME
        self.store = store
        self.poll_interval_s = poll_interval_s
        self._seen: tuple[int, int] | None = None

    def write(self, switch: ManualSwitch) -> None:
        temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(_encode(switch))
        os.replace(temporary, self.path)
        self._seen = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_ino)

    def poll(self) -> None:
        """Apply the file's switch if it changed since last seen."""
        current = self._stat()
        if current is None or current == self._seen:
            return
        self._seen = current
        try:
            switch = _decode(self.path.read_bytes())
        except (OSError, ValueError, KeyError) as exc:
            log.error("unreadable shared admin switch %s: %s", self.path, exc)
            return
        self.store.set_switch(switch)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                self.poll()
            await asyncio.sleep(self.poll_interval_s)
