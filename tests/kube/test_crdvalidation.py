"""The fake's CRD validator says what kube-apiserver says, field path and wording.

Each expected text is the real server's (``k8s.io/apiextensions-apiserver``, see
``tests/kube/fake/crdvalidation.py`` for the functions they come from): a test here fails if a
rule is dropped, loosened or reworded.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.crd.schema import load_crd
from tests.kube.fake import errors
from tests.kube.fake.crdvalidation import (
    Cause,
    check_crd,
    crd_problems,
    go_regexp_error,
)
from tests.kube.fake.errors import ApiError

P = "spec.validation.openAPIV3Schema"
"""Where a one-version v1 CRD's schema is reported: the internal form hoists it."""

METADATA_ONLY = (
    "Forbidden: must not specify anything other than name and generateName, but metadata is "
    "implicitly specified"
)
DNS1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def widget_crd(schema: Any = None, *, status: bool = False, **spec: Any) -> dict[str, Any]:
    """A minimal valid CRD (singular and listKind left to the server's defaulting)."""
    version: dict[str, Any] = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object"} if schema is None else schema},
    }
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets"},
            "scope": "Namespaced",
            "versions": [version],
            **spec,
        },
    }


def problems(crd: dict[str, Any]) -> list[str]:
    return [str(cause) for cause in crd_problems(crd)]


def schema_problems(schema: Any, *, status: bool = False) -> list[str]:
    return problems(widget_crd(schema, status=status))


def obj(**properties: Any) -> dict[str, Any]:
    """``type: object`` with these properties."""
    return {"type": "object", "properties": properties}


# -- the project's CRD and the defect of issue 10 --------------------------------------------------


def test_the_project_crd_has_no_problem() -> None:
    assert crd_problems(load_crd()) == []


def test_a_description_under_root_metadata_is_the_real_servers_forbidden_error() -> None:
    crd = load_crd()
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    root["properties"]["metadata"]["description"] = "Standard object metadata."
    assert crd_problems(crd) == [Cause(f"{P}.properties[metadata]", METADATA_ONLY)]


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"type": "object"}, id="bare"),
        pytest.param(obj(name={"type": "string", "maxLength": 63}), id="name-restricted"),
        pytest.param(
            obj(name={"type": "string"}, generateName={"type": "string"}), id="both-names"
        ),
        pytest.param({"type": "object", "properties": {}}, id="empty-properties"),
        pytest.param({"type": "object", "description": ""}, id="empty-description"),
        pytest.param({"type": "object", "example": {"name": "x"}}, id="example-is-dropped"),
    ],
)
def test_root_metadata_may_restrict_only_name_and_generate_name(metadata: Any) -> None:
    assert schema_problems(obj(metadata=metadata)) == []


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"description": "Standard object metadata."}, id="description"),
        pytest.param({"title": "Metadata"}, id="title"),
        pytest.param({"x-kubernetes-preserve-unknown-fields": True}, id="preserve-unknown"),
        pytest.param({"required": ["name"]}, id="required"),
        pytest.param({"maxProperties": 3}, id="max-properties"),
        pytest.param({"properties": {"labels": {"type": "object"}}}, id="labels"),
        pytest.param(
            {"properties": {"name": {"type": "string"}, "labels": {"type": "object"}}},
            id="name-and-labels",
        ),
    ],
)
def test_anything_else_under_root_metadata_is_forbidden(extra: dict[str, Any]) -> None:
    metadata = {"type": "object", **extra}
    assert schema_problems(obj(metadata=metadata)) == [f"{P}.properties[metadata]: {METADATA_ONLY}"]


def test_root_metadata_must_be_an_object_and_takes_no_default() -> None:
    assert schema_problems(obj(metadata={"type": "string"})) == [
        f'{P}.properties[metadata].type: Invalid value: "string": must be object'
    ]
    assert schema_problems(obj(metadata={"type": "object", "default": {}})) == [
        f"{P}.properties[metadata].default: Forbidden: must not be set in top-level metadata"
    ]


