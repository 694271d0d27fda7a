"""A new deployment's ensemble is parsed once, when it is submitted; a restored one is read
back from its record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dms.jobs.status import DeploymentStatus
from dms.orchestrator import deployment as deployment_module
from dms.orchestrator.messages import DeploymentRef, ShutdownRequest
from tests.orchestrator.harness import Script, network
from tests.orchestrator.test_deployments import TASK, ensemble, wait_final, wait_status


class TestParseOnce:
    """The DeploymentActor reuses what OrchestratorService.new parsed."""

    async def test_a_new_deployment_is_not_parsed_again_by_its_actor(
        self, tmp_path: Path, clock: object, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[str] = []
        original = deployment_module.parse_ensemble

        def counting(text: Any, source: str = "") -> Any:
            calls.append(source)
            return original(text, source)

        monkeypatch.setattr(deployment_module, "parse_ensemble", counting)
        async with network(tmp_path, {"p": Script()}) as net:
            summary = await net.orchestrator.new(ensemble())
            assert await wait_final(net, summary.deployment_id) is DeploymentStatus.COMPLETED
        assert calls == []

    async def test_a_restored_deployment_is_read_from_its_record(
        self, tmp_path: Path, clock: object, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        service_text = TASK.replace("executor: wasm", "type: service\n    executor: wasm")
        async with network(tmp_path, {"p": Script(cores=8)}, heartbeat_timeout_s=5.0) as net:
            summary = await net.orchestrator.new(ensemble(service_text))
            await wait_status(net, summary.deployment_id, DeploymentStatus.RUNNING)
        calls: list[str] = []
        original = deployment_module.parse_ensemble

        def counting(text: Any, source: str = "") -> Any:
            calls.append(source)
            return original(text, source)

        monkeypatch.setattr(deployment_module, "parse_ensemble", counting)
        async with network(tmp_path, {"q": Script(cores=8)}, heartbeat_timeout_s=5.0) as net:
            ref = DeploymentRef(deployment_id=summary.deployment_id)
            assert (await net.orchestrator.status(ref)).deployment_id == summary.deployment_id
            await net.orchestrator.shutdown(ShutdownRequest(deployment_id=summary.deployment_id))
            assert await wait_final(net, summary.deployment_id) is DeploymentStatus.COMPLETED
        assert calls == [summary.deployment_id]
