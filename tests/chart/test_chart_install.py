"""deploy/install.yaml and the chart's crds/ are generated copies: they must not drift."""

from __future__ import annotations

import pytest

from tests.chart.chartrender import (
    CHART,
    REPO,
    JsonObject,
    documents_of,
    load_script,
    validate_all,
)
from tests.crd.schema import CRD_PATH

render_install = load_script("render_install")
INSTALL = REPO / "deploy" / "install.yaml"


def test_chart_crd_is_the_config_crd_byte_for_byte() -> None:
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [CRD_PATH.name]
    assert (CHART / "crds" / CRD_PATH.name).read_bytes() == CRD_PATH.read_bytes()


def test_install_manifest_equals_a_fresh_render() -> None:
    assert render_install.render_install() == INSTALL.read_text(encoding="utf-8"), (
        "deploy/install.yaml is stale: run .venv/bin/python scripts/render_install.py"
    )
    assert render_install.main(["--check"]) == 0


@pytest.fixture(scope="module")
def installed() -> list[JsonObject]:
    return documents_of(INSTALL.read_text(encoding="utf-8"))


def test_install_manifest_is_valid_and_complete(installed: list[JsonObject]) -> None:
    validate_all(installed)
    kinds = [obj["kind"] for obj in installed]
    assert kinds[:2] == ["Namespace", "CustomResourceDefinition"]
    assert sorted(kinds[2:]) == sorted(
        ["PodDisruptionBudget", "ServiceAccount", "ClusterRole", "ClusterRole", "Role",
         "RoleBinding", "RoleBinding", "Service", "Deployment"]
    )  # fmt: skip
    (crd,) = (obj for obj in installed if obj["kind"] == "CustomResourceDefinition")
    assert crd == documents_of(CRD_PATH.read_text(encoding="utf-8"))[0]
    for obj in installed:
        if obj["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole"):
            assert obj["metadata"]["namespace"] == "maintenance-window-manager", obj["kind"]


def test_install_manifest_ships_no_shared_secret(installed: list[JsonObject]) -> None:
    # A committed Secret would give every cluster the same tokens: it is created by hand.
    assert [obj for obj in installed if obj["kind"] == "Secret"] == []
    (deployment,) = (obj for obj in installed if obj["kind"] == "Deployment")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    (secret,) = (v for v in volumes if v["name"] == "mwm-secrets")
    assert secret["secret"]["secretName"] == "mwm-secrets"
    text = INSTALL.read_text(encoding="utf-8")
    assert "kubectl -n maintenance-window-manager create secret generic mwm-secrets" in text
