"""OrchestratorService: the node's deployment behaviors, its view of providers, restore.

``register(root)`` puts the DEPLOYMENT_* behaviors of :mod:`dms.orchestrator.messages` and the
advert receiver on the node's root actor; ``run()`` subscribes to adverts, restores every
unfinished deployment from the store (a restarted node carries on), then keeps the view fresh.
Each deployment is a :class:`DeploymentActor`, a child of the root actor.
"""

from __future__ import annotations

import posixpath
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec

from dms.actor import Actor, ActorSystem, BehaviorOptions, Envelope, Restart
from dms.clock import Clock
from dms.errors import InputError, SpecError
from dms.jobs import InvalidEnsemble, dump_ensemble, parse_ensemble
from dms.jobs.protocol import (
    ADVERT,
    ADVERT_TOPIC,
    ALLOCATION_LOGS,
    ALLOCATION_RESULT_CHUNK,
    ALLOCATION_RESULTS,
    HEARTBEATS,
    CapacityAdvert,
    Heartbeats,
    Liveness,
    LogsChunk,
    LogsRequest,
    ResultChunk,
    ResultChunkRequest,
    ResultsList,
)
from dms.jobs.spec import Ensemble
from dms.jobs.status import DeploymentStatus
from dms.log import get_logger
from dms.orchestrator.deployment import DeploymentActor
from dms.orchestrator.errors import UnknownAllocation, UnknownDeployment
from dms.orchestrator.messages import (
    DEPLOYMENT_EXPLAIN,
    DEPLOYMENT_INFO,
    DEPLOYMENT_LIST,
    DEPLOYMENT_LOGS,
    DEPLOYMENT_NEW,
    DEPLOYMENT_PRUNE,
    DEPLOYMENT_RESULTS,
    DEPLOYMENT_SHUTDOWN,
    DEPLOYMENT_STATUS,
    AllocationInfo,
    DeploymentInfo,
    DeploymentLogsRequest,
    DeploymentPage,
    DeploymentRef,
    DeploymentResultRequest,
    DeploymentSummary,
    Explanation,
    ListDeployments,
    NewDeployment,
    PruneRequest,
    PruneResult,
    ShutdownRequest,
)
from dms.orchestrator.records import DeploymentRecord
from dms.orchestrator.repository import DeploymentRepository
from dms.orchestrator.view import AdvertView
from dms.store import Database
from dms.types import new_id

NS = 1_000_000_000


class ResultsReply(msgspec.Struct, frozen=True, kw_only=True):
    """DEPLOYMENT_RESULTS: the file list, or one chunk of a file."""

    files: ResultsList | None = None
    chunk: ResultChunk | None = None


