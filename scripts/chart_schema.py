"""Regenerate the generated parts of the Helm chart's ``values.schema.json``.

Two parts of the schema are copies of definitions that live elsewhere, so they are
generated instead of written by hand (and a test fails when they drift):

- ``config``: the process's settings (``proxy.settings.Settings.model_json_schema()``,
  ``$defs`` resolved), one key per ``MWM_`` variable, minus the secrets (the chart's
  ``secrets`` block mounts those as files).  Every leaf also accepts ``null``, which
  means "not set: the process's own default".  Descriptions are the fields'
  docstrings plus the process default.
- ``serviceCheckers[].spec``: the ServiceChecker CRD's ``spec`` schema, with unknown
  fields refused (as ``kubectl apply``'s strict field validation would).

The result is JSON-schema draft-07 (what Helm v3 and v4 both validate), without
pydantic's custom formats (``path``, ``ipv4network``) that validators would ignore or
reject.  The rest of the file is written by hand and kept as it is.

Usage: ``.venv/bin/python scripts/chart_schema.py`` rewrites the file;
``--check`` exits 1 (printing the difference) when the committed file is stale.
"""

from __future__ import annotations

import argparse
import ast
import copy
import inspect
import itertools
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from generated_file import write_or_check  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from proxy.settings import Settings  # noqa: E402

CHART = REPO / "charts" / "maintenance-window-manager"
SCHEMA_PATH = CHART / "values.schema.json"
CRD_PATH = REPO / "config" / "crd" / "bases" / "maintenance.mamrezb.com_servicecheckers.yaml"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"

SECRET_FIELDS = frozenset(
    {
        ("bypass", "token"),
        ("bypass", "token_file"),
        ("bypass", "cookie_secret"),
        ("bypass", "cookie_secret_file"),
        ("management", "admin_token"),
        ("management", "admin_token_file"),
    }
)
"""Settings the chart never takes as plain values: they come from the ``secrets`` block."""

_FORMAT_PATTERNS = {"uri": "^[A-Za-z][A-Za-z0-9+.-]*://"}
"""Formats turned into a pattern; every other format (``path``, ``ipv4network``, ...) is a
pydantic annotation that JSON-schema validators would not check, and is dropped."""

JsonObject = dict[str, Any]


def field_docstrings(model: type[BaseModel]) -> dict[str, str]:
    """The docstrings written under each field of ``model`` (pydantic keeps them only with
    ``use_attribute_docstrings``, which the settings do not set)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(model)))
    (cls,) = tree.body
    assert isinstance(cls, ast.ClassDef)
    docs: dict[str, str] = {}
    body = cls.body
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _resolve(node: JsonObject, defs: JsonObject) -> JsonObject:
    ref = node.get("$ref")
    if ref is None:
        return node
    return _resolve(defs[ref.removeprefix("#/$defs/")], defs)


def _leaf(node: JsonObject, defs: JsonObject) -> JsonObject:
    """A scalar or list setting as draft-07, also accepting null ("not set")."""
    node = _resolve(node, defs)
    variants = node.get("anyOf")
    if variants is not None:
        concrete = [_resolve(v, defs) for v in variants if v.get("type") != "null"]
        if all(v.get("type") == "string" for v in concrete) and len(concrete) > 1:
            concrete = [{"type": "string"}]  # IPv4 or IPv6 network: a string either way
        (node,) = concrete
    out: JsonObject = {}
    if "enum" in node:
        out["type"] = ["string", "null"]
        out["enum"] = [*node["enum"], None]
        return out
    kind = node["type"]
    out["type"] = [kind, "null"]
    if kind == "array":
        out["items"] = _leaf(node["items"], defs)
        out["items"]["type"] = out["items"]["type"][0]  # items themselves are never null
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength"):
        if key in node:
            out[key] = node[key]
    pattern = _FORMAT_PATTERNS.get(node.get("format", ""))
    if pattern is not None:
        out["pattern"] = pattern
    return out


def _describe(doc: str | None, default: Any) -> str:
    text = doc.rstrip(".") + ". " if doc else ""
    if isinstance(default, BaseModel):
        return text.strip()
    return f"{text}Process default: {json.dumps(default)}."


def _group(
    node: JsonObject, defs: JsonObject, model: type[BaseModel], path: tuple[str, ...]
) -> JsonObject:
    node = _resolve(node, defs)
    docs = field_docstrings(model)
    properties: JsonObject = {}
    for name, child in node["properties"].items():
        if (*path, name) in SECRET_FIELDS:
            continue
        field = model.model_fields[name]
        default = field.get_default(call_default_factory=True, validated_data={})
        if isinstance(default, BaseModel):
            sub = _group(child, defs, type(default), (*path, name))
        else:
            sub = _leaf(child, defs)
            if hasattr(default, "model_dump"):
                default = default.model_dump(mode="json")
            default = json.loads(json.dumps(default, default=str))
        description = _describe(docs.get(name), default)
        properties[name] = {"description": description, **sub} if description else sub
    out: JsonObject = {"type": "object", "additionalProperties": False}
    doc = inspect.getdoc(model)
    if path and doc and model.__doc__:
        out["description"] = " ".join(doc.split())
    out["properties"] = properties
    return out


def config_schema() -> JsonObject:
    """The ``config`` value: every non-secret setting, grouped as the ``MWM_`` names are."""
    schema = Settings.model_json_schema()
    out = _group(schema, schema["$defs"], Settings, ())
    out["description"] = (
        "The process's settings, one key per MWM_ environment variable "
        "(config.upstream.url is MWM_UPSTREAM__URL). null: the process's own default. "
        "Secrets are not here: see secrets. Generated from proxy/settings.py by "
        "scripts/chart_schema.py."
    )
    return out


_CRD_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "properties",
        "items",
        "required",
        "pattern",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "enum",
        "default",
        "format",
    }
)


def _strict_crd(node: JsonObject) -> JsonObject:
    out: JsonObject = {}
    for key, value in node.items():
        if key not in _CRD_KEYWORDS:
            continue  # x-kubernetes-* (checked by the API server, not by Helm)
        if key == "format" and value != "date-time":
            continue  # int32 / int64 only document the width
        if key == "properties":
            out[key] = {name: _strict_crd(child) for name, child in value.items()}
        elif key == "items":
            out[key] = _strict_crd(value)
        else:
            out[key] = copy.deepcopy(value)
    if "properties" in out:
        out["additionalProperties"] = False
    return out


def service_checker_spec_schema() -> JsonObject:
    with CRD_PATH.open(encoding="utf-8") as stream:
        crd = yaml.safe_load(stream)
    (version,) = crd["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return _strict_crd(spec)


def generate(current: JsonObject) -> JsonObject:
    """``current`` (the committed schema) with its generated parts replaced."""
    schema = copy.deepcopy(current)
    schema["$schema"] = DRAFT_07
    schema["properties"]["config"] = config_schema()
    checker = schema["properties"]["serviceCheckers"]["items"]["properties"]
    checker["spec"] = service_checker_spec_schema()
    return schema


def dump(schema: JsonObject) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    committed = SCHEMA_PATH.read_text(encoding="utf-8")
    fresh = dump(generate(json.loads(committed)))
    return write_or_check(SCHEMA_PATH, fresh, check=args.check, command="scripts/chart_schema.py")


if __name__ == "__main__":
    sys.exit(main())
