"""values.schema.json: generated from the settings, complete, and checked by Helm itself.

Helm validates the merged values against the chart's schema before rendering (install,
upgrade, template); ``Chart.validate_schema`` and ``Chart.render`` run that same check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import helm_python
import pytest
import yaml
from pydantic import BaseModel

from proxy.settings import Settings
from tests.chart.chartrender import (
    BASE_VALUES,
    CHART,
    JsonObject,
    load_script,
    merged,
    render,
    values,
)

SCHEMA_PATH = CHART / "values.schema.json"
chart_schema = load_script("chart_schema")


def committed_schema() -> JsonObject:
    schema: JsonObject = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def schema_problems(candidate: JsonObject) -> str:
    """Helm's own message for values that fail the schema, or "" when they pass."""
    with helm_python.Chart.load(CHART) as chart:
        try:
            chart.validate_schema(chart.merge_values(candidate))
        except helm_python.HelmValuesError as exc:
            return str(exc)
    return ""


# --- generated from the settings --------------------------------------------------------


def test_committed_schema_equals_a_fresh_generation() -> None:
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    assert chart_schema.dump(chart_schema.generate(json.loads(text))) == text, (
        "values.schema.json is stale: run .venv/bin/python scripts/chart_schema.py"
    )
    assert chart_schema.main(["--check"]) == 0


def setting_paths(
    model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Every leaf setting, walked from the pydantic models (not from their JSON schema)."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from setting_paths(annotation, (*prefix, name))
        else:
            yield (*prefix, name)


def schema_paths(node: JsonObject, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, child in node["properties"].items():
        if "properties" in child:
            yield from schema_paths(child, (*prefix, name))
        else:
            yield (*prefix, name)


def test_config_has_every_setting_but_the_secrets() -> None:
    config = committed_schema()["properties"]["config"]
    secrets = {p for p in setting_paths(Settings) if p[-1].endswith(("token", "secret", "_file"))}
    assert secrets == set(chart_schema.SECRET_FIELDS)
    assert set(schema_paths(config)) == set(setting_paths(Settings)) - secrets


def test_config_keys_are_the_settings_keys_and_refuse_others() -> None:
    config = committed_schema()["properties"]["config"]

    def objects(node: JsonObject) -> Iterator[JsonObject]:
        if "properties" in node:
            yield node
            for child in node["properties"].values():
                yield from objects(child)

    assert all(node["additionalProperties"] is False for node in objects(config))
    upstream = config["properties"]["upstream"]["properties"]
    assert upstream["url"]["type"] == ["string", "null"]
    assert upstream["pool_size"]["type"] == ["integer", "null"]
    assert upstream["pool_size"]["minimum"] == 0
    assert config["properties"]["bypass"]["properties"]["path_prefixes"] == {
        "description": upstream_description("bypass", "path_prefixes"),
        "type": ["array", "null"],
        "items": {"type": "string"},
    }
    assert config["properties"]["log"]["properties"]["format"]["enum"] == ["text", "json", None]


def upstream_description(group: str, key: str) -> str:
    node = committed_schema()["properties"]["config"]["properties"][group]["properties"][key]
    description: str = node["description"]
    assert description.endswith(".")
    return description


def test_every_schema_node_we_own_refuses_unknown_keys() -> None:
    free_form = {
        "config",  # checked above, generated
        "podSecurityContext", "securityContext", "updateStrategy", "affinity", "resources",
        "global",
    }  # fmt: skip
    for name, node in committed_schema()["properties"].items():
        if name in free_form or node["type"] != "object":
            continue
        if "properties" in node:
            assert node["additionalProperties"] is False, name
        else:  # string maps (annotations, labels, templates)
            assert node["additionalProperties"] == {"type": "string"}, name
    assert committed_schema()["additionalProperties"] is False


# --- values.yaml and the schema agree ---------------------------------------------------


def values_file() -> JsonObject:
    loaded: JsonObject = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    return loaded


def leaf_paths(
    schema: JsonObject, data: Any, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Schema properties, each asserted present in values.yaml, down to the schema's leaves."""
    for name, child in schema["properties"].items():
        path = (*prefix, name)
        assert isinstance(data, dict)
        assert name in data, f"values.yaml lacks {'.'.join(path)}"
        if "properties" in child:
            yield from leaf_paths(child, data[name], path)
        else:
            yield path


def test_values_file_has_every_schema_key_and_nothing_else() -> None:
    schema = committed_schema()
    paths = set(leaf_paths(schema, values_file()))
    assert ("config", "upstream", "url") in paths
    assert ("livenessProbe", "periodSeconds") in paths

    def keys(data: Any, schema_node: JsonObject, prefix: tuple[str, ...] = ()) -> Iterator[str]:
        for name, value in data.items():
            child = schema_node.get("properties", {}).get(name)
            assert child is not None, (
                f"values.yaml has {'.'.join((*prefix, name))}, unknown to the schema"
            )
            if isinstance(value, dict) and "properties" in child:
                yield from keys(value, child, (*prefix, name))
            yield ".".join((*prefix, name))

    assert list(keys(values_file(), schema))
    # The defaults pass Helm's own validation.
    assert schema_problems({}) == ""


def test_every_value_is_commented() -> None:
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    leaves = {".".join(p) for p in leaf_paths(committed_schema(), values_file())}
    stack: list[tuple[int, str]] = []
    seen = set()
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z_][\w]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        path = ".".join(key for _, key in stack)
        if path in leaves:
            seen.add(path)
            assert lines[number - 1].strip().startswith("#"), f"values.yaml: {path} has no comment"
    assert seen == leaves


def test_chart_defaults_that_differ_from_the_process_are_the_documented_ones() -> None:
    config = values_file()["config"]

    def set_values(
        node: Any, prefix: tuple[str, ...] = ()
    ) -> Iterator[tuple[tuple[str, ...], Any]]:
        for key, value in node.items():
            if isinstance(value, dict):
                yield from set_values(value, (*prefix, key))
            elif value is not None:
                yield (*prefix, key), value

    assert dict(set_values(config)) == {
        ("shutdown", "prestop_delay_s"): 5,
        ("log", "format"): "json",
        ("source", "kind"): "kubernetes",
    }


# --- Helm refuses bad values with a clear message ---------------------------------------


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"placement": "sidecar"}, id="sidecar"),
        pytest.param({"config": {"bypass": {"path_prefixes": []}}}, id="empty-list"),
        pytest.param({"config": {"upstream": {"connect_timeout_s": 2.5}}}, id="float"),
        pytest.param({"config": {"page": {"title": None}}}, id="null-is-the-default"),
        pytest.param({"podDisruptionBudget": {"minAvailable": "50%"}}, id="percentage"),
        pytest.param({"serviceCheckers": [{"name": "shop", "spec": {}}]}, id="checker"),
        pytest.param({"image": {"digest": "sha256:" + "0" * 64}}, id="digest"),
    ],
)
def test_good_values_are_accepted(override: JsonObject) -> None:
    assert schema_problems(values(**override)) == ""


