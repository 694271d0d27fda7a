"""Printing for commands: Rich for people, JSON with ``--json``; errors to stderr."""

from __future__ import annotations

import sys
from typing import Any

import msgspec
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def emit_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(msgspec.to_builtins(value)).decode() + "\n")


def fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
