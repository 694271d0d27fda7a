"""Simulated nodes, each assembled from the real parts, as in a running ``dms`` node.

* a provider: ActorSystem on the fabric, ResourceManager on its own SQLite database,
  OnboardingService on a :class:`~dms.resources.StaticHardware` machine (onboarded at start),
  ExecutorRegistry with the :class:`~dms.sim.executor.SimExecutor`, ProviderService (adverts,
  bids, commit / allocate / revert, allocation actors) and the resource reclaimer;
* an orchestrator: ActorSystem, its SQLite database, and an OrchestratorService that also
  records when each deployment changes status (:class:`ObservedOrchestrator`).

Each node lives in a task of its own (:func:`host_provider`, :func:`host_orchestrator`) that
keeps its parts open until the simulation stops, so thousands of nodes never nest thousands of
context managers in one task.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from dms.actor import ROOT_INBOX, ActorSystem, ChildSpec
from dms.clock import Clock
from dms.executor import ExecutorRegistry
from dms.jobs.protocol import CapacityAdvert
from dms.jobs.provider import ProviderService
from dms.jobs.status import DeploymentStatus
from dms.network.memory import Fabric
from dms.onboarding import OnboardingService
from dms.orchestrator import OrchestratorService
from dms.orchestrator.records import DeploymentRecord
from dms.orchestrator.view import AdvertView
from dms.resources import PortRange, ResourceManager, StaticHardware, run_reclaimer
from dms.security import KeyPair
from dms.sim.cpu import mark_role
from dms.sim.executor import SimExecutor
from dms.sim.profiles import ProviderProfile
from dms.sim.store import MEMORY, InlineDatabase
from dms.sim.trust import Trust
from dms.types import ExecutorType

NS_PER_S = 1_000_000_000
PROVIDER = "provider"
ORCHESTRATOR = "orchestrator"


def no_port_probe(port: int) -> bool:
    """Simulated machines never bind a real port: every port in the range is free."""
    return True


@dataclass
class ProviderNode:
    """A running simulated provider and its parts."""

    profile: ProviderProfile
    key: KeyPair
    system: ActorSystem
    db: InlineDatabase
    manager: ResourceManager
    onboarding: OnboardingService
    executors: ExecutorRegistry
    service: ProviderService

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def did(self) -> str:
        return self.key.did


@dataclass
class StatusLog:
    """When each deployment reached each status (loop time, seconds), and who waits for it."""

    times: dict[str, dict[DeploymentStatus, float]] = field(default_factory=dict)
    waiters: dict[tuple[str, DeploymentStatus], anyio.Event] = field(default_factory=dict)
    final: dict[str, DeploymentStatus] = field(default_factory=dict)

    def record(self, deployment_id: str, status: DeploymentStatus) -> None:
        self.times.setdefault(deployment_id, {}).setdefault(status, anyio.current_time())
        event = self.waiters.pop((deployment_id, status), None)
        if event is not None:
            event.set()
        if status.final:
            self.final[deployment_id] = status
            # Whoever waits for another status of a finished deployment waits in vain.
            for key in [k for k in self.waiters if k[0] == deployment_id]:
                self.waiters.pop(key).set()

    async def wait(self, deployment_id: str, status: DeploymentStatus) -> DeploymentStatus:
        """Until the deployment reaches ``status`` or ends; the status it is in then."""
        while True:
            seen = self.times.get(deployment_id, {})
            if status in seen:
                return status
            if deployment_id in self.final:
                return self.final[deployment_id]
            event = self.waiters.setdefault((deployment_id, status), anyio.Event())
            await event.wait()


class WatchedView(AdvertView):
    """An AdvertView that says when it holds adverts of at least ``wanted`` providers."""

    def __init__(self, wanted: int) -> None:
        super().__init__()
        self.wanted = wanted
        self.full = anyio.Event()

    def update(self, advert: CapacityAdvert) -> bool:
        kept = super().update(advert)
        if kept and len(self) >= self.wanted:
            self.full.set()
        return kept


class ObservedOrchestrator(OrchestratorService):
    """An OrchestratorService that logs every status change into a :class:`StatusLog` and
    says when its view holds every provider (``view.full``)."""

    def __init__(self, *, status_log: StatusLog, providers: int, **options: Any) -> None:
        super().__init__(**options)
        self.status_log = status_log
        self.view: WatchedView = WatchedView(providers)
        if providers == 0:
            self.view.full.set()

    def notify(self, record: DeploymentRecord) -> None:
        super().notify(record)
        self.status_log.record(record.deployment_id, record.status)


@dataclass
class OrchestratorNode:
    name: str
    key: KeyPair
    system: ActorSystem
    db: InlineDatabase
    service: ObservedOrchestrator

    @property
    def did(self) -> str:
        return self.key.did


@dataclass
class ProviderOptions:
    """Settings every simulated provider shares."""

    advert_interval_s: float = 5.0
    heartbeat_interval_s: float = 5.0
    reclaim_interval_s: float = 30.0
    database: str = MEMORY
    """``":memory:"`` or ``"file"`` (one SQLite file per provider in the work dir)."""


def _database(kind: str, folder: Path, name: str) -> InlineDatabase:
    if kind == MEMORY:
        return InlineDatabase(MEMORY)
    folder.mkdir(parents=True, exist_ok=True)
    return InlineDatabase(folder / f"{name}.sqlite3")


async def host_provider(
    profile: ProviderProfile,
    key: KeyPair,
    *,
    fabric: Fabric,
    trust: Trust,
    clock: Clock,
    work_dir: Path,
    options: ProviderOptions,
    stop: anyio.Event,
    task_status: TaskStatus[ProviderNode] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run one provider until ``stop`` is set (``await tg.start(host_provider, ...)``)."""
    mark_role(PROVIDER)
    home = work_dir / profile.name
    async with contextlib.AsyncExitStack() as stack:
        db = stack.enter_context(_database(options.database, work_dir / "db", profile.name))
        manager = ResourceManager(
            db, clock, ports=PortRange(20000, 29999), probe=no_port_probe, node=profile.name
        )
        onboarding = OnboardingService(
            manager, StaticHardware(profile.hardware()), node=profile.name
        )
        await onboarding.onboard(profile.onboard_request())
        executors = ExecutorRegistry([SimExecutor()], default=ExecutorType.NULL)
        await stack.enter_async_context(executors)
        system = await stack.enter_async_context(
            ActorSystem(
                key, fabric.network(profile.name), trust=trust.provider(key.did), clock=clock
            )
        )
        service = ProviderService(
            system=system,
            onboarding=onboarding,
            manager=manager,
            executors=executors,
            work_dir=home,
            clock=clock,
            advert_interval_s=options.advert_interval_s,
            heartbeat_interval_s=options.heartbeat_interval_s,
            version="sim",
        )
        service.register(system.actor(ROOT_INBOX))
        interval_ns = int(options.reclaim_interval_s * NS_PER_S)
        await system.supervisor.start_child(
            ChildSpec.task("reclaimer", functools.partial(run_reclaimer, manager, interval_ns))
        )
        await system.supervisor.start_child(ChildSpec.task("provider", service.run))
        task_status.started(
            ProviderNode(
                profile=profile,
                key=key,
                system=system,
                db=db,
                manager=manager,
                onboarding=onboarding,
                executors=executors,
                service=service,
            )
        )
        await stop.wait()


async def host_orchestrator(
    name: str,
    key: KeyPair,
    *,
    fabric: Fabric,
    trust: Trust,
    clock: Clock,
    work_dir: Path,
    database: str,
    status_log: StatusLog,
    providers: int,
    options: dict[str, float],
    stop: anyio.Event,
    task_status: TaskStatus[OrchestratorNode] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run one orchestrator until ``stop`` is set."""
    mark_role(ORCHESTRATOR)
    async with contextlib.AsyncExitStack() as stack:
        db = stack.enter_context(_database(database, work_dir / "db", name))
        system = await stack.enter_async_context(
            ActorSystem(key, fabric.network(name), trust=trust.orchestrator(key.did), clock=clock)
        )
        service = ObservedOrchestrator(
            status_log=status_log,
            providers=providers,
            system=system,
            db=db,
            clock=clock,
            work_dir=work_dir / name,
            **options,
        )
        service.register(system.actor(ROOT_INBOX))
        await system.supervisor.start_child(ChildSpec.task("orchestrator", service.run))
        task_status.started(
            OrchestratorNode(name=name, key=key, system=system, db=db, service=service)
        )
        await stop.wait()
