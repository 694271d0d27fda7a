"""The runs of one allocation: start, watch, restart or end, by job type and failure recovery.

=========  ==========================================================================
task       runs once: exit 0 -> COMPLETED; otherwise FAILED, or restarted when its
batch      ``failure_recovery.policy`` is ``restart`` (each batch replica is a task here)
service    restarted whenever it ends (policy ``restart``, the default for services), also
           when its health check fails ``retries`` times in a row; past ``max_restarts``
           it is FAILED. With policy ``none`` or ``redeploy`` it ends at its first exit
           (the orchestrator redeploys elsewhere).
recurring  a run every ``schedule.every`` (fixed rate from the first start; a late run
           starts at once), ``times`` successful runs (0: until stopped); a failed run is
           retried per the policy, or ends the allocation FAILED
=========  ==========================================================================

Restarts wait ``backoff`` x 2^(n-1) (at most :data:`MAX_BACKOFF_NS`); a restart asked for
with ``/dms/allocation/restart`` does not wait and does not count against ``max_restarts``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import msgspec

from dms.errors import DMSError
from dms.executor import ExecutionResult, ExecutionStatus, Executor
from dms.jobs.provider.launch import build_request, execution_id
from dms.jobs.spec import RecoveryPolicy
from dms.jobs.status import AllocationStatus
from dms.types import JobType
from dms.types.units import format_duration, seconds

if TYPE_CHECKING:
    from dms.jobs.provider.allocation import Allocation

MAX_BACKOFF_NS = 5 * 60 * 10**9
S = AllocationStatus


class RunEnd(msgspec.Struct, frozen=True, kw_only=True):
    """How one run ended, as the lifecycle sees it."""

    result: ExecutionResult
    unhealthy: str = ""
    """Why the health check gave up on it ("" if it did not)."""
    restart_requested: bool = False


def backoff_ns(base_ns: int, restart: int) -> int:
    """The wait before restart number ``restart`` (1-based)."""
    return min(MAX_BACKOFF_NS, base_ns * (1 << max(0, restart - 1)))


def describe(result: ExecutionResult) -> str:
    if result.ok:
        return "exited with code 0"
    return result.error or f"{result.status.value} ({result.reason.value})"


async def run(alloc: Allocation) -> None:
    """Run the allocation until it reaches a final status (cancelled: the caller winds down)."""
    spec = alloc.manifest.spec
    recovery = spec.failure_recovery
    policy = spec.recovery_policy
    clock = alloc.settings.clock
    successes = 0
    first_start: int | None = None
    while True:
        if alloc.status is not S.STARTING:
            alloc.move(S.STARTING, "starting")
        number = alloc.first_run + len(alloc.runs)
        try:
            request = build_request(
                alloc.manifest,
                run=number,
                input_dir=alloc.workspace.input,
                output_dir=alloc.workspace.results,
                gpus=alloc.gpus,
            )
            executor = alloc.executor
            alloc.current = request.id
            await executor.start(request)
        except DMSError as exc:
            alloc.current = None
            await alloc.finish(S.FAILED, f"start failed: {exc}")
            return
        alloc.keep_run(request.id)
        if first_start is None:
            first_start = clock.monotonic_ns()
        alloc.move(S.RUNNING, f"run {number} running")
        end = await watch(alloc, executor, request.id)
        alloc.current = None
        result = end.result
        if end.restart_requested:
            alloc.restarts += 1
            alloc.move(S.RESTARTING, "restart requested")
            continue
        ok = result.ok and not end.unhealthy
        what = end.unhealthy or describe(result)
        if spec.type is JobType.RECURRING and ok:
            successes += 1
            times = spec.schedule.times if spec.schedule else 1
            if times and successes >= times:
                await alloc.finish(S.COMPLETED, f"{successes} run(s) completed")
                return
            every = int(spec.schedule.every) if spec.schedule else 0
            assert first_start is not None
            wait_ns = max(0, first_start + successes * every - clock.monotonic_ns())
            alloc.move(S.RESTARTING, f"run {number} completed; next in {format_duration(wait_ns)}")
            await clock.sleep(seconds(wait_ns))
            continue
        if ok and spec.type is not JobType.SERVICE:
            await alloc.finish(S.COMPLETED, what)
            return
        if policy is RecoveryPolicy.RESTART and alloc.restarts < recovery.max_restarts:
            alloc.restarts += 1
            delay = backoff_ns(int(recovery.backoff), alloc.restarts)
            alloc.move(
                S.RESTARTING,
                f"{what}; restart {alloc.restarts} of {recovery.max_restarts} "
                f"in {format_duration(delay)}",
            )
            await clock.sleep(seconds(delay))
            continue
        gave_up = (
            f"; gave up after {alloc.restarts} restart(s)"
            if policy is RecoveryPolicy.RESTART
            else ""
        )
        await alloc.finish(S.COMPLETED if ok else S.FAILED, what + gave_up)
        return


async def watch(alloc: Allocation, executor: Executor, run_id: str) -> RunEnd:
    """Wait for the run to end, with health checks and restart requests."""
    alloc.restart_requested = anyio.Event()
    unhealthy = ""
    restart = False

    async def health() -> None:
        nonlocal unhealthy
        check = alloc.manifest.spec.healthcheck
        probe = alloc.probe
        assert check is not None and probe is not None  # started only with both
        clock = alloc.settings.clock
        await clock.sleep(seconds(int(check.start_period)))
        failures = 0
        while True:
            await clock.sleep(seconds(int(check.interval)))
            answer = await probe.check()
            if answer.healthy:
                failures = 0
                continue
            failures += 1
            alloc.log.info("health check failed", failures=failures, detail=answer.detail)
            if failures >= check.retries:
                unhealthy = f"unhealthy after {failures} failed checks: {answer.detail}"
                await stop()
                return

    async def restarts() -> None:
        nonlocal restart
        await alloc.restart_requested.wait()
        restart = True
        await stop()

    async def stop() -> None:
        try:
            await executor.cancel(run_id)
        except DMSError as exc:  # the wait below reports what went wrong
            alloc.log.warning("could not stop the run", error=str(exc))

    error: DMSError | None = None
    async with anyio.create_task_group() as tasks:
        if alloc.manifest.spec.healthcheck is not None and alloc.probe is not None:
            tasks.start_soon(health)
        tasks.start_soon(restarts)
        try:
            result = await executor.wait(run_id)
        except DMSError as exc:  # raised below, unwrapped by the task group
            error = exc
        tasks.cancel_scope.cancel()
    if error is not None:
        raise error
    await alloc.capture(result)
    if restart and result.status is ExecutionStatus.CANCELLED:
        return RunEnd(result=result, restart_requested=True)
    return RunEnd(result=result, unhealthy=unhealthy)


__all__ = ["RunEnd", "backoff_ns", "execution_id", "run", "watch"]
