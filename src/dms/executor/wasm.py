"""The WASM executor (the default): WASI command modules run by wasmtime in worker threads.

Each execution gets its own wasmtime ``Engine`` (cheap: ~30 us), so a timeout or a cancel is one
``engine.increment_epoch()`` from any thread: the store's epoch deadline is one tick, and the
guest traps with ``INTERRUPT`` at its next loop back-edge or call. Fuel (when the request sets
``limits.fuel``) stops runaway CPU deterministically; ``limits.memory`` caps linear memory, so
``malloc`` fails cleanly inside the guest. Compiled modules are cached by content hash as
serialized bytes (deserializing takes ~0.2 ms; compiling a 200 KB module ~50 ms).

The guest sees its arguments, the request's environment (nothing else), stdin from a file,
``/input`` (read-only) and ``/output`` (writable) when the request names those folders, and
stdout/stderr going to capped files. WASM has no network and no GPUs here.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections import OrderedDict
from pathlib import Path

import anyio
import msgspec
import wasmtime

from dms.executor.base import ExecutionRequest, NetworkMode, Reason, ResourceUsage, WasmProgram
from dms.executor.core import Execution, ExecutorBase, Outcome, Started
from dms.executor.errors import InvalidRequest, StartFailed
from dms.executor.output import Sink
from dms.executor.trim import release_freed_memory
from dms.types.jobs import ExecutorType

WASM_PAGE = 64 * 1024
INPUT_GUEST_DIR = "/input"
OUTPUT_GUEST_DIR = "/output"
DEFAULT_CACHE_BYTES = 256 * 1024**2
DEFAULT_MAX_CONCURRENT = 64


def engine_config(fuel: bool) -> wasmtime.Config:
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.consume_fuel = fuel
    return config


class ModuleCache:
    """Compiled modules, serialized, by (sha256 of the bytes, fuel on/off); least recently used
    entries go first once ``max_bytes`` is exceeded. Safe to use from several threads."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[str, bool], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._engines: dict[bool, wasmtime.Engine] = {}

    def compiled(self, wasm: bytes, fuel: bool) -> bytes:
        """The serialized compiled module. Raises wasmtime.WasmtimeError for invalid modules."""
        key = (hashlib.sha256(wasm).hexdigest(), fuel)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found
            engine = self._engines.get(fuel)
            if engine is None:
                engine = self._engines[fuel] = wasmtime.Engine(engine_config(fuel))
        serialized = bytes(wasmtime.Module(engine, wasm).serialize())
        with self._lock:
            self.misses += 1
            if key not in self._entries:
                self._entries[key] = serialized
                self._size += len(serialized)
            while self._size > self.max_bytes and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                self._size -= len(dropped)
        return serialized

    def __len__(self) -> int:
        return len(self._entries)


class _RunEnd(msgspec.Struct, frozen=True, kw_only=True):
    exit_code: int | None = None
    trap: wasmtime.TrapCode | None = None
    error: str = ""
    usage: ResourceUsage = ResourceUsage()


class _Run:
    """One prepared instance; ``execute`` runs in a worker thread, ``interrupt`` from anywhere."""

    def __init__(
        self,
        *,
        serialized: bytes,
        request: ExecutionRequest,
        program: WasmProgram,
        folder: Path,
        stdout: Sink,
        stderr: Sink,
    ) -> None:
        limits = request.limits
        self.fuel = limits.fuel
        self.entry = program.entry
        self.engine = wasmtime.Engine(engine_config(fuel=bool(limits.fuel)))
        module = wasmtime.Module.deserialize(self.engine, serialized)
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        self.pre = linker.instantiate_pre(module)
        if not any(e.name == self.entry for e in module.exports):
            raise StartFailed(request.id, f"the module exports no function {self.entry!r}")
        self.store = wasmtime.Store(self.engine)
        if limits.fuel:
            self.store.set_fuel(limits.fuel)
        self.store.set_epoch_deadline(1)
        if limits.memory:
            self.store.set_limits(memory_size=limits.memory)
        wasi = wasmtime.WasiConfig()
        name = Path(program.path).name if program.path else "module.wasm"
        wasi.argv = [name, *request.args]
        wasi.env = [list(pair) for pair in request.env]
        if request.stdin:
            stdin = folder / "stdin"
            stdin.write_bytes(request.stdin)
            wasi.stdin_file = str(stdin)
        wasi.stdout_custom = _writer(stdout)
        wasi.stderr_custom = _writer(stderr)
        if request.input_dir:
            wasi.preopen_dir(request.input_dir, INPUT_GUEST_DIR, fs_mutable=False)
        if request.output_dir:
            wasi.preopen_dir(request.output_dir, OUTPUT_GUEST_DIR, fs_mutable=True)
        self.store.set_wasi(wasi)

    def execute(self) -> _RunEnd:
        cpu_start = time.thread_time_ns()
        exit_code: int | None = None
        trap: wasmtime.TrapCode | None = None
        error = ""
        instance: wasmtime.Instance | None = None
        try:
            instance = self.pre.instantiate(self.store)
            entry = instance.exports(self.store)[self.entry]
            if not isinstance(entry, wasmtime.Func):
                error = f"export {self.entry!r} is not a function"
            else:
                entry(self.store)
                exit_code = 0
        except wasmtime.ExitTrap as exc:
            exit_code = exc.code
        except wasmtime.Trap as exc:
            trap = exc.trap_code
            error = _trap_cause(exc.message)
        except wasmtime.WasmtimeError as exc:
            error = _trap_cause(str(exc))
        cpu = time.thread_time_ns() - cpu_start
        return _RunEnd(
            exit_code=exit_code,
            trap=trap,
            error=error,
            usage=ResourceUsage(
                cpu_time=cpu, peak_memory=self._memory(instance), fuel=self._fuel_used()
            ),
        )

    def interrupt(self) -> None:
        self.engine.increment_epoch()

    def _memory(self, instance: wasmtime.Instance | None) -> int:
        if instance is None:
            return 0
        exports = instance.exports(self.store)
        total = 0
        for name in exports:
            export = exports[name]
            if isinstance(export, wasmtime.Memory):
                total += export.data_len(self.store)
        return total

    def _fuel_used(self) -> int:
        if not self.fuel:
            return 0
        with contextlib.suppress(wasmtime.WasmtimeError):
            return self.fuel - self.store.get_fuel()
        return 0


