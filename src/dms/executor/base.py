"""The ``Executor`` protocol and the records it speaks: requests, statuses, results.

An executor runs workloads ("executions") for allocations. A request names a program for one
executor type (a WASM module, a command, a container image, or a scripted null program), its
arguments, environment, stdin, folders and limits. ``start`` returns once the workload runs (or
raises :class:`~dms.executor.errors.StartFailed`); ``wait`` returns its result; ``cancel`` stops
it and returns the result; ``logs`` reads (and with ``follow`` tails) its stdout and stderr.

Status is a state machine (:class:`ExecutionStatus`)::

    PENDING --> RUNNING --> SUCCEEDED | FAILED | CANCELLED | TIMED_OUT | LOST
       |                                    ^
       +--> FAILED | CANCELLED | LOST ------+

Every terminal status carries a :class:`Reason` saying what ended the workload.
"""

from __future__ import annotations

import enum
import re
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import msgspec

from dms.executor.errors import InvalidRequest
from dms.types.jobs import ExecutorType

DEFAULT_OUTPUT_CAP = 16 * 1024**2
"""Bytes kept per output stream (stdout, stderr) unless the request says otherwise."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ID_ACCEPTED = "1-128 characters of letters, digits, '_', '.', '-', starting with a letter or digit"


class ExecutionStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    LOST = "lost"
    """The node stopped while the execution ran; found (and killed) by ``cleanup``."""

    @property
    def terminal(self) -> bool:
        return self not in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)

    def can_become(self, new: ExecutionStatus) -> bool:
        return new in _TRANSITIONS[self]


_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.PENDING: frozenset(
        {
            ExecutionStatus.RUNNING,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
            ExecutionStatus.LOST,
        }
    ),
    ExecutionStatus.RUNNING: frozenset(
        {
            ExecutionStatus.SUCCEEDED,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
            ExecutionStatus.TIMED_OUT,
            ExecutionStatus.LOST,
        }
    ),
    **{status: frozenset() for status in ExecutionStatus if status.terminal},
}


class Reason(enum.StrEnum):
    """What ended an execution."""

    EXITED = "exited"
    """The program ended by itself; the exit code says how."""
    TRAP = "trap"
    """A WASM trap (unreachable, out-of-bounds access, stack overflow, ...)."""
    SIGNAL = "signal"
    """Killed by a signal that dms did not send."""
    OUT_OF_FUEL = "out_of_fuel"
    MEMORY_LIMIT = "memory_limit"
    CPU_LIMIT = "cpu_limit"
    FILE_SIZE_LIMIT = "file_size_limit"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    START_FAILED = "start_failed"
    LOST = "lost"
    ERROR = "error"
    """The executor itself failed while supervising (see ``error``)."""


class NetworkMode(enum.StrEnum):
    NONE = "none"
    BRIDGE = "bridge"
    HOST = "host"


class PullPolicy(enum.StrEnum):
    MISSING = "missing"
    ALWAYS = "always"
    NEVER = "never"


class LogStream(enum.StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


# --- programs: one per executor type; the tag is the executor type ----------------------------


class WasmProgram(msgspec.Struct, frozen=True, kw_only=True, tag="wasm"):
    """A WASI command module: a file on this machine or the module's bytes."""

    path: str = ""
    module: bytes = b""
    entry: str = "_start"

    def __post_init__(self) -> None:
        if bool(self.path) == bool(self.module):
            raise InvalidRequest(
                "program.path",
                self.path,
                "a module path or module bytes (exactly one of them)",
            )
        if not self.entry:
            raise InvalidRequest("program.entry", self.entry, "an exported function name")


class ProcessProgram(msgspec.Struct, frozen=True, kw_only=True, tag="process"):
    """A command: ``argv[0]`` is looked up on the request's ``PATH`` (or /bin:/usr/bin)."""

    argv: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.argv or not self.argv[0]:
            raise InvalidRequest("program.argv", list(self.argv), "a non-empty command")
        _check_strings("program.argv", self.argv)


