"""Issue 13's live-status figures in one run: the status stream, then the page's return.

1. :mod:`bench.sse`: 10,000 concurrent subscribers of ``/_mwm/status/stream`` on one worker,
   the RSS each costs, and the time from a state change to the last subscriber's event
   (p50/p99 over the flips);
2. :mod:`bench.page_return`: 5,000 open maintenance pages reloading when maintenance ends,
   spread over ``MWM_PAGE__RETURN_SPREAD_S`` against all at once.

    python -m bench.live [--subscribers N] [--flips N] [--pages N] [--spread S]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bench import page_return, sse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--flips", type=int, default=20)
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--spread", type=float, default=5.0)
    options = parser.parse_args(argv)
    streams = sse.main([f"--subscribers={options.subscribers}", f"--flips={options.flips}"])
    print(flush=True)
    pages = page_return.main([f"--pages={options.pages}", f"--spread={options.spread}"])
    return max(streams, pages)


if __name__ == "__main__":
    sys.exit(main())
