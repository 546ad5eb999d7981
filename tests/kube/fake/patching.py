"""The three PATCH formats a real server accepts for JSON bodies.

- JSON merge patch (RFC 7386, ``application/merge-patch+json``): objects merge, ``null``
  deletes, anything else (lists included) replaces.
- JSON patch (RFC 6902, ``application/json-patch+json``): a *list* of operations; a body that is
  not a list is a 400 (which is how a dict sent with the client's default content type fails
  on a real cluster), an operation that cannot apply (a failed ``test``) a 422.
- Strategic merge patch (``application/strategic-merge-patch+json``), built-in kinds only: merge
  patch, except that lists with a known merge key merge element-wise and the ``$patch``,
  ``$retainKeys``, ``$deleteFromPrimitiveList/`` and ``$setElementOrder/`` directives work.
  This approximates ``k8s.io/apimachinery/pkg/util/strategicpatch`` with a table of merge keys
  instead of the Go struct tags; lists not in the table are replaced whole, as are lists
  without a patch strategy on a real server.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tests.kube.fake.errors import ApiError, bad_request

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

GENERIC_MERGE_KEYS: Mapping[tuple[str, ...], str] = {
    ("metadata", "ownerReferences"): "uid",
    ("status", "conditions"): "type",
}
PRIMITIVE_MERGE_LISTS: frozenset[tuple[str, ...]] = frozenset({("metadata", "finalizers")})


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, message)


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise _unprocessable(f"invalid JSON pointer: {path!r}")
    if path == "":
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _same(left: Any, right: Any) -> bool:
    """JSON equality: ``true`` is not ``1`` (Python's ``==`` says it is)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_same, left, right))
    return bool(left == right) and isinstance(left, str) == isinstance(right, str)


def _index(container: list[Any], part: str, *, for_add: bool) -> int:
    if part == "-" and for_add:
        return len(container)
    if not part.isdigit() or (len(part) > 1 and part.startswith("0")):
        raise _unprocessable(f"invalid array index: {part!r}")
    index = int(part)
    if index > len(container) or (index == len(container) and not for_add):
        raise _unprocessable(f"array index out of bounds: {index}")
    return index


def _parent(document: Any, parts: list[str]) -> Any:
    node = document
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list):
            node = node[_index(node, part, for_add=False)]
        else:
            raise _unprocessable(f"path not found: /{'/'.join(parts)}")
    return node


def _get(document: Any, parts: list[str]) -> Any:
    if not parts:
        return document
    parent = _parent(document, parts)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_add=False)]
    raise _unprocessable(f"path not found: /{'/'.join(parts)}")


def _add(document: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _parent(document, parts)
    if isinstance(parent, dict):
        parent[parts[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, parts[-1], for_add=True), value)
    else:
        raise _unprocessable(f"cannot add to /{'/'.join(parts)}")
    return document


def _remove(document: Any, parts: list[str]) -> Any:
    if not parts:
        raise _unprocessable("cannot remove the whole document")
    parent = _parent(document, parts)
    if isinstance(parent, dict) and parts[-1] in parent:
        return parent.pop(parts[-1])
    if isinstance(parent, list):
        return parent.pop(_index(parent, parts[-1], for_add=False))
    raise _unprocessable(f"path not found: /{'/'.join(parts)}")


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
        kind = type(operations).__name__
        raise bad_request(f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Patch")
    document = copy.deepcopy(target)
    for operation in operations:
        op = operation.get("op")
        parts = _pointer(operation.get("path"))
        if op in ("add", "replace", "test") and "value" not in operation:
            raise _unprocessable(f"missing value for operation {op!r}")
        value = copy.deepcopy(operation.get("value"))
        if op == "add":
            document = _add(document, parts, value)
        elif op == "remove":
            _remove(document, parts)
        elif op == "replace":
            _get(document, parts)  # must exist
            if not parts:
                document = value
            else:
                _remove(document, parts)
                document = _add(document, parts, value)
        elif op in ("move", "copy"):
            source = _pointer(operation.get("from"))
            moved = (
                _remove(document, source) if op == "move" else copy.deepcopy(_get(document, source))
            )
            document = _add(document, parts, moved)
        elif op == "test":
            if not _same(_get(document, parts), value):
                raise _unprocessable(
                    f"testing value {operation.get('path')} failed: test operation failed"
                )
        else:
            raise _unprocessable(f"unexpected kind of operation: {op!r}")
    return document


_DELETE = object()


def strategic_merge_patch(
    target: Any,
    patch: Any,
    *,
    merge_keys: Mapping[tuple[str, ...], str],
    path: tuple[str, ...] = (),
) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    keys = {**GENERIC_MERGE_KEYS, **merge_keys}
    patch = dict(patch)
    directive = patch.pop("$patch", None)
    if directive == "replace":
        return copy.deepcopy(patch)
    if directive == "delete":
        return _DELETE
    retain = patch.pop("$retainKeys", None)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = [item for item in result[name] if item not in value]
            continue
        child = (*path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value, merge_keys=keys, path=child)
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, child, keys)
        else:
            result[key] = _strip_directives(value)
    if isinstance(retain, list):
        result = {key: item for key, item in result.items() if key in retain}
    return result


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(item) for item in value]
    return copy.deepcopy(value)


def _merge_list(
    current: list[Any],
    patch: list[Any],
    path: tuple[str, ...],
    keys: Mapping[tuple[str, ...], str],
) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [_strip_directives(item) for item in patch if item.get("$patch") != "replace"]
    if path in PRIMITIVE_MERGE_LISTS:
        return [*current, *(item for item in patch if item not in current)]
    key = keys.get(path)
    if key is None:
        return _strip_directives(patch)  # type: ignore[no-any-return]
    result = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise bad_request(f"map: {item!r} does not contain declared merge key: {key}")
        index = next(
            (
                i
                for i, old in enumerate(result)
                if isinstance(old, dict) and old.get(key) == item[key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_strip_directives(item))
        else:
            result[index] = strategic_merge_patch(result[index], item, merge_keys=keys, path=path)
    return result
