"""The ServiceChecker CRD's own OpenAPI v3 schema, used as the API server would use it.

No API server can run here, so the tests validate custom resources with the schema taken
from the CRD file itself (never a copy): ``jsonschema`` checks types, patterns, bounds and
``format: date-time`` (through ``rfc3339-validator``), and ``cel-python`` evaluates every
``x-kubernetes-validations`` rule found in the schema, where ``jsonschema`` would silently
ignore it.  Each problem names the field it is about, as ``$.spec.services[0].name``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import yaml
from jsonschema import Draft202012Validator

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"
CRD_PATH = CONFIG / "crd" / "bases" / "maintenance.mamrezb.com_servicecheckers.yaml"

JsonObject = dict[str, Any]


def load_documents(path: Path) -> list[JsonObject]:
    """Every non-empty YAML document in ``path`` (a manifest may hold several)."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def load_crd() -> JsonObject:
    (crd,) = load_documents(CRD_PATH)
    return crd


def version_schema(crd: Mapping[str, Any]) -> JsonObject:
    """The ``openAPIV3Schema`` of the CRD's only version."""
    (version,) = crd["spec"]["versions"]
    schema: JsonObject = version["schema"]["openAPIV3Schema"]
    return schema


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason the API server would refuse an object."""

    path: str
    """The field, as a JSON path: ``$.spec.windows[0].end``."""
    keyword: str
    """The schema keyword that failed (``pattern``, ``maxItems``, ``x-kubernetes-validations``)."""
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def strict(schema: Mapping[str, Any]) -> JsonObject:
    """``schema`` with unknown fields refused, as ``kubectl apply`` does by default.

    A structural schema makes the server prune unknown fields; kubectl's default
    server-side field validation (``--validate=strict``) turns each pruned field into an
    error instead.  ``additionalProperties: false`` on every object with properties
    reproduces that.
    """
    result = copy.deepcopy(dict(schema))
    for node in _object_nodes(result):
        node["additionalProperties"] = False
    return result


def _object_nodes(node: JsonObject) -> Iterator[JsonObject]:
    if node.get("properties"):
        yield node
        for child in node["properties"].values():
            yield from _object_nodes(child)
    if isinstance(node.get("items"), dict):
        yield from _object_nodes(node["items"])


class CrdValidator:
    """Validates whole custom resources against one version's schema."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        Draft202012Validator.check_schema(schema)
        self.schema = schema
        self._validator = Draft202012Validator(
            schema, format_checker=Draft202012Validator.FORMAT_CHECKER
        )

    def problems(self, obj: Any) -> list[Problem]:
        found = [
            Problem(error.json_path, str(error.validator), _short(error.message))
            for error in self._validator.iter_errors(obj)
        ]
        # As in the API server, a wrong type or a value outside an enum blocks the CEL rules
        # (they could not be type-checked); other problems are reported alongside them.
        if not any(p.keyword in _BLOCKING for p in found):
            found.extend(_rule_problems(self.schema, obj, "$"))
        return sorted(found, key=lambda p: (p.path, p.keyword))


_BLOCKING = frozenset({"type", "enum"})


def _short(message: str, limit: int = 200) -> str:
    """jsonschema quotes the whole instance (101 services...); keep messages readable."""
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _rule_problems(schema: Mapping[str, Any], value: Any, path: str) -> Iterator[Problem]:
    """Evaluate each ``x-kubernetes-validations`` rule with ``self`` bound to its node."""
    for rule in schema.get("x-kubernetes-validations", ()):
        try:
            holds = bool(_program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)}))
        except celpy.CELEvalError as exc:
            yield Problem(path, "x-kubernetes-validations", f"rule {rule['rule']!r} failed: {exc}")
            continue
        if not holds:
            yield Problem(path, "x-kubernetes-validations", rule.get("message", rule["rule"]))
    if isinstance(value, dict):
        for key, child in schema.get("properties", {}).items():
            if key in value:
                yield from _rule_problems(child, value[key], f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _rule_problems(schema["items"], item, f"{path}[{index}]")


@cache
def _program(rule: str) -> Any:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))
