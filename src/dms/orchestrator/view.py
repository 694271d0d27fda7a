"""The orchestrator's view of the network: the latest capacity advert of each provider."""

from __future__ import annotations

from dms.jobs.protocol import CapacityAdvert
from dms.orchestrator.matching import Candidate

MAX_PROVIDERS = 100_000


class AdvertView:
    """Adverts by provider DID, newest sequence wins, stale after their time-to-live.

    Each advert's Candidate is made once, when the advert arrives: a placement reads the view
    many times more often than a provider advertises.
    """

    def __init__(self) -> None:
        self._adverts: dict[str, CapacityAdvert] = {}
        self._candidates: dict[str, Candidate] = {}

    def update(self, advert: CapacityAdvert) -> bool:
        """Keep ``advert`` unless an equal or newer one of the same provider is known."""
        did = advert.provider.did
        known = self._adverts.get(did)
        if known is not None and known.sequence >= advert.sequence:
            return False
        if known is None and len(self._adverts) >= MAX_PROVIDERS:
            return False
        self._adverts[did] = advert
        self._candidates[did] = candidate_of(advert)
        return True

    def forget(self, did: str) -> None:
        self._adverts.pop(did, None)
        self._candidates.pop(did, None)

    def advert(self, did: str) -> CapacityAdvert | None:
        return self._adverts.get(did)

    def live(self, now_ns: int) -> list[CapacityAdvert]:
        stale = [
            d for d, a in self._adverts.items() if a.ttl_ns and a.issued_ns + a.ttl_ns < now_ns
        ]
        for did in stale:
            del self._adverts[did]
            self._candidates.pop(did, None)
        return list(self._adverts.values())

    def candidates(self, now_ns: int) -> list[Candidate]:
        self.live(now_ns)
        return list(self._candidates.values())

    def __len__(self) -> int:
        return len(self._adverts)


def candidate_of(advert: CapacityAdvert) -> Candidate:
    return Candidate(
        provider=advert.provider.did,
        peer_id=advert.provider.address.host,
        capability=advert.capability,
        location=advert.location,
        onboarded_cores=advert.onboarded.cpu.cores,
        peer_rtt_ms=dict(advert.peer_rtt_ms),
    )
