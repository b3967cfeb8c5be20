"""JSON responses rendered with orjson, and the one error body every failure uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import JSONResponse


class ORJSONResponse(JSONResponse):
    """``application/json`` rendered by orjson (numbers, dataclasses and datetimes included)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(
    status_code: int,
    error: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> ORJSONResponse:
    """``{"error": <machine-readable code>, "detail": <sentence>, ...extra}`` with ``status_code``."""
    return ORJSONResponse({"error": error, "detail": detail, **extra}, status_code, headers=headers)
