"""Simulation: N providers and M orchestrators in one process on the in-memory fabric.

Every node is the real thing (see :mod:`dms.sim.nodes`): signed envelopes, trust contexts,
ResourceManagers on SQLite, the provider's bid / commit / allocate / revert, the orchestrator's
matching and two-phase commit. Only the medium (:class:`~dms.network.memory.Fabric`, with
latency and loss) and the workloads (null programs) are simulated.

It runs on whatever clock the event loop has: real time, or trio's ``MockClock`` for virtual
time (:func:`run`). Under virtual time link latency, bid timeouts and hold expiry cost no
real time; CPU work still does.

::

    async with Simulation(SimulationConfig(providers=20, orchestrators=2), tmp) as sim:
        ids = [await sim.submit(item) for item in ensembles(100)]
        for i in ids:
            await sim.wait(i, DeploymentStatus.RUNNING)
        report = await sim.audit()
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import msgspec
import trio
import trio.testing
from anyio.abc import TaskGroup

from dms.clock import LoopClock
from dms.jobs.status import DeploymentStatus
from dms.network.memory import Fabric, LinkSpec, LinkStats
from dms.orchestrator.messages import (
    DeploymentInfo,
    DeploymentRef,
    Explanation,
    NewDeployment,
    ShutdownRequest,
)
from dms.security import KeyPair
from dms.sim.audit import Audit, audit
from dms.sim.errors import InvalidSimulation, SimulationError
from dms.sim.nodes import (
    OrchestratorNode,
    ProviderNode,
    ProviderOptions,
    StatusLog,
    host_orchestrator,
    host_provider,
)
from dms.sim.profiles import ProviderProfile, provider_profiles
from dms.sim.store import MEMORY
from dms.sim.trust import Trust, TrustMode
from dms.sim.workload import WorkItem

NS_PER_S = 1_000_000_000
T = TypeVar("T")


class OrchestratorSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The OrchestratorService's options (see :class:`dms.orchestrator.OrchestratorService`)."""

    bid_timeout_s: float = 2.0
    hold_s: float = 15.0
    commit_ttl_s: float = 30.0
    heartbeat_timeout_s: float = 30.0
    retry_interval_s: float = 1.0
    redeploy_timeout_s: float = 120.0
    spare_candidates: int = 2
    candidate_limit: int = 16


class SimulationConfig(msgspec.Struct, frozen=True, kw_only=True):
    providers: int = 20
    orchestrators: int = 1
    seed: int = 0
    """Seeds the machines, the keys and the fabric's losses: same seed, same network."""
    latency_ms: float = 0.0
    """One-way latency of every link."""
    loss: float = 0.0
    """Probability that a frame is lost, on every link."""
    gpu_share: float = 0.1
    """Share of providers with GPUs."""
    trust: TrustMode = TrustMode.ROOTS
    database: str = MEMORY
    """``":memory:"`` (a private in-memory SQLite database per node) or ``"file"``."""
    advert_interval_s: float = 5.0
    heartbeat_interval_s: float = 5.0
    reclaim_interval_s: float = 30.0
    deployment_timeout_s: float = 120.0
    orchestrator: OrchestratorSettings = OrchestratorSettings()
    settle_timeout_s: float = 600.0
    """How long start-up may take until every orchestrator has every provider's advert."""

    def check(self) -> None:
        if self.providers < 0:
            raise InvalidSimulation("providers", self.providers, "a count of 0 or more")
        if self.orchestrators < 1:
            raise InvalidSimulation("orchestrators", self.orchestrators, "a count of 1 or more")
        if not self.latency_ms >= 0.0:
            raise InvalidSimulation("latency_ms", self.latency_ms, "0 or more milliseconds")
        if not 0.0 <= self.loss < 1.0:
            raise InvalidSimulation("loss", self.loss, "a probability from 0 to below 1")
        if self.database not in (MEMORY, "file"):
            raise InvalidSimulation("database", self.database, f'"{MEMORY}" or "file"')
        for name in ("advert_interval_s", "heartbeat_interval_s", "reclaim_interval_s"):
            if not getattr(self, name) > 0:
                raise InvalidSimulation(name, getattr(self, name), "a number of seconds above 0")
        beat, lost = self.heartbeat_interval_s, self.orchestrator.heartbeat_timeout_s
        if not lost >= 2 * beat:
            raise InvalidSimulation(
                "orchestrator.heartbeat_timeout_s",
                lost,
                f"at least twice heartbeat_interval_s ({beat:g} s), or one late heartbeat "
                "counts as a lost provider",
            )
        if not self.deployment_timeout_s > 0:
            raise InvalidSimulation(
                "deployment_timeout_s", self.deployment_timeout_s, "a number of seconds above 0"
            )


