"""The issue's targets, the verdicts, and the table the harness prints.

Every target is a ratio or a bound taken from one run on one machine, so the machine's
own speed cancels out of the ratios: ``mwm / naive`` and ``mwm / nginx`` are measured in
the same rounds, interleaved.  The targets are issue 15's, plus the earlier ones it did not
replace (RSS growth during the soak, the controller's reaction time).  The reference figures
from the issues are printed beside this machine's, to tell whether the machine behaves like
the ones the targets came from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024
CLIENT_BOUND_PCT = 90
"""A load generator using this much of its core limits the rate, not the server."""
OTHER_CPU_WARN_PCT = 10
"""CPU taken by processes outside the benchmark during a run (the machine is shared):
above this, the run competed with something else and its figures are suspect."""
CLUSTER_RSS_LIMIT_MIB = 50.0
"""Cluster mode, one worker, after start-up and after N requests (``bench.footprint``)."""
STARTUP_LIMIT_S = 1.0
"""Cluster mode, from the process's spawn to the first 200 from ``/readyz``."""
RSS_GROWTH_TOLERANCE_MIB = 2.0
""""Not growing" between the half-way sample and the end: less than this.  A process that
leaks a few hundred bytes per request grows by tens of MiB over half a million requests;
allocator noise and lazily filled caches stay well under 2 MiB."""
TWO_WORKER_CPUS = 4
"""``mwm-proxy-2w`` is measured only with a core for each of its two workers, one for the
upstream and one for the load generator: with fewer, the workers share a core with the
upstream or the client and the ratio would measure the machine, not mwm."""
NOT_APPLICABLE = "n/a"
"""The verdict of a target this machine cannot measure (not a failure: ``--check`` passes)."""


def two_workers_shortfall(cpus: int) -> str | None:
    """Why ``mwm-proxy-2w`` cannot be measured on a machine with ``cpus`` usable CPUs, or
    None when it can."""
    if cpus >= TWO_WORKER_CPUS:
        return None
    return (
        f"not measured: needs {TWO_WORKER_CPUS} CPUs (2 workers, the upstream, the load "
        f"generator), this machine has {cpus}"
    )


@dataclass(frozen=True, slots=True)
class Target:
    key: str
    text: str
    limit: float
    at_least: bool
    """True: the measured value must be >= limit; False: <= limit."""
    unit: str
    measure: Callable[[Mapping[str, Any]], float | None]
    unavailable: Callable[[Mapping[str, Any]], str | None] = lambda results: None
    """Why this machine cannot measure it (the verdict is then n/a, not a failure)."""
    disturbed: Callable[[Mapping[str, Any]], str | None] = lambda results: None
    """Why this run's figure means nothing (the verdict is then NOT MEASURED: run again)."""


def _median(results: Mapping[str, Any], target: str, metric: str) -> float | None:
    row = results.get("throughput", {}).get(target)
    return None if row is None else row["median"].get(metric)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fixed(results: Mapping[str, Any], target: str, metric: str) -> float | None:
    """``target``'s ``metric`` in the fixed-rate run (``p99_ms``, ``added_p50_ms``...)."""
    value = results.get("fixed_rate", {}).get(target, {}).get(metric)
    return None if value is None else float(value)


def _added(results: Mapping[str, Any], metric: str) -> float | None:
    return _fixed(results, "mwm-proxy", f"added_{metric}")


def _reference_slowed(results: Mapping[str, Any], metric: str) -> str | None:
    """Why mwm's added latency at ``metric`` means nothing: it is negative, so the direct
    reference was slower than mwm in front of it (its rounds were disturbed), or None."""
    added = _added(results, metric)
    if added is None or added >= 0:
        return None
    direct, mwm = _fixed(results, "direct", metric), _fixed(results, "mwm-proxy", metric)
    return (
        f"disturbed: direct's own {metric.removesuffix('_ms')} ({_number(direct, 3)} ms) "
        f"is above mwm's in front of it ({_number(mwm, 3)} ms); run again"
    )


