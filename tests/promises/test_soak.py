"""Promise: under a high request rate with maintenance toggled all the time, nothing is
lost and memory stays flat.

A 12-second run of the soak (``bench/soak.py``, the same code as the full 10-minute
``python -m bench.soak``) with maintenance switched every 0.2 s through the admin API:
every response is the upstream's exact body or the exact maintenance page (no 502, no
reset, no truncated body), and mwm's RSS at the end is within 2 MiB of its RSS half-way.
"""

from __future__ import annotations

from bench.soak import SoakOptions, soak


async def test_a_short_soak_toggling_maintenance_loses_no_response_and_keeps_rss_flat() -> None:
    options = SoakOptions(
        duration_s=12, toggle_interval_s=0.2, rss_interval_s=0.5, rss_tolerance_mib=2
    )

    result = await soak(options)

    assert result.problems() == [], result.report()
    assert result.toggles >= 30, result.report()  # maintenance really flipped all along
