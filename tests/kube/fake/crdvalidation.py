"""What apiextensions-apiserver refuses in a CustomResourceDefinition (``apiextensions.k8s.io/v1``).

:func:`crd_problems` returns every problem a real kube-apiserver reports when a CRD is created
or updated, each a :class:`Cause` with the field path and the message the real server puts in
its 422 ``Invalid`` Status; :func:`check_crd` is the fake's hook (it also answers 400 where a
real server cannot even decode the CRD).  The rules are transcribed from the sources of
``k8s.io/apiextensions-apiserver`` (``staging/src/`` in kubernetes/kubernetes):

- ``pkg/apis/apiextensions/validation/validation.go``: ``ValidateCustomResourceDefinition``
  (the name is ``<plural>.<group>``), ``validateCustomResourceDefinitionSpec`` (group, scope,
  schemas required, versions, one storage version, names),
  ``ValidateCustomResourceDefinitionNames``,
  ``ValidateCustomResourceColumnDefinition``, ``ValidateCustomResourceDefinitionSubresources``,
  ``validateCustomResourceConversion``, ``validatePreserveUnknownFields``,
  ``validateCustomResourceDefinitionValidation`` (the root of a schema when the status
  subresource is on), ``ValidateCustomResourceDefinitionOpenAPISchema`` with
  ``specStandardValidatorV3.validate`` (unsupported keywords, where ``default`` may appear, list
  and map types, ``x-kubernetes-validations`` entries) and ``validateMapListKeysMapSet``;
- ``pkg/apiserver/schema/validation.go``: ``ValidateStructural`` (``validateStructuralInvariants``,
  ``validateStructuralMetadataInvariants``, ``validateNestedValueValidation``; its errors are
  sorted by text) and ``complete.go`` (``validateStructuralCompleteness``);
- ``pkg/apiserver/schema/convert.go``: ``NewStructural``; a schema it cannot convert skips the
  structural checks, and its own error is reported only when nothing else is;
- ``pkg/apis/apiextensions/v1/conversion.go`` and ``defaults.go``: a v1 CRD is defaulted
  (``names.singular``, ``names.listKind``) and validated in the internal form, where a schema,
  subresources or printer columns shared by every version move to the top level.  That is
  why a real server names ``spec.validation.openAPIV3Schema.properties[metadata]`` and
  ``spec.additionalPrinterColumns[0].JSONPath`` for a one-version v1 CRD.

Not modelled (a real server checks these too): CEL rules are not compiled nor their cost
estimated; ``default`` values are not validated against their own schema (nor pruned);
``selectableFields``; webhook URLs, services and CA bundles; the approval annotation of the
protected ``*.k8s.io`` groups; immutability on update (group and plural are pinned by the
name anyway); JSON decoding errors other than a non-object schema node, version or
``subresources``/``subresources.status``.  Regular expressions are checked by Python's ``re``
plus Go's best-known refusals (lookarounds, backreferences), so the error text after
"must be a valid regular expression, but isn't:" may differ.  Values Go prints as whole structs
(``%#v``) are elided as ``Type{...}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple, TypeVar

from tests.kube.fake import errors

# -- causes, as k8s.io/apimachinery/pkg/util/validation/field prints them --------------------------


class Cause(NamedTuple):
    """One problem: the field and the message (``field.Error.ErrorBody()``) of a 422 cause."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"  # field.Error.Error(), what the Status aggregates


class GoLiteral(str):
    """A value already in Go's printed form (a struct, elided): shown as is, never quoted."""


VERSIONS_VALUE = GoLiteral("[]apiextensions.CustomResourceDefinitionVersion{...}")
SCHEMA_VALUE = GoLiteral("apiextensions.JSONSchemaProps{...}")
ITEMS_VALUE = GoLiteral("apiextensions.JSONSchemaPropsOrArray{...}")


def go_value(value: Any) -> str:
    """``value`` as ``field.Invalid`` prints it (``%v`` for numbers and bools, ``%q`` strings)."""
    if isinstance(value, GoLiteral):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "[]string{" + ", ".join(go_value(item) for item in value) + "}"
    return json.dumps(value, ensure_ascii=False)


class FieldPath(str):
    """``field.Path``: ``spec.versions[0].schema``, ``properties[metadata]``."""

    def child(self, *names: str) -> FieldPath:
        path = self
        for name in names:
            path = FieldPath(f"{path}.{name}" if path else name)
        return path

    def key(self, key: str) -> FieldPath:
        return FieldPath(f"{self}[{key}]")

    def at(self, index: int) -> FieldPath:
        """``Index(i)`` (``str.index`` keeps its meaning)."""
        return FieldPath(f"{self}[{index}]")


def _body(kind: str, detail: str) -> str:
    return f"{kind}: {detail}" if detail else kind


def required(path: str, detail: str = "") -> Cause:
    return Cause(path, _body("Required value", detail))


def forbidden(path: str, detail: str) -> Cause:
    return Cause(path, _body("Forbidden", detail))


def invalid(path: str, value: Any, detail: str = "") -> Cause:
    return Cause(path, _body(f"Invalid value: {go_value(value)}", detail))


def not_supported(path: str, value: Any, supported: Sequence[str]) -> Cause:
    listed = ", ".join(json.dumps(item) for item in supported)
    return Cause(path, f"Unsupported value: {go_value(value)}: supported values: {listed}")


# -- names (k8s.io/apimachinery/pkg/util/validation) -----------------------------------------------

_DNS1035_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character"
)
_SUBDOMAIN_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    """``validation.RegexError``, its doubled space before "or" included."""
    shown = "".join((" or " if i else "") + f"'{example}', " for i, example in enumerate(examples))
    return f"{message} (e.g. {shown}regex used for validation is '{fmt}')"


def dns1035_label_errors(value: str) -> list[str]:
    found = ["must be no more than 63 characters"] if len(value) > 63 else []
    if not re.fullmatch(_DNS1035_FMT, value):
        found.append(_regex_error(_DNS1035_MSG, _DNS1035_FMT, "my-name", "abc-123"))
    return found


def dns1123_subdomain_errors(value: str) -> list[str]:
    found = ["must be no more than 253 characters"] if len(value) > 253 else []
    if not re.fullmatch(_SUBDOMAIN_FMT, value):
        found.append(_regex_error(_SUBDOMAIN_MSG, _SUBDOMAIN_FMT, "example.com"))
    return found


# -- reading the (untyped) CRD ---------------------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _enum(path: str, value: str, accepted: Sequence[str]) -> list[Cause]:
    """``validateEnumStrings`` for a required field."""
    if not value:
        return [required(path)]
    return [] if value in accepted else [not_supported(path, value, accepted)]