class DockerProgram(msgspec.Struct, frozen=True, kw_only=True, tag="docker"):
    image: str
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    pull: PullPolicy = PullPolicy.MISSING

    def __post_init__(self) -> None:
        if not self.image or any(c.isspace() for c in self.image):
            raise InvalidRequest("program.image", self.image, "an image reference")
        _check_strings("program.cmd", self.cmd)
        _check_strings("program.entrypoint", self.entrypoint or ())


class NullProgram(msgspec.Struct, frozen=True, kw_only=True, tag="null"):
    """A scripted workload: runs for ``duration`` ns (virtual time in tests), then exits."""

    duration: int = 0
    exit_code: int = 0
    stdout: bytes = b""
    stderr: bytes = b""
    start_error: str = ""
    """When set, ``start`` fails with this reason."""

    def __post_init__(self) -> None:
        if self.duration < 0:
            raise InvalidRequest("program.duration", self.duration, "a duration of 0 ns or more")
        if not 0 <= self.exit_code <= 255:
            raise InvalidRequest("program.exit_code", self.exit_code, "an exit code from 0 to 255")


Program = WasmProgram | ProcessProgram | DockerProgram | NullProgram


class Limits(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Resource limits. 0 means "no limit" for every field but ``output``."""

    cores: float = 0.0
    memory: int = 0
    """Bytes: WASM linear memory; the process's cgroup (or address space); container memory."""
    timeout: int = 0
    """Wall-clock ns from the start."""
    cpu_time: int = 0
    """CPU ns (process executor: RLIMIT_CPU, rounded up to whole seconds)."""
    fuel: int = 0
    """WASM instructions' fuel (wasmtime's unit, roughly one per instruction)."""
    file_size: int = 0
    """Largest file the workload may write, in bytes (RLIMIT_FSIZE / the fsize ulimit)."""
    open_files: int = 0
    pids: int = 0
    """Most processes (threads included) alive at once."""
    output: int = DEFAULT_OUTPUT_CAP
    """Bytes kept per output stream; the rest is counted and dropped."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InvalidRequest(f"limits.{name}", value, "a number of 0 or more")
        if self.cores != self.cores or self.cores == float("inf"):
            raise InvalidRequest("limits.cores", self.cores, "a finite number of cores")


class ExecutionRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What to run, and with what. Construction validates every field."""

    id: str
    """The execution id (usually the allocation id): names its folder and its container."""
    program: Program
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    """The whole environment of the workload: nothing is inherited from the node."""
    stdin: bytes = b""
    working_dir: str = ""
    input_dir: str = ""
    """A folder on this machine, mapped read-only (``/input`` for WASM and containers)."""
    output_dir: str = ""
    """A folder on this machine, mapped writable (``/output`` for WASM and containers)."""
    limits: Limits = Limits()
    network: NetworkMode = NetworkMode.NONE
    gpus: tuple[str, ...] = ()
    """GPU device ids (indexes or UUIDs) to hand to the workload."""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise InvalidRequest("id", self.id, ID_ACCEPTED)
        _check_strings("args", self.args)
        for pair in self.env:
            if len(pair) != 2:
                raise InvalidRequest("env", list(pair), "NAME, VALUE pairs")
            name, value = pair
            if not _ENV_NAME.match(name):
                raise InvalidRequest("env", name, "a variable name of letters, digits and '_'")
            _check_strings(f"env.{name}", (value,))
        for field in ("working_dir", "input_dir", "output_dir"):
            path = getattr(self, field)
            if path and (not path.startswith("/") or "\x00" in path):
                raise InvalidRequest(field, path, "an absolute path")
            _check_strings(field, (path,))
        _check_strings("gpus", self.gpus)

    @property
    def executor(self) -> ExecutorType:
        return ExecutorType(str(self.program.__struct_config__.tag))

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)


