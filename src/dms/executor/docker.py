"""The docker executor: containers through the Docker API (Docker itself or podman's service).

The client talks to ``base_url`` if given, else ``DOCKER_HOST``, else the default socket. Every
API call is blocking and runs in a worker thread. A container is named
``dms-<work label>-<execution id>`` and labelled with its execution id and the work label (a hash
of this executor's work folder), so ``cleanup`` finds
(and kills, and removes) what an earlier node process left. Output is streamed into capped files
while the container runs; memory and CPU are sampled from the stats endpoint every
``stats_interval`` seconds (peak memory is the highest sample, so short runs may report 0).

Limits: ``memory`` (no swap), ``cores`` (nano CPUs), ``pids``, ``open_files``, ``file_size`` and
``cpu_time`` (ulimits), ``timeout`` (kill). ``network`` is ``none`` unless asked. ``gpus`` become
an NVIDIA device request. ``input_dir`` and ``output_dir`` are mounted at ``/input`` (read-only)
and ``/output``. stdin is not supported: pass input through ``input_dir``.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import docker
import docker.errors
import docker.types
from docker.models.containers import Container

from dms.executor.base import (
    DockerProgram,
    ExecutionInfo,
    ExecutionRequest,
    Handles,
    PullPolicy,
    Reason,
    ResourceUsage,
)
from dms.executor.core import Execution, ExecutorBase, Outcome, Started
from dms.executor.errors import ExecutorUnavailable, InvalidRequest, StartFailed
from dms.executor.output import Sink
from dms.types.jobs import ExecutorType

LABEL_EXECUTION = "dms.execution"
LABEL_WORK = "dms.work"
INPUT_MOUNT = "/input"
OUTPUT_MOUNT = "/output"
PUMP_GRACE_S = 5.0
"""How long log streams may run on after the container ended."""
OOM_EXIT_CODE = 137
LONG_CALLS = 4096
"""Threads that may block on waits and log streams (three per running container)."""


_API_FAILURES = (docker.errors.DockerException, OSError, ValueError)
"""What the SDK raises: its own errors, transport errors (requests' are OSErrors), bad JSON."""


class _Ended(NamedTuple):
    code: int
    oom_killed: bool
    usage: ResourceUsage


class DockerExecutor(ExecutorBase):
    kind = ExecutorType.DOCKER

    def __init__(
        self,
        work_dir: Path | str,
        *,
        base_url: str | None = None,
        ulimits: dict[str, tuple[int, int]] | None = None,
        stats_interval: float = 1.0,
        keep_containers: bool = False,
        max_concurrent: int = 256,
    ) -> None:
        """``ulimits``: defaults for every container, e.g. ``{"nofile": (1024, 1024)}`` where
        the engine's own defaults exceed this machine's hard limits (podman as root)."""
        super().__init__(work_dir)
        self.base_url = base_url
        self.default_ulimits = dict(ulimits or {})
        self.stats_interval = stats_interval
        self.keep_containers = keep_containers
        self._max_concurrent = max_concurrent
        self._client: docker.DockerClient | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._streams: anyio.CapacityLimiter | None = None

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        self._limiter = anyio.CapacityLimiter(self._max_concurrent)
        self._streams = anyio.CapacityLimiter(LONG_CALLS)
        self._client = await self._call(self._connect)
        stack.callback(self._client.close)

    def _connect(self) -> docker.DockerClient:
        where = self.base_url or os.environ.get("DOCKER_HOST") or "the default socket"
        try:
            client = (
                docker.DockerClient(base_url=self.base_url) if self.base_url else docker.from_env()
            )
            client.ping()
        except (docker.errors.DockerException, OSError) as exc:
            raise ExecutorUnavailable(
                self.kind.value, f"cannot reach the Docker API at {where}: {exc}"
            ) from exc
        return client

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            raise ExecutorUnavailable(self.kind.value, "not connected; use `async with executor:`")
        return self._client

    async def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(
            lambda: function(*args, **kwargs), limiter=self._limiter
        )

    def _check(self, request: ExecutionRequest) -> None:
        if request.stdin:
            raise InvalidRequest(
                "stdin", f"{len(request.stdin)} bytes", "empty: pass input through input_dir"
            )

    # --- running ---------------------------------------------------------------------------

    async def _run(self, execution: Execution, started: Started) -> Outcome:
        request = execution.request
        assert request is not None and isinstance(request.program, DockerProgram)
        program = request.program
        await self._call(self._ensure_image, request.id, program)
        try:
            container: Container = await self._call(
                self.client.containers.create, **self._create_options(request, program)
            )
        except docker.errors.DockerException as exc:
            raise StartFailed(request.id, f"cannot create the container: {_explain(exc)}") from exc
        handles = Handles(container_id=container.id, node_pid=os.getpid())
        execution.handles = handles
        self._save(execution)
        try:
            try:
                await self._call(container.start)
            except docker.errors.DockerException as exc:
                raise StartFailed(
                    request.id, f"cannot start the container: {_explain(exc)}"
                ) from exc
            started(handles=handles)
            end, stopped = await self._until_done(
                execution,
                lambda: self._wait(container, execution),
                lambda reason: self._kill(container),
            )
        finally:
            if not self.keep_containers:
                with anyio.CancelScope(shield=True):
                    await self._remove(container.id)
        return _outcome(request, end, stopped)

    def _ensure_image(self, execution_id: str, program: DockerProgram) -> None:
        images = self.client.images
        try:
            if program.pull is not PullPolicy.ALWAYS:
                try:
                    images.get(program.image)
                    return
                except docker.errors.ImageNotFound:
                    if program.pull is PullPolicy.NEVER:
                        raise StartFailed(
                            execution_id,
                            f"image {program.image!r} is not on this machine and pull is 'never'",
                        ) from None
            images.pull(program.image)
        except docker.errors.DockerException as exc:
            raise StartFailed(
                execution_id, f"cannot pull image {program.image!r}: {_explain(exc)}"
            ) from exc

    def _create_options(self, request: ExecutionRequest, program: DockerProgram) -> dict[str, Any]:
        limits = request.limits
        ulimits = dict(self.default_ulimits)
        if limits.open_files:
            ulimits["nofile"] = (limits.open_files, limits.open_files)
        if limits.file_size:
            ulimits["fsize"] = (limits.file_size, limits.file_size)
        if limits.cpu_time:
            soft = max(1, math.ceil(limits.cpu_time / 1e9))
            ulimits["cpu"] = (soft, soft + 1)
        options: dict[str, Any] = {
            "image": program.image,
            "command": [*program.cmd, *request.args] or None,
            "name": f"dms-{self.work_label}-{request.id}",
            "labels": {LABEL_EXECUTION: request.id, LABEL_WORK: self.work_label},
            "environment": request.env_dict(),
            "network_mode": request.network.value,
            "detach": True,
            "ulimits": [
                docker.types.Ulimit(name=name, soft=soft, hard=hard)
                for name, (soft, hard) in sorted(ulimits.items())
            ],
        }
        if program.entrypoint is not None:
            options["entrypoint"] = list(program.entrypoint)
        if request.working_dir:
            options["working_dir"] = request.working_dir
        if limits.memory:
            options["mem_limit"] = limits.memory
            options["memswap_limit"] = limits.memory
        if limits.cores:
            options["nano_cpus"] = int(limits.cores * 1e9)
        if limits.pids:
            options["pids_limit"] = limits.pids
        volumes: dict[str, dict[str, str]] = {}
        if request.input_dir:
            volumes[request.input_dir] = {"bind": INPUT_MOUNT, "mode": "ro"}
        if request.output_dir:
            volumes[request.output_dir] = {"bind": OUTPUT_MOUNT, "mode": "rw"}
        if volumes:
            options["volumes"] = volumes
        if request.gpus:
            every = request.gpus == ("all",)
            options["device_requests"] = [
                docker.types.DeviceRequest(
                    driver="nvidia",
                    count=-1 if every else None,
                    device_ids=None if every else list(request.gpus),
                    capabilities=[["gpu"]],
                )
            ]
        return options

    async def _wait(self, container: Container, execution: Execution) -> _Ended:
        peak = [0, 0]  # peak memory, last CPU total

        async with anyio.create_task_group() as pumps:
            pumps.start_soon(self._pump, container.id, "stdout", execution.stdout)
            pumps.start_soon(self._pump, container.id, "stderr", execution.stderr)
            async with anyio.create_task_group() as sampler:
                sampler.start_soon(self._sample, container, peak)
                status = await anyio.to_thread.run_sync(container.wait, limiter=self._streams)
                sampler.cancel_scope.cancel()
            await self._call(container.reload)
            pumps.cancel_scope.deadline = anyio.current_time() + PUMP_GRACE_S
        state = container.attrs.get("State", {})
        code = int(status.get("StatusCode", state.get("ExitCode", -1)))
        return _Ended(
            code=code,
            oom_killed=bool(state.get("OOMKilled")),
            usage=ResourceUsage(cpu_time=peak[1], peak_memory=peak[0]),
        )

    async def _pump(self, container_id: str, stream: str, sink: Sink) -> None:
        def follow() -> None:
            chunks = self.client.api.logs(
                container_id,
                stdout=stream == "stdout",
                stderr=stream == "stderr",
                stream=True,
                follow=True,
            )
            for chunk in chunks:
                sink.write(chunk)

        with contextlib.suppress(*_API_FAILURES):
            await anyio.to_thread.run_sync(follow, abandon_on_cancel=True, limiter=self._streams)

    async def _sample(self, container: Container, peak: list[int]) -> None:
        while True:
            try:
                stats = await self._call(container.stats, stream=False)
            except _API_FAILURES:
                return  # the container is gone, or this engine has no stats for it
            memory = stats.get("memory_stats") or {}
            peak[0] = max(peak[0], int(memory.get("max_usage") or 0), int(memory.get("usage") or 0))
            cpu = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
            if cpu:
                peak[1] = int(cpu)
            await anyio.sleep(self.stats_interval)

    async def _kill(self, container: Container) -> None:
        with contextlib.suppress(docker.errors.DockerException):
            await self._call(container.kill)

    async def _remove(self, container_id: str) -> bool:
        """Kill and remove a container; True if it was still running."""

        def remove() -> bool:
            try:
                container = self.client.containers.get(container_id)
            except docker.errors.NotFound:
                return False
            running = container.status in ("running", "created", "paused", "restarting")
            container.remove(force=True)
            return running

        try:
            running: bool = await self._call(remove)
        except docker.errors.DockerException as exc:
            self._log.warning("cannot remove container", container=container_id, error=str(exc))
            return False
        return running

    # --- after a crash ---------------------------------------------------------------------

    async def _reap(self, info: ExecutionInfo) -> bool:
        if not info.handles.container_id:
            return False
        return await self._remove(info.handles.container_id)

    async def _sweep(self) -> tuple[str, ...]:
        running = {e.handles.container_id for e in self.list() if not e.status.terminal}

        def labelled() -> list[Container]:
            found: list[Container] = self.client.containers.list(
                all=True, filters={"label": f"{LABEL_WORK}={self.work_label}"}
            )
            return found

        removed: list[str] = []
        for container in await self._call(labelled):
            if container.id in running:
                continue
            await self._remove(container.id)
            removed.append(container.name)
        return tuple(removed)


def _explain(exc: BaseException) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    return str(exc)


def _outcome(request: ExecutionRequest, end: _Ended, stopped: Reason | None) -> Outcome:
    limits = request.limits
    if stopped is not None:
        return Outcome.stopped(stopped, limits.timeout, usage=end.usage, exit_code=end.code)
    if end.oom_killed or (limits.memory and end.code == OOM_EXIT_CODE):
        return Outcome.failed(
            Reason.MEMORY_LIMIT,
            f"killed at the memory limit of {limits.memory} bytes",
            exit_code=end.code,
            killed=True,
            usage=end.usage,
        )
    return Outcome.exited(end.code, end.usage)
