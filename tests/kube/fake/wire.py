"""How the fake puts JSON on the wire, the way the real API server's encoder does."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tests.kube.fake.errors import ApiError


def encode_json(value: Any) -> bytes:
    """Compact JSON ending in a newline: Go's encoder does so and watch readers split on it."""
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def json_response(
    value: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=encode_json(value), status=status, headers=headers, content_type="application/json"
    )


def error_response(error: ApiError, *, headers: Mapping[str, str] | None = None) -> web.Response:
    return json_response(error.status(), status=error.code, headers=headers)
