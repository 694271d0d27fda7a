"""``dms init``: keys, config, API token and trust context, in one command."""

from __future__ import annotations

from typing import Annotated

import typer

from dms.cli.output import emit_json, fields, note, out
from dms.cli.state import CLIState


def init(
    ctx: typer.Context,
    no_passphrase: Annotated[
        bool,
        typer.Option(
            "--no-passphrase",
            help="Seal the keys under a fixed, public passphrase: anyone who can read the home "
            "can use them. For devstacks, tests and throw-away nodes only.",
        ),
    ] = False,
    listen: Annotated[
        list[str] | None,
        typer.Option(
            "--listen", help="libp2p listen multiaddr (repeat), e.g. /ip4/0.0.0.0/tcp/9000"
        ),
    ] = None,
    bootstrap: Annotated[
        list[str] | None,
        typer.Option(
            "--bootstrap", help="A peer to connect to at start (repeat): /ip4/.../p2p/<id>"
        ),
    ] = None,
    api_port: Annotated[
        int | None, typer.Option("--api-port", min=0, max=65535, help="REST API port (0: any)")
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Set up a node home: node and user keys, config, API token, trust with you as root.

    Running it again creates only what is missing. Keys are sealed with a passphrase from
    DMS_PASSPHRASE or asked for on the terminal (twice).
    """
    from dms.node.setup import ask_passphrase, init_home

    state: CLIState = ctx.obj
    settings: dict[str, object] = {}
    if listen:
        settings["network.listen"] = list(listen)
    if bootstrap:
        settings["network.bootstrap"] = list(bootstrap)
    if api_port is not None:
        settings["api.port"] = api_port
    home = state.home
    needs_key = not all((home.keys_dir / f"{n}.key").exists() for n in ("node", "user"))
    passphrase = None if no_passphrase or not needs_key else ask_passphrase()
    if not needs_key and not no_passphrase:
        passphrase = ""  # keys exist: nothing is sealed this time
    result = init_home(home, passphrase=passphrase, settings=settings)
    if json:
        emit_json(result)
        return
    if result.created:
        out().print(f"[green]initialised[/] {result.home}: created {', '.join(result.created)}")
    else:
        out().print(f"{result.home} was already initialised; nothing changed")
    fields(
        [
            ("node DID", result.node_did),
            ("user DID", result.user_did),
            ("config", result.config_file),
            ("trust", f"{result.trust_file} (root: the user DID)"),
            ("API token", result.api_token_file),
            ("keys", "protected by a passphrase" if result.protected else "UNPROTECTED"),
        ]
    )
    note(f"next: dms --home {result.home} run")
