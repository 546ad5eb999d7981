"""The benchmark harness's targets (issue 15's and the earlier ones kept): each verdict's
logic (PASS, FAIL, not measured, n/a), the two-worker decision on the CPU count, the
pinning plan, and the report's text.  No server runs: the results are made up."""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench import harness, report
from bench.footprint import Sample, dependency_floor, floor_modules
from bench.footprint import report as footprint_report

Results = dict[str, Any]


def _row(rps: float, cpu: float) -> dict[str, Any]:
    return {
        "median": {
            "rps": rps,
            "p50_ms": 1.0,
            "p99_ms": 2.0,
            "cpu_us_per_request": cpu,
            "user_us_per_request": cpu * 0.7,
            "system_us_per_request": cpu * 0.3,
            "rss_mib": 40.0,
            "client_cpu_pct": 20.0,
            "other_cpu_pct": 0.0,
        },
        "socket_errors": 0,
        "response": {"status": 200, "body_bytes": 1024},
    }


def passing() -> Results:
    """A run where every target passes (two workers measured: a 4-CPU machine)."""
    return {
        "throughput": {
            "direct": _row(80_000, 12),
            "nginx-proxy": _row(30_000, 20),
            "naive-proxy": _row(5_000, 150),
            "mwm-proxy": _row(16_000, 40),  # 3.2x naive, 2.0x nginx's CPU
            "mwm-proxy-2w": _row(30_000, 41),  # 1.875x one worker
            "nginx-503": _row(150_000, 6),
            "aiohttp-503": _row(40_000, 20),
            "mwm-503": _row(35_000, 10),  # 1.67x nginx's CPU
        },
        "fixed_rate": {
            "direct": {"added_p50_ms": 0.0, "added_p99_ms": 0.0},
            "nginx-proxy": {"added_p50_ms": 0.05, "added_p99_ms": 0.1},
            "naive-proxy": {"added_p50_ms": 0.3, "added_p99_ms": 0.7},
            "mwm-proxy": {"added_p50_ms": 0.1, "added_p99_ms": 0.4},
        },
        "footprint": {
            "rounds": 3,
            "requests": 20_000,
            "errors": 0,
            "startup_s": 0.8,
            "rss_ready_mib": 45.0,
            "rss_after_mib": 48.0,
        },
        "soak": {"rss_end_mib": 55.0, "growth_second_half_mib": 0.4},
        "reaction": {"p99_ms": 20.0},
        "two_workers": {"cpus": 4, "not_measured": None},
    }


def _set(*path: str, value: Any) -> Callable[[Results], None]:
    def change(results: Results) -> None:
        where = results
        for key in path[:-1]:
            where = where[key]
        where[path[-1]] = value

    return change


def _drop(*path: str) -> Callable[[Results], None]:
    def change(results: Results) -> None:
        where = results
        for key in path[:-1]:
            where = where[key]
        del where[path[-1]]

    return change


def _median(target: str, metric: str, value: float) -> Callable[[Results], None]:
    return _set("throughput", target, "median", metric, value=value)


