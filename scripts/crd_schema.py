"""Generate the ServiceChecker CRD from the controller's models.

The ServiceChecker's ``spec`` is described once, by the pydantic models the controller
parses it with (:class:`controller.checker.CheckerSpecModel` and the shared models of
``controller/localspec.py``): field names, types, required fields, enums, bounds,
patterns, defaults, the CEL rules (``x-kubernetes-validations`` in the models'
``json_schema_extra``) and the descriptions (the fields' docstrings, else their class's).
The parts that are not in the models -- names, versions, printer columns and the
``status`` schema, which only the controller writes -- live in
``scripts/crd_template.yaml``, whose ``spec: {}`` this script fills.

The result is written to ``config/crd/bases/`` and, byte for byte, to the chart's
``crds/`` (``deploy/install.yaml`` is rendered from the chart by
``scripts/render_install.py``; the chart's ``values.schema.json`` takes the spec schema
from the CRD through ``scripts/chart_schema.py``).

Translation rules, so the CRD stays a structural schema a real API server accepts:
``$ref`` and ``anyOf [X, null]`` are inlined (an optional field is simply not required),
``title`` and ``additionalProperties`` are dropped (unknown fields are pruned), every
array is ``x-kubernetes-list-type: atomic``, every integer ``format: int32``, and only
boolean and integer defaults are kept (a string or list default would be written into
every stored object, the seed's included).

Usage: ``.venv/bin/python scripts/crd_schema.py`` rewrites both files; ``--check`` exits
1 (printing the difference) when a committed file is stale.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from generated_file import write_or_check  # noqa: E402

from controller.checker import CheckerSpecModel  # noqa: E402

TEMPLATE_PATH = REPO / "scripts" / "crd_template.yaml"
CRD_NAME = "maintenance.mamrezb.com_servicecheckers.yaml"
CRD_PATHS = (
    REPO / "config" / "crd" / "bases" / CRD_NAME,
    REPO / "charts" / "maintenance-window-manager" / "crds" / CRD_NAME,
)

JsonObject = dict[str, Any]

_KEY_ORDER = (
    "type",
    "format",
    "description",
    "required",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "default",
    "x-kubernetes-list-type",
    "x-kubernetes-validations",
    "items",
    "properties",
)
"""Keys kept from pydantic's JSON schema, in the order they are written."""


def _text(description: str) -> str:
    """One paragraph: docstring line breaks and indentation folded, rST literals plain."""
    return re.sub(r"``([^`]+)``", r"\1", " ".join(description.split()))


def _inline(node: JsonObject, defs: JsonObject) -> JsonObject:
    """``node`` with ``$ref`` and ``anyOf [X, null]`` replaced by X; the outer keys (a
    field's description, default, bounds) win over the referenced definition's."""
    outer = {k: v for k, v in node.items() if k not in ("$ref", "anyOf")}
    if "$ref" in node:
        target = defs[node["$ref"].removeprefix("#/$defs/")]
        return {**_inline(target, defs), **outer}
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"cannot express {node} in a structural schema")
        return {**_inline(variants[0], defs), **outer}
    return node


def _convert(node: JsonObject, defs: JsonObject, path: str) -> JsonObject:
    node = _inline(node, defs)
    kind = node.get("type")
    if kind not in ("object", "array", "string", "integer", "boolean", "number"):
        raise ValueError(f"{path}: no structural type in {node}")
    if not node.get("description"):
        raise ValueError(f"{path}: no description (write a docstring under the field)")
    out: JsonObject = {"type": kind, "description": _text(node["description"])}
    if kind == "integer":
        out["format"] = "int32"
    for key in ("format", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength"):
        if key in node:
            out[key] = copy.deepcopy(node[key])
    default = node.get("default")
    if kind in ("boolean", "integer") and default is not None:
        out["default"] = default
    if kind == "array":
        if "maxItems" not in node:
            raise ValueError(f"{path}: unbounded list (CEL cost): set max_length")
        out["maxItems"] = node["maxItems"]
        if "minItems" in node:
            out["minItems"] = node["minItems"]
        out["x-kubernetes-list-type"] = "atomic"
        out["items"] = _convert(node["items"], defs, f"{path}[]")
    if kind == "object":
        if node.get("required"):
            out["required"] = list(node["required"])
        out["properties"] = {
            name: _convert(child, defs, f"{path}.{name}")
            for name, child in node["properties"].items()
        }
    if "x-kubernetes-validations" in node:
        out["x-kubernetes-validations"] = [
            {"rule": rule["rule"], "message": rule["message"]}
            for rule in node["x-kubernetes-validations"]
        ]
    return {key: out[key] for key in _KEY_ORDER if key in out}


def spec_schema() -> JsonObject:
    """The CRD's ``spec`` schema, from :class:`controller.checker.CheckerSpecModel`."""
    schema = CheckerSpecModel.model_json_schema(by_alias=True, mode="validation")
    return _convert(schema, schema.get("$defs", {}), "spec")


class _Dumper(yaml.SafeDumper):
    """Block style with indented lists; long descriptions folded (``>-``) as a person
    would write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if len(value) > 80 and "\n" not in value and not value.startswith(("^", " ")):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=">")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def render() -> str:
    """The whole CRD file: the template's header comment, then the filled template."""
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    header = header[: header.index("\n#\n# The spec schema is generated")] + "\n"
    crd = yaml.safe_load(text)
    (version,) = crd["spec"]["versions"]
    version["schema"]["openAPIV3Schema"]["properties"]["spec"] = spec_schema()
    body = yaml.dump(crd, Dumper=_Dumper, sort_keys=False, width=96, allow_unicode=True)
    note = (
        "#\n# Generated by scripts/crd_schema.py from controller/checker.py,\n"
        "# controller/localspec.py and scripts/crd_template.yaml: edit those, not this file.\n"
    )
    return header + note + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    args = parser.parse_args(argv)
    fresh = render()
    failed = 0
    for path in CRD_PATHS:
        failed |= write_or_check(path, fresh, check=args.check, command="scripts/crd_schema.py")
    return failed


if __name__ == "__main__":
    sys.exit(main())
