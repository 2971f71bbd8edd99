"""The ``flowdeck`` command line. Later subcommands (``register``, ``agent start`` …) are added as
Typer sub-apps here; every command gets ``--help`` from Typer."""

from __future__ import annotations

import platform

import typer
from rich.console import Console

from flowdeck import __version__

app = typer.Typer(
    name="flowdeck",
    help="Flowdeck SDK and agent: register flows and run them in your own infrastructure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
# Human-facing output (tables, progress) goes through rich; plain facts scripts may parse
# (the version) are echoed without markup or highlighting.
console = Console(highlight=False)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"flowdeck {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
    ),
) -> None:
    """Flowdeck SDK and agent: register flows and run them in your own infrastructure."""


@app.command()
def version(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also print the Python version and platform."),
) -> None:
    """Print the installed flowdeck version."""
    typer.echo(f"flowdeck {__version__}")
    if verbose:
        typer.echo(f"Python {platform.python_version()} on {platform.platform()}")


def main() -> None:
    """Console-script entry point."""
    app()