def test_nested_metadata_is_free_but_an_embedded_resource_is_checked() -> None:
    free = obj(spec=obj(metadata={"type": "object", "description": "Anything goes here."}))
    assert schema_problems(free) == []
    embedded = {
        "type": "object",
        "x-kubernetes-embedded-resource": True,
        "properties": {"metadata": {"type": "string"}, "kind": {"type": "integer"}},
    }
    assert schema_problems(obj(template=embedded)) == [
        f'{P}.properties[template].properties[kind].type: Invalid value: "integer": must be string',
        f'{P}.properties[template].properties[metadata].type: Invalid value: "string": '
        "must be object",
    ]


# -- structural schemas (ValidateStructural) -------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param({}, [f"{P}.type: Required value: must not be empty at the root"], id="root"),
        pytest.param(
            obj(spec={"properties": {"a": {"type": "string"}}}),
            [f"{P}.properties[spec].type: Required value: must not be empty for specified object "
             "fields"],
            id="field",
        ),
        pytest.param(
            obj(tags={"type": "array", "items": {}}),
            [f"{P}.properties[tags].items.type: Required value: must not be empty for specified "
             "array items"],
            id="item",
        ),
        pytest.param(
            obj(labels={"type": "object", "additionalProperties": {}}),
            [f"{P}.properties[labels].additionalProperties.type: Required value: must not be "
             "empty for specified object fields"],
            id="map-value",
        ),
    ],
)  # fmt: skip
def test_every_node_needs_a_type(schema: Any, expected: list[str]) -> None:
    assert schema_problems(schema) == expected


@pytest.mark.parametrize(
    "node",
    [
        pytest.param({"x-kubernetes-preserve-unknown-fields": True}, id="preserve-unknown"),
        pytest.param({"x-kubernetes-int-or-string": True}, id="int-or-string"),
        pytest.param(
            {
                "x-kubernetes-int-or-string": True,
                "anyOf": [{"type": "integer"}, {"type": "string"}],
            },
            id="int-or-string-anyOf",
        ),
        pytest.param(
            {
                "x-kubernetes-int-or-string": True,
                "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"minLength": 1}],
            },
            id="int-or-string-allOf",
        ),
        pytest.param({"type": "object", "additionalProperties": {"type": "string"}}, id="map"),
        pytest.param(
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": True,
            },
            id="properties-with-additionalProperties-true",
        ),
        pytest.param(
            {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "x-kubernetes-preserve-unknown-fields": True,
            },
            id="embedded-resource",
        ),
        pytest.param(
            {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            id="set-of-strings",
        ),
    ],
)
def test_structural_shapes_a_real_server_accepts(node: dict[str, Any]) -> None:
    assert schema_problems(obj(field=node)) == []


