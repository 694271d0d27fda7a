"""A network of actor systems on the in-memory fabric: one orchestrator node and scripted
providers that speak the deployment protocol (capacity in cores only, virtual time)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import msgspec

from dms.actor import ROOT_INBOX, Actor, ActorSystem, Empty, Envelope, Restart, behavior
from dms.actor.supervisor import ChildSpec
from dms.clock import LoopClock
from dms.jobs.protocol import (
    ADVERT,
    ADVERT_TOPIC,
    ALLOCATE,
    ALLOCATION_EVENT,
    ALLOCATION_LOGS,
    ALLOCATION_START,
    BID_REQUEST,
    COMMIT,
    REVERT,
    AllocateReply,
    AllocateRequest,
    AllocationEvents,
    AllocationManifest,
    AllocationState,
    Bid,
    BidReply,
    BidRequest,
    CapacityAdvert,
    CommitReply,
    CommitRequest,
    LogsChunk,
    LogsRequest,
    RevertReply,
    RevertRequest,
)
from dms.jobs.protocol import AllocationEvent as Event
from dms.jobs.status import AllocationStatus
from dms.network.memory import Fabric
from dms.orchestrator import OrchestratorService
from dms.security import KeyPair, TrustContext
from dms.types import (
    CPU,
    Capability,
    ExecutorType,
    JobType,
    Location,
    PriceInformation,
    Resources,
)
from tests.jobs.provider.harness import InlineDatabase

GiB = 1024**3
S = 10**9


@dataclass
class Script:
    """How a provider behaves."""

    cores: float = 4.0
    price: int = 1_000_000
    location: Location = field(default_factory=lambda: Location(continent="EU", country="DE"))
    run_s: float = 1.0
    exit_code: int = 0
    fail_commit: bool = False
    fail_allocate: bool = False
    heartbeats: bool = True
    lose_starts: int = 0
    """Start messages this provider's allocations drop (each) before one takes."""


class FakeAllocation(Actor):
    def __init__(
        self,
        provider: FakeProvider,
        slot_id: str,
        manifest: AllocationManifest,
        orchestrator: object,
    ) -> None:
        self.provider = provider
        self.slot_id = slot_id
        self.manifest = manifest
        self.orchestrator = orchestrator
        self.status = AllocationStatus.PENDING
        self.sequence = 0
        self.starts_seen = 0

    async def report(self, status: AllocationStatus, exit_code: int | None = None) -> None:
        self.status = status
        self.sequence += 1
        event = Event(
            deployment_id=self.provider.deployments[self.slot_id],
            allocation_id=self.manifest.allocation_id,
            name=self.manifest.name,
            slot_id=self.slot_id,
            status=status,
            sequence=self.sequence,
            time_ns=self.provider.system.clock.now_ns(),
            exit_code=exit_code,
            stdout_tail="hello\n" if exit_code is not None else "",
        )
        with contextlib.suppress(Exception):
            await self.send(
                self.orchestrator,
                ALLOCATION_EVENT,
                AllocationEvents(events=(event,)),  # type: ignore[arg-type]
            )

    @behavior(ALLOCATION_START, Empty, AllocationState)
    async def start(self, message: Empty, envelope: Envelope) -> AllocationState:
        self.starts_seen += 1
        if self.starts_seen <= self.provider.script.lose_starts:
            return AllocationState(  # as if the message never arrived
                allocation_id=self.manifest.allocation_id,
                name=self.manifest.name,
                status=self.status,
            )
        if self.status is AllocationStatus.PENDING:
            await self.report(AllocationStatus.STARTING)
            await self.report(AllocationStatus.RUNNING)
            self.provider.running.add(self.manifest.allocation_id)
            await self.system.supervisor.start_child(
                ChildSpec.task(
                    f"run-{self.manifest.allocation_id}", self.run, restart=Restart.TEMPORARY
                )
            )
        return AllocationState(
            allocation_id=self.manifest.allocation_id, name=self.manifest.name, status=self.status
        )

    async def run(self) -> None:
        script = self.provider.script
        is_service = self.manifest.spec.type is JobType.SERVICE
        elapsed = 0.0
        while is_service or elapsed < script.run_s:
            if self.provider.dead:
                return
            await anyio.sleep(1.0)
            elapsed += 1.0
            if script.heartbeats and not self.provider.dead:
                self.sequence += 1
                with contextlib.suppress(Exception):
                    await self.send(
                        self.orchestrator,
                        ALLOCATION_EVENT,
                        AllocationEvents(
                            events=(
                                Event(
                                    deployment_id=self.provider.deployments[self.slot_id],
                                    allocation_id=self.manifest.allocation_id,
                                    name=self.manifest.name,
                                    slot_id=self.slot_id,
                                    kind="heartbeat",  # type: ignore[arg-type]
                                    status=self.status,  # type: ignore[arg-type]
                                    sequence=self.sequence,
                                    time_ns=self.provider.system.clock.now_ns(),
                                ),
                            )
                        ),
                    )
            if self.status.final:
                return
        final = AllocationStatus.COMPLETED if script.exit_code == 0 else AllocationStatus.FAILED
        await self.report(final, script.exit_code)
        self.provider.finish(self.slot_id, self.manifest.allocation_id)

    @behavior(ALLOCATION_LOGS, LogsRequest, LogsChunk)
    def logs(self, message: LogsRequest, envelope: Envelope) -> LogsChunk:
        data = b"hello from " + self.manifest.name.encode() + b"\n"
        piece = data[message.offset : message.offset + message.limit]
        return LogsChunk(
            stream=message.stream,
            offset=message.offset,
            data=piece,
            next_offset=message.offset + len(piece),
            eof=self.status.final,
        )


