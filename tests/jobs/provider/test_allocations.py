"""Allocation actors: statuses, events, restarts, health checks, schedules, stop and restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import trio
import trio.testing

from dms.actor import Empty, RemoteError
from dms.executor import ExecutionRequest, ExecutionResult, NullExecutor, UnknownExecution
from dms.executor.base import ExecutorType
from dms.jobs.protocol import (
    ALLOCATION_LOGS,
    ALLOCATION_RESTART,
    ALLOCATION_STATUS,
    ALLOCATION_STOP,
    AllocationState,
    LogsChunk,
    LogsRequest,
    LogStreamName,
    StopRequest,
)
from dms.jobs.provider import inbox_of
from dms.jobs.provider.allocation import GRACE_S
from dms.jobs.status import AllocationStatus
from dms.types import CPU, GPU, Capability, GPUVendor, JobType, Resources, new_id
from tests.jobs.provider.harness import (
    ONBOARD_GPUS,
    Cluster,
    GiB,
    allocation_spec,
    cluster,
    null_manifest,
)

S = AllocationStatus


@pytest.fixture
async def c(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A cluster; each test that uses it also asks for ``autojump_clock`` (pytest-trio takes
    the clock from the test's own arguments only)."""
    async with cluster(tmp_path, heartbeat_interval_s=5.0) as made:
        yield made


def statuses(c: Cluster, allocation_id: str) -> list[S]:
    return c.recorder.statuses(allocation_id)


