"""``GET /v1/stats/{statistic}``: differentially private statistics under per-tenant budgets."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from starlette.routing import BaseRoute

from wavegraph.http.context import ApiContext

ROUTES: list[BaseRoute] = []
OPENAPI: dict[str, Any] = {}


async def start(ctx: ApiContext, stack: AsyncExitStack) -> None:
    """Nothing to open yet."""