class OrchestratorService:
    def __init__(
        self,
        *,
        system: ActorSystem,
        db: Database,
        clock: Clock,
        work_dir: Path,
        bid_timeout_s: float = 2.0,
        hold_s: float = 15.0,
        commit_ttl_s: float = 30.0,
        heartbeat_timeout_s: float = 30.0,
        retry_interval_s: float = 1.0,
        redeploy_timeout_s: float = 120.0,
        spare_candidates: int = 2,
        candidate_limit: int = 16,
    ) -> None:
        self.system = system
        self.clock = clock
        self.work_dir = work_dir
        self.repository = DeploymentRepository(db)
        self.view = AdvertView()
        self.bid_timeout_s = bid_timeout_s
        self.hold_ns = int(hold_s * NS)
        self.commit_ttl_ns = int(commit_ttl_s * NS)
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.retry_interval_s = retry_interval_s
        self.redeploy_timeout_ns = int(redeploy_timeout_s * NS)
        self.spare_candidates = spare_candidates
        if candidate_limit < 0:
            raise ValueError(f"candidate_limit: {candidate_limit}; accepted: 0 (none) or more")
        self.candidate_limit = candidate_limit
        """Feasible providers looked for per node before ranking (0: every provider known)."""
        self.actors: dict[str, DeploymentActor] = {}
        self.watchers: dict[str, anyio.Event] = {}
        self.root: Actor | None = None
        self.log = get_logger(node=system.peer_id, component="orchestrator")

    # -- wiring ------------------------------------------------------------------------------

    def register(self, root: Actor) -> None:
        self.root = root
        # Reads only wait (on the store, or on a provider for logs and results): concurrent, so
        # a slow provider never holds up the node's root actor.
        reads = BehaviorOptions(concurrent=True)
        root.register(ADVERT, CapacityAdvert, None, self._on_advert)
        root.register(HEARTBEATS, Heartbeats, None, self._on_heartbeats)
        root.register(DEPLOYMENT_NEW, NewDeployment, DeploymentSummary, self._call(self.new))
        root.register(
            DEPLOYMENT_LIST, ListDeployments, DeploymentPage, self._call(self.list), reads
        )
        root.register(
            DEPLOYMENT_STATUS, DeploymentRef, DeploymentSummary, self._call(self.status), reads
        )
        root.register(DEPLOYMENT_INFO, DeploymentRef, DeploymentInfo, self._call(self.info), reads)
        root.register(
            DEPLOYMENT_LOGS, DeploymentLogsRequest, LogsChunk, self._call(self.logs), reads
        )
        root.register(
            DEPLOYMENT_RESULTS,
            DeploymentResultRequest,
            ResultsReply,
            self._call(self.results),
            reads,
        )
        root.register(
            DEPLOYMENT_SHUTDOWN, ShutdownRequest, DeploymentSummary, self._call(self.shutdown)
        )
        root.register(DEPLOYMENT_PRUNE, PruneRequest, PruneResult, self._call(self.prune))
        root.register(
            DEPLOYMENT_EXPLAIN, DeploymentRef, Explanation, self._call(self.explain), reads
        )

    @staticmethod
    def _call(
        fn: Callable[[Any], Awaitable[Any]],
    ) -> Callable[[Any, Envelope], Awaitable[Any]]:
        """A behavior handler that ignores the envelope."""

        async def handler(message: Any, envelope: Envelope) -> Any:
            return await fn(message)

        return handler

    def _on_advert(self, advert: CapacityAdvert, envelope: Envelope) -> None:
        if envelope.sender.did != advert.provider.did:
            return  # an advert speaks only for the node that signed it
        self.view.update(advert)

    def _on_heartbeats(self, message: Heartbeats, envelope: Envelope) -> None:
        """A provider's heartbeat: each deployment hears about its own allocations (and
        takes only those the sender runs)."""
        by_deployment: dict[str, list[Liveness]] = {}
        for alive in message.allocations:
            by_deployment.setdefault(alive.deployment_id, []).append(alive)
        for deployment_id, entries in by_deployment.items():
            actor = self.actors.get(deployment_id)
            if actor is not None:
                actor.on_liveness(entries, envelope.sender.did)

    async def run(self) -> None:
        """Subscribe to adverts, restore unfinished deployments, then serve."""
        root = self._root()
        await root.subscribe(ADVERT_TOPIC, ADVERT)
        for record in await self.repository.unfinished():
            if record.deployment_id not in self.actors:  # not one created meanwhile
                await self._spawn(record, restored=True)
        await anyio.sleep_forever()

    def _root(self) -> Actor:
        if self.root is None:
            raise RuntimeError("OrchestratorService.register(root) was not called")
        return self.root

    async def _spawn(
        self, record: DeploymentRecord, *, restored: bool, ensemble: Ensemble | None = None
    ) -> None:
        actor = DeploymentActor(self, record, restored, ensemble)
        self.actors[record.deployment_id] = actor
        await self._root().spawn(
            lambda: actor, f"deployment-{record.deployment_id}", restart=Restart.TEMPORARY
        )

    def finished(self, deployment_id: str) -> None:
        self.actors.pop(deployment_id, None)

    def notify(self, record: DeploymentRecord) -> None:
        event = self.watchers.pop(record.deployment_id, None)
        if event is not None:
            event.set()

    async def wait_for_update(self, deployment_id: str, timeout_s: float) -> None:
        """Wait until the deployment's status changes (or the timeout passes)."""
        event = self.watchers.setdefault(deployment_id, anyio.Event())
        with anyio.move_on_after(timeout_s):
            await event.wait()

    # -- behaviors ---------------------------------------------------------------------------

    async def new(self, request: NewDeployment) -> DeploymentSummary:
        ensemble = parse_ensemble(request.ensemble, request.source or "ensemble")
        problems: list[SpecError] = []
        for name, spec in ensemble.allocations.items():
            module = spec.execution.module
            if module and module not in request.files:
                problems.append(
                    SpecError(
                        f"allocations.{name}.execution.module",
                        module,
                        "a module sent with the deployment",
                        detail="was not sent with the deployment (files)",
                    )
                )
            for i, item in enumerate(spec.inputs):
                if item.source not in request.files:
                    problems.append(
                        SpecError(
                            f"allocations.{name}.inputs[{i}].source",
                            item.source,
                            "a file sent with the deployment",
                            detail="was not sent with the deployment (files)",
                        )
                    )
                target = posixpath.normpath(item.target or item.source.rsplit("/", 1)[-1])
                if target.startswith("..") or target.startswith("/"):
                    problems.append(
                        SpecError(
                            f"allocations.{name}.inputs[{i}].target",
                            item.target,
                            "a relative path inside the input folder",
                        )
                    )
        if problems:
            raise InvalidEnsemble(request.source or "ensemble", problems)
        if request.timeout_ns <= 0:
            raise InputError("timeout", request.timeout_ns, "a positive duration")
        now = self.clock.now_ns()
        record = DeploymentRecord(
            deployment_id=new_id("d"),
            name=ensemble.metadata.get("name", ""),
            status=DeploymentStatus.PREPARING,
            created_ns=now,
            updated_ns=now,
            deadline_ns=now + request.timeout_ns,
            metadata=dict(ensemble.metadata),
            ensemble=dump_ensemble(ensemble),
            files=dict(request.files),
            reason="waiting for providers",
        )
        await self.repository.save(record)
        await self._spawn(record, restored=False, ensemble=ensemble)
        self.log.info("deployment created", deployment=record.deployment_id)
        return record.summary()

    async def record(self, deployment_id: str) -> DeploymentRecord:
        actor = self.actors.get(deployment_id)
        if actor is not None:
            return actor.record
        stored = await self.repository.get(deployment_id)
        if stored is None:
            raise UnknownDeployment(deployment_id)
        return stored

    async def list(self, query: ListDeployments) -> DeploymentPage:
        if query.limit <= 0:
            raise InputError("limit", query.limit, "a page size of 1 or more")
        if query.offset < 0:
            raise InputError("offset", query.offset, "an offset of 0 or more")
        return await self.repository.page(query)

    async def status(self, ref: DeploymentRef) -> DeploymentSummary:
        return (await self.record(ref.deployment_id)).summary()

    async def info(self, ref: DeploymentRef) -> DeploymentInfo:
        record = await self.record(ref.deployment_id)
        return DeploymentInfo(
            summary=record.summary(),
            allocations=record.allocations,
            history=record.history,
            ensemble=record.ensemble,
        )

    async def explain(self, ref: DeploymentRef) -> Explanation:
        record = await self.record(ref.deployment_id)
        if record.explanation is None:
            return Explanation(
                deployment_id=record.deployment_id,
                status=record.status,
                pending=record.reason,
                attempts=record.attempts,
            )
        return msgspec.structs.replace(record.explanation, status=record.status)

    def _allocation(self, record: DeploymentRecord, wanted: str) -> AllocationInfo:
        allocations = record.allocations
        if not wanted:
            names = {a.name for a in allocations}
            if allocations and len(names) == 1:
                return allocations[0]
            raise InputError(
                "allocation", wanted, f"one of {', '.join(sorted(names)) or 'no allocations yet'}"
            )
        for a in allocations:
            if wanted in (a.allocation_id, a.name):
                return a
        raise UnknownAllocation(record.deployment_id, wanted)

    async def logs(self, request: DeploymentLogsRequest) -> LogsChunk:
        record = await self.record(request.deployment_id)
        info = self._allocation(record, request.allocation)
        if info.handle is None:
            raise UnknownAllocation(record.deployment_id, request.allocation or info.name)
        query = LogsRequest(stream=request.stream, offset=request.offset, limit=request.limit)
        return await self._root().invoke(
            info.handle, ALLOCATION_LOGS, query, LogsChunk, timeout_s=self.bid_timeout_s * 5
        )

    async def results(self, request: DeploymentResultRequest) -> ResultsReply:
        record = await self.record(request.deployment_id)
        info = self._allocation(record, request.allocation)
        if info.handle is None:
            raise UnknownAllocation(record.deployment_id, request.allocation or info.name)
        root = self._root()
        if not request.path:
            files = await root.invoke(
                info.handle,
                ALLOCATION_RESULTS,
                ResultChunkRequest(path=""),
                ResultsList,
                timeout_s=self.bid_timeout_s * 5,
            )
            return ResultsReply(files=files)
        chunk = await root.invoke(
            info.handle,
            ALLOCATION_RESULT_CHUNK,
            ResultChunkRequest(path=request.path, offset=request.offset, limit=request.limit),
            ResultChunk,
            timeout_s=self.bid_timeout_s * 5,
        )
        return ResultsReply(chunk=chunk)

    async def shutdown(self, request: ShutdownRequest) -> DeploymentSummary:
        actor = self.actors.get(request.deployment_id)
        if actor is None:
            return (await self.record(request.deployment_id)).summary()  # already finished
        if not actor.record.shutdown_requested:
            actor.record = msgspec.structs.replace(
                actor.record, shutdown_requested=request.reason or "shut down"
            )
            await actor.save()
            actor._wake()
        return actor.record.summary()

    async def prune(self, request: PruneRequest) -> PruneResult:
        removed = await self.repository.prune(request.before_ns)
        return PruneResult(removed=tuple(removed))


__all__ = ["OrchestratorService", "ResultsReply"]