F = f"{P}.properties[field]"


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        pytest.param(
            {"type": "array"}, [f"{F}.items: Required value: must be specified"], id="no-items"
        ),
        pytest.param(
            {"type": "array", "items": [{"type": "string"}]},
            # NewStructural fails, so no structural error: only the OpenAPI one.
            [f"{F}.items: Forbidden: items must be a schema object and not an array"],
            id="items-list",
        ),
        pytest.param(
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": {"type": "string"},
            },
            [f"{F}.additionalProperties: Forbidden: additionalProperties and properties are "
             "mutual exclusive"],
            id="properties-and-additionalProperties",
        ),
        pytest.param(
            {"type": "object", "x-kubernetes-preserve-unknown-fields": False},
            [f"{F}.x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or "
             "undefined"],
            id="preserve-unknown-false",
        ),
        pytest.param(
            {"x-kubernetes-int-or-string": True, "x-kubernetes-preserve-unknown-fields": True},
            [f"{F}.x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if "
             "x-kubernetes-int-or-string is true"],
            id="int-or-string-and-preserve-unknown",
        ),
        pytest.param(
            {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
            [f"{F}.anyOf[0].type: Forbidden: must be empty to be structural",
             f"{F}.anyOf[1].type: Forbidden: must be empty to be structural",
             f"{F}.type: Required value: must not be empty for specified object fields"],
            id="typed-anyOf-without-int-or-string-pattern",
        ),
        pytest.param(
            {"type": "string", "x-kubernetes-embedded-resource": True},
            [f"{F}.properties: Required value: must not be empty if "
             "x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
             f'{F}.type: Invalid value: "string": must be object if '
             "x-kubernetes-embedded-resource is true"],
            id="embedded-resource-not-object",
        ),
        pytest.param(
            {"type": "string", "allOf": [{"description": "x", "nullable": True}]},
            [f"{F}.allOf[0].description: Forbidden: must be empty to be structural",
             f"{F}.allOf[0].nullable: Forbidden: must be false to be structural"],
            id="generic-fields-under-a-junctor",
        ),
        pytest.param(
            {"type": "string", "pattern": "^(?!kube-).*$"},
            [f'{F}.pattern: Invalid value: "^(?!kube-).*$": must be a valid regular expression, '
             "but isn't: error parsing regexp: invalid or unsupported Perl syntax: `(?!`"],
            id="lookahead-pattern",
        ),
    ],
)  # fmt: skip
def test_structural_rules(node: dict[str, Any], expected: list[str]) -> None:
    assert schema_problems(obj(field=node)) == expected


def test_root_rules() -> None:
    assert schema_problems({"type": "array", "items": {"type": "string"}}) == [
        f'{P}.type: Invalid value: "array": must be object at the root'
    ]
    assert schema_problems({"type": "object", "additionalProperties": {"type": "string"}}) == [
        f"{P}.additionalProperties: Forbidden: must not be used at the root"
    ]
    assert schema_problems({"type": "object", "nullable": True}) == [
        f"{P}.nullable: Forbidden: nullable cannot be true at the root"
    ]


def test_fields_named_under_a_root_junctor_must_be_specified() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "anyOf": [{"required": ["a"]}, {"properties": {"b": {"minLength": 1}}}],
    }
    assert schema_problems(schema) == [
        f"{P}.properties[b]: Required value: because it is defined in {P}.anyOf[1].properties[b]"
    ]


def test_structural_errors_are_sorted_like_the_servers() -> None:
    schema = obj(z={"type": "array"}, a={"properties": {}})
    assert schema_problems(schema) == sorted(schema_problems(schema))
    assert len(schema_problems(schema)) == 2


def test_the_status_subresource_restricts_the_root() -> None:
    with_enum = {"type": "object", "enum": [{}]}
    assert schema_problems(with_enum) == []
    (root,) = schema_problems(with_enum, status=True)
    assert root.startswith(f"{P}: Invalid value: apiextensions.JSONSchemaProps{{...}}: only [")
    assert root.endswith(
        "XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if "
        "the status subresource is enabled"
    )


# -- OpenAPI keywords a CRD schema may not use (specStandardValidatorV3) ---------------------------


