"""Is anything over-allocated? Each provider's ResourceManager pools against what it onboarded,
and the orchestrators' records against the allocations the providers run."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from dms.jobs.status import AllocationStatus
from dms.sim.nodes import OrchestratorNode, ProviderNode
from dms.types import Resources


class ProviderAudit(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    onboarded: Resources
    used: Resources
    """Held + committed + allocated, as the pools report them."""
    running: int
    """Allocations on the provider that have not ended."""
    problem: str = ""
    """Why this provider is over-allocated ("" when it is not)."""


class Audit(msgspec.Struct, frozen=True, kw_only=True):
    providers: tuple[ProviderAudit, ...]
    running_on_providers: int
    """Allocations not ended, counted on the providers."""
    running_in_orchestrators: int
    """Allocations the orchestrators believe run (status not final), on live deployments."""
    used_cores: float
    onboarded_cores: float

    @property
    def over_allocated(self) -> tuple[ProviderAudit, ...]:
        return tuple(p for p in self.providers if p.problem)

    @property
    def ok(self) -> bool:
        return not self.over_allocated

    def describe(self) -> str:
        bad = self.over_allocated
        head = (
            f"{len(self.providers)} providers, {len(bad)} over-allocated; "
            f"{self.used_cores:g} of {self.onboarded_cores:g} cores in use; "
            f"{self.running_on_providers} allocations running on providers, "
            f"{self.running_in_orchestrators} per the orchestrators"
        )
        return head + "".join(f"\n  {p.provider}: {p.problem}" for p in bad[:10])


async def audit_provider(node: ProviderNode) -> ProviderAudit:
    pools = await node.manager.pools()
    problems: list[str] = []
    short = pools.onboarded.shortfall(pools.used)
    if short is not None:
        problems.append(f"pools: held + committed + allocated exceed onboarded ({short})")
    strict = await node.manager.invariant_violation()
    if strict is not None:
        problems.append(f"ledger: {strict}")
    running = sum(1 for a in node.service.allocations() if not a.status.final)
    return ProviderAudit(
        provider=node.name,
        onboarded=pools.onboarded,
        used=pools.used,
        running=running,
        problem="; ".join(problems),
    )


async def audit(
    providers: Sequence[ProviderNode], orchestrators: Sequence[OrchestratorNode]
) -> Audit:
    results = tuple([await audit_provider(p) for p in providers])
    believed = 0
    for node in orchestrators:
        for actor in list(node.service.actors.values()):
            believed += sum(
                1
                for a in actor.record.allocations
                if not a.status.final and a.status is not AllocationStatus.PENDING
            )
    return Audit(
        providers=results,
        running_on_providers=sum(p.running for p in results),
        running_in_orchestrators=believed,
        used_cores=sum(p.used.cpu.cores for p in results),
        onboarded_cores=sum(p.onboarded.cpu.cores for p in results),
    )
