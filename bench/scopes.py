"""What matching a request against scoped maintenance costs: :func:`proxy.decision.decide`
with the verdict's :class:`~proxy.decision.Scopes` compiled once (as the public listener
keeps them per state generation), next to a naive loop of ``startswith`` over the routes.

Cases, in nanoseconds per decision (best of ``--repeat`` loops of ``--loops`` decisions, the
cost of building nothing but the loop taken off):

- ``no maintenance``: the verdict is off (the public listener does not even call ``decide``
  then; this is the floor);
- ``whole site``: one manual switch, every request blocked (the common case: one
  preallocated block, no matching at all);
- ``100 routes hit`` / ``100 routes miss``: 100 services with a route each (``/svc42``,
  three segments deep for a third of them), the request under one of them or under none;
- ``read-only GET`` / ``read-only POST``: a read-only switch and the 100 routes: a read that
  passes (every route checked) and a write that is blocked.

The naive reference does what a first version would: for every cause, for every route,
``path == prefix or path.startswith(prefix + "/")`` and a method check, then the same bypass
check ``decide`` makes before blocking.

    python -m bench.scopes [--loops 50000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

from controller.snapshot import (
    OFF,
    SAFE_METHODS,
    Cause,
    CauseKind,
    Maintenance,
    Mode,
    Route,
)
from proxy.bypass import BypassPolicy
from proxy.decision import RequestView, Scopes, decide

ROUTES = 100
POLICY = BypassPolicy(path_prefixes=("/admin",), token=None, networks=(), cookie=None)


def _route_causes() -> tuple[Cause, ...]:
    causes = []
    for i in range(ROUTES):
        prefix = f"/svc{i}" if i % 3 else f"/api/v{i % 7}/svc{i}"
        methods = frozenset({"POST"}) if i % 5 == 0 else frozenset()
        causes.append(
            Cause(
                kind=CauseKind.SERVICE_DOWN,
                reason="A service this part of the site needs is unavailable",
                services=(f"svc{i}",),
                routes=(Route(prefix, methods),),
            )
        )
    return tuple(causes)


def _naive(maintenance: Maintenance) -> Callable[[RequestView], bool]:
    """True when the request is blocked: a loop of ``startswith`` over every route."""
    causes = maintenance.causes

    def blocked(view: RequestView) -> bool:
        write = view.upgrade or view.method not in SAFE_METHODS
        for cause in causes:
            if cause.mode is Mode.READ_ONLY and not write:
                continue
            if not cause.routes:
                return True
            for route in cause.routes:
                prefix = route.path_prefix
                if (view.path == prefix or view.path.startswith(prefix + "/")) and (
                    not route.methods or view.method in route.methods
                ):
                    return True
        return False

    return blocked


def _best_ns(run: Callable[[int], None], loops: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        run(loops)
        best = min(best, (time.perf_counter_ns() - start) / loops)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    routes = _route_causes()
    site = Maintenance(active=True, causes=(Cause(kind=CauseKind.MANUAL, reason="Upgrade"),))
    routed = Maintenance(active=True, causes=routes)
    read_only = Maintenance(
        active=True,
        causes=(Cause(kind=CauseKind.MANUAL, reason="Swap", mode=Mode.READ_ONLY), *routes),
    )

    def view(path: str, method: str = "GET") -> RequestView:
        return RequestView(method=method, path=path, client=None)

    cases = [
        ("no maintenance", OFF, view("/shop/item/42")),
        ("whole site", site, view("/shop/item/42")),
        ("100 routes hit", routed, view("/api/v3/svc66/orders/7")),
        ("100 routes miss", routed, view("/shop/item/42")),
        ("read-only GET", read_only, view("/shop/item/42")),
        ("read-only POST", read_only, view("/shop/item/42", "POST")),
    ]

    def empty(n: int) -> None:
        for _ in range(n):
            pass

    base = _best_ns(empty, args.loops, args.repeat)
    print(
        f"scoped maintenance: ns per decision, {ROUTES} routes, best of {args.repeat} x "
        f"{args.loops:,}; Python {platform.python_version()}"
    )
    print(f"  {'case':<18} {'compiled':>10} {'naive loop':>11} {'ratio':>7}  blocked")
    for name, maintenance, request in cases:
        scopes = Scopes(maintenance)
        naive = _naive(maintenance)

        def compiled(
            n: int, m: Maintenance = maintenance, s: Scopes = scopes, r: RequestView = request
        ) -> None:
            for _ in range(n):
                decide(r, m, POLICY, now=0.0, scope=s)

        def looped(
            n: int,
            m: Maintenance = maintenance,
            f: Callable[[RequestView], bool] = naive,
            r: RequestView = request,
        ) -> None:
            for _ in range(n):
                if m.active and f(r):
                    POLICY.match(r, now=0.0)  # as decide does before blocking

        fast = max(0.0, _best_ns(compiled, args.loops, args.repeat) - base)
        slow = max(0.0, _best_ns(looped, args.loops, args.repeat) - base)
        decision = decide(request, maintenance, POLICY, now=0.0, scope=scopes)
        blocked = type(decision).__name__ == "Block"
        assert blocked == (maintenance.active and naive(request)), name
        ratio = f"{slow / fast:6.1f}x" if fast else "     -"
        print(f"  {name:<18} {fast:>8.0f} ns {slow:>8.0f} ns {ratio}  {blocked}")


if __name__ == "__main__":
    main()