def _trap_cause(message: str) -> str:
    """The cause line of a wasmtime trap message (the rest is a backtrace)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return "trap"
    return lines[-1].removeprefix("wasm trap: ")


def _writer(sink: Sink) -> wasmtime._wasi.CustomOutput:
    def write(data: bytes) -> None:
        sink.write(data)

    return write


class WasmExecutor(ExecutorBase):
    kind = ExecutorType.WASM

    def __init__(
        self,
        work_dir: Path | str,
        *,
        cache: ModuleCache | None = None,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    ) -> None:
        super().__init__(work_dir)
        self.cache = cache if cache is not None else ModuleCache()
        self._max_concurrent = max_concurrent
        self._limiter: anyio.CapacityLimiter | None = None

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        self._limiter = anyio.CapacityLimiter(self._max_concurrent)

    def _check(self, request: ExecutionRequest) -> None:
        if request.gpus:
            raise InvalidRequest("gpus", list(request.gpus), "empty: WASM tasks have no GPUs")
        if request.network is not NetworkMode.NONE:
            raise InvalidRequest("network", request.network.value, "none: WASM has no network")
        if request.working_dir:
            raise InvalidRequest(
                "working_dir",
                request.working_dir,
                "empty: WASM tasks see only /input and /output",
            )

    async def _run(self, execution: Execution, started: Started) -> Outcome:
        try:
            return await self._run_module(execution, started)
        finally:
            release_freed_memory()  # the run's instance and buffers are gone by now

    async def _run_module(self, execution: Execution, started: Started) -> Outcome:
        request = execution.request
        assert request is not None and isinstance(request.program, WasmProgram)
        assert execution.folder is not None
        run = await anyio.to_thread.run_sync(self._prepare, execution, request)
        warnings = tuple(
            f"limits.{name} is not enforced by the wasm executor"
            for name in ("cpu_time", "file_size")
            if getattr(request.limits, name)
        )
        started(warnings=warnings)

        async def execute() -> _RunEnd:
            return await anyio.to_thread.run_sync(run.execute, limiter=self._limiter)

        async def stop(reason: Reason) -> None:
            run.interrupt()

        end, stopped = await self._until_done(execution, execute, stop)
        return self._outcome(request, end, stopped)

    def _prepare(self, execution: Execution, request: ExecutionRequest) -> _Run:
        program = request.program
        assert isinstance(program, WasmProgram) and execution.folder is not None
        wasm = program.module
        if program.path:
            try:
                wasm = Path(program.path).read_bytes()
            except OSError as exc:
                raise StartFailed(
                    request.id, f"cannot read module {program.path}: {exc.strerror}"
                ) from exc
        try:
            serialized = self.cache.compiled(wasm, fuel=bool(request.limits.fuel))
        except wasmtime.WasmtimeError as exc:
            reason = str(exc).splitlines()[0]
            raise StartFailed(request.id, f"not a valid WebAssembly module: {reason}") from exc
        try:
            return _Run(
                serialized=serialized,
                request=request,
                program=program,
                folder=execution.folder,
                stdout=execution.stdout,
                stderr=execution.stderr,
            )
        except wasmtime.WasmtimeError as exc:
            reason = str(exc).splitlines()[0]
            raise StartFailed(request.id, f"cannot instantiate the module: {reason}") from exc

    @staticmethod
    def _outcome(request: ExecutionRequest, end: _RunEnd, stopped: Reason | None) -> Outcome:
        limits = request.limits
        usage = end.usage
        # wasmtime does not say that a memory.grow failed at the limit: infer it from a failure
        # within 10% (at least a page) of the limit.
        margin = max(WASM_PAGE, limits.memory // 10)
        near_memory_limit = bool(limits.memory) and usage.peak_memory + margin > limits.memory
        if end.trap is wasmtime.TrapCode.INTERRUPT and stopped is not None:
            return Outcome.stopped(stopped, limits.timeout, usage=usage)
        if end.trap is wasmtime.TrapCode.OUT_OF_FUEL:
            return Outcome.failed(
                Reason.OUT_OF_FUEL,
                f"ran out of fuel (limit {limits.fuel})",
                killed=True,
                usage=usage,
            )
        if end.exit_code is not None:
            if end.exit_code != 0 and near_memory_limit:
                return Outcome.failed(
                    Reason.MEMORY_LIMIT,
                    f"exited with code {end.exit_code} at the memory limit of {limits.memory} bytes",
                    exit_code=end.exit_code,
                    usage=usage,
                )
            return Outcome.exited(end.exit_code, usage)
        if end.trap is not None:
            if near_memory_limit:
                return Outcome.failed(
                    Reason.MEMORY_LIMIT,
                    f"trapped at the memory limit of {limits.memory} bytes: {end.error}",
                    usage=usage,
                )
            return Outcome.failed(Reason.TRAP, f"trap: {end.error}", usage=usage)
        return Outcome.failed(Reason.ERROR, end.error or "the module did not run", usage=usage)
