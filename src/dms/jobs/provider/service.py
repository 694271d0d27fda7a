"""ProviderService: the provider side of the deployment protocol on one node.

* **adverts**: every ``advert_interval_s`` while onboarded (not while offboarded or draining)
  a ``CapacityAdvert`` on ``/dms/status`` with a time to live of three intervals;
* **bids**: ``/dms/deployment/request`` (invoked, or broadcast on ``/dms/deployment``) is
  checked against the ResourceManager, the executors that run here, the price floor, the
  location and the job types; a bid holds its resources until it expires; a decline names
  every failing dimension. A broadcast request is answered by sending the bid to the
  request's orchestrator (behavior ``/dms/deployment/bid``); a decline is not sent;
* **commit / allocate / revert** (idempotent: a repeat gets the first answer, a conflicting
  repeat an error, a message that arrives after a revert revives nothing; only the
  orchestrator the bid was made for, or this node, may send them);
* **allocations**: one :class:`~dms.jobs.provider.allocation.Allocation` actor per
  manifest, under the node's supervisor. The slot's resources are released exactly once:
  when its last allocation reaches a final status, or on revert or stop.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import msgspec

from dms.actor import ROOT_INBOX, Actor, ActorSystem, Address, BehaviorOptions, Envelope, Handle
from dms.clock import Clock
from dms.errors import DMSError, InsufficientResources, OnboardingError
from dms.executor import ExecutorRegistry
from dms.jobs.protocol import (
    ADVERT,
    ADVERT_TOPIC,
    ALLOCATE,
    BID,
    BID_REQUEST,
    BID_REQUEST_TOPIC,
    COMMIT,
    HEARTBEATS,
    MAX_HEARTBEATS,
    REVERT,
    AllocateReply,
    AllocateRequest,
    AllocationManifest,
    AllocationState,
    Bid,
    BidReply,
    BidRequest,
    CapacityAdvert,
    CommitReply,
    CommitRequest,
    Heartbeats,
    Liveness,
    PortBinding,
    RevertReply,
    RevertRequest,
)
from dms.jobs.provider.allocation import Allocation, Settings, allocation_child, inbox_of
from dms.jobs.provider.bids import MAX_HOLD_NS, BidBook, evaluate, machine_capability
from dms.jobs.provider.errors import (
    BadRequest,
    InvalidManifest,
    NotTheOrchestrator,
    ProviderError,
    RequestConflict,
    SlotClosed,
    UnknownBid,
    UnknownSlot,
)
from dms.jobs.provider.health import HealthProbe, probe_for
from dms.jobs.provider.launch import ALLOCATION_ID, ALLOCATION_ID_ACCEPTED, build_request
from dms.jobs.provider.records import BidEntry, Slot, SlotState, Tombstones
from dms.jobs.provider.workspace import Workspace
from dms.log import get_logger
from dms.onboarding import OnboardingService
from dms.resources import (
    PortRequest,
    ReservationClosed,
    ReservationNotFound,
    ReservationState,
    ResourceManager,
)
from dms.resources import ports as port_table
from dms.types import GPU, Check, Location, Resources, new_id

NS_PER_S = 1_000_000_000
KEEP_NS = 3600 * NS_PER_S
"""How long ended slots, reverted ids and answered bid requests are remembered."""
T = TypeVar("T")


def _guard(
    handler: Callable[[Any, Envelope], Awaitable[T]], log: Any
) -> Callable[[Any, Envelope], Awaitable[T | None]]:
    """Errors go back to an invoker; a sent or broadcast message that fails is only logged
    (a peer must not crash the root actor with bad input)."""

    @functools.wraps(handler)
    async def run(message: Any, envelope: Envelope) -> T | None:
        try:
            return await handler(message, envelope)
        except DMSError as exc:
            if envelope.reply_to:
                raise
            log.info("refused a message", behavior=envelope.behavior, error=str(exc))
            return None

    return run


def device_id(gpu: GPU) -> str:
    return gpu.uuid or str(gpu.index)


def split_gpus(
    devices: Sequence[GPU], manifests: Sequence[AllocationManifest]
) -> dict[str, tuple[str, ...]]:
    """Which of the slot's GPU devices each allocation gets (device ids for the executor)."""
    remaining = Resources(gpus=tuple(devices))
    out: dict[str, tuple[str, ...]] = {}
    for i, manifest in enumerate(manifests):
        wanted = manifest.spec.resources.to_resources().gpus
        if not wanted:
            out[manifest.allocation_id] = ()
            continue
        try:
            assigned = remaining.assign_gpus(wanted)
            remaining = remaining.subtract(Resources(gpus=assigned))
        except InsufficientResources as exc:
            raise InvalidManifest(
                f"allocations[{i}].spec.resources.gpus",
                len(wanted),
                "GPUs the committed bid holds",
                detail=str(exc),
            ) from exc
        out[manifest.allocation_id] = tuple(device_id(g) for g in assigned)
    return out