# -- the whole CRD ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Internal:
    """The internal form's split (``Convert_v1_CustomResourceDefinitionSpec_To_apiextensions_...``):
    a part every version has alike is the top-level one, and no version keeps it."""

    validation: Mapping[str, Any] | None
    subresources: Mapping[str, Any] | None
    columns: list[Any]
    version_validation: list[Mapping[str, Any] | None]
    version_subresources: list[Mapping[str, Any] | None]
    version_columns: list[list[Any]]

    @staticmethod
    def of(versions: list[Mapping[str, Any]]) -> _Internal:
        schemas = [_optional_mapping(v.get("schema")) for v in versions]
        subresources = [_optional_mapping(v.get("subresources")) for v in versions]
        columns = [_list(v.get("additionalPrinterColumns")) for v in versions]
        top_schema, schemas = _hoisted(schemas, None)
        top_subresources, subresources = _hoisted(subresources, None)
        top_columns, columns = _hoisted(columns, [])
        return _Internal(top_schema, top_subresources, top_columns, schemas, subresources, columns)

    def subresources_for(self, index: int) -> Mapping[str, Any] | None:
        """``getSubresourcesForVersion``."""
        if any(sub is not None for sub in self.version_subresources):
            return self.version_subresources[index]
        return self.subresources

    def any_status(self) -> bool:
        """``hasAnyStatusEnabled``."""
        return any(_status_enabled(s) for s in [self.subresources, *self.version_subresources])


def _optional_mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


_T = TypeVar("_T")


def _hoisted(values: list[_T], empty: _T) -> tuple[_T, list[_T]]:
    if values and all(value == values[0] for value in values):
        return values[0], [empty] * len(values)
    return empty, values


def _status_enabled(subresources: Mapping[str, Any] | None) -> bool:
    return subresources is not None and subresources.get("status") is not None


def crd_problems(crd: Mapping[str, Any]) -> list[Cause]:
    """Every reason a real API server refuses ``crd`` (a v1 CustomResourceDefinition), in its order.

    The name's syntax (a DNS subdomain) is left to the store's generic metadata checks.
    """
    spec = _mapping(crd.get("spec"))
    path = FieldPath("spec")
    group = _text(spec.get("group"))
    names = dict(_mapping(spec.get("names")))
    kind = _text(names.get("kind"))
    if not names.get("singular"):  # SetDefaults_CustomResourceDefinitionSpec
        names["singular"] = kind.lower()
    if not names.get("listKind") and kind:
        names["listKind"] = f"{kind}List"
    versions = [_mapping(version) for version in _list(spec.get("versions"))]
    internal = _Internal.of(versions)
    preserve_unknown = spec.get("preserveUnknownFields") is True

    causes = _object_meta(_mapping(crd.get("metadata")), f"{_text(names.get('plural'))}.{group}")
    causes += _group(group, path.child("group"))
    causes += _enum(path.child("scope"), _text(spec.get("scope")), ("Cluster", "Namespaced"))
    if internal.validation is None or internal.validation.get("openAPIV3Schema") is None:
        for i, schema in enumerate(internal.version_validation):
            if schema is None or schema.get("openAPIV3Schema") is None:
                where = path.child("versions").at(i).child("schema", "openAPIV3Schema")
                causes.append(required(where, "schemas are required"))
    if preserve_unknown and any(_has_default(v) for v in _all_schemas(internal)):
        causes.append(
            invalid(
                path.child("preserveUnknownFields"),
                True,
                "must be false in order to use defaults in the schema",
            )
        )
    for i, version in enumerate(versions):
        causes += _version(version, i, internal, path.child("versions").at(i))
    version_names = [_text(version.get("name")) for version in versions]
    if len(set(version_names)) != len(version_names):
        causes.append(
            invalid(path.child("versions"), VERSIONS_VALUE, "must contain unique version names")
        )
    if sum(version.get("storage") is True for version in versions) != 1:
        causes.append(
            invalid(
                path.child("versions"),
                VERSIONS_VALUE,
                "must have exactly one version marked as storage version",
            )
        )
    # the internal spec.version is versions[0].name
    if version_names and (found := dns1035_label_errors(version_names[0])):
        causes.append(invalid(path.child("version"), version_names[0], ",".join(found)))
    for name in ("plural", "singular", "kind", "listKind"):
        if not names.get(name):
            causes.append(required(path.child("names", name)))
    causes += names_problems(names, path.child("names"))
    causes += _custom_resource_validation(
        internal.validation, internal.any_status(), path.child("validation")
    )
    causes += _subresources(internal.subresources, path.child("subresources"))
    for i, column in enumerate(internal.columns):
        causes += _column(_mapping(column), path.child("additionalPrinterColumns").at(i))
    causes += _conversion(spec.get("conversion"), preserve_unknown, path.child("conversion"))
    if preserve_unknown:  # validatePreserveUnknownFields
        causes.append(
            invalid(
                path.child("preserveUnknownFields"),
                True,
                "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in "
                "spec.versions[*].schema instead",
            )
        )
    return causes


def _object_meta(metadata: Mapping[str, Any], wanted: str) -> list[Cause]:
    """The extra rule ``ValidateCustomResourceDefinition`` gives ``ValidateObjectMeta``."""
    causes = []
    detail = 'must be spec.names.plural+"."+spec.group'
    generate_name = _text(metadata.get("generateName"))
    if generate_name and generate_name != wanted:
        causes.append(invalid("metadata.generateName", generate_name, detail))
    name = _text(metadata.get("name"))
    if name and name != wanted:
        causes.append(invalid("metadata.name", name, detail))
    return causes


def _group(group: str, path: str) -> list[Cause]:
    if not group:
        return [required(path)]
    if found := dns1123_subdomain_errors(group):
        return [invalid(path, group, ",".join(found))]
    if "." not in group:
        return [invalid(path, group, "should be a domain with at least one dot")]
    return []


def names_problems(names: Mapping[str, Any], path: FieldPath) -> list[Cause]:
    """``ValidateCustomResourceDefinitionNames``."""
    causes = []
    for name in ("plural", "singular"):
        value = _text(names.get(name))
        if value and (found := dns1035_label_errors(value)):
            causes.append(invalid(path.child(name), value, ",".join(found)))
    for name in ("kind", "listKind"):
        value = _text(names.get(name))
        if value and (found := dns1035_label_errors(value.lower())):
            detail = "may have mixed case, but should otherwise match: " + ",".join(found)
            causes.append(invalid(path.child(name), value, detail))
    for i, short_name in enumerate(_list(names.get("shortNames"))):
        if found := dns1035_label_errors(_text(short_name)):
            causes.append(invalid(path.child("shortNames").at(i), short_name, ",".join(found)))
    kind = _text(names.get("kind"))
    if kind and kind == names.get("listKind"):
        causes.append(
            invalid(path.child("listKind"), kind, "kind and listKind may not be the same")
        )
    for i, category in enumerate(_list(names.get("categories"))):
        if found := dns1035_label_errors(_text(category)):
            causes.append(invalid(path.child("categories").at(i), category, ",".join(found)))
    return causes


