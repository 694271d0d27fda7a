"""DMS: one node's parts, started in order and stopped in reverse.

Start order (each step only once the one before it is ready)::

    home, API token -> SQLite store -> hardware, resources, onboarding
      -> executors (what a previous run left running is killed) -> start-up sanity check
      -> network (libp2p, from the node key)
      -> actor system (trust context from the home) with the Node root actor
         (node, onboarding, provider and orchestrator behaviors)
      -> supervised tasks: resource reclaimer, provider, orchestrator
      -> REST API -> runtime file (``<home>/node.json``): ready

Leaving ``async with DMS(...)`` undoes it from the bottom up. The provider
(:class:`dms.jobs.provider.ProviderService`) and the orchestrator
(:class:`dms.orchestrator.OrchestratorService`) are imported when the node starts; a node
built from a tree without one of them runs without it (and says so in its log).

Heavy imports (libp2p, Litestar, hypercorn) happen inside :meth:`DMS.__aenter__`, so importing
this module costs little.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import msgspec

from dms import __version__
from dms.actor import ActorSystem, ChildSpec, Empty
from dms.actor.actor import Actor
from dms.actor.system import only_error
from dms.clock import Clock, RealClock
from dms.config import Config
from dms.errors import DMSError
from dms.home import Home
from dms.log import get_logger
from dms.network.base import Network
from dms.node import NodeActor, NodeService, Registrar
from dms.node.setup import RuntimeInfo, ensure_api_token, remove_runtime, write_runtime
from dms.onboarding.behaviors import OffboardRequest, OnboardingBehaviors, register
from dms.onboarding.records import OffboardResult, OnboardRequest, OnboardStatus
from dms.onboarding.service import OnboardingService
from dms.resources.hardware import HardwareProbe, HardwareSpec, HardwareUsage
from dms.resources.manager import ResourceManager, run_reclaimer
from dms.resources.ports import PortRange
from dms.security import KeyPair, TrustContext, trust_path
from dms.store import Database
from dms.types import JobType
from dms.types.units import parse_duration

if TYPE_CHECKING:
    from dms.api.server import APIServer
    from dms.executor.registry import ExecutorRegistry
    from dms.jobs.provider import ProviderService
    from dms.orchestrator import OrchestratorService


def _process_started() -> float:
    """When this process started (wall clock, to ~10 ms), for the start-to-ready figure.

    From ``/proc``: the system's uptime minus the process's start time in clock ticks (psutil's
    ``create_time`` adds the boot time, which the kernel gives to the second only).
    """
    try:
        with open("/proc/uptime") as uptime_file:
            uptime = float(uptime_file.read().split()[0])
        with open(f"/proc/{os.getpid()}/stat") as stat_file:
            fields = stat_file.read().rsplit(")", 1)[1].split()
        age = uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.time() - max(age, 0.0)
    except (OSError, ValueError, IndexError):  # no /proc: this import is close enough
        return time.time()


PROCESS_STARTED = _process_started()
DEFAULT_ADVERT_INTERVAL_S = 5.0
DOCKER_SOCKET = "/var/run/docker.sock"


class _StopAllocation:
    """``OnboardingService(stop_allocation=...)`` before the provider exists (they need each other)."""

    def __init__(self) -> None:
        self.target: Callable[[str], Awaitable[None]] | None = None

    async def __call__(self, allocation_id: str) -> None:
        if self.target is None:
            raise DMSError(f"allocation {allocation_id}: this node runs no provider to stop it")
        await self.target(allocation_id)


class _CPUShared:
    """A hardware probe that reports the CPU as idle, so onboarding does not require cores to
    be idle at that moment (``resources.require_idle_cpu = false``)."""

    def __init__(self, probe: HardwareProbe) -> None:
        self.probe = probe

    async def spec(self) -> HardwareSpec:
        return await self.probe.spec()

    async def usage(self) -> HardwareUsage:
        usage = await self.probe.usage()
        return msgspec.structs.replace(usage, cpu_percent=0.0)


class _AdvertisingBehaviors(OnboardingBehaviors):
    """Onboarding behaviors that tell orchestrators at once when the offer changes."""

    def __init__(
        self, service: OnboardingService, advertise: Callable[[], Awaitable[None]] | None
    ) -> None:
        super().__init__(service)
        self.advertise = advertise

    async def onboard(self, request: OnboardRequest) -> OnboardStatus:
        status = await super().onboard(request)
        await self._advertise()
        return status

    async def offboard(self, request: OffboardRequest) -> OffboardResult:
        result = await super().offboard(request)
        await self._advertise()
        return result

    async def _advertise(self) -> None:
        if self.advertise is not None:
            try:
                await self.advertise()
            except DMSError as exc:  # the next periodic advert carries it
                get_logger(component="onboarding").warning("advert failed", error=str(exc))


class DMS:
    """One dms node. ``async with DMS(home, config, keypair) as node:`` runs it."""

    def __init__(
        self,
        home: Home,
        config: Config,
        keypair: KeyPair,
        *,
        network: Network | None = None,
        hardware: HardwareProbe | None = None,
        executors: ExecutorRegistry | None = None,
        clock: Clock | None = None,
        api: bool | None = None,
        bootstrap: tuple[str, ...] = (),
        advert_interval_s: float = DEFAULT_ADVERT_INTERVAL_S,
        provider: bool = True,
        orchestrator: bool = True,
        version: str = __version__,
    ) -> None:
        self.home = home
        self.config = config
        self.keypair = keypair
        self.did = keypair.did
        self.clock: Clock = clock or RealClock()
        self.version = version
        self.bootstrap = bootstrap
        self.advert_interval_s = advert_interval_s
        self.api_enabled = config.api.enabled if api is None else api
        self.want_provider = provider
        self.want_orchestrator = orchestrator
        self.log = get_logger(component="app")
        self._network = network
        self._hardware = hardware
        self._executors = executors
        self._stack: AsyncExitStack | None = None
        self.token = ""
        self.api_url = ""
        self.ready_s = 0.0
        self.provider: ProviderService | None = None
        self.orchestrator: OrchestratorService | None = None

    # -- parts, once started ---------------------------------------------------------------

    @property
    def system(self) -> ActorSystem:
        return self._system

    @property
    def node(self) -> NodeService:
        return self._node

    @property
    def onboarding(self) -> OnboardingService:
        return self._onboarding

    @property
    def network(self) -> Network:
        return self._system.network

    @property
    def db(self) -> Database:
        return self._db

    # -- life cycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            await self._start(stack)
        except BaseException as exc:
            try:
                await stack.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseExceptionGroup as group:
                if not only_error(group, exc):
                    raise
                # Task groups on the way out wrapped the error: raise it as it was raised.
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            self.log.info("stopping")
            try:
                await stack.__aexit__(exc_type, exc, tb)
            except BaseExceptionGroup as group:
                if not only_error(group, exc):
                    raise
                # The body's own error, wrapped by task groups on the way out: it propagates
                # as it was raised.
            self.log.info("stopped")

    async def _start(self, stack: AsyncExitStack) -> None:
        home, config = self.home, self.config
        home.ensure()
        self.token = ensure_api_token(home)

        self._db = db = Database(home.database)
        stack.callback(db.close)
        manager = ResourceManager(
            db,
            self.clock,
            ports=PortRange(config.resources.port_range_start, config.resources.port_range_end),
        )
        self._manager = manager

        from dms.executor.registry import ExecutorRegistry
        from dms.resources.hardware import SystemHardware

        hardware: HardwareProbe = self._hardware or SystemHardware(home.work_dir)
        if not config.resources.require_idle_cpu:
            hardware = _CPUShared(hardware)
        executors = self._executors or ExecutorRegistry.for_node(
            home.work_dir / "executors", docker=docker_api_configured()
        )
        await stack.enter_async_context(executors)
        self._registry = executors

        stop_allocation = _StopAllocation()
        onboarding = OnboardingService(
            manager,
            hardware,
            stop_allocation=stop_allocation,
            executors=executors.available(),
            job_types=tuple(JobType),
        )
        self._onboarding = onboarding

        from dms.sanity import sanity_check

        # What a previous run left behind dies first; then the store is reconciled with what
        # still runs (nothing, after a crash).
        for kind, cleaned in (await executors.cleanup()).items():
            if cleaned.lost or cleaned.killed:
                self.log.warning(
                    "executions left by a previous run",
                    executor=kind.value,
                    lost=list(cleaned.lost),
                    killed=list(cleaned.killed),
                )
        report = await sanity_check(onboarding, executors)
        if report.offboarded or report.failed:
            self.log.warning("sanity check changed the store", report=report.describe())

        network = self._network or self._p2p_network()
        trust = TrustContext.load(trust_path(home.root), local_did=self.did)
        node = NodeService(
            did=self.did,
            network=network,
            version=self.version,
            manager=manager,
            allocations=self._allocations,
            executors=lambda: tuple(kind.value for kind in executors.available()),
            clock=self.clock,
        )
        self._node = node
        registrars: list[Registrar] = []
        system = ActorSystem(
            self.keypair,
            network,
            trust=trust,
            clock=self.clock,
            config=config.actor,
            root=lambda: NodeActor(node, registrars),
        )
        self._system = system

        self.provider = self._make_provider(system, onboarding, manager, executors)
        if self.provider is not None:
            stop_allocation.target = self.provider.stop_allocation
        self.orchestrator = self._make_orchestrator(system, db)
        advertise = self.provider.advertise_now if self.provider is not None else None

        def onboarding_behaviors(actor: Actor) -> None:
            register(actor, _AdvertisingBehaviors(onboarding, advertise))

        registrars.append(onboarding_behaviors)
        for part in (self.provider, self.orchestrator):
            if part is not None:
                registrars.append(part.register)

        await stack.enter_async_context(system)
        supervisor = system.supervisor
        interval = parse_duration(config.resources.reclaim_interval, "resources.reclaim_interval")
        await supervisor.start_child(
            ChildSpec.task("reclaimer", functools.partial(run_reclaimer, manager, interval))
        )
        if self.provider is not None:
            await supervisor.start_child(ChildSpec.task("provider", self.provider.run))
        if self.orchestrator is not None:
            await supervisor.start_child(ChildSpec.task("orchestrator", self.orchestrator.run))

        if self.api_enabled:
            server = await stack.enter_async_context(self._api_server())
            self.api_url = node.api_url = server.url

        self.ready_s = round(time.time() - PROCESS_STARTED, 3)
        info = self.runtime_info()
        write_runtime(home, info)
        stack.callback(remove_runtime, home, os.getpid())
        self.log.info(
            "node ready",
            did=self.did,
            peer_id=network.peer_id,
            addresses=list(info.addresses),
            api=self.api_url or "off",
            provider=self.provider is not None,
            orchestrator=self.orchestrator is not None,
            ready_s=self.ready_s,
        )

    def runtime_info(self) -> RuntimeInfo:
        return RuntimeInfo(
            pid=os.getpid(),
            did=self.did,
            peer_id=self._node.peer_id,
            addresses=self._node.addresses(),
            api_url=self.api_url,
            version=self.version,
            started_ns=int(PROCESS_STARTED * 1e9),
            ready_s=self.ready_s,
        )

    # -- parts -----------------------------------------------------------------------------

    def _p2p_network(self) -> Network:
        from dms.network.p2p import P2PNetwork, P2PSettings

        settings = P2PSettings.from_config(self.config.network, self.bootstrap)
        return P2PNetwork(self.keypair.seed, settings)

    def _allocations(self) -> Any:
        if self.provider is None:
            return ()
        return self.provider.allocations()

    def _make_provider(
        self,
        system: ActorSystem,
        onboarding: OnboardingService,
        manager: ResourceManager,
        executors: ExecutorRegistry,
    ) -> ProviderService | None:
        if not self.want_provider:
            return None
        from dms.jobs.provider import ProviderService

        return ProviderService(
            system=system,
            onboarding=onboarding,
            manager=manager,
            executors=executors,
            work_dir=self.home.work_dir / "allocations",
            clock=self.clock,
            advert_interval_s=self.advert_interval_s,
            version=self.version,
        )

    def _make_orchestrator(self, system: ActorSystem, db: Database) -> OrchestratorService | None:
        if not self.want_orchestrator:
            return None
        from dms.orchestrator import OrchestratorService

        return OrchestratorService(
            system=system, db=db, clock=self.clock, work_dir=self.home.work_dir / "deployments"
        )

    def _api_server(self) -> APIServer:
        from dms.api.app import build_app
        from dms.api.backend import NodeBackend
        from dms.api.server import APIServer

        waiter = self.orchestrator.wait_for_update if self.orchestrator is not None else None
        backend = NodeBackend(self._system, self._node, waiter=waiter)
        app = build_app(backend, token=self.token)
        return APIServer(app, self.config.api.host, self.config.api.port)

    async def status(self) -> Any:
        from dms.node.behaviors import NODE_STATUS
        from dms.node.messages import NodeStatus

        system = self._system
        return await system.invoke(system.root, NODE_STATUS, Empty(), NodeStatus)


def docker_api_configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether a Docker API can be here: ``DOCKER_HOST`` is set or the default socket exists.

    Without one the docker executor is left out before its library is even imported (about
    7 MB of memory, and a warning at every start, saved)."""
    env = os.environ if env is None else env
    return bool(env.get("DOCKER_HOST")) or Path(DOCKER_SOCKET).exists()
