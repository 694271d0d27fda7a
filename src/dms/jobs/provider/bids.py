"""Deciding whether to bid: this machine's capability against a bid request, dimension by
dimension, and the book of answers already given (idempotency by request id).

A decline names every failing dimension with its reason, e.g.
``resources: not enough ram: needed 8 GiB, available 4 GiB; location: ...``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import msgspec

from dms.jobs.protocol import BidRequest
from dms.jobs.provider.records import BidEntry
from dms.types import Capability, Check, Connectivity, ExecutorType, JobType, Location

MAX_HOLD_NS = 5 * 60 * 10**9
"""The longest a bid holds resources, whatever the request asks."""


def machine_capability(
    offered: Capability, available: Iterable[ExecutorType], job_types: Iterable[JobType]
) -> Capability:
    """What this node offers now: the onboarding capability, narrowed to the executors that
    run here (all of them when onboarding names none), every job type when none is named,
    and any port (ports are checked against the ResourceManager's range separately)."""
    running = tuple(available)
    executors = (
        tuple(e for e in offered.executors if e in running) if offered.executors else running
    )
    types = tuple(offered.job_types) or tuple(job_types) or tuple(JobType)
    return msgspec.structs.replace(
        offered, executors=executors, job_types=types, connectivity=Connectivity()
    )


def location_check(
    place: Location, accept: Iterable[Location], reject: Iterable[Location]
) -> Check:
    """The requester's accept and reject lists against where this node is."""
    accepted = tuple(accept)
    if accepted and not any(place.within(area) for area in accepted):
        wanted = ", ".join(a.describe() for a in accepted)
        return Check("location", False, f"accepts {wanted}; this node is in {place.describe()}")
    for area in reject:
        if place.within(area):
            return Check("location", False, f"rejects {area.describe()}; this node is there")
    return Check("location", True)


def decline_reason(checks: Iterable[Check]) -> str:
    """``dimension: reason; ...`` for every failed check ("" when all pass)."""
    return "; ".join(f"{c.dimension}: {c.reason}" for c in checks if not c.ok)


def evaluate(machine: Capability, place: Location, request: BidRequest, port_check: Check) -> str:
    """Why this node cannot bid ("" when it can)."""
    verdict = machine.satisfies(request.requirement)
    checks = [c for c in verdict.checks if c.dimension != "connectivity"]
    checks.append(port_check)
    checks.append(location_check(place, request.accept, request.reject))
    return decline_reason(checks)


class BidBook:
    """Answers given, by request id (and bids by bid id), forgotten some time after expiry."""

    def __init__(self, keep_ns: int) -> None:
        self.keep_ns = keep_ns
        self._by_request: OrderedDict[str, BidEntry] = OrderedDict()
        self._by_bid: dict[str, BidEntry] = {}

    def answer(self, request_id: str) -> BidEntry | None:
        return self._by_request.get(request_id)

    def bid(self, bid_id: str) -> BidEntry | None:
        return self._by_bid.get(bid_id)

    def add(self, entry: BidEntry) -> None:
        self._by_request[entry.request.request_id] = entry
        if entry.bid_id:
            self._by_bid[entry.bid_id] = entry

    def prune(self, now_ns: int) -> None:
        for request_id, entry in list(self._by_request.items()):
            if entry.expires_ns + self.keep_ns <= now_ns:
                del self._by_request[request_id]
                self._by_bid.pop(entry.bid_id, None)

    def __len__(self) -> int:
        return len(self._by_request)
