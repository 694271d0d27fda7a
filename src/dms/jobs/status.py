"""Lifecycles of deployments and allocations: explicit states and the moves allowed between them.

Deployment (orchestrator side)::

    PREPARING -> COMMITTING -> PROVISIONING -> RUNNING -> COMPLETED
        |  ^          |              |            |
        |  +----------+ (revert,     |            +-> SHUTTING_DOWN -> COMPLETED | FAILED
        |     retry next candidates) |
        +-----------+----------------+-----------> FAILED   (deadline, unrecoverable error)

Allocation (provider side)::

    PENDING -> STARTING -> RUNNING -> COMPLETED | FAILED | STOPPED
                  |           |  ^
                  |           +--+ RESTARTING (failure_recovery: restart)
                  +-> FAILED
"""

from __future__ import annotations

import enum

from dms.errors import DMSError


class InvalidTransition(DMSError):
    """A state change the lifecycle does not allow (a bug or a stale message)."""

    def __init__(self, what: str, old: enum.Enum, new: enum.Enum) -> None:
        super().__init__(f"{what} cannot go from {old.value} to {new.value}")


class DeploymentStatus(enum.StrEnum):
    PREPARING = "Preparing"
    COMMITTING = "Committing"
    PROVISIONING = "Provisioning"
    RUNNING = "Running"
    SHUTTING_DOWN = "ShuttingDown"
    COMPLETED = "Completed"
    FAILED = "Failed"

    @property
    def final(self) -> bool:
        return self in (DeploymentStatus.COMPLETED, DeploymentStatus.FAILED)

    def can_become(self, new: DeploymentStatus) -> bool:
        return new in _DEPLOYMENT[self]

    def check(self, new: DeploymentStatus) -> DeploymentStatus:
        if not self.can_become(new):
            raise InvalidTransition("deployment", self, new)
        return new


_D = DeploymentStatus
_DEPLOYMENT: dict[DeploymentStatus, frozenset[DeploymentStatus]] = {
    _D.PREPARING: frozenset({_D.COMMITTING, _D.SHUTTING_DOWN, _D.FAILED}),
    _D.COMMITTING: frozenset({_D.PREPARING, _D.PROVISIONING, _D.SHUTTING_DOWN, _D.FAILED}),
    _D.PROVISIONING: frozenset({_D.PREPARING, _D.RUNNING, _D.SHUTTING_DOWN, _D.FAILED}),
    _D.RUNNING: frozenset({_D.PREPARING, _D.COMPLETED, _D.SHUTTING_DOWN, _D.FAILED}),
    _D.SHUTTING_DOWN: frozenset({_D.COMPLETED, _D.FAILED}),
    _D.COMPLETED: frozenset(),
    _D.FAILED: frozenset(),
}


class AllocationStatus(enum.StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def final(self) -> bool:
        return self in (
            AllocationStatus.COMPLETED,
            AllocationStatus.FAILED,
            AllocationStatus.STOPPED,
        )

    def can_become(self, new: AllocationStatus) -> bool:
        return new in _ALLOCATION[self]

    def check(self, new: AllocationStatus) -> AllocationStatus:
        if not self.can_become(new):
            raise InvalidTransition("allocation", self, new)
        return new


_A = AllocationStatus
_ALLOCATION: dict[AllocationStatus, frozenset[AllocationStatus]] = {
    _A.PENDING: frozenset({_A.STARTING, _A.STOPPED, _A.FAILED}),
    _A.STARTING: frozenset({_A.RUNNING, _A.FAILED, _A.STOPPED}),
    _A.RUNNING: frozenset({_A.RESTARTING, _A.COMPLETED, _A.FAILED, _A.STOPPED}),
    _A.RESTARTING: frozenset({_A.STARTING, _A.FAILED, _A.STOPPED}),
    _A.COMPLETED: frozenset(),
    _A.FAILED: frozenset(),
    _A.STOPPED: frozenset(),
}
