"""``GET|POST /v1/search``: hybrid search over a tenant's transcripts and nodes."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from starlette.routing import BaseRoute

from wavegraph.http.context import ApiContext

ROUTES: list[BaseRoute] = []
OPENAPI: dict[str, Any] = {}


async def start(ctx: ApiContext, stack: AsyncExitStack) -> None:
    """Nothing to open yet."""
