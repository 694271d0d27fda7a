"""``dms devstack --nodes N``: N real nodes on 127.0.0.1; ``--deploy FILE`` runs one deployment."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dms.cli.output import emit_json, err, note, out

if TYPE_CHECKING:
    from dms.devstack import Devstack


def devstack(
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=1, max=64, help="How many nodes")] = 3,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where the homes go (default: a new temporary folder)"),
    ] = None,
    deploy: Annotated[
        Path | None,
        typer.Option(
            "--deploy",
            help="Deploy this ensemble from node1, wait, print its output and placement, stop.",
        ),
    ] = None,
    cpu: Annotated[str, typer.Option("--cpu", help="Cores each node onboards")] = "1",
    ram: Annotated[
        str, typer.Option("--ram", help="RAM each node onboards (default: the least allowed)")
    ] = "",
    disk: Annotated[str, typer.Option("--disk", help="Disk each node onboards")] = "1GiB",
    no_onboard: Annotated[
        bool, typer.Option("--no-onboard", help="Start the nodes without onboarding them")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the nodes as JSON.")] = False,
) -> None:
    """Start N real nodes on 127.0.0.1 with separate homes, connected and onboarded.

    Node 1 is every other node's bootstrap peer; every node trusts every devstack key. Prints
    how to reach each node, then waits: Ctrl-C stops them all.
    """
    import signal
    import tempfile
    import time

    import trio

    from dms.devstack import Devstack, Share

    if deploy is not None and not deploy.is_file():
        from dms.errors import InputError

        raise InputError("--deploy", str(deploy), "an ensemble file that exists")
    root = directory or Path(tempfile.mkdtemp(prefix="dms-devstack-"))
    share = None if no_onboard else Share(cpu=cpu, ram=ram, disk=disk)
    stack = Devstack(root, nodes, share=share)
    outcome: list[int] = [0]

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            started = time.monotonic()
            if not json:
                err().print(f"starting {nodes} node(s) in {root} ...")
            async with stack:
                took = time.monotonic() - started
                if json:
                    emit_json({"root": str(root), "nodes": stack.nodes})
                else:
                    _print_nodes(stack, took)
                if deploy is not None:
                    outcome[0] = await trio.to_thread.run_sync(_run_deployment, stack, deploy)
                    err().print("stopping the devstack ...")
                    return
                if not json:
                    note("Ctrl-C stops every node")
                async for _ in signals:
                    break
                err().print("stopping the devstack ...")

    trio.run(main)
    if outcome[0]:
        raise typer.Exit(outcome[0])


def _print_nodes(stack: Devstack, took: float) -> None:
    out().print(f"[green]{len(stack.nodes)} node(s) up[/] in {took:.1f} s")
    for index, node in enumerate(stack.nodes):
        roles = ", ".join(
            role for role, on in (("bootstrap", index == 0), ("provider", node.provider)) if on
        )
        out().print(f"  [bold]{node.name}[/] ({roles or 'node'})  API {node.api_url}")
        out().print(f"         peer {node.peer_id}")
        out().print(f"         home {node.home}")
    first = stack.nodes[0]
    note(f"try: dms --home {first.home} status    (or: export DMS_HOME={first.home})")
    note(f"logs: {Path(first.log_file).parent.parent.parent}/node*/logs/node.log")


def _run_deployment(stack: Devstack, file: Path) -> int:
    """Deploy from node1, follow it, print the output and the explanation; the exit code."""
    import time

    from dms.api.client import Client
    from dms.cli.deploy_cmd import _follow, _outcome, _services_only, print_explanation
    from dms.jobs.status import DeploymentStatus
    from dms.node.setup import read_api_token

    first = stack.nodes[0]
    home = stack.homes[0]
    names = {node.did: node.name for node in stack.nodes}
    out().print(f"\ndeploying [bold]{file}[/] from node1")
    with Client(first.api_url, read_api_token(home)) as client:
        started = time.monotonic()
        summary = client.deploy_file(file, timeout_ns=60 * 10**9)
        info = _follow(
            client,
            summary.deployment_id,
            60 * 10**9,
            _services_only(file),
            quiet=False,
            names=names,
        )
        _outcome(info)
        out().print(f"[dim](deployed and finished in {time.monotonic() - started:.2f} s)[/]")
        for allocation in info.allocations:
            chunk = client.logs(summary.deployment_id, allocation=allocation.allocation_id)
            out().rule(f"output of {allocation.name}")
            out().print(chunk.data.decode(errors="replace").rstrip(), markup=False)
        out().rule("placement")
        print_explanation(client.explain(summary.deployment_id), names)
    return 0 if info.summary.status is DeploymentStatus.COMPLETED else 1