@pytest.mark.parametrize(
    ("override", "message"),
    [
        pytest.param({"replicaCont": 3}, "at '': additional properties 'replicaCont' not allowed",
                     id="typo-top-level"),
        pytest.param({"config": {"upstream": {"urll": "http://x"}}},
                     "at '/config/upstream': additional properties 'urll' not allowed",
                     id="typo-in-config"),
        pytest.param({"config": {"bypas": {}}},
                     "at '/config': additional properties 'bypas' not allowed", id="typo-group"),
        pytest.param({"replicaCount": "two"}, "at '/replicaCount': got string, want integer",
                     id="wrong-type"),
        pytest.param({"config": {"listen": {"public_port": "8080"}}},
                     "at '/config/listen/public_port': got string, want null or integer",
                     id="port-as-string"),
        pytest.param({"config": {"listen": {"public_port": 70000}}},
                     "at '/config/listen/public_port': maximum: got 70,000, want 65,535",
                     id="port-out-of-range"),
        pytest.param({"placement": "daemonset"},
                     "at '/placement': value must be one of 'gateway', 'sidecar'",
                     id="bad-placement"),
        pytest.param({"config": {"log": {"format": "xml"}}},
                     "at '/config/log/format': value must be one of 'text', 'json', <nil>",
                     id="bad-enum-setting"),
        pytest.param({"config": {"upstream": {"url": "shop:80"}}},
                     "at '/config/upstream/url': 'shop:80' does not match pattern",
                     id="url-without-scheme"),
        pytest.param({"config": {"bypass": {"token": "s3cret"}}},
                     "at '/config/bypass': additional properties 'token' not allowed",
                     id="secret-as-plain-value"),
        pytest.param({"config": {"management": {"admin_token_file": "/x"}}},
                     "additional properties 'admin_token_file' not allowed",
                     id="secret-file-is-the-charts"),
        pytest.param({"serviceCheckers": [{"name": "shop", "spec": {"services": [
                         {"name": "frontend", "minready": 2}]}}]},
                     "additional properties 'minready' not allowed", id="checker-typo"),
        pytest.param({"serviceCheckers": [{"name": "shop", "spec": {"windows": [
                         {"start": "tomorrow", "end": "2026-12-01T10:00:00Z"}]}}]},
                     "'tomorrow' is not valid date-time", id="checker-bad-time"),
        pytest.param({"watchNamespaces": ["Payments"]}, "at '/watchNamespaces/0'",
                     id="namespace-not-a-label"),
        pytest.param({"secrets": {"existingSecret": "x", "create": True}},
                     "at '/secrets': additional properties 'create' not allowed",
                     id="typo-in-secrets"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_naming_the_key(override: JsonObject, message: str) -> None:
    problems = schema_problems(merged(BASE_VALUES, override))
    assert message in problems, problems


def test_render_itself_enforces_the_schema() -> None:
    with pytest.raises(helm_python.HelmValuesError, match="additional properties 'replicaCont'"):
        render(values(replicaCont=3))


def test_chart_readme_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    for path in leaf_paths(committed_schema(), values_file()):
        if path[0] == "config":
            continue
        name = ".".join(path)
        # A row names the key whole, or as `.key` after its group's first key.
        documented = f"`{name}`" in readme or (
            f"`{path[0]}." in readme and f"`.{path[-1]}`" in readme
        )
        assert documented, f"charts/maintenance-window-manager/README.md lacks {name}"