class TestTasks:
    """A task runs once; its events tell the orchestrator how it went."""

    async def test_a_task_runs_to_completion_and_gives_its_resources_back(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        task = null_manifest(["duration=3s", "stdout=all done"])
        await c.run(task)
        (done,) = await c.ended(task.allocation_id)
        assert statuses(c, task.allocation_id) == [S.STARTING, S.RUNNING, S.COMPLETED]
        assert done.exit_code == 0 and done.stdout_tail == "all done"
        assert await c.free_is_onboarded()
        assert set(c.recorder.senders) == {c.provider.did}

    async def test_events_close_together_travel_in_one_message(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Starting and running a moment later are one message; completing 3 s on, another."""
        task = null_manifest(["duration=3s"])
        await c.run(task)
        await c.ended(task.allocation_id)
        assert statuses(c, task.allocation_id) == [S.STARTING, S.RUNNING, S.COMPLETED]
        assert c.recorder.messages == 2

    async def test_a_failing_task_reports_its_exit_code_and_stderr(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        task = null_manifest(["exit=3", "stderr=it broke"])
        await c.run(task)
        (done,) = await c.ended(task.allocation_id)
        assert done.status is S.FAILED
        assert (done.exit_code, done.stderr_tail) == (3, "it broke")
        assert "code 3" in done.detail
        assert await c.free_is_onboarded()

    async def test_heartbeats_come_while_running(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        task = null_manifest(["duration=22s"])
        await c.run(task)
        await c.ended(task.allocation_id)
        beats = c.recorder.beats_of(task.allocation_id)
        assert len(beats) == 4
        assert all(b.status is S.RUNNING for b in beats)
        running = next(
            e
            for e in c.recorder.events
            if e.allocation_id == task.allocation_id and e.status is S.RUNNING
        )
        assert {b.sequence for b in beats} == {running.sequence}
        mine = [e for e in c.recorder.events if e.allocation_id == task.allocation_id]
        assert [e.sequence for e in mine] == list(range(1, len(mine) + 1))

    async def test_one_heartbeat_names_every_allocation_for_the_orchestrator(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        tasks = [null_manifest(["duration=12s"], name=f"w{i}", cpu=0.5) for i in range(3)]
        await c.run(*tasks)
        await c.ended(*(t.allocation_id for t in tasks))
        by_time: dict[int, set[str]] = {}
        for at, alive in c.recorder.beats:
            by_time.setdefault(at, set()).add(alive.allocation_id)
        assert list(by_time.values()) == [{t.allocation_id for t in tasks}] * 2
        assert c.recorder.heartbeat_messages == 2

    async def test_heartbeats_come_in_every_status_until_the_end(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        job = null_manifest(
            ["duration=1s"], type=JobType.RECURRING, extra="schedule: {every: 60s, times: 2}"
        )
        (handle,) = (await c.deploy(job)).values()
        await anyio.sleep(12)
        await c.start(handle)
        await c.ended(job.allocation_id)
        ended_at = len(c.recorder.beats)
        await anyio.sleep(20)
        beats = [b.status for b in c.recorder.beats_of(job.allocation_id)]
        assert beats[:2] == [S.PENDING, S.PENDING]
        assert beats.count(S.RESTARTING) >= 10
        assert len(c.recorder.beats) == ended_at  # nothing after the final event
        final = c.recorder.final(job.allocation_id)
        assert final is not None
        assert all(b.sequence < final.sequence for b in c.recorder.beats_of(job.allocation_id))

    async def test_a_task_with_a_restart_policy_is_retried_with_backoff(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        task = null_manifest(
            ["exit=1,1,0"],
            extra="failure_recovery: {policy: restart, max_restarts: 3, backoff: 2s}",
        )
        start = trio.current_time()
        await c.run(task)
        (done,) = await c.ended(task.allocation_id)
        assert done.status is S.COMPLETED and done.restarts == 2
        assert trio.current_time() - start >= 2 + 4
        assert statuses(c, task.allocation_id) == [
            S.STARTING, S.RUNNING, S.RESTARTING,
            S.STARTING, S.RUNNING, S.RESTARTING,
            S.STARTING, S.RUNNING, S.COMPLETED,
        ]  # fmt: skip

    async def test_a_task_that_cannot_start_fails(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        task = null_manifest(["start_error=no such image"])
        await c.run(task)
        (done,) = await c.ended(task.allocation_id)
        assert done.status is S.FAILED and "no such image" in done.detail
        assert statuses(c, task.allocation_id) == [S.STARTING, S.FAILED]
        assert await c.free_is_onboarded()

    async def test_batch_replicas_each_run_as_a_task(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        replicas = [null_manifest(["duration=1s"], type=JobType.BATCH, replica=i) for i in range(3)]
        await c.run(*replicas)
        ended = await c.ended(*(r.allocation_id for r in replicas))
        assert {e.status for e in ended} == {S.COMPLETED}
        assert await c.free_is_onboarded()

    async def test_the_slot_is_released_only_when_its_last_allocation_ends(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        short = null_manifest(["duration=1s"], name="short")
        long = null_manifest(["duration=30s"], name="long")
        await c.run(short, long)
        await c.ended(short.allocation_id)
        assert (await c.manager.pools()).allocated.cpu.cores == 1
        await c.ended(long.allocation_id)
        assert await c.free_is_onboarded()


class TestServices:
    """A service is restarted per its failure recovery and its health check."""

    async def test_a_failing_service_is_restarted_until_its_restarts_run_out(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        service = null_manifest(
            ["duration=10s", "exit=1"],
            type=JobType.SERVICE,
            extra="failure_recovery: {max_restarts: 2, backoff: 1s}",
        )
        start = trio.current_time()
        await c.run(service)
        (done,) = await c.ended(service.allocation_id)
        assert done.status is S.FAILED and done.restarts == 2
        assert "gave up after 2 restart(s)" in done.detail
        assert trio.current_time() - start >= 3 * 10 + 1 + 2
        assert statuses(c, service.allocation_id).count(S.RESTARTING) == 2
        assert await c.free_is_onboarded()

    async def test_a_service_without_restarts_ends_at_its_first_exit(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        service = null_manifest(
            ["duration=5s", "exit=2"],
            type=JobType.SERVICE,
            extra="failure_recovery: {policy: none}",
        )
        await c.run(service)
        (done,) = await c.ended(service.allocation_id)
        assert done.status is S.FAILED and done.restarts == 0 and done.exit_code == 2

    async def test_a_service_that_fails_its_health_check_is_restarted(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        service = null_manifest(
            ["duration=1h"],
            type=JobType.SERVICE,
            extra="""
            healthcheck: {type: command, command: ["exit=1"], interval: 2s, retries: 3}
            failure_recovery: {max_restarts: 1, backoff: 1s}
            """,
        )
        start = trio.current_time()
        await c.run(service)
        (done,) = await c.ended(service.allocation_id)
        assert done.status is S.FAILED and done.restarts == 1
        assert "unhealthy after 3 failed checks" in done.detail
        assert 2 * 6 + 1 <= trio.current_time() - start < 3600
        assert await c.free_is_onboarded()

    async def test_a_healthy_service_keeps_running(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        service = null_manifest(
            ["duration=1h"],
            type=JobType.SERVICE,
            extra='healthcheck: {type: command, command: ["exit=0"], interval: 2s, retries: 1}',
        )
        (handle,) = (await c.run(service)).values()
        await anyio.sleep(60)
        state = await c.orchestrator.invoke(handle, ALLOCATION_STATUS, Empty(), AllocationState)
        assert state.status is S.RUNNING and state.restarts == 0 and state.runs == 1

    async def test_a_restart_request_starts_a_new_run_at_once(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        service = null_manifest(["duration=1h"], type=JobType.SERVICE)
        (handle,) = (await c.run(service)).values()
        await c.recorder.until(lambda: S.RUNNING in statuses(c, service.allocation_id))
        await c.orchestrator.invoke(handle, ALLOCATION_RESTART, Empty(), AllocationState)
        await c.recorder.until(lambda: statuses(c, service.allocation_id).count(S.RUNNING) == 2)
        state = await c.orchestrator.invoke(handle, ALLOCATION_STATUS, Empty(), AllocationState)
        assert (state.status, state.restarts, state.runs) == (S.RUNNING, 1, 2)


class TestRecurring:
    """A recurring job runs on its schedule, ``times`` times."""

    async def test_a_recurring_job_runs_every_interval_then_completes(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        job = null_manifest(
            ["duration=1s"], type=JobType.RECURRING, extra="schedule: {every: 10s, times: 3}"
        )
        start = trio.current_time()
        (handle,) = (await c.run(job)).values()
        (done,) = await c.ended(job.allocation_id)
        assert done.status is S.COMPLETED
        assert 21 <= trio.current_time() - start < 22
        state = await c.orchestrator.invoke(handle, ALLOCATION_STATUS, Empty(), AllocationState)
        assert state.runs == 3
        assert statuses(c, job.allocation_id).count(S.RUNNING) == 3


class TestStopping:
    """Stopping ends an allocation in STOPPED and gives its resources back once."""

    async def test_stop_ends_a_running_allocation(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        task = null_manifest(["duration=1h", "stdout=partial"])
        (handle,) = (await c.run(task)).values()
        await c.recorder.until(lambda: S.RUNNING in statuses(c, task.allocation_id))
        state = await c.orchestrator.invoke(
            handle, ALLOCATION_STOP, StopRequest(reason="enough"), AllocationState
        )
        assert (state.status, state.detail) == (S.STOPPED, "enough")
        (done,) = await c.ended(task.allocation_id)
        assert done.stdout_tail == "partial"
        assert await c.free_is_onboarded()
        again = await c.orchestrator.invoke(handle, ALLOCATION_STOP, StopRequest(), AllocationState)
        assert again == state

    async def test_stop_before_start_ends_a_pending_allocation(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        task = null_manifest(["duration=1h"])
        (handle,) = (await c.deploy(task)).values()
        state = await c.orchestrator.invoke(handle, ALLOCATION_STOP, StopRequest(), AllocationState)
        assert state.status is S.STOPPED
        assert statuses(c, task.allocation_id) == [] or (
            await c.recorder.until(lambda: statuses(c, task.allocation_id) == [S.STOPPED])
        )
        assert await c.free_is_onboarded()
        started = await c.start(handle)
        assert started.status is S.STOPPED

    async def test_restarting_an_ended_allocation_is_refused(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        task = null_manifest()
        (handle,) = (await c.run(task)).values()
        await c.ended(task.allocation_id)
        with pytest.raises(RemoteError, match="cannot restart"):
            await c.orchestrator.invoke(handle, ALLOCATION_RESTART, Empty(), AllocationState)

    async def test_a_sent_message_that_fails_does_not_crash_the_allocation(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        task = null_manifest(["duration=1h"])
        (handle,) = (await c.deploy(task)).values()
        await c.orchestrator.send(handle, ALLOCATION_RESTART, Empty())
        await anyio.sleep(1)
        state = await c.orchestrator.invoke(handle, ALLOCATION_STATUS, Empty(), AllocationState)
        assert state.status is S.PENDING

    async def test_a_forced_offboard_stops_allocations_and_releases_everything(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        task = null_manifest(["duration=1h"])
        await c.run(task)
        await c.recorder.until(lambda: S.RUNNING in statuses(c, task.allocation_id))
        result = await c.onboarding.offboard(force=True)
        assert result.problems == ()
        (done,) = await c.ended(task.allocation_id)
        assert done.status is S.STOPPED
        pools = await c.manager.pools()
        assert not pools.is_onboarded and pools.used.is_zero()

    async def test_stopping_the_node_stops_the_workload_before_the_actor(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        task = null_manifest(["duration=1h"])
        await c.run(task)
        await c.recorder.until(lambda: S.RUNNING in statuses(c, task.allocation_id))
        await c.provider.supervisor.terminate_child(inbox_of(task.allocation_id))
        (done,) = await c.ended(task.allocation_id)
        assert done.status is S.STOPPED and "node is stopping" in done.detail
        assert await c.free_is_onboarded()
        assert c.service.allocations() == []

    async def test_an_ended_allocation_is_forgotten_after_its_retention(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path, retention_s=30.0) as c:
            task = null_manifest()
            await c.run(task)
            await c.ended(task.allocation_id)
            assert [a.allocation_id for a in c.service.allocations()] == [task.allocation_id]
            await anyio.sleep(31)
            assert c.service.allocations() == []
            assert c.executors.list() == ()


class TestLogs:
    """Logs come back in chunks, whole."""

    async def test_logs_come_back_in_chunks_from_any_offset(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        text = "0123456789" * 10
        task = null_manifest([f"stdout={text}", "stderr=oops"])
        (handle,) = (await c.run(task)).values()
        await c.ended(task.allocation_id)
        data = b""
        offset = 0
        while True:
            chunk = await c.orchestrator.invoke(
                handle, ALLOCATION_LOGS, LogsRequest(offset=offset, limit=33), LogsChunk
            )
            data += chunk.data
            offset = chunk.next_offset
            if chunk.eof:
                break
        assert data.decode() == text
        err = await c.orchestrator.invoke(
            handle, ALLOCATION_LOGS, LogsRequest(stream=LogStreamName.STDERR), LogsChunk
        )
        assert (err.data, err.eof) == (b"oops", True)

    async def test_each_run_keeps_its_own_logs(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        job = null_manifest(
            ["stdout=tick"], type=JobType.RECURRING, extra="schedule: {every: 1s, times: 2}"
        )
        (handle,) = (await c.run(job)).values()
        await c.ended(job.allocation_id)
        for run in (0, 1, -1):
            chunk = await c.orchestrator.invoke(
                handle, ALLOCATION_LOGS, LogsRequest(run=run), LogsChunk
            )
            assert chunk.data == b"tick" and chunk.eof
        with pytest.raises(RemoteError, match="run"):
            await c.orchestrator.invoke(handle, ALLOCATION_LOGS, LogsRequest(run=5), LogsChunk)

    async def test_a_negative_offset_is_refused(
        self, c: Cluster, autojump_clock: trio.testing.MockClock
    ) -> None:
        (handle,) = (await c.run(null_manifest())).values()
        with pytest.raises(RemoteError, match="offset"):
            await c.orchestrator.invoke(handle, ALLOCATION_LOGS, LogsRequest(offset=-1), LogsChunk)


class RecordingExecutor(NullExecutor):
    """A null executor that accepts GPUs and remembers the requests it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[ExecutionRequest] = []

    def _check(self, request: ExecutionRequest) -> None:
        self.requests.append(request)


class ForgetfulExecutor(NullExecutor):
    """Loses track of every execution it runs (as after a bug or a lost state file)."""

    async def wait(self, execution_id: str) -> ExecutionResult:
        raise UnknownExecution(execution_id)


class StubbornExecutor(NullExecutor):
    """Its workloads ignore being cancelled."""

    async def cancel(self, execution_id: str) -> ExecutionResult:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


class TestExecutorTrouble:
    """An executor that misbehaves still lets the allocation end and its resources go back."""

    async def test_a_workload_that_will_not_stop_is_given_up_after_the_grace_time(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path, executors=[StubbornExecutor()]) as c:
            task = null_manifest(["duration=1h"])
            (handle,) = (await c.run(task)).values()
            await c.recorder.until(lambda: S.RUNNING in statuses(c, task.allocation_id))
            start = trio.current_time()
            state = await c.orchestrator.invoke(
                handle, ALLOCATION_STOP, StopRequest(), AllocationState
            )
            assert state.status is S.STOPPED
            assert trio.current_time() - start == pytest.approx(GRACE_S, abs=0.1)
            assert await c.free_is_onboarded()

    async def test_an_execution_the_executor_lost_fails_the_allocation(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with cluster(tmp_path, executors=[ForgetfulExecutor()]) as c:
            task = null_manifest(["duration=1h"])
            await c.run(task)
            (done,) = await c.ended(task.allocation_id)
            assert done.status is S.FAILED and "executor error" in done.detail
            assert await c.free_is_onboarded()


class TestExecutionRequests:
    """What the executor is asked to run."""

    async def test_gpu_devices_limits_env_and_folders_reach_the_executor(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        executor = RecordingExecutor()
        async with cluster(tmp_path, onboard=ONBOARD_GPUS, executors=[executor]) as c:
            spec = allocation_spec(
                """
                executor: "null"
                resources: {cpu: 1, ram: 128MiB, gpus: [{vendor: nvidia, model: H100, vram: 40GiB}]}
                execution: {args: ["duration=1s"], timeout: 30s}
                env: {GREETING: hello}
                """
            )
            from dms.jobs.protocol import AllocationManifest

            manifest = AllocationManifest(
                allocation_id=new_id("a"), name="gpu", spec=spec, replica=2
            )
            wanted = Capability(
                executors=(ExecutorType.NULL,),
                resources=Resources(
                    cpu=CPU(cores=1),
                    ram=128 * 1024**2,
                    gpus=(GPU(vendor=GPUVendor.NVIDIA, model="H100", vram=40 * GiB),),
                ),
            )
            bid = await c.bid(wanted)
            await c.commit(bid, "s1")
            reply = await c.allocate("s1", manifest)
            await c.start(reply.handles[manifest.allocation_id])
            await c.ended(manifest.allocation_id)
            (request,) = executor.requests
            assert request.gpus == ("GPU-bbb",)
            assert (request.limits.cores, request.limits.memory) == (1.0, 128 * 1024**2)
            assert request.limits.timeout == 30 * 10**9
            env = request.env_dict()
            assert env["GREETING"] == "hello"
            assert env["DMS_ALLOCATION_ID"] == manifest.allocation_id
            assert (env["DMS_REPLICA"], env["DMS_RUN"]) == ("2", "0")
            root = c.work_dir / manifest.allocation_id
            assert (request.input_dir, request.output_dir) == (
                str(root / "input"),
                str(root / "results"),
            )
            assert await c.free_is_onboarded()
