"""The null executor, on virtual time: the shared executor behaviour without real workloads."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec
import pytest
import trio
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from dms.executor import (
    DuplicateExecution,
    ExecutionInfo,
    ExecutionRequest,
    ExecutionRunning,
    ExecutionStatus,
    ExecutorUnavailable,
    InvalidRequest,
    Limits,
    LogStream,
    NullExecutor,
    NullProgram,
    Reason,
    StartFailed,
    UnknownExecution,
    WasmProgram,
)
from dms.executor.base import Executor

from .conftest import read_bytes

SECOND = 10**9


def null(execution_id: str = "n1", **program: object) -> ExecutionRequest:
    return ExecutionRequest(id=execution_id, program=NullProgram(**program))  # type: ignore[arg-type]


class TestLifecycle:
    """Start returns once running; wait returns the scripted result after the scripted time."""

    async def test_finishes_after_its_duration_in_virtual_time(
        self, autojump_clock: object
    ) -> None:
        async with NullExecutor() as executor:
            before = trio.current_time()
            info = await executor.start(null(duration=30 * SECOND, stdout=b"out", exit_code=0))
            assert info.status is ExecutionStatus.RUNNING
            result = await executor.wait("n1")
            assert trio.current_time() - before == pytest.approx(30)
        assert result.status is ExecutionStatus.SUCCEEDED
        assert result.reason is Reason.EXITED
        assert result.duration == 30 * SECOND
        assert result.stdout_bytes == 3

    async def test_a_non_zero_exit_code_is_a_failure(self) -> None:
        async with NullExecutor() as executor:
            await executor.start(null(exit_code=7))
            result = await executor.wait("n1")
        assert (result.status, result.exit_code, result.error) == (
            ExecutionStatus.FAILED,
            7,
            "exited with code 7",
        )

    async def test_times_out_at_the_limit(self, autojump_clock: object) -> None:
        async with NullExecutor() as executor:
            request = msgspec.structs.replace(
                null(duration=3600 * SECOND), limits=Limits(timeout=5 * SECOND)
            )
            await executor.start(request)
            result = await executor.wait("n1")
        assert result.status is ExecutionStatus.TIMED_OUT
        assert result.killed
        assert result.duration == 5 * SECOND

    async def test_cancel_stops_it_and_returns_the_result(self, autojump_clock: object) -> None:
        async with NullExecutor() as executor:
            await executor.start(null(duration=3600 * SECOND))
            await trio.sleep(10)
            result = await executor.cancel("n1")
            assert not executor.is_alive("n1")
        assert result.status is ExecutionStatus.CANCELLED
        assert result.duration == 10 * SECOND

    async def test_cancelling_a_finished_execution_changes_nothing(self) -> None:
        async with NullExecutor() as executor:
            await executor.start(null())
            first = await executor.wait("n1")
            assert await executor.cancel("n1") == first

    async def test_start_failure_raises_and_is_recorded(self) -> None:
        async with NullExecutor() as executor:
            with pytest.raises(StartFailed, match="no such image"):
                await executor.start(null(start_error="no such image"))
            info = executor.status("n1")
        assert info.status is ExecutionStatus.FAILED
        assert info.result is not None and info.result.reason is Reason.START_FAILED

    async def test_leaving_the_block_cancels_what_still_runs(self, autojump_clock: object) -> None:
        async with NullExecutor() as executor:
            await executor.start(null("a", duration=3600 * SECOND))
            await executor.start(null("b"))
            await executor.wait("b")
        assert executor.status("a").status is ExecutionStatus.CANCELLED
        assert executor.status("b").status is ExecutionStatus.SUCCEEDED

    async def test_outside_cancellation_still_records_a_result(
        self, autojump_clock: object
    ) -> None:
        executor = NullExecutor()
        with trio.move_on_after(5):
            async with executor:
                await executor.start(null(duration=3600 * SECOND))
                await trio.sleep_forever()
        assert executor.status("n1").status is ExecutionStatus.CANCELLED

    async def test_concurrent_executions_each_get_their_own_result(
        self, autojump_clock: object
    ) -> None:
        async with NullExecutor() as executor:
            for index in range(20):
                await executor.start(null(f"e{index}", duration=index * SECOND, exit_code=index))
            results = [await executor.wait(f"e{index}") for index in range(20)]
        assert [r.exit_code for r in results] == list(range(20))
        assert [r.duration for r in results] == [i * SECOND for i in range(20)]

    def test_is_an_executor(self) -> None:
        assert isinstance(NullExecutor(), Executor)


class TestRefusals:
    """Misuse fails loudly with the executor's own errors."""

    async def test_refuses_a_duplicate_id(self) -> None:
        async with NullExecutor() as executor:
            await executor.start(null())
            with pytest.raises(DuplicateExecution):
                await executor.start(null())

    async def test_refuses_a_program_for_another_executor(self) -> None:
        async with NullExecutor() as executor:
            with pytest.raises(InvalidRequest, match="program"):
                await executor.start(ExecutionRequest(id="w", program=WasmProgram(path="/x.wasm")))

    async def test_unknown_ids_raise(self) -> None:
        async with NullExecutor() as executor:
            with pytest.raises(UnknownExecution):
                executor.status("nope")
            with pytest.raises(UnknownExecution):
                await executor.wait("nope")

    async def test_a_running_execution_cannot_be_removed(self, autojump_clock: object) -> None:
        async with NullExecutor() as executor:
            await executor.start(null(duration=60 * SECOND))
            with pytest.raises(ExecutionRunning):
                await executor.remove("n1")
            await executor.wait("n1")
            await executor.remove("n1")
            assert executor.list() == ()

    async def test_start_outside_the_block_is_refused(self) -> None:
        executor = NullExecutor()
        with pytest.raises(ExecutorUnavailable, match="async with"):
            await executor.start(null())

    async def test_an_executor_is_entered_once(self) -> None:
        executor = NullExecutor()
        async with executor:
            pass
        with pytest.raises(ExecutorUnavailable):
            async with executor:
                pass

    async def test_a_missing_input_folder_is_refused(self, tmp_path: Path) -> None:
        async with NullExecutor() as executor:
            request = msgspec.structs.replace(null(), input_dir=str(tmp_path / "missing"))
            with pytest.raises(InvalidRequest, match="input_dir"):
                await executor.start(request)