class FakeProvider(Actor):
    """A provider's root actor: bids, holds, commits and allocates against a core count."""

    def __init__(self, name: str, script: Script) -> None:
        self.name = name
        self.script = script
        self.held: dict[str, float] = {}
        self.slots: dict[str, float] = {}
        self.deployments: dict[str, str] = {}
        self.allocations: dict[str, set[str]] = {}
        self.running: set[str] = set()
        self.requests = 0
        self.commits = 0
        self.dead = False
        self.sequence = 0

    @property
    def free(self) -> float:
        return self.script.cores - sum(self.held.values()) - sum(self.slots.values())

    def capability(self) -> Capability:
        return Capability(
            executors=(ExecutorType.WASM, ExecutorType.PROCESS),
            job_types=tuple(JobType),
            resources=Resources(cpu=CPU(cores=max(self.free, 0.0)), ram=64 * GiB, disk=64 * GiB),
            price=PriceInformation(currency="NTX", currency_per_hour=self.script.price),
        )

    def advert(self) -> CapacityAdvert:
        self.sequence += 1
        return CapacityAdvert(
            provider=self.handle,
            capability=self.capability(),
            onboarded=Resources(cpu=CPU(cores=self.script.cores)),
            location=self.script.location,
            sequence=self.sequence,
            issued_ns=self.system.clock.now_ns(),
            ttl_ns=3600 * S,
        )

    @behavior(BID_REQUEST, BidRequest, BidReply)
    def bid(self, request: BidRequest, envelope: Envelope) -> BidReply:
        self.requests += 1
        cores = request.requirement.resources.cpu.cores
        verdict = self.capability().satisfies(request.requirement)
        if not verdict.ok:
            return BidReply(declined=verdict.explain())
        bid_id = f"{self.name}-{request.request_id}"
        self.held[bid_id] = cores
        return BidReply(
            bid=Bid(
                bid_id=bid_id,
                request_id=request.request_id,
                deployment_id=request.deployment_id,
                node=request.node,
                provider=self.handle,
                price=PriceInformation(currency="NTX", currency_per_hour=self.script.price),
                capability=self.capability(),
                onboarded=Resources(cpu=CPU(cores=self.script.cores)),
                location=self.script.location,
                expires_ns=self.system.clock.now_ns() + request.hold_ns,
            )
        )

    @behavior(COMMIT, CommitRequest, CommitReply)
    def commit(self, request: CommitRequest, envelope: Envelope) -> CommitReply:
        self.commits += 1
        if self.script.fail_commit:
            raise RuntimeError("commit refused by script")
        if request.slot_id not in self.slots:
            self.slots[request.slot_id] = self.held.pop(request.bid_id)
            self.deployments[request.slot_id] = request.deployment_id
        return CommitReply(slot_id=request.slot_id, ports=request.ports)

    @behavior(ALLOCATE, AllocateRequest, AllocateReply)
    async def allocate(self, request: AllocateRequest, envelope: Envelope) -> AllocateReply:
        committed = None
        if request.commit is not None:
            committed = self.commit(request.commit, envelope)
        if self.script.fail_allocate:
            raise RuntimeError("allocate refused by script")
        handles = {}
        self.allocations[request.slot_id] = set()
        for manifest in request.allocations:
            inbox = f"alloc-{manifest.allocation_id}"
            handles[manifest.allocation_id] = await self.spawn(
                lambda m=manifest: FakeAllocation(self, request.slot_id, m, request.orchestrator),
                inbox,
                restart=Restart.TEMPORARY,
            )
            self.allocations[request.slot_id].add(manifest.allocation_id)
        return AllocateReply(slot_id=request.slot_id, handles=handles, committed=committed)

    @behavior(REVERT, RevertRequest, RevertReply)
    def revert(self, request: RevertRequest, envelope: Envelope) -> RevertReply:
        released = self.held.pop(request.bid_id, None) is not None
        if request.slot_id in self.slots:
            del self.slots[request.slot_id]
            for allocation in self.allocations.pop(request.slot_id, set()):
                self.running.discard(allocation)
            released = True
        return RevertReply(released=released)

    def finish(self, slot_id: str, allocation_id: str) -> None:
        self.running.discard(allocation_id)
        remaining = self.allocations.get(slot_id, set())
        remaining.discard(allocation_id)
        if not remaining:
            self.slots.pop(slot_id, None)