# target key -> (a change that makes it fail, a change that leaves it unmeasured)
CASES: dict[str, tuple[Callable[[Results], None], Callable[[Results], None]]] = {
    "proxied_cpu": (
        _median("mwm-proxy", "cpu_us_per_request", 60),  # 3.0x
        _drop("throughput", "nginx-proxy"),
    ),
    "proxied_throughput": (
        _median("mwm-proxy", "rps", 10_000),  # 2.0x
        _drop("throughput", "naive-proxy"),
    ),
    "added_p50": (
        _set("fixed_rate", "mwm-proxy", "added_p50_ms", value=0.2),
        _drop("fixed_rate"),
    ),
    "added_p99": (
        _set("fixed_rate", "mwm-proxy", "added_p99_ms", value=0.6),
        _drop("fixed_rate", "mwm-proxy"),
    ),
    "maintenance_cpu": (
        _median("mwm-503", "cpu_us_per_request", 15),  # 2.5x
        _drop("throughput", "mwm-503"),
    ),
    "cluster_rss_ready": (
        _set("footprint", "rss_ready_mib", value=70.0),
        _drop("footprint"),
    ),
    "cluster_rss_after": (
        _set("footprint", "rss_after_mib", value=50.5),
        _set("footprint", "requests", value=0),  # only start-up measured
    ),
    "cluster_startup": (
        _set("footprint", "startup_s", value=1.25),
        _set("footprint", value={"error": "bench.footprint exited with 2"}),
    ),
    "two_workers": (
        _median("mwm-proxy-2w", "rps", 20_000),  # 1.25x
        _drop("throughput", "mwm-proxy-2w"),  # left out with --targets on 4 CPUs
    ),
    "rss_growth": (
        _set("soak", "growth_second_half_mib", value=3.0),
        _drop("soak"),
    ),
    "reaction_p99": (
        _set("reaction", "p99_ms", value=80.0),
        _set("reaction", value={"error": "bench.reaction exited with 2"}),
    ),
}


def _verdicts(results: Results) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in report.verdicts(results)}


def _changed(change: Callable[[Results], None]) -> Results:
    results = copy.deepcopy(passing())
    change(results)
    return results


def test_every_target_has_a_case() -> None:
    assert [t.key for t in report.TARGETS] == list(CASES)


def test_the_targets_are_issue_15s() -> None:
    limits = {t.key: (t.limit, ">=" if t.at_least else "<=") for t in report.TARGETS}
    assert limits == {
        "proxied_cpu": (2.5, "<="),
        "proxied_throughput": (3.0, ">="),
        "added_p50": (0.15, "<="),
        "added_p99": (0.5, "<="),
        "maintenance_cpu": (2.0, "<="),
        "cluster_rss_ready": (50.0, "<="),
        "cluster_rss_after": (50.0, "<="),
        "cluster_startup": (1.0, "<="),
        "two_workers": (1.8, ">="),
        "rss_growth": (2.0, "<="),
        "reaction_p99": (50.0, "<="),
    }


def test_all_pass() -> None:
    rows = report.verdicts(passing())
    assert {row["key"]: row["verdict"] for row in rows} == dict.fromkeys(CASES, "PASS")
    assert not report.failed(rows)


@pytest.mark.parametrize("key", list(CASES))
def test_fail(key: str) -> None:
    rows = _verdicts(_changed(CASES[key][0]))
    assert rows[key]["verdict"] == "FAIL"
    assert {k for k, row in rows.items() if row["verdict"] != "PASS"} == {key}
    assert report.failed(list(rows.values()))


@pytest.mark.parametrize("key", list(CASES))
def test_not_measured(key: str) -> None:
    rows = _verdicts(_changed(CASES[key][1]))
    assert rows[key]["verdict"] == "NOT MEASURED"
    assert rows[key]["measured"] is None
    assert report.failed(list(rows.values()))  # --check: a skipped phase is no pass


def test_measured_values() -> None:
    rows = _verdicts(passing())
    assert rows["proxied_cpu"]["measured"] == pytest.approx(2.0)
    assert rows["proxied_throughput"]["measured"] == pytest.approx(3.2)
    assert rows["maintenance_cpu"]["measured"] == pytest.approx(10 / 6)
    assert rows["two_workers"]["measured"] == pytest.approx(30_000 / 16_000)
    assert rows["cluster_rss_after"]["measured"] == 48.0


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (_median("mwm-proxy", "cpu_us_per_request", 50), "proxied_cpu"),  # exactly 2.5x
        (_median("mwm-proxy", "rps", 15_000), "proxied_throughput"),  # exactly 3x
        (_set("fixed_rate", "mwm-proxy", "added_p99_ms", value=0.5), "added_p99"),
        (_median("mwm-503", "cpu_us_per_request", 12), "maintenance_cpu"),  # exactly 2x
        (_set("footprint", "rss_ready_mib", value=50.0), "cluster_rss_ready"),
        (_set("footprint", "startup_s", value=1.0), "cluster_startup"),
        (_median("mwm-proxy-2w", "rps", 28_800), "two_workers"),  # exactly 1.8x
    ],
)
def test_the_limit_itself_passes(change: Callable[[Results], None], key: str) -> None:
    assert _verdicts(_changed(change))[key]["verdict"] == "PASS"