@pytest.mark.parametrize(
    ("keyword", "expected"),
    [
        pytest.param({"$ref": "#/definitions/a"}, "$ref: Forbidden: $ref is not supported"),
        pytest.param({"id": "a"}, "id: Forbidden: id is not supported"),
        pytest.param(
            {"additionalItems": False},
            "additionalItems: Forbidden: additionalItems is not supported",
        ),
        pytest.param(
            {"patternProperties": {"^a": {"type": "string"}}},
            "patternProperties: Forbidden: patternProperties is not supported",
        ),
        pytest.param(
            {"dependencies": {"a": ["b"]}}, "dependencies: Forbidden: dependencies is not supported"
        ),
        pytest.param(
            {"definitions": {"a": {"type": "string"}}},
            "definitions: Forbidden: definitions is not supported",
        ),
        pytest.param(
            {"uniqueItems": True},
            "uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime "
            "complexity becomes quadratic",
        ),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else None,
)
def test_forbidden_keywords(keyword: dict[str, Any], expected: str) -> None:
    node = {"type": "array", "items": {"type": "string"}, **keyword}
    assert schema_problems(obj(field=node)) == [f"{F}.{expected}"]


def test_dollar_schema_is_reported_only_when_nothing_else_is() -> None:
    # specStandardValidatorV3 lets $schema pass; NewStructural then fails, and its error
    # shows only when no other error does.
    assert schema_problems(obj(field={"type": "string", "$schema": "x"})) == [
        f"{P}: Invalid value: \"\": OpenAPIV3Schema 'schema' is not supported"
    ]
    assert schema_problems(obj(field={"type": "string", "$schema": "x"}, b={"type": "x"})) == [
        f'{P}.properties[b].type: Unsupported value: "x": supported values: "array", '
        '"boolean", "integer", "number", "object", "string"'
    ]


def test_type_null_is_not_a_type() -> None:
    assert schema_problems(obj(field={"type": "null"})) == [
        f'{F}.type: Unsupported value: "null": supported values: "array", "boolean", '
        '"integer", "number", "object", "string"',
        f"{F}.type: Forbidden: type cannot be set to null, use nullable as an alternative",
    ]


def test_defaults_are_refused_in_top_level_meta_fields_only() -> None:
    assert schema_problems(obj(spec=obj(replicas={"type": "integer", "default": 1}))) == []
    assert schema_problems(obj(kind={"type": "string", "default": "Widget"})) == [
        f"{P}.properties[kind].default: Forbidden: must not be set in top-level kind"
    ]


# -- list and map types ----------------------------------------------------------------------------


def map_list(**changes: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": obj(name={"type": "string"}, value={"type": "string"}),
    }
    node["items"]["required"] = ["name"]
    node.update(changes)
    return node


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        pytest.param(map_list(), [], id="valid-map-list"),
        pytest.param(
            {"type": "array", "x-kubernetes-list-type": "ordered", "items": {"type": "string"}},
            [f'{F}.x-kubernetes-list-type: Unsupported value: "ordered": supported values: '
             '"atomic", "set", "map"'],
            id="unknown-list-type",
        ),
        pytest.param(
            {"type": "string", "x-kubernetes-list-type": "atomic"},
            [f'{F}.type: Invalid value: "string": must be array if x-kubernetes-list-type is '
             "specified"],
            id="list-type-on-a-string",
        ),
        pytest.param(
            map_list(**{"x-kubernetes-list-map-keys": []}),
            [f"{F}.x-kubernetes-list-map-keys: Required value: must not be empty if "
             "x-kubernetes-list-type is map"],
            id="map-list-without-keys",
        ),
        pytest.param(
            map_list(items={"type": "string"}),
            [f'{F}.items.type: Invalid value: "string": must be object if parent array\'s '
             "x-kubernetes-list-type is map"],
            id="map-list-of-strings",
        ),
        pytest.param(
            map_list(**{"x-kubernetes-list-map-keys": ["nope"]}),
            [f'{F}.x-kubernetes-list-map-keys: Invalid value: []string{{"nope"}}: entries must '
             "all be names of item properties"],
            id="map-key-not-a-property",
        ),
        pytest.param(
            map_list(items=obj(name={"type": "string"})),
            [f"{F}.items.properties[name].default: Required value: this property is in "
             "x-kubernetes-list-map-keys, so it must have a default or be a required property"],
            id="map-key-neither-required-nor-defaulted",
        ),
        pytest.param(
            {"type": "array", "x-kubernetes-list-map-keys": ["a"],
             "items": obj(a={"type": "string"})},
            [f"{F}.x-kubernetes-list-type: Required value: must be map if "
             "x-kubernetes-list-map-keys is non-empty"],
            id="map-keys-without-list-type",
        ),
        pytest.param(
            {"type": "array", "x-kubernetes-list-type": "set", "items": obj(a={"type": "string"})},
            [f"{F}.items.x-kubernetes-map-type: Invalid value: null: must be atomic as item of a "
             "list with x-kubernetes-list-type=set"],
            id="set-of-granular-objects",
        ),
        pytest.param(
            {"type": "object", "x-kubernetes-map-type": "partial"},
            [f'{F}.x-kubernetes-map-type: Unsupported value: "partial": supported values: '
             '"atomic", "granular"'],
            id="unknown-map-type",
        ),
        pytest.param(
            {"type": "string", "x-kubernetes-map-type": "atomic"},
            [f'{F}.type: Invalid value: "string": must be object if x-kubernetes-map-type is '
             "specified"],
            id="map-type-on-a-string",
        ),
    ],
)  # fmt: skip
def test_list_and_map_types(node: dict[str, Any], expected: list[str]) -> None:
    assert schema_problems(obj(field=node)) == expected


