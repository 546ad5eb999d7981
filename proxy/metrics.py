"""Prometheus counters and gauges, kept as plain integers.

A metrics library would cost a lock and a label lookup per increment; the hot path
here only does ``counter[key] += 1`` on a dict whose keys are fixed at start-up, and
the text exposition format is produced on scrape.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from controller.store import State

_HELP = {
    "mwm_requests_total": ("counter", "Requests on the public listener, by outcome."),
    "mwm_bypass_total": ("counter", "Requests let through during maintenance, by bypass rule."),
    "mwm_upstream_errors_total": ("counter", "Upstream failures answered with 502/504."),
    "mwm_requests_rejected_total": (
        "counter",
        "Requests refused for exceeding a limit: 408 stalled body, 413 body, 414 URL, 431 headers.",
    ),
    "mwm_header_timeouts_total": (
        "counter",
        "Connections closed because a request head did not arrive in time.",
    ),
    "mwm_bypass_cookies_issued_total": ("counter", "Bypass cookies issued by the secret URL."),
    "mwm_maintenance_active": ("gauge", "1 while maintenance is on."),
    "mwm_service_ready": ("gauge", "1 while the service has enough ready endpoints."),
    "mwm_snapshot_generation": ("gauge", "Generation of the current state; rises on change."),
}


@dataclass
class Metrics:
    requests: Counter[str] = field(default_factory=Counter)
    """Keyed by outcome: forward, bypass, block, invalid, services."""
    bypasses: Counter[str] = field(default_factory=Counter)
    upstream_errors: Counter[int] = field(default_factory=Counter)
    rejected: Counter[int] = field(default_factory=Counter)
    """Keyed by status: 408, 413, 414, 431."""
    header_timeouts: int = 0
    cookies_issued: int = 0

    def render(self, state: State) -> str:
        lines: list[str] = []

        def family(name: str, samples: list[tuple[str, float | int]]) -> None:
            kind, text = _HELP[name]
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {value}" for labels, value in samples)

        family(
            "mwm_requests_total",
            [(f'{{outcome="{k}"}}', v) for k, v in sorted(self.requests.items())],
        )
        family(
            "mwm_bypass_total", [(f'{{rule="{k}"}}', v) for k, v in sorted(self.bypasses.items())]
        )
        family(
            "mwm_upstream_errors_total",
            [(f'{{status="{k}"}}', v) for k, v in sorted(self.upstream_errors.items())],
        )
        family(
            "mwm_requests_rejected_total",
            [(f'{{status="{k}"}}', v) for k, v in sorted(self.rejected.items())],
        )
        family("mwm_header_timeouts_total", [("", self.header_timeouts)])
        family("mwm_bypass_cookies_issued_total", [("", self.cookies_issued)])
        family("mwm_maintenance_active", [("", int(state.maintenance.active))])
        family(
            "mwm_service_ready",
            [
                (
                    f'{{namespace="{_label(s.namespace)}",name="{_label(s.name)}",'
                    f'critical="{str(s.critical).lower()}"}}',
                    int(s.ready),
                )
                for s in state.snapshot.services
            ],
        )
        family("mwm_snapshot_generation", [("", state.generation)])
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
