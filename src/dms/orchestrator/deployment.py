"""The Orchestrator actor: one per deployment, a child of the node's root actor.

Its behaviors receive what providers send it (bids answering a broadcast, allocation events);
its lifecycle task drives the deployment::

    place: PREPARING (plan on adverts -> bid requests -> plan on bids)
           -> COMMITTING (commit every slot; any failure: revert, next candidates)
           -> PROVISIONING (allocate every slot; start allocations in depends_on order)
           -> RUNNING
    supervise: events and heartbeats; a lost provider or a failed allocation whose policy is
           redeploy is placed again by the ensemble's strategy (OneForOne / AllForOne /
           RestForOne) within its restart intensity, else the deployment fails; task-only
           ensembles complete when every task has ended.
    teardown: revert every slot (providers stop the allocations and release everything).

Everything decided is recorded in the deployment's record (persisted) so that ``explain``
answers "why pending" and "why there", and a restarted node carries on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import anyio
import msgspec

from dms.actor import Actor, ChildSpec, Envelope, Restart, behavior
from dms.actor.behavior import Empty
from dms.errors import DMSError
from dms.jobs.load import parse_ensemble
from dms.jobs.protocol import (
    ALLOCATE,
    ALLOCATION_EVENT,
    ALLOCATION_START,
    BID,
    BID_REQUEST,
    BID_REQUEST_TOPIC,
    REVERT,
    AllocateReply,
    AllocateRequest,
    AllocationEvents,
    AllocationManifest,
    Bid,
    BidReply,
    BidRequest,
    CommitRequest,
    EventKind,
    InputFile,
    Liveness,
    PortBinding,
    RevertReply,
    RevertRequest,
)
from dms.jobs.spec import Ensemble, RecoveryPolicy, SupervisorStrategyName
from dms.jobs.status import AllocationStatus, DeploymentStatus
from dms.log import get_logger
from dms.orchestrator.explain import explanation_of
from dms.orchestrator.matching import Candidate, Placement, plan
from dms.orchestrator.matching.ensemble import edges, placements
from dms.orchestrator.messages import AllocationInfo, StatusChange
from dms.orchestrator.records import DeploymentRecord, SlotRecord
from dms.types import new_id

if TYPE_CHECKING:
    from dms.orchestrator.service import OrchestratorService

NS = 1_000_000_000
BID_ROUNDS = 3
"""Rounds of bid requests in one attempt: the best candidates, then the next ones for nodes
whose bids were declined."""
_ACTIVE = (AllocationStatus.RUNNING, AllocationStatus.COMPLETED)


def tight(first: Sequence[Candidate], placement: Placement) -> bool:
    """Whether a first choice might decline: its last known free resources hold this node's
    need fewer than twice, so one placement elsewhere since then could have taken the room.
    Only then are spare candidates asked for bids as well (each costs a request, a hold and
    a release); otherwise a decline is rare and the next round asks the next candidates."""
    need = placement.requirement.resources
    twice = need.add(need)
    return any(not c.capability.resources.covers(twice) for c in first)


class DeploymentActor(Actor):
    def __init__(
        self,
        service: OrchestratorService,
        record: DeploymentRecord,
        restored: bool,
        ensemble: Ensemble | None = None,
    ) -> None:
        """``ensemble``: the record's ensemble already parsed (a new deployment); read from
        the record when not given (a restored one)."""
        self.service = service
        self.record = record
        self.restored = restored
        self.ensemble: Ensemble = (
            ensemble
            if ensemble is not None
            else parse_ensemble(record.ensemble, record.deployment_id)
        )
        self.log = get_logger(node=service.system.peer_id, deployment=record.deployment_id)
        self.changed = anyio.Event()
        self.broadcast_bids: list[Bid] = []
        self.sequences: dict[str, int] = {}
        self.last_seen: dict[str, int] = {}
        self.lifecycle_id = f"deployment/{record.deployment_id}"
        self.done = False
        self._saved: DeploymentRecord | None = None
        """The record as last stored (``self.record`` is replaced whenever it changes)."""

    # -- behaviors ---------------------------------------------------------------------------

    @behavior(BID, Bid, None)
    def on_bid(self, bid: Bid, envelope: Envelope) -> None:
        if (
            bid.deployment_id == self.record.deployment_id
            and envelope.sender.did == bid.provider.did
        ):
            self.broadcast_bids.append(bid)
            self._wake()

    @behavior(ALLOCATION_EVENT, AllocationEvents, None)
    def on_events(self, message: AllocationEvents, envelope: Envelope) -> None:
        """An allocation's events, in order; each is taken only from the provider running it."""
        known = {a.allocation_id: a for a in self.record.allocations}
        changed = False
        for event in message.events:
            info = known.get(event.allocation_id)
            if (
                event.deployment_id != self.record.deployment_id
                or event.sequence <= self.sequences.get(event.allocation_id, -1)
                or info is None
                or envelope.sender.did != info.provider
            ):
                continue  # another deployment's, late or repeated, unknown, or not the runner's
            self.sequences[event.allocation_id] = event.sequence
            self.last_seen[event.allocation_id] = self.service.clock.now_ns()
            if event.kind is EventKind.HEARTBEAT and event.status is info.status:
                continue
            known[event.allocation_id] = msgspec.structs.replace(
                info,
                status=event.status,
                exit_code=event.exit_code,
                restarts=event.restarts,
                detail=event.detail,
                stdout_tail=event.stdout_tail or info.stdout_tail,
                stderr_tail=event.stderr_tail or info.stderr_tail,
            )
            self.log.info("allocation", allocation=event.allocation_id, status=event.status.value)
            changed = True
        if changed:
            self._take(known)

    def on_liveness(self, entries: Sequence[Liveness], provider: str) -> None:
        """A provider's heartbeat names these allocations alive. One whose status the heartbeat
        reports newer than the last event heard (that event was lost) takes that status."""
        known = {a.allocation_id: a for a in self.record.allocations}
        now = self.service.clock.now_ns()
        changed = False
        for alive in entries:
            info = known.get(alive.allocation_id)
            if info is None or info.provider != provider:
                continue  # unknown, or not from the provider running it
            self.last_seen[alive.allocation_id] = now
            if alive.sequence > self.sequences.get(alive.allocation_id, -1):
                self.sequences[alive.allocation_id] = alive.sequence
                if alive.status is not info.status:
                    known[alive.allocation_id] = msgspec.structs.replace(info, status=alive.status)
                    changed = True
        if changed:
            self._take(known)

    def _take(self, known: dict[str, AllocationInfo]) -> None:
        """The record with the allocations as now known (same order), and the actor woken."""
        self.record = msgspec.structs.replace(
            self.record,
            allocations=tuple(known[a.allocation_id] for a in self.record.allocations),
        )
        self._wake()

    def _wake(self) -> None:
        self.changed.set()

    # -- life cycle ----------------------------------------------------------------------------

    async def on_start(self) -> None:
        await self.system.supervisor.start_child(
            ChildSpec.task(self.lifecycle_id, self.lifecycle, restart=Restart.TEMPORARY)
        )

    async def on_stop(self) -> None:
        if not self.done:
            await self.system.supervisor.terminate_child(self.lifecycle_id)

    async def lifecycle(self) -> None:
        try:
            if self.restored:
                await self.recover()
            while not self.record.status.final:
                if self.record.shutdown_requested:
                    await self.teardown(self.record.slots)
                    await self.finish(
                        DeploymentStatus.COMPLETED, f"shut down: {self.record.shutdown_requested}"
                    )
                elif self.record.status is DeploymentStatus.RUNNING:
                    await self.supervise()
                elif not await self.place(self.ensemble.nodes.keys()):
                    await self.teardown(self.record.slots)
                    if self.record.shutdown_requested:
                        continue
                    await self.finish(
                        DeploymentStatus.FAILED,
                        f"not placed by the deadline: {self.pending_reason()}",
                    )
        except Exception as exc:  # the top of the deployment's task: fail it, say why
            expected = isinstance(exc, DMSError)
            self.log.error("deployment failed", error=str(exc), exc_info=not expected)
            await self.teardown(self.record.slots)
            await self.finish(
                DeploymentStatus.FAILED, str(exc) if expected else f"internal error: {exc!r}"
            )
        finally:
            self.done = True
            self.service.finished(self.record.deployment_id)

    async def recover(self) -> None:
        """After a restart of this node: carry on where the record says we were."""
        status = self.record.status
        self.log.info("restoring", status=status.value)
        now = self.service.clock.now_ns()
        if status is DeploymentStatus.RUNNING:
            for info in self.record.allocations:
                self.last_seen[info.allocation_id] = now
            return
        if status is DeploymentStatus.SHUTTING_DOWN:
            return
        # Placement was under way: undo what was half done and start placing again.
        await self.teardown(self.record.slots)
        self.record = msgspec.structs.replace(self.record, slots=(), allocations=())
        if status is not DeploymentStatus.PREPARING:
            await self.set_status(DeploymentStatus.PREPARING, "restored after a node restart")

    # -- state -------------------------------------------------------------------------------

    async def save(self) -> None:
        self.record = msgspec.structs.replace(self.record, updated_ns=self.service.clock.now_ns())
        await self.service.repository.save(self.record)
        self._saved = self.record

    async def set_status(self, status: DeploymentStatus, reason: str = "") -> None:
        if status is self.record.status:
            if reason and reason != self.record.reason:
                self.record = msgspec.structs.replace(self.record, reason=reason)
                await self.save()
            return
        self.record.status.check(status)
        now = self.service.clock.now_ns()
        change = StatusChange(status=status, time_ns=now, reason=reason)
        self.record = msgspec.structs.replace(
            self.record,
            status=status,
            reason=reason,
            history=(*self.record.history, change),
            finished_ns=now if status.final else 0,
        )
        self.log.info("status", status=status.value, reason=reason)
        await self.save()
        self.service.notify(self.record)

    async def finish(self, status: DeploymentStatus, reason: str) -> None:
        """End in ``status``, through ShuttingDown where the lifecycle requires it."""
        if not self.record.status.can_become(status) and self.record.status is not status:
            await self.set_status(DeploymentStatus.SHUTTING_DOWN, reason)
        await self.set_status(status, reason)

    def pending_reason(self) -> str:
        explanation = self.record.explanation
        return explanation.pending if explanation and explanation.pending else self.record.reason

    async def wait_for_change(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self.changed.wait()
        self.changed = anyio.Event()

    # -- placement ---------------------------------------------------------------------------

    async def place(self, nodes: Iterable[str]) -> bool:
        """Place ``nodes`` (all, or those being redeployed). False when the deadline passed."""
        wanted = set(nodes)
        clock = self.service.clock
        excluded: set[str] = set()
        while clock.now_ns() < self.record.deadline_ns:
            if self.record.shutdown_requested:
                return False
            if self.record.status is not DeploymentStatus.PREPARING:
                await self.set_status(DeploymentStatus.PREPARING, "placing")
            self.record = msgspec.structs.replace(self.record, attempts=self.record.attempts + 1)
            todo = [p for p in placements(self.ensemble) if p.node in wanted]
            chosen = await self.choose(todo, excluded)
            if chosen is None:
                await self.wait_for_change(self.service.retry_interval_s)
                continue
            failed = await self.commit_and_allocate(chosen, wanted)
            if not failed:
                return True
            excluded |= failed
            await self.wait_for_change(self.service.retry_interval_s / 4)
        return False

    async def choose(self, todo: list[Placement], excluded: set[str]) -> list[SlotRecord] | None:
        """Bids for every placement, and the best plan on them; None when there is none yet."""
        now = self.service.clock.now_ns()
        seed = self.record.deployment_id
        known = [c for c in self.service.view.candidates(now) if c.provider not in excluded]
        spec_edges = edges(self.ensemble)
        # A bounded search on a large view; every provider when edges constrain the choice.
        limit = 0 if spec_edges else self.service.candidate_limit
        first = plan(todo, known, edges=spec_edges, seed=seed, limit=limit)
        declined: dict[str, dict[str, str]] = {}
        bids: list[Bid] = []
        targets: dict[str, list[Candidate]] = {}
        if first.ok:
            ranking = {p.node: [r.candidate for r in first.decisions[p.node].ranked] for p in todo}
            asked = {p.node: 0 for p in todo}
            for _ in range(BID_ROUNDS):
                # A node short of bids asks the next candidates of its ranking at once (its
                # first choices' adverts were stale), rather than waiting for the next attempt.
                got = {p.node: 0 for p in todo}
                for bid in bids:
                    got[bid.node] = got.get(bid.node, 0) + 1
                targets = {}
                for p in todo:
                    short = p.replicas - got[p.node]
                    if short <= 0:
                        continue
                    start = asked[p.node]
                    count = short
                    if start == 0 and tight(ranking[p.node][:short], p):
                        count += self.service.spare_candidates
                    targets[p.node] = ranking[p.node][start : start + count]
                    asked[p.node] = start + len(targets[p.node])
                targets = {node: ask for node, ask in targets.items() if ask}
                if not targets:
                    break
                more_bids, more_declined = await self.request_bids(todo, targets)
                for bid in more_bids:
                    self.service.view.note_bid(bid)
                bids.extend(more_bids)
                for node, reasons in more_declined.items():
                    declined.setdefault(node, {}).update(reasons)
        wanted_replicas = sum(p.replicas for p in todo)
        if len(known) < wanted_replicas or not first.ok:
            await self.broadcast_requests(todo)
            await self.wait_for_change(self.service.bid_timeout_s)
        bids.extend(b for b in self.broadcast_bids if b.provider.did not in excluded)
        self.broadcast_bids.clear()
        pools: dict[str, list[Candidate]] = {p.node: [] for p in todo}
        by_key: dict[tuple[str, str], Bid] = {}
        for bid in bids:
            if bid.node in pools and (bid.node, bid.provider.did) not in by_key:
                by_key[(bid.node, bid.provider.did)] = bid
                pools[bid.node].append(_bid_candidate(bid, todo))
        final = plan(todo, [], pools=pools, reserved=True, edges=spec_edges, seed=seed)
        problem = final.problem if not final.ok else ""
        if not first.ok and not bids:
            problem = first.problem
        self.record = msgspec.structs.replace(
            self.record,
            explanation=explanation_of(
                self.record, first, final if bids else None, declined, problem
            ),
        )
        if not final.ok:
            await self.release_bids(by_key.values())
            if problem != self.record.reason:
                await self.set_status(DeploymentStatus.PREPARING, problem)
            return None
        slots: list[SlotRecord] = []
        used: set[str] = set()
        for node, providers in final.assignment.items():
            for replica, did in enumerate(providers):
                bid = by_key[(node, did)]
                used.add(bid.bid_id)
                slots.append(
                    SlotRecord(
                        slot_id=new_id("s"),
                        node=node,
                        replica=replica,
                        provider=bid.provider,
                        bid_id=bid.bid_id,
                    )
                )
        await self.release_bids(b for b in by_key.values() if b.bid_id not in used)
        return slots

    async def request_bids(
        self, todo: Sequence[Placement], targets: dict[str, list[Candidate]]
    ) -> tuple[list[Bid], dict[str, dict[str, str]]]:
        bids: list[Bid] = []
        declined: dict[str, dict[str, str]] = {}
        by_node = {p.node: p for p in todo}

        async def ask(node: str, candidate: Candidate) -> None:
            advert = self.service.view.advert(candidate.provider)
            if advert is None:
                return
            request = self.bid_request(by_node[node])
            try:
                reply = await self.invoke(
                    advert.provider,
                    BID_REQUEST,
                    request,
                    BidReply,
                    timeout_s=self.service.bid_timeout_s,
                )
            except DMSError as exc:
                declined.setdefault(node, {})[candidate.provider] = f"no bid: {exc}"
                return
            if reply.bid is not None:
                bids.append(reply.bid)
            else:
                declined.setdefault(node, {})[candidate.provider] = reply.declined

        async with anyio.create_task_group() as tg:
            for node, candidates in targets.items():
                for candidate in candidates:
                    tg.start_soon(ask, node, candidate)
        return bids, declined

    def bid_request(self, placement: Placement) -> BidRequest:
        return BidRequest(
            request_id=new_id("r"),
            deployment_id=self.record.deployment_id,
            node=placement.node,
            requirement=placement.requirement,
            accept=placement.accept,
            reject=placement.reject,
            orchestrator=self.handle,
            hold_ns=self.service.hold_ns,
        )

    async def broadcast_requests(self, todo: Sequence[Placement]) -> None:
        for p in todo:
            try:
                await self.publish(BID_REQUEST_TOPIC, BID_REQUEST, self.bid_request(p))
            except DMSError as exc:
                self.log.warning("broadcast bid request failed", error=str(exc))

    async def release_bids(self, bids: Iterable[Bid]) -> None:
        """Tell the providers of bids not chosen to release their holds.

        One-way: nothing here depends on the answer, and a release that is lost costs only
        the hold's remaining time (it expires on its own), so no reply is waited for."""
        for bid in bids:
            request = RevertRequest(
                deployment_id=self.record.deployment_id, bid_id=bid.bid_id, reason="bid not chosen"
            )
            try:
                await self.send(bid.provider, REVERT, request)
            except DMSError as exc:
                self.log.debug("bid release not sent", bid=bid.bid_id, error=str(exc))

    async def revert(self, slot: SlotRecord, reason: str) -> bool:
        request = RevertRequest(
            deployment_id=self.record.deployment_id,
            slot_id=slot.slot_id,
            bid_id=slot.bid_id,
            reason=reason,
        )
        try:
            reply = await self.invoke(
                slot.provider, REVERT, request, RevertReply, timeout_s=self.service.bid_timeout_s
            )
        except DMSError as exc:
            self.log.warning("revert failed", slot=slot.slot_id, error=str(exc))
            return False
        return reply.released

    async def commit_and_allocate(self, slots: list[SlotRecord], nodes: set[str]) -> set[str]:
        """Commit every slot's bid and create its allocations (one round trip per slot: the
        allocate request carries the commit), then start them; the providers that failed
        (empty on success).

        Nothing starts until every slot is committed and allocated: allocations wait for
        ALLOCATION_START, so a slot that fails tears the others down before anything ran.
        The slots are stored before the first request goes out, so a restarted orchestrator
        knows what to revert."""
        keep = tuple(s for s in self.record.slots if s.node not in nodes)
        self.record = msgspec.structs.replace(self.record, slots=(*keep, *slots))
        await self.set_status(DeploymentStatus.COMMITTING, "committing")
        failed: set[str] = set()
        infos: list[AllocationInfo] = [
            a for a in self.record.allocations if self.ensemble.node_of(a.name) not in nodes
        ]
        placed: dict[str, SlotRecord] = {}

        async def commit_and_allocate(slot: SlotRecord) -> None:
            node = self.ensemble.nodes[slot.node]
            commit = CommitRequest(
                deployment_id=self.record.deployment_id,
                bid_id=slot.bid_id,
                slot_id=slot.slot_id,
                ttl_ns=self.service.commit_ttl_ns,
                ports=tuple(
                    PortBinding(
                        allocation=p.allocation,
                        private=p.private,
                        public=p.public,
                        protocol=p.protocol,
                    )
                    for p in node.ports
                ),
            )
            manifests = self.manifests(slot)  # ports: the provider fills them from the commit
            request = AllocateRequest(
                deployment_id=self.record.deployment_id,
                slot_id=slot.slot_id,
                orchestrator=self.handle,
                allocations=manifests,
                commit=commit,
            )
            try:
                reply = await self.invoke(
                    slot.provider,
                    ALLOCATE,
                    request,
                    AllocateReply,
                    timeout_s=self.service.bid_timeout_s * 2,
                )
            except DMSError as exc:
                self.log.warning("allocate failed", provider=slot.provider.did, error=str(exc))
                failed.add(slot.provider.did)
                return
            ports = reply.committed.ports if reply.committed is not None else ()
            placed[slot.slot_id] = msgspec.structs.replace(
                slot, committed=True, allocated=True, ports=ports
            )
            now = self.service.clock.now_ns()
            for m in manifests:
                self.last_seen[m.allocation_id] = now
                infos.append(
                    AllocationInfo(
                        allocation_id=m.allocation_id,
                        name=m.name,
                        node=slot.node,
                        replica=slot.replica,
                        provider=slot.provider.did,
                        handle=reply.handles.get(m.allocation_id),
                        status=AllocationStatus.PENDING,
                    )
                )

        async with anyio.create_task_group() as tg:
            for slot in slots:
                tg.start_soon(commit_and_allocate, slot)
        self.record = msgspec.structs.replace(
            self.record,
            slots=(*keep, *(placed.get(s.slot_id, s) for s in slots)),
            allocations=tuple(infos),
        )
        if failed:
            await self.teardown(slots)
            self.record = msgspec.structs.replace(
                self.record,
                allocations=tuple(
                    a for a in self.record.allocations if self.ensemble.node_of(a.name) not in nodes
                ),
            )
            await self.set_status(
                DeploymentStatus.PREPARING,
                f"allocate failed on {len(failed)} provider(s); trying others",
            )
            return failed
        await self.set_status(DeploymentStatus.PROVISIONING, "starting")
        if not await self.start_in_order(nodes):
            return {s.provider.did for s in slots}
        await self.set_status(DeploymentStatus.RUNNING, "all allocations started")
        return set()

    def manifests(self, slot: SlotRecord) -> tuple[AllocationManifest, ...]:
        node = self.ensemble.nodes[slot.node]
        out = []
        for name in node.allocations:
            spec = self.ensemble.allocations[name]
            module = b""
            if spec.execution.module:
                module = self.record.files.get(spec.execution.module, b"")
            inputs = tuple(
                InputFile(
                    target=i.target or i.source.rsplit("/", 1)[-1],
                    data=self.record.files.get(i.source, b""),
                )
                for i in spec.inputs
            )
            out.append(
                AllocationManifest(
                    allocation_id=new_id("a"),
                    name=name,
                    spec=spec,
                    module=module,
                    inputs=inputs,
                    ports=tuple(p for p in slot.ports if p.allocation == name),
                    replica=slot.replica,
                )
            )
        return tuple(out)

    async def start_in_order(self, nodes: set[str]) -> bool:
        """Start the new allocations, each after the ones it depends on run (or completed);
        True once every one of them reported that it started.

        Starts are one-way and idempotent: one still pending after a retry interval without
        news is sent its start again (a lost message delays it, never strands it)."""
        new = {a.name for a in self.record.allocations if self.ensemble.node_of(a.name) in nodes}
        started: set[str] = set()
        deadline = self.record.deadline_ns
        clock = self.service.clock
        while True:
            if any(
                self.status_of(name) in (AllocationStatus.FAILED, AllocationStatus.STOPPED)
                for name in started
            ):
                await self.teardown([s for s in self.record.slots if s.node in nodes])
                await self.set_status(
                    DeploymentStatus.PREPARING, "an allocation failed while starting; placing again"
                )
                return False
            ready = [
                name
                for name in new
                if name not in started
                and all(
                    self.status_of(dep) in _ACTIVE
                    for dep in self.ensemble.allocations[name].depends_on
                )
            ]
            started.update(ready)
            await self.start_pending(set(ready))
            if len(started) == len(new) and all(
                self.status_of(name) is not AllocationStatus.PENDING for name in new
            ):
                return True
            if clock.now_ns() > deadline:
                return False
            before = self.record
            await self.wait_for_change(self.service.retry_interval_s)
            if self.record is before:  # nothing reported for a while: start the pending again
                await self.start_pending(started)

    async def start_pending(self, names: set[str]) -> None:
        """Send a start to every allocation of ``names`` still pending."""
        for info in self.record.allocations:
            if (
                info.name in names
                and info.status is AllocationStatus.PENDING
                and info.handle is not None
            ):
                await self.start_one(info)

    async def start_one(self, info: AllocationInfo) -> None:
        """One-way: the allocation reports starting and running (or failing) in its events;
        waiting for a reply would only tell what those events tell."""
        assert info.handle is not None
        try:
            await self.send(info.handle, ALLOCATION_START, Empty())
        except DMSError as exc:
            self.log.warning("start not sent", allocation=info.allocation_id, error=str(exc))

    def status_of(self, name: str) -> AllocationStatus:
        """The least advanced status among the replicas of allocation ``name``."""
        statuses = [a.status for a in self.record.allocations if a.name == name]
        order = list(AllocationStatus)
        return min(statuses, key=order.index) if statuses else AllocationStatus.PENDING

    # -- supervision -------------------------------------------------------------------------

    async def supervise(self) -> None:
        """Until the deployment ends or something must be placed again."""
        clock = self.service.clock
        while self.record.status is DeploymentStatus.RUNNING:
            if self.record.shutdown_requested:
                return
            if self.record is not self._saved:  # events changed it since it was stored
                await self.save()
            allocations = self.record.allocations
            if allocations and all(a.status.final for a in allocations):
                failed = [
                    a
                    for a in allocations
                    if a.status is not AllocationStatus.COMPLETED or (a.exit_code or 0) != 0
                ]
                if not failed:
                    await self.teardown(self.record.slots)
                    await self.finish(DeploymentStatus.COMPLETED, "every allocation completed")
                    return
            now = clock.now_ns()
            lost_after = int(self.service.heartbeat_timeout_s * NS)
            broken: set[str] = set()
            for a in allocations:
                spec = self.ensemble.allocations[a.name]
                policy = spec.recovery_policy
                lost = (
                    not a.status.final
                    and now - self.last_seen.get(a.allocation_id, now) > lost_after
                )
                if lost and policy is not RecoveryPolicy.NONE:
                    self.log.warning(
                        "provider lost", allocation=a.allocation_id, provider=a.provider
                    )
                    broken.add(a.node)
                elif a.status is AllocationStatus.FAILED or lost:
                    if policy is RecoveryPolicy.REDEPLOY:
                        broken.add(a.node)
                    else:
                        why = "provider lost" if lost else f"allocation {a.name} failed"
                        detail = f": {a.detail}" if a.detail else ""
                        await self.teardown(self.record.slots)
                        await self.finish(DeploymentStatus.FAILED, why + detail)
                        return
            if broken:
                await self.redeploy(broken)
                return
            await self.wait_for_change(self.next_loss_check_s(now, lost_after))

    def next_loss_check_s(self, now: int, lost_after: int) -> float:
        """Seconds until the first live allocation would count as lost, were nothing heard
        from it: supervision sleeps until then (or until news), not in a fixed tick, so a
        thousand quiet deployments cost nothing between heartbeats."""
        first = min(
            (
                self.last_seen.get(a.allocation_id, now)
                for a in self.record.allocations
                if not a.status.final
            ),
            default=now,
        )
        return max(0.001, (first + lost_after - now) / NS + 0.001)

    async def redeploy(self, broken: set[str]) -> None:
        strategy = self.ensemble.supervisor
        now = self.service.clock.now_ns()
        window = [t for t in self.record.redeploys if now - t <= strategy.period]
        if len(window) >= strategy.intensity:
            await self.teardown(self.record.slots)
            await self.finish(
                DeploymentStatus.FAILED,
                f"restart intensity exceeded: more than {strategy.intensity} "
                f"redeploys within {strategy.period / NS:g}s",
            )
            return
        order = list(self.ensemble.nodes)
        if strategy.strategy is SupervisorStrategyName.ALL_FOR_ONE:
            nodes = set(order)
        elif strategy.strategy is SupervisorStrategyName.REST_FOR_ONE:
            first = min(order.index(n) for n in broken)
            nodes = set(order[first:])
        else:
            nodes = set(broken)
        self.log.info("redeploying", nodes=sorted(nodes), strategy=strategy.strategy.value)
        affected = [s for s in self.record.slots if s.node in nodes]
        await self.teardown(affected)
        self.record = msgspec.structs.replace(
            self.record,
            redeploys=(*window, now),
            slots=tuple(s for s in self.record.slots if s.node not in nodes),
            allocations=tuple(a for a in self.record.allocations if a.node not in nodes),
            deadline_ns=max(self.record.deadline_ns, now + self.service.redeploy_timeout_ns),
        )
        await self.set_status(
            DeploymentStatus.PREPARING,
            f"redeploying {', '.join(sorted(nodes))} ({strategy.strategy.value})",
        )
        if not await self.place(nodes):
            await self.teardown(self.record.slots)
            if not self.record.shutdown_requested:
                await self.finish(
                    DeploymentStatus.FAILED, f"could not redeploy: {self.pending_reason()}"
                )

    async def teardown(self, slots: Iterable[SlotRecord]) -> None:
        """Revert every slot; providers stop what runs there and release everything."""
        targets = list(slots)
        if not targets:
            return
        ids = {s.slot_id for s in targets}
        async with anyio.create_task_group() as tg:
            for slot in targets:
                tg.start_soon(self.revert, slot, "torn down by the orchestrator")
        nodes = {s.node for s in targets}
        self.record = msgspec.structs.replace(
            self.record,
            allocations=tuple(
                a
                if a.status.final or a.node not in nodes
                else msgspec.structs.replace(a, status=AllocationStatus.STOPPED)
                for a in self.record.allocations
            ),
            slots=tuple(s for s in self.record.slots if s.slot_id not in ids),
        )


def _bid_candidate(bid: Bid, todo: Sequence[Placement]) -> Candidate:
    """A bid as a candidate: its capability includes what it holds for this node."""
    requirement = next(p.requirement for p in todo if p.node == bid.node)
    capability = msgspec.structs.replace(
        bid.capability,
        resources=bid.capability.resources.add(requirement.resources),
        price=bid.price,
    )
    return Candidate(
        provider=bid.provider.did,
        peer_id=bid.provider.address.host,
        capability=capability,
        location=bid.location,
        onboarded_cores=bid.onboarded.cpu.cores,
        time_estimate_s=bid.time_estimate_s
        if bid.time_estimate_s is not None and math.isfinite(bid.time_estimate_s)
        else None,
    )
