"""The provider side of deployments: adverts, bids, commit / allocate / revert, allocations.

Layers, bottom up: ``errors`` and ``records`` (what is remembered: bids, slots, tombstones),
``bids`` (may this node bid?), ``launch`` and ``workspace`` (manifest -> execution request,
the allocation's folders), ``health`` (probes), ``lifecycle`` (runs, restarts, schedules),
``allocation`` (the Allocation actor), ``service`` (ProviderService: the node's entry point).
Must not import: dms.orchestrator, dms.node, dms.api, dms.cli.
"""

from dms.jobs.provider.allocation import Allocation, Settings, allocation_child, inbox_of
from dms.jobs.provider.errors import (
    AllocationEnded,
    BadRequest,
    InvalidManifest,
    NotTheOrchestrator,
    ProviderError,
    RefusedPath,
    RequestConflict,
    SlotClosed,
    UnknownBid,
    UnknownSlot,
)
from dms.jobs.provider.health import (
    CommandProbe,
    HealthProbe,
    HealthResult,
    HttpProbe,
    ScriptedProbe,
    TcpProbe,
    probe_for,
)
from dms.jobs.provider.launch import build_request, execution_id, null_program
from dms.jobs.provider.records import Slot, SlotState
from dms.jobs.provider.service import ProviderService
from dms.jobs.provider.workspace import Workspace

__all__ = [
    "Allocation",
    "AllocationEnded",
    "BadRequest",
    "CommandProbe",
    "HealthProbe",
    "HealthResult",
    "HttpProbe",
    "InvalidManifest",
    "NotTheOrchestrator",
    "ProviderError",
    "ProviderService",
    "RefusedPath",
    "RequestConflict",
    "ScriptedProbe",
    "Settings",
    "Slot",
    "SlotClosed",
    "SlotState",
    "TcpProbe",
    "UnknownBid",
    "UnknownSlot",
    "Workspace",
    "allocation_child",
    "build_request",
    "execution_id",
    "inbox_of",
    "null_program",
    "probe_for",
]
