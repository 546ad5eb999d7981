"""Instructions per request at two revisions, counted by callgrind: a cost too small for a clock.

``scripts/bench revisions`` compares req/s and CPU time; on a shared 2-core VM their noise is
about ±6 % per round, so a change that costs 1 % cannot be told from nothing there.  This
counts the instructions the server executes per request instead (valgrind's callgrind), which
is repeatable to a fraction of a percent whatever else the machine is doing: the same program,
inputs and environment give the same count.

For each revision and path (a proxied request, the maintenance page), one ``mwm run`` (the
harness's features on: bypass rules, forwarded headers; the harness's nginx as the upstream)
runs under ``valgrind --tool=callgrind --instr-atstart=no``, so start-up runs uninstrumented.
Once it answers, instrumentation is switched on (``callgrind_control -i on``), ``--warmup``
requests fill the caches, then for each of ``--batches`` batches the counters are zeroed,
``--requests`` requests are sent one after another on one keep-alive connection, and the
counters are dumped: the batch's instructions / its requests is one figure.  Everything the
server executes while the batch runs is counted, its idle event loop included.  Hash
randomisation is fixed (``PYTHONHASHSEED=0``) so both revisions hash alike.

Usage::

    python -m bench.instructions [--base REV] [--new REV] [--requests N] [--batches B]

``--base`` defaults to the commit before issue 11's limits, ``--new`` to the working tree.
Prints one line per path: instructions per request of both, the ratio new/base and the spread
of the batches (the repeatability a difference must exceed).
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench import harness
from bench.nginx import nginx_binary
from bench.revisions import short_commit, worktree
from bench.servers import Server, ServerError

ROOT = Path(__file__).resolve().parents[1]
PATHS = (("proxied", False), ("503 page", True))
DEFAULT_BASE = "93f1ba0"
"""The commit before issue 11's limits (``1098b7a``): what they are measured against."""
START_TIMEOUT_S = 180.0
"""Start-up under valgrind (uninstrumented, but still translated) is ~10x slower."""


@contextmanager
def tree(rev: str | None) -> Iterator[tuple[Path, str]]:
    """A work tree of ``rev`` (:func:`bench.revisions.worktree`), or this checkout for ``None``,
    and the commit it names."""
    if rev is not None:
        with worktree(rev) as found:
            yield found
        return
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "proxy", "controller"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    yield ROOT, short_commit("HEAD") + (" + uncommitted changes" if dirty else "")


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def _instructions(dump: Path) -> int:
    """The ``summary:`` (or ``totals:``) line of a callgrind dump: instructions executed."""
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise harness.HarnessError(f"no summary line in {dump}")


def _requests(port: int, count: int, *, expect: int) -> None:
    """``count`` sequential ``GET /`` on one keep-alive connection, each read whole."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for _ in range(count):
            connection.request("GET", "/", headers={"Accept": "text/html"})
            response = connection.getresponse()
            response.read()
            if response.status != expect:
                raise harness.HarnessError(f"answered {response.status}, expected {expect}")
    finally:
        connection.close()


def measure_server(
    server: Server, *, outdir: Path, warmup: int, requests: int, batches: int
) -> list[float]:
    """Instructions per request of each batch sent to ``server`` (already started)."""
    pid = server.pid
    _control(pid, "-i", "on")
    _requests(server.port, warmup, expect=server.ready_status)
    figures = []
    for _ in range(batches):
        before = set(outdir.glob(f"{server.name}.*"))
        _control(pid, "-z")
        _requests(server.port, requests, expect=server.ready_status)
        _control(pid, "-d")
        dumps = sorted(set(outdir.glob(f"{server.name}.*")) - before)
        if len(dumps) != 1:
            raise harness.HarnessError(f"expected one new callgrind dump, found {dumps}")
        figures.append(_instructions(dumps[0]) / requests)
    return figures


def measure(
    trees: dict[str, Path], *, nginx: str, warmup: int, requests: int, batches: int
) -> dict[tuple[str, str], list[float]]:
    results: dict[tuple[str, str], list[float]] = {}
    pinning = harness.choose_pinning(False)
    with harness.workspace(False) as workdir:
        lab = harness.Lab(workdir=workdir, nginx=nginx, pinning=pinning)
        try:
            for label, maintenance in PATHS:
                for which, where in trees.items():
                    name = f"{which}-{label.replace(' ', '-')}"
                    outfile = workdir / f"{name}.%p"
                    server = harness.mwm_server(
                        name,
                        workdir=workdir,
                        upstream_port=lab.upstream.port,
                        maintenance=maintenance,
                        cpus=None,
                        command=[
                            "valgrind",
                            "--tool=callgrind",
                            "--instr-atstart=no",
                            f"--callgrind-out-file={outfile}",
                            *harness.python_mwm_command("run"),  # PYTHONPATH's revision
                        ],
                        extra_environ={"PYTHONPATH": str(where), "PYTHONHASHSEED": "0"},
                    )
                    try:
                        server.start(timeout_s=START_TIMEOUT_S)
                    except ServerError as exc:
                        raise harness.HarnessError(str(exc)) from exc
                    try:
                        results[(which, label)] = measure_server(
                            server,
                            outdir=workdir,
                            warmup=warmup,
                            requests=requests,
                            batches=batches,
                        )
                    finally:
                        server.stop(timeout_s=60.0)
        finally:
            lab.close()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--base", default=DEFAULT_BASE, help=f"reference ({DEFAULT_BASE})")
    parser.add_argument("--new", default=None, help="revision to measure (the working tree)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per batch")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args(argv)
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"missing: {tool} (apt-get install valgrind)", file=sys.stderr)
            return 2
    nginx = nginx_binary()
    if nginx is None:
        print("missing: nginx (apt-get install nginx-light)", file=sys.stderr)
        return 2
    with tree(args.base) as (base_tree, base_name), tree(args.new) as (new_tree, new_name):
        results = measure(
            {"base": base_tree, "new": new_tree},
            nginx=nginx,
            warmup=args.warmup,
            requests=args.requests,
            batches=args.batches,
        )
    print(
        f"instructions per request (callgrind), base {base_name} vs new {new_name};"
        f" {args.batches} batches x {args.requests} sequential keep-alive requests each"
    )
    for label, _ in PATHS:
        base, new = results[("base", label)], results[("new", label)]
        spread = max((max(figures) - min(figures)) / min(figures) for figures in (base, new))
        base_mean, new_mean = sum(base) / len(base), sum(new) / len(new)
        print(
            f"{label:>9}: base {base_mean:10,.0f} | new {new_mean:10,.0f}"
            f" | ratio new/base {new_mean / base_mean:.4f}"
            f" | batch spread {spread * 100:.2f} %"
            f" (base {', '.join(f'{f:,.0f}' for f in base)};"
            f" new {', '.join(f'{f:,.0f}' for f in new)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
