"""The process executor with real processes: environment, sandbox, limits, cancel, group kills."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import msgspec
import pytest

from dms.executor import (
    ExecutionRequest,
    ExecutionStatus,
    InvalidRequest,
    Limits,
    LogStream,
    NetworkMode,
    ProcessProgram,
    Reason,
    StartFailed,
    proc,
)
from dms.executor.cgroups import Cgroup
from dms.executor.process import ProcessExecutor
from dms.executor.sandbox import SandboxMode

from .conftest import read_bytes, read_text

SECOND = 10**9
MIB = 1024**2
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
EXTRA_PATHS = () if PYTHON.startswith("/usr/") else (sys.base_prefix,)
"""What the sandbox must also show for PYTHON to run inside it."""


def command(*argv: str, execution_id: str = "p1", **fields: object) -> ExecutionRequest:
    return ExecutionRequest(id=execution_id, program=ProcessProgram(argv=argv), **fields)  # type: ignore[arg-type]


def sh(script: str, execution_id: str = "p1", **fields: object) -> ExecutionRequest:
    return command("/bin/sh", "-c", script, execution_id=execution_id, **fields)


@pytest.fixture
async def executor(work_dir: Path) -> AsyncIterator[ProcessExecutor]:
    async with ProcessExecutor(work_dir, read_only_paths=EXTRA_PATHS) as running:
        yield running


@pytest.fixture
async def plain(work_dir: Path) -> AsyncIterator[ProcessExecutor]:
    """No sandbox and no cgroups: only sessions, process groups and rlimits."""
    async with ProcessExecutor(work_dir, sandbox=SandboxMode.OFF, cgroups=False) as running:
        yield running


@pytest.fixture
async def sandboxed(work_dir: Path) -> AsyncIterator[ProcessExecutor]:
    async with ProcessExecutor(work_dir) as running:
        if not running.bwrap:
            pytest.skip(f"bubblewrap unavailable: {running.sandbox_reason}")
        yield running


def alive(pid: int) -> bool:
    found = proc.stat(pid)
    return found is not None and found.state != "Z"


class TestCommands:
    """Exit codes, output, stdin, folders, and an environment that holds only the request's."""

    async def test_reports_exit_code_stdout_and_stderr(self, executor: ProcessExecutor) -> None:
        await executor.start(sh("echo out; echo err >&2; exit 3"))
        result = await executor.wait("p1")
        assert (result.status, result.reason, result.exit_code) == (
            ExecutionStatus.FAILED,
            Reason.EXITED,
            3,
        )
        assert await read_text(result.stdout_path) == "out\n"
        assert await read_text(result.stderr_path) == "err\n"
        assert result.usage.cpu_time > 0

    @pytest.mark.parametrize("mode", [SandboxMode.OFF, SandboxMode.AUTO], ids=["plain", "sandbox"])
    async def test_the_environment_holds_only_what_the_request_gives(
        self, work_dir: Path, mode: SandboxMode
    ) -> None:
        async with ProcessExecutor(work_dir, sandbox=mode) as executor:
            await executor.start(command("/usr/bin/env", env=(("ONLY", "this"),)))
            result = await executor.wait("p1")
        assert await read_text(result.stdout_path) == "ONLY=this\n"

    async def test_gpus_are_named_to_the_command(self, executor: ProcessExecutor) -> None:
        await executor.start(command("/usr/bin/env", gpus=("0", "2")))
        result = await executor.wait("p1")
        assert await read_text(result.stdout_path) == "CUDA_VISIBLE_DEVICES=0,2\n"

    async def test_feeds_stdin(self, executor: ProcessExecutor) -> None:
        await executor.start(command("cat", stdin=b"to stdin\n"))
        result = await executor.wait("p1")
        assert await read_bytes(result.stdout_path) == b"to stdin\n"

    async def test_runs_in_its_own_work_folder_by_default(
        self, executor: ProcessExecutor, work_dir: Path
    ) -> None:
        await executor.start(command("pwd"))
        result = await executor.wait("p1")
        assert await read_text(result.stdout_path) == f"{work_dir / 'p1' / 'work'}\n"

    async def test_runs_in_the_requested_working_folder(
        self, executor: ProcessExecutor, tmp_path: Path
    ) -> None:
        await executor.start(command("pwd", working_dir=str(tmp_path)))
        result = await executor.wait("p1")
        assert await read_text(result.stdout_path) == f"{tmp_path}\n"

    async def test_a_missing_working_folder_is_refused(
        self, executor: ProcessExecutor, tmp_path: Path
    ) -> None:
        with pytest.raises(InvalidRequest, match="working_dir"):
            await executor.start(command("pwd", working_dir=str(tmp_path / "nope")))

    async def test_an_unknown_command_fails_to_start(self, executor: ProcessExecutor) -> None:
        with pytest.raises(StartFailed, match="command not found: 'no-such-command-here'"):
            await executor.start(command("no-such-command-here"))
        assert executor.status("p1").status is ExecutionStatus.FAILED

    async def test_commands_are_looked_up_on_the_requests_path(
        self, executor: ProcessExecutor, tmp_path: Path
    ) -> None:
        tool = tmp_path / "bin" / "mytool"
        tool.parent.mkdir()
        tool.write_text("#!/bin/sh\necho mine\n")
        tool.chmod(0o755)
        request = command("mytool", env=(("PATH", f"{tool.parent}:/usr/bin:/bin"),))
        async with ProcessExecutor(tmp_path / "w", read_only_paths=(str(tool.parent),)) as ex:
            await ex.start(request)
            result = await ex.wait("p1")
        assert await read_text(result.stdout_path) == "mine\n"


