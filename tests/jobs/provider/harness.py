"""A provider node and an orchestrator node on one in-memory fabric, and what they need.

The provider is the real thing: ActorSystem, ResourceManager on a SQLite file, onboarding,
executors, ProviderService. The orchestrator is a small actor that records bids, adverts and
allocation events; tests drive the protocol through its node.

``InlineDatabase`` runs each SQLite transaction in the event loop's thread: under trio's
autojump clock a wait for a worker thread counts as idle, and virtual time would jump ahead
(expiring holds, timing out invokes) while a transaction runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import msgspec

from dms.actor import ROOT_INBOX, Actor, ActorSystem, ChildSpec, Envelope, Handle, behavior
from dms.clock import LoopClock
from dms.executor import Executor, ExecutorRegistry, NullExecutor
from dms.jobs.load import parse_ensemble
from dms.jobs.protocol import (
    ADVERT,
    ADVERT_TOPIC,
    ALLOCATE,
    ALLOCATION_EVENT,
    ALLOCATION_START,
    BID,
    BID_REQUEST,
    COMMIT,
    HEARTBEATS,
    REVERT,
    AllocateReply,
    AllocateRequest,
    AllocationEvent,
    AllocationEvents,
    AllocationManifest,
    AllocationState,
    Bid,
    BidReply,
    BidRequest,
    CapacityAdvert,
    CommitReply,
    CommitRequest,
    Heartbeats,
    InputFile,
    Liveness,
    PortBinding,
    RevertReply,
    RevertRequest,
)
from dms.jobs.provider import ProviderService
from dms.jobs.spec import AllocationSpec
from dms.jobs.status import AllocationStatus
from dms.network.memory import Fabric
from dms.onboarding import GPUShare, OnboardingService, OnboardRequest
from dms.resources import (
    CPUInfo,
    HardwareSpec,
    PortRange,
    ResourceManager,
    StaticHardware,
    idle_usage,
)
from dms.security import KeyPair, TrustContext
from dms.sim.store import InlineDatabase
from dms.store import Database
from dms.types import (
    CPU,
    GPU,
    Capability,
    ExecutorType,
    GPUVendor,
    JobType,
    Location,
    PriceInformation,
    Resources,
    new_id,
)

GiB = 1024**3
MiB = 1024**2
SECOND = 10**9
T = TypeVar("T")

SPEC = HardwareSpec(
    cpu=CPUInfo(cores=8, threads=8, clock_hz=3_000_000_000, model="EPYC", architecture="x86_64"),
    ram=32 * GiB,
    disk=500 * GiB,
    disk_path="/srv/dms",
    gpus=(
        GPU(index=0, vendor=GPUVendor.NVIDIA, model="RTX 4090", vram=24 * GiB, uuid="GPU-aaa"),
        GPU(index=1, vendor=GPUVendor.NVIDIA, model="H100", vram=80 * GiB, uuid="GPU-bbb"),
    ),
)
ONBOARD = OnboardRequest(
    cpu=4,
    ram=16 * GiB,
    disk=100 * GiB,
    price_per_hour=500_000,
    currency="NTX",
    location=Location(continent="EU", country="DE", city="Berlin"),
)
ONBOARD_GPUS = msgspec.structs.replace(ONBOARD, gpus=(GPUShare(0, 20 * GiB), GPUShare(1, 60 * GiB)))
PORTS = PortRange(20000, 20099)


def always_free(port: int) -> bool:
    return True


# -- the orchestrator side --------------------------------------------------------------------


class Recorder(Actor):
    """Stands in for an orchestrator: records bids, adverts and allocation events."""

    def __init__(self) -> None:
        self.bids: list[Bid] = []
        self.adverts: list[CapacityAdvert] = []
        self.events: list[AllocationEvent] = []
        self.messages = 0
        self.beats: list[tuple[int, Liveness]] = []
        """(heartbeat time, what it said) for every allocation in every heartbeat."""
        self.heartbeat_messages = 0
        """ALLOCATION_EVENT messages received (several events may share one)."""
        self.senders: list[str] = []
        self.changed = anyio.Event()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    @behavior(BID, Bid)
    def on_bid(self, bid: Bid, envelope: Envelope) -> None:
        self.bids.append(bid)
        self._changed()

    @behavior(ADVERT, CapacityAdvert, topic=ADVERT_TOPIC)
    def on_advert(self, advert: CapacityAdvert, envelope: Envelope) -> None:
        self.adverts.append(advert)
        self._changed()

    def on_heartbeats(self, message: Heartbeats, envelope: Envelope) -> None:
        for alive in message.allocations:
            self.beats.append((message.time_ns, alive))
        self.heartbeat_messages += 1
        self._changed()

    def beats_of(self, allocation_id: str) -> list[Liveness]:
        return [alive for _, alive in self.beats if alive.allocation_id == allocation_id]

    @behavior(ALLOCATION_EVENT, AllocationEvents)
    def on_events(self, message: AllocationEvents, envelope: Envelope) -> None:
        self.messages += 1
        for event in message.events:
            self.events.append(event)
            self.senders.append(envelope.sender.did)
        self._changed()

    async def until(self, check: Callable[[], T | bool | None]) -> T | bool:
        """Wait (in virtual or real time) until ``check()`` returns something truthy."""
        while not (found := check()):
            await self.changed.wait()
        return found

    def statuses(self, allocation_id: str) -> list[AllocationStatus]:
        return [
            e.status
            for e in self.events
            if e.allocation_id == allocation_id and e.kind.value == "status"
        ]

    def final(self, allocation_id: str) -> AllocationEvent | None:
        for event in self.events:
            if event.allocation_id == allocation_id and event.status.final:
                return event
        return None


# -- the cluster ------------------------------------------------------------------------------


@dataclass
class Cluster:
    fabric: Fabric
    provider: ActorSystem
    orchestrator: ActorSystem
    service: ProviderService
    manager: ResourceManager
    onboarding: OnboardingService
    executors: ExecutorRegistry
    recorder: Recorder
    recorder_handle: Handle
    work_dir: Path
    deployment_id: str = field(default_factory=lambda: new_id("d"))

    @property
    def root(self) -> Handle:
        return self.provider.root

    # -- protocol steps, invoked from the orchestrator's node --------------------------------

    def bid_request(self, requirement: Capability, **fields: Any) -> BidRequest:
        values: dict[str, Any] = {
            "request_id": new_id("r"),
            "deployment_id": self.deployment_id,
            "node": "n",
            "requirement": requirement,
            "orchestrator": self.recorder_handle,
            "hold_ns": 30 * SECOND,
        }
        values.update(fields)
        return BidRequest(**values)

    async def request(self, request: BidRequest) -> BidReply:
        return await self.orchestrator.invoke(self.root, BID_REQUEST, request, BidReply)

    async def bid(self, requirement: Capability, **fields: Any) -> Bid:
        reply = await self.request(self.bid_request(requirement, **fields))
        assert reply.bid is not None, reply.declined
        return reply.bid

    async def commit(
        self,
        bid: Bid,
        slot_id: str,
        *,
        ttl_ns: int = 30 * SECOND,
        ports: tuple[PortBinding, ...] = (),
    ) -> CommitReply:
        request = CommitRequest(
            deployment_id=self.deployment_id,
            bid_id=bid.bid_id,
            slot_id=slot_id,
            ttl_ns=ttl_ns,
            ports=ports,
        )
        return await self.orchestrator.invoke(self.root, COMMIT, request, CommitReply)

    async def allocate(self, slot_id: str, *manifests: AllocationManifest) -> AllocateReply:
        request = AllocateRequest(
            deployment_id=self.deployment_id,
            slot_id=slot_id,
            orchestrator=self.recorder_handle,
            allocations=manifests,
        )
        return await self.orchestrator.invoke(self.root, ALLOCATE, request, AllocateReply)

    async def revert(self, slot_id: str = "", bid_id: str = "") -> bool:
        request = RevertRequest(
            deployment_id=self.deployment_id, slot_id=slot_id, bid_id=bid_id, reason="test"
        )
        reply = await self.orchestrator.invoke(self.root, REVERT, request, RevertReply)
        return reply.released

    async def start(self, handle: Handle) -> AllocationState:
        from dms.actor import Empty

        return await self.orchestrator.invoke(handle, ALLOCATION_START, Empty(), AllocationState)

    async def deploy(self, *manifests: AllocationManifest) -> dict[str, Handle]:
        """Bid, commit and allocate one slot holding ``manifests``; start nothing."""
        total = Capability()
        for m in manifests:
            total = total.add(requirement(m.spec))
        bid = await self.bid(total)
        slot_id = new_id("s")
        await self.commit(bid, slot_id)
        reply = await self.allocate(slot_id, *manifests)
        return reply.handles

    async def run(self, *manifests: AllocationManifest) -> dict[str, Handle]:
        """Deploy and start every allocation."""
        handles = await self.deploy(*manifests)
        for handle in handles.values():
            await self.start(handle)
        return handles

    async def free_is_onboarded(self) -> bool:
        pools = await self.manager.pools()
        return pools.free.normalized() == pools.onboarded.normalized()

    async def ended(self, *allocation_ids: str) -> list[AllocationEvent]:
        """Wait for the final event of each allocation (sent after its resources were given
        back when it was the last of its slot)."""
        await self.recorder.until(lambda: all(self.recorder.final(a) for a in allocation_ids))
        return [e for a in allocation_ids if (e := self.recorder.final(a)) is not None]


def requirement(spec: AllocationSpec) -> Capability:
    return Capability(
        executors=(spec.executor,),
        job_types=(spec.type,),
        resources=spec.resources.to_resources(),
    )


def allocation_spec(*parts: str) -> AllocationSpec:
    """One allocation spec, written in the ensemble file's YAML (``allocations: {x: ...}``);
    each part is dedented on its own."""
    body = "".join(_indent(part, 4) for part in parts if part.strip())
    ensemble = parse_ensemble("version: V1\nallocations:\n  x:\n" + body)
    return ensemble.allocations["x"]


def _indent(text: str, spaces: int) -> str:
    import textwrap

    return textwrap.indent(textwrap.dedent(text).strip("\n"), " " * spaces) + "\n"


def null_manifest(
    args: Iterable[str] = (),
    *,
    type: JobType = JobType.TASK,
    extra: str = "",
    cpu: float = 0.5,
    ram: str = "64MiB",
    name: str = "work",
    allocation_id: str | None = None,
    replica: int = 0,
) -> AllocationManifest:
    listed = ", ".join(f'"{a}"' for a in args)
    spec = allocation_spec(
        f"""
        type: {type.value}
        executor: "null"
        resources: {{cpu: {cpu}, ram: {ram}}}
        execution: {{args: [{listed}]}}
        """,
        extra,
    )
    return AllocationManifest(
        allocation_id=allocation_id or new_id("a"), name=name, spec=spec, replica=replica
    )


def wasm_manifest(
    module: bytes,
    args: Iterable[str] = (),
    *,
    inputs: tuple[InputFile, ...] = (),
    extra: str = "",
) -> AllocationManifest:
    listed = ", ".join(f'"{a}"' for a in args)
    spec = allocation_spec(
        f"""
        executor: wasm
        resources: {{cpu: 1, ram: 64MiB}}
        execution: {{module: m.wasm, args: [{listed}]}}
        """,
        extra,
    )
    return AllocationManifest(
        allocation_id=new_id("a"), name="w", spec=spec, module=module, inputs=inputs
    )


@asynccontextmanager
async def cluster(
    tmp_path: Path,
    *,
    onboard: OnboardRequest | None = ONBOARD,
    executors: Iterable[Executor] | None = None,
    inline_db: bool = True,
    advert_interval_s: float = 5.0,
    heartbeat_interval_s: float = 5.0,
    retention_s: float = 3600.0,
    job_types: tuple[JobType, ...] = (),
) -> AsyncIterator[Cluster]:
    """A provider node (onboarded with ``onboard``) and an orchestrator node that trust each
    other, the provider's service running."""
    fabric = Fabric()
    clock = LoopClock()
    key_p, key_o = KeyPair.generate(), KeyPair.generate()
    db_class = InlineDatabase if inline_db else Database
    async with AsyncExitStack() as stack:
        db = stack.enter_context(db_class(tmp_path / "dms.sqlite3"))
        manager = ResourceManager(db, clock, ports=PORTS, probe=always_free)
        onboarding = OnboardingService(
            manager,
            StaticHardware(SPEC, idle_usage(SPEC)),
            executors=(),
            job_types=job_types,
        )
        if onboard is not None:
            await onboarding.onboard(onboard)
        registry = ExecutorRegistry(
            executors if executors is not None else [NullExecutor()], default=ExecutorType.NULL
        )
        await stack.enter_async_context(registry)
        provider = await stack.enter_async_context(
            ActorSystem(
                key_p,
                fabric.network("provider"),
                trust=TrustContext(local_did=key_p.did, roots=[key_o.did]),
                clock=clock,
            )
        )
        orchestrator = await stack.enter_async_context(
            ActorSystem(
                key_o,
                fabric.network("orchestrator"),
                trust=TrustContext(local_did=key_o.did, roots=[key_p.did]),
                clock=clock,
            )
        )
        service = ProviderService(
            system=provider,
            onboarding=onboarding,
            manager=manager,
            executors=registry,
            work_dir=tmp_path / "work" / "allocations",
            clock=clock,
            advert_interval_s=advert_interval_s,
            heartbeat_interval_s=heartbeat_interval_s,
            retention_s=retention_s,
            version="test",
        )
        service.register(provider.actor(ROOT_INBOX))
        recorder_handle = await orchestrator.spawn(Recorder, "recorder")
        recorder = orchestrator.actor("recorder")
        assert isinstance(recorder, Recorder)
        # Heartbeats go to the orchestrator node's root actor, as they would to a real one.
        orchestrator.actor(ROOT_INBOX).register(
            HEARTBEATS, Heartbeats, None, recorder.on_heartbeats
        )
        await provider.supervisor.start_child(ChildSpec.task("provider", service.run))
        await anyio.wait_all_tasks_blocked()
        yield Cluster(
            fabric=fabric,
            provider=provider,
            orchestrator=orchestrator,
            service=service,
            manager=manager,
            onboarding=onboarding,
            executors=registry,
            recorder=recorder,
            recorder_handle=recorder_handle,
            work_dir=tmp_path / "work" / "allocations",
        )


def need(cores: float = 1, ram_gib: float = 1, **fields: Any) -> Capability:
    return Capability(
        executors=(ExecutorType.NULL,),
        job_types=(JobType.TASK,),
        resources=Resources(cpu=CPU(cores=cores), ram=int(ram_gib * GiB)),
        **fields,
    )


def price(max_per_hour: int, currency: str = "NTX") -> PriceInformation:
    return PriceInformation(currency=currency, currency_per_hour=max_per_hour)
