"""The ledger: hold -> commit -> allocate -> release, atomic, idempotent, never over onboarded."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from dms.clock import ManualClock
from dms.errors import InsufficientResources
from dms.resources import (
    AllocationsRunning,
    Draining,
    InvalidRequest,
    InvalidTransition,
    NotOnboarded,
    PortRequest,
    PortsUnavailable,
    ReservationClosed,
    ReservationConflict,
    ReservationError,
    ReservationNotFound,
    ReservationState,
    StillReserved,
    ledger,
)
from dms.resources import ports as port_table
from dms.resources.ports import PortRange, can_bind
from dms.resources.records import TRANSITIONS
from dms.store import Database
from dms.types import GPU, GPUVendor, Resources
from tests.resources.helpers import SECOND, GiB, SyncLedger, gpu, machine, need

TWO_GPUS = (gpu(0, 16), gpu(1, 40))


@pytest.fixture
def onboarded(book: SyncLedger) -> SyncLedger:
    book.onboard(machine(cores=8, ram_gib=32, disk_gib=100, gpus=TWO_GPUS))
    return book


class TestHold:
    """A bid's hold takes resources from free until it expires or is committed."""

    def test_a_hold_moves_resources_from_free_to_held(self, onboarded: SyncLedger) -> None:
        onboarded.hold("b1", need(cores=2, ram_gib=4, disk_gib=10))
        pools = onboarded.pools()
        assert pools.held.cpu.cores == 2 and pools.held.ram == 4 * GiB
        assert pools.free.cpu.cores == 6 and pools.free.ram == 28 * GiB
        assert pools.free.disk == 90 * GiB

    def test_a_repeated_hold_returns_the_same_reservation_and_takes_nothing_more(
        self, onboarded: SyncLedger
    ) -> None:
        first = onboarded.hold("b1", need(cores=2))
        onboarded.clock.advance(SECOND)
        again = onboarded.hold("b1", need(cores=2))
        assert again == first
        assert onboarded.pools().held.cpu.cores == 2

    def test_a_repeated_hold_with_other_resources_is_a_conflict(
        self, onboarded: SyncLedger
    ) -> None:
        onboarded.hold("b1", need(cores=2))
        with pytest.raises(ReservationConflict, match="b1"):
            onboarded.hold("b1", need(cores=3))

    @pytest.mark.parametrize(
        ("asked", "dimension"),
        [
            pytest.param(need(cores=8.5), "cpu", id="cpu"),
            pytest.param(need(ram_gib=33), "ram", id="ram"),
            pytest.param(need(disk_gib=101), "disk", id="disk"),
            pytest.param(need(gpus=(GPU(vram=41 * GiB),)), "gpu", id="gpu-vram"),
            pytest.param(need(gpus=(GPU(vendor=GPUVendor.AMD, vram=GiB),)), "gpu", id="gpu-vendor"),
            pytest.param(need(gpus=(GPU(vram=GiB),) * 3), "gpu", id="gpu-count"),
        ],
    )
    def test_a_hold_beyond_free_names_the_dimension(
        self, onboarded: SyncLedger, asked: Resources, dimension: str
    ) -> None:
        with pytest.raises(InsufficientResources) as raised:
            onboarded.hold("b1", asked)
        assert raised.value.dimension == dimension
        assert onboarded.pools().held.is_zero()

    def test_an_exact_fit_fits(self, onboarded: SyncLedger) -> None:
        everything = need(
            cores=8, ram_gib=32, disk_gib=100, gpus=(GPU(vram=16 * GiB), GPU(vram=40 * GiB))
        )
        onboarded.hold("all", everything)
        assert onboarded.pools().free.is_zero()

    @pytest.mark.parametrize(
        ("asked", "field"),
        [
            pytest.param(need(cores=-1), "resources.cpu.cores", id="negative-cores"),
            pytest.param(need(cores=float("nan")), "resources.cpu.cores", id="nan-cores"),
            pytest.param(Resources(ram=-GiB), "resources.ram", id="negative-ram"),
            pytest.param(Resources(disk=-1), "resources.disk", id="negative-disk"),
            pytest.param(
                need(gpus=(GPU(vram=-GiB),)), "resources.gpus[0].vram", id="negative-vram"
            ),
        ],
    )
    def test_negative_amounts_are_refused_before_anything_is_taken(
        self, onboarded: SyncLedger, asked: Resources, field: str
    ) -> None:
        with pytest.raises(InvalidRequest) as raised:
            onboarded.hold("b1", asked)
        assert raised.value.field == field
        with pytest.raises(InvalidRequest):
            onboarded.commit("a1", resources=asked)
        assert onboarded.pools().free == onboarded.pools().onboarded

    def test_holding_without_onboarding_is_refused(self, book: SyncLedger) -> None:
        with pytest.raises(NotOnboarded):
            book.hold("b1", need())

    @pytest.mark.parametrize("ttl_s", [0, -1], ids=["zero", "negative"])
    def test_a_ttl_must_be_positive(self, onboarded: SyncLedger, ttl_s: float) -> None:
        with pytest.raises(ReservationError, match="ttl"):
            onboarded.hold("b1", need(), ttl_s=ttl_s)

    def test_a_hold_expires_after_its_ttl_and_its_id_cannot_be_reused(
        self, onboarded: SyncLedger
    ) -> None:
        onboarded.hold("b1", need(cores=8), ttl_s=10)
        onboarded.clock.advance(10 * SECOND)
        assert onboarded.pools().held.is_zero()  # counted as gone before it is reclaimed
        [expired] = onboarded.expire()
        assert expired.state is ReservationState.EXPIRED
        with pytest.raises(ReservationClosed, match="expired"):
            onboarded.hold("b1", need(cores=8))
        onboarded.hold("b2", need(cores=8))  # the cores are free again


