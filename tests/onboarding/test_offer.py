"""offer(pools, record) is capability() from what the caller already read."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest

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


class TestRecordCache:
    """The record is read from the store once and follows every onboard and offboard."""

    async def test_read_once_then_from_memory(
        self, service: OnboardingService, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await service.onboard(REQUEST)
        service = OnboardingService(service.manager, service.hardware)  # nothing read yet
        reads = 0
        query = service.db.query

        async def counting(fn: Any) -> Any:
            nonlocal reads
            reads += 1
            return await query(fn)

        monkeypatch.setattr(service.db, "query", counting)
        first = await service.record()
        assert first is not None and first.request == REQUEST
        assert await service.record() == first
        assert reads == 1

    async def test_follows_re_onboard_and_offboard(self, service: OnboardingService) -> None:
        assert await service.record() is None
        await service.onboard(REQUEST)
        record = await service.record()
        assert record is not None and record.request.cpu == REQUEST.cpu
        smaller = msgspec.structs.replace(REQUEST, cpu=REQUEST.cpu - 1)
        await service.onboard(smaller)
        record = await service.record()
        assert record is not None and record.request.cpu == REQUEST.cpu - 1
        await service.offboard()
        assert await service.record() is None

    async def test_a_read_overlapping_a_write_is_not_kept(
        self, service: OnboardingService, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A read that saw the record before an onboard finished must not be served later."""
        query = service.db.query
        started, release = anyio.Event(), anyio.Event()

        async def slow(fn: Any) -> Any:
            result = await query(fn)
            started.set()
            await release.wait()
            return result

        monkeypatch.setattr(service.db, "query", slow)
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.record)
            await started.wait()
            monkeypatch.setattr(service.db, "query", query)
            await service.onboard(REQUEST)
            release.set()
        record = await service.record()
        assert record is not None and record.request == REQUEST
