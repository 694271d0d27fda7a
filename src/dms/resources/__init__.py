"""What a provider has and how it is shared: hardware detection, resource pools, ports.

* :mod:`~dms.resources.hardware` reads the machine (CPU, RAM, disk, GPUs, usage now);
* :mod:`~dms.resources.ledger` keeps the pools in SQLite, one transaction per operation:
  free = onboarded - held - committed - allocated, never below zero in any dimension;
* :class:`ResourceManager` is the async API over it, :func:`run_reclaimer` its background task;
* :mod:`~dms.resources.ports` reserves ports per allocation from the configured range.
"""

from dms.resources.errors import (
    AllocationsRunning,
    DetectionError,
    Draining,
    InvalidRequest,
    InvalidTransition,
    NotOnboarded,
    PortsUnavailable,
    ReservationClosed,
    ReservationConflict,
    ReservationError,
    ReservationNotFound,
    StillReserved,
)
from dms.resources.hardware import (
    CPUInfo,
    DetectionProblem,
    GPUUsage,
    HardwareProbe,
    HardwareSpec,
    HardwareUsage,
    StaticHardware,
    SystemHardware,
    idle_usage,
)
from dms.resources.manager import ResourceManager, run_reclaimer
from dms.resources.ports import PortRange
from dms.resources.records import (
    TRANSITIONS,
    Pools,
    PortRequest,
    Reservation,
    ReservationState,
)

__all__ = [
    "TRANSITIONS",
    "AllocationsRunning",
    "CPUInfo",
    "DetectionError",
    "DetectionProblem",
    "Draining",
    "GPUUsage",
    "HardwareProbe",
    "HardwareSpec",
    "HardwareUsage",
    "InvalidRequest",
    "InvalidTransition",
    "NotOnboarded",
    "Pools",
    "PortRange",
    "PortRequest",
    "PortsUnavailable",
    "Reservation",
    "ReservationClosed",
    "ReservationConflict",
    "ReservationError",
    "ReservationNotFound",
    "ReservationState",
    "ResourceManager",
    "StaticHardware",
    "StillReserved",
    "SystemHardware",
    "idle_usage",
    "run_reclaimer",
]