class TestSandbox:
    """Inside bubblewrap: read-only input, writable output, no host secrets, no network."""

    async def test_input_is_read_only_and_output_writable(
        self, sandboxed: ProcessExecutor, tmp_path: Path
    ) -> None:
        inside, outside = tmp_path / "in", tmp_path / "out"
        inside.mkdir()
        (inside / "a.txt").write_text("data")
        script = f"cp {inside}/a.txt {outside}/copy.txt; touch {inside}/new 2>/dev/null || echo ro"
        await sandboxed.start(sh(script, input_dir=str(inside), output_dir=str(outside)))
        result = await sandboxed.wait("p1")
        assert await read_text(result.stdout_path) == "ro\n"
        assert (outside / "copy.txt").read_text() == "data"
        assert not (inside / "new").exists()

    async def test_the_host_outside_the_mapped_folders_is_hidden(
        self, sandboxed: ProcessExecutor, tmp_path: Path
    ) -> None:
        secret = tmp_path / "secret.key"
        secret.write_text("do not read")
        await sandboxed.start(sh(f"cat {secret} || echo hidden"))
        result = await sandboxed.wait("p1")
        assert await read_text(result.stdout_path) == "hidden\n"
        assert result.warnings == ()
        assert sandboxed.status("p1").sandboxed

    async def test_network_none_leaves_only_loopback(self, sandboxed: ProcessExecutor) -> None:
        await sandboxed.start(sh("tail -n +3 /proc/net/dev | cut -d: -f1"))
        result = await sandboxed.wait("p1")
        assert (await read_text(result.stdout_path)).split() == ["lo"]

    async def test_network_bridge_shares_the_hosts_network(
        self, sandboxed: ProcessExecutor
    ) -> None:
        request = sh("tail -n +3 /proc/net/dev | cut -d: -f1", network=NetworkMode.BRIDGE)
        await sandboxed.start(request)
        result = await sandboxed.wait("p1")
        lines = (await read_text("/proc/net/dev")).splitlines()[2:]
        host = {line.split(":")[0].strip() for line in lines}
        assert set((await read_text(result.stdout_path)).split()) == host

    async def test_without_a_sandbox_network_none_is_a_warning(
        self, plain: ProcessExecutor
    ) -> None:
        info = await plain.start(command("true"))
        assert any("network none is not enforced" in w for w in info.warnings)


