"""What the matcher knows about a provider, and what it must place."""

from __future__ import annotations

import msgspec

from dms.types import Capability, Location


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """A provider as seen from a capacity advert (before bidding) or a bid (after)."""

    provider: str
    """The provider's id (its DID)."""
    peer_id: str = ""
    capability: Capability
    """What it can offer now (free resources, executors, price, ...)."""
    location: Location = Location()
    onboarded_cores: float = 0.0
    """For load ranking: how much of what it onboarded is still free."""
    rtt_ms: float | None = None
    """Round trip from the orchestrator, if measured."""
    peer_rtt_ms: dict[str, float] = msgspec.field(default_factory=dict)
    """Round trips it measured to other providers (by provider id), for edge constraints."""
    peer_bandwidth_bps: dict[str, int] = msgspec.field(default_factory=dict)
    """Bandwidth it measured to other providers (by provider id), for edge constraints."""
    time_estimate_s: float | None = None
    """From a bid: how long the provider expects the work to take."""

    def free_fraction(self) -> float:
        if self.onboarded_cores <= 0:
            return 0.0
        return max(0.0, min(1.0, self.capability.resources.cpu.cores / self.onboarded_cores))

    def rtt_to(self, other: Candidate) -> float | None:
        if other.provider == self.provider:
            return 0.0
        mine = self.peer_rtt_ms.get(other.provider)
        theirs = other.peer_rtt_ms.get(self.provider)
        known = [r for r in (mine, theirs) if r is not None]
        return min(known) if known else None


class Placement(msgspec.Struct, frozen=True, kw_only=True):
    """One ensemble node to place: its combined requirement and its constraints."""

    node: str
    requirement: Capability
    accept: tuple[Location, ...] = ()
    reject: tuple[Location, ...] = ()
    pinned: str = ""
    """A provider id or peer id this node must go to."""
    excluded: frozenset[str] = frozenset()
    replicas: int = 1
    """Copies (redundancy); never two on one provider."""
