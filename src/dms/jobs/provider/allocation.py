"""The Allocation actor: one per allocation, runs its workload and answers for it.

It is created PENDING by ``/dms/deployment/allocate`` and waits for ``/dms/allocation/start``
(the orchestrator starts allocations in ``depends_on`` order). Its statuses follow
:class:`dms.jobs.status.AllocationStatus`; every change goes to the orchestrator as an
``AllocationEvent`` with a growing sequence number, through one ordered outbox; events emitted
within ``EVENT_LINGER_S`` of each other (starting, then running a moment later) travel in one
``AllocationEvents`` message. The final event carries the exit code and the last 4 KiB of
stdout and stderr. Liveness, in every status until the final one, comes from the provider's
heartbeat, one message per orchestrator node naming every allocation it runs for that node
(:meth:`Allocation.liveness`).

Job types, as this provider runs them (see :mod:`dms.jobs.provider.lifecycle`): a task (and
each replica of a batch) runs once; a service is restarted per its ``failure_recovery`` and
health check; a recurring job runs every ``schedule.every``, ``times`` runs (0: until stopped).

Its tasks (the life of the workload, the event outbox) belong to a task group that wraps the
actor cell (:func:`allocation_child`), so nothing outlives it. When it ends, for any reason,
the workload is stopped and the provider told (it releases the slot's resources once the last
allocation of the slot has ended). Afterwards it lingers for ``retention_s`` so that logs and
result files can still be fetched, then stops.
"""

from __future__ import annotations

import contextlib
import functools
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

from dms.actor import (
    Actor,
    ActorCell,
    ActorSystem,
    ChildContext,
    ChildSpec,
    Empty,
    Envelope,
    Handle,
    Restart,
    behavior,
)
from dms.clock import Clock
from dms.errors import DMSError
from dms.executor import ExecutionResult, Executor, ExecutorRegistry, LogStream
from dms.jobs.protocol import (
    ALLOCATION_EVENT,
    ALLOCATION_LOGS,
    ALLOCATION_RESTART,
    ALLOCATION_RESULT_CHUNK,
    ALLOCATION_RESULTS,
    ALLOCATION_START,
    ALLOCATION_STATUS,
    ALLOCATION_STOP,
    MAX_EVENTS,
    AllocationEvent,
    AllocationEvents,
    AllocationManifest,
    AllocationState,
    EventKind,
    Liveness,
    LogsChunk,
    LogsRequest,
    ResultChunk,
    ResultChunkRequest,
    ResultsList,
    StopRequest,
)
from dms.jobs.provider import lifecycle
from dms.jobs.provider.errors import AllocationEnded, BadRequest
from dms.jobs.provider.health import HealthProbe
from dms.jobs.provider.workspace import TAIL_BYTES, Workspace, check_window, read_chunk, read_tail
from dms.jobs.status import AllocationStatus, InvalidTransition
from dms.log import get_logger

NS_PER_S = 1_000_000_000
GRACE_S = 10.0
"""How long stopping a workload may take when the allocation is stopped."""
FLUSH_S = 5.0
EVENT_LINGER_S = 0.005
"""How long the outbox waits after an event for the next before sending them together."""
"""How long a stopping actor waits for its last events to go out."""
KEEP_RUNS = 10
"""Runs whose output is kept (a restarted service or a recurring job has many)."""


class Host(Protocol):
    """What an allocation needs from its provider."""

    async def allocation_ended(self, allocation: Allocation) -> None:
        """The allocation reached a final status (called once)."""
        ...

    def allocation_gone(self, allocation: Allocation) -> None:
        """The actor stopped for good."""
        ...


@dataclass(frozen=True, slots=True)
class Settings:
    executors: ExecutorRegistry
    clock: Clock
    heartbeat_interval_s: float = 5.0
    retention_s: float = 3600.0