def test_validation_rules_are_checked_for_shape() -> None:
    rules = [{"rule": ""}, {"rule": "self.a > 0", "reason": "FieldValueTooLong"}]
    node = {**obj(a={"type": "integer"}), "x-kubernetes-validations": rules}
    assert schema_problems(obj(field=node)) == [
        f"{F}.x-kubernetes-validations[0].rule: Required value: rule is not specified",
        f'{F}.x-kubernetes-validations[1].reason: Unsupported value: "FieldValueTooLong": '
        'supported values: "FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", '
        '"FieldValueRequired"',
    ]


def test_go_regular_expressions() -> None:
    assert go_regexp_error(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$") is None
    assert go_regexp_error(r"(a)\1") == "error parsing regexp: invalid escape sequence: `\\1`"
    assert go_regexp_error("(unclosed") is not None


# -- the CRD around the schema (validateCustomResourceDefinitionSpec) ------------------------------


def test_names_are_defaulted_before_they_are_required() -> None:
    assert problems(widget_crd()) == []  # no singular, no listKind: the server defaults them
    crd = widget_crd()
    del crd["spec"]["names"]["kind"]
    assert problems(crd) == [
        "spec.names.singular: Required value",
        "spec.names.kind: Required value",
        "spec.names.listKind: Required value",
    ]


def test_the_name_is_plural_dot_group() -> None:
    crd = widget_crd()
    crd["metadata"]["name"] = "gadgets.example.com"
    assert problems(crd) == [
        'metadata.name: Invalid value: "gadgets.example.com": must be '
        'spec.names.plural+"."+spec.group'
    ]


def test_group_scope_versions_and_names() -> None:
    crd = widget_crd(group="example", scope="Global")
    crd["metadata"]["name"] = "widgets.example"
    crd["spec"]["names"].update(shortNames=["WD"], listKind="Widget")
    crd["spec"]["versions"][0]["storage"] = False
    assert problems(crd) == [
        'spec.group: Invalid value: "example": should be a domain with at least one dot',
        'spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced"',
        "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion{...}: "
        "must have exactly one version marked as storage version",
        f'spec.names.shortNames[0]: Invalid value: "WD": {DNS1035}',
        'spec.names.listKind: Invalid value: "Widget": kind and listKind may not be the same',
    ]


def test_a_bad_plural_is_reported_in_the_servers_words() -> None:
    crd = widget_crd()
    crd["spec"]["names"]["plural"] = "Widgets"
    crd["metadata"]["name"] = (
        "Widgets.example.com"  # plural.group: the name's syntax is the store's
    )
    assert problems(crd) == [f'spec.names.plural: Invalid value: "Widgets": {DNS1035}']


def test_every_version_needs_a_schema() -> None:
    crd = widget_crd()
    del crd["spec"]["versions"][0]["schema"]
    assert problems(crd) == [
        "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"
    ]


def test_parts_shared_by_every_version_are_reported_at_the_top_level() -> None:
    crd = widget_crd({})
    second = copy.deepcopy(crd["spec"]["versions"][0])
    second.update(name="v2", storage=False)
    crd["spec"]["versions"].append(second)
    assert problems(crd) == [f"{P}.type: Required value: must not be empty at the root"]
    second["schema"] = {"openAPIV3Schema": {"type": "object", "nullable": True}}
    assert problems(crd) == [
        "spec.versions[0].schema.openAPIV3Schema.type: Required value: must not be empty at the "
        "root",
        "spec.versions[1].schema.openAPIV3Schema.nullable: Forbidden: nullable cannot be true at "
        "the root",
    ]


def test_printer_columns() -> None:
    crd = widget_crd()
    crd["spec"]["versions"][0]["additionalPrinterColumns"] = [
        {"name": "Ready", "type": "bool", "jsonPath": "status.ready"},
        {"name": "Age", "type": "date"},
    ]
    assert problems(crd) == [
        'spec.additionalPrinterColumns[0].type: Invalid value: "bool": must be one of '
        "boolean,date,integer,number,string",
        'spec.additionalPrinterColumns[0].JSONPath: Invalid value: "status.ready": must be a '
        "simple json path starting with .",
        "spec.additionalPrinterColumns[1].JSONPath: Required value",
    ]


def test_scale_subresource_paths() -> None:
    crd = widget_crd()
    crd["spec"]["versions"][0]["subresources"] = {
        "scale": {"specReplicasPath": ".status.replicas", "statusReplicasPath": "status.x"}
    }
    assert problems(crd) == [
        'spec.subresources.scale.specReplicasPath: Invalid value: ".status.replicas": should be '
        "a json path under .spec",
        'spec.subresources.scale.statusReplicasPath: Invalid value: "status.x": must be a simple '
        "json path starting with .",
    ]


def test_conversion_and_preserve_unknown_fields() -> None:
    webhook = widget_crd(conversion={"strategy": "Webhook"})
    assert problems(webhook) == [
        "spec.conversion.webhookClientConfig: Required value: required when strategy is set to "
        "Webhook",
        "spec.conversion.conversionReviewVersions: Required value",
    ]
    preserving = widget_crd(preserveUnknownFields=True)
    assert problems(preserving) == [
        "spec.preserveUnknownFields: Invalid value: true: cannot set to true, set "
        "x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead"
    ]


# -- what the fake answers -------------------------------------------------------------------------


def test_undecodable_crds_are_400_like_a_real_server() -> None:
    crd = widget_crd(status=True)
    crd["spec"]["versions"][0]["subresources"]["status"] = True
    with pytest.raises(ApiError) as raised:
        check_crd(crd)
    assert raised.value.code == 400
    assert raised.value.message == (
        'CustomResourceDefinition in version "v1" cannot be handled as a '
        "CustomResourceDefinition: json: cannot unmarshal bool into Go struct field "
        "CustomResourceSubresources.spec.versions.subresources.status of type "
        "v1.CustomResourceSubresourceStatus"
    )
    with pytest.raises(
        ApiError, match=r"cannot unmarshal string into Go value of type v1\.JSONSchemaProps"
    ):
        check_crd(widget_crd(obj(field="string")))


def test_the_invalid_status_aggregates_causes_like_apimachinery() -> None:
    one = errors.invalid("Widget", "example.com", "w", [("a", "Forbidden: no")])
    assert one.message == 'Widget.example.com "w" is invalid: a: Forbidden: no'
    causes = [("a", "Forbidden: no"), ("a", "Forbidden: no"), ("b", "Required value")]
    many = errors.invalid("Widget", "example.com", "w", causes)
    assert (
        many.message == 'Widget.example.com "w" is invalid: [a: Forbidden: no, b: Required value]'
    )
    assert [cause["reason"] for cause in many.status()["details"]["causes"]] == [
        "FieldValueForbidden",
        "FieldValueForbidden",
        "FieldValueRequired",
    ]
