"""The API's components: each module contributes routes, an OpenAPI fragment and a start step.

A component is a module with ``ROUTES`` (Starlette routes), ``OPENAPI`` (path → path item, merged into
``/openapi.json``) and ``async def start(ctx, stack)``, called by the API lifespan after the shared
clients are open: it puts what it needs under ``ctx.components[<name>]`` and registers its cleanup on
``stack`` (closed in reverse order with everything else).
"""

from __future__ import annotations

from types import ModuleType

from wavegraph.http import cache, explain, ingest_audio, search, stats

COMPONENTS: tuple[ModuleType, ...] = (ingest_audio, cache, search, explain, stats)
