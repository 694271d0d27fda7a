"""A running deployment is written to the store when it changes, not on every look."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from dms.jobs.status import DeploymentStatus
from dms.orchestrator.messages import DeploymentRef, ShutdownRequest
from dms.orchestrator.repository import DeploymentRepository
from tests.orchestrator.harness import Script, network
from tests.orchestrator.test_deployments import TASK, ensemble, wait_final, wait_status

SERVICE = TASK.replace("executor: wasm", "type: service\n    executor: wasm")


class TestSuperviseWrites:
    """Heartbeats alone never rewrite a running deployment's record."""

    async def test_no_writes_while_nothing_changes(
        self, tmp_path: Path, clock: object, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        writes: list[str] = []
        original = DeploymentRepository.save

        async def counting(self: DeploymentRepository, record: Any) -> None:
            writes.append(record.status.value)
            await original(self, record)

        monkeypatch.setattr(DeploymentRepository, "save", counting)
        async with network(tmp_path, {"p": Script(cores=8)}, heartbeat_timeout_s=30.0) as net:
            summary = await net.orchestrator.new(ensemble(SERVICE))
            await wait_status(net, summary.deployment_id, DeploymentStatus.RUNNING)
            await anyio.sleep(3.0)  # the allocation's RUNNING event lands: one more write
            settled = len(writes)
            await anyio.sleep(20.0)  # heartbeats every second, supervision every second
            assert len(writes) == settled
            ref = DeploymentRef(deployment_id=summary.deployment_id)
            info = await net.orchestrator.info(ref)
            assert info.allocations[0].status.value == "running"
            await net.orchestrator.shutdown(ShutdownRequest(deployment_id=summary.deployment_id))
            assert await wait_final(net, summary.deployment_id) is DeploymentStatus.COMPLETED
        assert writes[-1] == "Completed"