def _version(
    version: Mapping[str, Any], index: int, internal: _Internal, path: FieldPath
) -> list[Cause]:
    """The loop body of ``validateCustomResourceDefinitionSpec`` and
    ``validateCustomResourceDefinitionVersion`` (per-version parts only: the shared ones are
    checked once, at the top level)."""
    causes = []
    name = _text(version.get("name"))
    if found := dns1035_label_errors(name):
        causes.append(invalid(path.child("name"), name, ",".join(found)))
    warning = version.get("deprecationWarning")
    if warning is not None:
        if version.get("deprecated") is not True:
            detail = "can only be set for deprecated versions"
            causes.append(invalid(path.child("deprecationWarning"), warning, detail))
        elif not _text(warning):
            causes.append(
                invalid(path.child("deprecationWarning"), warning, "must not be an empty string")
            )
        elif len(_text(warning)) > 256:
            causes.append(
                invalid(path.child("deprecationWarning"), warning, "must be <= 256 characters long")
            )
    status_enabled = _status_enabled(internal.subresources_for(index))
    causes += _custom_resource_validation(
        internal.version_validation[index], status_enabled, path.child("schema")
    )
    causes += _subresources(internal.version_subresources[index], path.child("subresources"))
    for i, column in enumerate(internal.version_columns[index]):
        causes += _column(_mapping(column), path.child("additionalPrinterColumns").at(i))
    return causes


_PRINTER_COLUMN_TYPES = ("boolean", "date", "integer", "number", "string")  # sets.List(): sorted
_PRINTER_COLUMN_FORMATS = (
    "byte", "date", "date-time", "double", "float", "int32", "int64", "password",
)  # fmt: skip


def _column(column: Mapping[str, Any], path: FieldPath) -> list[Cause]:
    """``ValidateCustomResourceColumnDefinition`` (the internal field is ``JSONPath``)."""
    causes = []
    if not column.get("name"):
        causes.append(required(path.child("name")))
    type_ = _text(column.get("type"))
    types = f"must be one of {','.join(_PRINTER_COLUMN_TYPES)}"
    if not type_:
        causes.append(required(path.child("type"), types))
    elif type_ not in _PRINTER_COLUMN_TYPES:
        causes.append(invalid(path.child("type"), type_, types))
    format_ = _text(column.get("format"))
    if format_ and format_ not in _PRINTER_COLUMN_FORMATS:
        formats = f"must be one of {','.join(_PRINTER_COLUMN_FORMATS)}"
        causes.append(invalid(path.child("format"), format_, formats))
    json_path = _text(column.get("jsonPath"))
    if not json_path:
        causes.append(required(path.child("JSONPath")))
    else:
        causes += _simple_json_path(json_path, path.child("JSONPath"))
    return causes


def _simple_json_path(value: str, path: str) -> list[Cause]:
    if not value:
        return [invalid(path, value, "must not be empty")]
    if not value.startswith("."):
        return [invalid(path, value, "must be a simple json path starting with .")]
    return []


def _subresources(subresources: Mapping[str, Any] | None, path: FieldPath) -> list[Cause]:
    """``ValidateCustomResourceDefinitionSubresources``: the scale subresource's paths."""
    scale = _optional_mapping((subresources or {}).get("scale"))
    if scale is None:
        return []
    causes = []
    for name, prefix, where in (
        ("specReplicasPath", ".spec.", ".spec"),
        ("statusReplicasPath", ".status.", ".status"),
    ):
        value = _text(scale.get(name))
        field = path.child(f"scale.{name}")
        if not value:
            causes.append(required(field))
        elif found := _simple_json_path(value, field):
            causes += found
        elif not value.startswith(prefix):
            causes.append(invalid(field, value, f"should be a json path under {where}"))
    selector = _text(scale.get("labelSelectorPath"))
    if selector:
        field = path.child("scale.labelSelectorPath")
        if found := _simple_json_path(selector, field):
            causes += found
        elif not selector.startswith((".spec.", ".status.")):
            causes.append(
                invalid(field, selector, "should be a json path under either .spec or .status")
            )
    return causes


_REVIEW_VERSIONS = ("v1", "v1beta1")


def _conversion(conversion: Any, preserve_unknown: bool, path: FieldPath) -> list[Cause]:
    """``validateCustomResourceConversion`` (webhook URLs, services and CA bundles aside)."""
    if not isinstance(conversion, Mapping):
        return []  # defaulted to {strategy: None}
    strategy = _text(conversion.get("strategy"))
    causes = []
    if strategy != "None" and preserve_unknown:
        detail = "must be None if spec.preserveUnknownFields is true"
        causes.append(invalid(path.child("strategy"), strategy, detail))
    causes += _enum(path.child("strategy"), strategy, ("None", "Webhook"))
    webhook = _mapping(conversion.get("webhook"))
    client_config = webhook.get("clientConfig")
    review_versions = _list(webhook.get("conversionReviewVersions"))
    if strategy != "Webhook":
        detail = "should not be set when strategy is not set to Webhook"
        if client_config is not None:
            causes.append(forbidden(path.child("webhookClientConfig"), detail))
        if review_versions:
            causes.append(forbidden(path.child("conversionReviewVersions"), detail))
        return causes
    if not isinstance(client_config, Mapping):
        causes.append(
            required(path.child("webhookClientConfig"), "required when strategy is set to Webhook")
        )
    elif (client_config.get("url") is None) == (client_config.get("service") is None):
        causes.append(
            required(path.child("webhookClientConfig"), "exactly one of url or service is required")
        )
    versions_path = path.child("conversionReviewVersions")
    if not review_versions:
        return [*causes, required(versions_path)]
    seen: set[str] = set()
    for i, version in enumerate(review_versions):
        if version in seen:
            causes.append(invalid(versions_path.at(i), version, "duplicate version"))
            continue
        seen.add(version)
        for problem in dns1035_label_errors(_text(version)):
            causes.append(invalid(versions_path.at(i), version, problem))
    if not seen & set(_REVIEW_VERSIONS):
        detail = f"must include at least one of {', '.join(_REVIEW_VERSIONS)}"
        causes.append(invalid(versions_path, review_versions, detail))
    return causes


def _all_schemas(internal: _Internal) -> list[Mapping[str, Any]]:
    found = [internal.validation, *internal.version_validation]
    return [schema["openAPIV3Schema"] for schema in found if schema and _schema_of(schema)]


