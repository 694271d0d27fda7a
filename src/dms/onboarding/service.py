"""Onboard, re-onboard, offboard and report, over the ResourceManager's database.

The onboarded pool (``dms.resources.ledger``) and the onboarding record (request, price,
location) are written in one transaction, so they never disagree.

Offboarding is refused while allocations run, naming them. With ``force`` it first marks the
pool as draining (no new holds, commits or starts), stops each running allocation through the
``stop_allocation`` callback, then releases everything and removes the pool. An offboard cut
short (a crash, a cancellation) leaves the pool draining; offboarding again, or the start-up
sanity check, finishes it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Protocol, TypeVar

import msgspec

from dms.errors import OnboardingError
from dms.log import get_logger
from dms.onboarding.records import (
    OffboardResult,
    OnboardingRecord,
    OnboardRequest,
    OnboardStatus,
    ResourcesView,
)
from dms.onboarding.validate import validate
from dms.resources import ledger
from dms.resources.errors import Draining
from dms.resources.hardware import HardwareProbe
from dms.resources.manager import ResourceManager
from dms.resources.records import Pools, Reservation, ReservationState
from dms.types import Capability, ExecutorType, JobType, PriceInformation

T = TypeVar("T")
_decode_record = msgspec.json.Decoder(OnboardingRecord).decode


class StopAllocation(Protocol):
    """Stops a running allocation's workload (the executor side); returns when it is gone."""

    async def __call__(self, allocation_id: str) -> None: ...


def read_record(conn: sqlite3.Connection) -> OnboardingRecord | None:
    row = conn.execute("SELECT record FROM onboarding WHERE id = 1").fetchone()
    return None if row is None else _decode_record(row[0])


def _write_record(conn: sqlite3.Connection, record: OnboardingRecord) -> None:
    conn.execute(
        "INSERT INTO onboarding (id, record) VALUES (1, ?) "
        "ON CONFLICT (id) DO UPDATE SET record = excluded.record",
        (msgspec.json.encode(record),),
    )


