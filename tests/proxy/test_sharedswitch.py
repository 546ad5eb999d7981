"""The admin switch shared between worker processes keeps its mode (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

from controller.snapshot import ManualSwitch, Mode
from controller.store import SnapshotStore
from proxy.sharedswitch import FILE_NAME, SharedSwitch


def test_another_worker_applies_the_read_only_switch(tmp_path: Path) -> None:
    writer = SharedSwitch(tmp_path, SnapshotStore(), poll_interval_s=1)
    reader_store = SnapshotStore()
    reader = SharedSwitch(tmp_path, reader_store, poll_interval_s=1)
    writer.write(ManualSwitch(source="admin-api", enabled=True, mode=Mode.READ_ONLY))
    reader.poll()
    (switch,) = reader_store.current.snapshot.switches
    assert (switch.enabled, switch.mode) == (True, Mode.READ_ONLY)


def test_a_file_without_mode_means_full(tmp_path: Path) -> None:
    # Written by a worker of the previous version during a rolling upgrade.
    (tmp_path / FILE_NAME).write_text(json.dumps({"source": "admin-api", "enabled": True}))
    store = SnapshotStore()
    SharedSwitch(tmp_path, store, poll_interval_s=1).poll()
    (switch,) = store.current.snapshot.switches
    assert (switch.enabled, switch.mode) == (True, Mode.FULL)
