"""The issue's targets, the verdicts, and the table the harness prints.

Every target is a ratio or a bound taken from one run on one machine, so the machine's
own speed cancels out of the ratios: ``mwm / naive`` and ``mwm / nginx`` are measured in
the same rounds, interleaved.  The reference figures from the issue are printed beside
this machine's, to tell whether the machine behaves like the one the targets came from.
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
RSS_LIMIT_MIB = 60.0
RSS_GROWTH_TOLERANCE_MIB = 2.0
""""Not growing" between the half-way sample and the end: less than this.  A process that
leaks a few hundred bytes per request grows by tens of MiB over half a million requests;
allocator noise and lazily filled caches stay well under 2 MiB."""


@dataclass(frozen=True, slots=True)
class Target:
    key: str
    text: str
    limit: float
    at_least: bool
    """True: the measured value must be >= limit; False: <= limit."""
    unit: str
    measure: Callable[[Mapping[str, Any]], float | None]


def _median(results: Mapping[str, Any], target: str, metric: str) -> float | None:
    row = results.get("throughput", {}).get(target)
    return None if row is None else row["median"].get(metric)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _added(results: Mapping[str, Any], metric: str) -> float | None:
    value = results.get("fixed_rate", {}).get("mwm-proxy", {}).get(f"added_{metric}")
    return None if value is None else float(value)


TARGETS: tuple[Target, ...] = (
    Target(
        "proxied_throughput",
        "proxied throughput, features on, 1 worker: mwm / naive aiohttp",
        1.2,
        True,
        "x",
        lambda r: _ratio(_median(r, "mwm-proxy", "rps"), _median(r, "naive-proxy", "rps")),
    ),
    Target(
        "proxied_cpu",
        "CPU per proxied request: mwm / nginx",
        6.0,
        False,
        "x",
        lambda r: _ratio(
            _median(r, "mwm-proxy", "cpu_us_per_request"),
            _median(r, "nginx-proxy", "cpu_us_per_request"),
        ),
    ),
    Target(
        "maintenance_throughput",
        "maintenance 503 throughput, 1 worker: mwm / nginx static 503",
        0.6,
        True,
        "x",
        lambda r: _ratio(_median(r, "mwm-503", "rps"), _median(r, "nginx-503", "rps")),
    ),
    Target(
        "added_p50",
        "added latency over direct at a fixed rate, p50",
        0.5,
        False,
        "ms",
        lambda r: _added(r, "p50_ms"),
    ),
    Target(
        "added_p99",
        "added latency over direct at a fixed rate, p99",
        2.0,
        False,
        "ms",
        lambda r: _added(r, "p99_ms"),
    ),
    Target(
        "rss",
        "RSS per worker after the soak",
        RSS_LIMIT_MIB,
        False,
        "MiB",
        lambda r: r.get("soak", {}).get("rss_end_mib"),
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
        value = target.measure(results)
        if value is None:
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
            }
        )
    return rows


REFERENCES: tuple[tuple[str, str, Callable[[Mapping[str, Any]], float | None]], ...] = (
    (
        "naive aiohttp / nginx proxy throughput",
        "0.15-0.18x",
        lambda r: _ratio(_median(r, "naive-proxy", "rps"), _median(r, "nginx-proxy", "rps")),
    ),
    (
        "aiohttp pre-rendered 503 / nginx static 503",
        "0.45-0.49x",
        lambda r: _ratio(_median(r, "aiohttp-503", "rps"), _median(r, "nginx-503", "rps")),
    ),
    (
        "nginx proxy / direct throughput",
        "~0.35x",
        lambda r: _ratio(_median(r, "nginx-proxy", "rps"), _median(r, "direct", "rps")),
    ),
    (
        "nginx CPU per proxied request (µs)",
        "~20",
        lambda r: _median(r, "nginx-proxy", "cpu_us_per_request"),
    ),
    (
        "naive aiohttp CPU per proxied request (µs)",
        "150-190",
        lambda r: _median(r, "naive-proxy", "cpu_us_per_request"),
    ),
    (
        "naive aiohttp added p50 at a fixed rate (ms)",
        "~2.5",
        lambda r: r.get("fixed_rate", {}).get("naive-proxy", {}).get("added_p50_ms"),
    ),
    (
        "naive aiohttp added p99 at a fixed rate (ms)",
        "~5",
        lambda r: r.get("fixed_rate", {}).get("naive-proxy", {}).get("added_p99_ms"),
    ),
    (
        "nginx added p50 at a fixed rate (ms)",
        "~0.3",
        lambda r: r.get("fixed_rate", {}).get("nginx-proxy", {}).get("added_p50_ms"),
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
    lines += ["", "targets (from the issue):"]
    for row in results["verdicts"]:
        lines.append(
            f"  {row['verdict']:<13}{row['text']}: "
            f"{_number(row['measured'], 2)} {row['unit']} "
            f"(target {row['comparison']} {row['limit']:g} {row['unit']})"
        )
    lines += ["", "this machine vs the issue's reference machine:"]
    for row in results["references"]:
        lines.append(f"  {row['text']}: {_number(row['measured'], 2)} (issue: {row['issue']})")
    return "\n".join(lines)
