"""Errors of resource accounting and hardware detection.

::

    ResourceError (dms.errors)
     +-- InsufficientResources (dms.errors)   not enough of a dimension: needed, available
     +-- OnboardingError (dms.errors)
     |    +-- NotOnboarded                    a reservation while nothing is onboarded
     |    +-- Draining                        a reservation while an offboard is in progress
     |    +-- AllocationsRunning              offboard refused: these allocations run
     |    +-- StillReserved                   new amounts would not cover what is reserved
     +-- ReservationError
     |    +-- InvalidRequest (also an InputError)  negative or non-finite amounts
     |    +-- ReservationNotFound             no reservation has that id
     |    +-- ReservationConflict             the same id repeated with different arguments
     |    +-- ReservationClosed               the reservation already ended (expired, released)
     |    +-- InvalidTransition               e.g. allocate before commit
     +-- PortsUnavailable                     the port range cannot satisfy a request
     +-- DetectionError                       one hardware source failed (logged, not fatal)
"""

from __future__ import annotations

from dms.errors import InputError, OnboardingError, ResourceError


class NotOnboarded(OnboardingError):
    def __init__(self, operation: str) -> None:
        super().__init__(f"cannot {operation}: this node has not onboarded any resources")


class Draining(OnboardingError):
    def __init__(self, operation: str) -> None:
        super().__init__(f"cannot {operation}: an offboard is in progress")


class AllocationsRunning(OnboardingError):
    def __init__(self, allocations: tuple[str, ...], listed: str) -> None:
        self.allocations = allocations
        super().__init__(
            f"cannot offboard while {len(allocations)} allocation(s) run: {listed}; "
            "stop them first, or offboard with force to stop them"
        )


class StillReserved(OnboardingError):
    def __init__(self, reservations: tuple[str, ...], shortfall: str) -> None:
        self.reservations = reservations
        super().__init__(
            f"the new amounts do not cover what is reserved now "
            f"({', '.join(reservations)}): {shortfall}"
        )


class ReservationError(ResourceError):
    """A hold / commit / allocate / release that cannot be applied."""


class InvalidRequest(InputError, ReservationError):
    """Requested resources that no reservation can hold (a negative size, a NaN of cores)."""


class ReservationNotFound(ReservationError):
    def __init__(self, kind: str, ident: str) -> None:
        self.ident = ident
        super().__init__(f"no reservation for {kind} {ident!r}")


class ReservationConflict(ReservationError):
    def __init__(self, kind: str, ident: str, detail: str) -> None:
        self.ident = ident
        super().__init__(f"{kind} {ident!r} was already used with other arguments: {detail}")


class ReservationClosed(ReservationError):
    def __init__(self, kind: str, ident: str, state: str, reason: str) -> None:
        self.ident = ident
        self.state = state
        why = f" ({reason})" if reason else ""
        super().__init__(f"{kind} {ident!r} is {state}{why}; use a new id")


class InvalidTransition(ReservationError):
    def __init__(self, ident: str, current: str, target: str, allowed: str) -> None:
        self.ident = ident
        super().__init__(
            f"reservation {ident!r} is {current}; cannot become {target} (from {current}: "
            f"{allowed or 'nothing'})"
        )


class PortsUnavailable(ResourceError):
    def __init__(self, field: str, value: object, accepted: str) -> None:
        self.field = field
        super().__init__(f"{field}: {value!r} cannot be reserved; {accepted}")


class DetectionError(ResourceError):
    """A hardware source that could not be read. Detection logs it and carries on."""

    def __init__(self, source: str, reason: str, *, absent: bool = False) -> None:
        self.source = source
        self.reason = reason
        self.absent = absent
        """True when the library or tool is simply not there (normal without that device)."""
        super().__init__(f"{source}: {reason}")