def _paired_rounds(rate: Mapping[str, Any]) -> list[str]:
    """The fixed rate's added latency round by round (``bench.harness.paired_added``): one
    line per target but direct, each round's figure then their median; none for results
    from before the rounds were kept."""
    lines = []
    for name, row in rate.items():
        if name == "direct" or not row.get("added_p50_rounds_ms"):
            continue
        figures = [
            " / ".join(f"{value:.3f}" for value in row[f"added_{metric}_rounds_ms"])
            + f" (median {_number(row.get(f'added_{metric}_round_median_ms'), 3)})"
            for metric in ("p50", "p99")
        ]
        lines.append(f"  {name:<13}+p50 {figures[0]}, +p99 {figures[1]} ms")
    if lines:
        lines.insert(0, "added latency per round, each paired with direct's same round:")
    return lines


def _footprint(results: Mapping[str, Any], field: str) -> float | None:
    footprint = results.get("footprint", {})
    if field == "rss_after_mib" and not footprint.get("requests"):
        return None  # no requests sent: "after N requests" was not measured
    value = footprint.get(field)
    return None if value is None else float(value)


def _private(footprint: Mapping[str, Any]) -> str:
    """`` (of which N MiB private)`` when the footprint measured it (older results did not)."""
    private = footprint.get("private_ready_mib")
    return "" if private is None else f" (of which {float(private):.1f} MiB private, RssAnon)"


def _floor(footprint: Mapping[str, Any]) -> str:
    """``; its dependencies alone N MiB`` when the footprint measured them (``Floor``)."""
    floor = footprint.get("floor")
    if not floor:
        return ""
    return (
        f"; the {floor['modules']} modules it imports from its dependencies, imported alone "
        f"(kubernetes-asyncio left out): RSS {float(floor['rss_mib']):.1f} MiB "
        f"({float(floor['private_mib']):.1f} private)"
    )


def _two_workers_unavailable(results: Mapping[str, Any]) -> str | None:
    reason = results.get("two_workers", {}).get("not_measured")
    return None if reason is None else str(reason)


def _cpu_ratio(results: Mapping[str, Any], target: str, reference: str) -> float | None:
    """CPU per request of ``target`` over ``reference``'s, medians of the same run."""
    return _ratio(
        _median(results, target, "cpu_us_per_request"),
        _median(results, reference, "cpu_us_per_request"),
    )


TARGETS: tuple[Target, ...] = (
    Target(
        "proxied_cpu",
        "CPU per proxied request, features on, 1 worker: mwm / nginx proxy",
        2.5,
        False,
        "x",
        lambda r: _cpu_ratio(r, "mwm-proxy", "nginx-proxy"),
    ),
    Target(
        "proxied_throughput",
        "proxied throughput, features on, 1 worker: mwm / naive aiohttp proxy",
        3.0,
        True,
        "x",
        lambda r: _ratio(_median(r, "mwm-proxy", "rps"), _median(r, "naive-proxy", "rps")),
    ),
    Target(
        "added_p50",
        "added latency over direct at a fixed rate, p50",
        0.15,
        False,
        "ms",
        lambda r: _added(r, "p50_ms"),
        disturbed=lambda r: _reference_slowed(r, "p50_ms"),
    ),
    Target(
        "added_p99",
        "added latency over direct at a fixed rate, p99",
        0.5,
        False,
        "ms",
        lambda r: _added(r, "p99_ms"),
        disturbed=lambda r: _reference_slowed(r, "p99_ms"),
    ),
    Target(
        "maintenance_cpu",
        "503 page, CPU per request: mwm / nginx static 503",
        2.0,
        False,
        "x",
        lambda r: _cpu_ratio(r, "mwm-503", "nginx-503"),
    ),
    Target(
        "cluster_rss_ready",
        "cluster mode, RSS per worker after start-up (bench.footprint)",
        CLUSTER_RSS_LIMIT_MIB,
        False,
        "MiB",
        lambda r: _footprint(r, "rss_ready_mib"),
    ),
    Target(
        "cluster_rss_after",
        "cluster mode, RSS per worker after the footprint's requests (bench.footprint)",
        CLUSTER_RSS_LIMIT_MIB,
        False,
        "MiB",
        lambda r: _footprint(r, "rss_after_mib"),
    ),
    Target(
        "cluster_startup",
        "cluster mode, start-up to ready (bench.footprint)",
        STARTUP_LIMIT_S,
        False,
        "s",
        lambda r: _footprint(r, "startup_s"),
    ),
    Target(
        "two_workers",
        "proxied throughput, two workers on two cores: mwm-proxy-2w / mwm-proxy",
        1.8,
        True,
        "x",
        lambda r: _ratio(_median(r, "mwm-proxy-2w", "rps"), _median(r, "mwm-proxy", "rps")),
        _two_workers_unavailable,
    ),
    Target(
        "rss_growth",
        "RSS growth, half-way to the end of the soak",
        RSS_GROWTH_TOLERANCE_MIB,
        False,
        "MiB",
        lambda r: r.get("soak", {}).get("growth_second_half_mib"),
    ),
    Target(
        "reaction_p99",
        "EndpointSlice change to first 503 (bench.reaction), p99",
        50.0,
        False,
        "ms",
        lambda r: r.get("reaction", {}).get("p99_ms"),
    ),
)


