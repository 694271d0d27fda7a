"""Executors: run workloads (WASM modules, processes, containers, scripted nulls) with limits.

See README.md in this folder. The protocol, records, errors, the null executor and the registry
are re-exported here; the concrete executors live in their modules (``dms.executor.wasm``,
``.process``, ``.docker``) so that importing this package does not load wasmtime or the docker SDK.
"""

from dms.executor.base import (
    DEFAULT_OUTPUT_CAP,
    CleanupReport,
    DockerProgram,
    ExecutionInfo,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    Executor,
    Handles,
    Limits,
    LogChunk,
    LogStream,
    NetworkMode,
    NullProgram,
    ProcessProgram,
    Program,
    PullPolicy,
    Reason,
    ResourceUsage,
    WasmProgram,
)
from dms.executor.errors import (
    DuplicateExecution,
    ExecutionRunning,
    ExecutorUnavailable,
    InvalidRequest,
    InvalidTransition,
    StartFailed,
    UnknownExecution,
)
from dms.executor.null import NullExecutor
from dms.executor.registry import ExecutorRegistry

__all__ = [
    "DEFAULT_OUTPUT_CAP",
    "CleanupReport",
    "DockerProgram",
    "DuplicateExecution",
    "ExecutionInfo",
    "ExecutionRequest",
    "ExecutionResult",
    "ExecutionRunning",
    "ExecutionStatus",
    "Executor",
    "ExecutorRegistry",
    "ExecutorUnavailable",
    "Handles",
    "InvalidRequest",
    "InvalidTransition",
    "Limits",
    "LogChunk",
    "LogStream",
    "NetworkMode",
    "NullExecutor",
    "NullProgram",
    "ProcessProgram",
    "Program",
    "PullPolicy",
    "Reason",
    "ResourceUsage",
    "StartFailed",
    "UnknownExecution",
    "WasmProgram",
]
