"""Custom resources checked against the schema of their CRD, as the API server checks them.

The schema in force is the one of the CRD stored in the fake (created over HTTP or with
``FakeKubeAPI.apply_crd``), for the object's version; it is compiled once per CRD
resourceVersion.  The checks are those of ``tests/crd/schema.py`` (types, patterns, bounds,
``format: date-time`` and every ``x-kubernetes-validations`` CEL rule).  Not modelled: pruning
of unknown fields (a real server drops them silently; here they are kept), defaulting, and
CEL cost limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.crd.schema import CrdValidator

_validators: dict[tuple[str, str, str], CrdValidator] = {}


def _validator(crd: Mapping[str, Any], version: str) -> CrdValidator | None:
    metadata = crd.get("metadata") or {}
    key = (str(metadata.get("uid")), str(metadata.get("resourceVersion")), version)
    if key not in _validators:
        for served in (crd.get("spec") or {}).get("versions") or []:
            if served.get("name") == version:
                schema = ((served.get("schema") or {}).get("openAPIV3Schema")) or None
                if schema is None:
                    return None
                _validators[key] = CrdValidator(schema)
                break
        else:
            return None
    return _validators[key]


def schema_problems(
    crd: Mapping[str, Any], version: str, obj: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """``(field, message)`` causes for a 422, as ``spec.services[0].name`` and the reason."""
    validator = _validator(crd, version)
    if validator is None:
        return []
    return [
        (problem.path.removeprefix("$."), f"Invalid value: {problem.message}")
        for problem in validator.problems(obj)
        if problem.path != "$.metadata" and not problem.path.startswith("$.metadata.")
    ]
