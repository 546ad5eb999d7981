"""mwm at two revisions side by side, in one run: what a change costs on the hot paths.

The reference is the same program at an earlier commit, measured in the same run, on the
same machine, with the same pinning, load and upstream (the harness's nginx), interleaved
round by round; so the ratios hold while absolute numbers drift with the machine.  Two
paths: a proxied request (``mwm-proxy``) and the maintenance page (``mwm-503``), with the
harness's features on (bypass rules, forwarded headers, access log off).

The earlier revision runs from a checkout of that commit (``git worktree add``), with this
checkout's virtual environment: its ``proxy`` and ``controller`` packages come first on
``PYTHONPATH``.

Usage::

    scripts/bench revisions [--base REV] [--rounds N] [--seconds S]   # default base: HEAD~1

Prints one line per path: req/s and CPU µs per request of both, and the ratios new/base
(a throughput ratio at or above 1 and a CPU ratio at or below 1 cost nothing).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import harness

ROOT = Path(__file__).resolve().parents[1]
PATHS = (("proxied", False), ("503 page", True))


def short_commit(rev: str) -> str:
    """``rev`` resolved to its short commit name."""
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@contextmanager
def worktree(rev: str) -> Iterator[tuple[Path, str]]:
    """A temporary work tree of ``rev`` and the commit it resolved to; removed afterwards."""
    into = Path(tempfile.mkdtemp(prefix="mwm-rev-")) / "tree"
    commit = short_commit(rev)
    try:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(into), commit],
            check=True,
            capture_output=True,
        )
        yield into, commit
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(into)],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(into.parent, ignore_errors=True)


def measure(base_tree: Path, options: harness.Options) -> dict[str, Any]:
    nginx = harness.check_tools(options)
    pinning = harness.choose_pinning(options.pin)
    with harness.workspace(options.keep_temp) as workdir:
        lab = harness.Lab(workdir=workdir, nginx=nginx, pinning=pinning)
        try:
            for label, maintenance in PATHS:
                for tree, which in ((base_tree, "base"), (ROOT, "new")):
                    name = f"{which} {label}"
                    server = harness.mwm_server(
                        name.replace(" ", "-"),
                        workdir=workdir,
                        upstream_port=lab.upstream.port,
                        maintenance=maintenance,
                        cpus=pinning.servers,
                        extra_environ={"PYTHONPATH": str(tree)},
                    )
                    lab.add(name, server)
            return harness.throughput(lab, options, pinning)
        finally:
            lab.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench revisions", description=__doc__)
    parser.add_argument("--base", default="HEAD~1", help="the reference revision (HEAD~1)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)
    options = harness.parse_options(
        [
            f"--rounds={args.rounds}",
            f"--seconds={args.seconds}",
            f"--connections={args.connections}",
            *(["--no-pin"] if args.no_pin else []),
        ]
    )
    with worktree(args.base) as (base_tree, commit):
        summary = measure(base_tree, options)
    print(f"base {args.base} ({commit}) vs the working tree; medians of {options.rounds} rounds")
    for label, _ in PATHS:
        base = summary[f"base {label}"]["median"]
        new = summary[f"new {label}"]["median"]
        print(
            f"{label:>9}: base {base['rps']:8.0f} req/s {base['cpu_us_per_request']:6.1f} µs/req"
            f" | new {new['rps']:8.0f} req/s {new['cpu_us_per_request']:6.1f} µs/req"
            f" | ratio new/base: throughput {new['rps'] / base['rps']:.3f},"
            f" CPU {new['cpu_us_per_request'] / base['cpu_us_per_request']:.3f}"
        )
        # Each round measures both back to back: the per-round ratios cancel the machine's
        # drift between rounds, and their range is the noise a difference must exceed.
        paired = sorted(
            n["cpu_us_per_request"] / b["cpu_us_per_request"]
            for b, n in zip(
                summary[f"base {label}"]["rounds"], summary[f"new {label}"]["rounds"], strict=True
            )
        )
        print(
            f"{'':>9}  CPU ratio per round: median {statistics.median(paired):.3f},"
            f" range {paired[0]:.3f}-{paired[-1]:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
