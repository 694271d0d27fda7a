"""Job types and executor types shared by capabilities, specs and executors."""

from __future__ import annotations

import enum


class JobType(enum.StrEnum):
    """How a job runs (the seed's one-time, batch, recurring and long-running)."""

    TASK = "task"
    """One-time: runs to completion."""
    BATCH = "batch"
    """N replicas of a task, each to completion."""
    RECURRING = "recurring"
    """A task re-run on a schedule."""
    SERVICE = "service"
    """Long-running: restarted on failure, never 'completes'."""


class ExecutorType(enum.StrEnum):
    WASM = "wasm"
    PROCESS = "process"
    DOCKER = "docker"
    NULL = "null"