def guarded(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A handler whose errors go back to an invoker, but never crash the actor when the
    message was sent (no reply expected): a peer must not stop an allocation with bad input."""

    @functools.wraps(handler)
    async def run(self: Allocation, message: Any, envelope: Envelope) -> Any:
        try:
            return await handler(self, message, envelope)
        except DMSError as exc:
            if envelope.reply_to:
                raise
            self.log.info("refused a sent message", behavior=envelope.behavior, error=str(exc))
            return None

    return run


class Allocation(Actor):
    """One allocation on this provider (see the module docstring)."""

    def __init__(
        self,
        manifest: AllocationManifest,
        *,
        deployment_id: str,
        slot_id: str,
        orchestrator: Handle,
        workspace: Workspace,
        gpus: tuple[str, ...],
        ports: Mapping[int, int],
        probe: HealthProbe | None,
        settings: Settings,
        host: Host,
        node: str = "",
    ) -> None:
        self.manifest = manifest
        self.allocation_id = manifest.allocation_id
        self.deployment_id = deployment_id
        self.slot_id = slot_id
        self.orchestrator = orchestrator
        self.workspace = workspace
        self.gpus = gpus
        self.ports = dict(ports)
        self.probe = probe
        self.settings = settings
        self.host = host
        self.log = get_logger(node=node, deployment=deployment_id, allocation=self.allocation_id)
        self.status = AllocationStatus.PENDING
        self.exit_code: int | None = None
        self.restarts = 0
        self.detail = ""
        self.runs: list[str] = []
        """Execution ids of the runs whose output is kept, oldest first."""
        self.first_run = 0
        """The run number of ``runs[0]``."""
        self.current: str | None = None
        """The execution now starting or running."""
        self.last_result: ExecutionResult | None = None
        self.stop_reason = ""
        self._sequence = 0
        self._outbox: deque[AllocationEvent] = deque()
        self._outbox_wake = anyio.Event()
        self._outbox_empty = anyio.Event()
        self._outbox_empty.set()
        self._go = anyio.Event()
        self._ended = anyio.Event()
        self._shutdown = anyio.Event()
        self.restart_requested = anyio.Event()
        self._work = anyio.CancelScope()
        self._tasks: TaskGroup | None = None
        self._finished = False
        self._tails: dict[tuple[str, LogStream], bytes] = {}
        """Output tails of runs whose executor keeps output in memory only."""

    # -- wiring --------------------------------------------------------------------------------

    @property
    def inbox(self) -> str:
        return inbox_of(self.allocation_id)

    @property
    def executor(self) -> Executor:
        return self.settings.executors.get(self.manifest.spec.executor)

    def attach(self, tasks: TaskGroup) -> None:
        self._tasks = tasks

    async def on_start(self) -> None:
        assert self._tasks is not None, "start an Allocation through allocation_child()"
        self._tasks.start_soon(self._send_events)
        self._tasks.start_soon(self._life)

    def request_shutdown(self) -> None:
        """The supervisor stops the actor (node shutdown): stop the workload first."""
        if not self.stop_reason:
            self.stop_reason = "the provider node is stopping"
        self._shutdown.set()
        self._go.set()
        self._work.cancel()

    # -- state ---------------------------------------------------------------------------------

    def state(self) -> AllocationState:
        return AllocationState(
            allocation_id=self.allocation_id,
            name=self.manifest.name,
            status=self.status,
            exit_code=self.exit_code,
            restarts=self.restarts,
            detail=self.detail,
            deployment_id=self.deployment_id,
            slot_id=self.slot_id,
            runs=self.first_run + len(self.runs),
        )

    def move(self, status: AllocationStatus, detail: str | None = None) -> None:
        """Change status (checked against the lifecycle) and tell the orchestrator."""
        self.status = self.status.check(status)
        if detail is not None:
            self.detail = detail
        self.log.info("allocation status", status=status.value, detail=self.detail or None)
        self.emit(EventKind.STATUS)

    def emit(self, kind: EventKind, *, tails: bool = False) -> None:
        stdout = stderr = ""
        if tails and self.last_result is not None:
            stdout = self._tail(self.last_result, LogStream.STDOUT)
            stderr = self._tail(self.last_result, LogStream.STDERR)
        self._sequence += 1
        self._outbox.append(
            AllocationEvent(
                deployment_id=self.deployment_id,
                allocation_id=self.allocation_id,
                name=self.manifest.name,
                slot_id=self.slot_id,
                kind=kind,
                status=self.status,
                sequence=self._sequence,
                time_ns=self.settings.clock.now_ns(),
                exit_code=self.exit_code,
                stdout_tail=stdout,
                stderr_tail=stderr,
                restarts=self.restarts,
                detail=self.detail,
            )
        )
        self._outbox_empty = anyio.Event()
        self._outbox_wake.set()

    def _tail(self, result: ExecutionResult, stream: LogStream) -> str:
        path = result.stdout_path if stream is LogStream.STDOUT else result.stderr_path
        data = read_tail(path) if path else self._tails.get((result.id, stream), b"")
        return data.decode("utf-8", errors="replace")

    async def finish(self, status: AllocationStatus, detail: str) -> None:
        """Reach a final status once: tell the provider (it releases), then the orchestrator."""
        if self._finished:
            return
        self._finished = True
        try:
            self.status = self.status.check(status)
        except InvalidTransition:
            self.log.error("unexpected final status", old=self.status.value, new=status.value)
            self.status = status
        self.detail = detail
        self.current = None
        self.log.info(
            "allocation ended", status=status.value, exit_code=self.exit_code, detail=detail
        )
        try:
            # Shielded: a stop arriving now must not cut the release short.
            with anyio.CancelScope(shield=True):
                await self.host.allocation_ended(self)
        finally:
            self.emit(EventKind.STATUS, tails=True)

    # -- the workload --------------------------------------------------------------------------

    async def _life(self) -> None:
        try:
            with self._work:
                await self._go.wait()
                if not self.status.final and not self.stop_reason:
                    try:
                        await lifecycle.run(self)
                    except DMSError as exc:  # the executor lost track of the workload
                        self.log.error("allocation failed", error=str(exc))
                        await self._stop_current()
                        await self.finish(AllocationStatus.FAILED, f"executor error: {exc}")
        finally:
            with anyio.CancelScope(shield=True):
                await self._wind_down()
            self._ended.set()
        with anyio.move_on_after(self.settings.retention_s):
            await self._shutdown.wait()
        with anyio.move_on_after(FLUSH_S):
            await self._outbox_empty.wait()
        await self._forget_runs()
        self.cell.request_stop()

    async def _stop_current(self) -> None:
        """Cancel the execution now starting or running, if any, and keep its result."""
        if self.current is not None:
            try:
                if self.executor.is_alive(self.current):
                    await self.capture(await self.executor.cancel(self.current))
            except DMSError as exc:
                self.log.warning("stopping the workload failed", error=str(exc))

    async def _wind_down(self) -> None:
        """Stop whatever still runs (for at most GRACE_S) and end in STOPPED (unless already
        final): the resources are given back even when the workload will not die."""
        with anyio.move_on_after(GRACE_S):
            await self._stop_current()
        if not self._finished:
            await self.finish(AllocationStatus.STOPPED, self.stop_reason or "stopped")

    async def capture(self, result: ExecutionResult) -> ExecutionResult:
        """Remember a run's result (exit code, and output tails for memory-only executors)."""
        self.last_result = result
        self.exit_code = result.exit_code
        if not result.stdout_path or not result.stderr_path:
            tails = {stream: b"" for stream in LogStream}
            async for chunk in self.executor.logs(result.id):
                tails[chunk.stream] = (tails[chunk.stream] + chunk.data)[-TAIL_BYTES:]
            for stream, data in tails.items():
                self._tails[(result.id, stream)] = data
        return result

    async def _forget_runs(self) -> None:
        for execution_id in self.runs:
            with contextlib.suppress(DMSError):
                await self.executor.remove(execution_id)

    def keep_run(self, execution_id: str) -> None:
        self.runs.append(execution_id)
        while len(self.runs) > KEEP_RUNS:
            self._tails.pop((self.runs[0], LogStream.STDOUT), None)
            self._tails.pop((self.runs[0], LogStream.STDERR), None)
            self.runs.pop(0)
            self.first_run += 1

    async def stop_workload(self, reason: str) -> AllocationState:
        """Stop the workload (if it has not ended) and wait until the allocation is final."""
        if not self._finished:
            if not self.stop_reason:
                self.stop_reason = reason
            self._go.set()
            self._work.cancel()
            await self._ended.wait()
        return self.state()

    # -- events --------------------------------------------------------------------------------

    async def _send_events(self) -> None:
        while True:
            if self._outbox:
                await self.settings.clock.sleep(EVENT_LINGER_S)
            while self._outbox:
                count = min(len(self._outbox), MAX_EVENTS)
                batch = tuple(self._outbox.popleft() for _ in range(count))
                try:
                    await self.send(
                        self.orchestrator, ALLOCATION_EVENT, AllocationEvents(events=batch)
                    )
                except DMSError as exc:
                    self.log.debug(
                        "events not delivered", sequence=batch[-1].sequence, error=str(exc)
                    )
            self._outbox_empty.set()
            self._outbox_wake = anyio.Event()
            await self._outbox_wake.wait()

    def liveness(self) -> Liveness | None:
        """What the provider's heartbeat says of this allocation; None once it is final
        (the final event said everything)."""
        if self._finished or self.status.final:
            return None
        return Liveness(
            deployment_id=self.deployment_id,
            allocation_id=self.allocation_id,
            status=self.status,
            sequence=self._sequence,
        )

    # -- behaviors -----------------------------------------------------------------------------

    @behavior(ALLOCATION_START, Empty, AllocationState)
    @guarded
    async def start(self, message: Empty, envelope: Envelope) -> AllocationState:
        if self.status is AllocationStatus.PENDING and not self.stop_reason:
            self.move(AllocationStatus.STARTING, "starting")
            self._go.set()
        return self.state()

    @behavior(ALLOCATION_STOP, StopRequest, AllocationState)
    @guarded
    async def stop_behavior(self, message: StopRequest, envelope: Envelope) -> AllocationState:
        return await self.stop_workload(message.reason or f"stopped by {envelope.sender.did}")

    @behavior(ALLOCATION_RESTART, Empty, AllocationState)
    @guarded
    async def restart(self, message: Empty, envelope: Envelope) -> AllocationState:
        if self.status.final or self._finished:
            raise AllocationEnded(self.allocation_id, self.status.value, "restart")
        if self.status is AllocationStatus.PENDING:
            raise AllocationEnded(self.allocation_id, "not started yet", "restart")
        if self.status is AllocationStatus.RUNNING:
            self.restart_requested.set()
        return self.state()

    @behavior(ALLOCATION_STATUS, Empty, AllocationState)
    @guarded
    async def status_behavior(self, message: Empty, envelope: Envelope) -> AllocationState:
        return self.state()

    @behavior(ALLOCATION_LOGS, LogsRequest, LogsChunk)
    @guarded
    async def logs(self, message: LogsRequest, envelope: Envelope) -> LogsChunk:
        limit = check_window(message.offset, message.limit)
        stream = LogStream(message.stream.value)
        total = self.first_run + len(self.runs)
        if not self.runs:
            return LogsChunk(
                stream=message.stream,
                offset=message.offset,
                data=b"",
                next_offset=message.offset,
                eof=self.status.final,
                run=max(0, total - 1),
            )
        run = message.run if message.run >= 0 else total + message.run
        if not self.first_run <= run < total:
            kept = f"{self.first_run}..{total - 1}"
            raise BadRequest("run", message.run, f"a kept run ({kept}), or -1 for the latest")
        execution_id = self.runs[run - self.first_run]
        info = self.executor.status(execution_id)
        finished = info.status.terminal
        result = info.result
        path = ""
        if finished and result is not None:
            path = result.stdout_path if stream is LogStream.STDOUT else result.stderr_path
        if path:
            data, size = await anyio.to_thread.run_sync(
                read_chunk, Path(path), message.offset, limit
            )
            more = message.offset + len(data) < size
        else:
            data, more = await self.collect(execution_id, stream, message.offset, limit)
        latest = run == total - 1
        eof = finished and not more and (self.status.final or not latest)
        return LogsChunk(
            stream=message.stream,
            offset=message.offset,
            data=data,
            next_offset=message.offset + len(data),
            eof=eof,
            run=run,
        )

    async def collect(
        self, execution_id: str, stream: LogStream, offset: int, limit: int
    ) -> tuple[bytes, bool]:
        """Bytes ``offset`` .. ``offset + limit`` of a stream read through the executor, and
        whether more follow now."""
        parts: list[bytes] = []
        seen = 0
        wanted = offset + limit
        more = False
        async for chunk in self.executor.logs(execution_id):
            if chunk.stream is not stream:
                continue
            start, end = seen, seen + len(chunk.data)
            seen = end
            if end > offset and start < wanted:
                parts.append(chunk.data[max(0, offset - start) : wanted - start])
            if end > wanted:
                more = True
                break
        return b"".join(parts), more

    @behavior(ALLOCATION_RESULTS, ResultChunkRequest, ResultsList)
    @guarded
    async def results(self, message: ResultChunkRequest, envelope: Envelope) -> ResultsList:
        files = await anyio.to_thread.run_sync(self.workspace.list_results, message.path)
        return ResultsList(files)

    @behavior(ALLOCATION_RESULT_CHUNK, ResultChunkRequest, ResultChunk)
    @guarded
    async def result_chunk(self, message: ResultChunkRequest, envelope: Envelope) -> ResultChunk:
        limit = check_window(message.offset, message.limit)
        path = self.workspace.result_path(message.path)
        data, size = await anyio.to_thread.run_sync(read_chunk, path, message.offset, limit)
        next_offset = message.offset + len(data)
        return ResultChunk(
            path=message.path,
            offset=message.offset,
            data=data,
            next_offset=next_offset,
            eof=next_offset >= size,
        )


def inbox_of(allocation_id: str) -> str:
    return f"alloc-{allocation_id}"


def allocation_child(system: ActorSystem, allocation: Allocation, shutdown_ns: int) -> ChildSpec:
    """A supervisor child running ``allocation``'s actor cell inside its own task group.

    Stopping the child asks the allocation to stop its workload first (it still sends its
    last event), then the cell stops. The child is temporary: an ended allocation is not
    started again.
    """
    inbox = allocation.inbox

    async def start(context: ChildContext) -> None:
        cell = ActorCell(system, allocation, inbox, system.keypair, system.mailbox_capacity)
        inner = ChildContext(context.started)
        context.on_stop(allocation.request_shutdown)
        try:
            async with anyio.create_task_group() as tasks:
                allocation.attach(tasks)
                await cell.run(inner)
                tasks.cancel_scope.cancel()
        finally:
            allocation.host.allocation_gone(allocation)

    return ChildSpec(id=inbox, start=start, restart=Restart.TEMPORARY, shutdown_ns=shutdown_ns)