@pytest.mark.parametrize("cpus", [1, 2, 3])
def test_two_workers_not_applicable_below_four_cpus(cpus: int) -> None:
    results = passing()
    del results["throughput"]["mwm-proxy-2w"]  # the harness does not start it
    results["two_workers"] = {"cpus": cpus, "not_measured": report.two_workers_shortfall(cpus)}
    rows = _verdicts(results)
    row = rows["two_workers"]
    assert row["verdict"] == report.NOT_APPLICABLE == "n/a"
    assert row["measured"] is None
    assert row["note"] == (
        f"not measured: needs 4 CPUs (2 workers, the upstream, the load generator), "
        f"this machine has {cpus}"
    )
    assert not report.failed(list(rows.values()))  # n/a is no failure under --check


def test_two_workers_shortfall_is_the_cpu_count() -> None:
    assert report.two_workers_shortfall(4) is None
    assert report.two_workers_shortfall(64) is None
    assert report.two_workers_shortfall(2) == (
        "not measured: needs 4 CPUs (2 workers, the upstream, the load generator), "
        "this machine has 2"
    )
    assert "this machine has 3" in (report.two_workers_shortfall(3) or "")


def test_pinning_two_cpus_unchanged() -> None:
    pinning = harness.plan_pinning([0, 1], enabled=True, taskset=True)
    assert (pinning.servers, pinning.upstream, pinning.client) == ("0", "0", "1")
    assert pinning.two_workers is None
    assert pinning.text == "servers on CPU 0, load generator on CPU 1"


def test_pinning_three_cpus_as_two() -> None:
    pinning = harness.plan_pinning([0, 1, 2], enabled=True, taskset=True)
    assert (pinning.servers, pinning.upstream, pinning.client, pinning.two_workers) == (
        "0",
        "0",
        "1",
        None,
    )


def test_pinning_four_cpus_gives_each_its_core() -> None:
    pinning = harness.plan_pinning([2, 3, 5, 7], enabled=True, taskset=True)
    assert pinning.servers == "2"
    assert pinning.two_workers == "2,3"
    assert pinning.upstream == "5"
    assert pinning.client == "7"
    assert "mwm-proxy-2w on CPUs 2,3" in pinning.text


@pytest.mark.parametrize(
    ("cpus", "enabled", "taskset"), [([0, 1, 2, 3], False, True), ([0, 1, 2, 3], True, False)]
)
def test_pinning_off(cpus: list[int], enabled: bool, taskset: bool) -> None:
    """--no-pin (or no taskset): nothing pinned, mwm-proxy-2w included; on 4 CPUs it is
    still measured (the decision is the CPU count's), the kernel placing its workers."""
    pinning = harness.plan_pinning(cpus, enabled=enabled, taskset=taskset)
    assert (pinning.servers, pinning.upstream, pinning.client, pinning.two_workers) == (
        None,
        None,
        None,
        None,
    )
    assert report.two_workers_shortfall(len(cpus)) is None


def test_two_workers_server(tmp_path: Path) -> None:
    """mwm-proxy-2w is mwm-proxy with two workers, on the two workers' cores."""
    lab = object.__new__(harness.Lab)  # no upstream started: only build() is used
    lab.workdir, lab.nginx = tmp_path, "nginx"
    lab.pinning = harness.plan_pinning([0, 1, 2, 3], enabled=True, taskset=True)
    lab.cpus = lab.pinning.servers
    lab.upstream = harness.Server("direct", ["true"], 1, tmp_path / "log")
    one, two = lab.build("mwm-proxy"), lab.build("mwm-proxy-2w")
    assert two.environ is not None
    assert one.environ is not None
    assert two.environ["MWM_LISTEN__WORKERS"] == "2"
    assert "MWM_LISTEN__WORKERS" not in one.environ
    assert (one.cpus, two.cpus) == ("0", "0,1")
    unpinned = harness.plan_pinning([0, 1, 2, 3], enabled=False, taskset=True)
    lab.pinning, lab.cpus = unpinned, None
    assert lab.build("mwm-proxy-2w").cpus is None


