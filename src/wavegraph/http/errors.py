"""Turning every failure into a JSON body: ``{"error": code, "detail": sentence}``.

Handlers (wired in :func:`wavegraph.http.app.create_app`):

- :class:`ApiError`, raised by endpoints for a 4xx/5xx with a code, optional headers and extra fields;
- Starlette's ``HTTPException`` (404 for unknown routes, 405 with ``Allow``) → the same JSON shape;
- ``ClientDisconnect`` while a body is read → 400 (nobody reads it; it is only logged and counted);
- anything else → 500 ``{"error": "internal"}`` with the request id; the traceback goes to the log,
  never to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ExceptionHandler

from wavegraph.http.responses import error_response

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answer: ``status_code``, a short ``error`` code and a ``detail`` sentence.

    ``headers`` (e.g. ``Retry-After``) and ``extra`` body fields (e.g. ``errors``) are optional.
    """

    def __init__(
        self,
        status_code: int,
        error: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{status_code} {error}: {detail}")
        self.status_code = status_code
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra


def request_id(request: Request) -> str:
    """The id :class:`wavegraph.http.middleware.RequestContextMiddleware` gave this request."""
    state = request.scope.get("state") or {}
    return str(state.get("request_id", "-"))


def _code(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.error, exc.detail, exc.headers, **exc.extra)


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        detail = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        detail = f"{request.method} is not allowed on {request.url.path} (allowed: {allowed})"
    else:
        detail = str(exc.detail)
    if exc.status_code in (204, 304):  # no body allowed
        return Response(status_code=exc.status_code, headers=exc.headers)
    return error_response(exc.status_code, _code(exc.status_code), detail, exc.headers)


async def client_disconnect(request: Request, exc: Exception) -> Response:
    log.info("client disconnected while sending %s %s", request.method, request.url.path)
    return error_response(400, "client_disconnected", "the client went away before the body was read")


async def internal_error(request: Request, exc: Exception) -> Response:
    rid = request_id(request)
    log.error("unhandled error in %s %s (request %s)", request.method, request.url.path, rid, exc_info=exc)
    return error_response(500, "internal", f"internal error; quote request id {rid}")


EXCEPTION_HANDLERS: Mapping[Any, ExceptionHandler] = {
    ApiError: api_error,
    HTTPException: http_exception,
    ClientDisconnect: client_disconnect,
    Exception: internal_error,
}