class TestCommit:
    """Commit turns a bid's hold (or fresh resources) into an allocation's commitment."""

    def test_committing_a_bid_moves_its_hold_to_committed(self, onboarded: SyncLedger) -> None:
        onboarded.hold("b1", need(cores=2))
        committed = onboarded.commit("a1", bid="b1")
        assert committed.state is ReservationState.COMMITTED
        assert committed.bid_id == "b1" and committed.allocation_id == "a1"
        pools = onboarded.pools()
        assert pools.held.is_zero() and pools.committed.cpu.cores == 2

    def test_committing_without_a_bid_takes_fresh_resources(self, onboarded: SyncLedger) -> None:
        onboarded.commit("a1", resources=need(cores=3))
        assert onboarded.pools().committed.cpu.cores == 3

    def test_a_repeated_commit_returns_the_same_reservation(self, onboarded: SyncLedger) -> None:
        onboarded.hold("b1", need(cores=2))
        first = onboarded.commit("a1", bid="b1")
        onboarded.clock.advance(SECOND)
        assert onboarded.commit("a1", bid="b1") == first
        assert onboarded.pools().committed.cpu.cores == 2

    @pytest.mark.parametrize(
        "repeat",
        [
            pytest.param({"bid": "b2"}, id="other-bid"),
            pytest.param({"resources": need(cores=5)}, id="other-resources"),
            pytest.param({"bid": "b1", "ports": PortRequest(dynamic=1)}, id="other-ports"),
        ],
    )
    def test_a_repeated_commit_with_other_arguments_is_a_conflict(
        self, onboarded: SyncLedger, repeat: dict[str, object]
    ) -> None:
        onboarded.hold("b1", need(cores=2))
        onboarded.hold("b2", need(cores=2))
        onboarded.commit("a1", bid="b1")
        with pytest.raises(ReservationConflict, match="a1"):
            onboarded.commit("a1", **repeat)  # type: ignore[arg-type]

    def test_a_bid_commits_to_one_allocation_only(self, onboarded: SyncLedger) -> None:
        onboarded.hold("b1", need(cores=2))
        onboarded.commit("a1", bid="b1")
        with pytest.raises(ReservationConflict, match="already committed to allocation a1"):
            onboarded.commit("a2", bid="b1")

    def test_committing_an_unknown_bid_is_not_found(self, onboarded: SyncLedger) -> None:
        with pytest.raises(ReservationNotFound, match="nope"):
            onboarded.commit("a1", bid="nope")

    def test_a_commit_needs_a_bid_or_resources(self, onboarded: SyncLedger) -> None:
        with pytest.raises(ReservationError, match="bid id or the resources"):
            onboarded.commit("a1")

    def test_committing_an_expired_hold_reserves_anew_when_still_free(
        self, onboarded: SyncLedger
    ) -> None:
        onboarded.hold("b1", need(cores=2), ttl_s=5)
        onboarded.clock.advance(6 * SECOND)
        committed = onboarded.commit("a1", bid="b1")
        assert committed.state is ReservationState.COMMITTED
        assert "expired" in committed.reason
        assert onboarded.pools().committed.cpu.cores == 2

    def test_committing_an_expired_hold_fails_when_others_took_the_room(
        self, onboarded: SyncLedger
    ) -> None:
        onboarded.hold("b1", need(cores=6), ttl_s=5)
        onboarded.clock.advance(6 * SECOND)
        onboarded.hold("b2", need(cores=6))
        with pytest.raises(InsufficientResources, match="cpu"):
            onboarded.commit("a1", bid="b1")

    def test_a_commit_expires_unless_allocated(self, onboarded: SyncLedger) -> None:
        onboarded.commit("a1", resources=need(cores=8), ttl_s=5)
        onboarded.clock.advance(5 * SECOND)
        with pytest.raises(ReservationClosed, match="expired"):
            onboarded.allocate("a1")
        assert onboarded.pools().free.cpu.cores == 8


