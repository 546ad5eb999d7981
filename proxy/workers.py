"""Several worker processes sharing the listeners (``MWM_LISTEN__WORKERS``).

One Python process uses one core.  With ``workers > 1`` the parent starts that many
``mwm run`` children and does nothing else: each child binds the same public and
management ports with ``SO_REUSEPORT`` (the kernel spreads connections across them),
runs its own state source and watches, and decides on its own.  In a cluster only one
of them writes status, as any replica: each has its own leader-election identity.

The admin API's switch must reach every worker, not only the one that received the
request, so in the cluster-less mode it goes through a small file in a directory the
parent creates (:mod:`proxy.sharedswitch`).  ``/metrics`` is answered by whichever worker
the connection lands on, so the parent also gives every worker the same fresh
``PROMETHEUS_MULTIPROC_DIR`` there: each worker's counters live in memory-mapped files of
its own and the answering worker sums them all (:mod:`proxy.metrics`), so a scrape sees the
pod's totals whichever worker answers, and a restarted worker's old counts stay in them.
The directory is under the temporary directory (``/tmp``, the one writable place in the
image) and goes with the parent.

The parent forwards SIGTERM/SIGINT to the children and waits for their graceful drain;
a child that dies on its own is restarted after a short, growing delay.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from prometheus_client.multiprocess import mark_process_dead

log = logging.getLogger(__name__)

WORKER_INDEX_ENV = "_MWM_WORKER_INDEX"
"""Set by the parent in each child: the child binds with SO_REUSEPORT."""
SWITCH_DIR_ENV = "_MWM_SWITCH_DIR"
"""Set by the parent: where the workers share the admin API's switch."""
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Set by the parent: where the workers keep their metric files (prometheus_client reads it
on import, so it must be in the child's environment from the start)."""


def run_workers(
    count: int, *, environ: Mapping[str, str], restart_delay_max_s: float = 30.0
) -> int:
    """Start ``count`` workers and supervise them until a signal; return the exit status."""
    stopping = False
    children: dict[int, subprocess.Popen[bytes]] = {}
    restarts: dict[int, int] = {}

    def start(index: int) -> None:
        env = {
            **environ,
            WORKER_INDEX_ENV: str(index),
            SWITCH_DIR_ENV: shared_dir,
            METRICS_DIR_ENV: metrics_dir,
        }
        children[index] = subprocess.Popen([sys.executable, "-m", "proxy.cli", "run"], env=env)

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    with tempfile.TemporaryDirectory(prefix="mwm-switch-") as shared_dir:
        # Always a new, empty one: files left by an earlier run would be summed in.
        metrics_dir = os.path.join(shared_dir, "metrics")
        os.mkdir(metrics_dir, 0o700)
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        for first in range(count):
            start(first)
        log.info("started %d workers", count, extra={"pids": [c.pid for c in children.values()]})
        status = 0
        while children:
            pid, code = os.wait()
            exited = next((i for i, c in children.items() if c.pid == pid), None)
            if exited is None:
                continue
            index = exited
            children.pop(index)
            # Its live gauges (open status streams) leave the sum; its counters stay.
            mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]
            exit_code = os.waitstatus_to_exitcode(code)
            if stopping:
                status = status or max(exit_code, 0)
                continue
            restarts[index] = restarts.get(index, 0) + 1
            delay = min(restart_delay_max_s, 0.5 * 2 ** (restarts[index] - 1))
            log.error("worker %d exited with %s; restarting in %.1f s", index, exit_code, delay)
            time.sleep(delay)
            if not stopping:
                start(index)
        return status


def worker_index(environ: Mapping[str, str]) -> int | None:
    value = environ.get(WORKER_INDEX_ENV)
    return int(value) if value and value.isdigit() else None


def switch_dir(environ: Mapping[str, str]) -> Path | None:
    value = environ.get(SWITCH_DIR_ENV)
    return Path(value) if value else None