def test_options() -> None:
    full = harness.parse_options([])
    assert (full.footprint_rounds, full.footprint_requests) == (3, 20_000)
    assert "mwm-proxy-2w" in full.targets
    quick = harness.parse_options(["--quick"])
    assert (quick.footprint_rounds, quick.footprint_requests) == (1, 2_000)
    assert harness.parse_options(["--footprint-rounds", "0"]).footprint_rounds == 0


def _document(results: Results) -> Results:
    document = {
        **results,
        "git": {"commit": "0123456789abcdef", "changed_files": []},
        "machine": {"cpus": 2, "cpu_model": "test CPU", "python": "3.11", "loop": "uvloop"},
        "pinning": {"text": "servers on CPU 0, load generator on CPU 1"},
        "options": {
            "connections": 32,
            "rounds": 1,
            "seconds": 1,
            "rate": 1000,
            "rate_clients": 10,
            "rate_seconds": 1.0,
        },
    }
    document["fixed_rate"] = {
        name: {
            "achieved_per_s": 1000,
            "p50_ms": 0.1,
            "p99_ms": 0.3,
            "requests": 1000,
            **row,
        }
        for name, row in results["fixed_rate"].items()
    }
    if "soak" in results:
        document["soak"] = {
            "requests": 20_000,
            "seconds": 2.0,
            "requests_per_s": 10_000,
            "rss_start_mib": 50.0,
            "rss_half_mib": 54.6,
            "samples": [{"requests": 0, "rss_mib": 50.0}, {"requests": 20_000, "rss_mib": 55.0}],
            **results["soak"],
        }
    if "p99_ms" in results.get("reaction", {}):
        document["reaction"] = {
            "flips": 10,
            "median_ms": 5.0,
            "max_ms": 30.0,
            **results["reaction"],
        }
    document["verdicts"] = report.verdicts(document)
    document["references"] = report.references(document)
    return document


def test_render_two_cpus() -> None:
    results = passing()
    del results["throughput"]["mwm-proxy-2w"]
    results["two_workers"] = {"cpus": 2, "not_measured": report.two_workers_shortfall(2)}
    text = report.render(_document(results))
    shortfall = (
        "not measured: needs 4 CPUs (2 workers, the upstream, the load generator), "
        "this machine has 2"
    )
    assert f"mwm-proxy-2w (two workers): {shortfall}" in text
    assert (
        "  n/a          proxied throughput, two workers on two cores: mwm-proxy-2w / "
        f"mwm-proxy: {shortfall} (target >= 1.8 x)"
    ) in text
    assert (
        "  PASS         CPU per proxied request, features on, 1 worker: mwm / nginx proxy: "
        "2.00 x (target <= 2.5 x)"
    ) in text
    assert "cluster mode, start-up to ready (bench.footprint): 0.80 s (target <= 1 s)" in text
    assert "start-up to ready 0.800 s, RSS 45.0 MiB after start-up" in text
    assert "naive aiohttp / nginx proxy throughput (compare machines by this): 0.17" in text
    assert "naive aiohttp / nginx proxy CPU per proxied request: 7.50" in text
    assert "mwm RSS at the end of the soak, local mode, 1 worker" in text


def test_render_footprint_private_memory() -> None:
    """The footprint's private part is shown next to its RSS when it was measured (older
    results without it render as before: see test_render_two_cpus)."""
    results = passing()
    results["footprint"]["private_ready_mib"] = 41.25
    text = report.render(_document(results))
    assert (
        "RSS 45.0 MiB after start-up (of which 41.2 MiB private, RssAnon), 48.0 MiB after"
    ) in text


