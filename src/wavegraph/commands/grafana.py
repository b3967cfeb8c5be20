"""``wavegraph grafana render | upload``: the Grafana dashboard built from code
(:mod:`wavegraph.ops.dashboard`).

``render`` prints the dashboard's JSON model or writes it (``--out``); with ``--check`` it only
compares (exit 1 when the file differs: regenerate it). ``upload`` creates or replaces the dashboard
in a Grafana by uid (:mod:`wavegraph.ops.grafana`); ``--url`` and ``--token`` can come from
``GRAFANA_URL`` and ``GRAFANA_TOKEN``, so that a CI secret never shows on a command line.

Exit codes: 0 done; 1 Grafana refused a request or could not be reached, or ``render --check`` found
a difference; 2 the dashboard was refused before any request (a query that does not parse or reads a
metric wavegraph does not export, a JSON file that is not a dashboard, a bad ``--url``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import orjson
import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    help="The Grafana dashboard: render its JSON from code, upload it to a Grafana.", no_args_is_help=True
)


def _error(message: str, code: int) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    return typer.Exit(code)


def _check_url(url: str) -> str:
    parts = urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise typer.BadParameter("expected http(s)://host[:port][/path], e.g. http://127.0.0.1:3000")
    return url


@app.command()
def render(
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the JSON here (default: print it).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 when --out differs from the dashboard.")
    ] = False,
) -> None:
    """The dashboard's JSON model, checked against the metrics wavegraph exports.

    Regenerate the checked-in file: wavegraph grafana render --out deploy/grafana/dashboards/wavegraph.json
    """
    from wavegraph.ops.dashboard import dashboard_json
    from wavegraph.ops.dashboard import render as render_json
    from wavegraph.ops.grafana import DashboardRefused, check_dashboard

    try:
        check_dashboard(dashboard_json())
    except DashboardRefused as exc:
        raise _error(str(exc), 2) from None
    text = render_json()
    if check:
        if out is None:
            raise typer.BadParameter("--check needs --out", param_hint="--check")
        if not out.is_file() or out.read_text(encoding="utf-8") != text:
            raise _error(
                f"{out} differs from the dashboard built from code: run wavegraph grafana render --out {out}",
                1,
            )
        Console().print(f"{out} is up to date")
    elif out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        Console().print(f"wrote {out}")


def _load(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise _error(f"cannot read {path}: {exc.strerror or exc}", 2) from None
    except orjson.JSONDecodeError as exc:
        raise _error(f"{path} is not JSON: {exc}", 2) from None
    if isinstance(data, dict) and isinstance(data.get("dashboard"), dict):  # an export with its "meta"
        data = data["dashboard"]
    if not isinstance(data, dict) or not isinstance(data.get("panels"), list):
        raise _error(f"{path} is not a Grafana dashboard (no 'panels' list)", 2)
    return data


@app.command()
def upload(
    url: Annotated[
        str,
        typer.Option("--url", envvar="GRAFANA_URL", callback=_check_url, help="Grafana's base URL."),
    ],
    token: Annotated[
        str,
        typer.Option(
            "--token", envvar="GRAFANA_TOKEN", show_default=False, help="A service-account token (Editor)."
        ),
    ],
    folder: Annotated[
        str,
        typer.Option("--folder", help="Folder title, found or created ('' for the General folder)."),
    ] = "wavegraph",
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Upload this dashboard JSON instead of the one built from code."),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds per HTTP request.")] = 10.0,
    json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Create or replace the dashboard by uid (the version moves by one per upload).

    Refused before any request when a panel query reads a metric wavegraph does not export.
    """
    from wavegraph.ops.dashboard import dashboard_json
    from wavegraph.ops.grafana import DashboardRefused, GrafanaError
    from wavegraph.ops.grafana import upload as send

    model = _load(file) if file is not None else dashboard_json()
    try:
        result = send(model, url, token, folder or None, timeout_s=timeout)
    except DashboardRefused as exc:
        raise _error(str(exc), 2) from None
    except GrafanaError as exc:
        raise _error(str(exc), 1) from None
    if json:
        sys.stdout.write(orjson.dumps(result.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    where = f"folder {result.folder!r}" if result.folder else "the General folder"
    if result.folder_created:
        where += " (created)"
    before = "" if result.previous_version is None else f", was {result.previous_version}"
    Console().print(
        f"{result.action} dashboard {result.uid} (version {result.version}{before}) in {where}: {result.url}",
        soft_wrap=True,
        highlight=False,
    )
