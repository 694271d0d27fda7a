"""Statistics: what supervisors, their children and actors have been through.

Counters live in small mutable objects owned by whoever updates them; readers get frozen
snapshots (msgspec Structs), which is also what the ``/dms/actor/stats`` behavior returns.
"""

from __future__ import annotations

import msgspec


class FailureRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One failure: the exception's type (the reason), its message, when (monotonic ns)."""

    reason: str
    message: str
    at_ns: int


class ChildStatistics(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    state: str
    restart: str
    starts: int
    restarts: int
    failures: dict[str, int]
    last_failure: FailureRecord | None
    uptime_ns: int
    """Time since its current incarnation started (0 when not running)."""
    supervisor: SupervisorStatistics | None = None
    """When the child is itself a supervisor."""


class SupervisorStatistics(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    strategy: str
    state: str
    intensity: int
    period_ns: int
    restarts: int
    escalations: int
    failures: dict[str, int]
    last_failure: FailureRecord | None
    uptime_ns: int
    children: tuple[ChildStatistics, ...]


class ActorStatistics(msgspec.Struct, frozen=True, kw_only=True):
    inbox: str
    state: str
    behaviors: int
    processed: int
    failed: int
    queued: int
    max_queued: int
    children: SupervisorStatistics | None = None


class SystemStatistics(msgspec.Struct, frozen=True, kw_only=True):
    peer_id: str
    did: str
    actors: tuple[ActorStatistics, ...]
    supervisor: SupervisorStatistics
    refusals: dict[str, int]
    """Messages refused before any handler saw them, by error type."""
    pending_invokes: int


class FailureCounter:
    """Failures by reason and the last one."""

    __slots__ = ("by_reason", "last")

    def __init__(self) -> None:
        self.by_reason: dict[str, int] = {}
        self.last: FailureRecord | None = None

    def record(self, error: BaseException, at_ns: int) -> FailureRecord:
        reason = type(error).__name__
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        self.last = FailureRecord(reason=reason, message=str(error), at_ns=at_ns)
        return self.last

    def total(self) -> int:
        return sum(self.by_reason.values())
