"""The DMS app: what it starts, what it writes, the parts it wires, and the start-up check."""

from __future__ import annotations

from pathlib import Path

import pytest

from dms import config as cfg
from dms.actor import Empty, RemoteError
from dms.app import DMS, docker_api_configured
from dms.executor.null import NullExecutor
from dms.executor.registry import ExecutorRegistry
from dms.network.memory import Fabric
from dms.node import behaviors as names
from dms.node.identity import peer_id_from_did
from dms.node.messages import NodeStatus
from dms.node.setup import load_key, read_runtime, runtime_path
from dms.onboarding.errors import InvalidOnboarding
from dms.onboarding.records import OnboardRequest, OnboardStatus
from dms.resources import StaticHardware, idle_usage
from tests.node.harness import SPEC, make_home, running_node


class TestLifecycle:
    """A node writes where it is once ready and removes it when it stops."""

    async def test_runtime_file_while_running(self, tmp_path: Path) -> None:
        async with running_node(tmp_path) as node:
            running = read_runtime(node.home)
            assert running is not None
            assert (running.did, running.api_url) == (node.did, node.api_url)
            assert running.ready_s > 0
        assert not runtime_path(node.home).exists()

    async def test_the_api_can_be_off(self, tmp_path: Path) -> None:
        async with running_node(tmp_path, api=False) as node:
            assert node.api_url == ""
            status = await node.status()
            assert isinstance(status, NodeStatus) and status.api_url == ""


class TestParts:
    """The provider and orchestrator put their behaviors on the root actor when present."""

    async def test_orchestrator_and_provider_behaviors(self, tmp_path: Path) -> None:
        async with running_node(tmp_path, provider=True, orchestrator=True) as node:
            served = set(node.system.actor("root").cell.behaviors)
            if node.orchestrator is not None:
                assert set(names.DEPLOYMENT) <= served
            if node.provider is not None:
                assert set(names.PROVIDER) <= served
            assert served <= set(names.ALL)

    async def test_without_them_deployment_behaviors_are_absent(self, tmp_path: Path) -> None:
        async with running_node(tmp_path) as node:
            served = set(node.system.actor("root").cell.behaviors)
            assert not served & set(names.DEPLOYMENT)
            assert node.provider is None and node.orchestrator is None


class TestIdleCPU:
    """Onboarding on a busy machine: refused, unless resources.require_idle_cpu is false."""

    async def onboard_busy(self, tmp_path: Path, require_idle_cpu: bool) -> OnboardStatus:
        home = make_home(tmp_path, resources__require_idle_cpu=require_idle_cpu)
        keypair = load_key(home)
        busy = msgspec_replace_cpu(idle_usage(SPEC), 100.0)
        node = DMS(
            home,
            cfg.load(home.config_file, env={}),
            keypair,
            network=Fabric().network(peer_id_from_did(keypair.did)),
            hardware=StaticHardware(SPEC, busy),
            executors=ExecutorRegistry([NullExecutor(home.work_dir / "null")]),
            api=False,
            provider=False,
            orchestrator=False,
        )
        async with node:
            request = OnboardRequest.parse(cpu=2, ram="4GiB", disk="10GiB")
            return await node.system.invoke(node.system.root, names.ONBOARD, request, OnboardStatus)

    async def test_refused_by_default(self, tmp_path: Path) -> None:
        with pytest.raises(RemoteError) as refused:
            await self.onboard_busy(tmp_path, True)
        assert isinstance(refused.value.__cause__, InvalidOnboarding)
        assert "idle now" in str(refused.value)

    async def test_allowed_when_not_required(self, tmp_path: Path) -> None:
        status = await self.onboard_busy(tmp_path, False)
        assert status.onboarded


def msgspec_replace_cpu(usage: object, percent: float) -> object:
    import msgspec

    return msgspec.structs.replace(usage, cpu_percent=percent)  # type: ignore[type-var]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DOCKER_HOST": "unix:///run/podman.sock"}, True),
        ({}, Path("/var/run/docker.sock").exists()),
    ],
    ids=["DOCKER_HOST", "default-socket"],
)
def test_docker_executor_only_with_a_docker_api(env: dict[str, str], expected: bool) -> None:
    assert docker_api_configured(env) is expected


async def test_status_through_the_root_actor(tmp_path: Path) -> None:
    async with running_node(tmp_path, api=False) as node:
        status = await node.system.invoke(node.system.root, names.NODE_STATUS, Empty(), NodeStatus)
        assert status.version
