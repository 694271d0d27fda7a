"""The registry: one executor per type, WASM by default, optional ones left out with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from dms.executor import (
    DockerProgram,
    ExecutionRequest,
    ExecutionStatus,
    ExecutorRegistry,
    ExecutorUnavailable,
    Limits,
    NetworkMode,
    NullExecutor,
    NullProgram,
)
from dms.executor.docker import DockerExecutor
from dms.types.jobs import ExecutorType


class TestRouting:
    """Requests go to the executor of their program's type."""

    async def test_starts_on_the_matching_executor_and_finds_it_again(self) -> None:
        null = NullExecutor()
        async with ExecutorRegistry([null], default=ExecutorType.NULL) as registry:
            await registry.start(ExecutionRequest(id="a", program=NullProgram()))
            assert registry.find("a") is null
            assert registry.find("missing") is None
            await null.wait("a")
            assert not await registry.is_alive("a")
            assert [info.status for info in registry.list()] == [ExecutionStatus.SUCCEEDED]

    async def test_is_alive_while_an_execution_runs(self, autojump_clock: object) -> None:
        async with ExecutorRegistry([NullExecutor()], default=ExecutorType.NULL) as registry:
            await registry.start(ExecutionRequest(id="a", program=NullProgram(duration=60 * 10**9)))
            assert await registry.is_alive("a")
            assert not await registry.is_alive("b")

    async def test_an_executor_type_not_running_is_unavailable_naming_the_others(self) -> None:
        async with ExecutorRegistry([NullExecutor()]) as registry:
            with pytest.raises(ExecutorUnavailable, match="available: null"):
                registry.get(ExecutorType.WASM)

    async def test_cleanup_runs_for_every_executor(self, tmp_path: Path) -> None:
        async with ExecutorRegistry.for_node(tmp_path, docker=False) as registry:
            reports = await registry.cleanup()
        assert set(reports) == {ExecutorType.WASM, ExecutorType.PROCESS, ExecutorType.NULL}


class TestUnavailableDocker:
    """Without a reachable Docker API the node still starts, without the docker executor."""

    async def test_an_unreachable_api_makes_the_executor_unavailable(self, tmp_path: Path) -> None:
        executor = DockerExecutor(tmp_path, base_url=f"unix://{tmp_path}/missing.sock")
        with pytest.raises(ExecutorUnavailable, match="cannot reach the Docker API"):
            async with executor:
                pass

    async def test_the_registry_leaves_out_an_unreachable_docker(self, tmp_path: Path) -> None:
        registry = ExecutorRegistry.for_node(tmp_path, docker_url=f"unix://{tmp_path}/missing.sock")
        async with registry:
            assert ExecutorType.DOCKER not in registry.available()
            assert registry.get().kind is ExecutorType.WASM
            with pytest.raises(ExecutorUnavailable, match="cannot reach"):
                registry.get(ExecutorType.DOCKER)


class TestDockerOptions:
    """The container options built from a request (no engine needed)."""

    def test_limits_mounts_network_and_gpus_become_container_options(self, tmp_path: Path) -> None:
        executor = DockerExecutor(tmp_path, ulimits={"nproc": (1000, 1000)})
        request = ExecutionRequest(
            id="g1",
            program=DockerProgram(image="cuda:12", cmd=("nvidia-smi",), entrypoint=("/bin/sh",)),
            args=("-L",),
            env=(("A", "1"),),
            working_dir="/work",
            input_dir=str(tmp_path),
            output_dir=str(tmp_path / "out"),
            limits=Limits(memory=2**30, cores=1.5, pids=64, open_files=256, cpu_time=2 * 10**9),
            network=NetworkMode.BRIDGE,
            gpus=("0", "GPU-1234"),
        )
        assert isinstance(request.program, DockerProgram)
        options = executor._create_options(request, request.program)
        assert options["command"] == ["nvidia-smi", "-L"]
        assert options["entrypoint"] == ["/bin/sh"]
        assert options["environment"] == {"A": "1"}
        assert options["working_dir"] == "/work"
        assert options["network_mode"] == "bridge"
        assert (options["mem_limit"], options["memswap_limit"]) == (2**30, 2**30)
        assert options["nano_cpus"] == 1_500_000_000
        assert options["pids_limit"] == 64
        assert options["labels"]["dms.execution"] == "g1"
        assert options["volumes"] == {
            str(tmp_path): {"bind": "/input", "mode": "ro"},
            str(tmp_path / "out"): {"bind": "/output", "mode": "rw"},
        }
        ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in options["ulimits"]}
        assert ulimits == {"nproc": (1000, 1000), "nofile": (256, 256), "cpu": (2, 3)}
        (device,) = options["device_requests"]
        assert device["Driver"] == "nvidia"
        assert device["DeviceIDs"] == ["0", "GPU-1234"]
        assert device["Capabilities"] == [["gpu"]]
