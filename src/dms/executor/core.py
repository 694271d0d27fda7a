"""What every executor shares: records, the status machine, state files, logs, cancel, cleanup.

A concrete executor implements one hook, :meth:`ExecutorBase._run`: launch the workload, call
``started(...)`` once it runs, wait for its end and return an :class:`Outcome`. The helper
:meth:`ExecutorBase._until_done` waits for the end while enforcing the request's timeout and
``cancel``. Crash recovery adds :meth:`ExecutorBase._reap` (kill what an earlier node process
left running, from its state file) and :meth:`ExecutorBase._sweep` (stray resources).

Each execution task runs shielded from outside cancellation: it always ends by stopping its
workload and recording a result. Leaving ``async with executor:`` cancels every execution still
running and waits for them.

On disk, with a work folder, each execution owns ``<work>/<id>/``: ``state.json`` (the
:class:`ExecutionInfo`, rewritten atomically at each change, with the result at the end),
``stdout.log``, ``stderr.log`` and whatever the executor needs (``stdin``, ``work/``).
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import math
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, TypeVar

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from dms.errors import DMSError
from dms.executor.base import (
    CleanupReport,
    ExecutionInfo,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    Handles,
    LogChunk,
    LogStream,
    Reason,
    ResourceUsage,
)
from dms.executor.errors import (
    DuplicateExecution,
    ExecutionRunning,
    ExecutorUnavailable,
    InvalidRequest,
    InvalidTransition,
    StartFailed,
    UnknownExecution,
)
from dms.executor.output import READ_CHUNK, FileSink, MemorySink, Sink
from dms.log import get_logger
from dms.types.jobs import ExecutorType
from dms.types.units import seconds

T = TypeVar("T")

STATE_FILE = "state.json"
NO_USAGE = ResourceUsage()
FOLLOW_POLL_S = 0.05
"""How often ``logs(follow=True)`` looks for new output while the execution runs."""


def _check_folders(request: ExecutionRequest) -> None:
    if request.input_dir and not Path(request.input_dir).is_dir():
        raise InvalidRequest("input_dir", request.input_dir, "an existing folder")
    if request.output_dir:
        try:
            Path(request.output_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidRequest(
                "output_dir",
                request.output_dir,
                "a folder that exists or can be created",
                detail=f"cannot be created ({exc.strerror})",
            ) from exc


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How a workload ended, as the executor saw it."""

    status: ExecutionStatus
    reason: Reason
    exit_code: int | None = None
    signal: int | None = None
    error: str = ""
    killed: bool = False
    usage: ResourceUsage = ResourceUsage()

    @classmethod
    def exited(cls, code: int, usage: ResourceUsage = NO_USAGE) -> Outcome:
        status = ExecutionStatus.SUCCEEDED if code == 0 else ExecutionStatus.FAILED
        error = "" if code == 0 else f"exited with code {code}"
        return cls(status=status, reason=Reason.EXITED, exit_code=code, error=error, usage=usage)

    @classmethod
    def stopped(
        cls,
        reason: Reason,
        timeout_ns: int = 0,
        usage: ResourceUsage = NO_USAGE,
        **extra: Any,
    ) -> Outcome:
        """Stopped by dms: a timeout or a cancel."""
        if reason is Reason.TIMEOUT:
            text = f"timed out after {seconds(timeout_ns):g}s"
            return cls(
                status=ExecutionStatus.TIMED_OUT,
                reason=reason,
                error=text,
                killed=True,
                usage=usage,
                **extra,
            )
        return cls(
            status=ExecutionStatus.CANCELLED,
            reason=Reason.CANCELLED,
            error="cancelled",
            killed=True,
            usage=usage,
            **extra,
        )

    @classmethod
    def failed(cls, reason: Reason, error: str, **extra: Any) -> Outcome:
        return cls(status=ExecutionStatus.FAILED, reason=reason, error=error, **extra)


class Started(Protocol):
    def __call__(
        self,
        *,
        handles: Handles | None = ...,
        sandboxed: bool = ...,
        warnings: tuple[str, ...] = ...,
    ) -> None: ...


