"""The provider against the real orchestrator: a deployment placed, run, read and torn down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import trio
import trio.testing

from dms.actor import ROOT_INBOX, ChildSpec
from dms.jobs.protocol import LogStreamName
from dms.jobs.status import AllocationStatus, DeploymentStatus
from dms.orchestrator import OrchestratorService
from dms.orchestrator.messages import (
    DeploymentInfo,
    DeploymentLogsRequest,
    DeploymentRef,
    NewDeployment,
    ShutdownRequest,
)
from tests.jobs.provider.harness import Cluster, InlineDatabase, cluster

TASK = """
version: V1
allocations:
  hello:
    executor: "null"
    resources: {cpu: 1, ram: 256MiB}
    execution: {args: ["duration=3s", "stdout=hello from the provider"]}
"""

SERVICE = """
version: V1
allocations:
  web:
    type: service
    executor: "null"
    resources: {cpu: 2, ram: 1GiB}
    execution: {args: ["duration=1h"]}
"""


@asynccontextmanager
async def deployed(tmp_path: Path) -> AsyncIterator[tuple[Cluster, OrchestratorService]]:
    async with cluster(tmp_path, advert_interval_s=1.0) as c:
        with InlineDatabase(tmp_path / "orchestrator.sqlite3") as db:
            service = OrchestratorService(
                system=c.orchestrator,
                db=db,
                clock=c.orchestrator.clock,
                work_dir=tmp_path / "deployments",
            )
            service.register(c.orchestrator.actor(ROOT_INBOX))
            await c.orchestrator.supervisor.start_child(ChildSpec.task("orchestrator", service.run))
            await c.recorder.until(lambda: c.recorder.adverts)
            await anyio.sleep(1)  # the orchestrator's view has the advert too
            yield c, service


async def until_status(
    service: OrchestratorService, deployment_id: str, *wanted: DeploymentStatus
) -> DeploymentInfo:
    with anyio.fail_after(600):
        while True:
            info = await service.info(DeploymentRef(deployment_id=deployment_id))
            if info.summary.status in wanted:
                return info
            await service.wait_for_update(deployment_id, 5.0)


class TestWithTheOrchestrator:
    """Both sides of the protocol together, on virtual time."""

    async def test_a_task_deployment_completes_and_its_logs_come_back(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with deployed(tmp_path) as (c, orchestrator):
            summary = await orchestrator.new(NewDeployment(ensemble=TASK))
            info = await until_status(
                orchestrator,
                summary.deployment_id,
                DeploymentStatus.COMPLETED,
                DeploymentStatus.FAILED,
            )
            assert info.summary.status is DeploymentStatus.COMPLETED, info.summary.reason
            (allocation,) = info.allocations
            assert allocation.status is AllocationStatus.COMPLETED
            assert allocation.stdout_tail == "hello from the provider"
            chunk = await orchestrator.logs(
                DeploymentLogsRequest(deployment_id=summary.deployment_id)
            )
            assert chunk.data == b"hello from the provider" and chunk.eof
            err = await orchestrator.logs(
                DeploymentLogsRequest(
                    deployment_id=summary.deployment_id, stream=LogStreamName.STDERR
                )
            )
            assert err.data == b"" and err.eof
            assert await c.free_is_onboarded()

    async def test_shutting_a_service_down_stops_it_and_frees_the_provider(
        self, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        async with deployed(tmp_path) as (c, orchestrator):
            summary = await orchestrator.new(NewDeployment(ensemble=SERVICE))
            info = await until_status(orchestrator, summary.deployment_id, DeploymentStatus.RUNNING)
            (allocation,) = info.allocations
            assert (await c.manager.pools()).allocated.cpu.cores == 2
            await orchestrator.shutdown(ShutdownRequest(deployment_id=summary.deployment_id))
            await until_status(
                orchestrator,
                summary.deployment_id,
                DeploymentStatus.COMPLETED,
                DeploymentStatus.FAILED,
            )
            (state,) = c.service.allocations()
            assert state.allocation_id == allocation.allocation_id
            assert state.status is AllocationStatus.STOPPED
            assert await c.free_is_onboarded()
