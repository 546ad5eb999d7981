"""Writing a generated file, or (``--check``) failing with a diff when the committed one is stale.

Shared by the scripts that generate committed files (scripts/chart_schema.py,
scripts/render_install.py), so CI and the tests report staleness the same way.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path


def write_or_check(path: Path, fresh: str, *, check: bool, command: str) -> int:
    """Write ``fresh`` to ``path``; with ``check``, compare instead and return 1 (printing
    the difference and ``command``, which regenerates it) when they differ."""
    if not check:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fresh, encoding="utf-8")
        return 0
    committed = path.read_text(encoding="utf-8") if path.exists() else ""
    if fresh == committed:
        return 0
    sys.stdout.writelines(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            fresh.splitlines(keepends=True),
            "committed",
            "generated",
        )
    )
    print(f"{path.name} is stale: run {command}")
    return 1
