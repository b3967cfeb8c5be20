"""``wavegraph config show | check``: the effective settings."""

from __future__ import annotations

import typer
import yaml
from rich.console import Console
from rich.syntax import Syntax

from wavegraph.settings import load_settings

app = typer.Typer(help="Show and validate the effective settings.", no_args_is_help=True)


@app.command()
def show() -> None:
    """Print the effective settings (defaults, config file and WAVEGRAPH_ overrides) as YAML."""
    text = yaml.safe_dump(load_settings().model_dump(mode="json"), sort_keys=False)
    Console().print(Syntax(text, "yaml"))


@app.command()
def check() -> None:
    """Validate the settings; exit 2 with the bad values named when they are invalid."""
    load_settings()
    Console().print("[green]settings are valid[/]")
