"""Provider side of the deployment protocol: what a bid and a whole task cost, same run.

Two nodes on the in-memory fabric (signed envelopes, no latency, each trusting the other's
DID), a real ResourceManager on a
SQLite file (worker threads, WAL), the null executor, real time:

- bid: a bid request invoked and answered (capability check + a hold in SQLite), then the bid
  reverted, one at a time;
- task: bid -> allocate (carrying the commit) -> start (one-way) -> the COMPLETED event of a
  null task, one at a time;
- tasks in parallel: ``--parallel`` such tasks at once, completed tasks per second;
- baseline: start + wait of the same null task on the executor alone.

``task_vs_executor_ratio`` is what the protocol, the actors and the ledger add, as a multiple
of the bare execution. The pools are checked whole (free == onboarded) at the end.

    .venv/bin/python bench/provider.py [--json] [--runs N] [--parallel N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

from dms.actor import (
    ROOT_INBOX,
    Actor,
    ActorSystem,
    AllowList,
    ChildSpec,
    Empty,
    Envelope,
    Handle,
    behavior,
)
from dms.clock import RealClock
from dms.executor import ExecutionRequest, ExecutorRegistry, NullExecutor, NullProgram
from dms.jobs.load import parse_ensemble
from dms.jobs.protocol import (
    ALLOCATE,
    ALLOCATION_EVENT,
    ALLOCATION_START,
    BID_REQUEST,
    REVERT,
    AllocateReply,
    AllocateRequest,
    AllocationEvents,
    AllocationManifest,
    BidReply,
    BidRequest,
    CommitRequest,
    RevertReply,
    RevertRequest,
)
from dms.jobs.provider import ProviderService
from dms.log import configure
from dms.network.memory import Fabric
from dms.onboarding import OnboardingService, OnboardRequest
from dms.resources import CPUInfo, HardwareSpec, ResourceManager, StaticHardware
from dms.security import KeyPair
from dms.store import Database
from dms.types import CPU, Capability, ExecutorType, JobType, Resources, new_id

GiB = 1024**3
SPEC = HardwareSpec(
    cpu=CPUInfo(cores=64, threads=64, clock_hz=3_000_000_000, model="bench", architecture="x86_64"),
    ram=256 * GiB,
    disk=1000 * GiB,
    disk_path="/",
)
ALLOCATION = parse_ensemble(
    'version: V1\nallocations:\n  t:\n    executor: "null"\n'
    "    resources: {cpu: 0.1, ram: 16MiB}\n    execution: {args: []}\n"
).allocations["t"]
NEED = Capability(
    executors=(ExecutorType.NULL,),
    job_types=(JobType.TASK,),
    resources=Resources(cpu=CPU(cores=0.1), ram=16 * 1024**2),
)


class Listener(Actor):
    """The orchestrator's end: wakes whoever waits for an allocation's final event."""

    def __init__(self) -> None:
        self.waiting: dict[str, anyio.Event] = {}

    @behavior(ALLOCATION_EVENT, AllocationEvents)
    def on_events(self, message: AllocationEvents, envelope: Envelope) -> None:
        for event in message.events:
            if event.status.final and event.allocation_id in self.waiting:
                self.waiting[event.allocation_id].set()


class Bench:
    def __init__(self, orchestrator: ActorSystem, root: Handle, listener: Listener, me: Handle):
        self.orchestrator = orchestrator
        self.root = root
        self.listener = listener
        self.me = me
        self.deployment = new_id("d")

    def request(self) -> BidRequest:
        return BidRequest(
            request_id=new_id("r"),
            deployment_id=self.deployment,
            node="n",
            requirement=NEED,
            orchestrator=self.me,
            hold_ns=60 * 10**9,
        )

    async def bid(self) -> float:
        began = time.perf_counter()
        reply = await self.orchestrator.invoke(self.root, BID_REQUEST, self.request(), BidReply)
        elapsed = time.perf_counter() - began
        assert reply.bid is not None, reply.declined
        revert = RevertRequest(deployment_id=self.deployment, bid_id=reply.bid.bid_id)
        await self.orchestrator.invoke(self.root, REVERT, revert, RevertReply)
        return elapsed

    async def task(self) -> float:
        began = time.perf_counter()
        reply = await self.orchestrator.invoke(self.root, BID_REQUEST, self.request(), BidReply)
        assert reply.bid is not None, reply.declined
        slot = new_id("s")
        commit = CommitRequest(
            deployment_id=self.deployment, bid_id=reply.bid.bid_id, slot_id=slot, ttl_ns=60 * 10**9
        )
        manifest = AllocationManifest(allocation_id=new_id("a"), name="t", spec=ALLOCATION)
        done = self.listener.waiting[manifest.allocation_id] = anyio.Event()
        allocate = AllocateRequest(  # the commit travels with the allocate, as orchestrators do
            deployment_id=self.deployment,
            slot_id=slot,
            orchestrator=self.me,
            allocations=(manifest,),
            commit=commit,
        )
        handles = await self.orchestrator.invoke(self.root, ALLOCATE, allocate, AllocateReply)
        await self.orchestrator.send(
            handles.handles[manifest.allocation_id], ALLOCATION_START, Empty()
        )
        await done.wait()
        del self.listener.waiting[manifest.allocation_id]
        return time.perf_counter() - began


async def baseline(runs: int) -> list[float]:
    times = []
    async with NullExecutor() as executor:
        for _ in range(runs):
            began = time.perf_counter()
            request = ExecutionRequest(id=new_id("x"), program=NullProgram())
            await executor.start(request)
            await executor.wait(request.id)
            times.append(time.perf_counter() - began)
    return times


async def measure(runs: int, parallel: int, folder: Path) -> dict[str, float | int | bool]:
    clock = RealClock()
    fabric = Fabric()
    key_p, key_o = KeyPair.generate(), KeyPair.generate()
    with Database(folder / "dms.sqlite3") as db:
        manager = ResourceManager(db, clock, probe=lambda port: True)
        onboarding = OnboardingService(manager, StaticHardware(SPEC))
        await onboarding.onboard(OnboardRequest(cpu=32, ram=128 * GiB, disk=100 * GiB))
        registry = ExecutorRegistry([NullExecutor()], default=ExecutorType.NULL)
        async with (
            registry,
            ActorSystem(
                key_p,
                fabric.network("provider"),
                trust=AllowList([(key_o.did, "/")]),
                clock=clock,
            ) as provider,
            ActorSystem(
                key_o,
                fabric.network("orchestrator"),
                trust=AllowList([(key_p.did, "/")]),
                clock=clock,
            ) as orchestrator,
        ):
            service = ProviderService(
                system=provider,
                onboarding=onboarding,
                manager=manager,
                executors=registry,
                work_dir=folder / "allocations",
                clock=clock,
                advert_interval_s=60.0,
                retention_s=0.0,
            )
            service.register(provider.actor(ROOT_INBOX))
            await provider.supervisor.start_child(ChildSpec.task("provider", service.run))
            me = await orchestrator.spawn(Listener, "listener")
            listener = orchestrator.actor("listener")
            assert isinstance(listener, Listener)
            bench = Bench(orchestrator, provider.root, listener, me)
            bids = [await bench.bid() for _ in range(runs)]
            tasks = [await bench.task() for _ in range(runs)]
            bare = await baseline(runs)
            began = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(parallel):
                    tg.start_soon(bench.task)
            wall = time.perf_counter() - began
            pools = await manager.pools()
            whole = pools.free.normalized() == pools.onboarded.normalized()
    bid_ms = statistics.median(bids) * 1000
    task_ms = statistics.median(tasks) * 1000
    bare_ms = statistics.median(bare) * 1000
    return {
        "bid_p50_ms": round(bid_ms, 3),
        "bids_per_s": round(1000 / bid_ms, 1),
        "task_p50_ms": round(task_ms, 3),
        "task_p95_ms": round(statistics.quantiles(tasks, n=20)[-1] * 1000, 3),
        "executor_p50_ms": round(bare_ms, 3),
        "task_vs_executor_ratio": round(task_ms / bare_ms, 1),
        "parallel_tasks_per_s": round(parallel / wall, 1),
        "pools_whole": whole,
        "runs": runs,
        "parallel": parallel,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=100, help="sequential bids and tasks")
    parser.add_argument("--parallel", type=int, default=50, help="tasks at once")
    args = parser.parse_args()
    configure(level="warning", stream=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        figures = anyio.run(measure, args.runs, args.parallel, Path(folder), backend="trio")
    if args.json:
        json.dump(figures, sys.stdout)
        print()
        return
    print(f"provider: median of {args.runs} one at a time; {args.parallel} tasks in parallel")
    print(f"{'figure':44} {'value':>12}")
    rows = [
        ("bid request -> bid (hold in SQLite)", f"{figures['bid_p50_ms']:.2f} ms"),
        ("bids per second, one at a time", f"{figures['bids_per_s']:,.0f} /s"),
        ("task: bid -> allocate -> start -> done, p50", f"{figures['task_p50_ms']:.2f} ms"),
        ("task, p95", f"{figures['task_p95_ms']:.2f} ms"),
        ("null executor alone (start + wait)", f"{figures['executor_p50_ms']:.3f} ms"),
        ("task vs executor alone", f"{figures['task_vs_executor_ratio']:.0f}x"),
        (f"{args.parallel} tasks at once", f"{figures['parallel_tasks_per_s']:,.0f} /s"),
        ("pools whole afterwards (free == onboarded)", str(figures["pools_whole"])),
    ]
    for label, value in rows:
        print(f"{label:44} {value:>12}")


if __name__ == "__main__":
    main()