def _check_strings(field: str, values: tuple[str, ...]) -> None:
    for value in values:
        if "\x00" in value:
            raise InvalidRequest(field, value, "text without NUL characters")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise InvalidRequest(field, value, "valid Unicode text (no lone surrogates)") from None


# --- what comes back ---------------------------------------------------------------------------


class ResourceUsage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    cpu_time: int = 0
    """CPU ns used (0 when not measurable)."""
    peak_memory: int = 0
    """Peak memory in bytes (0 when not measurable)."""
    fuel: int = 0
    """WASM fuel consumed (only when a fuel limit was set)."""


class ExecutionResult(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    executor: ExecutorType
    status: ExecutionStatus
    reason: Reason
    exit_code: int | None = None
    signal: int | None = None
    error: str = ""
    killed: bool = False
    """dms (or the kernel, enforcing a limit) killed the workload."""
    stdout_path: str = ""
    stderr_path: str = ""
    stdout_bytes: int = 0
    """Bytes the workload wrote to stdout (kept or not)."""
    stderr_bytes: int = 0
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    started_at: int = 0
    """Unix time in ns (0 if it never started)."""
    finished_at: int = 0
    duration: int = 0
    """Ns from start to end, on the executor's clock (virtual in tests)."""
    usage: ResourceUsage = ResourceUsage()
    warnings: tuple[str, ...] = ()
    """Limits that could not be enforced on this machine, and similar notes."""

    @property
    def ok(self) -> bool:
        return self.status is ExecutionStatus.SUCCEEDED


class Handles(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How to find what an execution left running after the node itself died."""

    pid: int = 0
    pid_start: int = 0
    """The process's start time in clock ticks since boot (guards against pid reuse)."""
    pgid: int = 0
    cgroups: tuple[str, ...] = ()
    container_id: str = ""
    node_pid: int = 0
    """The node process that started the execution."""


class ExecutionInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    executor: ExecutorType
    status: ExecutionStatus
    created_at: int
    started_at: int = 0
    handles: Handles = Handles()
    sandboxed: bool = False
    warnings: tuple[str, ...] = ()
    result: ExecutionResult | None = None


class LogChunk(msgspec.Struct, frozen=True):
    stream: LogStream
    data: bytes


class CleanupReport(msgspec.Struct, frozen=True, kw_only=True):
    lost: tuple[str, ...] = ()
    """Executions found unfinished from an earlier node process (now LOST)."""
    killed: tuple[str, ...] = ()
    """Of those, the ones whose processes or containers were still alive and were killed."""
    removed: tuple[str, ...] = ()
    """Stray containers or cgroups removed."""


@runtime_checkable
class Executor(Protocol):
    """Runs workloads of one executor type. Use it as ``async with executor:``.

    Leaving the block stops every execution still running (status CANCELLED).
    """

    @property
    def kind(self) -> ExecutorType: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def start(self, request: ExecutionRequest) -> ExecutionInfo:
        """Start the workload; returns once it runs. Raises InvalidRequest or StartFailed."""
        ...

    async def wait(self, execution_id: str) -> ExecutionResult:
        """Wait for the end of an execution and return its result."""
        ...

    async def cancel(self, execution_id: str) -> ExecutionResult:
        """Stop an execution (a no-op on a finished one) and return its result."""
        ...

    def logs(self, execution_id: str, *, follow: bool = False) -> AsyncIterator[LogChunk]:
        """Output written so far; with ``follow``, also what comes until the end."""
        ...

    def status(self, execution_id: str) -> ExecutionInfo: ...

    def list(self) -> tuple[ExecutionInfo, ...]: ...

    def is_alive(self, execution_id: str) -> bool:
        """True while the execution is PENDING or RUNNING."""
        ...

    async def remove(self, execution_id: str) -> None:
        """Forget a finished execution and delete its folder."""
        ...

    async def cleanup(self) -> CleanupReport:
        """At start-up: load earlier executions, kill what an earlier node left running."""
        ...