class TestLogs:
    """Logs return what was written; with follow they continue until the end."""

    async def test_logs_return_both_streams(self) -> None:
        async with NullExecutor() as executor:
            await executor.start(null(stdout=b"out", stderr=b"err"))
            await executor.wait("n1")
            chunks = [chunk async for chunk in executor.logs("n1")]
        assert {(c.stream, c.data) for c in chunks} == {
            (LogStream.STDOUT, b"out"),
            (LogStream.STDERR, b"err"),
        }

    async def test_follow_ends_when_the_execution_ends(self, autojump_clock: object) -> None:
        async with NullExecutor() as executor:
            await executor.start(null(duration=60 * SECOND, stdout=b"x"))
            chunks = [chunk async for chunk in executor.logs("n1", follow=True)]
            assert trio.current_time() >= 60
            assert not executor.is_alive("n1")
        assert [c.data for c in chunks] == [b"x"]

    async def test_output_over_the_cap_is_truncated_and_said_so(self) -> None:
        async with NullExecutor() as executor:
            request = msgspec.structs.replace(null(stdout=b"x" * 100), limits=Limits(output=10))
            await executor.start(request)
            result = await executor.wait("n1")
            kept = b"".join([c.data async for c in executor.logs("n1")])
        assert kept == b"x" * 10
        assert result.stdout_truncated and result.stdout_bytes == 100


