"""Property: whatever order commit, allocate, start, stop and revert arrive in, repeated or late,
the pools are never overdrawn, every slot is released at most once, and once everything has
ended free == onboarded."""

from __future__ import annotations

import contextlib
import tempfile
from collections import Counter
from pathlib import Path

import anyio
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dms.actor import Empty, RemoteError
from dms.errors import DMSError
from dms.jobs.protocol import (
    ALLOCATION_START,
    ALLOCATION_STOP,
    AllocationState,
    Bid,
    StopRequest,
)
from dms.resources import Reservation, ReservationState, ResourceManager
from dms.types import new_id
from tests.jobs.provider.harness import SECOND, Cluster, cluster, need, null_manifest

SLOTS = 2
OPS = st.one_of(
    st.tuples(st.sampled_from(["bid", "commit", "allocate", "start", "stop", "force-stop"]),
              st.integers(0, SLOTS - 1)),
    st.tuples(st.sampled_from(["revert-slot", "revert-bid", "revert-both"]),
              st.integers(0, SLOTS - 1)),
    st.tuples(st.just("sleep"), st.sampled_from([1, 8, 25, 40])),
)  # fmt: skip


class CountingManager(ResourceManager):
    """Counts, per reservation, the releases that actually gave resources back."""

    released: Counter[str]

    async def release(self, allocation_id: str, reason: str = "released") -> Reservation:
        before = await self.reservation(allocation_id)
        after = await super().release(allocation_id, reason)
        if before is not None and before.state.live and after.state is ReservationState.RELEASED:
            self.released[allocation_id] += 1
        return after


class World:
    """One run of the property: the cluster and what the orchestrator side knows."""

    def __init__(self, c: Cluster) -> None:
        self.c = c
        self.slot_ids = [new_id("s") for _ in range(SLOTS)]
        self.bids: list[Bid | None] = [None] * SLOTS
        self.every_bid: list[tuple[int, Bid]] = []
        self.manifests = [
            null_manifest([f"duration={d}"], name=f"n{i}") for i, d in enumerate(("3s", "1h"))
        ]
        self.handles: dict[int, object] = {}

    async def step(self, op: str, arg: int) -> None:
        c, i = self.c, arg
        bid = self.bids[i] if op != "sleep" else None
        if op == "sleep":
            await anyio.sleep(arg)
        elif op == "bid":
            self.bids[i] = await c.bid(need(cores=1), hold_ns=30 * SECOND)
            self.every_bid.append((i, self.bids[i]))
        elif op == "commit" and bid is not None:
            await c.commit(bid, self.slot_ids[i], ttl_ns=20 * SECOND)
        elif op == "allocate":
            reply = await c.allocate(self.slot_ids[i], self.manifests[i])
            self.handles[i] = reply.handles[self.manifests[i].allocation_id]
        elif op in ("start", "stop") and i in self.handles:
            handle = self.handles[i]
            if op == "start":
                await c.orchestrator.invoke(handle, ALLOCATION_START, Empty(), AllocationState)  # type: ignore[arg-type]
            else:
                await c.orchestrator.invoke(handle, ALLOCATION_STOP, StopRequest(), AllocationState)  # type: ignore[arg-type]
        elif op == "force-stop":
            await c.service.stop_allocation(self.slot_ids[i])
        elif op.startswith("revert"):
            slot = self.slot_ids[i] if op in ("revert-slot", "revert-both") else ""
            bid_id = bid.bid_id if bid is not None and op != "revert-slot" else ""
            if slot or bid_id:
                await c.revert(slot_id=slot, bid_id=bid_id)

    async def wind_up(self) -> None:
        """Revert everything, as an orchestrator's teardown would, and wait for the ends."""
        for i in range(SLOTS):
            await self.c.revert(slot_id=self.slot_ids[i])
        for i, bid in self.every_bid:
            await self.c.revert(slot_id=self.slot_ids[i], bid_id=bid.bid_id)
        for state in self.c.service.allocations():
            assert state.status.final, state


async def scenario(path: Path, ops: list[tuple[str, int]]) -> None:
    async with cluster(path) as c:
        manager = CountingManager(c.manager.db, c.manager.clock, ports=c.manager.ports)
        manager.released = Counter()
        manager.probe = c.manager.probe
        c.manager = c.service.manager = c.onboarding.manager = manager
        world = World(c)
        for op, arg in ops:
            # Refusals are fine: what matters is what they leave behind.
            with contextlib.suppress(RemoteError, DMSError, AssertionError):
                await world.step(op, arg)
            assert await manager.invariant_violation() is None
        await world.wind_up()
        assert await c.free_is_onboarded(), await manager.pools()
        assert all(n == 1 for n in manager.released.values()), manager.released
        await manager.reclaim_expired()  # lapsed commitments are expired lazily
        for slot_id in world.slot_ids:
            reservation = await manager.reservation(slot_id)
            assert reservation is None or not reservation.state.live


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=1, max_size=14))
def test_any_interleaving_leaves_the_pools_whole(ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        trio.run(scenario, Path(folder), ops, clock=trio.testing.MockClock(autojump_threshold=0))


class TestKnownInterleavings:
    """Orders worth naming, run on their own."""

    def run(self, tmp_path: Path, *ops: tuple[str, int]) -> None:
        trio.run(scenario, tmp_path, list(ops), clock=trio.testing.MockClock(autojump_threshold=0))

    def test_revert_racing_a_running_allocation(self, tmp_path: Path) -> None:
        self.run(tmp_path, ("bid", 1), ("commit", 1), ("allocate", 1), ("start", 1),
                 ("revert-slot", 1), ("start", 1), ("allocate", 1))  # fmt: skip

    def test_commit_after_revert_of_the_bid(self, tmp_path: Path) -> None:
        self.run(tmp_path, ("bid", 0), ("revert-bid", 0), ("commit", 0), ("allocate", 0))

    def test_allocate_after_the_commit_lapsed(self, tmp_path: Path) -> None:
        self.run(tmp_path, ("bid", 0), ("commit", 0), ("sleep", 25), ("allocate", 0))

    def test_stop_then_late_start_and_duplicate_revert(self, tmp_path: Path) -> None:
        self.run(tmp_path, ("bid", 0), ("commit", 0), ("allocate", 0), ("stop", 0),
                 ("start", 0), ("revert-both", 0), ("revert-both", 0))  # fmt: skip

    def test_a_task_that_ends_by_itself_then_a_forced_stop(self, tmp_path: Path) -> None:
        self.run(tmp_path, ("bid", 0), ("commit", 0), ("allocate", 0), ("start", 0),
                 ("sleep", 8), ("force-stop", 0), ("revert-slot", 0))  # fmt: skip
