"""The onboarding service: onboard, change in place, offboard (refused or forced), status,
the advertised capability, and persistence across a restart."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec
import pytest

from dms.clock import ManualClock
from dms.errors import OnboardingError
from dms.onboarding import GPUShare, InvalidOnboarding, OnboardingService, OnboardRequest
from dms.resources import (
    AllocationsRunning,
    Draining,
    NotOnboarded,
    ReservationState,
    ResourceManager,
    StaticHardware,
    StillReserved,
    SystemHardware,
)
from dms.store import Database
from dms.types import CPU, GPU, ExecutorType, Location, Resources
from tests.onboarding.conftest import GiB, Stopper
from tests.resources.helpers import always_free

SECOND = 10**9
REQUEST = OnboardRequest(
    cpu=4,
    ram=16 * GiB,
    disk=100 * GiB,
    gpus=(GPUShare(1, 40 * GiB),),
    price_per_hour=500_000,
    currency="NTX",
    location=Location(continent="EU", country="DE", city="Berlin"),
)
JOB = Resources(cpu=CPU(cores=1), ram=2 * GiB, disk=GiB, gpus=(GPU(vram=10 * GiB),))


async def run_allocation(manager: ResourceManager, allocation: str, need: Resources = JOB) -> None:
    await manager.commit(allocation, resources=need, ttl_ns=60 * SECOND)
    await manager.allocate(allocation)


class TestOnboard:
    """Onboarding stores the pools and the record together; status shows every pool."""

    async def test_onboard_then_status(self, service: OnboardingService) -> None:
        status = await service.onboard(REQUEST)
        assert status.onboarded and not status.draining
        view = status.resources
        assert view.machine.cpu.cores == 8 and view.machine.ram == 32 * GiB
        assert view.onboarded.cpu.cores == 4 and view.onboarded.gpus[0].uuid == "GPU-bbb"
        assert view.free == view.onboarded
        assert view.held.is_zero() and view.committed.is_zero() and view.allocated.is_zero()
        assert status.record is not None and status.record.request == REQUEST

    async def test_invalid_amounts_change_nothing(self, service: OnboardingService) -> None:
        with pytest.raises(InvalidOnboarding, match="cpu"):
            await service.onboard(msgspec.structs.replace(REQUEST, cpu=64))
        assert not (await service.status()).onboarded

    async def test_pools_show_holds_commits_and_allocations(
        self, service: OnboardingService, manager: ResourceManager
    ) -> None:
        await service.onboard(REQUEST)
        await manager.hold("b1", Resources(cpu=CPU(cores=1)), 30 * SECOND)
        await manager.commit("a1", resources=Resources(ram=GiB), ttl_ns=30 * SECOND)
        await run_allocation(manager, "a2")
        view = await service.resources()
        assert (view.held.cpu.cores, view.committed.ram, view.allocated.ram) == (1, GiB, 2 * GiB)
        assert view.free.cpu.cores == 2 and view.free.gpus[0].vram == 30 * GiB


class TestChangeInPlace:
    """The onboarded amounts change without offboarding while they still cover what runs."""

    async def test_grow_and_shrink_while_allocations_run(
        self, service: OnboardingService, manager: ResourceManager, clock: ManualClock
    ) -> None:
        first = await service.onboard(REQUEST)
        await run_allocation(manager, "a1")
        clock.advance(5 * SECOND)
        smaller = msgspec.structs.replace(REQUEST, cpu=2, ram=8 * GiB, price_per_hour=1)
        status = await service.onboard(smaller)
        assert status.resources.onboarded.cpu.cores == 2
        assert status.resources.free.cpu.cores == 1
        assert status.record is not None and first.record is not None
        assert status.record.onboarded_ns == first.record.onboarded_ns
        assert status.record.updated_ns == first.record.onboarded_ns + 5 * SECOND
        assert (await manager.reservation("a1")) is not None

    async def test_amounts_below_what_runs_are_refused(
        self, service: OnboardingService, manager: ResourceManager
    ) -> None:
        await service.onboard(REQUEST)
        await run_allocation(manager, "a1")
        with pytest.raises(StillReserved, match=r"a1.*gpu"):
            await service.onboard(msgspec.structs.replace(REQUEST, gpus=(GPUShare(0, 8 * GiB),)))
        assert (await service.resources()).onboarded.gpus[0].uuid == "GPU-bbb"


class TestOffboard:
    """Offboarding is refused while allocations run; force stops them first."""

    async def test_refused_while_allocations_run_listing_them(
        self, service: OnboardingService, manager: ResourceManager, stopper: Stopper
    ) -> None:
        await service.onboard(REQUEST)
        await run_allocation(manager, "a1")
        with pytest.raises(AllocationsRunning, match="a1") as raised:
            await service.offboard()
        assert raised.value.allocations == ("a1",)
        assert stopper.stopped == [] and (await service.status()).onboarded

    async def test_force_stops_running_allocations_then_releases_everything(
        self, service: OnboardingService, manager: ResourceManager, stopper: Stopper
    ) -> None:
        await service.onboard(REQUEST)
        await run_allocation(manager, "a1")
        await manager.commit("a2", resources=Resources(ram=GiB), ttl_ns=60 * SECOND)
        await manager.hold("b1", Resources(ram=GiB), 60 * SECOND)
        result = await service.offboard(force=True)
        assert result.offboarded and result.stopped == ("a1",) and stopper.stopped == ["a1"]
        assert sorted(result.released) == ["a1", "a2"]  # the hold went when draining began
        assert (await manager.bid("b1")).state is ReservationState.RELEASED  # type: ignore[union-attr]
        status = await service.status()
        assert not status.onboarded and status.record is None
        assert status.resources.onboarded.is_zero()

    async def test_a_workload_that_will_not_stop_is_reported_and_released(
        self, service: OnboardingService, manager: ResourceManager, stopper: Stopper
    ) -> None:
        await service.onboard(REQUEST)
        await run_allocation(manager, "a1")
        stopper.fail.add("a1")
        result = await service.offboard(force=True)
        assert result.offboarded and result.stopped == ()
        assert result.problems == ("a1: a1 would not stop",)

    async def test_force_without_a_way_to_stop_is_refused(
        self, manager: ResourceManager, hardware: StaticHardware
    ) -> None:
        service = OnboardingService(manager, hardware)
        await service.onboard(REQUEST)
        await run_allocation(manager, "a1")
        with pytest.raises(OnboardingError, match="no way to stop them"):
            await service.offboard(force=True)
        assert (await service.status()).onboarded

    async def test_an_interrupted_forced_offboard_is_finished_by_the_next_one(
        self, manager: ResourceManager, hardware: StaticHardware
    ) -> None:
        stopping = anyio.Event()

        async def hang(allocation_id: str) -> None:
            stopping.set()
            await anyio.sleep_forever()

        service = OnboardingService(manager, hardware, stop_allocation=hang)
        await service.onboard(REQUEST)
        await run_allocation(manager, "a1")
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: service.offboard(force=True))
            await stopping.wait()
            tg.cancel_scope.cancel()  # as a shutdown in the middle of the offboard would
        status = await service.status()
        assert status.onboarded and status.draining
        with pytest.raises(Draining):
            await service.onboard(REQUEST)
        with pytest.raises(Draining):
            await manager.hold("b1", Resources(ram=GiB), SECOND)
        service.stop_allocation = Stopper()
        assert (await service.offboard(force=True)).stopped == ("a1",)
        assert not (await service.status()).onboarded

    async def test_offboarding_when_not_onboarded_says_so(self, service: OnboardingService) -> None:
        with pytest.raises(NotOnboarded):
            await service.offboard()


class TestCapability:
    """The advertised capability is the free share, with price, location and executors."""

    async def test_free_resources_price_and_location(
        self, manager: ResourceManager, hardware: StaticHardware
    ) -> None:
        service = OnboardingService(manager, hardware, executors=(ExecutorType.WASM,))
        await service.onboard(REQUEST)
        await run_allocation(manager, "a1")
        capability = await service.capability()
        assert capability.executors == (ExecutorType.WASM,)
        assert capability.resources.cpu.cores == 3 and capability.resources.cpu.clock_hz
        assert capability.resources.gpus[0].vram == 30 * GiB
        assert capability.price.currency == "NTX" and capability.price.currency_per_hour == 500_000
        assert capability.locality == ("EU", "EU/DE", "EU/DE/Berlin")
        assert capability.satisfies(msgspec.structs.replace(capability, executors=())).ok

    async def test_not_onboarded_offers_nothing(self, service: OnboardingService) -> None:
        assert (await service.capability()).resources.is_zero()


class TestRestart:
    """Onboarding and allocations survive a restart of the node (a new process on the file)."""

    async def test_a_new_service_on_the_same_file_sees_the_same_state(
        self, tmp_path: Path, hardware: StaticHardware
    ) -> None:
        path = tmp_path / "dms.sqlite3"
        clock = ManualClock()
        with Database(path) as db:
            manager = ResourceManager(db, clock, probe=always_free)
            before = await OnboardingService(manager, hardware).onboard(REQUEST)
            await run_allocation(manager, "a1")
            view = await OnboardingService(manager, hardware).resources()
        with Database(path) as db:
            manager = ResourceManager(db, clock, probe=always_free)
            service = OnboardingService(manager, hardware)
            status = await service.status()
            assert status.record == before.record
            assert status.resources == view
            assert (await manager.release("a1")).state is ReservationState.RELEASED


class TestThisMachine:
    """Onboarding against the real hardware of the machine running the tests."""

    async def test_onboard_a_small_share_of_this_machine(
        self, tmp_path: Path, manager: ResourceManager
    ) -> None:
        real = SystemHardware(tmp_path, cpu_sample_s=0.01)
        spec, usage = await real.spec(), await real.usage()
        # The CPU may be busy with other work right now; the rest is this machine as it is.
        hardware = StaticHardware(spec, msgspec.structs.replace(usage, cpu_percent=0.0))
        service = OnboardingService(manager, hardware)
        request = OnboardRequest(
            cpu=1, ram=spec.ram // 5, disk=min(GiB, usage.disk_free // 2), gpus=()
        )
        status = await service.onboard(request)
        assert status.resources.onboarded.cpu.cores == 1
        assert status.resources.machine == spec.resources()
