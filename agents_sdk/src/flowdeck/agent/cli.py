"""``flowdeck agent …`` commands (filled in by the agent work)."""

from __future__ import annotations

import typer

agent_app = typer.Typer(help="Run a Flowdeck agent.", no_args_is_help=True)
