"""Hypothesis drives random hold / commit / allocate / release / expire / re-onboard sequences
against a model; after every step the store must agree with the model and never exceed what
is onboarded, in any dimension or on any GPU device."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from dms.errors import InsufficientResources
from dms.resources import (
    ReservationClosed,
    ReservationConflict,
    ReservationState,
    StillReserved,
    ledger,
)
from dms.store import Database
from dms.types import CPU, GPU, GPUVendor, Resources
from tests.resources.helpers import SECOND, GiB, SyncLedger, gpu, machine

DEVICES = (gpu(0, 8), gpu(1, 16), gpu(2, 16, GPUVendor.AMD, "MI300"))

gpu_needs = st.lists(
    st.builds(
        GPU,
        vendor=st.sampled_from([GPUVendor.UNKNOWN, GPUVendor.NVIDIA, GPUVendor.AMD]),
        vram=st.integers(min_value=1, max_value=12).map(lambda n: n * GiB),
    ),
    max_size=2,
).map(tuple)

needs = st.builds(
    Resources,
    cpu=st.builds(CPU, cores=st.integers(min_value=1, max_value=12).map(lambda n: n / 4)),
    ram=st.integers(min_value=0, max_value=8).map(lambda n: n * GiB),
    disk=st.integers(min_value=0, max_value=20).map(lambda n: n * GiB),
    gpus=gpu_needs,
)
ttls = st.integers(min_value=1, max_value=20)


@dataclass
class Row:
    bid: str | None
    allocation: str | None
    state: ReservationState
    resources: Resources
    requested: Resources
    expires_ns: int | None


class LedgerMachine(RuleBasedStateMachine):
    bids = Bundle("bids")
    allocations = Bundle("allocations")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-"))
        self.db = Database(self.dir / "dms.sqlite3")
        self.book = SyncLedger(self.db)
        self.rows: list[Row] = []
        self.counter = 0
        self.onboarded = machine(cores=4, ram_gib=16, disk_gib=40, gpus=DEVICES)

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the model ----------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def expire_model(self) -> None:
        now = self.book.now
        for row in self.rows:
            if row.state in (ReservationState.HELD, ReservationState.COMMITTED):
                assert row.expires_ns is not None
                if row.expires_ns <= now:
                    row.state = ReservationState.EXPIRED

    def model_free(self) -> Resources:
        self.expire_model()
        used = Resources()
        for row in self.rows:
            if row.state.live:
                used = used.add(row.resources)
        return self.onboarded.subtract(used)

    def row_for_bid(self, bid: str) -> Row:
        return [r for r in self.rows if r.bid == bid][-1]

    def row_for_allocation(self, allocation: str) -> Row | None:
        return next((r for r in self.rows if r.allocation == allocation), None)

    # -- rules --------------------------------------------------------------------------------

    @initialize()
    def onboard(self) -> None:
        self.book.onboard(self.onboarded)

    @rule(target=bids, requested=needs, ttl=ttls)
    def hold(self, requested: Resources, ttl: int) -> str:
        bid = self.new_id("b")
        fits = self.model_free().covers(requested)
        try:
            held = self.book.hold(bid, requested, ttl_s=ttl)
        except InsufficientResources:
            assert not fits, "refused a hold that fits"
            return bid
        assert fits, "granted a hold that does not fit"
        self.rows.append(
            Row(bid, None, ReservationState.HELD, held.resources, requested, held.expires_ns)
        )
        return bid

    @rule(bid=bids)
    def repeat_hold(self, bid: str) -> None:
        self.expire_model()
        rows = [r for r in self.rows if r.bid == bid]
        if not rows:
            return
        row = rows[-1]
        try:
            again = self.book.hold(bid, row.requested)
        except ReservationClosed:
            assert not row.state.live
            return
        assert row.state.live and again.state is row.state

    @rule(target=allocations, bid=consumes(bids), ttl=ttls)
    def commit_bid(self, bid: str, ttl: int) -> str:
        allocation = self.new_id("a")
        self.expire_model()
        rows = [r for r in self.rows if r.bid == bid]
        if not rows:
            return allocation  # the hold was refused; nothing to commit
        row = rows[-1]
        refits = row.state is ReservationState.EXPIRED and self.model_free().covers(row.requested)
        try:
            committed = self.book.commit(allocation, bid=bid, ttl_s=ttl)
        except InsufficientResources:
            assert row.state is ReservationState.EXPIRED and not refits
            return allocation
        except ReservationClosed:
            assert row.state in (ReservationState.RELEASED,)
            return allocation
        if row.state is ReservationState.HELD:
            row.state, row.allocation = ReservationState.COMMITTED, allocation
            row.expires_ns = committed.expires_ns
        else:
            assert refits
            self.rows.append(
                Row(
                    bid,
                    allocation,
                    ReservationState.COMMITTED,
                    committed.resources,
                    row.requested,
                    committed.expires_ns,
                )
            )
        return allocation

    @rule(target=allocations, requested=needs, ttl=ttls)
    def commit_fresh(self, requested: Resources, ttl: int) -> str:
        allocation = self.new_id("a")
        fits = self.model_free().covers(requested)
        try:
            committed = self.book.commit(allocation, resources=requested, ttl_s=ttl)
        except InsufficientResources:
            assert not fits
            return allocation
        assert fits
        self.rows.append(
            Row(
                None,
                allocation,
                ReservationState.COMMITTED,
                committed.resources,
                requested,
                committed.expires_ns,
            )
        )
        return allocation

    @rule(allocation=allocations)
    def allocate(self, allocation: str) -> None:
        self.expire_model()
        row = self.row_for_allocation(allocation)
        if row is None:
            return
        try:
            self.book.allocate(allocation)
        except ReservationClosed:
            assert not row.state.live
            return
        assert row.state in (ReservationState.COMMITTED, ReservationState.ALLOCATED)
        row.state, row.expires_ns = ReservationState.ALLOCATED, None

    @rule(allocation=allocations)
    def release(self, allocation: str) -> None:
        self.expire_model()
        row = self.row_for_allocation(allocation)
        if row is None:
            return
        released = self.book.release(allocation)
        if row.state.live:
            row.state = ReservationState.RELEASED
        assert released.state is row.state

    @rule(bid=bids)
    def release_bid(self, bid: str) -> None:
        self.expire_model()
        if not any(r.bid == bid for r in self.rows):
            return
        row = self.row_for_bid(bid)
        if row.state in (ReservationState.COMMITTED, ReservationState.ALLOCATED):
            return
        self.book.release_bid(bid)
        if row.state is ReservationState.HELD:
            row.state = ReservationState.RELEASED

    @rule(seconds=st.integers(min_value=1, max_value=15))
    def advance(self, seconds: int) -> None:
        self.book.clock.advance(seconds * SECOND)

    @rule()
    def reclaim(self) -> None:
        expired = self.book.expire()
        self.expire_model()
        states = {(r.bid, r.allocation): r.state for r in self.rows}
        assert all(states[(r.bid_id, r.allocation_id)] is ReservationState.EXPIRED for r in expired)
        now = self.book.now
        stored = self.db.query_sync(ledger.live)
        assert all(r.expires_ns is None or r.expires_ns > now for r in stored)

    @rule(
        cores=st.integers(min_value=1, max_value=8),
        ram_gib=st.integers(min_value=1, max_value=16),
        keep_gpus=st.integers(min_value=0, max_value=3),
    )
    def reonboard(self, cores: int, ram_gib: int, keep_gpus: int) -> None:
        new = machine(cores=cores, ram_gib=ram_gib, disk_gib=40, gpus=DEVICES[:keep_gpus])
        self.expire_model()
        used = Resources()
        for row in self.rows:
            if row.state.live:
                used = used.add(row.resources)
        try:
            self.book.onboard(new)
        except StillReserved:
            assert not new.covers(used)
            return
        assert new.covers(used)
        self.onboarded = new

    @rule(bid=bids, other=needs)
    def conflicting_hold(self, bid: str, other: Resources) -> None:
        rows = [r for r in self.rows if r.bid == bid]
        if not rows or rows[-1].requested.normalized() == other.normalized():
            return
        try:
            self.book.hold(bid, other)
        except ReservationConflict:
            return
        raise AssertionError("a hold repeated with other resources was accepted")

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def never_more_than_onboarded(self) -> None:
        assert self.book.violation() is None

    @invariant()
    def store_agrees_with_model(self) -> None:
        pools = self.book.pools()
        assert pools.free.normalized() == self.model_free().normalized()
        assert pools.free.add(pools.used).normalized() == pools.onboarded.normalized()
        stored = self.db.query_sync(ledger.live)
        expected = {(r.bid, r.allocation, r.state) for r in self.rows if r.state.live}
        # Rows past their expiry may still be stored as live until the next write.
        actual = {
            (r.bid_id, r.allocation_id, r.state)
            for r in stored
            if r.expires_ns is None or r.expires_ns > self.book.now
        }
        assert actual == expected


LedgerMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
TestLedgerStateMachine = LedgerMachine.TestCase