def verdicts(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for target in TARGETS:
        reason = target.unavailable(results)
        value = None if reason is not None else target.measure(results)
        if reason is not None:
            verdict = NOT_APPLICABLE
        elif (reason := target.disturbed(results)) is not None or value is None:
            verdict = "NOT MEASURED"
        elif target.at_least:
            verdict = "PASS" if value >= target.limit else "FAIL"
        else:
            verdict = "PASS" if value <= target.limit else "FAIL"
        rows.append(
            {
                "key": target.key,
                "text": target.text,
                "limit": target.limit,
                "comparison": ">=" if target.at_least else "<=",
                "unit": target.unit,
                "measured": value,
                "verdict": verdict,
                "note": reason,
            }
        )
    return rows


def failed(rows: list[dict[str, Any]]) -> bool:
    """Whether ``--check`` fails: a target FAILed or was not measured (a phase skipped or
    broken); n/a, a target this machine cannot measure, is no failure."""
    return any(row["verdict"] not in ("PASS", NOT_APPLICABLE) for row in rows)


REFERENCES: tuple[tuple[str, str, Callable[[Mapping[str, Any]], float | None]], ...] = (
    (
        "naive aiohttp / nginx proxy throughput (compare machines by this)",
        "0.15-0.18x, issue 11",
        lambda r: _ratio(_median(r, "naive-proxy", "rps"), _median(r, "nginx-proxy", "rps")),
    ),
    (
        "naive aiohttp / nginx proxy CPU per proxied request",
        "~8x, issue 11 (150-190 µs / ~20 µs)",
        lambda r: _cpu_ratio(r, "naive-proxy", "nginx-proxy"),
    ),
    (
        "naive aiohttp proxy throughput (req/s)",
        "5,133, issue 15",
        lambda r: _median(r, "naive-proxy", "rps"),
    ),
    (
        "floor proxy / nginx proxy CPU per proxied request (what issue 15's 2.5x leaves mwm)",
        "1.80x, issue 15 (the same design on aiohttp's C parsers)",
        lambda r: _cpu_ratio(r, "floor-proxy", "nginx-proxy"),
    ),
    (
        "mwm / floor proxy CPU per proxied request (mwm's features and structure)",
        "none yet",
        lambda r: _cpu_ratio(r, "mwm-proxy", "floor-proxy"),
    ),
    (
        "mwm added p50 at a fixed rate, median of the rounds paired with direct's (ms)",
        "none yet",
        lambda r: _fixed(r, "mwm-proxy", "added_p50_round_median_ms"),
    ),
    (
        "mwm added p99 at a fixed rate, median of the rounds paired with direct's (ms)",
        "none yet",
        lambda r: _fixed(r, "mwm-proxy", "added_p99_round_median_ms"),
    ),
    (
        "floor proxy added p50 at a fixed rate (ms)",
        "0.10 with httptools, issue 15",
        lambda r: _fixed(r, "floor-proxy", "added_p50_ms"),
    ),
    (
        "floor proxy added p99 at a fixed rate (ms)",
        "0.36 with httptools, issue 15",
        lambda r: _fixed(r, "floor-proxy", "added_p99_ms"),
    ),
    (
        "floor 503 / nginx static 503 CPU per request (what issue 15's 2x leaves the page)",
        "none yet",
        lambda r: _cpu_ratio(r, "floor-503", "nginx-503"),
    ),
    (
        "mwm 503 / floor 503 CPU per request (mwm's page path over the floor's)",
        "none yet",
        lambda r: _cpu_ratio(r, "mwm-503", "floor-503"),
    ),
    (
        "aiohttp pre-rendered 503 / nginx static 503 throughput",
        "0.27x, issue 15 (nginx client-bound); 0.45-0.49x, issue 11",
        lambda r: _ratio(_median(r, "aiohttp-503", "rps"), _median(r, "nginx-503", "rps")),
    ),
    (
        "mwm 503 / nginx static 503 throughput (issue 11's target, >= 0.6x)",
        "0.24x, issue 15 (nginx client-bound)",
        lambda r: _ratio(_median(r, "mwm-503", "rps"), _median(r, "nginx-503", "rps")),
    ),
    (
        "nginx proxy / direct throughput",
        "~0.35x, issue 11",
        lambda r: _ratio(_median(r, "nginx-proxy", "rps"), _median(r, "direct", "rps")),
    ),
    (
        "nginx CPU per proxied request (µs)",
        "18.2, issue 15; ~20, issue 11",
        lambda r: _median(r, "nginx-proxy", "cpu_us_per_request"),
    ),
    (
        "naive aiohttp CPU per proxied request (µs)",
        "150-190, issue 11",
        lambda r: _median(r, "naive-proxy", "cpu_us_per_request"),
    ),
    (
        "naive aiohttp added p50 at a fixed rate (ms)",
        "~2.5, issue 11",
        lambda r: _fixed(r, "naive-proxy", "added_p50_ms"),
    ),
    (
        "naive aiohttp added p99 at a fixed rate (ms)",
        "~5, issue 11",
        lambda r: _fixed(r, "naive-proxy", "added_p99_ms"),
    ),
    (
        "nginx added p50 at a fixed rate (ms)",
        "0.09, issue 15; ~0.3, issue 11",
        lambda r: _fixed(r, "nginx-proxy", "added_p50_ms"),
    ),
    (
        "nginx added p99 at a fixed rate (ms)",
        "0.19, issue 15",
        lambda r: _fixed(r, "nginx-proxy", "added_p99_ms"),
    ),
    (
        "mwm RSS at the end of the soak, local mode, 1 worker (MiB; issue 11's target <= 60)",
        "57.0 after 1 M requests, issue 15",
        lambda r: r.get("soak", {}).get("rss_end_mib"),
    ),
)


def references(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"text": text, "issue": issue, "measured": measure(results)}
        for text, issue, measure in REFERENCES
    ]


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _split(median: Mapping[str, Any]) -> str:
    user, system = median.get("user_us_per_request"), median.get("system_us_per_request")
    return "-" if user is None or system is None else f"{user:.0f}+{system:.0f}"