def filled_ports(asked: Sequence[PortBinding], reserved: Sequence[int]) -> tuple[PortBinding, ...]:
    """The commit's port bindings with the dynamic public ports the ledger chose."""
    fixed = {b.public for b in asked if b.public}
    dynamic = iter(p for p in sorted(reserved) if p not in fixed)
    out: list[PortBinding] = []
    for binding in asked:
        public = binding.public or next(dynamic, 0)
        out.append(
            PortBinding(
                allocation=binding.allocation,
                private=binding.private,
                public=public,
                protocol=binding.protocol,
            )
        )
    return tuple(out)


def port_request(bindings: Sequence[PortBinding]) -> PortRequest:
    for i, b in enumerate(bindings):
        if not 1 <= b.private <= 65535:
            raise BadRequest(f"ports[{i}].private", b.private, "a port from 1 to 65535")
        if not 0 <= b.public <= 65535:
            raise BadRequest(f"ports[{i}].public", b.public, "a port from 0 (any) to 65535")
        if b.protocol not in ("tcp", "udp"):
            raise BadRequest(f"ports[{i}].protocol", b.protocol, "tcp or udp")
    return PortRequest(
        dynamic=sum(1 for b in bindings if not b.public),
        fixed=tuple(b.public for b in bindings if b.public),
    )


