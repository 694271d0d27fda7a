"""The start-up sanity check reconciles the store with reality and reports what it did."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from dms.clock import ManualClock
from dms.onboarding import GPUShare, OnboardingService, OnboardRequest
from dms.resources import ReservationState, ResourceManager, StaticHardware
from dms.sanity import SanityReport, StaticExecutions, sanity_check, shrinkage
from dms.store import Database
from dms.types import CPU, GPU, Resources
from tests.onboarding.conftest import SPEC, GiB, Stopper
from tests.resources.helpers import always_free

SECOND = 10**9
REQUEST = OnboardRequest(cpu=4, ram=16 * GiB, disk=100 * GiB, gpus=(GPUShare(1, 40 * GiB),))


class Node:
    """A provider's state in one database file, reopened as a restarted node would."""

    def __init__(self, path: Path, clock: ManualClock, hardware: StaticHardware) -> None:
        self.db = Database(path)
        self.manager = ResourceManager(self.db, clock, probe=always_free)
        self.stopper = Stopper()
        self.service = OnboardingService(self.manager, hardware, stop_allocation=self.stopper)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def hardware() -> StaticHardware:
    return StaticHardware(SPEC)


async def before_restart(path: Path, clock: ManualClock, hardware: StaticHardware) -> None:
    node = Node(path, clock, hardware)
    await node.service.onboard(REQUEST)
    manager = node.manager
    await manager.hold("b-old", Resources(cpu=CPU(cores=1)), 10 * SECOND)
    await manager.commit("a-pending", resources=Resources(ram=GiB), ttl_ns=10 * SECOND)
    for allocation in ("a-alive", "a-dead"):
        await manager.commit(allocation, resources=Resources(ram=GiB), ttl_ns=10 * SECOND)
        await manager.allocate(allocation)
    node.db.close()


class TestReconcile:
    """Expired reservations, vanished executions and a shrunken machine are dealt with."""

    async def test_expired_and_dead_reservations_are_released(
        self, tmp_path: Path, clock: ManualClock, hardware: StaticHardware
    ) -> None:
        await before_restart(tmp_path / "db", clock, hardware)
        clock.advance(60 * SECOND)  # the node was down for a minute
        node = Node(tmp_path / "db", clock, hardware)
        executions = StaticExecutions({"a-alive"})
        report = await sanity_check(node.service, executions)
        assert report == SanityReport(expired=("b-old", "a-pending"), failed=("a-dead",))
        assert sorted(executions.asked) == ["a-alive", "a-dead"]
        dead = await node.manager.reservation("a-dead")
        assert dead is not None and dead.state is ReservationState.FAILED
        pools = await node.manager.pools()
        assert pools.allocated.ram == GiB and pools.held.is_zero() and pools.committed.is_zero()
        assert pools.is_onboarded
        node.db.close()

    async def test_a_clean_store_is_left_alone(
        self, tmp_path: Path, clock: ManualClock, hardware: StaticHardware
    ) -> None:
        node = Node(tmp_path / "db", clock, hardware)
        await node.service.onboard(REQUEST)
        assert await sanity_check(node.service, StaticExecutions()) == SanityReport()
        assert (await node.service.status()).onboarded
        node.db.close()

    @pytest.mark.parametrize(
        ("smaller", "reason"),
        [
            pytest.param(
                msgspec.structs.replace(SPEC, ram=8 * GiB),
                "ram: 16GiB onboarded, 8GiB present",
                id="ram",
            ),
            pytest.param(
                msgspec.structs.replace(SPEC, cpu=msgspec.structs.replace(SPEC.cpu, threads=2)),
                "cpu: 4 cores onboarded, 2 present",
                id="cpu",
            ),
            pytest.param(
                msgspec.structs.replace(SPEC, gpus=SPEC.gpus[:1]),
                "gpu 1 (uuid:GPU-bbb): no longer present",
                id="gpu-gone",
            ),
            pytest.param(
                msgspec.structs.replace(
                    SPEC, gpus=(SPEC.gpus[0], msgspec.structs.replace(SPEC.gpus[1], vram=32 * GiB))
                ),
                "gpu 1: 40GiB VRAM onboarded, 32GiB present",
                id="gpu-smaller",
            ),
            pytest.param(
                msgspec.structs.replace(SPEC, disk=50 * GiB), "disk: 100GiB onboarded", id="disk"
            ),
        ],
    )
    async def test_a_machine_that_shrank_is_offboarded_with_the_reason(
        self,
        tmp_path: Path,
        clock: ManualClock,
        hardware: StaticHardware,
        smaller: object,
        reason: str,
    ) -> None:
        await before_restart(tmp_path / "db", clock, hardware)
        hardware.set(spec=smaller)  # type: ignore[arg-type]
        node = Node(tmp_path / "db", clock, hardware)
        report = await sanity_check(node.service, StaticExecutions({"a-alive", "a-dead"}))
        assert report.offboarded and reason in report.offboard_reason
        assert sorted(report.stopped) == ["a-alive", "a-dead"]
        assert not (await node.service.status()).onboarded
        node.db.close()

    async def test_an_offboard_cut_short_is_finished(
        self, tmp_path: Path, clock: ManualClock, hardware: StaticHardware
    ) -> None:
        await before_restart(tmp_path / "db", clock, hardware)
        node = Node(tmp_path / "db", clock, hardware)
        await node.db.transact(
            lambda c: c.execute("UPDATE onboarded_pool SET draining = 1")
        )  # as a crash in the middle of a forced offboard leaves it
        report = await sanity_check(node.service, StaticExecutions({"a-alive"}))
        assert report.offboarded and "cut short" in report.offboard_reason
        assert report.failed == ("a-dead",) and report.stopped == ("a-alive",)
        assert node.stopper.stopped == ["a-alive"]
        node.db.close()


def test_shrinkage_is_empty_when_everything_fits() -> None:
    onboarded = Resources(
        cpu=CPU(cores=8), ram=SPEC.ram, disk=SPEC.disk, gpus=(GPU(vram=GiB, uuid="GPU-aaa"),)
    )
    assert shrinkage(onboarded, SPEC) == []
