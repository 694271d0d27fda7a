"""``dms deploy FILE`` and ``dms deployments list|show|logs|results|explain|cancel|prune``."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dms.cli.output import emit_json, err, fields, note, out, table
from dms.cli.state import CLIState

if TYPE_CHECKING:
    from dms.api.client import Client
    from dms.orchestrator.messages import DeploymentInfo, Explanation

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
IdArgument = Annotated[str, typer.Argument(help="Deployment id (dms deployments list).")]
POLL_S = 0.5


def _duration(text: str, field: str) -> int:
    from dms.types.units import parse_duration

    return parse_duration(text, field)


def deploy(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Ensemble file (YAML, version: V1).")],
    timeout: Annotated[
        str, typer.Option("--timeout", help="Placement deadline: 30s, 5m, 1h.")
    ] = "5m",
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow it until it completes, fails or runs.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Deploy an ensemble: validated here, sent with the files it names to this node.

    With --wait: live progress (status changes, allocations placed), then the outcome and
    the command that prints the logs. Exit code 1 when the deployment failed.
    """
    timeout_ns = _duration(timeout, "--timeout")
    if timeout_ns <= 0:
        from dms.errors import InputError

        raise InputError("--timeout", timeout, "a duration above 0 (e.g. 30s, 5m)")
    state: CLIState = ctx.obj
    with state.client() as client:
        summary = client.deploy_file(file, timeout_ns=timeout_ns)
        if not wait:
            if json:
                emit_json(summary)
                return
            out().print(f"deployment [bold]{summary.deployment_id}[/] created ({summary.status})")
            note(f"follow it: dms deployments show {summary.deployment_id}")
            return
        services_only = _services_only(file)
        info = _follow(client, summary.deployment_id, timeout_ns, services_only, quiet=json)
    if json:
        emit_json(info)
    else:
        _outcome(info)
    from dms.jobs.status import DeploymentStatus

    if info.summary.status is DeploymentStatus.FAILED:
        raise typer.Exit(1)


def _services_only(file: Path) -> bool:
    from dms.jobs import load_ensemble
    from dms.types import JobType

    ensemble = load_ensemble(file)
    return all(a.type is JobType.SERVICE for a in ensemble.allocations.values())


def _follow(
    client: Client,
    deployment_id: str,
    timeout_ns: int,
    services_only: bool,
    *,
    quiet: bool,
    names: Mapping[str, str] | None = None,
) -> DeploymentInfo:
    """Poll the deployment until it is final (or Running, for services), printing changes."""
    from rich.status import Status

    from dms.jobs.status import DeploymentStatus

    started = time.monotonic()
    limit = started + timeout_ns / 1e9 + 30
    status = None
    seen_history = 0
    seen_allocations: dict[str, tuple[str, str]] = {}
    console = err()
    spinner = None if quiet else Status("deploying", console=console)
    if spinner is not None:
        spinner.start()
    try:
        while True:
            info = client.deployment(deployment_id)
            summary = info.summary
            elapsed = time.monotonic() - started
            if not quiet:
                for change in info.history[seen_history:]:
                    reason = f" ({change.reason})" if change.reason else ""
                    console.print(f"  {elapsed:6.2f}s  [bold]{change.status}[/]{reason}")
                for allocation in info.allocations:
                    key = (allocation.status.value, allocation.provider)
                    if seen_allocations.get(allocation.allocation_id) == key:
                        continue
                    seen_allocations[allocation.allocation_id] = key
                    where = (
                        f" on {_short(allocation.provider, names)}" if allocation.provider else ""
                    )
                    code = (
                        f", exit {allocation.exit_code}" if allocation.exit_code is not None else ""
                    )
                    console.print(
                        f"  {elapsed:6.2f}s    allocation {allocation.name}: "
                        f"{allocation.status.value}{where}{code}"
                    )
            seen_history = len(info.history)
            if spinner is not None:
                spinner.update(f"{summary.status} ({elapsed:.1f} s)")
            if summary.status.final:
                return info
            if services_only and summary.status is DeploymentStatus.RUNNING:
                return info
            if time.monotonic() > limit:
                from dms.errors import DMSError

                raise DMSError(
                    f"deployment {deployment_id} is still {summary.status} after "
                    f"{elapsed:.0f} s; it carries on: dms deployments show {deployment_id}"
                )
            # Returns as soon as the status changes; allocations are looked at again meanwhile.
            status = summary.status
            client.deployment_status(deployment_id, since=status, wait_s=POLL_S)
    finally:
        if spinner is not None:
            spinner.stop()