class ProviderService:
    """The provider side of deployments on this node (see the module docstring).

    ``work_dir`` holds one folder per allocation, ``<work_dir>/<allocation id>/`` with
    ``input/`` and ``results/`` (the node passes the ``allocations`` folder of its home's
    ``work`` folder, :attr:`dms.home.Home.work_dir`).
    """

    def __init__(
        self,
        *,
        system: ActorSystem,
        onboarding: OnboardingService,
        manager: ResourceManager,
        executors: ExecutorRegistry,
        work_dir: Path,
        clock: Clock,
        advert_interval_s: float = 5.0,
        version: str = "",
        heartbeat_interval_s: float = 5.0,
        retention_s: float = 3600.0,
        allocation_shutdown_s: float = 15.0,
    ) -> None:
        for name, value in (
            ("advert_interval_s", advert_interval_s),
            ("heartbeat_interval_s", heartbeat_interval_s),
            ("allocation_shutdown_s", allocation_shutdown_s),
        ):
            if not value > 0:
                raise ValueError(f"{name}: {value!r}; accepted: a number of seconds above 0")
        if not retention_s >= 0:
            raise ValueError(f"retention_s: {retention_s!r}; accepted: 0 or more seconds")
        self.system = system
        self.onboarding = onboarding
        self.manager = manager
        self.executors = executors
        self.work_dir = Path(work_dir)
        self.clock = clock
        self.advert_interval_s = advert_interval_s
        self.version = version
        self.allocation_shutdown_ns = int(allocation_shutdown_s * NS_PER_S)
        self.settings = Settings(
            executors=executors,
            clock=clock,
            heartbeat_interval_s=heartbeat_interval_s,
            retention_s=retention_s,
        )
        self.log = get_logger(component="provider", node=system.peer_id)
        self._root: Actor | None = None
        self._lock = anyio.Lock()
        self._bids = BidBook(KEEP_NS)
        self._slots: dict[str, Slot] = {}
        self._closed_slots = Tombstones(KEEP_NS)
        self._closed_bids = Tombstones(KEEP_NS)
        self._allocations: dict[str, Allocation] = {}
        self._release_retry: set[str] = set()
        self._sequence = 0
        self.adverts = 0
        """Adverts published so far."""
        if onboarding.stop_allocation is None:
            onboarding.stop_allocation = self.stop_allocation

    # -- the interface the node uses -----------------------------------------------------------

    def register(self, root: Actor) -> None:
        """Serve the protocol's provider behaviors on ``root`` (broadcast requests too)."""
        self._root = root
        root.register(
            BID_REQUEST,
            BidRequest,
            BidReply,
            _guard(self._on_bid_request, self.log),
            BehaviorOptions(topic=BID_REQUEST_TOPIC),
        )
        root.register(COMMIT, CommitRequest, CommitReply, _guard(self._on_commit, self.log))
        root.register(ALLOCATE, AllocateRequest, AllocateReply, _guard(self._on_allocate, self.log))
        root.register(REVERT, RevertRequest, RevertReply, _guard(self._on_revert, self.log))

    async def run(self) -> None:
        """Adverts and housekeeping every ``advert_interval_s``, heartbeats every
        ``heartbeat_interval_s``, until cancelled."""
        root = self._require_root()
        await root.subscribe(BID_REQUEST_TOPIC, BID_REQUEST)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._heartbeats)
            await self._adverts()

    async def _heartbeats(self) -> None:
        while True:
            await self.clock.sleep(self.settings.heartbeat_interval_s)
            await self.heartbeat_now()

    async def heartbeat_now(self) -> None:
        """One HEARTBEATS message to each orchestrator node with allocations here, naming
        every one of them (in chunks of ``MAX_HEARTBEATS``)."""
        by_root: dict[Handle, list[Liveness]] = {}
        for allocation in self._allocations.values():
            alive = allocation.liveness()
            if alive is None:
                continue
            to = allocation.orchestrator
            root_of_node = Handle(to.id, to.did, Address(to.address.host, ROOT_INBOX))
            by_root.setdefault(root_of_node, []).append(alive)
        root = self._require_root()
        now = self.clock.now_ns()
        for to, entries in by_root.items():
            for start in range(0, len(entries), MAX_HEARTBEATS):
                message = Heartbeats(
                    time_ns=now, allocations=tuple(entries[start : start + MAX_HEARTBEATS])
                )
                try:
                    await root.send(to, HEARTBEATS, message)
                except DMSError as exc:
                    self.log.debug("heartbeat not sent", orchestrator=to.did, error=str(exc))

    async def _adverts(self) -> None:
        while True:
            try:
                await self.advertise_now()
            except DMSError as exc:
                self.log.warning("advert not published", error=str(exc))
            try:
                await self.housekeeping()
            except DMSError as exc:
                self.log.warning("housekeeping failed", error=str(exc))
            await self.clock.sleep(self.advert_interval_s)

    async def advertise_now(self) -> None:
        """Publish one advert now (nothing while not onboarded or while offboarding)."""
        root = self._require_root()
        pools = await self.manager.pools()
        if not pools.is_onboarded or pools.draining:
            return
        record = await self.onboarding.record()
        offered = self.onboarding.offer(pools, record)
        now = self.clock.now_ns()
        self._sequence = max(self._sequence + 1, now // 1_000_000)
        advert = CapacityAdvert(
            provider=root.handle,
            capability=machine_capability(
                offered, self.executors.available(), self.onboarding.job_types
            ),
            onboarded=pools.onboarded,
            location=record.request.location if record is not None else Location(),
            version=self.version,
            sequence=self._sequence,
            issued_ns=now,
            ttl_ns=int(3 * self.advert_interval_s * NS_PER_S),
            allocations=sum(1 for a in self._allocations.values() if not a.status.final),
        )
        await root.publish(ADVERT_TOPIC, ADVERT, advert)
        self.adverts += 1

    async def stop_allocation(self, allocation_id: str) -> None:
        """Stop an allocation, or every allocation of a slot (the ledger's allocation id is
        the slot id), and release its resources. For a forced offboard."""
        reason = "stopped by this node"
        async with self._lock:
            slot = self._slots.get(allocation_id)
            if slot is not None:
                await self._revert_slot(slot, reason)
                return
            allocation = self._allocations.get(allocation_id)
            if allocation is not None:
                await allocation.stop_workload(reason)
                return
        reservation = await self.manager.reservation(allocation_id)
        if reservation is not None and reservation.state.live:
            await self.manager.release(allocation_id, reason)

    def allocations(self) -> list[AllocationState]:
        """Allocations on this node now (running, and ended ones still kept for their logs)."""
        return [a.state() for a in self._allocations.values()]

    def allocation(self, allocation_id: str) -> Allocation | None:
        return self._allocations.get(allocation_id)

    def slot(self, slot_id: str) -> Slot | None:
        return self._slots.get(slot_id)

    # -- housekeeping --------------------------------------------------------------------------

    async def housekeeping(self) -> None:
        """Forget old answers and ended slots; retry releases that failed."""
        now = self.clock.now_ns()
        self._bids.prune(now)
        self._closed_slots.prune(now)
        self._closed_bids.prune(now)
        for slot in list(self._slots.values()):
            if slot.state is SlotState.COMMITTED and slot.expires_ns <= now:
                slot.move(SlotState.EXPIRED, now)
                self.log.info("commitment lapsed", slot=slot.slot_id)
            if slot.state.final and slot.ended_ns + KEEP_NS <= now and not slot.open:
                del self._slots[slot.slot_id]
                self._closed_slots.add(slot.slot_id, now, f"has {slot.state.value}")
        for slot_id in list(self._release_retry):
            await self.manager.release(slot_id, "allocations ended")
            self._release_retry.discard(slot_id)

    # -- bids ----------------------------------------------------------------------------------

    async def _on_bid_request(self, request: BidRequest, envelope: Envelope) -> BidReply | None:
        reply, fresh = await self._answer(request, envelope.sender.did)
        if envelope.topic:
            if fresh and reply.bid is not None:
                await self._require_root().send(request.orchestrator, BID, reply.bid)
            return None
        return reply

    async def _answer(self, request: BidRequest, caller: str) -> tuple[BidReply, bool]:
        async with self._lock:
            entry = self._bids.answer(request.request_id)
            if entry is not None:
                if entry.request != request:
                    raise RequestConflict(
                        "request_id", request.request_id, "a bid request with other fields"
                    )
                return entry.reply, False
            if request.hold_ns <= 0:
                raise BadRequest("hold_ns", request.hold_ns, "a hold time above 0 ns")
            hold_ns = min(request.hold_ns, MAX_HOLD_NS)
            reply = await self._bid(request, hold_ns)
            self._bids.add(
                BidEntry(
                    request=request,
                    reply=reply,
                    callers=frozenset({caller, request.orchestrator.did}),
                    expires_ns=self.clock.now_ns() + hold_ns,
                )
            )
            if reply.bid is None:
                self.log.info("declined", request=request.request_id, reason=reply.declined)
            return reply, True

    async def _bid(self, request: BidRequest, hold_ns: int) -> BidReply:
        pools = await self.manager.pools()
        if not pools.is_onboarded:
            return BidReply(declined="onboarding: this node has not onboarded any resources")
        if pools.draining:
            return BidReply(declined="onboarding: this node is offboarding")
        record = await self.onboarding.record()
        place = record.request.location if record is not None else Location()
        machine = machine_capability(
            self.onboarding.offer(pools, record),
            self.executors.available(),
            self.onboarding.job_types,
        )
        reason = evaluate(machine, place, request, await self._port_check(request))
        if reason:
            return BidReply(declined=reason)
        bid_id = new_id("bid")
        try:
            await self.manager.hold(bid_id, request.requirement.resources, hold_ns)
        except InsufficientResources as exc:
            return BidReply(declined=f"resources: {exc}")
        except OnboardingError as exc:
            return BidReply(declined=f"onboarding: {exc}")
        try:  # what is free once the hold is taken, without asking the store again
            left = machine.resources.subtract(request.requirement.resources)
        except InsufficientResources:  # pragma: no cover - the hold just succeeded
            left = (await self.manager.pools()).free
        after = msgspec.structs.replace(machine, resources=left)
        bid = Bid(
            bid_id=bid_id,
            request_id=request.request_id,
            deployment_id=request.deployment_id,
            node=request.node,
            provider=self._require_root().handle,
            price=after.price,
            capability=after,
            onboarded=pools.onboarded,
            location=place,
            expires_ns=self.clock.now_ns() + hold_ns,
        )
        self.log.info("bid", bid=bid_id, deployment=request.deployment_id, node=request.node)
        return BidReply(bid=bid)

    async def _port_check(self, request: BidRequest) -> Check:
        connectivity = request.requirement.connectivity
        if connectivity.vpn:
            return Check("connectivity", False, "requires a VPN; this node offers none")
        if not connectivity.ports:
            return Check("connectivity", True)
        reserved = await self.manager.db.query(port_table.reserved)
        span = self.manager.ports
        problems: list[str] = []
        for port in connectivity.ports:
            if port not in span:
                problems.append(f"{port} is outside {span.describe()}")
            elif port in reserved or not self.manager.probe(port):
                problems.append(f"{port} is taken")
        if problems:
            return Check("connectivity", False, "ports " + ", ".join(problems))
        return Check("connectivity", True)

    # -- commit, allocate, revert ----------------------------------------------------------------

    def _check_caller(self, allowed: frozenset[str], envelope: Envelope, what: str) -> None:
        caller = envelope.sender.did
        if caller != self.system.did and caller not in allowed:
            raise NotTheOrchestrator(caller, what, "the orchestrator the bid was made for")

    async def _on_commit(self, request: CommitRequest, envelope: Envelope) -> CommitReply:
        async with self._lock:
            return await self._commit(request, envelope)

    async def _commit(self, request: CommitRequest, envelope: Envelope) -> CommitReply:
        """Turn the bid's hold into the slot's reservation (under ``self._lock``)."""
        slot = self._slots.get(request.slot_id)
        if slot is not None:
            self._check_caller(slot.callers, envelope, f"commit slot {request.slot_id}")
            if slot.request != request:
                raise RequestConflict("slot_id", request.slot_id, "a commit with other fields")
            if slot.state in (SlotState.COMMITTED, SlotState.ALLOCATED):
                return slot.reply
            raise SlotClosed("slot_id", request.slot_id, f"has {slot.state.value}")
        for kind, ident, closed in (
            ("slot_id", request.slot_id, self._closed_slots),
            ("bid_id", request.bid_id, self._closed_bids),
        ):
            why = closed.why(ident)
            if why is not None:
                raise SlotClosed(kind, ident, why)
        entry = self._bids.bid(request.bid_id)
        if entry is None:
            raise UnknownBid(request.bid_id)
        self._check_caller(entry.callers, envelope, f"commit bid {request.bid_id}")
        if entry.request.deployment_id != request.deployment_id:
            raise RequestConflict(
                "bid_id", request.bid_id, f"made for deployment {entry.request.deployment_id}"
            )
        taken = next((s for s in self._slots.values() if s.request.bid_id == request.bid_id), None)
        if taken is not None:
            raise RequestConflict(
                "bid_id", request.bid_id, f"already committed as slot {taken.slot_id}"
            )
        if request.ttl_ns <= 0:
            raise BadRequest("ttl_ns", request.ttl_ns, "a time to live above 0 ns")
        ports = port_request(request.ports)
        try:
            reservation = await self.manager.commit(
                request.slot_id, bid_id=request.bid_id, ttl_ns=request.ttl_ns, ports=ports
            )
        except ReservationClosed as exc:
            raise SlotClosed("bid_id", request.bid_id, f"is {exc.state}") from exc
        reply = CommitReply(
            slot_id=request.slot_id,
            ports=filled_ports(request.ports, reservation.ports),
            expires_ns=reservation.expires_ns or 0,
        )
        self._slots[request.slot_id] = Slot(
            request=request,
            reply=reply,
            callers=entry.callers,
            gpus=reservation.resources.gpus,
            expires_ns=reservation.expires_ns or 0,
            requested=reservation.requested,
        )
        self.log.info("committed", slot=request.slot_id, bid=request.bid_id)
        return reply

    async def _on_allocate(self, request: AllocateRequest, envelope: Envelope) -> AllocateReply:
        async with self._lock:
            if request.commit is None:
                return await self._allocate(request, envelope)
            commit = request.commit
            if (commit.slot_id, commit.deployment_id) != (request.slot_id, request.deployment_id):
                raise RequestConflict(
                    "commit.slot_id",
                    commit.slot_id,
                    f"the allocate request's slot {request.slot_id} of deployment "
                    f"{request.deployment_id}",
                )
            committed = await self._commit(commit, envelope)
            by_name: dict[str, tuple[PortBinding, ...]] = {}
            for binding in committed.ports:
                by_name[binding.allocation] = (*by_name.get(binding.allocation, ()), binding)
            manifests = tuple(
                m if m.ports else msgspec.structs.replace(m, ports=by_name.get(m.name, ()))
                for m in request.allocations
            )
            reply = await self._allocate(
                msgspec.structs.replace(request, allocations=manifests, commit=None), envelope
            )
            return msgspec.structs.replace(reply, committed=committed)

    async def _allocate(self, request: AllocateRequest, envelope: Envelope) -> AllocateReply:
        """Create the slot's allocations, waiting for their start (under ``self._lock``)."""
        slot = self._slots.get(request.slot_id)
        if slot is None:
            why = self._closed_slots.why(request.slot_id)
            if why is not None:
                raise SlotClosed("slot_id", request.slot_id, why)
            raise UnknownSlot(request.slot_id)
        self._check_caller(slot.callers, envelope, f"allocate slot {request.slot_id}")
        if slot.deployment_id != request.deployment_id:
            raise RequestConflict(
                "slot_id", request.slot_id, f"committed for deployment {slot.deployment_id}"
            )
        ids = tuple(m.allocation_id for m in request.allocations)
        if slot.allocate_reply is not None:
            if slot.allocate_ids == ids:
                return slot.allocate_reply
            raise RequestConflict("slot_id", request.slot_id, "allocated with other allocations")
        if slot.state is not SlotState.COMMITTED:
            raise SlotClosed("slot_id", request.slot_id, f"has {slot.state.value}")
        prepared = self._prepare(slot, request)
        try:
            await self.manager.allocate(request.slot_id)
        except ReservationClosed as exc:
            slot.move(SlotState.EXPIRED, self.clock.now_ns())
            raise SlotClosed(
                "slot_id", request.slot_id, f"is {exc.state} (allocate came too late)"
            ) from exc
        slot.move(SlotState.ALLOCATED, self.clock.now_ns())
        slot.allocate_ids = ids
        slot.open = set(ids)
        handles = await self._spawn(slot, prepared)
        reply = AllocateReply(slot_id=request.slot_id, handles=handles)
        slot.allocate_reply = reply
        self.log.info("allocated", slot=request.slot_id, allocations=list(ids))
        return reply

    def _prepare(self, slot: Slot, request: AllocateRequest) -> list[Allocation]:
        """Validate every manifest and build its actor (nothing runs, nothing is written)."""
        manifests = request.allocations
        if not manifests:
            raise InvalidManifest("allocations", [], "at least one allocation manifest")
        available = self.executors.available()
        seen: set[str] = set()
        total = Resources()
        for i, m in enumerate(manifests):
            field = f"allocations[{i}]"
            if not ALLOCATION_ID.match(m.allocation_id):
                raise InvalidManifest(
                    f"{field}.allocation_id", m.allocation_id, ALLOCATION_ID_ACCEPTED
                )
            if m.allocation_id in seen or m.allocation_id in self._allocations:
                raise InvalidManifest(
                    f"{field}.allocation_id", m.allocation_id, "an id not used on this node yet"
                )
            seen.add(m.allocation_id)
            if m.spec.executor not in available:
                raise InvalidManifest(
                    f"{field}.spec.executor",
                    m.spec.executor.value,
                    f"an executor running here ({', '.join(e.value for e in available)})",
                )
            Workspace.check_inputs(m.inputs, f"{field}.inputs")
            total = total.add(m.spec.resources.to_resources())
        short = slot.requested.shortfall(total)
        if short is not None:
            raise InvalidManifest(
                "allocations",
                total.describe(),
                "no more than the committed resources",
                detail=f"need more than the committed resources ({short})",
            )
        gpus = split_gpus(slot.gpus, manifests)
        out: list[Allocation] = []
        for i, m in enumerate(manifests):
            workspace = Workspace(self.work_dir / m.allocation_id, m.spec.outputs)
            build_request(
                m,
                run=0,
                input_dir=workspace.input,
                output_dir=workspace.results,
                gpus=gpus[m.allocation_id],
            )
            ports = {b.private: b.public for b in m.ports if b.public}
            probe: HealthProbe | None = None
            if m.spec.healthcheck is not None:
                try:
                    probe = probe_for(
                        m.spec.healthcheck,
                        executor=m.spec.executor,
                        executors=self.executors,
                        ports=ports,
                        prefix=f"{m.allocation_id}.health",
                    )
                except InvalidManifest:
                    raise
                except DMSError as exc:
                    raise InvalidManifest(
                        f"allocations[{i}].spec.healthcheck",
                        "healthcheck",
                        "a runnable check",
                        detail=str(exc),
                    ) from exc
            out.append(
                Allocation(
                    m,
                    deployment_id=slot.deployment_id,
                    slot_id=slot.slot_id,
                    orchestrator=request.orchestrator,
                    workspace=workspace,
                    gpus=gpus[m.allocation_id],
                    ports=ports,
                    probe=probe,
                    settings=self.settings,
                    host=self,
                    node=self.system.peer_id,
                )
            )
        return out

    async def _spawn(self, slot: Slot, prepared: list[Allocation]) -> dict[str, Any]:
        handles: dict[str, Any] = {}
        started: list[Allocation] = []
        try:
            for allocation in prepared:
                # Small: the input files came in one message.
                allocation.workspace.prepare(allocation.manifest.inputs)
                self._allocations[allocation.allocation_id] = allocation
                await self.system.supervisor.start_child(
                    allocation_child(self.system, allocation, self.allocation_shutdown_ns)
                )
                started.append(allocation)
                handles[allocation.allocation_id] = self.system.handle_of(allocation.inbox)
        except (DMSError, OSError) as exc:
            self.log.warning("allocate failed; undoing", slot=slot.slot_id, error=str(exc))
            for allocation in prepared:
                if allocation in started:
                    await allocation.stop_workload(f"allocate failed: {exc}")
                else:
                    self._allocations.pop(allocation.allocation_id, None)
                    slot.open.discard(allocation.allocation_id)
            await self._release(slot, "allocate failed")
            raise ProviderError(f"allocate slot {slot.slot_id!r} failed: {exc}") from exc
        return handles

    async def _on_revert(self, request: RevertRequest, envelope: Envelope) -> RevertReply:
        reason = request.reason or "reverted"
        released = False
        async with self._lock:
            now = self.clock.now_ns()
            entry = self._bids.bid(request.bid_id) if request.bid_id else None
            if entry is not None:
                self._check_caller(entry.callers, envelope, f"revert bid {request.bid_id}")
                if entry.request.deployment_id != request.deployment_id:
                    raise RequestConflict(
                        "bid_id",
                        request.bid_id,
                        f"made for deployment {entry.request.deployment_id}",
                    )
            if request.slot_id:
                slot = self._slots.get(request.slot_id)
                if slot is None:
                    self._closed_slots.add(request.slot_id, now, f"was reverted ({reason})")
                else:
                    self._check_caller(slot.callers, envelope, f"revert slot {request.slot_id}")
                    if slot.deployment_id != request.deployment_id:
                        raise RequestConflict(
                            "slot_id",
                            request.slot_id,
                            f"committed for deployment {slot.deployment_id}",
                        )
                    released = await self._revert_slot(slot, reason)
            if request.bid_id:
                committed = next(
                    (s for s in self._slots.values() if s.request.bid_id == request.bid_id), None
                )
                if committed is not None:
                    if committed.slot_id != request.slot_id:
                        released = await self._revert_slot(committed, reason) or released
                elif entry is not None:
                    released = await self._release_bid(request.bid_id, reason) or released
                self._closed_bids.add(request.bid_id, now, f"was reverted ({reason})")
        self.log.info(
            "reverted", slot=request.slot_id, bid=request.bid_id, released=released, reason=reason
        )
        return RevertReply(released=released)

    async def _release_bid(self, bid_id: str, reason: str) -> bool:
        before = await self.manager.bid(bid_id)
        if before is None or not before.state.live:
            return False
        try:
            after = await self.manager.release_bid(bid_id, reason)
        except ReservationNotFound:
            return False
        return after.state is ReservationState.RELEASED and after.reason == reason

    async def _revert_slot(self, slot: Slot, reason: str) -> bool:
        """Stop what runs in the slot and release it; True if this released anything."""
        if slot.state is SlotState.COMMITTED:
            slot.move(SlotState.REVERTED, self.clock.now_ns())
            slot.release_started = True
            before = await self.manager.reservation(slot.slot_id)
            after = await self.manager.release(slot.slot_id, reason)
            return (
                before is not None
                and before.state.live
                and after.state is ReservationState.RELEASED
                and after.reason == reason
            )
        if slot.state is not SlotState.ALLOCATED or slot.release_started:
            return False
        for allocation_id in slot.allocate_ids:
            allocation = self._allocations.get(allocation_id)
            if allocation is not None:
                await allocation.stop_workload(reason)
        await self._release(slot, reason)
        return True

    async def _release(self, slot: Slot, reason: str) -> bool:
        """Release an allocated slot's resources; only the first call does anything."""
        if slot.release_started:
            return False
        slot.release_started = True
        slot.move(SlotState.RELEASED, self.clock.now_ns())
        try:
            with anyio.CancelScope(shield=True):
                await self.manager.release(slot.slot_id, reason)
        except DMSError as exc:
            self.log.error("release failed; will retry", slot=slot.slot_id, error=str(exc))
            self._release_retry.add(slot.slot_id)
        self.log.info("released", slot=slot.slot_id, reason=reason)
        return True

    # -- the allocations' host ---------------------------------------------------------------------

    async def allocation_ended(self, allocation: Allocation) -> None:
        slot = self._slots.get(allocation.slot_id)
        if slot is None:
            return
        slot.open.discard(allocation.allocation_id)
        if not slot.open and slot.state is SlotState.ALLOCATED:
            await self._release(slot, "allocations ended")

    def allocation_gone(self, allocation: Allocation) -> None:
        if self._allocations.get(allocation.allocation_id) is allocation:
            del self._allocations[allocation.allocation_id]

    # -- helpers -------------------------------------------------------------------------------

    def _require_root(self) -> Actor:
        if self._root is None:
            raise ProviderError("the provider is not registered on a root actor: call register()")
        return self._root


__all__ = ["ProviderService", "device_id", "filled_ports", "inbox_of", "split_gpus"]
