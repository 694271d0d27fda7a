from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dms.clock import ManualClock
from dms.onboarding import OnboardingService
from dms.resources import CPUInfo, HardwareSpec, ResourceManager, StaticHardware, idle_usage
from dms.store import Database
from dms.types import GPU, GPUVendor
from tests.resources.helpers import always_free

GiB = 1024**3

SPEC = HardwareSpec(
    cpu=CPUInfo(cores=4, threads=8, clock_hz=3_000_000_000, model="EPYC", architecture="x86_64"),
    ram=32 * GiB,
    disk=500 * GiB,
    disk_path="/srv/dms",
    gpus=(
        GPU(index=0, vendor=GPUVendor.NVIDIA, model="RTX 4090", vram=24 * GiB, uuid="GPU-aaa"),
        GPU(index=1, vendor=GPUVendor.NVIDIA, model="H100", vram=80 * GiB, uuid="GPU-bbb"),
    ),
)


class Stopper:
    """A stop_allocation callback that records what it stopped; ``fail`` makes ids refuse."""

    def __init__(self) -> None:
        self.stopped: list[str] = []
        self.fail: set[str] = set()

    async def __call__(self, allocation_id: str) -> None:
        if allocation_id in self.fail:
            raise RuntimeError(f"{allocation_id} would not stop")
        self.stopped.append(allocation_id)


@pytest.fixture
def hardware() -> StaticHardware:
    return StaticHardware(SPEC, idle_usage(SPEC, disk_free=200 * GiB))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with Database(tmp_path / "dms.sqlite3") as database:
        yield database


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def manager(db: Database, clock: ManualClock) -> ResourceManager:
    return ResourceManager(db, clock, probe=always_free)


@pytest.fixture
def stopper() -> Stopper:
    return Stopper()


@pytest.fixture
def service(
    manager: ResourceManager, hardware: StaticHardware, stopper: Stopper
) -> OnboardingService:
    return OnboardingService(manager, hardware, stop_allocation=stopper)
