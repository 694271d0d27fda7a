"""What an orchestrator persists about each deployment: desired state and observed state."""

from __future__ import annotations

import msgspec

from dms.actor.handle import Handle
from dms.jobs.protocol import PortBinding
from dms.jobs.status import DeploymentStatus
from dms.orchestrator.messages import (
    AllocationInfo,
    DeploymentSummary,
    Explanation,
    StatusChange,
)


class SlotRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One ensemble node (one replica of it) on one provider: the unit of reservation."""

    slot_id: str
    node: str
    replica: int = 0
    provider: Handle
    bid_id: str
    committed: bool = False
    allocated: bool = False
    ports: tuple[PortBinding, ...] = ()


class DeploymentRecord(msgspec.Struct, frozen=True, kw_only=True):
    deployment_id: str
    name: str = ""
    status: DeploymentStatus
    created_ns: int
    updated_ns: int
    deadline_ns: int
    """Placement deadline: not Running by then means Failed."""
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    ensemble: str
    """Normalised YAML (desired state)."""
    files: dict[str, bytes] = msgspec.field(default_factory=dict)
    reason: str = ""
    history: tuple[StatusChange, ...] = ()
    slots: tuple[SlotRecord, ...] = ()
    allocations: tuple[AllocationInfo, ...] = ()
    """Observed state of each allocation."""
    explanation: Explanation | None = None
    attempts: int = 0
    redeploys: tuple[int, ...] = ()
    """Times (ns) of redeploys, for the restart intensity window."""
    finished_ns: int = 0
    shutdown_requested: str = ""
    """Set when a user asked to shut it down (the reason)."""

    def summary(self) -> DeploymentSummary:
        return DeploymentSummary(
            deployment_id=self.deployment_id,
            name=self.name,
            status=self.status,
            created_ns=self.created_ns,
            updated_ns=self.updated_ns,
            metadata=self.metadata,
            allocations=len(self.allocations),
            reason=self.reason,
        )