class Simulation:
    """A simulated network; ``async with`` starts every node and stops them all."""

    def __init__(
        self,
        config: SimulationConfig,
        work_dir: Path,
        *,
        profiles: Sequence[ProviderProfile] | None = None,
    ) -> None:
        config.check()
        self.config = config
        self.work_dir = Path(work_dir)
        self.profiles = (
            list(profiles)
            if profiles is not None
            else provider_profiles(config.providers, seed=config.seed, gpu_share=config.gpu_share)
        )
        self.clock = LoopClock()
        self.fabric = Fabric(
            seed=config.seed,
            default_link=LinkSpec(latency_ns=int(config.latency_ms * 1e6), loss=config.loss),
            topic_capacity=max(1024, 4 * len(self.profiles)),
        )
        self.status_log = StatusLog()
        self.providers: list[ProviderNode] = []
        self.orchestrators: list[OrchestratorNode] = []
        self.submitted: dict[str, float] = {}
        """Deployment id -> loop time of its submission."""
        self.owner: dict[str, OrchestratorNode] = {}
        self._round_robin = itertools.count()
        self._stop = anyio.Event()
        self._task_group: TaskGroup | None = None

    # -- life cycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        config = self.config
        rng = random.Random(config.seed)

        def key() -> KeyPair:
            return KeyPair.from_seed(rng.randbytes(32))

        orchestrator_keys = [key() for _ in range(config.orchestrators)]
        provider_keys = [key() for _ in self.profiles]
        trust = Trust(config.trust, operator=key(), now_ns=self.clock.now_ns())
        trust.add_orchestrators(k.did for k in orchestrator_keys)
        trust.add_providers(k.did for k in provider_keys)
        options = ProviderOptions(
            advert_interval_s=config.advert_interval_s,
            heartbeat_interval_s=config.heartbeat_interval_s,
            reclaim_interval_s=config.reclaim_interval_s,
            database=config.database,
        )
        settings = msgspec.structs.asdict(config.orchestrator)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            for i, k in enumerate(orchestrator_keys):
                node = await task_group.start(
                    _host(
                        host_orchestrator,
                        f"o{i}",
                        k,
                        fabric=self.fabric,
                        trust=trust,
                        clock=self.clock,
                        work_dir=self.work_dir,
                        database=config.database,
                        status_log=self.status_log,
                        providers=len(self.profiles),
                        options=settings,
                        stop=self._stop,
                    )
                )
                self.orchestrators.append(node)
            for profile, k in zip(self.profiles, provider_keys, strict=True):
                node = await task_group.start(
                    _host(
                        host_provider,
                        profile,
                        k,
                        fabric=self.fabric,
                        trust=trust,
                        clock=self.clock,
                        work_dir=self.work_dir,
                        options=options,
                        stop=self._stop,
                    )
                )
                self.providers.append(node)
            await self.settle()
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group, self._task_group = self._task_group, None
        self._stop.set()
        if task_group is not None:
            if exc is not None:
                task_group.cancel_scope.cancel()
            await task_group.__aexit__(exc_type, exc, tb)

    async def settle(self) -> None:
        """Until every orchestrator holds a live advert of every provider."""
        wanted = len(self.providers)
        try:
            with anyio.fail_after(self.config.settle_timeout_s):
                for node in self.orchestrators:
                    await node.service.view.full.wait()
        except TimeoutError as exc:
            seen = [len(o.service.view) for o in self.orchestrators]
            raise SimulationError(
                f"the orchestrators see {seen} of {wanted} providers after "
                f"{self.config.settle_timeout_s:g}s"
            ) from exc

    # -- deployments ---------------------------------------------------------------------------

    def orchestrator(self, index: int | None = None) -> OrchestratorNode:
        """Orchestrator ``index``, or the next one in turn."""
        if index is None:
            index = next(self._round_robin) % len(self.orchestrators)
        if not 0 <= index < len(self.orchestrators):
            raise InvalidSimulation(
                "orchestrator", index, f"an index from 0 to {len(self.orchestrators) - 1}"
            )
        return self.orchestrators[index]

    async def submit(self, item: WorkItem | str, *, orchestrator: int | None = None) -> str:
        """Deploy an ensemble; its deployment id. Orchestrators take turns unless one is named."""
        node = self.orchestrator(orchestrator)
        text = item.text if isinstance(item, WorkItem) else item
        started = anyio.current_time()
        summary = await node.service.new(
            NewDeployment(
                ensemble=text, timeout_ns=int(self.config.deployment_timeout_s * NS_PER_S)
            )
        )
        self.submitted[summary.deployment_id] = started
        self.owner[summary.deployment_id] = node
        return summary.deployment_id

    async def wait(self, deployment_id: str, status: DeploymentStatus) -> DeploymentStatus:
        """Until the deployment reaches ``status`` or ends; the status it is in then."""
        return await self.status_log.wait(deployment_id, status)

    async def status(self, deployment_id: str) -> DeploymentStatus:
        node = self._owner(deployment_id)
        summary = await node.service.status(DeploymentRef(deployment_id=deployment_id))
        return summary.status

    async def info(self, deployment_id: str) -> DeploymentInfo:
        node = self._owner(deployment_id)
        return await node.service.info(DeploymentRef(deployment_id=deployment_id))

    async def explain(self, deployment_id: str) -> Explanation:
        node = self._owner(deployment_id)
        return await node.service.explain(DeploymentRef(deployment_id=deployment_id))

    def provider(self, did: str) -> ProviderNode:
        """The simulated provider with this DID."""
        for node in self.providers:
            if node.did == did:
                return node
        raise InvalidSimulation("provider", did, "the DID of a provider of this simulation")

    def refusals(self) -> dict[str, int]:
        """Messages refused by any node so far, by error type (should stay empty)."""
        total: dict[str, int] = {}
        systems = [o.system for o in self.orchestrators] + [p.system for p in self.providers]
        for system in systems:
            for name, count in system.refusals.items():
                total[name] = total.get(name, 0) + count
        return total

    async def shutdown(self, deployment_id: str, reason: str = "simulation ends") -> None:
        node = self._owner(deployment_id)
        await node.service.shutdown(ShutdownRequest(deployment_id=deployment_id, reason=reason))

    def _owner(self, deployment_id: str) -> OrchestratorNode:
        node = self.owner.get(deployment_id)
        if node is None:
            raise InvalidSimulation(
                "deployment_id", deployment_id, "a deployment submitted to this simulation"
            )
        return node

    def latency_s(self, deployment_id: str, status: DeploymentStatus) -> float | None:
        """Loop seconds from submission to ``status`` (None if it never got there)."""
        reached = self.status_log.times.get(deployment_id, {}).get(status)
        if reached is None:
            return None
        return reached - self.submitted[deployment_id]

    # -- what happened -------------------------------------------------------------------------

    async def audit(self) -> Audit:
        """Each provider's pools against what it onboarded, and what runs where."""
        return await audit(self.providers, self.orchestrators)

    def traffic(self) -> LinkStats:
        """Frames over the fabric so far, every link between the simulation's nodes summed."""
        names = [o.name for o in self.orchestrators] + [p.name for p in self.providers]
        total = [0] * 6
        orchestrators = [o.name for o in self.orchestrators]
        pairs = [(a, b) for a in orchestrators for b in names] + [
            (p.name, o) for p in self.providers for o in orchestrators
        ]
        for a, b in pairs:
            s = self.fabric.stats(a, b)
            for i, value in enumerate(
                (s.sent, s.delivered, s.lost, s.partitioned, s.overflow, s.invalid)
            ):
                total[i] += value
        return LinkStats(
            sent=total[0],
            delivered=total[1],
            lost=total[2],
            partitioned=total[3],
            overflow=total[4],
            invalid=total[5],
        )


def _host(fn: Callable[..., Awaitable[None]], *args: Any, **kwargs: Any) -> Any:
    """``fn`` with its arguments bound, for ``task_group.start`` (which takes positionals)."""

    async def run(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        await fn(*args, task_status=task_status, **kwargs)

    return run


def run(main: Callable[[], Awaitable[T]], *, virtual: bool = False) -> T:
    """Run ``main()`` on trio, on virtual time (a MockClock that jumps whenever every task
    waits) when ``virtual``, else on real time."""
    clock = trio.testing.MockClock(autojump_threshold=0) if virtual else None
    return trio.run(main, clock=clock)