class TestStateFiles:
    """With a work folder, state files let a new node process find earlier executions."""

    async def test_writes_output_and_state_files(self, work_dir: Path) -> None:
        async with NullExecutor(work_dir) as executor:
            await executor.start(null(stdout=b"hello"))
            result = await executor.wait("n1")
        assert await read_bytes(result.stdout_path) == b"hello"
        state = msgspec.json.decode(
            await read_bytes(work_dir / "n1" / "state.json"), type=ExecutionInfo
        )
        assert state.status is ExecutionStatus.SUCCEEDED
        assert state.result == result

    async def test_cleanup_marks_unfinished_executions_lost(self, work_dir: Path) -> None:
        running = ExecutionInfo(
            id="was-running",
            executor=NullExecutor.kind,
            status=ExecutionStatus.RUNNING,
            created_at=1,
            started_at=2,
        )
        (work_dir / "was-running").mkdir(parents=True)
        (work_dir / "was-running" / "state.json").write_bytes(msgspec.json.encode(running))
        async with NullExecutor(work_dir) as executor:
            report = await executor.cleanup()
            info = executor.status("was-running")
            assert not executor.is_alive("was-running")
        assert report.lost == ("was-running",)
        assert report.killed == ()
        assert info.status is ExecutionStatus.LOST
        assert info.result is not None and info.result.reason is Reason.LOST

    async def test_cleanup_loads_finished_executions_with_their_logs(self, work_dir: Path) -> None:
        async with NullExecutor(work_dir) as executor:
            await executor.start(null(stdout=b"kept"))
            first = await executor.wait("n1")
        async with NullExecutor(work_dir) as again:
            report = await again.cleanup()
            assert report.lost == ()
            assert await again.wait("n1") == first
            assert b"".join([c.data async for c in again.logs("n1")]) == b"kept"

    async def test_cleanup_skips_unreadable_state_files(self, work_dir: Path) -> None:
        (work_dir / "broken").mkdir(parents=True)
        (work_dir / "broken" / "state.json").write_bytes(b"{not json")
        async with NullExecutor(work_dir) as executor:
            report = await executor.cleanup()
            assert executor.list() == ()
        assert report.lost == ()


async def test_two_hundred_executions_all_succeed(autojump_clock: object) -> None:
    async with NullExecutor() as executor, anyio.create_task_group() as group:
        for index in range(200):
            await executor.start(null(f"x{index}", duration=SECOND))
        for index in range(200):
            group.start_soon(executor.wait, f"x{index}")
    assert all(info.status is ExecutionStatus.SUCCEEDED for info in executor.list())


script = st.tuples(
    st.integers(min_value=1, max_value=100),  # duration, s
    st.integers(min_value=0, max_value=3),  # exit code
    st.integers(min_value=0, max_value=100),  # timeout, s (0: none)
    st.one_of(st.none(), st.integers(min_value=1, max_value=100)),  # cancel after, s
)


class TestEndings:
    """Whatever the mix of durations, timeouts and cancels, each execution ends exactly once,
    by whichever came first, at that (virtual) time."""

    @settings(max_examples=40, deadline=None)
    @given(scripts=st.lists(script, min_size=1, max_size=8))
    def test_the_first_of_exit_timeout_and_cancel_decides(
        self, scripts: list[tuple[int, int, int, int | None]]
    ) -> None:
        for duration, _, timeout, cancel_at in scripts:
            present = [t for t in (duration, timeout or None, cancel_at) if t is not None]
            assume(len(present) == len(set(present)))  # no ties
        executor = NullExecutor()
        trio.run(run_scripts, executor, scripts, clock=MockClock(autojump_threshold=0))
        for index, (duration, code, timeout, cancel_at) in enumerate(scripts):
            result = executor.status(f"e{index}").result
            assert result is not None
            first = min(t for t in (duration, timeout or None, cancel_at) if t is not None)
            if first == cancel_at:
                assert result.status is ExecutionStatus.CANCELLED
            elif first == timeout:
                assert result.status is ExecutionStatus.TIMED_OUT
            else:
                assert result.exit_code == code
            assert result.duration == first * SECOND


async def run_scripts(
    executor: NullExecutor, scripts: list[tuple[int, int, int, int | None]]
) -> None:
    async with executor:
        async with anyio.create_task_group() as group:
            for index, (duration, code, timeout, cancel_at) in enumerate(scripts):
                request = ExecutionRequest(
                    id=f"e{index}",
                    program=NullProgram(duration=duration * SECOND, exit_code=code),
                    limits=Limits(timeout=timeout * SECOND),
                )
                await executor.start(request)
                if cancel_at is not None:
                    group.start_soon(cancel_later, executor, f"e{index}", cancel_at)
        for index in range(len(scripts)):
            await executor.wait(f"e{index}")


async def cancel_later(executor: NullExecutor, execution_id: str, after: int) -> None:
    await trio.sleep(after)
    await executor.cancel(execution_id)
