"""``dms key new|did|list``: the keys in the node home."""

from __future__ import annotations

from typing import Annotated

import typer

from dms.cli.output import emit_json, note, out, table
from dms.cli.state import CLIState

app = typer.Typer(help="Keys in the node home: new, did, list.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command("new")
def new(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Key name: letters, digits, _ . -")],
    no_passphrase: Annotated[
        bool, typer.Option("--no-passphrase", help="Seal under a fixed, public passphrase.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Create a key (sealed with DMS_PASSPHRASE or a passphrase typed twice)."""
    from dms.node.setup import (
        UNPROTECTED_PASSPHRASE,
        ask_passphrase,
        keystore_for,
        mark_unprotected,
    )

    state: CLIState = ctx.obj
    home = state.home
    store = keystore_for(home, unprotected=no_passphrase)
    store.path(name)  # refuses a bad name before asking for a passphrase
    passphrase = UNPROTECTED_PASSPHRASE if no_passphrase else ask_passphrase()
    keypair = store.create(name, passphrase)
    if no_passphrase:
        mark_unprotected(home, name)
    if json:
        emit_json({"name": name, "did": keypair.did})
        return
    out().print(f"key [bold]{name}[/]: {keypair.did}")


@app.command("did")
def did(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Key name")] = "node",
    json: JsonOption = False,
) -> None:
    """A key's DID (no passphrase needed)."""
    from dms.node.setup import keystore_for

    state: CLIState = ctx.obj
    value = keystore_for(state.home).did(name)
    if json:
        emit_json({"name": name, "did": value})
        return
    out().print(value)


@app.command("list")
def list_(ctx: typer.Context, json: JsonOption = False) -> None:
    """Every key's name and DID."""
    from dms.node.setup import keystore_for, unprotected_names

    state: CLIState = ctx.obj
    entries = keystore_for(state.home).entries()
    if json:
        emit_json(entries)
        return
    if not entries:
        note(f"no keys in {state.home.keys_dir}; run dms init")
        return
    unprotected = unprotected_names(state.home)
    table(
        ("name", "DID", "protection"),
        [(e.name, e.did, "none" if e.name in unprotected else "passphrase") for e in entries],
    )
