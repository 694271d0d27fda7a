"""``dms peers [list|self|ping|connect]``."""

from __future__ import annotations

from typing import Annotated

import typer

from dms.cli.output import emit_json, fields, note, out, table
from dms.cli.state import CLIState

app = typer.Typer(help="Peers: list (default), self, ping, connect.", invoke_without_command=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.callback()
def peers(ctx: typer.Context, json: JsonOption = False) -> None:
    """Peers connected now (``dms peers``), or a subcommand."""
    if ctx.invoked_subcommand is not None:
        return
    list_peers(ctx, json)


@app.command("list")
def list_peers(ctx: typer.Context, json: JsonOption = False) -> None:
    """Peers connected now."""
    state: CLIState = ctx.obj
    with state.client() as client:
        reply = client.peers()
    if json:
        emit_json(reply)
        return
    if not reply.peers:
        note("no peers connected")
        return
    table(
        ("peer id", "DID", "address", "rtt"),
        [
            (
                p.peer_id,
                p.did or "-",
                (p.addresses or ("-",))[0],
                "-" if p.rtt_ms is None else f"{p.rtt_ms:.1f} ms",
            )
            for p in reply.peers
        ],
    )


@app.command("self")
def self_(ctx: typer.Context, json: JsonOption = False) -> None:
    """This node's peer id, DID and addresses."""
    state: CLIState = ctx.obj
    with state.client() as client:
        reply = client.peer_self()
    if json:
        emit_json(reply)
        return
    fields([("peer id", reply.peer_id), ("DID", reply.did)])
    for address in reply.addresses:
        out().print(f"  {address}")


@app.command("ping")
def ping(
    ctx: typer.Context,
    peer: Annotated[str, typer.Argument(help="A peer id (12D3KooW...) or DID (did:key:...)")],
    json: JsonOption = False,
) -> None:
    """Round-trip time to a peer."""
    state: CLIState = ctx.obj
    with state.client() as client:
        reply = client.ping(peer)
    if json:
        emit_json(reply)
        return
    out().print(f"{reply.peer_id}: {reply.rtt_ms:.2f} ms")


@app.command("connect")
def connect(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="A multiaddr with the peer id: /ip4/.../p2p/<id>")],
    json: JsonOption = False,
) -> None:
    """Dial a peer."""
    state: CLIState = ctx.obj
    with state.client() as client:
        reply = client.connect(address)
    if json:
        emit_json(reply)
        return
    out().print(f"[green]connected[/] to {reply.peer_id}")