def _delete_record(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM onboarding WHERE id = 1")


def offboard_tx(
    conn: sqlite3.Connection, now_ns: int, *, force: bool, reason: str = "offboarded"
) -> list[Reservation]:
    """Remove the pool and the record in one transaction (see ``ledger.clear_onboarded``)."""
    released = ledger.clear_onboarded(conn, now_ns, force=force, reason=reason)
    _delete_record(conn)
    return released


class OnboardingService:
    """The Python API behind ``dms onboard``, ``dms offboard`` and ``dms resources``."""

    def __init__(
        self,
        manager: ResourceManager,
        hardware: HardwareProbe,
        *,
        stop_allocation: StopAllocation | None = None,
        executors: tuple[ExecutorType, ...] = (),
        job_types: tuple[JobType, ...] = (),
        node: str = "",
    ) -> None:
        self.manager = manager
        self.db = manager.db
        self.clock = manager.clock
        self.hardware = hardware
        self.stop_allocation = stop_allocation
        self.executors = executors
        self.job_types = job_types
        self.log = get_logger(component="onboarding", **({"node": node} if node else {}))
        self._cached: tuple[OnboardingRecord | None] | None = None
        """The record as last read (a provider reads it for every bid and advert); this
        service is the only writer of its node's record, and drops the copy around each write."""
        self._writes = 0

    async def _transact(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A write transaction that may change the record: the cached copy goes first, and a
        read that overlapped the write does not cache what it saw."""
        self._writes += 1
        self._cached = None
        try:
            return await self.db.transact(fn)
        finally:
            self._writes += 1
            self._cached = None

    # -- onboarding -----------------------------------------------------------------------

    async def onboard(self, request: OnboardRequest) -> OnboardStatus:
        """Onboard, or change the onboarded amounts in place (allowed while allocations run
        when the new amounts still cover every reservation)."""
        spec = await self.hardware.spec()
        usage = await self.hardware.usage()
        pools = await self.manager.pools()
        if pools.draining:
            raise Draining("onboard")
        resources = validate(
            request, spec, usage, reserved=pools.used if pools.is_onboarded else None
        )
        now = self.clock.now_ns()

        def store(conn: sqlite3.Connection) -> tuple[OnboardingRecord, bool]:
            previous = read_record(conn)
            was_onboarded = ledger.read_pool(conn)[0] is not None
            ledger.set_onboarded(conn, resources, now)
            record = OnboardingRecord(
                request=request,
                resources=resources,
                onboarded_ns=previous.onboarded_ns if previous and was_onboarded else now,
                updated_ns=now,
            )
            _write_record(conn, record)
            return record, was_onboarded

        record, again = await self._transact(store)
        self.log.info(
            "re-onboarded" if again else "onboarded",
            resources=record.resources.describe(),
            price=f"{request.price_per_hour}{request.currency}",
            location=request.location.describe(),
        )
        return await self.status()

    async def offboard(self, *, force: bool = False) -> OffboardResult:
        """Offboard; refused (AllocationsRunning, listing them) unless ``force``."""
        if not force:
            now = self.clock.now_ns()
            released = await self._transact(lambda c: offboard_tx(c, now, force=False))
            self.log.info("offboarded", released=[r.ident for r in released])
            return OffboardResult(offboarded=True, released=tuple(r.ident for r in released))
        running = [
            r
            for r in await self.manager.reservations(ReservationState.ALLOCATED)
            if r.allocation_id
        ]
        if running and self.stop_allocation is None:
            raise OnboardingError(
                f"cannot force an offboard: {len(running)} allocation(s) run "
                f"({', '.join(r.ident for r in running)}) and this node has no way to stop them"
            )
        return await self.drain_and_offboard(reason="offboarded (forced)")

    async def drain_and_offboard(self, *, reason: str) -> OffboardResult:
        """Stop taking work, stop what runs, release everything, remove the pool."""
        now = self.clock.now_ns()
        running = await self._transact(lambda c: ledger.start_draining(c, now))
        stopped: list[str] = []
        problems: list[str] = []
        for reservation in running:
            allocation = reservation.allocation_id
            if reservation.state is not ReservationState.ALLOCATED or allocation is None:
                continue  # committed but not started: releasing is enough
            if self.stop_allocation is None:
                problems.append(f"{allocation}: no way to stop it on this node")
                continue
            try:
                await self.stop_allocation(allocation)
            except Exception as exc:  # one stubborn workload must not block the offboard
                problems.append(f"{allocation}: {exc}")
                self.log.warning("stopping failed", allocation=allocation, error=str(exc))
                continue
            stopped.append(allocation)
        now = self.clock.now_ns()
        released = await self._transact(lambda c: offboard_tx(c, now, force=True, reason=reason))
        self.log.info(
            "offboarded",
            reason=reason,
            stopped=stopped,
            released=[r.ident for r in released],
            problems=problems,
        )
        return OffboardResult(
            offboarded=True,
            stopped=tuple(stopped),
            released=tuple(r.ident for r in released),
            problems=tuple(problems),
        )

    # -- reading --------------------------------------------------------------------------

    async def record(self) -> OnboardingRecord | None:
        cached = self._cached
        if cached is not None:
            return cached[0]
        writes = self._writes
        record = await self.db.query(read_record)
        if writes == self._writes:
            self._cached = (record,)
        return record

    async def resources(self) -> ResourcesView:
        spec = await self.hardware.spec()
        return ResourcesView.of(spec, await self.manager.pools())

    async def status(self) -> OnboardStatus:
        spec = await self.hardware.spec()
        pools = await self.manager.pools()
        record = await self.record()
        return OnboardStatus(
            onboarded=pools.is_onboarded,
            draining=pools.draining,
            record=record if pools.is_onboarded else None,
            resources=ResourcesView.of(spec, pools),
        )

    async def capability(self) -> Capability:
        """What this provider offers now: free resources, price, location, executors.

        Not onboarded (or draining): a capability with no resources."""
        return self.offer(await self.manager.pools(), await self.record())

    def offer(self, pools: Pools, record: OnboardingRecord | None) -> Capability:
        """:meth:`capability` from pools and a record the caller has just read (a provider
        reads both for every bid and advert anyway; reading them twice costs a store round
        trip each)."""
        if record is None or not pools.is_onboarded or pools.draining:
            return Capability(executors=self.executors, job_types=self.job_types)
        request = record.request
        return Capability(
            executors=self.executors,
            job_types=self.job_types,
            resources=pools.free,
            locality=request.location.tags(),
            price=PriceInformation(
                currency=request.currency, currency_per_hour=request.price_per_hour
            ),
        )
