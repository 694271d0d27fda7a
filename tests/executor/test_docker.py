"""The docker executor against a real Docker-compatible API (podman's service in CI)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import msgspec
import pytest

from dms.executor import (
    DockerProgram,
    ExecutionInfo,
    ExecutionRequest,
    ExecutionStatus,
    Handles,
    InvalidRequest,
    Limits,
    LogStream,
    PullPolicy,
    Reason,
    StartFailed,
)
from dms.executor.docker import LABEL_EXECUTION, LABEL_WORK, DockerExecutor
from dms.types.jobs import ExecutorType

from .conftest import read_text
from .engine import Engine

SECOND = 10**9
MIB = 1024**2

pytestmark = pytest.mark.slow


def container(
    engine: Engine, *cmd: str, execution_id: str = "d1", **fields: object
) -> ExecutionRequest:
    entrypoint = fields.pop("entrypoint", None)
    program = DockerProgram(
        image=engine.image, cmd=cmd, entrypoint=entrypoint, pull=PullPolicy.NEVER
    )  # type: ignore[arg-type]
    return ExecutionRequest(id=execution_id, program=program, **fields)  # type: ignore[arg-type]


@pytest.fixture
async def executor(engine: Engine, work_dir: Path) -> AsyncIterator[DockerExecutor]:
    async with DockerExecutor(
        work_dir, base_url=engine.base_url, ulimits=engine.ulimits, stats_interval=0.2
    ) as running:
        yield running


def labelled(engine: Engine, executor: DockerExecutor) -> list[str]:
    client = docker.DockerClient(base_url=engine.base_url)
    try:
        found = client.containers.list(
            all=True, filters={"label": f"{LABEL_WORK}={executor.work_label}"}
        )
        return [c.name for c in found]
    finally:
        client.close()


class TestContainers:
    """Commands, output, environment, folders, and containers removed afterwards."""

    async def test_reports_exit_code_output_and_env(
        self, engine: Engine, executor: DockerExecutor
    ) -> None:
        script = 'echo "out $GREETING"; echo err >&2; exit 3'
        await executor.start(container(engine, "sh", "-c", script, env=(("GREETING", "hi"),)))
        result = await executor.wait("d1")
        assert (result.status, result.reason, result.exit_code) == (
            ExecutionStatus.FAILED,
            Reason.EXITED,
            3,
        )
        assert await read_text(result.stdout_path) == "out hi\n"
        assert await read_text(result.stderr_path) == "err\n"
        assert labelled(engine, executor) == []

    async def test_entrypoint_cmd_args_and_working_dir(
        self, engine: Engine, executor: DockerExecutor
    ) -> None:
        request = container(
            engine,
            "-c",
            'pwd; echo "$@"',
            "sh",
            entrypoint=("/bin/sh",),
            args=("one", "two"),
            working_dir="/tmp",
        )
        await executor.start(request)
        result = await executor.wait("d1")
        assert await read_text(result.stdout_path) == "/tmp\none two\n"

    async def test_mounts_input_read_only_and_output_writable(
        self, engine: Engine, executor: DockerExecutor, tmp_path: Path
    ) -> None:
        inside, outside = tmp_path / "in", tmp_path / "out"
        inside.mkdir()
        outside.mkdir()
        outside.chmod(0o777)
        (inside / "a.txt").write_text("payload")
        script = "cp /input/a.txt /output/b.txt; touch /input/new 2>/dev/null || echo read-only"
        request = container(
            engine, "sh", "-c", script, input_dir=str(inside), output_dir=str(outside)
        )
        await executor.start(request)
        result = await executor.wait("d1")
        assert await read_text(result.stdout_path) == "read-only\n"
        assert await read_text(outside / "b.txt") == "payload"

    async def test_follow_streams_the_logs(self, engine: Engine, executor: DockerExecutor) -> None:
        await executor.start(container(engine, "sh", "-c", "echo one; sleep 0.3; echo two"))
        chunks = [c async for c in executor.logs("d1", follow=True)]
        assert b"".join(c.data for c in chunks if c.stream is LogStream.STDOUT) == b"one\ntwo\n"

    async def test_samples_memory_while_it_runs(
        self, engine: Engine, executor: DockerExecutor
    ) -> None:
        await executor.start(container(engine, "sleep", "1"))
        result = await executor.wait("d1")
        assert result.status is ExecutionStatus.SUCCEEDED
        assert result.usage.peak_memory > 0


class TestLimitsAndControl:
    """Timeouts and cancel kill the container; the memory limit is enforced."""

    async def test_the_timeout_kills_the_container(
        self, engine: Engine, executor: DockerExecutor
    ) -> None:
        await executor.start(container(engine, "sleep", "300", limits=Limits(timeout=SECOND)))
        result = await executor.wait("d1")
        assert (result.status, result.reason) == (ExecutionStatus.TIMED_OUT, Reason.TIMEOUT)
        assert labelled(engine, executor) == []

    async def test_cancel_kills_the_container(
        self, engine: Engine, executor: DockerExecutor
    ) -> None:
        info = await executor.start(container(engine, "sleep", "300"))
        assert info.handles.container_id
        result = await executor.cancel("d1")
        assert result.status is ExecutionStatus.CANCELLED
        assert labelled(engine, executor) == []

    async def test_the_memory_hog_is_killed_at_the_limit(
        self, engine: Engine, executor: DockerExecutor
    ) -> None:
        hog = "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo ${#x}"
        await executor.start(container(engine, "sh", "-c", hog, limits=Limits(memory=32 * MIB)))
        result = await executor.wait("d1")
        assert (result.status, result.reason) == (ExecutionStatus.FAILED, Reason.MEMORY_LIMIT)
        assert await read_text(result.stdout_path) == ""

    async def test_the_pids_limit_is_enforced(
        self, engine: Engine, executor: DockerExecutor
    ) -> None:
        spawn = "for i in $(seq 30); do sleep 5 & done; echo spawned"
        await executor.start(container(engine, "sh", "-c", spawn, limits=Limits(pids=10)))
        result = await executor.wait("d1")
        assert "spawned" not in await read_text(result.stdout_path), result
        assert "can't fork" in await read_text(result.stderr_path)


class TestRefusals:
    """What cannot run fails clearly."""

    async def test_a_missing_image_with_pull_never_fails_to_start(
        self, engine: Engine, executor: DockerExecutor
    ) -> None:
        program = DockerProgram(image="localhost/no-such-image:1", pull=PullPolicy.NEVER)
        with pytest.raises(StartFailed, match="not on this machine"):
            await executor.start(ExecutionRequest(id="d1", program=program))

    async def test_stdin_is_refused(self, engine: Engine, executor: DockerExecutor) -> None:
        with pytest.raises(InvalidRequest, match="stdin"):
            await executor.start(container(engine, "cat", stdin=b"x"))


class TestCleanup:
    """Containers an earlier node left are found by label and state file, killed and removed."""

    async def test_cleanup_removes_leftover_containers(
        self, engine: Engine, work_dir: Path
    ) -> None:
        executor = DockerExecutor(work_dir, base_url=engine.base_url, ulimits=engine.ulimits)
        client = docker.DockerClient(base_url=engine.base_url)
        ulimits = [
            docker.types.Ulimit(name=n, soft=s, hard=h) for n, (s, h) in engine.ulimits.items()
        ]
        try:
            started = []
            for name in ("old", "stray"):
                leftover = client.containers.run(
                    engine.image,
                    ["sleep", "300"],
                    name=f"dms-{name}-{time.time_ns()}",
                    labels={LABEL_EXECUTION: name, LABEL_WORK: executor.work_label},
                    network_mode="none",
                    ulimits=ulimits,
                    detach=True,
                )
                started.append(leftover)
            state = ExecutionInfo(
                id="old",
                executor=ExecutorType.DOCKER,
                status=ExecutionStatus.RUNNING,
                created_at=1,
                started_at=2,
                handles=Handles(container_id=started[0].id),
            )
            (work_dir / "old").mkdir(parents=True)
            (work_dir / "old" / "state.json").write_bytes(msgspec.json.encode(state))
            async with executor:
                report = await executor.cleanup()
                assert executor.status("old").status is ExecutionStatus.LOST
        finally:
            client.close()
        assert (report.lost, report.killed) == (("old",), ("old",))
        assert report.removed == (started[1].name,)
        assert labelled(engine, executor) == []