class Execution:
    """The executor's mutable record of one execution (never handed out: see ``info()``)."""

    def __init__(
        self,
        *,
        execution_id: str,
        kind: ExecutorType,
        request: ExecutionRequest | None,
        folder: Path | None,
        stdout: Sink,
        stderr: Sink,
        created_at: int,
    ) -> None:
        self.id = execution_id
        self.kind = kind
        self.request = request
        self.folder = folder
        self.stdout = stdout
        self.stderr = stderr
        self.created_at = created_at
        self.status = ExecutionStatus.PENDING
        self.started_at = 0
        self.started_clock = 0.0
        self.handles = Handles()
        self.sandboxed = False
        self.warnings: tuple[str, ...] = ()
        self.result: ExecutionResult | None = None
        self.done = anyio.Event()
        self.cancel_requested = anyio.Event()

    def transition(self, new: ExecutionStatus) -> None:
        if not self.status.can_become(new):
            raise InvalidTransition(self.id, self.status, new)
        self.status = new

    def info(self) -> ExecutionInfo:
        return ExecutionInfo(
            id=self.id,
            executor=self.kind,
            status=self.status,
            created_at=self.created_at,
            started_at=self.started_at,
            handles=self.handles,
            sandboxed=self.sandboxed,
            warnings=self.warnings,
            result=self.result,
        )

    def sink(self, stream: LogStream) -> Sink:
        return self.stdout if stream is LogStream.STDOUT else self.stderr


