"""Executor errors: every one subclasses :class:`dms.errors.ExecutorError`.

::

    ExecutorError
     +-- InvalidRequest        a request field that does not validate (also an InputError)
     +-- UnknownExecution      no execution with that id
     +-- DuplicateExecution    an id that is already in use
     +-- InvalidTransition     a status change the state machine does not allow
     +-- ExecutionRunning      an operation that needs a finished execution (remove)
     +-- ExecutorUnavailable   the executor cannot run here (no engine, no daemon, not entered)
     +-- StartFailed           the workload could not be started (missing file, bad module, image)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dms.errors import ExecutorError, InputError

if TYPE_CHECKING:
    from dms.executor.base import ExecutionStatus


class InvalidRequest(ExecutorError, InputError):
    """A request field that does not validate: names the field, the value and what is accepted."""


class UnknownExecution(ExecutorError):
    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(f"execution {execution_id!r}: no such execution on this executor")


class DuplicateExecution(ExecutorError):
    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(
            f"execution {execution_id!r}: id already in use; remove the old execution first"
        )


class InvalidTransition(ExecutorError):
    def __init__(self, execution_id: str, old: ExecutionStatus, new: ExecutionStatus) -> None:
        self.execution_id = execution_id
        self.old, self.new = old, new
        super().__init__(f"execution {execution_id!r}: cannot go from {old.value} to {new.value}")


class ExecutionRunning(ExecutorError):
    def __init__(self, execution_id: str, action: str) -> None:
        self.execution_id = execution_id
        super().__init__(
            f"execution {execution_id!r}: cannot {action} while it runs; cancel it first"
        )


class ExecutorUnavailable(ExecutorError):
    def __init__(self, executor: str, reason: str) -> None:
        self.executor = executor
        self.reason = reason
        super().__init__(f"{executor} executor unavailable: {reason}")


class StartFailed(ExecutorError):
    def __init__(self, execution_id: str, reason: str) -> None:
        self.execution_id = execution_id
        self.reason = reason
        super().__init__(f"execution {execution_id!r} did not start: {reason}")
