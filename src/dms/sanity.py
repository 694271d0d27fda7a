"""The start-up sanity check: reconcile the resource store with what is really there.

Run once when the node starts, before it takes any work:

1. holds and commits whose time passed while the node was down are expired;
2. allocations whose execution no longer exists (``Executions.is_alive``) are marked FAILED
   and their resources released;
3. an offboard that was cut short (the pool is still draining) is finished;
4. a machine that shrank below its onboarded amounts (fewer CPUs, less RAM or disk, a GPU gone
   or smaller) is offboarded, stopping what still runs, with the reason logged.

It returns a :class:`SanityReport` of what it did.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from dms.log import get_logger
from dms.onboarding.service import OnboardingService
from dms.resources.hardware import HardwareSpec
from dms.resources.records import ReservationState
from dms.types import Resources
from dms.types.units import human_size


class Executions(Protocol):
    """Which allocations still have a live execution (the executors know)."""

    async def is_alive(self, allocation_id: str) -> bool: ...


class StaticExecutions:
    """The fake: a fixed set of live allocation ids."""

    def __init__(self, alive: set[str] | frozenset[str] = frozenset()) -> None:
        self.alive = set(alive)
        self.asked: list[str] = []

    async def is_alive(self, allocation_id: str) -> bool:
        self.asked.append(allocation_id)
        return allocation_id in self.alive


class SanityReport(msgspec.Struct, frozen=True, kw_only=True):
    expired: tuple[str, ...] = ()
    """Holds and commits (bid or allocation ids) that expired while the node was down."""
    failed: tuple[str, ...] = ()
    """Allocations marked failed: their execution no longer exists."""
    offboarded: bool = False
    offboard_reason: str = ""
    stopped: tuple[str, ...] = ()
    """Allocations stopped by that offboard."""

    def describe(self) -> str:
        parts = [
            f"{len(self.expired)} expired",
            f"{len(self.failed)} failed",
        ]
        if self.offboarded:
            parts.append(f"offboarded: {self.offboard_reason}")
        return ", ".join(parts)


def shrinkage(onboarded: Resources, spec: HardwareSpec) -> list[str]:
    """How the machine falls short of what is onboarded (empty when it does not)."""
    reasons: list[str] = []
    if onboarded.cpu.cores > spec.cpu.threads + 1e-6:
        reasons.append(f"cpu: {onboarded.cpu.cores:g} cores onboarded, {spec.cpu.threads} present")
    if onboarded.ram > spec.ram:
        reasons.append(
            f"ram: {human_size(onboarded.ram)} onboarded, {human_size(spec.ram)} present"
        )
    if onboarded.disk > spec.disk:
        reasons.append(
            f"disk: {human_size(onboarded.disk)} onboarded, {human_size(spec.disk)} present"
        )
    devices = {g.identity: g for g in spec.gpus}
    for gpu in onboarded.gpus:
        device = devices.get(gpu.identity)
        if device is None:
            reasons.append(f"gpu {gpu.index} ({gpu.identity}): no longer present")
        elif gpu.vram > device.vram:
            reasons.append(
                f"gpu {gpu.index}: {human_size(gpu.vram)} VRAM onboarded, "
                f"{human_size(device.vram)} present"
            )
    return reasons


async def sanity_check(service: OnboardingService, executions: Executions) -> SanityReport:
    log = get_logger(component="sanity")
    manager = service.manager
    expired = await manager.reclaim_expired()
    failed: list[str] = []
    for reservation in await manager.reservations(ReservationState.ALLOCATED):
        allocation = reservation.allocation_id
        if allocation is None or await executions.is_alive(allocation):
            continue
        await manager.fail(allocation, "its execution no longer exists (found at start-up)")
        failed.append(allocation)

    pools = await manager.pools()
    reason = ""
    if pools.is_onboarded and pools.draining:
        reason = "an offboard had been cut short; finished at start-up"
    elif pools.is_onboarded:
        shrunk = shrinkage(pools.onboarded, await service.hardware.spec())
        if shrunk:
            reason = "the machine shrank below its onboarded amounts: " + "; ".join(shrunk)
    stopped: tuple[str, ...] = ()
    if reason:
        log.warning("offboarding at start-up", reason=reason)
        stopped = (await service.drain_and_offboard(reason=reason)).stopped

    report = SanityReport(
        expired=tuple(r.ident for r in expired),
        failed=tuple(failed),
        offboarded=bool(reason),
        offboard_reason=reason,
        stopped=stopped,
    )
    log.info(
        "sanity check done",
        expired=list(report.expired),
        failed=list(report.failed),
        offboarded=report.offboarded,
        reason=reason,
    )
    return report
