"""``controller.kubelib``: kubernetes-asyncio without its generated models, and its assumptions.

The test process itself has imported kubernetes-asyncio whole (the fake API server uses its
client), so the controller runs in a fresh Python process here, as in a pod: it configures
itself from a kubeconfig, watches, wins the Lease and writes a ServiceChecker's status
against the fake API server; then it reports which of the library's modules it loaded.

If a kubernetes-asyncio release changes what the lazy packages rely on (an ``__init__`` doing
more than importing and assigning constants), the controller falls back to the plain import
and says so at debug level: tested with a copy of the package whose ``__init__`` does more.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from tests.kube.clusters import FAST, FAST_ELECTION, NS, create_critical_api
from tests.kube.fakeapi import FakeKubeAPI
from tests.mwmprocess import ROOT, clean_env

LEASE = "mwm-controller-leader"
IDENTITY = "replica-under-test"

ELECTION_MODELS = {"v1_lease", "v1_lease_spec", "v1_object_meta"}
"""The generated models the controller builds (the election's Lease); the library has
~700 more."""

CONTROLLER = """
import asyncio, json, logging, sys
logging.basicConfig(level=logging.WARNING)
logging.getLogger("controller.kubelib").setLevel(logging.DEBUG)
from controller import kubelib
from controller.cluster import Cluster
from controller.settings import SourceSettings
from controller.store import SnapshotStore

async def main() -> None:
    cluster = Cluster(SourceSettings.model_validate_json(sys.argv[1]), SnapshotStore(),
                      in_cluster=False)
    running = asyncio.create_task(cluster.run())
    await cluster.ready.wait()
    leadership = cluster.leadership
    while not leadership.leading:
        await leadership.changed.wait()
    print("leading", flush=True)
    await asyncio.to_thread(sys.stdin.read)  # the test has seen the status written
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    loaded = [m for m in sys.modules if m.startswith("kubernetes_asyncio.")]
    print(json.dumps({"mode": kubelib.MODE, "loaded": loaded}), flush=True)

asyncio.run(main())
"""


def _settings(kubeconfig: Path) -> str:
    env = {**FAST, **FAST_ELECTION}
    return json.dumps(
        {
            "kind": "kubernetes",
            "kubernetes": {
                "namespace": NS,
                "kubeconfig": str(kubeconfig),
                "backoff_initial_s": env["MWM_SOURCE__KUBERNETES__BACKOFF_INITIAL_S"],
                "backoff_max_s": env["MWM_SOURCE__KUBERNETES__BACKOFF_MAX_S"],
            },
            "leader_election": {
                "identity": IDENTITY,
                "lease_duration_s": env["MWM_SOURCE__LEADER_ELECTION__LEASE_DURATION_S"],
                "renew_deadline_s": env["MWM_SOURCE__LEADER_ELECTION__RENEW_DEADLINE_S"],
                "retry_period_s": env["MWM_SOURCE__LEADER_ELECTION__RETRY_PERIOD_S"],
            },
            "status": {"coalesce_s": 0},
        }
    )


def _kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig for the fake (whose requests without a token are the controller's)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "mwm", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "mwm"}}],
        "current-context": "fake",
    }
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    return path


async def _run_controller(
    fake: FakeKubeAPI,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    *,
    site: Path | None = None,
) -> dict[str, Any]:
    """Run the controller in a fresh process (``site`` first on its path) until it led and
    wrote the checker's status; return its report (``mode``, ``loaded``) and its log."""
    path = [str(ROOT), *([str(site)] if site else []), os.environ.get("PYTHONPATH", "")]
    create_critical_api(fake)
    settings = _settings(_kubeconfig(tmp_path / "kubeconfig", fake.url))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CONTROLLER,
        settings,
        cwd=ROOT,
        env=clean_env({**(env or {}), "PYTHONPATH": os.pathsep.join(filter(None, path))}),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert first == b"leading\n", (first, await proc.stderr.read())

        def status_written() -> bool:
            obj = fake.get("servicecheckers", NS, "shop")
            return obj is not None and bool((obj.get("status") or {}).get("conditions"))

        await fake.wait_until(status_written)
        proc.stdin.close()
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(out)
    report["log"] = err.decode()
    return report


def _models(loaded: list[str]) -> set[str]:
    prefix = "kubernetes_asyncio.client.models."
    return {name.removeprefix(prefix) for name in loaded if name.startswith(prefix)}


async def test_the_controller_loads_only_the_models_its_election_builds(
    fake: FakeKubeAPI, tmp_path: Path
) -> None:
    # A Lease left by a replica gone long ago: the election reads it (the library turns the
    # answer into a V1Lease, finding the class by name) and takes it over.
    fake.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": NS},
            "spec": {
                "holderIdentity": "replica-gone",
                "leaseDurationSeconds": 2,
                "acquireTime": "2020-01-01T00:00:00.000000Z",
                "renewTime": "2020-01-01T00:00:00.000000Z",
                "leaseTransitions": 3,
            },
        }
    )
    report = await _run_controller(fake, tmp_path)

    assert report["mode"] == "lazy"
    assert _models(report["loaded"]) == ELECTION_MODELS
    apis = {m for m in report["loaded"] if m.startswith("kubernetes_asyncio.client.api.")}
    assert apis == {"kubernetes_asyncio.client.api.coordination_v1_api"}
    # ... and it did its work: the Lease is its own, the status was written (above).
    lease = fake.get("leases", NS, LEASE)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == IDENTITY


async def test_the_diagnostic_switch_imports_the_whole_library(
    fake: FakeKubeAPI, tmp_path: Path
) -> None:
    report = await _run_controller(fake, tmp_path, {"MWM_KUBE_EAGER_IMPORT": "1"})

    assert report["mode"] == "eager"
    assert len(_models(report["loaded"])) > 500


def _unexpected_copy(tmp_path: Path) -> Path:
    """kubernetes_asyncio with one line more in its ``__init__``: a computed value."""
    spec = importlib.util.find_spec("kubernetes_asyncio")
    assert spec is not None
    assert spec.submodule_search_locations
    real = Path(spec.submodule_search_locations[0])
    copy = tmp_path / "site" / "kubernetes_asyncio"
    copy.mkdir(parents=True)
    for entry in real.iterdir():
        if entry.name not in ("__init__.py", "__pycache__"):
            (copy / entry.name).symlink_to(entry)
    source = (real / "__init__.py").read_text(encoding="utf-8")
    (copy / "__init__.py").write_text(source + "\nBUILT = sorted(['client'])\n", "utf-8")
    return copy.parent


async def test_an_unexpected_package_falls_back_to_the_plain_import(
    fake: FakeKubeAPI, tmp_path: Path
) -> None:
    report = await _run_controller(fake, tmp_path, site=_unexpected_copy(tmp_path))

    assert report["mode"] == "eager"
    assert len(_models(report["loaded"])) > 500
    assert (
        "kubernetes_asyncio imported whole (kubernetes_asyncio: computes BUILT)" in (report["log"])
    )
