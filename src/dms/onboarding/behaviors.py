"""The node behaviors of onboarding, resources and hardware: names, messages, handlers.

The behavior names live here until ``dms.node`` has its own list; each one is served by a
method of :class:`OnboardingBehaviors` taking its typed request and returning its typed
response. :func:`register` puts all of them on an actor (the node's root actor)::

    register(system.actor(ROOT_INBOX), OnboardingBehaviors(service))

======================================  ==================  ====================
behavior                                request             response
======================================  ==================  ====================
``/dms/node/onboarding/onboard``        OnboardRequest      OnboardStatus
``/dms/node/onboarding/offboard``       OffboardRequest     OffboardResult
``/dms/node/onboarding/status``         Empty               OnboardStatus
``/dms/node/resources/onboarded``       Empty               ResourcesReply
``/dms/node/resources/free``            Empty               ResourcesReply
``/dms/node/resources/allocated``       Empty               AllocatedReply
``/dms/node/hardware/spec``             Empty               HardwareSpec
``/dms/node/hardware/usage``            Empty               HardwareUsage
======================================  ==================  ====================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from dms.actor import Actor, Empty, Envelope
from dms.onboarding.records import OffboardResult, OnboardRequest, OnboardStatus
from dms.onboarding.service import OnboardingService
from dms.resources.hardware import HardwareSpec, HardwareUsage
from dms.resources.records import ReservationState
from dms.types import Resources

ONBOARD = "/dms/node/onboarding/onboard"
OFFBOARD = "/dms/node/onboarding/offboard"
ONBOARDING_STATUS = "/dms/node/onboarding/status"
RESOURCES_ONBOARDED = "/dms/node/resources/onboarded"
RESOURCES_FREE = "/dms/node/resources/free"
RESOURCES_ALLOCATED = "/dms/node/resources/allocated"
HARDWARE_SPEC = "/dms/node/hardware/spec"
HARDWARE_USAGE = "/dms/node/hardware/usage"

BEHAVIORS = (
    ONBOARD,
    OFFBOARD,
    ONBOARDING_STATUS,
    RESOURCES_ONBOARDED,
    RESOURCES_FREE,
    RESOURCES_ALLOCATED,
    HARDWARE_SPEC,
    HARDWARE_USAGE,
)


class OffboardRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    force: bool = False
    """Stop running allocations first instead of refusing."""


class ResourcesReply(msgspec.Struct, frozen=True):
    resources: Resources


class AllocationEntry(msgspec.Struct, frozen=True, kw_only=True):
    allocation_id: str
    state: ReservationState
    resources: Resources
    ports: tuple[int, ...] = ()


class AllocatedReply(msgspec.Struct, frozen=True, kw_only=True):
    resources: Resources
    """The sum of the allocated pool."""
    allocations: tuple[AllocationEntry, ...] = ()
    """The running allocations, oldest first."""


class OnboardingBehaviors:
    """Handlers over an :class:`OnboardingService`; one method per behavior."""

    def __init__(self, service: OnboardingService) -> None:
        self.service = service

    async def onboard(self, request: OnboardRequest) -> OnboardStatus:
        return await self.service.onboard(request)

    async def offboard(self, request: OffboardRequest) -> OffboardResult:
        return await self.service.offboard(force=request.force)

    async def status(self, request: Empty) -> OnboardStatus:
        return await self.service.status()

    async def onboarded(self, request: Empty) -> ResourcesReply:
        return ResourcesReply(await self.service.manager.onboarded())

    async def free(self, request: Empty) -> ResourcesReply:
        return ResourcesReply(await self.service.manager.free())

    async def allocated(self, request: Empty) -> AllocatedReply:
        manager = self.service.manager
        pools = await manager.pools()
        running = await manager.reservations(ReservationState.ALLOCATED)
        return AllocatedReply(
            resources=pools.allocated,
            allocations=tuple(
                AllocationEntry(
                    allocation_id=r.allocation_id or "",
                    state=r.state,
                    resources=r.resources,
                    ports=r.ports,
                )
                for r in running
            ),
        )

    async def hardware_spec(self, request: Empty) -> HardwareSpec:
        return await self.service.hardware.spec()

    async def hardware_usage(self, request: Empty) -> HardwareUsage:
        return await self.service.hardware.usage()

    def table(
        self,
    ) -> tuple[tuple[str, type[Any], type[Any], Callable[[Any], Awaitable[Any]]], ...]:
        """(behavior, request type, response type, handler) for every behavior."""
        return (
            (ONBOARD, OnboardRequest, OnboardStatus, self.onboard),
            (OFFBOARD, OffboardRequest, OffboardResult, self.offboard),
            (ONBOARDING_STATUS, Empty, OnboardStatus, self.status),
            (RESOURCES_ONBOARDED, Empty, ResourcesReply, self.onboarded),
            (RESOURCES_FREE, Empty, ResourcesReply, self.free),
            (RESOURCES_ALLOCATED, Empty, AllocatedReply, self.allocated),
            (HARDWARE_SPEC, Empty, HardwareSpec, self.hardware_spec),
            (HARDWARE_USAGE, Empty, HardwareUsage, self.hardware_usage),
        )


def _on_actor(
    handler: Callable[[Any], Awaitable[Any]],
) -> Callable[[Any, Envelope], Awaitable[Any]]:
    async def handle(message: Any, envelope: Envelope) -> Any:
        return await handler(message)

    return handle


def register(actor: Actor, behaviors: OnboardingBehaviors) -> None:
    """Serve every behavior of this module on ``actor``."""
    for path, request, response, handler in behaviors.table():
        actor.register(path, request, response, _on_actor(handler))
