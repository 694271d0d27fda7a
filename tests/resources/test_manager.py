"""ResourceManager, the async API, and the reclaimer loop on virtual time."""

from __future__ import annotations

import functools

import anyio
import pytest
import trio

from dms.clock import LoopClock, ManualClock
from dms.resources import (
    PortRange,
    PortRequest,
    ReservationState,
    ResourceManager,
    ledger,
    run_reclaimer,
)
from dms.store import Database
from tests.resources.helpers import SECOND, always_free, gpu, machine, need


@pytest.fixture
def manager(db: Database, clock: ManualClock) -> ResourceManager:
    db.transact_sync(lambda c: ledger.set_onboarded(c, machine(gpus=(gpu(0, 16),)), 0))
    return ResourceManager(db, clock, ports=PortRange(30000, 30009), probe=always_free)


class TestAPI:
    """The async methods are the ledger's operations, one transaction each."""

    async def test_the_lifecycle_through_the_manager(self, manager: ResourceManager) -> None:
        await manager.hold("b1", need(cores=2, ram_gib=4), 10 * SECOND)
        committed = await manager.commit(
            "a1", bid_id="b1", ttl_ns=10 * SECOND, ports=PortRequest(dynamic=1)
        )
        assert committed.ports == (30000,)
        await manager.allocate("a1")
        assert (await manager.allocated()).cpu.cores == 2
        assert (await manager.free()).cpu.cores == 6
        assert (await manager.onboarded()).cpu.cores == 8
        [live] = await manager.reservations()
        assert live.allocation_id == "a1" and live.state is ReservationState.ALLOCATED
        assert (await manager.release("a1")).state is ReservationState.RELEASED
        assert await manager.reservations() == []
        assert (await manager.bid("b1")) == (await manager.reservation("a1"))
        assert await manager.invariant_violation() is None

    async def test_reclaiming_and_pruning(
        self, manager: ResourceManager, clock: ManualClock
    ) -> None:
        await manager.hold("b1", need(), 5 * SECOND)
        await manager.commit("a1", resources=need(), ttl_ns=5 * SECOND)
        await manager.release("a1")
        clock.advance(6 * SECOND)
        expired = await manager.reclaim_expired()
        assert [r.bid_id for r in expired] == ["b1"]
        assert await manager.prune(retention_ns=10 * SECOND) == 0
        clock.advance(20 * SECOND)
        assert await manager.prune(retention_ns=10 * SECOND) == 2


class Watched(ResourceManager):
    """A manager that announces each pass of the reclaimer (it prunes at the end of one)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.passed = anyio.Event()

    async def prune(self, retention_ns: int = 0) -> int:
        removed = await super().prune(retention_ns)
        self.passed.set()
        self.passed = anyio.Event()
        return removed


class TestReclaimer:
    """The background task expires holds and commits on its interval, in virtual time."""

    async def test_expired_holds_are_reclaimed_without_other_traffic(
        self, db: Database, autojump_clock: trio.testing.MockClock
    ) -> None:
        db.transact_sync(lambda c: ledger.set_onboarded(c, machine(), 0))
        manager = Watched(db, LoopClock(), probe=always_free)
        start = trio.current_time()
        await manager.hold("b1", need(cores=8), 10 * SECOND)
        async with anyio.create_task_group() as tg:
            await tg.start(run_reclaimer, manager, 5 * SECOND)
            while (held := await manager.bid("b1")) and held.state is ReservationState.HELD:
                await manager.passed.wait()
            assert held is not None and held.state is ReservationState.EXPIRED
            assert trio.current_time() - start >= 10
            assert (await manager.free()).cpu.cores == 8
            tg.cancel_scope.cancel()

    async def test_the_reclaimer_prunes_what_ended_long_ago(
        self, db: Database, autojump_clock: trio.testing.MockClock
    ) -> None:
        db.transact_sync(lambda c: ledger.set_onboarded(c, machine(), 0))
        manager = Watched(db, LoopClock(), probe=always_free)
        start = trio.current_time()
        await manager.commit("a1", resources=need(), ttl_ns=SECOND)
        await manager.release("a1")
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                functools.partial(run_reclaimer, manager, SECOND, retention_ns=60 * SECOND)
            )
            while await manager.reservation("a1") is not None:
                await manager.passed.wait()
            assert trio.current_time() - start > 60
            tg.cancel_scope.cancel()

    async def test_a_zero_interval_is_refused(self, manager: ResourceManager) -> None:
        with pytest.raises(ValueError, match="interval"):
            await run_reclaimer(manager, 0)
