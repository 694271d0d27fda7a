"""``dms status``, ``dms onboard``, ``dms offboard``, ``dms resources``, ``dms allocations``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from dms.cli.output import emit_json, fields, note, out, table
from dms.cli.state import CLIState

if TYPE_CHECKING:
    from dms.types import Resources

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def status(ctx: typer.Context, json: JsonOption = False) -> None:
    """Who this node is: DID, peer id, addresses, version, onboarding, peers."""
    state: CLIState = ctx.obj
    with state.client() as client:
        node = client.status()
    if json:
        emit_json(node)
        return
    onboarded = "yes" + (" (draining)" if node.draining else "") if node.onboarded else "no"
    fields(
        [
            ("DID", node.did),
            ("peer id", node.peer_id),
            ("addresses", "\n".ljust(13).join(node.addresses) or "-"),
            ("version", node.version),
            ("onboarded", onboarded),
            ("peers", node.peers),
            ("allocations", node.allocations),
            ("executors", ", ".join(node.executors) or "-"),
            ("uptime", f"{node.uptime_s:.0f} s"),
            ("API", node.api_url or client.base_url),
        ]
    )


def onboard(
    ctx: typer.Context,
    cpu: Annotated[str, typer.Option("--cpu", help="Cores to offer (fractions allowed): 2, 1.5")],
    ram: Annotated[str, typer.Option("--ram", help="RAM to offer: 4GiB, 512MiB, 2GB")],
    disk: Annotated[str, typer.Option("--disk", help="Disk to offer: 10GiB")],
    gpu: Annotated[
        list[str] | None, typer.Option("--gpu", help="INDEX:VRAM per GPU (repeat): 0:8GiB")
    ] = None,
    price: Annotated[str, typer.Option("--price", help="Per hour: 0.5NTX")] = "",
    location: Annotated[str, typer.Option("--location", help="continent/country/city")] = "",
    json: JsonOption = False,
) -> None:
    """Offer a share of this machine as a compute provider (again: change the amounts)."""
    state: CLIState = ctx.obj
    with state.client() as client:
        result = client.onboard(
            cpu=cpu, ram=ram, disk=disk, gpus=gpu or (), price=price, location=location
        )
    if json:
        emit_json(result)
        return
    out().print(f"[green]onboarded[/]: {result.resources.onboarded.describe()}")


def offboard(
    ctx: typer.Context,
    force: Annotated[
        bool, typer.Option("--force", help="Stop running allocations first instead of refusing.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Stop offering resources."""
    state: CLIState = ctx.obj
    with state.client() as client:
        result = client.offboard(force=force)
    if json:
        emit_json(result)
        return
    out().print("[green]offboarded[/]")
    if result.stopped:
        out().print(f"  stopped: {', '.join(result.stopped)}")
    for problem in result.problems:
        out().print(f"  [yellow]problem[/]: {problem}")


def _row(name: str, resources: Resources) -> tuple[str, ...]:
    from dms.types.units import human_size

    gpus = ", ".join(f"{g.index}:{human_size(g.vram)}" for g in resources.gpus) or "-"
    return (
        name,
        f"{resources.cpu.cores:g}",
        human_size(resources.ram),
        human_size(resources.disk),
        gpus,
    )


def resources(ctx: typer.Context, json: JsonOption = False) -> None:
    """The machine, and what is onboarded, held, committed, allocated and free."""
    state: CLIState = ctx.obj
    with state.client() as client:
        view = client.resources()
    if json:
        emit_json(view)
        return
    table(
        ("pool", "cores", "RAM", "disk", "GPUs (index:VRAM)"),
        [
            _row("machine", view.machine),
            _row("onboarded", view.onboarded),
            _row("held (bids)", view.held),
            _row("committed", view.committed),
            _row("allocated", view.allocated),
            _row("free", view.free),
        ],
    )


allocations_app = typer.Typer(
    help="Allocations this node runs as a provider.", no_args_is_help=True
)


@allocations_app.command("list")
def allocations_list(ctx: typer.Context, json: JsonOption = False) -> None:
    """Allocations running (or finished) here."""
    state: CLIState = ctx.obj
    with state.client() as client:
        reply = client.allocations()
    if json:
        emit_json(reply)
        return
    if not reply.allocations:
        note("no allocations on this node")
        return
    table(
        ("allocation", "name", "status", "exit", "restarts", "detail"),
        [
            (
                a.allocation_id,
                a.name,
                a.status.value,
                "-" if a.exit_code is None else a.exit_code,
                a.restarts,
                a.detail,
            )
            for a in reply.allocations
        ],
    )
