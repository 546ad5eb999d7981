"""The CRD is generated from the controller's models (scripts/crd_schema.py): the committed
copies must be a fresh render, and the generator must keep what makes a CRD acceptable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import Field, create_model

from controller.checker import CheckerSpecModel
from controller.localspec import SpecModel
from tests.chart.chartrender import CHART, load_script
from tests.crd.schema import CRD_PATH, JsonObject, load_crd, version_schema

crd_schema = load_script("crd_schema")


def test_both_crd_copies_are_a_fresh_render() -> None:
    fresh = crd_schema.render()
    assert CRD_PATH.read_text(encoding="utf-8") == fresh, (
        "the CRD is stale: run .venv/bin/python scripts/crd_schema.py"
    )
    assert (CHART / "crds" / CRD_PATH.name).read_text(encoding="utf-8") == fresh
    assert crd_schema.main(["--check"]) == 0


def test_check_fails_and_names_the_command_when_a_copy_drifts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / CRD_PATH.name
    stale.write_text(CRD_PATH.read_text(encoding="utf-8").replace("maxItems: 100", "maxItems: 99"))
    monkeypatch.setattr(crd_schema, "CRD_PATHS", (CRD_PATH, stale))
    assert crd_schema.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "maxItems: 99" in out
    assert "run scripts/crd_schema.py" in out


def test_the_spec_schema_is_the_models() -> None:
    # Every field the controller parses is in the CRD, under its Kubernetes name, and no other.
    spec = version_schema(load_crd())["properties"]["spec"]
    assert list(spec["properties"]) == [
        field.alias for field in CheckerSpecModel.model_fields.values()
    ]
    service = spec["properties"]["services"]["items"]["properties"]
    assert set(service) == {
        "name",
        "namespace",
        "critical",
        "minReady",
        "routes",
        "mode",
        "holdSeconds",
    }
    assert service["mode"]["enum"] == ["full", "readOnly"]
    assert "default" not in service["mode"]  # never written into stored seed objects
    assert (service["holdSeconds"]["minimum"], service["holdSeconds"]["maximum"]) == (0, 300)


def test_a_field_without_a_description_is_refused() -> None:
    undocumented = create_model(
        "Undocumented", __base__=SpecModel, __doc__="A model.", colour=(str, "red")
    )
    schema = undocumented.model_json_schema(by_alias=True)
    with pytest.raises(ValueError, match=r"spec\.colour: no description"):
        crd_schema._convert(schema, {}, "spec")


def test_an_unbounded_list_is_refused() -> None:
    unbounded = create_model(
        "Unbounded",
        __base__=SpecModel,
        __doc__="A list.",
        names=(tuple[str, ...], Field(default=(), description="Names.")),
    )
    schema = unbounded.model_json_schema(by_alias=True)
    with pytest.raises(ValueError, match="unbounded list"):
        crd_schema._convert(schema, {}, "spec")


def _rule_nodes(node: JsonObject, path: str, lists: int) -> Iterator[tuple[str, JsonObject, int]]:
    if "x-kubernetes-validations" in node:
        yield path, node, lists
    for name, child in (node.get("properties") or {}).items():
        yield from _rule_nodes(child, f"{path}.{name}", lists)
    if "items" in node:
        assert "maxItems" in node, f"{path}: a list under a CEL rule must be bounded"
        yield from _rule_nodes(node["items"], f"{path}[]", lists + 1)


def test_every_cel_rule_reads_only_bounded_values() -> None:
    # A real API server refuses a rule whose estimated cost is unbounded: every string a rule
    # reads needs a maxLength (or a format that bounds it) and every list above it a maxItems.
    spec = version_schema(load_crd())["properties"]["spec"]
    found = list(_rule_nodes(spec, "$.spec", 0))
    assert [path for path, _, _ in found] == ["$.spec.services[].routes[]", "$.spec.windows[]"]
    for path, node, _ in found:
        for rule in node["x-kubernetes-validations"]:
            for name, child in node["properties"].items():
                if f"self.{name}" in rule["rule"] and child["type"] == "string":
                    assert "maxLength" in child or child.get("format") == "date-time", (
                        f"{path}.{name}"
                    )
