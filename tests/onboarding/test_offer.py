"""offer(pools, record) is capability() from what the caller already read."""

from __future__ import annotations

from dms.onboarding import OnboardingService
from dms.resources import ResourceManager
from tests.onboarding.test_service import REQUEST
from tests.resources.helpers import need

GiB = 1024**3


class TestOffer:
    """The same capability, onboarded or not, with resources held or not."""

    async def same(self, service: OnboardingService, manager: ResourceManager) -> None:
        offered = service.offer(await manager.pools(), await service.record())
        assert offered == await service.capability()

    async def test_not_onboarded(
        self, service: OnboardingService, manager: ResourceManager
    ) -> None:
        await self.same(service, manager)
        assert service.offer(await manager.pools(), None).resources.cpu.cores == 0

    async def test_onboarded_with_a_hold_then_offboarded(
        self, service: OnboardingService, manager: ResourceManager
    ) -> None:
        await service.onboard(REQUEST)
        await self.same(service, manager)
        await manager.hold("b1", need(cores=1, ram_gib=1, disk_gib=1), 30 * 10**9)
        await self.same(service, manager)
        offered = await service.capability()
        assert offered.resources.cpu.cores == REQUEST.cpu - 1
        await manager.release_bid("b1")
        await service.offboard()
        await self.same(service, manager)
