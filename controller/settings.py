"""Settings owned by the state sources (composed into the root ``Settings`` by ``proxy``)."""

from __future__ import annotations

import enum
from pathlib import Path

from pydantic import BaseModel, Field


class SourceKind(enum.StrEnum):
    AUTO = "auto"
    """Kubernetes when running in a cluster, the local file otherwise."""
    LOCAL = "local"
    KUBERNETES = "kubernetes"


class LocalSourceSettings(BaseModel):
    """The cluster-less source: a YAML file in the ServiceChecker's shape, plus probes."""

    file: Path | None = None
    """Path of the local state file.  None: no services, no windows, maintenance off
    until switched on through the admin API."""
    reload_interval_s: float = Field(default=1.0, gt=0)
    """How often the file's modification time is checked; edits apply within this."""
    probe_interval_s: float = Field(default=5.0, gt=0)
    """Default seconds between probes of one service (a service may override it)."""
    probe_timeout_s: float = Field(default=2.0, gt=0)
    """Default timeout of one probe."""
    failure_threshold: int = Field(default=3, ge=1)
    """Consecutive failed probes before a ready service counts as not ready."""
    success_threshold: int = Field(default=1, ge=1)
    """Consecutive successful probes before a not-ready service counts as ready."""


class SourceSettings(BaseModel):
    kind: SourceKind = SourceKind.AUTO
    local: LocalSourceSettings = Field(default_factory=LocalSourceSettings)