class TestLimits:
    """Limits are really enforced: memory, CPU time, file size, open files, processes."""

    async def test_the_timeout_kills_the_whole_process_group(self, plain: ProcessExecutor) -> None:
        await plain.start(sh("sleep 300 & echo $!; sleep 300", limits=Limits(timeout=SECOND // 2)))
        result = await plain.wait("p1")
        grandchild = int(await read_text(result.stdout_path))
        assert (result.status, result.reason) == (ExecutionStatus.TIMED_OUT, Reason.TIMEOUT)
        assert result.killed
        assert not alive(grandchild)

    async def test_leftovers_are_killed_when_the_command_exits(
        self, plain: ProcessExecutor
    ) -> None:
        await plain.start(sh("sleep 300 & echo $!"))
        result = await plain.wait("p1")
        assert result.status is ExecutionStatus.SUCCEEDED
        assert not alive(int(await read_text(result.stdout_path)))

    async def test_the_memory_hog_is_killed_by_its_cgroup(self, executor: ProcessExecutor) -> None:
        if "memory" not in executor.cgroups.controllers:
            pytest.skip(f"no memory cgroup here: {executor.cgroups.reason}")
        hog = "x = bytearray(400 * 2**20); print(len(x))"
        await executor.start(command(PYTHON, "-c", hog, limits=Limits(memory=64 * MIB)))
        result = await executor.wait("p1")
        assert (result.status, result.reason) == (ExecutionStatus.FAILED, Reason.MEMORY_LIMIT)
        assert result.usage.peak_memory <= 64 * MIB
        assert await read_text(result.stdout_path) == ""

    async def test_without_cgroups_memory_is_an_address_space_limit(
        self, plain: ProcessExecutor
    ) -> None:
        hog = "x = bytearray(400 * 2**20); print(len(x))"
        info = await plain.start(command(PYTHON, "-c", hog, limits=Limits(memory=200 * MIB)))
        result = await plain.wait("p1")
        assert result.exit_code == 1
        assert "MemoryError" in await read_text(result.stderr_path)
        assert any("address-space" in w for w in info.warnings)

    @pytest.mark.slow
    async def test_cpu_time_is_limited(self, plain: ProcessExecutor) -> None:
        spin = command(PYTHON, "-c", "while True: pass", limits=Limits(cpu_time=SECOND))
        await plain.start(spin)
        result = await plain.wait("p1")
        assert (result.status, result.reason) == (ExecutionStatus.FAILED, Reason.CPU_LIMIT)
        assert result.signal == signal.SIGXCPU

    async def test_file_size_is_limited(self, executor: ProcessExecutor) -> None:
        writer = command(
            "dd", "if=/dev/zero", "of=big", "bs=1024", "count=100", limits=Limits(file_size=10_000)
        )
        await executor.start(writer)
        result = await executor.wait("p1")
        assert result.reason is Reason.FILE_SIZE_LIMIT
        assert (executor.work_dir / "p1" / "work" / "big").stat().st_size <= 10_000  # type: ignore[operator]

    async def test_open_files_are_limited(self, executor: ProcessExecutor) -> None:
        await executor.start(sh("ulimit -n", limits=Limits(open_files=64)))
        result = await executor.wait("p1")
        assert await read_text(result.stdout_path) == "64\n"

    async def test_cores_become_a_cpu_quota(self, executor: ProcessExecutor) -> None:
        if "cpu" not in executor.cgroups.controllers:
            pytest.skip(f"no cpu cgroup here: {executor.cgroups.reason}")
        info = await executor.start(command("sleep", "30", limits=Limits(cores=0.5)))
        cgroup = Cgroup.from_paths(info.handles.cgroups)
        quota = cgroup.by_controller["cpu"]
        values = (
            (quota / "cpu.cfs_quota_us").read_text()
            if "cpu" in cgroup.by_controller
            else (quota / "cpu.max").read_text()
        )
        await executor.cancel("p1")
        assert values.split()[0] == "50000"

    async def test_a_fork_bomb_is_contained_and_killed(self, work_dir: Path) -> None:
        async with ProcessExecutor(work_dir, sandbox=SandboxMode.OFF) as executor:
            if "pids" not in executor.cgroups.controllers:
                pytest.skip(
                    f"no pids cgroup here (a fork bomb would not be contained): "
                    f"{executor.cgroups.reason}"
                )
            bomb = sh("b() { b | b & }; b; sleep 300", limits=Limits(pids=40, timeout=SECOND))
            info = await executor.start(bomb)
            result = await executor.wait("p1")
        assert (result.status, result.reason) == (ExecutionStatus.TIMED_OUT, Reason.TIMEOUT)
        assert "fork" in (await read_text(result.stderr_path)).lower()
        assert proc.group_members(info.handles.pgid) == []
        folders = Cgroup.from_paths(info.handles.cgroups).by_controller.values()
        assert not any([await anyio.Path(folder).exists() for folder in folders])


class TestControl:
    """Cancel, concurrency, logs, shutdown and the thread fallback for waiting."""

    async def test_cancel_kills_a_running_command(self, plain: ProcessExecutor) -> None:
        info = await plain.start(command("sleep", "300"))
        assert alive(info.handles.pid)
        result = await plain.cancel("p1")
        assert (result.status, result.signal) == (ExecutionStatus.CANCELLED, 9)
        assert not alive(info.handles.pid)

    async def test_runs_executions_concurrently(self, executor: ProcessExecutor) -> None:
        for index in range(6):
            await executor.start(sh(f"sleep 0.2; exit {index}", execution_id=f"c{index}"))
        codes = [(await executor.wait(f"c{index}")).exit_code for index in range(6)]
        assert codes == list(range(6))

    async def test_follow_streams_output_as_it_comes(self, executor: ProcessExecutor) -> None:
        await executor.start(sh("echo first; sleep 0.3; echo second >&2"))
        chunks = [chunk async for chunk in executor.logs("p1", follow=True)]
        assert chunks[0].stream is LogStream.STDOUT and chunks[0].data == b"first\n"
        assert (chunks[-1].stream, chunks[-1].data) == (LogStream.STDERR, b"second\n")

    async def test_leaving_the_executor_kills_what_runs(self, work_dir: Path) -> None:
        async with ProcessExecutor(work_dir, sandbox=SandboxMode.OFF) as executor:
            info = await executor.start(command("sleep", "300"))
        assert executor.status("p1").status is ExecutionStatus.CANCELLED
        assert not alive(info.handles.pid)

    async def test_waiting_works_without_pidfds(self, work_dir: Path) -> None:
        async with ProcessExecutor(work_dir, sandbox=SandboxMode.OFF, cgroups=False) as executor:
            executor._pidfd = False
            await executor.start(sh("exit 4"))
            await executor.start(command("sleep", "300", execution_id="p2"))
            assert (await executor.wait("p1")).exit_code == 4
            assert (await executor.cancel("p2")).status is ExecutionStatus.CANCELLED

    async def test_a_state_file_records_how_to_find_the_process(
        self, executor: ProcessExecutor, work_dir: Path
    ) -> None:
        info = await executor.start(command("sleep", "300"))
        on_disk = msgspec.json.decode((work_dir / "p1" / "state.json").read_bytes())
        await executor.cancel("p1")
        assert on_disk["handles"]["pid"] == info.handles.pid == info.handles.pgid
        assert on_disk["handles"]["node_pid"] == os.getpid()
        assert on_disk["status"] == "running"


async def test_output_pipes_do_not_block_on_large_output(executor: ProcessExecutor) -> None:
    await executor.start(command("head", "-c", "3000000", "/dev/zero", limits=Limits(output=MIB)))
    with anyio.fail_after(30):
        result = await executor.wait("p1")
    assert result.stdout_bytes == 3_000_000
    assert result.stdout_truncated
