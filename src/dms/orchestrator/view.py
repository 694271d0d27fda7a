"""The orchestrator's view of the network: the latest capacity advert of each provider."""

from __future__ import annotations

import heapq

import msgspec

from dms.jobs.protocol import Bid, CapacityAdvert
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
        self._expiries: list[tuple[int, int, str]] = []
        """(expiry, advert sequence, provider DID) of every advert kept, soonest first."""

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
        if advert.ttl_ns:
            heapq.heappush(self._expiries, (advert.issued_ns + advert.ttl_ns, advert.sequence, did))
        return True

    def note_bid(self, bid: Bid) -> None:
        """A bid tells what its provider has free once the bid's hold is taken: newer than the
        provider's last advert, so the next placement does not count on room already held
        (a hold released later shows again in the provider's next advert)."""
        known = self._candidates.get(bid.provider.did)
        if known is not None:
            self._candidates[bid.provider.did] = msgspec.structs.replace(
                known, capability=bid.capability
            )

    def forget(self, did: str) -> None:
        self._adverts.pop(did, None)
        self._candidates.pop(did, None)

    def advert(self, did: str) -> CapacityAdvert | None:
        return self._adverts.get(did)

    def live(self, now_ns: int) -> list[CapacityAdvert]:
        self._expire(now_ns)
        return list(self._adverts.values())

    def _expire(self, now_ns: int) -> None:
        """Forget adverts past their time to live. Entries of adverts replaced since are
        skipped when they come up, so a read costs only the entries that expired, not a pass
        over every provider."""
        expiries = self._expiries
        while expiries and expiries[0][0] < now_ns:
            at_ns, sequence, did = heapq.heappop(expiries)
            known = self._adverts.get(did)
            if (
                known is not None
                and known.sequence == sequence
                and known.issued_ns + known.ttl_ns == at_ns
            ):
                del self._adverts[did]
                self._candidates.pop(did, None)

    def candidates(self, now_ns: int) -> list[Candidate]:
        self._expire(now_ns)
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
