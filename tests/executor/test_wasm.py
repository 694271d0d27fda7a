"""The WASM executor with real modules built from C and WAT (`make fixtures`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from dms.executor import (
    ExecutionRequest,
    ExecutionStatus,
    InvalidRequest,
    Limits,
    LogStream,
    NetworkMode,
    Reason,
    StartFailed,
    WasmProgram,
)
from dms.executor.wasm import ModuleCache, WasmExecutor

from .conftest import read_bytes, read_text

Fixture = Callable[[str], Path]
SECOND = 10**9
MIB = 1024**2


@pytest.fixture
async def executor(work_dir: Path) -> AsyncIterator[WasmExecutor]:
    async with WasmExecutor(work_dir) as running:
        yield running


def run(wasm: Fixture, name: str, execution_id: str = "w1", **fields: object) -> ExecutionRequest:
    return ExecutionRequest(id=execution_id, program=WasmProgram(path=str(wasm(name))), **fields)  # type: ignore[arg-type]


class TestPrograms:
    """Real programs: arguments, environment, stdin, exit codes, files."""

    async def test_hello_greets_and_shows_its_args_and_env(
        self, executor: WasmExecutor, wasm: Fixture
    ) -> None:
        await executor.start(run(wasm, "hello", args=("Ada", "x"), env=(("COLOR", "blue"),)))
        result = await executor.wait("w1")
        out = await read_text(result.stdout_path)
        assert result.status is ExecutionStatus.SUCCEEDED
        assert out.splitlines() == [
            "Hello, Ada! Greetings from a WebAssembly task run by dms.",
            "arg 0: hello.wasm",
            "arg 1: Ada",
            "arg 2: x",
            "env: COLOR=blue",
        ]
        assert result.usage.cpu_time > 0
        assert result.usage.peak_memory >= 64 * 1024

    @pytest.mark.parametrize("code", [0, 1, 3, 42, 125], ids=lambda c: f"exit-{c}")
    async def test_reports_the_exit_code(
        self, executor: WasmExecutor, wasm: Fixture, code: int
    ) -> None:
        await executor.start(run(wasm, "exit_code", args=(str(code),)))
        result = await executor.wait("w1")
        assert result.exit_code == code
        assert result.status is (ExecutionStatus.SUCCEEDED if code == 0 else ExecutionStatus.FAILED)
        assert await read_text(result.stderr_path) == f"about to exit with {code}\n"

    async def test_an_exit_code_wasi_does_not_allow_is_an_error(
        self, executor: WasmExecutor, wasm: Fixture
    ) -> None:
        await executor.start(run(wasm, "exit_code", args=("200",)))
        result = await executor.wait("w1")
        assert (result.status, result.reason) == (ExecutionStatus.FAILED, Reason.ERROR)
        assert "invalid exit status" in result.error

    async def test_reads_stdin(self, executor: WasmExecutor, wasm: Fixture) -> None:
        await executor.start(run(wasm, "echo", stdin=b"line one\nline two\n"))
        result = await executor.wait("w1")
        assert await read_bytes(result.stdout_path) == b"line one\nline two\n"
        assert await read_text(result.stderr_path) == "echo: 18 bytes\n"

    async def test_reads_input_and_writes_output_folders(
        self, executor: WasmExecutor, wasm: Fixture, tmp_path: Path
    ) -> None:
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "words.txt").write_text("quiet words\n")
        request = run(
            wasm,
            "upcase",
            args=("/input/words.txt", "/output/WORDS.txt"),
            input_dir=str(tmp_path / "in"),
            output_dir=str(tmp_path / "out"),
        )
        await executor.start(request)
        result = await executor.wait("w1")
        assert result.status is ExecutionStatus.SUCCEEDED, result.error
        assert (tmp_path / "out" / "WORDS.txt").read_text() == "QUIET WORDS\n"

    async def test_the_input_folder_is_read_only(
        self, executor: WasmExecutor, wasm: Fixture, tmp_path: Path
    ) -> None:
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "a.txt").write_text("a")
        request = run(
            wasm, "upcase", args=("/input/a.txt", "/input/b.txt"), input_dir=str(tmp_path / "in")
        )
        await executor.start(request)
        result = await executor.wait("w1")
        assert result.exit_code == 1
        assert "cannot write /input/b.txt" in await read_text(result.stderr_path)
        assert not (tmp_path / "in" / "b.txt").exists()

    async def test_nothing_outside_the_mapped_folders_is_visible(
        self, executor: WasmExecutor, wasm: Fixture
    ) -> None:
        await executor.start(run(wasm, "upcase", args=("/etc/passwd", "/output/x")))
        result = await executor.wait("w1")
        assert result.exit_code == 1
        assert "cannot read /etc/passwd" in await read_text(result.stderr_path)

    async def test_runs_module_bytes_carried_in_the_request(
        self, executor: WasmExecutor, wasm: Fixture
    ) -> None:
        module = wasm("exit_code").read_bytes()
        request = ExecutionRequest(id="w1", program=WasmProgram(module=module), args=("9",))
        await executor.start(request)
        assert (await executor.wait("w1")).exit_code == 9

    async def test_output_beyond_the_cap_is_dropped_and_reported(
        self, executor: WasmExecutor, wasm: Fixture
    ) -> None:
        await executor.start(run(wasm, "echo", args=("100000",), limits=Limits(output=1000)))
        result = await executor.wait("w1")
        assert await read_bytes(result.stdout_path) == b"x" * 1000
        assert result.stdout_truncated
        assert result.stdout_bytes == 100_000


class TestLimits:
    """Traps, fuel, timeouts and memory limits really stop the guest."""

    async def test_a_trap_fails_the_execution(self, executor: WasmExecutor, wasm: Fixture) -> None:
        await executor.start(run(wasm, "trap"))
        result = await executor.wait("w1")
        assert (result.status, result.reason) == (ExecutionStatus.FAILED, Reason.TRAP)
        assert "unreachable" in result.error
        assert result.exit_code is None

    async def test_fuel_stops_an_infinite_loop(self, executor: WasmExecutor, wasm: Fixture) -> None:
        await executor.start(run(wasm, "loop", limits=Limits(fuel=5_000_000)))
        result = await executor.wait("w1")
        assert result.reason is Reason.OUT_OF_FUEL
        assert result.usage.fuel == 5_000_000
        assert result.killed

    async def test_the_timeout_stops_an_infinite_loop(
        self, executor: WasmExecutor, wasm: Fixture
    ) -> None:
        await executor.start(run(wasm, "loop", limits=Limits(timeout=SECOND // 5)))
        result = await executor.wait("w1")
        assert (result.status, result.reason) == (ExecutionStatus.TIMED_OUT, Reason.TIMEOUT)
        assert result.killed

    async def test_the_memory_hog_is_stopped_at_the_limit(
        self, executor: WasmExecutor, wasm: Fixture
    ) -> None:
        limits = Limits(memory=8 * MIB, fuel=10**10, timeout=30 * SECOND)
        await executor.start(run(wasm, "memory_hog", limits=limits))
        result = await executor.wait("w1")
        assert result.reason is Reason.MEMORY_LIMIT
        assert result.usage.peak_memory <= 8 * MIB

    async def test_malloc_fails_cleanly_at_the_limit(
        self, executor: WasmExecutor, wasm: Fixture
    ) -> None:
        limits = Limits(memory=16 * MIB, fuel=10**10, timeout=30 * SECOND)
        await executor.start(run(wasm, "hog", limits=limits))
        result = await executor.wait("w1")
        got = int((await read_text(result.stdout_path)).split()[1])
        assert result.exit_code == 2
        assert result.reason is Reason.MEMORY_LIMIT
        assert 8 <= got < 16
        assert result.usage.peak_memory <= 16 * MIB


class TestControl:
    """Cancel, concurrency, logs, start failures and refusals."""

    async def test_cancel_stops_a_running_module(
        self, executor: WasmExecutor, wasm: Fixture
    ) -> None:
        await executor.start(run(wasm, "loop"))
        assert executor.is_alive("w1")
        result = await executor.cancel("w1")
        assert (result.status, result.reason) == (ExecutionStatus.CANCELLED, Reason.CANCELLED)
        assert not executor.is_alive("w1")

    async def test_leaving_the_executor_stops_running_modules(
        self, work_dir: Path, wasm: Fixture
    ) -> None:
        async with WasmExecutor(work_dir) as executor:
            await executor.start(run(wasm, "loop"))
        assert executor.status("w1").status is ExecutionStatus.CANCELLED

    async def test_runs_executions_concurrently_without_blocking_the_node(
        self, executor: WasmExecutor, wasm: Fixture
    ) -> None:
        for index in range(4):
            await executor.start(run(wasm, "loop", f"loop{index}"))
        # While four guests spin in worker threads, the event loop still runs other work.
        for index in range(8):
            await executor.start(run(wasm, "exit_code", f"exit{index}", args=(str(index),)))
        codes = [(await executor.wait(f"exit{index}")).exit_code for index in range(8)]
        assert codes == list(range(8))
        assert all(executor.is_alive(f"loop{index}") for index in range(4))
        results = [await executor.cancel(f"loop{index}") for index in range(4)]
        assert {r.status for r in results} == {ExecutionStatus.CANCELLED}

    async def test_follow_streams_output_until_the_end(
        self, executor: WasmExecutor, wasm: Fixture
    ) -> None:
        await executor.start(run(wasm, "echo", args=("50000",)))
        seen = bytearray()
        async for chunk in executor.logs("w1", follow=True):
            if chunk.stream is LogStream.STDOUT:
                seen += chunk.data
        assert bytes(seen) == b"x" * 50_000

    async def test_a_missing_module_file_fails_to_start(
        self, executor: WasmExecutor, tmp_path: Path
    ) -> None:
        request = ExecutionRequest(id="w1", program=WasmProgram(path=str(tmp_path / "no.wasm")))
        with pytest.raises(StartFailed, match="cannot read module"):
            await executor.start(request)

    async def test_garbage_bytes_fail_to_start(self, executor: WasmExecutor) -> None:
        request = ExecutionRequest(id="w1", program=WasmProgram(module=b"not wasm"))
        with pytest.raises(StartFailed, match="not a valid WebAssembly module"):
            await executor.start(request)

    async def test_a_missing_entry_point_fails_to_start(
        self, executor: WasmExecutor, wasm: Fixture
    ) -> None:
        program = WasmProgram(path=str(wasm("trap")), entry="main")
        with pytest.raises(StartFailed, match="exports no function 'main'"):
            await executor.start(ExecutionRequest(id="w1", program=program))

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"gpus": ("0",)}, "gpus"),
            ({"network": NetworkMode.BRIDGE}, "network"),
            ({"working_dir": "/tmp"}, "working_dir"),
        ],
        ids=["gpus", "network", "working-dir"],
    )
    async def test_refuses_what_wasm_cannot_do(
        self, executor: WasmExecutor, wasm: Fixture, fields: dict[str, object], field: str
    ) -> None:
        with pytest.raises(InvalidRequest) as info:
            await executor.start(run(wasm, "hello", **fields))
        assert info.value.field == field

    async def test_warns_about_limits_it_does_not_enforce(
        self, executor: WasmExecutor, wasm: Fixture
    ) -> None:
        info = await executor.start(run(wasm, "hello", limits=Limits(cpu_time=SECOND)))
        assert info.warnings == ("limits.cpu_time is not enforced by the wasm executor",)


class TestModuleCache:
    """Compiled modules are reused by content hash, and the cache stays within its budget."""

    async def test_a_second_run_of_the_same_module_hits_the_cache(
        self, work_dir: Path, wasm: Fixture
    ) -> None:
        cache = ModuleCache()
        async with WasmExecutor(work_dir, cache=cache) as executor:
            for index in range(3):
                await executor.start(run(wasm, "hello", f"h{index}"))
                await executor.wait(f"h{index}")
        assert (cache.misses, cache.hits) == (1, 2)

    def test_fuel_and_no_fuel_compile_separately(self, wasm: Fixture) -> None:
        cache = ModuleCache()
        module = wasm("trap").read_bytes()
        cache.compiled(module, fuel=False)
        cache.compiled(module, fuel=True)
        assert len(cache) == 2

    def test_least_recently_used_entries_are_dropped(self, wasm: Fixture) -> None:
        modules = [wasm(name).read_bytes() for name in ("trap", "loop", "memory_hog")]
        one = len(ModuleCache().compiled(modules[0], fuel=False))
        cache = ModuleCache(max_bytes=one * 2 + one // 2)
        for module in modules:
            cache.compiled(module, fuel=False)
        assert len(cache) == 2
        cache.compiled(modules[0], fuel=False)
        assert cache.misses == 4


async def test_a_slow_guest_does_not_delay_a_timer(work_dir: Path, wasm: Fixture) -> None:
    async with WasmExecutor(work_dir) as executor:
        await executor.start(run(wasm, "loop", limits=Limits(timeout=30 * SECOND)))
        with anyio.fail_after(10):
            await anyio.sleep(0.01)
        await executor.cancel("w1")
