"""``dms validate FILE``: check an ensemble file without deploying it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dms.cli.output import emit_json, out


def validate(
    file: Annotated[Path, typer.Argument(help="Ensemble file (YAML, version: V1).")],
    json: Annotated[
        bool, typer.Option("--json", help="Print the normalised ensemble as JSON.")
    ] = False,
) -> None:
    """Validate an ensemble file; list every problem with its path, value and what is accepted."""
    from dms.jobs import load_ensemble, to_document

    ensemble = load_ensemble(file)
    if json:
        emit_json(to_document(ensemble))
        return
    out().print(f"[green]valid[/]: {file}")
    for name, node in ensemble.nodes.items():
        need = ensemble.requirement(name)
        out().print(
            f"  node {name}: {', '.join(node.allocations)} needs {need.resources.describe()}"
        )
