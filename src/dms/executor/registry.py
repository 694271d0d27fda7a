"""The executors a node runs, by executor type (WASM is the default).

``async with registry:`` enters every executor; one that cannot run here (no Docker API, say)
is left out and ``unavailable`` says why, so the node still starts and advertises only what it
can run. ``cleanup`` runs every executor's start-up cleanup.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from dms.executor.base import CleanupReport, ExecutionInfo, ExecutionRequest, Executor
from dms.executor.errors import ExecutorUnavailable
from dms.executor.sandbox import SandboxMode
from dms.log import get_logger
from dms.types.jobs import ExecutorType

OPTIONAL = frozenset({ExecutorType.DOCKER})
"""Executors whose absence does not stop the registry from starting."""


class ExecutorRegistry:
    def __init__(
        self, executors: Iterable[Executor], default: ExecutorType = ExecutorType.WASM
    ) -> None:
        self._configured: dict[ExecutorType, Executor] = {}
        for executor in executors:
            self._configured[executor.kind] = executor
        self.default = default
        self.unavailable: dict[ExecutorType, str] = {}
        self._running: dict[ExecutorType, Executor] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._log = get_logger(component="executors")

    @classmethod
    def for_node(
        cls,
        work_dir: Path | str,
        *,
        docker: bool = True,
        docker_url: str | None = None,
        docker_ulimits: dict[str, tuple[int, int]] | None = None,
        sandbox: SandboxMode = SandboxMode.AUTO,
    ) -> ExecutorRegistry:
        """One executor of each type, each with its own folder below ``work_dir``."""
        from dms.executor.null import NullExecutor
        from dms.executor.process import ProcessExecutor
        from dms.executor.wasm import WasmExecutor

        root = Path(work_dir)
        executors: list[Executor] = [
            WasmExecutor(root / "wasm"),
            ProcessExecutor(root / "process", sandbox=sandbox),
            NullExecutor(root / "null"),
        ]
        if docker:
            from dms.executor.docker import DockerExecutor

            executors.append(
                DockerExecutor(root / "docker", base_url=docker_url, ulimits=docker_ulimits)
            )
        return cls(executors)

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            for kind, executor in self._configured.items():
                try:
                    await stack.enter_async_context(executor)
                except ExecutorUnavailable as exc:
                    if kind not in OPTIONAL:
                        raise
                    self.unavailable[kind] = exc.reason
                    self._log.warning(
                        "executor unavailable", executor=kind.value, reason=exc.reason
                    )
                    continue
                self._running[kind] = executor
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._running.clear()
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    def available(self) -> tuple[ExecutorType, ...]:
        return tuple(self._running)

    def get(self, kind: ExecutorType | None = None) -> Executor:
        kind = kind or self.default
        executor = self._running.get(kind)
        if executor is None:
            reason = self.unavailable.get(kind) or (
                "not running here; available: "
                + (", ".join(k.value for k in self._running) or "none")
            )
            raise ExecutorUnavailable(kind.value, reason)
        return executor

    async def start(self, request: ExecutionRequest) -> ExecutionInfo:
        return await self.get(request.executor).start(request)

    def find(self, execution_id: str) -> Executor | None:
        """The executor that holds ``execution_id``, if any."""
        for executor in self._running.values():
            if any(info.id == execution_id for info in executor.list()):
                return executor
        return None

    async def is_alive(self, execution_id: str) -> bool:
        """True while some executor runs ``execution_id`` (the start-up sanity check's question;
        run ``cleanup`` first so that executions of an earlier node process count as ended)."""
        return any(executor.is_alive(execution_id) for executor in self._running.values())

    def list(self) -> tuple[ExecutionInfo, ...]:
        return tuple(info for executor in self._running.values() for info in executor.list())

    async def cleanup(self) -> dict[ExecutorType, CleanupReport]:
        return {kind: await executor.cleanup() for kind, executor in self._running.items()}
