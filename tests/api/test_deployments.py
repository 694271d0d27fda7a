"""Deployment routes over a node running the real orchestrator (no provider in sight)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from dms.api.client import Client
from dms.api.errors import APIError, APIInputError
from dms.app import DMS
from dms.jobs.status import DeploymentStatus
from dms.orchestrator.messages import NewDeployment
from tests.node.harness import running_node

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello.yaml"
ENSEMBLE = """
version: V1
metadata: {name: sleepy, team: infra}
allocations:
  web:
    type: service
    executor: "null"
    resources: {cpu: 0.5, ram: 64MiB, disk: 16MiB}
    execution: {}
"""


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[DMS]:
    async with running_node(tmp_path, orchestrator=True) as running:
        if running.orchestrator is None:
            pytest.skip("this build has no orchestrator")
        yield running


def deploy(client: Client, text: str = ENSEMBLE, timeout_s: float = 60) -> str:
    request = NewDeployment(ensemble=text, timeout_ns=int(timeout_s * 1e9), source="test.yaml")
    return client.deploy(request).deployment_id


class TestDeployments:
    """Create, list, read, explain, cancel and prune through the REST API."""

    async def test_life_of_a_deployment_without_providers(self, node: DMS) -> None:
        def calls() -> None:
            with Client(node.api_url, node.token) as client:
                first = deploy(client)
                second = deploy(client)
                page = client.deployments()
                assert [d.deployment_id for d in page.items] == [second, first]
                assert page.total == 2
                one = client.deployments(limit=1, offset=1)
                assert [d.deployment_id for d in one.items] == [first]
                info = client.deployment(first)
                assert info.summary.name == "sleepy"
                assert info.summary.metadata["team"] == "infra"
                assert info.summary.status is DeploymentStatus.PREPARING
                explanation = client.explain(first)
                assert explanation.deployment_id == first and explanation.pending
                with pytest.raises(APIInputError) as no_allocation:
                    client.logs(first)
                assert no_allocation.value.field == "allocation"
                cancelled = client.cancel(first, "changed my mind")
                assert cancelled.deployment_id == first
                final = client.wait(first, timeout_s=30)
                assert final.status.final
                pruned = client.prune()
                assert first in pruned.removed and second not in pruned.removed

        await trio.to_thread.run_sync(calls)

    async def test_filters_by_status(self, node: DMS) -> None:
        def calls() -> None:
            with Client(node.api_url, node.token) as client:
                kept = deploy(client)
                gone = deploy(client)
                client.cancel(gone)
                client.wait(gone, timeout_s=30)
                waiting = client.deployments(status=[DeploymentStatus.PREPARING])
                assert [d.deployment_id for d in waiting.items] == [kept]
                infra = client.deployments(metadata={"team": "infra"})
                assert {d.deployment_id for d in infra.items} == {kept, gone}
                assert client.deployments(metadata={"team": "web"}).total == 0
                bad = httpx.get(f"{node.api_url}/api/v1/deployments?metadata=nokey")
                assert (bad.status_code, bad.json()["field"]) == (422, "metadata")

        await trio.to_thread.run_sync(calls)

    async def test_status_long_poll_returns_on_the_change(self, node: DMS) -> None:
        def calls() -> None:
            with Client(node.api_url, node.token) as client:
                ident = deploy(client)
                began = time.monotonic()
                same = client.deployment_status(ident, since=DeploymentStatus.PREPARING, wait_s=0.3)
                assert same.status is DeploymentStatus.PREPARING
                assert time.monotonic() - began >= 0.3
                client.cancel(ident)
                changed = client.deployment_status(
                    ident, since=DeploymentStatus.PREPARING, wait_s=20
                )
                assert changed.status is not DeploymentStatus.PREPARING

        await trio.to_thread.run_sync(calls)


class TestRefusals:
    """Bad ensembles and unknown ids are the caller's fault: 422 and 404, naming the problem."""

    @pytest.mark.parametrize(
        ("text", "field"),
        [
            (ENSEMBLE.replace("type: service", "type: daemonic"), "allocations.web.type"),
            ("version: V2\n", "version"),
            (ENSEMBLE.replace("ram: 64MiB", "ram: 64 megs"), "allocations.web.resources.ram"),
            ("{{{", ""),
        ],
        ids=["type", "version", "unit", "not-yaml"],
    )
    async def test_bad_ensembles_are_422(self, node: DMS, text: str, field: str) -> None:
        def calls() -> None:
            with Client(node.api_url, node.token) as client, pytest.raises(APIInputError) as bad:
                deploy(client, text)
            assert bad.value.status == 422
            assert field in str(bad.value)

        await trio.to_thread.run_sync(calls)

    async def test_a_module_not_sent_is_named(self, node: DMS) -> None:
        def calls() -> None:
            with Client(node.api_url, node.token) as client, pytest.raises(APIInputError) as bad:
                deploy(client, HELLO.read_text())
            assert "allocations.hello.execution.module" in str(bad.value)

        await trio.to_thread.run_sync(calls)

    async def test_unknown_ids_are_404(self, node: DMS) -> None:
        def calls() -> None:
            with Client(node.api_url, node.token) as client:
                for call in (client.deployment, client.explain, client.cancel):
                    with pytest.raises(APIError) as unknown:
                        call("d-unknown")
                    assert unknown.value.status == 404, call
                    assert "d-unknown" in str(unknown.value)

        await trio.to_thread.run_sync(calls)
