"""Health probes against real sockets, a real HTTP server and real processes (real time)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream

from dms.actor import Empty
from dms.executor import ExecutorRegistry, ProcessProgram
from dms.executor.process import ProcessExecutor
from dms.jobs.protocol import (
    ALLOCATION_STATUS,
    ALLOCATION_STOP,
    AllocationManifest,
    AllocationState,
    PortBinding,
    StopRequest,
)
from dms.jobs.provider import (
    CommandProbe,
    HealthProbe,
    HealthResult,
    HttpProbe,
    InvalidManifest,
    ScriptedProbe,
    TcpProbe,
    probe_for,
)
from dms.jobs.spec import HealthCheck
from dms.jobs.status import AllocationStatus
from dms.types import ExecutorType, new_id
from dms.types.quantity import Duration
from tests.jobs.provider.harness import allocation_spec, cluster, requirement

SECOND = 10**9


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[int]]]:
    """A tiny HTTP server on 127.0.0.1; answers each request with the next status in the list."""
    statuses = [200]

    async def serve(stream: SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                try:
                    request += await stream.receive()
                except anyio.EndOfStream:
                    return  # a tcp check: connect and go
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            await stream.send(
                f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
            )

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield port, statuses
        tg.cancel_scope.cancel()


async def closed_port() -> int:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    return port


class TestTcpAndHttp:
    """A connection (tcp) or a status below 400 (http) is healthy."""

    async def test_tcp_is_healthy_when_something_listens(
        self, server: tuple[int, list[int]]
    ) -> None:
        port, _ = server
        assert (await TcpProbe(port, 2.0).check()).healthy

    async def test_tcp_is_unhealthy_when_nothing_listens(self) -> None:
        result = await TcpProbe(await closed_port(), 2.0).check()
        assert not result.healthy and "tcp 127.0.0.1" in result.detail

    async def test_http_follows_the_status_code(self, server: tuple[int, list[int]]) -> None:
        port, statuses = server
        statuses[:] = [200, 503, 204]
        probe = HttpProbe(f"http://127.0.0.1:{port}/health", 2.0)
        answers = [(await probe.check()).healthy for _ in range(3)]
        assert answers == [True, False, True]

    async def test_http_is_unhealthy_when_nothing_listens(self) -> None:
        result = await HttpProbe(f"http://127.0.0.1:{await closed_port()}/", 2.0).check()
        assert not result.healthy and "GET" in result.detail

    def test_a_path_is_probed_on_the_public_port_bound_to_the_private_one(self) -> None:
        check = HealthCheck(type="http", url="/ready", port=8080)
        probe = probe_for(
            check,
            executor=ExecutorType.PROCESS,
            executors=ExecutorRegistry([]),
            ports={8080: 20005},
            prefix="a",
        )
        assert isinstance(probe, HttpProbe) and probe.url == "http://127.0.0.1:20005/ready"

    @pytest.mark.parametrize(
        "url", ["http://example.com/health", "ftp://127.0.0.1/x", "http://10.0.0.1:80/"]
    )
    def test_only_this_machine_may_be_probed(self, url: str) -> None:
        with pytest.raises(InvalidManifest, match=r"healthcheck\.url"):
            probe_for(
                HealthCheck(type="http", url=url),
                executor=ExecutorType.PROCESS,
                executors=ExecutorRegistry([]),
                ports={},
                prefix="a",
            )


class TestCommands:
    """A command check runs as a workload; exit code 0 is healthy."""

    @pytest.mark.parametrize(("command", "healthy"), [("true", True), ("false", False)])
    async def test_a_command_checks_through_the_process_executor(
        self, tmp_path: Path, command: str, healthy: bool
    ) -> None:
        registry = ExecutorRegistry([ProcessExecutor(tmp_path / "process")])
        async with registry:
            probe = CommandProbe(registry, ProcessProgram(argv=(command,)), "a1.health", 5 * SECOND)
            assert [(await probe.check()).healthy for _ in range(2)] == [healthy, healthy]
            assert registry.list() == ()

    @pytest.mark.slow
    async def test_a_command_that_hangs_is_unhealthy_after_the_timeout(
        self, tmp_path: Path
    ) -> None:
        registry = ExecutorRegistry([ProcessExecutor(tmp_path / "process")])
        async with registry:
            probe = probe_for(
                HealthCheck(command=("sleep", "30"), timeout=Duration(SECOND // 5)),
                executor=ExecutorType.PROCESS,
                executors=registry,
                ports={},
                prefix="a2.health",
            )
            result = await probe.check()
            assert not result.healthy and "timed out" in result.detail


class TestFake:
    """The scripted probe answers from its script, the last answer repeating."""

    async def test_the_script_is_followed(self) -> None:
        probe = ScriptedProbe([True, False])
        assert [(await probe.check()).healthy for _ in range(4)] == [True, False, False, False]
        assert probe.checks == 4


PORT_SPEC = """
type: service
executor: process
resources: {cpu: 0.5, ram: 256MiB}
execution:
  command: [sh, -c, "echo ok > index.html && exec busybox httpd -f -p 127.0.0.1:$DMS_PORT_8080 -h ."]
healthcheck: {type: http, url: /, port: 8080, interval: 200ms, timeout: 1s, retries: 2}
"""


class Counting:
    """Wraps a probe; counts its answers and wakes a waiter after each."""

    def __init__(self, probe: HealthProbe) -> None:
        self.probe = probe
        self.answers: list[bool] = []
        self.changed = anyio.Event()

    async def check(self) -> HealthResult:
        result = await self.probe.check()
        self.answers.append(result.healthy)
        self.changed.set()
        self.changed = anyio.Event()
        return result


@pytest.mark.slow
class TestRealService:
    """A real process service behind a bound port passes its http check until stopped."""

    async def test_a_process_service_is_reachable_on_its_public_port(self, tmp_path: Path) -> None:
        if shutil.which("busybox") is None:
            pytest.skip("busybox is not installed")
        spec = allocation_spec(PORT_SPEC)
        async with cluster(
            tmp_path, executors=[ProcessExecutor(tmp_path / "process")], inline_db=False
        ) as c:
            bid = await c.bid(requirement(spec))
            committed = await c.commit(
                bid, "s1", ports=(PortBinding(allocation="web", private=8080),)
            )
            (binding,) = committed.ports
            manifest = AllocationManifest(
                allocation_id=new_id("a"), name="web", spec=spec, ports=committed.ports
            )
            handle = (await c.allocate("s1", manifest)).handles[manifest.allocation_id]
            allocation = c.service.allocation(manifest.allocation_id)
            assert allocation is not None and isinstance(allocation.probe, HttpProbe)
            assert allocation.probe.url == f"http://127.0.0.1:{binding.public}/"
            counting = allocation.probe = Counting(allocation.probe)
            await c.start(handle)
            with anyio.fail_after(20):
                while sum(counting.answers) < 5:
                    await counting.changed.wait()
            state = await c.orchestrator.invoke(handle, ALLOCATION_STATUS, Empty(), AllocationState)
            assert (state.status, state.restarts) == (AllocationStatus.RUNNING, 0), state.detail
            stopped = await c.orchestrator.invoke(
                handle, ALLOCATION_STOP, StopRequest(reason="done"), AllocationState
            )
            assert stopped.status is AllocationStatus.STOPPED
            assert await c.free_is_onboarded()