def _short(did: str, names: Mapping[str, str] | None = None) -> str:
    """A DID cut short for tables, or the name it has (a devstack's node1, node2...)."""
    if names and did in names:
        return names[did]
    return did if len(did) <= 24 else f"{did[:16]}...{did[-6:]}"


def _outcome(info: DeploymentInfo) -> None:
    from dms.jobs.status import DeploymentStatus

    summary = info.summary
    took = (summary.updated_ns - summary.created_ns) / 1e9
    colour = {DeploymentStatus.COMPLETED: "green", DeploymentStatus.FAILED: "red"}.get(
        summary.status, "yellow"
    )
    reason = f": {summary.reason}" if summary.reason else ""
    out().print(
        f"deployment [bold]{summary.deployment_id}[/] [{colour}]{summary.status}[/]"
        f" after {took:.2f} s{reason}"
    )
    for allocation in info.allocations:
        said = f"exit code {allocation.exit_code}" if allocation.exit_code is not None else ""
        said = said or allocation.detail
        out().print(
            f"  {allocation.name}: {allocation.status.value}" + (f" ({said})" if said else "")
        )
    note(f"logs: dms deployments logs {summary.deployment_id}")
    note(f"why there: dms deployments explain {summary.deployment_id}")


# -- dms deployments ... -----------------------------------------------------------------------

app = typer.Typer(
    help="Deployments made from this node: list, show, logs, explain, cancel, prune.",
    no_args_is_help=True,
)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="Only these statuses (repeat): Running, Completed, ..."),
    ] = None,
    metadata: Annotated[
        list[str] | None,
        typer.Option("--metadata", help="Only those with this key=value in metadata (repeat)"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    json: JsonOption = False,
) -> None:
    """Deployments, newest first."""
    from dms.errors import InputError
    from dms.jobs.status import DeploymentStatus

    statuses = []
    for text in status or ():
        match = next((s for s in DeploymentStatus if s.value.lower() == text.lower()), None)
        if match is None:
            accepted = ", ".join(s.value for s in DeploymentStatus)
            raise InputError("--status", text, f"one of {accepted}")
        statuses.append(match)
    wanted: dict[str, str] = {}
    for item in metadata or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError("--metadata", item, "key=value (e.g. team=infra)")
        wanted[key] = value
    state: CLIState = ctx.obj
    with state.client() as client:
        page = client.deployments(status=statuses, offset=offset, limit=limit, metadata=wanted)
    if json:
        emit_json(page)
        return
    if not page.items:
        note("no deployments")
        return
    table(
        ("deployment", "name", "status", "allocations", "created", "reason"),
        [
            (
                d.deployment_id,
                d.name or "-",
                d.status.value,
                d.allocations,
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.created_ns / 1e9)),
                d.reason,
            )
            for d in page.items
        ],
    )
    shown = offset + len(page.items)
    if page.next_offset is not None:
        note(f"{shown} of {page.total}; next: --offset {page.next_offset}")


@app.command("show")
def show(ctx: typer.Context, deployment_id: IdArgument, json: JsonOption = False) -> None:
    """A deployment: status, allocations, history."""
    state: CLIState = ctx.obj
    with state.client() as client:
        info = client.deployment(deployment_id)
    if json:
        emit_json(info)
        return
    summary = info.summary
    fields(
        [
            ("deployment", summary.deployment_id),
            ("name", summary.name or "-"),
            ("status", summary.status.value + (f" ({summary.reason})" if summary.reason else "")),
        ]
    )
    if info.allocations:
        table(
            ("allocation", "node", "status", "exit", "restarts", "provider"),
            [
                (
                    a.name,
                    a.node,
                    a.status.value,
                    "-" if a.exit_code is None else a.exit_code,
                    a.restarts,
                    _short(a.provider) or "-",
                )
                for a in info.allocations
            ],
        )
    first = info.history[0].time_ns if info.history else 0
    for change in info.history:
        reason = f"  {change.reason}" if change.reason else ""
        out().print(f"  +{(change.time_ns - first) / 1e9:7.2f}s  {change.status}{reason}")


