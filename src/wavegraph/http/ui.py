"""``GET /ui/explain?node=ID#key=API_KEY``: a demo page drawing ``/v1/explain`` with Observable Plot.

The page (``static/explain.html`` + ``static/explain.js``) and the libraries it uses (d3 and
``@observablehq/plot`` UMD builds, copied from npm into ``static/vendor/`` by ``ui/vendor.mjs``; see
``ui/package.json``) are served by the app under ``/ui/static/``: no CDN, the page works offline.

The API key: the page reads it from the URL fragment (``#key=...``), which browsers never send to a
server nor write to access logs, and calls ``/v1/explain`` with ``Authorization: Bearer <key>``; the
tenant still comes from the key alone. Without a key in the fragment the page shows a form asking for
one. The page itself needs no key (it holds no data). If the vendored files are missing (``make ui``
was not run) ``/ui/explain`` answers 503 ``ui_not_built`` naming the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from wavegraph.http.errors import ApiError

STATIC = Path(__file__).parent / "static"
VENDORED = ("vendor/d3.min.js", "vendor/plot.umd.min.js")


async def explain_page(request: Request) -> Response:
    missing = [name for name in VENDORED if not (STATIC / name).is_file()]
    if missing:
        raise ApiError(
            503,
            "ui_not_built",
            f"the page's libraries are not vendored ({', '.join(missing)}): run `make ui` "
            "(npm ci --prefix ui && node ui/vendor.mjs)",
        )
    return FileResponse(STATIC / "explain.html", media_type="text/html; charset=utf-8")


ROUTES: list[BaseRoute] = [
    Route("/ui/explain", explain_page, methods=["GET"], name="ui_explain"),
    Mount("/ui/static", app=StaticFiles(directory=STATIC, check_dir=False), name="ui_static"),
]

OPENAPI: dict[str, Any] = {
    "/ui/explain": {
        "get": {
            "summary": "Demo page drawing /v1/explain with Observable Plot (key in the URL fragment)",
            "description": "Open /ui/explain?node=ID#key=API_KEY; the key stays in the browser.",
            "parameters": [{"name": "node", "in": "query", "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "an HTML page", "content": {"text/html": {}}},
                "503": {
                    "description": "the vendored libraries are missing (run `make ui`)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        }
    }
}