class TestAllocateAndRelease:
    """Allocated resources stay taken until released; release gives back exactly what was taken."""

    def test_an_allocation_does_not_expire(self, onboarded: SyncLedger) -> None:
        onboarded.commit("a1", resources=need(cores=2), ttl_s=5)
        allocated = onboarded.allocate("a1")
        assert allocated.state is ReservationState.ALLOCATED and allocated.expires_ns is None
        onboarded.clock.advance(3600 * SECOND)
        assert onboarded.expire() == []
        assert onboarded.pools().allocated.cpu.cores == 2

    def test_allocate_and_release_are_idempotent(self, onboarded: SyncLedger) -> None:
        onboarded.commit("a1", resources=need(cores=2))
        assert onboarded.allocate("a1") == onboarded.allocate("a1")
        released = onboarded.release("a1")
        assert released.state is ReservationState.RELEASED
        assert onboarded.release("a1") == released
        assert onboarded.pools().free.cpu.cores == 8

    @pytest.mark.parametrize("operation", ["allocate", "release"])
    def test_an_unknown_allocation_is_not_found(
        self, onboarded: SyncLedger, operation: str
    ) -> None:
        with pytest.raises(ReservationNotFound, match="a404"):
            getattr(onboarded, operation)("a404")

    def test_allocating_a_released_allocation_is_refused(self, onboarded: SyncLedger) -> None:
        onboarded.commit("a1", resources=need())
        onboarded.release("a1")
        with pytest.raises(ReservationClosed, match="released"):
            onboarded.allocate("a1")

    def test_release_returns_vram_to_the_device_it_came_from(self, onboarded: SyncLedger) -> None:
        onboarded.hold("b1", need(gpus=(GPU(vram=30 * GiB),)))  # fits only on the 40 GiB device
        onboarded.commit("a1", bid="b1")
        taken = onboarded.allocate("a1").resources.gpus
        assert [g.uuid for g in taken] == ["GPU-1"]
        free = {g.uuid: g.vram for g in onboarded.pools().free.gpus}
        assert free == {"GPU-0": 16 * GiB, "GPU-1": 10 * GiB}
        onboarded.release("a1")
        assert onboarded.pools().free.normalized() == onboarded.pools().onboarded.normalized()

    def test_a_smaller_gpu_need_takes_the_tightest_device(self, onboarded: SyncLedger) -> None:
        taken = onboarded.commit("a1", resources=need(gpus=(GPU(vram=8 * GiB),))).resources.gpus
        assert [g.uuid for g in taken] == ["GPU-0"]

    def test_releasing_a_bid_drops_its_hold(self, onboarded: SyncLedger) -> None:
        onboarded.hold("b1", need(cores=2))
        assert onboarded.release_bid("b1").state is ReservationState.RELEASED
        assert onboarded.pools().held.is_zero()

    def test_a_committed_bid_is_released_by_its_allocation(self, onboarded: SyncLedger) -> None:
        onboarded.hold("b1", need(cores=2))
        onboarded.commit("a1", bid="b1")
        with pytest.raises(InvalidTransition, match="release allocation a1"):
            onboarded.release_bid("b1")

    def test_a_failed_allocation_gives_its_resources_back(self, onboarded: SyncLedger) -> None:
        onboarded.commit("a1", resources=need(cores=2), ports=PortRequest(dynamic=1))
        onboarded.allocate("a1")
        failed = onboarded.fail("a1", "execution vanished")
        assert failed.state is ReservationState.FAILED and failed.reason == "execution vanished"
        assert onboarded.pools().free.cpu.cores == 8
        assert onboarded.ports_in_use() == {}


