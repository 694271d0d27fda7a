"""Printing for commands: Rich for people, JSON with ``--json``; errors to stderr.

Rich is imported on first use, so ``dms --help`` does not pay for it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

WIDE = 120


@functools.cache
def _console(stderr: bool) -> Console:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True, emoji=False)
    if not console.is_terminal:
        console.width = max(console.width, WIDE)  # a file or pipe: do not cut ids short
    return console


def out() -> Console:
    return _console(False)


def err() -> Console:
    return _console(True)


def emit_json(value: Any) -> None:
    import msgspec

    sys.stdout.write(msgspec.json.encode(msgspec.to_builtins(value)).decode() + "\n")
    sys.stdout.flush()


def fail(message: str) -> None:
    from rich.markup import escape

    err().print(f"[bold red]error:[/] {escape(message)}")


def note(message: str) -> None:
    """A hint on stderr (never mixed into JSON on stdout)."""
    err().print(f"[dim]{message}[/]")


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str = "") -> None:
    from rich.table import Table

    grid = Table(title=title or None, title_justify="left", header_style="bold")
    for index, column in enumerate(columns):
        # The first column holds ids: kept whole; the others fold when the line is too short.
        grid.add_column(column, overflow="fold", no_wrap=index == 0)
    for row in rows:
        grid.add_row(*(str(cell) for cell in row))
    out().print(grid)


def fields(pairs: Iterable[tuple[str, Any]]) -> None:
    """``name: value`` lines, names aligned."""
    from rich.markup import escape

    items = list(pairs)
    width = max((len(name) for name, _ in items), default=0)
    for name, value in items:
        out().print(f"[bold]{name.ljust(width)}[/]  {escape(str(value))}")


# Kept for the commands written before the lazy consoles.
class _LazyConsole:
    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr

    def __getattr__(self, name: str) -> Any:
        return getattr(_console(self._stderr), name)


console: Any = _LazyConsole(False)
err_console: Any = _LazyConsole(True)