@pytest.mark.parametrize("metric", ["p50", "p99"])
def test_a_negative_added_latency_is_a_disturbed_run_not_a_pass(metric: str) -> None:
    """mwm in front of the upstream cannot answer sooner than the upstream alone: a
    negative added latency means the direct rounds were slowed, and the verdict waits for
    a run that can tell."""
    results = passing()
    results["fixed_rate"]["direct"][f"{metric}_ms"] = 11.02
    results["fixed_rate"]["mwm-proxy"][f"{metric}_ms"] = 1.145
    results["fixed_rate"]["mwm-proxy"][f"added_{metric}_ms"] = -9.875
    row = next(r for r in report.verdicts(results) if r["key"] == f"added_{metric}")
    assert row["verdict"] == "NOT MEASURED"
    assert row["note"] == (
        f"disturbed: direct's own {metric} (11.020 ms) is above mwm's in front of it "
        "(1.145 ms); run again"
    )
    assert report.failed(report.verdicts(results))


def test_render_footprint_dependency_floor() -> None:
    """What mwm's dependencies weigh imported alone is shown after the footprint's figures."""
    results = passing()
    results["footprint"]["floor"] = {"rss_mib": 53.62, "private_mib": 36.8, "modules": 296}
    text = report.render(_document(results))
    assert (
        "(0 non-200); the 296 modules it imports from its dependencies, imported alone "
        "(kubernetes-asyncio left out): RSS 53.6 MiB (36.8 private)"
    ) in text


def test_footprint_dependency_floor_imports_no_mwm_code() -> None:
    """The floor imports what mwm's start-up imports from its dependencies, none of mwm's
    own modules, and not kubernetes-asyncio (mwm loads only part of it)."""
    modules = floor_modules()
    tops = {name.split(".")[0] for name in modules}
    assert {"aiohttp", "jinja2", "pydantic_settings", "babel", "prometheus_client"} <= tops
    assert "aiohttp.web" in modules
    assert not tops & {"proxy", "controller", "bench", "tests", "kubernetes_asyncio"}
    floor = dependency_floor()
    assert floor.modules == len(modules)
    assert 0 < floor.private_mib < floor.rss_mib


def test_render_footprint_error() -> None:
    results = passing()
    results["footprint"] = {"error": "bench.footprint exited with 2"}
    text = report.render(_document(results))
    assert "footprint: bench.footprint exited with 2" in text
    assert "NOT MEASURED cluster mode, start-up to ready (bench.footprint): - s" in text


def test_footprint_report_with_one_variant() -> None:
    """The harness runs bench.footprint with --variants lazy: no ratio to the other
    variants, the verdicts, and the medians the harness reads."""
    samples = [
        Sample("lazy", startup_s, 45.0 + i, 47.0 + i, 1000, 0, 30.0 + i)
        for i, startup_s in enumerate((0.9, 1.1, 0.95))
    ]
    table, figures = footprint_report(samples, 1000)
    assert figures == {
        "lazy_startup_s": 0.95,
        "lazy_rss_ready_mib": 46.0,
        "lazy_rss_after_mib": 48.0,
        "lazy_private_ready_mib": 31.0,
    }
    assert "| figure (median of 3) | cluster, lazy (kubelib) | target | lazy |" in table
    assert "| start-up to ready | 0.950 s | <= 1 s | PASS |" in table
    # The private part is information: no target, no verdict.
    assert "| of which private at start-up (RssAnon) | 31.0 MiB | - | - |" in table
    assert "whole" not in table