class TestTransitions:
    """The state machine's table: final states have no way out, live states take resources."""

    def test_final_states_have_no_transitions(self) -> None:
        finals = {s for s in ReservationState if not s.live}
        assert finals == {
            ReservationState.RELEASED,
            ReservationState.EXPIRED,
            ReservationState.FAILED,
        }
        assert all(not TRANSITIONS[s] for s in finals)

    @pytest.mark.parametrize(
        ("start", "target", "allowed"),
        [
            ("held", "committed", True),
            ("held", "allocated", False),
            ("committed", "allocated", True),
            ("committed", "failed", False),
            ("allocated", "expired", False),
            ("allocated", "failed", True),
            ("released", "held", False),
        ],
    )
    def test_transition_table(self, start: str, target: str, allowed: bool) -> None:
        assert ReservationState(start).can_become(ReservationState(target)) is allowed

    def test_failing_a_committed_allocation_is_an_invalid_transition(
        self, onboarded: SyncLedger
    ) -> None:
        onboarded.commit("a1", resources=need())
        with pytest.raises(InvalidTransition, match="committed"):
            onboarded.fail("a1")


class TestPorts:
    """Ports come from the configured range, one allocation per port, back on release."""

    def test_dynamic_and_fixed_ports_are_reserved_and_released(self, onboarded: SyncLedger) -> None:
        committed = onboarded.commit(
            "a1", resources=need(), ports=PortRequest(dynamic=2, fixed=(20050,))
        )
        assert committed.ports == (20000, 20001, 20050)
        second = onboarded.commit("a2", resources=need(), ports=PortRequest(dynamic=1))
        assert second.ports == (20002,)
        onboarded.release("a1")
        assert onboarded.ports_in_use() == {20002: "a2"}

    def test_a_fixed_port_held_by_another_allocation_is_refused(
        self, onboarded: SyncLedger
    ) -> None:
        onboarded.commit("a1", resources=need(), ports=PortRequest(fixed=(20010,)))
        with pytest.raises(PortsUnavailable, match="20010.*reserved by allocation a1"):
            onboarded.commit("a2", resources=need(), ports=PortRequest(fixed=(20010,)))
        assert onboarded.pools().committed.cpu.cores == 1  # a2 took nothing

    @pytest.mark.parametrize(
        ("request_", "message"),
        [
            pytest.param(PortRequest(fixed=(80,)), "range 20000-20099", id="outside-range"),
            pytest.param(PortRequest(dynamic=101), "only 100 free", id="too-many"),
            pytest.param(PortRequest(fixed=(20001, 20001)), "once", id="duplicate"),
        ],
    )
    def test_impossible_port_requests_name_the_field(
        self, onboarded: SyncLedger, request_: PortRequest, message: str
    ) -> None:
        with pytest.raises(PortsUnavailable, match=message):
            onboarded.commit("a1", resources=need(), ports=request_)

    def test_a_port_in_use_on_this_machine_is_skipped(self, onboarded: SyncLedger) -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            busy = listener.getsockname()[1]
            assert not can_bind(busy)
            taken = onboarded.db.transact_sync(
                lambda c: port_table.reserve(
                    c, "a1", PortRequest(dynamic=1), PortRange(busy, min(busy + 50, 65535))
                )
            )
        assert len(taken) == 1 and busy not in taken

    def test_an_expired_commit_frees_its_ports(self, onboarded: SyncLedger) -> None:
        onboarded.commit("a1", resources=need(), ttl_s=1, ports=PortRequest(dynamic=3))
        onboarded.clock.advance(2 * SECOND)
        onboarded.expire()
        assert onboarded.ports_in_use() == {}


