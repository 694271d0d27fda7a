"""The null executor: scripted workloads that finish at once or after a (virtual) duration.

For tests and benchmarks of everything above the executors: a :class:`NullProgram` says how
long to "run", what to print and how to exit, or that starting fails. Without a work folder it
keeps output in memory and writes no files.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from dms.executor.base import ExecutionRequest, NullProgram, Reason
from dms.executor.core import Execution, ExecutorBase, Outcome, Started
from dms.executor.errors import InvalidRequest, StartFailed
from dms.types.jobs import ExecutorType
from dms.types.units import seconds


class NullExecutor(ExecutorBase):
    kind = ExecutorType.NULL
    needs_work_dir = False

    def __init__(self, work_dir: Path | str | None = None) -> None:
        super().__init__(work_dir)

    def _check(self, request: ExecutionRequest) -> None:
        if request.gpus:
            raise InvalidRequest("gpus", list(request.gpus), "no GPUs for the null executor")

    async def _run(self, execution: Execution, started: Started) -> Outcome:
        request = execution.request
        assert request is not None and isinstance(request.program, NullProgram)
        program = request.program
        if program.start_error:
            raise StartFailed(execution.id, program.start_error)
        started()
        execution.stdout.write(program.stdout)
        execution.stderr.write(program.stderr)
        stop = anyio.Event()

        async def run() -> None:
            with anyio.move_on_after(seconds(program.duration)):
                await stop.wait()

        async def interrupt(reason: Reason) -> None:
            stop.set()

        _, stopped = await self._until_done(execution, run, interrupt)
        if stopped is not None:
            return Outcome.stopped(stopped, request.limits.timeout)
        return Outcome.exited(program.exit_code)
