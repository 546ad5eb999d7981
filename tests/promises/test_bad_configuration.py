"""A broken edit of the state changes nothing users see, and says clearly what is wrong.

Configuration is edited live: the local state file, a ServiceChecker, the switch
ConfigMap.  A mistake in one of them must not become an outage (or an accidental end of
maintenance): the proxy keeps the last good state, keeps serving, and says what is wrong
where an operator looks (the log and ``/status``) until the edit is fixed.

Promises:

- After a good state file was loaded, a malformed one (invalid YAML, wrong types,
  unknown or misspelt fields, a naive time, the wrong top level, an empty file) leaves the
  last good state in force and traffic flowing to the upstream, and its problem appears in
  the log (ERROR) and in ``/status`` as ``<file>: <field>: <what was expected>``; fixing the
  file clears it.
- The same holds for an invalid ServiceChecker and an invalid ConfigMap switch value
  coming through the Kubernetes API: logged, listed in ``/status``, traffic unaffected.
  What the controller keeps and writes back to the resource's status is checked in
  ``tests/kube/test_controller.py`` (``test_invalid_edit_keeps_the_last_good_spec_and_says_why``,
  ``test_configmap_switch_is_live_and_bad_values_keep_the_last_one``); the parsing of every
  kind of mistake in ``tests/controller/test_localspec.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ProxyFactory, RunningProxy
from tests.controller.test_localsource import write_state
from tests.kube.clusters import (
    NS,
    Cluster,
    ClusterFactory,
    checker,
    switch_configmap,
    without_schema,
)
from tests.kube.fakeapi import FakeKubeAPI

GOOD = """\
spec:
  services:
    - {name: api, critical: true}
  maintenance: {enabled: false}
"""


async def assert_traffic_flows(proxy: RunningProxy) -> None:
    async with proxy.session.get(f"{proxy.public_url}/shop") as response:
        assert response.status == 200
        assert (await response.json())["path"] == "/shop"


async def status_errors(proxy: RunningProxy) -> list[str]:
    async with proxy.session.get(f"{proxy.management_url}/status") as response:
        assert response.status == 200
        errors: list[str] = (await response.json())["errors"]
        return errors


def logged_errors(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        pytest.param(
            "spec:\n  services: [{name: api\n", "line 3, column 1", "invalid YAML", id="yaml"
        ),
        pytest.param(
            "spec: {services: [{name: api, critical: very}]}",
            "spec.services[0].critical",
            "valid boolean",
            id="wrong-type",
        ),
        pytest.param(
            "spec: {services: [{name: api, minready: 1}]}",
            "spec.services[0].minready",
            "unknown field (field names are camelCase, e.g. minReady)",
            id="misspelt-field",
        ),
        pytest.param(
            "spec: {services: [{name: api}], colour: red}",
            "spec.colour",
            "unknown field",
            id="unknown-field",
        ),
        pytest.param(
            "spec: {maintenance: {enabled: true, until: '2030-01-01T10:00:00'}}",
            "spec.maintenance.until",
            "has no time zone",
            id="naive-time",
        ),
        pytest.param(
            "spec: {services: [{name: Not_A_Name}]}",
            "spec.services[0].name",
            "not a DNS-1123 label",
            id="invalid-name",
        ),
        pytest.param("- api\n- web\n", "the top level", "must be a mapping", id="top-level-list"),
        pytest.param("", "the file is empty", "expected a mapping", id="empty"),
    ],
)
async def test_malformed_state_file_keeps_the_last_good_state_and_says_why(
    start_proxy: ProxyFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    text: str,
    field: str,
    expected: str,
) -> None:
    path = tmp_path / "state.yaml"
    write_state(path, GOOD)
    proxy = await start_proxy(
        {"MWM_SOURCE__LOCAL__FILE": str(path), "MWM_SOURCE__LOCAL__RELOAD_INTERVAL_S": "0.01"}
    )
    good = await proxy.wait_for(lambda state: state.snapshot.synced)
    await assert_traffic_flows(proxy)

    write_state(path, text)
    broken = await proxy.wait_for(lambda state: bool(state.snapshot.errors))
    assert broken.snapshot.services == good.snapshot.services
    assert not broken.maintenance.active
    await assert_traffic_flows(proxy)
    [error] = await status_errors(proxy)
    assert error.startswith(f"{path}: ")
    assert field in error
    assert expected in error
    assert error in logged_errors(caplog)

    write_state(path, GOOD.replace("api", "api-v2"))
    fixed = await proxy.wait_for(lambda state: not state.snapshot.errors)
    assert [s.name for s in fixed.snapshot.services] == ["api-v2"]
    assert await status_errors(proxy) == []


async def test_invalid_servicechecker_is_logged_and_listed_and_traffic_flows(
    fake: FakeKubeAPI,
    start_cluster: ClusterFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.create(checker(services=[]))
    cluster: Cluster = await start_cluster()
    await cluster.wait_for(lambda state: state.snapshot.synced)
    await assert_traffic_flows(cluster.proxy)

    spec: dict[str, Any] = {"spec": {"services": [{"name": "Not_A_Name"}], "enterDelaySeconds": -1}}
    without_schema(fake)  # the CRD's schema would refuse it: an older CRD, say
    fake.patch("servicecheckers", NS, "shop", spec)
    await cluster.wait_for(lambda state: bool(state.snapshot.errors))
    await assert_traffic_flows(cluster.proxy)
    errors = "\n".join(await status_errors(cluster.proxy))
    assert f"ServiceChecker {NS}/shop: spec.services[0].name" in errors
    assert "spec.enterDelaySeconds" in errors
    assert "spec.services[0].name" in logged_errors(caplog)


async def test_invalid_configmap_switch_is_logged_and_listed_and_traffic_flows(
    fake: FakeKubeAPI,
    start_cluster: ClusterFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.create(switch_configmap("false"))
    cluster: Cluster = await start_cluster({"MWM_SOURCE__KUBERNETES__CONFIGMAP_NAME": "app-config"})
    await cluster.wait_for(lambda state: state.snapshot.synced)
    fake.update(switch_configmap("<script>on</script>"))
    await cluster.wait_for(lambda state: bool(state.snapshot.errors))
    await assert_traffic_flows(cluster.proxy)
    [error] = await status_errors(cluster.proxy)
    assert 'MAINTENANCE_MODE must be "true", "false" or "readOnly"' in error
    assert error in logged_errors(caplog)
