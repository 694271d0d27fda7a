"""ResourceManager: the async face of the ledger, one SQLite transaction per operation.

``hold(bid, resources, ttl)`` -> ``commit(allocation, bid or resources, ttl)`` ->
``allocate(allocation)`` -> ``release(allocation)``; each is atomic and idempotent for the same
id (see :mod:`dms.resources.ledger`). Expiry is measured against the :class:`Clock` passed in;
:func:`run_reclaimer` marks expired holds and commits in the background and prunes old records.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

import anyio

from dms.clock import Clock, RealClock
from dms.log import get_logger
from dms.resources import ledger
from dms.resources.ports import PortProbe, PortRange, can_bind
from dms.resources.records import Pools, PortRequest, Reservation, ReservationState
from dms.store import Database
from dms.types import Resources
from dms.types.units import seconds

T = TypeVar("T")

DAY_NS = 86_400 * 10**9


class ResourceManager:
    """Resource pools of this node: onboarded, held, committed, allocated, free."""

    def __init__(
        self,
        db: Database,
        clock: Clock | None = None,
        *,
        ports: PortRange | None = None,
        probe: PortProbe = can_bind,
        node: str = "",
    ) -> None:
        self.db = db
        self.clock = clock or RealClock()
        self.ports = ports or PortRange()
        self.probe = probe
        self.log = (
            get_logger(component="resources", node=node)
            if node
            else get_logger(component="resources")
        )

    async def _write(self, fn: Callable[[sqlite3.Connection, int], T]) -> T:
        now = self.clock.now_ns()
        return await self.db.transact(lambda conn: fn(conn, now))

    async def _read(self, fn: Callable[[sqlite3.Connection, int], T]) -> T:
        now = self.clock.now_ns()
        return await self.db.query(lambda conn: fn(conn, now))

    # -- the reservation lifecycle --------------------------------------------------------

    async def hold(self, bid_id: str, resources: Resources, ttl_ns: int) -> Reservation:
        held = await self._write(lambda c, now: ledger.hold(c, bid_id, resources, ttl_ns, now))
        self.log.debug("held", bid=bid_id, resources=held.resources.describe())
        return held

    async def commit(
        self,
        allocation_id: str,
        *,
        ttl_ns: int,
        bid_id: str | None = None,
        resources: Resources | None = None,
        ports: PortRequest = ledger.NO_PORTS,
    ) -> Reservation:
        committed = await self._write(
            lambda c, now: ledger.commit(
                c,
                allocation_id,
                ttl_ns=ttl_ns,
                now_ns=now,
                bid_id=bid_id,
                requested=resources,
                port_request=ports,
                port_range=self.ports,
                probe=self.probe,
            )
        )
        self.log.debug("committed", allocation=allocation_id, bid=bid_id, ports=committed.ports)
        return committed

    async def allocate(self, allocation_id: str) -> Reservation:
        allocated = await self._write(lambda c, now: ledger.allocate(c, allocation_id, now))
        self.log.debug("allocated", allocation=allocation_id)
        return allocated

    async def release(self, allocation_id: str, reason: str = "released") -> Reservation:
        released = await self._write(lambda c, now: ledger.release(c, allocation_id, now, reason))
        self.log.debug("released", allocation=allocation_id, reason=reason)
        return released

    async def release_bid(self, bid_id: str, reason: str = "bid not taken") -> Reservation:
        return await self._write(lambda c, now: ledger.release_bid(c, bid_id, now, reason))

    async def fail(self, allocation_id: str, reason: str) -> Reservation:
        failed = await self._write(lambda c, now: ledger.fail(c, allocation_id, now, reason))
        self.log.warning("allocation failed", allocation=allocation_id, reason=reason)
        return failed

    # -- reading --------------------------------------------------------------------------

    async def pools(self) -> Pools:
        return await self._read(ledger.pools)

    async def onboarded(self) -> Resources:
        return (await self.pools()).onboarded

    async def free(self) -> Resources:
        return (await self.pools()).free

    async def allocated(self) -> Resources:
        return (await self.pools()).allocated

    async def reservation(self, allocation_id: str) -> Reservation | None:
        return await self._read(lambda c, _: ledger.by_allocation(c, allocation_id))

    async def bid(self, bid_id: str) -> Reservation | None:
        return await self._read(lambda c, _: ledger.by_bid(c, bid_id))

    async def reservations(self, *states: ReservationState) -> list[Reservation]:
        """Reservations in the given states (default: the live ones), oldest first."""
        wanted = states or (
            ReservationState.HELD,
            ReservationState.COMMITTED,
            ReservationState.ALLOCATED,
        )
        return await self._read(lambda c, _: ledger.in_state(c, *wanted))

    async def invariant_violation(self) -> str | None:
        return await self._read(lambda c, _: ledger.invariant_violation(c))

    # -- housekeeping ---------------------------------------------------------------------

    async def reclaim_expired(self) -> list[Reservation]:
        expired = await self._write(lambda c, now: ledger.expire_due(c, now))
        for r in expired:
            self.log.info(
                "reservation expired",
                bid=r.bid_id,
                allocation=r.allocation_id,
                resources=r.resources.describe(),
            )
        return expired

    async def prune(self, retention_ns: int = DAY_NS) -> int:
        """Forget reservations that ended more than ``retention_ns`` ago."""
        return await self._write(lambda c, now: ledger.prune(c, now - retention_ns))


async def run_reclaimer(
    manager: ResourceManager,
    interval_ns: int,
    *,
    retention_ns: int = DAY_NS,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Reclaim expired holds and commits every ``interval_ns``, until cancelled.

    Run it in the node's task group (``await tg.start(run_reclaimer, manager, interval)``).
    Reservations are also expired lazily by every operation; this loop makes the pools and
    the logs current when nothing else happens.
    """
    if interval_ns <= 0:
        raise ValueError(f"interval: {interval_ns} ns is not a duration greater than 0")
    await manager.reclaim_expired()
    task_status.started()
    while True:
        await manager.clock.sleep(seconds(interval_ns))
        await manager.reclaim_expired()
        await manager.prune(retention_ns)