class ExecutorBase(abc.ABC):
    """Implements the :class:`~dms.executor.base.Executor` protocol around one hook."""

    kind: ClassVar[ExecutorType]
    needs_work_dir: ClassVar[bool] = True

    def __init__(self, work_dir: Path | str | None) -> None:
        if work_dir is None and self.needs_work_dir:
            raise InvalidRequest(
                "work_dir", None, f"a folder for the {self.kind.value} executor's executions"
            )
        self.work_dir = Path(work_dir).absolute() if work_dir is not None else None
        self.work_label = hashlib.sha256(str(self.work_dir).encode()).hexdigest()[:12]
        """Tells this executor's cgroups and containers from other nodes' on the machine."""
        self._executions: dict[str, Execution] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._closed = False
        self._log = get_logger(component="executor", executor=self.kind.value)

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._stack is not None or self._closed:
            raise ExecutorUnavailable(self.kind.value, "an executor is entered once")
        if self.work_dir is not None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            await self._open(stack)
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._closed = True
        for execution in self._executions.values():
            if not execution.status.terminal:
                execution.cancel_requested.set()
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)
        self._tg = None

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        """Acquire what the executor needs while entered (a client, a worker pool)."""
        return None

    def _task_group(self) -> TaskGroup:
        if self._tg is None:
            state = "stopped" if self._closed else "not started"
            raise ExecutorUnavailable(
                self.kind.value, f"executor is {state}; use it inside `async with executor:`"
            )
        return self._tg

    # --- the protocol ----------------------------------------------------------------------

    async def start(self, request: ExecutionRequest) -> ExecutionInfo:
        task_group = self._task_group()
        if request.executor is not self.kind:
            raise InvalidRequest(
                "program",
                request.executor.value,
                f"a {self.kind.value} program for the {self.kind.value} executor",
            )
        self._check(request)
        _check_folders(request)
        if request.id in self._executions:
            raise DuplicateExecution(request.id)
        execution = self._new_execution(request)
        self._executions[request.id] = execution
        self._save(execution)
        info: ExecutionInfo = await task_group.start(self._supervise, execution)
        return info

    async def wait(self, execution_id: str) -> ExecutionResult:
        execution = self._get(execution_id)
        await execution.done.wait()
        assert execution.result is not None
        return execution.result

    async def cancel(self, execution_id: str) -> ExecutionResult:
        execution = self._get(execution_id)
        if not execution.done.is_set():
            execution.cancel_requested.set()
            await execution.done.wait()
        assert execution.result is not None
        return execution.result

    async def logs(self, execution_id: str, *, follow: bool = False) -> AsyncIterator[LogChunk]:
        execution = self._get(execution_id)
        offsets = dict.fromkeys(LogStream, 0)
        while True:
            finished = execution.done.is_set()
            progressed = False
            for stream in LogStream:
                sink = execution.sink(stream)
                while data := sink.read(offsets[stream], READ_CHUNK):
                    offsets[stream] += len(data)
                    progressed = True
                    yield LogChunk(stream, data)
            if not follow or finished:
                return
            if not progressed:
                with anyio.move_on_after(FOLLOW_POLL_S):
                    await execution.done.wait()

    def status(self, execution_id: str) -> ExecutionInfo:
        return self._get(execution_id).info()

    def list(self) -> tuple[ExecutionInfo, ...]:
        return tuple(execution.info() for execution in self._executions.values())

    def is_alive(self, execution_id: str) -> bool:
        execution = self._executions.get(execution_id)
        return execution is not None and not execution.status.terminal

    async def remove(self, execution_id: str) -> None:
        execution = self._get(execution_id)
        if not execution.status.terminal:
            raise ExecutionRunning(execution_id, "remove it")
        del self._executions[execution_id]
        if execution.folder is not None:
            await anyio.to_thread.run_sync(
                lambda: shutil.rmtree(execution.folder, ignore_errors=True)  # type: ignore[arg-type]
            )

    async def cleanup(self) -> CleanupReport:
        if self.work_dir is None or not self.work_dir.is_dir():
            return CleanupReport(removed=await self._sweep())
        lost: list[str] = []
        killed: list[str] = []
        for folder in sorted(self.work_dir.iterdir()):
            info = self._load_state(folder)
            if info is None or info.id in self._executions:
                continue
            execution = self._restore(info, folder)
            if not info.status.terminal:
                was_alive = await self._reap(info)
                if was_alive:
                    killed.append(info.id)
                lost.append(info.id)
                execution.status = ExecutionStatus.LOST
                execution.result = self._result(
                    execution,
                    Outcome(
                        status=ExecutionStatus.LOST,
                        reason=Reason.LOST,
                        error="the node stopped while this execution ran",
                        killed=was_alive,
                    ),
                )
                self._save(execution)
                self._log.warning("execution lost", execution=info.id, killed_leftovers=was_alive)
            self._executions[info.id] = execution
        return CleanupReport(lost=tuple(lost), killed=tuple(killed), removed=await self._sweep())

    # --- hooks -----------------------------------------------------------------------------

    def _check(self, request: ExecutionRequest) -> None:
        """Refuse (InvalidRequest) what this executor cannot do."""
        return None

    @abc.abstractmethod
    async def _run(self, execution: Execution, started: Started) -> Outcome:
        """Launch, call ``started(...)`` once running, wait for the end, return the outcome.

        Raise StartFailed if the workload cannot be launched (before ``started``).
        """

    async def _reap(self, info: ExecutionInfo) -> bool:
        """Kill what an earlier node process left of this execution; True if anything was alive."""
        return False

    async def _sweep(self) -> tuple[str, ...]:
        """Remove stray resources of earlier node processes (e.g. labelled containers)."""
        return ()

    # --- helpers for executors -------------------------------------------------------------

    async def _until_done(
        self,
        execution: Execution,
        wait_end: Callable[[], Awaitable[T]],
        stop: Callable[[Reason], Awaitable[None]],
    ) -> tuple[T, Reason | None]:
        """Wait for ``wait_end()``; on timeout or cancel, call ``stop(reason)`` (once) first.

        Returns what ``wait_end`` returned and the reason dms stopped it (None if it ended).
        """
        stopped: list[Reason] = []
        assert execution.request is not None
        limit = execution.request.limits.timeout

        async def guard() -> None:
            with anyio.move_on_after(seconds(limit) if limit else math.inf) as scope:
                await execution.cancel_requested.wait()
            stopped.append(Reason.TIMEOUT if scope.cancelled_caught else Reason.CANCELLED)
            with anyio.CancelScope(shield=True):
                await stop(stopped[0])

        async with anyio.create_task_group() as tg:
            tg.start_soon(guard)
            value = await wait_end()
            tg.cancel_scope.cancel()
        return value, (stopped[0] if stopped else None)

    def _new_execution(self, request: ExecutionRequest) -> Execution:
        folder: Path | None = None
        stdout: Sink
        stderr: Sink
        cap = request.limits.output
        if self.work_dir is not None:
            folder = self.work_dir / request.id
            try:
                folder.mkdir()
            except FileExistsError:
                raise DuplicateExecution(request.id) from None
            stdout = FileSink(folder / "stdout.log", cap)
            stderr = FileSink(folder / "stderr.log", cap)
        else:
            stdout, stderr = MemorySink(cap), MemorySink(cap)
        return Execution(
            execution_id=request.id,
            kind=self.kind,
            request=request,
            folder=folder,
            stdout=stdout,
            stderr=stderr,
            created_at=time.time_ns(),
        )

    def _save(self, execution: Execution) -> None:
        if execution.folder is None:
            return
        target = execution.folder / STATE_FILE
        temporary = target.with_suffix(".tmp")
        temporary.write_bytes(msgspec.json.encode(execution.info()))
        os.replace(temporary, target)

    def _load_state(self, folder: Path) -> ExecutionInfo | None:
        path = folder / STATE_FILE
        if not path.is_file():
            return None
        try:
            info = msgspec.json.decode(path.read_bytes(), type=ExecutionInfo)
        except (OSError, msgspec.DecodeError, DMSError) as exc:
            self._log.warning("unreadable execution state", path=str(path), error=str(exc))
            return None
        if info.executor is not self.kind or info.id != folder.name:
            self._log.warning("foreign execution state", path=str(path), executor=info.executor)
            return None
        return info

    def _restore(self, info: ExecutionInfo, folder: Path) -> Execution:
        result = info.result
        cap = max(result.stdout_bytes, result.stderr_bytes) if result else 0
        execution = Execution(
            execution_id=info.id,
            kind=self.kind,
            request=None,
            folder=folder,
            stdout=FileSink.existing(
                folder / "stdout.log", result.stdout_bytes if result else 0, cap
            ),
            stderr=FileSink.existing(
                folder / "stderr.log", result.stderr_bytes if result else 0, cap
            ),
            created_at=info.created_at,
        )
        execution.status = info.status
        execution.started_at = info.started_at
        execution.handles = info.handles
        execution.sandboxed = info.sandboxed
        execution.warnings = info.warnings
        execution.result = result
        execution.done.set()
        return execution

    def _get(self, execution_id: str) -> Execution:
        try:
            return self._executions[execution_id]
        except KeyError:
            raise UnknownExecution(execution_id) from None

    # --- the execution task ----------------------------------------------------------------

    async def _supervise(self, execution: Execution, *, task_status: TaskStatus[Any]) -> None:
        log = self._log.bind(execution=execution.id)
        announced = False

        def started(
            *,
            handles: Handles | None = None,
            sandboxed: bool = False,
            warnings: tuple[str, ...] = (),
        ) -> None:
            nonlocal announced
            execution.transition(ExecutionStatus.RUNNING)
            execution.started_at = time.time_ns()
            execution.started_clock = anyio.current_time()
            execution.handles = handles or execution.handles
            execution.sandboxed = sandboxed
            execution.warnings = warnings
            self._save(execution)
            announced = True
            log.debug("execution started", sandboxed=sandboxed, warnings=warnings)
            task_status.started(execution.info())

        with anyio.CancelScope(shield=True):
            try:
                outcome = await self._run(execution, started)
            except StartFailed as exc:
                outcome = Outcome.failed(Reason.START_FAILED, exc.reason)
                if not announced:
                    self._finish(execution, outcome, log)
                    raise
            except Exception as exc:
                log.exception("executor failed while supervising")
                outcome = Outcome.failed(Reason.ERROR, f"{type(exc).__name__}: {exc}")
                if not announced:
                    self._finish(execution, outcome, log)
                    raise StartFailed(execution.id, outcome.error) from exc
            if not announced:
                started()
            self._finish(execution, outcome, log)

    def _finish(self, execution: Execution, outcome: Outcome, log: Any) -> None:
        execution.stdout.close()
        execution.stderr.close()
        execution.transition(outcome.status)
        execution.result = self._result(execution, outcome)
        self._save(execution)
        execution.done.set()
        log.info(
            "execution finished",
            status=outcome.status.value,
            reason=outcome.reason.value,
            exit_code=outcome.exit_code,
            error=outcome.error or None,
        )

    def _result(self, execution: Execution, outcome: Outcome) -> ExecutionResult:
        started = execution.started_clock
        duration = int((anyio.current_time() - started) * 1e9) if execution.started_at else 0
        return ExecutionResult(
            id=execution.id,
            executor=self.kind,
            status=outcome.status,
            reason=outcome.reason,
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            error=outcome.error,
            killed=outcome.killed,
            stdout_path=execution.stdout.path,
            stderr_path=execution.stderr.path,
            stdout_bytes=execution.stdout.written,
            stderr_bytes=execution.stderr.written,
            stdout_truncated=execution.stdout.truncated,
            stderr_truncated=execution.stderr.truncated,
            started_at=execution.started_at,
            finished_at=time.time_ns(),
            duration=max(0, duration) if execution.request is not None else 0,
            usage=outcome.usage,
            warnings=execution.warnings,
        )