def _schema_of(validation: Mapping[str, Any]) -> bool:
    return isinstance(validation.get("openAPIV3Schema"), Mapping)


def _has_default(schema: Mapping[str, Any]) -> bool:
    return schema.get("default") is not None or any(
        _has_default(child) for child in _subschemas(schema)
    )


def _subschemas(schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every schema directly inside ``schema`` (``SchemaHas``'s traversal)."""
    found: list[Any] = []
    items = schema.get("items")
    found += items if isinstance(items, list) else [items]
    for key in ("allOf", "anyOf", "oneOf"):
        found += _list(schema.get(key))
    found += [schema.get("not"), schema.get("additionalProperties"), schema.get("additionalItems")]
    for key in ("properties", "patternProperties", "definitions", "dependencies"):
        found += list(_mapping(schema.get(key)).values())
    return [child for child in found if isinstance(child, Mapping)]


# -- one version's schema --------------------------------------------------------------------------

_ALLOWED_AT_ROOT_WITH_STATUS = (
    "Description", "Type", "Format", "Title", "Maximum", "ExclusiveMaximum", "Minimum",
    "ExclusiveMinimum", "MaxLength", "MinLength", "Pattern", "MaxItems", "MinItems",
    "UniqueItems", "MultipleOf", "Required", "Items", "Properties", "ExternalDocs", "Example",
    "XPreserveUnknownFields", "XValidations",
)  # fmt: skip

# The internal JSONSchemaProps' fields in declaration order (types_jsonschema.go), by JSON name.
_GO_FIELDS = {
    "id": "ID", "$schema": "Schema", "$ref": "Ref", "description": "Description",
    "type": "Type", "nullable": "Nullable", "format": "Format", "title": "Title",
    "default": "Default", "maximum": "Maximum", "exclusiveMaximum": "ExclusiveMaximum",
    "minimum": "Minimum", "exclusiveMinimum": "ExclusiveMinimum", "maxLength": "MaxLength",
    "minLength": "MinLength", "pattern": "Pattern", "maxItems": "MaxItems",
    "minItems": "MinItems", "uniqueItems": "UniqueItems", "multipleOf": "MultipleOf",
    "enum": "Enum", "maxProperties": "MaxProperties", "minProperties": "MinProperties",
    "required": "Required", "items": "Items", "allOf": "AllOf", "oneOf": "OneOf",
    "anyOf": "AnyOf", "not": "Not", "properties": "Properties",
    "additionalProperties": "AdditionalProperties", "patternProperties": "PatternProperties",
    "dependencies": "Dependencies", "additionalItems": "AdditionalItems",
    "definitions": "Definitions", "externalDocs": "ExternalDocs", "example": "Example",
    "x-kubernetes-preserve-unknown-fields": "XPreserveUnknownFields",
    "x-kubernetes-embedded-resource": "XEmbeddedResource",
    "x-kubernetes-int-or-string": "XIntOrString",
    "x-kubernetes-list-map-keys": "XListMapKeys", "x-kubernetes-list-type": "XListType",
    "x-kubernetes-map-type": "XMapType", "x-kubernetes-validations": "XValidations",
}  # fmt: skip
_BOOL_FIELDS = frozenset(
    {"nullable", "exclusiveMaximum", "exclusiveMinimum", "uniqueItems"}
    | {"x-kubernetes-embedded-resource", "x-kubernetes-int-or-string"}
)
_STRING_FIELDS = frozenset({"id", "$schema", "description", "type", "format", "title", "pattern"})


def _is_zero(key: str, value: Any) -> bool:
    """Whether the Go field behind ``key`` holds its zero value (absent, null, false, "")."""
    if value is None:
        return True
    if key in _BOOL_FIELDS:
        return value is False
    if key in _STRING_FIELDS:
        return bool(value == "")
    return False


def _custom_resource_validation(
    validation: Mapping[str, Any] | None, status_enabled: bool, path: FieldPath
) -> list[Cause]:
    """``validateCustomResourceDefinitionValidation``: ``path`` is ``spec.validation`` or
    ``spec.versions[i].schema``."""
    schema = _optional_mapping((validation or {}).get("openAPIV3Schema"))
    if schema is None:
        return []
    root = path.child("openAPIV3Schema")
    causes = []
    if status_enabled:
        causes += _root_with_status(schema, path)
    if schema.get("nullable") is True:
        causes.append(
            forbidden(path.child("openAPIV3Schema.nullable"), "nullable cannot be true at the root")
        )
    unconvertible = structural_conversion_error(schema)
    if unconvertible is None:
        causes += structural_problems(schema, root)
    causes += openapi_schema_problems(schema, root)
    if not causes and unconvertible is not None:
        causes.append(invalid(root, "", unconvertible))
    return causes


def _root_with_status(schema: Mapping[str, Any], path: FieldPath) -> list[Cause]:
    """With a status subresource, the root may only hold what survives extracting ``status``."""
    for key, go_name in _GO_FIELDS.items():
        if key not in schema or _is_zero(key, schema[key]):
            continue
        if go_name == "Type":
            if schema[key] != "object":
                detail = (
                    'only "object" is allowed as the type at the root of the schema if the status '
                    "subresource is enabled"
                )
                return [invalid(path.child("openAPIV3Schema.type"), schema[key], detail)]
            continue
        if go_name not in _ALLOWED_AT_ROOT_WITH_STATUS:
            allowed = " ".join(_ALLOWED_AT_ROOT_WITH_STATUS)
            detail = (
                f"only [{allowed}] fields are allowed at the root of the schema if the status "
                "subresource is enabled"
            )
            return [invalid(path.child("openAPIV3Schema"), SCHEMA_VALUE, detail)]
    return []


# -- NewStructural (pkg/apiserver/schema/convert.go) -----------------------------------------------

_UNSUPPORTED = (
    ("id", "id"),
    ("$schema", "schema"),
    ("$ref", "$ref"),
    ("patternProperties", "patternProperties"),
    ("dependencies", "dependencies"),
    ("additionalItems", "additionalItems"),
    ("definitions", "definitions"),
)


def structural_conversion_error(schema: Mapping[str, Any]) -> str | None:
    """Why ``NewStructural`` cannot convert ``schema`` (the first reason it meets), or None."""
    for key, name in _UNSUPPORTED:
        value = schema.get(key)
        if value is not None and (key == "additionalItems" or value not in ("", {}, [])):
            return f"OpenAPIV3Schema '{name}' is not supported"
    nested = [schema.get("not"), *_list(schema.get("allOf"))]
    nested += [*_list(schema.get("anyOf")), *_list(schema.get("oneOf"))]
    nested.append(schema.get("additionalProperties"))
    for child in nested:
        if isinstance(child, Mapping) and (found := structural_conversion_error(child)):
            return found
    if schema.get("x-kubernetes-preserve-unknown-fields") is False:
        return "internal error: 'x-kubernetes-preserve-unknown-fields' must be true or undefined"
    items = schema.get("items")
    if isinstance(items, list) and items:
        return "OpenAPIV3Schema 'items' must be a schema, but is an array"
    children = [items, *_mapping(schema.get("properties")).values()]
    for child in children:
        if isinstance(child, Mapping) and (found := structural_conversion_error(child)):
            return found
    return None


# -- ValidateStructural (pkg/apiserver/schema/validation.go, complete.go) --------------------------


class _Level(Enum):
    ROOT = "root"
    ITEM = "item"
    FIELD = "field"


_EMPTY_TYPE = {
    _Level.ROOT: "must not be empty at the root",
    _Level.ITEM: "must not be empty for specified array items",
    _Level.FIELD: "must not be empty for specified object fields",
}
_METADATA_ONLY = (
    "must not specify anything other than name and generateName, but metadata is implicitly "
    "specified"
)
# What a Structural keeps of a schema (convert.go): anything else is dropped or unconvertible.
_STRUCTURAL_KEYS = frozenset(_GO_FIELDS) - {
    "id", "$schema", "$ref", "patternProperties", "dependencies", "additionalItems",
    "definitions", "externalDocs", "example",
}  # fmt: skip
_APPENDED_LISTS = frozenset({"enum", "allOf", "anyOf", "oneOf"})
"""Lists NewStructural rebuilds by appending: empty ones become nil (zero)."""


def _type(schema: Mapping[str, Any]) -> str:
    return _text(schema.get("type"))


def _items(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return _optional_mapping(schema.get("items"))


def _properties(schema: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    found = _mapping(schema.get("properties"))
    return {key: value for key, value in found.items() if isinstance(value, Mapping)}


def _schemas(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in _list(value) if isinstance(item, Mapping)]


def structural_problems(schema: Mapping[str, Any], path: FieldPath) -> list[Cause]:
    """``ValidateStructural``: what makes ``schema`` (a convertible one) not structural."""
    causes = _invariants(schema, _Level.ROOT, path) + _completeness(schema, schema, path, path)
    return sorted(causes, key=str)


def _invariants(s: Mapping[str, Any], level: _Level, path: FieldPath) -> list[Cause]:
    """``validateStructuralInvariants``."""
    causes = []
    type_ = _type(s)
    items = _items(s)
    if type_ == "array" and items is None:
        causes.append(required(path.child("items"), "must be specified"))
    if items is not None:
        causes += _invariants(items, _Level.ITEM, path.child("items"))
    properties = _properties(s)
    for key, child in properties.items():
        causes += _invariants(child, _Level.FIELD, path.child("properties").key(key))
    additional = s.get("additionalProperties")
    if additional is not None:
        if level is _Level.ROOT:
            causes.append(
                forbidden(path.child("additionalProperties"), "must not be used at the root")
            )
        if isinstance(additional, Mapping):
            causes += _invariants(additional, _Level.FIELD, path.child("additionalProperties"))
    embedded = s.get("x-kubernetes-embedded-resource") is True
    int_or_string = s.get("x-kubernetes-int-or-string") is True
    preserve = s.get("x-kubernetes-preserve-unknown-fields") is True
    if int_or_string and preserve:
        detail = "must be false if x-kubernetes-int-or-string is true"
        causes.append(invalid(path.child("x-kubernetes-preserve-unknown-fields"), True, detail))
    if int_or_string and embedded:
        detail = "must be false if x-kubernetes-int-or-string is true"
        causes.append(invalid(path.child("x-kubernetes-embedded-resource"), True, detail))
    all_of = _schemas(s.get("allOf"))
    skip_any_of = _is_int_or_string_any_of(s.get("anyOf"))
    skip_first_all_of_any_of = bool(all_of) and _is_int_or_string_any_of(all_of[0].get("anyOf"))
    causes += _value_validation(s, skip_any_of, skip_first_all_of_any_of, path)
    if embedded and type_ != "object":
        detail = "must be object if x-kubernetes-embedded-resource is true"
        where = path.child("type")
        causes.append(invalid(where, type_, detail) if type_ else required(where, detail))
    elif not type_ and not int_or_string and not preserve:
        causes.append(required(path.child("type"), _EMPTY_TYPE[level]))
    if embedded and additional is not None:
        detail = "must not be used if x-kubernetes-embedded-resource is set"
        causes.append(forbidden(path.child("additionalProperties"), detail))
    if level is _Level.ROOT and type_ and type_ != "object":
        causes.append(invalid(path.child("type"), type_, "must be object at the root"))
    check_metadata = level is _Level.ROOT or embedded
    for meta_field in ("kind", "apiVersion"):
        if meta_field in properties and check_metadata:
            meta_type = _type(properties[meta_field])
            if meta_type != "string":
                where = path.child("properties").key(meta_field).child("type")
                causes.append(invalid(where, meta_type, "must be string"))
    if "metadata" in properties:
        where = path.child("properties").key("metadata")
        causes += _metadata_invariants(properties["metadata"], check_metadata, level, where)
    if embedded and not preserve and not properties:
        detail = (
            "must not be empty if x-kubernetes-embedded-resource is true without "
            "x-kubernetes-preserve-unknown-fields"
        )
        causes.append(required(path.child("properties"), detail))
    return causes


def _metadata_invariants(
    metadata: Mapping[str, Any], check_metadata: bool, level: _Level, path: FieldPath
) -> list[Cause]:
    """``validateStructuralMetadataInvariants``: at the root, ``metadata`` is ``type: object``
    and may restrict ``name`` and ``generateName`` (only these, in ``properties``), nothing else:
    not even a description."""
    causes = []
    if check_metadata and _type(metadata) != "object":
        causes.append(invalid(path.child("type"), _type(metadata), "must be object"))
    if level is _Level.ROOT:
        rest = {
            key: value
            for key, value in metadata.items()
            if key in _STRUCTURAL_KEYS - {"type", "default"}
            and not _is_zero(key, value)
            and not (key in _APPENDED_LISTS and value == [])
        }
        properties = _mapping(rest.get("properties"))
        if not properties or set(properties) in (
            {"name"},
            {"generateName"},
            {"name", "generateName"},
        ):
            rest.pop("properties", None)
        if rest:
            causes.append(forbidden(path, _METADATA_ONLY))
    return causes


def _is_int_or_string_any_of(any_of: Any) -> bool:
    """``anyOf: [{type: integer}, {type: string}]`` exactly (the IntOrString exception)."""
    entries = _list(any_of)
    if len(entries) != 2 or not all(isinstance(entry, Mapping) for entry in entries):
        return False
    shapes = [{k: v for k, v in entry.items() if not _is_zero(k, v)} for entry in entries]
    return shapes == [{"type": "integer"}, {"type": "string"}]


def _value_validation(
    v: Mapping[str, Any], skip_any_of: bool, skip_first_all_of_any_of: bool, path: FieldPath
) -> list[Cause]:
    """``validateValueValidation``: what is nested under a junctor must be structure-free."""
    causes = []
    if not skip_any_of:
        for i, child in enumerate(_schemas(v.get("anyOf"))):
            causes += _nested(child, False, False, path.child("anyOf").at(i))
    for i, child in enumerate(_schemas(v.get("allOf"))):
        skip = skip_first_all_of_any_of and i == 0
        causes += _nested(child, skip, False, path.child("allOf").at(i))
    for i, child in enumerate(_schemas(v.get("oneOf"))):
        causes += _nested(child, False, False, path.child("oneOf").at(i))
    not_ = _optional_mapping(v.get("not"))
    if not_ is not None:
        causes += _nested(not_, False, False, path.child("not"))
    pattern = _text(v.get("pattern"))
    if pattern and (problem := go_regexp_error(pattern)):
        detail = f"must be a valid regular expression, but isn't: {problem}"
        causes.append(invalid(path.child("pattern"), pattern, detail))
    return causes


_NESTED_FORBIDDEN = (
    ("type", "must be empty to be structural"),
    ("additionalProperties", "must be undefined to be structural"),
    ("default", "must be undefined to be structural"),
    ("title", "must be empty to be structural"),
    ("description", "must be empty to be structural"),
    ("nullable", "must be false to be structural"),
    ("x-kubernetes-preserve-unknown-fields", "must be false to be structural"),
    ("x-kubernetes-embedded-resource", "must be false to be structural"),
    ("x-kubernetes-int-or-string", "must be false to be structural"),
    ("x-kubernetes-list-map-keys", "must be empty to be structural"),
    ("x-kubernetes-list-type", "must be undefined to be structural"),
    ("x-kubernetes-map-type", "must be undefined to be structural"),
    ("x-kubernetes-validations", "must be empty to be structural"),
)


def _nested(
    v: Mapping[str, Any], skip_any_of: bool, skip_all_of_any_of: bool, path: FieldPath
) -> list[Cause]:
    """``validateNestedValueValidation``: under allOf/anyOf/oneOf/not only value validations."""
    causes = _value_validation(v, skip_any_of, skip_all_of_any_of, path)
    items = _items(v)
    if items is not None:
        causes += _nested(items, False, False, path.child("items"))
    properties = _properties(v)
    for key, child in properties.items():
        causes += _nested(child, False, False, path.child("properties").key(key))
    for key, detail in _NESTED_FORBIDDEN:
        value = v.get(key)
        if not _is_zero(key, value) and value != []:
            causes.append(forbidden(path.child(key), detail))
    if "metadata" in properties:
        detail = "must not be specified in a nested context"
        causes.append(forbidden(path.child("properties").key("metadata"), detail))
    return causes


def _completeness(
    v: Mapping[str, Any], s: Mapping[str, Any] | None, s_path: FieldPath, v_path: FieldPath
) -> list[Cause]:
    """``validateValueValidationCompleteness``: a field or array named under a junctor is also
    specified outside it (checked from the root's junctors, as the source does)."""
    causes = []
    nested = [(_optional_mapping(v.get("not")), v_path.child("not"))]
    for junctor in ("allOf", "anyOf", "oneOf"):
        nested += [
            (child, v_path.child(junctor).at(i)) for i, child in enumerate(_schemas(v.get(junctor)))
        ]
    for child, child_path in nested:
        if child is not None:
            causes += _nested_completeness(child, s, s_path, child_path)
    return causes


def _nested_completeness(
    v: Mapping[str, Any], s: Mapping[str, Any] | None, s_path: FieldPath, v_path: FieldPath
) -> list[Cause]:
    if s is None:
        return [required(s_path, f"because it is defined in {v_path}")]
    causes = _completeness(v, s, s_path, v_path)
    items = _items(v)
    if items is not None:
        causes += _nested_completeness(
            items, _items(s), s_path.child("items"), v_path.child("items")
        )
    specified = _properties(s)
    for key, child in _properties(v).items():
        where = s_path.child("properties").key(key)
        defined = v_path.child("properties").key(key)
        if key not in specified:
            causes.append(required(where, f"because it is defined in {defined}"))
        else:
            causes += _nested_completeness(child, specified[key], where, defined)
    return causes


def go_regexp_error(pattern: str) -> str | None:
    """Why Go's ``regexp.Compile`` (RE2) refuses ``pattern``, or None when it compiles."""
    perl = re.search(r"\(\?(?:=|!|<=|<!|>)", pattern)
    if perl:
        shown = perl.group(0)[:3]
        return f"error parsing regexp: invalid or unsupported Perl syntax: `{shown}`"
    backreference = re.search(r"(?<!\\)\\[1-9]", pattern)
    if backreference:
        return f"error parsing regexp: invalid escape sequence: `{backreference.group(0)}`"
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"error parsing regexp: {exc}"
    return None


# -- ValidateCustomResourceDefinitionOpenAPISchema (validation.go) ---------------------------------

_OPENAPI_V3_TYPES = ("array", "boolean", "integer", "number", "object", "string")
_META_FIELDS = frozenset({"metadata", "kind", "apiVersion"})
_RULE_REASONS = (
    "FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired",
)  # fmt: skip


@dataclass(frozen=True)
class _Context:
    """``specStandardValidatorV3``'s state as the walk goes down."""

    allow_defaults: bool = True
    disallow_defaults_reason: str = ""
    inside_resource_meta: bool = False

    def without_defaults(self, reason: str) -> _Context:
        return _Context(False, reason, self.inside_resource_meta)

    def in_resource_meta(self) -> _Context:
        return _Context(self.allow_defaults, self.disallow_defaults_reason, True)


def openapi_schema_problems(
    schema: Mapping[str, Any],
    path: FieldPath,
    context: _Context | None = None,
    *,
    is_root: bool = True,
) -> list[Cause]:
    """``ValidateCustomResourceDefinitionOpenAPISchema`` (CEL compilation aside)."""
    context = context or _Context()
    causes = _standard_v3(schema, path, context)
    if schema.get("uniqueItems") is True:
        detail = "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
        causes.append(forbidden(path.child("uniqueItems"), detail))
    properties = _properties(schema)
    additional = schema.get("additionalProperties")
    if additional is not None:
        if properties and (additional is False or isinstance(additional, Mapping)):
            detail = "additionalProperties and properties are mutual exclusive"
            causes.append(forbidden(path.child("additionalProperties"), detail))
        if isinstance(additional, Mapping):
            sub = context
            if context.inside_resource_meta:
                sub = context.without_defaults(
                    "inside additionalProperties applying to object metadata"
                )
            causes += openapi_schema_problems(
                additional, path.child("additionalProperties"), sub, is_root=False
            )
    embedded = schema.get("x-kubernetes-embedded-resource") is True
    for key, child in properties.items():
        sub = context
        if (is_root or embedded) and key in _META_FIELDS:
            sub = sub.in_resource_meta()
            if is_root:
                sub = sub.without_defaults(f"in top-level {key}")
        causes += openapi_schema_problems(
            child, path.child("properties").key(key), sub, is_root=False
        )
    children: list[tuple[Any, FieldPath]] = [(schema.get("not"), path.child("not"))]
    for junctor in ("allOf", "oneOf", "anyOf"):
        children += [
            (c, path.child(junctor).at(i)) for i, c in enumerate(_list(schema.get(junctor)))
        ]
    children += [
        (c, path.child("definitions").key(k))
        for k, c in _mapping(schema.get("definitions")).items()
    ]
    items = schema.get("items")
    if isinstance(items, list):
        children += [(c, path.child("items").at(i)) for i, c in enumerate(items)]
    else:
        children.append((items, path.child("items")))
    children += [
        (c, path.child("dependencies").key(k))
        for k, c in _mapping(schema.get("dependencies")).items()
    ]
    for child, child_path in children:
        if isinstance(child, Mapping):
            causes += openapi_schema_problems(child, child_path, context, is_root=False)
    causes += _list_and_map_types(schema, path)
    causes += _rules(schema, path)
    return causes


def _standard_v3(schema: Mapping[str, Any], path: FieldPath, context: _Context) -> list[Cause]:
    """``specStandardValidatorV3.validate``: what OpenAPI v3 allows but CRDs do not."""
    causes = []
    type_ = _type(schema)
    if type_ and type_ not in _OPENAPI_V3_TYPES:
        causes.append(not_supported(path.child("type"), type_, _OPENAPI_V3_TYPES))
    if schema.get("default") is not None and not context.allow_defaults:
        detail = " ".join(filter(None, ("must not be set", context.disallow_defaults_reason)))
        causes.append(forbidden(path.child("default"), detail))
    if schema.get("id"):
        causes.append(forbidden(path.child("id"), "id is not supported"))
    if schema.get("additionalItems") is not None:
        causes.append(forbidden(path.child("additionalItems"), "additionalItems is not supported"))
    for key in ("patternProperties", "definitions"):
        if schema.get(key):
            causes.append(forbidden(path.child(key), f"{key} is not supported"))
    for key in ("dependencies", "$ref"):
        if schema.get(key) is not None:
            causes.append(forbidden(path.child(key), f"{key} is not supported"))
    if type_ == "null":
        detail = "type cannot be set to null, use nullable as an alternative"
        causes.append(forbidden(path.child("type"), detail))
    if isinstance(schema.get("items"), list) and schema["items"]:
        detail = "items must be a schema object and not an array"
        causes.append(forbidden(path.child("items"), detail))
    if context.inside_resource_meta and schema.get("x-kubernetes-embedded-resource") is True:
        detail = "must not be used inside of resource meta"
        causes.append(forbidden(path.child("x-kubernetes-embedded-resource"), detail))
    return causes


def _list_and_map_types(schema: Mapping[str, Any], path: FieldPath) -> list[Cause]:
    """The x-kubernetes-preserve-unknown-fields, -map-type, -list-type and -list-map-keys rules
    of ``ValidateCustomResourceDefinitionOpenAPISchema`` and ``validateMapListKeysMapSet``."""
    causes = []
    type_ = _type(schema)
    if schema.get("x-kubernetes-preserve-unknown-fields") is False:
        where = path.child("x-kubernetes-preserve-unknown-fields")
        causes.append(invalid(where, False, "must be true or undefined"))
    map_type = schema.get("x-kubernetes-map-type")
    if map_type is not None and type_ != "object":
        detail = "must be object if x-kubernetes-map-type is specified"
        where = path.child("type")
        causes.append(invalid(where, type_, detail) if type_ else required(where, detail))
    if map_type is not None and map_type not in ("atomic", "granular"):
        causes.append(
            not_supported(path.child("x-kubernetes-map-type"), map_type, ("atomic", "granular"))
        )
    list_type = schema.get("x-kubernetes-list-type")
    items = schema.get("items")
    item = _optional_mapping(items)
    if list_type is not None and type_ != "array":
        detail = "must be array if x-kubernetes-list-type is specified"
        where = path.child("type")
        causes.append(invalid(where, type_, detail) if type_ else required(where, detail))
    elif list_type == "set" and item is not None:
        detail = "must be atomic as item of a list with x-kubernetes-list-type=set"
        item_list_type = item.get("x-kubernetes-list-type")
        if _type(item) == "array" and item_list_type not in (None, "atomic"):
            causes.append(
                invalid(path.child("items", "x-kubernetes-list-type"), item_list_type, detail)
            )
        if _type(item) == "object" and item.get("x-kubernetes-map-type") != "atomic":
            # The source reports the item's list type as the value here (sic).
            causes.append(
                invalid(path.child("items", "x-kubernetes-map-type"), item_list_type, detail)
            )
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        supported = ("atomic", "set", "map")
        causes.append(not_supported(path.child("x-kubernetes-list-type"), list_type, supported))
    keys = [key for key in _list(schema.get("x-kubernetes-list-map-keys")) if isinstance(key, str)]
    if keys:
        detail = "must be map if x-kubernetes-list-map-keys is non-empty"
        where = path.child("x-kubernetes-list-type")
        if list_type is None:
            causes.append(required(where, detail))
        elif list_type != "map":
            causes.append(invalid(where, list_type, detail))
    if list_type == "map":
        causes += _map_list(schema, keys, path)
    if item is not None and list_type in ("set", "map"):
        if item.get("nullable") is True:
            detail = f"cannot be nullable when x-kubernetes-list-type is {list_type}"
            causes.append(forbidden(path.child("items", "nullable"), detail))
        if list_type == "map":
            required_keys = set(_list(item.get("required")))
            properties = _properties(item)
            for key in keys:
                if key not in properties:
                    continue
                where = path.child("items", "properties").key(key)
                if key not in required_keys and properties[key].get("default") is None:
                    detail = (
                        "this property is in x-kubernetes-list-map-keys, so it must have a "
                        "default or be a required property"
                    )
                    causes.append(required(where.child("default"), detail))
                if properties[key].get("nullable") is True:
                    detail = (
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable"
                    )
                    causes.append(forbidden(where.child("nullable"), detail))
    return causes


def _map_list(schema: Mapping[str, Any], keys: list[str], path: FieldPath) -> list[Cause]:
    """``x-kubernetes-list-type: map``: keys given, items one object schema, keys its scalars."""
    causes = []
    if not keys:
        detail = "must not be empty if x-kubernetes-list-type is map"
        causes.append(required(path.child("x-kubernetes-list-map-keys"), detail))
    items = schema.get("items")
    if items is None:
        causes.append(
            required(path.child("items"), "must have a schema if x-kubernetes-list-type is map")
        )
    elif isinstance(items, list):
        detail = "must only have a single schema if x-kubernetes-list-type is map"
        causes.append(invalid(path.child("items"), ITEMS_VALUE, detail))
    elif isinstance(items, Mapping):
        item_type = _type(items)
        if item_type != "object":
            detail = "must be object if parent array's x-kubernetes-list-type is map"
            causes.append(invalid(path.child("items", "type"), item_type, detail))
        else:
            properties = _properties(items)
            seen: set[str] = set()
            all_keys = _list(schema.get("x-kubernetes-list-map-keys"))
            for key in keys:
                if key not in properties:
                    detail = "entries must all be names of item properties"
                    causes.append(
                        invalid(path.child("x-kubernetes-list-map-keys"), all_keys, detail)
                    )
                elif _type(properties[key]) in ("array", "object"):
                    detail = "must be a scalar type if parent array's x-kubernetes-list-type is map"
                    where = path.child("items", "properties").key(key).child("type")
                    causes.append(invalid(where, item_type, detail))  # the item's type (sic)
                if key in seen:
                    detail = "must not contain duplicate entries"
                    causes.append(
                        invalid(path.child("x-kubernetes-list-map-keys"), all_keys, detail)
                    )
                seen.add(key)
    return causes


def _rules(schema: Mapping[str, Any], path: FieldPath) -> list[Cause]:
    """The shape of each ``x-kubernetes-validations`` entry (its CEL is not compiled here)."""
    causes = []
    for i, rule in enumerate(_list(schema.get("x-kubernetes-validations"))):
        if not isinstance(rule, Mapping):
            continue
        where = path.child("x-kubernetes-validations").at(i)
        text = _text(rule.get("rule")).strip()
        message = _text(rule.get("message"))
        if not text:
            causes.append(required(where.child("rule"), "rule is not specified"))
        elif message and not message.strip():
            causes.append(
                invalid(where.child("message"), message, "message must be non-empty if specified")
            )
        elif _has_newlines(message.strip()):
            causes.append(
                invalid(where.child("message"), message, "message must not contain line breaks")
            )
        elif _has_newlines(text) and not message.strip():
            detail = "message must be specified if rule contains line breaks"
            causes.append(required(where.child("message"), detail))
        expression = _text(rule.get("messageExpression"))
        if expression and not expression.strip():
            detail = "messageExpression must be non-empty if specified"
            causes.append(required(where.child("messageExpression"), detail))
        reason = rule.get("reason")
        if reason is not None and reason not in _RULE_REASONS:
            causes.append(not_supported(where.child("reason"), reason, _RULE_REASONS))
        field_path = _text(rule.get("fieldPath"))
        if field_path and not field_path.strip():
            detail = "fieldPath must be non-empty if specified"
            causes.append(invalid(where.child("fieldPath"), field_path, detail))
        if _has_newlines(field_path):
            detail = "fieldPath must not contain line breaks"
            causes.append(invalid(where.child("fieldPath"), field_path, detail))
    return causes


def _has_newlines(text: str) -> bool:
    return bool(re.search(r"[\n\r]+", text))


# -- the fake's hook -------------------------------------------------------------------------------


def _json_kind(value: Any) -> str:
    """The JSON kind Go's decoder names in an UnmarshalTypeError."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _cannot_unmarshal(value: Any, into: str) -> str:
    return f"json: cannot unmarshal {_json_kind(value)} into {into}"


def decode_error(crd: Mapping[str, Any]) -> str | None:
    """Why a real server could not even decode ``crd`` as a v1 CRD (a few shapes), or None."""
    spec = crd.get("spec")
    if spec is not None and not isinstance(spec, Mapping):
        return _cannot_unmarshal(
            spec,
            "Go struct field CustomResourceDefinition.spec of type v1.CustomResourceDefinitionSpec",
        )
    for version in _list(_mapping(spec).get("versions")):
        if not isinstance(version, Mapping):
            return _cannot_unmarshal(
                version,
                "Go struct field CustomResourceDefinitionSpec.spec.versions of type "
                "v1.CustomResourceDefinitionVersion",
            )
        subresources = version.get("subresources")
        if subresources is not None and not isinstance(subresources, Mapping):
            return _cannot_unmarshal(
                subresources,
                "Go struct field CustomResourceDefinitionVersion.spec.versions.subresources of "
                "type v1.CustomResourceSubresources",
            )
        status = _mapping(subresources).get("status")
        if status is not None and not isinstance(status, Mapping):
            return _cannot_unmarshal(
                status,
                "Go struct field CustomResourceSubresources.spec.versions.subresources.status of "
                "type v1.CustomResourceSubresourceStatus",
            )
        schema = _mapping(version.get("schema")).get("openAPIV3Schema")
        if schema is not None and (bad := _non_object_schema(schema)) is not None:
            return _cannot_unmarshal(bad, "Go value of type v1.JSONSchemaProps")
    return None


def _non_object_schema(schema: Any) -> Any:
    """The first value where a schema object is expected but something else is found."""
    if not isinstance(schema, Mapping):
        return schema
    children: list[Any] = []
    items = schema.get("items")
    children += items if isinstance(items, list) else ([] if items is None else [items])
    for key in ("allOf", "anyOf", "oneOf"):
        children += _list(schema.get(key))
    if schema.get("not") is not None:
        children.append(schema["not"])
    additional = schema.get("additionalProperties")
    if additional is not None and not isinstance(additional, bool):
        children.append(additional)
    children += list(_mapping(schema.get("properties")).values())
    for child in children:
        if (bad := _non_object_schema(child)) is not None:
            return bad
    return None


def check_crd(crd: Mapping[str, Any]) -> list[Cause]:
    """The fake's validation hook for CustomResourceDefinitions: 400 if undecodable, else the
    :func:`crd_problems` (the store answers them as one 422)."""
    problem = decode_error(crd)
    if problem is not None:
        raise errors.bad_request(
            'CustomResourceDefinition in version "v1" cannot be handled as a '
            f"CustomResourceDefinition: {problem}"
        )
    return crd_problems(crd)
