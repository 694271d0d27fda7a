"""What a provider remembers about its bids and slots, and the slot lifecycle.

A *slot* is one ensemble node on this provider: the unit the ResourceManager accounts for
(its reservation id is the slot id)::

    COMMITTED --allocate--> ALLOCATED --last allocation ends / revert / stop--> RELEASED
        |                                            (resources released exactly once)
        +--revert--> REVERTED
        +--commit ttl passes--> EXPIRED

Final slots stay known for a while, so a late or repeated message finds them and revives
nothing; :class:`Tombstones` remembers reverted ids that never became slots (a commit that
arrives after its revert is refused).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field

from dms.jobs.protocol import AllocateReply, BidReply, BidRequest, CommitReply, CommitRequest
from dms.jobs.status import InvalidTransition
from dms.types import GPU, Resources


class SlotState(enum.StrEnum):
    COMMITTED = "committed"
    ALLOCATED = "allocated"
    RELEASED = "released"
    REVERTED = "reverted"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self in (SlotState.RELEASED, SlotState.REVERTED, SlotState.EXPIRED)

    def check(self, new: SlotState) -> SlotState:
        if new not in _SLOT[self]:
            raise InvalidTransition("slot", self, new)
        return new


_S = SlotState
_SLOT: dict[SlotState, frozenset[SlotState]] = {
    _S.COMMITTED: frozenset({_S.ALLOCATED, _S.REVERTED, _S.EXPIRED}),
    _S.ALLOCATED: frozenset({_S.RELEASED}),
    _S.RELEASED: frozenset(),
    _S.REVERTED: frozenset(),
    _S.EXPIRED: frozenset(),
}


@dataclass(eq=False)
class BidEntry:
    """A bid request and the answer given (repeats get the same answer)."""

    request: BidRequest
    reply: BidReply
    callers: frozenset[str]
    """DIDs allowed to commit or revert this bid: the requester and its orchestrator."""
    expires_ns: int

    @property
    def bid_id(self) -> str:
        return self.reply.bid.bid_id if self.reply.bid is not None else ""


@dataclass(eq=False)
class Slot:
    request: CommitRequest
    reply: CommitReply
    callers: frozenset[str]
    gpus: tuple[GPU, ...]
    """The concrete GPU device parts the reservation holds (split among the allocations)."""
    expires_ns: int
    state: SlotState = SlotState.COMMITTED
    allocate_ids: tuple[str, ...] = ()
    allocate_reply: AllocateReply | None = None
    open: set[str] = field(default_factory=set)
    """Allocations of the slot not yet in a final status."""
    release_started: bool = False
    ended_ns: int = 0
    """When the slot reached a final state."""
    requested: Resources = field(default_factory=Resources)
    """What the commitment holds (allocations may not ask for more)."""

    @property
    def slot_id(self) -> str:
        return self.request.slot_id

    @property
    def deployment_id(self) -> str:
        return self.request.deployment_id

    def move(self, new: SlotState, now_ns: int) -> None:
        self.state = self.state.check(new)
        if new.final:
            self.ended_ns = now_ns


class Tombstones:
    """Ids that are closed for good, kept for ``keep_ns`` and at most ``limit`` of them."""

    def __init__(self, keep_ns: int, limit: int = 100_000) -> None:
        self.keep_ns = keep_ns
        self.limit = limit
        self._entries: OrderedDict[str, tuple[int, str]] = OrderedDict()

    def add(self, ident: str, now_ns: int, why: str) -> None:
        if ident and ident not in self._entries:
            self._entries[ident] = (now_ns, why)
            while len(self._entries) > self.limit:
                self._entries.popitem(last=False)

    def why(self, ident: str) -> str | None:
        entry = self._entries.get(ident)
        return entry[1] if entry is not None else None

    def prune(self, now_ns: int) -> None:
        while self._entries:
            ident, (at, _) = next(iter(self._entries.items()))
            if now_ns - at < self.keep_ns:
                return
            del self._entries[ident]

    def __contains__(self, ident: object) -> bool:
        return ident in self._entries

    def __len__(self) -> int:
        return len(self._entries)