class TestOnboardedAmounts:
    """Changing or removing the onboarded amounts never strands a reservation."""

    def test_amounts_can_change_while_allocations_run_if_still_covered(
        self, onboarded: SyncLedger
    ) -> None:
        onboarded.commit("a1", resources=need(cores=2, ram_gib=4, gpus=(GPU(vram=8 * GiB),)))
        onboarded.allocate("a1")
        onboarded.onboard(machine(cores=4, ram_gib=8, disk_gib=10, gpus=TWO_GPUS))
        assert onboarded.pools().free.cpu.cores == 2

    @pytest.mark.parametrize(
        ("smaller", "dimension"),
        [
            pytest.param(machine(cores=1, gpus=TWO_GPUS), "cpu", id="cpu"),
            pytest.param(machine(ram_gib=2, gpus=TWO_GPUS), "ram", id="ram"),
            pytest.param(machine(gpus=(gpu(1, 40),)), "gpu", id="device-removed"),
        ],
    )
    def test_amounts_that_do_not_cover_reservations_are_refused(
        self, onboarded: SyncLedger, smaller: Resources, dimension: str
    ) -> None:
        onboarded.commit("a1", resources=need(cores=2, ram_gib=4))
        onboarded.hold("b1", need(gpus=(GPU(vram=10 * GiB),)))
        with pytest.raises(StillReserved, match=dimension):
            onboarded.onboard(smaller)
        assert onboarded.pools().onboarded.cpu.cores == 8

    def test_offboard_is_refused_while_allocations_run_and_lists_them(
        self, onboarded: SyncLedger
    ) -> None:
        onboarded.commit("a1", resources=need())
        onboarded.allocate("a1")
        onboarded.commit("a2", resources=need())
        with pytest.raises(AllocationsRunning, match="a1 .allocated.*a2 .committed") as raised:
            onboarded.offboard()
        assert raised.value.allocations == ("a1", "a2")
        assert onboarded.pools().is_onboarded

    def test_offboard_drops_holds(self, onboarded: SyncLedger) -> None:
        onboarded.hold("b1", need())
        [released] = onboarded.offboard()
        assert released.bid_id == "b1" and released.state is ReservationState.RELEASED
        pools = onboarded.pools()
        assert not pools.is_onboarded and pools.onboarded.is_zero()
        with pytest.raises(NotOnboarded):
            onboarded.offboard()

    def test_a_draining_pool_takes_no_new_reservations(self, onboarded: SyncLedger) -> None:
        onboarded.commit("a1", resources=need())
        running = onboarded.db.transact_sync(lambda c: ledger.start_draining(c, onboarded.now))
        assert [r.allocation_id for r in running] == ["a1"]
        with pytest.raises(Draining):
            onboarded.hold("b1", need())
        with pytest.raises(Draining):
            onboarded.allocate("a1")
        released = onboarded.offboard(force=True)
        assert [r.allocation_id for r in released] == ["a1"]
        assert onboarded.violation() is None


class TestPersistence:
    """Everything lives in the database file: a restarted node sees the same pools."""

    def test_onboarding_and_allocations_survive_reopening_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "dms.sqlite3"
        clock = ManualClock()
        with Database(path) as db:
            book = SyncLedger(db, clock)
            book.onboard(machine(gpus=TWO_GPUS))
            book.commit(
                "a1", resources=need(cores=2, gpus=(GPU(vram=GiB),)), ports=PortRequest(dynamic=1)
            )
            book.allocate("a1")
            book.hold("b1", need(cores=1), ttl_s=60)
            before = book.pools()
        with Database(path) as db:
            book = SyncLedger(db, clock)
            assert book.pools() == before
            assert book.ports_in_use() == {20000: "a1"}
            assert book.release("a1").state is ReservationState.RELEASED

    def test_pruning_forgets_only_old_ended_reservations(self, onboarded: SyncLedger) -> None:
        onboarded.commit("a1", resources=need())
        onboarded.release("a1")
        onboarded.commit("a2", resources=need())
        onboarded.allocate("a2")
        onboarded.clock.advance(100 * SECOND)
        removed = onboarded.db.transact_sync(lambda c: ledger.prune(c, onboarded.now - 50 * SECOND))
        assert removed == 1
        with pytest.raises(ReservationNotFound):
            onboarded.release("a1")
        assert onboarded.release("a2").state is ReservationState.RELEASED
