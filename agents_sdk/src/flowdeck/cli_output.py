"""How the ``flowdeck`` command line prints: tables for people on a terminal and plain lines that
scripts can cut when the output is piped; progress only on a terminal; ``--help`` without a type
after plain flags.

People on a terminal get rich tables that fit the window. Piped (``flowdeck runs list | grep``),
the same rows come as plain text, one row a line, columns padded with spaces and never wrapped,
so an id is always whole on its line."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

# Human-facing output (tables, progress) goes through rich; plain facts scripts may parse
# (the version, JSON) are echoed without markup or highlighting.
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

PLAIN_GAP = "  "


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table: rich (folded to the terminal's width) on a terminal, plain padded lines when piped."""
    cells = [[str(value) for value in row] for row in rows]
    if console.is_terminal:
        table = Table(show_edge=False, box=None, pad_edge=False, header_style="bold")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in cells:
            table.add_row(*row)
        console.print(table)
        return
    widths = [max(len(line[i]) for line in [list(columns), *cells]) for i in range(len(columns))]
    for line in [list(columns), *cells]:
        text = PLAIN_GAP.join(value.ljust(width) for value, width in zip(line, widths, strict=True))
        # Written past rich: a console that is no terminal wraps at 80 columns.
        console.file.write(text.rstrip() + "\n")
    console.file.flush()


class Steps:
    """What ``steps()`` yields: ``advance()`` after each item, ``describe()`` to say what is going on."""

    def __init__(self, progress: Progress | None, task: Any) -> None:
        self._progress = progress
        self._task = task

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def advance(self, amount: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, amount)


@contextmanager
def steps(description: str, total: int | None) -> Iterator[Steps]:
    """A progress bar (with a count when ``total`` is known) on stderr while a long operation runs,
    only when stdout is a terminal; it disappears when done. Piped output stays clean."""
    if not console.is_terminal:
        yield Steps(None, None)
        return
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err_console, transient=True)
    with progress:
        task = progress.add_task(description, total=total)
        yield Steps(progress, task)


def hide_flag_types() -> None:
    """``--help`` shows ``<bool>`` after flags that take no value (``--watch``, ``--help``): show
    nothing there, as click does. Typer ≥ 0.20 prints each option's type in the rich help."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - an older typer prints no types
        return
    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_flowdeck_flags_plain", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return original(self, ctx)  # type: ignore[no-any-return]

    display_type_rich._flowdeck_flags_plain = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