@dataclass
class Network:
    fabric: Fabric
    orchestrator: OrchestratorService
    node: ActorSystem
    providers: dict[str, FakeProvider]
    systems: dict[str, ActorSystem]

    async def advertise(self) -> None:
        for provider in self.providers.values():
            if not provider.dead:
                await provider.publish(ADVERT_TOPIC, ADVERT, provider.advert())
        await anyio.sleep(0.01)


def _make_provider(name: str, script: Script) -> FakeProvider:
    return FakeProvider(name, script)


@contextlib.asynccontextmanager
async def network(
    tmp_path: Path, scripts: dict[str, Script], **options: float
) -> AsyncIterator[Network]:
    fabric = Fabric()
    clock = LoopClock()
    keys = {name: KeyPair.generate() for name in ["orch", *scripts]}
    dids = [k.did for k in keys.values()]
    async with contextlib.AsyncExitStack() as stack:

        def trust(name: str) -> TrustContext:
            return TrustContext(local_did=keys[name].did, roots=dids)

        db = stack.enter_context(InlineDatabase(tmp_path / "orch.sqlite3"))
        node = await stack.enter_async_context(
            ActorSystem(keys["orch"], fabric.network("orch"), trust=trust("orch"), clock=clock)
        )
        service = OrchestratorService(system=node, db=db, clock=clock, work_dir=tmp_path, **options)
        service.register(node.actor(ROOT_INBOX))
        await node.supervisor.start_child(ChildSpec.task("orchestrator", service.run))
        systems = {}
        providers = {}
        for name, script in scripts.items():
            system = await stack.enter_async_context(
                ActorSystem(
                    keys[name],
                    fabric.network(name),
                    trust=trust(name),
                    clock=clock,
                    root=lambda n=name, s=script: _make_provider(n, s),
                )
            )
            systems[name] = system
            root = system.actor(ROOT_INBOX)
            assert isinstance(root, FakeProvider)
            providers[name] = root
        await anyio.sleep(0.1)
        net = Network(
            fabric=fabric, orchestrator=service, node=node, providers=providers, systems=systems
        )
        await net.advertise()
        yield net


_ = msgspec
