"""Pure ASGI middleware: a request id and the time taken, on every HTTP response.

The id comes from the client's ``X-Request-ID`` when it is a short token, else a fresh uuid4; it is put
in ``scope["state"]["request_id"]`` (``request.state.request_id``) and echoed as ``X-Request-ID``.
``Server-Timing: app;dur=<ms>`` tells the time to the first response byte. One DEBUG log line per request.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("wavegraph.http.access")

_TOKEN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        start = time.perf_counter()
        status = 0

        async def send_with_context(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers.append("X-Request-ID", rid)
                headers.append("Server-Timing", f"app;dur={(time.perf_counter() - start) * 1000:.1f}")
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        finally:
            log.debug(
                "%s %s %s %.1fms id=%s",
                scope["method"],
                scope["path"],
                status or "-",
                (time.perf_counter() - start) * 1000,
                rid,
            )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _TOKEN.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex
