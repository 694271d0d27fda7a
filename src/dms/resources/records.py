"""Typed records of resource accounting: reservation states, reservations, pools.

A reservation is one job's share of the onboarded resources, moving through::

    HELD ----------> COMMITTED ----------> ALLOCATED ----------> RELEASED
     |  \\              |   \\                  \\
     |   `-> RELEASED   |    `-> RELEASED        `-> FAILED  (its execution vanished)
      `-> EXPIRED        `-> EXPIRED

HELD is a bid's hold (it expires unless committed); COMMITTED is a chosen bid waiting to start
(it expires unless allocated); ALLOCATED runs until released. RELEASED, EXPIRED and FAILED are
final: they count for nothing.
"""

from __future__ import annotations

import enum

import msgspec

from dms.types import Resources


class ReservationState(enum.StrEnum):
    HELD = "held"
    COMMITTED = "committed"
    ALLOCATED = "allocated"
    RELEASED = "released"
    EXPIRED = "expired"
    FAILED = "failed"

    @property
    def live(self) -> bool:
        """Whether resources are taken in this state."""
        return self in _LIVE

    def can_become(self, target: ReservationState) -> bool:
        return target in TRANSITIONS[self]


_LIVE = frozenset({ReservationState.HELD, ReservationState.COMMITTED, ReservationState.ALLOCATED})

TRANSITIONS: dict[ReservationState, frozenset[ReservationState]] = {
    ReservationState.HELD: frozenset(
        {ReservationState.COMMITTED, ReservationState.RELEASED, ReservationState.EXPIRED}
    ),
    ReservationState.COMMITTED: frozenset(
        {ReservationState.ALLOCATED, ReservationState.RELEASED, ReservationState.EXPIRED}
    ),
    ReservationState.ALLOCATED: frozenset({ReservationState.RELEASED, ReservationState.FAILED}),
    ReservationState.RELEASED: frozenset(),
    ReservationState.EXPIRED: frozenset(),
    ReservationState.FAILED: frozenset(),
}


class PortRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Ports an allocation needs: ``dynamic`` any free ones, plus the ``fixed`` ones named."""

    dynamic: int = 0
    fixed: tuple[int, ...] = ()

    @property
    def count(self) -> int:
        return self.dynamic + len(self.fixed)


class Reservation(msgspec.Struct, frozen=True, kw_only=True):
    bid_id: str | None
    allocation_id: str | None
    state: ReservationState
    requested: Resources
    """What was asked for (a requirement: GPUs matched by kind)."""
    resources: Resources
    """What was taken: the requested amounts, GPUs as concrete device parts."""
    ports: tuple[int, ...] = ()
    port_request: PortRequest = PortRequest()
    expires_ns: int | None = None
    created_ns: int = 0
    updated_ns: int = 0
    reason: str = ""

    @property
    def ident(self) -> str:
        return self.allocation_id or self.bid_id or ""


class Pools(msgspec.Struct, frozen=True, kw_only=True):
    """The resource pools: free = onboarded - held - committed - allocated."""

    onboarded: Resources
    held: Resources
    committed: Resources
    allocated: Resources
    free: Resources
    is_onboarded: bool = False
    draining: bool = False

    @property
    def used(self) -> Resources:
        return self.held.add(self.committed).add(self.allocated)
