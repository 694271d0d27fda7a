"""The node behaviors, registered on a real actor system's root actor and invoked through it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dms.actor import ROOT_INBOX, ActorSystem, Empty
from dms.actor.errors import RemoteError
from dms.clock import LoopClock
from dms.network.memory import Fabric
from dms.onboarding import (
    GPUShare,
    OffboardResult,
    OnboardingService,
    OnboardRequest,
    OnboardStatus,
)
from dms.onboarding.behaviors import (
    BEHAVIORS,
    HARDWARE_SPEC,
    HARDWARE_USAGE,
    OFFBOARD,
    ONBOARD,
    ONBOARDING_STATUS,
    RESOURCES_ALLOCATED,
    RESOURCES_FREE,
    RESOURCES_ONBOARDED,
    AllocatedReply,
    OffboardRequest,
    OnboardingBehaviors,
    ResourcesReply,
    register,
)
from dms.resources import HardwareSpec, HardwareUsage, ResourceManager
from dms.security import KeyPair
from dms.types import CPU, Resources
from tests.onboarding.conftest import SPEC, GiB

SECOND = 10**9
REQUEST = OnboardRequest(cpu=2, ram=8 * GiB, disk=20 * GiB, gpus=(GPUShare(0, 12 * GiB),))


@pytest.fixture
async def node(service: OnboardingService) -> AsyncIterator[ActorSystem]:
    async with ActorSystem(KeyPair.generate(), Fabric().network("a"), clock=LoopClock()) as system:
        register(system.actor(ROOT_INBOX), OnboardingBehaviors(service))
        yield system


class TestBehaviors:
    """Each behavior answers with its typed response; bad input comes back naming the field."""

    def test_the_behavior_names(self) -> None:
        assert BEHAVIORS == (
            "/dms/node/onboarding/onboard",
            "/dms/node/onboarding/offboard",
            "/dms/node/onboarding/status",
            "/dms/node/resources/onboarded",
            "/dms/node/resources/free",
            "/dms/node/resources/allocated",
            "/dms/node/hardware/spec",
            "/dms/node/hardware/usage",
        )

    async def test_onboard_use_and_offboard_through_the_root_actor(
        self, node: ActorSystem, manager: ResourceManager
    ) -> None:
        root = node.root
        status = await node.invoke(root, ONBOARD, REQUEST, OnboardStatus)
        assert status.onboarded and status.resources.onboarded.cpu.cores == 2
        assert (await node.invoke(root, ONBOARDING_STATUS, Empty(), OnboardStatus)) == status

        await manager.commit("a1", resources=Resources(cpu=CPU(cores=1), ram=GiB), ttl_ns=SECOND)
        await manager.allocate("a1")
        onboarded = await node.invoke(root, RESOURCES_ONBOARDED, Empty(), ResourcesReply)
        free = await node.invoke(root, RESOURCES_FREE, Empty(), ResourcesReply)
        allocated = await node.invoke(root, RESOURCES_ALLOCATED, Empty(), AllocatedReply)
        assert onboarded.resources.cpu.cores == 2 and free.resources.cpu.cores == 1
        assert [a.allocation_id for a in allocated.allocations] == ["a1"]
        assert allocated.resources.ram == GiB

        with pytest.raises(RemoteError, match="a1"):
            await node.invoke(root, OFFBOARD, OffboardRequest(), OffboardResult)
        result = await node.invoke(root, OFFBOARD, OffboardRequest(force=True), OffboardResult)
        assert result.stopped == ("a1",)

    async def test_invalid_onboarding_comes_back_naming_the_field_and_the_range(
        self, node: ActorSystem
    ) -> None:
        with pytest.raises(RemoteError) as raised:
            await node.invoke(
                node.root, ONBOARD, OnboardRequest(cpu=1, ram=GiB, disk=GiB), OnboardStatus
            )
        assert raised.value.error_type == "InvalidOnboarding"
        assert raised.value.remote_message.startswith(
            "ram: 1GiB asked; allowed 3.20GiB to 28.80GiB"
        )

    async def test_hardware_spec_and_usage(self, node: ActorSystem) -> None:
        spec = await node.invoke(node.root, HARDWARE_SPEC, Empty(), HardwareSpec)
        usage = await node.invoke(node.root, HARDWARE_USAGE, Empty(), HardwareUsage)
        assert spec == SPEC and usage.ram_available == SPEC.ram
