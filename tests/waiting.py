"""Waiting in tests on events, never by sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until_changed(
    changed: asyncio.Event, condition: Callable[[], bool], timeout_s: float
) -> None:
    """Return once ``condition`` holds, checking it again each time ``changed`` is set
    (whoever changes what it reads sets it); ``TimeoutError`` after ``timeout_s``."""

    async def changes() -> None:
        while not condition():
            changed.clear()
            await changed.wait()

    await asyncio.wait_for(changes(), timeout_s)