def test_footprint_report_with_every_variant() -> None:
    """``python -m bench.footprint`` as before: the three variants and both comparisons."""
    samples = [
        Sample("lazy", 0.9, 45.0, 46.0, 1000, 0),
        Sample("whole", 1.8, 90.0, 92.0, 1000, 0),
        Sample("local", 0.8, 40.0, 41.0, 1000, 0),
    ]
    table, figures = footprint_report(samples, 1000)
    assert table.splitlines()[:3] == [
        "| figure (median of 1) | cluster, lazy (kubelib) | cluster, whole import | lazy / whole "
        "| local mode | lazy - local | target | lazy |",
        "|---|---|---|---|---|---|---|---|",
        "| start-up to ready | 0.900 s | 1.800 s | 0.50x | 0.800 s | +0.100 s | <= 1 s | PASS |",
    ]
    assert figures["whole_rss_after_mib"] == 92.0
    assert figures["local_startup_s"] == 0.8


def test_a_benchmark_of_another_revision_runs_that_revisions_code(tmp_path: Path) -> None:
    """``bench.instructions`` and the harness's fallback start ``mwm`` from the tree on
    ``PYTHONPATH`` (an earlier revision's worktree) while their working directory is this
    checkout: ``python -m`` alone would import this checkout's ``proxy`` and measure it twice."""
    fake = tmp_path / "proxy"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "cli.py").write_text("print('the tree on PYTHONPATH')\n")

    result = subprocess.run(
        harness.python_mwm_command("--help"),
        cwd=harness.ROOT,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.stdout.strip() == "the tree on PYTHONPATH", result.stderr


def test_the_added_latency_paired_round_by_round_outvotes_one_disturbed_round() -> None:
    """Each round's added latency is mwm's percentile minus direct's in the same round: a
    round where direct was disturbed (its p99 16 ms) shows as one odd figure, and the
    median follows the rounds that agree."""
    direct = [{"p50_ms": 0.30, "p99_ms": 0.70}, {"p50_ms": 0.31, "p99_ms": 16.0}]
    direct.append({"p50_ms": 0.29, "p99_ms": 0.72})
    mwm = [{"p50_ms": 0.55, "p99_ms": 1.10}, {"p50_ms": 0.58, "p99_ms": 1.30}]
    mwm.append({"p50_ms": 0.56, "p99_ms": 1.20})
    paired = harness.paired_added(mwm, direct)
    assert paired["added_p50_rounds_ms"] == pytest.approx([0.25, 0.27, 0.27])
    assert paired["added_p50_round_median_ms"] == pytest.approx(0.27)
    assert paired["added_p99_rounds_ms"] == pytest.approx([0.40, -14.70, 0.48])
    assert paired["added_p99_round_median_ms"] == pytest.approx(0.40)
    with pytest.raises(ValueError, match="longer"):  # a round missing on one side: no pairs
        harness.paired_added(mwm[:2], direct)


def test_render_the_rounds_paired_with_direct() -> None:
    results = passing()
    rounds = {"added_p50_rounds_ms": [0.25, 0.27, 0.27], "added_p99_rounds_ms": [0.4, -14.7, 0.48]}
    results["fixed_rate"]["mwm-proxy"].update(
        rounds, added_p50_round_median_ms=0.27, added_p99_round_median_ms=0.4
    )
    document = _document(results)
    text = report.render(document)
    assert "added latency per round, each paired with direct's same round:" in text
    assert (
        "  mwm-proxy    +p50 0.250 / 0.270 / 0.270 (median 0.270), "
        "+p99 0.400 / -14.700 / 0.480 (median 0.400) ms"
    ) in text
    measured = {r["text"]: r["measured"] for r in document["references"]}
    paired = "at a fixed rate, median of the rounds paired with direct's (ms)"
    assert measured[f"mwm added p50 {paired}"] == pytest.approx(0.27)
    assert measured[f"mwm added p99 {paired}"] == pytest.approx(0.4)


def test_render_results_from_before_the_rounds_were_kept() -> None:
    document = _document(passing())
    text = report.render(document)
    assert "added latency per round" not in text
    measured = {r["text"]: r["measured"] for r in document["references"]}
    assert (
        measured["mwm added p99 at a fixed rate, median of the rounds paired with direct's (ms)"]
        is None
    )
