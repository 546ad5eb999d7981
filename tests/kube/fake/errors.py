"""API errors as the real server shapes them: every failure is a v1 ``Status`` body.

The client turns non-2xx answers into ``ApiException`` and the controller reads ``status``,
``reason`` and sometimes ``body``; so the fake must never answer an error with anything but a
``Status`` (``kind``, ``apiVersion``, ``metadata``, ``status: Failure``, ``message``, ``reason``,
``details``, ``code``), exactly like ``k8s.io/apimachinery/pkg/api/errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """A failure the fake answers as a ``Status`` with this ``code`` and ``reason``."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason if reason is not None else REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        return status_body(self.code, self.message, reason=self.reason, details=self.details)


def status_body(
    code: int,
    message: str,
    *,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason if reason is not None else REASONS.get(code, "Unknown"),
    }
    if details:
        body["details"] = details
    body["code"] = code
    return body


def _details(name: str | None, group: str, plural: str) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": plural}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def _resource(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        404,
        f'{_resource(group, plural)} "{name}" not found',
        details=_details(name, group, plural),
    )


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        409,
        f'{_resource(group, plural)} "{name}" already exists',
        reason="AlreadyExists",
        details=_details(name, group, plural),
    )


def conflict(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {_resource(group, plural)} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again",
        details=_details(name, group, plural),
    )


CAUSE_TYPES: dict[str, str] = {
    "Not found": "FieldValueNotFound",
    "Required value": "FieldValueRequired",
    "Duplicate value": "FieldValueDuplicate",
    "Invalid value": "FieldValueInvalid",
    "Unsupported value": "FieldValueNotSupported",
    "Forbidden": "FieldValueForbidden",
    "Too long": "FieldValueTooLong",
    "Too many": "FieldValueTooMany",
    "Internal error": "InternalError",
}
"""A cause's message starts with its type's text (``field.ErrorType.String()``); the cause's
``reason`` is the type itself (apimachinery's ``NewInvalid``)."""


def cause_reason(message: str) -> str:
    """``"Forbidden: ..."`` is a ``FieldValueForbidden`` cause; unknown prefixes are Invalid."""
    return CAUSE_TYPES.get(message.split(":", 1)[0], "FieldValueInvalid")


def invalid(kind: str, group: str, name: str, causes: Sequence[tuple[str, str]]) -> ApiError:
    """422 Invalid, as field validation reports it: ``causes`` are ``(field, message)``.

    The message aggregates the causes like ``ErrorList.ToAggregate()``: repeated texts once,
    in brackets only when more than one remains.
    """
    qualified = f"{kind}.{group}" if group else kind
    texts = list(dict.fromkeys(f"{field}: {message}" for field, message in causes))
    listed = f"[{', '.join(texts)}]" if len(texts) > 1 else "".join(texts)
    return ApiError(
        422,
        f'{qualified} "{name}" is invalid: {listed}',
        details={
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [
                {"reason": cause_reason(message), "message": message, "field": field}
                for field, message in causes
            ],
        },
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def expired(message: str) -> ApiError:
    return ApiError(410, message)


def unknown_resource() -> ApiError:
    return ApiError(
        404,
        "the server could not find the requested resource",
        details={
            "causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]
        },
    )