@app.command("logs")
def logs(
    ctx: typer.Context,
    deployment_id: IdArgument,
    allocation: Annotated[
        str, typer.Option("--allocation", help="Allocation name or id (needed when several).")
    ] = "",
    stderr: Annotated[bool, typer.Option("--stderr", help="Print stderr, not stdout.")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the allocation ends.")
    ] = False,
    json: Annotated[
        bool, typer.Option("--json", help="Print one JSON line per chunk (text, offsets, eof).")
    ] = False,
) -> None:
    """An allocation's output, as it wrote it."""
    from dms.jobs.protocol import LogStreamName

    stream = LogStreamName.STDERR if stderr else LogStreamName.STDOUT
    state: CLIState = ctx.obj
    offset = 0
    with state.client() as client:
        while True:
            chunk = client.logs(deployment_id, allocation=allocation, stream=stream, offset=offset)
            if json:
                emit_json(
                    {
                        "stream": chunk.stream,
                        "offset": chunk.offset,
                        "text": chunk.data.decode(errors="replace"),
                        "next_offset": chunk.next_offset,
                        "eof": chunk.eof,
                    }
                )
            elif chunk.data:
                sys.stdout.buffer.write(chunk.data)
                sys.stdout.flush()
            offset = chunk.next_offset
            if chunk.eof or (not follow and not chunk.data):
                return
            if not chunk.data:
                time.sleep(0.5)


@app.command("results")
def results(
    ctx: typer.Context,
    deployment_id: IdArgument,
    path: Annotated[
        str, typer.Argument(help="A result file to fetch; without it, list the result files.")
    ] = "",
    allocation: Annotated[
        str, typer.Option("--allocation", help="Allocation name or id (needed when several).")
    ] = "",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the file here (default: stdout).")
    ] = None,
    json: JsonOption = False,
) -> None:
    """List an allocation's result files, or fetch one whole (in chunks)."""
    state: CLIState = ctx.obj
    with state.client() as client:
        if not path:
            listing = client.results(deployment_id, allocation=allocation).files
            files = listing.files if listing is not None else ()
            if json:
                emit_json({"files": files})
                return
            if not files:
                note("no result files")
                return
            table(["file", "bytes"], [[f.path, str(f.size)] for f in files])
            return
        sink = output.open("wb") if output is not None else sys.stdout.buffer
        try:
            offset = 0
            while True:
                chunk = client.results(
                    deployment_id, allocation=allocation, path=path, offset=offset
                ).chunk
                if chunk is None:
                    break
                sink.write(chunk.data)
                offset = chunk.next_offset
                if chunk.eof or not chunk.data:
                    break
        finally:
            if output is not None:
                sink.close()
            else:
                sink.flush()
    if output is not None and not json:
        note(f"{path}: {offset} bytes written to {output}")


@app.command("explain")
def explain(ctx: typer.Context, deployment_id: IdArgument, json: JsonOption = False) -> None:
    """Why a deployment is placed where it is, or what it waits for."""
    state: CLIState = ctx.obj
    with state.client() as client:
        explanation = client.explain(deployment_id)
    if json:
        emit_json(explanation)
        return
    print_explanation(explanation)


def print_explanation(explanation: Explanation, names: Mapping[str, str] | None = None) -> None:
    out().print(
        f"deployment [bold]{explanation.deployment_id}[/] {explanation.status}"
        f" after {explanation.attempts} attempt(s)"
    )
    if explanation.pending:
        out().print(f"  [yellow]waiting[/]: {explanation.pending}")
    for node in explanation.nodes:
        chosen = ", ".join(_short(c, names) for c in node.chosen) or "nobody yet"
        rows = []
        for candidate in node.candidates:
            if candidate.filtered_by:
                verdict = f"filtered by {candidate.filtered_by}: {candidate.reason}"
            else:
                parts = ", ".join(f"{s.ranker} {s.score:.2f}" for s in candidate.scores)
                total = "-" if candidate.total is None else f"{candidate.total:.2f}"
                verdict = f"score {total} ({parts})" if parts else f"score {total}"
            rows.append(
                ("*" if candidate.chosen else "", _short(candidate.provider, names), verdict)
            )
        table(("", "provider", "verdict"), rows, title=f"node {node.node}: on {chosen}")


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    deployment_id: IdArgument,
    reason: Annotated[str, typer.Option("--reason")] = "cancelled by the user",
    json: JsonOption = False,
) -> None:
    """Shut a deployment down (its allocations are stopped)."""
    state: CLIState = ctx.obj
    with state.client() as client:
        summary = client.cancel(deployment_id, reason)
    if json:
        emit_json(summary)
        return
    out().print(f"deployment [bold]{summary.deployment_id}[/]: {summary.status}")


@app.command("prune")
def prune(
    ctx: typer.Context,
    older_than: Annotated[
        str, typer.Option("--older-than", help="Only those finished this long ago: 1h, 7d")
    ] = "0s",
    json: JsonOption = False,
) -> None:
    """Forget finished deployments (Completed or Failed)."""
    age = _duration(older_than, "--older-than")
    before_ns = time.time_ns() - age if age > 0 else 0
    state: CLIState = ctx.obj
    with state.client() as client:
        result = client.prune(before_ns=before_ns)
    if json:
        emit_json(result)
        return
    out().print(f"pruned {len(result.removed)} deployment(s)")
