"""Label and field selectors with the real server's grammar and matching rules.

Label selectors follow ``k8s.io/apimachinery/pkg/labels``: comma-separated requirements, each
``key``, ``!key``, ``key=v``, ``key==v``, ``key!=v``, ``key in (a,b)``, ``key notin (a,b)``,
``key>N`` or ``key<N``.  ``!=`` and ``notin`` also match objects without the label, as on a
real cluster.  Field selectors are ``field=v``, ``field==v`` or ``field!=v`` on the fields a
resource supports; any other field is a 400, as a real server answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.kube.fake.errors import bad_request

_TOKEN = re.compile(r"\s*(==|!=|=|>|<|\(|\)|,|!|[A-Za-z0-9_./-]+)")
_WORD = re.compile(r"[A-Za-z0-9_./-]+")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    """One of ``exists``, ``!``, ``=``, ``!=``, ``in``, ``notin``, ``>``, ``<``."""
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if not present or value is None or not re.fullmatch(r"-?\d+", value):
            return False
        (bound,) = self.values
        return int(value) > int(bound) if self.operator == ">" else int(value) < int(bound)


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise bad_request(f"unable to parse requirement: unexpected character in {text!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    """Parse a ``labelSelector`` query value; a malformed one is a 400 BadRequest."""
    if not text or not text.strip():
        return ()
    tokens = _tokens(text)
    requirements: list[Requirement] = []
    index = 0

    def fail(why: str) -> Exception:
        return bad_request(f"unable to parse requirement: {why} in {text!r}")

    def take() -> str:
        nonlocal index
        if index >= len(tokens):
            raise fail("unexpected end")
        index += 1
        return tokens[index - 1]

    while True:
        token = take()
        if token == "!":
            key = take()
            if not _WORD.fullmatch(key):
                raise fail(f"invalid key {key!r}")
            requirements.append(Requirement(key, "!"))
        elif _WORD.fullmatch(token):
            key = token
            operator = tokens[index] if index < len(tokens) else ","
            if operator == ",":
                requirements.append(Requirement(key, "exists"))
            elif operator in ("=", "==", "!=", ">", "<"):
                index += 1
                value = tokens[index] if index < len(tokens) else ""
                if value in (",", ")", "(") or not value:
                    value = ""  # ``key=`` selects an empty label value
                else:
                    index += 1
                if operator in (">", "<") and not re.fullmatch(r"-?\d+", value):
                    raise fail(f"for '{operator}', value must be an integer")
                canonical = "=" if operator == "==" else operator
                requirements.append(Requirement(key, canonical, frozenset({value})))
            elif operator in ("in", "notin"):
                index += 1
                if take() != "(":
                    raise fail("expected '('")
                values: set[str] = set()
                while True:
                    item = take()
                    if item == ")":
                        break
                    if item == ",":
                        continue
                    if not _WORD.fullmatch(item):
                        raise fail(f"invalid value {item!r}")
                    values.add(item)
                requirements.append(Requirement(key, operator, frozenset(values)))
            else:
                raise fail(f"unexpected {operator!r} after {key!r}")
        else:
            raise fail(f"unexpected {token!r}")
        if index >= len(tokens):
            return tuple(requirements)
        if take() != ",":
            raise fail("expected ','")


def labels_match(requirements: Iterable[Requirement], obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(requirement.matches(labels) for requirement in requirements)


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    value: str
    negated: bool

    def matches(self, obj: Mapping[str, Any]) -> bool:
        actual: Any = obj
        for part in self.field.split("."):
            actual = actual.get(part) if isinstance(actual, Mapping) else None
        text = "" if actual is None else str(actual)
        return (text != self.value) if self.negated else (text == self.value)


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_field_selector(
    text: str | None, *, supported: Iterable[str]
) -> tuple[FieldRequirement, ...]:
    """Parse a ``fieldSelector``; fields outside ``supported`` are refused like a real server."""
    if not text or not text.strip():
        return ()
    allowed = {"metadata.name", "metadata.namespace", *supported}
    requirements: list[FieldRequirement] = []
    for raw in _split_unescaped(text, ","):
        match = re.fullmatch(r"\s*([^=!\s]+)\s*(==|!=|=)\s*(.*?)\s*", raw)
        if match is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{raw}'")
        name, operator, value = match.groups()
        if name not in allowed:
            raise bad_request(f'field label not supported: "{name}"')
        requirements.append(FieldRequirement(name, value.replace("\\", ""), operator == "!="))
    return tuple(requirements)


def fields_match(requirements: Iterable[FieldRequirement], obj: Mapping[str, Any]) -> bool:
    return all(requirement.matches(obj) for requirement in requirements)


Selector = Callable[[Mapping[str, Any]], bool]


def selector(labels: Iterable[Requirement], fields: Iterable[FieldRequirement]) -> Selector:
    labels, fields = tuple(labels), tuple(fields)
    return lambda obj: labels_match(labels, obj) and fields_match(fields, obj)


def selector_from_query(query: Mapping[str, str], *, supported: Iterable[str]) -> Selector:
    """The selector a list or watch request's ``labelSelector`` and ``fieldSelector`` ask for."""
    return selector(
        parse_label_selector(query.get("labelSelector")),
        parse_field_selector(query.get("fieldSelector"), supported=supported),
    )
