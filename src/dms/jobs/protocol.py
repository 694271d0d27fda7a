"""The deployment protocol between orchestrators and providers (DESIGN.md section 5).

Who sends what, to whom::

    provider  --publish /dms/status (ADVERT)-------------------------> every orchestrator
    orchestr. --invoke BID_REQUEST (BidRequest -> BidReply)----------> provider root actor
    orchestr. --publish /dms/deployment (BID_REQUEST) when the view is short;
    provider  --send BID (Bid) to BidRequest.orchestrator-------------> orchestrator actor
    orchestr. --invoke COMMIT (CommitRequest -> CommitReply)---------> provider root actor
    orchestr. --invoke ALLOCATE (AllocateRequest -> AllocateReply)---> provider root actor
              (an AllocateRequest may carry the CommitRequest: both in one round trip)
    orchestr. --invoke REVERT (RevertRequest -> RevertReply)---------> provider root actor
    orchestr. --send REVERT (RevertRequest) for bids not chosen------> provider root actor
    orchestr. --send ALLOCATION_START (Empty)------------------------> allocation actor
    allocation --send ALLOCATION_EVENT (AllocationEvents)-------------> orchestrator actor
    provider  --send HEARTBEATS (Heartbeats) every interval----------> orchestrator root actor
    anyone allowed --invoke ALLOCATION_LOGS / _RESULTS / _RESULT_CHUNK / _STOP / _STATUS
                                                                    -> allocation actor

Requests and replies of the allocation behaviors: START, STATUS, RESTART take ``Empty``;
STOP a ``StopRequest``; all four answer an ``AllocationState``. LOGS: ``LogsRequest`` ->
``LogsChunk``. RESULTS: ``ResultChunkRequest`` (its ``path`` filters by prefix, "" = all) ->
``ResultsList``. RESULT_CHUNK: ``ResultChunkRequest`` -> ``ResultChunk``.

A bid holds the node's resources on the provider for ``hold_ns`` (so a commit does not fail
for lack of resources); a commit turns that hold into a reservation for one *slot* (one
ensemble node on one provider; the unit of resource accounting); allocate creates one
Allocation actor per allocation of the slot, which waits for ALLOCATION_START so that the
orchestrator can start allocations in ``depends_on`` order across providers. Every request is
idempotent for the same ids: a repeat returns the first answer, a conflicting repeat is an error.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from dms.actor.handle import Handle
from dms.jobs.spec import AllocationSpec
from dms.jobs.status import AllocationStatus
from dms.types import Capability, Location, PriceInformation, Resources

# -- behaviors and topics ----------------------------------------------------------------------

ADVERT_TOPIC = "/dms/status"
ADVERT = "/dms/deployment/advert"
"""Behavior (on orchestrator nodes' root actor) that receives adverts from ADVERT_TOPIC."""
BID_REQUEST_TOPIC = "/dms/deployment"
BID_REQUEST = "/dms/deployment/request"
BID = "/dms/deployment/bid"
"""Behavior on the orchestrator actor receiving bids answering a broadcast request."""
COMMIT = "/dms/deployment/commit"
ALLOCATE = "/dms/deployment/allocate"
REVERT = "/dms/deployment/revert"
ALLOCATION_EVENT = "/dms/deployment/allocation/event"
HEARTBEATS = "/dms/deployment/heartbeats"
ALLOCATION_START = "/dms/allocation/start"
ALLOCATION_STOP = "/dms/allocation/stop"
ALLOCATION_RESTART = "/dms/allocation/restart"
ALLOCATION_STATUS = "/dms/allocation/status"
ALLOCATION_LOGS = "/dms/allocation/logs"
ALLOCATION_RESULTS = "/dms/allocation/results"
ALLOCATION_RESULT_CHUNK = "/dms/allocation/results/chunk"

MAX_CHUNK = 1024 * 1024
"""The most bytes one logs or result chunk carries."""


# -- discovery ---------------------------------------------------------------------------------


class CapacityAdvert(msgspec.Struct, frozen=True, kw_only=True):
    """What a provider offers now, published every few seconds while it is onboarded."""

    provider: Handle
    """The provider node's root actor."""
    capability: Capability
    """Free resources, executors, job types, locality, price."""
    onboarded: Resources
    location: Location = Location()
    version: str = ""
    sequence: int = 0
    """Increases with each advert of a provider: older ones are ignored."""
    issued_ns: int = 0
    ttl_ns: int = 0
    """The advert is stale after issued_ns + ttl_ns."""
    peer_rtt_ms: dict[str, float] = msgspec.field(default_factory=dict)
    """Round trips to other providers (by DID), for edge constraints."""
    allocations: int = 0
    """Allocations running there now."""


# -- bidding -----------------------------------------------------------------------------------


class BidRequest(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    deployment_id: str
    node: str
    """The ensemble node this bid is for."""
    requirement: Capability
    """The node's allocations' needs combined, with the deployment's price and time."""
    accept: tuple[Location, ...] = ()
    reject: tuple[Location, ...] = ()
    orchestrator: Handle
    """Where bids for a broadcast request go (behavior BID); where events go later."""
    hold_ns: int
    """How long the provider should hold the resources for this bid."""


class Bid(msgspec.Struct, frozen=True, kw_only=True):
    bid_id: str
    request_id: str
    deployment_id: str
    node: str
    provider: Handle
    price: PriceInformation
    """The provider's asking price."""
    capability: Capability
    """What the provider has free once this bid's hold is taken."""
    onboarded: Resources
    location: Location = Location()
    time_estimate_s: float | None = None
    expires_ns: int
    """The hold ends then; commit before."""


class BidReply(msgspec.Struct, frozen=True, kw_only=True):
    """Either a bid, or why the provider declines (naming the dimension)."""

    bid: Bid | None = None
    declined: str = ""


# -- commit, allocate, revert ------------------------------------------------------------------


class PortBinding(msgspec.Struct, frozen=True, kw_only=True):
    allocation: str
    """Allocation name (within the ensemble)."""
    private: int
    public: int = 0
    """Requested public port; 0 = any free one. In replies: the port reserved."""
    protocol: str = "tcp"


class CommitRequest(msgspec.Struct, frozen=True, kw_only=True):
    deployment_id: str
    bid_id: str
    slot_id: str
    """Names the reservation (one ensemble node on this provider)."""
    ttl_ns: int
    """The commitment lapses unless ALLOCATE arrives within this time."""
    ports: tuple[PortBinding, ...] = ()


class CommitReply(msgspec.Struct, frozen=True, kw_only=True):
    slot_id: str
    ports: tuple[PortBinding, ...] = ()
    """The ports reserved, public ports filled in."""
    expires_ns: int = 0


class InputFile(msgspec.Struct, frozen=True, kw_only=True):
    target: str
    """Path inside the allocation's read-only input folder."""
    data: bytes


class AllocationManifest(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a provider needs to run one allocation."""

    allocation_id: str
    name: str
    spec: AllocationSpec
    module: bytes = b""
    """wasm: the module's bytes (the spec's path is the orchestrator's)."""
    inputs: tuple[InputFile, ...] = ()
    ports: tuple[PortBinding, ...] = ()
    replica: int = 0


class AllocateRequest(msgspec.Struct, frozen=True, kw_only=True):
    deployment_id: str
    slot_id: str
    orchestrator: Handle
    """Where ALLOCATION_EVENTs go."""
    allocations: tuple[AllocationManifest, ...]
    commit: CommitRequest | None = None
    """Commit the bid first, in the same step (one round trip instead of two). The slot's
    ports then come from the commit: each manifest gets those of its allocation."""


class AllocateReply(msgspec.Struct, frozen=True, kw_only=True):
    slot_id: str
    handles: dict[str, Handle]
    """Allocation id -> its Allocation actor."""
    committed: CommitReply | None = None
    """The commit's answer, when the request carried one."""


class RevertRequest(msgspec.Struct, frozen=True, kw_only=True):
    deployment_id: str
    slot_id: str = ""
    bid_id: str = ""
    """Give the slot (after commit) or the bid (before); both is fine."""
    reason: str = ""


class RevertReply(msgspec.Struct, frozen=True, kw_only=True):
    released: bool
    """False when there was nothing (left) to release: a repeat or a late revert."""


# -- running allocations -----------------------------------------------------------------------


class EventKind(enum.StrEnum):
    STATUS = "status"
    """The status changed."""
    HEARTBEAT = "heartbeat"
    """Liveness: still in this status."""


class AllocationEvent(msgspec.Struct, frozen=True, kw_only=True):
    deployment_id: str
    allocation_id: str
    name: str
    slot_id: str
    kind: EventKind = EventKind.STATUS
    status: AllocationStatus
    sequence: int
    """Increases per allocation; events arriving out of order are ignored."""
    time_ns: int
    exit_code: int | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    restarts: int = 0
    detail: str = ""


MAX_EVENTS = 64
"""Events in one ALLOCATION_EVENT message at most."""


class AllocationEvents(msgspec.Struct, frozen=True, kw_only=True):
    """ALLOCATION_EVENT: an allocation's events in the order they happened (those that
    happened close together travel in one message)."""

    events: Annotated[tuple[AllocationEvent, ...], msgspec.Meta(max_length=MAX_EVENTS)] = ()


MAX_HEARTBEATS = 4096
"""Allocations in one HEARTBEATS message at most (more go in several)."""


class Liveness(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One allocation in a HEARTBEATS message: alive, in this status, as of this event."""

    deployment_id: str
    allocation_id: str
    status: AllocationStatus
    sequence: int
    """The sequence number of the allocation's last event."""


class Heartbeats(msgspec.Struct, frozen=True, kw_only=True):
    """HEARTBEATS, to an orchestrator node's root actor: every allocation this provider runs
    for that node, every heartbeat interval. One message per orchestrator node and interval,
    however many allocations run: heartbeats cost per provider, not per allocation."""

    time_ns: int
    allocations: Annotated[tuple[Liveness, ...], msgspec.Meta(max_length=MAX_HEARTBEATS)] = ()


class AllocationState(msgspec.Struct, frozen=True, kw_only=True):
    """ALLOCATION_STATUS / ALLOCATION_START / ALLOCATION_STOP / ALLOCATION_RESTART reply."""

    allocation_id: str
    name: str
    status: AllocationStatus
    exit_code: int | None = None
    restarts: int = 0
    detail: str = ""
    deployment_id: str = ""
    slot_id: str = ""
    runs: int = 0
    """Runs started so far (a restarted service or a recurring job runs more than once)."""


class StopRequest(msgspec.Struct, frozen=True, kw_only=True):
    reason: str = ""


class LogStreamName(enum.StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


class LogsRequest(msgspec.Struct, frozen=True, kw_only=True):
    stream: LogStreamName = LogStreamName.STDOUT
    offset: int = 0
    limit: int = MAX_CHUNK
    run: int = -1
    """Which run: 0 is the first, -1 the latest (the last few runs are kept)."""


class LogsChunk(msgspec.Struct, frozen=True, kw_only=True):
    stream: LogStreamName
    offset: int
    data: bytes
    next_offset: int
    eof: bool
    """True when the allocation has ended and nothing follows next_offset."""
    run: int = 0
    """The run these bytes come from."""


class ResultFile(msgspec.Struct, frozen=True):
    path: str
    """Relative to the allocation's output folder."""
    size: int


class ResultsList(msgspec.Struct, frozen=True):
    files: tuple[ResultFile, ...]


class ResultChunkRequest(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    offset: int = 0
    limit: int = MAX_CHUNK


class ResultChunk(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    offset: int
    data: bytes
    next_offset: int
    eof: bool