def _changes(git: Mapping[str, Any]) -> str:
    changed = git.get("changed_files") or []
    return f" + uncommitted changes in {', '.join(changed)}" if changed else ""


def render(results: Mapping[str, Any]) -> str:
    """The whole report as text: throughput table, fixed rate, soak, reaction, verdicts."""
    options = results["options"]
    machine = results["machine"]
    lines = [
        f"mwm performance harness @ {results['git']['commit'][:12]}"
        f"{_changes(results['git'])}: {machine['cpus']} CPUs "
        f"({machine['cpu_model']}), Python {machine['python']}, {machine['loop']} loop, "
        f"pinning: {results['pinning']['text']}",
        f"throughput: wrk -t1 -c{options['connections']}, {options['rounds']} interleaved "
        f"round(s) x {options['seconds']} s, medians",
        "",
        f"{'target':<13}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU µs/req':>12}"
        f"{'usr+sys':>10}{'RSS MiB':>9}{'client CPU':>12}  response",
    ]
    client_bound = False
    for name, row in results.get("throughput", {}).items():
        median = row["median"]
        response = row.get("response") or {}
        shape = (
            f"{response.get('status', '?')}, {response.get('body_bytes', '?')} B"
            if response
            else ""
        )
        errors = ""
        client_cpu = median["client_cpu_pct"]
        if client_cpu is not None and client_cpu >= CLIENT_BOUND_PCT:
            errors = "  [client-bound]"
            client_bound = True
        if row["socket_errors"]:
            errors += f"  [{row['socket_errors']} socket errors]"
        other = median.get("other_cpu_pct")
        if other is not None and other >= OTHER_CPU_WARN_PCT:
            errors += f"  [other processes: {other:.0f}% of a core]"
        lines.append(
            f"{name:<13}{_number(median['rps'], 0):>9}{_number(median['p50_ms'], 2):>9}"
            f"{_number(median['p99_ms'], 2):>9}{_number(median['cpu_us_per_request'], 1):>12}"
            f"{_split(median):>10}{_number(median['rss_mib'], 1):>9}"
            f"{_number(median['client_cpu_pct'], 0):>11}%"
            f"  {shape}{errors}"
        )
    if client_bound:
        lines.append(
            f"[client-bound]: wrk used >= {CLIENT_BOUND_PCT}% of its core; the server's real "
            "capacity is higher than this req/s (its CPU µs/req still holds)"
        )
    not_measured = results.get("two_workers", {}).get("not_measured")
    if not_measured:
        lines.append(f"mwm-proxy-2w (two workers): {not_measured}")
    rate = results.get("fixed_rate")
    if rate:
        lines += [
            "",
            f"fixed rate: {options['rate']} req/s (h2load, {options['rate_clients']} keep-alive "
            f"clients, staggered), {options['rounds']} round(s) x {options['rate_seconds']} s, "
            "percentiles over every request",
            f"{'target':<13}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}"
            f"{'n':>8}",
        ]
        for name, row in rate.items():
            lines.append(
                f"{name:<13}{_number(row['achieved_per_s'], 0):>9}{_number(row['p50_ms'], 3):>9}"
                f"{_number(row['p99_ms'], 3):>9}{_number(row.get('added_p50_ms'), 3):>9}"
                f"{_number(row.get('added_p99_ms'), 3):>9}{row['requests']:>8}"
            )
        lines += _paired_rounds(rate)
    soak = results.get("soak")
    if soak:
        samples = ", ".join(
            f"{s['requests'] / 1000:.0f}k: {s['rss_mib']:.1f}" for s in soak["samples"]
        )
        lines += [
            "",
            f"soak: {soak['requests']} requests through a fresh mwm ({soak['seconds']:.0f} s, "
            f"{soak['requests_per_s']:.0f} req/s); RSS MiB at start "
            f"{soak['rss_start_mib']:.1f}, half-way {soak['rss_half_mib']:.1f}, end "
            f"{soak['rss_end_mib']:.1f} (growth in the second half "
            f"{soak['growth_second_half_mib']:+.2f})",
            f"  samples (requests: RSS MiB): {samples}",
        ]
    reaction = results.get("reaction")
    if reaction:
        if "error" in reaction:
            lines += ["", f"reaction: {reaction['error']}"]
        else:
            lines += [
                "",
                f"reaction (bench.reaction, {reaction['flips']} flips): change -> first 503 "
                f"median {reaction['median_ms']:.2f} ms, p99 {reaction['p99_ms']:.2f} ms, "
                f"max {reaction['max_ms']:.2f} ms",
            ]
    footprint = results.get("footprint")
    if footprint:
        if "error" in footprint:
            lines += ["", f"footprint: {footprint['error']}"]
        else:
            lines += [
                "",
                f"footprint (bench.footprint: cluster mode, 1 worker, fake API server; medians "
                f"of {footprint['rounds']} round(s)): start-up to ready "
                f"{footprint['startup_s']:.3f} s, RSS {footprint['rss_ready_mib']:.1f} MiB "
                f"after start-up{_private(footprint)}, {footprint['rss_after_mib']:.1f} MiB "
                f"after {footprint['requests']:,} requests ({footprint['errors']} non-200)"
                f"{_floor(footprint)}",
            ]
    lines += ["", "targets (issue 15's; RSS growth and reaction time from the earlier issues):"]
    for row in results["verdicts"]:
        figure = row["note"] if row.get("note") else f"{_number(row['measured'], 2)} {row['unit']}"
        lines.append(
            f"  {row['verdict']:<13}{row['text']}: {figure} "
            f"(target {row['comparison']} {row['limit']:g} {row['unit']})"
        )
    lines += ["", "this machine vs the issues' reference machines:"]
    for row in results["references"]:
        lines.append(f"  {row['text']}: {_number(row['measured'], 2)} (reference: {row['issue']})")
    return "\n".join(lines)
