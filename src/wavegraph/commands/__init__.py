"""Typer sub-apps, one module per command group; assembled in wavegraph.cli."""
