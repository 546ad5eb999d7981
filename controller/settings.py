"""Settings owned by the state sources (composed into the root ``Settings`` by ``proxy``)."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_settings import NoDecode


def split_list(value: object) -> object:
    """Accept ``a,b`` as well as a JSON list for list settings given as one string."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def empty_is_none(value: object) -> object:
    """An empty variable means "not set" (a Helm value left blank, say)."""
    return None if value == "" else value


class SettingsGroup(BaseModel):
    """A group of settings; unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


StrList = Annotated[list[str], NoDecode, BeforeValidator(split_list)]
OptionalStr = Annotated[str | None, BeforeValidator(empty_is_none)]
OptionalPath = Annotated[Path | None, BeforeValidator(empty_is_none)]


class SourceKind(enum.StrEnum):
    AUTO = "auto"
    """Kubernetes when running in a cluster, the local file otherwise."""
    LOCAL = "local"
    KUBERNETES = "kubernetes"


class FailSafe(enum.StrEnum):
    """What users get while the Kubernetes state has never been read (no last known state)."""

    SERVE = "serve"
    """Forward to the app: an API outage must not look like an application outage."""
    MAINTENANCE = "maintenance"
    """Show the maintenance page until the state is known (for apps where serving during an
    announced maintenance would do harm)."""


class LocalSourceSettings(SettingsGroup):
    """The cluster-less source: a YAML file in the ServiceChecker's shape, plus probes."""

    file: OptionalPath = None
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


class KubernetesSourceSettings(SettingsGroup):
    """The in-cluster source: ServiceCheckers, EndpointSlices, Services, a ConfigMap switch."""

    namespace: OptionalStr = None
    """Namespace whose ServiceCheckers are honoured; default: the pod's own (in a cluster),
    else the kubeconfig context's, else ``default``."""
    checker_names: StrList = Field(default_factory=list)
    """Honour only these ServiceCheckers (empty: every one in the namespace)."""
    checker_label_selector: OptionalStr = None
    """Honour only ServiceCheckers matching this label selector, e.g. ``app=shop``."""
    configmap_name: OptionalStr = None
    """A ConfigMap in the namespace whose ``configmap_key`` (``"true"``/``"false"``, or
    ``"readOnly"`` for read-only maintenance) switches maintenance, compatible with the
    OpenShift demo's toggle; unset: not watched."""
    configmap_key: str = "MAINTENANCE_MODE"
    api_url: OptionalStr = None
    """Talk to the API at this URL without credentials (``kubectl proxy``, tests); unset:
    the in-cluster service account, or the kubeconfig outside a cluster."""
    kubeconfig: OptionalPath = None
    """Use this kubeconfig outside a cluster (default: ``~/.kube/config``)."""
    context: OptionalStr = None
    """The kubeconfig context to use (default: its current context)."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    """Timeout of one API request (not of watches)."""
    watch_timeout_s: float = Field(default=300.0, ge=1)
    """The server ends each watch after this and it is reopened from the last version."""
    inactivity_timeout_s: float = Field(default=330.0, gt=0)
    """A watch with no event or bookmark for this long is treated as dead and reopened."""
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    """Retries of failing API calls back off exponentially up to this, with jitter."""
    stale_after_s: float = Field(default=60.0, gt=0)
    """A service whose watches have failed this long is marked stale (its last known
    state is still used: an API outage is not an application outage)."""
    fail_safe: FailSafe = FailSafe.SERVE
    """The verdict while nothing has been read from the API yet (unreachable at start, RBAC
    missing); once state was read, the last known state is kept through any outage."""


class LeaderElectionSettings(SettingsGroup):
    """Only the leader writes ServiceChecker status and Events; every replica serves."""

    enabled: bool = True
    lease_name: str = "mwm-controller-leader"
    """Name of the coordination.k8s.io Lease, in the watched namespace."""
    lease_duration_s: int = Field(default=15, ge=1)
    """Whole seconds (the Lease stores an integer)."""
    renew_deadline_s: float = Field(default=10.0, ge=1)
    """A leader that cannot renew within this stops writing, before others may take over."""
    retry_period_s: float = Field(default=2.0, ge=1)
    identity: OptionalStr = None
    """This replica's name in the Lease; default: the host name (the pod name)."""

    @model_validator(mode="after")
    def _ordered(self) -> LeaderElectionSettings:
        if self.lease_duration_s <= self.renew_deadline_s:
            raise ValueError("lease_duration_s: must be greater than renew_deadline_s")
        if self.renew_deadline_s <= 1.2 * self.retry_period_s:
            raise ValueError("renew_deadline_s: must be greater than 1.2 x retry_period_s")
        return self


class StatusWriterSettings(SettingsGroup):
    enabled: bool = True
    """Write ServiceChecker status and Events (by the leader only)."""
    coalesce_s: float = Field(default=0.2, ge=0)
    """Changes arriving within this are written in one patch."""
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)


class SourceSettings(SettingsGroup):
    kind: SourceKind = SourceKind.AUTO
    local: LocalSourceSettings = Field(default_factory=LocalSourceSettings)
    kubernetes: KubernetesSourceSettings = Field(default_factory=KubernetesSourceSettings)
    leader_election: LeaderElectionSettings = Field(default_factory=LeaderElectionSettings)
    status: StatusWriterSettings = Field(default_factory=StatusWriterSettings)
